//! `weir-http`: the Kafka Connect REST API (same paths, status codes and JSON as Kafka Connect
//! 4.x) over a [`weir_connect::Runtime`]. Errors are `{"error_code": N, "message": "..."}`
//! with the HTTP status as the code, as Kafka Connect answers them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};
use weir_connect::{ConfigMap, ConnectError, Runtime, TargetState};

/// Serves the REST API on `listener` until `shutdown` resolves; requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    runtime: Runtime,
    loggers: Option<Arc<dyn LogLevels>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "REST API listening");
    let mut app = router(runtime);
    if let Some(l) = loggers {
        app = app.merge(
            Router::new()
                .route("/admin/loggers", get(list_loggers))
                .route("/admin/loggers/{name}", get(get_logger).put(set_logger))
                .with_state(l),
        );
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Log levels changed at run time (`/admin/loggers`), provided by the process that owns the
/// subscriber.
pub trait LogLevels: Send + Sync + 'static {
    /// Every logger with a level: name -> (level, last modified in ms; `None` for root).
    fn levels(&self) -> BTreeMap<String, (String, Option<i64>)>;
    /// Sets a logger's level (`root`: the default); the loggers it changed.
    fn set(&self, logger: &str, level: &str) -> Result<Vec<String>, String>;
}

type Loggers = Arc<dyn LogLevels>;

fn logger_json(level: &str, modified: Option<i64>) -> Value {
    json!({ "level": level, "last_modified": modified })
}

async fn list_loggers(State(l): State<Loggers>) -> ApiResult {
    let mut out = serde_json::Map::new();
    for (name, (level, modified)) in l.levels() {
        out.insert(name, logger_json(&level, modified));
    }
    ok(out)
}

async fn get_logger(State(l): State<Loggers>, Path(name): Path<String>) -> ApiResult {
    let levels = l.levels();
    let (level, modified) = levels
        .get(&name)
        .or_else(|| levels.get("root"))
        .cloned()
        .unwrap_or(("INFO".into(), None));
    ok(logger_json(&level, modified))
}

async fn set_logger(
    State(l): State<Loggers>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let v = json_body(&headers, &body)?;
    let level = v.get("level").and_then(Value::as_str).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "the body must be {\"level\": \"DEBUG\"}".into(),
        )
    })?;
    let affected = l
        .set(&name, level)
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e))?;
    if q.as_deref()
        .unwrap_or("")
        .split('&')
        .any(|p| p == "scope=cluster")
    {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    ok(affected)
}

/// The API's routes.
pub fn router(runtime: Runtime) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/connectors", get(list).post(create))
        .route("/connectors/{name}", get(info).delete(delete))
        .route(
            "/connectors/{name}/config",
            get(config).put(put_config).patch(patch_config),
        )
        .route("/connectors/{name}/restart", post(restart))
        .route("/connectors/{name}/tasks/{id}/restart", post(restart_task))
        .route("/connectors/{name}/topics", get(topics))
        .route("/connectors/{name}/topics/reset", put(reset_topics))
        .route(
            "/connectors/{name}/offsets",
            get(offsets).patch(alter_offsets).delete(reset_offsets),
        )
        .route("/connector-plugins/{plugin}/config", get(plugin_config))
        .route("/connector-plugins/{plugin}/config/validate", put(validate))
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/tasks", get(tasks))
        .route("/connectors/{name}/tasks/{id}/status", get(task_status))
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/resume", put(resume))
        .route("/connectors/{name}/stop", put(stop))
        .route("/connector-plugins", get(plugins))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(runtime)
}

/// An error answer in Kafka Connect's shape.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error_code": self.0.as_u16(), "message": self.1 });
        (self.0, axum::Json(body)).into_response()
    }
}

impl From<ConnectError> for ApiError {
    fn from(e: ConnectError) -> Self {
        let code = match &e {
            ConnectError::NotFound(_) | ConnectError::TaskNotFound(..) => StatusCode::NOT_FOUND,
            ConnectError::Exists(_) => StatusCode::CONFLICT,
            ConnectError::BadConfig(_) => StatusCode::BAD_REQUEST,
            ConnectError::Cluster(c) if c.is_retriable() => StatusCode::SERVICE_UNAVAILABLE,
            ConnectError::Cluster(_) | ConnectError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError(code, e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(v: impl serde::Serialize) -> ApiResult {
    Ok(axum::Json(v).into_response())
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "HTTP 404 Not Found".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        "HTTP 405 Method Not Allowed".into(),
    )
}

async fn root(State(rt): State<Runtime>) -> ApiResult {
    ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": option_env!("WEIR_COMMIT").unwrap_or("unknown"),
        "kafka_cluster_id": rt.cluster_id(),
    }))
}

/// `GET /connectors`, with `?expand=status` and/or `?expand=info`.
async fn list(State(rt): State<Runtime>, RawQuery(q): RawQuery) -> ApiResult {
    let mut expand = (false, false);
    for pair in q.as_deref().unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("expand", "status")) => expand.0 = true,
            Some(("expand", "info")) => expand.1 = true,
            _ => {}
        }
    }
    if expand == (false, false) {
        return ok(rt.connectors().await);
    }
    let mut out = serde_json::Map::new();
    for (info, status) in rt.all().await {
        let mut e = serde_json::Map::new();
        if expand.0 {
            e.insert("status".into(), json!(status));
        }
        if expand.1 {
            e.insert("info".into(), json!(info));
        }
        out.insert(info.name.clone(), Value::Object(e));
    }
    ok(out)
}

/// The request body as JSON; 415 unless it says it is JSON, 400 when it is not.
fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" && !mime.ends_with("+json") {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "HTTP 415 Unsupported Media Type".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("Request body is not valid JSON: {e}"),
        )
    })
}

/// One config value: a string (numbers and booleans written as strings, as Kafka Connect's
/// JSON mapper does), or `None` for null.
fn config_value(k: &str, v: &Value) -> Result<Option<String>, ApiError> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("{k}: config values must be strings, not {other}"),
            ));
        }
    }))
}

/// A config map: string values (numbers and booleans are accepted and written as strings, as
/// Kafka Connect's JSON mapper does).
fn config_map(v: &Value) -> Result<ConfigMap, ApiError> {
    let obj = v.as_object().ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "connector config must be a JSON object of string values".into(),
        )
    })?;
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        match config_value(k, v)? {
            Some(s) => out.insert(k.clone(), s),
            None => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("{k}: config values must be strings, not null"),
                ));
            }
        };
    }
    Ok(out)
}

async fn create(State(rt): State<Runtime>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let v = json_body(&headers, &body)?;
    let config = match v.get("config") {
        Some(c) => config_map(c)?,
        None => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "config: the request has no connector config".into(),
            ));
        }
    };
    let name = match v.get("name") {
        Some(Value::String(n)) => n.clone(),
        Some(_) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "name: connector name must be a string".into(),
            ));
        }
        None => config.get("name").cloned().ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "name: connector name should not be null".into(),
            )
        })?,
    };
    let info = rt.create(&name, config).await?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost:8083");
    let location = format!("http://{host}/connectors/{}", encode_path(&name));
    let mut resp = (StatusCode::CREATED, axum::Json(info)).into_response();
    if let Ok(l) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, l);
    }
    Ok(resp)
}

/// Percent-encodes a path segment.
fn encode_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn info(State(rt): State<Runtime>, Path(name): Path<String>) -> ApiResult {
    ok(rt.info(&name).await?)
}

async fn delete(State(rt): State<Runtime>, Path(name): Path<String>) -> ApiResult {
    rt.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn config(State(rt): State<Runtime>, Path(name): Path<String>) -> ApiResult {
    ok(rt.config(&name).await?)
}

async fn put_config(
    State(rt): State<Runtime>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let v = json_body(&headers, &body)?;
    let config = config_map(&v)?;
    let (created, info) = rt.put_config(&name, config).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, axum::Json(info)).into_response())
}

async fn status(State(rt): State<Runtime>, Path(name): Path<String>) -> ApiResult {
    ok(rt.status(&name).await?)
}

async fn tasks(State(rt): State<Runtime>, Path(name): Path<String>) -> ApiResult {
    ok(rt.tasks(&name).await?)
}

async fn task_status(
    State(rt): State<Runtime>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult {
    let id: u32 = id.parse().map_err(|_| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("Task {id} of connector {name} not found"),
        )
    })?;
    ok(rt.task_status(&name, id).await?)
}

async fn pause(State(rt): State<Runtime>, Path(name): Path<String>) -> ApiResult {
    rt.set_target(&name, TargetState::Paused).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn resume(State(rt): State<Runtime>, Path(name): Path<String>) -> ApiResult {
    rt.set_target(&name, TargetState::Started).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn stop(State(rt): State<Runtime>, Path(name): Path<String>) -> ApiResult {
    rt.set_target(&name, TargetState::Stopped).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A boolean query parameter (`name=true`).
fn query_flag(q: &Option<String>, name: &str) -> Result<bool, ApiError> {
    for pair in q.as_deref().unwrap_or("").split('&') {
        if let Some((k, v)) = pair.split_once('=')
            && k == name
        {
            return match v.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("{name} must be true or false, not {v:?}"),
                )),
            };
        }
    }
    Ok(false)
}

async fn restart(
    State(rt): State<Runtime>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let include_tasks = query_flag(&q, "includeTasks")?;
    let only_failed = query_flag(&q, "onlyFailed")?;
    match rt.restart(&name, include_tasks, only_failed).await? {
        None => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(st) => Ok((StatusCode::ACCEPTED, axum::Json(st)).into_response()),
    }
}

async fn restart_task(
    State(rt): State<Runtime>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult {
    let id: u32 = id.parse().map_err(|_| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("Task {id} of connector {name} not found"),
        )
    })?;
    rt.restart_task(&name, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn patch_config(
    State(rt): State<Runtime>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let v = json_body(&headers, &body)?;
    let obj = v.as_object().ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "the patch must be a JSON object; null removes a key".into(),
        )
    })?;
    let mut patch = BTreeMap::new();
    for (k, v) in obj {
        patch.insert(k.clone(), config_value(k, v)?);
    }
    ok(rt.patch_config(&name, patch).await?)
}

async fn topics(State(rt): State<Runtime>, Path(name): Path<String>) -> ApiResult {
    let topics = rt.topics(&name).await?;
    let mut out = serde_json::Map::new();
    out.insert(name, json!({ "topics": topics }));
    ok(out)
}

async fn reset_topics(State(rt): State<Runtime>, Path(name): Path<String>) -> ApiResult {
    rt.reset_topics(&name).await?;
    Ok(StatusCode::OK.into_response())
}

async fn offsets(State(rt): State<Runtime>, Path(name): Path<String>) -> ApiResult {
    ok(rt.offsets(&name).await?)
}

async fn alter_offsets(
    State(rt): State<Runtime>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let v = json_body(&headers, &body)?;
    let list = v.get("offsets").and_then(Value::as_array).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "offsets: the body must be {\"offsets\": [{\"partition\": {...}, \"offset\": {...}}]}"
                .into(),
        )
    })?;
    let mut offsets = Vec::new();
    for e in list {
        let p = e.get("partition").cloned().ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "offsets: every entry needs a partition".into(),
            )
        })?;
        let o = e.get("offset").cloned().filter(|o| !o.is_null());
        offsets.push((p, o));
    }
    let message = rt.alter_offsets(&name, Some(offsets)).await?;
    ok(json!({ "message": message }))
}

async fn reset_offsets(State(rt): State<Runtime>, Path(name): Path<String>) -> ApiResult {
    let message = rt.alter_offsets(&name, None).await?;
    ok(json!({ "message": message }))
}

async fn plugin_config(State(rt): State<Runtime>, Path(plugin): Path<String>) -> ApiResult {
    ok(rt.plugin_config(&plugin).await.map_err(plugin_not_found)?)
}

async fn validate(
    State(rt): State<Runtime>,
    Path(plugin): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let v = json_body(&headers, &body)?;
    let config = config_map(&v)?;
    ok(rt
        .validate_config(&plugin, config)
        .await
        .map_err(plugin_not_found)?)
}

/// An unknown plugin is a 404 here, not a bad config.
fn plugin_not_found(e: ConnectError) -> ApiError {
    match e {
        ConnectError::BadConfig(m) if m.starts_with("connector.class: no connector plugin") => {
            ApiError(
                StatusCode::NOT_FOUND,
                m.replacen("connector.class: ", "", 1),
            )
        }
        e => e.into(),
    }
}

async fn plugins(State(rt): State<Runtime>, RawQuery(q): RawQuery) -> ApiResult {
    let all = q
        .as_deref()
        .unwrap_or("")
        .split('&')
        .any(|p| p.eq_ignore_ascii_case("connectorsOnly=false"));
    ok(rt.plugins(!all).await)
}
