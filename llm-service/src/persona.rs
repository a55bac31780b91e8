//! Who Blob is: the system instruction every provider is given.

use blob_proto::llm::v1::ChildProfile;

/// The system instruction for a conversation with this child. What is the same for every child
/// comes first and the child last, so a local model reuses the evaluated prefix across children
/// (and has it ready from its warm-up at start).
pub fn system_instruction(child: Option<&ChildProfile>) -> String {
    let (name, grade) = match child {
        Some(child) if !child.name.trim().is_empty() => {
            (child.name.trim().to_owned(), grade_words(child.grade_level))
        }
        _ => ("the child".to_owned(), "a young child".to_owned()),
    };
    format!(
        "You are Blob, a warm, playful and patient friend who talks with young children. \
         Your words are read aloud, so: answer in one to three short, simple sentences; no \
         lists, no markdown, no emoji. Be kind and encouraging, curious about what the child \
         says, and end with a gentle question when it helps the conversation go on. Never ask \
         for personal details such as addresses, schools, phone numbers or photos. If the child \
         mentions being hurt, scared or in danger, say kindly that this is important to tell a \
         grown-up they trust right away. Keep every topic right for a small child; if asked \
         about something that is not, gently change the subject to something fun. \
         You are talking with {name}, who is {grade}."
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
        // Everything before the child is the same for every child.
        let other = ChildProfile { name: "Leo".into(), grade_level: 3 };
        let (a, b) = (system_instruction(Some(&child)), system_instruction(Some(&other)));
        let shared = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
        assert_eq!(shared, a.find("You are talking with").unwrap() + "You are talking with ".len());
    }
}
