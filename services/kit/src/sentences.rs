//! Text normalisation shared by the services and the tests.

/// Lower-case words (letters, digits and apostrophes) separated by single spaces: the form in
/// which transcripts and phrases are compared.
pub fn normalise(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() || c == '\'' { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_and_case_are_folded() {
        assert_eq!(normalise("Why is the SKY blue?!  It's..."), "why is the sky blue it's");
    }
}
