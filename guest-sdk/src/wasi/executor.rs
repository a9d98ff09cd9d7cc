//! The request's event loop: runs the handler's future and the tasks it spawns, and when all of
//! them wait, blocks in one `wasi:io/poll.poll` on every pollable they wait on.
//!
//! Written here rather than taken from `wstd` (whose loop this follows) so that a handler that
//! never waits links none of it: every WASI import a component links costs each request at
//! instantiation (the instruction gauge: about 1,300 instructions an import), and `wstd`'s loop
//! links its imports whatever the handler does.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use async_task::Runnable;
use wasip2::io::poll::Pollable;

std::thread_local! {
    /// Spawned tasks ready to run.
    static READY: RefCell<VecDeque<Runnable>> = const { RefCell::new(VecDeque::new()) };
    /// What the waiting futures wait on, each with its id and the waker to call.
    static WAITING: RefCell<Vec<(u64, Rc<Pollable>, Waker)>> = const { RefCell::new(Vec::new()) };
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
    static RUNNING: Cell<bool> = const { Cell::new(false) };
    /// How to wait for the pollables, set by the first [`Wait`]: a program that never waits on
    /// one does not link `wasi:io/poll.poll` (each import costs every request at instantiation).
    static POLLER: Cell<Option<fn()>> = const { Cell::new(None) };
}

/// The waker of the future `block_on` runs: a flag it checks before polling it again.
struct RootWaker(AtomicBool);

impl Wake for RootWaker {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Run `future` to its end, with the tasks it spawns beside it; tasks still running when it
/// ends are dropped.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    assert!(
        !RUNNING.replace(true),
        "outpost_sdk: an event loop is already running"
    );
    let root = Arc::new(RootWaker(AtomicBool::new(true)));
    let waker = Waker::from(root.clone());
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    let output = loop {
        if root.0.swap(false, Ordering::Relaxed)
            && let Poll::Ready(output) = future.as_mut().poll(&mut context)
        {
            break output;
        }
        while let Some(runnable) = READY.with(|ready| ready.borrow_mut().pop_front()) {
            runnable.run();
        }
        if !root.0.load(Ordering::Relaxed) && READY.with(|ready| ready.borrow().is_empty()) {
            let poller = POLLER.get().expect(
                "outpost_sdk: the handler waits on something outside the request's event loop",
            );
            poller();
        }
    };
    // Whatever is left belongs to this request only.
    READY.with(|ready| ready.borrow_mut().clear());
    WAITING.with(|waiting| waiting.borrow_mut().clear());
    RUNNING.set(false);
    output
}

/// Block until at least one pollable waited on is ready, and wake its futures.
fn wait_for_pollables() {
    let waiting = WAITING.with(|waiting| {
        waiting
            .borrow()
            .iter()
            .map(|(id, pollable, _)| (*id, pollable.clone()))
            .collect::<Vec<_>>()
    });
    assert!(
        !waiting.is_empty(),
        "outpost_sdk: the handler waits on something outside the request's event loop"
    );
    let list: Vec<&Pollable> = waiting.iter().map(|(_, p)| &**p).collect();
    let ready = wasip2::io::poll::poll(&list);
    let wakers: Vec<Waker> = WAITING.with(|registered| {
        let mut registered = registered.borrow_mut();
        let ready_ids: Vec<u64> = ready.iter().map(|&i| waiting[i as usize].0).collect();
        let mut wakers = Vec::with_capacity(ready_ids.len());
        registered.retain(|(id, _, waker)| {
            if ready_ids.contains(id) {
                wakers.push(waker.clone());
                false
            } else {
                true
            }
        });
        wakers
    });
    drop(list);
    drop(waiting);
    wakers.into_iter().for_each(Waker::wake);
}

/// Run `future` as a task of the current request's loop.
pub(crate) fn spawn<F>(future: F) -> async_task::Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let schedule = |runnable| READY.with(|ready| ready.borrow_mut().push_back(runnable));
    let (runnable, task) = async_task::spawn_local(future, schedule);
    runnable.schedule();
    task
}

/// A future that is ready when `pollable` is.
pub(crate) struct Wait {
    pollable: Rc<Pollable>,
    id: Option<u64>,
}

impl Wait {
    pub(crate) fn new(pollable: Rc<Pollable>) -> Self {
        Wait { pollable, id: None }
    }
}

impl Future for Wait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.pollable.ready() {
            return Poll::Ready(());
        }
        POLLER.set(Some(wait_for_pollables));
        let id = *self.id.get_or_insert_with(|| {
            let id = NEXT_ID.get();
            NEXT_ID.set(id + 1);
            id
        });
        WAITING.with(|waiting| {
            let mut waiting = waiting.borrow_mut();
            match waiting.iter_mut().find(|(known, _, _)| *known == id) {
                Some((_, _, waker)) => waker.clone_from(cx.waker()),
                None => waiting.push((id, self.pollable.clone(), cx.waker().clone())),
            }
        });
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        // A pollable is a child of its stream: it must not outlive the wait that holds it.
        if let Some(id) = self.id {
            WAITING.with(|waiting| waiting.borrow_mut().retain(|(known, _, _)| *known != id));
        }
    }
}

/// Wait until `pollable` is ready.
pub(crate) async fn wait(pollable: Rc<Pollable>) {
    Wait::new(pollable).await
}

/// Wait until the pollable `subscribe` makes is ready, dropping it after.
pub(crate) async fn wait_once(pollable: Pollable) {
    wait(Rc::new(pollable)).await
}
