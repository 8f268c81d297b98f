//! `weir connector ...`: the Connect runtime's REST API from the command line (any Kafka
//! Connect compatible endpoint works), with readable tables or `--json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, clap::Args)]
pub struct ConnectorArgs {
    /// REST API of the Connect runtime.
    #[arg(
        long,
        env = "WEIR_URL",
        default_value = "http://127.0.0.1:8083",
        global = true
    )]
    url: String,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: ConnectorCmd,
}

#[derive(Debug, clap::Subcommand)]
enum ConnectorCmd {
    /// List connectors with their type, state and tasks.
    List,
    /// Create a connector (or replace its config with --replace) from KEY=VALUE pairs or a
    /// JSON file (Kafka Connect's {"name", "config"} or a bare config map).
    Create {
        name: String,
        /// KEY=VALUE, repeatable.
        #[arg(short = 'c', long = "config")]
        config: Vec<String>,
        /// A JSON file with the config.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Create or replace (PUT /connectors/{name}/config) instead of failing if it exists.
        #[arg(long)]
        replace: bool,
    },
    /// A connector's state and its tasks'.
    Status {
        name: String,
    },
    /// A connector's config.
    Config {
        name: String,
    },
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    Stop {
        name: String,
    },
    /// Restart a connector (and its tasks with --include-tasks; only FAILED ones with
    /// --only-failed), or one task with --task.
    Restart {
        name: String,
        #[arg(long)]
        include_tasks: bool,
        #[arg(long)]
        only_failed: bool,
        #[arg(long)]
        task: Option<u32>,
    },
    Delete {
        name: String,
    },
    /// A connector's offsets (source partitions and offsets, or a sink's topic partitions).
    Offsets {
        name: String,
    },
    /// The connector plugins this runtime has (--all: transforms and predicates too).
    Plugins {
        #[arg(long)]
        all: bool,
    },
}

/// One HTTP/1.1 exchange: (status, JSON or null).
async fn call(
    url: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--url must be http://host:port, not {url:?}"))?;
    let (authority, base) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .with_context(|| format!("cannot reach the Connect REST API at {url} (is `weir up` running? --url / WEIR_URL)"))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {base}{path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n"
    );
    if body.is_some() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    } else if method != "GET" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    req.push_str(&payload);
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP status line")?;
    if head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    }) {
        body = dechunk(&body);
    }
    let v = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()))
    };
    Ok((status, v))
}

fn dechunk(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = b;
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&rest[..i]).trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < i + 2 + n {
            break;
        }
        out.extend_from_slice(&rest[i + 2..i + 2 + n]);
        rest = &rest[(i + 4 + n).min(rest.len())..];
    }
    out
}

/// The call's JSON, or its error message as the command's error.
async fn expect(
    url: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let (status, v) = call(url, method, path, body).await?;
    if status >= 400 {
        let msg = v
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        bail!("{msg} (HTTP {status})");
    }
    Ok(v)
}

fn seg(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = w[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

pub async fn run(args: ConnectorArgs) -> anyhow::Result<()> {
    let url = args.url.trim_end_matches('/').to_string();
    let url = url.as_str();
    let out = |v: &Value| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    match args.cmd {
        ConnectorCmd::List => {
            let v = expect(url, "GET", "/connectors?expand=status&expand=info", None).await?;
            if args.json {
                out(&v);
                return Ok(());
            }
            let mut rows = Vec::new();
            if let Some(m) = v.as_object() {
                for (name, e) in m {
                    let st = &e["status"];
                    let tasks: Vec<String> = st["tasks"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|t| format!("{}:{}", s(&t["id"]), s(&t["state"])))
                                .collect()
                        })
                        .unwrap_or_default();
                    rows.push(vec![
                        name.clone(),
                        s(&st["type"]),
                        s(&st["connector"]["state"]),
                        s(&e["info"]["config"]["connector.class"]),
                        tasks.join(" "),
                    ]);
                }
            }
            print_table(&["NAME", "TYPE", "STATE", "CLASS", "TASKS"], &rows);
        }
        ConnectorCmd::Create {
            name,
            config,
            file,
            replace,
        } => {
            let mut map = serde_json::Map::new();
            if let Some(f) = file {
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read {}", f.display()))?;
                let v: Value = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not JSON", f.display()))?;
                let cfg = v.get("config").cloned().unwrap_or(v);
                map = cfg
                    .as_object()
                    .cloned()
                    .context("the config must be a JSON object")?;
            }
            for kv in config {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("-c {kv:?}: expected KEY=VALUE"))?;
                map.insert(k.trim().to_string(), Value::String(v.to_string()));
            }
            if !map.contains_key("connector.class") {
                bail!("the config has no connector.class (-c connector.class=FileStreamSource)");
            }
            let v = if replace {
                expect(
                    url,
                    "PUT",
                    &format!("/connectors/{}/config", seg(&name)),
                    Some(&Value::Object(map)),
                )
                .await?
            } else {
                expect(
                    url,
                    "POST",
                    "/connectors",
                    Some(&json!({"name": name, "config": map})),
                )
                .await?
            };
            if args.json {
                out(&v);
            } else {
                println!(
                    "connector {name} ({}) with {} task(s)",
                    s(&v["type"]),
                    v["tasks"].as_array().map_or(0, Vec::len)
                );
            }
        }
        ConnectorCmd::Status { name } => {
            let v = expect(
                url,
                "GET",
                &format!("/connectors/{}/status", seg(&name)),
                None,
            )
            .await?;
            if args.json {
                out(&v);
                return Ok(());
            }
            println!(
                "{} ({}): {} on {}",
                name,
                s(&v["type"]),
                s(&v["connector"]["state"]),
                s(&v["connector"]["worker_id"])
            );
            if let Some(t) = v["connector"]["trace"].as_str() {
                println!("  {}", t.lines().next().unwrap_or(""));
            }
            let rows: Vec<Vec<String>> = v["tasks"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|t| {
                            vec![
                                s(&t["id"]),
                                s(&t["state"]),
                                s(&t["worker_id"]),
                                t["restarts"].as_u64().unwrap_or(0).to_string(),
                                t["errors_tolerated"].as_u64().unwrap_or(0).to_string(),
                                t["trace"]
                                    .as_str()
                                    .and_then(|x| x.lines().next())
                                    .unwrap_or("")
                                    .to_string(),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            print_table(
                &["TASK", "STATE", "WORKER", "RESTARTS", "TOLERATED", "TRACE"],
                &rows,
            );
        }
        ConnectorCmd::Config { name } => {
            let v = expect(
                url,
                "GET",
                &format!("/connectors/{}/config", seg(&name)),
                None,
            )
            .await?;
            if args.json {
                out(&v);
            } else if let Some(m) = v.as_object() {
                let sorted: BTreeMap<_, _> = m.iter().collect();
                for (k, v) in sorted {
                    println!("{k} = {}", s(v));
                }
            }
        }
        ConnectorCmd::Pause { name } => target(url, &name, "pause", "paused").await?,
        ConnectorCmd::Resume { name } => target(url, &name, "resume", "resumed").await?,
        ConnectorCmd::Stop { name } => target(url, &name, "stop", "stopped").await?,
        ConnectorCmd::Restart {
            name,
            include_tasks,
            only_failed,
            task,
        } => {
            let path = match task {
                Some(t) => format!("/connectors/{}/tasks/{t}/restart", seg(&name)),
                None => format!(
                    "/connectors/{}/restart?includeTasks={include_tasks}&onlyFailed={only_failed}",
                    seg(&name)
                ),
            };
            let v = expect(url, "POST", &path, None).await?;
            if args.json && !v.is_null() {
                out(&v);
            } else {
                println!("restart of {name} requested");
            }
        }
        ConnectorCmd::Delete { name } => {
            expect(url, "DELETE", &format!("/connectors/{}", seg(&name)), None).await?;
            println!("connector {name} deleted");
        }
        ConnectorCmd::Offsets { name } => {
            let v = expect(
                url,
                "GET",
                &format!("/connectors/{}/offsets", seg(&name)),
                None,
            )
            .await?;
            if args.json {
                out(&v);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = v["offsets"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|o| vec![o["partition"].to_string(), o["offset"].to_string()])
                        .collect()
                })
                .unwrap_or_default();
            print_table(&["PARTITION", "OFFSET"], &rows);
        }
        ConnectorCmd::Plugins { all } => {
            let path = if all {
                "/connector-plugins?connectorsOnly=false"
            } else {
                "/connector-plugins"
            };
            let v = expect(url, "GET", path, None).await?;
            if args.json {
                out(&v);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| vec![s(&p["class"]), s(&p["type"]), s(&p["version"])])
                        .collect()
                })
                .unwrap_or_default();
            print_table(&["CLASS", "TYPE", "VERSION"], &rows);
        }
    }
    Ok(())
}

async fn target(url: &str, name: &str, verb: &str, done: &str) -> anyhow::Result<()> {
    expect(
        url,
        "PUT",
        &format!("/connectors/{}/{verb}", seg(name)),
        None,
    )
    .await?;
    println!("connector {name} {done}");
    Ok(())
}
