//! `sqlite-source`: change data capture for SQLite, a database with no log to read.
//!
//! On start the connector installs, for every captured table, three triggers (after insert,
//! update and delete) that append each change to a change table, `_weir_cdc_<slot>`, in the
//! writing transaction: a change exists exactly when its transaction commits, and the change
//! table's sequence (`seq`, AUTOINCREMENT) is commit order, since SQLite has one writer at a
//! time. Row images are stored as SQLite literals (`quote()`), exactly. The connector streams
//! the change table in order and trims what the log has stored. A table's columns are recorded
//! in `_weir_cdc_<slot>_schemas`; when `PRAGMA schema_version` moves, changed tables get new
//! triggers.
//!
//! Snapshot: the triggers are installed first, then one read transaction (a consistent view,
//! which in WAL mode never blocks writers) takes the change table's last `seq` as watermark and
//! reads every captured table: the snapshot holds every change up to the watermark, the
//! stream every change after it, so nothing is missed or doubled between the two.
//!
//! Records are Debezium's envelope with its Connect schema (`envelope`); topics are
//! `<topic.prefix>.main.<table>`; offsets are `{"server": prefix}` → `{"seq": N}` (plus
//! `"snapshot": true` while a snapshot is incomplete: a restart then takes it again).
//! The database is the SQL grant `db` (`weir.sql.db.url`, which the runtime derives from
//! `database.path`).

mod envelope;
mod literal;

use std::collections::VecDeque;
use std::rc::Rc;

use envelope::{ColumnDef, Table};
use literal::Lit;
use weir_cdc_common::parallel::{self, Range};
use weir_cdc_common::{SnapshotMode as Mode, ident, int, now_ms};
use weir_sdk::sql::{BeginKind, Connection, Cursor, Rows, Value as P, ValueRef};
use weir_sdk::{
    BatchBuilder, Config, ConfigError, ConfigType, Descriptor, Error, Offsets, PluginKind,
    RecordData, Source,
};

const GRANT: &str = "db";
const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug)]
struct Settings {
    prefix: String,
    include: Vec<regex_lite::Regex>,
    exclude: Vec<regex_lite::Regex>,
    mode: Mode,
    tombstones: bool,
    slot: String,
    fetch: u32,
    db_name: String,
    /// `slot.drop.on.stop`: the triggers and change tables go when the task stops.
    drop_on_stop: bool,
    /// `snapshot.max.threads`: how many tasks read a snapshot (at most `tasks.max`).
    threads: u32,
    /// This task's place in a parallel snapshot's plan (0: the task that streams).
    reader: u32,
    /// The parallel snapshot's plan, one share per task (empty: one task reads everything).
    plan: Vec<Vec<Range>>,
}

fn patterns(config: &Config, key: &str) -> Result<Vec<regex_lite::Regex>, ConfigError> {
    weir_cdc_common::patterns(weir_sdk::config_get(config, key).unwrap_or(""))
        .map_err(|e| err(key, &e))
}

impl Settings {
    fn parse(config: &Config) -> Result<Settings, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let get = |k: &str| weir_sdk::config_get(config, k).map(str::trim);
        let prefix = get("topic.prefix").unwrap_or("").to_string();
        if prefix.is_empty() {
            errors.push(err("topic.prefix", "required"));
        }
        let mode = Mode::parse(get("snapshot.mode").unwrap_or("initial")).unwrap_or_else(|e| {
            errors.push(err("snapshot.mode", &e));
            Mode::Initial
        });
        let slot = get("slot.name").unwrap_or("weir").to_string();
        if slot.is_empty() || !slot.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            errors.push(err("slot.name", "letters, digits and '_' only"));
        }
        let fetch = match get("snapshot.fetch.size").unwrap_or("10240").parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => {
                errors.push(err("snapshot.fetch.size", "a positive whole number"));
                1
            }
        };
        let tombstones =
            !get("tombstones.on.delete").is_some_and(|v| v.eq_ignore_ascii_case("false"));
        let drop_on_stop = get("slot.drop.on.stop").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let path = get("database.path").unwrap_or("");
        let db_name = path
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("main")
            .to_string();
        let include = patterns(config, "table.include.list").unwrap_or_else(|e| {
            errors.push(e);
            Vec::new()
        });
        let exclude = patterns(config, "table.exclude.list").unwrap_or_else(|e| {
            errors.push(e);
            Vec::new()
        });
        if !include.is_empty() && !exclude.is_empty() {
            errors.push(err(
                "table.exclude.list",
                "cannot be used with table.include.list (as Debezium)",
            ));
        }
        let mut whole =
            |key: &str, default: &str, min: u32| match get(key).unwrap_or(default).parse::<u32>() {
                Ok(n) if n >= min => n,
                _ => {
                    errors.push(err(key, &format!("a whole number, at least {min}")));
                    min
                }
            };
        let threads = whole("snapshot.max.threads", "1", 1);
        let reader = whole(parallel::READER, "0", 0);
        let plan = match get(parallel::PLAN).map(parallel::decode) {
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
        if errors.is_empty() {
            Ok(Settings {
                prefix,
                include,
                exclude,
                mode,
                tombstones,
                slot,
                fetch,
                db_name,
                drop_on_stop,
                threads,
                reader,
                plan,
            })
        } else {
            Err(errors)
        }
    }

    /// Whether a table is captured (lists match `main.<table>` or `<table>`).
    fn captures(&self, table: &str) -> bool {
        let full = format!("main.{table}");
        let hit =
            |rs: &[regex_lite::Regex]| rs.iter().any(|r| r.is_match(&full) || r.is_match(table));
        if !self.include.is_empty() {
            hit(&self.include)
        } else {
            !hit(&self.exclude)
        }
    }

    fn changes(&self) -> String {
        ident(&format!("_weir_cdc_{}", self.slot))
    }

    fn schemas(&self) -> String {
        ident(&format!("_weir_cdc_{}_schemas", self.slot))
    }

    /// The parallel snapshot's rendezvous: row 0 is task 0's published snapshot (`epoch`, and
    /// the watermark the stream starts after); row N > 0 says task N's share of `epoch` is in
    /// the log.
    fn rendezvous(&self) -> String {
        ident(&format!("_weir_cdc_{}_snapshot", self.slot))
    }

    fn trigger(&self, table: &str, op: &str) -> String {
        ident(&format!("_weir_cdc_{}_{table}_{op}", self.slot))
    }
}

fn err(key: &str, message: &str) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
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

fn text(v: Option<&weir_sdk::sql::OwnedValue>) -> String {
    weir_cdc_common::text(v).unwrap_or_default()
}

fn columns_json(cols: &[ColumnDef]) -> String {
    serde_json::Value::Array(
        cols.iter()
            .map(|c| serde_json::json!([c.name, c.declared, c.pk, c.not_null]))
            .collect(),
    )
    .to_string()
}

fn columns_from_json(s: &str) -> Vec<ColumnDef> {
    let v: serde_json::Value = serde_json::from_str(s).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|c| ColumnDef {
                    name: c[0].as_str().unwrap_or_default().to_string(),
                    declared: c[1].as_str().unwrap_or_default().to_string(),
                    pk: c[2].as_u64().unwrap_or(0) as u32,
                    not_null: c[3].as_bool().unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The snapshot in progress: its read transaction's connection, the watermark, the tables
/// left, and the table being read.
struct Snapshot {
    db: Connection,
    watermark: i64,
    /// Tables left, with the condition that reads their range (none: all of it).
    tables: VecDeque<(i64, Rc<Table>, Option<String>)>,
    reading: Option<(i64, Rc<Table>, Cursor)>,
    /// The last row read, held back so the snapshot's very last record can say `last`.
    held: Option<(Rc<Table>, Vec<Lit>)>,
    end: End,
    /// Any row was read.
    any: bool,
}

/// What a snapshot's last row becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The whole snapshot: `last`, with the watermark as the stream's position.
    Last,
    /// Task 0's share of a parallel snapshot: held until every share is in the log, then
    /// written as `last`.
    HandOver,
    /// Another task's share of this epoch: its offset says which share it ends.
    Share(i64),
}

enum Phase {
    Snapshot(Box<Snapshot>),
    /// Task 0 of a parallel snapshot, its share read (its last row held): waiting until every
    /// other task's share is in the log.
    HandOver(Box<HandOver>),
    /// A task > 0 of a parallel snapshot: reads its share when task 0 publishes one.
    Reader(Box<Reader>),
    Stream,
    /// `initial_only`: the snapshot is done and nothing is streamed.
    Done,
}

struct HandOver {
    snap: Box<Snapshot>,
    epoch: i64,
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
    /// What the rendezvous table says of this task's share.
    said: Option<i64>,
    checked_ms: i64,
}

/// How often a reader looks for task 0's published snapshot, and task 0 for readers done.
const READER_CHECK_MS: i64 = 500;
const HANDOVER_CHECK_MS: i64 = 200;
/// Below this many rowids per task a table is read whole by one task.
const MIN_SPLIT_ROWIDS: u64 = 10_000;

/// The condition that reads exactly this range of rowids (none: the whole table).
fn rowid_filter(r: &Range) -> Option<String> {
    match (r.lo, r.hi) {
        (None, None) => None,
        (Some(lo), None) => Some(format!("rowid >= {lo}")),
        (None, Some(hi)) => Some(format!("rowid < {hi}")),
        (Some(lo), Some(hi)) => Some(format!("rowid >= {lo} AND rowid < {hi}")),
    }
}

struct SqliteSource {
    s: Settings,
    db: Connection,
    phase: Phase,
    /// The last change read (streaming resumes after it).
    after: i64,
    /// Schema id to table, for reading changes.
    schemas: std::collections::HashMap<i64, Rc<Table>>,
    /// Keys' and values' schemas, written once per table.
    env: envelope::Envelopes,
    schema_version: i64,
    partition: Vec<u8>,
    /// The highest `seq` the log has stored, and what was trimmed.
    stored: i64,
    trimmed: i64,
    /// Task 0 of a parallel snapshot: the epoch it published.
    epoch: Option<i64>,
}

/// The tables to capture, with their columns.
fn list_tables(db: &Connection, s: &Settings) -> Result<Vec<Table>, Error> {
    let names = rows(
        db,
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_weir\\_cdc\\_%' ESCAPE '\\' ORDER BY name",
        &[],
    )?;
    let mut out = Vec::new();
    for n in names {
        let name = text(n.first());
        if !s.captures(&name) {
            continue;
        }
        let cols = rows(
            db,
            "SELECT name, type, pk, \"notnull\" FROM pragma_table_info(?) ORDER BY cid",
            &[P::Text(name.clone())],
        )?;
        let columns = cols
            .iter()
            .map(|c| ColumnDef {
                name: text(c.first()),
                declared: text(c.get(1)),
                pk: int(c.get(2)) as u32,
                not_null: int(c.get(3)) != 0,
            })
            .collect();
        out.push(Table { name, columns });
    }
    Ok(out)
}

/// The plan of a parallel snapshot over `n` tasks: each captured table by its rowids now (a
/// table without rowids is read whole).
fn plan_snapshot(s: &Settings, n: usize) -> Result<Vec<Vec<Range>>, Error> {
    let db = Connection::open(GRANT)?;
    let mode = rows(&db, "PRAGMA journal_mode", &[])?;
    let mode = text(mode.first().and_then(|r| r.first()));
    if !mode.eq_ignore_ascii_case("wal") {
        // In rollback-journal mode the tasks' small writes (saying a share is stored) would
        // wait for every other task's read transaction.
        return Err(Error::Fatal(format!(
            "parallel snapshots need the database in WAL mode (journal_mode is {mode})"
        )));
    }
    let mut spans = Vec::new();
    for t in list_tables(&db, s)? {
        let (first, end) = match rows(
            &db,
            &format!("SELECT min(rowid), max(rowid) FROM {}", ident(&t.name)),
            &[],
        ) {
            Ok(r) => match (
                r.first().and_then(|r| r.first()),
                r.first().and_then(|r| r.get(1)),
            ) {
                (
                    Some(weir_sdk::sql::OwnedValue::Int(lo)),
                    Some(weir_sdk::sql::OwnedValue::Int(hi)),
                ) => (*lo, hi.saturating_add(1)),
                _ => (0, 0),
            },
            // WITHOUT ROWID: whole.
            Err(_) => (0, 0),
        };
        spans.push(parallel::Span {
            schema: "main".into(),
            table: t.name,
            first,
            end,
        });
    }
    Ok(parallel::plan(&spans, n, MIN_SPLIT_ROWIDS))
}

impl SqliteSource {
    fn tables(&self) -> Result<Vec<Table>, Error> {
        list_tables(&self.db, &self.s)
    }

    /// Creates the change tables, and triggers for every captured table whose recorded
    /// columns differ from its columns now (or that has none), in one write transaction.
    /// `backfill` (while streaming): a table that had no triggers (created, or dropped and
    /// created again, since the last look) gets its rows written into the change table as
    /// reads (`op: r`) in the same transaction, so rows written before its triggers existed
    /// are not lost; every later change is the triggers'.
    fn install(&mut self, backfill: bool) -> Result<(), Error> {
        let (changes, schemas) = (self.s.changes(), self.s.schemas());
        self.db.begin(BeginKind::Immediate)?;
        let result = (|| -> Result<(), Error> {
            self.db.execute(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {changes} (seq INTEGER PRIMARY KEY AUTOINCREMENT, schema_id INTEGER NOT NULL, op TEXT NOT NULL, ts_ms INTEGER NOT NULL, before TEXT, after TEXT); \
                     CREATE TABLE IF NOT EXISTS {schemas} (id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, columns TEXT NOT NULL)"
                ),
                &[],
            )?;
            for t in self.tables()? {
                let cols = columns_json(&t.columns);
                let last = rows(
                    &self.db,
                    &format!(
                        "SELECT id, columns FROM {schemas} WHERE tbl = ? ORDER BY id DESC LIMIT 1"
                    ),
                    &[P::Text(t.name.clone())],
                )?;
                let triggers = rows(
                    &self.db,
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ? AND name LIKE ? ESCAPE '\\'",
                    &[
                        P::Text(t.name.clone()),
                        P::Text(format!(
                            "\\_weir\\_cdc\\_{}\\_%",
                            self.s.slot.replace('_', "\\_")
                        )),
                    ],
                )?;
                let current = last
                    .first()
                    .filter(|r| text(r.get(1)) == cols)
                    .map(|r| int(r.first()));
                if current.is_some() && int(triggers.first().and_then(|r| r.first())) == 3 {
                    continue;
                }
                let id = match current {
                    Some(id) => id,
                    None => {
                        self.db.execute(
                            &format!("INSERT INTO {schemas} (tbl, columns) VALUES (?, ?)"),
                            &[P::Text(t.name.clone()), P::Text(cols)],
                        )?;
                        int(rows(&self.db, "SELECT last_insert_rowid()", &[])?
                            .first()
                            .and_then(|r| r.first()))
                    }
                };
                self.db.execute(&self.trigger_sql(&t, id), &[])?;
                if backfill && int(triggers.first().and_then(|r| r.first())) == 0 {
                    let image = t
                        .columns
                        .iter()
                        .map(|c| format!("quote({})", ident(&c.name)))
                        .collect::<Vec<_>>()
                        .join("||','||");
                    let n = self.db.execute(
                        &format!(
                            "INSERT INTO {changes} (schema_id, op, ts_ms, before, after) SELECT {id}, 'r', CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER), NULL, {image} FROM {}",
                            ident(&t.name)
                        ),
                        &[],
                    )?;
                    weir_sdk::log(
                        weir_sdk::Level::Info,
                        &format!(
                            "new table {}: its {n} row(s) are read into the stream, then its changes",
                            t.name
                        ),
                    );
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(self.db.commit()?),
            Err(e) => {
                let _ = self.db.rollback();
                Err(e)
            }
        }
    }

    fn trigger_sql(&self, t: &Table, schema_id: i64) -> String {
        let image = |row: &str| {
            t.columns
                .iter()
                .map(|c| format!("quote({row}.{})", ident(&c.name)))
                .collect::<Vec<_>>()
                .join("||','||")
        };
        let (table, changes) = (ident(&t.name), self.s.changes());
        let ts = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";
        let mut sql = String::new();
        for (op, event, code, before, after) in [
            ("i", "INSERT", "c", "NULL".to_string(), image("NEW")),
            ("u", "UPDATE", "u", image("OLD"), image("NEW")),
            ("d", "DELETE", "d", image("OLD"), "NULL".to_string()),
        ] {
            let name = self.s.trigger(&t.name, op);
            sql.push_str(&format!(
                "DROP TRIGGER IF EXISTS {name}; CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN INSERT INTO {changes} (schema_id, op, ts_ms, before, after) VALUES ({schema_id}, '{code}', {ts}, {before}, {after}); END; "
            ));
        }
        sql
    }

    /// Loads the recorded schemas (for reading changes).
    fn load_schemas(&mut self) -> Result<(), Error> {
        let all = rows(
            &self.db,
            &format!("SELECT id, tbl, columns FROM {}", self.s.schemas()),
            &[],
        )?;
        for r in all {
            self.schemas.insert(
                int(r.first()),
                Rc::new(Table {
                    name: text(r.get(1)),
                    columns: columns_from_json(&text(r.get(2))),
                }),
            );
        }
        Ok(())
    }

    fn schema_version(&self) -> Result<i64, Error> {
        Ok(int(rows(&self.db, "PRAGMA schema_version", &[])?
            .first()
            .and_then(|r| r.first())))
    }

    /// Starts a snapshot: a read transaction on a connection of its own, the watermark, and
    /// the tables to read (with their schema ids): every captured table, or a share of a
    /// parallel snapshot (`ranges`; `unplanned`: with the captured tables the plan does not
    /// name). `watermark`: the share's (task 0's, published); none: read in the transaction.
    fn start_snapshot(
        &mut self,
        share: Option<(&[Range], bool)>,
        watermark: Option<i64>,
        end: End,
    ) -> Result<Snapshot, Error> {
        let snap = Connection::open(GRANT)?;
        snap.begin(BeginKind::Snapshot)?;
        let watermark = match watermark {
            Some(w) => w,
            None => int(rows(
                &snap,
                &format!("SELECT coalesce(max(seq), 0) FROM {}", self.s.changes()),
                &[],
            )?
            .first()
            .and_then(|r| r.first())),
        };
        // The newest schema of each captured table.
        let mut newest: Vec<(i64, Rc<Table>)> = Vec::new();
        for (id, t) in &self.schemas {
            if self.s.captures(&t.name)
                && !self
                    .schemas
                    .iter()
                    .any(|(other, o)| o.name == t.name && other > id)
            {
                newest.push((*id, t.clone()));
            }
        }
        newest.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        let tables: VecDeque<(i64, Rc<Table>, Option<String>)> = match share {
            None => newest.into_iter().map(|(id, t)| (id, t, None)).collect(),
            Some((ranges, unplanned)) => {
                let mut l: VecDeque<_> = ranges
                    .iter()
                    .filter_map(|r| {
                        let (id, t) = newest.iter().find(|(_, t)| t.name == r.table)?;
                        Some((*id, t.clone(), rowid_filter(r)))
                    })
                    .collect();
                if unplanned {
                    let planned: std::collections::BTreeSet<&str> = self
                        .s
                        .plan
                        .iter()
                        .flatten()
                        .map(|r| r.table.as_str())
                        .collect();
                    l.extend(
                        newest
                            .iter()
                            .filter(|(_, t)| !planned.contains(t.name.as_str()))
                            .map(|(id, t)| (*id, t.clone(), None)),
                    );
                }
                l
            }
        };
        Ok(Snapshot {
            db: snap,
            watermark,
            tables,
            reading: None,
            held: None,
            end,
            any: false,
        })
    }

    fn offset(seq: i64, snapshot: bool) -> Vec<u8> {
        if snapshot {
            format!("{{\"seq\":{seq},\"snapshot\":true}}").into_bytes()
        } else {
            format!("{{\"seq\":{seq}}}").into_bytes()
        }
    }

    fn push(
        &self,
        out: &mut BatchBuilder,
        t: &Table,
        op: &str,
        (before, after): (Option<&[Lit]>, Option<&[Lit]>),
        src: &envelope::Source<'_>,
        offset: &[u8],
    ) {
        let topic = format!("{}.main.{}", self.s.prefix, t.name);
        let key_of = after.or(before).unwrap_or(&[]);
        let key = self.env.key(t, &self.s.prefix, key_of);
        let value = self.env.value(t, op, before, after, src, now_ms());
        out.push(&RecordData {
            key: key.as_deref(),
            value: Some(&value),
            topic: &topic,
            timestamp: now_ms(),
            source_partition: Some(&self.partition),
            source_offset: Some(offset),
            ..Default::default()
        });
        if op == "d" && self.s.tombstones {
            out.push(&RecordData {
                key: key.as_deref(),
                value: None,
                topic: &topic,
                timestamp: now_ms(),
                source_partition: Some(&self.partition),
                source_offset: Some(offset),
                ..Default::default()
            });
        }
    }

    fn poll_snapshot(
        &mut self,
        snap: &mut Snapshot,
        max: u32,
        out: &mut BatchBuilder,
    ) -> Result<bool, Error> {
        let mut n = 0;
        while n < max {
            if snap.reading.is_none() {
                let Some((id, t, filter)) = snap.tables.pop_front() else {
                    // Done: the held row is the snapshot's last record (task 0 of a parallel
                    // snapshot holds it until the hand-over).
                    match snap.end {
                        End::Last => {
                            if let Some((t, row)) = snap.held.take() {
                                let offset = Self::offset(snap.watermark, false);
                                self.emit_snapshot_row(
                                    out,
                                    &t,
                                    &row,
                                    "last",
                                    snap.watermark,
                                    &offset,
                                );
                            }
                        }
                        End::Share(epoch) => {
                            if let Some((t, row)) = snap.held.take() {
                                let offset =
                                    format!("{{\"snapshot\":true,\"share\":{epoch}}}").into_bytes();
                                self.emit_snapshot_row(
                                    out,
                                    &t,
                                    &row,
                                    "true",
                                    snap.watermark,
                                    &offset,
                                );
                            }
                        }
                        End::HandOver => {}
                    }
                    let _ = snap.db.commit();
                    return Ok(true);
                };
                let cols: Vec<String> = t
                    .columns
                    .iter()
                    .map(|c| format!("quote({})", ident(&c.name)))
                    .collect();
                let mut sql = format!("SELECT {} FROM {}", cols.join("||','||"), ident(&t.name));
                if let Some(f) = filter {
                    sql.push_str(" WHERE ");
                    sql.push_str(&f);
                }
                let cursor = snap.db.query(&sql, &[])?;
                snap.reading = Some((id, t, cursor));
            }
            let Some((_, t, cursor)) = &snap.reading else {
                continue;
            };
            match cursor.next(self.s.fetch.min(max - n).max(1))? {
                None => snap.reading = None,
                Some(b) => {
                    let rs = Rows::parse(&b).map_err(|e| Error::Fatal(e.to_string()))?;
                    for r in rs.iter() {
                        let ValueRef::Text(image) = r.get(0) else {
                            continue;
                        };
                        let row = literal::parse(image).map_err(Error::Fatal)?;
                        snap.any = true;
                        if let Some((ht, hrow)) = snap.held.replace((t.clone(), row)) {
                            let offset = Self::offset(snap.watermark, true);
                            self.emit_snapshot_row(
                                out,
                                &ht,
                                &hrow,
                                "true",
                                snap.watermark,
                                &offset,
                            );
                            n += 1;
                        }
                    }
                }
            }
        }
        Ok(false)
    }

    fn emit_snapshot_row(
        &self,
        out: &mut BatchBuilder,
        t: &Table,
        row: &[Lit],
        snapshot: &str,
        watermark: i64,
        offset: &[u8],
    ) {
        let src = envelope::Source {
            version: VERSION,
            prefix: &self.s.prefix,
            db: &self.s.db_name,
            table: &t.name,
            ts_ms: now_ms(),
            snapshot,
            seq: watermark,
        };
        self.push(out, t, "r", (None, Some(row)), &src, offset);
    }

    /// Task 0 of a parallel snapshot, its share read: once every other task said its share is
    /// in the log, writes its held row as the snapshot's `last` (its offset the watermark the
    /// stream starts after) and streams.
    fn poll_hand_over(
        &mut self,
        mut h: Box<HandOver>,
        out: &mut BatchBuilder,
    ) -> Result<(), Error> {
        let now = now_ms();
        if now - h.checked_ms < HANDOVER_CHECK_MS {
            self.phase = Phase::HandOver(h);
            return Ok(());
        }
        h.checked_ms = now;
        let n = self.s.plan.len() as i64;
        let rz = self.s.rendezvous();
        let done = int(rows(
            &self.db,
            &format!("SELECT count(*) FROM {rz} WHERE reader > 0 AND reader < ? AND epoch = ?"),
            &[P::Int(n), P::Int(h.epoch)],
        )?
        .first()
        .and_then(|r| r.first()));
        if done + 1 < n {
            if now - h.said_ms >= 30_000 {
                h.said_ms = now;
                weir_sdk::log(
                    weir_sdk::Level::Info,
                    &format!(
                        "parallel snapshot: task 0's share is read; waiting for {} of {} other task(s)",
                        n - 1 - done,
                        n - 1
                    ),
                );
            }
            self.phase = Phase::HandOver(h);
            return Ok(());
        }
        self.db.execute(&format!("DELETE FROM {rz}"), &[])?;
        if let Some((t, row)) = h.snap.held.take() {
            let offset = Self::offset(h.snap.watermark, false);
            self.emit_snapshot_row(out, &t, &row, "last", h.snap.watermark, &offset);
        }
        weir_sdk::log(
            weir_sdk::Level::Info,
            &format!("parallel snapshot: all {n} shares are in the log; streaming"),
        );
        self.phase = if self.s.mode == Mode::InitialOnly {
            Phase::Done
        } else {
            Phase::Stream
        };
        Ok(())
    }

    /// A task > 0 of a parallel snapshot: reads its share of each snapshot task 0 publishes,
    /// then says in the rendezvous table that it is in the log.
    fn poll_reader(
        &mut self,
        mut r: Box<Reader>,
        max: u32,
        out: &mut BatchBuilder,
    ) -> Result<(), Error> {
        let now = now_ms();
        if let Some((epoch, snap)) = &mut r.reading {
            let epoch = *epoch;
            if self.poll_snapshot(snap, max, out)? {
                if snap.any {
                    r.sent = Some(epoch);
                } else {
                    r.done = Some(epoch);
                    r.checked_ms = 0;
                }
                r.reading = None;
            }
        } else if now - r.checked_ms >= READER_CHECK_MS {
            r.checked_ms = now;
            let rz = self.s.rendezvous();
            let exists = int(rows(
                &self.db,
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?",
                &[P::Text(format!("_weir_cdc_{}_snapshot", self.s.slot))],
            )?
            .first()
            .and_then(|r| r.first()))
                > 0;
            if exists {
                if let Some(e) = r.done
                    && r.said != Some(e)
                {
                    self.db.execute(
                        &format!(
                            "INSERT OR REPLACE INTO {rz} (reader, epoch, seq) VALUES (?, ?, 0)"
                        ),
                        &[P::Int(i64::from(self.s.reader)), P::Int(e)],
                    )?;
                    r.said = Some(e);
                }
                let state = rows(
                    &self.db,
                    &format!(
                        "SELECT epoch, seq, (SELECT epoch FROM {rz} WHERE reader = ?) FROM {rz} WHERE reader = 0"
                    ),
                    &[P::Int(i64::from(self.s.reader))],
                )?;
                if let Some(row) = state.first() {
                    let (epoch, watermark) = (int(row.first()), int(row.get(1)));
                    let mine = match row.get(2) {
                        Some(weir_sdk::sql::OwnedValue::Int(e)) => Some(*e),
                        _ => None,
                    };
                    if mine != Some(epoch) && r.sent != Some(epoch) && r.done != Some(epoch) {
                        self.load_schemas()?;
                        let share = self.s.plan[self.s.reader as usize].clone();
                        let snap = self.start_snapshot(
                            Some((&share, false)),
                            Some(watermark),
                            End::Share(epoch),
                        )?;
                        weir_sdk::log(
                            weir_sdk::Level::Info,
                            &format!(
                                "parallel snapshot: share {} of {} ({} range(s)) after change {watermark}",
                                self.s.reader + 1,
                                self.s.plan.len(),
                                snap.tables.len()
                            ),
                        );
                        r.reading = Some((epoch, Box::new(snap)));
                    }
                }
            }
        }
        self.phase = Phase::Reader(r);
        Ok(())
    }

    fn poll_stream(&mut self, max: u32, out: &mut BatchBuilder) -> Result<(), Error> {
        let version = self.schema_version()?;
        if version != self.schema_version {
            self.install(true)?;
            self.load_schemas()?;
            self.schema_version = self.schema_version()?;
        }
        let changes = rows(
            &self.db,
            &format!(
                "SELECT seq, schema_id, op, ts_ms, before, after FROM {} WHERE seq > ? ORDER BY seq LIMIT ?",
                self.s.changes()
            ),
            &[P::Int(self.after), P::Int(i64::from(max.max(1)))],
        )?;
        for c in changes {
            let seq = int(c.first());
            let schema_id = int(c.get(1));
            let Some(t) = self.schemas.get(&schema_id).cloned() else {
                return Err(Error::Fatal(format!(
                    "change {seq} names schema {schema_id}, which {} does not hold",
                    self.s.schemas()
                )));
            };
            let image = |v: Option<&weir_sdk::sql::OwnedValue>| -> Result<Option<Vec<Lit>>, Error> {
                match v {
                    Some(weir_sdk::sql::OwnedValue::Text(s)) => {
                        literal::parse(s).map(Some).map_err(Error::Fatal)
                    }
                    _ => Ok(None),
                }
            };
            let (before, after) = (image(c.get(4))?, image(c.get(5))?);
            let op = text(c.get(2));
            let src = envelope::Source {
                version: VERSION,
                prefix: &self.s.prefix,
                db: &self.s.db_name,
                table: &t.name,
                ts_ms: int(c.get(3)),
                // The rows of a table that appeared while streaming: read between changes,
                // as Debezium's incremental snapshots mark them.
                snapshot: if op == "r" { "incremental" } else { "false" },
                seq,
            };
            let offset = Self::offset(seq, false);
            let key_changed = op == "u"
                && envelope::key_changed(
                    &t,
                    before.as_deref().unwrap_or(&[]),
                    after.as_deref().unwrap_or(&[]),
                );
            if key_changed {
                // A primary key update: a delete of the old key, then a create of the new one
                // (as Debezium), so key-compacted topics stay right.
                self.push(out, &t, "d", (before.as_deref(), None), &src, &offset);
                self.push(out, &t, "c", (None, after.as_deref()), &src, &offset);
            } else {
                self.push(
                    out,
                    &t,
                    &op,
                    (before.as_deref(), after.as_deref()),
                    &src,
                    &offset,
                );
            }
            self.after = seq;
        }
        Ok(())
    }
}

impl Source for SqliteSource {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor(
            "sqlite-source",
            VERSION,
            PluginKind::Source,
            "Change data capture for SQLite (triggers into a change table), in Debezium's envelope",
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
                "Topics are <topic.prefix>.main.<table>",
            ),
            key(
                "database.path",
                ConfigType::String,
                None,
                "The SQLite file (the runtime grants it as weir.sql.db.url)",
            ),
            key(
                "table.include.list",
                ConfigType::List,
                None,
                "Regular expressions of tables to capture (main.<table> or <table>)",
            ),
            key(
                "table.exclude.list",
                ConfigType::List,
                None,
                "Regular expressions of tables not to capture",
            ),
            key(
                "snapshot.mode",
                ConfigType::String,
                Some("initial"),
                "initial, no_data, initial_only, when_needed or always",
            ),
            key(
                "tombstones.on.delete",
                ConfigType::Boolean,
                Some("true"),
                "A tombstone (null value) after each delete",
            ),
            key(
                "slot.name",
                ConfigType::String,
                Some("weir"),
                "Names the change table and triggers (_weir_cdc_<slot>)",
            ),
            key(
                "slot.drop.on.stop",
                ConfigType::Boolean,
                Some("false"),
                "Drop the triggers and change tables when the task stops (changes made while it is stopped are not recorded)",
            ),
            key(
                "snapshot.fetch.size",
                ConfigType::Int,
                Some("10240"),
                "Rows read per batch while snapshotting",
            ),
            key(
                "snapshot.max.threads",
                ConfigType::Int,
                Some("1"),
                "Tasks that read the initial snapshot at once, each a share of the tables' rowid ranges (at most tasks.max and 8; the database in WAL mode)",
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
        ];
        d
    }

    fn validate(config: &Config) -> Vec<ConfigError> {
        Settings::parse(config).err().unwrap_or_default()
    }

    /// One task, or with `snapshot.max.threads` > 1 (and the database in WAL mode) one per
    /// snapshot reader (at most `tasks.max` and 8), each with the plan of the parallel
    /// snapshot: rowid ranges of the large tables, small tables whole.
    fn task_configs(config: Config, max_tasks: u32) -> Result<Vec<Config>, Error> {
        let s = Settings::parse(&config).map_err(|mut e| Error::InvalidConfig(e.remove(0)))?;
        let n = parallel::readers(s.threads, max_tasks);
        if s.threads > n {
            weir_sdk::log(
                weir_sdk::Level::Warn,
                &format!(
                    "snapshot.max.threads={} but tasks.max={max_tasks}: the snapshot is read by {n} task(s) (each reader is a task; at most {})",
                    s.threads,
                    parallel::MAX_READERS
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
        Ok(parallel::task_configs(&config, &plan))
    }

    fn open(config: Config, committed: Offsets) -> Result<Self, Error> {
        let s = Settings::parse(&config).map_err(|mut e| Error::InvalidConfig(e.remove(0)))?;
        let db = Connection::open(GRANT)?;
        if db.dialect() != "sqlite" {
            return Err(Error::Fatal(format!(
                "the grant {GRANT} is a {} database; sqlite-source reads SQLite",
                db.dialect()
            )));
        }
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
        let had_changes = rows(
            &db,
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?",
            &[P::Text(format!("_weir_cdc_{}", s.slot))],
        )?;
        let had_changes = int(had_changes.first().and_then(|r| r.first())) > 0;
        let mut me = SqliteSource {
            s,
            db,
            phase: Phase::Stream,
            after: 0,
            schemas: Default::default(),
            env: Default::default(),
            schema_version: 0,
            partition,
            stored: 0,
            trimmed: 0,
            epoch: None,
        };
        if me.s.reader > 0 {
            weir_sdk::log(
                weir_sdk::Level::Info,
                &format!(
                    "task {} of a parallel snapshot of {} (slot {}): reads its share of each snapshot task 0 takes",
                    me.s.reader, me.s.db_name, me.s.slot
                ),
            );
            me.phase = Phase::Reader(Box::default());
            return Ok(me);
        }
        me.install(false)?;
        me.load_schemas()?;
        me.schema_version = me.schema_version()?;
        let (seq, incomplete) = match &stored {
            Some(o) => (
                o["seq"].as_i64().unwrap_or(0),
                o["snapshot"].as_bool().unwrap_or(false),
            ),
            None => (0, false),
        };
        let snapshot = match me.s.mode {
            Mode::Always => true,
            Mode::NoData => false,
            Mode::Initial | Mode::InitialOnly => stored.is_none() || incomplete,
            Mode::WhenNeeded => stored.is_none() || incomplete || !had_changes,
        };
        if stored.is_some() && !incomplete && !had_changes && me.s.mode == Mode::Initial {
            return Err(Error::Fatal(format!(
                "the stored offsets say changes were captured up to {seq}, but the change table {} is gone: changes since are lost; use snapshot.mode=when_needed to take a new snapshot",
                me.s.changes()
            )));
        }
        if snapshot && me.s.plan.len() > 1 {
            // Task 0 of a parallel snapshot: the watermark first, then the epoch published,
            // so every task's share is read after the position the stream starts from (the
            // stream may repeat what a share holds, never miss what none holds).
            let rz = me.s.rendezvous();
            let watermark = int(rows(
                &me.db,
                &format!("SELECT coalesce(max(seq), 0) FROM {}", me.s.changes()),
                &[],
            )?
            .first()
            .and_then(|r| r.first()));
            let epoch = now_ms();
            me.db.execute(
                &format!("CREATE TABLE IF NOT EXISTS {rz} (reader INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, seq INTEGER NOT NULL)"),
                &[],
            )?;
            me.db.execute(&format!("DELETE FROM {rz}"), &[])?;
            me.db.execute(
                &format!("INSERT INTO {rz} (reader, epoch, seq) VALUES (0, ?, ?)"),
                &[P::Int(epoch), P::Int(watermark)],
            )?;
            let share = me.s.plan[0].clone();
            let snap = me.start_snapshot(Some((&share, true)), Some(watermark), End::HandOver)?;
            me.epoch = Some(epoch);
            me.after = snap.watermark;
            me.phase = Phase::Snapshot(Box::new(snap));
        } else if snapshot {
            let snap = me.start_snapshot(None, None, End::Last)?;
            // Changes up to the watermark are in the snapshot; they are trimmed when the
            // snapshot's last record is stored (its offset is the watermark). Not now: the
            // snapshot's read transaction would keep a DELETE from committing in SQLite's
            // rollback-journal mode.
            me.after = snap.watermark;
            me.phase = Phase::Snapshot(Box::new(snap));
        } else if me.s.mode == Mode::InitialOnly {
            me.phase = Phase::Done;
        } else {
            me.after = if stored.is_some() {
                seq
            } else {
                // No snapshot and nothing stored: from the changes still in the table.
                0
            };
        }
        weir_sdk::log(
            weir_sdk::Level::Info,
            &format!(
                "capturing {} table(s) of {} (slot {}), {}",
                me.schemas
                    .values()
                    .map(|t| &t.name)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
                me.s.db_name,
                me.s.slot,
                match &me.phase {
                    Phase::Snapshot(s) => format!("snapshot up to change {}", s.watermark),
                    Phase::HandOver(_) | Phase::Reader(_) => "parallel snapshot".into(),
                    Phase::Stream => format!("streaming after change {}", me.after),
                    Phase::Done => "snapshot done (initial_only)".into(),
                }
            ),
        );
        Ok(me)
    }

    fn poll(&mut self, max: u32, out: &mut BatchBuilder) -> Result<(), Error> {
        match std::mem::replace(&mut self.phase, Phase::Stream) {
            Phase::Snapshot(mut snap) => {
                let done = self.poll_snapshot(&mut snap, max, out)?;
                self.phase = if !done {
                    Phase::Snapshot(snap)
                } else if snap.end == End::HandOver {
                    Phase::HandOver(Box::new(HandOver {
                        snap,
                        epoch: self.epoch.unwrap_or_default(),
                        checked_ms: 0,
                        said_ms: now_ms(),
                    }))
                } else if self.s.mode == Mode::InitialOnly {
                    Phase::Done
                } else {
                    Phase::Stream
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
                if let Phase::Reader(r) = &mut self.phase
                    && r.sent == Some(epoch)
                {
                    r.sent = None;
                    r.done = Some(epoch);
                    r.checked_ms = 0;
                }
                continue;
            }
            if v["snapshot"].as_bool() != Some(true) {
                self.stored = self.stored.max(v["seq"].as_i64().unwrap_or(0));
            }
        }
        if self.stored > self.trimmed
            && let Err(e) = self.trim(self.stored)
        {
            weir_sdk::log(
                weir_sdk::Level::Warn,
                &format!("cannot trim the change table: {e:?}"),
            );
        }
    }

    fn close(&mut self) {
        if !self.s.drop_on_stop || self.s.reader > 0 {
            return;
        }
        let r = self.drop_capture();
        if r.is_err() {
            let _ = self.db.rollback();
        }
        weir_sdk::log(
            weir_sdk::Level::Info,
            &match r {
                Ok(n) => format!(
                    "dropped {n} trigger(s) and the change tables of slot {}",
                    self.s.slot
                ),
                Err(e) => format!("cannot drop the capture of slot {}: {e:?}", self.s.slot),
            },
        );
    }
}

impl SqliteSource {
    /// Drops this slot's triggers and change tables in one transaction; the triggers dropped.
    fn drop_capture(&mut self) -> Result<usize, Error> {
        self.db.begin(weir_sdk::sql::BeginKind::Immediate)?;
        // This slot's own triggers: `_weir_cdc_<slot>_<table>_{i,u,d}` exactly (another
        // slot's name may start with this one's).
        let triggers: Vec<String> = rows(
            &self.db,
            "SELECT name, tbl_name FROM sqlite_schema WHERE type = 'trigger'",
            &[],
        )?
        .iter()
        .map(|r| (text(r.first()), text(r.get(1))))
        .filter(|(name, table)| {
            ["i", "u", "d"]
                .iter()
                .any(|op| *name == format!("_weir_cdc_{}_{table}_{op}", self.s.slot))
        })
        .map(|(name, _)| name)
        .collect();
        for name in &triggers {
            self.db
                .execute(&format!("DROP TRIGGER IF EXISTS {}", ident(name)), &[])?;
        }
        for table in [self.s.changes(), self.s.schemas(), self.s.rendezvous()] {
            self.db
                .execute(&format!("DROP TABLE IF EXISTS {table}"), &[])?;
        }
        self.db.commit()?;
        Ok(triggers.len())
    }
}

impl SqliteSource {
    /// Deletes the changes up to `seq` (stored in the log, or inside a stored snapshot).
    fn trim(&mut self, seq: i64) -> Result<(), Error> {
        self.db.execute(
            &format!("DELETE FROM {} WHERE seq <= ?", self.s.changes()),
            &[P::Int(seq)],
        )?;
        self.trimmed = self.trimmed.max(seq);
        Ok(())
    }
}

weir_sdk::export_source!(SqliteSource);

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
            ("database.path", "/data/shop.db"),
            ("table.include.list", "main.orders,cust.*"),
        ]))
        .unwrap();
        assert_eq!(s.db_name, "shop.db");
        assert!(s.captures("orders") && s.captures("customers"));
        assert!(!s.captures("orders_archive"));
        assert_eq!(s.mode, Mode::Initial);
        assert!(s.tombstones);
        let e = Settings::parse(&cfg(&[
            ("snapshot.mode", "sometimes"),
            ("slot.name", "a-b"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["topic.prefix", "snapshot.mode", "slot.name"]);
    }
}
