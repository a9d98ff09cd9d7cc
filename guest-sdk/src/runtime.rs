//! Running async code in a handler: background tasks, timers and waiting on several futures.
//!
//! On wasm these run on the request's event loop over `wasi:io/poll` (one per request, started
//! by [`crate::export!`]); off wasm, in a handler's unit tests, on a single-threaded executor, so
//! the same handler code runs in both places.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

/// A spawned task: await it for its output; dropping it cancels the task, `detach` lets it run
/// on its own until the request ends.
#[cfg(target_arch = "wasm32")]
pub use async_task::Task;

/// A spawned task: await it for its output; dropping it cancels the task, `detach` lets it run
/// on its own until the request ends.
#[cfg(not(target_arch = "wasm32"))]
pub use async_executor::Task;

/// Run `future` beside the handler, as a task of the request's event loop.
///
/// Everything a request starts ends with it: once the response is sent, tasks still running
/// are dropped with the instance.
pub fn spawn<F>(future: F) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    #[cfg(target_arch = "wasm32")]
    {
        crate::wasi::executor::spawn(future)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        host::EXECUTOR.with(|executor| executor.spawn(future))
    }
}

/// Wait for `duration` without blocking other tasks of the request.
pub async fn sleep(duration: Duration) {
    #[cfg(target_arch = "wasm32")]
    {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let timer = wasip2::clocks::monotonic_clock::subscribe_duration(nanos);
        crate::wasi::executor::wait_once(timer).await;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        host::sleep(duration).await
    }
}

/// Run every future at once and wait for all of them; the outputs come in the order given.
/// Several [`crate::fetch`] calls in flight together take as long as the slowest, not the sum.
pub async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    enum Slot<F: Future> {
        Running(Pin<Box<F>>),
        Done(F::Output),
        Taken,
    }
    let mut slots: Vec<Slot<F>> = futures
        .into_iter()
        .map(|future| Slot::Running(Box::pin(future)))
        .collect();
    poll_fn(|cx| {
        let mut running = false;
        for slot in &mut slots {
            if let Slot::Running(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(output) => *slot = Slot::Done(output),
                    Poll::Pending => running = true,
                }
            }
        }
        if running {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    slots
        .iter_mut()
        .map(|slot| match std::mem::replace(slot, Slot::Taken) {
            Slot::Done(output) => output,
            _ => unreachable!("every future finished before the loop ended"),
        })
        .collect()
}

/// Wait for `future`, failing with `on_timeout()` if it takes longer than `limit`.
pub async fn timeout<F: Future>(limit: Duration, future: F) -> Result<F::Output, crate::Error> {
    futures_lite::future::or(async { Ok(future.await) }, async {
        sleep(limit).await;
        Err(crate::Error::gateway_timeout(format!(
            "timed out after {} ms",
            limit.as_millis()
        )))
    })
    .await
}

/// Run a future to completion on this thread, with [`spawn`] and [`sleep`] working inside it:
/// how a handler's unit test calls it. (On wasm, [`crate::export!`] runs the handler.)
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: Future>(future: F) -> F::Output {
    host::EXECUTOR.with(|executor| futures_lite::future::block_on(executor.run(future)))
}

#[cfg(not(target_arch = "wasm32"))]
mod host {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};
    use std::time::{Duration, Instant};

    std::thread_local! {
        pub(super) static EXECUTOR: async_executor::LocalExecutor<'static> =
            const { async_executor::LocalExecutor::new() };
    }

    /// A timer for tests: a thread sleeps and wakes the task. Tests sleep little and rarely,
    /// so a thread per timer is simpler than a timer wheel and just as good.
    pub(super) fn sleep(duration: Duration) -> impl Future<Output = ()> {
        Sleep {
            deadline: Instant::now() + duration,
            waker: None,
        }
    }

    struct Sleep {
        deadline: Instant,
        waker: Option<Arc<Mutex<Waker>>>,
    }

    impl Future for Sleep {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let now = Instant::now();
            if now >= self.deadline {
                return Poll::Ready(());
            }
            match &self.waker {
                Some(waker) => waker
                    .lock()
                    .expect("timer waker lock")
                    .clone_from(cx.waker()),
                None => {
                    let waker = Arc::new(Mutex::new(cx.waker().clone()));
                    let wait = self.deadline - now;
                    let shared = waker.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(wait);
                        shared.lock().expect("timer waker lock").wake_by_ref();
                    });
                    self.waker = Some(waker);
                }
            }
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn join_all_runs_futures_at_once_and_keeps_their_order() {
        let in_flight = Cell::new(0);
        let most = Cell::new(0);
        let outputs = block_on(join_all((0..4u64).map(|n| {
            let (in_flight, most) = (&in_flight, &most);
            async move {
                in_flight.set(in_flight.get() + 1);
                most.set(most.get().max(in_flight.get()));
                // The later ones finish first: the order of outputs is still the order given.
                sleep(Duration::from_millis(40 - n * 10)).await;
                in_flight.set(in_flight.get() - 1);
                n
            }
        })));
        assert_eq!(outputs, vec![0, 1, 2, 3]);
        assert_eq!(most.get(), 4, "all four were waiting at once");
    }

    #[test]
    fn timeout_says_how_long_it_waited() {
        let err = block_on(timeout(
            Duration::from_millis(10),
            sleep(Duration::from_secs(5)),
        ))
        .unwrap_err();
        assert_eq!(err.status(), http::StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(err.message(), "timed out after 10 ms");
        assert_eq!(
            block_on(timeout(Duration::from_secs(5), async { 7 })).unwrap(),
            7
        );
    }
}
