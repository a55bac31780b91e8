//! Times as the service holds them: a typed UTC instant, formatted only where it leaves the
//! service (RFC 3339 in the stores' documents, Unix milliseconds in gRPC).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// An instant in UTC, to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Now, to the millisecond (so a stored and re-read time compares equal).
    pub fn now() -> Self {
        Self::from_unix_ms(Self(OffsetDateTime::now_utc()).unix_ms())
    }

    /// From Unix milliseconds (the Unix epoch when out of range).
    pub fn from_unix_ms(ms: i64) -> Self {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Self(at)
    }

    /// Unix milliseconds, as gRPC carries times.
    pub fn unix_ms(self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000_000) as i64
    }
}

/// RFC 3339 in UTC with exactly three fractional digits (`2026-11-22T10:00:00.123Z`): fixed
/// width, so stored times also sort as text.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        let text = self.0.to_offset(UtcOffset::UTC).format(FORMAT).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

/// Any RFC 3339 time.
impl FromStr for Timestamp {
    type Err = time::error::Parse;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        OffsetDateTime::parse(text, &Rfc3339).map(|at| Self(at.to_offset(UtcOffset::UTC)))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_milliseconds_and_text() {
        let at = Timestamp::from_unix_ms(1_763_788_800_123);
        assert_eq!(at.unix_ms(), 1_763_788_800_123);
        assert_eq!(at.to_string(), "2025-11-22T05:20:00.123Z");
        assert_eq!("2025-11-22T05:20:00.123Z".parse::<Timestamp>().unwrap(), at);
        assert_eq!("2025-11-22T06:20:00.123+01:00".parse::<Timestamp>().unwrap(), at);
        let json = serde_json::to_string(&at).unwrap();
        assert_eq!(json, "\"2025-11-22T05:20:00.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), at);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }

    #[test]
    fn now_is_whole_milliseconds_and_text_sorts_like_time() {
        let now = Timestamp::now();
        assert_eq!(Timestamp::from_unix_ms(now.unix_ms()), now);
        let earlier = Timestamp::from_unix_ms(now.unix_ms() - 1);
        assert!(earlier < now && earlier.to_string() < now.to_string());
    }
}
