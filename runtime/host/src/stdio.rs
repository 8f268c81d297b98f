//! A plugin's stdout and stderr, line by line into the host's log with the plugin and task
//! named: `print()` in a Python plugin, and the traceback componentize-py prints before an
//! uncaught exception traps, show up where the operator looks.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line kept; a longer one is logged in pieces.
const MAX_LINE: usize = 16 << 10;
/// Lines of the current call's output kept to explain a trap.
const TAIL_LINES: usize = 8;
const TAIL_LINE_CHARS: usize = 500;

#[derive(Clone)]
pub(crate) struct LogStream {
    stream: &'static str,
    pending: Arc<Mutex<Vec<u8>>>,
    tail: Arc<Mutex<std::collections::VecDeque<String>>>,
}

impl LogStream {
    /// The stream's lines are logged inside the span of the call that writes them, which
    /// names the plugin and the task.
    pub(crate) fn new(stream: &'static str) -> LogStream {
        LogStream {
            stream,
            pending: Arc::default(),
            tail: Arc::default(),
        }
    }

    /// Forgets the kept lines (at the start of each call).
    pub(crate) fn clear_tail(&self) {
        self.tail.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The last lines written since [`LogStream::clear_tail`], including an unfinished one.
    pub(crate) fn tail(&self) -> Vec<String> {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<String> = self
            .tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        if !pending.is_empty() {
            out.push(
                String::from_utf8_lossy(&pending)
                    .chars()
                    .take(TAIL_LINE_CHARS)
                    .collect(),
            );
        }
        out
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        // Rust's panic hint names an environment variable the plugin's author cannot set in
        // the host (and wasm backtraces have no symbols anyway): keep it out of the error.
        // A blank line carries nothing as a log event.
        if text.starts_with("note: run with `RUST_BACKTRACE=1`") || text.trim().is_empty() {
            return;
        }
        {
            let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text.chars().take(TAIL_LINE_CHARS).collect());
        }
        let stream = self.stream;
        if stream == "stderr" {
            tracing::warn!(stream, "{text}");
        } else {
            tracing::info!(stream, "{text}");
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.extend_from_slice(bytes);
        while let Some(n) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=n).collect();
            self.emit(&line[..n]);
        }
        while pending.len() > MAX_LINE {
            let piece: Vec<u8> = pending.drain(..MAX_LINE).collect();
            self.emit(&piece);
        }
    }

    fn flush_partial(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.is_empty() {
            let line = std::mem::take(&mut *pending);
            drop(pending);
            self.emit(&line);
        }
    }
}

impl Drop for LogStream {
    fn drop(&mut self) {
        // The last clone going away (the store dropped): log what has no newline yet.
        if Arc::strong_count(&self.pending) == 1 {
            self.flush_partial();
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
