//! Pseudo-word lexicon: pronounceable lowercase words of 2–3 syllables from a seeded syllable
//! table. A world uses few distinct syllables (`TABLE_SYLLABLES`), so a small BPE tokenizer learns
//! them as units and spells every word in 2–3 pieces.

use crate::util::SplitMix64;
use std::collections::BTreeSet;

const ONSETS: [&str; 18] = [
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "sh", "ch", "tr", "pl",
];
const VOWELS: [&str; 5] = ["a", "e", "i", "o", "u"];
const CODAS: [&str; 3] = ["", "n", "l"];
/// Onsets a world keeps (of `ONSETS`).
const TABLE_ONSETS: usize = 12;
/// Syllables a world keeps (of `TABLE_ONSETS * 5 * 3`): 40^2 + 40^3 words are possible, far
/// above `spec::MAX_VOCAB_WORDS`.
const TABLE_SYLLABLES: usize = 40;

/// `n` distinct pseudo-words in draw order (already random), none in `reserved`.
pub(crate) fn generate(n: usize, reserved: &BTreeSet<&str>, rng: &mut SplitMix64) -> Vec<String> {
    let mut onsets = ONSETS.to_vec();
    rng.shuffle(&mut onsets);
    onsets.truncate(TABLE_ONSETS);
    let mut table: Vec<String> = Vec::new();
    for o in &onsets {
        for v in VOWELS {
            for c in CODAS {
                table.push(format!("{o}{v}{c}"));
            }
        }
    }
    rng.shuffle(&mut table);
    table.truncate(TABLE_SYLLABLES);
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(n);
    // Terminates: the table spells far more distinct words than the largest `n`.
    while out.len() < n {
        let syllables = if rng.below(4) == 0 { 3 } else { 2 };
        let w: String = (0..syllables)
            .map(|_| table[rng.below(table.len())].as_str())
            .collect();
        if !reserved.contains(w.as_str()) && seen.insert(w.clone()) {
            out.push(w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_distinct_lowercase_and_avoid_reserved() {
        // "bana" is reachable from any table holding "ba" and "na"; reserve a few plausible ones.
        let reserved: BTreeSet<&str> = ["some", "tone", "bana", "mile"].into_iter().collect();
        for seed in 0..5 {
            let w = generate(3000, &reserved, &mut SplitMix64::new(seed));
            assert_eq!(w.len(), 3000);
            let set: BTreeSet<&String> = w.iter().collect();
            assert_eq!(set.len(), 3000, "duplicates for seed {seed}");
            for x in &w {
                assert!(
                    x.len() >= 2 && x.bytes().all(|b| b.is_ascii_lowercase()),
                    "{x}"
                );
                assert!(!reserved.contains(x.as_str()), "{x} is reserved");
            }
        }
    }

    #[test]
    fn syllable_table_is_small_and_seeded() {
        let a = generate(50, &BTreeSet::new(), &mut SplitMix64::new(1));
        let b = generate(50, &BTreeSet::new(), &mut SplitMix64::new(1));
        let c = generate(50, &BTreeSet::new(), &mut SplitMix64::new(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Syllables are 2-4 letters (onset, vowel, optional coda), words 2-3 syllables.
        for w in generate(2000, &BTreeSet::new(), &mut SplitMix64::new(3)) {
            assert!((4..=12).contains(&w.len()), "{w}");
        }
    }
}
