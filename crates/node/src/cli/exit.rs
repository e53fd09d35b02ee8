//! Exit codes and the one-line error.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (`verify`: clean) |
//! | 1 | an error, said in one line on stderr (`verify`: repairable) |
//! | 2 | `verify`: corrupt |
//! | 3 | `verify`/`repair`: the check could not run (no such directory, in use, I/O) |
//! | 64 | a usage error: an unknown flag, a bad value (`EX_USAGE` of sysexits.h) |

use std::fmt;

/// An error: one line on stderr.
pub(crate) const ERROR: i32 = 1;
/// `verify`: the check could not run.
pub(crate) const CANNOT_CHECK: i32 = 3;
/// A usage error (bad flag or value).
pub(crate) const USAGE: i32 = 64;

/// An error that carries its own exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The exit code.
    pub code: i32,
    /// The message (one line).
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A usage error: a bad value the user gave.
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    Failure {
        code: USAGE,
        message: message.into(),
    }
    .into()
}

/// An error with a chosen exit code.
pub(crate) fn with_code(code: i32, message: impl Into<String>) -> anyhow::Error {
    Failure {
        code,
        message: message.into(),
    }
    .into()
}

/// Prints `weir: <error>` as one line on stderr and exits with the error's code.
pub(crate) fn fail(error: &anyhow::Error) -> ! {
    // The program reading stdout went away (`weir ... | head`): nothing to say to anyone.
    let broken_pipe = error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe && error.downcast_ref::<Failure>().is_none() {
        std::process::exit(0)
    }
    let code = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Failure>())
        .map_or(ERROR, |failure| failure.code);
    let corrupt = error.chain().any(|cause| {
        cause
            .downcast_ref::<weir_client::Error>()
            .is_some_and(|e| e.code() == Some(weir_client::ErrorCode::Corruption))
    });
    let hint = if corrupt {
        " (stop the node and run `weir verify --data-dir DIR` on its data directory)"
    } else {
        ""
    };
    eprintln!("weir: {}{hint}", one_line(&format!("{error:#}")));
    std::process::exit(code)
}

/// Help and version go to stdout with code 0; anything else is a usage error, in one line.
pub(crate) fn clap_error(error: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => error.exit(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{}", error.render());
            std::process::exit(USAGE)
        }
        _ => {}
    }
    let text = error.render().to_string();
    // clap's message is the first paragraph; usage and tips follow a blank line.
    let message = text.split("\n\n").next().unwrap_or_default();
    let message = message.trim().trim_start_matches("error:").trim();
    eprintln!("weir: {} (see --help)", one_line(message));
    std::process::exit(USAGE)
}

/// Joins lines and runs of spaces, so an error is always one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
