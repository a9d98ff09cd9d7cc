//! The cluster link's framing and messages.
//!
//! Each QUIC stream is opened by a node and starts with one [`Open`] frame saying what it is
//! for. A frame is a 4-byte big-endian length and that many bytes of JSON. Blob contents follow
//! their [`BlobReply`] frame as raw bytes.
//!
//! Streams:
//! * `subscribe`: the origin sends a [`DesiredState`] now and on every change; the node sends a
//!   [`NodeReport`] after applying each, and every few seconds as a heartbeat.
//! * `blob`: the origin answers with a [`BlobReply`] and the component's bytes, then closes.
//! * `kv`: the node's KV session with the origin's authority (postcard frames from
//!   `outpost_kv::protocol`, see [`kv_frames`]), open for the life of the connection.
//! * `peer`: opened between two nodes; each serves the other's pulls of recent KV entries when
//!   one of them cannot reach the origin.
//! * `logs`: the origin sends a [`TailSet`] now and whenever the set of tailed apps changes; the
//!   node sends [`LogBatch`]es of their requests.
//! * `tick`: a node claims one tick of an app's cron trigger; the origin answers with a
//!   [`TickReply`] (fire it, or not), then closes.

mod fleet;
pub mod kv_frames;
mod tail;

pub use fleet::{
    AppSecrets, AppStatus, DesiredState, NodeReport, Release, SecretValue, VersionShare,
    is_sha256_hex,
};
pub use tail::{LogBatch, RequestRecord, TailSet};

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Control frames stay small; blobs travel outside frames.
pub const MAX_FRAME: u32 = 16 << 20;

/// The first frame of every stream a node opens, saying what the stream is for (see the module
/// docs for each kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "open", rename_all = "snake_case")]
pub enum Open {
    /// Receive desired states from the origin and send reports back.
    Subscribe {
        /// The node's name, which must match its cluster certificate.
        node: String,
    },
    /// Fetch one component from the origin.
    Blob {
        /// The component's sha256, in lowercase hex.
        sha256: String,
    },
    /// The node's KV session with the origin's authority.
    Kv {
        /// The node's name, which must match its cluster certificate.
        node: String,
    },
    /// A link between two nodes, for pulls of recent KV entries.
    Peer {
        /// The opening node's name, which must match its cluster certificate.
        node: String,
    },
    /// Request records of the tailed apps, sent to the origin.
    Logs {
        /// The node's name, which must match its cluster certificate.
        node: String,
    },
    /// A relay passes on the reports of the nodes that follow it, as [`RelayedReport`]s.
    Reports {
        /// The relay's name, which must match its cluster certificate.
        relay: String,
    },
    /// Claim one tick of a cron trigger: the node that wins it fires it.
    Tick {
        /// The node's name, which must match its cluster certificate.
        node: String,
        /// The app whose trigger it is.
        app: String,
        /// The trigger's key (`outpost_core::cron::Trigger::key`).
        trigger: String,
        /// The tick: its scheduled time, in seconds since the Unix epoch.
        tick: u64,
    },
}

/// On a relay's `reports` stream: a follower's newest report, or `None` once it is no longer
/// linked to the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayedReport {
    /// The follower's name, as its certificate proved to the relay.
    pub node: String,
    /// Its report, or `None` when its link to the relay ended.
    pub report: Option<NodeReport>,
}

/// The origin's answer on a `tick` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum TickReply {
    /// This node fires the tick. `previous` is the trigger's tick fired before it, if any:
    /// the ticks in between were missed (no node could claim them).
    Fire {
        /// The trigger's previous fired tick.
        previous: Option<u64>,
    },
    /// Another node has this tick, or a later one, already.
    Taken,
    /// The claim is refused: the fleet runs no such trigger, or the tick is ahead of the
    /// origin's clock.
    Refused {
        /// Why, for the node's log.
        message: String,
    },
}

/// The origin's answer on a `blob` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum BlobReply {
    /// The origin has the component; its bytes follow this frame.
    Found {
        /// The component's length in bytes.
        size: u64,
    },
    /// The origin has no such component; the stream ends.
    Missing {
        /// Why, for the node's log.
        message: String,
    },
}

/// Write `message` as one frame: its length as 4 big-endian bytes, then its JSON. A message over
/// [`MAX_FRAME`] bytes is an error and nothing is written.
pub async fn write_frame<W, T>(writer: &mut W, message: &T) -> anyhow::Result<()>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = serde_json::to_vec(message)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|len| *len <= MAX_FRAME)
        .context("frame too large")?;
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(&body).await?;
    Ok(())
}

/// The next frame, or `None` if the stream ended cleanly between frames.
pub async fn read_frame<R, T>(reader: &mut R) -> anyhow::Result<Option<T>>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err.into()),
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME {
        bail!("frame of {len} bytes is over the {MAX_FRAME}-byte limit");
    }
    // Memory grows with the bytes that arrive, not with what the length claims.
    let mut body = Vec::new();
    (&mut *reader)
        .take(u64::from(len))
        .read_to_end(&mut body)
        .await?;
    if body.len() != len as usize {
        bail!("stream ended inside a frame");
    }
    Ok(Some(
        serde_json::from_slice(&body).context("malformed frame")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_end_cleanly() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(
            &mut a,
            &Open::Blob {
                sha256: "ab".into(),
            },
        )
        .await
        .unwrap();
        write_frame(&mut a, &BlobReply::Found { size: 3 })
            .await
            .unwrap();
        drop(a);
        assert_eq!(
            read_frame::<_, Open>(&mut b).await.unwrap(),
            Some(Open::Blob {
                sha256: "ab".into()
            })
        );
        assert_eq!(
            read_frame::<_, BlobReply>(&mut b).await.unwrap(),
            Some(BlobReply::Found { size: 3 })
        );
        assert_eq!(read_frame::<_, Open>(&mut b).await.unwrap(), None);
    }

    #[tokio::test]
    async fn oversized_truncated_and_garbage_frames_are_errors() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&(MAX_FRAME + 1).to_be_bytes()).await.unwrap();
        assert!(read_frame::<_, Open>(&mut b).await.is_err());

        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&10u32.to_be_bytes()).await.unwrap();
        a.write_all(b"{\"op").await.unwrap();
        drop(a);
        assert!(read_frame::<_, Open>(&mut b).await.is_err());

        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&5u32.to_be_bytes()).await.unwrap();
        a.write_all(b"hello").await.unwrap();
        assert!(read_frame::<_, Open>(&mut b).await.is_err());
    }
}
