//! Names of groups and topics: the one rule, shared with the store (which uses it for topics,
//! whose names become directory names).
//!
//! A valid name matches `[A-Za-z0-9._-]{1,249}` and is neither `.` nor `..`. The keys of the
//! offsets tree rely on this: a valid name never contains the byte `0x00`, which `keys` uses as
//! the terminator after each name.

use std::fmt;

/// The longest valid name, in bytes (every valid character is one byte).
pub const NAME_BYTES_MAX: usize = 249;

/// The rule, in words, as error messages quote it.
pub const NAME_RULE: &str = "names match [A-Za-z0-9._-]{1,249} and are not \".\" or \"..\"";

/// How much of a rejected name an error message quotes before eliding the rest, so that a
/// megabyte of garbage does not become a megabyte of log line.
const QUOTED_CHARS_MAX: usize = 64;

/// Checks a group or topic name against [`NAME_RULE`].
///
/// # Errors
///
/// [`InvalidName`] naming the rejected name and what is wrong with it.
///
/// # Examples
///
/// ```
/// use weir_offsets::validate_name;
///
/// assert!(validate_name("orders.v2_eu-west").is_ok());
/// let error = validate_name("orders/eu").unwrap_err();
/// assert!(error.to_string().contains("\"orders/eu\""));
/// ```
pub fn validate_name(name: &str) -> Result<(), InvalidName> {
    let problem = if name.is_empty() {
        Some(NameProblem::Empty)
    } else if name.len() > NAME_BYTES_MAX {
        Some(NameProblem::TooLong { bytes: name.len() })
    } else if name == "." || name == ".." {
        Some(NameProblem::Dots)
    } else {
        name.char_indices()
            .find(|&(_, c)| !is_name_char(c))
            .map(|(at, character)| NameProblem::Character { character, at })
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(InvalidName {
            name: quote(name),
            problem,
        }),
    }
}

/// Whether `c` may appear in a name.
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'
}

/// `name` in quotes with escapes, elided after [`QUOTED_CHARS_MAX`] characters.
fn quote(name: &str) -> String {
    let total = name.chars().count();
    if total <= QUOTED_CHARS_MAX {
        format!("{name:?}")
    } else {
        let head: String = name.chars().take(QUOTED_CHARS_MAX).collect();
        format!("{head:?}… ({} bytes)", name.len())
    }
}

/// A name that breaks [`NAME_RULE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} is not a valid name ({problem}); {NAME_RULE}")]
pub struct InvalidName {
    /// The rejected name, quoted and escaped (and elided if long).
    name: String,
    problem: NameProblem,
}

impl InvalidName {
    /// The rejected name, quoted and escaped (and elided if it is long).
    pub fn quoted_name(&self) -> &str {
        &self.name
    }

    /// What is wrong with the name.
    pub fn problem(&self) -> &NameProblem {
        &self.problem
    }
}

/// What is wrong with a name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name is longer than [`NAME_BYTES_MAX`].
    TooLong {
        /// Its length in bytes.
        bytes: usize,
    },
    /// The name is `.` or `..`.
    Dots,
    /// The name holds a character outside `[A-Za-z0-9._-]`.
    Character {
        /// The first such character.
        character: char,
        /// Its byte position in the name.
        at: usize,
    },
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameProblem::Empty => write!(f, "it is empty"),
            NameProblem::TooLong { bytes } => {
                write!(f, "it is {bytes} bytes long, the limit is {NAME_BYTES_MAX}")
            }
            NameProblem::Dots => write!(f, "\".\" and \"..\" are reserved"),
            NameProblem::Character { character, at } => {
                write!(f, "character {character:?} at byte {at} is not allowed")
            }
        }
    }
}

/// Which kind of name a usage error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameKind {
    /// A consumer group's name.
    Group,
    /// A topic's name.
    Topic,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Group => "group",
            NameKind::Topic => "topic",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_allowed_character_and_the_longest_name() {
        assert_eq!(validate_name("AZaz09._-"), Ok(()));
        assert_eq!(validate_name("a"), Ok(()));
        assert_eq!(validate_name("..."), Ok(()));
        assert_eq!(validate_name(".hidden"), Ok(()));
        assert_eq!(validate_name(&"x".repeat(NAME_BYTES_MAX)), Ok(()));
    }

    #[test]
    fn rejects_empty_dots_long_and_bad_characters() {
        assert!(matches!(
            validate_name("").map_err(|e| e.problem),
            Err(NameProblem::Empty)
        ));
        assert!(matches!(
            validate_name(".").map_err(|e| e.problem),
            Err(NameProblem::Dots)
        ));
        assert!(matches!(
            validate_name("..").map_err(|e| e.problem),
            Err(NameProblem::Dots)
        ));
        assert!(matches!(
            validate_name(&"x".repeat(NAME_BYTES_MAX + 1)).map_err(|e| e.problem),
            Err(NameProblem::TooLong { bytes: 250 })
        ));
        for (name, character, at) in [
            ("a/b", '/', 1),
            ("a b", ' ', 1),
            ("a\0b", '\0', 1),
            ("é", 'é', 0),
            ("ok:", ':', 2),
        ] {
            assert_eq!(
                validate_name(name).map_err(|e| e.problem),
                Err(NameProblem::Character { character, at }),
                "{name:?}"
            );
        }
    }

    #[test]
    fn the_message_names_the_name_and_the_rule() {
        let message = validate_name("orders/eu").map_err(|e| e.to_string());
        assert_eq!(
            message,
            Err(
                "\"orders/eu\" is not a valid name (character '/' at byte 6 is not allowed); \
                 names match [A-Za-z0-9._-]{1,249} and are not \".\" or \"..\""
                    .to_string()
            )
        );
    }

    #[test]
    fn a_huge_name_is_elided_in_the_message() {
        let name = "/".repeat(100_000);
        let message = validate_name(&name).map_err(|e| e.to_string()).unwrap_err();
        assert!(message.len() < 400, "{message}");
        assert!(message.contains("(100000 bytes)"), "{message}");
    }
}
