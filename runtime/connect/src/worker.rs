//! [`Runtime`]: the connectors of one worker, their tasks (one thread each, since plugin calls
//! block), and the stores that let a restarted worker resume them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_cluster::Cluster;

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
        let cc = ConnectorConfig::parse(name, raw)?;
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
        let problems = weir_host::check_config(&r.descriptor, &cc.plugin_keys());
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
        if target == TargetState::Stopped {
            self.publish_connector(name, State::Stopped, None).await;
            return c;
        }
        match self
            .start_tasks(&cc, &resolved, pipe, target == TargetState::Paused)
            .await
        {
            Ok((configs, tasks)) => {
                c.task_configs = configs;
                c.tasks = tasks;
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
    ) -> Result<(Vec<ConfigMap>, Vec<Running>), ConnectError> {
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
        let rt = tokio::runtime::Handle::current();
        let mut tasks = Vec::new();
        for (i, (config, assignment)) in configs.iter().zip(assignments).enumerate() {
            let control = Control::new(i as u32, paused);
            let reporter = Reporter {
                policy: cc.errors.clone(),
                cluster: self.inner.cluster.clone(),
                rt: rt.clone(),
                connector: cc.name.clone(),
                task: i as u32,
                counters: control.counters.clone(),
            };
            let ctx = TaskCtx {
                rt: rt.clone(),
                cluster: self.inner.cluster.clone(),
                host: self.inner.registry.host().clone(),
                plugin: r.plugin.clone(),
                connector: cc.name.clone(),
                config: config.clone(),
                grants: cc.task.clone(),
                control: control.clone(),
                worker: self.inner.cfg.clone(),
                status: self.inner.status.clone(),
                pipe: pipe.clone(),
                reporter,
            };
            let kind = r.kind;
            let offsets = self.inner.offsets.clone();
            let default_topic = cc.raw.get("topic").cloned();
            let thread = std::thread::Builder::new()
                .name(format!("task-{}-{i}", cc.name))
                .spawn(move || {
                    ctx.publish();
                    match kind {
                        Kind::Source => source::run(ctx, offsets, default_topic),
                        Kind::Sink => sink::run(ctx, assignment),
                    }
                })
                .map_err(|e| ConnectError::Internal(format!("cannot start a task thread: {e}")))?;
            tasks.push(Running {
                control,
                thread: Some(thread),
            });
        }
        let configs = configs
            .into_iter()
            .map(|c| c.into_iter().collect())
            .collect();
        tracing::info!(connector = %cc.name, tasks = tasks.len(), "connector started");
        Ok((configs, tasks))
    }

    /// Spreads a sink's topic partitions over its tasks, round robin in (topic, partition)
    /// order.
    async fn assign(
        &self,
        cc: &ConnectorConfig,
        tasks: usize,
    ) -> Result<Vec<Vec<(String, i32)>>, ConnectError> {
        let mut parts = Vec::new();
        for t in &cc.topics {
            let meta = self.inner.cluster.ensure_topic(t).await?;
            parts.extend((0..meta.partitions as i32).map(|p| (t.clone(), p)));
        }
        if let Some(re) = &cc.topics_regex {
            for t in self.inner.cluster.topics().await? {
                if re.is_match(&t.name) {
                    parts.extend((0..t.partitions as i32).map(|p| (t.name.clone(), p)));
                }
            }
        }
        parts.sort();
        parts.dedup();
        let mut out = vec![Vec::new(); tasks.max(1)];
        for (i, p) in parts.into_iter().enumerate() {
            out[i % tasks.max(1)].push(p);
        }
        Ok(out)
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
        let config = with_name(name, config);
        self.validate(name, &config)?;
        let mut map = self.inner.connectors.lock().await;
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
                config: cfg.clone(),
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

    /// Stops every task (final flush, commits, close). The stored configs stay, so the next
    /// start resumes them.
    pub async fn shutdown(&self) {
        let mut map = self.inner.connectors.lock().await;
        let mut all = Vec::new();
        for c in map.values_mut() {
            all.extend(std::mem::take(&mut c.tasks));
        }
        tracing::info!(tasks = all.len(), "stopping connectors");
        Runtime::stop_tasks(all).await;
        map.clear();
    }
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
        config: c.config.clone(),
        tasks: (0..c.task_configs.len() as u32)
            .map(|task| TaskId {
                connector: name.to_string(),
                task,
            })
            .collect(),
        kind: c.kind,
    }
}
