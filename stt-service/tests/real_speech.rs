//! The recogniser on real human speech: the 38 clips of `../shared/speech` (adult English,
//! 1-11 s, from several corpora) against their reference texts. Asserts the word error rate of
//! the whole set, not timing.

use std::sync::Arc;

use blob_kit::sentences::normalise;
use blob_testkit::audio::read_wav;
use blob_testkit::paths::{speech_clip, whisper_model};
use stt_service::engine::Engine;
use stt_service::metrics::SttMetrics;

const NUMBERS: [&str; 21] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
];

/// Normalised words as the references spell them: numbers up to twenty as words, longer digit
/// strings digit by digit (spoken digit sequences), `mr` as `mister`.
fn words(text: &str) -> Vec<String> {
    normalise(text)
        .split(' ')
        .filter(|w| !w.is_empty())
        .flat_map(|w| match w.parse::<usize>() {
            Ok(n) if n < NUMBERS.len() && w.len() <= 2 => vec![NUMBERS[n].to_owned()],
            Ok(_) => w.chars().map(|c| NUMBERS[c as usize - '0' as usize].to_owned()).collect(),
            Err(_) if w == "mr" => vec!["mister".to_owned()],
            Err(_) => vec![w.to_owned()],
        })
        .collect()
}

fn edit_distance(a: &[String], b: &[String]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let substitute = previous + usize::from(x != y);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_speech_is_transcribed_with_a_low_word_error_rate() {
    let refs = speech_clip("speech/refs_normalized.txt");
    let listing = std::fs::read_to_string(&refs).expect("the shared speech references");
    let engine = Arc::new(
        Engine::load(&whisper_model("ggml-base-q8_0.bin"), 2, 64, 1, "en", SttMetrics::default())
            .unwrap(),
    );
    let mut tasks = Vec::new();
    for line in listing.lines().filter(|l| !l.trim().is_empty()) {
        let (file, reference) = line.split_once('|').expect("file|text");
        let (engine, file, reference) =
            (Arc::clone(&engine), file.to_owned(), reference.to_owned());
        tasks.push(tokio::spawn(async move {
            let pcm = read_wav(&speech_clip(&format!("speech/{file}")));
            let transcript = engine.transcribe(pcm).await.unwrap();
            (file, reference, transcript.text)
        }));
    }
    let (mut errors, mut total) = (0, 0);
    let mut report = Vec::new();
    for task in tasks {
        let (file, reference, hypothesis) = task.await.unwrap();
        let (want, got) = (words(&reference), words(&hypothesis));
        let wrong = edit_distance(&want, &got);
        errors += wrong;
        total += want.len();
        if wrong > 0 {
            report.push(format!("{file}: {reference:?} heard {hypothesis:?}"));
        }
    }
    assert!(total > 200, "the set has {total} reference words");
    let wer = errors as f64 / total as f64;
    println!("word error rate {wer:.3} over {total} words; misses:\n{}", report.join("\n"));
    assert!(wer <= 0.15, "word error rate {wer:.3} over {total} words:\n{}", report.join("\n"));
}

#[test]
fn digits_are_read_out_and_punctuation_ignored() {
    assert_eq!(words("29340!"), ["two", "nine", "three", "four", "zero"]);
    assert_eq!(
        words("Go forward 10 meters, Mr. Fox."),
        ["go", "forward", "ten", "meters", "mister", "fox"]
    );
    let a = words("the cat sat");
    assert_eq!(edit_distance(&a, &words("the cat sat")), 0);
    assert_eq!(edit_distance(&a, &words("a cat sat down")), 2);
}
