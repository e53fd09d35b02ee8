//! Giving memory back to the operating system once connections that held large buffers are gone.
//!
//! The buffer budget (`buffers.rs`) bounds what connections hold; this module makes sure that
//! what they held is *returned* when they go. glibc's allocator keeps freed memory in its
//! arenas (one per thread, up to 8 per core) and returns it only from the top of a heap: after
//! large buffers were freed in the middle, the node's resident size stayed where it had peaked
//! (64 never-reading connections: 1.5 GiB still held after they had gone; `docs/testing.md`,
//! "Abusive clients"). Its dynamic mmap threshold makes it worse: once a buffer of a few hundred
//! KiB has been freed, buffers of that size come from the arenas instead of their own mappings.
//! `malloc_trim` walks every arena and gives back each free page. What it cannot give back is a
//! page with anything alive on it, and the more arenas, the more such pages: with glibc's 8 per
//! core, 64 never-reading clients left the node at 2.6× its idle RSS after a trim, with 2 per core
//! at 1.5× (and its peak 15% lower). So the node also caps the arenas at `ARENAS_PER_CORE` per
//! core, before it starts its threads ([`limit_arenas`]).
//!
//! Every connection asks for a trim when it closes; one trim runs [`TRIM_DELAY`] after the first
//! request, for all the closes that came in between, and trims are at least
//! [`TRIM_INTERVAL_MIN`] apart (each walks every arena: a few milliseconds with a large heap).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// How long a trim waits for other connections to go too (many abusers go at once).
const TRIM_DELAY: Duration = Duration::from_millis(200);

/// The shortest time between two trims.
const TRIM_INTERVAL_MIN: Duration = Duration::from_secs(1);

/// Trims the allocator's free memory soon after it is asked to.
#[derive(Debug, Default)]
pub(crate) struct Trimmer {
    wanted: Notify,
}

impl Trimmer {
    /// Asks for a trim (requests made while one waits are served by it).
    pub(crate) fn request(&self) {
        self.wanted.notify_one();
    }

    /// Runs the trims until the task is dropped.
    pub(crate) async fn run(self: Arc<Self>) {
        loop {
            self.wanted.notified().await;
            tokio::time::sleep(TRIM_DELAY).await;
            // Walking the arenas takes a few milliseconds: not on a runtime thread.
            let _ = tokio::task::spawn_blocking(release_free_memory).await;
            tokio::time::sleep(TRIM_INTERVAL_MIN.saturating_sub(TRIM_DELAY)).await;
        }
    }
}

/// glibc's arenas per core in the node (its default is 8).
const ARENAS_PER_CORE: usize = 2;

/// Caps glibc's arenas at 2 per core (`ARENAS_PER_CORE`): to be called before the process starts
/// its threads (an arena is made for a thread that finds the others busy). Elsewhere than
/// glibc, nothing to do.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn limit_arenas() {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let arenas = i32::try_from(cores * ARENAS_PER_CORE).unwrap_or(i32::MAX);
    // SAFETY: `mallopt` takes two integers and changes a tunable of glibc's allocator under
    // its own lock; M_ARENA_MAX only bounds how many arenas later allocations may create. No
    // pointer, no precondition. As for `malloc_trim` below, an FFI call is the only way to
    // reach this setting (short of an environment variable read before `main`).
    #[allow(
        unsafe_code,
        reason = "an FFI call without preconditions; see the SAFETY comment"
    )]
    let _set = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
}

/// Caps glibc's arenas (elsewhere than glibc, nothing to do).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_arenas() {}

/// Gives the allocator's free pages back to the operating system (glibc on Linux; elsewhere
/// nothing to do).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn release_free_memory() {
    // SAFETY: `malloc_trim` takes no pointer and has no precondition: it locks each of
    // glibc's arenas in turn and returns its free pages (madvise), which is sound from any
    // thread at any time, concurrently with allocations. The workspace denies unsafe code;
    // this FFI call is the only way to make glibc give back memory freed in the middle of its
    // heaps, and its argument (bytes to keep at a heap's top) is a plain integer.
    #[allow(
        unsafe_code,
        reason = "an FFI call without preconditions; see the SAFETY comment"
    )]
    let _released = unsafe { libc::malloc_trim(0) };
}

/// Gives the allocator's free pages back to the operating system (glibc on Linux; elsewhere
/// nothing to do).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory() {}
