//! The harness's shared parts: the command line, the `Figure` every suite reports, and the table
//! and JSON printers. A figure is always printed next to a baseline measured in the same run, so
//! the ratio survives a noisy machine.

use std::time::{Duration, Instant};

/// How a suite should run.
#[derive(Debug, Clone)]
pub struct Options {
    /// A short run (seconds, not minutes): for smoke-testing the harness, not for quoting.
    pub quick: bool,
    /// Print one JSON object per figure instead of a table.
    pub json: bool,
    /// Where benchmark data is written. Defaults to a temporary directory on the same file
    /// system as `target/`, so fsync costs are those of the project's disk.
    pub dir: Option<std::path::PathBuf>,
}

/// One measured figure and the baseline it is compared with.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Stable name, e.g. `append_nosync_100B_batch1000`.
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// Unit of `value` and `baseline`, e.g. `events/s`, `MB/s`, `ms`.
    pub unit: String,
    /// What the baseline is, in a few words.
    pub baseline_name: String,
    /// The baseline, measured in the same run, same unit.
    pub baseline: f64,
    /// `value / baseline` unless the figure says otherwise (e.g. a p99 ratio).
    pub ratio: f64,
    /// The target the issue sets, in words (empty if none).
    pub target: String,
}

impl Figure {
    /// A figure whose ratio is `value / baseline`.
    pub fn new(
        name: &str,
        value: f64,
        unit: &str,
        baseline_name: &str,
        baseline: f64,
        target: &str,
    ) -> Self {
        let ratio = if baseline > 0.0 {
            value / baseline
        } else {
            f64::NAN
        };
        Figure {
            name: name.to_string(),
            value,
            unit: unit.to_string(),
            baseline_name: baseline_name.to_string(),
            baseline,
            ratio,
            target: target.to_string(),
        }
    }

    /// The figure as one JSON object: `{"name","value","unit","baseline","ratio", ...}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio,
            "target": self.target,
        })
        .to_string()
    }
}

/// Prints figures as a table (or JSON lines with `--json`).
pub fn print(figures: &[Figure], options: &Options) {
    if options.json {
        for figure in figures {
            println!("{}", figure.to_json());
        }
        return;
    }
    println!(
        "{:<40} {:>16} {:<10} {:>16}  {:<44} {:>7}  target",
        "figure", "value", "unit", "baseline", "baseline is", "ratio"
    );
    for f in figures {
        println!(
            "{:<40} {:>16} {:<10} {:>16}  {:<44} {:>7.2}  {}",
            f.name,
            human(f.value),
            f.unit,
            human(f.baseline),
            f.baseline_name,
            f.ratio,
            f.target
        );
    }
}

fn human(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

/// Runs `step` repeatedly for at least `duration` (and at least once); returns the number of
/// calls and the elapsed time.
pub fn run_for(duration: Duration, mut step: impl FnMut()) -> (u64, Duration) {
    let started = Instant::now();
    let mut calls = 0u64;
    loop {
        step();
        calls += 1;
        let elapsed = started.elapsed();
        if elapsed >= duration {
            return (calls, elapsed);
        }
    }
}

/// The `p`th percentile (0.0..=100.0) of `samples`, sorted in place.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// The median of `samples` (sorted in place); NaN if there are none.
pub fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}

/// A scratch directory for one suite's data, removed when dropped.
pub fn scratch_dir(options: &Options) -> tempfile::TempDir {
    match &options.dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("weir-bench-")
            .tempdir_in(dir),
        None => tempfile::Builder::new()
            .prefix("weir-bench-")
            .tempdir_in(env!("CARGO_MANIFEST_DIR")),
    }
    .unwrap_or_else(|error| panic!("cannot create a scratch directory for the benchmark: {error}"))
}
