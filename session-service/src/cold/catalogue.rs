//! The lessons catalogue shipped with the service (`catalogue/lessons.json`), written to the cold
//! store at start-up so every store serves the same lessons.

use super::{ColdError, ColdStore, Lesson};

const CATALOGUE: &str = include_str!("../../catalogue/lessons.json");

/// The shipped lessons.
pub fn lessons() -> Vec<Lesson> {
    serde_json::from_str(CATALOGUE).expect("catalogue/lessons.json is checked by a unit test")
}

/// Writes every shipped lesson that is missing or differs from the stored copy; returns how many
/// were written.
pub async fn seed(store: &dyn ColdStore) -> Result<usize, ColdError> {
    let mut written = 0;
    for lesson in lessons() {
        if store.get_lesson(&lesson.lesson_id).await?.as_ref() != Some(&lesson) {
            store.put_lesson(&lesson).await?;
            written += 1;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_well_formed() {
        let lessons = lessons();
        assert!(lessons.len() >= 6);
        let mut ids: Vec<&str> = lessons.iter().map(|l| l.lesson_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), lessons.len(), "lesson ids are unique");
        for lesson in &lessons {
            super::super::check_id("lesson_id", &lesson.lesson_id).unwrap();
            assert!(["easy", "medium", "hard"].contains(&lesson.difficulty.as_str()));
            assert!((-1..=12).contains(&lesson.grade_level));
            assert!(!lesson.steps.is_empty());
            for (i, step) in lesson.steps.iter().enumerate() {
                assert_eq!(step.number as usize, i + 1, "{} steps are numbered", lesson.lesson_id);
            }
        }
    }
}
