//! The KV authority embedded in a node that belongs to no fleet (and in `outpost dev`): the
//! origin's authority and session in this process, followed by the node's own driver as a
//! node follows the origin's over the cluster link. Wiring only: it is the one place that
//! names both the edge's KV driver and the origin's half.

use std::sync::Arc;

use tokio::sync::mpsc;

use outpost_core::wire::kv_frames::Queued;
use outpost_edge::kv::{LinkEvent, NodeKv};
use outpost_origin::kv::{
    AuthorityClosed, KvAuthority, LinkProtocol, SESSION_INBOX, SESSION_OUTBOX, serve_session,
};

/// Connect `kv` to `authority` in this process. The answer tells when the authority has closed
/// its store, once the driver has stopped (see [`NodeKv::stop`]).
pub fn embed(kv: &NodeKv, authority: KvAuthority, name: &str) -> AuthorityClosed {
    let closed = authority.closed();
    let (to_origin, mut from_driver) = mpsc::unbounded_channel();
    let (to_session, from_node) = mpsc::channel(SESSION_INBOX);
    let (to_node, mut from_origin) = mpsc::channel(SESSION_OUTBOX);
    if kv.links.send(LinkEvent::OriginUp(to_origin)).is_err() {
        return closed;
    }
    // The driver sends without waiting; the session takes its messages at its own pace.
    tokio::spawn(async move {
        while let Some(message) = from_driver.recv().await {
            if to_session.send(message).await.is_err() {
                break;
            }
        }
    });
    // One process, its own apps: the host already keeps each to its namespaces.
    tokio::spawn(serve_session(
        name.to_string(),
        authority,
        Arc::new(|_| Ok(())),
        LinkProtocol::V2,
        from_node,
        to_node,
    ));
    let links = kv.links.clone();
    tokio::spawn(async move {
        // The session's outbox is bounded already: these count against no link's backlog.
        while let Some(message) = from_origin.recv().await {
            if links
                .send(LinkEvent::FromOrigin(message, Queued::untracked()))
                .is_err()
            {
                break;
            }
        }
    });
    closed
}
