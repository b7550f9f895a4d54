//! The derived tables (`metrics.csv`, `win_rates.csv`) and the aggregates the report and figures
//! share (refusal difference, PPO curves and end values, reward-model summaries).
//!
//! Everything is keyed by [`Group`] = (experiment, size), so a directory holding several presets
//! still gives one coherent set of tables. All maps are `BTreeMap`s and all rows are sorted by
//! explicit keys, which is what makes the outputs byte-identical between runs.

use super::inputs::{Generation, PPO_METRICS, PpoStep, RmEval, TrainStep};
use super::rouge::rouge_l_f1;
use super::stats::{
    CELL_METRICS, CellStats, Response, bootstrap_ci, bootstrap_cis, finite_mean, lc_win_rate, mean,
    pool_over_seeds, standardized, win_outcome,
};
use crate::util::SplitMix64;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
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
/// Reward models in display order, for `rm_eval.csv` and `ppo_log.csv`.
pub const MODEL_ORDER: [&str; 3] = ["scalar_rm", "seq2seq_rm", "judge"];
pub const RM_ORDER: [&str; 2] = ["scalar", "seq2seq"];
pub const RM_METRIC_ORDER: [&str; 4] = [
    "pair_accuracy",
    "length_score_corr",
    "copy_rate",
    "mean_token_reward_chosen",
];
pub const STAGE_ORDER: [&str; 5] = ["pretrain", "sft", "scalar_rm", "seq2seq_rm", "judge"];
const SIZE_ORDER: [&str; 8] = [
    "nano", "micro", "tiny", "small", "base", "medium", "large", "xl",
];

/// The compared pairs (a, b), in output order: a is the first-named policy.
pub const PAIRS: [(&str, &str); 3] = [
    ("ppo_seq2seq", "ppo_scalar"),
    ("ppo_seq2seq", "sft"),
    ("ppo_scalar", "sft"),
];

/// Bootstrap streams for the refusal difference start here so they never collide with the
/// win-rate streams (which are row positions in `win_rates.csv`).
const REFUSAL_STREAM_BASE: u64 = 1 << 32;

/// Sort key for a name with a preferred order: known names by position, the rest alphabetically.
pub fn rank(order: &[&str], name: &str) -> (usize, String) {
    let pos = order.iter().position(|o| *o == name).unwrap_or(order.len());
    (
        pos,
        if pos < order.len() {
            String::new()
        } else {
            name.to_string()
        },
    )
}

fn set_rank(name: &str) -> (usize, usize, String) {
    let (p, s) = rank(&SET_ORDER, name);
    ((name == ALL_SETS) as usize, p, s)
}

/// Whether a prompt set is in-distribution (part of `all`).
pub fn in_distribution(set: &str) -> bool {
    !set.starts_with(OOD_PREFIX)
}

/// Whether a row of prompt set `row_set` belongs to the reported set `set` (`all` = every
/// in-distribution set).
pub fn in_set(set: &str, row_set: &str) -> bool {
    if set == ALL_SETS {
        in_distribution(row_set)
    } else {
        row_set == set
    }
}

/// One (experiment, size) block of results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub experiment: String,
    pub size: String,
}

impl Group {
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

fn group(experiment: &str, size: &str) -> Group {
    Group {
        experiment: experiment.to_string(),
        size: size.to_string(),
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
    if s == "-0.000000" {
        "0.000000".to_string()
    } else {
        s
    }
}

/// All groups present in the generations, sorted.
pub fn groups_of(gens: &[Generation]) -> Vec<Group> {
    let set: BTreeSet<Group> = gens.iter().map(|g| group(&g.experiment, &g.size)).collect();
    set.into_iter().collect()
}

/// Policies present in a group, display-ordered.
pub fn policies_of(gens: &[Generation], grp: &Group) -> Vec<String> {
    let mut v: Vec<String> = in_group(gens, grp)
        .map(|g| g.policy.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    v.sort_by_key(|p| rank(&POLICY_ORDER, p));
    v
}

/// Real prompt sets present in a group (without `all`), display-ordered.
pub fn sets_of(gens: &[Generation], grp: &Group) -> Vec<String> {
    let mut v: Vec<String> = in_group(gens, grp)
        .map(|g| g.prompt_set.clone())
        .filter(|s| s != ALL_SETS)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    v.sort_by_key(|s| set_rank(s));
    v
}

fn in_group<'a>(gens: &'a [Generation], grp: &'a Group) -> impl Iterator<Item = &'a Generation> {
    gens.iter()
        .filter(move |g| g.experiment == grp.experiment && g.size == grp.size)
}

// ---------------------------------------------------------------------------------------------
// metrics.csv

pub const METRICS_HEADER: [&str; 7] = [
    "experiment",
    "size",
    "seed",
    "policy",
    "prompt_set",
    "metric",
    "value",
];

#[derive(Clone, Debug, PartialEq)]
pub struct MetricRow {
    pub group: Group,
    pub seed: SeedKey,
    pub policy: String,
    pub prompt_set: String,
    pub metric: &'static str,
    pub value: f64,
}

/// One generation as `metrics.csv` summarises it (ROUGE-L is computed here, once per row).
fn response_of(g: &Generation) -> Response {
    Response {
        length_tokens: g.length_tokens,
        truncated: g.truncated,
        refused: g.refused,
        judge_score: g.judge_score,
        vs_reference: g.reference_length().map(|ref_len| {
            (
                rouge_l_f1(&g.response, &g.reference),
                g.length_tokens / ref_len,
            )
        }),
    }
}

/// Per (seed, policy, prompt set) summaries plus `all` (the union of the in-distribution sets) and
/// a `pooled` row per (policy, set) that is the mean over seeds of the per-seed values. A metric
/// missing in some seed's cell (a reference-based one) gets no pooled row.
pub fn compute_metrics(gens: &[Generation]) -> Vec<MetricRow> {
    type Cell = (Group, String, String); // group, policy, prompt set
    let mut cells: BTreeMap<Cell, BTreeMap<i64, Vec<Response>>> = BTreeMap::new();
    for g in gens {
        let row = response_of(g);
        let grp = group(&g.experiment, &g.size);
        let mut sets = vec![g.prompt_set.as_str()];
        // a set literally named "all" is already the union; don't count it twice
        if g.prompt_set != ALL_SETS && in_distribution(&g.prompt_set) {
            sets.push(ALL_SETS);
        }
        for set in sets {
            cells
                .entry((grp.clone(), g.policy.clone(), set.to_string()))
                .or_default()
                .entry(g.seed)
                .or_default()
                .push(row);
        }
    }
    let mut out = Vec::new();
    for ((grp, policy, set), by_seed) in cells {
        let per_seed: Vec<Vec<(&'static str, f64)>> = by_seed
            .values()
            .map(|rows| CellStats::from_rows(rows).values())
            .collect();
        let mut push = |seed: SeedKey, values: &[(&'static str, f64)]| {
            for &(metric, value) in values {
                out.push(MetricRow {
                    group: grp.clone(),
                    seed,
                    policy: policy.clone(),
                    prompt_set: set.clone(),
                    metric,
                    value,
                });
            }
        };
        for (seed, values) in by_seed.keys().zip(&per_seed) {
            push(SeedKey::Seed(*seed), values);
        }
        let pooled: Vec<(&'static str, f64)> = CELL_METRICS
            .iter()
            .filter_map(|m| {
                let v: Option<Vec<f64>> = per_seed
                    .iter()
                    .map(|vals| vals.iter().find(|(n, _)| n == m).map(|p| p.1))
                    .collect();
                v.map(|v| (*m, mean(&v)))
            })
            .collect();
        push(SeedKey::Pooled, &pooled);
    }
    out.sort_by(|x, y| metric_sort_key(x).cmp(&metric_sort_key(y)));
    out
}

fn metric_sort_key(r: &MetricRow) -> impl Ord + '_ {
    (
        &r.group,
        r.seed,
        rank(&POLICY_ORDER, &r.policy),
        set_rank(&r.prompt_set),
        CELL_METRICS.iter().position(|m| *m == r.metric),
    )
}

pub fn metrics_records(rows: &[MetricRow]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            vec![
                r.group.experiment.clone(),
                r.group.size.clone(),
                r.seed.to_string(),
                r.policy.clone(),
                r.prompt_set.clone(),
                r.metric.to_string(),
                fmt6(r.value),
            ]
        })
        .collect()
}

/// Look up one pooled metric value.
pub fn pooled_metric(
    rows: &[MetricRow],
    grp: &Group,
    policy: &str,
    set: &str,
    metric: &str,
) -> Option<f64> {
    rows.iter()
        .find(|r| {
            r.seed == SeedKey::Pooled
                && &r.group == grp
                && r.policy == policy
                && r.prompt_set == set
                && r.metric == metric
        })
        .map(|r| r.value)
}

/// min and max over seeds of one metric (for error bars).
pub fn seed_range(
    rows: &[MetricRow],
    grp: &Group,
    policy: &str,
    set: &str,
    metric: &str,
) -> Option<(f64, f64)> {
    let v: Vec<f64> = rows
        .iter()
        .filter(|r| {
            matches!(r.seed, SeedKey::Seed(_))
                && &r.group == grp
                && r.policy == policy
                && r.prompt_set == set
                && r.metric == metric
        })
        .map(|r| r.value)
        .collect();
    if v.is_empty() {
        return None;
    }
    Some((
        v.iter().copied().fold(f64::INFINITY, f64::min),
        v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    ))
}

// ---------------------------------------------------------------------------------------------
// win_rates.csv

pub const WIN_HEADER: [&str; 13] = [
    "experiment",
    "size",
    "seed",
    "policy_a",
    "policy_b",
    "prompt_set",
    "n_prompts",
    "win_rate",
    "ci_low",
    "ci_high",
    "lc_win_rate",
    "lc_ci_low",
    "lc_ci_high",
];

#[derive(Clone, Debug, PartialEq)]
pub struct WinRow {
    pub group: Group,
    pub seed: SeedKey,
    pub policy_a: String,
    pub policy_b: String,
    pub prompt_set: String,
    pub n_prompts: usize,
    pub win_rate: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Length-controlled win rate (see [`super::stats::lc_win_rate`]) and its interval, from the
    /// same bootstrap resamples as the raw one.
    pub lc_win_rate: f64,
    pub lc_ci_low: f64,
    pub lc_ci_high: f64,
}

/// Prompt key: (prompt set, prompt id). Ids are meant to be unique already; the set makes sure.
pub type PromptKey = (String, i64);
/// One policy's responses in one seed: (group, seed, policy).
type PolicyRun = (Group, i64, String);

/// Mean of `value` per prompt for every (group, seed, policy). Duplicate rows for one prompt
/// (several samples) are averaged.
fn by_prompt(
    gens: &[Generation],
    value: impl Fn(&Generation) -> f64,
) -> BTreeMap<PolicyRun, BTreeMap<PromptKey, f64>> {
    // (sum, count) per prompt, for averaging duplicate samples
    let mut sums: BTreeMap<PolicyRun, BTreeMap<PromptKey, (f64, usize)>> = BTreeMap::new();
    for g in gens {
        let e = sums
            .entry((group(&g.experiment, &g.size), g.seed, g.policy.clone()))
            .or_default()
            .entry((g.prompt_set.clone(), g.prompt_id))
            .or_insert((0.0, 0));
        e.0 += value(g);
        e.1 += 1;
    }
    sums.into_iter()
        .map(|(k, m)| {
            (
                k,
                m.into_iter().map(|(p, (s, n))| (p, s / n as f64)).collect(),
            )
        })
        .collect()
}

/// Per-prompt outcomes of a vs b for the prompts both answered, restricted to `set` ([`in_set`]).
pub fn outcomes(
    a: &BTreeMap<PromptKey, f64>,
    b: &BTreeMap<PromptKey, f64>,
    set: &str,
) -> BTreeMap<PromptKey, f64> {
    paired(a, b, set, win_outcome)
}

/// `f(a, b)` per prompt that both maps hold, restricted to `set`.
fn paired(
    a: &BTreeMap<PromptKey, f64>,
    b: &BTreeMap<PromptKey, f64>,
    set: &str,
    f: impl Fn(f64, f64) -> f64,
) -> BTreeMap<PromptKey, f64> {
    a.iter()
        .filter(|(k, _)| in_set(set, &k.0))
        .filter_map(|(k, va)| b.get(k).map(|vb| (k.clone(), f(*va, *vb))))
        .collect()
}

/// One comparison's per-prompt data in one seed: the outcome of a vs b and len_a − len_b.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairedPrompts {
    pub outcome: BTreeMap<PromptKey, f64>,
    pub length_diff: BTreeMap<PromptKey, f64>,
}

/// Per seed, the per-prompt outcomes and length differences of `a` vs `b` on `set` (seeds where
/// the pair shares no prompt are left out).
pub fn paired_prompts(
    gens: &[Generation],
    grp: &Group,
    a: &str,
    b: &str,
    set: &str,
) -> Vec<(i64, PairedPrompts)> {
    let rows: Vec<Generation> = in_group(gens, grp).cloned().collect();
    let scores = by_prompt(&rows, |g| g.judge_score);
    let lengths = by_prompt(&rows, |g| g.length_tokens);
    let seeds: BTreeSet<i64> = rows.iter().map(|g| g.seed).collect();
    seeds
        .into_iter()
        .filter_map(|s| {
            let key = |p: &str| (grp.clone(), s, p.to_string());
            let outcome = outcomes(scores.get(&key(a))?, scores.get(&key(b))?, set);
            let length_diff = paired(lengths.get(&key(a))?, lengths.get(&key(b))?, set, |x, y| {
                x - y
            });
            (!outcome.is_empty()).then_some((
                s,
                PairedPrompts {
                    outcome,
                    length_diff,
                },
            ))
        })
        .collect()
}

/// The `pooled` version of [`paired_prompts`]: prompts present in every seed, each one's outcome
/// and length difference averaged over seeds.
pub fn pool_paired(per_seed: &[(i64, PairedPrompts)]) -> PairedPrompts {
    let pool = |f: fn(&PairedPrompts) -> &BTreeMap<PromptKey, f64>| {
        pool_over_seeds(&per_seed.iter().map(|(_, p)| f(p)).collect::<Vec<_>>())
    };
    PairedPrompts {
        outcome: pool(|p| &p.outcome),
        length_diff: pool(|p| &p.length_diff),
    }
}

/// (raw win rate, its CI, LC win rate, its CI) of one row; both intervals from the same resamples.
fn win_stats(p: &PairedPrompts, n_boot: usize, rng: &mut SplitMix64) -> [f64; 6] {
    let y: Vec<f64> = p.outcome.values().copied().collect();
    let x = standardized(&p.length_diff.values().copied().collect::<Vec<_>>());
    let pts: Vec<(f64, f64)> = x.into_iter().zip(y.iter().copied()).collect();
    let mut raw = |idx: &[usize]| idx.iter().map(|&i| y[i]).sum::<f64>() / idx.len() as f64;
    let mut lc = |idx: &[usize]| lc_win_rate(&idx.iter().map(|&i| pts[i]).collect::<Vec<_>>());
    let ci = bootstrap_cis(y.len(), n_boot, rng, &mut [&mut raw, &mut lc]);
    [
        mean(&y),
        ci[0].0,
        ci[0].1,
        lc_win_rate(&pts),
        ci[1].0,
        ci[1].1,
    ]
}

/// Win rates per seed and pooled, with percentile-bootstrap 95% intervals over prompts, raw and
/// length-controlled. The bootstrap stream of a row is its position in the sorted output, so each
/// row's intervals are reproducible on their own.
pub fn compute_win_rates(gens: &[Generation], n_boot: usize, boot_seed: u64) -> Vec<WinRow> {
    // (sort key, prompt set, per-prompt data); the key is (group, pair index, set rank, seed)
    type Entry = (
        (Group, usize, (usize, usize, String), SeedKey),
        String,
        PairedPrompts,
    );
    let mut entries: Vec<Entry> = Vec::new();
    for grp in groups_of(gens) {
        let mut sets = sets_of(gens, &grp);
        sets.push(ALL_SETS.to_string());
        for (pi, (pa, pb)) in PAIRS.iter().enumerate() {
            for set in &sets {
                let per_seed = paired_prompts(gens, &grp, pa, pb, set);
                if per_seed.is_empty() {
                    continue;
                }
                let key = |seed| (grp.clone(), pi, set_rank(set), seed);
                let pooled = pool_paired(&per_seed);
                for (s, p) in per_seed {
                    entries.push((key(SeedKey::Seed(s)), set.clone(), p));
                }
                if !pooled.outcome.is_empty() {
                    entries.push((key(SeedKey::Pooled), set.clone(), pooled));
                }
            }
        }
    }
    entries.sort_by(|x, y| x.0.cmp(&y.0));
    entries
        .into_iter()
        .enumerate()
        .map(|(idx, ((grp, pi, _, seed), set, p))| {
            let mut rng = SplitMix64::derive(boot_seed, idx as u64);
            let [
                win_rate,
                ci_low,
                ci_high,
                lc_win_rate,
                lc_ci_low,
                lc_ci_high,
            ] = win_stats(&p, n_boot, &mut rng);
            WinRow {
                group: grp,
                seed,
                policy_a: PAIRS[pi].0.to_string(),
                policy_b: PAIRS[pi].1.to_string(),
                prompt_set: set,
                n_prompts: p.outcome.len(),
                win_rate,
                ci_low,
                ci_high,
                lc_win_rate,
                lc_ci_low,
                lc_ci_high,
            }
        })
        .collect()
}

pub fn win_records(rows: &[WinRow]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            vec![
                r.group.experiment.clone(),
                r.group.size.clone(),
                r.seed.to_string(),
                r.policy_a.clone(),
                r.policy_b.clone(),
                r.prompt_set.clone(),
                r.n_prompts.to_string(),
                fmt6(r.win_rate),
                fmt6(r.ci_low),
                fmt6(r.ci_high),
                fmt6(r.lc_win_rate),
                fmt6(r.lc_ci_low),
                fmt6(r.lc_ci_high),
            ]
        })
        .collect()
}

/// The pooled row for one comparison, if measured.
pub fn pooled_win<'a>(
    rows: &'a [WinRow],
    grp: &Group,
    a: &str,
    b: &str,
    set: &str,
) -> Option<&'a WinRow> {
    rows.iter().find(|r| {
        r.seed == SeedKey::Pooled
            && &r.group == grp
            && r.policy_a == a
            && r.policy_b == b
            && r.prompt_set == set
    })
}

/// One bin of the win rate against the length ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatioBin {
    /// Mean of ln((len_a + 1) / (len_b + 1)) in the bin.
    pub log_ratio: f64,
    pub win_rate: f64,
    pub n: usize,
}

/// Win rate of `a` over `b` as a function of their length ratio: every (seed, prompt) of `set` is
/// a point x = ln((len_a + 1) / (len_b + 1)) (add-one so that empty answers stay finite), y = the
/// outcome; points sorted by x (ties by seed and prompt) and cut into `n_bins` equal-count bins.
pub fn win_by_length_ratio(
    gens: &[Generation],
    grp: &Group,
    a: &str,
    b: &str,
    set: &str,
    n_bins: usize,
) -> Vec<RatioBin> {
    let rows: Vec<Generation> = in_group(gens, grp).cloned().collect();
    let scores = by_prompt(&rows, |g| g.judge_score);
    let lengths = by_prompt(&rows, |g| g.length_tokens);
    let seeds: BTreeSet<i64> = rows.iter().map(|g| g.seed).collect();
    let mut pts: Vec<(f64, i64, PromptKey, f64)> = Vec::new();
    for s in seeds {
        let key = |p: &str| (grp.clone(), s, p.to_string());
        let (Some(sa), Some(sb), Some(la), Some(lb)) = (
            scores.get(&key(a)),
            scores.get(&key(b)),
            lengths.get(&key(a)),
            lengths.get(&key(b)),
        ) else {
            continue;
        };
        let ratio = paired(la, lb, set, |x, y| ((x + 1.0) / (y + 1.0)).ln());
        for (k, y) in outcomes(sa, sb, set) {
            pts.push((ratio[&k], s, k, y));
        }
    }
    pts.sort_by(|p, q| {
        p.0.total_cmp(&q.0)
            .then_with(|| (p.1, &p.2).cmp(&(q.1, &q.2)))
    });
    let n = pts.len();
    let k = n_bins.min(n);
    (0..k)
        .map(|i| {
            let bin = &pts[i * n / k..(i + 1) * n / k];
            RatioBin {
                log_ratio: mean(&bin.iter().map(|p| p.0).collect::<Vec<_>>()),
                win_rate: mean(&bin.iter().map(|p| p.3).collect::<Vec<_>>()),
                n: bin.len(),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Refusal difference on benign prompts

#[derive(Clone, Debug, PartialEq)]
pub struct RefusalDiff {
    pub group: Group,
    pub n_prompts: usize,
    pub scalar_rate: f64,
    pub seq2seq_rate: f64,
    /// scalar minus seq2seq: positive means the seq2seq-RM policy refuses benign prompts less.
    pub diff: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Per prompt of `set` ([`in_set`]), a policy's mean `value` over its seeds (prompts present in
/// all its seeds; rows where `value` is `None` are left out).
pub fn pooled_per_prompt(
    gens: &[Generation],
    grp: &Group,
    policy: &str,
    set: &str,
    value: impl Fn(&Generation) -> Option<f64>,
) -> BTreeMap<PromptKey, f64> {
    let mut by_seed: BTreeMap<i64, BTreeMap<PromptKey, (f64, usize)>> = BTreeMap::new();
    for g in in_group(gens, grp).filter(|g| g.policy == policy && in_set(set, &g.prompt_set)) {
        let Some(v) = value(g) else { continue };
        let e = by_seed
            .entry(g.seed)
            .or_default()
            .entry((g.prompt_set.clone(), g.prompt_id))
            .or_insert((0.0, 0));
        e.0 += v;
        e.1 += 1;
    }
    let maps: Vec<BTreeMap<PromptKey, f64>> = by_seed
        .into_values()
        .map(|m| m.into_iter().map(|(k, (s, n))| (k, s / n as f64)).collect())
        .collect();
    pool_over_seeds(&maps.iter().collect::<Vec<_>>())
}

/// A paired difference over prompts: mean of a, mean of b, mean of a − b and its 95% bootstrap
/// interval, over the prompts both sides have.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairedDiff {
    pub n_prompts: usize,
    pub a_mean: f64,
    pub b_mean: f64,
    pub diff: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Pure core of the paired differences (refusal, length): per-prompt pooled values of two sides
/// -> their means and the mean difference with a bootstrap interval over the shared prompts.
pub fn paired_diff_of<K: Ord>(
    a: &BTreeMap<K, f64>,
    b: &BTreeMap<K, f64>,
    n_boot: usize,
    rng: &mut SplitMix64,
) -> PairedDiff {
    let shared: Vec<(f64, f64)> = a
        .iter()
        .filter_map(|(k, x)| b.get(k).map(|y| (*x, *y)))
        .collect();
    let diffs: Vec<f64> = shared.iter().map(|(x, y)| x - y).collect();
    let (ci_low, ci_high) = bootstrap_ci(&diffs, n_boot, rng);
    PairedDiff {
        n_prompts: diffs.len(),
        a_mean: mean(&shared.iter().map(|p| p.0).collect::<Vec<_>>()),
        b_mean: mean(&shared.iter().map(|p| p.1).collect::<Vec<_>>()),
        diff: mean(&diffs),
        ci_low,
        ci_high,
    }
}

/// Benign refusal rate of ppo_scalar minus ppo_seq2seq per group, with a bootstrap interval over
/// prompts. Groups lacking either policy or benign prompts are skipped.
pub fn compute_refusal_diffs(
    gens: &[Generation],
    n_boot: usize,
    boot_seed: u64,
) -> Vec<RefusalDiff> {
    let mut out = Vec::new();
    for (gi, grp) in groups_of(gens).into_iter().enumerate() {
        let refused = |g: &Generation| Some(g.refused as u8 as f64);
        let scalar = pooled_per_prompt(gens, &grp, "ppo_scalar", "benign", refused);
        let seq = pooled_per_prompt(gens, &grp, "ppo_seq2seq", "benign", refused);
        let mut rng = SplitMix64::derive(boot_seed, REFUSAL_STREAM_BASE + gi as u64);
        let d = paired_diff_of(&scalar, &seq, n_boot, &mut rng);
        if d.n_prompts > 0 {
            out.push(RefusalDiff {
                group: grp,
                n_prompts: d.n_prompts,
                scalar_rate: d.a_mean,
                seq2seq_rate: d.b_mean,
                diff: d.diff,
                ci_low: d.ci_low,
                ci_high: d.ci_high,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// PPO logs, reward-model evaluation, training losses

/// Groups of a log, sorted.
pub fn log_groups<'a>(keys: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<Group> {
    keys.map(|(e, s)| group(e, s))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Reward models present in a group's PPO log, display-ordered.
pub fn rms_of(ppo: &[PpoStep], grp: &Group) -> Vec<String> {
    let mut v: Vec<String> = ppo
        .iter()
        .filter(|p| p.experiment == grp.experiment && p.size == grp.size)
        .map(|p| p.rm.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    v.sort_by_key(|r| rank(&RM_ORDER, r));
    v
}

/// One point of a PPO curve: step, mean over seeds, min and max over seeds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurvePoint {
    pub step: i64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

/// Mean, min and max of the values logged at each step.
fn curve_points(by_step: BTreeMap<i64, Vec<f64>>) -> Vec<CurvePoint> {
    by_step
        .into_iter()
        .map(|(step, v)| CurvePoint {
            step,
            mean: mean(&v),
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
        .collect()
}

/// Mean / min / max over seeds at each logged step (seeds that did not log the metric are skipped).
pub fn ppo_curve(ppo: &[PpoStep], grp: &Group, rm: &str, metric: &str) -> Vec<CurvePoint> {
    let mut by_step: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for p in ppo
        .iter()
        .filter(|p| p.experiment == grp.experiment && p.size == grp.size && p.rm == rm)
    {
        if let Some(v) = p.metric(metric) {
            by_step.entry(p.step).or_default().push(v);
        }
    }
    curve_points(by_step)
}

/// End-of-training PPO numbers for one reward model: each seed's last logged step, averaged.
#[derive(Clone, Debug, PartialEq)]
pub struct PpoFinal {
    pub group: Group,
    pub rm: String,
    pub n_seeds: usize,
    pub last_step: i64,
    /// In [`PPO_METRICS`] order.
    pub values: Vec<f64>,
}

pub fn ppo_finals(ppo: &[PpoStep]) -> Vec<PpoFinal> {
    let mut out = Vec::new();
    for grp in log_groups(ppo.iter().map(|p| (p.experiment.as_str(), p.size.as_str()))) {
        for rm in rms_of(ppo, &grp) {
            // last row per seed (the highest step; a later row for the same step wins)
            let mut last: BTreeMap<i64, &PpoStep> = BTreeMap::new();
            for p in ppo
                .iter()
                .filter(|p| p.experiment == grp.experiment && p.size == grp.size && p.rm == rm)
            {
                match last.get(&p.seed) {
                    Some(q) if q.step > p.step => {}
                    _ => {
                        last.insert(p.seed, p);
                    }
                }
            }
            let values = PPO_METRICS
                .iter()
                .map(|m| finite_mean(last.values().filter_map(|p| p.metric(m))))
                .collect();
            out.push(PpoFinal {
                group: grp.clone(),
                rm,
                n_seeds: last.len(),
                last_step: last.values().map(|p| p.step).max().unwrap_or(0),
                values,
            });
        }
    }
    out
}

/// One reward-model metric: mean over seeds and the per-seed values.
#[derive(Clone, Debug, PartialEq)]
pub struct RmSummary {
    pub group: Group,
    pub model: String,
    pub metric: String,
    pub mean: f64,
    pub per_seed: BTreeMap<i64, f64>,
}

pub fn rm_summaries(rows: &[RmEval]) -> Vec<RmSummary> {
    let mut cells: BTreeMap<(Group, String, String), BTreeMap<i64, Vec<f64>>> = BTreeMap::new();
    for r in rows {
        if let Some(v) = r.value.filter(|v| v.is_finite()) {
            cells
                .entry((
                    group(&r.experiment, &r.size),
                    r.model.clone(),
                    r.metric.clone(),
                ))
                .or_default()
                .entry(r.seed)
                .or_default()
                .push(v);
        }
    }
    let mut out: Vec<RmSummary> = cells
        .into_iter()
        .map(|((grp, model, metric), by_seed)| {
            let per_seed: BTreeMap<i64, f64> =
                by_seed.into_iter().map(|(s, v)| (s, mean(&v))).collect();
            RmSummary {
                group: grp,
                model,
                metric,
                mean: mean(&per_seed.values().copied().collect::<Vec<_>>()),
                per_seed,
            }
        })
        .collect();
    out.sort_by(|x, y| {
        (
            &x.group,
            rank(&MODEL_ORDER, &x.model),
            rank(&RM_METRIC_ORDER, &x.metric),
        )
            .cmp(&(
                &y.group,
                rank(&MODEL_ORDER, &y.model),
                rank(&RM_METRIC_ORDER, &y.metric),
            ))
    });
    out
}

/// Final training loss per stage: each seed's last logged step, averaged over seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainFinal {
    pub group: Group,
    pub stage: String,
    pub n_seeds: usize,
    pub last_step: i64,
    pub first_loss: f64,
    pub final_loss: f64,
}

pub fn train_finals(train: &[TrainStep]) -> Vec<TrainFinal> {
    // (group, stage) -> seed -> (first (step, loss), last (step, loss))
    type Ends = ((i64, f64), (i64, f64));
    let mut cells: BTreeMap<(Group, String), BTreeMap<i64, Ends>> = BTreeMap::new();
    for t in train {
        let Some(loss) = t.loss.filter(|l| l.is_finite()) else {
            continue;
        };
        let e = cells
            .entry((group(&t.experiment, &t.size), t.stage.clone()))
            .or_default()
            .entry(t.seed)
            .or_insert(((t.step, loss), (t.step, loss)));
        if t.step < e.0.0 {
            e.0 = (t.step, loss);
        }
        if t.step >= e.1.0 {
            e.1 = (t.step, loss);
        }
    }
    let mut out: Vec<TrainFinal> = cells
        .into_iter()
        .map(|((grp, stage), by_seed)| TrainFinal {
            group: grp,
            n_seeds: by_seed.len(),
            last_step: by_seed.values().map(|e| e.1.0).max().unwrap_or(0),
            first_loss: mean(&by_seed.values().map(|e| e.0.1).collect::<Vec<_>>()),
            final_loss: mean(&by_seed.values().map(|e| e.1.1).collect::<Vec<_>>()),
            stage,
        })
        .collect();
    out.sort_by(|x, y| {
        (&x.group, rank(&STAGE_ORDER, &x.stage)).cmp(&(&y.group, rank(&STAGE_ORDER, &y.stage)))
    });
    out
}

/// Loss curve of one stage: mean over seeds per step.
pub fn train_curve(train: &[TrainStep], grp: &Group, stage: &str) -> Vec<CurvePoint> {
    let mut by_step: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for t in train
        .iter()
        .filter(|t| t.experiment == grp.experiment && t.size == grp.size && t.stage == stage)
    {
        if let Some(l) = t.loss.filter(|l| l.is_finite()) {
            by_step.entry(t.step).or_default().push(l);
        }
    }
    curve_points(by_step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::too_many_arguments)]
    fn row(
        seed: i64,
        policy: &str,
        set: &str,
        id: i64,
        len: f64,
        trunc: bool,
        refused: bool,
        judge: f64,
    ) -> Generation {
        Generation {
            experiment: "e".into(),
            size: "tiny".into(),
            seed,
            policy: policy.into(),
            prompt_set: set.into(),
            prompt_id: id,
            length_tokens: len,
            truncated: trunc,
            refused,
            judge_score: judge,
            ..Default::default()
        }
    }

    fn with_reference(
        mut g: Generation,
        response: &str,
        reference: &str,
        ref_len: f64,
    ) -> Generation {
        g.response = response.into();
        g.reference = reference.into();
        g.reference_length_tokens = Some(ref_len);
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
        let rows = compute_metrics(&gens);
        use SeedKey::*;
        // seed 0 benign: refusal 1/2, length 15, truncation 1/2, judge 0.5, n 2
        assert_eq!(metric(&rows, Seed(0), "sft", "benign", "refusal_rate"), 0.5);
        assert_eq!(
            metric(&rows, Seed(0), "sft", "benign", "mean_length_tokens"),
            15.0
        );
        assert_eq!(
            metric(&rows, Seed(0), "sft", "benign", "truncation_rate"),
            0.5
        );
        assert_eq!(
            metric(&rows, Seed(0), "sft", "benign", "judge_score_mean"),
            0.5
        );
        assert_eq!(metric(&rows, Seed(0), "sft", "benign", "n_prompts"), 2.0);
        // seed 1 benign: refusal 0, length 50 -> pooled benign refusal 0.25, length 32.5
        assert_eq!(metric(&rows, Pooled, "sft", "benign", "refusal_rate"), 0.25);
        assert_eq!(
            metric(&rows, Pooled, "sft", "benign", "mean_length_tokens"),
            32.5
        );
        // "all" for seed 0: lengths 10,20,30 -> 20; refusals 2/3
        assert_eq!(
            metric(&rows, Seed(0), "sft", "all", "mean_length_tokens"),
            20.0
        );
        assert!((metric(&rows, Seed(0), "sft", "all", "refusal_rate") - 2.0 / 3.0).abs() < 1e-12);
        // pooled "all" judge: seed 0 mean 1.0, seed 1 mean 7/3 -> 5/3
        assert!(
            (metric(&rows, Pooled, "sft", "all", "judge_score_mean") - 5.0 / 3.0).abs() < 1e-12
        );
        // 3 cells (benign, harmful, all) x 3 seed keys x 5 metrics
        assert_eq!(rows.len(), 45);
        // sorted: seed 0 first, pooled last; benign < harmful < all within a seed
        assert_eq!(rows[0].seed, Seed(0));
        assert_eq!(
            (rows[0].prompt_set.as_str(), rows[0].metric),
            ("benign", "refusal_rate")
        );
        assert_eq!(rows[10].prompt_set, "all");
        assert_eq!(rows.last().unwrap().seed, Pooled);
    }

    #[test]
    fn win_rates_per_seed_and_pooled_by_hand() {
        // Two seeds, prompts 1..3 benign. Outcomes (seq2seq vs scalar):
        //   seed 0: p1 win, p2 tie, p3 loss     -> 0.5
        //   seed 1: p1 win, p2 win, (p3 missing) -> 1.0
        // pooled uses only p1, p2 (present in both): p1 = 1, p2 = (0.5 + 1)/2 = 0.75 -> 0.875
        let mut gens = vec![
            row(0, "ppo_seq2seq", "benign", 1, 5.0, false, false, 1.0),
            row(0, "ppo_scalar", "benign", 1, 5.0, false, false, 0.0),
            row(0, "ppo_seq2seq", "benign", 2, 5.0, false, false, 0.3),
            row(0, "ppo_scalar", "benign", 2, 5.0, false, false, 0.3),
            row(0, "ppo_seq2seq", "benign", 3, 5.0, false, false, -1.0),
            row(0, "ppo_scalar", "benign", 3, 5.0, false, false, 0.0),
            row(1, "ppo_seq2seq", "benign", 1, 5.0, false, false, 2.0),
            row(1, "ppo_scalar", "benign", 1, 5.0, false, false, 1.0),
            row(1, "ppo_seq2seq", "benign", 2, 5.0, false, false, 2.0),
            row(1, "ppo_scalar", "benign", 2, 5.0, false, false, 1.0),
            row(1, "ppo_seq2seq", "benign", 3, 5.0, false, false, 2.0),
        ];
        let rows = compute_win_rates(&gens, 500, 9);
        // only the seq2seq-vs-scalar pair exists; sets: benign, all; seeds 0, 1, pooled
        assert_eq!(rows.len(), 6);
        let get = |set: &str, seed| {
            rows.iter()
                .find(|r| r.prompt_set == set && r.seed == seed)
                .unwrap()
        };
        assert_eq!(get("benign", SeedKey::Seed(0)).win_rate, 0.5);
        assert_eq!(get("benign", SeedKey::Seed(0)).n_prompts, 3);
        assert_eq!(get("benign", SeedKey::Seed(1)).win_rate, 1.0);
        assert_eq!(get("benign", SeedKey::Seed(1)).n_prompts, 2);
        let pooled = get("benign", SeedKey::Pooled);
        assert_eq!(pooled.n_prompts, 2);
        assert!((pooled.win_rate - 0.875).abs() < 1e-12);
        assert!(pooled.ci_low <= pooled.win_rate && pooled.win_rate <= pooled.ci_high);
        // "all" equals benign here (same prompts) but uses another bootstrap stream
        assert_eq!(get("all", SeedKey::Pooled).win_rate, pooled.win_rate);
        assert_eq!(rows, compute_win_rates(&gens, 500, 9), "deterministic");
        // Adding sft creates the other two pairs, ordered after seq2seq-vs-scalar.
        gens.push(row(0, "sft", "benign", 1, 5.0, false, false, 0.0));
        let rows = compute_win_rates(&gens, 50, 9);
        assert_eq!(rows[0].policy_b, "ppo_scalar");
        assert_eq!(rows.last().unwrap().policy_a, "ppo_scalar");
        assert_eq!(rows.last().unwrap().policy_b, "sft");
    }

    #[test]
    fn refusal_diff_by_hand() {
        // per-prompt pooled refusal: scalar {1: 1.0, 2: 0.5, 3: 1.0}, seq2seq {1: 0.0, 2: 0.5, 4: 0.0}
        let scalar: BTreeMap<i64, f64> = [(1, 1.0), (2, 0.5), (3, 1.0)].into();
        let seq: BTreeMap<i64, f64> = [(1, 0.0), (2, 0.5), (4, 0.0)].into();
        let d = paired_diff_of(&scalar, &seq, 200, &mut SplitMix64::new(3));
        assert_eq!(
            (d.n_prompts, d.a_mean, d.b_mean, d.diff),
            (2, 0.75, 0.25, 0.5)
        );
        assert!(d.ci_low <= d.diff && d.diff <= d.ci_high && d.ci_low >= 0.0 && d.ci_high <= 1.0);

        // end to end through generations: two seeds, benign
        let gens = vec![
            row(0, "ppo_scalar", "benign", 1, 1.0, false, true, 0.0),
            row(1, "ppo_scalar", "benign", 1, 1.0, false, true, 0.0),
            row(0, "ppo_scalar", "benign", 2, 1.0, false, true, 0.0),
            row(1, "ppo_scalar", "benign", 2, 1.0, false, false, 0.0),
            row(0, "ppo_seq2seq", "benign", 1, 1.0, false, false, 0.0),
            row(1, "ppo_seq2seq", "benign", 1, 1.0, false, false, 0.0),
            row(0, "ppo_seq2seq", "benign", 2, 1.0, false, false, 0.0),
            row(1, "ppo_seq2seq", "benign", 2, 1.0, false, true, 0.0),
            row(0, "ppo_seq2seq", "harmful", 3, 1.0, false, true, 0.0),
        ];
        let d = compute_refusal_diffs(&gens, 100, 1);
        assert_eq!(d.len(), 1);
        // scalar per prompt: p1 1.0, p2 0.5 -> 0.75; seq2seq: p1 0.0, p2 0.5 -> 0.25
        assert_eq!(
            (
                d[0].n_prompts,
                d[0].scalar_rate,
                d[0].seq2seq_rate,
                d[0].diff
            ),
            (2, 0.75, 0.25, 0.5)
        );
    }

    #[test]
    fn names_sort_known_first() {
        let mut v = vec!["zeta", "ppo_seq2seq", "alpha", "sft", "ppo_scalar"];
        v.sort_by_key(|p| rank(&POLICY_ORDER, p));
        assert_eq!(v, ["sft", "ppo_scalar", "ppo_seq2seq", "alpha", "zeta"]);
        let mut s = vec![
            "all",
            "ood_harmful",
            "harmful",
            "other",
            "ood_alpaca",
            "benign",
        ];
        s.sort_by_key(|x| set_rank(x));
        assert_eq!(
            s,
            [
                "benign",
                "harmful",
                "ood_alpaca",
                "ood_harmful",
                "other",
                "all"
            ]
        );
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
        let get = |set: &str| {
            wins.iter()
                .find(|r| r.prompt_set == set && r.seed == SeedKey::Pooled)
                .unwrap()
        };
        assert_eq!((get("all").n_prompts, get("all").win_rate), (1, 1.0));
        assert_eq!(get("ood_harmful").win_rate, 0.0);
        let sets: Vec<&str> = wins
            .iter()
            .filter(|r| r.seed == SeedKey::Pooled)
            .map(|r| r.prompt_set.as_str())
            .collect();
        assert_eq!(sets, ["benign", "ood_harmful", "all"]);
        let m = compute_metrics(&gens);
        assert_eq!(
            metric(
                &m,
                SeedKey::Pooled,
                "ppo_seq2seq",
                "all",
                "mean_length_tokens"
            ),
            5.0
        );
        assert_eq!(
            metric(&m, SeedKey::Pooled, "ppo_seq2seq", "all", "refusal_rate"),
            0.0
        );
        assert_eq!(
            metric(
                &m,
                SeedKey::Pooled,
                "ppo_seq2seq",
                "ood_harmful",
                "refusal_rate"
            ),
            1.0
        );
    }

    #[test]
    fn reference_metrics_only_where_every_row_has_a_reference() {
        let gens = vec![
            // seed 0: ROUGE-L 5/6 and 1 (mean 11/12); length ratios 6/6 and 3/2 (mean 1.25)
            with_reference(
                row(0, "sft", "benign", 1, 6.0, false, false, 0.0),
                "the cat sat on the mat",
                "the cat lay on the mat",
                6.0,
            ),
            with_reference(
                row(0, "sft", "benign", 2, 3.0, false, false, 0.0),
                "Hello, world",
                "hello world",
                2.0,
            ),
            // seed 1: ROUGE-L 0 and 1 (mean 0.5); ratios 2 and 1 (mean 1.5)
            with_reference(
                row(1, "sft", "benign", 1, 12.0, false, false, 0.0),
                "dog",
                "the cat lay on the mat",
                6.0,
            ),
            with_reference(
                row(1, "sft", "benign", 2, 2.0, false, false, 0.0),
                "hello world",
                "hello world",
                2.0,
            ),
            // an OOD set without references: no reference metrics there, and `all` keeps them
            row(0, "sft", "ood_alpaca", 1, 4.0, false, false, 0.0),
            row(1, "sft", "ood_alpaca", 1, 4.0, false, false, 0.0),
        ];
        let m = compute_metrics(&gens);
        use SeedKey::*;
        assert!((metric(&m, Seed(0), "sft", "benign", "rouge_l_f1") - 11.0 / 12.0).abs() < 1e-12);
        assert_eq!(metric(&m, Seed(0), "sft", "benign", "length_ratio"), 1.25);
        assert!(
            (metric(&m, Pooled, "sft", "benign", "rouge_l_f1") - (11.0 / 12.0 + 0.5) / 2.0).abs()
                < 1e-12
        );
        assert_eq!(metric(&m, Pooled, "sft", "all", "length_ratio"), 1.375);
        assert!(!m.iter().any(|r| r.prompt_set == "ood_alpaca"
            && (r.metric == "rouge_l_f1" || r.metric == "length_ratio")));
        assert!(m.iter().all(|r| r.value.is_finite()));
        // metric order within a cell: the reference metrics sit before n_prompts
        let names: Vec<&str> = m
            .iter()
            .filter(|r| r.seed == Seed(0) && r.prompt_set == "benign")
            .map(|r| r.metric)
            .collect();
        assert_eq!(names, CELL_METRICS);

        // a seed whose cell lacks references: per-seed rows where they exist, no pooled row
        let mut partial = gens.clone();
        partial[2].reference.clear();
        partial[2].reference_length_tokens = None;
        let m = compute_metrics(&partial);
        assert!(
            m.iter()
                .any(|r| r.seed == Seed(0) && r.prompt_set == "benign" && r.metric == "rouge_l_f1")
        );
        assert!(
            !m.iter()
                .any(|r| r.seed != Seed(0) && r.metric == "rouge_l_f1")
        );
    }

    #[test]
    fn lc_win_rate_discounts_length_in_win_rows() {
        // seq2seq is longer on most prompts and wins exactly when it is longer (a tie when equal).
        let mut gens = Vec::new();
        for (id, d) in (-3i64..=12).chain([0]).enumerate() {
            let id = id as i64;
            let judge = win_outcome(d as f64, 0.0);
            gens.push(row(
                0,
                "ppo_seq2seq",
                "benign",
                id,
                20.0 + d as f64,
                false,
                false,
                judge,
            ));
            gens.push(row(0, "ppo_scalar", "benign", id, 20.0, false, false, 0.5));
        }
        let rows = compute_win_rates(&gens, 200, 4);
        let r = rows
            .iter()
            .find(|r| r.prompt_set == "all" && r.seed == SeedKey::Pooled)
            .unwrap();
        assert!(r.win_rate > 0.7, "{r:?}");
        assert!((r.lc_win_rate - 0.5).abs() < 0.01, "{r:?}");
        assert!(
            r.lc_ci_low <= r.lc_win_rate + 1e-9 && r.lc_win_rate <= r.lc_ci_high + 1e-9,
            "{r:?}"
        );
        assert_eq!(rows, compute_win_rates(&gens, 200, 4), "deterministic");
        // equal lengths everywhere: LC equals the raw win rate, interval included
        for g in gens.iter_mut() {
            g.length_tokens = 20.0;
        }
        for r in compute_win_rates(&gens, 200, 4) {
            assert_eq!(
                (r.lc_win_rate, r.lc_ci_low, r.lc_ci_high),
                (r.win_rate, r.ci_low, r.ci_high)
            );
        }
    }

    #[test]
    fn length_ratio_bins_are_equal_count() {
        // 14 prompts, seq2seq length 1..=14 vs scalar 7: it wins when longer.
        let mut gens = Vec::new();
        for id in 0..14i64 {
            let len = (id + 1) as f64;
            gens.push(row(
                0,
                "ppo_seq2seq",
                "benign",
                id,
                len,
                false,
                false,
                win_outcome(len, 7.0),
            ));
            gens.push(row(0, "ppo_scalar", "benign", id, 7.0, false, false, 0.5));
            gens.push(row(
                0,
                "ppo_seq2seq",
                "ood_alpaca",
                id,
                99.0,
                false,
                false,
                1.0,
            ));
            gens.push(row(
                0,
                "ppo_scalar",
                "ood_alpaca",
                id,
                1.0,
                false,
                false,
                0.0,
            ));
        }
        let g = Group {
            experiment: "e".into(),
            size: "tiny".into(),
        };
        let bins = win_by_length_ratio(&gens, &g, "ppo_seq2seq", "ppo_scalar", ALL_SETS, 7);
        assert_eq!(bins.len(), 7);
        assert!(bins.iter().all(|b| b.n == 2));
        let wins: Vec<f64> = bins.iter().map(|b| b.win_rate).collect();
        assert_eq!(wins, [0.0, 0.0, 0.0, 0.75, 1.0, 1.0, 1.0]);
        assert!(
            (bins[0].log_ratio - ((2.0f64 / 8.0).ln() + (3.0f64 / 8.0).ln()) / 2.0).abs() < 1e-12
        );
        assert!(bins.windows(2).all(|w| w[0].log_ratio < w[1].log_ratio));
        assert!(win_by_length_ratio(&gens, &g, "ppo_seq2seq", "sft", ALL_SETS, 7).is_empty());
    }
}
