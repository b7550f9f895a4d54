//! Competence gates: the measurements that say whether the models of a run can do the task at all.
//! A verdict over models that cannot do the task is not a result, so a failed gate turns every
//! verdict of the report into `inconclusive` (the run still completes and reports its numbers).
//!
//! The runner measures them (`runner::gates`, in a controlled world where the gold reward says
//! what "can do the task" means) and stores them in `run_info.json`; this module renders them.
//! On real data there is no gold, so the gates are the reward models' and the judge's held-out
//! numbers ([`real_data`]): taken from `rm_eval.csv`, so that runs from before these gates get
//! them too.

use super::stats::Verdict;
use super::verdicts::{f3, pct, table};
use serde::{Deserialize, Serialize};
use crate::data::KINDS;
use std::collections::BTreeMap;

/// One gate of one seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub seed: u64,
    /// e.g. `sft_parse_rate`.
    pub gate: String,
    pub value: f64,
    /// The threshold the value must reach (`None`: reported only, not a gate).
    pub goal: Option<f64>,
    pub what: String,
}

impl Gate {
    pub fn passed(&self) -> Option<bool> {
        self.goal.map(|g| self.value >= g)
    }
}

/// Held-out pair accuracy the judge must reach before its verdicts mean anything (real data).
pub const JUDGE_GOAL: f64 = 0.65;
/// The scalar RM's held-out pair accuracy (real data; as in a world).
pub const SCALAR_RM_GOAL: f64 = 0.6;
/// Share of chosen-response tokens the seq2seq RM's argmax reproduces.
pub const COPY_GOAL: f64 = 0.95;
/// Share of rejected responses on which the seq2seq RM departs somewhere.
pub const DIVERGE_GOAL: f64 = 0.8;
/// Held-out pairs in which the seq2seq RM's summed divergence reward prefers the chosen response:
/// no worse than a coin. The copy and departure gates alone pass an untrained SmolLM2 start (it
/// departs from 0.875 of rejected responses) whose summed reward prefers the rejected response in
/// 62% of pairs (results/diagnostics/seq2seq_smollm2_2026-12-05); PPO on such a reward is pushed
/// towards the rejected behaviour. Chance, not the scalar RM's 0.6: where the labels carry a length
/// bias, not learning it is the method's claim.
pub const SEQ2SEQ_RANK_GOAL: f64 = 0.5;
/// What the seq2seq ranking gate measures (one wording for real data and worlds).
pub const SEQ2SEQ_RANK_WHAT: &str = "seq2seq RM: held-out pairs whose summed divergence reward prefers the chosen response (below 0.5 it rewards the rejected behaviour)";

/// The gates of a real-data run from its reward-model rows `(seed, model, metric, value)`: the
/// judge (at its own, shared seed), and per seed the scalar RM's accuracy and the seq2seq RM's
/// copy-versus-diverge balance.
pub fn real_data<'a>(rows: impl Iterator<Item = (u64, &'a str, &'a str, f64)> + Clone) -> Vec<Gate> {
    let get = |seed: u64, model: &str, metric: &str| rows.clone().find(|r| r.0 == seed && r.1 == model && r.2 == metric).map(|r| r.3);
    let mut seeds: Vec<u64> = rows.clone().filter(|r| r.1 == "seq2seq_rm" || r.1 == "scalar_rm").map(|r| r.0).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let mut out = Vec::new();
    let mut gate = |seed: u64, name: &str, value: Option<f64>, goal: Option<f64>, what: &str| {
        if let Some(value) = value {
            out.push(Gate { seed, gate: name.into(), value, goal, what: what.into() });
        }
    };
    // Per kind of prompt (benign / harmful, as the eval sets), reported beside each accuracy gate.
    let kinds = |model: &'a str| rows.clone().filter(move |r| r.1 == model).filter_map(|r| Some((r.0, r.2.strip_prefix(crate::eval::BY_KIND).filter(|k| KINDS.contains(k))?, r.3)));
    if let Some(judge) = rows.clone().find(|r| r.1 == "judge" && r.2 == "pair_accuracy") {
        gate(judge.0, "judge_accuracy", Some(judge.3), Some(JUDGE_GOAL), "judge's held-out pair accuracy (it decides every win rate)");
        for (seed, kind, v) in kinds("judge") {
            gate(seed, &format!("judge_accuracy_{kind}"), Some(v), None, &format!("judge's held-out pair accuracy on {kind} prompts"));
        }
    }
    for seed in seeds {
        // Each RM's pair accuracy against its goal, then per kind of prompt beside it.
        let accuracies = [
            ("scalar_rm", SCALAR_RM_GOAL, "scalar RM's held-out pair accuracy", "scalar RM's held-out pair accuracy"),
            ("seq2seq_rm", SEQ2SEQ_RANK_GOAL, SEQ2SEQ_RANK_WHAT, "seq2seq RM's held-out pair accuracy (summed reward)"),
        ];
        for (model, goal, what, per_kind) in accuracies {
            gate(seed, &format!("{model}_accuracy"), get(seed, model, "pair_accuracy"), Some(goal), what);
            for (_, kind, v) in kinds(model).filter(|r| r.0 == seed) {
                gate(seed, &format!("{model}_accuracy_{kind}"), Some(v), None, &format!("{per_kind} on {kind} prompts"));
            }
        }
        gate(seed, "seq2seq_copy_chosen", get(seed, "seq2seq_rm", "token_copy_rate"), Some(COPY_GOAL), "seq2seq RM: share of chosen-response tokens its argmax reproduces (input: the chosen response)");
        let departs = get(seed, "seq2seq_rm", "copy_rate_rejected").map(|c| 1.0 - c);
        gate(seed, "seq2seq_diverges_on_rejected", departs, Some(DIVERGE_GOAL), "seq2seq RM: share of rejected responses it departs from (input: the rejected response)");
        gate(seed, "seq2seq_copy_rejected", get(seed, "seq2seq_rm", "token_copy_rate_rejected"), None, "seq2seq RM: share of rejected-response tokens its argmax reproduces (close to the chosen rate: the rule rewards length)");
    }
    out
}

/// Gate names that failed on some seed, in first-seen order.
pub fn failed(gates: &[Gate]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for g in gates.iter().filter(|g| g.passed() == Some(false)) {
        if !out.contains(&g.gate) {
            out.push(g.gate.clone());
        }
    }
    out
}

/// `v`, or `inconclusive` when a gate failed (a measured verdict only).
pub fn gated(v: Verdict, gates: &[Gate]) -> Verdict {
    gated_if(v, !failed(gates).is_empty())
}

/// `v`, or `inconclusive` when `any_failed` (a verdict over several runs, one of which failed).
pub fn gated_if(v: Verdict, any_failed: bool) -> Verdict {
    if matches!(v, Verdict::Reproduced | Verdict::NotReproduced) && any_failed { Verdict::Inconclusive } else { v }
}

/// The `## Competence gates` section (empty when the run measured none).
pub fn section(gates: &[Gate]) -> String {
    if gates.is_empty() {
        return String::new();
    }
    let mut by_gate: BTreeMap<&str, Vec<&Gate>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for g in gates {
        if !by_gate.contains_key(g.gate.as_str()) {
            order.push(&g.gate);
        }
        by_gate.entry(&g.gate).or_default().push(g);
    }
    let rows: Vec<Vec<String>> = order
        .iter()
        .map(|name| {
            let of = &by_gate[name];
            let per_seed = of.iter().map(|g| format!("{}: {}", g.seed, f3(g.value))).collect::<Vec<_>>().join(", ");
            let goal = of[0].goal.map_or("reported".to_string(), |g| format!("≥ {}", f3(g)));
            let status = match (of.iter().all(|g| g.passed() == Some(true)), of[0].goal.is_some()) {
                (_, false) => "—".to_string(),
                (true, true) => "pass".to_string(),
                (false, true) => "**FAIL**".to_string(),
            };
            vec![format!("`{name}`"), of[0].what.clone(), per_seed, goal, status]
        })
        .collect();
    let mut o = String::from("## Competence gates\n\n");
    o.push_str("Before two policies are compared, the models must be shown able to do the task; each gate must pass on every seed.\n\n");
    table(&mut o, &["Gate", "What", "Value per seed", "Goal", "Status"], &rows);
    let failed = failed(gates);
    if failed.is_empty() {
        o.push_str("Every gate passed: the verdicts below are evidence.\n\n");
    } else {
        let names = failed.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ");
        o.push_str(&format!(
            "**Gate(s) failed: {names}.** Every verdict below is therefore **inconclusive**: it would measure what these models cannot do, not the method.\n\n"
        ));
    }
    o
}

/// One paragraph on a world's generated preference data: the planted knobs as measured.
pub fn world_data(stats: &BTreeMap<String, f64>) -> String {
    if stats.is_empty() {
        return String::new();
    }
    let get = |k: &str| stats.get(k).copied().unwrap_or(f64::NAN);
    format!(
        "**The world's preference data** ({} pairs): {} of pairs on harmful prompts; a refusal is chosen in {} of the \
         pairs that hold one; {} of benign pairs hold a refusal; the longer response is chosen in {} of pairs of \
         unequal length ({} of labels planted by the length preference); the label agrees with the gold in {} of \
         pairs of unequal gold.\n\n",
        get("n_pairs"),
        pct(get("harmful_share")),
        pct(get("refusal_chosen_given_refusal")),
        pct(get("benign_refusal_share")),
        pct(get("longer_chosen_share")),
        pct(get("planted_share")),
        pct(get("gold_agreement")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(seed: u64, name: &str, value: f64, goal: Option<f64>) -> Gate {
        Gate { seed, gate: name.into(), value, goal, what: String::new() }
    }

    #[test]
    fn a_failed_gate_on_any_seed_voids_measured_verdicts() {
        let ok = [gate(1, "copy", 0.99, Some(0.95)), gate(2, "copy", 0.97, Some(0.95)), gate(1, "gold", -3.0, None)];
        assert!(failed(&ok).is_empty());
        assert_eq!(gated(Verdict::Reproduced, &ok), Verdict::Reproduced);
        let bad = [gate(1, "copy", 0.99, Some(0.95)), gate(2, "copy", 0.90, Some(0.95))];
        assert_eq!(failed(&bad), ["copy"]);
        assert_eq!(gated(Verdict::Reproduced, &bad), Verdict::Inconclusive);
        assert_eq!(gated(Verdict::NotReproduced, &bad), Verdict::Inconclusive);
        assert_eq!(gated(Verdict::NotMeasured, &bad), Verdict::NotMeasured);
        let s = section(&bad);
        assert!(s.contains("**FAIL**") && s.contains("`copy`") && s.contains("inconclusive"), "{s}");
        assert!(section(&[]).is_empty());
    }

    #[test]
    fn per_kind_accuracies_are_reported_beside_their_gates_never_gating() {
        let rows = [
            (0, "judge", "pair_accuracy", 0.61),
            (0, "judge", "pair_accuracy_harmful", 0.70),
            (0, "judge", "pair_accuracy_benign", 0.52),
            (0, "judge", "pair_accuracy_mean_logprob", 0.9),
            (1, "scalar_rm", "pair_accuracy", 0.62),
            (1, "scalar_rm", "pair_accuracy_harmful", 0.80),
            (2, "scalar_rm", "pair_accuracy", 0.63),
            (2, "scalar_rm", "pair_accuracy_harmful", 0.81),
        ];
        let g = real_data(rows.iter().copied());
        let find = |seed: u64, name: &str| g.iter().find(|x| x.seed == seed && x.gate == name).map(|x| (x.value, x.goal));
        assert_eq!(find(0, "judge_accuracy"), Some((0.61, Some(JUDGE_GOAL))));
        assert_eq!(find(0, "judge_accuracy_harmful"), Some((0.70, None)));
        assert_eq!(find(0, "judge_accuracy_benign"), Some((0.52, None)));
        assert_eq!(find(2, "scalar_rm_accuracy_harmful"), Some((0.81, None)));
        assert_eq!(find(1, "scalar_rm_accuracy_harmful"), Some((0.80, None)));
        assert!(!g.iter().any(|x| x.gate.contains("mean_logprob")), "{g:?}");
        assert_eq!(failed(&g), ["judge_accuracy"]);
    }

    #[test]
    fn a_seq2seq_rm_whose_summed_reward_prefers_rejected_responses_fails_even_when_it_copies_and_departs() {
        // The untrained SmolLM2 start: it copies and departs as the gates ask, and ranks pairs backwards.
        let rows = |acc: f64| {
            vec![
                (1, "seq2seq_rm", "token_copy_rate", 0.96),
                (1, "seq2seq_rm", "copy_rate_rejected", 0.125),
                (1, "seq2seq_rm", "pair_accuracy", acc),
                (1, "seq2seq_rm", "pair_accuracy_harmful", 0.40),
            ]
        };
        let g = real_data(rows(0.383).into_iter());
        assert_eq!(failed(&g), ["seq2seq_rm_accuracy"], "{g:?}");
        let harmful = g.iter().find(|x| x.gate == "seq2seq_rm_accuracy_harmful").unwrap();
        assert_eq!((harmful.value, harmful.goal), (0.40, None));
        assert!(failed(&real_data(rows(0.5).into_iter())).is_empty(), "chance is the floor, not a failure");
        assert!(failed(&real_data(rows(0.62).into_iter())).is_empty());
    }
}
