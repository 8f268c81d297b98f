//! Group commit: one thread fsyncs on behalf of every waiting produce.
//!
//! Produces that need durability send (partition, offset) here and wait. The thread takes
//! everything queued, fsyncs each partition once up to the highest offset asked, answers all of
//! them, and wakes waiting fetches (in batch mode the high watermark is the fsynced offset).
//! While one round's fsyncs run, the next round's requests pile up, so the fsync rate adapts
//! to the load instead of one fsync per request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;

use tokio::sync::{Notify, oneshot};
use weir_log::Storage;

struct Request {
    topic: String,
    partition: i32,
    up_to: i64,
    done: oneshot::Sender<Result<(), String>>,
}

/// Handle to the fsync thread.
#[derive(Debug)]
pub(crate) struct Syncer {
    tx: mpsc::Sender<Request>,
}

impl Syncer {
    pub fn start(storage: Arc<dyn Storage>, woken: Arc<Notify>) -> std::io::Result<Syncer> {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("weir-fsync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let mut targets: HashMap<(String, i32), i64> = HashMap::new();
                    for r in &batch {
                        let e = targets
                            .entry((r.topic.clone(), r.partition))
                            .or_insert(r.up_to);
                        *e = (*e).max(r.up_to);
                    }
                    let mut failed: HashMap<(String, i32), String> = HashMap::new();
                    let started = std::time::Instant::now();
                    let partitions = targets.len();
                    for ((topic, partition), up_to) in targets {
                        if let Err(e) = storage.sync_to(&topic, partition, up_to) {
                            tracing::error!(topic = %topic, partition, error = %e, "fsync failed");
                            failed.insert((topic, partition), e.to_string());
                        }
                    }
                    // One line per round at debug level: how many produces one fsync round
                    // served and how long it took (RUST_LOG=weir_broker::sync=debug).
                    tracing::debug!(
                        requests = batch.len(),
                        partitions,
                        fsync_us = started.elapsed().as_micros() as u64,
                        "group commit round"
                    );
                    woken.notify_waiters();
                    for r in batch {
                        let result = match failed.get(&(r.topic, r.partition)) {
                            Some(e) => Err(e.clone()),
                            None => Ok(()),
                        };
                        let _ = r.done.send(result);
                    }
                }
            })?;
        Ok(Syncer { tx })
    }

    /// Asks for everything before `up_to` to be made durable; the receiver resolves when it is.
    pub fn request(
        &self,
        topic: &str,
        partition: i32,
        up_to: i64,
    ) -> oneshot::Receiver<Result<(), String>> {
        let (done, rx) = oneshot::channel();
        let req = Request {
            topic: topic.to_string(),
            partition,
            up_to,
            done,
        };
        if let Err(mpsc::SendError(req)) = self.tx.send(req) {
            let _ = req.done.send(Err("the fsync thread has stopped".into()));
        }
        rx
    }
}
