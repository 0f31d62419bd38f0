//! The fuzz targets (`src/fuzz.rs`, driven by libFuzzer under `fuzz/` with nightly) replayed on
//! stable in every test run: each checked-in corpus input, then a seeded stream of mutations
//! of them (bytes flipped, cut, repeated, JSON tokens spliced in) — no panic, no broken
//! invariant. The fixture room of the auth target is checked to be sound first, so that the
//! target's inputs are judged against a room where allowed events can pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::rng::Rng;
use std::path::Path;

const MUTATIONS_PER_TARGET: usize = 4_000;

/// Tokens that make JSON interesting to a parser: edges of numbers, escapes, nesting.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "null",
    "true",
    "-0",
    "1e309",
    "9007199254740993",
    "-9007199254740992",
    "0.1",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"$x\"",
    "\"@a:b\"",
    "\"!r:b\"",
    "\"m.room.create\"",
    "\"state_key\"",
    "\"content\"",
    "\"membership\"",
    "\"join\"",
    "\"redacts\"",
    "\"signatures\"",
    "\"hashes\"",
    "\"depth\"",
    "\"prev_events\"",
    "\"auth_events\"",
    "[[[[[[[[[[[[[[[[",
    "\"\u{10FFFF}\"",
];

fn mutate(seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let end = (at + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            2 => {
                let end = (at + rng.below(32)).min(data.len());
                let piece = data[at..end].to_vec();
                data.splice(at..at, piece);
            }
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let end = (from + rng.below(64)).min(other.len());
                data.splice(at..at, other[from..end].iter().copied());
            }
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                data.splice(at..at, token.iter().copied());
            }
        }
    }
    data
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus for {target}");
    inputs
}

fn replay(target: &str, run: impl Fn(&[u8])) {
    let seeds = corpus(target);
    for input in &seeds {
        run(input);
    }
    let mut rng = Rng(0x4845_4152_5448 ^ target.len() as u64);
    for _ in 0..MUTATIONS_PER_TARGET {
        run(&mutate(&seeds, &mut rng));
    }
}

#[test]
fn canonical_json_survives_its_corpus_and_mutations() {
    replay("canonical_json", hearth::fuzz::canonical_json);
}

#[test]
fn pdus_survive_their_corpus_and_mutations() {
    let message = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pdu/message")).unwrap();
    assert_eq!(hearth::fuzz::pdu(&message), 4, "the seed PDU parses under every version tried");
    replay("pdu", |data| {
        hearth::fuzz::pdu(data);
    });
}

#[test]
fn event_auth_survives_its_corpus_and_mutations() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/event_auth");
    let allowed = |name: &str| hearth::fuzz::event_auth(&std::fs::read(dir.join(name)).unwrap());
    // The fixture room is sound: a member may speak and anyone may join the public room under
    // the versions whose create event it fits (not v12, whose room id is the create event's
    // hash), and a stranger cannot take power.
    assert!(allowed("message_by_member") >= 3, "a member's message is allowed");
    assert!(allowed("join_public") >= 3, "joining a public room is allowed");
    assert_eq!(allowed("power_grab"), 0, "a stranger's power levels are refused");
    replay("event_auth", |data| {
        hearth::fuzz::event_auth(data);
    });
}
