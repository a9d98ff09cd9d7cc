//! Guest stdout and stderr as log lines on the node, tagged with the app and the request id.
//!
//! Output is split into lines; a line that starts with `[debug]`, `[info]`, `[warn]` or
//! `[error]` (what `outpost_sdk::log` writes) is logged at that level, otherwise stdout is info
//! and stderr warn. A guest cannot flood the node: lines are cut at [`MAX_LINE`] bytes, a
//! request's output at [`MAX_PER_REQUEST`] bytes, and every line is paid for from the app's
//! [`LogBudget`] (lines beyond it are dropped and counted).
//!
//! Under `outpost dev` a request's stderr is also kept in a [`StderrCapture`], so a failure
//! page can show what the handler said before it failed (an engine's uncaught-exception report,
//! a panic message).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::log_budget::{Admission, LogBudget};
use crate::request_id::RequestId;

pub(crate) const MAX_LINE: usize = 16 * 1024;
pub(crate) const MAX_PER_REQUEST: usize = 1024 * 1024;
/// How much of a request's stderr a [`StderrCapture`] keeps: the last this many bytes.
pub(crate) const CAPTURE_BYTES: usize = 8 * 1024;

/// The last `CAPTURE_BYTES` a request wrote to stderr; clones share it.
#[derive(Clone, Default)]
pub struct StderrCapture(Arc<Mutex<Vec<u8>>>);

impl StderrCapture {
    fn push(&self, bytes: &[u8]) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.extend_from_slice(bytes);
        if kept.len() > CAPTURE_BYTES {
            let excess = kept.len() - CAPTURE_BYTES;
            kept.drain(..excess);
        }
    }

    /// What was captured, as text (lossy), trimmed.
    pub fn text(&self) -> String {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&kept).trim().to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// One guest output stream; clones share the line buffer.
#[derive(Clone)]
pub(crate) struct GuestLog {
    state: Arc<Mutex<LineBuffer>>,
}

struct LineBuffer {
    app: Arc<str>,
    budget: Option<LogBudget>,
    request_id: RequestId,
    stream: Stream,
    pending: Vec<u8>,
    total: usize,
    cut_off: bool,
    capture: Option<StderrCapture>,
}

impl GuestLog {
    /// The app's `stream`, its lines paid for from `budget`, and copied into `capture` if given.
    pub(crate) fn new(
        app: Arc<str>,
        budget: LogBudget,
        request_id: RequestId,
        stream: Stream,
        capture: Option<StderrCapture>,
    ) -> Self {
        GuestLog {
            state: Arc::new(Mutex::new(LineBuffer {
                app,
                budget: Some(budget),
                request_id,
                stream,
                pending: Vec::new(),
                total: 0,
                cut_off: false,
                capture,
            })),
        }
    }

    fn push(&self, bytes: &[u8]) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(bytes);
    }

    /// The stream moves on to another request of a reused instance: what the last one left
    /// unfinished is logged under its id, the next lines under `request_id`, and the
    /// per-request cap starts again.
    pub(crate) fn set_request(&self, request_id: RequestId, capture: Option<StderrCapture>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.emit_pending();
        state.request_id = request_id;
        state.capture = capture;
        state.total = 0;
        state.cut_off = false;
    }
}

impl LineBuffer {
    fn push(&mut self, mut bytes: &[u8]) {
        if self.cut_off {
            return;
        }
        if self.total + bytes.len() > MAX_PER_REQUEST {
            bytes = &bytes[..MAX_PER_REQUEST - self.total];
            self.cut_off = true;
        }
        self.total += bytes.len();
        if let Some(capture) = &self.capture {
            capture.push(bytes);
        }
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            if self.pending.len() < MAX_LINE {
                let room = MAX_LINE - self.pending.len();
                self.pending
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            if chunk.ends_with(b"\n") {
                self.emit_pending();
            }
        }
        if self.cut_off {
            self.emit_pending();
            tracing::warn!(
                target: "guest",
                app = %self.app,
                request_id = %self.request_id,
                stream = self.stream.name(),
                "guest output beyond {MAX_PER_REQUEST} bytes for this request was dropped"
            );
        }
    }

    fn emit_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.pending);
        let line = line.trim_end_matches(['\n', '\r']);
        let admission = match &self.budget {
            Some(budget) => budget.admit(line.len()),
            None => Admission::Write,
        };
        if let Admission::Drop { report } = admission {
            if let Some(dropped) = report {
                tracing::warn!(
                    app = %self.app,
                    dropped,
                    "guest log lines dropped: the app writes more than the node's log budget \
                     for one app ([log] guest_lines_per_second, guest_kb_per_second)"
                );
            }
            self.pending.clear();
            return;
        }
        let default = match self.stream {
            Stream::Stdout => Level::Info,
            Stream::Stderr => Level::Warn,
        };
        let (level, message) = split_level(line, default);
        let (app, id, stream) = (&*self.app, self.request_id, self.stream.name());
        match level {
            Level::Debug => {
                tracing::debug!(target: "guest", app, request_id = %id, stream, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "guest", app, request_id = %id, stream, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "guest", app, request_id = %id, stream, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "guest", app, request_id = %id, stream, "{message}")
            }
        }
        self.pending.clear();
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        // A last line without a newline is still a line.
        self.emit_pending();
    }
}

fn split_level(line: &str, default: Level) -> (Level, &str) {
    for (prefix, level) in [
        ("[debug]", Level::Debug),
        ("[info]", Level::Info),
        ("[warn]", Level::Warn),
        ("[error]", Level::Error),
    ] {
        if let Some(rest) = line.strip_prefix(prefix) {
            return (level, rest.strip_prefix(' ').unwrap_or(rest));
        }
    }
    (default, line)
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer() -> LineBuffer {
        LineBuffer {
            app: "t".into(),
            budget: None,
            request_id: RequestId::next(),
            stream: Stream::Stdout,
            pending: Vec::new(),
            total: 0,
            cut_off: false,
            capture: None,
        }
    }

    #[test]
    fn a_capture_keeps_the_last_bytes_written() {
        let capture = StderrCapture::default();
        let mut b = buffer();
        b.capture = Some(capture.clone());
        b.push(b"first line\n");
        assert_eq!(capture.text(), "first line");
        b.push(&vec![b'z'; CAPTURE_BYTES]);
        b.push(b"\nError: the end\n");
        let text = capture.text();
        assert!(text.ends_with("Error: the end"), "{text}");
        assert!(!text.contains("first line"));
        assert!(text.len() <= CAPTURE_BYTES);
    }

    #[test]
    fn level_prefixes() {
        assert_eq!(
            split_level("[error] boom", Level::Info),
            (Level::Error, "boom")
        );
        assert_eq!(split_level("[debug]x", Level::Info), (Level::Debug, "x"));
        assert_eq!(split_level("plain", Level::Warn), (Level::Warn, "plain"));
    }

    #[test]
    fn splits_lines_and_keeps_partial_ones() {
        let mut b = buffer();
        b.push(b"one\ntw");
        assert_eq!(b.pending, b"tw");
        b.push(b"o\nthree");
        assert_eq!(b.pending, b"three");
    }

    #[test]
    fn long_lines_and_floods_are_capped() {
        let mut b = buffer();
        b.push(&vec![b'x'; MAX_LINE * 2]);
        assert_eq!(b.pending.len(), MAX_LINE);
        let mut b = buffer();
        for _ in 0..(MAX_PER_REQUEST / 1000 + 10) {
            b.push(&[b'y'; 1000]);
        }
        assert!(b.cut_off);
        assert_eq!(b.total, MAX_PER_REQUEST);
    }
}
