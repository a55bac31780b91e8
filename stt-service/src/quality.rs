//! Quality gates on what whisper hears: its well-known inventions from silence and noise, and
//! decoder loops that repeat a phrase.

/// Phrases whisper produces from silence or noise (normalised: lower case, no punctuation).
const INVENTED: &[&str] = &[
    "thank you",
    "thank you very much",
    "thanks",
    "thanks for watching",
    "thank you for watching",
    "you",
    "bye",
    "bye bye",
    "okay",
    "oh",
    "so",
    "please subscribe",
    "subtitles by the amara org community",
];

use blob_kit::sentences::normalise;

/// Whether a transcript is one of whisper's inventions that the audio does not support: a
/// known phrase (or subtitle credit) heard in quiet audio, or with a high no-speech probability.
pub fn is_invented(text: &str, rms: f32, energy_threshold: f32, no_speech: f32) -> bool {
    let normalised = normalise(text);
    let known = INVENTED.contains(&normalised.as_str())
        || normalised.contains("subtitles")
        || normalised.contains("amara org")
        || normalised.contains("for watching");
    let weak_audio = rms < 2.0 * energy_threshold || no_speech > 0.5;
    known && weak_audio
}

/// Whether the transcript is a decoder loop: a phrase of two or more words said three or more
/// times in a row.
pub fn is_loop(text: &str) -> bool {
    let normalised = normalise(text);
    let words: Vec<&str> = normalised.split(' ').collect();
    for size in 2..=words.len() / 3 {
        for start in 0..=words.len().saturating_sub(size * 3) {
            let phrase = &words[start..start + size];
            let repeated =
                (1..3).all(|k| &words[start + k * size..start + (k + 1) * size] == phrase);
            if repeated {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventions_in_weak_audio_are_caught() {
        assert!(is_invented("Thank you.", 600.0, 500.0, 0.1));
        assert!(is_invented(" you", 3000.0, 500.0, 0.8));
        assert!(is_invented("Subtitles by the Amara.org community", 700.0, 500.0, 0.0));
        // Said clearly and loudly, a child's "Thank you!" stays.
        assert!(!is_invented("Thank you!", 4000.0, 500.0, 0.01));
        assert!(!is_invented("Why is the sky blue?", 600.0, 500.0, 0.9));
    }

    #[test]
    fn decoder_loops_are_caught() {
        assert!(is_loop("Mary rolled the barrel. Mary rolled the barrel. Mary rolled the barrel."));
        assert!(is_loop("one one one one one one used"));
        assert!(!is_loop("Tell me a story about a dragon."));
        assert!(!is_loop("five five"));
        assert!(!is_loop("Can we play a game with the animals in the forest?"));
    }
}
