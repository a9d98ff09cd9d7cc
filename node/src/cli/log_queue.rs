//! Where the process's log lines go: to stderr from a thread of their own, so a request never
//! waits on a slow journald or pipe reader, through a queue bounded in bytes, so a reader that
//! stops cannot make the queue grow without end. Lines that do not fit are dropped and counted,
//! and the count is written as soon as the reader catches up.
//!
//! (tracing-appender's non-blocking writer bounds its queue in lines only: 128k lines of guest
//! output at 16 KiB each is 2 GiB.)
//!
//! The thread writes what has queued up in one write, then lingers a moment before it looks
//! again: under load, lines arrive while it lingers, so it neither wakes nor makes a system call
//! per line (with the access log on, one of each per request cost a third of the node's CPU).
//! A line reaches stderr at most [`LINGER`] after it was logged, as with nginx's buffered logs.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// The most bytes of log lines waiting for stderr.
pub(super) const MAX_QUEUED_BYTES: usize = 32 << 20;
/// How long exiting waits for queued lines to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the writer waits after a write before it takes what has queued since.
const LINGER: Duration = Duration::from_millis(5);
/// The most bytes one write carries.
const BATCH_BYTES: usize = 256 << 10;

enum Message {
    Line(Vec<u8>),
    /// Answered once every line before it is written.
    Flush(mpsc::SyncSender<()>),
}

struct Shared {
    queued_bytes: AtomicUsize,
    dropped: AtomicU64,
}

/// The writer handed to tracing: cheap to clone, never blocks.
#[derive(Clone)]
pub(super) struct LogQueue {
    sender: mpsc::Sender<Message>,
    shared: Arc<Shared>,
    limit: usize,
}

/// Flushes the queue when dropped (at exit).
pub(super) struct FlushOnDrop(LogQueue);

impl LogQueue {
    /// A queue of at most `limit` bytes in front of `out`, written by a thread of its own.
    pub(super) fn start<W: Write + Send + 'static>(
        out: W,
        limit: usize,
    ) -> (LogQueue, FlushOnDrop) {
        let (sender, receiver) = mpsc::channel();
        let shared = Arc::new(Shared {
            queued_bytes: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        });
        let writer_shared = shared.clone();
        std::thread::Builder::new()
            .name("outpost-log".into())
            .spawn(move || write_lines(out, receiver, &writer_shared))
            .expect("spawning the log thread");
        let queue = LogQueue {
            sender,
            shared,
            limit,
        };
        (queue.clone(), FlushOnDrop(queue))
    }

    fn push(&self, line: &[u8]) {
        let queued = self
            .shared
            .queued_bytes
            .fetch_add(line.len(), Ordering::AcqRel);
        if queued + line.len() > self.limit
            || self.sender.send(Message::Line(line.to_vec())).is_err()
        {
            self.shared
                .queued_bytes
                .fetch_sub(line.len(), Ordering::AcqRel);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn write_lines<W: Write>(out: W, receiver: mpsc::Receiver<Message>, shared: &Shared) {
    let mut out = io::BufWriter::with_capacity(BATCH_BYTES, out);
    // Block for the first message of a batch, take whatever else is queued, write it at once.
    while let Ok(first) = receiver.recv() {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Line(line) => {
                    let _ = out.write_all(&line);
                    shared.queued_bytes.fetch_sub(line.len(), Ordering::AcqRel);
                    let dropped = shared.dropped.swap(0, Ordering::Relaxed);
                    if dropped > 0 {
                        let _ = writeln!(
                            out,
                            "outpost: {dropped} log lines dropped: the log reader fell more than {} MiB behind",
                            MAX_QUEUED_BYTES >> 20
                        );
                    }
                }
                Message::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = receiver.try_recv().ok();
        }
        let _ = out.flush();
        std::thread::sleep(LINGER);
    }
    let _ = out.flush();
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        let (done, flushed) = mpsc::sync_channel(1);
        if self.0.sender.send(Message::Flush(done)).is_ok() {
            let _ = flushed.recv_timeout(FLUSH_TIMEOUT);
        }
    }
}

impl Write for LogQueue {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogQueue {
    type Writer = LogQueue;

    fn make_writer(&'a self) -> LogQueue {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A writer that blocks until the gate opens, then collects what it is given.
    #[derive(Clone)]
    struct Gated {
        gate: Arc<Mutex<()>>,
        seen: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.seen.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_reader_bounds_the_queue_in_bytes_and_the_drops_are_reported() {
        let out = Gated {
            gate: Arc::new(Mutex::new(())),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let closed = out.gate.lock().unwrap();
        let (mut queue, flush) = LogQueue::start(out.clone(), 10_000);
        let line = vec![b'x'; 999];
        for _ in 0..100 {
            queue.write_all(&[line.as_slice(), b"\n"].concat()).unwrap();
        }
        assert!(queue.shared.queued_bytes.load(Ordering::Acquire) <= 10_000);
        assert!(queue.shared.dropped.load(Ordering::Relaxed) >= 89);
        drop(closed);
        drop(flush);
        let seen = String::from_utf8(out.seen.lock().unwrap().clone()).unwrap();
        let written = seen.lines().filter(|l| l.starts_with('x')).count();
        assert!((10..=11).contains(&written), "{written}");
        assert!(seen.contains("log lines dropped"), "{seen}");
        assert_eq!(queue.shared.queued_bytes.load(Ordering::Acquire), 0);
    }
}
