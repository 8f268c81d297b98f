//! Idempotent producer state of one partition: per producer id, its epoch and the sequence
//! ranges of its last few batches, so a retried batch is recognised and not appended twice.
//!
//! Rebuilt on open from the batch headers of the last two segments (a retry arrives seconds
//! after the original, long before its segment rolls twice).

use std::collections::{HashMap, VecDeque};

use crate::LogError;
use crate::batch::BatchHeader;

/// How many recent batches per producer are remembered (the most a producer may have in
/// flight with idempotence on).
const REMEMBERED: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Default)]
struct Producer {
    epoch: i16,
    recent: VecDeque<Seen>,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not idempotent, or the next batch in sequence: append it.
    Append,
    /// Already in the log at these offsets: answer success without appending.
    Duplicate { base_offset: i64, last_offset: i64 },
}

#[derive(Debug, Default)]
pub(crate) struct ProducerStates {
    producers: HashMap<i64, Producer>,
}

fn last_seq(h: &BatchHeader) -> i32 {
    // Sequences wrap from i32::MAX to 0.
    let last = i64::from(h.base_sequence) + i64::from(h.last_offset_delta);
    (last % (i64::from(i32::MAX) + 1)) as i32
}

fn is_idempotent(h: &BatchHeader) -> bool {
    h.producer_id >= 0 && h.base_sequence >= 0
}

impl ProducerStates {
    /// Checks `h` against what this producer sent before.
    pub fn check(&self, h: &BatchHeader) -> Result<Verdict, LogError> {
        if !is_idempotent(h) {
            return Ok(Verdict::Append);
        }
        let Some(p) = self.producers.get(&h.producer_id) else {
            return Ok(Verdict::Append);
        };
        if h.producer_epoch < p.epoch {
            return Err(LogError::InvalidProducerEpoch(format!(
                "producer {} epoch {} is older than the current epoch {}",
                h.producer_id, h.producer_epoch, p.epoch
            )));
        }
        if h.producer_epoch > p.epoch {
            if h.base_sequence != 0 {
                return Err(LogError::OutOfOrderSequence(format!(
                    "producer {} started epoch {} at sequence {} instead of 0",
                    h.producer_id, h.producer_epoch, h.base_sequence
                )));
            }
            return Ok(Verdict::Append);
        }
        let last = last_seq(h);
        if let Some(s) = p
            .recent
            .iter()
            .find(|s| s.first_seq == h.base_sequence && s.last_seq == last)
        {
            return Ok(Verdict::Duplicate {
                base_offset: s.base_offset,
                last_offset: s.last_offset,
            });
        }
        let expected = p.recent.back().map(|s| {
            if s.last_seq == i32::MAX {
                0
            } else {
                s.last_seq + 1
            }
        });
        match expected {
            Some(e) if e != h.base_sequence => Err(LogError::OutOfOrderSequence(format!(
                "producer {} sent sequence {} but {e} was expected",
                h.producer_id, h.base_sequence
            ))),
            _ => Ok(Verdict::Append),
        }
    }

    /// Records a batch appended at `base_offset`.
    pub fn record(&mut self, h: &BatchHeader, base_offset: i64) {
        if !is_idempotent(h) {
            return;
        }
        let p = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != p.epoch {
            p.epoch = h.producer_epoch;
            p.recent.clear();
        }
        p.recent.push_back(Seen {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            base_offset,
            last_offset: base_offset + i64::from(h.last_offset_delta),
        });
        while p.recent.len() > REMEMBERED {
            p.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, n: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: n - 1,
            first_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: n,
        }
    }

    #[test]
    fn duplicates_gaps_and_epochs() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(&h(7, 0, 0, 3)).unwrap(), Verdict::Append);
        s.record(&h(7, 0, 0, 3), 100);
        assert_eq!(
            s.check(&h(7, 0, 0, 3)).unwrap(),
            Verdict::Duplicate {
                base_offset: 100,
                last_offset: 102
            }
        );
        assert!(matches!(
            s.check(&h(7, 0, 5, 1)),
            Err(LogError::OutOfOrderSequence(_))
        ));
        assert_eq!(s.check(&h(7, 0, 3, 2)).unwrap(), Verdict::Append);
        s.record(&h(7, 0, 3, 2), 103);
        assert!(matches!(
            s.check(&h(7, 1, 4, 1)),
            Err(LogError::OutOfOrderSequence(_))
        ));
        assert_eq!(s.check(&h(7, 1, 0, 1)).unwrap(), Verdict::Append);
        s.record(&h(7, 1, 0, 1), 105);
        assert!(matches!(
            s.check(&h(7, 0, 5, 1)),
            Err(LogError::InvalidProducerEpoch(_))
        ));
        // Not idempotent: always appended.
        assert_eq!(s.check(&h(-1, -1, -1, 1)).unwrap(), Verdict::Append);
        // Wrap-around.
        s.record(&h(9, 0, i32::MAX - 1, 2), 200);
        assert_eq!(s.check(&h(9, 0, 0, 1)).unwrap(), Verdict::Append);
    }
}
