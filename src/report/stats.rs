//! The small pure statistics behind the derived tables: win outcomes, means, percentile bootstrap,
//! pooling over seeds. Kept free of I/O so they can be checked on literal numbers.

use crate::util::SplitMix64;
use std::collections::BTreeMap;

/// Judge scores closer than this count as a tie.
pub const TIE_EPS: f64 = 1e-9;

/// Outcome of one head-to-head comparison from policy A's point of view:
/// 1 if A's judge score is higher, 0.5 on a tie (|diff| <= 1e-9), 0 otherwise.
pub fn win_outcome(score_a: f64, score_b: f64) -> f64 {
    let d = score_a - score_b;
    if d.abs() <= TIE_EPS {
        0.5
    } else if d > 0.0 {
        1.0
    } else {
        0.0
    }
}

/// Arithmetic mean; NaN for an empty slice.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        f64::NAN
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Mean of the finite values only (NaN if none), for optional logged quantities.
pub fn finite_mean(xs: impl IntoIterator<Item = f64>) -> f64 {
    let v: Vec<f64> = xs.into_iter().filter(|x| x.is_finite()).collect();
    mean(&v)
}

/// Linear-interpolation quantile (the common "type 7") of an ascending-sorted slice.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

/// 95% percentile-bootstrap interval of the mean of `values`: `n_boot` resamples of size n drawn
/// with replacement using `rng.below(n)`. Returns (NaN, NaN) when there is nothing to resample.
pub fn bootstrap_ci(values: &[f64], n_boot: usize, rng: &mut SplitMix64) -> (f64, f64) {
    let n = values.len();
    if n == 0 || n_boot == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut means: Vec<f64> = (0..n_boot)
        .map(|_| {
            let mut s = 0.0;
            for _ in 0..n {
                s += values[rng.below(n)];
            }
            s / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    (
        quantile_sorted(&means, 0.025),
        quantile_sorted(&means, 0.975),
    )
}

/// Pool per-seed per-prompt values: keep the prompts present in every seed and average each one's
/// values over seeds. With no seeds the result is empty.
pub fn pool_over_seeds<K: Ord + Clone>(per_seed: &[&BTreeMap<K, f64>]) -> BTreeMap<K, f64> {
    let Some((first, rest)) = per_seed.split_first() else {
        return BTreeMap::new();
    };
    first
        .iter()
        .filter_map(|(k, v0)| {
            let mut sum = *v0;
            for m in rest {
                sum += m.get(k)?;
            }
            Some((k.clone(), sum / per_seed.len() as f64))
        })
        .collect()
}

/// Verdict on a claim that a quantity exceeds `threshold`, from its 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Reproduced,
    NotReproduced,
    Inconclusive,
    NotMeasured,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::NotReproduced => "not reproduced",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// `reproduced` if the whole interval lies above `threshold`, `not reproduced` if it lies entirely
/// below, `inconclusive` if it straddles it; `not measured` without a finite interval.
pub fn verdict(ci_low: f64, ci_high: f64, threshold: f64) -> Verdict {
    if !(ci_low.is_finite() && ci_high.is_finite()) {
        Verdict::NotMeasured
    } else if ci_low > threshold {
        Verdict::Reproduced
    } else if ci_high < threshold {
        Verdict::NotReproduced
    } else {
        Verdict::Inconclusive
    }
}

/// The per-cell summary that `metrics.csv` reports for one (seed, policy, prompt set).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CellStats {
    pub n_prompts: usize,
    pub refusal_rate: f64,
    pub mean_length_tokens: f64,
    pub truncation_rate: f64,
    pub judge_score_mean: f64,
}

/// One response as `metrics.csv` sees it: (length_tokens, truncated, refused, judge_score).
pub type Response = (f64, bool, bool, f64);

/// Names (and order) of the metrics in `metrics.csv`.
pub const CELL_METRICS: [&str; 5] = [
    "refusal_rate",
    "mean_length_tokens",
    "truncation_rate",
    "judge_score_mean",
    "n_prompts",
];

impl CellStats {
    /// Summarise a cell's responses.
    pub fn from_rows(rows: &[Response]) -> Self {
        let frac = |f: &dyn Fn(&Response) -> f64| mean(&rows.iter().map(f).collect::<Vec<_>>());
        Self {
            n_prompts: rows.len(),
            refusal_rate: frac(&|r| r.2 as u8 as f64),
            mean_length_tokens: frac(&|r| r.0),
            truncation_rate: frac(&|r| r.1 as u8 as f64),
            judge_score_mean: frac(&|r| r.3),
        }
    }

    /// The values in [`CELL_METRICS`] order.
    pub fn values(&self) -> [f64; 5] {
        [
            self.refusal_rate,
            self.mean_length_tokens,
            self.truncation_rate,
            self.judge_score_mean,
            self.n_prompts as f64,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_rule_with_ties() {
        assert_eq!(win_outcome(1.0, 0.5), 1.0);
        assert_eq!(win_outcome(0.5, 1.0), 0.0);
        assert_eq!(win_outcome(0.3, 0.3), 0.5);
        assert_eq!(win_outcome(0.3 + 5e-10, 0.3), 0.5); // within the tie tolerance
        assert_eq!(win_outcome(0.3 + 1e-6, 0.3), 1.0); // just outside it
        assert_eq!(win_outcome(-2.0, -2.0 - 1e-6), 1.0);
    }

    #[test]
    fn verdict_rules() {
        assert_eq!(verdict(0.55, 0.7, 0.5), Verdict::Reproduced);
        assert_eq!(verdict(0.3, 0.45, 0.5), Verdict::NotReproduced);
        assert_eq!(verdict(0.45, 0.55, 0.5), Verdict::Inconclusive);
        assert_eq!(verdict(0.5, 0.6, 0.5), Verdict::Inconclusive); // touching counts as straddling
        assert_eq!(verdict(0.01, 0.2, 0.0), Verdict::Reproduced);
        assert_eq!(verdict(f64::NAN, f64::NAN, 0.5), Verdict::NotMeasured);
    }

    #[test]
    fn quantile_interpolates() {
        let s = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile_sorted(&s, 0.5), 3.0);
        assert_eq!(quantile_sorted(&s, 0.0), 1.0);
        assert_eq!(quantile_sorted(&s, 1.0), 5.0);
        assert!((quantile_sorted(&s, 0.1) - 1.4).abs() < 1e-12);
        assert!(quantile_sorted(&[], 0.5).is_nan());
    }

    #[test]
    fn bootstrap_contains_estimate_and_is_deterministic() {
        let v = [1.0, 0.0, 1.0, 1.0, 0.5, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 1.0];
        let est = mean(&v);
        let a = bootstrap_ci(&v, 2000, &mut SplitMix64::derive(42, 3));
        let b = bootstrap_ci(&v, 2000, &mut SplitMix64::derive(42, 3));
        assert_eq!(a, b, "same seed and stream must give the same interval");
        assert!(a.0 < est && est < a.1, "{a:?} should contain {est}");
        assert!(a.0 >= 0.0 && a.1 <= 1.0);
        // Resample means are multiples of 1/24 here, so the bounds must be too (up to rounding).
        for x in [a.0, a.1] {
            assert!(((x * 24.0) - (x * 24.0).round()).abs() < 1e-9, "{x}");
        }
        // On continuous data another stream gives another (but similar) interval.
        let w = [0.13, 0.97, 0.42, 0.58, 0.71, 0.05, 0.33, 0.89, 0.26, 0.64];
        let c = bootstrap_ci(&w, 2000, &mut SplitMix64::derive(42, 3));
        let d = bootstrap_ci(&w, 2000, &mut SplitMix64::derive(42, 4));
        assert_ne!(c, d, "a different stream should resample differently");
        assert!(
            (c.0 - d.0).abs() < 0.05 && (c.1 - d.1).abs() < 0.05,
            "{c:?} vs {d:?}"
        );
        assert!(c.0 < mean(&w) && mean(&w) < c.1);
        // Constant data has a degenerate interval; empty data has none.
        assert_eq!(
            bootstrap_ci(&[0.7; 5], 100, &mut SplitMix64::new(1)),
            (0.7, 0.7)
        );
        assert!(bootstrap_ci(&[], 100, &mut SplitMix64::new(1)).0.is_nan());
    }

    #[test]
    fn pooling_averages_prompts_present_in_all_seeds() {
        // seed 0: prompts 1,2,3; seed 1: prompts 1,2,4; seed 2: prompts 1,2,3.
        let s0: BTreeMap<i64, f64> = [(1, 1.0), (2, 0.0), (3, 1.0)].into();
        let s1: BTreeMap<i64, f64> = [(1, 0.5), (2, 1.0), (4, 1.0)].into();
        let s2: BTreeMap<i64, f64> = [(1, 0.0), (2, 1.0), (3, 0.0)].into();
        let pooled = pool_over_seeds(&[&s0, &s1, &s2]);
        // prompt 1: (1 + 0.5 + 0)/3 = 0.5; prompt 2: (0 + 1 + 1)/3 = 2/3; 3 and 4 are dropped.
        assert_eq!(pooled.len(), 2);
        assert!((pooled[&1] - 0.5).abs() < 1e-12);
        assert!((pooled[&2] - 2.0 / 3.0).abs() < 1e-12);
        assert!(pool_over_seeds::<i64>(&[]).is_empty());
    }

    #[test]
    fn cell_stats_on_literal_rows() {
        let rows = [
            (10.0, false, true, 0.5),
            (20.0, true, false, -0.5),
            (30.0, false, true, 1.0),
            (40.0, false, false, 0.0),
        ];
        let s = CellStats::from_rows(&rows);
        assert_eq!(s.n_prompts, 4);
        assert_eq!(s.refusal_rate, 0.5);
        assert_eq!(s.mean_length_tokens, 25.0);
        assert_eq!(s.truncation_rate, 0.25);
        assert_eq!(s.judge_score_mean, 0.25);
    }
}
