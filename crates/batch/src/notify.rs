//! Waiting without a runtime: a [`Signal`] that wakes blocked threads (condvar) and async
//! tasks (wakers) when a reader's state changes (shared by all partitions of a group), a
//! [`Timer`] future backed by one shared timer thread, and [`WaitSet`], which waits for any of
//! a signal, new events in some logs, or a deadline — so the async API works on any executor
//! without tokio.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// Locks a mutex of the crate. Every critical section leaves its data consistent (the state
/// machine asserts its invariants), so a panic elsewhere does not make the data unusable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data, consistent after every critical section.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A change counter with blocking and async waiters. Readers notify it on every ack and nack;
/// it is also a [`Waker`] (through [`Wake`]), so a log can wake it when events arrive.
#[derive(Debug, Default)]
pub struct Signal {
    state: Mutex<(u64, Vec<Waker>)>,
    changed: Condvar,
}

impl Signal {
    /// A new signal.
    pub fn new() -> Arc<Signal> {
        Arc::new(Signal::default())
    }

    /// The current generation; pass it to a wait to wake on any later change.
    pub fn generation(&self) -> u64 {
        lock(&self.state).0
    }

    /// Records a change and wakes everyone waiting.
    pub fn notify(&self) {
        let wakers = {
            let mut state = lock(&self.state);
            state.0 += 1;
            std::mem::take(&mut state.1)
        };
        self.changed.notify_all();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Blocks until the generation passes `seen` or `timeout` elapses.
    pub fn wait(&self, seen: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.state);
        while state.0 == seen {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Registers `waker` for the next change after `seen`; false if it already happened.
    pub fn register(&self, seen: u64, waker: &Waker) -> bool {
        let mut state = lock(&self.state);
        if state.0 != seen {
            return false;
        }
        if !state.1.iter().any(|known| known.will_wake(waker)) {
            state.1.push(waker.clone());
        }
        true
    }
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.notify();
    }
}

/// The shared timer thread: wakes each registered waker at its deadline. Registrations are
/// removed when their [`Timer`] is dropped, so waits that end early leave nothing behind.
#[derive(Debug, Default)]
struct TimerThread {
    wakers: Mutex<BTreeMap<(Instant, u64), Waker>>,
    changed: Condvar,
    next_id: std::sync::atomic::AtomicU64,
}

fn timer_thread() -> &'static Arc<TimerThread> {
    static TIMER: OnceLock<Arc<TimerThread>> = OnceLock::new();
    TIMER.get_or_init(|| {
        let timer = Arc::new(TimerThread::default());
        let worker = timer.clone();
        std::thread::Builder::new()
            .name("weir-batch-timer".into())
            .spawn(move || worker.run())
            .expect("the timer thread starts");
        timer
    })
}

impl TimerThread {
    fn register(&self, deadline: Instant, waker: Waker) -> (Instant, u64) {
        let key = (
            deadline,
            self.next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        lock(&self.wakers).insert(key, waker);
        self.changed.notify_one();
        key
    }

    fn cancel(&self, key: (Instant, u64)) {
        lock(&self.wakers).remove(&key);
    }

    fn run(&self) {
        let mut wakers = lock(&self.wakers);
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while let Some(entry) = wakers.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            if !due.is_empty() {
                // Wake outside the lock: a waker may poll inline and register a new timer.
                drop(wakers);
                for waker in due {
                    waker.wake();
                }
                wakers = lock(&self.wakers);
                continue;
            }
            wakers = match wakers.keys().next().copied() {
                Some((deadline, _)) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    self.changed
                        .wait_timeout(wakers, wait)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(wakers)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            };
        }
    }
}

/// A future that completes at `deadline`.
#[derive(Debug)]
pub struct Timer {
    deadline: Instant,
    registered: Option<((Instant, u64), Waker)>,
}

impl Timer {
    /// A timer firing at `deadline`.
    pub fn at(deadline: Instant) -> Self {
        Timer {
            deadline,
            registered: None,
        }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        // Register again if the task's waker changed since the last poll.
        if !self
            .registered
            .as_ref()
            .is_some_and(|(_, known)| known.will_wake(cx.waker()))
        {
            if let Some((key, _)) = self.registered.take() {
                timer_thread().cancel(key);
            }
            let key = timer_thread().register(self.deadline, cx.waker().clone());
            self.registered = Some((key, cx.waker().clone()));
        }
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some((key, _)) = self.registered.take() {
            timer_thread().cancel(key);
        }
    }
}

/// Waits for the first of: `signal` moving past `seen`, any `(log, offset)` becoming visible,
/// or `deadline`. Blocking ([`WaitSet::block`]) or as a future on any executor.
#[derive(Debug)]
pub struct WaitSet {
    signal: Arc<Signal>,
    seen: u64,
    logs: Vec<(Arc<weir_log::Log>, u64)>,
    timer: Timer,
}

impl WaitSet {
    /// A wait for a change after generation `seen` of `signal`, or until `deadline`.
    pub fn new(signal: Arc<Signal>, seen: u64, deadline: Instant) -> Self {
        WaitSet {
            signal,
            seen,
            logs: Vec::new(),
            timer: Timer::at(deadline),
        }
    }

    /// Also wake when `offset` becomes visible in `log`.
    pub fn log(&mut self, log: Arc<weir_log::Log>, offset: u64) {
        self.logs.push((log, offset));
    }

    /// Blocks this thread until the first event of the set.
    pub fn block(self) {
        let waker = Waker::from(self.signal.clone());
        let mut context = Context::from_waker(&waker);
        for (log, offset) in &self.logs {
            // Registers the signal as the log's waker; ready means the events are there.
            if std::pin::pin!(log.wait_for_async(*offset))
                .poll(&mut context)
                .is_ready()
            {
                return;
            }
        }
        let timeout = self
            .timer
            .deadline
            .saturating_duration_since(Instant::now());
        self.signal.wait(self.seen, timeout);
    }
}

impl Future for WaitSet {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if !self.signal.register(self.seen, cx.waker()) {
            return Poll::Ready(());
        }
        for (log, offset) in &self.logs {
            if std::pin::pin!(log.wait_for_async(*offset))
                .poll(cx)
                .is_ready()
            {
                return Poll::Ready(());
            }
        }
        Pin::new(&mut self.timer).poll(cx)
    }
}
