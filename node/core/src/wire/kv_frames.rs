//! Binary framing for KV messages on a stream: a 4-byte big-endian length, then the message
//! encoded by `outpost_kv::protocol` (values travel as raw bytes).

use std::sync::Arc;

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use outpost_kv::protocol::{MAX_MESSAGE_BYTES, decode, encode};

/// Write one KV message: its length as 4 big-endian bytes, then its encoding. A message over
/// `MAX_MESSAGE_BYTES` is an error and nothing is written.
pub async fn write<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    message: &T,
) -> anyhow::Result<()> {
    let body = encode(message);
    if body.len() > MAX_MESSAGE_BYTES {
        bail!("KV message of {} bytes is over the limit", body.len());
    }
    writer.write_all(&(body.len() as u32).to_be_bytes()).await?;
    writer.write_all(&body).await?;
    count_bytes("sent", body.len());
    Ok(())
}

/// Count a message of `len` bytes (and its length prefix) in `outpost_kv_link_bytes_total`.
fn count_bytes(direction: &str, len: usize) {
    crate::metrics::metrics()
        .kv_link_bytes
        .with_label_values(&[direction])
        .inc_by(len as u64 + 4);
}

/// The next message's length, or `None` when the stream ended cleanly between messages.
async fn read_len<R: AsyncRead + Unpin>(reader: &mut R) -> anyhow::Result<Option<usize>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE_BYTES {
        bail!("KV message of {len} bytes is over the limit");
    }
    Ok(Some(len))
}

async fn read_body<R: AsyncRead + Unpin, T: DeserializeOwned>(
    reader: &mut R,
    len: usize,
) -> anyhow::Result<T> {
    // Memory grows with the bytes that arrive, not with what the length claims.
    let mut body = Vec::new();
    (&mut *reader)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if body.len() != len {
        bail!("stream ended inside a KV message");
    }
    count_bytes("received", len);
    decode(&body).context("malformed KV message")
}

/// How many bytes of one link's messages may wait for the KV driver at once (a message of any
/// size fits alone). Past it the link's reader waits and QUIC's flow control slows the sender,
/// so a peer that sends faster than the driver applies cannot fill this node's memory.
pub const LINK_BACKLOG_BYTES: usize = MAX_MESSAGE_BYTES;
const BACKLOG_UNIT: usize = 1024;

/// One link's room for messages read but not yet handled by the driver.
#[derive(Clone)]
pub struct Backlog(Arc<Semaphore>);

impl Default for Backlog {
    fn default() -> Backlog {
        Backlog(Arc::new(Semaphore::new(LINK_BACKLOG_BYTES / BACKLOG_UNIT)))
    }
}

impl Backlog {
    async fn claim(&self, bytes: usize) -> Queued {
        let units = (bytes / BACKLOG_UNIT).clamp(1, LINK_BACKLOG_BYTES / BACKLOG_UNIT);
        // The semaphore is never closed: acquiring only waits.
        Queued {
            _claim: self.0.clone().acquire_many_owned(units as u32).await.ok(),
        }
    }
}

/// A message's claim on its link's [`Backlog`], given back when dropped (once handled).
pub struct Queued {
    /// Held only to be dropped.
    _claim: Option<OwnedSemaphorePermit>,
}

impl Queued {
    /// A message that counts against no backlog (the embedded authority's, already bounded).
    pub fn untracked() -> Queued {
        Queued { _claim: None }
    }
}

/// Where a stream's outgoing messages wait: an unbounded channel (fed by the KV driver, whose
/// own input is bounded by the streams it reads) or a bounded one (the origin's side of a
/// node's session, so a node that stops reading holds the origin to a fixed number).
pub trait Outbox<T>: Send {
    /// The next message to send, or `None` once every sender is gone.
    fn next(&mut self) -> impl std::future::Future<Output = Option<T>> + Send;
}

impl<T: Send> Outbox<T> for tokio::sync::mpsc::UnboundedReceiver<T> {
    fn next(&mut self) -> impl std::future::Future<Output = Option<T>> + Send {
        self.recv()
    }
}

impl<T: Send> Outbox<T> for tokio::sync::mpsc::Receiver<T> {
    fn next(&mut self) -> impl std::future::Future<Output = Option<T>> + Send {
        self.recv()
    }
}

/// Run a KV stream in both directions until either ends: messages from `outbox` are written
/// to `send`; messages read from `recv` are handed to `deliver` (which returns false to stop),
/// each with its claim on `backlog` when there is one (the reader waits for room first).
pub async fn pump<S, R, In, Out>(
    mut send: S,
    mut recv: R,
    mut outbox: impl Outbox<Out>,
    backlog: Option<Backlog>,
    mut deliver: impl FnMut(In, Queued) -> bool,
) -> anyhow::Result<()>
where
    S: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
    In: DeserializeOwned,
    Out: Serialize,
{
    let writing = async {
        while let Some(message) = outbox.next().await {
            write(&mut send, &message).await?;
        }
        anyhow::Ok(())
    };
    let reading = async {
        while let Some(len) = read_len(&mut recv).await? {
            let queued = match &backlog {
                Some(backlog) => backlog.claim(len).await,
                None => Queued::untracked(),
            };
            let message = read_body::<_, In>(&mut recv, len).await?;
            if !deliver(message, queued) {
                break;
            }
        }
        anyhow::Ok(())
    };
    tokio::select! {
        result = writing => result,
        result = reading => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_link_reads_no_further_than_its_backlog() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let (server_read, server_write) = tokio::io::split(server);
        // Messages of about 1 MiB each, more than the backlog holds.
        let message = vec![7u8; 1 << 20];
        let count = LINK_BACKLOG_BYTES / message.len() + 8;
        let sender = tokio::spawn(async move {
            for _ in 0..count {
                if write(&mut client, &message).await.is_err() {
                    break;
                }
            }
            client
        });
        let (_outbox_tx, outbox) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let (held_tx, mut held) = tokio::sync::mpsc::unbounded_channel();
        let pumping = tokio::spawn(pump(
            server_write,
            server_read,
            outbox,
            Some(Backlog::default()),
            move |message: Vec<u8>, queued| held_tx.send((message, queued)).is_ok(),
        ));
        // Nobody handles what was read: the reader stops at the backlog.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let waiting = held.len();
        assert!(
            waiting > 0 && waiting <= LINK_BACKLOG_BYTES / (1 << 20),
            "{waiting} messages read"
        );
        // Handling them (dropping their claims) lets the rest through.
        let mut handled = 0;
        while handled < count {
            let (message, queued) = held.recv().await.unwrap();
            assert_eq!(message.len(), 1 << 20);
            drop(queued);
            handled += 1;
        }
        sender.await.unwrap();
        pumping.abort();
    }
}
