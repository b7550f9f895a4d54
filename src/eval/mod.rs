//! Evaluation: policies answer the held-out prompt sets with shared sampling seeds, the frozen
//! judge scores every answer, and the reward models are measured on held-out pairs.
//! Win rates, intervals and tables are derived from these rows by `report` (a pure function of
//! the CSVs, so `make figures` can redo them without training).

use crate::data::RefusalDetector;
use crate::model::Lm;
use crate::model::generate::{GenConfig, generate};
use crate::reward::{DivergenceRule, divergence_rewards, first_divergence, scalar_scores, seq2seq_teacher_forced};
use crate::text::{PAD, Template, Text};
use crate::train::PairIds;
use crate::util::SplitMix64;
use std::collections::BTreeMap;
use burn::prelude::*;

/// A held-out prompt, identified across policies and seeds by `(set, id)`.
#[derive(Clone, Debug)]
pub struct EvalPrompt {
    pub set: String,
    pub id: usize,
    pub text: String,
    pub ids: Vec<u32>,
    /// Reference answer and its length in tokens, when the spec names a reference dataset.
    pub reference: Option<(String, usize)>,
}

/// One row of `generations.csv` (without the run-level columns).
#[derive(Clone, Debug)]
pub struct GenRow {
    pub policy: String,
    pub set: String,
    pub prompt_id: usize,
    pub response: String,
    pub length_tokens: usize,
    pub truncated: bool,
    pub refused: bool,
    pub judge_score: f32,
    pub reference: Option<(String, usize)>,
}

/// What scores the eval answers: a learned judge (a scalar RM) or a world's gold reward.
pub enum Judge<'a> {
    Model(&'a Lm),
    Gold(&'a crate::world::World),
}

pub struct EvalCtx<'a> {
    pub judge: Judge<'a>,
    pub text: &'a Text,
    pub refusal: &'a RefusalDetector,
    pub max_prompt: usize,
    pub max_new_tokens: usize,
    pub batch: usize,
    pub device: &'a Device,
}

/// `policy` answers every prompt; prompt `(set, id)` is sampled with the same seed whatever the
/// policy, so policies differ only by what they are.
pub fn answer(ctx: &EvalCtx, policy_name: &str, policy: &Lm, prompts: &[EvalPrompt], seed: u64) -> Vec<GenRow> {
    let cfg = GenConfig { max_new_tokens: ctx.max_new_tokens, eos: ctx.text.tpl.eos, pad: PAD, greedy: false };
    let mut rows = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(ctx.batch.max(1)) {
        let prefixes: Vec<Vec<u32>> = chunk.iter().map(|p| ctx.text.tpl.policy_prefix(&p.ids, ctx.max_prompt)).collect();
        let seeds: Vec<u64> = chunk
            .iter()
            .map(|p| SplitMix64::derive(seed ^ set_salt(&p.set), p.id as u64).next_u64())
            .collect();
        let out = generate(policy, &prefixes, &seeds, &cfg, ctx.device);
        let responses: Vec<String> = out.tokens.iter().map(|t| ctx.text.decode(t)).collect();
        let judged: Vec<(bool, f32)> = match ctx.judge {
            Judge::Model(judge) => {
                let raw: Vec<Vec<u32>> = chunk.iter().map(|p| p.ids.clone()).collect();
                let scores = scalar_scores(judge, &ctx.text.tpl, &raw, &out.tokens, ctx.max_prompt, ctx.device);
                responses.iter().zip(scores).map(|(r, s)| (ctx.refusal.is_refusal(r), s)).collect()
            }
            // The world knows its refusals exactly, and its gold is the judge.
            Judge::Gold(w) => chunk.iter().zip(&responses).map(|(p, r)| (w.is_refusal(r), w.gold(&p.text, r).score as f32)).collect(),
        };
        for (k, (p, response)) in chunk.iter().zip(responses).enumerate() {
            let (refused, judge_score) = judged[k];
            rows.push(GenRow {
                policy: policy_name.to_string(),
                set: p.set.clone(),
                prompt_id: p.id,
                refused,
                response,
                length_tokens: out.tokens[k].iter().filter(|&&t| t != ctx.text.tpl.eos).count(),
                truncated: !out.finished[k],
                judge_score,
                reference: p.reference.clone(),
            });
        }
    }
    rows
}

fn set_salt(set: &str) -> u64 {
    set.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Pearson correlation (0 when either side is constant).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    if n < 2 {
        return 0.0;
    }
    let mx = x.iter().sum::<f64>() / n as f64;
    let my = y.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx).powi(2);
        syy += (y[i] - my).powi(2);
    }
    if sxx == 0.0 || syy == 0.0 { 0.0 } else { sxy / (sxx * syy).sqrt() }
}

/// Held-out measurements of a scalar RM (or the judge): pair accuracy (ties count ½) and the
/// correlation of its score with response length. Returns `(metric, value)` rows.
pub fn scalar_rm_metrics(model: &Lm, tpl: &Template, pairs: &[PairIds], max_prompt: usize, max_response: usize, batch: usize, device: &Device) -> Vec<(String, f64)> {
    let (mut outcomes, mut scores, mut lens) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in pairs.chunks(batch.max(1)) {
        let (prompts, resp) = interleave_pairs(tpl, chunk, max_response);
        let s = scalar_scores(model, tpl, &prompts, &resp, max_prompt, device);
        outcomes.extend((0..chunk.len()).map(|k| outcome(s[2 * k] as f64, s[2 * k + 1] as f64)));
        scores.extend(s.iter().map(|&v| v as f64));
        lens.extend(resp.iter().map(|r| r.len() as f64));
    }
    let n = pairs.len().max(1) as f64;
    let mean = scores.iter().sum::<f64>() / scores.len().max(1) as f64;
    let std = (scores.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / scores.len().max(1) as f64).sqrt();
    let mut rows = vec![
        ("pair_accuracy".into(), outcomes.iter().sum::<f64>() / n),
        ("length_score_corr".into(), pearson(&lens, &scores)),
        ("score_mean".into(), mean),
        ("score_std".into(), std),
    ];
    rows.extend(accuracy_by_kind(pairs, &outcomes));
    rows
}

/// `pair_accuracy_<kind>` per kind of source (benign / harmful, the split of the eval prompt
/// sets), from each pair's outcome; none unless every pair has a kind and there are several.
fn accuracy_by_kind(pairs: &[PairIds], outcomes: &[f64]) -> Vec<(String, f64)> {
    let mut by: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for (p, o) in pairs.iter().zip(outcomes) {
        let e = by.entry(p.kind.as_str()).or_default();
        *e = (e.0 + o, e.1 + 1);
    }
    if by.len() < 2 || by.contains_key("") {
        return Vec::new();
    }
    by.into_iter().map(|(k, (sum, n))| (format!("{BY_KIND}{k}"), sum / n as f64)).collect()
}

/// Prefix of the per-kind accuracies: `pair_accuracy_<kind>`.
pub const BY_KIND: &str = "pair_accuracy_";

/// How many of `pairs` a metric of [`scalar_rm_metrics`] or [`seq2seq_rm_metrics`] was measured
/// on: those of its kind for a per-kind accuracy, all of them otherwise.
pub fn metric_n(metric: &str, pairs: &[PairIds]) -> usize {
    match metric.strip_prefix(BY_KIND).filter(|k| pairs.iter().any(|p| p.kind == *k)) {
        Some(kind) => pairs.iter().filter(|p| p.kind == kind).count(),
        None => pairs.len(),
    }
}

/// `(metric, value, n)`: each metric with the number of `pairs` it was measured on ([`metric_n`]).
pub fn with_counts(metrics: Vec<(String, f64)>, pairs: &[PairIds]) -> impl Iterator<Item = (String, f64, usize)> + '_ {
    metrics.into_iter().map(move |(k, v)| {
        let n = metric_n(&k, pairs);
        (k, v, n)
    })
}

/// Rows `(prompt, chosen), (prompt, rejected), …` of a chunk of pairs, responses as training
/// targets (end token included when they fit).
fn interleave_pairs(tpl: &Template, pairs: &[PairIds], max_response: usize) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let prompts = pairs.iter().flat_map(|p| [p.prompt.clone(), p.prompt.clone()]).collect();
    let resp = pairs
        .iter()
        .flat_map(|p| [tpl.response_target(&p.chosen, max_response), tpl.response_target(&p.rejected, max_response)])
        .collect();
    (prompts, resp)
}

/// 1 if a > b, ½ on a tie, 0 otherwise.
pub fn outcome(a: f64, b: f64) -> f64 {
    if (a - b).abs() <= 1e-9 { 0.5 } else if a > b { 1.0 } else { 0.0 }
}

/// Held-out measurements of the seq2seq RM: pair accuracy of its summed divergence rewards, the
/// exact-copy rate on chosen responses (the RM's argmax reproduces every token), mean summed
/// reward of chosen and rejected, the share of chosen tokens the RM reproduces, and the mean
/// position of the first divergence on chosen responses; then the same copy measures with the
/// rejected response as input, the share of pairs whose first divergence on the rejected response
/// falls where it first departs from the chosen one, and the correlation of the summed reward with
/// response length. A seq2seq RM that copies rejected responses as well as chosen ones turns the
/// divergence rule into a reward for length.
pub fn seq2seq_rm_metrics(model: &Lm, tpl: &Template, pairs: &[PairIds], rule: &DivergenceRule, max_prompt: usize, max_response: usize, batch: usize, device: &Device) -> Vec<(String, f64)> {
    let (mut outcomes, mut sum_c, mut sum_r, mut ll_acc) = (Vec::new(), 0.0, 0.0, 0.0);
    // Copying on both inputs: [chosen, rejected].
    let (mut copies, mut matched, mut tokens, mut first_div) = ([0.0; 2], [0.0; 2], [0.0; 2], [0.0; 2]);
    let (mut at_difference, mut differing) = (0.0, 0.0f64);
    let (mut sums, mut lens) = (Vec::new(), Vec::new());
    for chunk in pairs.chunks(batch.max(1)) {
        let (prompts, resp) = interleave_pairs(tpl, chunk, max_response);
        let (argmax, lps) = seq2seq_teacher_forced(model, tpl, &prompts, &resp, max_prompt, max_response, device);
        for k in 0..chunk.len() {
            let (c, r) = (2 * k, 2 * k + 1);
            let rc: f64 = divergence_rewards(&resp[c], &argmax[c], rule).iter().map(|&v| v as f64).sum();
            let rr: f64 = divergence_rewards(&resp[r], &argmax[r], rule).iter().map(|&v| v as f64).sum();
            outcomes.push(outcome(rc, rr));
            sum_c += rc;
            sum_r += rr;
            for (side, i) in [c, r].into_iter().enumerate() {
                let fd = first_divergence(&resp[i], &argmax[i]);
                if fd == resp[i].len() {
                    copies[side] += 1.0;
                }
                first_div[side] += fd as f64;
                matched[side] += resp[i].iter().zip(&argmax[i]).filter(|(a, b)| a == b).count() as f64;
                tokens[side] += resp[i].len() as f64;
            }
            // Where the rejected response first departs from the chosen one: the divergence rule
            // carries the preference only if the RM diverges there.
            let differs_at = first_divergence(&resp[r], &resp[c]);
            if differs_at < resp[r].len() {
                differing += 1.0;
                if first_divergence(&resp[r], &argmax[r]) == differs_at {
                    at_difference += 1.0;
                }
            }
            sums.extend([rc, rr]);
            lens.extend([resp[c].len() as f64, resp[r].len() as f64]);
            let mean_lp = |v: &Vec<f32>| v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
            ll_acc += outcome(mean_lp(&lps[c]), mean_lp(&lps[r]));
        }
    }
    let n = pairs.len().max(1) as f64;
    let mut rows = vec![
        ("pair_accuracy".into(), outcomes.iter().sum::<f64>() / n),
        ("copy_rate".into(), copies[0] / n),
        ("token_copy_rate".into(), matched[0] / tokens[0].max(1.0)),
        ("first_divergence_chosen".into(), first_div[0] / n),
        ("mean_reward_chosen".into(), sum_c / n),
        ("mean_reward_rejected".into(), sum_r / n),
        ("pair_accuracy_mean_logprob".into(), ll_acc / n),
        ("copy_rate_rejected".into(), copies[1] / n),
        ("token_copy_rate_rejected".into(), matched[1] / tokens[1].max(1.0)),
        ("first_divergence_rejected".into(), first_div[1] / n),
        ("diverges_where_rejected_differs".into(), at_difference / differing.max(1.0)),
        ("reward_length_corr".into(), pearson(&sums, &lens)),
    ];
    rows.extend(accuracy_by_kind(pairs, &outcomes));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_and_outcome() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&[1.0, 1.0], &[1.0, 2.0]), 0.0);
        assert_eq!(outcome(1.0, 0.0), 1.0);
        assert_eq!(outcome(0.0, 1.0), 0.0);
        assert_eq!(outcome(0.3, 0.3), 0.5);
    }

    #[test]
    fn pair_accuracy_per_kind_and_its_count() {
        let pair = |kind: &str| PairIds { kind: kind.into(), ..Default::default() };
        let pairs = [pair("harmful"), pair("benign"), pair("harmful"), pair("harmful")];
        let by = accuracy_by_kind(&pairs, &[1.0, 0.0, 0.5, 0.0]);
        assert_eq!(by, [("pair_accuracy_benign".to_string(), 0.0), ("pair_accuracy_harmful".to_string(), 0.5)]);
        assert_eq!(metric_n("pair_accuracy_harmful", &pairs), 3);
        assert_eq!(metric_n("pair_accuracy_benign", &pairs), 1);
        assert_eq!(metric_n("pair_accuracy", &pairs), 4);
        assert_eq!(metric_n("pair_accuracy_mean_logprob", &pairs), 4);
        // One kind, or a pair without one (a world's data): no breakdown.
        assert!(accuracy_by_kind(&pairs[..1], &[1.0]).is_empty());
        assert!(accuracy_by_kind(&[pair("harmful"), pair("")], &[1.0, 0.0]).is_empty());
    }
}
