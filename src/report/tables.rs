//! The derived table `metrics.csv` and the keys and display orders every table shares. The win
//! rates and paired differences, which resample prompts, are in `wins.rs`; the summaries of the
//! PPO, reward-model and training logs in `logs.rs`.
//!
//! Everything is keyed by [`Group`] = (experiment, size), so a directory holding several presets
//! still gives one coherent set of tables. Rows are sorted by explicit keys, which is what makes
//! the outputs byte-identical between runs.

use super::inputs::Generation;
use super::rouge::rouge_l_f1;
use crate::frame::{floats, strings};
use anyhow::Result;
use polars::prelude::*;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;

/// Policies in display order; unknown names sort after these, alphabetically.
pub const POLICY_ORDER: [&str; 3] = ["sft", "ppo_scalar", "ppo_seq2seq"];
/// Prompt sets in display order; `all` (the union, added by us) always comes last.
pub const SET_ORDER: [&str; 4] = ["benign", "harmful", "ood_alpaca", "ood_harmful"];
/// The union of the in-distribution prompt sets: the headline win rate is measured on it.
pub const ALL_SETS: &str = "all";
/// Out-of-distribution prompt sets (prompts of datasets no stage trains on) carry this prefix.
/// They are reported on their own rows and kept out of `all`, so the headline stays comparable
/// between runs with and without them.
pub const OOD_PREFIX: &str = "ood_";
const SIZE_ORDER: [&str; 8] = ["nano", "micro", "tiny", "small", "base", "medium", "large", "xl"];

/// Sort key for a name with a preferred order: known names by position, the rest alphabetically.
pub fn rank(order: &[&str], name: &str) -> (usize, String) {
    match order.iter().position(|o| *o == name) {
        Some(pos) => (pos, String::new()),
        None => (order.len(), name.to_string()),
    }
}

pub fn set_rank(name: &str) -> (usize, usize, String) {
    let (p, s) = rank(&SET_ORDER, name);
    ((name == ALL_SETS) as usize, p, s)
}

/// The distinct names, sorted by `key`.
pub fn distinct<'a, K: Ord>(names: impl IntoIterator<Item = &'a str>, key: impl Fn(&str) -> K) -> Vec<String> {
    let mut v: Vec<String> = names.into_iter().collect::<BTreeSet<_>>().into_iter().map(String::from).collect();
    v.sort_by_key(|n| key(n));
    v
}

/// Whether a prompt set is in-distribution (part of `all`).
pub fn in_distribution(set: &str) -> bool {
    !set.starts_with(OOD_PREFIX)
}

/// Whether a row of prompt set `row_set` belongs to the reported set `set` (`all` = every
/// in-distribution set).
pub fn in_set(set: &str, row_set: &str) -> bool {
    if set == ALL_SETS { in_distribution(row_set) } else { row_set == set }
}

/// One (experiment, size) block of results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub experiment: String,
    pub size: String,
}

impl Group {
    pub fn new(experiment: &str, size: &str) -> Self {
        Self { experiment: experiment.to_string(), size: size.to_string() }
    }
    /// Whether a row of (experiment, size) belongs to this group.
    pub fn holds(&self, experiment: &str, size: &str) -> bool {
        self.experiment == experiment && self.size == size
    }
    fn key(&self) -> (&str, (usize, String)) {
        (&self.experiment, rank(&SIZE_ORDER, &self.size))
    }
}

impl Ord for Group {
    fn cmp(&self, o: &Self) -> Ordering {
        self.key().cmp(&o.key())
    }
}
impl PartialOrd for Group {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// A seed, or the row pooled over seeds (which sorts last).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SeedKey {
    Seed(i64),
    Pooled,
}

impl fmt::Display for SeedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeedKey::Seed(s) => write!(f, "{s}"),
            SeedKey::Pooled => write!(f, "pooled"),
        }
    }
}

/// Fixed-precision float for the CSVs (no `-0.000000`, so equal values always print equally).
pub fn fmt6(x: f64) -> String {
    let s = format!("{x:.6}");
    if s == "-0.000000" { "0.000000".to_string() } else { s }
}

/// The groups of a table's (experiment, size) columns, sorted.
pub fn log_groups<'a>(keys: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<Group> {
    keys.map(|(e, s)| Group::new(e, s)).collect::<BTreeSet<_>>().into_iter().collect()
}

/// All groups present in the generations, sorted.
pub fn groups_of(gens: &[Generation]) -> Vec<Group> {
    log_groups(gens.iter().map(|g| (g.experiment.as_str(), g.size.as_str())))
}

pub fn in_group<'a>(gens: &'a [Generation], grp: &'a Group) -> impl Iterator<Item = &'a Generation> {
    gens.iter().filter(move |g| grp.holds(&g.experiment, &g.size))
}

/// Policies present in a group, display-ordered.
pub fn policies_of(gens: &[Generation], grp: &Group) -> Vec<String> {
    distinct(in_group(gens, grp).map(|g| g.policy.as_str()), |p| rank(&POLICY_ORDER, p))
}

/// Real prompt sets present in a group (without `all`), display-ordered.
pub fn sets_of(gens: &[Generation], grp: &Group) -> Vec<String> {
    distinct(in_group(gens, grp).map(|g| g.prompt_set.as_str()).filter(|s| *s != ALL_SETS), set_rank)
}

// ---------------------------------------------------------------------------------------------
// metrics.csv

pub const METRICS_HEADER: [&str; 7] = ["experiment", "size", "seed", "policy", "prompt_set", "metric", "value"];

/// Names (and order) of the metrics in `metrics.csv`. `truncation_rate` is the share of responses
/// that hit the length limit (`max_new_tokens`) without an end token.
pub const CELL_METRICS: [&str; 7] =
    ["refusal_rate", "mean_length_tokens", "truncation_rate", "judge_score_mean", "rouge_l_f1", "length_ratio", "n_prompts"];

#[derive(Clone, Debug, PartialEq)]
pub struct MetricRow {
    pub group: Group,
    pub seed: SeedKey,
    pub policy: String,
    pub prompt_set: String,
    pub metric: &'static str,
    pub value: f64,
}

/// Per (seed, policy, prompt set) summaries plus `all` (the union of the in-distribution sets) and
/// a `pooled` row per (policy, set) that is the mean over seeds of the per-seed values. The
/// reference-based metrics exist in a cell only when every response of it has a reference (a
/// partial mean would mislead), and are pooled only when every seed's cell has them.
pub fn compute_metrics(gens: &[Generation]) -> Result<Vec<MetricRow>> {
    // (ROUGE-L F1, length / reference length), computed once per generation
    let refs: Vec<Option<(f64, f64)>> =
        gens.iter().map(|g| g.reference_length().map(|l| (rouge_l_f1(&g.response, &g.reference), g.length_tokens / l))).collect();
    // each generation counts in its set and, if in-distribution, in `all` (a set literally named
    // "all" is already the union)
    let rows: Vec<(usize, &str)> = gens
        .iter()
        .enumerate()
        .flat_map(|(i, g)| {
            let all = (g.prompt_set != ALL_SETS && in_distribution(&g.prompt_set)).then_some((i, ALL_SETS));
            std::iter::once((i, g.prompt_set.as_str())).chain(all)
        })
        .collect();
    let text = |name: &str, f: fn(&Generation) -> &str| Column::new(name.into(), rows.iter().map(|r| f(&gens[r.0])).collect::<Vec<_>>());
    let num = |name: &str, f: &dyn Fn(usize) -> Option<f64>| Column::new(name.into(), rows.iter().map(|r| f(r.0)).collect::<Vec<_>>());
    let df = DataFrame::new_infer_height(vec![
        text("experiment", |g| &g.experiment),
        text("size", |g| &g.size),
        text("policy", |g| &g.policy),
        Column::new("prompt_set".into(), rows.iter().map(|r| r.1).collect::<Vec<_>>()),
        Column::new("seed".into(), rows.iter().map(|r| gens[r.0].seed).collect::<Vec<_>>()),
        num("refusal_rate", &|i| Some(gens[i].refused as u8 as f64)),
        num("mean_length_tokens", &|i| Some(gens[i].length_tokens)),
        num("truncation_rate", &|i| Some(gens[i].truncated as u8 as f64)),
        num("judge_score_mean", &|i| Some(gens[i].judge_score)),
        num("rouge_l_f1", &|i| refs[i].map(|r| r.0)),
        num("length_ratio", &|i| refs[i].map(|r| r.1)),
    ])?;
    let cell = || [col("experiment"), col("size"), col("policy"), col("prompt_set")];
    // the mean where no value is missing, else null (no metric)
    let complete =
        |m: &str| when(col(m).null_count().eq(lit(0 as IdxSize))).then(col(m).mean()).otherwise(lit(NULL).cast(DataType::Float64)).alias(m);
    let mut aggs: Vec<Expr> = CELL_METRICS[..6].iter().map(|m| complete(m)).collect();
    aggs.push(len().cast(DataType::Float64).alias("n_prompts"));
    let by_seed = [cell().to_vec(), vec![col("seed")]].concat();
    // seeds ascending within a cell, so the pooled means add them up in seed order
    let per_seed =
        df.lazy().group_by_stable(by_seed).agg(aggs).sort(["seed"], SortMultipleOptions::default().with_maintain_order(true)).collect()?;
    let pooled = per_seed.clone().lazy().group_by_stable(cell()).agg(CELL_METRICS.map(complete)).collect()?;
    let mut out = Vec::new();
    for (df, is_pooled) in [(&per_seed, false), (&pooled, true)] {
        let (e, s, p, set) = (strings(df, "experiment")?, strings(df, "size")?, strings(df, "policy")?, strings(df, "prompt_set")?);
        let seed_col = if is_pooled { None } else { Some(df.column("seed")?.i64()?) };
        let seed_at = |i| seed_col.and_then(|c| c.get(i)).map_or(SeedKey::Pooled, SeedKey::Seed);
        for metric in CELL_METRICS {
            for (i, v) in floats(df, metric)?.into_iter().enumerate() {
                let Some(value) = v else { continue };
                out.push(MetricRow {
                    group: Group::new(&e[i], &s[i]),
                    seed: seed_at(i),
                    policy: p[i].clone(),
                    prompt_set: set[i].clone(),
                    metric,
                    value,
                });
            }
        }
    }
    let key = |r: &MetricRow| {
        (r.group.clone(), r.seed, rank(&POLICY_ORDER, &r.policy), set_rank(&r.prompt_set), CELL_METRICS.iter().position(|m| *m == r.metric))
    };
    out.sort_by_cached_key(key);
    Ok(out)
}

pub fn metrics_records(rows: &[MetricRow]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            let g = &r.group;
            vec![
                g.experiment.clone(),
                g.size.clone(),
                r.seed.to_string(),
                r.policy.clone(),
                r.prompt_set.clone(),
                r.metric.to_string(),
                fmt6(r.value),
            ]
        })
        .collect()
}

/// The values of one metric of (group, policy, set), per seed and pooled.
fn metric_rows<'a>(
    rows: &'a [MetricRow],
    grp: &'a Group,
    policy: &'a str,
    set: &'a str,
    metric: &'a str,
) -> impl Iterator<Item = &'a MetricRow> {
    rows.iter().filter(move |r| &r.group == grp && r.policy == policy && r.prompt_set == set && r.metric == metric)
}

/// Look up one pooled metric value.
pub fn pooled_metric(rows: &[MetricRow], grp: &Group, policy: &str, set: &str, metric: &str) -> Option<f64> {
    metric_rows(rows, grp, policy, set, metric).find(|r| r.seed == SeedKey::Pooled).map(|r| r.value)
}

/// min and max over seeds of one metric (for error bars).
pub fn seed_range(rows: &[MetricRow], grp: &Group, policy: &str, set: &str, metric: &str) -> Option<(f64, f64)> {
    let v: Vec<f64> = metric_rows(rows, grp, policy, set, metric).filter(|r| r.seed != SeedKey::Pooled).map(|r| r.value).collect();
    (!v.is_empty()).then(|| min_max(&v))
}

pub(super) fn min_max(v: &[f64]) -> (f64, f64) {
    (v.iter().copied().fold(f64::INFINITY, f64::min), v.iter().copied().fold(f64::NEG_INFINITY, f64::max))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::report::wins::compute_win_rates;

    #[allow(clippy::too_many_arguments)]
    pub(in crate::report) fn row(
        seed: i64,
        policy: &str,
        set: &str,
        id: i64,
        len: f64,
        trunc: bool,
        refused: bool,
        judge: f64,
    ) -> Generation {
        let (experiment, size, policy, prompt_set) = ("e".into(), "tiny".into(), policy.into(), set.into());
        let (prompt_id, length_tokens, truncated, judge_score) = (id, len, trunc, judge);
        Generation {
            experiment,
            size,
            seed,
            policy,
            prompt_set,
            prompt_id,
            length_tokens,
            truncated,
            refused,
            judge_score,
            ..Default::default()
        }
    }

    fn with_reference(mut g: Generation, response: &str, reference: &str, ref_len: f64) -> Generation {
        (g.response, g.reference, g.reference_length_tokens) = (response.into(), reference.into(), Some(ref_len));
        g
    }

    fn metric(rows: &[MetricRow], seed: SeedKey, policy: &str, set: &str, m: &str) -> f64 {
        rows.iter()
            .find(|r| r.seed == seed && r.policy == policy && r.prompt_set == set && r.metric == m)
            .unwrap_or_else(|| panic!("no {seed} {policy} {set} {m}"))
            .value
    }

    #[test]
    fn metrics_on_a_literal_table() {
        let gens = vec![
            row(0, "sft", "benign", 1, 10.0, false, true, 0.0),
            row(0, "sft", "benign", 2, 20.0, true, false, 1.0),
            row(0, "sft", "harmful", 3, 30.0, false, true, 2.0),
            row(1, "sft", "benign", 1, 40.0, false, false, 3.0),
            row(1, "sft", "benign", 2, 60.0, false, false, 5.0),
            row(1, "sft", "harmful", 3, 50.0, true, true, -1.0),
        ];
        let rows = compute_metrics(&gens).unwrap();
        use SeedKey::*;
        // seed 0 benign: refusal 1/2, length 15, truncation 1/2, judge 0.5, n 2
        assert_eq!(metric(&rows, Seed(0), "sft", "benign", "refusal_rate"), 0.5);
        assert_eq!(metric(&rows, Seed(0), "sft", "benign", "mean_length_tokens"), 15.0);
        assert_eq!(metric(&rows, Seed(0), "sft", "benign", "truncation_rate"), 0.5);
        assert_eq!(metric(&rows, Seed(0), "sft", "benign", "judge_score_mean"), 0.5);
        assert_eq!(metric(&rows, Seed(0), "sft", "benign", "n_prompts"), 2.0);
        // seed 1 benign: refusal 0, length 50 -> pooled benign refusal 0.25, length 32.5
        assert_eq!(metric(&rows, Pooled, "sft", "benign", "refusal_rate"), 0.25);
        assert_eq!(metric(&rows, Pooled, "sft", "benign", "mean_length_tokens"), 32.5);
        // "all" for seed 0: lengths 10,20,30 -> 20; refusals 2/3
        assert_eq!(metric(&rows, Seed(0), "sft", "all", "mean_length_tokens"), 20.0);
        assert!((metric(&rows, Seed(0), "sft", "all", "refusal_rate") - 2.0 / 3.0).abs() < 1e-12);
        // pooled "all" judge: seed 0 mean 1.0, seed 1 mean 7/3 -> 5/3
        assert!((metric(&rows, Pooled, "sft", "all", "judge_score_mean") - 5.0 / 3.0).abs() < 1e-12);
        // 3 cells (benign, harmful, all) x 3 seed keys x 5 metrics
        assert_eq!(rows.len(), 45);
        // sorted: seed 0 first, pooled last; benign < harmful < all within a seed
        assert_eq!(rows[0].seed, Seed(0));
        assert_eq!((rows[0].prompt_set.as_str(), rows[0].metric), ("benign", "refusal_rate"));
        assert_eq!(rows[10].prompt_set, "all");
        assert_eq!(rows.last().unwrap().seed, Pooled);
    }

    #[test]
    fn names_sort_known_first() {
        let mut v = vec!["zeta", "ppo_seq2seq", "alpha", "sft", "ppo_scalar"];
        v.sort_by_key(|p| rank(&POLICY_ORDER, p));
        assert_eq!(v, ["sft", "ppo_scalar", "ppo_seq2seq", "alpha", "zeta"]);
        let mut s = vec!["all", "ood_harmful", "harmful", "other", "ood_alpaca", "benign"];
        s.sort_by_key(|x| set_rank(x));
        assert_eq!(s, ["benign", "harmful", "ood_alpaca", "ood_harmful", "other", "all"]);
        assert_eq!(fmt6(-0.0000001), "0.000000");
        assert_eq!(fmt6(0.25), "0.250000");
    }
    #[test]
    fn all_means_in_distribution() {
        // benign: seq2seq wins; ood_harmful: seq2seq loses. `all` must hold benign only.
        let gens = vec![
            row(0, "ppo_seq2seq", "benign", 1, 5.0, false, false, 1.0),
            row(0, "ppo_scalar", "benign", 1, 5.0, false, false, 0.0),
            row(0, "ppo_seq2seq", "ood_harmful", 1, 9.0, false, true, 0.0),
            row(0, "ppo_scalar", "ood_harmful", 1, 5.0, false, false, 1.0),
        ];
        let wins = compute_win_rates(&gens, 50, 1);
        let get = |set: &str| wins.iter().find(|r| r.prompt_set == set && r.seed == SeedKey::Pooled).unwrap();
        assert_eq!((get("all").n_prompts, get("all").win_rate), (1, 1.0));
        assert_eq!(get("ood_harmful").win_rate, 0.0);
        let sets: Vec<&str> = wins.iter().filter(|r| r.seed == SeedKey::Pooled).map(|r| r.prompt_set.as_str()).collect();
        assert_eq!(sets, ["benign", "ood_harmful", "all"]);
        let m = compute_metrics(&gens).unwrap();
        assert_eq!(metric(&m, SeedKey::Pooled, "ppo_seq2seq", "all", "mean_length_tokens"), 5.0);
        assert_eq!(metric(&m, SeedKey::Pooled, "ppo_seq2seq", "all", "refusal_rate"), 0.0);
        assert_eq!(metric(&m, SeedKey::Pooled, "ppo_seq2seq", "ood_harmful", "refusal_rate"), 1.0);
    }

    #[test]
    fn reference_metrics_only_where_every_row_has_a_reference() {
        let gens = vec![
            // seed 0: ROUGE-L 5/6 and 1 (mean 11/12); length ratios 6/6 and 3/2 (mean 1.25)
            with_reference(row(0, "sft", "benign", 1, 6.0, false, false, 0.0), "the cat sat on the mat", "the cat lay on the mat", 6.0),
            with_reference(row(0, "sft", "benign", 2, 3.0, false, false, 0.0), "Hello, world", "hello world", 2.0),
            // seed 1: ROUGE-L 0 and 1 (mean 0.5); ratios 2 and 1 (mean 1.5)
            with_reference(row(1, "sft", "benign", 1, 12.0, false, false, 0.0), "dog", "the cat lay on the mat", 6.0),
            with_reference(row(1, "sft", "benign", 2, 2.0, false, false, 0.0), "hello world", "hello world", 2.0),
            // an OOD set without references: no reference metrics there, and `all` keeps them
            row(0, "sft", "ood_alpaca", 1, 4.0, false, false, 0.0),
            row(1, "sft", "ood_alpaca", 1, 4.0, false, false, 0.0),
        ];
        let m = compute_metrics(&gens).unwrap();
        use SeedKey::*;
        assert!((metric(&m, Seed(0), "sft", "benign", "rouge_l_f1") - 11.0 / 12.0).abs() < 1e-12);
        assert_eq!(metric(&m, Seed(0), "sft", "benign", "length_ratio"), 1.25);
        assert!((metric(&m, Pooled, "sft", "benign", "rouge_l_f1") - (11.0 / 12.0 + 0.5) / 2.0).abs() < 1e-12);
        assert_eq!(metric(&m, Pooled, "sft", "all", "length_ratio"), 1.375);
        assert!(!m.iter().any(|r| r.prompt_set == "ood_alpaca" && (r.metric == "rouge_l_f1" || r.metric == "length_ratio")));
        assert!(m.iter().all(|r| r.value.is_finite()));
        // metric order within a cell: the reference metrics sit before n_prompts
        let names: Vec<&str> = m.iter().filter(|r| r.seed == Seed(0) && r.prompt_set == "benign").map(|r| r.metric).collect();
        assert_eq!(names, CELL_METRICS);

        // a seed whose cell lacks references: per-seed rows where they exist, no pooled row
        let mut partial = gens.clone();
        partial[2].reference.clear();
        partial[2].reference_length_tokens = None;
        let m = compute_metrics(&partial).unwrap();
        assert!(m.iter().any(|r| r.seed == Seed(0) && r.prompt_set == "benign" && r.metric == "rouge_l_f1"));
        assert!(!m.iter().any(|r| r.seed != Seed(0) && r.metric == "rouge_l_f1"));
    }
}
