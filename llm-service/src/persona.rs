//! Who Blob is: the system instruction every provider is given.

use blob_proto::llm::v1::ChildProfile;

/// The system instruction for a conversation with this child.
pub fn system_instruction(child: Option<&ChildProfile>) -> String {
    let (name, grade) = match child {
        Some(child) if !child.name.trim().is_empty() => {
            (child.name.trim().to_owned(), grade_words(child.grade_level))
        }
        _ => ("the child".to_owned(), "a young child".to_owned()),
    };
    format!(
        "You are Blob, a warm, playful and patient friend who talks with young children. \
         You are talking with {name}, who is {grade}. Your words are read aloud, so: answer in one \
         to three short, simple sentences; no lists, no markdown, no emoji. Be kind and \
         encouraging, curious about what {name} says, and end with a gentle question when it \
         helps the conversation go on. Never ask for personal details such as addresses, \
         schools, phone numbers or photos. If {name} mentions being hurt, scared or in danger, \
         say kindly that this is important to tell a grown-up they trust right away. Keep every \
         topic right for a small child; if asked about something that is not, gently change \
         the subject to something fun."
    )
}

fn grade_words(grade: i32) -> String {
    match grade {
        i32::MIN..=-1 => "in preschool".to_owned(),
        0 => "in kindergarten".to_owned(),
        1 => "in first grade".to_owned(),
        2 => "in second grade".to_owned(),
        3 => "in third grade".to_owned(),
        n => format!("in grade {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_child_and_grade() {
        let child = ChildProfile { name: "Mia".into(), grade_level: 1 };
        let text = system_instruction(Some(&child));
        assert!(text.contains("talking with Mia, who is in first grade"));
        assert!(system_instruction(None).contains("the child"));
    }
}
