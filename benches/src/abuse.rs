//! The abuse suite (issue 8): a release `weir serve` under the abusive clients of
//! `crates/node/tests/abuse_driver` (the same scenarios `tests/abuse.rs` asserts on), while a
//! well-behaved client produces and consumes. Figures: the good client's p50/p99 under abuse
//! next to its undisturbed values measured in the same run (target: p99 within 3×), the node's
//! peak RSS next to its undisturbed RSS, its peak RSS with 4, 16 and 64 clients that never read
//! their responses and its RSS after they are gone (issue 16), each next to the idle node's RSS,
//! and how fast the node closed each kind of abuser.
//!
//! Needs the release binary: `cargo build --release -p weir-node` (looked up next to this
//! harness's own executable).

use crate::harness::{Figure, Options};

#[path = "../../crates/node/tests/abuse_driver/mod.rs"]
mod driver;

/// Runs the abuse suite.
pub fn run(options: &Options) -> Vec<Figure> {
    let Some(binary) = node_binary() else {
        eprintln!("abuse: build the node first (cargo build --release -p weir-node); skipped");
        return Vec::new();
    };
    let mut settings = driver::Settings::issue();
    if !options.quick {
        settings.undisturbed = std::time::Duration::from_secs(4);
        settings.gap = std::time::Duration::from_secs(2);
    }
    let report = driver::run(&binary, &settings);
    eprintln!("{}", report.render());
    let mut figures = Vec::new();
    for (name, undisturbed, abused) in [
        (
            "produce",
            report.produce_undisturbed,
            report.produce_under_abuse,
        ),
        (
            "consume",
            report.consume_undisturbed,
            report.consume_under_abuse,
        ),
    ] {
        figures.push(Figure::new(
            &format!("abuse_good_{name}_p50"),
            abused.p50_ms,
            "ms",
            "same client, undisturbed",
            undisturbed.p50_ms,
            "reported",
        ));
        figures.push(Figure::new(
            &format!("abuse_good_{name}_p99"),
            abused.p99_ms,
            "ms",
            "same client, undisturbed",
            undisturbed.p99_ms,
            "<= 3x",
        ));
    }
    figures.push(Figure::new(
        "abuse_good_errors",
        report.good_errors.len() as f64,
        "errors",
        "operations under abuse",
        (report.produce_under_abuse.count + report.consume_under_abuse.count) as f64,
        "0",
    ));
    figures.push(Figure::new(
        "abuse_node_peak_rss",
        report.rss_peak_mib,
        "MiB",
        "node RSS, undisturbed",
        report.rss_undisturbed_mib,
        "bounded",
    ));
    // Issue 16: the node's memory under clients that never read their responses, next to the
    // idle node's, and once they are gone (after the undisturbed gap that follows).
    for scenario in &report.scenarios {
        let Some(count) = scenario.name.strip_prefix("never_reading_") else {
            continue;
        };
        figures.push(Figure::new(
            &format!("node_rss_peak_{count}_never_readers_mib"),
            scenario.rss_peak_mib,
            "MiB",
            "node RSS, idle",
            report.rss_undisturbed_mib,
            "< 256 MiB",
        ));
        figures.push(Figure::new(
            &format!("node_rss_after_{count}_never_readers_mib"),
            scenario.rss_after_mib,
            "MiB",
            "node RSS, idle",
            report.rss_undisturbed_mib,
            "<= 2x idle",
        ));
    }
    for scenario in &report.scenarios {
        let bound_ms = scenario.close_bound.as_secs_f64() * 1000.0;
        let mut figure = Figure::new(
            &format!("abuse_{}_close_max", scenario.name),
            scenario.close_max.as_secs_f64() * 1000.0,
            "ms",
            "its deadline + slack",
            bound_ms,
            &format!(
                "{}/{} as specified",
                scenario.as_expected, scenario.attempted
            ),
        );
        if scenario.failures.is_empty() && scenario.as_expected == scenario.attempted {
            figure.target.push_str(" (all)");
        }
        figures.push(figure);
    }
    figures
}

/// The release `weir` next to this executable (`target/release/`).
fn node_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let binary = exe.parent()?.join("weir");
    binary.exists().then_some(binary)
}
