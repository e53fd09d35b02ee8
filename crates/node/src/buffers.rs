//! Buffer budgets: how many bytes of request frames and responses one connection may hold, and
//! all connections together (`docs/protocol.md`, "Limits").
//!
//! Every buffer a connection holds for longer than it takes to look at it is *charged* before it
//! is filled: a request frame once its header says how long it is (until the request is done
//! with it), a `Read`'s answer before the log is read, a `Fetch`'s once its batch is known, any
//! other answer once encoded; an answer's charge lasts until the connection's writer has written
//! it to the socket, or it is dropped with the connection. A [`Charge`] is returned when dropped.
//!
//! The two limits:
//!
//! - per connection, `connection_buffer_bytes_max` (at least one frame);
//! - for the node, `node_buffer_bytes_max`: half of it is the *floors*, one per connection slot
//!   (`node_buffer_bytes_max / (2 × connections_max)` each), the other half the *shared pool*.
//!   A charge is taken from its connection's floor if it fits in what the floor has left, else
//!   from the pool, which is shared out ([`Pool`]): a connection takes from it while it holds
//!   none of it, or within its share. So a client whose buffers are small (a producer's frames,
//!   an ack, a consumer's batch of a few KiB) is never held up by other connections that filled
//!   the pool, a few clients that never read cannot take the pool from the others, and the node
//!   as a whole never holds more than `node_buffer_bytes_max`.
//!
//! Invariants: a connection's charges never exceed its limit, and the floors plus the pool never
//! exceed the node's (asserted). Waiting cannot deadlock: a task waits at its connection's limit
//! holding no bytes (first come, first served: a tokio semaphore), and at the pool holding only
//! bytes of its connection's limit, which no holder of pool bytes waits for; holders of pool
//! bytes give them back without waiting for more (requests drop their frame's charge before
//! charging their answer, an answer that turns out larger than its charge grows only if the
//! bytes are free at once, and a written or dropped frame returns its charge). What is not
//! counted: a connection's first read buffer (4 KiB until a header is complete), and the log's
//! own read buffers while a read runs (`dispatch.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::NodeConfig;

/// The node's budget, shared by all its connections.
#[derive(Debug)]
pub(crate) struct NodeBuffers {
    /// The shared half.
    pool: Pool,
    /// Each connection's floor, in bytes.
    floor_bytes: usize,
    /// Each connection's limit, in bytes.
    connection_bytes_max: usize,
    /// Bytes charged now, over all connections (for the `weir_node_buffer_bytes` gauge).
    charged: AtomicUsize,
}

impl NodeBuffers {
    /// The budget of a node with `config` (already validated).
    pub(crate) fn new(config: &NodeConfig) -> Arc<NodeBuffers> {
        Arc::new(NodeBuffers::with_limits(
            config.node_buffer_bytes_max,
            config.connection_buffer_bytes_max,
            config.connections_max,
        ))
    }

    fn with_limits(node_bytes_max: u64, connection_bytes_max: u64, connections_max: u32) -> Self {
        let node_bytes_max = usize::try_from(node_bytes_max).unwrap_or(usize::MAX);
        let slots = connections_max.max(1) as usize;
        let floor_bytes = (node_bytes_max / 2 / slots).min(Semaphore::MAX_PERMITS);
        let pool_bytes = node_bytes_max - floor_bytes * slots;
        let connection_bytes_max = usize::try_from(connection_bytes_max)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        assert!(
            pool_bytes >= connection_bytes_max,
            "validated: the pool holds a connection's buffers"
        );
        NodeBuffers {
            pool: Pool::new(pool_bytes),
            floor_bytes,
            connection_bytes_max,
            charged: AtomicUsize::new(0),
        }
    }

    /// A connection's budget (one per connection slot: the node never serves more than
    /// `connections_max` at once, so the floors stay within their half).
    pub(crate) fn connection(self: &Arc<Self>) -> ConnectionBuffers {
        ConnectionBuffers {
            node: self.clone(),
            limit: Arc::new(Semaphore::new(self.connection_bytes_max)),
            floor: Arc::new(Semaphore::new(self.floor_bytes)),
            pooled: Arc::new(Pooled::default()),
        }
    }

    /// Bytes charged now, over all connections.
    pub(crate) fn charged_bytes(&self) -> usize {
        self.charged.load(Ordering::Relaxed)
    }
}

/// The shared pool. Unlike a plain semaphore (first come, first served) it shares itself out:
/// a connection may take from it while it holds none of it (if the bytes are free), or while it
/// stays within its share, the pool's size over the number of connections holding or waiting
/// for pool bytes. So a few connections that never give their bytes back (clients that do not
/// read) cannot keep everyone else waiting behind them.
#[derive(Debug)]
struct Pool {
    state: Mutex<PoolState>,
    /// Signalled whenever bytes come back.
    returned: Notify,
}

/// The pool's counts, changed only under its lock.
#[derive(Debug)]
struct PoolState {
    bytes: usize,
    free: usize,
    /// Connections holding pool bytes or waiting for some.
    active: usize,
}

/// One connection's use of the pool (its counts change only under the pool's lock).
#[derive(Debug, Default)]
struct Pooled {
    held: AtomicUsize,
    waiting: AtomicUsize,
    /// One task of the connection waits for the pool at a time; the others queue here, so the
    /// pool wakes at most one waiter per connection.
    turn: tokio::sync::Mutex<()>,
}

impl Pooled {
    fn active(&self) -> bool {
        self.held.load(Ordering::Relaxed) > 0 || self.waiting.load(Ordering::Relaxed) > 0
    }
}

/// Whether a connection holding `held` pool bytes may take `bytes` more: they must be free, and
/// unless it holds none yet, within its share of the pool among `active` connections (counting
/// itself).
fn may_take(state: &PoolState, held: usize, active: usize, bytes: usize) -> bool {
    bytes <= state.free && (held == 0 || held + bytes <= state.bytes / active.max(1))
}

impl Pool {
    fn new(bytes: usize) -> Pool {
        Pool {
            state: Mutex::new(PoolState {
                bytes,
                free: bytes,
                active: 0,
            }),
            returned: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `bytes` for `pooled` if its rule allows now.
    fn try_take(&self, pooled: &Pooled, bytes: usize) -> bool {
        let mut state = self.lock();
        let was_active = pooled.active();
        let active = state.active + usize::from(!was_active);
        let held = pooled.held.load(Ordering::Relaxed);
        if !may_take(&state, held, active, bytes) {
            return false;
        }
        state.free -= bytes;
        pooled.held.store(held + bytes, Ordering::Relaxed);
        if !was_active && bytes > 0 {
            state.active += 1;
        }
        Pool::check(&state);
        true
    }

    /// Takes `bytes` for `pooled`, waiting until its rule allows.
    async fn take(&self, pooled: &Pooled, bytes: usize) {
        if self.try_take(pooled, bytes) {
            return;
        }
        metrics::counter!("weir_node_buffer_waits_total", "level" => "node").increment(1);
        let _turn = pooled.turn.lock().await;
        let _waiting = Waiting::start(self, pooled);
        loop {
            // Registered before looking, so that bytes returned in between are not missed.
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if self.try_take(pooled, bytes) {
                return;
            }
            returned.await;
        }
    }

    /// Gives back `bytes` of `pooled`'s.
    fn give_back(&self, pooled: &Pooled, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let mut state = self.lock();
        let was_active = pooled.active();
        let held = pooled.held.load(Ordering::Relaxed);
        assert!(bytes <= held, "a connection gives back pool bytes it holds");
        pooled.held.store(held - bytes, Ordering::Relaxed);
        state.free += bytes;
        if was_active && !pooled.active() {
            state.active -= 1;
        }
        Pool::check(&state);
        drop(state);
        self.returned.notify_waiters();
    }

    fn check(state: &PoolState) {
        assert!(
            state.free <= state.bytes,
            "the pool holds more than its size"
        );
    }
}

/// A connection waiting for the pool counts among those it is shared by; ends with the wait
/// (also when the waiting future is dropped).
struct Waiting<'a> {
    pool: &'a Pool,
    pooled: &'a Pooled,
}

impl<'a> Waiting<'a> {
    fn start(pool: &'a Pool, pooled: &'a Pooled) -> Waiting<'a> {
        let mut state = pool.lock();
        if !pooled.active() {
            state.active += 1;
        }
        pooled.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting { pool, pooled }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        self.pooled.waiting.fetch_sub(1, Ordering::Relaxed);
        if !self.pooled.active() {
            state.active -= 1;
            drop(state);
            // The others' share grew.
            self.pool.returned.notify_waiters();
        }
    }
}

/// One connection's budget; clones share it.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionBuffers {
    node: Arc<NodeBuffers>,
    /// The connection's limit.
    limit: Arc<Semaphore>,
    /// The connection's floor.
    floor: Arc<Semaphore>,
    /// Its use of the shared pool.
    pooled: Arc<Pooled>,
}

impl ConnectionBuffers {
    /// Charges `bytes`, waiting for them first at the connection's limit, then (unless they fit
    /// in what its floor has left) at the shared pool. Never more than the connection's limit at
    /// once: a larger amount is charged at the limit (no caller asks for more than a frame,
    /// which fits). Cancel-safe: nothing is charged until it returns.
    pub(crate) async fn charge(&self, bytes: usize) -> Charge {
        let bytes = bytes.min(self.node.connection_bytes_max);
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
        let limit = match self.limit.clone().try_acquire_many_owned(permits) {
            Ok(permit) => permit,
            Err(_) => {
                metrics::counter!("weir_node_buffer_waits_total", "level" => "connection")
                    .increment(1);
                acquired(self.limit.clone().acquire_many_owned(permits).await)
            }
        };
        let mut charge = self.empty(limit);
        match self.floor.clone().try_acquire_many_owned(permits) {
            Ok(floor) => charge.floor = Some(floor),
            Err(_) => {
                self.node.pool.take(&self.pooled, bytes).await;
                charge.pooled = bytes;
            }
        }
        self.charged(&charge);
        charge
    }

    /// Charges `bytes` if they are free now, without waiting.
    fn try_charge(&self, bytes: usize) -> Option<Charge> {
        let permits = u32::try_from(bytes).ok()?;
        let limit = self.limit.clone().try_acquire_many_owned(permits).ok()?;
        let mut charge = self.empty(limit);
        match self.floor.clone().try_acquire_many_owned(permits) {
            Ok(floor) => charge.floor = Some(floor),
            Err(_) if self.node.pool.try_take(&self.pooled, bytes) => charge.pooled = bytes,
            Err(_) => return None,
        }
        self.charged(&charge);
        Some(charge)
    }

    fn charged(&self, charge: &Charge) {
        charge.check();
        self.node
            .charged
            .fetch_add(charge.bytes(), Ordering::Relaxed);
    }

    fn empty(&self, limit: OwnedSemaphorePermit) -> Charge {
        Charge {
            buffers: self.clone(),
            limit,
            floor: None,
            pooled: 0,
        }
    }

    /// Bytes this connection has charged now.
    #[cfg(test)]
    pub(crate) fn charged_bytes(&self) -> usize {
        self.node.connection_bytes_max - self.limit.available_permits()
    }
}

/// The budget's semaphores are never closed.
fn acquired(
    permit: Result<OwnedSemaphorePermit, tokio::sync::AcquireError>,
) -> OwnedSemaphorePermit {
    permit.expect("a buffer budget's semaphores are never closed")
}

/// Bytes charged to a connection and to the node, returned when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    buffers: ConnectionBuffers,
    /// The bytes at the connection's limit.
    limit: OwnedSemaphorePermit,
    /// The same bytes in the connection's floor, or in the shared pool (parts of a charge that
    /// grew may be in each).
    floor: Option<OwnedSemaphorePermit>,
    pooled: usize,
}

impl Charge {
    /// The bytes charged.
    pub(crate) fn bytes(&self) -> usize {
        self.limit.num_permits()
    }

    /// Makes the charge `bytes`: gives back what it has over, or takes what it lacks if that is
    /// free now (false if it is not: the charge stays as it was). Never waits, so that a charge
    /// held while growing cannot be what another grower waits for.
    pub(crate) fn resize(&mut self, bytes: usize) -> bool {
        let held = self.bytes();
        if bytes > held {
            let Some(more) = self.buffers.try_charge(bytes - held) else {
                return false;
            };
            self.merge(more);
            return true;
        }
        // Back to the pool first (others may wait for it), then to the floor.
        let excess = held - bytes;
        let from_pool = excess.min(self.pooled);
        self.pooled -= from_pool;
        self.buffers
            .node
            .pool
            .give_back(&self.buffers.pooled, from_pool);
        if let Some(floor) = self.floor.as_mut() {
            drop(floor.split(excess - from_pool));
            if floor.num_permits() == 0 {
                self.floor = None;
            }
        }
        drop(self.limit.split(excess));
        self.buffers
            .node
            .charged
            .fetch_sub(excess, Ordering::Relaxed);
        self.check();
        true
    }

    fn merge(&mut self, mut other: Charge) {
        let bytes = other.bytes();
        self.limit.merge(
            other
                .limit
                .split(bytes)
                .unwrap_or_else(|| unreachable!("a charge holds its bytes at the limit")),
        );
        match (self.floor.as_mut(), other.floor.take()) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, Some(theirs)) => self.floor = Some(theirs),
            (_, None) => {}
        }
        self.pooled += std::mem::take(&mut other.pooled);
        // `other` now holds nothing; its drop gives nothing back.
        self.check();
    }

    /// A charge holds the same bytes at its connection's limit as in its floor and the pool.
    fn check(&self) {
        let node_part = self
            .floor
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
            + self.pooled;
        assert_eq!(self.bytes(), node_part, "a charge's two levels disagree");
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let node = &self.buffers.node;
        node.pool.give_back(&self.buffers.pooled, self.pooled);
        node.charged.fetch_sub(self.bytes(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const KIB: usize = 1024;

    /// A node of 1 MiB for 4 connections (floors of 128 KiB, a pool of 512 KiB), with
    /// connections of at most 256 KiB.
    fn node() -> Arc<NodeBuffers> {
        Arc::new(NodeBuffers::with_limits(1 << 20, 256 << 10, 4))
    }

    /// The output of `future` if it completes at once.
    async fn now<F: std::future::Future>(future: F) -> Option<F::Output> {
        tokio::time::timeout(Duration::ZERO, future).await.ok()
    }

    /// Lets spawned tasks run until they wait.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn pool_free(node: &NodeBuffers) -> usize {
        node.pool.lock().free
    }

    #[test]
    fn floors_and_pool_split_the_node() {
        let node = node();
        assert_eq!(node.floor_bytes, 128 * KIB);
        assert_eq!(pool_free(&node), 512 * KIB);
        assert_eq!(node.pool.lock().bytes, 512 * KIB);
    }

    #[test]
    fn the_pool_is_shared_out() {
        let state = PoolState {
            bytes: 1000,
            free: 400,
            active: 0,
        };
        // Holding none of it: whatever is free.
        assert!(may_take(&state, 0, 4, 400));
        assert!(!may_take(&state, 0, 4, 401));
        // Holding some: within its share (1000 / 4 = 250).
        assert!(may_take(&state, 200, 4, 50));
        assert!(!may_take(&state, 200, 4, 51));
        assert!(may_take(&state, 200, 2, 300));
        assert!(!may_take(&state, 200, 2, 301));
    }

    #[tokio::test]
    async fn a_connection_waits_at_its_limit_until_it_drains() {
        let node = node();
        let connection = node.connection();
        let first = now(connection.charge(200 * KIB)).await.expect("free");
        assert_eq!(connection.charged_bytes(), 200 * KIB);
        assert!(now(connection.charge(100 * KIB)).await.is_none());
        drop(first);
        let second = now(connection.charge(100 * KIB)).await.expect("drained");
        assert_eq!(node.charged_bytes(), 100 * KIB);
        drop(second);
        assert_eq!(node.charged_bytes(), 0);
        assert_eq!(pool_free(&node), 512 * KIB);
        assert_eq!(node.pool.lock().active, 0);
    }

    #[tokio::test]
    async fn small_charges_use_the_floor_when_the_pool_is_spent() {
        let node = node();
        let hogs: Vec<_> = (0..2).map(|_| node.connection()).collect();
        let mut held = Vec::new();
        for hog in &hogs {
            // 256 KiB each: more than a floor, so from the pool, which they use up.
            held.push(now(hog.charge(256 * KIB)).await.expect("free"));
        }
        assert_eq!(pool_free(&node), 0);
        let polite = node.connection();
        let small = now(polite.charge(64 * KIB)).await.expect("its floor");
        assert!(small.floor.is_some() && small.pooled == 0);
        // A larger one does not fit in the floor and waits for the pool.
        let waiting = tokio::spawn({
            let polite = polite.clone();
            async move { polite.charge(150 * KIB).await }
        });
        settle().await;
        assert!(!waiting.is_finished());
        assert_eq!(node.pool.lock().active, 3);
        drop(held.pop());
        let large = waiting.await.expect("the charge task");
        assert_eq!(large.pooled, 150 * KIB);
        assert_eq!(node.charged_bytes(), 256 * KIB + 64 * KIB + 150 * KIB);
        assert_eq!(node.pool.lock().active, 2);
    }

    #[tokio::test]
    async fn a_connection_over_its_share_waits_while_others_take_theirs() {
        // Floors of 1 KiB, a pool of 1 MiB, connections of up to 1 MiB.
        let node = Arc::new(NodeBuffers::with_limits(2 << 20, 1 << 20, 1024));
        let (hog, newcomer) = (node.connection(), node.connection());
        let mut hogged = vec![
            now(hog.charge(300 * KIB)).await.expect("free"),
            now(hog.charge(200 * KIB))
                .await
                .expect("alone: all of the pool is its share"),
        ];
        let first = now(newcomer.charge(200 * KIB)).await.expect("it held none");
        // Two connections share the pool now: 512 KiB each. 300 KiB are free, but the hog
        // holds 500 KiB already.
        let hog_more = tokio::spawn({
            let hog = hog.clone();
            async move { hog.charge(100 * KIB).await }
        });
        settle().await;
        assert!(!hog_more.is_finished());
        let second = now(newcomer.charge(200 * KIB))
            .await
            .expect("within its share");
        assert_eq!(pool_free(&node), 124 * KIB);
        // Once the hog drains below its share, it gets its turn.
        drop(hogged.pop());
        hogged.push(hog_more.await.expect("the charge task"));
        assert_eq!(hog.charged_bytes(), 400 * KIB);
        drop((first, second, hogged));
        assert_eq!(pool_free(&node), 1 << 20);
        assert_eq!(node.pool.lock().active, 0);
        assert_eq!(node.charged_bytes(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_stops_counting_for_the_share() {
        let node = node();
        let (a, b) = (node.connection(), node.connection());
        let held = now(a.charge(256 * KIB)).await.expect("free");
        let also = now(b.charge(256 * KIB)).await.expect("free");
        assert!(
            now(a.charge(200 * KIB)).await.is_none(),
            "cancelled while waiting"
        );
        assert_eq!(node.pool.lock().active, 2);
        drop((held, also));
        assert_eq!(node.pool.lock().active, 0);
    }

    #[tokio::test]
    async fn a_charge_shrinks_and_grows_only_into_free_bytes() {
        let node = node();
        let connection = node.connection();
        let mut charge = now(connection.charge(200 * KIB)).await.expect("free");
        assert!(charge.resize(50 * KIB));
        assert_eq!(connection.charged_bytes(), 50 * KIB);
        assert_eq!(node.charged_bytes(), 50 * KIB);
        assert_eq!(pool_free(&node), 512 * KIB - 50 * KIB);
        let other = now(connection.charge(150 * KIB)).await.expect("free");
        // 56 KiB are left at the connection's limit: growing by 100 KiB does not wait for them.
        assert!(!charge.resize(150 * KIB));
        assert_eq!(charge.bytes(), 50 * KIB);
        assert!(charge.resize(100 * KIB));
        assert_eq!(connection.charged_bytes(), 250 * KIB);
        drop((charge, other));
        assert_eq!(connection.charged_bytes(), 0);
        assert_eq!(node.charged_bytes(), 0);
        assert_eq!(pool_free(&node), 512 * KIB);
    }
}
