//! Configuration read from environment variables, validated once at start.
//!
//! An [`EnvReader`] reads from a snapshot of variables (the process environment in production, a
//! map in tests) and collects every problem instead of stopping at the first, so an operator sees
//! all of them in one start attempt.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use secrecy::SecretString;

/// The exit code for a configuration error (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: i32 = 78;

/// Reads typed values from a set of variables and remembers every problem.
#[derive(Debug)]
pub struct EnvReader {
    vars: HashMap<String, String>,
    problems: Vec<String>,
}

/// Every problem found in one configuration, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// One line per problem, naming the variable.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.problems.len())?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl EnvReader {
    /// A reader over the process environment.
    pub fn from_env() -> Self {
        Self::from_pairs(std::env::vars())
    }

    /// A reader over the given variables (tests, or an explicit configuration).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            problems: Vec::new(),
        }
    }

    /// The raw value, treating an empty string as unset.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A string with a default.
    pub fn string(&mut self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or(default).to_owned()
    }

    /// An optional string.
    pub fn optional(&mut self, name: &str) -> Option<String> {
        self.raw(name).map(str::to_owned)
    }

    /// A secret: kept out of logs and `Debug` output.
    pub fn secret(&mut self, name: &str) -> Option<SecretString> {
        self.raw(name).map(|v| SecretString::from(v.to_owned()))
    }

    /// A value parsed with [`FromStr`]; an unparsable value is recorded and the default returned.
    pub fn parse<T>(&mut self, name: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.raw(name) {
            None => default,
            Some(raw) => match raw.trim().parse() {
                Ok(value) => value,
                Err(err) => {
                    self.problems.push(format!("{name}={raw:?}: {err}"));
                    default
                }
            },
        }
    }

    /// A boolean: `true/false`, `1/0`, `yes/no`, `on/off` (any case).
    pub fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.raw(name).map(str::to_ascii_lowercase).as_deref() {
            None => default,
            Some("true" | "1" | "yes" | "on") => true,
            Some("false" | "0" | "no" | "off") => false,
            Some(other) => {
                self.problems.push(format!("{name}={other:?}: expected true or false"));
                default
            }
        }
    }

    /// Records a problem found while validating values together.
    pub fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(message.into());
    }

    /// Checks a condition, recording `message` when it does not hold.
    pub fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(message());
        }
    }

    /// Ends reading: `Err` with every problem if there was any.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() { Ok(()) } else { Err(ConfigError { problems: self.problems }) }
    }
}

/// Prints every configuration problem to stderr and exits with [`EXIT_CONFIG`].
pub fn exit_on_error<T>(result: Result<T, ConfigError>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(EXIT_CONFIG);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut env = EnvReader::from_pairs([("A", "x"), ("B", "maybe"), ("C", "")]);
        let a: u16 = env.parse("A", 1);
        let b = env.flag("B", false);
        let c = env.string("C", "fallback");
        assert_eq!((a, b, c.as_str()), (1, false, "fallback"));
        let err = env.finish().unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.problems[0].starts_with("A="));
        assert!(err.problems[1].starts_with("B="));
    }

    #[test]
    fn values_parse() {
        let mut env = EnvReader::from_pairs([("N", " 42 "), ("F", "ON")]);
        assert_eq!(env.parse::<u32>("N", 0), 42);
        assert!(env.flag("F", false));
        assert_eq!(env.optional("MISSING"), None);
        env.finish().unwrap();
    }
}
