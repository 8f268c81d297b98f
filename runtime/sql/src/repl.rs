//! PostgreSQL change streams: logical replication with `pgoutput` (protocol 1, values in
//! binary) over `pgwire-replication`, whose worker keeps answering the server's keepalives
//! while its bounded queue is full, so a slow plugin never gets its session dropped.
//!
//! Opening a stream checks `wal_level`, creates or updates the publication, checks the slot
//! (a slot in use or invalidated is refused with a clear error) and creates it when missing
//! on a replication session, exporting the snapshot of its first position; streaming starts
//! at the first `next`, from the slot's confirmed position. Each `next` turns what the worker
//! has queued into one changes buffer (`wit/CHANGES.md`): relation messages describe tables
//! (type names looked up once per type), tuples are read with the same binary decoder as
//! query results. Nothing but the queue holds a transaction, so its size does not matter.
//! `confirm` raises the position reported to the server; nothing else does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig};
use weir_host::sql::{SqlChangeStream, SqlError, StreamOptions, mask_url};
use weir_sqlbuf::ValueRef;
use weir_sqlbuf::changes::{ChangeColumn, ChangeMeta, ChangesBuilder, ImageKind, Op};

use crate::pg::{Ty, decode_binary};

/// A changes buffer stops growing past this many bytes.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// The parts of a `postgres://` URL a replication session needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    user: String,
    password: String,
    database: String,
    sslmode: String,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(h) = std::str::from_utf8(&b[i + 1..i + 3])
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn target(url: &str) -> Result<Target, SqlError> {
    let bad = |why: &str| SqlError::Denied(format!("{why} in {}", weir_host::sql::masked_url(url)));
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| bad("change streams need a postgres:// URL"))?;
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, db) = main.split_once('/').unwrap_or((main, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (u, h),
        None => ("", authority),
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || p.is_empty() => {
            (h, p.parse::<u16>().map_err(|_| bad("a bad port"))?)
        }
        _ => (hostport, 5432),
    };
    let mut sslmode = String::from("prefer");
    let mut t = Target {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        user: percent_decode(user),
        password: percent_decode(password),
        database: percent_decode(db),
        sslmode: String::new(),
    };
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "sslmode" => sslmode = v.to_string(),
            "host" => t.host = percent_decode(v),
            "port" => t.port = v.parse().map_err(|_| bad("a bad port"))?,
            "user" => t.user = percent_decode(v),
            "password" => t.password = percent_decode(v),
            "dbname" => t.database = percent_decode(v),
            _ => {}
        }
    }
    if t.host.is_empty() {
        t.host = "localhost".into();
    }
    if t.user.is_empty() {
        t.user = "postgres".into();
    }
    if t.database.is_empty() {
        t.database = t.user.clone();
    }
    t.sslmode = sslmode;
    Ok(t)
}

/// A quoted identifier.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `schema.table` (or `table`, in `public`) as a quoted name.
fn table_name(s: &str) -> String {
    match s.split_once('.') {
        Some((schema, table)) => format!("{}.{}", ident(schema), ident(table)),
        None => format!("{}.{}", ident("public"), ident(s)),
    }
}

/// A table as the stream knows it from its relation message.
#[derive(Debug, Clone)]
struct Rel {
    schema: String,
    table: String,
    columns: Vec<Col>,
}

#[derive(Debug, Clone)]
struct Col {
    name: String,
    type_name: String,
    ty: Ty,
    typmod: i32,
    key: bool,
}

/// The transaction being read.
#[derive(Debug, Clone, Copy)]
struct Txn {
    commit_lsn: u64,
    xid: u32,
    commit_time_us: i64,
    seq: u32,
}

struct State {
    client: ReplicationClient,
    started: bool,
    relations: HashMap<u32, Rel>,
    types: HashMap<u32, (String, Ty)>,
    txn: Option<Txn>,
    /// An event read but left for the next batch.
    pending: Option<ReplicationEvent>,
    /// Every change at or before this has been handed out.
    position: u64,
    /// An error that ended the stream: every later call returns it.
    failed: Option<SqlError>,
}

pub(crate) struct Stream {
    rt: tokio::runtime::Handle,
    pool: sqlx::PgPool,
    url: String,
    slot: String,
    snapshot: Option<String>,
    state: Arc<tokio::sync::Mutex<State>>,
    /// The slot's retained WAL, last measured.
    retained: Arc<Mutex<Option<u64>>>,
    stop_measuring: Option<tokio::sync::oneshot::Sender<()>>,
}

fn server_error(e: pgwire_replication::PgWireError, url: &str) -> SqlError {
    use pgwire_replication::PgWireError as E;
    let text = mask_url(&e.to_string(), url);
    match e {
        E::Auth(_) => SqlError::Denied(text),
        E::Server(ref m) if m.contains("28P01") || m.contains("28000") || m.contains("3D000") => {
            SqlError::Denied(text)
        }
        // Object in use (a slot another session streams from), undefined object, syntax,
        // feature not supported, insufficient privilege: would fail again as it is.
        E::Server(ref m)
            if ["55006", "42704", "42601", "0A000", "42501", "55000"]
                .iter()
                .any(|c| m.contains(c)) =>
        {
            SqlError::Statement(text)
        }
        E::Tls(_) | E::MessageTooLarge { .. } => SqlError::Statement(text),
        _ => SqlError::Unavailable(text),
    }
}

/// Built-in types by OID: the upper-case names sqlx gives query columns.
fn builtin(oid: u32) -> Option<(&'static str, Ty)> {
    let named = |n: &str| Ty::Named(n.to_string());
    let array = |n: &str| Ty::Array(Box::new(Ty::Named(n.to_string())));
    Some(match oid {
        16 => ("BOOL", named("BOOL")),
        17 => ("BYTEA", named("BYTEA")),
        18 => ("CHAR", named("CHAR")),
        19 => ("NAME", named("NAME")),
        20 => ("INT8", named("INT8")),
        21 => ("INT2", named("INT2")),
        23 => ("INT4", named("INT4")),
        25 => ("TEXT", named("TEXT")),
        26 => ("OID", named("OID")),
        114 => ("JSON", named("JSON")),
        142 => ("XML", named("XML")),
        650 => ("CIDR", named("CIDR")),
        700 => ("FLOAT4", named("FLOAT4")),
        701 => ("FLOAT8", named("FLOAT8")),
        869 => ("INET", named("INET")),
        1042 => ("BPCHAR", named("BPCHAR")),
        1043 => ("VARCHAR", named("VARCHAR")),
        1082 => ("DATE", named("DATE")),
        1083 => ("TIME", named("TIME")),
        1114 => ("TIMESTAMP", named("TIMESTAMP")),
        1184 => ("TIMESTAMPTZ", named("TIMESTAMPTZ")),
        1186 => ("INTERVAL", named("INTERVAL")),
        1266 => ("TIMETZ", named("TIMETZ")),
        1700 => ("NUMERIC", named("NUMERIC")),
        2950 => ("UUID", named("UUID")),
        3802 => ("JSONB", named("JSONB")),
        199 => ("JSON[]", array("JSON")),
        1000 => ("BOOL[]", array("BOOL")),
        1001 => ("BYTEA[]", array("BYTEA")),
        1005 => ("INT2[]", array("INT2")),
        1007 => ("INT4[]", array("INT4")),
        1009 => ("TEXT[]", array("TEXT")),
        1014 => ("BPCHAR[]", array("BPCHAR")),
        1015 => ("VARCHAR[]", array("VARCHAR")),
        1016 => ("INT8[]", array("INT8")),
        1021 => ("FLOAT4[]", array("FLOAT4")),
        1022 => ("FLOAT8[]", array("FLOAT8")),
        1115 => ("TIMESTAMP[]", array("TIMESTAMP")),
        1182 => ("DATE[]", array("DATE")),
        1183 => ("TIME[]", array("TIME")),
        1185 => ("TIMESTAMPTZ[]", array("TIMESTAMPTZ")),
        1187 => ("INTERVAL[]", array("INTERVAL")),
        1231 => ("NUMERIC[]", array("NUMERIC")),
        2951 => ("UUID[]", array("UUID")),
        3807 => ("JSONB[]", array("JSONB")),
        _ => return None,
    })
}

/// Looks a type up in `pg_type`: its name and how to read it.
async fn lookup_type(
    pool: &sqlx::PgPool,
    oid: u32,
    depth: u32,
) -> Result<(String, Ty), sqlx::Error> {
    if let Some((n, t)) = builtin(oid) {
        return Ok((n.to_string(), t));
    }
    let row: Option<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT typname::text, typtype::text, typbasetype::int8, typelem::int8 \
         FROM pg_type WHERE oid = $1::int8::oid",
    )
    .bind(i64::from(oid))
    .fetch_optional(pool)
    .await?;
    let Some((name, kind, base, elem)) = row else {
        return Ok((format!("oid {oid}"), Ty::Named(format!("OID {oid}"))));
    };
    if depth > 4 {
        return Ok((name.clone(), Ty::Named(name)));
    }
    let ty = match kind.as_str() {
        "e" => Ty::Enum,
        "d" => Ty::Domain(Box::new(
            Box::pin(lookup_type(pool, base as u32, depth + 1)).await?.1,
        )),
        _ if elem != 0 && name.starts_with('_') => Ty::Array(Box::new(
            Box::pin(lookup_type(pool, elem as u32, depth + 1)).await?.1,
        )),
        _ => Ty::Named(name.to_uppercase()),
    };
    Ok((name, ty))
}

/// The index of relation `id` in the batch being written, describing it there first.
fn batch_relation(
    id: u32,
    rel: &Rel,
    rels: &mut HashMap<u32, u32>,
    out: &mut ChangesBuilder,
) -> u32 {
    *rels.entry(id).or_insert_with(|| {
        out.relation(
            &rel.schema,
            &rel.table,
            rel.columns.iter().map(|c| ChangeColumn {
                name: &c.name,
                type_name: &c.type_name,
                type_modifier: c.typmod,
                key: c.key,
            }),
        )
    })
}

/// A cursor over one pgoutput message.
struct Msg<'a> {
    b: &'a [u8],
}

impl<'a> Msg<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err("pgoutput message ends early".into());
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn cstr(&mut self) -> Result<String, String> {
        let end = self
            .b
            .iter()
            .position(|c| *c == 0)
            .ok_or("pgoutput string without its end")?;
        let s = String::from_utf8_lossy(&self.b[..end]).into_owned();
        self.b = &self.b[end + 1..];
        Ok(s)
    }
}

/// Writes a pgoutput tuple as an image of `rel`.
fn tuple(
    m: &mut Msg<'_>,
    rel: &Rel,
    kind: ImageKind,
    out: &mut ChangesBuilder,
) -> Result<(), String> {
    let n = m.u16()? as usize;
    if n != rel.columns.len() {
        return Err(format!(
            "a tuple of {n} columns for {}.{}, which has {}",
            rel.schema,
            rel.table,
            rel.columns.len()
        ));
    }
    out.image(kind);
    for col in &rel.columns {
        match m.u8()? {
            b'n' => out.value(ValueRef::Null),
            b'u' => out.unchanged(),
            t @ (b'b' | b't') => {
                let len = m.u32()? as usize;
                let bytes = m.take(len)?;
                let v = if t == b'b' {
                    decode_binary(&col.ty, bytes)
                } else {
                    // Text only where the server could not send binary.
                    Ok(weir_sqlbuf::Value::Text(
                        String::from_utf8_lossy(bytes).into_owned(),
                    ))
                }
                .map_err(|e| format!("column {} of {}.{}: {e}", col.name, rel.schema, rel.table))?;
                out.value(v.as_ref());
            }
            other => return Err(format!("unknown tuple value kind {other}")),
        }
    }
    Ok(())
}

impl Stream {
    pub(crate) fn open(
        rt: tokio::runtime::Handle,
        pool: sqlx::PgPool,
        url: &str,
        opts: &StreamOptions,
        by: Instant,
    ) -> Result<Stream, SqlError> {
        let t = target(url)?;
        let url = url.to_string();
        let slot = opts.slot.clone();
        let opts = opts.clone();
        let deadline = tokio::time::Instant::from_std(by);
        let p = pool.clone();
        let u = url.clone();
        let work = async move {
            let (client, snapshot) = prepare(&p, &t, &u, &opts).await?;
            Ok::<_, SqlError>((client, snapshot))
        };
        let (client, snapshot) = run_by(&rt, deadline, work)?;
        let state = State {
            client,
            started: false,
            relations: HashMap::new(),
            types: HashMap::new(),
            txn: None,
            pending: None,
            position: 0,
            failed: None,
        };
        let retained = Arc::new(Mutex::new(None));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        rt.spawn(measure(
            pool.clone(),
            slot.clone(),
            retained.clone(),
            stop_rx,
        ));
        Ok(Stream {
            rt,
            pool,
            url,
            slot,
            snapshot,
            state: Arc::new(tokio::sync::Mutex::new(state)),
            retained,
            stop_measuring: Some(stop_tx),
        })
    }
}

/// Runs `work` on the runtime, by `deadline`.
fn run_by<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    deadline: tokio::time::Instant,
    work: impl std::future::Future<Output = Result<T, SqlError>> + Send + 'static,
) -> Result<T, SqlError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let r = match tokio::time::timeout_at(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(SqlError::Unavailable(
                "the database did not answer before the call's deadline".into(),
            )),
        };
        let _ = tx.send(r);
    });
    let wait = deadline
        .into_std()
        .saturating_duration_since(Instant::now())
        + Duration::from_secs(1);
    rx.recv_timeout(wait).unwrap_or_else(|_| {
        Err(SqlError::Unavailable(
            "the database call did not return".into(),
        ))
    })
}

/// A `pg_replication_slots` row: plugin, database, active, active pid, WAL status.
type SlotRow = (String, Option<String>, bool, Option<i32>, Option<String>);

/// Checks the server, the publication and the slot; connects the replication session and
/// creates the slot when missing (its exported snapshot returned).
async fn prepare(
    pool: &sqlx::PgPool,
    t: &Target,
    url: &str,
    opts: &StreamOptions,
) -> Result<(ReplicationClient, Option<String>), SqlError> {
    let c = |e: sqlx::Error| crate::classify(e, url);
    let wal_level: String = sqlx::query_scalar("SELECT current_setting('wal_level')")
        .fetch_one(pool)
        .await
        .map_err(c)?;
    if wal_level != "logical" {
        return Err(SqlError::Statement(format!(
            "the server's wal_level is {wal_level}: change streams need wal_level = logical \
             (set it in postgresql.conf and restart the server)"
        )));
    }
    // The publication: created when missing; a table list kept as asked.
    let existing: Option<bool> =
        sqlx::query_scalar("SELECT puballtables FROM pg_publication WHERE pubname = $1")
            .bind(&opts.publication)
            .fetch_optional(pool)
            .await
            .map_err(c)?;
    let tables: Vec<String> = opts.tables.iter().map(|s| table_name(s)).collect();
    let list = tables.join(", ");
    match existing {
        None => {
            let sql = if tables.is_empty() {
                format!(
                    "CREATE PUBLICATION {} FOR ALL TABLES",
                    ident(&opts.publication)
                )
            } else {
                format!(
                    "CREATE PUBLICATION {} FOR TABLE {list}",
                    ident(&opts.publication)
                )
            };
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(pool)
                .await
                .map_err(c)?;
        }
        Some(false) if !tables.is_empty() => {
            let have: Vec<String> = sqlx::query_scalar(
                "SELECT format('%I.%I', schemaname, tablename) FROM pg_publication_tables \
                 WHERE pubname = $1",
            )
            .bind(&opts.publication)
            .fetch_all(pool)
            .await
            .map_err(c)?;
            let mut want: Vec<String> = opts
                .tables
                .iter()
                .map(|s| {
                    let (schema, table) = s.split_once('.').unwrap_or(("public", s));
                    format!("{}.{}", quote_if_needed(schema), quote_if_needed(table))
                })
                .collect();
            let mut have_sorted = have.clone();
            have_sorted.sort();
            want.sort();
            if have_sorted != want {
                let sql = format!(
                    "ALTER PUBLICATION {} SET TABLE {list}",
                    ident(&opts.publication)
                );
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(pool)
                    .await
                    .map_err(c)?;
            }
        }
        Some(_) => {}
    }
    // The slot.
    let db: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(pool)
        .await
        .map_err(c)?;
    let slot: Option<SlotRow> = sqlx::query_as(
        "SELECT plugin::text, database::text, active, active_pid, wal_status \
             FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(&opts.slot)
    .fetch_optional(pool)
    .await
    .map_err(c)?;
    let create = match slot {
        Some((plugin, sdb, active, pid, wal_status)) => {
            if plugin != "pgoutput" || sdb.as_deref() != Some(db.as_str()) {
                return Err(SqlError::Statement(format!(
                    "replication slot {:?} exists but is not a pgoutput slot of database {db:?} \
                     (plugin {plugin}, database {}); choose another slot.name",
                    opts.slot,
                    sdb.unwrap_or_default()
                )));
            }
            if wal_status.as_deref() == Some("lost") {
                return Err(SqlError::Statement(format!(
                    "replication slot {:?} was invalidated: the server removed WAL it still \
                     needed (max_slot_wal_keep_size); changes were lost. Drop the slot \
                     (SELECT pg_drop_replication_slot('{}')) and snapshot again",
                    opts.slot, opts.slot
                )));
            }
            if active {
                return Err(SqlError::Statement(format!(
                    "replication slot {:?} is in use by another session (pid {}): is another \
                     connector using the same slot.name?",
                    opts.slot,
                    pid.unwrap_or_default()
                )));
            }
            false
        }
        None if opts.create_slot => true,
        None => {
            return Err(SqlError::Statement(format!(
                "replication slot {:?} does not exist",
                opts.slot
            )));
        }
    };
    let config = |tls: TlsConfig| {
        ReplicationConfig::new(
            t.host.clone(),
            t.user.clone(),
            t.password.clone(),
            t.database.clone(),
            opts.slot.clone(),
            opts.publication.clone(),
        )
        .with_port(t.port)
        .with_tls(tls)
        .with_binary(true)
        .with_start_lsn(Lsn::ZERO)
        .with_status_interval(Duration::from_secs(1))
        .with_buffer_size(4096)
        .with_application_name("weir")
    };
    let mut client = match t.sslmode.as_str() {
        "require" => ReplicationClient::connect_gated(config(TlsConfig::require())).await,
        "verify-ca" => ReplicationClient::connect_gated(config(TlsConfig::verify_ca(None))).await,
        "verify-full" => {
            ReplicationClient::connect_gated(config(TlsConfig::verify_full(None))).await
        }
        "disable" => ReplicationClient::connect_gated(config(TlsConfig::disabled())).await,
        // `prefer` (libpq's default) and `allow`: TLS when the server offers it, as the pooled
        // sessions do, else in the clear. (The client reports a refused TLS only after it
        // returned, so the server is asked first.)
        _ => {
            let tls = if offers_tls(&t.host, t.port).await {
                TlsConfig::require()
            } else {
                TlsConfig::disabled()
            };
            ReplicationClient::connect_gated(config(tls)).await
        }
    }
    .map_err(|e| server_error(e, url))?;
    let snapshot = if create {
        let rows = client
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export')",
                ident(&opts.slot)
            ))
            .await
            .map_err(|e| server_error(e, url))?;
        let name = rows
            .first()
            .and_then(|r| r.get(2).cloned().flatten())
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        tracing::info!(slot = %opts.slot, "created replication slot");
        name
    } else {
        // Authenticates now, so a bad password fails the open.
        client
            .identify_system()
            .await
            .map_err(|e| server_error(e, url))?;
        None
    };
    Ok((client, snapshot))
}

/// Whether the server at `host:port` accepts TLS: the answer to an `SSLRequest` (`S` or
/// `N`), on a connection of its own; no answer within 5 s (or none at all) counts as no.
async fn offers_tls(host: &str, port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ask = async {
        let mut sock = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        // Length 8, then the SSLRequest code 1234.5679.
        sock.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .ok()?;
        let mut answer = [0u8; 1];
        sock.read_exact(&mut answer).await.ok()?;
        Some(answer[0] == b'S')
    };
    tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// `pg_publication_tables` names as `format('%I')` writes them.
fn quote_if_needed(s: &str) -> String {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit());
    if plain { s.to_string() } else { ident(s) }
}

/// Measures the slot's retained WAL every few seconds until stopped.
async fn measure(
    pool: sqlx::PgPool,
    slot: String,
    out: Arc<Mutex<Option<u64>>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let r: Result<Option<i64>, _> = sqlx::query_scalar(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8 \
             FROM pg_replication_slots WHERE slot_name = $1",
        )
        .bind(&slot)
        .fetch_optional(&pool)
        .await
        .map(Option::flatten);
        if let Ok(v) = r {
            *out.lock().unwrap_or_else(|p| p.into_inner()) = v.map(|b| b.max(0) as u64);
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

impl State {
    /// Reads one event into `out`.
    async fn handle(
        &mut self,
        ev: ReplicationEvent,
        pool: &sqlx::PgPool,
        out: &mut ChangesBuilder,
        rels: &mut HashMap<u32, u32>,
        last_change_end: &mut Option<usize>,
    ) -> Result<(), String> {
        match ev {
            ReplicationEvent::Begin {
                final_lsn,
                xid,
                commit_time_micros,
            } => {
                *last_change_end = None;
                self.txn = Some(Txn {
                    commit_lsn: final_lsn.as_u64(),
                    xid,
                    commit_time_us: commit_time_micros + PG_EPOCH_US,
                    seq: 0,
                });
            }
            ReplicationEvent::Commit { end_lsn, .. } => {
                if let Some(at) = last_change_end.take()
                    && self.txn.is_some_and(|t| t.seq > 0)
                {
                    out.set_end_lsn(at, end_lsn.as_u64());
                }
                self.txn = None;
                self.position = self.position.max(end_lsn.as_u64());
            }
            ReplicationEvent::KeepAlive { wal_end, .. } if self.txn.is_none() => {
                self.position = self.position.max(wal_end.as_u64());
            }
            ReplicationEvent::XLogData {
                wal_start, data, ..
            } => {
                self.message(&data, wal_start.as_u64(), pool, out, rels, last_change_end)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn message(
        &mut self,
        data: &[u8],
        lsn: u64,
        pool: &sqlx::PgPool,
        out: &mut ChangesBuilder,
        rels: &mut HashMap<u32, u32>,
        last_change_end: &mut Option<usize>,
    ) -> Result<(), String> {
        let mut m = Msg { b: data };
        let kind = m.u8()?;
        match kind {
            b'R' => {
                let id = m.u32()?;
                let schema = m.cstr()?;
                let table = m.cstr()?;
                let _identity = m.u8()?;
                let n = m.u16()?;
                let mut columns = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let flags = m.u8()?;
                    let name = m.cstr()?;
                    let oid = m.u32()?;
                    let typmod = m.u32()? as i32;
                    let (type_name, ty) = match self.types.get(&oid) {
                        Some(t) => t.clone(),
                        None => {
                            let t = lookup_type(pool, oid, 0)
                                .await
                                .map_err(|e| format!("looking up type {oid}: {e}"))?;
                            self.types.insert(oid, t.clone());
                            t
                        }
                    };
                    columns.push(Col {
                        name,
                        type_name,
                        ty,
                        typmod,
                        key: flags & 1 != 0,
                    });
                }
                // A table described again (its columns changed) is described again in
                // the batch too.
                rels.remove(&id);
                self.relations.insert(
                    id,
                    Rel {
                        schema,
                        table,
                        columns,
                    },
                );
            }
            b'I' | b'U' | b'D' => {
                let id = m.u32()?;
                let rel = self
                    .relations
                    .get(&id)
                    .ok_or_else(|| format!("a change to relation {id}, never described"))?;
                let idx = batch_relation(id, rel, rels, out);
                let txn = self.txn.as_mut().ok_or("a change outside a transaction")?;
                let meta = ChangeMeta {
                    lsn,
                    commit_lsn: txn.commit_lsn,
                    end_lsn: 0,
                    xid: txn.xid,
                    commit_time_us: txn.commit_time_us,
                    seq: txn.seq,
                };
                txn.seq += 1;
                let op = match kind {
                    b'I' => Op::Insert,
                    b'U' => Op::Update,
                    _ => Op::Delete,
                };
                *last_change_end = Some(out.change(op, &meta, &[idx]));
                let mut tag = m.u8()?;
                // Before image: K (key columns) or O (every column), when sent.
                if tag == b'K' || tag == b'O' {
                    let kind = if tag == b'K' {
                        ImageKind::Key
                    } else {
                        ImageKind::Full
                    };
                    tuple(&mut m, rel, kind, out)?;
                    if op == Op::Delete {
                        out.no_image();
                        return Ok(());
                    }
                    tag = m.u8()?;
                } else {
                    out.no_image();
                }
                if tag != b'N' {
                    return Err(format!("unexpected tuple tag {tag} in a change"));
                }
                tuple(&mut m, rel, ImageKind::Full, out)?;
            }
            b'T' => {
                let n = m.u32()?;
                let _options = m.u8()?;
                let mut idxs = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    let id = m.u32()?;
                    let Some(rel) = self.relations.get(&id) else {
                        continue;
                    };
                    idxs.push(batch_relation(id, rel, rels, out));
                }
                let txn = self
                    .txn
                    .as_mut()
                    .ok_or("a truncate outside a transaction")?;
                let meta = ChangeMeta {
                    lsn,
                    commit_lsn: txn.commit_lsn,
                    end_lsn: 0,
                    xid: txn.xid,
                    commit_time_us: txn.commit_time_us,
                    seq: txn.seq,
                };
                txn.seq += 1;
                *last_change_end = Some(out.change(Op::Truncate, &meta, &idxs));
                out.no_image();
                out.no_image();
            }
            // Type ('Y'), origin ('O'), logical messages: nothing to hand out.
            _ => {}
        }
        Ok(())
    }
}

impl SqlChangeStream for Stream {
    fn exported_snapshot(&self) -> Option<String> {
        self.snapshot.clone()
    }

    fn next(&mut self, max: u32, wait: Duration, by: Instant) -> Result<Vec<u8>, SqlError> {
        let state = self.state.clone();
        let pool = self.pool.clone();
        let url = self.url.clone();
        let max = max.max(1) as usize;
        // Leave time to hand the batch back before the call's deadline.
        let first_by = (Instant::now() + wait).min(by);
        let first_by = tokio::time::Instant::from_std(first_by);
        let deadline = tokio::time::Instant::from_std(by);
        self.snapshot = None;
        let outer = deadline + Duration::from_millis(500);
        run_by(&self.rt, outer, async move {
            let work = read_batch(state.clone(), pool, url, max, first_by);
            match tokio::time::timeout_at(deadline, work).await {
                Ok(r) => r,
                Err(_) => {
                    // Cut off in the middle of a batch: what was read is gone, so the stream
                    // ends; a new one resumes at the last confirmed position.
                    let e = SqlError::Unavailable(
                        "the change stream did not answer before the call's deadline; open it again to resume from the last confirmed position".into(),
                    );
                    state.lock().await.failed = Some(e.clone());
                    Err(e)
                }
            }
        })
    }

    fn confirm(&mut self, lsn: u64) {
        if let Ok(s) = self.state.try_lock() {
            s.client.update_applied_lsn(Lsn::from_u64(lsn));
        } else {
            let state = self.state.clone();
            self.rt.spawn(async move {
                state
                    .lock()
                    .await
                    .client
                    .update_applied_lsn(Lsn::from_u64(lsn));
            });
        }
    }

    fn retained_bytes(&self) -> Option<u64> {
        *self.retained.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(&self) -> &str {
        &self.slot
    }
}

/// Reads one batch: waits until `first_by` for the first change, then takes what is queued.
async fn read_batch(
    state: Arc<tokio::sync::Mutex<State>>,
    pool: sqlx::PgPool,
    url: String,
    max: usize,
    first_by: tokio::time::Instant,
) -> Result<Vec<u8>, SqlError> {
    let mut s = state.lock().await;
    if let Some(e) = &s.failed {
        return Err(e.clone());
    }
    if !s.started {
        s.client.start().await.map_err(|e| server_error(e, &url))?;
        if let Err(e) = s.client.wait_started().await {
            let e = server_error(e, &url);
            s.failed = Some(e.clone());
            return Err(e);
        }
        s.started = true;
    }
    let mut out = ChangesBuilder::new();
    let mut rels = HashMap::new();
    let mut last = None;
    let mut first = true;
    loop {
        let full = out.len() >= max || out.byte_len() >= MAX_BATCH_BYTES;
        if full && s.txn.is_none() {
            break;
        }
        let ev = if let Some(ev) = s.pending.take() {
            Ok(Some(ev))
        } else if first || s.txn.is_some() {
            // Inside a transaction more is on its way (the server sends a transaction only
            // once it committed): wait for it, so the batch ends with the commit when it can.
            match tokio::time::timeout_at(first_by, s.client.recv()).await {
                Ok(r) => r,
                Err(_) => break,
            }
        } else {
            match s.client.recv().now_or_never() {
                Some(r) => r,
                None => break,
            }
        };
        let ev = match ev {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                let e = SqlError::Unavailable("the replication stream ended".into());
                s.failed = Some(e.clone());
                return Err(e);
            }
            Err(e) => {
                let e = server_error(e, &url);
                s.failed = Some(e.clone());
                return Err(e);
            }
        };
        if full {
            // A full batch takes only its transaction's commit; anything else waits for
            // the next batch.
            if !matches!(ev, ReplicationEvent::Commit { .. }) {
                s.pending = Some(ev);
                break;
            }
        }
        // Keepalives do not end the wait for the first change.
        first = first && matches!(ev, ReplicationEvent::KeepAlive { .. });
        if let Err(e) = s.handle(ev, &pool, &mut out, &mut rels, &mut last).await {
            let e = SqlError::Statement(format!("reading the change stream: {e}"));
            s.failed = Some(e.clone());
            return Err(e);
        }
        if full {
            break;
        }
    }
    let position = s.position;
    Ok(out.finish(position))
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(tx) = self.stop_measuring.take() {
            let _ = tx.send(());
        }
        let state = self.state.clone();
        self.rt.spawn(async move {
            let mut s = state.lock().await;
            s.client.stop();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.client.shutdown()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sslmode_prefer_asks_the_server_whether_it_speaks_tls() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for (answer, want) in [(b'S', true), (b'N', false)] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 8];
                s.read_exact(&mut request).await.unwrap();
                s.write_all(&[answer]).await.unwrap();
                request
            });
            assert_eq!(offers_tls("127.0.0.1", port).await, want);
            assert_eq!(server.await.unwrap(), [0, 0, 0, 8, 4, 210, 22, 47]);
        }
        // Nobody listening: no TLS (the real connection then reports why it cannot connect).
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(!offers_tls("127.0.0.1", port).await);
    }

    #[test]
    fn urls_give_the_session_its_parts() {
        let t = target("postgres://weir:p%40ss@db.example:6543/app?sslmode=require").unwrap();
        assert_eq!(
            t,
            Target {
                host: "db.example".into(),
                port: 6543,
                user: "weir".into(),
                password: "p@ss".into(),
                database: "app".into(),
                sslmode: "require".into(),
            }
        );
        let t = target("postgresql://u@localhost/d").unwrap();
        assert_eq!((t.port, t.password.as_str()), (5432, ""));
        assert!(target("sqlite:///x.db").is_err());
        assert_eq!(table_name("s.t\"x"), "\"s\".\"t\"\"x\"");
        assert_eq!(table_name("items"), "\"public\".\"items\"");
        assert_eq!(quote_if_needed("Items"), "\"Items\"");
        assert_eq!(quote_if_needed("items_2"), "items_2");
    }
}
