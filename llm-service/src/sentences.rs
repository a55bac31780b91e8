//! Cuts the model's streamed text into sentences, so a reply is checked and sent sentence by
//! sentence while the rest is still being written: the llm-service streams whole sentences and
//! nobody downstream cuts them again.

/// Words whose trailing period does not end a sentence.
const ABBREVIATIONS: &[&str] = &["mr.", "mrs.", "ms.", "dr.", "st.", "e.g.", "i.e.", "etc.", "vs."];

/// Accumulates text and yields each sentence once it is complete.
#[derive(Debug, Default)]
pub struct SentenceSplitter {
    buffer: String,
}

impl SentenceSplitter {
    /// Adds text; returns the sentences it completes (trimmed, never empty).
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.buffer.push_str(text);
        let mut sentences = Vec::new();
        while let Some(end) = sentence_end(&self.buffer) {
            let sentence: String = self.buffer.drain(..end).collect();
            let sentence = sentence.trim();
            if !sentence.is_empty() {
                sentences.push(sentence.to_owned());
            }
        }
        sentences
    }

    /// The rest of the text when the reply is complete.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buffer);
        let rest = rest.trim();
        (!rest.is_empty()).then(|| rest.to_owned())
    }
}

/// Byte index just past the first complete sentence: terminal punctuation (with any closing
/// quotes or brackets) and whitespace not followed by a lower-case word; or a line break.
fn sentence_end(text: &str) -> Option<usize> {
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\n' {
            return Some(i + 1);
        }
        if !matches!(c, '.' | '!' | '?' | '…') {
            continue;
        }
        let mut end = i + c.len_utf8();
        while let Some(&(j, next)) = chars.peek() {
            if matches!(next, '.' | '!' | '?' | '…' | '"' | '\'' | '”' | '’' | ')') {
                end = j + next.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        let &(_, next) = chars.peek()?;
        if !next.is_whitespace() {
            continue;
        }
        // A lower-case next word continues the sentence ("Hello!" she said). When the next
        // word has not arrived yet the sentence is sent anyway: waiting for it would hold the
        // first sentence back until the next chunk of the stream.
        let following = text[end..].trim_start().chars().next();
        if following.is_some_and(char::is_lowercase) || (c == '.' && is_abbreviation(&text[..end]))
        {
            continue;
        }
        return Some(end);
    }
    None
}

fn is_abbreviation(text_to_period: &str) -> bool {
    let word = text_to_period.rsplit(char::is_whitespace).next().unwrap_or_default();
    ABBREVIATIONS.contains(&word.to_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(pieces: &[&str]) -> Vec<String> {
        let mut splitter = SentenceSplitter::default();
        let mut out: Vec<String> = pieces.iter().flat_map(|p| splitter.push(p)).collect();
        out.extend(splitter.finish());
        out
    }

    #[test]
    fn sentences_complete_across_pieces() {
        let out =
            split_all(&["Once upon a ti", "me, a dragon lived. It was ", "kind! Was it? ", "Yes"]);
        assert_eq!(out, ["Once upon a time, a dragon lived.", "It was kind!", "Was it?", "Yes"]);
    }

    #[test]
    fn a_sentence_waits_for_what_follows_its_period() {
        let mut splitter = SentenceSplitter::default();
        assert!(splitter.push("The sky is blue.").is_empty());
        assert_eq!(splitter.push(" "), ["The sky is blue."]);
        assert!(splitter.push("Why?").is_empty());
        assert_eq!(splitter.finish().as_deref(), Some("Why?"));
    }

    #[test]
    fn abbreviations_decimals_and_quotes() {
        let out = split_all(&["Dr. Owl said \"Hello!\" to Mr. Fox. It is 3.5 metres tall... Wow"]);
        assert_eq!(out, ["Dr. Owl said \"Hello!\" to Mr. Fox.", "It is 3.5 metres tall...", "Wow"]);
    }

    #[test]
    fn line_breaks_end_sentences_and_blank_text_is_dropped() {
        assert_eq!(split_all(&["First line\nSecond", "  \n "]), ["First line", "Second"]);
        assert!(split_all(&["   "]).is_empty());
    }
}
