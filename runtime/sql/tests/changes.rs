//! PostgreSQL change streams against the server `scripts/test` starts (`WEIR_TEST_PG_URL`,
//! with `wal_level=logical`; skipped, saying so, when it is not set): slot and publication
//! made on open, the exported snapshot, every kind of change with its images and values, a
//! large transaction read in bounded batches, confirmation moving the slot, and a slot in use.

use std::time::{Duration, Instant};

use weir_host::sql::{SqlBackend, SqlChangeStream, SqlConnection, SqlError, StreamOptions, Value};
use weir_sql::SqlxBackend;
use weir_sqlbuf::ValueRef;
use weir_sqlbuf::changes::{Changes, ImageKind, Op};

const DEADLINE: Duration = Duration::from_secs(20);

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn pg() -> Option<String> {
    let url = std::env::var("WEIR_TEST_PG_URL").ok();
    if url.is_none() {
        eprintln!("skipped: WEIR_TEST_PG_URL is not set (scripts/test sets it)");
    }
    url
}

fn exec(c: &mut dyn SqlConnection, sql: &str) {
    c.execute(sql, &[], soon())
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// One owned change: op, table, before and after (None: unchanged value), commit, seq, end.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    op: Op,
    table: String,
    before: Option<(ImageKind, Vec<Option<Value>>)>,
    after: Option<Vec<Option<Value>>>,
    commit: u64,
    seq: u32,
    end: u64,
}

/// Reads changes until `n` arrived (or 30 s passed); also returns the last position.
fn read(s: &mut dyn SqlChangeStream, n: usize, max: u32) -> (Vec<Seen>, u64, usize) {
    let mut out = Vec::new();
    let mut position = 0;
    let mut batches = 0;
    let until = Instant::now() + Duration::from_secs(30);
    while out.len() < n && Instant::now() < until {
        let buf = s
            .next(max, Duration::from_millis(500), soon())
            .unwrap_or_else(|e| panic!("next: {e}"));
        let c = Changes::parse(&buf).expect("a valid changes buffer");
        assert!(c.changes.len() <= max as usize);
        assert!(c.position >= position, "the position never goes back");
        position = c.position;
        if !c.changes.is_empty() {
            batches += 1;
        }
        for ch in &c.changes {
            let owned = |vals: Vec<Option<ValueRef<'_>>>| {
                vals.into_iter()
                    .map(|v| v.map(ValueRef::to_owned))
                    .collect::<Vec<_>>()
            };
            out.push(Seen {
                op: ch.op,
                table: ch
                    .relations
                    .iter()
                    .map(|r| {
                        let rel = &c.relations[*r as usize];
                        format!("{}.{}", rel.schema, rel.table)
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                before: ch.before.map(|b| (b.kind, owned(b.values().collect()))),
                after: ch.after.map(|a| owned(a.values().collect())),
                commit: ch.meta.commit_lsn,
                seq: ch.meta.seq,
                end: ch.meta.end_lsn,
            });
        }
    }
    (out, position, batches)
}

fn opts(slot: &str, publication: &str, tables: &[&str]) -> StreamOptions {
    StreamOptions {
        slot: slot.into(),
        publication: publication.into(),
        tables: tables.iter().map(|t| t.to_string()).collect(),
        create_slot: true,
    }
}

fn slot_state(c: &mut dyn SqlConnection, slot: &str) -> (bool, u64) {
    let mut cur = c
        .query(
            "SELECT active, pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::int8 FROM pg_replication_slots WHERE slot_name = $1",
            &[Value::Text(slot.into())],
            soon(),
        )
        .unwrap();
    let buf = cur.next(1, soon()).unwrap().expect("the slot exists");
    let rows = weir_sqlbuf::Rows::parse(&buf).unwrap();
    let row = rows.row(0);
    let active = row.get(0) == ValueRef::Bool(true);
    let ValueRef::Int(confirmed) = row.get(1) else {
        panic!("no confirmed position")
    };
    (active, confirmed as u64)
}

#[test]
fn postgres_changes_stream_in_commit_order_with_their_images() {
    let Some(url) = pg() else { return };
    let b = SqlxBackend::new().unwrap();
    let mut c = b.connect(&url, DEADLINE, soon()).unwrap();
    exec(
        &mut *c,
        "DROP TABLE IF EXISTS cs_items, cs_full; \
         SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'cs_slot'; \
         DROP PUBLICATION IF EXISTS cs_pub; \
         CREATE TABLE cs_items (id int PRIMARY KEY, name text, price numeric(10,2), doc text); \
         CREATE TABLE cs_full (id int PRIMARY KEY, v text); ALTER TABLE cs_full REPLICA IDENTITY FULL; \
         INSERT INTO cs_items VALUES (1, 'before', 1.50, 'x')",
    );
    let mut s = b
        .change_stream(
            &url,
            &opts("cs_slot", "cs_pub", &["public.cs_items", "cs_full"]),
            DEADLINE,
            soon(),
        )
        .unwrap_or_else(|e| panic!("open: {e}"));
    assert_eq!(s.slot(), "cs_slot");
    // The exported snapshot sees the row inserted before the slot, none after.
    let snapshot = s
        .exported_snapshot()
        .expect("a new slot exports its snapshot");
    let mut snap = b.connect(&url, DEADLINE, soon()).unwrap();
    snap.begin_at_snapshot(&snapshot, soon())
        .unwrap_or_else(|e| panic!("begin-at-snapshot: {e}"));
    // Incompressible, so PostgreSQL stores it out of line (TOAST).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: String = (0..12_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x % 16) as u32, 16).unwrap_or('0')
        })
        .collect();
    exec(
        &mut *c,
        &format!(
            "INSERT INTO cs_items VALUES (2, 'two', 2.25, '{big}'); \
             UPDATE cs_items SET name = 'one' WHERE id = 1; \
             UPDATE cs_items SET name = 'TWO' WHERE id = 2; \
             UPDATE cs_items SET id = 3 WHERE id = 2; \
             DELETE FROM cs_items WHERE id = 1; \
             INSERT INTO cs_full VALUES (1, 'a'); UPDATE cs_full SET v = 'b'; DELETE FROM cs_full"
        ),
    );
    // (Before the TRUNCATE, which is not MVCC-safe: a snapshot taken earlier sees it.)
    let mut cur = snap
        .query(
            "SELECT string_agg(id || ':' || name, ',') FROM cs_items",
            &[],
            soon(),
        )
        .unwrap();
    let rows = cur.next(1, soon()).unwrap().unwrap();
    assert_eq!(
        weir_sqlbuf::Rows::parse(&rows).unwrap().row(0).get(0),
        ValueRef::Text("1:before")
    );
    drop(cur);
    snap.commit(soon()).unwrap();
    exec(&mut *c, "TRUNCATE cs_items, cs_full");

    let (seen, position, _) = read(&mut *s, 9, 100);
    let ops: Vec<(Op, &str)> = seen.iter().map(|x| (x.op, x.table.as_str())).collect();
    use Op::*;
    assert_eq!(
        ops,
        [
            (Insert, "public.cs_items"),
            (Update, "public.cs_items"),
            (Update, "public.cs_items"),
            (Update, "public.cs_items"),
            (Delete, "public.cs_items"),
            (Insert, "public.cs_full"),
            (Update, "public.cs_full"),
            (Delete, "public.cs_full"),
            (Truncate, "public.cs_items,public.cs_full"),
        ][..seen.len().min(9)]
    );
    assert_eq!(seen.len(), 9, "{seen:#?}");
    let t = |s: &str| Some(Value::Text(s.into()));
    // Insert: every value typed as a query reads it.
    assert_eq!(
        seen[0].after,
        Some(vec![Some(Value::Int(2)), t("two"), t("2.25"), t(&big)])
    );
    assert!(seen[0].before.is_none());
    // An update of a DEFAULT-identity table has no before image; the large value the
    // update did not touch is left out (unchanged TOAST).
    assert!(seen[2].before.is_none());
    assert_eq!(
        seen[2].after,
        Some(vec![Some(Value::Int(2)), t("TWO"), t("2.25"), None])
    );
    // A key change carries the old key.
    let (kind, old) = seen[3].before.clone().unwrap();
    assert_eq!(kind, ImageKind::Key);
    assert_eq!(old[0], Some(Value::Int(2)));
    // A delete carries the key.
    assert_eq!(seen[4].before.as_ref().unwrap().1[0], Some(Value::Int(1)));
    // REPLICA IDENTITY FULL: whole before images.
    assert_eq!(
        seen[6].before,
        Some((ImageKind::Full, vec![Some(Value::Int(1)), t("a")]))
    );
    assert_eq!(
        seen[7].before,
        Some((ImageKind::Full, vec![Some(Value::Int(1)), t("b")]))
    );
    // One transaction: one commit position, seq counting up, the end on the last change;
    // the truncate is the next transaction.
    assert!(seen[..8].iter().all(|x| x.commit == seen[0].commit));
    assert_eq!(
        seen.iter().map(|x| x.seq).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5, 6, 7, 0]
    );
    assert!(seen[..7].iter().all(|x| x.end == 0));
    assert!(seen[7].end > seen[7].commit);
    assert!(seen[8].commit > seen[7].end);
    assert!(seen[8].end > seen[8].commit);
    assert!(position >= seen[8].end);

    // Confirming moves the slot; until then it stays.
    let (active, before) = slot_state(&mut *c, "cs_slot");
    assert!(active);
    assert!(before < seen[8].end);
    s.confirm(seen[8].end);
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let _ = s.next(10, Duration::from_millis(200), soon()).unwrap();
        let (_, now) = slot_state(&mut *c, "cs_slot");
        if now >= seen[8].end {
            break;
        }
        assert!(
            Instant::now() < until,
            "the slot never moved to the confirmed position"
        );
    }

    // A second stream on the slot is refused while the first holds it.
    let e = b
        .change_stream(&url, &opts("cs_slot", "cs_pub", &[]), DEADLINE, soon())
        .err()
        .expect("the slot is in use");
    assert!(
        matches!(&e, SqlError::Statement(m) if m.contains("in use")),
        "{e}"
    );
    drop(s);
    // Reopened: nothing confirmed comes again, a new change does.
    let until = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match b.change_stream(&url, &opts("cs_slot", "cs_pub", &[]), DEADLINE, soon()) {
            Ok(s) => break s,
            Err(e) if Instant::now() < until => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("reopen: {e}"),
        }
    };
    assert!(
        s.exported_snapshot().is_none(),
        "an existing slot exports nothing"
    );
    exec(&mut *c, "INSERT INTO cs_full VALUES (7, 'after')");
    let (again, _, _) = read(&mut *s, 1, 100);
    assert_eq!(again.len(), 1, "{again:#?}");
    assert_eq!(again[0].after, Some(vec![Some(Value::Int(7)), t("after")]));
    drop(s);
    std::thread::sleep(Duration::from_millis(500));
    exec(
        &mut *c,
        "SELECT pg_drop_replication_slot('cs_slot'); DROP PUBLICATION cs_pub; DROP TABLE cs_items, cs_full",
    );
}

#[test]
fn postgres_large_transactions_arrive_in_bounded_batches() {
    let Some(url) = pg() else { return };
    let b = SqlxBackend::new().unwrap();
    let mut c = b.connect(&url, DEADLINE, soon()).unwrap();
    exec(
        &mut *c,
        "DROP TABLE IF EXISTS cs_big; \
         SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'cs_big_slot'; \
         DROP PUBLICATION IF EXISTS cs_big_pub; \
         CREATE TABLE cs_big (id int8 PRIMARY KEY, t timestamptz, j jsonb, a int4[], u uuid)",
    );
    let mut s = b
        .change_stream(
            &url,
            &opts("cs_big_slot", "cs_big_pub", &["cs_big"]),
            DEADLINE,
            soon(),
        )
        .unwrap();
    exec(
        &mut *c,
        "INSERT INTO cs_big SELECT g, '2024-02-29 10:00:00+00', '{\"k\": 1}', ARRAY[g::int4, NULL], \
         '00000000-0000-0000-0000-000000000001' FROM generate_series(1, 20000) g",
    );
    let (seen, _, batches) = read(&mut *s, 20_000, 1000);
    assert_eq!(seen.len(), 20_000);
    assert!(batches >= 20, "{batches} batches of at most 1000");
    assert_eq!(
        seen[0].after,
        Some(vec![
            Some(Value::Int(1)),
            Some(Value::Text("2024-02-29T10:00:00Z".into())),
            Some(Value::Text("{\"k\": 1}".into())),
            Some(Value::Text("[1,null]".into())),
            Some(Value::Text("00000000-0000-0000-0000-000000000001".into())),
        ])
    );
    assert!(seen.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert!(seen[19_999].end > 0);
    drop(s);
    std::thread::sleep(Duration::from_millis(500));
    exec(
        &mut *c,
        "SELECT pg_drop_replication_slot('cs_big_slot'); DROP PUBLICATION cs_big_pub; DROP TABLE cs_big",
    );
}

#[test]
fn postgres_streams_refuse_what_cannot_work() {
    let Some(url) = pg() else { return };
    let b = SqlxBackend::new().unwrap();
    // A slot that does not exist, when not asked to create it.
    let mut o = opts("cs_missing_slot", "cs_missing_pub", &[]);
    o.create_slot = false;
    let e = b.change_stream(&url, &o, DEADLINE, soon()).err().unwrap();
    assert!(
        matches!(&e, SqlError::Statement(m) if m.contains("does not exist")),
        "{e}"
    );
    // A table that does not exist, for a new publication.
    let e = b
        .change_stream(
            &url,
            &opts("cs_x", "cs_x_pub", &["public.no_such_table"]),
            DEADLINE,
            soon(),
        )
        .err()
        .unwrap();
    assert!(
        matches!(&e, SqlError::Statement(m) if m.contains("no_such_table")),
        "{e}"
    );
    // A wrong password: denied, and never shown.
    let bad = url.replacen("weir:", "weir:wrong-", 1);
    let e = b
        .change_stream(&bad, &opts("cs_y", "cs_y_pub", &[]), DEADLINE, soon())
        .err()
        .unwrap();
    assert!(matches!(e, SqlError::Denied(_)), "{e}");
    assert!(!e.to_string().contains("wrong-"), "{e}");
    // SQLite has no change log to stream.
    let dir = tempfile::tempdir().unwrap();
    let e = b
        .change_stream(
            &format!("sqlite://{}?mode=rwc", dir.path().join("x.db").display()),
            &opts("s", "p", &[]),
            DEADLINE,
            soon(),
        )
        .err()
        .unwrap();
    assert!(matches!(e, SqlError::Denied(_)), "{e}");
}
