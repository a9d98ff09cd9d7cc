//! Reading the front of a request body before the request takes an instance, so a client that
//! sends its body slowly holds a connection, not a guest. Up to a per-request bound is read into
//! memory first (for most requests that is the whole body); the guest then gets those bytes at
//! once and streams only what lies beyond. All requests together buffer at most a node-wide
//! budget; a request that finds it spent streams its body as it arrives.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How much request body is read ahead: per request, and for the whole node.
pub struct FrontBuffering {
    per_request: usize,
    /// Permits are KiB of buffered body.
    budget: Arc<Semaphore>,
}

impl FrontBuffering {
    /// Read ahead up to `per_request` bytes per request and `total` bytes over the node
    /// (rounded up to whole KiB).
    pub fn new(per_request: usize, total: usize) -> Self {
        FrontBuffering {
            per_request,
            budget: Arc::new(Semaphore::new(total.div_ceil(1024))),
        }
    }

    /// Read the front of `body`: until it ends, or `limit` bytes (at most the per-request
    /// bound) are in. An error from the body (such as the app's size cap) comes back as is.
    pub async fn read<B>(&self, mut body: B, limit: u64) -> Result<FrontBuffered<B>, B::Error>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        if body.is_end_stream() {
            return Ok(FrontBuffered::streaming(body));
        }
        let declared = body.size_hint().exact();
        let want = (self.per_request as u64)
            .min(limit)
            .min(declared.unwrap_or(u64::MAX));
        if want == 0 {
            return Ok(FrontBuffered::streaming(body));
        }
        let kib = want.div_ceil(1024).min(u64::from(u32::MAX)) as u32;
        let Ok(permit) = self.budget.clone().try_acquire_many_owned(kib) else {
            // The node has as much as it may buffered: this body streams.
            return Ok(FrontBuffered::streaming(body));
        };
        let mut front = VecDeque::new();
        let mut buffered = 0u64;
        while buffered < want {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        buffered += data.len() as u64;
                    }
                    front.push_back(frame);
                }
                Some(Err(err)) => return Err(err),
                None => {
                    return Ok(FrontBuffered {
                        front,
                        rest: None,
                        _permit: Some(permit),
                    });
                }
            }
        }
        Ok(FrontBuffered {
            front,
            rest: Some(body),
            _permit: Some(permit),
        })
    }
}

/// A request body whose front has been read: those frames first, then the rest as it arrives.
pub struct FrontBuffered<B> {
    front: VecDeque<Frame<Bytes>>,
    rest: Option<B>,
    /// The share of the node's budget the front holds, given back when the body is dropped.
    _permit: Option<OwnedSemaphorePermit>,
}

impl<B> FrontBuffered<B> {
    /// `body` with nothing read ahead: it streams as it arrives (or it has nothing to send).
    pub fn streaming(body: B) -> Self {
        FrontBuffered {
            front: VecDeque::new(),
            rest: Some(body),
            _permit: None,
        }
    }
}

impl<B> Body for FrontBuffered<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(frame) = self.front.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.front.is_empty() && self.rest.as_ref().is_none_or(|rest| rest.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let front: u64 = self
            .front
            .iter()
            .filter_map(|f| f.data_ref())
            .map(|d| d.len() as u64)
            .sum();
        match &self.rest {
            None => SizeHint::with_exact(front),
            Some(rest) => {
                let hint = rest.size_hint();
                let mut sum = SizeHint::new();
                sum.set_lower(hint.lower() + front);
                if let Some(upper) = hint.upper() {
                    sum.set_upper(upper + front);
                }
                sum
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn chunks(
        parts: &[&'static str],
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures::stream::iter(frames))
    }

    async fn all<B: Body<Data = Bytes> + Unpin>(body: B) -> Vec<u8>
    where
        B::Error: std::fmt::Debug,
    {
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn a_small_body_is_read_whole_and_given_back_unchanged() {
        let buffering = FrontBuffering::new(1024, 4096);
        let front = buffering
            .read(chunks(&["ab", "cd", "ef"]), 1 << 20)
            .await
            .unwrap();
        assert!(front.rest.is_none(), "the whole body was read ahead");
        assert_eq!(all(front).await, b"abcdef");
    }

    #[tokio::test]
    async fn past_the_bound_the_rest_streams() {
        let buffering = FrontBuffering::new(3, 4096);
        let front = buffering
            .read(chunks(&["ab", "cd", "ef"]), 1 << 20)
            .await
            .unwrap();
        assert_eq!(front.front.len(), 2, "reads up to the bound");
        assert!(front.rest.is_some());
        assert_eq!(all(front).await, b"abcdef");
    }

    #[tokio::test]
    async fn a_spent_budget_streams_and_a_released_one_buffers_again() {
        let buffering = FrontBuffering::new(4096, 4096);
        let held = buffering
            .read(Full::new(Bytes::from(vec![1u8; 4096])), 1 << 20)
            .await
            .unwrap();
        let streamed = buffering.read(chunks(&["xy"]), 1 << 20).await.unwrap();
        assert!(
            streamed.front.is_empty(),
            "no budget left: nothing read ahead"
        );
        assert_eq!(all(streamed).await, b"xy");
        drop(held);
        let buffered = buffering.read(chunks(&["xy"]), 1 << 20).await.unwrap();
        assert_eq!(buffered.front.len(), 1);
    }

    #[tokio::test]
    async fn an_empty_body_is_not_touched() {
        let buffering = FrontBuffering::new(1024, 1024);
        let front = buffering
            .read(Full::new(Bytes::new()), 1 << 20)
            .await
            .unwrap();
        assert!(front._permit.is_none());
        assert!(front.is_end_stream());
    }
}
