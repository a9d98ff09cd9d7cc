//! A guest's response body, decoupled from the client's pace. Once the head is sent, the
//! guest runs on a task of its own beside a pump that moves its body into a buffer of at most
//! [`RESPONSE_BUFFER`] bytes; the client reads from that buffer. A guest whose response fits
//! finishes and gives its instance back however slowly the client reads (an HTTP/2 client can
//! hold a stream at 64 KiB of window); a larger one waits for the client once the buffer is
//! full. The body ends only once the guest has returned, and a client that goes away stops it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::failure::GuestFailure;

/// Bytes of a response the node holds for a client that reads slowly.
pub(crate) const RESPONSE_BUFFER: usize = 512 * 1024;

type Chunk = Result<Frame<Bytes>, wasmtime_wasi_http::Error>;

/// The client's side of a guest's response.
pub(crate) struct BufferedBody {
    frames: mpsc::UnboundedReceiver<(Chunk, u32)>,
    room: Arc<Semaphore>,
    task: Option<JoinHandle<()>>,
    hint: Option<SizeHint>,
}

impl BufferedBody {
    /// Run `guest` to its end on a task of its own, pumping `body` (what it writes) into the
    /// buffer this body is read from.
    pub(crate) fn spawn<G>(guest: G, body: HyperOutgoingBody) -> Self
    where
        G: Future<Output = Result<(), GuestFailure>> + Send + 'static,
    {
        let hint = Some(body.size_hint());
        let room = Arc::new(Semaphore::new(RESPONSE_BUFFER));
        let (sender, frames) = mpsc::unbounded_channel();
        let task = tokio::spawn({
            let room = room.clone();
            async move {
                // The guest's outcome is logged by the guest future itself. The sender lives
                // until both are done, so the body ends only after the guest has returned.
                let (outcome, ()) = tokio::join!(guest, pump(body, sender.clone(), room));
                if outcome.is_err() {
                    // A guest that failed after its head (a trap mid-body): end the body with
                    // an error, so the client sees a broken response, not a complete short one.
                    let broken = wasmtime_wasi_http::Error::InternalError(Some(
                        "the handler failed while sending its response body".into(),
                    ));
                    let _ = sender.send((Err(broken), 0));
                }
                drop(sender);
            }
        });
        BufferedBody {
            frames,
            room,
            task: Some(task),
            hint,
        }
    }
}

/// Move `body`'s frames to `sender`, taking buffer room for their bytes first.
async fn pump(
    mut body: HyperOutgoingBody,
    sender: mpsc::UnboundedSender<(Chunk, u32)>,
    room: Arc<Semaphore>,
) {
    while let Some(chunk) = body.frame().await {
        let len = match &chunk {
            Ok(frame) => frame.data_ref().map_or(0, |d| d.len()),
            Err(_) => 0,
        };
        // A frame larger than the whole buffer takes all of it.
        let take = len.min(RESPONSE_BUFFER) as u32;
        match room.acquire_many(take).await {
            Ok(permit) => permit.forget(),
            Err(_) => return,
        }
        let failed = chunk.is_err();
        if sender.send((chunk, take)).is_err() || failed {
            return;
        }
    }
}

impl Body for BufferedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.hint = None;
        match self.frames.poll_recv(cx) {
            Poll::Ready(Some((chunk, taken))) => {
                self.room.add_permits(taken as usize);
                Poll::Ready(Some(chunk))
            }
            // The sender is gone: the pump and the guest are both done.
            Poll::Ready(None) => {
                self.task = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.hint.unwrap_or_default()
    }
}

impl Drop for BufferedBody {
    fn drop(&mut self) {
        // The client went away before the end: stop the guest (its instance goes back).
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
