//! A small pool of threads that runs blocking store calls for the async API, so an async caller
//! never blocks its runtime's threads on an fsync. [`Completion`] is the future of one job; it
//! works on any executor.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};

type Job = Box<dyn FnOnce() + Send + 'static>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data, consistent after every critical section.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    stopped: bool,
}

/// The pool: jobs run in submission order on `threads` threads.
pub(crate) struct BlockingPool {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingPool").finish_non_exhaustive()
    }
}

impl BlockingPool {
    pub(crate) fn new(threads: usize) -> BlockingPool {
        let queue: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let handles = (0..threads)
            .map(|i| {
                let queue = queue.clone();
                std::thread::Builder::new()
                    .name(format!("weir-store-blocking-{i}"))
                    .spawn(move || worker(&queue))
                    .expect("a blocking-pool thread starts")
            })
            .collect();
        BlockingPool {
            queue,
            threads: Mutex::new(handles),
        }
    }

    /// Runs `job` on the pool; the returned future resolves to its result (`None` if the pool
    /// stopped before running it).
    pub(crate) fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Completion<T> {
        let slot: Arc<Mutex<Slot<T>>> = Arc::new(Mutex::new(Slot {
            value: None,
            done: false,
            waker: None,
        }));
        let filled = slot.clone();
        let job: Job = Box::new(move || {
            // A panicking job still completes its future (with `None`), and the thread lives on.
            let value = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).ok();
            let waker = {
                let mut slot = lock(&filled);
                slot.value = value;
                slot.done = true;
                slot.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        });
        let (queue, ready) = &*self.queue;
        let mut guard = lock(queue);
        if guard.stopped {
            lock(&slot).done = true;
        } else {
            guard.jobs.push_back(job);
            ready.notify_one();
        }
        Completion { slot }
    }

    /// Stops the pool after the queued jobs ran, and joins its threads.
    pub(crate) fn stop(&self) {
        {
            let (queue, ready) = &*self.queue;
            lock(queue).stopped = true;
            ready.notify_all();
        }
        for handle in std::mem::take(&mut *lock(&self.threads)) {
            // The store may be closed from one of the pool's own jobs (its last handle dropped
            // there); that thread exits by itself once the job returns.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

fn worker(queue: &(Mutex<Queue>, Condvar)) {
    let (queue, ready) = queue;
    loop {
        let job = {
            let mut guard = lock(queue);
            loop {
                if let Some(job) = guard.jobs.pop_front() {
                    break job;
                }
                if guard.stopped {
                    return;
                }
                guard = ready
                    .wait(guard)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        job();
    }
}

struct Slot<T> {
    value: Option<T>,
    done: bool,
    waker: Option<Waker>,
}

/// The result of a job on the blocking pool.
pub(crate) struct Completion<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

impl<T> Future for Completion<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut slot = lock(&self.slot);
        if slot.done {
            return Poll::Ready(slot.value.take());
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
