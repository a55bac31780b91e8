//! The fuzz targets' committed corpus (`fuzz/corpus/`), replayed through the same properties on
//! every `cargo test`, each input also mutated by a seeded generator (the same mutations on
//! every run, about 60,000 per target): a stable-toolchain guard beside the bounded libFuzzer
//! runs of `make fuzz`.

use std::path::PathBuf;

use blob_voice_protocol::fuzzing::{check_client_bytes, check_frame};

/// Mutated inputs per target, shared out over its corpus.
const MUTATIONS: usize = 60_000;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 8, "{}: a corpus of {} inputs", dir.display(), inputs.len());
    inputs.into_iter().map(|(_, bytes)| bytes).collect()
}

/// xorshift64*: a seeded, dependency-free generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One libFuzzer-like mutation of `input`: flip, set, insert, delete, duplicate or splice.
fn mutate(input: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    const INTERESTING: [u8; 12] =
        [0, 1, 0x7F, 0x80, 0xFF, 0xB1, 0x04, b'"', b'{', b'}', b'\\', b':'];
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        let last = out.len().saturating_sub(1);
        match rng.below(6) {
            0 if !out.is_empty() => out[at.min(last)] ^= 1 << rng.below(8),
            1 if !out.is_empty() => out[at.min(last)] = INTERESTING[rng.below(12)],
            2 => out.insert(at, INTERESTING[rng.below(12)]),
            3 if !out.is_empty() => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            4 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + rng.below(64)).min(out.len());
                let copy = out[start..end].to_vec();
                out.splice(at..at, copy);
            }
            _ if !other.is_empty() => {
                let start = rng.below(other.len());
                let end = (start + rng.below(256)).min(other.len());
                out.splice(at..at, other[start..end].iter().copied());
            }
            _ => {}
        }
    }
    out
}

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let inputs = corpus(target);
    let mut rng = Rng(0x5EED_B10B_u64);
    let per_input = (MUTATIONS / inputs.len()).max(20);
    let mut checked = 0;
    for (i, input) in inputs.iter().enumerate() {
        check(input);
        let other = &inputs[(i + 1) % inputs.len()];
        for _ in 0..per_input {
            check(&mutate(input, other, &mut rng));
        }
        checked += 1 + per_input;
    }
    checked
}

#[test]
fn the_frame_corpus_and_its_mutations_keep_the_frame_properties() {
    let checked = replay("frame", check_frame);
    println!("frame: {checked} inputs checked");
}

#[test]
fn the_client_json_corpus_and_its_mutations_keep_the_message_properties() {
    let checked = replay("client_json", check_client_bytes);
    println!("client_json: {checked} inputs checked");
}
