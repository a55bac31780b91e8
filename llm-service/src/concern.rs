//! Words of the child that no model is trusted with: a stranger asking the child to come along
//! or keep a secret, someone hurting the child, the child wanting to hurt themself, asking how
//! to use something dangerous, or giving (or asking for) an address, a phone number, a school or
//! a photo. Blob then answers with a fixed line in its own voice that
//! sends the child to a trusted grown-up, and the model is not asked at all (small local models
//! were seen explaining how to light matches, and agreeing to meet the stranger).
//!
//! The patterns are deliberately narrow (a danger word together with what makes it a danger),
//! so that "I lit the candles on my cake with Dad" or "the knife in the story" pass to the
//! model as usual.

use std::sync::LazyLock;

use regex::Regex;

/// What the child's words touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concern {
    /// Someone (a stranger, a man in a car) asking the child to come, meet or keep a secret.
    Stranger,
    /// Someone hurting the child, or the child wanting to hurt themself.
    Harm,
    /// How to use something dangerous: knives, matches, fire, pills, cleaning products.
    Danger,
    /// An address, a phone number, a school or a photo, given or asked for.
    Private,
}

impl Concern {
    /// The label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Stranger => "stranger",
            Self::Harm => "harm",
            Self::Danger => "danger",
            Self::Private => "private",
        }
    }

    /// Blob's answer, in at most three short sentences.
    pub fn reply(self) -> &'static str {
        match self {
            Self::Stranger => {
                "Thank you for telling me, that is really important. Never go with someone you \
                 don't know, even if they have puppies or sweets. Please tell a grown-up you trust \
                 right away, like your mum, dad or teacher."
            }
            Self::Harm => {
                "Thank you for telling me, you are very brave. Nobody should hurt you. Please tell \
                 a grown-up you trust right away, like a parent, a teacher or another family \
                 grown-up."
            }
            Self::Danger => {
                "That could really hurt you, so it is a job for a grown-up. Please ask a grown-up \
                 you trust to help you. Shall we play a game instead?"
            }
            Self::Private => {
                "Addresses, phone numbers, schools and photos are private, so keep them just for \
                 your family. I can't visit, call or see pictures, but I love talking with you \
                 right here. What shall we talk about?"
            }
        }
    }
}

/// A person who might be a stranger, then what they asked.
static STRANGER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(stranger|man|woman|lady|guy|someone|somebody|person|people)\b.{0,80}\b(come with|go with|get in(to)?|in (his|her|their|a) (car|van)|meet (me|him|her|them|up)|keep (it |this )?(a )?secret|don'?t tell|not to tell|take (me|a photo|a picture|pictures))",
    )
    .expect("valid regex")
});
/// Someone hurting the child, or the child wanting to be hurt.
static HARM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(hits?|hitting|hurts?|hurting|kicks?|kicking|punch(es)?|punching|slaps?|slapping|touch(es)?|touching) me\b|\b(i want to|i wanna|i'?m going to|gonna) (die|kill myself|hurt myself)\b|\bkill myself\b",
    )
    .expect("valid regex")
});
/// A dangerous thing with the child's wish to use it.
static DANGER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(how (do|can|could|should) i|can i|could i|should i|i want to|i wanna|let me|by myself|on my own)\b.{0,60}\b(knife|knives|matches|lighter|fire|stove|oven|pills?|medicine|tablets|bleach|soap|cleaner|plug|socket|gun)s?\b|\b(light|strike|eat|swallow|drink|play with) (the |a |some |these |those )?(matches|lighter|fire|pills?|medicine|tablets|bleach|cleaner)\b",
    )
    .expect("valid regex")
});

/// An address, a phone number, a school or a photo, given or asked for.
static PRIVATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\bi live (at|on) \d|\b\d{1,5} \w+( \w+)? (street|st|road|rd|avenue|ave|lane|ln|drive|dr|way|court|close|crescent)\b|\b(phone|mobile) number is\b|\d[\d .-]{6,}\d|\bmy school is (called )?(?-i:[A-Z])|\bsend you (a |my )?(picture|photo|selfie)s?\b|\b(come to|visit) my (house|home)\b|\bwhere do you live\b|\b(what'?s|what is|tell me|give me) your (phone|number|address)\b",
    )
    .expect("valid regex")
});

/// The concern the child's words touch, if any (the most serious first).
pub fn check(text: &str) -> Option<Concern> {
    if HARM.is_match(text) {
        Some(Concern::Harm)
    } else if STRANGER.is_match(text) {
        Some(Concern::Stranger)
    } else if DANGER.is_match(text) {
        Some(Concern::Danger)
    } else if PRIVATE.is_match(text) {
        Some(Concern::Private)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_childs_words_that_need_a_grown_up_are_recognised() {
        let cases = [
            (
                "A man in a car said he has puppies and wants me to come with him.",
                Concern::Stranger,
            ),
            ("A lady at the park said to keep it a secret.", Concern::Stranger),
            ("Someone online wants to meet me tomorrow.", Concern::Stranger),
            ("Someone at home hits me when I'm bad.", Concern::Harm),
            ("My uncle touches me and it feels weird.", Concern::Harm),
            ("I want to die.", Concern::Harm),
            ("How do I use a big knife by myself?", Concern::Danger),
            ("How do I light matches?", Concern::Danger),
            ("Can I eat the pills in the bathroom? They look like sweets.", Concern::Danger),
            ("Can I drink the bleach?", Concern::Danger),
            ("I live at 14 Maple Street, do you want to come?", Concern::Private),
            ("My mum's phone number is 0412 555 019, can you call her?", Concern::Private),
            ("My school is called Greenwood Primary.", Concern::Private),
            ("Can I send you a picture of me?", Concern::Private),
            ("Where do you live? Tell me your address.", Concern::Private),
            ("What's your phone number?", Concern::Private),
        ];
        for (words, concern) in cases {
            assert_eq!(check(words), Some(concern), "{words:?}");
        }
    }

    #[test]
    fn ordinary_words_about_the_same_things_pass_to_the_model() {
        for words in [
            "I lit the candles on my cake with Dad.",
            "In the story the knight had a shiny knife.",
            "My mum takes medicine when she has a cold.",
            "The man at the shop was nice.",
            "We made a fire at the camp with my grown-ups and it was warm.",
            "My friend hit the ball really far!",
            "Tell me a story about a dragon.",
            "Why is the sky blue?",
            "My brother broke my tower and I'm really angry.",
            "I have 3 cats and 2 dogs.",
            "My school is fun, we paint every day.",
            "I live in a big house with a red door.",
            "One hundred and twenty three!",
        ] {
            assert_eq!(check(words), None, "{words:?}");
        }
    }

    #[test]
    fn every_answer_is_at_most_three_sentences_and_names_a_grown_up_or_privacy() {
        for concern in [Concern::Stranger, Concern::Harm, Concern::Danger, Concern::Private] {
            let reply = concern.reply();
            assert!(reply.matches(['.', '?', '!']).count() <= 3, "{reply}");
            assert!(reply.contains("grown-up") || reply.contains("private"), "{reply}");
        }
    }
}
