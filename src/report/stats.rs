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
    if xs.is_empty() { f64::NAN } else { xs.iter().sum::<f64>() / xs.len() as f64 }
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
    bootstrap_cis(values.len(), n_boot, rng, &mut [&mut |idx: &[usize]| idx.iter().map(|&i| values[i]).sum::<f64>() / idx.len() as f64])[0]
}

/// A statistic of a bootstrap resample, given as the indices of the drawn items.
pub type Statistic<'a> = &'a mut dyn FnMut(&[usize]) -> f64;

/// 95% percentile-bootstrap intervals of several statistics of the same n items, each evaluated on
/// the same `n_boot` resamples (index vectors drawn with `rng.below(n)`), so one RNG stream gives
/// all of a row's intervals. (NaN, NaN) per statistic when there is nothing to resample.
pub fn bootstrap_cis(n: usize, n_boot: usize, rng: &mut SplitMix64, stats: &mut [Statistic]) -> Vec<(f64, f64)> {
    if n == 0 || n_boot == 0 {
        return vec![(f64::NAN, f64::NAN); stats.len()];
    }
    let mut draws: Vec<Vec<f64>> = vec![Vec::with_capacity(n_boot); stats.len()];
    let mut idx = vec![0usize; n];
    for _ in 0..n_boot {
        for i in idx.iter_mut() {
            *i = rng.below(n);
        }
        for (stat, d) in stats.iter_mut().zip(draws.iter_mut()) {
            d.push(stat(&idx));
        }
    }
    draws
        .into_iter()
        .map(|mut d| {
            d.sort_by(f64::total_cmp);
            (quantile_sorted(&d, 0.025), quantile_sorted(&d, 0.975))
        })
        .collect()
}

/// 95% percentile-bootstrap interval of the mean over strata of each stratum's mean (e.g. the
/// average win rate over experiments): every resample redraws each stratum's items within that
/// stratum, in stratum order, from the one stream `rng`. (NaN, NaN) if any stratum is empty.
pub fn stratified_mean_ci(strata: &[Vec<f64>], n_boot: usize, rng: &mut SplitMix64) -> (f64, f64) {
    if strata.is_empty() || strata.iter().any(|s| s.is_empty()) || n_boot == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut means: Vec<f64> = (0..n_boot)
        .map(|_| {
            let total: f64 = strata.iter().map(|s| (0..s.len()).map(|_| s[rng.below(s.len())]).sum::<f64>() / s.len() as f64).sum();
            total / strata.len() as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    (quantile_sorted(&means, 0.025), quantile_sorted(&means, 0.975))
}

// ---------------------------------------------------------------------------------------------
// Length-controlled win rate

/// Ridge on (α, β): keeps the Newton system invertible and the fit finite when the outcomes are
/// separable by length (the unpenalised maximum likelihood then lies at infinity).
pub const LC_RIDGE: f64 = 1e-6;
/// Newton iterations at most; the fit usually converges in under ten, the cap makes the separable
/// cases stop at the same place on every run.
pub const LC_MAX_ITER: usize = 50;

/// log σ(z) without overflow: −softplus(−z).
fn log_sigmoid(z: f64) -> f64 {
    -((-z).max(0.0) + (-z.abs()).exp().ln_1p())
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Ridge-penalised log-likelihood of fractional outcomes under y ~ σ(α + βx).
fn lc_objective(pts: &[(f64, f64)], a: f64, b: f64) -> f64 {
    let ll: f64 = pts
        .iter()
        .map(|&(x, y)| {
            let z = a + b * x;
            y * log_sigmoid(z) + (1.0 - y) * log_sigmoid(-z)
        })
        .sum();
    ll - 0.5 * LC_RIDGE * (a * a + b * b)
}

/// Length-controlled win rate (as in AlpacaEval's LC win rate): fit y ~ σ(α + βx) to the per-prompt
/// outcomes y ∈ [0, 1] and standardised length differences x by maximum likelihood (Newton steps
/// with step halving, ridge [`LC_RIDGE`], at most [`LC_MAX_ITER`] steps) and return σ(α), the win
/// rate the model predicts at equal lengths. Closed forms where the fit is degenerate: constant
/// outcomes give that constant, no length variation gives the raw mean. NaN for no points.
pub fn lc_win_rate(pts: &[(f64, f64)]) -> f64 {
    let Some(&(_, y0)) = pts.first() else {
        return f64::NAN;
    };
    if pts.iter().all(|p| p.1 == y0) {
        return y0;
    }
    if pts.iter().all(|p| p.0 == 0.0) {
        return mean(&pts.iter().map(|p| p.1).collect::<Vec<_>>());
    }
    // start at the intercept-only optimum
    let ybar = mean(&pts.iter().map(|p| p.1).collect::<Vec<_>>()).clamp(1e-6, 1.0 - 1e-6);
    let (mut a, mut b) = ((ybar / (1.0 - ybar)).ln(), 0.0);
    let mut obj = lc_objective(pts, a, b);
    for _ in 0..LC_MAX_ITER {
        // gradient g and negative Hessian h of the penalised log-likelihood
        let (mut g0, mut g1, mut h00, mut h01, mut h11) = (-LC_RIDGE * a, -LC_RIDGE * b, LC_RIDGE, 0.0, LC_RIDGE);
        for &(x, y) in pts {
            let p = sigmoid(a + b * x);
            let w = p * (1.0 - p);
            g0 += y - p;
            g1 += (y - p) * x;
            h00 += w;
            h01 += w * x;
            h11 += w * x * x;
        }
        let det = h00 * h11 - h01 * h01;
        if !(det.is_finite() && det > 0.0) {
            break;
        }
        let (da, db) = ((h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det);
        // halve the step until the objective does not decrease (Newton can overshoot when the
        // outcomes are nearly separable)
        let mut t = 1.0;
        let mut accepted = false;
        for _ in 0..60 {
            let cand = lc_objective(pts, a + t * da, b + t * db);
            if cand >= obj {
                a += t * da;
                b += t * db;
                obj = cand;
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        if !accepted || (t * da).abs().max((t * db).abs()) < 1e-10 {
            break;
        }
    }
    let lc = sigmoid(a);
    if lc.is_finite() { lc } else { ybar }
}

/// `x` for the length-controlled fit: each length difference divided by the (population) standard
/// deviation of the differences; all zeros when they do not vary.
pub fn standardized(diffs: &[f64]) -> Vec<f64> {
    let m = mean(diffs);
    let sd = (diffs.iter().map(|d| (d - m) * (d - m)).sum::<f64>() / diffs.len().max(1) as f64).sqrt();
    if sd > 0.0 && sd.is_finite() { diffs.iter().map(|d| d / sd).collect() } else { vec![0.0; diffs.len()] }
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
        assert!((c.0 - d.0).abs() < 0.05 && (c.1 - d.1).abs() < 0.05, "{c:?} vs {d:?}");
        assert!(c.0 < mean(&w) && mean(&w) < c.1);
        // Constant data has a degenerate interval; empty data has none.
        assert_eq!(bootstrap_ci(&[0.7; 5], 100, &mut SplitMix64::new(1)), (0.7, 0.7));
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
    fn shared_resamples_give_the_plain_bootstrap_interval() {
        let v = [0.13, 0.97, 0.42, 0.58, 0.71, 0.05, 0.33, 0.89, 0.26, 0.64];
        let plain = bootstrap_ci(&v, 500, &mut SplitMix64::derive(5, 1));
        let mut mean_of = |idx: &[usize]| idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len() as f64;
        let mut max_of = |idx: &[usize]| idx.iter().map(|&i| v[i]).fold(f64::MIN, f64::max);
        let both = bootstrap_cis(10, 500, &mut SplitMix64::derive(5, 1), &mut [&mut mean_of, &mut max_of]);
        assert_eq!(both[0], plain, "the mean's interval must not depend on the other statistics");
        assert!(both[1].0 <= both[1].1 && both[1].1 == 0.97);
        assert!(bootstrap_cis(0, 10, &mut SplitMix64::new(1), &mut [&mut mean_of])[0].0.is_nan());
    }

    /// Deterministic pseudo-random outcomes: y = 1 with probability σ(k·x), via SplitMix64.
    fn simulated(n: usize, k: f64, shift: f64, seed: u64) -> Vec<(f64, f64)> {
        let mut rng = SplitMix64::new(seed);
        (0..n)
            .map(|_| {
                let d = shift + 20.0 * (rng.next_f64() - 0.5); // length difference in tokens
                let y = (rng.next_f64() < sigmoid(k * d)) as u8 as f64;
                (d, y)
            })
            .collect()
    }

    fn with_standardized_x(pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
        let x = standardized(&pts.iter().map(|p| p.0).collect::<Vec<_>>());
        x.into_iter().zip(pts.iter().map(|p| p.1)).collect()
    }

    fn raw(pts: &[(f64, f64)]) -> f64 {
        mean(&pts.iter().map(|p| p.1).collect::<Vec<_>>())
    }

    #[test]
    fn lc_removes_a_pure_length_preference() {
        // A is longer on most prompts (shift +8 tokens) and the judge prefers whichever is longer:
        // the raw win rate is far above 0.5, the length-controlled one close to it.
        let pts = with_standardized_x(&simulated(4000, 0.5, 8.0, 11));
        let (r, lc) = (raw(&pts), lc_win_rate(&pts));
        assert!(r > 0.75, "raw {r}");
        assert!((lc - 0.5).abs() < 0.05, "lc {lc} (raw {r})");

        // Deterministic version: longer wins, equal lengths tie. Separable, so only the ridge and
        // the ties at x = 0 pin the intercept; still finite and at 0.5.
        let mut det: Vec<(f64, f64)> = (-3..=12).map(|d| (d as f64, win_outcome(d as f64, 0.0))).collect();
        det.push((0.0, 0.5));
        let det = with_standardized_x(&det);
        let (r, lc) = (raw(&det), lc_win_rate(&det));
        assert!(r > 0.7, "raw {r}");
        assert!((lc - 0.5).abs() < 0.01, "lc {lc}");
    }

    #[test]
    fn lc_equals_raw_when_length_does_not_matter() {
        // The outcome ignores length (k = 0) but A wins 70% of the time.
        let mut rng = SplitMix64::new(3);
        let pts: Vec<(f64, f64)> = (0..4000).map(|_| (8.0 + 20.0 * (rng.next_f64() - 0.5), (rng.next_f64() < 0.7) as u8 as f64)).collect();
        let pts = with_standardized_x(&pts);
        let (r, lc) = (raw(&pts), lc_win_rate(&pts));
        assert!((lc - r).abs() < 0.03, "lc {lc} vs raw {r}");
        // Closed forms: no length variation -> raw mean exactly; constant outcomes -> the constant.
        let flat = [(0.0, 1.0), (0.0, 0.0), (0.0, 0.5), (0.0, 1.0)];
        assert_eq!(lc_win_rate(&flat), 0.625);
        assert_eq!(lc_win_rate(&[(-1.0, 1.0), (2.0, 1.0)]), 1.0);
        assert_eq!(lc_win_rate(&[(-1.0, 0.0), (2.0, 0.0)]), 0.0);
        assert!(lc_win_rate(&[]).is_nan());
        assert_eq!(standardized(&[3.0, 3.0]), [0.0, 0.0]);
    }

    #[test]
    fn lc_never_gives_nan_on_separable_outcomes() {
        // Separable without ties: the maximum likelihood is at infinity; the fit must still stop
        // at a finite number in [0, 1], the same one on every call.
        let pts = with_standardized_x(&[(-5.0, 0.0), (-1.0, 0.0), (2.0, 1.0), (7.0, 1.0), (9.0, 1.0)]);
        let lc = lc_win_rate(&pts);
        assert!(lc.is_finite() && (0.0..=1.0).contains(&lc), "{lc}");
        assert_eq!(lc, lc_win_rate(&pts));
        let extreme = [(-1e6, 0.0), (1e6, 1.0), (1e-300, 0.5)];
        assert!(lc_win_rate(&extreme).is_finite());
    }
    #[test]
    fn stratified_bootstrap_of_the_mean_of_means() {
        let a = vec![1.0, 0.0, 1.0, 1.0, 0.5, 0.0, 1.0, 1.0];
        // one stratum: exactly the plain bootstrap of its mean
        assert_eq!(
            stratified_mean_ci(std::slice::from_ref(&a), 300, &mut SplitMix64::new(9)),
            bootstrap_ci(&a, 300, &mut SplitMix64::new(9))
        );
        // two strata of very different size: the interval is around the mean of the two means
        // (0.6875 and 0.2), not the pooled mean of all items
        let b = vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let (lo, hi) = stratified_mean_ci(&[a.clone(), b], 2000, &mut SplitMix64::new(9));
        assert!(lo < 0.44375 && 0.44375 < hi && hi - lo < 0.5, "[{lo}, {hi}]");
        assert!(stratified_mean_ci(&[a, vec![]], 10, &mut SplitMix64::new(1)).0.is_nan());
    }
}
