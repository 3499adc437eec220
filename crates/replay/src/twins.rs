//! Twins' answers served in another order than recorded.
//!
//! Identical requests take their events in recorded order (`../shared/DESIGN.md`): three
//! concurrent `GET /newid` get the three recorded ids in the order they arrive. When a
//! faithful rerun's scheduler lets another caller ask first, each caller then carries
//! another twin's id into its next request (`POST /orders {"id": "obj_2…", "arg": "A"}`
//! where the recording holds `obj_1…` with `"A"`), and that request misses by its key.
//!
//! It is matched to the unserved event that, with each value it carries from a twin's
//! answer (a causal [`Link::Value`](tapedeck_trace::causal::Link) on an event recorded
//! under one key with others) replaced by the value at the same place in the answer of a
//! twin this run served, is the request. The swaps a run makes must be one to one: a
//! live value stands for one recorded value, and a recorded value for one live value,
//! for the whole run ([`Renames`]); an event taken by its key binds its own values to
//! themselves. A changed agent that hands one caller's id to another breaks that, and
//! misses as before.

use std::collections::HashMap;

use tapedeck_trace::causal::tokens;

/// The swaps of twin values made so far in a run, both ways, by the values' hashes
/// ([`tokens::hash`], as the causal graph holds them).
#[derive(Debug, Default)]
pub struct Renames {
    live_to_rec: HashMap<u64, u64>,
    rec_to_live: HashMap<u64, u64>,
}

impl Renames {
    /// Whether every (recorded, live) pair agrees with the swaps so far and with the
    /// other pairs.
    pub fn fits(&self, pairs: &[(u64, u64)]) -> bool {
        if pairs.is_empty() {
            return true;
        }
        let mut now: HashMap<u64, u64> = HashMap::new();
        let mut back: HashMap<u64, u64> = HashMap::new();
        pairs.iter().all(|&(rec, live)| {
            self.rec_to_live.get(&rec).is_none_or(|&l| l == live)
                && self.live_to_rec.get(&live).is_none_or(|&r| r == rec)
                && *now.entry(rec).or_insert(live) == live
                && *back.entry(live).or_insert(rec) == rec
        })
    }

    /// Keeps `pairs` (which [`Renames::fits`]).
    pub fn bind(&mut self, pairs: &[(u64, u64)]) {
        for &(rec, live) in pairs {
            self.rec_to_live.insert(rec, live);
            self.live_to_rec.insert(live, rec);
        }
    }
}

/// The distinctive tokens of `text` ([`tokens::is_distinctive`]), in order.
fn distinctive(text: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    tokens::for_each_token(text, |t| {
        if tokens::is_distinctive(t) {
            out.push(t.to_vec());
        }
    });
    out
}

/// Where a value stands among the distinctive tokens of an answer: the `at`-th of `of`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    at: usize,
    of: usize,
}

/// Where `value` stands among `answer`'s distinctive tokens; None when it is not one.
pub fn place(value: &[u8], answer: &[u8]) -> Option<Place> {
    let tokens = distinctive(answer);
    let at = tokens.iter().position(|t| t == value)?;
    Some(Place {
        at,
        of: tokens.len(),
    })
}

/// The value at `place` in a twin's answer: twins answer in one shape, so the n-th
/// distinctive token of one is the n-th of the other. None when their shapes differ.
pub fn value_at(twin: &[u8], place: Place) -> Option<Vec<u8>> {
    let tokens = distinctive(twin);
    (tokens.len() == place.of).then(|| tokens.into_iter().nth(place.at))?
}

/// `text` with every `from` replaced by `to`.
pub fn replace(text: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut last = 0;
    for at in memchr::memmem::find_iter(text, from) {
        out.extend_from_slice(&text[last..at]);
        out.extend_from_slice(to);
        last = at + from.len();
    }
    out.extend_from_slice(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_must_be_one_to_one_for_the_whole_run() {
        let mut r = Renames::default();
        assert!(r.fits(&[(1, 2)]));
        r.bind(&[(1, 2)]);
        assert!(r.fits(&[(1, 2)]), "again, the same way");
        assert!(!r.fits(&[(1, 3)]), "recorded 1 already stands for live 2");
        assert!(!r.fits(&[(4, 2)]), "live 2 already stands for recorded 1");
        assert!(r.fits(&[(3, 3)]), "a value no swap touched");
        assert!(r.fits(&[(2, 1)]), "the other half of a swap");
        assert!(
            !r.fits(&[(5, 6), (5, 7)]),
            "one request cannot swap a value two ways"
        );
        assert!(!r.fits(&[(5, 6), (7, 6)]));
    }

    #[test]
    fn a_twins_value_is_found_at_the_same_place() {
        let a = br#"{"id":"obj_1a2b3c4d5e","created":"2026-12-06","owner":"team_9f8e7d6c"}"#;
        let b = br#"{"id":"obj_9z8y7x6w5v","created":"2026-12-06","owner":"team_9f8e7d6c"}"#;
        let counterpart = |value: &[u8], answer: &[u8], twin: &[u8]| {
            place(value, answer).and_then(|p| value_at(twin, p))
        };
        assert_eq!(
            counterpart(b"obj_1a2b3c4d5e", a, b).as_deref(),
            Some(&b"obj_9z8y7x6w5v"[..])
        );
        assert_eq!(
            counterpart(b"team_9f8e7d6c", a, b).as_deref(),
            Some(&b"team_9f8e7d6c"[..])
        );
        assert_eq!(counterpart(b"obj_missing00", a, b), None);
        assert_eq!(
            counterpart(b"obj_1a2b3c4d5e", a, br#"{"id":"obj_9z8y7x6w5v"}"#),
            None,
            "another shape"
        );
        assert_eq!(
            replace(b"/o/obj_1?x=obj_1", b"obj_1", b"obj_22"),
            b"/o/obj_22?x=obj_22"
        );
    }
}
