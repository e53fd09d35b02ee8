//! Rate limits for the log lines that clients can cause at will: a handshake with a wrong token,
//! a malformed frame, a client that does not read its responses, a failing accept under a
//! connection flood. One such line per event let a few unauthenticated clients write 28,000
//! warnings in 20 s (issue 16). Now the first [`BURST`] lines of each kind in a [`WINDOW`] are
//! logged; the rest are counted, and the count is logged with the next line that is let through,
//! or by the node's periodic report ([`Noise::report`]) once the window is over:
//! "… (1,234 more like this suppressed in the last 10 s)". The metrics keep the exact counts
//! (`weir_node_connections_closed_total{reason}`, `weir_node_frames_invalid_total{code}`).
//!
//! [`RateLimit`] is a pure state machine: time is an argument, so its tests use their own clock.
//! It keeps one invariant: every event is either logged or counted once as suppressed, and every
//! suppressed count is reported once.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Lines of one kind logged per window before the rest are counted instead.
pub(crate) const BURST: u32 = 5;

/// The rate limit's window.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);

/// The rate limit of one kind of log line.
#[derive(Debug, Clone)]
pub(crate) struct RateLimit {
    window: Duration,
    burst: u32,
    /// When the current window started (with the first line in it).
    started: Option<Instant>,
    /// Lines logged in the current window.
    logged: u32,
    /// Lines suppressed and not yet reported, since the first of them.
    suppressed: u64,
    suppressed_since: Option<Instant>,
}

/// Lines that were suppressed, to say so: how many, over how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Suppressed {
    pub count: u64,
    pub over: Duration,
}

impl RateLimit {
    /// `burst` lines per `window`.
    pub(crate) fn new(window: Duration, burst: u32) -> RateLimit {
        RateLimit {
            window,
            burst,
            started: None,
            logged: 0,
            suppressed: 0,
            suppressed_since: None,
        }
    }

    /// One event at `now`: `Some` if its line is to be logged (with the lines suppressed before
    /// it, if any, to report with it), `None` if it is counted instead.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<Option<Suppressed>> {
        if self.window_over(now) {
            self.started = Some(now);
            self.logged = 0;
        }
        if self.logged < self.burst {
            self.logged += 1;
            return Some(self.take(now));
        }
        self.suppressed += 1;
        self.suppressed_since.get_or_insert(now);
        None
    }

    /// For a periodic report: the lines suppressed in a window that is over by `now` (each
    /// count is reported once, here or with the next line let through).
    pub(crate) fn report(&mut self, now: Instant) -> Option<Suppressed> {
        if self.window_over(now) {
            self.take(now)
        } else {
            None
        }
    }

    fn window_over(&self, now: Instant) -> bool {
        self.started
            .is_none_or(|started| now.saturating_duration_since(started) >= self.window)
    }

    fn take(&mut self, now: Instant) -> Option<Suppressed> {
        let since = self.suppressed_since.take()?;
        let count = std::mem::take(&mut self.suppressed);
        assert!(count > 0, "a suppressed line has a start");
        Some(Suppressed {
            count,
            over: now.saturating_duration_since(since),
        })
    }
}

impl fmt::Display for Suppressed {
    /// " (1,234 more like this suppressed in the last 10 s)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.count.to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        // Whole seconds, rounded up: "in the last 0 s" would read as "none".
        let seconds = self.over.as_secs() + u64::from(self.over.subsec_nanos() > 0);
        write!(
            f,
            " ({grouped} more like this suppressed in the last {} s)",
            seconds.max(1)
        )
    }
}

/// The node's noisy kinds of log lines, each with its rate limit.
#[derive(Debug)]
pub(crate) struct Noise {
    limits: Mutex<[RateLimit; Kind::COUNT]>,
}

/// A kind of log line clients can cause at will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A handshake with a wrong or missing token (warn).
    BadToken,
    /// A malformed frame after the handshake (info).
    MalformedFrame,
    /// A client that did not read its responses within the write deadline (info).
    WriteTimeout,
    /// An accept that failed (out of file descriptors, say) (warn).
    AcceptFailed,
}

impl Kind {
    const COUNT: usize = 4;
    const ALL: [Kind; Kind::COUNT] = [
        Kind::BadToken,
        Kind::MalformedFrame,
        Kind::WriteTimeout,
        Kind::AcceptFailed,
    ];

    /// The kind's message (the same words as its lines).
    fn message(self) -> &'static str {
        match self {
            Kind::BadToken => "handshake with a wrong or missing token",
            Kind::MalformedFrame => "a malformed frame",
            Kind::WriteTimeout => {
                "a client did not read its responses within the write timeout; closing"
            }
            Kind::AcceptFailed => "accept failed",
        }
    }

    /// The `kind` labels of `weir_node_log_lines_suppressed_total`.
    pub(crate) const LABELS: [&'static str; Kind::COUNT] = [
        Kind::BadToken.label(),
        Kind::MalformedFrame.label(),
        Kind::WriteTimeout.label(),
        Kind::AcceptFailed.label(),
    ];

    const fn label(self) -> &'static str {
        match self {
            Kind::BadToken => "bad_token",
            Kind::MalformedFrame => "malformed_frame",
            Kind::WriteTimeout => "write_timeout",
            Kind::AcceptFailed => "accept_failed",
        }
    }
}

impl Default for Noise {
    fn default() -> Noise {
        Noise {
            limits: Mutex::new(std::array::from_fn(|_| RateLimit::new(WINDOW, BURST))),
        }
    }
}

impl Noise {
    /// One event of `kind` now: `Some` (with what was suppressed before it, to say so) if its
    /// line is to be logged, `None` if it is counted instead.
    pub(crate) fn allow(&self, kind: Kind) -> Option<SuppressedNote> {
        let verdict = self.lock()[kind as usize].allow(Instant::now());
        if verdict.is_none() {
            metrics::counter!("weir_node_log_lines_suppressed_total", "kind" => kind.label())
                .increment(1);
        }
        verdict.map(SuppressedNote)
    }

    /// Logs how many lines of each kind were suppressed in windows that are over (run every
    /// [`WINDOW`]).
    pub(crate) fn report(&self) {
        let now = Instant::now();
        let reports: Vec<(Kind, Suppressed)> = {
            let mut limits = self.lock();
            Kind::ALL
                .iter()
                .filter_map(|&kind| Some((kind, limits[kind as usize].report(now)?)))
                .collect()
        };
        for (kind, suppressed) in reports {
            let (message, count) = (kind.message(), suppressed.count);
            match kind {
                Kind::BadToken | Kind::AcceptFailed => {
                    tracing::warn!(suppressed = count, "{message}{suppressed}");
                }
                Kind::MalformedFrame | Kind::WriteTimeout => {
                    tracing::info!(suppressed = count, "{message}{suppressed}");
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [RateLimit; Kind::COUNT]> {
        self.limits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reports suppressed lines every [`WINDOW`], until the task is dropped.
    pub(crate) async fn report_every_window(self: std::sync::Arc<Self>) {
        let mut ticks = tokio::time::interval(WINDOW);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.report();
        }
    }
}

/// What to append to a line let through: nothing, or how many like it were suppressed before it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SuppressedNote(Option<Suppressed>);

impl fmt::Display for SuppressedNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(suppressed) => suppressed.fmt(f),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_lines_of_a_window_pass_and_the_rest_are_counted() {
        let start = Instant::now();
        let mut limit = RateLimit::new(10 * SECOND, 3);
        for i in 0..3 {
            assert_eq!(limit.allow(start + i * SECOND), Some(None), "line {i}");
        }
        for i in 0..1234 {
            assert_eq!(limit.allow(start + 3 * SECOND + i * SECOND / 1000), None);
        }
        // Not reported before the window is over.
        assert_eq!(limit.report(start + 9 * SECOND), None);
        // The next window's first line says how many were suppressed.
        let next = limit.allow(start + 10 * SECOND);
        assert_eq!(
            next,
            Some(Some(Suppressed {
                count: 1234,
                over: 7 * SECOND
            }))
        );
        // Reported once only.
        assert_eq!(limit.report(start + 30 * SECOND), None);
    }

    #[test]
    fn a_quiet_spell_after_a_burst_is_reported_once() {
        let start = Instant::now();
        let mut limit = RateLimit::new(10 * SECOND, 1);
        assert_eq!(limit.allow(start), Some(None));
        assert_eq!(limit.allow(start + SECOND), None);
        assert_eq!(limit.allow(start + 2 * SECOND), None);
        assert_eq!(limit.report(start + 5 * SECOND), None, "window not over");
        assert_eq!(
            limit.report(start + 10 * SECOND),
            Some(Suppressed {
                count: 2,
                over: 9 * SECOND
            })
        );
        assert_eq!(limit.report(start + 20 * SECOND), None);
        // A new window starts with its first line.
        assert_eq!(limit.allow(start + 21 * SECOND), Some(None));
    }

    #[test]
    fn the_note_reads_well() {
        let note = |count, over| Suppressed { count, over }.to_string();
        assert_eq!(
            note(1234, 10 * SECOND),
            " (1,234 more like this suppressed in the last 10 s)"
        );
        assert_eq!(
            note(1, SECOND / 10),
            " (1 more like this suppressed in the last 1 s)"
        );
        assert_eq!(
            note(1_234_567, 9 * SECOND + SECOND / 2),
            " (1,234,567 more like this suppressed in the last 10 s)"
        );
        assert_eq!(SuppressedNote(None).to_string(), "");
    }
}
