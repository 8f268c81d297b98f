//! The sink's exactly-once promise, driven natively: a crash is the sink dropped without
//! `close` (what the file and sidecar hold then is what a `kill -9` leaves), a restart is a
//! new `open` with the positions the runtime had committed.

use super::*;
use weir_sdk::{BatchBuilder, RecordData};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("weir-file-sink-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn out(&self) -> String {
        self.0.join("out.txt").display().to_string()
    }

    fn content(&self) -> String {
        std::fs::read_to_string(self.out()).unwrap()
    }

    fn sidecar(&self) -> String {
        std::fs::read_to_string(self.0.join(".out.txt.weir-sink")).unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(d: &Dir, committed: &[(&str, i32, i64)]) -> FileSink {
    let config = vec![(FILE.to_string(), d.out())];
    assert!(FileSink::validate(&config).is_empty());
    FileSink::open(config, positions(committed)).unwrap()
}

fn positions(ps: &[(&str, i32, i64)]) -> Vec<LogPosition> {
    ps.iter()
        .map(|&(topic, partition, offset)| LogPosition {
            topic: topic.into(),
            partition,
            offset,
        })
        .collect()
}

/// Records `(topic, partition, offset, value)`.
fn put(s: &mut FileSink, records: &[(&str, i32, i64, Option<&str>)]) -> Result<(), Error> {
    let mut b = BatchBuilder::new();
    for &(topic, partition, offset, value) in records {
        b.push(&RecordData {
            topic,
            partition: Some(partition),
            offset: Some(offset),
            value: value.map(str::as_bytes),
            ..Default::default()
        });
    }
    let bytes = b.finish().unwrap();
    s.put(&Batch::parse(&bytes).unwrap())
}

fn flush(s: &mut FileSink, up_to: &[(&str, i32, i64)]) -> Vec<(String, i32, i64)> {
    s.flush(positions(up_to))
        .unwrap()
        .into_iter()
        .map(|p| (p.topic, p.partition, p.offset))
        .collect()
}

#[test]
fn lines_and_durable_positions() {
    let d = Dir::new("lines");
    let mut s = open(&d, &[]);
    put(
        &mut s,
        &[
            ("t", 0, 0, Some("a")),
            ("t", 0, 1, None),
            ("t", 1, 5, Some("b")),
        ],
    )
    .unwrap();
    // Asked for less than was put, for a partition never seen, and for more than was put.
    assert_eq!(
        flush(&mut s, &[("t", 0, 0), ("u", 0, 3), ("t", 1, 9)]),
        [("t".to_string(), 0, 0), ("t".to_string(), 1, 5)]
    );
    assert_eq!(d.content(), "a\nnull\nb\n");
    assert_eq!(
        d.sidecar(),
        "{\"version\":1,\"length\":9,\"positions\":[{\"topic\":\"t\",\"partition\":0,\"offset\":1},{\"topic\":\"t\",\"partition\":1,\"offset\":5}]}\n"
    );
    s.close();
}

#[test]
fn a_crash_before_flush_drops_what_was_written_since() {
    let d = Dir::new("crash-before-flush");
    let mut s = open(&d, &[]);
    put(&mut s, &[("t", 0, 0, Some("a")), ("t", 0, 1, Some("b"))]).unwrap();
    assert_eq!(flush(&mut s, &[("t", 0, 1)]), [("t".to_string(), 0, 1)]);
    put(&mut s, &[("t", 0, 2, Some("c")), ("t", 0, 3, Some("d"))]).unwrap();
    s.write_out().unwrap();
    drop(s);
    assert_eq!(d.content(), "a\nb\nc\nd\n", "written, not flushed");
    // The runtime committed 1 and delivers 2.. again.
    let mut s = open(&d, &[("t", 0, 1)]);
    assert_eq!(d.content(), "a\nb\n");
    put(&mut s, &[("t", 0, 2, Some("c")), ("t", 0, 3, Some("d"))]).unwrap();
    assert_eq!(flush(&mut s, &[("t", 0, 3)]), [("t".to_string(), 0, 3)]);
    assert_eq!(d.content(), "a\nb\nc\nd\n");
}

#[test]
fn a_crash_after_flush_before_commit_skips_redeliveries() {
    let d = Dir::new("crash-after-flush");
    let mut s = open(&d, &[]);
    put(
        &mut s,
        &[
            ("t", 0, 10, Some("a")),
            ("t", 0, 11, Some("b")),
            ("t", 0, 12, Some("c")),
        ],
    )
    .unwrap();
    flush(&mut s, &[("t", 0, 12)]);
    drop(s);
    // The runtime had committed only 10: 11 and 12 come again, then 13.
    let mut s = open(&d, &[("t", 0, 10)]);
    put(
        &mut s,
        &[
            ("t", 0, 11, Some("b")),
            ("t", 0, 12, Some("c")),
            ("t", 0, 13, Some("d")),
        ],
    )
    .unwrap();
    // Nothing new of the first ones: reported durable as asked.
    assert_eq!(flush(&mut s, &[("t", 0, 12)]), [("t".to_string(), 0, 12)]);
    assert_eq!(flush(&mut s, &[("t", 0, 13)]), [("t".to_string(), 0, 13)]);
    assert_eq!(d.content(), "a\nb\nc\nd\n");
    // A retried put (after a retriable error) writes nothing twice either.
    put(&mut s, &[("t", 0, 13, Some("d")), ("t", 0, 14, Some("e"))]).unwrap();
    flush(&mut s, &[("t", 0, 14)]);
    assert_eq!(d.content(), "a\nb\nc\nd\ne\n");
}

#[test]
fn without_a_sidecar_existing_content_is_kept() {
    let d = Dir::new("existing");
    std::fs::write(d.out(), "kept\n").unwrap();
    let mut s = open(&d, &[("t", 0, 99)]);
    // A crash before the first flush drops only this task's lines.
    put(&mut s, &[("t", 0, 100, Some("x"))]).unwrap();
    s.write_out().unwrap();
    drop(s);
    let mut s = open(&d, &[("t", 0, 99)]);
    assert_eq!(d.content(), "kept\n");
    put(&mut s, &[("t", 0, 100, Some("x"))]).unwrap();
    flush(&mut s, &[("t", 0, 100)]);
    assert_eq!(d.content(), "kept\nx\n");
}

#[test]
fn a_file_cut_by_someone_else_is_appended_to() {
    let d = Dir::new("cut");
    let mut s = open(&d, &[]);
    put(&mut s, &[("t", 0, 0, Some("a")), ("t", 0, 1, Some("b"))]).unwrap();
    flush(&mut s, &[("t", 0, 1)]);
    drop(s);
    std::fs::write(d.out(), "").unwrap();
    let mut s = open(&d, &[("t", 0, 1)]);
    put(&mut s, &[("t", 0, 2, Some("c"))]).unwrap();
    flush(&mut s, &[("t", 0, 2)]);
    drop(s);
    let mut s = open(&d, &[("t", 0, 2)]);
    s.close();
    assert_eq!(d.content(), "c\n");
}

#[test]
fn a_record_without_a_position_is_bad_and_nothing_is_taken() {
    let d = Dir::new("bad");
    let mut s = open(&d, &[]);
    let mut b = BatchBuilder::new();
    b.push(&RecordData {
        topic: "t",
        partition: Some(0),
        offset: Some(0),
        value: Some(b"a"),
        ..Default::default()
    });
    b.push(&RecordData {
        topic: "t",
        value: Some(b"b"),
        ..Default::default()
    });
    let bytes = b.finish().unwrap();
    match s.put(&Batch::parse(&bytes).unwrap()) {
        Err(Error::BadRecord(r)) => assert_eq!(r.index, 1),
        other => panic!("{other:?}"),
    }
    assert!(s.buffer.is_empty() && s.written.is_empty());
}

#[test]
fn config_problems_name_the_key() {
    let bad = |v: &str| FileSink::validate(&vec![(FILE.to_string(), v.to_string())]);
    assert_eq!(bad("")[0].key, "file");
    assert!(
        bad("/data/")
            .first()
            .is_some_and(|e| e.message.contains("directory"))
    );
    assert_eq!(FileSink::validate(&vec![])[0].key, "file");
}
