//! The rules for the names and grades people type, owned here so the edge and the store agree:
//! the gateway answers `VALIDATION_ERROR` with the field and the message, the session-service
//! `INVALID_ARGUMENT` with the same message.

use std::fmt;
use std::ops::RangeInclusive;

/// Longest child name, in characters.
pub const MAX_CHILD_NAME_CHARS: usize = 64;
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 128;
/// School grades: -1 = preschool, 0 = kindergarten, up to 12.
pub const GRADES: RangeInclusive<i32> = -1..=12;

/// A value that breaks its field's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field, as the request names it.
    pub field: &'static str,
    /// What the rule is, for the person who typed it.
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Invalid {}

/// A child's name, trimmed: 1 to [`MAX_CHILD_NAME_CHARS`] printable characters.
pub fn child_name(name: &str) -> Result<&str, Invalid> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_CHILD_NAME_CHARS || has_control(name) {
        return Err(Invalid {
            field: "name",
            message: format!("name must be 1-{MAX_CHILD_NAME_CHARS} printable characters"),
        });
    }
    Ok(name)
}

/// A display name, trimmed: at most [`MAX_DISPLAY_NAME_CHARS`] printable characters (empty
/// clears it).
pub fn display_name(name: &str) -> Result<&str, Invalid> {
    let name = name.trim();
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS || has_control(name) {
        return Err(Invalid {
            field: "display_name",
            message: format!(
                "display_name must be at most {MAX_DISPLAY_NAME_CHARS} printable characters"
            ),
        });
    }
    Ok(name)
}

/// A school grade within [`GRADES`].
pub fn grade_level(grade_level: i32) -> Result<i32, Invalid> {
    if GRADES.contains(&grade_level) {
        Ok(grade_level)
    } else {
        Err(Invalid {
            field: "grade_level",
            message: format!("grade_level must be between {} and {}", GRADES.start(), GRADES.end()),
        })
    }
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_names_are_trimmed_and_bounded() {
        assert_eq!(child_name("  Mia "), Ok("Mia"));
        assert_eq!(child_name(&"é".repeat(64)).map(str::len), Ok(128));
        for bad in ["", "   ", &"a".repeat(65), "Mia\u{0}", "Mi\na"] {
            let err = child_name(bad).unwrap_err();
            assert_eq!(err.field, "name", "{bad:?}");
            assert_eq!(err.message, "name must be 1-64 printable characters");
        }
    }

    #[test]
    fn display_names_may_be_empty_but_not_long_or_controlled() {
        assert_eq!(display_name(" Sam "), Ok("Sam"));
        assert_eq!(display_name(""), Ok(""));
        assert!(display_name(&"a".repeat(129)).is_err());
        let err = display_name("a\u{7}").unwrap_err();
        assert_eq!(err.field, "display_name");
        assert_eq!(err.message, "display_name must be at most 128 printable characters");
    }

    #[test]
    fn grades_run_from_preschool_to_twelve() {
        assert_eq!(grade_level(-1), Ok(-1));
        assert_eq!(grade_level(12), Ok(12));
        for bad in [-2, 13, i32::MAX] {
            assert_eq!(
                grade_level(bad).unwrap_err().message,
                "grade_level must be between -1 and 12"
            );
        }
    }
}
