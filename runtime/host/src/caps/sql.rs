//! The `sql` capability: connections to the databases a connector's config grants
//! (`weir.sql.<name>.url`), through the backend the embedder injected
//! ([`crate::Host::with_sql_backend`]). The plugin names a grant and never sees its URL; every
//! error it gets is masked; every call is given a deadline inside the plugin's call deadline
//! (80% of what is left of it), so the database, not the epoch interrupt, ends a slow
//! statement and the task survives it. A task holds at most [`MAX_CONNECTIONS`] connections
//! and [`MAX_CURSORS`] cursors.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::bindings::weir::connector::sql;
use crate::sql::{
    Begin, SqlBackend, SqlChangeStream, SqlConnection, SqlCursor, SqlError, StreamOptions, Value,
};

/// Connections one task may hold at once.
pub(crate) const MAX_CONNECTIONS: usize = 8;
/// Cursors one task may hold at once.
pub(crate) const MAX_CURSORS: usize = 32;
/// Change streams one task may hold at once.
pub(crate) const MAX_STREAMS: usize = 4;

/// A connection as the resource table holds it.
pub struct Connection(Box<dyn SqlConnection>);
/// A cursor as the resource table holds it.
pub struct Cursor(Box<dyn SqlCursor>);
/// A change stream as the resource table holds it.
pub struct ChangeStream(Box<dyn SqlChangeStream>);

/// What the host reports about a task's change streams (slot and retained log), readable
/// from outside the task while it runs.
#[derive(Debug, Clone, Default)]
pub struct StreamStats(Arc<std::sync::Mutex<BTreeMap<u32, SlotStat>>>);

/// One change stream's slot as last measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotStat {
    pub slot: String,
    /// Bytes of log the slot holds back on the server; none until first measured.
    pub retained_bytes: Option<u64>,
}

impl StreamStats {
    /// The task's open change streams.
    pub fn slots(&self) -> Vec<SlotStat> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn set(&self, rep: u32, stat: Option<SlotStat>) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match stat {
            Some(s) => {
                m.insert(rep, s);
            }
            None => {
                m.remove(&rep);
            }
        }
    }
}

pub(crate) struct SqlCtx {
    plugin: String,
    backend: Option<Arc<dyn SqlBackend>>,
    /// Grant name to URL (a secret).
    grants: BTreeMap<String, String>,
    call_deadline: Duration,
    /// When the plugin call in progress must end (set by the runner before each call).
    pub(crate) call_ends: Instant,
    table: ResourceTable,
    connections: usize,
    cursors: usize,
    streams: usize,
    pub(crate) stats: StreamStats,
}

impl SqlCtx {
    pub(crate) fn new(
        plugin: &str,
        backend: Option<Arc<dyn SqlBackend>>,
        grants: &BTreeMap<String, String>,
        call_deadline: Duration,
        stats: StreamStats,
    ) -> SqlCtx {
        SqlCtx {
            plugin: plugin.to_string(),
            backend,
            grants: grants.clone(),
            call_deadline,
            call_ends: Instant::now() + call_deadline,
            table: ResourceTable::new(),
            connections: 0,
            cursors: 0,
            streams: 0,
            stats,
        }
    }

    /// The deadline for one database call: 80% of what is left of the plugin's call.
    fn by(&self) -> Instant {
        let now = Instant::now();
        now + self.call_ends.saturating_duration_since(now).mul_f64(0.8)
    }

    fn conn(&mut self, c: &Resource<Connection>) -> Result<&mut Connection, sql::SqlError> {
        self.table
            .get_mut(c)
            .map_err(|e| sql::SqlError::Statement(format!("bad connection handle: {e}")))
    }

    /// Logs a failure in the task's span (the plugin decides what to do with it).
    fn failed<T>(&self, what: &str, r: Result<T, SqlError>) -> Result<T, sql::SqlError> {
        r.map_err(|e| {
            tracing::debug!(plugin = %self.plugin, error = %e, "sql {what} failed");
            match e {
                SqlError::Denied(m) => sql::SqlError::Denied(m),
                SqlError::Statement(m) => sql::SqlError::Statement(m),
                SqlError::Unavailable(m) => sql::SqlError::Unavailable(m),
            }
        })
    }
}

fn values(params: Vec<sql::Value>) -> Vec<Value> {
    params
        .into_iter()
        .map(|p| match p {
            sql::Value::Null => Value::Null,
            sql::Value::Boolean(b) => Value::Bool(b),
            sql::Value::Int(i) => Value::Int(i),
            sql::Value::Float(f) => Value::Float(f),
            sql::Value::Text(s) => Value::Text(s),
            sql::Value::Bytes(b) => Value::Bytes(b),
        })
        .collect()
}

impl sql::Host for SqlCtx {}

impl SqlCtx {
    /// The URL granted as `name`, and the backend.
    fn grant(&self, name: &str) -> Result<(String, Arc<dyn SqlBackend>), sql::SqlError> {
        let Some(url) = self.grants.get(name) else {
            let known: Vec<&str> = self.grants.keys().map(String::as_str).collect();
            return Err(sql::SqlError::Denied(if known.is_empty() {
                format!(
                    "no SQL connection is granted to this connector (grant one as weir.sql.{name}.url)"
                )
            } else {
                format!(
                    "no SQL connection named {name:?} is granted (granted: {})",
                    known.join(", ")
                )
            }));
        };
        let Some(backend) = self.backend.clone() else {
            return Err(sql::SqlError::Denied("this host has no SQL backend".into()));
        };
        Ok((url.clone(), backend))
    }
}

impl sql::HostConnection for SqlCtx {
    fn open(&mut self, name: String) -> Result<Resource<Connection>, sql::SqlError> {
        let (url, backend) = self.grant(&name)?;
        if self.connections >= MAX_CONNECTIONS {
            return Err(sql::SqlError::Statement(format!(
                "a task may hold at most {MAX_CONNECTIONS} connections; drop one first"
            )));
        }
        let by = self.by();
        let conn = backend.connect(&url, self.call_deadline, by);
        let conn = self.failed("connect", conn)?;
        self.connections += 1;
        self.table
            .push(Connection(conn))
            .map_err(|e| sql::SqlError::Statement(e.to_string()))
    }

    fn begin_at_snapshot(
        &mut self,
        c: Resource<Connection>,
        snapshot: String,
    ) -> Result<(), sql::SqlError> {
        let by = self.by();
        let r = self.conn(&c)?.0.begin_at_snapshot(&snapshot, by);
        self.failed("begin-at-snapshot", r)
    }

    fn dialect(&mut self, c: Resource<Connection>) -> String {
        self.conn(&c)
            .map(|c| c.0.dialect().to_string())
            .unwrap_or_default()
    }

    fn execute(
        &mut self,
        c: Resource<Connection>,
        statement: String,
        params: Vec<sql::Value>,
    ) -> Result<u64, sql::SqlError> {
        let by = self.by();
        let r = self.conn(&c)?.0.execute(&statement, &values(params), by);
        self.failed("execute", r)
    }

    fn execute_many(
        &mut self,
        c: Resource<Connection>,
        statement: String,
        params: Vec<u8>,
    ) -> Result<u64, sql::SqlError> {
        let rows = weir_sqlbuf::Rows::parse(&params)
            .map_err(|e| sql::SqlError::Statement(format!("malformed parameter rows: {e}")))?;
        let by = self.by();
        let r = self.conn(&c)?.0.execute_many(&statement, &rows, by);
        self.failed("execute-many", r)
    }

    fn query(
        &mut self,
        c: Resource<Connection>,
        statement: String,
        params: Vec<sql::Value>,
    ) -> Result<Resource<Cursor>, sql::SqlError> {
        if self.cursors >= MAX_CURSORS {
            return Err(sql::SqlError::Statement(format!(
                "a task may hold at most {MAX_CURSORS} cursors; drop one first"
            )));
        }
        let by = self.by();
        let r = self.conn(&c)?.0.query(&statement, &values(params), by);
        let cursor = self.failed("query", r)?;
        self.cursors += 1;
        self.table
            .push(Cursor(cursor))
            .map_err(|e| sql::SqlError::Statement(e.to_string()))
    }

    fn begin(
        &mut self,
        c: Resource<Connection>,
        kind: sql::BeginKind,
    ) -> Result<(), sql::SqlError> {
        let kind = match kind {
            sql::BeginKind::Default => Begin::Default,
            sql::BeginKind::Immediate => Begin::Immediate,
            sql::BeginKind::Snapshot => Begin::Snapshot,
        };
        let by = self.by();
        let r = self.conn(&c)?.0.begin(kind, by);
        self.failed("begin", r)
    }

    fn commit(&mut self, c: Resource<Connection>) -> Result<(), sql::SqlError> {
        let by = self.by();
        let r = self.conn(&c)?.0.commit(by);
        self.failed("commit", r)
    }

    fn rollback(&mut self, c: Resource<Connection>) -> Result<(), sql::SqlError> {
        let by = self.by();
        let r = self.conn(&c)?.0.rollback(by);
        self.failed("rollback", r)
    }

    fn drop(&mut self, c: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        self.connections -= 1;
        Ok(())
    }
}

impl sql::HostCursor for SqlCtx {
    fn next(
        &mut self,
        c: Resource<Cursor>,
        max_rows: u32,
    ) -> Result<Option<Vec<u8>>, sql::SqlError> {
        let by = self.by();
        let cursor = self
            .table
            .get_mut(&c)
            .map_err(|e| sql::SqlError::Statement(format!("bad cursor handle: {e}")))?;
        let r = cursor.0.next(max_rows, by);
        self.failed("next", r)
    }

    fn drop(&mut self, c: Resource<Cursor>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        self.cursors -= 1;
        Ok(())
    }
}

impl sql::HostChangeStream for SqlCtx {
    fn open(
        &mut self,
        name: String,
        options: sql::StreamOptions,
    ) -> Result<Resource<ChangeStream>, sql::SqlError> {
        let (url, backend) = self.grant(&name)?;
        if self.streams >= MAX_STREAMS {
            return Err(sql::SqlError::Statement(format!(
                "a task may hold at most {MAX_STREAMS} change streams; drop one first"
            )));
        }
        let opts = StreamOptions {
            slot: options.slot,
            publication: options.publication,
            tables: options.tables,
            create_slot: options.create_slot,
        };
        let by = self.by();
        let r = backend.change_stream(&url, &opts, self.call_deadline, by);
        let stream = self.failed("change stream open", r)?;
        let slot = stream.slot().to_string();
        self.streams += 1;
        let res = self
            .table
            .push(ChangeStream(stream))
            .map_err(|e| sql::SqlError::Statement(e.to_string()))?;
        self.stats.set(
            res.rep(),
            Some(SlotStat {
                slot,
                retained_bytes: None,
            }),
        );
        Ok(res)
    }

    fn exported_snapshot(&mut self, s: Resource<ChangeStream>) -> Option<String> {
        self.table.get(&s).ok()?.0.exported_snapshot()
    }

    fn next(
        &mut self,
        s: Resource<ChangeStream>,
        max_changes: u32,
        wait_ms: u32,
    ) -> Result<Vec<u8>, sql::SqlError> {
        let by = self.by();
        let stream = self
            .table
            .get_mut(&s)
            .map_err(|e| sql::SqlError::Statement(format!("bad change stream handle: {e}")))?;
        let r = stream
            .0
            .next(max_changes, Duration::from_millis(wait_ms.into()), by);
        let stat = SlotStat {
            slot: stream.0.slot().to_string(),
            retained_bytes: stream.0.retained_bytes(),
        };
        self.stats.set(s.rep(), Some(stat));
        self.failed("change stream next", r)
    }

    fn confirm(&mut self, s: Resource<ChangeStream>, lsn: u64) {
        if let Ok(stream) = self.table.get_mut(&s) {
            stream.0.confirm(lsn);
        }
    }

    fn drop(&mut self, s: Resource<ChangeStream>) -> wasmtime::Result<()> {
        let rep = s.rep();
        self.table.delete(s)?;
        self.streams -= 1;
        self.stats.set(rep, None);
        Ok(())
    }
}

struct HasSql;

impl HasData for HasSql {
    type Data<'a> = &'a mut SqlCtx;
}

pub(crate) fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut SqlCtx,
) -> wasmtime::Result<()> {
    sql::add_to_linker::<T, HasSql>(linker, get)
}
