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
    tables: VecDeque<(i64, Rc<Table>)>,
    reading: Option<(i64, Rc<Table>, Cursor)>,
    /// The last row read, held back so the snapshot's very last record can say `last`.
    held: Option<(Rc<Table>, Vec<Lit>)>,
}

enum Phase {
    Snapshot(Box<Snapshot>),
    Stream,
    /// `initial_only`: the snapshot is done and nothing is streamed.
    Done,
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
}

impl SqliteSource {
    /// The tables to capture, with their columns.
    fn tables(&self) -> Result<Vec<Table>, Error> {
        let names = rows(
            &self.db,
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_weir\\_cdc\\_%' ESCAPE '\\' ORDER BY name",
            &[],
        )?;
        let mut out = Vec::new();
        for n in names {
            let name = text(n.first());
            if !self.s.captures(&name) {
                continue;
            }
            let cols = rows(
                &self.db,
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

    /// Creates the change tables, and triggers for every captured table whose recorded
    /// columns differ from its columns now (or that has none), in one write transaction.
    fn install(&mut self) -> Result<(), Error> {
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
    /// the tables to read (with their schema ids).
    fn start_snapshot(&mut self) -> Result<Snapshot, Error> {
        let snap = Connection::open(GRANT)?;
        snap.begin(BeginKind::Snapshot)?;
        let watermark = int(rows(
            &snap,
            &format!("SELECT coalesce(max(seq), 0) FROM {}", self.s.changes()),
            &[],
        )?
        .first()
        .and_then(|r| r.first()));
        let mut tables = VecDeque::new();
        for (id, t) in &self.schemas {
            // The newest schema of each captured table.
            if self.s.captures(&t.name)
                && !self
                    .schemas
                    .iter()
                    .any(|(other, o)| o.name == t.name && other > id)
            {
                tables.push_back((*id, t.clone()));
            }
        }
        tables
            .make_contiguous()
            .sort_by(|a, b| a.1.name.cmp(&b.1.name));
        Ok(Snapshot {
            db: snap,
            watermark,
            tables,
            reading: None,
            held: None,
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
                let Some((id, t)) = snap.tables.pop_front() else {
                    // Done: the held row is the snapshot's last record.
                    if let Some((t, row)) = snap.held.take() {
                        self.emit_snapshot_row(out, &t, &row, "last", snap.watermark, false);
                    }
                    let _ = snap.db.commit();
                    return Ok(true);
                };
                let cols: Vec<String> = t
                    .columns
                    .iter()
                    .map(|c| format!("quote({})", ident(&c.name)))
                    .collect();
                let sql = format!("SELECT {} FROM {}", cols.join("||','||"), ident(&t.name));
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
                        if let Some((ht, hrow)) = snap.held.replace((t.clone(), row)) {
                            self.emit_snapshot_row(out, &ht, &hrow, "true", snap.watermark, true);
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
        incomplete: bool,
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
        let offset = Self::offset(watermark, incomplete);
        self.push(out, t, "r", (None, Some(row)), &src, &offset);
    }

    fn poll_stream(&mut self, max: u32, out: &mut BatchBuilder) -> Result<(), Error> {
        let version = self.schema_version()?;
        if version != self.schema_version {
            self.install()?;
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
            let src = envelope::Source {
                version: VERSION,
                prefix: &self.s.prefix,
                db: &self.s.db_name,
                table: &t.name,
                ts_ms: int(c.get(3)),
                snapshot: "false",
                seq,
            };
            let offset = Self::offset(seq, false);
            let op = text(c.get(2));
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

    fn open(config: Config, committed: Offsets) -> Result<Self, Error> {
        let s = Settings::parse(&config).map_err(|mut e| Error::InvalidConfig(e.remove(0)))?;
        let db = Connection::open(GRANT)?;
        if db.dialect() != "sqlite" {
            return Err(Error::Fatal(format!(
                "the grant {GRANT} is a {} database; sqlite-source reads SQLite",
                db.dialect()
            )));
        }
        let partition = format!(
            "{{\"server\":{}}}",
            serde_json::Value::String(s.prefix.clone())
        )
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
        };
        me.install()?;
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
        if snapshot {
            let snap = me.start_snapshot()?;
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
                } else if self.s.mode == Mode::InitialOnly {
                    Phase::Done
                } else {
                    Phase::Stream
                };
                Ok(())
            }
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
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o)
                && v["snapshot"].as_bool() != Some(true)
            {
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
        if !self.s.drop_on_stop {
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
        for table in [self.s.changes(), self.s.schemas()] {
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
