//! Binary framing for KV messages on a stream: a 4-byte big-endian length, then the message
//! encoded by `outpost_kv::protocol` (values travel as raw bytes).

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use outpost_kv::protocol::{MAX_MESSAGE_BYTES, decode, encode};

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
    Ok(())
}

/// The next message, or `None` when the stream ended cleanly between messages.
pub async fn read<R: AsyncRead + Unpin, T: DeserializeOwned>(
    reader: &mut R,
) -> anyhow::Result<Option<T>> {
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
    let mut body = vec![0u8; len];
    reader
        .read_exact(&mut body)
        .await
        .context("stream ended inside a KV message")?;
    Ok(Some(decode(&body).context("malformed KV message")?))
}

/// Where a stream's outgoing messages wait: an unbounded channel (fed by the KV driver, whose
/// own input is bounded by the streams it reads) or a bounded one (the origin's side of a
/// node's session, so a node that stops reading holds the origin to a fixed number).
pub trait Outbox<T>: Send {
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
/// to `send`; messages read from `recv` are handed to `deliver` (which returns false to stop).
pub async fn pump<S, R, In, Out>(
    mut send: S,
    mut recv: R,
    mut outbox: impl Outbox<Out>,
    mut deliver: impl FnMut(In) -> bool,
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
        while let Some(message) = read::<_, In>(&mut recv).await? {
            if !deliver(message) {
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
