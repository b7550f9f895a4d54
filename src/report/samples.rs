//! "Sample answers": a few eval prompts with the SFT, scalar-RM and seq2seq-RM policies' answers
//! side by side, so that a reader sees whether the policies speak before reading any rate.

use super::inputs::Generation;
use super::verdicts::{cell, table};
use std::collections::BTreeMap;

/// Policies in the order the columns show them.
const POLICIES: [&str; 3] = ["sft", "ppo_scalar", "ppo_seq2seq"];
/// Prompts shown per prompt set, and characters shown per answer.
const PER_SET: usize = 2;
const MAX_CHARS: usize = 200;

/// An answer cut to [`MAX_CHARS`] characters (on a character boundary), marked when cut.
fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None if s.is_empty() => "(empty)".into(),
        None => s.to_string(),
    }
}

/// The section: for the first seed and size, the first [`PER_SET`] prompts of each prompt set
/// (sorted by name) that all three policies answered; empty when there are none.
pub fn section(gens: &[Generation]) -> String {
    let Some(first) = gens.iter().min_by(|a, b| (&a.size, a.seed).cmp(&(&b.size, b.seed))) else {
        return String::new();
    };
    let mut answers: BTreeMap<(&str, i64), BTreeMap<&str, &str>> = BTreeMap::new();
    for g in gens.iter().filter(|g| g.size == first.size && g.seed == first.seed) {
        answers.entry((&g.prompt_set, g.prompt_id)).or_default().insert(&g.policy, &g.response);
    }
    let mut rows = Vec::new();
    let mut shown: BTreeMap<&str, usize> = BTreeMap::new();
    for ((set, id), by_policy) in &answers {
        let n = shown.entry(set).or_default();
        if *n == PER_SET || !POLICIES.iter().all(|p| by_policy.contains_key(p)) {
            continue;
        }
        *n += 1;
        let mut row = vec![format!("`{set}` #{id}")];
        row.extend(POLICIES.iter().map(|p| cell(&clip(by_policy[p]))));
        rows.push(row);
    }
    if rows.is_empty() {
        return String::new();
    }
    let mut o = format!(
        "## Sample answers\n\nSeed {}{}: the first {PER_SET} prompts of each set by id (the prompt texts are not in `generations.csv`), \
         answers cut at {MAX_CHARS} characters.\n\n",
        first.seed,
        if first.size.is_empty() { String::new() } else { format!(", size `{}`", first.size) },
    );
    table(&mut o, &["prompt", "sft", "ppo_scalar", "ppo_seq2seq"], &rows);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(seed: i64, policy: &str, set: &str, id: i64, response: &str) -> Generation {
        Generation { size: "tiny".into(), seed, policy: policy.into(), prompt_set: set.into(), prompt_id: id, response: response.into(), ..Default::default() }
    }

    #[test]
    fn shows_the_first_prompts_all_policies_answered_side_by_side() {
        let mut gens = Vec::new();
        for id in 0..4 {
            for p in POLICIES {
                // prompt 0 lacks a seq2seq answer; seed 2 is never shown
                if !(id == 0 && p == "ppo_seq2seq") {
                    gens.push(g(1, p, "benign", id, &format!("{p} says {id} | ok")));
                }
                gens.push(g(2, p, "benign", id, "later seed"));
            }
        }
        gens.push(g(1, "sft", "harmful", 0, &"x".repeat(300)));
        let s = section(&gens);
        assert!(s.contains("| `benign` #1 | sft says 1 \\| ok | ppo_scalar says 1 \\| ok | ppo_seq2seq says 1 \\| ok |"), "{s}");
        assert!(s.contains("`benign` #2") && !s.contains("`benign` #0") && !s.contains("`benign` #3"), "{s}");
        assert!(!s.contains("later seed") && !s.contains("harmful"), "{s}");
        assert_eq!(clip(&"é".repeat(300)).chars().count(), MAX_CHARS + 1);
        assert_eq!(clip("  "), "(empty)");
        assert_eq!(section(&[]), "");
    }
}
