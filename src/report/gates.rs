//! Competence gates: the measurements that say whether the models of a run can do the task at all.
//! A verdict over models that cannot do the task is not a result, so a failed gate turns every
//! verdict of the report into `inconclusive` (the run still completes and reports its numbers).
//!
//! The runner measures them (`runner::gates`, in a controlled world where the gold reward says
//! what "can do the task" means) and stores them in `run_info.json`; this module renders them.

use super::stats::Verdict;
use super::verdicts::{f3, pct, table};
use serde::{Deserialize, Serialize};
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
    if matches!(v, Verdict::Reproduced | Verdict::NotReproduced) && !failed(gates).is_empty() { Verdict::Inconclusive } else { v }
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
}
