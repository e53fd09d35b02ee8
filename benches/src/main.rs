//! weir's benchmark harness: `cargo run --release -p weir-bench -- <suite> [--quick] [--json]`.
//!
//! Suites: `log` (issue 2), `offsets` (issue 3), `batch` (issue 4), `store` (issue 5), `node` (issue 6), `abuse` (issue 8). Each prints its figures next to a baseline
//! measured in the same run; see `docs/testing.md` for what each figure means.

mod abuse;
mod batch;
mod harness;
mod log;
mod node;
mod offsets;
mod store;

use harness::Options;

fn main() {
    let mut suites = Vec::new();
    let mut options = Options {
        quick: false,
        json: false,
        dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--json" => options.json = true,
            "--dir" => match args.next() {
                Some(dir) => options.dir = Some(dir.into()),
                None => usage("--dir needs a directory"),
            },
            "-h" | "--help" => usage(""),
            suite if !suite.starts_with('-') => suites.push(suite.to_string()),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if suites.is_empty() {
        usage("name a suite");
    }
    for suite in suites {
        let figures = match suite.as_str() {
            "log" => log::run(&options),
            "offsets" => offsets::run(&options),
            "batch" => batch::run(&options),
            "store" => store::run(&options),
            "node" => node::run(&options),
            "abuse" => abuse::run(&options),
            other => usage(&format!("unknown suite {other}")),
        };
        harness::print(&figures, &options);
    }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("weir-bench: {problem}");
    }
    eprintln!(
        "usage: weir-bench <log|offsets|batch|store|node|abuse>... [--quick] [--json] [--dir DIR]"
    );
    std::process::exit(if problem.is_empty() { 0 } else { 2 });
}
