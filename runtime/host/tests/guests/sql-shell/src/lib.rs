//! Runs each record's value as a SQL command on the granted connection `db` and replaces the
//! value with the outcome, so the host's tests can drive the `sql` capability: `begin`,
//! `commit`, `rollback`, `open` (a new connection), `drop` (the connection),
//! `query <sql>` (every row, as `a|b|c` lines after a header of `name:type` columns),
//! `cursor <n> <sql>` (opens a query, reads one batch of n rows, keeps the cursor),
//! `next <n>` (the next batch of the kept cursor), `close` (drops the cursor),
//! `many <sql>` (runs it for parameter rows 1..=3 as (i, 'row i')), anything else is
//! executed (`affected N`). Parameters: `?int:5`, `?text:x`, `?null` words at the end.
//! An error becomes `error <kind>: <message>`.
use weir_sdk::sql::{BeginKind, Connection, Cursor, Rows, RowsBuilder, SqlError, Value, ValueRef};
use weir_sdk::{Config, Descriptor, Error, PluginKind, RecordRef, Transform, Verdict};

struct Shell {
    name: String,
    db: Option<Connection>,
    cursor: Option<Cursor>,
}

fn show(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Bool(b) => b.to_string(),
        ValueRef::Int(i) => i.to_string(),
        ValueRef::Float(f) => format!("{f:?}"),
        ValueRef::Text(s) => s.to_string(),
        ValueRef::Bytes(b) => format!(
            "0x{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
    }
}

fn render(batch: &[u8], header: bool) -> String {
    let rows = Rows::parse(batch).expect("the host sends valid rows");
    let mut out = Vec::new();
    if header {
        out.push(
            rows.columns()
                .iter()
                .map(|c| format!("{}:{}", c.name, c.type_name))
                .collect::<Vec<_>>()
                .join("|"),
        );
    }
    for r in rows.iter() {
        out.push(r.values().map(show).collect::<Vec<_>>().join("|"));
    }
    out.join("\n")
}

fn kind(e: &SqlError) -> String {
    match e {
        SqlError::Denied(m) => format!("error denied: {m}"),
        SqlError::Statement(m) => format!("error statement: {m}"),
        SqlError::Unavailable(m) => format!("error unavailable: {m}"),
    }
}

/// Splits trailing `?type:value` words off a command as parameters.
fn params(cmd: &str) -> (String, Vec<Value>) {
    let mut words: Vec<&str> = cmd.split(' ').collect();
    let mut ps = Vec::new();
    while let Some(w) = words.last() {
        let p = if *w == "?null" {
            Value::Null
        } else if let Some(i) = w.strip_prefix("?int:") {
            Value::Int(i.parse().unwrap_or_default())
        } else if let Some(t) = w.strip_prefix("?text:") {
            Value::Text(t.to_string())
        } else if let Some(f) = w.strip_prefix("?float:") {
            Value::Float(f.parse().unwrap_or_default())
        } else {
            break;
        };
        ps.insert(0, p);
        words.pop();
    }
    (words.join(" "), ps)
}

impl Shell {
    fn db(&mut self) -> Result<&Connection, SqlError> {
        if self.db.is_none() {
            self.db = Some(Connection::open(&self.name)?);
        }
        Ok(self.db.as_ref().expect("just opened"))
    }

    fn run(&mut self, cmd: &str) -> Result<String, SqlError> {
        let (word, rest) = cmd.split_once(' ').unwrap_or((cmd, ""));
        match word {
            "open" => {
                self.db = None;
                self.db()?;
                Ok(format!("open {}", self.db()?.dialect()))
            }
            "drop" => {
                self.db = None;
                Ok("dropped".into())
            }
            "begin" => self
                .db()?
                .begin(BeginKind::Default)
                .map(|()| "begun".into()),
            "begin-immediate" => self
                .db()?
                .begin(BeginKind::Immediate)
                .map(|()| "begun".into()),
            "commit" => self.db()?.commit().map(|()| "committed".into()),
            "rollback" => self.db()?.rollback().map(|()| "rolled back".into()),
            "query" => {
                let (sql, ps) = params(rest);
                let cursor = self.db()?.query(&sql, &ps)?;
                let mut out = Vec::new();
                while let Some(b) = cursor.next(2)? {
                    out.push(render(&b, out.is_empty()));
                }
                Ok(out.join("\n"))
            }
            "cursor" => {
                let (n, sql) = rest.split_once(' ').unwrap_or(("1", rest));
                let (sql, ps) = params(sql);
                let cursor = self.db()?.query(&sql, &ps)?;
                let first = cursor.next(n.parse().unwrap_or(1))?;
                self.cursor = Some(cursor);
                Ok(first
                    .map(|b| render(&b, true))
                    .unwrap_or_else(|| "done".into()))
            }
            "next" => match &self.cursor {
                Some(c) => Ok(c
                    .next(rest.parse().unwrap_or(1))?
                    .map(|b| render(&b, false))
                    .unwrap_or_else(|| "done".into())),
                None => Ok("no cursor".into()),
            },
            "close" => {
                self.cursor = None;
                Ok("closed".into())
            }
            "many" => {
                let mut b = RowsBuilder::params(2);
                for i in 1..=3i64 {
                    let text = format!("row {i}");
                    b.push_row([ValueRef::Int(i), ValueRef::Text(&text)]);
                }
                let buf = b.finish();
                self.db()?
                    .execute_many(rest, &buf)
                    .map(|n| format!("affected {n}"))
            }
            _ => {
                let (sql, ps) = params(cmd);
                self.db()?
                    .execute(&sql, &ps)
                    .map(|n| format!("affected {n}"))
            }
        }
    }
}

impl Transform for Shell {
    fn describe() -> Descriptor {
        let mut d = weir_sdk::descriptor(
            "sql-shell",
            "0.2.1",
            PluginKind::Transform,
            "Runs SQL commands",
        );
        d.config.push(weir_sdk::config_key(
            "connection",
            weir_sdk::ConfigType::String,
            false,
            Some("db"),
            "The SQL grant to use",
        ));
        d
    }
    fn open(config: Config) -> Result<Self, Error> {
        let name = weir_sdk::config_get(&config, "connection")
            .unwrap_or("db")
            .to_string();
        Ok(Shell {
            name,
            db: None,
            cursor: None,
        })
    }
    fn transform(&mut self, r: &RecordRef<'_>) -> Result<Verdict, Error> {
        let cmd = String::from_utf8_lossy(r.value().unwrap_or_default()).to_string();
        let out = self.run(&cmd).unwrap_or_else(|e| kind(&e));
        Ok(Verdict::Value(Some(out.into_bytes())))
    }
}

weir_sdk::export_transform!(Shell);
