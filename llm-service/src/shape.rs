//! The shape of a reply a young child can follow, whatever the model wrote: at most a few short
//! sentences, each a spoken sentence (no markdown, no list markers, no emoji), and never cut in
//! the middle. The prompt asks every model for this; here it is held to it.
//!
//! Sentences arrive one at a time from the splitter. Each is cleaned ([`speakable`]), then
//! admitted while the budget lasts. Once it is spent the reply ends: the caller stops reading
//! the provider's stream (dropping it cancels the request, so no more tokens are paid for).

use std::sync::LazyLock;

use regex::Regex;

/// The limits of one reply (`REPLY_MAX_SENTENCES`, `REPLY_MAX_WORDS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyBudget {
    /// Most sentences said.
    pub max_sentences: u32,
    /// Most words said, over all sentences.
    pub max_words: usize,
}

impl Default for ReplyBudget {
    fn default() -> Self {
        Self { max_sentences: 3, max_words: 50 }
    }
}

/// What to do with one sentence of the model's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Say this (cleaned, perhaps shortened).
    Say(String),
    /// Nothing speakable in it (a rule, an emoji alone): go on to the next.
    Skip,
    /// The budget is spent: the reply ends with what was said.
    Stop,
}

/// Why a reply was cut short or a sentence changed, for the metrics.
pub mod reason {
    /// The reply reached `REPLY_MAX_SENTENCES`.
    pub const SENTENCES: &str = "sentences";
    /// The next sentence would have gone over `REPLY_MAX_WORDS`.
    pub const WORDS: &str = "words";
    /// A first sentence longer than the whole budget was shortened at a clause.
    pub const LONG_SENTENCE: &str = "long_sentence";
    /// Markdown, list markers or emoji were taken out.
    pub const MARKUP: &str = "markup";
}

/// Holds one reply to its budget.
#[derive(Debug)]
pub struct Shaper {
    budget: ReplyBudget,
    sentences: u32,
    words: usize,
    /// Why the reply was (or will be) stopped, once it is.
    stopped: Option<&'static str>,
    /// What was changed so far, for the metrics.
    changes: Vec<&'static str>,
}

impl Shaper {
    /// A reply with nothing said yet.
    pub fn new(budget: ReplyBudget) -> Self {
        Self { budget, sentences: 0, words: 0, stopped: None, changes: Vec::new() }
    }

    /// Whether nothing more may be said: the budget is used up, or a sentence was refused
    /// for going over it (the reply never goes on after a gap).
    pub fn spent(&self) -> bool {
        self.stopped.is_some()
            || self.sentences >= self.budget.max_sentences
            || self.words >= self.budget.max_words
    }

    /// Why the reply stopped early, if it did.
    pub fn stopped(&self) -> Option<&'static str> {
        self.stopped
    }

    /// What was changed in the sentences said (markup taken out, a sentence shortened).
    pub fn changes(&self) -> &[&'static str] {
        &self.changes
    }

    /// The verdict on the model's next sentence.
    pub fn admit(&mut self, sentence: &str) -> Verdict {
        if self.spent() {
            self.stopped.get_or_insert(if self.sentences >= self.budget.max_sentences {
                reason::SENTENCES
            } else {
                reason::WORDS
            });
            return Verdict::Stop;
        }
        let Some(bare) = unmarked(sentence) else {
            return Verdict::Skip;
        };
        if bare != sentence.trim() {
            self.note(reason::MARKUP);
        }
        let clean = ended(bare);
        let words = word_count(&clean);
        let clean = if self.words + words <= self.budget.max_words {
            clean
        } else if self.sentences == 0 {
            // Nothing said yet: the first sentence is said, shortened to fit.
            self.note(reason::LONG_SENTENCE);
            shorten(&clean, self.budget.max_words)
        } else {
            self.stopped = Some(reason::WORDS);
            return Verdict::Stop;
        };
        self.sentences += 1;
        self.words += word_count(&clean);
        if self.spent() && self.stopped.is_none() {
            // Said in full; nothing after it will be.
            self.stopped = Some(if self.sentences >= self.budget.max_sentences {
                reason::SENTENCES
            } else {
                reason::WORDS
            });
        }
        Verdict::Say(clean)
    }

    fn note(&mut self, change: &'static str) {
        if !self.changes.contains(&change) {
            self.changes.push(change);
        }
    }
}

/// Markdown links and images: `[text](url)`, `![alt](url)`.
static LINK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"!?\[([^\]]*)\]\([^)]*\)").expect("valid regex"));
/// What starts a markdown line: headings, quotes, bullets, numbered items.
static LINE_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(#{1,6}\s+|>\s*|[-*+•·]\s+|\d{1,3}[.)]\s+)+").expect("valid regex")
});
/// Emphasis and code marks, and table or rule characters.
static MARKS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\*+|_{1,3}|`+|~~|\|").expect("valid regex"));

/// The sentence as it should be spoken: markdown, list markers and emoji taken out, spaces
/// collapsed, ending with terminal punctuation; `None` when nothing speakable is left.
pub fn speakable(sentence: &str) -> Option<String> {
    unmarked(sentence).map(ended)
}

/// The sentence without markdown, list markers or emoji, spaces collapsed.
fn unmarked(sentence: &str) -> Option<String> {
    let text = LINK.replace_all(sentence, "$1");
    let text = LINE_MARKER.replace(&text, "");
    let text = MARKS.replace_all(&text, "");
    let text: String = text.chars().filter(|c| !is_emoji(*c)).collect();
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    // Spaces left before punctuation by what was taken out ("fun 🦕!").
    for mark in [" .", " ,", " !", " ?", " ;", " :"] {
        text = text.replace(mark, &mark[1..]);
    }
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '-' || c == '=').to_owned();
    text.chars().any(char::is_alphanumeric).then_some(text)
}

/// `text` with a full stop unless it already ends a sentence.
fn ended(mut text: String) -> String {
    let last = text.trim_end_matches(['"', '\'', '”', '’', ')']).chars().last();
    if !matches!(last, Some('.' | '!' | '?' | '…')) {
        text = text.trim_end_matches([',', ';', ':']).to_owned();
        text.push('.');
    }
    text
}

fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// The first `max_words` of `sentence`, cut at its last clause boundary (a comma, a semicolon,
/// a colon, a dash) in the second half of them if there is one, ended as a sentence.
fn shorten(sentence: &str, max_words: usize) -> String {
    let words: Vec<&str> = sentence.split_whitespace().take(max_words.max(1)).collect();
    let clause = (words.len().div_ceil(2)..words.len())
        .rev()
        .find(|&i| words[i].ends_with([',', ';', ':']) || words.get(i + 1) == Some(&"—"));
    let kept = match clause {
        Some(i) => &words[..=i],
        None => &words[..],
    };
    let text = kept.join(" ");
    ended(text.trim_end_matches([',', ';', ':', '—', '-']).to_owned())
}

/// Pictographs, emoji and the characters that join or restyle them.
fn is_emoji(c: char) -> bool {
    matches!(
        u32::from(c),
        0x1F000..=0x1FAFF   // emoji, pictographs, flags, symbols and pictographs extended
        | 0x2600..=0x27BF   // miscellaneous symbols, dingbats
        | 0x2B00..=0x2BFF   // arrows and stars (⭐)
        | 0x2190..=0x21FF   // arrows
        | 0x200D            // zero-width joiner
        | 0xFE0E..=0xFE0F   // variation selectors
        | 0x20E3            // combining keycap
        | 0xE0020..=0xE007F // tag characters (flag sequences)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(budget: ReplyBudget, sentences: &[&str]) -> (Vec<String>, Option<&'static str>) {
        let mut shaper = Shaper::new(budget);
        let mut out = Vec::new();
        for sentence in sentences {
            match shaper.admit(sentence) {
                Verdict::Say(text) => out.push(text),
                // Offered the rest anyway: once stopped, nothing more is said.
                Verdict::Skip | Verdict::Stop => {}
            }
        }
        (out, shaper.stopped())
    }

    #[test]
    fn a_reply_ends_after_the_most_sentences() {
        let budget = ReplyBudget { max_sentences: 3, max_words: 100 };
        let (out, stopped) = said(budget, &["One.", "Two.", "Three.", "Four.", "Five."]);
        assert_eq!(out, ["One.", "Two.", "Three."]);
        assert_eq!(stopped, Some(reason::SENTENCES));
    }

    #[test]
    fn a_sentence_that_would_go_over_the_words_is_not_started() {
        let budget = ReplyBudget { max_sentences: 5, max_words: 10 };
        let (out, stopped) = said(
            budget,
            &[
                "Dragons can fly very high.",
                "They also breathe fire at night, and sleep all day.",
                "Wow!",
            ],
        );
        assert_eq!(out, ["Dragons can fly very high."], "the reply ends on a whole sentence");
        assert_eq!(stopped, Some(reason::WORDS));
    }

    #[test]
    fn a_first_sentence_longer_than_the_budget_is_shortened_at_a_clause() {
        let budget = ReplyBudget { max_sentences: 3, max_words: 12 };
        let long = "The sky looks blue because sunlight bounces off tiny bits of air, and blue light bounces the most of all the colours.";
        let (out, _) = said(budget, &[long]);
        assert_eq!(out, ["The sky looks blue because sunlight bounces off tiny bits of air."]);
        let no_clause = "One two three four five six seven eight nine ten eleven twelve thirteen.";
        let (out, _) = said(budget, &[no_clause]);
        assert_eq!(out, ["One two three four five six seven eight nine ten eleven twelve."]);
    }

    #[test]
    fn markdown_lists_and_emoji_never_reach_the_child() {
        let cases = [
            ("**Dinosaurs** are _so_ cool! 🦖🦕", Some("Dinosaurs are so cool!")),
            ("## Fun facts", Some("Fun facts.")),
            ("- Spiders have eight legs", Some("Spiders have eight legs.")),
            ("2. Bees make `honey`.", Some("Bees make honey.")),
            ("> A quote, in a block.", Some("A quote, in a block.")),
            ("Look at [this map](https://example.com/map) now!", Some("Look at this map now!")),
            ("Let's play! 👨‍👩‍👧 ⭐️", Some("Let's play!")),
            ("---", None),
            ("🎉🎉", None),
            ("| a | b |", Some("a b.")),
            ("Three little pigs built 3 houses.", Some("Three little pigs built 3 houses.")),
        ];
        for (model, spoken) in cases {
            assert_eq!(speakable(model).as_deref(), spoken, "{model:?}");
        }
    }

    #[test]
    fn only_changed_sentences_count_as_markup() {
        let mut shaper = Shaper::new(ReplyBudget::default());
        assert_eq!(shaper.admit("Plain words."), Verdict::Say("Plain words.".into()));
        assert!(shaper.changes().is_empty());
        assert_eq!(shaper.admit("*Bold* words."), Verdict::Say("Bold words.".into()));
        assert_eq!(shaper.changes(), [reason::MARKUP]);
    }
}
