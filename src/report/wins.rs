//! The paired comparisons over prompts: `win_rates.csv` (raw and length-controlled, per seed and
//! pooled), the win rate against the length ratio, and the paired differences (benign refusal,
//! response length) with their bootstrap intervals.
//!
//! Per-prompt values live in `BTreeMap`s keyed by (prompt set, prompt id): the bootstrap resamples
//! their positions, so this order is part of what makes the intervals reproducible.

use super::inputs::Generation;
use super::stats::{bootstrap_ci, bootstrap_cis, lc_win_rate, mean, pool_over_seeds, standardized, win_outcome};
use super::tables::{ALL_SETS, Group, SeedKey, fmt6, groups_of, in_group, in_set, set_rank, sets_of};
use crate::util::SplitMix64;
use std::collections::BTreeMap;

/// The compared pairs (a, b), in output order: a is the first-named policy.
pub const PAIRS: [(&str, &str); 3] = [("ppo_seq2seq", "ppo_scalar"), ("ppo_seq2seq", "sft"), ("ppo_scalar", "sft")];

/// Bootstrap streams for the refusal difference start here so they never collide with the
/// win-rate streams (which are row positions in `win_rates.csv`).
const REFUSAL_STREAM_BASE: u64 = 1 << 32;

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
type PerPrompt = BTreeMap<PromptKey, f64>;

/// Per seed, a policy's mean `value` per prompt of `set` ([`in_set`]): several samples of one
/// prompt are averaged; rows where `value` is `None` are left out.
fn per_prompt(
    gens: &[Generation],
    grp: &Group,
    policy: &str,
    set: &str,
    value: impl Fn(&Generation) -> Option<f64>,
) -> BTreeMap<i64, PerPrompt> {
    let mut sums: BTreeMap<i64, BTreeMap<PromptKey, (f64, usize)>> = BTreeMap::new();
    for g in in_group(gens, grp).filter(|g| g.policy == policy && in_set(set, &g.prompt_set)) {
        let Some(v) = value(g) else { continue };
        let e = sums.entry(g.seed).or_default().entry((g.prompt_set.clone(), g.prompt_id)).or_insert((0.0, 0));
        e.0 += v;
        e.1 += 1;
    }
    sums.into_iter().map(|(s, m)| (s, m.into_iter().map(|(k, (sum, n))| (k, sum / n as f64)).collect())).collect()
}

/// Per prompt of `set`, a policy's mean `value` over its seeds (prompts present in all its seeds).
pub fn pooled_per_prompt(
    gens: &[Generation],
    grp: &Group,
    policy: &str,
    set: &str,
    value: impl Fn(&Generation) -> Option<f64>,
) -> PerPrompt {
    pool_over_seeds(&per_prompt(gens, grp, policy, set, value).values().collect::<Vec<_>>())
}

/// `f(a, b)` per prompt that both maps hold.
fn paired(a: &PerPrompt, b: &PerPrompt, f: impl Fn(f64, f64) -> f64) -> PerPrompt {
    a.iter().filter_map(|(k, va)| b.get(k).map(|vb| (k.clone(), f(*va, *vb)))).collect()
}

fn score(g: &Generation) -> Option<f64> {
    Some(g.judge_score)
}
fn length(g: &Generation) -> Option<f64> {
    Some(g.length_tokens)
}

/// One comparison's per-prompt data in one seed: the outcome of a vs b and len_a − len_b.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairedPrompts {
    pub outcome: PerPrompt,
    pub length_diff: PerPrompt,
}

/// Per seed, the per-prompt outcomes and length differences of `a` vs `b` on `set` (seeds where
/// the pair shares no prompt are left out).
pub fn paired_prompts(gens: &[Generation], grp: &Group, a: &str, b: &str, set: &str) -> Vec<(i64, PairedPrompts)> {
    let of = |p: &str| (per_prompt(gens, grp, p, set, score), per_prompt(gens, grp, p, set, length));
    let ((sa, la), (sb, lb)) = (of(a), of(b));
    sa.iter()
        .filter_map(|(s, pa)| {
            let outcome = paired(pa, sb.get(s)?, win_outcome);
            let length_diff = paired(&la[s], &lb[s], |x, y| x - y);
            (!outcome.is_empty()).then_some((*s, PairedPrompts { outcome, length_diff }))
        })
        .collect()
}

/// The `pooled` version of [`paired_prompts`]: prompts present in every seed, each one's outcome
/// and length difference averaged over seeds.
pub fn pool_paired(per_seed: &[(i64, PairedPrompts)]) -> PairedPrompts {
    let pool = |f: fn(&PairedPrompts) -> &PerPrompt| pool_over_seeds(&per_seed.iter().map(|(_, p)| f(p)).collect::<Vec<_>>());
    PairedPrompts { outcome: pool(|p| &p.outcome), length_diff: pool(|p| &p.length_diff) }
}

/// (raw win rate, its CI, LC win rate, its CI) of one row; both intervals from the same resamples.
fn win_stats(p: &PairedPrompts, n_boot: usize, rng: &mut SplitMix64) -> [f64; 6] {
    let y: Vec<f64> = p.outcome.values().copied().collect();
    let x = standardized(&p.length_diff.values().copied().collect::<Vec<_>>());
    let pts: Vec<(f64, f64)> = x.into_iter().zip(y.iter().copied()).collect();
    let mut raw = |idx: &[usize]| idx.iter().map(|&i| y[i]).sum::<f64>() / idx.len() as f64;
    let mut lc = |idx: &[usize]| lc_win_rate(&idx.iter().map(|&i| pts[i]).collect::<Vec<_>>());
    let ci = bootstrap_cis(y.len(), n_boot, rng, &mut [&mut raw, &mut lc]);
    [mean(&y), ci[0].0, ci[0].1, lc_win_rate(&pts), ci[1].0, ci[1].1]
}

/// Win rates per seed and pooled, with percentile-bootstrap 95% intervals over prompts, raw and
/// length-controlled. The bootstrap stream of a row is its position in the sorted output, so each
/// row's intervals are reproducible on their own.
pub fn compute_win_rates(gens: &[Generation], n_boot: usize, boot_seed: u64) -> Vec<WinRow> {
    // (sort key (group, pair index, set rank, seed), prompt set, per-prompt data)
    type Entry = ((Group, usize, (usize, usize, String), SeedKey), String, PairedPrompts);
    let mut entries: Vec<Entry> = Vec::new();
    for grp in groups_of(gens) {
        let sets = sets_of(gens, &grp).into_iter().chain([ALL_SETS.to_string()]).collect::<Vec<_>>();
        for (pi, (pa, pb)) in PAIRS.iter().enumerate() {
            for set in &sets {
                let per_seed = paired_prompts(gens, &grp, pa, pb, set);
                if per_seed.is_empty() {
                    continue;
                }
                let key = |seed| (grp.clone(), pi, set_rank(set), seed);
                let pooled = pool_paired(&per_seed);
                entries.extend(per_seed.into_iter().map(|(s, p)| (key(SeedKey::Seed(s)), set.clone(), p)));
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
        .map(|(idx, ((group, pi, _, seed), prompt_set, p))| {
            let mut rng = SplitMix64::derive(boot_seed, idx as u64);
            let [win_rate, ci_low, ci_high, lc_win_rate, lc_ci_low, lc_ci_high] = win_stats(&p, n_boot, &mut rng);
            let (a, b) = PAIRS[pi];
            let (policy_a, policy_b, n_prompts) = (a.to_string(), b.to_string(), p.outcome.len());
            WinRow { group, seed, policy_a, policy_b, prompt_set, n_prompts, win_rate, ci_low, ci_high, lc_win_rate, lc_ci_low, lc_ci_high }
        })
        .collect()
}

pub fn win_records(rows: &[WinRow]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            let keys = [
                &r.group.experiment,
                &r.group.size,
                &r.seed.to_string(),
                &r.policy_a,
                &r.policy_b,
                &r.prompt_set,
                &r.n_prompts.to_string(),
            ];
            let values = [r.win_rate, r.ci_low, r.ci_high, r.lc_win_rate, r.lc_ci_low, r.lc_ci_high];
            keys.into_iter().cloned().chain(values.map(fmt6)).collect()
        })
        .collect()
}

/// The pooled row for one comparison, if measured.
pub fn pooled_win<'a>(rows: &'a [WinRow], grp: &Group, a: &str, b: &str, set: &str) -> Option<&'a WinRow> {
    rows.iter().find(|r| r.seed == SeedKey::Pooled && &r.group == grp && r.policy_a == a && r.policy_b == b && r.prompt_set == set)
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
pub fn win_by_length_ratio(gens: &[Generation], grp: &Group, a: &str, b: &str, set: &str, n_bins: usize) -> Vec<RatioBin> {
    let of = |p: &str| (per_prompt(gens, grp, p, set, score), per_prompt(gens, grp, p, set, length));
    let ((sa, la), (sb, lb)) = (of(a), of(b));
    let mut pts: Vec<(f64, i64, PromptKey, f64)> = Vec::new();
    for (s, pa) in &sa {
        let Some(pb) = sb.get(s) else { continue };
        let ratio = paired(&la[s], &lb[s], |x, y| ((x + 1.0) / (y + 1.0)).ln());
        pts.extend(paired(pa, pb, win_outcome).into_iter().map(|(k, y)| (ratio[&k], *s, k, y)));
    }
    pts.sort_by(|p, q| p.0.total_cmp(&q.0).then_with(|| (p.1, &p.2).cmp(&(q.1, &q.2))));
    let (n, k) = (pts.len(), n_bins.min(pts.len()));
    (0..k)
        .map(|i| {
            let bin = &pts[i * n / k..(i + 1) * n / k];
            let avg = |f: fn(&(f64, i64, PromptKey, f64)) -> f64| mean(&bin.iter().map(f).collect::<Vec<_>>());
            RatioBin { log_ratio: avg(|p| p.0), win_rate: avg(|p| p.3), n: bin.len() }
        })
        .collect()
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
pub fn paired_diff_of<K: Ord>(a: &BTreeMap<K, f64>, b: &BTreeMap<K, f64>, n_boot: usize, rng: &mut SplitMix64) -> PairedDiff {
    let shared: Vec<(f64, f64)> = a.iter().filter_map(|(k, x)| b.get(k).map(|y| (*x, *y))).collect();
    let diffs: Vec<f64> = shared.iter().map(|(x, y)| x - y).collect();
    let (ci_low, ci_high) = bootstrap_ci(&diffs, n_boot, rng);
    let side = |f: fn(&(f64, f64)) -> f64| mean(&shared.iter().map(f).collect::<Vec<_>>());
    PairedDiff { n_prompts: diffs.len(), a_mean: side(|p| p.0), b_mean: side(|p| p.1), diff: mean(&diffs), ci_low, ci_high }
}

/// A group's benign refusal rates: `a` is ppo_scalar, `b` ppo_seq2seq.
#[derive(Clone, Debug, PartialEq)]
pub struct RefusalDiff {
    pub group: Group,
    pub rates: PairedDiff,
}

/// Benign refusal rate of ppo_scalar minus ppo_seq2seq per group (positive: the seq2seq-RM policy
/// refuses benign prompts less), with a bootstrap interval over prompts. Groups lacking either
/// policy or benign prompts are skipped.
pub fn compute_refusal_diffs(gens: &[Generation], n_boot: usize, boot_seed: u64) -> Vec<RefusalDiff> {
    let refused = |g: &Generation| Some(g.refused as u8 as f64);
    groups_of(gens)
        .into_iter()
        .enumerate()
        .filter_map(|(gi, grp)| {
            let scalar = pooled_per_prompt(gens, &grp, "ppo_scalar", "benign", refused);
            let seq = pooled_per_prompt(gens, &grp, "ppo_seq2seq", "benign", refused);
            let mut rng = SplitMix64::derive(boot_seed, REFUSAL_STREAM_BASE + gi as u64);
            let d = paired_diff_of(&scalar, &seq, n_boot, &mut rng);
            (d.n_prompts > 0).then_some(RefusalDiff { group: grp, rates: d })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::stats::win_outcome;
    use crate::report::tables::tests::row;

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
        let get = |set: &str, seed| rows.iter().find(|r| r.prompt_set == set && r.seed == seed).unwrap();
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
        assert_eq!((d.n_prompts, d.a_mean, d.b_mean, d.diff), (2, 0.75, 0.25, 0.5));
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
        assert_eq!((d[0].rates.n_prompts, d[0].rates.a_mean, d[0].rates.b_mean, d[0].rates.diff), (2, 0.75, 0.25, 0.5));
    }

    #[test]
    fn lc_win_rate_discounts_length_in_win_rows() {
        // seq2seq is longer on most prompts and wins exactly when it is longer (a tie when equal).
        let mut gens = Vec::new();
        for (id, d) in (-3i64..=12).chain([0]).enumerate() {
            let id = id as i64;
            let judge = win_outcome(d as f64, 0.0);
            gens.push(row(0, "ppo_seq2seq", "benign", id, 20.0 + d as f64, false, false, judge));
            gens.push(row(0, "ppo_scalar", "benign", id, 20.0, false, false, 0.5));
        }
        let rows = compute_win_rates(&gens, 200, 4);
        let r = rows.iter().find(|r| r.prompt_set == "all" && r.seed == SeedKey::Pooled).unwrap();
        assert!(r.win_rate > 0.7, "{r:?}");
        assert!((r.lc_win_rate - 0.5).abs() < 0.01, "{r:?}");
        assert!(r.lc_ci_low <= r.lc_win_rate + 1e-9 && r.lc_win_rate <= r.lc_ci_high + 1e-9, "{r:?}");
        assert_eq!(rows, compute_win_rates(&gens, 200, 4), "deterministic");
        // equal lengths everywhere: LC equals the raw win rate, interval included
        for g in gens.iter_mut() {
            g.length_tokens = 20.0;
        }
        for r in compute_win_rates(&gens, 200, 4) {
            assert_eq!((r.lc_win_rate, r.lc_ci_low, r.lc_ci_high), (r.win_rate, r.ci_low, r.ci_high));
        }
    }

    #[test]
    fn length_ratio_bins_are_equal_count() {
        // 14 prompts, seq2seq length 1..=14 vs scalar 7: it wins when longer.
        let mut gens = Vec::new();
        for id in 0..14i64 {
            let len = (id + 1) as f64;
            gens.push(row(0, "ppo_seq2seq", "benign", id, len, false, false, win_outcome(len, 7.0)));
            gens.push(row(0, "ppo_scalar", "benign", id, 7.0, false, false, 0.5));
            gens.push(row(0, "ppo_seq2seq", "ood_alpaca", id, 99.0, false, false, 1.0));
            gens.push(row(0, "ppo_scalar", "ood_alpaca", id, 1.0, false, false, 0.0));
        }
        let g = Group { experiment: "e".into(), size: "tiny".into() };
        let bins = win_by_length_ratio(&gens, &g, "ppo_seq2seq", "ppo_scalar", ALL_SETS, 7);
        assert_eq!(bins.len(), 7);
        assert!(bins.iter().all(|b| b.n == 2));
        let wins: Vec<f64> = bins.iter().map(|b| b.win_rate).collect();
        assert_eq!(wins, [0.0, 0.0, 0.0, 0.75, 1.0, 1.0, 1.0]);
        assert!((bins[0].log_ratio - ((2.0f64 / 8.0).ln() + (3.0f64 / 8.0).ln()) / 2.0).abs() < 1e-12);
        assert!(bins.windows(2).all(|w| w[0].log_ratio < w[1].log_ratio));
        assert!(win_by_length_ratio(&gens, &g, "ppo_seq2seq", "sft", ALL_SETS, 7).is_empty());
    }
}
