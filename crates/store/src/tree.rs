//! A large body's segments as subtrees of its blake3 tree (store format 4).
//!
//! blake3 hashes its input as a binary tree of 1 KiB chunks. A [`SEGMENT`] (256 chunks)
//! that starts at a multiple of its length is a whole subtree of that tree, and its
//! chaining value (the subtree's non-root hash, which depends on where it sits) names it.
//! The body's blake3 is then the merge of its segments' chaining values: one pass over a
//! large body gives both the body's address and each segment's, where hashing each
//! segment on its own gave the body's address a second pass over every byte.
//!
//! A segment read back is checked against its chaining value at its place, so a segment
//! moved to another place of the body, or another body's, does not pass.

use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root, HasherExt, Mode};

use crate::SEGMENT;

/// A segment's chaining value: its name in the store.
pub type SegmentCv = [u8; 32];

/// The chaining value of segment `index` of a body (its bytes `data`, at most
/// [`SEGMENT`] and not empty: only a body's last segment is shorter).
pub fn segment_cv(data: &[u8], index: usize) -> SegmentCv {
    debug_assert!(!data.is_empty() && data.len() <= SEGMENT);
    blake3::Hasher::new()
        .set_input_offset((index * SEGMENT) as u64)
        .update(data)
        .finalize_non_root()
}

/// The blake3 of a body of two or more segments, from their chaining values in order.
/// `None` for fewer than two: a body of one segment is hashed whole.
pub fn tree_hash(cvs: &[SegmentCv]) -> Option<blake3::Hash> {
    if cvs.len() < 2 {
        return None;
    }
    let left = left_len(cvs.len());
    Some(merge_subtrees_root(
        &subtree(&cvs[..left]),
        &subtree(&cvs[left..]),
        Mode::Hash,
    ))
}

/// blake3's tree puts in its left subtree the largest power of two of chunks that leaves
/// at least one byte to the right; in whole segments (powers of two of chunks
/// themselves), the largest power of two of segments below their count.
fn left_len(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn subtree(cvs: &[SegmentCv]) -> SegmentCv {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let left = left_len(cvs.len());
    merge_subtrees_non_root(&subtree(&cvs[..left]), &subtree(&cvs[left..]), Mode::Hash)
}

/// The name of segment `index` as [`crate::Store::body_segments`] lists it: its chaining
/// value in hex and its place, which reading it needs to check it.
pub fn part_name(cv: &SegmentCv, index: usize) -> String {
    format!("{}@{index}", blake3::Hash::from_bytes(*cv).to_hex())
}

/// A name made by [`part_name`]: the chaining value and the segment's place.
pub fn parse_part_name(name: &str) -> Option<(SegmentCv, usize)> {
    let (hex, index) = name.split_once('@')?;
    let cv = *blake3::Hash::from_hex(hex).ok()?.as_bytes();
    let index: usize = index.parse().ok()?;
    // Its place in bytes must be a number blake3 takes (a hostile name cannot make the
    // hasher panic).
    (index as u64).checked_mul(SEGMENT as u64)?;
    Some((cv, index))
}

/// What part `index` of a body of `body_len` bytes hashes to: its chaining value at its
/// place, or for a body of one segment (not a tree), its blake3.
pub fn part_hash(body_len: u64, index: usize, data: &[u8]) -> [u8; 32] {
    if body_len > SEGMENT as u64 {
        segment_cv(data, index)
    } else {
        *blake3::hash(data).as_bytes()
    }
}

/// Whether `data` is segment `index` named by `cv`.
pub fn segment_is(cv: &SegmentCv, index: usize, data: &[u8]) -> bool {
    !data.is_empty() && data.len() <= SEGMENT && segment_cv(data, index) == *cv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(len: usize) -> Vec<u8> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// The tree's hash is the body's blake3 for every count of segments up to 17 (every
    /// shape of left and right subtrees up to there), the last segment full, one byte,
    /// one chunk and a bit, or one byte short.
    #[test]
    fn the_segments_chaining_values_make_the_bodys_blake3() {
        for n in 2..=17usize {
            for last in [SEGMENT, 1, 1025, SEGMENT - 1] {
                let data = body((n - 1) * SEGMENT + last);
                let cvs: Vec<SegmentCv> = data
                    .chunks(SEGMENT)
                    .enumerate()
                    .map(|(i, s)| segment_cv(s, i))
                    .collect();
                assert_eq!(cvs.len(), n);
                assert_eq!(
                    tree_hash(&cvs),
                    Some(blake3::hash(&data)),
                    "{n} segments, the last {last} bytes"
                );
            }
        }
        assert_eq!(tree_hash(&[segment_cv(b"x", 0)]), None);
    }

    #[test]
    fn a_segment_is_checked_at_its_place() {
        let data = body(SEGMENT * 3);
        let s1 = &data[SEGMENT..SEGMENT * 2];
        let cv = segment_cv(s1, 1);
        assert!(segment_is(&cv, 1, s1));
        // The same bytes elsewhere in the body, or hashed on their own, are not it.
        assert!(!segment_is(&cv, 2, s1));
        assert_ne!(&cv, blake3::hash(s1).as_bytes());
        let mut changed = s1.to_vec();
        changed[1000] ^= 1;
        assert!(!segment_is(&cv, 1, &changed));
        assert!(!segment_is(&cv, 1, b""));
    }

    #[test]
    fn part_names_round_trip_and_hostile_ones_are_refused() {
        let cv = segment_cv(b"abc", 7);
        assert_eq!(parse_part_name(&part_name(&cv, 7)), Some((cv, 7)));
        let hex = blake3::Hash::from_bytes(cv).to_hex().to_string();
        for bad in [
            hex.clone(),
            format!("{hex}@"),
            format!("{hex}@-1"),
            format!("{hex}@x"),
            format!("{hex}@{}", usize::MAX),
            format!("{}@1", &hex[..60]),
            "@1".to_string(),
        ] {
            assert_eq!(parse_part_name(&bad), None, "{bad}");
        }
    }
}
