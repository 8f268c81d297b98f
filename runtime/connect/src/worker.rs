//! [`Runtime`]: the connectors of one worker, their tasks (one thread each, since plugin calls
//! block), and the stores that let a restarted worker resume them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_cluster::{Cluster, TopicMeta};

use crate::config::{ConfigMap, ConnectorConfig, WorkerConfig};
use crate::convert::Format;
use crate::errors::Reporter;
use crate::pipe::{Pipe, WasmStep};
use crate::registry::{Kind, PluginInfo, Registry, Resolved};
use crate::status::{ConnectorState, ConnectorStatus, State, TaskStatus};
use crate::store::TopicStore;
use crate::task::{Control, TaskCtx};
use crate::transforms::Chain;
use crate::{ConnectError, sink, source};

/// What a connector is asked to be: Kafka Connect's target states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TargetState {
    Started,
    Paused,
    Stopped,
}

/// A task's id as Kafka Connect writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskId {
    pub connector: String,
    pub task: u32,
}

/// `GET /connectors/{name}` and the answer to creating one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectorInfo {
    pub name: String,
    pub config: ConfigMap,
    pub tasks: Vec<TaskId>,
    #[serde(rename = "type")]
    pub kind: Kind,
}

/// One entry of `GET /connectors/{name}/tasks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskInfo {
    pub id: TaskId,
    pub config: ConfigMap,
}

/// A running task.
#[derive(Debug)]
struct Running {
    control: Arc<Control>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A connector this worker knows.
#[derive(Debug)]
struct Connector {
    config: ConfigMap,
    kind: Kind,
    target: TargetState,
    /// The task configs last generated (kept while stopped, as Kafka keeps them).
    task_configs: Vec<ConfigMap>,
    tasks: Vec<Running>,
    /// Why the connector itself could not start.
    failed: Option<String>,
    /// Starts its tasks again (restarts).
    spawner: Option<Spawner>,
    /// Keys the plugin declares secret: masked in every answer.
    secrets: std::collections::BTreeSet<String>,
}

/// The value every answer shows for a secret (Kafka's mask for passwords).
pub const HIDDEN: &str = "[hidden]";

impl Connector {
    /// Whether a key's value must not be shown: declared secret by the plugin, a SQL grant's
    /// URL, or named like a credential (the runtime's own rule).
    fn is_secret(&self, key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        self.secrets.contains(key)
            || weir_host::sql_grant_name(key).is_some()
            || k.ends_with("password")
            || k.ends_with("secret")
            || k.ends_with(".token")
            || k.ends_with("api.key")
    }

    /// A config as answers show it: secrets masked unless they are provider references.
    fn masked(&self, config: &ConfigMap) -> ConfigMap {
        config
            .iter()
            .map(|(k, v)| {
                let v = if self.is_secret(k) && !crate::providers::is_reference(v) {
                    HIDDEN.to_string()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect()
    }
}

/// Everything needed to start (or restart) one of a connector's tasks.
#[derive(Debug, Clone)]
struct Spawner {
    rt: tokio::runtime::Handle,
    cluster: Arc<dyn Cluster>,
    host: Arc<weir_host::Host>,
    plugin: weir_host::Plugin,
    kind: Kind,
    connector: String,
    /// `connector.class` as configured (the DLQ's `__connect.errors.class.name` for the
    /// plugin's own failures).
    class: String,
    configs: Vec<Vec<(String, String)>>,
    /// Sinks: each task's (topic, partition)s, and what they are drawn from (`topics`,
    /// `topics.regex`), checked again every `topic_refresh_interval`.
    assignments: Vec<Vec<(String, i32)>>,
    topics: Vec<String>,
    topics_regex: Option<regex::Regex>,
    grants: weir_host::TaskConfig,
    errors: crate::ErrorPolicy,
    worker: WorkerConfig,
    status: TopicStore,
    offsets: TopicStore,
    default_topic: Option<String>,
    pipe: Arc<Pipe>,
}

impl Spawner {
    fn spawn(&self, i: usize, paused: bool) -> Result<Running, ConnectError> {
        let control = Control::new(i as u32, paused);
        let reporter = Reporter {
            policy: self.errors.clone(),
            cluster: self.cluster.clone(),
            rt: self.rt.clone(),
            connector: self.connector.clone(),
            class: self.class.clone(),
            task: i as u32,
            counters: control.counters.clone(),
        };
        let ctx = TaskCtx {
            rt: self.rt.clone(),
            cluster: self.cluster.clone(),
            host: self.host.clone(),
            plugin: self.plugin.clone(),
            connector: self.connector.clone(),
            config: self.configs[i].clone(),
            grants: self.grants.clone(),
            control: control.clone(),
            worker: self.worker.clone(),
            status: self.status.clone(),
            pipe: self.pipe.clone(),
            reporter,
        };
        let (kind, offsets, default_topic) =
            (self.kind, self.offsets.clone(), self.default_topic.clone());
        let assignment = self.assignments.get(i).cloned().unwrap_or_default();
        let thread = std::thread::Builder::new()
            .name(format!("task-{}-{i}", self.connector))
            .spawn(move || {
                ctx.publish();
                match kind {
                    Kind::Source => source::run(ctx, offsets, default_topic),
                    Kind::Sink => sink::run(ctx, assignment),
                }
            })
            .map_err(|e| ConnectError::Internal(format!("cannot start a task thread: {e}")))?;
        Ok(Running {
            control,
            thread: Some(thread),
        })
    }
}

#[derive(Debug)]
struct Inner {
    cluster: Arc<dyn Cluster>,
    registry: Arc<Registry>,
    cfg: WorkerConfig,
    configs: TopicStore,
    offsets: TopicStore,
    status: TopicStore,
    connectors: tokio::sync::Mutex<BTreeMap<String, Connector>>,
    /// The loop that checks sinks' assignments again (`topic_refresh_interval`).
    refresher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The Connect runtime's handle. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

fn config_key(name: &str) -> Vec<u8> {
    format!("connector-{name}").into_bytes()
}

fn target_key(name: &str) -> Vec<u8> {
    format!("target-state-{name}").into_bytes()
}

impl Runtime {
    /// Opens the stores (creating their topics) and starts every stored connector in its
    /// stored target state. A connector that cannot start is FAILED, not fatal.
    pub async fn start(
        cluster: Arc<dyn Cluster>,
        registry: Arc<Registry>,
        cfg: WorkerConfig,
    ) -> Result<Runtime, ConnectError> {
        let configs = TopicStore::open(cluster.clone(), &cfg.config_topic).await?;
        let offsets = TopicStore::open(cluster.clone(), &cfg.offset_topic).await?;
        let status = TopicStore::open(cluster.clone(), &cfg.status_topic).await?;
        let stored = configs.read_all().await?;
        let rt = Runtime {
            inner: Arc::new(Inner {
                cluster,
                registry,
                cfg,
                configs,
                offsets,
                status,
                connectors: Default::default(),
                refresher: Default::default(),
            }),
        };
        let mut found: BTreeMap<String, (Option<ConfigMap>, TargetState)> = BTreeMap::new();
        for (k, v) in stored {
            let k = String::from_utf8_lossy(&k).to_string();
            if let Some(name) = k.strip_prefix("connector-") {
                #[derive(Deserialize)]
                struct Stored {
                    properties: ConfigMap,
                }
                match serde_json::from_slice::<Stored>(&v) {
                    Ok(s) => {
                        found
                            .entry(name.to_string())
                            .or_insert((None, TargetState::Started))
                            .0 = Some(s.properties)
                    }
                    Err(e) => {
                        tracing::warn!(connector = name, error = %e, "unreadable stored config; ignored")
                    }
                }
            } else if let Some(name) = k.strip_prefix("target-state-") {
                #[derive(Deserialize)]
                struct Target {
                    state: TargetState,
                }
                if let Ok(t) = serde_json::from_slice::<Target>(&v) {
                    found
                        .entry(name.to_string())
                        .or_insert((None, TargetState::Started))
                        .1 = t.state;
                }
            }
        }
        {
            let mut map = rt.inner.connectors.lock().await;
            for (name, (config, target)) in found {
                let Some(config) = config else { continue };
                tracing::info!(connector = %name, ?target, "resuming connector");
                let c = rt.launch(&name, config, target).await;
                map.insert(name, c);
            }
        }
        let every = rt.inner.cfg.topic_refresh_interval;
        if !every.is_zero() {
            let h = tokio::spawn(watch_topics(Arc::downgrade(&rt.inner), every));
            *rt.inner.refresher.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
        }
        Ok(rt)
    }

    /// The worker's settings.
    pub fn worker(&self) -> &WorkerConfig {
        &self.inner.cfg
    }

    /// The cluster id of the cluster it runs over.
    pub fn cluster_id(&self) -> String {
        self.inner.cluster.cluster_id()
    }

    /// Checks a config fully (runtime keys, the plugin's class and its keys, converters and
    /// the transform chain, each WebAssembly transform's keys).
    fn validate(
        &self,
        name: &str,
        raw: &ConfigMap,
    ) -> Result<(ConnectorConfig, Resolved, Pipe), ConnectError> {
        let mut resolved = self.inner.cfg.providers.resolve(raw)?;
        if let Some(base) = &self.inner.cfg.work_dir {
            for key in ["file", "directory", "database.path"] {
                if let Some(v) = resolved.get_mut(key)
                    && !v.trim().is_empty()
                    && !std::path::Path::new(v.trim()).is_absolute()
                {
                    *v = base.join(v.trim()).display().to_string();
                }
            }
        }
        let cc = ConnectorConfig::parse(name, &resolved)?;
        let r = self.inner.registry.resolve(&cc.class)?;
        match r.kind {
            Kind::Sink => match (cc.topics.is_empty(), cc.topics_regex.is_some()) {
                (true, false) => {
                    return Err(ConnectError::BadConfig(
                        "topics: a sink connector needs topics or topics.regex".into(),
                    ));
                }
                (false, true) => {
                    return Err(ConnectError::BadConfig(
                        "topics.regex: topics and topics.regex cannot both be set".into(),
                    ));
                }
                _ => {}
            },
            Kind::Source => {
                if raw.contains_key("topics") || raw.contains_key("topics.regex") {
                    return Err(ConnectError::BadConfig(
                        "topics: only sink connectors read topics (a source names where it writes, e.g. with `topic`)".into(),
                    ));
                }
            }
        }
        let mut problems = weir_host::check_config(&r.descriptor, &cc.plugin_keys());
        if problems.is_empty() {
            // The plugin's own checks, as Kafka Connect's validate asks the connector.
            problems = r
                .plugin
                .validate(self.inner.registry.host(), &cc.plugin_keys())
                .map_err(|e| ConnectError::BadConfig(e.to_string()))?;
        }
        if !problems.is_empty() {
            return Err(ConnectError::BadConfig(problems.join("; ")));
        }
        let pipe = self.pipe(&cc, &r)?;
        Ok((cc, r, pipe))
    }

    /// The connector's converters, formats and transform chain.
    fn pipe(&self, cc: &ConnectorConfig, r: &Resolved) -> Result<Pipe, ConnectError> {
        let registry = &self.inner.registry;
        let chain = Chain::parse(&cc.raw, &|ty| registry.resolve_transform(ty).map(|_| ()))?;
        let mut wasm = Vec::new();
        for (index, plugin, config) in chain.wasm_steps() {
            let key = format!("transforms.{}", chain.steps[index].name);
            let p = registry.resolve_transform(&plugin)?;
            let (grants, own) = weir_host::TaskConfig::from_config(&config)
                .map_err(|e| ConnectError::BadConfig(format!("{key}: {e}")))?;
            let d = p
                .describe(registry.host())
                .map_err(|e| ConnectError::BadConfig(format!("{key}.type: {e}")))?;
            let problems = weir_host::check_config(&d, &own);
            if !problems.is_empty() {
                return Err(ConnectError::BadConfig(
                    problems
                        .iter()
                        .map(|p| format!("{key}.{p}"))
                        .collect::<Vec<_>>()
                        .join("; "),
                ));
            }
            wasm.push(WasmStep {
                index,
                plugin: p,
                config: own,
                grants,
            });
        }
        // What the plugin says its bytes are, unless the connector says otherwise.
        let declared = |k: &str| -> Result<Format, ConnectError> {
            match r
                .descriptor
                .config
                .iter()
                .find(|c| c.name == k)
                .and_then(|c| c.default_value.clone())
            {
                Some(v) => Format::parse(k, &v),
                None => Ok(Format::Bytes),
            }
        };
        Ok(Pipe {
            chain,
            key_converter: cc.key_converter,
            value_converter: cc.value_converter,
            key_format: match cc.key_format {
                Some(f) => f,
                None => declared("weir.key.format")?,
            },
            value_format: match cc.value_format {
                Some(f) => f,
                None => declared("weir.value.format")?,
            },
            wasm,
        })
    }

    /// Starts a connector's tasks (or records why it cannot run).
    async fn launch(&self, name: &str, config: ConfigMap, target: TargetState) -> Connector {
        let mut c = Connector {
            kind: Kind::Source,
            config: config.clone(),
            target,
            task_configs: Vec::new(),
            tasks: Vec::new(),
            failed: None,
            spawner: None,
            secrets: Default::default(),
        };
        let (cc, resolved, pipe) = match self.validate(name, &config) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(connector = %name, error = %e, "connector cannot start");
                c.failed = Some(e.to_string());
                self.publish_connector(name, State::Failed, c.failed.clone())
                    .await;
                return c;
            }
        };
        c.kind = resolved.kind;
        c.secrets = resolved
            .descriptor
            .config
            .iter()
            .filter(|k| k.secret || k.type_ == weir_host::types::ConfigType::Password)
            .map(|k| k.name.clone())
            .collect();
        if target == TargetState::Stopped {
            self.publish_connector(name, State::Stopped, None).await;
            return c;
        }
        match self
            .start_tasks(&cc, &resolved, pipe, target == TargetState::Paused)
            .await
        {
            Ok((configs, tasks, spawner)) => {
                c.task_configs = configs;
                c.tasks = tasks;
                c.spawner = Some(spawner);
                let state = if target == TargetState::Paused {
                    State::Paused
                } else {
                    State::Running
                };
                self.publish_connector(name, state, None).await;
            }
            Err(e) => {
                tracing::error!(connector = %name, error = %e, "connector cannot start");
                c.failed = Some(e.to_string());
                self.publish_connector(name, State::Failed, c.failed.clone())
                    .await;
            }
        }
        c
    }

    /// Splits the work into task configs and starts a thread per task.
    async fn start_tasks(
        &self,
        cc: &ConnectorConfig,
        r: &Resolved,
        pipe: Pipe,
        paused: bool,
    ) -> Result<(Vec<ConfigMap>, Vec<Running>, Spawner), ConnectError> {
        let pipe = Arc::new(pipe);
        let host = self.inner.registry.host().clone();
        let (plugin, keys, grants, max) = (
            r.plugin.clone(),
            cc.plugin_keys(),
            cc.task.clone(),
            cc.tasks_max,
        );
        let configs =
            tokio::task::spawn_blocking(move || plugin.task_configs(&host, &keys, max, &grants))
                .await
                .map_err(|e| ConnectError::Internal(e.to_string()))?
                .map_err(|e| ConnectError::BadConfig(e.to_string()))?;
        if configs.is_empty() {
            return Err(ConnectError::BadConfig(format!(
                "connector {} generated no task configs",
                cc.name
            )));
        }
        let configs: Vec<Vec<(String, String)>> =
            configs.into_iter().take(cc.tasks_max as usize).collect();
        let assignments = match r.kind {
            Kind::Sink => self.assign(cc, configs.len()).await?,
            Kind::Source => vec![Vec::new(); configs.len()],
        };
        let spawner = Spawner {
            rt: tokio::runtime::Handle::current(),
            cluster: self.inner.cluster.clone(),
            host: self.inner.registry.host().clone(),
            plugin: r.plugin.clone(),
            kind: r.kind,
            connector: cc.name.clone(),
            class: cc.class.clone(),
            configs: configs.clone(),
            assignments,
            topics: cc.topics.clone(),
            topics_regex: cc.topics_regex.clone(),
            grants: cc.task.clone(),
            errors: cc.errors.clone(),
            worker: self.inner.cfg.clone(),
            status: self.inner.status.clone(),
            offsets: self.inner.offsets.clone(),
            default_topic: cc.raw.get("topic").cloned(),
            pipe,
        };
        let mut tasks = Vec::new();
        for i in 0..configs.len() {
            tasks.push(spawner.spawn(i, paused)?);
        }
        let configs = configs
            .into_iter()
            .map(|c| c.into_iter().collect())
            .collect();
        tracing::info!(connector = %cc.name, tasks = tasks.len(), "connector started");
        Ok((configs, tasks, spawner))
    }

    /// Spreads a sink's topic partitions over its tasks, round robin in (topic, partition)
    /// order.
    async fn assign(
        &self,
        cc: &ConnectorConfig,
        tasks: usize,
    ) -> Result<Vec<Vec<(String, i32)>>, ConnectError> {
        for t in &cc.topics {
            self.inner.cluster.ensure_topic(t).await?;
        }
        let listed = self.inner.cluster.topics().await?;
        Ok(spread(
            subscribed(&cc.topics, cc.topics_regex.as_ref(), &listed),
            tasks,
        ))
    }

    /// Checks every RUNNING or PAUSED sink's (topic, partition)s against the topics as they
    /// are now, and rebalances those whose set changed, as a Kafka rebalance would: their
    /// tasks stop (final flush and commit) and start again from the committed offsets. The
    /// connectors' lock is not held while tasks stop. Other connectors are not touched.
    async fn refresh_assignments(&self) {
        let watched = |c: &Connector| {
            c.failed.is_none()
                && c.target != TargetState::Stopped
                && c.spawner.as_ref().is_some_and(|s| s.kind == Kind::Sink)
        };
        // Under the lock: the sinks whose partitions changed get their new assignment, and
        // their tasks are taken out to be stopped.
        let mut stopping = Vec::new();
        let mut moved = Vec::new();
        {
            let mut map = self.inner.connectors.lock().await;
            if !map.values().any(watched) {
                return;
            }
            let listed = match self.inner.cluster.topics().await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list topics to check sink assignments");
                    return;
                }
            };
            for (name, c) in map.iter_mut() {
                if !watched(c) {
                    continue;
                }
                let Some(s) = c.spawner.as_mut() else {
                    continue;
                };
                let want = subscribed(&s.topics, s.topics_regex.as_ref(), &listed);
                let old: BTreeSet<(String, i32)> =
                    s.assignments.iter().flatten().cloned().collect();
                let new: BTreeSet<(String, i32)> = want.iter().cloned().collect();
                if old == new {
                    continue;
                }
                let show = |a: &BTreeSet<(String, i32)>, b: &BTreeSet<(String, i32)>| {
                    a.difference(b)
                        .map(|(t, p)| format!("{t}-{p}"))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                tracing::info!(
                    connector = %name,
                    added = %show(&new, &old),
                    removed = %show(&old, &new),
                    partitions = new.len(),
                    "sink assignment changed; restarting its tasks"
                );
                s.assignments = spread(want, s.configs.len());
                stopping.extend(std::mem::take(&mut c.tasks));
                moved.push((name.clone(), s.assignments.clone()));
            }
        }
        if moved.is_empty() {
            return;
        }
        // Outside the lock: every task stops (final flush and commit) while the REST API
        // goes on answering.
        Runtime::stop_tasks(stopping).await;
        // Each starts again from the committed offsets, unless the connector changed
        // meanwhile (deleted, stopped, reconfigured or restarted: someone else owns it now).
        let mut map = self.inner.connectors.lock().await;
        for (name, assigned) in moved {
            let Some(c) = map.get_mut(&name) else {
                continue;
            };
            let Some(spawner) = c.spawner.as_ref() else {
                continue;
            };
            if !c.tasks.is_empty() || !watched(c) || spawner.assignments != assigned {
                continue;
            }
            let paused = c.target == TargetState::Paused;
            for i in 0..spawner.configs.len() {
                let running = spawner.spawn(i, paused).unwrap_or_else(|e| {
                    tracing::error!(connector = %name, task = i, error = %e, "task cannot start");
                    let control = Control::new(i as u32, paused);
                    control.fail(e.to_string());
                    Running {
                        control,
                        thread: None,
                    }
                });
                c.tasks.push(running);
            }
        }
    }

    /// Stops a connector's tasks and waits for them (final flush, commit, close).
    async fn stop_tasks(tasks: Vec<Running>) {
        for t in &tasks {
            t.control.stop();
        }
        let _ = tokio::task::spawn_blocking(move || {
            for mut t in tasks {
                if let Some(h) = t.thread.take()
                    && h.join().is_err()
                {
                    tracing::error!(task = t.control.id, "task thread panicked");
                }
            }
        })
        .await;
    }

    async fn publish_connector(&self, name: &str, state: State, trace: Option<String>) {
        let st = ConnectorState {
            state,
            worker_id: self.inner.cfg.worker_id.clone(),
            trace,
        };
        let key = format!("status-connector-{name}").into_bytes();
        let v = serde_json::to_vec(&st).unwrap_or_default();
        if let Err(e) = self.inner.status.put(&[(key, Some(v))]).await {
            tracing::warn!(connector = %name, error = %e, "cannot store the connector status");
        }
    }

    async fn store_config(
        &self,
        name: &str,
        config: &ConfigMap,
        target: TargetState,
    ) -> Result<(), ConnectError> {
        let props = serde_json::to_vec(&serde_json::json!({ "properties": config }))
            .map_err(|e| ConnectError::Internal(e.to_string()))?;
        let t = serde_json::to_vec(&serde_json::json!({ "state": target }))
            .map_err(|e| ConnectError::Internal(e.to_string()))?;
        self.inner
            .configs
            .put(&[(config_key(name), Some(props)), (target_key(name), Some(t))])
            .await
    }

    /// `POST /connectors`: 409 when the name exists.
    pub async fn create(
        &self,
        name: &str,
        config: ConfigMap,
    ) -> Result<ConnectorInfo, ConnectError> {
        let config = with_name(name, config);
        let mut map = self.inner.connectors.lock().await;
        if map.contains_key(name) {
            return Err(ConnectError::Exists(name.to_string()));
        }
        self.validate(name, &config)?;
        self.store_config(name, &config, TargetState::Started)
            .await?;
        let c = self.launch(name, config, TargetState::Started).await;
        let info = info(name, &c);
        map.insert(name.to_string(), c);
        Ok(info)
    }

    /// `PUT /connectors/{name}/config`: creates or replaces; `true` when it was created. A
    /// changed connector restarts its tasks in the target state it had.
    pub async fn put_config(
        &self,
        name: &str,
        config: ConfigMap,
    ) -> Result<(bool, ConnectorInfo), ConnectError> {
        let mut config = with_name(name, config);
        let mut map = self.inner.connectors.lock().await;
        // A secret shown masked and sent back unchanged keeps its value.
        if let Some(old) = map.get(name) {
            for (k, v) in config.iter_mut() {
                if v == HIDDEN
                    && old.is_secret(k)
                    && let Some(prev) = old.config.get(k)
                {
                    *v = prev.clone();
                }
            }
        }
        self.validate(name, &config)?;
        let (created, target) = match map.remove(name) {
            None => (true, TargetState::Started),
            Some(old) => {
                let target = old.target;
                if old.config == config && old.failed.is_none() {
                    let info = info(name, &old);
                    map.insert(name.to_string(), old);
                    return Ok((false, info));
                }
                Runtime::stop_tasks(old.tasks).await;
                (false, target)
            }
        };
        self.store_config(name, &config, target).await?;
        let c = self.launch(name, config, target).await;
        let info = info(name, &c);
        map.insert(name.to_string(), c);
        Ok((created, info))
    }

    /// Connectors declared in the configuration file: created or updated at start (the file
    /// wins, as in Kafka standalone). A bad declaration is an error, so the process can refuse
    /// to start with it.
    pub async fn declare(&self, name: &str, config: ConfigMap) -> Result<(), ConnectError> {
        self.put_config(name, config).await.map(|_| ())
    }

    /// `DELETE /connectors/{name}`: stops its tasks (final flush and commits) and forgets it.
    /// Its committed sink offsets and source offsets stay, as in Kafka Connect.
    pub async fn delete(&self, name: &str) -> Result<(), ConnectError> {
        let mut map = self.inner.connectors.lock().await;
        let c = map
            .remove(name)
            .ok_or_else(|| ConnectError::NotFound(name.to_string()))?;
        let ntasks = c.task_configs.len().max(c.tasks.len());
        Runtime::stop_tasks(c.tasks).await;
        self.inner
            .configs
            .put(&[(config_key(name), None), (target_key(name), None)])
            .await?;
        let mut tomb = vec![(format!("status-connector-{name}").into_bytes(), None)];
        tomb.extend((0..ntasks).map(|i| (format!("status-task-{name}-{i}").into_bytes(), None)));
        if let Err(e) = self.inner.status.put(&tomb).await {
            tracing::warn!(connector = %name, error = %e, "cannot clear the connector's statuses");
        }
        tracing::info!(connector = %name, "connector deleted");
        Ok(())
    }

    /// `PUT /pause`, `/resume`, `/stop`.
    pub async fn set_target(&self, name: &str, target: TargetState) -> Result<(), ConnectError> {
        let mut map = self.inner.connectors.lock().await;
        let c = map
            .get_mut(name)
            .ok_or_else(|| ConnectError::NotFound(name.to_string()))?;
        if c.target == target {
            return Ok(());
        }
        let t = serde_json::to_vec(&serde_json::json!({ "state": target }))
            .map_err(|e| ConnectError::Internal(e.to_string()))?;
        self.inner
            .configs
            .put(&[(target_key(name), Some(t))])
            .await?;
        let was = c.target;
        c.target = target;
        match target {
            TargetState::Stopped => {
                Runtime::stop_tasks(std::mem::take(&mut c.tasks)).await;
                self.publish_connector(name, State::Stopped, None).await;
            }
            TargetState::Paused | TargetState::Started
                if was != TargetState::Stopped && c.failed.is_none() =>
            {
                let paused = target == TargetState::Paused;
                for t in &c.tasks {
                    t.control.set_paused(paused);
                }
                let state = if paused {
                    State::Paused
                } else {
                    State::Running
                };
                self.publish_connector(name, state, None).await;
            }
            _ => {
                // From STOPPED (or a failed start): start again.
                let config = c.config.clone();
                let old = std::mem::take(&mut c.tasks);
                Runtime::stop_tasks(old).await;
                let fresh = self.launch(name, config, target).await;
                *c = fresh;
            }
        }
        tracing::info!(connector = %name, ?target, "connector target state changed");
        Ok(())
    }

    /// Connector names, sorted.
    pub async fn connectors(&self) -> Vec<String> {
        self.inner.connectors.lock().await.keys().cloned().collect()
    }

    /// `GET /connectors/{name}`.
    pub async fn info(&self, name: &str) -> Result<ConnectorInfo, ConnectError> {
        let map = self.inner.connectors.lock().await;
        let c = map
            .get(name)
            .ok_or_else(|| ConnectError::NotFound(name.to_string()))?;
        Ok(info(name, c))
    }

    /// `GET /connectors/{name}/config`.
    pub async fn config(&self, name: &str) -> Result<ConfigMap, ConnectError> {
        Ok(self.info(name).await?.config)
    }

    /// `GET /connectors/{name}/status`. A connector whose tasks have all failed is FAILED,
    /// never RUNNING.
    pub async fn status(&self, name: &str) -> Result<ConnectorStatus, ConnectError> {
        let map = self.inner.connectors.lock().await;
        let c = map
            .get(name)
            .ok_or_else(|| ConnectError::NotFound(name.to_string()))?;
        Ok(self.status_of(name, c))
    }

    fn status_of(&self, name: &str, c: &Connector) -> ConnectorStatus {
        let wid = &self.inner.cfg.worker_id;
        let tasks: Vec<TaskStatus> = c.tasks.iter().map(|t| t.control.status(wid)).collect();
        let failed = tasks.iter().filter(|t| t.state == State::Failed).count();
        let (state, trace) = if let Some(e) = &c.failed {
            (State::Failed, Some(e.clone()))
        } else {
            match c.target {
                TargetState::Stopped => (State::Stopped, None),
                TargetState::Paused => (State::Paused, None),
                TargetState::Started if !tasks.is_empty() && failed == tasks.len() => (
                    State::Failed,
                    Some(format!("all {} of its tasks have failed", tasks.len())),
                ),
                TargetState::Started => (State::Running, None),
            }
        };
        ConnectorStatus {
            name: name.to_string(),
            connector: ConnectorState {
                state,
                worker_id: wid.clone(),
                trace,
            },
            tasks,
            kind: c.kind,
        }
    }

    /// Every connector's status and info (for `?expand=`).
    pub async fn all(&self) -> Vec<(ConnectorInfo, ConnectorStatus)> {
        let map = self.inner.connectors.lock().await;
        map.iter()
            .map(|(n, c)| (info(n, c), self.status_of(n, c)))
            .collect()
    }

    /// `GET /connectors/{name}/tasks`.
    pub async fn tasks(&self, name: &str) -> Result<Vec<TaskInfo>, ConnectError> {
        let map = self.inner.connectors.lock().await;
        let c = map
            .get(name)
            .ok_or_else(|| ConnectError::NotFound(name.to_string()))?;
        Ok(c.task_configs
            .iter()
            .enumerate()
            .map(|(i, cfg)| TaskInfo {
                id: TaskId {
                    connector: name.to_string(),
                    task: i as u32,
                },
                config: c.masked(cfg),
            })
            .collect())
    }

    /// `GET /connectors/{name}/tasks/{id}/status`.
    pub async fn task_status(&self, name: &str, id: u32) -> Result<TaskStatus, ConnectError> {
        let st = self.status(name).await?;
        st.tasks
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| ConnectError::TaskNotFound(name.to_string(), id))
    }

    /// `GET /connector-plugins` (`connectorsOnly=false`: transforms and predicates too).
    pub async fn plugins(&self, connectors_only: bool) -> Vec<PluginInfo> {
        let reg = self.inner.registry.clone();
        tokio::task::spawn_blocking(move || reg.plugins(connectors_only))
            .await
            .unwrap_or_default()
    }

    /// `POST /connectors/{name}/restart`: `None` (204) when only the connector instance is
    /// restarted (a connector that failed to start is started again); otherwise the tasks
    /// chosen (all, or only the FAILED ones) are restarted and the status returned (202), with
    /// those tasks RESTARTING.
    pub async fn restart(
        &self,
        name: &str,
        include_tasks: bool,
        only_failed: bool,
    ) -> Result<Option<ConnectorStatus>, ConnectError> {
        let mut map = self.inner.connectors.lock().await;
        let c = map
            .get_mut(name)
            .ok_or_else(|| ConnectError::NotFound(name.to_string()))?;
        let before = self.status_of(name, c);
        let connector_failed = c.failed.is_some();
        if connector_failed || c.spawner.is_none() {
            if connector_failed || !only_failed {
                if c.target == TargetState::Stopped {
                    return Ok((include_tasks || only_failed).then_some(before));
                }
                let old = std::mem::take(&mut c.tasks);
                Runtime::stop_tasks(old).await;
                let fresh = self.launch(name, c.config.clone(), c.target).await;
                *c = fresh;
            }
            if !include_tasks && !only_failed {
                return Ok(None);
            }
            let mut st = before;
            st.connector.state = State::Restarting;
            for t in &mut st.tasks {
                t.state = State::Restarting;
            }
            return Ok(Some(st));
        }
        if !include_tasks && !only_failed {
            return Ok(None);
        }
        let mut st = before;
        if !only_failed || st.connector.state == State::Failed {
            st.connector.state = State::Restarting;
        }
        if include_tasks {
            let paused = c.target == TargetState::Paused;
            for (i, t) in st.tasks.iter_mut().enumerate() {
                if only_failed && t.state != State::Failed {
                    continue;
                }
                t.state = State::Restarting;
                t.trace = None;
                self.restart_one(c, i, paused).await?;
            }
        }
        Ok(Some(st))
    }

    /// `POST /connectors/{name}/tasks/{id}/restart`.
    pub async fn restart_task(&self, name: &str, id: u32) -> Result<(), ConnectError> {
        let mut map = self.inner.connectors.lock().await;
        let c = map
            .get_mut(name)
            .ok_or_else(|| ConnectError::NotFound(name.to_string()))?;
        if id as usize >= c.tasks.len() {
            return Err(ConnectError::TaskNotFound(name.to_string(), id));
        }
        let paused = c.target == TargetState::Paused;
        self.restart_one(c, id as usize, paused).await
    }

    async fn restart_one(
        &self,
        c: &mut Connector,
        i: usize,
        paused: bool,
    ) -> Result<(), ConnectError> {
        let Some(spawner) = c.spawner.clone() else {
            return Ok(());
        };
        let placeholder = Running {
            control: Control::new(i as u32, paused),
            thread: None,
        };
        let old = std::mem::replace(&mut c.tasks[i], placeholder);
        Runtime::stop_tasks(vec![old]).await;
        c.tasks[i] = spawner.spawn(i, paused)?;
        tracing::info!(connector = %spawner.connector, task = i, "task restarted");
        Ok(())
    }

    /// `PATCH /connectors/{name}/config`: keys with `None` are removed, the others set.
    pub async fn patch_config(
        &self,
        name: &str,
        patch: BTreeMap<String, Option<String>>,
    ) -> Result<ConnectorInfo, ConnectError> {
        let mut config = self.config(name).await?;
        for (k, v) in patch {
            match v {
                Some(v) => config.insert(k, v),
                None => config.remove(&k),
            };
        }
        Ok(self.put_config(name, config).await?.1)
    }

    /// `GET /connectors/{name}/topics`: the topics its tasks read or wrote.
    pub async fn topics(&self, name: &str) -> Result<Vec<String>, ConnectError> {
        let map = self.inner.connectors.lock().await;
        let c = map
            .get(name)
            .ok_or_else(|| ConnectError::NotFound(name.to_string()))?;
        let mut out: std::collections::BTreeSet<String> =
            c.tasks.iter().flat_map(|t| t.control.topics()).collect();
        if let Some(s) = &c.spawner {
            out.extend(s.assignments.iter().flatten().map(|(t, _)| t.clone()));
        }
        Ok(out.into_iter().collect())
    }

    /// `PUT /connectors/{name}/topics/reset`.
    pub async fn reset_topics(&self, name: &str) -> Result<(), ConnectError> {
        let map = self.inner.connectors.lock().await;
        let c = map
            .get(name)
            .ok_or_else(|| ConnectError::NotFound(name.to_string()))?;
        for t in &c.tasks {
            t.control.reset_topics();
        }
        Ok(())
    }

    /// `GET /connectors/{name}/offsets`, in Kafka's JSON: a source's partitions and offsets as
    /// its plugin keeps them; a sink's `kafka_topic`/`kafka_partition` → `kafka_offset`.
    pub async fn offsets(&self, name: &str) -> Result<serde_json::Value, ConnectError> {
        let kind = self.info(name).await?.kind;
        let mut out = Vec::new();
        match kind {
            Kind::Source => {
                for (k, v) in self.inner.offsets.read_all().await? {
                    if let Some((c, p)) = crate::store::parse_offset_key(&k)
                        && c == name
                    {
                        let offset: serde_json::Value =
                            serde_json::from_slice(&v).unwrap_or(serde_json::Value::Null);
                        out.push(serde_json::json!({
                            "partition": crate::store::bytes_to_json(&p),
                            "offset": offset,
                        }));
                    }
                }
            }
            Kind::Sink => {
                let group = sink::group(name);
                for ((t, p), o) in self.inner.cluster.committed(&group).await? {
                    out.push(serde_json::json!({
                        "partition": {"kafka_topic": t, "kafka_partition": p},
                        "offset": {"kafka_offset": o},
                    }));
                }
            }
        }
        Ok(serde_json::json!({ "offsets": out }))
    }

    /// `PATCH /connectors/{name}/offsets` (`Some`) and `DELETE` (`None`): only while the
    /// connector is STOPPED, as in Kafka Connect.
    pub async fn alter_offsets(
        &self,
        name: &str,
        offsets: Option<Vec<(serde_json::Value, Option<serde_json::Value>)>>,
    ) -> Result<String, ConnectError> {
        let map = self.inner.connectors.lock().await;
        let c = map
            .get(name)
            .ok_or_else(|| ConnectError::NotFound(name.to_string()))?;
        if c.target != TargetState::Stopped {
            return Err(ConnectError::BadConfig(format!(
                "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for the specified connector by issuing a 'PUT' request to the '/connectors/{name}/stop' endpoint"
            )));
        }
        let reset = offsets.is_none();
        match (c.kind, offsets) {
            (Kind::Source, offsets) => {
                let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = match offsets {
                    Some(list) => list
                        .into_iter()
                        .map(|(p, o)| {
                            let key =
                                crate::store::offset_key(name, &crate::store::json_to_bytes(&p));
                            (key, o.map(|o| serde_json::to_vec(&o).unwrap_or_default()))
                        })
                        .collect(),
                    None => self
                        .inner
                        .offsets
                        .read_all()
                        .await?
                        .into_iter()
                        .filter(|(k, _)| {
                            crate::store::parse_offset_key(k).is_some_and(|(c, _)| c == name)
                        })
                        .map(|(k, _)| (k, None))
                        .collect(),
                };
                self.inner.offsets.put(&records).await?;
            }
            (Kind::Sink, None) => {
                self.inner.cluster.delete_group(&sink::group(name)).await?;
            }
            (Kind::Sink, Some(list)) => {
                let mut commit = weir_cluster::GroupOffsets::new();
                for (p, o) in list {
                    let bad = || {
                        ConnectError::BadConfig(format!(
                            "offsets: a sink's partition is {{\"kafka_topic\": ..., \"kafka_partition\": ...}} and its offset {{\"kafka_offset\": ...}}; got {p} -> {o:?}"
                        ))
                    };
                    let t = p
                        .get("kafka_topic")
                        .and_then(|t| t.as_str())
                        .ok_or_else(bad)?;
                    let n = p
                        .get("kafka_partition")
                        .and_then(|n| n.as_i64())
                        .ok_or_else(bad)?;
                    let Some(o) = o.clone() else {
                        return Err(ConnectError::BadConfig(
                            "offsets: resetting one partition of a sink is not supported yet; DELETE the connector's offsets to reset them all".into(),
                        ));
                    };
                    let off = o
                        .get("kafka_offset")
                        .and_then(|x| x.as_i64())
                        .ok_or_else(bad)?;
                    commit.insert((t.to_string(), n as i32), off);
                }
                self.inner
                    .cluster
                    .commit(&sink::group(name), commit)
                    .await?;
            }
        }
        Ok(if reset {
            "The offsets for this connector have been reset successfully".into()
        } else {
            "The offsets for this connector have been altered successfully".into()
        })
    }

    /// `PUT /connector-plugins/{plugin}/config/validate`, in Kafka's response shape.
    pub async fn validate_config(
        &self,
        class: &str,
        mut raw: ConfigMap,
    ) -> Result<serde_json::Value, ConnectError> {
        raw.entry("connector.class".into())
            .or_insert_with(|| class.to_string());
        let name = raw
            .get("name")
            .cloned()
            .unwrap_or_else(|| "validate".into());
        let rt = self.clone();
        let class = class.to_string();
        tokio::task::spawn_blocking(move || rt.validate_blocking(&class, &name, &raw))
            .await
            .map_err(|e| ConnectError::Internal(e.to_string()))?
    }

    fn validate_blocking(
        &self,
        class: &str,
        name: &str,
        raw: &ConfigMap,
    ) -> Result<serde_json::Value, ConnectError> {
        let resolved = self.inner.registry.resolve(class)?;
        let problems: Vec<String> = match self.validate(name, raw) {
            Ok(_) => Vec::new(),
            Err(ConnectError::BadConfig(m)) => m.split("; ").map(str::to_string).collect(),
            Err(e) => return Err(e),
        };
        let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut general = Vec::new();
        for p in problems {
            match p.split_once(": ") {
                Some((k, why)) if !k.contains(' ') => errors
                    .entry(k.to_string())
                    .or_default()
                    .push(why.to_string()),
                _ => general.push(p),
            }
        }
        let mut configs = Vec::new();
        let common: &[(&str, &str, &str)] = &[
            (
                "name",
                "STRING",
                "Globally unique name to use for this connector.",
            ),
            (
                "connector.class",
                "STRING",
                "Name or alias of the class (or the Weir plugin name) for this connector.",
            ),
            (
                "tasks.max",
                "INT",
                "Maximum number of tasks to use for this connector.",
            ),
            (
                "key.converter",
                "CLASS",
                "Converter class used to convert between Kafka Connect format and the serialized form that is written to Kafka.",
            ),
            (
                "value.converter",
                "CLASS",
                "Converter class used to convert between Kafka Connect format and the serialized form that is written to Kafka.",
            ),
            (
                "transforms",
                "LIST",
                "Aliases for the transformations to be applied to records.",
            ),
            (
                "predicates",
                "LIST",
                "Aliases for the predicates used by transformations.",
            ),
            (
                "errors.tolerance",
                "STRING",
                "Behavior for tolerating errors during connector operation: none or all.",
            ),
            (
                "errors.deadletterqueue.topic.name",
                "STRING",
                "The name of the topic to be used as the dead letter queue.",
            ),
        ];
        let mut order = 0;
        let mut entry = |name: &str,
                         ty: &str,
                         required: bool,
                         default: Option<String>,
                         doc: &str,
                         group: &str,
                         secret: bool| {
            order += 1;
            let value = raw.get(name).map(|v| {
                if secret {
                    "[hidden]".to_string()
                } else {
                    v.clone()
                }
            });
            serde_json::json!({
                "definition": {
                    "name": name, "type": ty, "required": required, "default_value": default,
                    "importance": if required { "HIGH" } else { "MEDIUM" }, "documentation": doc,
                    "group": group, "width": "MEDIUM", "display_name": name, "dependents": [], "order": order,
                },
                "value": {
                    "name": name, "value": value, "recommended_values": [],
                    "errors": errors.get(name).cloned().unwrap_or_default(), "visible": true,
                },
            })
        };
        for (n, ty, doc) in common {
            configs.push(entry(
                n,
                ty,
                *n == "connector.class" || *n == "name",
                None,
                doc,
                "Common",
                false,
            ));
        }
        if resolved.kind == Kind::Sink {
            configs.push(entry(
                "topics",
                "LIST",
                false,
                None,
                "List of topics to consume, separated by commas.",
                "Common",
                false,
            ));
            configs.push(entry(
                "topics.regex",
                "STRING",
                false,
                None,
                "Regular expression giving topics to consume.",
                "Common",
                false,
            ));
        }
        for k in &resolved.descriptor.config {
            let ty = match k.type_ {
                weir_host::types::ConfigType::String => "STRING",
                weir_host::types::ConfigType::Int => "INT",
                weir_host::types::ConfigType::Long => "LONG",
                weir_host::types::ConfigType::Double => "DOUBLE",
                weir_host::types::ConfigType::Boolean => "BOOLEAN",
                weir_host::types::ConfigType::List => "LIST",
                weir_host::types::ConfigType::Password => "PASSWORD",
            };
            let secret = k.secret || ty == "PASSWORD";
            configs.push(entry(
                &k.name,
                ty,
                k.required,
                k.default_value.clone(),
                &k.documentation,
                "Connector",
                secret,
            ));
        }
        let error_count = errors.values().map(Vec::len).sum::<usize>() + general.len();
        if !general.is_empty() {
            // Errors not tied to a key are reported on connector.class, as Kafka reports
            // connector-level problems.
            if let Some(a) = configs
                .get_mut(1)
                .and_then(|v| v["value"]["errors"].as_array_mut())
            {
                a.extend(general.into_iter().map(serde_json::Value::String));
            }
        }
        Ok(serde_json::json!({
            "name": resolved.descriptor.name,
            "error_count": error_count,
            "groups": ["Common", "Connector"],
            "configs": configs,
        }))
    }

    /// `GET /connector-plugins/{plugin}/config`: the plugin's keys in Kafka's format.
    pub async fn plugin_config(&self, class: &str) -> Result<serde_json::Value, ConnectError> {
        let v = self.validate_config(class, ConfigMap::new()).await?;
        let defs: Vec<serde_json::Value> = v["configs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|c| c["definition"]["group"] == "Connector")
                    .map(|c| c["definition"].clone())
                    .collect()
            })
            .unwrap_or_default();
        Ok(serde_json::Value::Array(defs))
    }

    /// Stops every task (final flush, commits, close). The stored configs stay, so the next
    /// start resumes them.
    pub async fn shutdown(&self) {
        let mut map = self.inner.connectors.lock().await;
        // Taken while holding the map: no rebalance is under way.
        if let Some(h) = self
            .inner
            .refresher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            h.abort();
        }
        let mut all = Vec::new();
        for c in map.values_mut() {
            all.extend(std::mem::take(&mut c.tasks));
        }
        tracing::info!(tasks = all.len(), "stopping connectors");
        Runtime::stop_tasks(all).await;
        map.clear();
    }
}

/// Every `every`, checks the sinks' assignments again, until the runtime is gone.
async fn watch_topics(inner: Weak<Inner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        Runtime { inner }.refresh_assignments().await;
    }
}

/// The (topic, partition)s a sink reads, sorted: every partition of its `topics` and of the
/// topics whose name matches its `topics.regex`, among those listed.
fn subscribed(
    topics: &[String],
    regex: Option<&regex::Regex>,
    listed: &[TopicMeta],
) -> Vec<(String, i32)> {
    let mut parts: Vec<(String, i32)> = listed
        .iter()
        .filter(|t| topics.contains(&t.name) || regex.is_some_and(|re| re.is_match(&t.name)))
        .flat_map(|t| (0..t.partitions as i32).map(|p| (t.name.clone(), p)))
        .collect();
    parts.sort();
    parts.dedup();
    parts
}

/// Spreads partitions over the tasks, round robin in (topic, partition) order.
fn spread(parts: Vec<(String, i32)>, tasks: usize) -> Vec<Vec<(String, i32)>> {
    let mut out = vec![Vec::new(); tasks.max(1)];
    for (i, p) in parts.into_iter().enumerate() {
        out[i % tasks.max(1)].push(p);
    }
    out
}

fn with_name(name: &str, mut config: ConfigMap) -> ConfigMap {
    config
        .entry("name".to_string())
        .or_insert_with(|| name.to_string());
    config
}

fn info(name: &str, c: &Connector) -> ConnectorInfo {
    ConnectorInfo {
        name: name.to_string(),
        config: c.masked(&c.config),
        tasks: (0..c.task_configs.len() as u32)
            .map(|task| TaskId {
                connector: name.to_string(),
                task,
            })
            .collect(),
        kind: c.kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sinks_partitions_come_from_its_topics_and_pattern_and_are_spread() {
        let listed: Vec<TopicMeta> = [("events-a", 2), ("events-b", 1), ("logs", 3), ("x", 1)]
            .iter()
            .map(|(n, p)| TopicMeta {
                name: n.to_string(),
                partitions: *p,
            })
            .collect();
        let re = regex::Regex::new("^(?:events-.*)$").unwrap();
        let parts = subscribed(&["logs".to_string()], Some(&re), &listed);
        let tp = |t: &str, p: i32| (t.to_string(), p);
        assert_eq!(
            parts,
            [
                tp("events-a", 0),
                tp("events-a", 1),
                tp("events-b", 0),
                tp("logs", 0),
                tp("logs", 1),
                tp("logs", 2),
            ]
        );
        // A topic named but not (or no longer) there has no partitions.
        assert!(subscribed(&["gone".to_string()], None, &listed).is_empty());
        let spread = spread(parts, 4);
        assert_eq!(spread[0], [tp("events-a", 0), tp("logs", 1)]);
        assert_eq!(spread[3], [tp("logs", 0)]);
        assert_eq!(super::spread(Vec::new(), 0), [Vec::new()]);
    }

    #[test]
    fn secrets_are_masked_unless_they_are_references() {
        let c = Connector {
            config: ConfigMap::new(),
            kind: Kind::Source,
            target: TargetState::Started,
            task_configs: Vec::new(),
            tasks: Vec::new(),
            failed: None,
            spawner: None,
            secrets: ["api.credential".to_string()].into_iter().collect(),
        };
        let cfg: ConfigMap = [
            ("api.credential", "xyz"),
            ("connection.password", "hunter2"),
            ("db.password", "${file:/etc/db.properties:password}"),
            ("file", "/tmp/x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let m = c.masked(&cfg);
        assert_eq!(m["api.credential"], HIDDEN);
        assert_eq!(m["connection.password"], HIDDEN);
        assert_eq!(m["db.password"], "${file:/etc/db.properties:password}");
        assert_eq!(m["file"], "/tmp/x");
    }
}
