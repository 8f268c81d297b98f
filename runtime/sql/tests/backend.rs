//! The SQL backend against real databases: SQLite files in a temporary directory, and the
//! PostgreSQL server `scripts/test` starts (`WEIR_TEST_PG_URL`; the PostgreSQL tests are
//! skipped, saying so, when it is not set).

use std::time::{Duration, Instant};

use weir_host::sql::{Begin, SqlBackend, SqlConnection, SqlError, Value};
use weir_sql::SqlxBackend;
use weir_sqlbuf::{Rows, RowsBuilder, ValueRef};

const DEADLINE: Duration = Duration::from_secs(10);

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn connect(b: &SqlxBackend, url: &str) -> Box<dyn SqlConnection> {
    b.connect(url, DEADLINE, soon())
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// Every row of a query, with the columns as `name:type`.
fn all(c: &mut dyn SqlConnection, sql: &str, params: &[Value]) -> (Vec<String>, Vec<Vec<Value>>) {
    let mut cursor = c.query(sql, params, soon()).expect("query");
    let (mut cols, mut rows) = (Vec::new(), Vec::new());
    while let Some(buf) = cursor.next(3, soon()).expect("next") {
        let r = Rows::parse(&buf).expect("valid rows");
        if cols.is_empty() {
            cols = r
                .columns()
                .iter()
                .map(|c| format!("{}:{}", c.name, c.type_name))
                .collect();
        }
        rows.extend(r.iter().map(|row| row.to_vec()));
    }
    (cols, rows)
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display())
}

#[test]
fn sqlite_statements_parameters_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let b = SqlxBackend::new().unwrap();
    let mut c = connect(&b, &sqlite_url(&dir));
    assert_eq!(c.dialect(), "sqlite");
    // A script without parameters runs whole.
    c.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB, flag BOOLEAN); CREATE INDEX t_name ON t (name)",
        &[],
        soon(),
    )
    .unwrap();
    let n = c
        .execute(
            "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
            &[
                Value::Int(1),
                text("ä"),
                Value::Float(1.5),
                Value::Bytes(vec![0, 255]),
                Value::Bool(true),
            ],
            soon(),
        )
        .unwrap();
    assert_eq!(n, 1);
    c.execute(
        "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
        &[
            Value::Int(2),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ],
        soon(),
    )
    .unwrap();
    let (cols, rows) = all(&mut *c, "SELECT * FROM t ORDER BY id", &[]);
    assert_eq!(
        cols,
        [
            "id:INTEGER",
            "name:TEXT",
            "score:REAL",
            "data:BLOB",
            "flag:BOOLEAN"
        ]
    );
    assert_eq!(
        rows,
        vec![
            vec![
                Value::Int(1),
                text("ä"),
                Value::Float(1.5),
                Value::Bytes(vec![0, 255]),
                Value::Int(1)
            ],
            vec![
                Value::Int(2),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null
            ],
        ]
    );
    // A failing statement says why, and the connection goes on.
    let e = c
        .execute("INSERT INTO t (id) VALUES (1)", &[], soon())
        .unwrap_err();
    assert!(
        matches!(&e, SqlError::Statement(m) if m.contains("UNIQUE constraint failed")),
        "{e}"
    );
    let e = c.execute("SELEC 1", &[], soon()).unwrap_err();
    assert!(matches!(e, SqlError::Statement(_)), "{e}");
    assert_eq!(
        all(&mut *c, "SELECT count(*) FROM t", &[]).1,
        vec![vec![Value::Int(2)]]
    );
}

#[test]
fn sqlite_cursors_stream_in_batches_and_hold_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let b = SqlxBackend::new().unwrap();
    let mut c = connect(&b, &sqlite_url(&dir));
    c.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)",
        &[],
        soon(),
    )
    .unwrap();
    let mut params = RowsBuilder::params(2);
    for i in 0..10_000i64 {
        let name = format!("row {i}");
        params.push_row([ValueRef::Int(i), ValueRef::Text(&name)]);
    }
    let buf = params.finish();
    c.begin(Begin::Default, soon()).unwrap();
    let n = c
        .execute_many(
            "INSERT INTO t VALUES (?, ?)",
            &Rows::parse(&buf).unwrap(),
            soon(),
        )
        .unwrap();
    c.commit(soon()).unwrap();
    assert_eq!(n, 10_000);

    let mut cursor = c
        .query("SELECT id, name FROM t ORDER BY id", &[], soon())
        .unwrap();
    let first = cursor.next(1000, soon()).unwrap().unwrap();
    let rows = Rows::parse(&first).unwrap();
    assert_eq!(rows.len(), 1000);
    assert_eq!(rows.row(999).get(1), ValueRef::Text("row 999"));
    // While the cursor is open, the connection runs nothing else.
    let e = c.execute("DELETE FROM t", &[], soon()).unwrap_err();
    assert!(
        matches!(&e, SqlError::Statement(m) if m.contains("cursor")),
        "{e}"
    );
    let mut seen = 1000;
    while let Some(buf) = cursor.next(1000, soon()).unwrap() {
        seen += Rows::parse(&buf).unwrap().len();
    }
    assert_eq!(seen, 10_000);
    assert!(cursor.next(1000, soon()).unwrap().is_none());
    // A cursor dropped half-read gives its connection back.
    let mut cursor = c.query("SELECT id FROM t", &[], soon()).unwrap();
    cursor.next(10, soon()).unwrap().unwrap();
    drop(cursor);
    assert_eq!(
        c.execute("DELETE FROM t WHERE id < 10", &[], soon())
            .unwrap(),
        10
    );
}

#[test]
fn sqlite_transactions_commit_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let b = SqlxBackend::new().unwrap();
    let mut c = connect(&b, &sqlite_url(&dir));
    c.execute("CREATE TABLE t (id INTEGER)", &[], soon())
        .unwrap();
    c.begin(Begin::Default, soon()).unwrap();
    c.execute("INSERT INTO t VALUES (1)", &[], soon()).unwrap();
    c.rollback(soon()).unwrap();
    c.begin(Begin::Default, soon()).unwrap();
    assert!(
        c.begin(Begin::Default, soon()).is_err(),
        "a transaction is already open"
    );
    c.execute("INSERT INTO t VALUES (2)", &[], soon()).unwrap();
    c.commit(soon()).unwrap();
    assert!(c.commit(soon()).is_err(), "no transaction is open");
    // Another connection sees what was committed only.
    let mut other = connect(&b, &sqlite_url(&dir));
    assert_eq!(
        all(&mut *other, "SELECT id FROM t", &[]).1,
        vec![vec![Value::Int(2)]]
    );
    // A connection dropped inside a transaction rolls it back.
    c.begin(Begin::Default, soon()).unwrap();
    c.execute("INSERT INTO t VALUES (3)", &[], soon()).unwrap();
    drop(c);
    assert_eq!(
        all(&mut *other, "SELECT count(*) FROM t", &[]).1,
        vec![vec![Value::Int(1)]]
    );
}

#[test]
fn sqlite_connections_reach_only_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let b = SqlxBackend::new().unwrap();
    let mut c = connect(&b, &sqlite_url(&dir));
    let other = dir.path().join("other.db");
    let e = c
        .execute(
            &format!("ATTACH DATABASE '{}' AS o", other.display()),
            &[],
            soon(),
        )
        .unwrap_err();
    assert!(
        matches!(&e, SqlError::Statement(m) if m.contains("too many attached databases")),
        "{e}"
    );
    let copy = dir.path().join("copy.db");
    let e = c
        .execute(&format!("VACUUM INTO '{}'", copy.display()), &[], soon())
        .unwrap_err();
    assert!(matches!(e, SqlError::Statement(_)), "{e}");
    assert!(!other.exists() && !copy.exists());
}

#[test]
fn unusable_urls_are_denied() {
    let b = SqlxBackend::new().unwrap();
    let e = b
        .connect("mysql://root@localhost/x", DEADLINE, soon())
        .err()
        .unwrap();
    assert!(
        matches!(&e, SqlError::Denied(m) if m.contains("mysql")),
        "{e}"
    );
    let e = b
        .connect("sqlite:///nonexistent-dir/x.db", DEADLINE, soon())
        .err()
        .unwrap();
    assert!(e.to_string().contains("unable to open"), "{e}");
}

fn pg() -> Option<String> {
    let url = std::env::var("WEIR_TEST_PG_URL").ok();
    if url.is_none() {
        eprintln!("skipped: WEIR_TEST_PG_URL is not set (scripts/test sets it)");
    }
    url
}

#[test]
fn postgres_types_read_as_their_values() {
    let Some(url) = pg() else { return };
    let b = SqlxBackend::new().unwrap();
    let mut c = connect(&b, &url);
    assert_eq!(c.dialect(), "postgres");
    c.execute(
        "DROP TYPE IF EXISTS weir_test_mood CASCADE; CREATE TYPE weir_test_mood AS ENUM ('sad', 'happy')",
        &[],
        soon(),
    )
    .unwrap();
    let (cols, rows) = all(
        &mut *c,
        r#"SELECT 1::int2 AS a, 2::int4, 3::int8, 1.5::float4, 2.5::float8, true, 'x'::text,
           'y'::varchar, '\x01ff'::bytea, '-12345.678'::numeric, 0.05::numeric(5,3),
           'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, '{"a": 1}'::json, '{"a": 1}'::jsonb,
           '2024-02-29'::date, '2024-02-29 12:34:56.789'::timestamp,
           '2024-02-29 12:34:56.789+02'::timestamptz, '12:34:56'::time,
           '1 year 2 mons 3 days 04:05:06.5'::interval, ARRAY[1, 2, NULL]::int[],
           ARRAY['a', 'b"c']::text[], 'happy'::weir_test_mood, NULL::int"#,
        &[],
    );
    assert_eq!(cols[0], "a:INT2");
    assert_eq!(cols[21], "weir_test_mood:weir_test_mood");
    assert_eq!(
        rows[0],
        vec![
            Value::Int(1),
            Value::Int(2),
            Value::Int(3),
            Value::Float(1.5),
            Value::Float(2.5),
            Value::Bool(true),
            text("x"),
            text("y"),
            Value::Bytes(vec![1, 255]),
            text("-12345.678"),
            text("0.050"),
            text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            text("{\"a\": 1}"),
            text("{\"a\": 1}"),
            text("2024-02-29"),
            text("2024-02-29T12:34:56.789000"),
            text("2024-02-29T10:34:56.789000Z"),
            text("12:34:56"),
            text("P1Y2M3DT4H5M6.5S"),
            text("[1,2,null]"),
            text("[\"a\",\"b\\\"c\"]"),
            text("happy"),
            Value::Null,
        ]
    );
}

#[test]
fn postgres_parameters_bind_by_value_and_nulls_untyped() {
    let Some(url) = pg() else { return };
    let b = SqlxBackend::new().unwrap();
    let mut c = connect(&b, &url);
    c.execute(
        "DROP TABLE IF EXISTS weir_test_params; CREATE TABLE weir_test_params (id int4 PRIMARY KEY, name text, score float8, data bytea, flag bool, n numeric)",
        &[],
        soon(),
    )
    .unwrap();
    let ins = "INSERT INTO weir_test_params VALUES ($1, $2, $3, $4, $5, $6::numeric)";
    c.execute(
        ins,
        &[
            Value::Int(1),
            text("a"),
            Value::Float(0.25),
            Value::Bytes(vec![7]),
            Value::Bool(false),
            text("1.10"),
        ],
        soon(),
    )
    .unwrap();
    c.execute(
        ins,
        &[
            Value::Int(2),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ],
        soon(),
    )
    .unwrap();
    let (_, rows) = all(
        &mut *c,
        "SELECT * FROM weir_test_params WHERE id >= $1 ORDER BY id",
        &[Value::Int(1)],
    );
    assert_eq!(
        rows,
        vec![
            vec![
                Value::Int(1),
                text("a"),
                Value::Float(0.25),
                Value::Bytes(vec![7]),
                Value::Bool(false),
                text("1.10")
            ],
            vec![
                Value::Int(2),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null
            ],
        ]
    );
    let e = c
        .execute(
            ins,
            &[
                Value::Int(1),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ],
            soon(),
        )
        .unwrap_err();
    assert!(
        matches!(&e, SqlError::Statement(m) if m.contains("duplicate key") && m.contains("23505")),
        "{e}"
    );
    let e = c.execute(ins, &[Value::Int(1)], soon()).unwrap_err();
    assert!(matches!(e, SqlError::Statement(_)), "{e}");
    c.execute("DROP TABLE weir_test_params", &[], soon())
        .unwrap();
}

#[test]
fn postgres_calls_end_at_their_deadline() {
    let Some(url) = pg() else { return };
    let b = SqlxBackend::new().unwrap();
    let mut c = connect(&b, &url);
    let started = Instant::now();
    let e = c
        .execute(
            "SELECT pg_sleep($1)",
            &[Value::Float(5.0)],
            Instant::now() + Duration::from_millis(300),
        )
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, SqlError::Unavailable(_)), "{e}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // The connection was replaced: the next call works.
    assert_eq!(all(&mut *c, "SELECT 1", &[]).1, vec![vec![Value::Int(1)]]);
    // A transaction cut off at its deadline is reported lost, and rolled back.
    c.execute(
        "DROP TABLE IF EXISTS weir_test_deadline; CREATE TABLE weir_test_deadline (id int)",
        &[],
        soon(),
    )
    .unwrap();
    c.begin(Begin::Default, soon()).unwrap();
    c.execute("INSERT INTO weir_test_deadline VALUES (1)", &[], soon())
        .unwrap();
    let e = c
        .execute(
            "SELECT pg_sleep(5)",
            &[],
            Instant::now() + Duration::from_millis(300),
        )
        .unwrap_err();
    assert!(
        matches!(&e, SqlError::Unavailable(m) if m.contains("rolled back")),
        "{e}"
    );
    assert!(c.commit(soon()).is_err(), "the transaction is gone");
    assert_eq!(
        all(&mut *c, "SELECT count(*) FROM weir_test_deadline", &[]).1,
        vec![vec![Value::Int(0)]]
    );
    c.execute("DROP TABLE weir_test_deadline", &[], soon())
        .unwrap();
}

#[test]
fn postgres_large_results_stream() {
    let Some(url) = pg() else { return };
    let b = SqlxBackend::new().unwrap();
    let mut c = connect(&b, &url);
    let mut cursor = c
        .query(
            "SELECT i, repeat('x', 100) FROM generate_series(1, 200000) AS i",
            &[],
            soon(),
        )
        .unwrap();
    let (mut n, mut batches, mut last) = (0, 0, 0);
    while let Some(buf) = cursor.next(10_000, soon()).unwrap() {
        let rows = Rows::parse(&buf).unwrap();
        assert!(rows.len() <= 10_000);
        n += rows.len();
        batches += 1;
        if let ValueRef::Int(i) = rows.row(rows.len() - 1).get(0) {
            last = i;
        }
    }
    assert_eq!((n, batches, last), (200_000, 20, 200_000));
}

#[test]
fn postgres_bad_credentials_are_denied_and_never_shown() {
    let Some(url) = pg() else { return };
    let b = SqlxBackend::new().unwrap();
    // A database that does not exist.
    let (base, _) = url.rsplit_once('/').unwrap();
    let e = b
        .connect(&format!("{base}/weir_no_such_db"), DEADLINE, soon())
        .err()
        .unwrap();
    assert!(
        matches!(&e, SqlError::Denied(m) if m.contains("weir_no_such_db")),
        "{e}"
    );
    // A wrong password, where the server checks passwords (scripts/test's cluster does).
    if std::env::var("WEIR_TEST_PG_PASSWORDS").is_ok() {
        // postgres://user:password@host... with the password replaced.
        let (scheme, rest) = url.split_once("://").unwrap();
        let (userinfo, host) = rest.split_once('@').unwrap();
        let user = userinfo.split(':').next().unwrap();
        let wrong = format!("{scheme}://{user}:hunter2-wrong@{host}");
        let e = b.connect(&wrong, DEADLINE, soon()).err().unwrap();
        assert!(matches!(&e, SqlError::Denied(_)), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(
            e.to_string().contains("password authentication failed"),
            "{e}"
        );
    }
}
