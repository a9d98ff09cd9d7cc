//! WASI streams as async reads and writes on the request's event loop: each waits on the
//! stream's pollable (made once, on the first wait) instead of blocking the guest.

use std::rc::Rc;

use wasip2::io::poll::Pollable;
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

use super::executor::wait;

/// An input stream. Field order matters: the pollable is a child of the stream and drops first.
pub(crate) struct Input {
    ready: Option<Rc<Pollable>>,
    pub(super) stream: InputStream,
}

/// What a failed stream operation says: closed by the other side, or the host's reason.
pub(crate) enum Failure {
    Closed,
    Failed(wasip2::io::error::Error),
}

impl From<StreamError> for Failure {
    fn from(err: StreamError) -> Self {
        match err {
            StreamError::Closed => Failure::Closed,
            StreamError::LastOperationFailed(err) => Failure::Failed(err),
        }
    }
}

impl Failure {
    pub(crate) fn describe(&self) -> String {
        match self {
            Failure::Closed => "the other side closed the stream".to_string(),
            // The host's message, without the backtrace a debug build of the host appends.
            Failure::Failed(err) => err
                .to_debug_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// The stream's pollable, made on the first wait and kept for the next ones.
fn subscribed(
    slot: &mut Option<Rc<Pollable>>,
    subscribe: impl FnOnce() -> Pollable,
) -> Rc<Pollable> {
    slot.get_or_insert_with(|| Rc::new(subscribe())).clone()
}

impl Input {
    pub(crate) fn new(stream: InputStream) -> Self {
        Input {
            ready: None,
            stream,
        }
    }

    fn pollable(&mut self) -> Rc<Pollable> {
        subscribed(&mut self.ready, || self.stream.subscribe())
    }

    /// Up to `max` bytes, waiting until some are there; `Err(Closed)` at the end.
    pub(crate) async fn read(&mut self, max: u64) -> Result<Vec<u8>, StreamError> {
        loop {
            let bytes = self.stream.read(max)?;
            if !bytes.is_empty() {
                return Ok(bytes);
            }
            wait(self.pollable()).await;
        }
    }
}

/// An output stream. Field order matters: the pollable is a child of the stream and drops first.
pub(crate) struct Output {
    ready: Option<Rc<Pollable>>,
    stream: OutputStream,
}

impl Output {
    pub(crate) fn new(stream: OutputStream) -> Self {
        Output {
            ready: None,
            stream,
        }
    }

    fn pollable(&mut self) -> Rc<Pollable> {
        subscribed(&mut self.ready, || self.stream.subscribe())
    }

    /// How much the stream takes now, waiting until that is more than nothing.
    async fn writable(&mut self) -> Result<u64, Failure> {
        loop {
            match self.stream.check_write()? {
                0 => wait(self.pollable()).await,
                room => return Ok(room),
            }
        }
    }

    /// Write all of `bytes`, as fast as the stream takes them.
    pub(crate) async fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), Failure> {
        while !bytes.is_empty() {
            let room = self.writable().await?;
            let take = bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            self.stream.write(&bytes[..take])?;
            bytes = &bytes[take..];
        }
        Ok(())
    }

    /// Send what was written, and wait until it has gone.
    pub(crate) async fn flush(&mut self) -> Result<(), Failure> {
        self.stream.flush()?;
        self.writable().await.map(drop)
    }

    /// Move everything `input` has, to its end, into this stream without passing it through the
    /// guest's memory (`splice`), as a proxy does.
    pub(crate) async fn splice_all(&mut self, input: &mut Input) -> Result<u64, Failure> {
        let mut moved = 0;
        loop {
            let room = self.writable().await?;
            match self.stream.splice(&input.stream, room) {
                Ok(0) => wait(input.pollable()).await,
                Ok(n) => moved += n,
                Err(StreamError::Closed) => return Ok(moved),
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// `bytes` (at most 4 KiB) in one blocking call, which the host takes at once.
    pub(crate) fn write_small(&self, bytes: &[u8]) -> Result<(), Failure> {
        Ok(self.stream.blocking_write_and_flush(bytes)?)
    }

    /// Everything `input` has, to its end, with blocking splices: for a body passed on when
    /// nothing else in the request runs.
    pub(crate) fn blocking_splice_all(&self, input: &Input) -> Result<u64, Failure> {
        let mut moved = 0;
        loop {
            match self.stream.blocking_splice(&input.stream, u64::MAX) {
                Ok(n) => moved += n,
                Err(StreamError::Closed) => {
                    self.stream.blocking_flush()?;
                    return Ok(moved);
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
}
