//! A compact o200k BPE token counter: the same counts as OpenAI's tiktoken, in ~4 MiB.
//!
//! tiktoken keeps each of the 200 k vocabulary entries as its own heap `Vec` in two hash
//! maps and a sorted list (~35 MiB once built). Here the entries live in one byte arena
//! ordered by rank, with one `u32` end offset per rank and a hash table of ranks. Only
//! counting is needed, so there is no decoder. The vocabulary file is OpenAI's
//! `o200k_base.tiktoken` (MIT), compiled into the binary.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use base64::Engine as _;
use hashbrown::HashTable;

/// OpenAI's `o200k_base` vocabulary: one `base64(token) rank` line per token, rank order.
const VOCABULARY: &str = include_str!("o200k_base.tiktoken");

/// How o200k splits text into pieces before byte-pair merging (tiktoken's pattern).
const PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"\p{N}{1,3}",
    "|",
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    "|",
    r"\s*[\r\n]+",
    "|",
    r"\s+(?!\S)",
    "|",
    r"\s+",
);

type Rank = u32;
const NONE: Rank = Rank::MAX;

pub struct O200k {
    /// Every token's bytes, in rank order.
    arena: Box<[u8]>,
    /// `ends[r]`: where token `r` ends in the arena (it starts where `r - 1` ends).
    ends: Box<[u32]>,
    /// Ranks, found by their bytes' hash.
    table: HashTable<Rank>,
    pieces: fancy_regex::Regex,
}

/// A fast, well-mixed hash of a short byte string (FxHash's step, then a final mix).
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = bytes.len() as u64;
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    (h ^ (h >> 29)).wrapping_mul(K) ^ (h >> 32)
}

impl O200k {
    /// Builds the tables from the compiled-in vocabulary.
    pub fn load() -> Result<Self, String> {
        let lines = VOCABULARY.lines().count();
        let mut arena = Vec::with_capacity(lines * 7);
        let mut ends = Vec::with_capacity(lines);
        let b64 = base64::engine::general_purpose::STANDARD;
        for (i, line) in VOCABULARY.lines().enumerate() {
            let (token, rank) = line
                .split_once(' ')
                .ok_or_else(|| format!("vocabulary line {i} has no rank"))?;
            if rank.parse::<usize>().ok() != Some(i) {
                return Err(format!("vocabulary line {i} is out of rank order"));
            }
            b64.decode_vec(token, &mut arena)
                .map_err(|e| format!("vocabulary line {i}: {e}"))?;
            ends.push(u32::try_from(arena.len()).map_err(|_| "vocabulary too large")?);
        }
        let mut me = Self {
            arena: arena.into_boxed_slice(),
            ends: ends.into_boxed_slice(),
            // Filled below, once the arena it hashes is in place.
            table: HashTable::new(),
            pieces: fancy_regex::Regex::new(PATTERN).map_err(|e| e.to_string())?,
        };
        let mut table = HashTable::with_capacity(lines);
        for rank in 0..me.ends.len() {
            let rank = Rank::try_from(rank).map_err(|_| "vocabulary too large")?;
            let bytes = me.token(rank);
            table.insert_unique(hash(bytes), rank, |r| hash(me.token(*r)));
        }
        me.table = table;
        Ok(me)
    }

    fn token(&self, rank: Rank) -> &[u8] {
        let r = rank as usize;
        let start = if r == 0 { 0 } else { self.ends[r - 1] as usize };
        &self.arena[start..self.ends[r] as usize]
    }

    fn rank(&self, bytes: &[u8]) -> Rank {
        self.table
            .find(hash(bytes), |r| self.token(*r) == bytes)
            .copied()
            .unwrap_or(NONE)
    }

    /// Tokens in `text`, as tiktoken's `encode_ordinary(text).len()`.
    pub fn count(&self, text: &str) -> u64 {
        let mut n = 0u64;
        let mut done = 0;
        for piece in self.pieces.find_iter(text) {
            let Ok(piece) = piece else {
                // The splitter gave up (backtracking limit): ~4 bytes a token for the rest.
                return n + (text.len() - done).div_ceil(4) as u64;
            };
            done = piece.end();
            let bytes = piece.as_str().as_bytes();
            n += if self.rank(bytes) != NONE {
                1
            } else {
                self.merged_len(bytes)
            };
        }
        n
    }

    /// Tokens that byte-pair merging makes of `piece`: the lowest-ranked adjacent pair is
    /// merged first (the leftmost among equals), until no pair is a token.
    fn merged_len(&self, piece: &[u8]) -> u64 {
        let len = piece.len();
        if len < 2 {
            return len as u64;
        }
        // Parts are linked by their start: `end[s]` is where the part starting at `s` ends,
        // `prev[s]` where the part before it starts; `pair[s]` the rank of it and its next.
        let mut end: Vec<usize> = (1..=len).collect();
        let mut prev: Vec<usize> = (0..len).map(|i| i.wrapping_sub(1)).collect();
        let mut pair = vec![NONE; len];
        let mut heap = BinaryHeap::with_capacity(len);
        for s in 0..len - 1 {
            pair[s] = self.rank(&piece[s..s + 2]);
            if pair[s] != NONE {
                heap.push(Reverse((pair[s], s)));
            }
        }
        let mut parts = len as u64;
        while let Some(Reverse((rank, s))) = heap.pop() {
            // Stale entries: the part was absorbed (end is 0) or its pair has changed.
            if end[s] == 0 || pair[s] != rank {
                continue;
            }
            let absorbed = end[s];
            end[s] = end[absorbed];
            end[absorbed] = 0;
            pair[absorbed] = NONE;
            parts -= 1;
            let next = end[s];
            if next < len {
                prev[next] = s;
            }
            pair[s] = if next < len {
                self.rank(&piece[s..end[next]])
            } else {
                NONE
            };
            if pair[s] != NONE {
                heap.push(Reverse((pair[s], s)));
            }
            let p = prev[s];
            if p != usize::MAX {
                pair[p] = self.rank(&piece[p..end[s]]);
                if pair[p] != NONE {
                    heap.push(Reverse((pair[p], p)));
                }
            }
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> u64 {
        static BPE: std::sync::OnceLock<tiktoken_rs::CoreBPE> = std::sync::OnceLock::new();
        BPE.get_or_init(|| tiktoken_rs::o200k_base().expect("tiktoken o200k"))
            .encode_ordinary(text)
            .len() as u64
    }

    fn ours() -> &'static O200k {
        static OURS: std::sync::OnceLock<O200k> = std::sync::OnceLock::new();
        OURS.get_or_init(|| O200k::load().expect("vocabulary loads"))
    }

    #[test]
    fn counts_match_tiktoken_on_varied_text() {
        let samples = [
            "",
            "Hello world",
            "The capital of France is Paris.",
            "  leading and trailing spaces   ",
            "tabs\tand\nnew\r\nlines\n\n\n",
            "I'm sure they'll say we've done it, haven't we? DON'T",
            "1234567890 3.14159 -42 1e10 0x1F",
            "fn main() { println!(\"{}\", x.iter().map(|v| v * 2).sum::<u64>()); }",
            "日本語のテキストと中文文本，还有한국어 텍스트.",
            "emoji 🎉🚀👩‍👩‍👧‍👦 and accents: café naïve résumé Ωμέγα",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "!!!!!!!!!!????????.........------_____=====",
            "https://example.com/path?query=value&other=1#frag",
            "SGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQgZW5jb2RlZCB0ZXh0IGZvciB0ZXN0aW5n",
            "<|endoftext|> special markers are plain text here",
        ];
        for s in samples {
            assert_eq!(ours().count(s), reference(s), "{s:?}");
        }
        // A long piece with no splits goes through the heap merge at length.
        let long: String = "abcdefghij".repeat(500);
        assert_eq!(ours().count(&long), reference(&long));
        let long_b64: String = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkr".repeat(300);
        assert_eq!(ours().count(&long_b64), reference(&long_b64));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn counts_match_tiktoken_on_random_text(s in "\\PC{0,200}") {
            proptest::prop_assert_eq!(ours().count(&s), reference(&s));
        }

        #[test]
        fn counts_match_tiktoken_on_random_ascii(s in "[ -~\t\n]{0,300}") {
            proptest::prop_assert_eq!(ours().count(&s), reference(&s));
        }
    }
}
