//! `postgres-source`: change data capture for PostgreSQL through logical replication
//! (`pgoutput`), in Debezium's envelope, over the SQL capability's change streams.
//!
//! On start the connector reads the catalog (captured tables, their columns, types and
//! primary keys) and opens a change stream on its slot and publication, which the host creates
//! when missing. A slot created now exports the snapshot of its first position: the initial
//! snapshot reads every captured table inside it, so snapshot plus stream miss and repeat
//! nothing. (A snapshot taken over a slot that already existed reads the current state; the
//! stream may then repeat changes the snapshot already holds, never lose one.)
//!
//! Streaming hands each change of a captured table out as a record whose source offset says
//! where it is: `lsn_commit` and `seq` (its transaction's commit position and its index in
//! it), and `lsn_proc`, the position that may be confirmed to the server once the record is
//! stored (the end of the last transaction completely handed out). `ack` confirms it; nothing
//! else does, so the server keeps every change the log has not stored. After a restart the
//! stream resumes at the slot's confirmed position and changes at or before the stored
//! `(lsn_commit, seq)` are skipped. Heartbeat records (`heartbeat.interval.ms`) carry the
//! position forward while the captured tables are idle, so the slot never holds WAL back.
//!
//! The database is the SQL grant `db` (`weir.sql.db.url`), which the runtime derives from
//! Debezium's `database.hostname`, `database.port`, `database.user`, `database.password` and
//! `database.dbname`.

mod envelope;
mod parallel;
mod types;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::rc::Rc;

use envelope::{ColumnDef, Schemas, Table};
use types::{Binary, Decimals, Intervals, Modes, PgType, TimePrecision};
use weir_cdc_common::{SnapshotMode as Mode, ident, int, now_ms, text};
use weir_sdk::sql::{
    BeginKind, ChangeStream, Changes, Connection, Cursor, Image, ImageKind, Op, Rows,
    StreamOptions, Value as P, ValueRef,
};
use weir_sdk::{
    BatchBuilder, Config, ConfigError, ConfigType, Descriptor, Error, Offsets, PluginKind,
    RecordData, Source,
};

const GRANT: &str = "db";
const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publish {
    AllTables,
    Filtered,
    Disabled,
}

#[derive(Debug)]
struct Settings {
    prefix: String,
    slot: String,
    publication: String,
    publish: Publish,
    include: Vec<regex_lite::Regex>,
    exclude: Vec<regex_lite::Regex>,
    schema_include: Vec<regex_lite::Regex>,
    schema_exclude: Vec<regex_lite::Regex>,
    mode: Mode,
    tombstones: bool,
    heartbeat_ms: u64,
    heartbeat_topic: String,
    drop_slot: bool,
    modes: Modes,
    column_include: Vec<regex_lite::Regex>,
    column_exclude: Vec<regex_lite::Regex>,
    /// `message.key.columns`: tables (by `schema.table`) and the columns of their key.
    key_columns: Vec<(regex_lite::Regex, Vec<String>)>,
    /// `snapshot.include.collection.list`: the captured tables a snapshot reads (all if empty).
    snapshot_tables: Vec<regex_lite::Regex>,
    heartbeat_query: Option<String>,
    initial_statements: Vec<String>,
    slot_retries: u32,
    slot_retry_ms: u64,
    fetch: u32,
    max_batch: u32,
    poll_ms: u32,
    skipped: Vec<char>,
    /// `snapshot.max.threads`: how many tasks read a snapshot (at most `tasks.max`).
    threads: u32,
    /// This task's place in a parallel snapshot's plan (0: the task that streams).
    reader: u32,
    /// The parallel snapshot's plan, one share per task (empty: one task reads everything).
    plan: Vec<Vec<parallel::Range>>,
}

fn err(key: &str, message: &str) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// A comma-separated list of regular expressions under `key`, or under `alias` (Debezium
/// 1.x's name for it).
fn patterns(
    config: &Config,
    key: &str,
    alias: Option<&str>,
) -> Result<Vec<regex_lite::Regex>, ConfigError> {
    let old = alias.and_then(|a| weir_sdk::config_get(config, a).map(|v| (a, v)));
    let (key, value) = match (weir_sdk::config_get(config, key), old) {
        (Some(_), Some((a, _))) => {
            return Err(err(
                a,
                &format!("{a} is Debezium 1.x's name for {key}: set one"),
            ));
        }
        (Some(v), None) => (key, v),
        (None, Some((a, v))) => (a, v),
        (None, None) => (key, ""),
    };
    weir_cdc_common::patterns(value).map_err(|e| err(key, &e))
}

impl Settings {
    fn parse(config: &Config) -> Result<Settings, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let get = |k: &str| weir_sdk::config_get(config, k).map(str::trim);
        let prefix = get("topic.prefix").unwrap_or("").to_string();
        if prefix.is_empty() {
            errors.push(err("topic.prefix", "required"));
        }
        match get("plugin.name").unwrap_or("pgoutput") {
            "pgoutput" => {}
            other => errors.push(err(
                "plugin.name",
                &format!(
                    "{other:?} is not supported: Weir reads pgoutput (built into PostgreSQL 10+)"
                ),
            )),
        }
        let mode = Mode::parse(get("snapshot.mode").unwrap_or("initial")).unwrap_or_else(|e| {
            errors.push(err("snapshot.mode", &e));
            Mode::Initial
        });
        let slot = get("slot.name").unwrap_or("debezium").to_string();
        if slot.is_empty()
            || slot.len() > 63
            || !slot
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            errors.push(err(
                "slot.name",
                "lower-case letters, digits and '_' only, at most 63 (PostgreSQL's rule for slot names)",
            ));
        }
        let publication = get("publication.name")
            .unwrap_or("dbz_publication")
            .to_string();
        if publication.is_empty() {
            errors.push(err("publication.name", "must not be empty"));
        }
        let publish = match get("publication.autocreate.mode").unwrap_or("all_tables") {
            "all_tables" => Publish::AllTables,
            "filtered" => Publish::Filtered,
            "disabled" => Publish::Disabled,
            other => {
                errors.push(err(
                    "publication.autocreate.mode",
                    &format!("{other:?} is not one of all_tables, filtered, disabled"),
                ));
                Publish::AllTables
            }
        };
        let mut one_of = |key: &str, default: &str, allowed: &[&str]| -> usize {
            let v = get(key).unwrap_or(default);
            allowed.iter().position(|a| *a == v).unwrap_or_else(|| {
                errors.push(err(
                    key,
                    &format!("{v:?} is not one of {}", allowed.join(", ")),
                ));
                0
            })
        };
        let modes = Modes {
            decimals: [Decimals::Precise, Decimals::Double, Decimals::String][one_of(
                "decimal.handling.mode",
                "precise",
                &["precise", "double", "string"],
            )],
            time: [
                TimePrecision::Adaptive,
                TimePrecision::AdaptiveTimeMicroseconds,
                TimePrecision::Connect,
            ][one_of(
                "time.precision.mode",
                "adaptive",
                &["adaptive", "adaptive_time_microseconds", "connect"],
            )],
            binary: [
                Binary::Bytes,
                Binary::Base64,
                Binary::Base64UrlSafe,
                Binary::Hex,
            ][one_of(
                "binary.handling.mode",
                "bytes",
                &["bytes", "base64", "base64-url-safe", "hex"],
            )],
            interval: [Intervals::Numeric, Intervals::String]
                [one_of("interval.handling.mode", "numeric", &["numeric", "string"])],
        };
        // Accepted for Debezium's configs; what they tune has no counterpart here.
        let _ = one_of(
            "event.processing.failure.handling.mode",
            "fail",
            &["fail", "warn", "skip"],
        );
        let _ = one_of("include.unknown.datatypes", "false", &["false", "true"]);
        for (key, supported) in [("provide.transaction.metadata", "false")] {
            if let Some(v) = get(key)
                && !v.eq_ignore_ascii_case(supported)
            {
                errors.push(err(
                    key,
                    &format!("{v:?} is not supported yet (only {supported}, Debezium's default)"),
                ));
            }
        }
        let mut number = |key: &str, default: &str, min: u64| -> u64 {
            match get(key).unwrap_or(default).parse::<u64>() {
                Ok(n) if n >= min => n,
                _ => {
                    errors.push(err(key, &format!("a whole number, at least {min}")));
                    min
                }
            }
        };
        let heartbeat_ms = number("heartbeat.interval.ms", "10000", 0);
        let threads = number("snapshot.max.threads", "1", 1).min(u64::from(u32::MAX)) as u32;
        let reader = number(parallel::READER, "0", 0).min(u64::from(u32::MAX)) as u32;
        let _ = number("status.update.interval.ms", "10000", 0);
        let _ = number("max.queue.size", "8192", 1);
        let _ = number("max.queue.size.in.bytes", "0", 0);
        let _ = number("snapshot.lock.timeout.ms", "10000", 0);
        let slot_retries = number("slot.max.retries", "5", 0).min(1000) as u32;
        let slot_retry_ms = number("slot.retry.delay.ms", "400", 0).min(600_000);
        let fetch = number("snapshot.fetch.size", "10240", 1) as u32;
        let max_batch = number("max.batch.size", "2048", 1) as u32;
        let poll_ms = number("poll.interval.ms", "500", 0).min(10_000) as u32;
        let heartbeat_topic = format!(
            "{}.{prefix}",
            get("heartbeat.topics.prefix").unwrap_or("__debezium-heartbeat")
        );
        let flag = |k: &str, default: bool| match get(k) {
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            _ => default,
        };
        let tombstones = flag("tombstones.on.delete", true);
        let drop_slot = flag("slot.drop.on.stop", false);
        let mut skipped = Vec::new();
        for op in get("skipped.operations")
            .unwrap_or("t")
            .split(',')
            .map(str::trim)
        {
            match op {
                "none" | "" => {}
                "c" | "u" | "d" | "t" => skipped.extend(op.chars()),
                other => errors.push(err(
                    "skipped.operations",
                    &format!("{other:?} is not one of c, u, d, t, none"),
                )),
            }
        }
        let mut list = |key: &str, alias: Option<&str>| {
            patterns(config, key, alias).unwrap_or_else(|e| {
                errors.push(e);
                Vec::new()
            })
        };
        let include = list("table.include.list", Some("table.whitelist"));
        let exclude = list("table.exclude.list", Some("table.blacklist"));
        let schema_include = list("schema.include.list", Some("schema.whitelist"));
        let schema_exclude = list("schema.exclude.list", Some("schema.blacklist"));
        let column_include = list("column.include.list", Some("column.whitelist"));
        let column_exclude = list("column.exclude.list", Some("column.blacklist"));
        let snapshot_tables = list("snapshot.include.collection.list", None);
        if !column_include.is_empty() && !column_exclude.is_empty() {
            errors.push(err(
                "column.exclude.list",
                "cannot be used with column.include.list (as Debezium)",
            ));
        }
        let mut key_columns = Vec::new();
        for entry in get("message.key.columns")
            .unwrap_or("")
            .split(';')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let parsed = entry.split_once(':').and_then(|(table, cols)| {
                let cols: Vec<String> = cols
                    .split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect();
                let re = regex_lite::Regex::new(&format!("^(?:{})$", table.trim())).ok()?;
                (!cols.is_empty()).then_some((re, cols))
            });
            match parsed {
                Some(p) => key_columns.push(p),
                None => errors.push(err(
                    "message.key.columns",
                    &format!(
                        "{entry:?} is not <schema.table regular expression>:<column>,<column>"
                    ),
                )),
            }
        }
        let heartbeat_query = get("heartbeat.action.query")
            .filter(|q| !q.is_empty())
            .map(str::to_string);
        // Semicolons separate statements; a doubled one is a semicolon in a statement.
        let initial_statements = get("database.initial.statements")
            .unwrap_or("")
            .replace(";;", "\u{0}")
            .split(';')
            .map(|st| st.replace('\u{0}', ";").trim().to_string())
            .filter(|st| !st.is_empty())
            .collect();
        let plan = match get(parallel::PLAN).map(weir_cdc_common::parallel::decode) {
            None => Vec::new(),
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                errors.push(err(parallel::PLAN, &e));
                Vec::new()
            }
        };
        if reader > 0 && reader as usize >= plan.len() {
            errors.push(err(
                parallel::READER,
                &format!("reader {reader} is not in the snapshot plan"),
            ));
        }
        if !include.is_empty() && !exclude.is_empty() {
            errors.push(err(
                "table.exclude.list",
                "cannot be used with table.include.list (as Debezium)",
            ));
        }
        if !schema_include.is_empty() && !schema_exclude.is_empty() {
            errors.push(err(
                "schema.exclude.list",
                "cannot be used with schema.include.list (as Debezium)",
            ));
        }
        if errors.is_empty() {
            Ok(Settings {
                prefix,
                slot,
                publication,
                publish,
                include,
                exclude,
                schema_include,
                schema_exclude,
                mode,
                tombstones,
                heartbeat_ms,
                heartbeat_topic,
                drop_slot,
                modes,
                column_include,
                column_exclude,
                key_columns,
                snapshot_tables,
                heartbeat_query,
                initial_statements,
                slot_retries,
                slot_retry_ms,
                fetch,
                max_batch,
                poll_ms,
                skipped,
                threads,
                reader,
                plan,
            })
        } else {
            Err(errors)
        }
    }

    /// A captured table as its records show it: columns left out of the value
    /// (`column.include.list`, `column.exclude.list`), and the key's columns when
    /// `message.key.columns` names the table.
    fn shape(&self, t: &mut Table) -> Result<(), Error> {
        let full = t.full_name();
        let hit = |rs: &[regex_lite::Regex], c: &str| {
            let name = format!("{full}.{c}");
            rs.iter().any(|r| r.is_match(&name))
        };
        for c in &mut t.columns {
            c.excluded = if !self.column_include.is_empty() {
                !hit(&self.column_include, &c.name)
            } else {
                hit(&self.column_exclude, &c.name)
            };
        }
        if let Some((_, cols)) = self.key_columns.iter().find(|(r, _)| r.is_match(&full)) {
            if let Some(missing) = cols
                .iter()
                .find(|k| !t.columns.iter().any(|c| &c.name == *k))
            {
                return Err(Error::Fatal(format!(
                    "message.key.columns names column {missing:?} of {full}, which has no such column"
                )));
            }
            // The key's fields in the table's column order, as Debezium.
            let mut n = 0;
            for c in &mut t.columns {
                c.pk = if cols.contains(&c.name) {
                    n += 1;
                    n
                } else {
                    0
                };
            }
        }
        Ok(())
    }

    /// Whether `schema.table` is captured.
    fn captures(&self, schema: &str, table: &str) -> bool {
        let full = format!("{schema}.{table}");
        let hit = |rs: &[regex_lite::Regex], s: &str| rs.iter().any(|r| r.is_match(s));
        let schema_ok = if !self.schema_include.is_empty() {
            hit(&self.schema_include, schema)
        } else {
            !hit(&self.schema_exclude, schema)
        };
        let table_ok = if !self.include.is_empty() {
            hit(&self.include, &full)
        } else {
            !hit(&self.exclude, &full)
        };
        schema_ok && table_ok
    }
}

/// An image's values (`None` where unchanged and left out).
fn image<'a>(i: &Option<Image<'a>>) -> Option<Vec<Option<ValueRef<'a>>>> {
    i.as_ref().map(|i| i.values().collect())
}

/// Every row of a query, owned.
fn rows(
    db: &Connection,
    sql: &str,
    params: &[P],
) -> Result<Vec<Vec<weir_sdk::sql::OwnedValue>>, Error> {
    let cursor = db.query(sql, params)?;
    let mut out = Vec::new();
    while let Some(b) = cursor.next(10_000)? {
        let r = Rows::parse(&b).map_err(|e| Error::Fatal(e.to_string()))?;
        out.extend(r.iter().map(|row| row.to_vec()));
    }
    Ok(out)
}

const CATALOG: &str = r"
SELECT n.nspname::text, c.relname::text, a.attname::text,
       (CASE WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END)::text,
       a.atttypmod::int8, a.attnotnull,
       coalesce(array_position(i.indkey::int2[], a.attnum)
                - array_lower(i.indkey::int2[], 1) + 1, 0)::int8,
       (SELECT string_agg(e.enumlabel::text, ',' ORDER BY e.enumsortorder) FROM pg_enum e
         WHERE e.enumtypid = (CASE WHEN t.typtype = 'd' THEN bt.oid ELSE t.oid END)),
       (SELECT et.typname::text FROM pg_type et
         WHERE et.oid = (CASE WHEN t.typtype = 'd' THEN bt.typelem ELSE t.typelem END)
           AND (CASE WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END) LIKE '\_%')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype AND t.typtype = 'd'
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_%'
ORDER BY 1, 2, a.attnum";

/// The captured tables, by `schema.table`.
fn catalog(db: &Connection, s: &Settings) -> Result<Vec<Table>, Error> {
    let mut out: Vec<Table> = Vec::new();
    for r in rows(db, CATALOG, &[])? {
        let (schema, name) = (
            text(r.first()).unwrap_or_default(),
            text(r.get(1)).unwrap_or_default(),
        );
        if !s.captures(&schema, &name) {
            continue;
        }
        let col = ColumnDef {
            name: text(r.get(2)).unwrap_or_default(),
            ty: PgType {
                name: text(r.get(3)).unwrap_or_default(),
                typmod: int(r.get(4)) as i32,
                labels: text(r.get(7)),
                elem: text(r.get(8)),
            },
            not_null: matches!(r.get(5), Some(weir_sdk::sql::OwnedValue::Bool(true))),
            pk: int(r.get(6)) as u32,
            excluded: false,
        };
        match out.last_mut() {
            Some(t) if t.schema == schema && t.name == name => t.columns.push(col),
            _ => out.push(Table {
                schema,
                name,
                columns: vec![col],
            }),
        }
    }
    Ok(out)
}

/// The plan of a parallel snapshot over `n` tasks: each table the snapshot reads, by its
/// heap's size now.
fn plan_snapshot(s: &Settings, n: usize) -> Result<Vec<Vec<parallel::Range>>, Error> {
    let db = open_db(s)?;
    let mut tables = Vec::new();
    for t in catalog(&db, s)? {
        let full = t.full_name();
        if !s.snapshot_tables.is_empty() && !s.snapshot_tables.iter().any(|r| r.is_match(&full)) {
            continue;
        }
        let blocks = int(rows(
            &db,
            "SELECT (pg_relation_size(c.oid) / current_setting('block_size')::int8)::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
            &[P::Text(t.schema.clone()), P::Text(t.name.clone())],
        )?
        .first()
        .and_then(|r| r.first()));
        tables.push(weir_cdc_common::parallel::Span {
            schema: t.schema,
            table: t.name,
            first: 0,
            end: blocks.max(0),
        });
    }
    Ok(weir_cdc_common::parallel::plan(
        &tables,
        n,
        parallel::MIN_SPLIT_BLOCKS,
    ))
}

/// A table and its schemas, as records are written.
struct Captured {
    table: Table,
    schemas: Schemas,
}

/// The snapshot in progress.
struct Snapshot {
    db: Connection,
    /// What is left to read: tables, each with the condition that reads its range (none:
    /// all of it).
    tables: VecDeque<(Rc<Captured>, Option<String>)>,
    reading: Option<(Rc<Captured>, Cursor)>,
    /// The last row read, held back so the snapshot's very last record can say `last`.
    held: Option<(Rc<Captured>, Vec<weir_sdk::sql::OwnedValue>)>,
    /// A share of a parallel snapshot, of this epoch: its last record says which share it
    /// ends (not `last`).
    share: Option<i64>,
}

enum Phase {
    Snapshot(Box<Snapshot>),
    /// Task 0 of a parallel snapshot, its own share read: waiting until it and every other
    /// task's share are in the log.
    HandOver(Box<HandOver>),
    /// A task > 0 of a parallel snapshot: reads its share when task 0 publishes a snapshot.
    Reader(Box<Reader>),
    Stream,
    /// `initial_only`: the snapshot is done and nothing is streamed.
    Done,
}

/// A parallel snapshot task 0 runs: what it publishes for the other tasks.
struct Published {
    epoch: i64,
    /// Task 0's `application_name` while the snapshot is open to the other tasks.
    name: String,
}

struct HandOver {
    /// The snapshot transaction, held open while other tasks may still import it.
    snap: Box<Snapshot>,
    /// Task 0's own share is in the log.
    landed: bool,
    checked_ms: i64,
    said_ms: i64,
}

#[derive(Default)]
struct Reader {
    reading: Option<(i64, Box<Snapshot>)>,
    /// The share of this epoch is read; its last record is not in the log yet.
    sent: Option<i64>,
    /// The share of this epoch is in the log.
    done: Option<i64>,
    checked_ms: i64,
}

/// How often a reader looks for task 0's published snapshot, and task 0 for readers done.
const READER_CHECK_MS: i64 = 500;
const HANDOVER_CHECK_MS: i64 = 200;

/// Where the stream is: the last change handed out, and what may be confirmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Position {
    /// The commit position and index of the last change handed out (or stored, at start).
    commit: u64,
    seq: i64,
    /// Everything before this may be confirmed once what was handed out is stored.
    proc: u64,
}

struct PgSource {
    s: Settings,
    db: Connection,
    db_name: String,
    stream: Option<ChangeStream>,
    phase: Phase,
    tables: HashMap<String, Rc<Captured>>,
    partition: Vec<u8>,
    /// What a restart must not hand out again.
    skip_to: (u64, i64),
    at: Position,
    /// The last position confirmed to the server.
    confirmed: u64,
    /// When a record last went out, and the `proc` it carried.
    last_emit_ms: i64,
    last_emit_proc: u64,
    /// When the records being written were processed (ms since the epoch): Debezium's
    /// `ts_ms`, read once per batch.
    now: i64,
    /// When `heartbeat.action.query` last ran.
    last_action_ms: i64,
    /// Task 0 of a parallel snapshot: what it publishes to the other tasks.
    published: Option<Published>,
}

/// A connection to the database, with `database.initial.statements` run on it.
fn open_db(s: &Settings) -> Result<Connection, Error> {
    let db = Connection::open(GRANT)?;
    for st in &s.initial_statements {
        db.execute(st, &[]).map_err(|e| {
            Error::Fatal(format!("database.initial.statements: {st:?} failed: {e}"))
        })?;
    }
    Ok(db)
}

impl PgSource {
    fn connect(&self) -> Result<Connection, Error> {
        open_db(&self.s)
    }

    fn capture(&mut self, mut t: Table) -> Result<Rc<Captured>, Error> {
        self.s.shape(&mut t)?;
        let c = Rc::new(Captured {
            schemas: Schemas::new(&t, &self.s.prefix, self.s.modes),
            table: t,
        });
        self.tables.insert(c.table.full_name(), c.clone());
        Ok(c)
    }

    fn offset(&self, meta: Option<(&weir_sdk::sql::ChangeMeta, u64)>) -> Vec<u8> {
        match meta {
            Some((m, proc)) => format!(
                "{{\"lsn_proc\":{proc},\"lsn_commit\":{},\"lsn\":{},\"txId\":{},\"seq\":{},\"ts_usec\":{}}}",
                m.commit_lsn, m.lsn, m.xid, m.seq, m.commit_time_us
            )
            .into_bytes(),
            None => format!(
                "{{\"lsn_proc\":{},\"lsn_commit\":{},\"seq\":{}}}",
                self.at.proc, self.at.commit, self.at.seq
            )
            .into_bytes(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        out: &mut BatchBuilder,
        c: &Captured,
        op: &str,
        before: Option<&[Option<ValueRef<'_>>]>,
        after: Option<&[Option<ValueRef<'_>>]>,
        src: &envelope::Source<'_>,
        offset: &[u8],
    ) {
        let key = if op == "t" {
            None
        } else {
            c.schemas
                .key(&c.table, after.or(before).unwrap_or(&[]), self.s.modes)
        };
        let value = c
            .schemas
            .value(&c.table, op, before, after, src, self.s.modes, self.now);
        let ts = self.now;
        out.push(&RecordData {
            key: key.as_deref(),
            value: Some(&value),
            topic: &c.schemas.topic,
            timestamp: ts,
            source_partition: Some(&self.partition),
            source_offset: Some(offset),
            ..Default::default()
        });
        if op == "d" && self.s.tombstones {
            out.push(&RecordData {
                key: key.as_deref(),
                value: None,
                topic: &c.schemas.topic,
                timestamp: ts,
                source_partition: Some(&self.partition),
                source_offset: Some(offset),
                ..Default::default()
            });
        }
        self.last_emit_ms = ts;
        self.last_emit_proc = self.at.proc;
    }

    /// Starts a snapshot: of every captured table, or of a share of a parallel snapshot's
    /// plan (`share`: its epoch and ranges; `unplanned`: with the captured tables the plan
    /// does not name, which task 0 reads whole). `at`: the exported snapshot to read in
    /// (none: a new repeatable-read one).
    fn start_snapshot(
        &mut self,
        at: Option<&str>,
        share: Option<(i64, &[parallel::Range], bool)>,
    ) -> Result<Snapshot, Error> {
        let snap = self.connect()?;
        let mut imported = false;
        match at {
            Some(name) => match snap.begin_at_snapshot(name) {
                Ok(()) => imported = true,
                // A reader after task 0's snapshot transaction ended (its connection broke):
                // its own snapshot still misses nothing (the stream starts before it).
                Err(e) if self.s.reader > 0 => {
                    weir_sdk::log(
                        weir_sdk::Level::Warn,
                        &format!(
                            "cannot import task 0's snapshot {name} ({e:?}); reading the share in a new one"
                        ),
                    );
                    snap.begin(BeginKind::Snapshot)?;
                }
                Err(e) => return Err(e.into()),
            },
            None => snap.begin(BeginKind::Snapshot)?,
        }
        let wanted = |c: &Captured| {
            let full = c.table.full_name();
            self.s.snapshot_tables.is_empty()
                || self.s.snapshot_tables.iter().any(|r| r.is_match(&full))
        };
        let mut all: Vec<Rc<Captured>> = self
            .tables
            .values()
            .filter(|c| wanted(c))
            .cloned()
            .collect();
        all.sort_by_key(|c| c.table.full_name());
        let tables: Vec<(Rc<Captured>, Option<String>)> = match share {
            None => all.into_iter().map(|c| (c, None)).collect(),
            Some((_, ranges, unplanned)) => {
                let mut l: Vec<(Rc<Captured>, Option<String>)> = ranges
                    .iter()
                    .filter_map(|r| {
                        let c = self.tables.get(&r.full_name()).filter(|c| wanted(c))?;
                        Some((c.clone(), parallel::filter(r)))
                    })
                    .collect();
                if unplanned {
                    let planned: BTreeSet<String> = self
                        .s
                        .plan
                        .iter()
                        .flatten()
                        .map(|r| r.full_name())
                        .collect();
                    l.extend(
                        all.into_iter()
                            .filter(|c| !planned.contains(&c.table.full_name()))
                            .map(|c| (c, None)),
                    );
                }
                l
            }
        };
        weir_sdk::log(
            weir_sdk::Level::Info,
            &format!(
                "snapshot of {} {} {}",
                tables.len(),
                match share {
                    Some(_) => format!(
                        "range(s), share {} of {}",
                        self.s.reader + 1,
                        self.s.plan.len()
                    ),
                    None => "table(s)".into(),
                },
                match (at, imported) {
                    (Some(name), true) if share.is_some() => format!("in snapshot {name}"),
                    (Some(_), true) => "in the snapshot exported by the new slot".into(),
                    _ => "in a repeatable-read transaction (the slot existed)".into(),
                }
            ),
        );
        Ok(Snapshot {
            db: snap,
            tables: tables.into(),
            reading: None,
            held: None,
            share: share.map(|(e, _, _)| e),
        })
    }

    /// Reads the next rows of the snapshot. `Some(any)` once it is all read (nothing is left
    /// to poll), with whether it wrote any record; its transaction stays open.
    fn poll_snapshot(
        &mut self,
        snap: &mut Snapshot,
        max: u32,
        out: &mut BatchBuilder,
    ) -> Result<Option<bool>, Error> {
        let mut n = 0;
        let (prefix, db) = (self.s.prefix.clone(), self.db_name.clone());
        const MORE: &[u8] = b"{\"snapshot\":true}";
        while n < max {
            if snap.reading.is_none() {
                let Some((c, filter)) = snap.tables.pop_front() else {
                    let Some((c, row)) = snap.held.take() else {
                        return Ok(Some(false));
                    };
                    let values: Vec<Option<ValueRef<'_>>> =
                        row.iter().map(|v| Some(v.as_ref())).collect();
                    match snap.share {
                        // A share's end: which one, so its `ack` says it is in the log.
                        Some(epoch) => {
                            let offset = format!("{{\"snapshot\":true,\"share\":{epoch}}}");
                            self.emit_snapshot_row(
                                out,
                                &c,
                                &values,
                                "true",
                                offset.as_bytes(),
                                &prefix,
                                &db,
                            );
                        }
                        // The snapshot's end: where the stream starts.
                        None => {
                            let offset = self.offset(None);
                            self.emit_snapshot_row(out, &c, &values, "last", &offset, &prefix, &db);
                        }
                    }
                    return Ok(Some(true));
                };
                let cols: Vec<String> = c
                    .table
                    .columns
                    .iter()
                    .map(|col| {
                        if col.ty.readable() {
                            ident(&col.name)
                        } else {
                            format!("{}::text", ident(&col.name))
                        }
                    })
                    .collect();
                let mut sql = format!(
                    "SELECT {} FROM {}.{}",
                    cols.join(", "),
                    ident(&c.table.schema),
                    ident(&c.table.name)
                );
                if let Some(f) = filter {
                    sql.push_str(" WHERE ");
                    sql.push_str(&f);
                }
                let cursor = snap.db.query(&sql, &[])?;
                snap.reading = Some((c, cursor));
            }
            let Some((c, cursor)) = &snap.reading else {
                continue;
            };
            match cursor.next(self.s.fetch.min(max - n).max(1))? {
                None => snap.reading = None,
                Some(b) => {
                    let c = c.clone();
                    let rs = Rows::parse(&b).map_err(|e| Error::Fatal(e.to_string()))?;
                    let Some(last) = rs.len().checked_sub(1) else {
                        continue;
                    };
                    // The row held back from before goes first; this batch's rows are written
                    // from the buffer, and only its last is kept (owned) as the next one held.
                    // While the snapshot is incomplete a restart takes it again.
                    if let Some((hc, hrow)) = snap.held.take() {
                        let held: Vec<Option<ValueRef<'_>>> =
                            hrow.iter().map(|v| Some(v.as_ref())).collect();
                        self.emit_snapshot_row(out, &hc, &held, "true", MORE, &prefix, &db);
                        n += 1;
                    }
                    let mut values: Vec<Option<ValueRef<'_>>> = Vec::new();
                    for r in rs.iter().take(last) {
                        values.clear();
                        values.extend(r.values().map(Some));
                        self.emit_snapshot_row(out, &c, &values, "true", MORE, &prefix, &db);
                        n += 1;
                    }
                    snap.held = Some((c, rs.row(last).to_vec()));
                }
            }
        }
        Ok(None)
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_snapshot_row(
        &mut self,
        out: &mut BatchBuilder,
        c: &Captured,
        values: &[Option<ValueRef<'_>>],
        snapshot: &str,
        offset: &[u8],
        prefix: &str,
        db: &str,
    ) {
        let src = envelope::Source {
            version: VERSION,
            prefix,
            db,
            ts_ms: self.now,
            snapshot,
            tx_id: None,
            lsn: None,
            sequence: None,
        };
        self.push(out, c, "r", None, Some(values), &src, offset);
    }

    /// A heartbeat record: the stream's position, stored with nothing else to carry it.
    fn heartbeat(&mut self, out: &mut BatchBuilder) {
        let now = self.now;
        let (key, value) = envelope::heartbeat(&self.s.prefix, now);
        let offset = self.offset(None);
        out.push(&RecordData {
            key: Some(&key),
            value: Some(&value),
            topic: &self.s.heartbeat_topic,
            timestamp: now,
            source_partition: Some(&self.partition),
            source_offset: Some(&offset),
            ..Default::default()
        });
        self.last_emit_ms = now;
        self.last_emit_proc = self.at.proc;
    }

    /// Task 0 of a parallel snapshot, its share read: once it is in the log and every other
    /// task said its share is, ends the snapshot transaction, stores the stream's position
    /// (a heartbeat) and streams.
    fn poll_hand_over(
        &mut self,
        mut h: Box<HandOver>,
        out: &mut BatchBuilder,
    ) -> Result<(), Error> {
        self.now = now_ms();
        let Some(p) = &self.published else {
            return Err(Error::Fatal("a parallel snapshot without its epoch".into()));
        };
        if !h.landed || self.now - h.checked_ms < HANDOVER_CHECK_MS {
            self.phase = Phase::HandOver(h);
            return Ok(());
        }
        h.checked_ms = self.now;
        let tag = parallel::tag(&self.s.slot);
        // Publishing again each time: the session may have been replaced since.
        let found = rows(
            &self.db,
            "SELECT set_config('application_name', $1, false), (SELECT string_agg(application_name::text, ',') FROM pg_stat_activity WHERE application_name LIKE $2)",
            &[
                P::Text(p.name.clone()),
                P::Text(parallel::done_pattern(&tag, p.epoch)),
            ],
        )?;
        let n = self.s.plan.len() as u32;
        let done: BTreeSet<u32> = text(found.first().and_then(|r| r.get(1)))
            .unwrap_or_default()
            .split(',')
            .filter_map(|name| parallel::parse_done(&tag, p.epoch, name))
            .filter(|i| (1..n).contains(i))
            .collect();
        if done.len() + 1 < n as usize {
            if self.now - h.said_ms >= 30_000 {
                h.said_ms = self.now;
                weir_sdk::log(
                    weir_sdk::Level::Info,
                    &format!(
                        "parallel snapshot: task 0's share is in the log; waiting for {} of {} other task(s)",
                        n as usize - 1 - done.len(),
                        n - 1
                    ),
                );
            }
            self.phase = Phase::HandOver(h);
            return Ok(());
        }
        let _ = h.snap.db.commit();
        self.db.execute("RESET application_name", &[])?;
        self.published = None;
        weir_sdk::log(
            weir_sdk::Level::Info,
            &format!("parallel snapshot: all {n} shares are in the log; streaming"),
        );
        self.heartbeat(out);
        self.phase = if self.s.mode == Mode::InitialOnly {
            Phase::Done
        } else {
            Phase::Stream
        };
        Ok(())
    }

    /// A task > 0 of a parallel snapshot: reads its share of each snapshot task 0 publishes,
    /// then says it is in the log.
    fn poll_reader(
        &mut self,
        mut r: Box<Reader>,
        max: u32,
        out: &mut BatchBuilder,
    ) -> Result<(), Error> {
        self.now = now_ms();
        if let Some((epoch, snap)) = &mut r.reading {
            let epoch = *epoch;
            if let Some(wrote) = self.poll_snapshot(snap, max, out)? {
                let _ = snap.db.commit();
                r.reading = None;
                if wrote {
                    r.sent = Some(epoch);
                } else {
                    r.done = Some(epoch);
                    r.checked_ms = 0;
                }
            }
        } else if self.now - r.checked_ms >= READER_CHECK_MS {
            r.checked_ms = self.now;
            let tag = parallel::tag(&self.s.slot);
            let me = match r.done {
                Some(e) => parallel::done(&tag, e, self.s.reader),
                None => "weir".into(),
            };
            let found = rows(
                &self.db,
                "SELECT set_config('application_name', $1, false), (SELECT application_name::text FROM pg_stat_activity WHERE application_name LIKE $2 ORDER BY backend_start DESC LIMIT 1)",
                &[P::Text(me), P::Text(parallel::published_pattern(&tag))],
            )?;
            let published = text(found.first().and_then(|r| r.get(1)))
                .and_then(|name| parallel::parse_published(&tag, &name));
            if let Some((epoch, name)) = published
                && r.done != Some(epoch)
                && r.sent != Some(epoch)
            {
                let share = self.s.plan[self.s.reader as usize].clone();
                let snap = self.start_snapshot(Some(&name), Some((epoch, &share, false)))?;
                r.reading = Some((epoch, Box::new(snap)));
            }
        }
        self.phase = Phase::Reader(r);
        Ok(())
    }

    /// The table a change names: from the catalog (read again when its columns changed).
    fn table_for(
        &mut self,
        rel: &weir_sdk::sql::Relation<'_>,
    ) -> Result<Option<Rc<Captured>>, Error> {
        if !self.s.captures(rel.schema, rel.table) {
            return Ok(None);
        }
        let full = format!("{}.{}", rel.schema, rel.table);
        let same = |c: &Captured| {
            c.table.columns.len() == rel.columns.len()
                && c.table
                    .columns
                    .iter()
                    .zip(&rel.columns)
                    .all(|(a, b)| a.name == b.name)
        };
        if let Some(c) = self.tables.get(&full)
            && same(c)
        {
            return Ok(Some(c.clone()));
        }
        let fresh = catalog(&self.db, &self.s)?
            .into_iter()
            .find(|t| t.schema == rel.schema && t.name == rel.table);
        let table = match fresh {
            Some(t)
                if t.columns.len() == rel.columns.len()
                    && t.columns
                        .iter()
                        .zip(&rel.columns)
                        .all(|(a, b)| a.name == b.name) =>
            {
                t
            }
            // The catalog moved on since the change: describe it from the change itself.
            _ => Table {
                schema: rel.schema.to_string(),
                name: rel.table.to_string(),
                columns: rel
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| ColumnDef {
                        name: c.name.to_string(),
                        ty: PgType {
                            name: c.type_name.to_ascii_lowercase(),
                            typmod: c.type_modifier,
                            labels: None,
                            elem: None,
                        },
                        pk: if c.key { i as u32 + 1 } else { 0 },
                        // What pgoutput says: key columns (never null in a primary key).
                        not_null: c.key,
                        excluded: false,
                    })
                    .collect(),
            },
        };
        Ok(Some(self.capture(table)?))
    }

    fn poll_stream(&mut self, max: u32, out: &mut BatchBuilder) -> Result<(), Error> {
        let Some(stream) = &self.stream else {
            return Ok(());
        };
        let buf = stream.next(max.min(self.s.max_batch).max(1), self.s.poll_ms)?;
        // Debezium's `ts_ms`: when the changes were processed, after `next` waited for them.
        self.now = now_ms();
        let batch = Changes::parse(&buf)
            .map_err(|e| Error::Fatal(format!("the host sent a bad changes buffer: {e}")))?;
        let (prefix, db_name) = (self.s.prefix.clone(), self.db_name.clone());
        let mut rels: Vec<Option<Rc<Captured>>> = Vec::with_capacity(batch.relations.len());
        for r in &batch.relations {
            rels.push(self.table_for(r)?);
        }
        for ch in &batch.changes {
            let m = ch.meta;
            let here = (m.commit_lsn, i64::from(m.seq));
            if here <= self.skip_to {
                if m.end_lsn != 0 {
                    self.at.proc = self.at.proc.max(m.end_lsn);
                }
                continue;
            }
            self.at.commit = m.commit_lsn;
            self.at.seq = i64::from(m.seq);
            if m.end_lsn != 0 {
                self.at.proc = self.at.proc.max(m.end_lsn);
            }
            let op = match ch.op {
                Op::Insert => 'c',
                Op::Update => 'u',
                Op::Delete => 'd',
                Op::Truncate => 't',
            };
            if self.s.skipped.contains(&op) {
                continue;
            }
            let offset = self.offset(Some((&m, self.at.proc)));
            let src = envelope::Source {
                version: VERSION,
                prefix: &prefix,
                db: &db_name,
                ts_ms: m.commit_time_us.div_euclid(1000),
                snapshot: "false",
                tx_id: Some(m.xid),
                lsn: Some(m.lsn),
                sequence: Some((self.at.proc, m.lsn)),
            };
            if ch.op == Op::Truncate {
                for r in &ch.relations {
                    if let Some(Some(c)) = rels.get(*r as usize) {
                        let c = c.clone();
                        self.push(out, &c, "t", None, None, &src, &offset);
                    }
                }
                continue;
            }
            let Some(Some(c)) = ch.relations.first().and_then(|r| rels.get(*r as usize)) else {
                continue;
            };
            let c = c.clone();
            let before = image(&ch.before);
            let after = image(&ch.after);
            match ch.op {
                Op::Insert => self.push(out, &c, "c", None, after.as_deref(), &src, &offset),
                Op::Delete => self.push(out, &c, "d", before.as_deref(), None, &src, &offset),
                _ => {
                    let key_changed = match (&ch.before, &before, &after) {
                        (Some(b), Some(bv), Some(av)) => {
                            b.kind == ImageKind::Key
                                || c.table
                                    .columns
                                    .iter()
                                    .enumerate()
                                    .any(|(i, col)| col.pk > 0 && bv.get(i) != av.get(i))
                        }
                        _ => false,
                    };
                    if key_changed && c.table.has_key() {
                        // A primary key update: a delete of the old key (and its tombstone),
                        // then a create of the new one, as Debezium.
                        self.push(out, &c, "d", before.as_deref(), None, &src, &offset);
                        self.push(out, &c, "c", None, after.as_deref(), &src, &offset);
                    } else {
                        let before = before.filter(|_| {
                            ch.before
                                .as_ref()
                                .is_some_and(|b| b.kind == ImageKind::Full)
                        });
                        self.push(
                            out,
                            &c,
                            "u",
                            before.as_deref(),
                            after.as_deref(),
                            &src,
                            &offset,
                        );
                    }
                }
            }
        }
        self.at.proc = self.at.proc.max(batch.position);
        let now = self.now;
        // `heartbeat.action.query` every heartbeat interval: a write to the captured database
        // gives an otherwise idle one changes to move its slot on.
        if let Some(q) = &self.s.heartbeat_query
            && self.s.heartbeat_ms > 0
            && now - self.last_action_ms >= self.s.heartbeat_ms as i64
        {
            self.last_action_ms = now;
            self.db.execute(q, &[]).map_err(|e| match e {
                weir_sdk::sql::SqlError::Unavailable(_) => {
                    Error::Retriable(format!("heartbeat.action.query failed: {e}"))
                }
                _ => Error::Fatal(format!("heartbeat.action.query failed: {e}")),
            })?;
        }
        // Heartbeat: the position moved with nothing handed out (idle tables, or changes only
        // to tables not captured), so the slot can move on once the heartbeat is stored.
        if self.s.heartbeat_ms > 0
            && self.at.proc > self.last_emit_proc
            && now - self.last_emit_ms >= self.s.heartbeat_ms as i64
        {
            self.heartbeat(out);
        }
        Ok(())
    }

    fn open_stream(&self) -> Result<ChangeStream, Error> {
        let tables = match self.s.publish {
            // `disabled`: the publication is used as it is (never altered).
            Publish::AllTables | Publish::Disabled => Vec::new(),
            Publish::Filtered => {
                let mut t: Vec<String> = self.tables.keys().cloned().collect();
                t.sort();
                t
            }
        };
        if self.s.publish == Publish::Disabled {
            let exists = rows(
                &self.db,
                "SELECT 1 FROM pg_publication WHERE pubname = $1",
                &[P::Text(self.s.publication.clone())],
            )?;
            if exists.is_empty() {
                return Err(Error::Fatal(format!(
                    "publication {:?} does not exist and publication.autocreate.mode is disabled",
                    self.s.publication
                )));
            }
        }
        if self.s.publish == Publish::Filtered && tables.is_empty() {
            return Err(Error::Fatal(
                "no table matches table.include.list / table.exclude.list: nothing to publish"
                    .into(),
            ));
        }
        let opts = StreamOptions {
            slot: self.s.slot.clone(),
            publication: self.s.publication.clone(),
            tables,
            create_slot: true,
        };
        // A session of this connector's previous run may still hold the slot for a moment
        // (`slot.max.retries` tries `slot.retry.delay.ms` apart).
        let mut tries = 0;
        loop {
            match ChangeStream::open(GRANT, &opts) {
                Ok(s) => return Ok(s),
                Err(weir_sdk::sql::SqlError::Statement(m))
                    if m.contains("in use") && tries < self.s.slot_retries =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(self.s.slot_retry_ms));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Source for PgSource {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor(
            "postgres-source",
            VERSION,
            PluginKind::Source,
            "Change data capture for PostgreSQL (logical replication, pgoutput), in Debezium's envelope",
        );
        let key = |name: &str, ty: ConfigType, default: Option<&str>, doc: &str| {
            weir_sdk::config_key(name, ty, false, default, doc)
        };
        d.config = vec![
            weir_sdk::config_key(
                "topic.prefix",
                ConfigType::String,
                true,
                None,
                "Topics are <topic.prefix>.<schema>.<table>",
            ),
            key(
                "database.hostname",
                ConfigType::String,
                None,
                "The server (with database.port, database.user, database.password, database.dbname the runtime grants weir.sql.db.url)",
            ),
            key(
                "database.port",
                ConfigType::Int,
                Some("5432"),
                "The server's port",
            ),
            key(
                "database.user",
                ConfigType::String,
                None,
                "A user with REPLICATION (and CREATE on the database to create the publication)",
            ),
            key(
                "database.password",
                ConfigType::Password,
                None,
                "Its password (best through a config provider)",
            ),
            key("database.dbname", ConfigType::String, None, "The database"),
            key(
                "database.sslmode",
                ConfigType::String,
                Some("prefer"),
                "disable, prefer, require, verify-ca or verify-full",
            ),
            key(
                "database.server.name",
                ConfigType::String,
                None,
                "Debezium 1.x's name for topic.prefix (ignored: set topic.prefix)",
            ),
            key(
                "plugin.name",
                ConfigType::String,
                Some("pgoutput"),
                "Only pgoutput",
            ),
            key(
                "time.precision.mode",
                ConfigType::String,
                Some("adaptive"),
                "adaptive (ms up to precision 3, else µs), adaptive_time_microseconds or connect (Kafka Connect's Date, Time, Timestamp)",
            ),
            key(
                "binary.handling.mode",
                ConfigType::String,
                Some("bytes"),
                "bytea as bytes, base64, base64-url-safe or hex",
            ),
            key(
                "interval.handling.mode",
                ConfigType::String,
                Some("numeric"),
                "interval as numeric (µs) or string (ISO 8601, P1Y2M3DT4H5M6.78S)",
            ),
            key(
                "provide.transaction.metadata",
                ConfigType::Boolean,
                Some("false"),
                "Only false",
            ),
            key(
                "snapshot.max.threads",
                ConfigType::Int,
                Some("1"),
                "Tasks that read the initial snapshot at once, each a share of the tables' block ranges in one snapshot (at most tasks.max and 8)",
            ),
            key(
                "status.update.interval.ms",
                ConfigType::Int,
                Some("10000"),
                "Accepted; positions reach the server within a second of being stored",
            ),
            key(
                "slot.name",
                ConfigType::String,
                Some("debezium"),
                "The replication slot (created when missing)",
            ),
            key(
                "publication.name",
                ConfigType::String,
                Some("dbz_publication"),
                "The publication (created when missing)",
            ),
            key(
                "publication.autocreate.mode",
                ConfigType::String,
                Some("all_tables"),
                "all_tables (FOR ALL TABLES, needs a superuser), filtered (the captured tables) or disabled",
            ),
            key(
                "table.include.list",
                ConfigType::List,
                None,
                "Regular expressions of schema.table names to capture",
            ),
            key(
                "table.exclude.list",
                ConfigType::List,
                None,
                "Regular expressions of schema.table names not to capture",
            ),
            key(
                "schema.include.list",
                ConfigType::List,
                None,
                "Regular expressions of schemas to capture",
            ),
            key(
                "schema.exclude.list",
                ConfigType::List,
                None,
                "Regular expressions of schemas not to capture",
            ),
            key(
                "snapshot.mode",
                ConfigType::String,
                Some("initial"),
                "initial, no_data, initial_only, when_needed or always",
            ),
            key(
                "snapshot.fetch.size",
                ConfigType::Int,
                Some("10240"),
                "Rows read per batch while snapshotting",
            ),
            key(
                "tombstones.on.delete",
                ConfigType::Boolean,
                Some("true"),
                "A tombstone (null value) after each delete",
            ),
            key(
                "heartbeat.interval.ms",
                ConfigType::Int,
                Some("10000"),
                "A heartbeat record this often while nothing else moves the position, so an idle slot never holds WAL back (0: none)",
            ),
            key(
                "heartbeat.topics.prefix",
                ConfigType::String,
                Some("__debezium-heartbeat"),
                "Heartbeats go to <prefix>.<topic.prefix>",
            ),
            key(
                "slot.drop.on.stop",
                ConfigType::Boolean,
                Some("false"),
                "Drop the slot when the task stops (the server then keeps no WAL for it)",
            ),
            key(
                "decimal.handling.mode",
                ConfigType::String,
                Some("precise"),
                "numeric as precise (Connect Decimal), double or string",
            ),
            key(
                "skipped.operations",
                ConfigType::List,
                Some("t"),
                "Operations not to emit: c, u, d, t, or none (Debezium's default: t, truncates)",
            ),
            key(
                "column.include.list",
                ConfigType::String,
                None,
                "Regular expressions of schema.table.column names in the value (key columns stay in the key)",
            ),
            key(
                "column.exclude.list",
                ConfigType::String,
                None,
                "Regular expressions of schema.table.column names left out of the value",
            ),
            key(
                "message.key.columns",
                ConfigType::String,
                None,
                "Keys other than the primary key: <schema.table regex>:<column>,<column>;...",
            ),
            key(
                "snapshot.include.collection.list",
                ConfigType::String,
                None,
                "Regular expressions of schema.table names the snapshot reads (default: all captured)",
            ),
            key(
                "heartbeat.action.query",
                ConfigType::String,
                None,
                "A statement run on the database every heartbeat interval (for a database with no traffic of its own)",
            ),
            key(
                "database.initial.statements",
                ConfigType::String,
                None,
                "Statements run on each connection the connector opens (;-separated, ;; for a semicolon)",
            ),
            key(
                "slot.max.retries",
                ConfigType::Int,
                Some("5"),
                "Tries to open a slot another session still holds",
            ),
            key(
                "slot.retry.delay.ms",
                ConfigType::Int,
                Some("400"),
                "Time between those tries",
            ),
            key(
                "table.whitelist",
                ConfigType::String,
                None,
                "Debezium 1.x's name for table.include.list",
            ),
            key(
                "table.blacklist",
                ConfigType::String,
                None,
                "Debezium 1.x's name for table.exclude.list",
            ),
            key(
                "schema.whitelist",
                ConfigType::String,
                None,
                "Debezium 1.x's name for schema.include.list",
            ),
            key(
                "schema.blacklist",
                ConfigType::String,
                None,
                "Debezium 1.x's name for schema.exclude.list",
            ),
            key(
                "column.whitelist",
                ConfigType::String,
                None,
                "Debezium 1.x's name for column.include.list",
            ),
            key(
                "column.blacklist",
                ConfigType::String,
                None,
                "Debezium 1.x's name for column.exclude.list",
            ),
            key(
                "include.unknown.datatypes",
                ConfigType::Boolean,
                Some("false"),
                "Accepted: every column is given, a type without a Debezium mapping as its text",
            ),
            key(
                "event.processing.failure.handling.mode",
                ConfigType::String,
                Some("fail"),
                "Accepted (fail, warn, skip): a value that cannot be read is given as null, never a failure",
            ),
            key(
                "max.queue.size",
                ConfigType::Int,
                Some("8192"),
                "Accepted: the host's change queue is bounded by itself; max.batch.size sets a poll",
            ),
            key(
                "max.queue.size.in.bytes",
                ConfigType::Int,
                Some("0"),
                "Accepted, as max.queue.size",
            ),
            key(
                "snapshot.lock.timeout.ms",
                ConfigType::Int,
                Some("10000"),
                "Accepted: a snapshot takes no table locks (it reads in the slot's exported snapshot)",
            ),
            key(
                "max.batch.size",
                ConfigType::Int,
                Some("2048"),
                "Changes read per poll",
            ),
            key(
                "poll.interval.ms",
                ConfigType::Int,
                Some("500"),
                "How long a poll waits for changes",
            ),
            key(
                "weir.value.format",
                ConfigType::String,
                Some("connect-json"),
                "Values carry their Connect schema",
            ),
            key(
                "weir.key.format",
                ConfigType::String,
                Some("connect-json"),
                "Keys carry their Connect schema",
            ),
            key(
                parallel::READER,
                ConfigType::Int,
                Some("0"),
                "Set by the connector in task configs: the task's share of a parallel snapshot",
            ),
            key(
                parallel::PLAN,
                ConfigType::String,
                None,
                "Set by the connector in task configs: the parallel snapshot's plan",
            ),
        ];
        d
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        Settings::parse(config).err().unwrap_or_default()
    }

    /// One task, or with `snapshot.max.threads` > 1 one per snapshot reader (at most
    /// `tasks.max` and 8), each with the plan of the parallel snapshot (`parallel`).
    fn task_configs(config: Config, max_tasks: u32) -> Result<Vec<Config>, Error> {
        let s = Settings::parse(&config).map_err(|mut e| Error::InvalidConfig(e.remove(0)))?;
        let n = weir_cdc_common::parallel::readers(s.threads, max_tasks);
        if s.threads > n {
            weir_sdk::log(
                weir_sdk::Level::Warn,
                &format!(
                    "snapshot.max.threads={} but tasks.max={max_tasks}: the snapshot is read by {n} task(s) (each reader is a task; at most {})",
                    s.threads,
                    weir_cdc_common::parallel::MAX_READERS
                ),
            );
        }
        let plan = if n <= 1 || s.mode == Mode::NoData {
            Vec::new()
        } else {
            plan_snapshot(&s, n as usize).unwrap_or_else(|e| {
                weir_sdk::log(
                    weir_sdk::Level::Warn,
                    &format!("cannot plan a parallel snapshot ({e:?}); one task reads it"),
                );
                Vec::new()
            })
        };
        Ok(weir_cdc_common::parallel::task_configs(&config, &plan))
    }

    fn open(config: Config, committed: Offsets) -> Result<Self, Error> {
        let s = Settings::parse(&config).map_err(|mut e| Error::InvalidConfig(e.remove(0)))?;
        let db = open_db(&s)?;
        if db.dialect() != "postgres" {
            return Err(Error::Fatal(format!(
                "the grant {GRANT} is a {} database; postgres-source reads PostgreSQL",
                db.dialect()
            )));
        }
        let db_name = text(
            rows(&db, "SELECT current_database()::text", &[])?
                .first()
                .and_then(|r| r.first()),
        )
        .unwrap_or_default();
        // Task 0 streams and keeps the position; the other tasks of a parallel snapshot each
        // have a partition of their own.
        let partition = if s.reader == 0 {
            format!(
                "{{\"server\":{}}}",
                serde_json::Value::String(s.prefix.clone())
            )
        } else {
            format!(
                "{{\"server\":{},\"snapshot_reader\":{}}}",
                serde_json::Value::String(s.prefix.clone()),
                s.reader
            )
        }
        .into_bytes();
        let stored: Option<serde_json::Value> = committed
            .iter()
            .find(|(p, _)| *p == partition)
            .and_then(|(_, o)| serde_json::from_slice(o).ok());
        let incomplete = stored
            .as_ref()
            .is_some_and(|o| o["snapshot"].as_bool() == Some(true));
        let mut me = PgSource {
            s,
            db,
            db_name,
            stream: None,
            phase: Phase::Stream,
            tables: HashMap::new(),
            partition,
            skip_to: (0, -1),
            at: Position::default(),
            confirmed: 0,
            last_emit_ms: now_ms(),
            now: now_ms(),
            last_action_ms: now_ms(),
            last_emit_proc: 0,
            published: None,
        };
        for t in catalog(&me.db, &me.s)? {
            me.capture(t)?;
        }
        if me.s.reader > 0 {
            weir_sdk::log(
                weir_sdk::Level::Info,
                &format!(
                    "task {} of a parallel snapshot of {} table(s) of {}: reads its share of each snapshot task 0 takes",
                    me.s.reader,
                    me.tables.len(),
                    me.db_name
                ),
            );
            me.phase = Phase::Reader(Box::default());
            return Ok(me);
        }
        if let Some(o) = &stored
            && !incomplete
        {
            me.skip_to = (
                o["lsn_commit"].as_u64().unwrap_or(0),
                o["seq"].as_i64().unwrap_or(-1),
            );
            me.at = Position {
                commit: me.skip_to.0,
                seq: me.skip_to.1,
                proc: o["lsn_proc"].as_u64().unwrap_or(0),
            };
            me.confirmed = me.at.proc;
            me.last_emit_proc = me.at.proc;
        }
        let slot_existed = !rows(
            &me.db,
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[P::Text(me.s.slot.clone())],
        )?
        .is_empty();
        if stored.is_some() && !incomplete && !slot_existed && me.s.mode == Mode::Initial {
            // Checked before the stream opens: opening would create a new slot, and a later
            // start would then stream from it as if nothing had been missed.
            return Err(Error::Fatal(format!(
                "the stored offsets say changes were captured, but replication slot {:?} is gone: changes since are lost; use snapshot.mode=when_needed to take a new snapshot",
                me.s.slot
            )));
        }
        let snapshot = match me.s.mode {
            Mode::Always => true,
            Mode::NoData => false,
            Mode::Initial | Mode::InitialOnly => stored.is_none() || incomplete,
            Mode::WhenNeeded => stored.is_none() || incomplete || !slot_existed,
        };
        // initial_only streams nothing: no slot (it would hold WAL back for ever).
        let stream = if me.s.mode == Mode::InitialOnly {
            None
        } else {
            Some(me.open_stream()?)
        };
        if snapshot && me.s.plan.len() > 1 {
            // Task 0 of a parallel snapshot: its snapshot, exported again for the others
            // (importable while its transaction is open), published under a new epoch.
            let exported = stream.as_ref().and_then(|s| s.exported_snapshot());
            let epoch = now_ms();
            let share = me.s.plan[0].clone();
            let snap = me.start_snapshot(exported.as_deref(), Some((epoch, &share, true)))?;
            let name = text(
                rows(&snap.db, "SELECT pg_export_snapshot()::text", &[])?
                    .first()
                    .and_then(|r| r.first()),
            )
            .unwrap_or_default();
            let tag = parallel::tag(&me.s.slot);
            let published = parallel::published(&tag, epoch, &name);
            me.db.execute(
                "SELECT set_config('application_name', $1, false)",
                &[P::Text(published.clone())],
            )?;
            weir_sdk::log(
                weir_sdk::Level::Info,
                &format!(
                    "parallel snapshot over {} tasks: snapshot {name} published as {published}",
                    me.s.plan.len()
                ),
            );
            me.published = Some(Published {
                epoch,
                name: published,
            });
            me.phase = Phase::Snapshot(Box::new(snap));
        } else if snapshot {
            let exported = stream.as_ref().and_then(|s| s.exported_snapshot());
            let snap = me.start_snapshot(exported.as_deref(), None)?;
            me.phase = Phase::Snapshot(Box::new(snap));
        } else if me.s.mode == Mode::InitialOnly {
            me.phase = Phase::Done;
        }
        me.stream = stream;
        weir_sdk::log(
            weir_sdk::Level::Info,
            &format!(
                "capturing {} table(s) of {} through slot {} and publication {}; {}",
                me.tables.len(),
                me.db_name,
                me.s.slot,
                me.s.publication,
                match &me.phase {
                    Phase::Snapshot(_) | Phase::HandOver(_) | Phase::Reader(_) =>
                        "snapshot first".to_string(),
                    Phase::Stream => format!(
                        "streaming after commit {} change {}",
                        me.skip_to.0, me.skip_to.1
                    ),
                    Phase::Done => "snapshot done (initial_only)".into(),
                }
            ),
        );
        Ok(me)
    }

    fn poll(&mut self, max: u32, out: &mut BatchBuilder) -> Result<(), Error> {
        match std::mem::replace(&mut self.phase, Phase::Stream) {
            Phase::Snapshot(mut snap) => {
                self.now = now_ms();
                let done = self.poll_snapshot(&mut snap, max, out)?;
                self.phase = match done {
                    None => Phase::Snapshot(snap),
                    // Task 0 of a parallel snapshot: the transaction stays open for the
                    // other tasks until the hand-over.
                    Some(wrote) if snap.share.is_some() => Phase::HandOver(Box::new(HandOver {
                        snap,
                        landed: !wrote,
                        checked_ms: 0,
                        said_ms: self.now,
                    })),
                    Some(_) => {
                        let _ = snap.db.commit();
                        if self.s.mode == Mode::InitialOnly {
                            Phase::Done
                        } else {
                            Phase::Stream
                        }
                    }
                };
                Ok(())
            }
            Phase::HandOver(h) => self.poll_hand_over(h, out),
            Phase::Reader(r) => self.poll_reader(r, max, out),
            Phase::Stream => self.poll_stream(max, out),
            Phase::Done => {
                self.phase = Phase::Done;
                Ok(())
            }
        }
    }

    fn ack(&mut self, stored: Offsets) {
        for (p, o) in stored {
            if p != self.partition {
                continue;
            }
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o) else {
                continue;
            };
            // The last record of a parallel snapshot's share is in the log.
            if let Some(epoch) = v["share"].as_i64() {
                match &mut self.phase {
                    Phase::HandOver(h)
                        if self.published.as_ref().map(|p| p.epoch) == Some(epoch) =>
                    {
                        h.landed = true;
                    }
                    Phase::Reader(r) if r.sent == Some(epoch) => {
                        r.sent = None;
                        r.done = Some(epoch);
                        r.checked_ms = 0;
                    }
                    _ => {}
                }
            }
            if let Some(proc) = v["lsn_proc"].as_u64()
                && proc > self.confirmed
                && let Some(stream) = &self.stream
            {
                stream.confirm(proc);
                self.confirmed = proc;
            }
        }
    }

    fn close(&mut self) {
        self.stream = None;
        if self.s.drop_slot && self.s.reader == 0 {
            // The replication session ends in the background: the server may hold the slot a
            // moment longer ("is active"), so the drop is tried for up to 10 s.
            let mut tries = 0;
            let r = loop {
                let r = self.db.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                    &[P::Text(self.s.slot.clone())],
                );
                match &r {
                    Err(weir_sdk::sql::SqlError::Statement(m))
                        if m.contains("is active") && tries < 40 =>
                    {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(250));
                    }
                    _ => break r,
                }
            };
            weir_sdk::log(
                weir_sdk::Level::Info,
                &match r {
                    Ok(_) => format!("dropped replication slot {}", self.s.slot),
                    Err(e) => format!("cannot drop replication slot {}: {e:?}", self.s.slot),
                },
            );
        }
    }
}

weir_sdk::export_source!(PgSource);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn settings_follow_debeziums_keys() {
        let s = Settings::parse(&cfg(&[
            ("topic.prefix", "shop"),
            ("table.include.list", "public.orders,inventory.*"),
        ]))
        .unwrap();
        assert!(s.captures("public", "orders") && s.captures("inventory", "stock"));
        assert!(!s.captures("public", "orders_archive"));
        assert_eq!(s.mode, Mode::Initial);
        assert_eq!(s.slot, "debezium");
        assert_eq!(s.publication, "dbz_publication");
        assert_eq!(s.publish, Publish::AllTables);
        assert_eq!(s.heartbeat_ms, 10_000);
        assert_eq!(s.heartbeat_topic, "__debezium-heartbeat.shop");
        assert!(s.tombstones && !s.drop_slot);
        // Debezium skips truncates unless told otherwise.
        assert_eq!(s.skipped, ['t']);
        let e = Settings::parse(&cfg(&[
            ("snapshot.mode", "sometimes"),
            ("slot.name", "Bad-Slot"),
            ("plugin.name", "decoderbufs"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["topic.prefix", "plugin.name", "snapshot.mode", "slot.name"]
        );
    }

    fn table(cols: &[(&str, u32)]) -> Table {
        Table {
            schema: "public".into(),
            name: "orders".into(),
            columns: cols
                .iter()
                .map(|(n, pk)| ColumnDef {
                    name: n.to_string(),
                    ty: PgType {
                        name: "text".into(),
                        typmod: -1,
                        labels: None,
                        elem: None,
                    },
                    pk: *pk,
                    not_null: *pk > 0,
                    excluded: false,
                })
                .collect(),
        }
    }

    #[test]
    fn debezium_1x_names_columns_and_keys_shape_a_table() {
        let s = Settings::parse(&cfg(&[
            ("topic.prefix", "shop"),
            ("table.whitelist", "public\\.orders"),
            ("column.exclude.list", "public.orders.secret, .*\\.note"),
            (
                "message.key.columns",
                "public.orders:customer,region; x.y:z",
            ),
            ("time.precision.mode", "connect"),
            ("binary.handling.mode", "hex"),
            ("database.initial.statements", "SET a = 1;SET b = 'x;;y'"),
        ]))
        .unwrap();
        assert!(s.captures("public", "orders") && !s.captures("public", "other"));
        assert_eq!(s.modes.time, TimePrecision::Connect);
        assert_eq!(s.modes.binary, Binary::Hex);
        assert_eq!(s.initial_statements, ["SET a = 1", "SET b = 'x;y'"]);
        let mut t = table(&[
            ("id", 1),
            ("customer", 0),
            ("secret", 0),
            ("note", 0),
            ("region", 0),
        ]);
        s.shape(&mut t).unwrap();
        let shaped: Vec<(&str, u32, bool)> = t
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.pk, c.excluded))
            .collect();
        assert_eq!(
            shaped,
            [
                ("id", 0, false),
                ("customer", 1, false),
                ("secret", 0, true),
                ("note", 0, true),
                ("region", 2, false)
            ]
        );
        let mut bad = table(&[("id", 1)]);
        match s.shape(&mut bad) {
            Err(Error::Fatal(m)) => assert!(m.contains("\"customer\" of public.orders"), "{m}"),
            other => panic!("{other:?}"),
        }

        let only = Settings::parse(&cfg(&[
            ("topic.prefix", "shop"),
            ("column.include.list", "public.orders.id"),
        ]))
        .unwrap();
        let mut t = table(&[("id", 1), ("name", 0)]);
        only.shape(&mut t).unwrap();
        assert!(!t.columns[0].excluded && t.columns[1].excluded);
    }

    #[test]
    fn conflicting_and_malformed_keys_are_refused() {
        let e = Settings::parse(&cfg(&[
            ("topic.prefix", "shop"),
            ("table.include.list", "a"),
            ("table.whitelist", "b"),
            ("message.key.columns", "public.orders"),
            ("time.precision.mode", "nanos"),
            ("column.include.list", "a"),
            ("column.exclude.list", "b"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "time.precision.mode",
                "table.whitelist",
                "column.exclude.list",
                "message.key.columns"
            ]
        );
        assert!(
            e[1].message
                .contains("Debezium 1.x's name for table.include.list")
        );
    }
}
