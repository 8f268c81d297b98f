//! Round trips of arbitrary batches, every validation rule, and a decoder that never panics on
//! arbitrary or mutated bytes.

use proptest::prelude::*;
use weir_batch::{Batch, BatchBuilder, RecordData, select};

/// An owned record, to generate and compare.
#[derive(Debug, Clone, PartialEq)]
struct Rec {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    topic: String,
    partition: Option<i32>,
    offset: Option<i64>,
    source_partition: Option<Vec<u8>>,
    source_offset: Option<Vec<u8>>,
}

fn build(recs: &[Rec]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for r in recs {
        let headers: Vec<(&str, Option<&[u8]>)> = r
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_deref()))
            .collect();
        b.push(&RecordData {
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: &headers,
            topic: &r.topic,
            partition: r.partition,
            offset: r.offset,
            source_partition: r.source_partition.as_deref(),
            source_offset: r.source_offset.as_deref(),
        });
    }
    b.finish().unwrap()
}

fn read(batch: &Batch<'_>) -> Vec<Rec> {
    batch
        .iter()
        .map(|r| Rec {
            timestamp: r.timestamp(),
            key: r.key().map(<[u8]>::to_vec),
            value: r.value().map(<[u8]>::to_vec),
            headers: r
                .headers()
                .map(|h| (h.name.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect(),
            topic: r.topic().to_string(),
            partition: r.partition(),
            offset: r.offset(),
            source_partition: r.source_partition().map(<[u8]>::to_vec),
            source_offset: r.source_offset().map(<[u8]>::to_vec),
        })
        .collect()
}

fn bytes() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24))
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        any::<i64>(),
        bytes(),
        bytes(),
        proptest::collection::vec(("[a-zé-]{0,6}", bytes()), 0..4),
        "[a-z.ü]{0,8}",
        proptest::option::of(0i32..100),
        proptest::option::of(0i64..1_000_000),
        bytes(),
        bytes(),
    )
        .prop_map(
            |(timestamp, key, value, headers, topic, partition, offset, sp, so)| Rec {
                timestamp,
                key,
                value,
                headers,
                topic,
                partition,
                offset,
                source_partition: sp,
                source_offset: so,
            },
        )
}

proptest! {
    #[test]
    fn any_batch_round_trips(recs in proptest::collection::vec(rec(), 0..20)) {
        let buf = build(&recs);
        let batch = Batch::parse(&buf).unwrap();
        prop_assert_eq!(read(&batch), recs.clone());
        // Copying every record by reference gives the same records.
        let mut copy = BatchBuilder::new();
        for r in batch.iter() {
            copy.push_ref(&r);
        }
        let copy = copy.finish().unwrap();
        prop_assert_eq!(read(&Batch::parse(&copy).unwrap()), recs);
    }

    #[test]
    fn select_keeps_the_chosen_records_in_order(
        recs in proptest::collection::vec(rec(), 1..12),
        picks in proptest::collection::vec(0usize..100, 0..12),
    ) {
        let buf = build(&recs);
        let batch = Batch::parse(&buf).unwrap();
        let idx: Vec<u32> = picks.iter().map(|p| (p % recs.len()) as u32).collect();
        let out = select(&batch, &idx).unwrap();
        let want: Vec<Rec> = idx.iter().map(|&i| recs[i as usize].clone()).collect();
        prop_assert_eq!(read(&Batch::parse(&out).unwrap()), want);
    }

    /// The decoder is total: arbitrary bytes are refused or read, never a panic, never an
    /// out-of-bounds read (the accessors of whatever parses are exercised too).
    #[test]
    fn arbitrary_bytes_never_panic(mut buf in proptest::collection::vec(any::<u8>(), 0..400), magic in any::<bool>()) {
        if magic && buf.len() >= 8 {
            buf[..4].copy_from_slice(b"WRB1");
            buf[4..6].copy_from_slice(&1u16.to_le_bytes());
        }
        if let Ok(b) = Batch::parse(&buf) {
            let _ = read(&b);
        }
    }

    /// Every byte of a valid batch flipped, one at a time: refused or read, never a panic;
    /// read without per-record validation (`parse_trusted`), never outside the buffer either.
    #[test]
    fn mutated_batches_never_panic(recs in proptest::collection::vec(rec(), 1..5), at in any::<prop::sample::Index>(), bits in 1u8..=255) {
        let mut buf = build(&recs);
        let i = at.index(buf.len());
        buf[i] ^= bits;
        if let Ok(b) = Batch::parse(&buf) {
            let _ = read(&b);
        }
        if let Ok(b) = Batch::parse_trusted(&buf) {
            let _ = read(&b);
        }
    }
}

fn sample() -> Vec<u8> {
    build(&[Rec {
        timestamp: 5,
        key: Some(b"k".to_vec()),
        value: Some(b"value".to_vec()),
        headers: vec![("h".into(), Some(b"v".to_vec()))],
        topic: "t".into(),
        partition: Some(1),
        offset: Some(9),
        source_partition: None,
        source_offset: None,
    }])
}

/// A change that breaks one rule of a valid batch.
type Damage = Box<dyn Fn(&mut Vec<u8>)>;

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn each_rule_is_refused_with_the_field_named() {
    let good = sample();
    assert!(Batch::parse(&good).is_ok());
    let rec = 40; // the record entry
    let hdr = 40 + 72; // the header entry
    let cases: Vec<(&str, Damage)> = vec![
        (
            "shorter than its 40-byte header",
            Box::new(|b| b.truncate(30)),
        ),
        ("not a Weir batch", Box::new(|b| b[0] = b'X')),
        ("version 2", Box::new(|b| b[4] = 2)),
        ("flags", Box::new(|b| put_u32(b, 20, 1))),
        ("record_stride is 70", Box::new(|b| b[12] = 70)),
        ("data_len", Box::new(|b| b.push(0))),
        ("data_len", Box::new(|b| b.truncate(b.len() - 1))),
        ("headers_offset", Box::new(|b| put_u32(b, 8, 2))),
        (
            "record 0: value (offset 1, length 4294967294) ends past",
            Box::new(move |b| {
                put_u32(b, rec + 16, 1);
                put_u32(b, rec + 20, u32::MAX - 1);
            }),
        ),
        (
            "record 0: key is null but its offset is 3",
            Box::new(move |b| {
                put_u32(b, rec + 8, 3);
                put_u32(b, rec + 12, u32::MAX);
            }),
        ),
        (
            "record 0: topic is null",
            Box::new(move |b| {
                put_u32(b, rec + 32, 0);
                put_u32(b, rec + 36, u32::MAX);
            }),
        ),
        (
            "record 0: headers 0..2 go past the 1 header entries",
            Box::new(move |b| put_u32(b, rec + 28, 2)),
        ),
        (
            "record 0: reserved field",
            Box::new(move |b| put_u32(b, rec + 44, 7)),
        ),
        (
            "header entry 0: name (offset",
            Box::new(move |b| put_u32(b, hdr, 1000)),
        ),
        (
            "header entry 0: name is not UTF-8",
            Box::new(move |b| {
                // The header name "h" sits after key and value in the arena.
                let data = b.len() - 9;
                let at = data + u32::from_le_bytes(b[hdr..hdr + 4].try_into().unwrap()) as usize;
                b[at] = 0xff;
            }),
        ),
    ];
    for (want, damage) in cases {
        let mut b = good.clone();
        damage(&mut b);
        let err = Batch::parse(&b).unwrap_err().to_string();
        assert!(err.contains(want), "wanted {want:?}, got {err:?}");
    }
}

#[test]
fn an_empty_batch_is_its_header() {
    let b = BatchBuilder::new().finish().unwrap();
    assert_eq!(b.len(), 40);
    assert!(Batch::parse(&b).unwrap().is_empty());
    assert!(
        select(&Batch::parse(&sample()).unwrap(), &[3])
            .unwrap_err()
            .to_string()
            .contains("select names record 3, but the batch has 1")
    );
}

#[test]
fn consecutive_records_of_one_topic_share_its_bytes() {
    let mut b = BatchBuilder::new();
    for _ in 0..100 {
        b.push(&RecordData {
            topic: "orders",
            ..Default::default()
        });
    }
    let buf = b.finish().unwrap();
    assert_eq!(buf.len(), 40 + 100 * 72 + 6);
    assert!(
        Batch::parse(&buf)
            .unwrap()
            .iter()
            .all(|r| r.topic() == "orders")
    );
}
