//! Summaries of the logs: PPO curves and end-of-training values (`ppo_log.csv`), reward-model
//! numbers (`rm_eval.csv`), training-loss curves and end values (`train_log.csv`).

use super::inputs::{PPO_METRICS, PpoStep, RmEval, TrainStep};
use super::stats::{finite_mean, mean};
use super::tables::{Group, distinct, log_groups, min_max, rank};
use std::collections::BTreeMap;

/// Reward models in display order, for `rm_eval.csv` and `ppo_log.csv`.
const MODEL_ORDER: [&str; 3] = ["scalar_rm", "seq2seq_rm", "judge"];
const RM_ORDER: [&str; 2] = ["scalar", "seq2seq"];
const RM_METRIC_ORDER: [&str; 4] = ["pair_accuracy", "length_score_corr", "copy_rate", "mean_token_reward_chosen"];
const STAGE_ORDER: [&str; 5] = ["pretrain", "sft", "scalar_rm", "seq2seq_rm", "judge"];

/// Reward models present in a group's PPO log, display-ordered.
pub fn rms_of(ppo: &[PpoStep], grp: &Group) -> Vec<String> {
    distinct(ppo.iter().filter(|p| grp.holds(&p.experiment, &p.size)).map(|p| p.rm.as_str()), |r| rank(&RM_ORDER, r))
}

/// Training stages present in a log, display-ordered.
pub fn stages_of(train: &[TrainStep]) -> Vec<String> {
    distinct(train.iter().map(|t| t.stage.as_str()), |s| rank(&STAGE_ORDER, s))
}

/// One point of a curve: step, mean over seeds, min and max over seeds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurvePoint {
    pub step: i64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

/// Mean, min and max of the values logged at each step, in step order.
pub fn curve(points: impl Iterator<Item = (i64, f64)>) -> Vec<CurvePoint> {
    let mut by_step: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for (step, v) in points {
        by_step.entry(step).or_default().push(v);
    }
    by_step
        .into_iter()
        .map(|(step, v)| (step, mean(&v), min_max(&v)))
        .map(|(step, mean, (min, max))| CurvePoint { step, mean, min, max })
        .collect()
}

/// Mean / min / max over seeds at each logged step (seeds that did not log the metric are skipped).
pub fn ppo_curve(ppo: &[PpoStep], grp: &Group, rm: &str, metric: &str) -> Vec<CurvePoint> {
    curve(ppo.iter().filter(|p| grp.holds(&p.experiment, &p.size) && p.rm == rm).filter_map(|p| Some((p.step, p.metric(metric)?))))
}

/// Loss curve of one stage: mean over seeds per step.
pub fn train_curve(train: &[TrainStep], grp: &Group, stage: &str) -> Vec<CurvePoint> {
    let finite = |t: &TrainStep| t.loss.filter(|l| l.is_finite());
    curve(train.iter().filter(|t| grp.holds(&t.experiment, &t.size) && t.stage == stage).filter_map(|t| Some((t.step, finite(t)?))))
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
            for p in ppo.iter().filter(|p| grp.holds(&p.experiment, &p.size) && p.rm == rm) {
                if last.get(&p.seed).is_none_or(|q| q.step <= p.step) {
                    last.insert(p.seed, p);
                }
            }
            let values = PPO_METRICS.iter().map(|m| finite_mean(last.values().filter_map(|p| p.metric(m)))).collect();
            let last_step = last.values().map(|p| p.step).max().unwrap_or(0);
            out.push(PpoFinal { group: grp.clone(), rm, n_seeds: last.len(), last_step, values });
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
            let key = (Group::new(&r.experiment, &r.size), r.model.clone(), r.metric.clone());
            cells.entry(key).or_default().entry(r.seed).or_default().push(v);
        }
    }
    let mut out: Vec<RmSummary> = cells
        .into_iter()
        .map(|((group, model, metric), by_seed)| {
            let per_seed: BTreeMap<i64, f64> = by_seed.into_iter().map(|(s, v)| (s, mean(&v))).collect();
            let mean = mean(&per_seed.values().copied().collect::<Vec<_>>());
            RmSummary { group, model, metric, mean, per_seed }
        })
        .collect();
    out.sort_by_cached_key(|r| (r.group.clone(), rank(&MODEL_ORDER, &r.model), rank(&RM_METRIC_ORDER, &r.metric)));
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
        let Some(loss) = t.loss.filter(|l| l.is_finite()) else { continue };
        let e = cells
            .entry((Group::new(&t.experiment, &t.size), t.stage.clone()))
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
        .map(|((group, stage), by_seed)| {
            let ends: Vec<&Ends> = by_seed.values().collect();
            TrainFinal {
                group,
                stage,
                n_seeds: ends.len(),
                last_step: ends.iter().map(|e| e.1.0).max().unwrap_or(0),
                first_loss: mean(&ends.iter().map(|e| e.0.1).collect::<Vec<_>>()),
                final_loss: mean(&ends.iter().map(|e| e.1.1).collect::<Vec<_>>()),
            }
        })
        .collect();
    out.sort_by_cached_key(|t| (t.group.clone(), rank(&STAGE_ORDER, &t.stage)));
    out
}
