//! A short fuzz run of every target in tests/src/fuzz.rs, on stable, in
//! every test run: the seed corpus (fuzz/corpus/TARGET and the built-in
//! seeds), then inputs mutated from it by a deterministic generator for a
//! fixed number of rounds. The long runs use libFuzzer (`cargo +nightly
//! fuzz run TARGET`, see fuzz/). An input that fails is written to
//! target/fuzz-failures/ to be replayed and kept as a regression seed.

use std::path::PathBuf;

use qga_warden_tests::fuzz::{TARGETS, seeds};
use qga_warden_tests::workspace;

/// Mutated inputs per target: a few seconds for all of them in a debug
/// build here.
const ROUNDS: usize = 3_000;

/// xorshift64*: deterministic, so a failure repeats.
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

/// Bytes that matter to the parsers.
const INTERESTING: &[&[u8]] = &[
    b"\xff",
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"'",
    b"\\u",
    b"\\ud800",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"-",
    b"1e999",
    b"18446744073709551616",
    b"null",
    b"true",
    b"\0",
    b"\n",
    b"=",
    b"/../",
    b"guest-",
    b"\x80\x80\x80\x80",
];

fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = corpus[rng.below(corpus.len())].clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            2 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(at..at, piece.iter().copied());
            }
            3 => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len());
                let to = (from + rng.below(64)).min(other.len());
                v.splice(at..at, other[from..to].iter().copied());
            }
            4 if !v.is_empty() => {
                let from = rng.below(v.len());
                let to = (from + 1 + rng.below(8)).min(v.len());
                let piece: Vec<u8> = v[from..to].repeat(1 + rng.below(64));
                v.splice(at..at, piece);
            }
            5 => {
                let n = rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
            _ => v.truncate(at),
        }
    }
    v
}

fn corpus_of(target: &str) -> Vec<Vec<u8>> {
    let mut corpus = seeds(target);
    let dir = workspace().join("fuzz/corpus").join(target);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if let Ok(bytes) = std::fs::read(e.path()) {
                corpus.push(bytes);
            }
        }
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    corpus
}

fn run_one(target: &str, f: fn(&[u8]), input: &[u8]) {
    let outcome = std::panic::catch_unwind(|| f(input));
    if outcome.is_err() {
        let dir = workspace().join("target/fuzz-failures");
        let _ = std::fs::create_dir_all(&dir);
        let path: PathBuf = dir.join(format!("{target}-{:016x}", fnv(input)));
        let _ = std::fs::write(&path, input);
        panic!("fuzz target {target} failed on {} (input saved)", path.display());
    }
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x1_0000_01b3))
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_mutations() {
    for &(name, f) in TARGETS {
        let corpus = corpus_of(name);
        for input in &corpus {
            run_one(name, f, input);
        }
        let mut rng = Rng(fnv(name.as_bytes()) | 1);
        for _ in 0..ROUNDS {
            let input = mutate(&mut rng, &corpus);
            run_one(name, f, &input);
        }
    }
}

#[test]
fn the_committed_corpus_has_every_target() {
    for (name, _) in TARGETS {
        let dir = workspace().join("fuzz/corpus").join(name);
        let n = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert!(n > 0, "no seeds in {}", dir.display());
    }
}
