//! What each report figure shows: the data of the figures in [`super::figures::FIGURES`], built
//! from the derived tables and the logs (`figures.rs` draws them).

use super::figures::{Bar, BarChart, LengthHist, Panel, Panels, RatioChart};
use super::inputs::{CurveRow, Generation, PpoStep, TrainStep};
use super::logs::{CurvePoint, RmSummary, curve, ppo_curve, rms_of, stages_of, train_curve};
use super::stats::mean;
use super::tables::{
    ALL_SETS, Group, MetricRow, POLICY_ORDER, SET_ORDER, SeedKey, distinct, in_distribution, log_groups, policies_of, pooled_metric, rank,
    seed_range, set_rank, sets_of,
};
use super::wins::{WinRow, win_by_length_ratio};
use std::collections::BTreeMap;

/// With several (experiment, size) groups in one directory, labels get a `[size]` suffix
/// (`[experiment size]` if the experiments differ too).
fn with_group(label: &str, grp: &Group, groups: &[Group]) -> String {
    if groups.len() <= 1 {
        label.to_string()
    } else if groups.iter().all(|g| g.experiment == grp.experiment) {
        format!("{label} [{}]", grp.size)
    } else {
        format!("{label} [{} {}]", grp.experiment, grp.size)
    }
}

fn bar(value: f64, err: Option<(f64, f64)>) -> Bar {
    Bar { value, err, points: vec![] }
}

/// Pooled win rate per pair (categories) and prompt set (series).
pub fn win_rate_chart(wins: &[WinRow], groups: &[Group]) -> BarChart {
    let pooled: Vec<&WinRow> = wins.iter().filter(|r| r.seed == SeedKey::Pooled).collect();
    // categories in output order (pairs are already sorted within each group)
    let mut cats: Vec<(&Group, &str, &str)> = Vec::new();
    for r in &pooled {
        let c = (&r.group, r.policy_a.as_str(), r.policy_b.as_str());
        if !cats.contains(&c) {
            cats.push(c);
        }
    }
    // sorted, not in row order: a set may be missing for the first pair
    let sets = distinct(pooled.iter().map(|r| r.prompt_set.as_str()), set_rank);
    let series = sets
        .iter()
        .map(|set| {
            let row = |&(g, a, b): &(&Group, &str, &str)| {
                pooled.iter().find(|r| &r.group == g && r.policy_a == a && r.policy_b == b && &r.prompt_set == set)
            };
            let bars = cats.iter().map(|c| row(c).map(|r| bar(r.win_rate, Some((r.ci_low, r.ci_high))))).collect();
            (set.clone(), set.clone(), bars)
        })
        .collect();
    // `ppo_seq2seq vs ppo_scalar` -> `seq2seq vs scalar` on a crowded axis
    let name = |p: &str| if cats.len() > 4 { p.strip_prefix("ppo_").unwrap_or(p).to_string() } else { p.to_string() };
    BarChart {
        title: "Win rate (judge score), pooled over seeds".into(),
        x_desc: "policy A vs policy B".into(),
        y_desc: "win rate of A".into(),
        categories: cats.iter().map(|(g, a, b)| with_group(&format!("{} vs {}", name(a), name(b)), g, groups)).collect(),
        series,
        y_max: 1.2,
        hline: Some((0.5, "0.5 (no preference)".into())),
        value_label: Some(|v| format!("{:.0}%", 100.0 * v)),
    }
}

/// Pooled refusal rate per policy (categories) and real prompt set (series), min–max over seeds.
pub fn refusal_chart(metrics: &[MetricRow], groups: &[Group], gens: &[Generation]) -> BarChart {
    let cats: Vec<(&Group, String)> = groups.iter().flat_map(|g| policies_of(gens, g).into_iter().map(move |p| (g, p))).collect();
    let sets: Vec<String> = groups.iter().flat_map(|g| sets_of(gens, g)).collect();
    let series = distinct(sets.iter().map(String::as_str), |s| rank(&SET_ORDER, s))
        .into_iter()
        .map(|set| {
            let value = |g: &Group, p: &str| {
                Some(bar(pooled_metric(metrics, g, p, &set, "refusal_rate")?, seed_range(metrics, g, p, &set, "refusal_rate")))
            };
            let bars = cats.iter().map(|(g, p)| value(g, p)).collect();
            (set.clone(), set, bars)
        })
        .collect();
    BarChart {
        title: "Refusal rate by policy and prompt set (pooled over seeds)".into(),
        x_desc: "policy".into(),
        y_desc: "refusal rate".into(),
        categories: cats.iter().map(|(g, p)| with_group(p, g, groups)).collect(),
        series,
        y_max: 1.2,
        hline: None,
        value_label: None,
    }
}

/// pair_accuracy per model: mean over seeds with the seeds as dots.
pub fn rm_accuracy_chart(rm: &[RmSummary], groups: &[Group]) -> BarChart {
    let rows: Vec<&RmSummary> = rm.iter().filter(|r| r.metric == "pair_accuracy").collect();
    let bars = rows.iter().map(|r| Some(Bar { value: r.mean, err: None, points: r.per_seed.values().copied().collect() })).collect();
    BarChart {
        title: "Reward-model preference accuracy on held-out pairs".into(),
        x_desc: "model".into(),
        y_desc: "pair accuracy".into(),
        categories: rows.iter().map(|r| with_group(&r.model, &r.group, groups)).collect(),
        series: vec![("mean over seeds".into(), "seq2seq".into(), bars)],
        y_max: 1.2,
        hline: Some((0.5, "chance".into())),
        value_label: Some(|v| format!("{v:.3}")),
    }
}

/// Reference length per distinct prompt (a reference repeats on every seed and policy's row).
fn reference_lengths<'a>(gens: impl Iterator<Item = &'a Generation>) -> Vec<f64> {
    let per_prompt: BTreeMap<(&str, &str, &str, i64), f64> = gens
        .filter_map(|g| Some(((g.experiment.as_str(), g.size.as_str(), g.prompt_set.as_str(), g.prompt_id), g.reference_length()?)))
        .collect();
    per_prompt.into_values().collect()
}

/// Histogram of length_tokens per policy (all seeds, sets), as fractions with ~40 integer bins,
/// plus the references' lengths as a `reference` series when the data has references.
pub fn length_hist(gens: &[Generation]) -> LengthHist {
    let refs = reference_lengths(gens.iter());
    let max_len = gens.iter().map(|g| g.length_tokens).chain(refs.iter().copied()).fold(0.0, f64::max);
    let bin_width = ((max_len + 1.0) / 40.0).ceil().max(1.0);
    let n_bins = ((max_len / bin_width).floor() as usize) + 1;
    let fractions = |lengths: &mut dyn Iterator<Item = f64>| {
        let mut counts = vec![0.0; n_bins];
        let mut total = 0.0;
        for l in lengths {
            counts[((l / bin_width).floor() as usize).min(n_bins - 1)] += 1.0;
            total += 1.0;
        }
        counts.into_iter().map(|c| c / total).collect::<Vec<f64>>()
    };
    let policies = distinct(gens.iter().map(|g| g.policy.as_str()), |p| rank(&POLICY_ORDER, p));
    let mut series: Vec<(String, Vec<f64>)> = policies
        .into_iter()
        .map(|p| {
            let fr = fractions(&mut gens.iter().filter(|g| g.policy == p).map(|g| g.length_tokens));
            (p, fr)
        })
        .collect();
    if !refs.is_empty() {
        series.push(("reference".into(), fractions(&mut refs.into_iter())));
    }
    LengthHist { bin_width, series }
}

/// The PPO metrics shown in `ppo_curves`, with panel titles.
const PPO_PANELS: [(&str, &str); 6] = [
    ("rm_reward", "RM reward"),
    ("kl", "KL to reference policy"),
    ("response_length", "response length (tokens)"),
    ("refusal_rate", "refusal rate"),
    ("entropy", "policy entropy"),
    ("value_loss", "value loss"),
];

fn ppo_groups(ppo: &[PpoStep]) -> Vec<Group> {
    log_groups(ppo.iter().map(|p| (p.experiment.as_str(), p.size.as_str())))
}

pub fn ppo_panels(ppo: &[PpoStep]) -> Panels {
    let groups = &ppo_groups(ppo);
    let lines = |metric: &str| -> Vec<(String, String, Vec<CurvePoint>)> {
        groups
            .iter()
            .flat_map(|g| {
                rms_of(ppo, g).into_iter().map(move |rm| {
                    // several groups: palette colours by line, so sizes are distinguishable
                    let key = if groups.len() > 1 { "#".to_string() } else { rm.clone() };
                    (with_group(&format!("{rm} RM"), g, groups), key, ppo_curve(ppo, g, &rm, metric))
                })
            })
            .collect()
    };
    Panels {
        title: "PPO training against the scalar vs seq2seq reward model (mean over seeds, band = min–max)".into(),
        x_desc: "PPO step".into(),
        cols: 3,
        panels: PPO_PANELS.iter().map(|(metric, title)| Panel { title: title.to_string(), lines: lines(metric) }).collect(),
    }
}

/// Mean response length over PPO steps, one panel per (experiment, size), a line per reward
/// model; a flat black `reference` line at the mean reference length of the group's
/// in-distribution evaluation prompts when the data has references (where the length bias shows).
pub fn length_over_ppo(ppo: &[PpoStep], gens: &[Generation]) -> Panels {
    let panels = ppo_groups(ppo)
        .iter()
        .map(|g| {
            let mut lines: Vec<(String, String, Vec<CurvePoint>)> =
                rms_of(ppo, g).into_iter().map(|rm| (format!("{rm} RM"), rm.clone(), ppo_curve(ppo, g, &rm, "response_length"))).collect();
            let refs = reference_lengths(gens.iter().filter(|r| g.holds(&r.experiment, &r.size) && in_distribution(&r.prompt_set)));
            let steps = || lines.iter().flat_map(|l| l.2.iter().map(|p| p.step));
            if let (false, Some(lo), Some(hi)) = (refs.is_empty(), steps().min(), steps().max()) {
                let v = mean(&refs);
                let flat = |step| CurvePoint { step, mean: v, min: v, max: v };
                lines.push(("reference".into(), "reference".into(), vec![flat(lo), flat(hi)]));
            }
            Panel { title: format!("{} / {}: response length (tokens)", g.experiment, g.size), lines }
        })
        .collect::<Vec<_>>();
    Panels {
        title: "Mean response length during PPO (mean over seeds, band = min–max)".into(),
        x_desc: "PPO step".into(),
        cols: panels.len().clamp(1, 3),
        panels,
    }
}

/// Bins of `win_vs_length_ratio`: the number of equal-count bins per group.
const RATIO_BINS: usize = 7;

pub fn win_vs_length_ratio(gens: &[Generation], groups: &[Group]) -> RatioChart {
    let series = groups
        .iter()
        .map(|g| {
            let bins = win_by_length_ratio(gens, g, "ppo_seq2seq", "ppo_scalar", ALL_SETS, RATIO_BINS);
            (with_group("ppo_seq2seq vs ppo_scalar", g, groups), bins)
        })
        .filter(|s| !s.1.is_empty())
        .collect();
    RatioChart { title: "Win rate of ppo_seq2seq vs ppo_scalar by length ratio (equal-count bins)".into(), series }
}

pub fn train_panels(train: &[TrainStep]) -> Panels {
    let groups = &log_groups(train.iter().map(|t| (t.experiment.as_str(), t.size.as_str())));
    let panels = stages_of(train)
        .iter()
        .map(|stage| Panel {
            title: format!("{stage} loss"),
            lines: groups
                .iter()
                .enumerate()
                .map(|(gi, g)| (with_group(stage, g, groups), format!("#{gi}"), train_curve(train, g, stage)))
                .collect(),
        })
        .collect();
    Panels { title: "Training loss per stage (mean over seeds, band = min–max)".into(), x_desc: "step".into(), cols: 3, panels }
}

/// The seq2seq RM while it trains (`rm_curve.csv`): one panel per measure, a line each for chosen
/// and rejected inputs (per size when there are several), mean over seeds. Rejected copied as
/// much as chosen means the divergence rule pays for length.
pub fn rm_curve_panels(rows: &[CurveRow]) -> Panels {
    let groups = &log_groups(rows.iter().map(|r| (r.experiment.as_str(), r.size.as_str())));
    let panels = [
        ("token copy rate", "token_copy_rate", "token_copy_rate_rejected"),
        ("exact-copy rate", "copy_rate", "copy_rate_rejected"),
        ("first divergence (token position)", "first_divergence_chosen", "first_divergence_rejected"),
    ]
    .into_iter()
    .map(|(title, chosen, rejected)| Panel {
        title: title.to_string(),
        lines: groups
            .iter()
            .flat_map(|g| {
                [("chosen input", chosen), ("rejected input", rejected)].map(|(label, metric)| {
                    let points = rows.iter().filter(|r| g.holds(&r.experiment, &r.size) && r.metric == metric).map(|r| (r.step, r.value));
                    (with_group(label, g, groups), label.to_string(), curve(points))
                })
            })
            .collect(),
    })
    .collect();
    Panels { title: "Seq2seq RM on held-out pairs while it trains (mean over seeds, band = min–max)".into(), x_desc: "seq2seq RM step".into(), cols: 3, panels }
}
