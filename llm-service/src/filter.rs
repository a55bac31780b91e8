//! The output filter: every sentence of Blob's reply is checked before it leaves the service.
//! A sentence with personal information (phone numbers, email addresses, street addresses) or a
//! word unfit for a young child is replaced by a gentle line in Blob's voice.

use regex::Regex;

/// What replaces a sentence that fails the filter.
pub const REPLACEMENT: &str = "Let's talk about something else!";

/// Words never said to a young child (matched as whole words, any case).
const BLOCKLIST: &[&str] = &[
    "kill", "killed", "killing", "murder", "suicide", "gun", "guns", "shoot", "shooting", "drugs",
    "cocaine", "heroin", "sex", "sexy", "porn", "naked", "damn", "hell", "shit", "fuck", "bitch",
    "bastard", "crap", "stupid", "idiot", "dumb", "hate",
];

/// The checks, compiled once.
#[derive(Debug)]
pub struct OutputFilter {
    email: Regex,
    phone: Regex,
    street: Regex,
    blocked: Regex,
}

impl Default for OutputFilter {
    fn default() -> Self {
        let words = BLOCKLIST.join("|");
        Self {
            email: Regex::new(r"(?i)[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)+").expect("valid regex"),
            phone: Regex::new(r"\+?\d[\d\s().-]{6,}\d").expect("valid regex"),
            street: Regex::new(
                r"(?i)\b\d{1,5}\s+([a-z]+\s+){1,3}(street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|way|place|pl)\b",
            )
            .expect("valid regex"),
            blocked: Regex::new(&format!(r"(?i)\b({words})\b")).expect("valid regex"),
        }
    }
}

impl OutputFilter {
    /// `Err(reason)` when the sentence must not be said.
    pub fn check(&self, sentence: &str) -> Result<(), &'static str> {
        if self.email.is_match(sentence) {
            return Err("email");
        }
        // Seven or more digits in a phone-like run: a phone number, not "3 little pigs".
        let phone = self
            .phone
            .find_iter(sentence)
            .any(|m| m.as_str().chars().filter(char::is_ascii_digit).count() >= 7);
        if phone {
            return Err("phone");
        }
        if self.street.is_match(sentence) {
            return Err("address");
        }
        if self.blocked.is_match(sentence) {
            return Err("blocklist");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_information_is_caught() {
        let filter = OutputFilter::default();
        assert_eq!(filter.check("Write to blob.fan@example.com today!"), Err("email"));
        assert_eq!(filter.check("Call me at +1 (555) 123-4567."), Err("phone"));
        assert_eq!(filter.check("Call 555 1234 567 now."), Err("phone"));
        assert_eq!(filter.check("I live at 42 Maple Leaf Street."), Err("address"));
        assert_eq!(filter.check("Come to 7 Oak Rd, okay?"), Err("address"));
    }

    #[test]
    fn unfit_words_are_caught_as_whole_words() {
        let filter = OutputFilter::default();
        assert_eq!(filter.check("That is STUPID."), Err("blocklist"));
        assert_eq!(filter.check("The knight did not kill the dragon."), Err("blocklist"));
        assert_eq!(filter.check("Let's go to the hills and skill up!"), Ok(()));
        assert_eq!(filter.check("Shell and hello are fine words."), Ok(()));
    }

    #[test]
    fn ordinary_sentences_pass() {
        let filter = OutputFilter::default();
        for sentence in [
            "Once upon a time, three little pigs built 3 houses.",
            "In 1969, people walked on the Moon!",
            "What is 12 plus 30?",
            "The dragon was 20 feet tall and very kind.",
        ] {
            assert_eq!(filter.check(sentence), Ok(()), "{sentence}");
        }
    }
}
