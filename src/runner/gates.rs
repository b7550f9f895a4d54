//! Competence gates of a controlled-world run, measured from what the stages handed on: can the
//! SFT policy speak the world's language, does the scalar RM order held-out pairs as the gold
//! does, and does the seq2seq RM copy good responses while departing from bad ones (the
//! divergence rule's precondition, on both kinds of input)?

use super::Gathered;
use crate::report::gates::Gate;
use crate::world::World;
use std::collections::HashMap;

/// Share of SFT answers that parse in the world's grammar.
pub const SFT_PARSE_GOAL: f64 = 0.95;
/// Held-out pair accuracy of the scalar RM against the world's labels: it learned its data. (Not
/// against the gold: where the labels carry a planted bias, learning the bias is the point.)
pub use crate::report::gates::{COPY_GOAL, DIVERGE_GOAL, SCALAR_RM_GOAL, SEQ2SEQ_RANK_GOAL, SEQ2SEQ_RANK_WHAT};

pub(super) fn measure(world: &World, g: &Gathered, seeds: &[u64]) -> Vec<Gate> {
    let text: HashMap<(&str, usize), &str> = g.tokens.eval_prompts.iter().map(|p| ((p.set.as_str(), p.id), p.text.as_str())).collect();
    let rm = |seed: u64, model: &str, metric: &str| {
        g.rm_eval.iter().find(|(s, m, k, _, _)| *s == seed && m == model && k == metric).map_or(f64::NAN, |r| r.3)
    };
    let mut out = Vec::new();
    for &seed in seeds {
        let sft: Vec<_> = g.gens.iter().filter(|(s, r)| *s == seed && r.policy == "sft" && !r.set.starts_with("ood_")).map(|(_, r)| r).collect();
        let n = sft.len().max(1) as f64;
        let parses = sft.iter().filter(|r| world.parses(text[&(r.set.as_str(), r.prompt_id)], &r.response)).count() as f64;
        let gold = sft.iter().map(|r| r.judge_score as f64).sum::<f64>() / n;
        let mut gate = |name: &str, value: f64, goal: Option<f64>, what: &str| out.push(Gate { seed, gate: name.into(), value, goal, what: what.into() });
        gate("sft_parse_rate", parses / n, Some(SFT_PARSE_GOAL), "SFT answers to in-distribution eval prompts that parse in the world's grammar");
        gate("sft_gold_mean", gold, None, "mean gold score of those SFT answers");
        gate("scalar_rm_accuracy", rm(seed, "scalar_rm", "pair_accuracy"), Some(SCALAR_RM_GOAL), "scalar RM's held-out pair accuracy against the world's labels (noise and planted bias included)");
        gate("seq2seq_rm_accuracy", rm(seed, "seq2seq_rm", "pair_accuracy"), Some(SEQ2SEQ_RANK_GOAL), &format!("{SEQ2SEQ_RANK_WHAT}; against the world's labels"));
        gate("seq2seq_copy_chosen", rm(seed, "seq2seq_rm", "token_copy_rate"), Some(COPY_GOAL), "seq2seq RM: share of chosen-response tokens its argmax reproduces (input: the chosen response)");
        gate("seq2seq_diverges_on_rejected", 1.0 - rm(seed, "seq2seq_rm", "copy_rate_rejected"), Some(DIVERGE_GOAL), "seq2seq RM: share of rejected responses it departs from (input: the rejected response)");
        gate("seq2seq_diverges_at_difference", rm(seed, "seq2seq_rm", "diverges_where_rejected_differs"), None, "seq2seq RM: share of rejected responses whose first divergence is where they first differ from the chosen one");
        gate("seq2seq_copy_rejected", rm(seed, "seq2seq_rm", "token_copy_rate_rejected"), None, "seq2seq RM: share of rejected-response tokens its argmax reproduces (close to the chosen rate: the rule rewards length)");
    }
    out
}
