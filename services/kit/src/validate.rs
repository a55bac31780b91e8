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

/// The grade names the app may send instead of the number, in grade order: `pre_k` is -1,
/// `kindergarten` 0, `grade_1` to `grade_12` 1 to 12.
pub const GRADE_NAMES: [&str; 14] = [
    "pre_k",
    "kindergarten",
    "grade_1",
    "grade_2",
    "grade_3",
    "grade_4",
    "grade_5",
    "grade_6",
    "grade_7",
    "grade_8",
    "grade_9",
    "grade_10",
    "grade_11",
    "grade_12",
];

/// The school grade a grade name stands for.
pub fn grade_from_name(name: &str) -> Result<i32, Invalid> {
    GRADE_NAMES
        .iter()
        .position(|known| *known == name)
        .map(|i| i as i32 + GRADES.start())
        .ok_or_else(|| Invalid {
            field: "grade_level",
            message: "grade_level must be pre_k, kindergarten, grade_1 ... grade_12, or a \
                      number from -1 to 12"
                .to_owned(),
        })
}

/// The name of a school grade (`None` outside [`GRADES`]).
pub fn grade_name(grade_level: i32) -> Option<&'static str> {
    let index = usize::try_from(grade_level - GRADES.start()).ok()?;
    GRADE_NAMES.get(index).copied()
}

/// A child's level when none was given.
pub const DEFAULT_LEVEL: &str = "beginner";
/// Longest level name, in bytes.
pub const MAX_LEVEL_BYTES: usize = 32;

/// Where a child stands (`beginner`, `intermediate`, …): 1 to [`MAX_LEVEL_BYTES`] lowercase
/// ASCII letters, digits and underscores, so the app can match it as a key.
pub fn current_level(level: &str) -> Result<&str, Invalid> {
    let ok = !level.is_empty()
        && level.len() <= MAX_LEVEL_BYTES
        && level.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(level)
    } else {
        Err(Invalid {
            field: "current_level",
            message: format!(
                "current_level must be 1-{MAX_LEVEL_BYTES} lowercase letters, digits or underscores"
            ),
        })
    }
}

/// Longest locale tag, in bytes.
pub const MAX_LOCALE_BYTES: usize = 35;

/// A BCP 47 language tag (`en`, `en-IN`, `zh-Hant-TW`): a 2-3 letter language, then subtags of
/// 1-8 letters or digits, joined by `-` (`_` is taken as `-`). Empty clears it.
pub fn locale(tag: &str) -> Result<String, Invalid> {
    let tag = tag.trim().replace('_', "-");
    if tag.is_empty() {
        return Ok(tag);
    }
    let mut parts = tag.split('-');
    let language = parts.next().unwrap_or_default();
    let ok = tag.len() <= MAX_LOCALE_BYTES
        && (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_alphabetic())
        && parts
            .all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if ok {
        Ok(tag)
    } else {
        Err(Invalid {
            field: "locale",
            message: "locale must be a language tag such as en or en-IN".to_owned(),
        })
    }
}

/// Longest time zone name, in bytes.
pub const MAX_TIMEZONE_BYTES: usize = 64;

/// An IANA time zone name (`Asia/Kolkata`, `America/Argentina/Buenos_Aires`, `UTC`,
/// `Etc/GMT+5`): parts of letters, digits, `_`, `+` and `-`, joined by `/`, each starting with a
/// letter. Empty clears it.
pub fn timezone(name: &str) -> Result<&str, Invalid> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(name);
    }
    let ok = name.len() <= MAX_TIMEZONE_BYTES
        && name.split('/').all(|part| {
            part.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-".contains(&b))
        });
    if ok {
        Ok(name)
    } else {
        Err(Invalid {
            field: "timezone",
            message: "timezone must be an IANA time zone such as Asia/Kolkata".to_owned(),
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
    fn grade_names_stand_for_the_numbers_both_ways() {
        assert_eq!(grade_from_name("pre_k"), Ok(-1));
        assert_eq!(grade_from_name("kindergarten"), Ok(0));
        assert_eq!(grade_from_name("grade_1"), Ok(1));
        assert_eq!(grade_from_name("grade_12"), Ok(12));
        for grade in GRADES {
            assert_eq!(grade_from_name(grade_name(grade).unwrap()), Ok(grade));
        }
        assert_eq!(grade_name(-2), None);
        assert_eq!(grade_name(13), None);
        for bad in ["", "Pre_K", "grade_0", "grade_13", "k", "1"] {
            assert_eq!(grade_from_name(bad).unwrap_err().field, "grade_level", "{bad:?}");
        }
    }

    #[test]
    fn levels_are_short_lowercase_keys() {
        assert_eq!(current_level("beginner"), Ok("beginner"));
        assert_eq!(current_level("level_2"), Ok("level_2"));
        for bad in ["", "Beginner", "be ginner", &"a".repeat(33), "très"] {
            assert_eq!(current_level(bad).unwrap_err().field, "current_level", "{bad:?}");
        }
    }

    #[test]
    fn locales_are_language_tags() {
        assert_eq!(locale("en-IN").as_deref(), Ok("en-IN"));
        assert_eq!(locale(" en_US ").as_deref(), Ok("en-US"));
        assert_eq!(locale("zh-Hant-TW").as_deref(), Ok("zh-Hant-TW"));
        assert_eq!(locale("").as_deref(), Ok(""));
        for bad in ["e", "english", "en-", "en--IN", "en-IN!", &format!("en-{}", "a".repeat(40))] {
            assert_eq!(locale(bad).unwrap_err().field, "locale", "{bad:?}");
        }
    }

    #[test]
    fn time_zones_are_iana_names() {
        for good in ["Asia/Kolkata", "America/Argentina/Buenos_Aires", "UTC", "Etc/GMT+5"] {
            assert_eq!(timezone(good), Ok(good));
        }
        assert_eq!(timezone(" "), Ok(""));
        for bad in ["Asia/", "/UTC", "Asia Kolkata", "+05:30", "Asia/../etc"] {
            assert_eq!(timezone(bad).unwrap_err().field, "timezone", "{bad:?}");
        }
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
