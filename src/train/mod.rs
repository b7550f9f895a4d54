//! Training loops: the shared optimiser loop, and the supervised stages (pretraining, SFT, scalar
//! RM / judge, seq2seq RM). PPO lives in [`ppo`].

pub mod losses;
pub mod ppo;
mod ppo_checkpoint;

use crate::model::{Lm, f32_tensor, i64_tensor, next_token_logprobs, pack, to_vec_f32};
use crate::text::{BOS, PAD, Template};
use crate::util::SplitMix64;
use anyhow::{Result, bail};
use burn::optim::{Adam, AdamConfig, AdamState, GradientsParams, ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::prelude::*;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use losses::{bradley_terry_loss, sequence_nll};

/// One row of `train_log.csv`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StepLog {
    pub stage: String,
    pub step: usize,
    pub loss: f32,
}

/// Optimiser settings shared by every supervised stage.
#[derive(Clone, Debug)]
pub struct LoopCfg {
    pub steps: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub grad_clip: f32,
    /// After the warm-up, decay the rate along a cosine to a tenth of `lr` at the last step
    /// (otherwise it stays constant).
    pub cosine: bool,
}

/// Every progress bar of the process, so that two stages running at the same time draw one bar
/// each instead of overwriting each other's line.
fn bars() -> &'static MultiProgress {
    static BARS: std::sync::OnceLock<MultiProgress> = std::sync::OnceLock::new();
    BARS.get_or_init(MultiProgress::new)
}

/// Prints a line to stderr above the progress bars (not through them).
pub fn say(line: &str) {
    bars().suspend(|| eprintln!("{line}"));
}

pub fn progress(len: u64, label: &str) -> ProgressBar {
    let pb = bars().add(ProgressBar::new(len));
    pb.set_style(
        ProgressStyle::with_template("{prefix:>22} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_string());
    pb
}

/// Linear warm-up, then constant (or, with `cosine`, a cosine decay to `lr / 10` at the last step).
pub fn lr_at(cfg: &LoopCfg, step: usize) -> f64 {
    if cfg.warmup_steps > 0 && step < cfg.warmup_steps {
        return cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64;
    }
    if !cfg.cosine {
        return cfg.lr;
    }
    let span = cfg.steps.saturating_sub(cfg.warmup_steps + 1).max(1) as f64;
    let t = ((step - cfg.warmup_steps) as f64 / span).min(1.0);
    cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

#[cfg(test)]
#[test]
fn lr_warms_up_then_stays_or_decays_along_a_cosine() {
    // 12 steps: a warm-up step, then steps 1..=11 decay over t = 0, 0.1, ..., 1.
    let c = LoopCfg { steps: 12, lr: 1.0, warmup_steps: 1, grad_clip: 1.0, cosine: false };
    assert_eq!((lr_at(&c, 0), lr_at(&c, 5), lr_at(&c, 11)), (1.0, 1.0, 1.0));
    let c = LoopCfg { cosine: true, ..c };
    assert_eq!(lr_at(&c, 0), 1.0, "warm-up step");
    assert!((lr_at(&c, 1) - 1.0).abs() < 1e-12, "decay starts at lr");
    assert!((lr_at(&c, 6) - 0.55).abs() < 1e-12, "halfway: 0.1 + 0.9 / 2");
    assert!((lr_at(&c, 11) - 0.1).abs() < 1e-12, "last step: lr / 10");
}

/// Adam with per-parameter gradient-norm clipping (burn's `GradientClipping::Norm`): what
/// `AdamConfig::init` builds, with Adam wrapped in [`HostLoadedAdam`].
pub fn adam(grad_clip: f32) -> ModuleOptimizer {
    let adam = AdamConfig::new().with_epsilon(1e-8).build();
    ModuleOptimizer::from(HostLoadedAdam(adam)).with_grad_clipping(GradientClippingConfig::Norm(grad_clip).init())
}

/// burn's Adam, step for step, except where a state read back from a file
/// ([`ModuleOptimizer::load`], PPO checkpoints) is built: burn builds it on `Device::default()`,
/// which is wgpu whenever wgpu is compiled in, so with no adapter the load panics, and on a GPU
/// host a CPU run's state would pass through the GPU. Here it is built on the CPU (`flex`); the
/// next step moves each state to its parameter's device, as burn does for every loaded state.
#[derive(Clone)]
pub struct HostLoadedAdam(Adam);

/// [`AdamState`], rebuilt on the CPU by [`RecordState::state_unflatten`]; the same record entries.
#[derive(Clone)]
pub struct HostLoadedState<const D: usize>(AdamState<D>);

impl<const D: usize> RecordState for HostLoadedState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        self.0.state_flatten(prefix, out)
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, _device: &Device) -> Option<Self> {
        AdamState::state_unflatten(prefix, src, &Device::flex()).map(Self)
    }
}

impl Optimizer for HostLoadedAdam {
    type State<const D: usize> = HostLoadedState<D>;

    fn step<const D: usize>(&self, lr: f64, tensor: Tensor<D>, grad: Tensor<D>, state: Option<Self::State<D>>) -> (Tensor<D>, Option<Self::State<D>>) {
        let (tensor, state) = self.0.step(lr, tensor, grad, state.map(|s| s.0));
        (tensor, state.map(HostLoadedState))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        HostLoadedState(Adam::to_device(state.0, device))
    }
}

/// The custom loop every supervised stage uses: `loss_fn(model, step)` → backward → Adam step.
/// A non-finite loss stops the stage with an error naming it and the step.
pub fn run_loop(
    mut model: Lm,
    stage: &str,
    cfg: &LoopCfg,
    mut loss_fn: impl FnMut(&Lm, usize) -> Tensor<1>,
) -> Result<(Lm, Vec<StepLog>)> {
    let mut optim = adam(cfg.grad_clip);
    let pb = progress(cfg.steps as u64, stage);
    let mut log = Vec::with_capacity(cfg.steps);
    for step in 0..cfg.steps {
        let loss = loss_fn(&model, step);
        let value = to_vec_f32(loss.clone())[0];
        if !value.is_finite() {
            pb.abandon();
            bail!("stage `{stage}`: loss is {value} at step {step}; lower the learning rate ({:e}) or check the data", cfg.lr);
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr_at(cfg, step), model, grads);
        log.push(StepLog { stage: stage.to_string(), step, loss: value });
        pb.set_message(format!("loss {value:.4}"));
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok((model, log))
}

/// Deterministic epoch-wise shuffled index batches. Serialisable, so that a PPO checkpoint resumes
/// the prompt stream where it stopped.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sampler {
    order: Vec<usize>,
    pos: usize,
    rng: SplitMix64,
}

impl Sampler {
    pub fn new(n: usize, seed: u64) -> Self {
        assert!(n > 0, "Sampler over an empty set");
        let mut s = Self { order: (0..n).collect(), pos: 0, rng: SplitMix64::new(seed) };
        s.rng.shuffle(&mut s.order);
        s
    }

    /// Whether this state (e.g. one read back from a checkpoint) is a sampler over `n` items: its
    /// order a permutation of `0..n` and its position inside it. `next_batch` cannot panic then.
    pub fn fits(&self, n: usize) -> bool {
        let mut seen = vec![false; n];
        self.order.len() == n
            && self.pos <= n
            && self.order.iter().all(|&i| i < n && !std::mem::replace(&mut seen[i], true))
    }

    pub fn next_batch(&mut self, bs: usize) -> Vec<usize> {
        (0..bs)
            .map(|_| {
                if self.pos == self.order.len() {
                    self.pos = 0;
                    self.rng.shuffle(&mut self.order);
                }
                self.pos += 1;
                self.order[self.pos - 1]
            })
            .collect()
    }
}

/// Sequence-MLE loss of continuations given prefixes (targets = continuation tokens only).
pub fn continuation_nll(model: &Lm, prefixes: &[Vec<u32>], conts: &[Vec<u32>], device: &Device) -> Tensor<1> {
    let packed = pack(prefixes, conts, PAD);
    let (targets, mask) = packed.continuation_targets();
    let tm = packed.t - 1;
    let hidden = model.hidden_packed(&packed, device);
    let lp = next_token_logprobs(model.logits(hidden), i64_tensor(targets, [packed.b, tm], device));
    sequence_nll(lp, f32_tensor(mask, [packed.b, tm], device))
}

/// Token-id view of a preference pair.
#[derive(Clone, Debug, Default)]
pub struct PairIds {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
    /// The kind of the pair's source (`benign` / `harmful`; empty where unknown): held-out pair
    /// accuracies are reported per kind too.
    pub kind: String,
}

/// Pretraining on plain text: each document chunk is `<bos> tokens`, loss on every token.
pub fn pretrain(model: Lm, docs: &[Vec<u32>], chunk: usize, bs: usize, cfg: &LoopCfg, seed: u64, device: &Device) -> Result<(Lm, Vec<StepLog>)> {
    let chunks: Vec<Vec<u32>> = docs
        .iter()
        .flat_map(|d| d.chunks(chunk).map(<[u32]>::to_vec))
        .filter(|c| c.len() >= 2)
        .collect();
    if chunks.is_empty() {
        bail!("pretraining corpus is empty");
    }
    let mut sampler = Sampler::new(chunks.len(), seed);
    run_loop(model, "pretrain", cfg, |m, _| {
        let idx = sampler.next_batch(bs);
        let prefixes = vec![vec![BOS]; idx.len()];
        let conts: Vec<Vec<u32>> = idx.iter().map(|&i| chunks[i].clone()).collect();
        continuation_nll(m, &prefixes, &conts, device)
    })
}

/// SFT on (prompt, response): loss on response tokens only.
pub fn sft(model: Lm, tpl: &Template, rows: &[(Vec<u32>, Vec<u32>)], max_prompt: usize, max_response: usize, bs: usize, cfg: &LoopCfg, seed: u64, device: &Device) -> Result<(Lm, Vec<StepLog>)> {
    if rows.is_empty() {
        bail!("SFT data is empty");
    }
    let mut sampler = Sampler::new(rows.len(), seed);
    run_loop(model, "sft", cfg, |m, _| {
        let idx = sampler.next_batch(bs);
        let prefixes: Vec<Vec<u32>> = idx.iter().map(|&i| tpl.policy_prefix(&rows[i].0, max_prompt)).collect();
        let conts: Vec<Vec<u32>> = idx.iter().map(|&i| tpl.response_target(&rows[i].1, max_response)).collect();
        continuation_nll(m, &prefixes, &conts, device)
    })
}

/// Bradley–Terry training of a scalar RM (also the judge). Chosen and rejected of a pair share
/// one packed batch, so both scores come from one forward pass.
#[allow(clippy::too_many_arguments)]
pub fn scalar_rm(model: Lm, tpl: &Template, stage: &str, pairs: &[PairIds], max_prompt: usize, max_response: usize, bs: usize, l2: f64, cfg: &LoopCfg, seed: u64, device: &Device, watch: Option<Watch>) -> Result<(Lm, Vec<StepLog>)> {
    if pairs.is_empty() {
        bail!("stage `{stage}`: no preference pairs");
    }
    let mut sampler = Sampler::new(pairs.len(), seed);
    run_loop(model, stage, cfg, |m, step| {
        if let Some(w) = watch.as_ref().filter(|w| w.every > 0 && step > 0 && step % w.every == 0) {
            let metrics = crate::eval::scalar_rm_metrics(&m.valid(), tpl, w.pairs, max_prompt, max_response, 32, w.device);
            let acc = metrics.iter().find(|(k, _)| k == "pair_accuracy").map_or(f64::NAN, |(_, v)| *v);
            say(&format!("stage {stage}: step {step}, held-out pair accuracy {acc:.3} on {} pairs", w.pairs.len()));
        }
        let idx = sampler.next_batch(bs);
        let mut prefixes: Vec<Vec<u32>> = Vec::with_capacity(2 * idx.len());
        let mut conts = Vec::with_capacity(2 * idx.len());
        for pick in [true, false] {
            for &i in &idx {
                let p = &pairs[i];
                prefixes.push(tpl.policy_prefix(&p.prompt, max_prompt));
                conts.push(tpl.response_target(if pick { &p.chosen } else { &p.rejected }, max_response));
            }
        }
        let scores = m.scores_at_last(&prefixes, &conts, device);
        let n = idx.len();
        bradley_terry_loss(scores.clone().narrow(0, 0, n), scores.narrow(0, n, n), l2)
    })
}

/// How the seq2seq RM's batches mix the correction and identity mappings
/// (`seq2seq_rm.mixing`, `identity_warmup_steps`, `correction_fraction`).
pub struct Mixing<'a> {
    pub kind: &'a str,
    pub identity_warmup: usize,
    pub correction_fraction: f64,
}

impl Mixing<'_> {
    /// Correction examples in a batch of `bs` at `step`: half (1:1), none (identity only, or
    /// during the warm-up), all of it (correction only; the ablations of the two mappings), or
    /// the rounded fraction; the rest of the batch are identity examples.
    pub fn corrections(&self, step: usize, bs: usize) -> usize {
        match self.kind {
            "identity_only" => 0,
            "correction_only" => bs,
            "identity_warmup" if step < self.identity_warmup => 0,
            "fraction" => ((bs as f64 * self.correction_fraction).round() as usize).min(bs),
            _ => bs / 2,
        }
    }
}

/// A scalar RM's held-out pair accuracy, said on the console every `every` steps while it trains
/// (`judge.curve_every`): whether a long judge run is learning, before it ends. It changes nothing
/// the RM computes.
pub struct Watch<'a> {
    pub every: usize,
    pub pairs: &'a [PairIds],
    pub device: &'a Device,
}

/// Where and how often a seq2seq RM is measured while it trains: `every` steps (and after the
/// last) on `pairs`, scored on the plain device `device`.
pub struct Curve<'a> {
    pub every: usize,
    pub pairs: &'a [PairIds],
    pub rule: &'a crate::reward::DivergenceRule,
    pub device: &'a Device,
}

/// What a curve holds: how much the RM copies chosen and rejected inputs and where it departs.
/// Not the divergence-rule rewards: the rule is no part of the RM's stage key (an ablation of the
/// rule reuses the trained RM and its curve); `rm_eval.csv` has them for the rule in use.
pub const CURVE_METRICS: [&str; 7] = [
    "token_copy_rate",
    "token_copy_rate_rejected",
    "copy_rate",
    "copy_rate_rejected",
    "first_divergence_chosen",
    "first_divergence_rejected",
    "diverges_where_rejected_differs",
];

/// One point of a curve: `(step, metric, value)`, `step` = optimiser steps taken.
pub type CurvePoint = (usize, String, f64);

/// Seq2seq RM: sequence MLE on the correction mapping (prompt + rejected → chosen) and the
/// identity mapping (prompt + chosen → chosen), mixed as `mixing` says (`one_to_one`,
/// `identity_warmup`, one mapping alone: `identity_only`, `correction_only`, or `fraction`).
/// With a `curve`, also its copy-versus-diverge metrics as training goes.
#[allow(clippy::too_many_arguments)]
pub fn seq2seq_rm(model: Lm, tpl: &Template, pairs: &[PairIds], mixing: &Mixing, max_prompt: usize, max_response: usize, bs: usize, cfg: &LoopCfg, seed: u64, device: &Device, curve: Option<Curve>) -> Result<(Lm, Vec<StepLog>, Vec<CurvePoint>)> {
    if pairs.is_empty() {
        bail!("stage `seq2seq_rm`: no preference pairs");
    }
    let mut sampler = Sampler::new(pairs.len(), seed);
    let mut points = Vec::new();
    let measure = |m: &Lm, step: usize, points: &mut Vec<CurvePoint>| {
        if let Some(c) = &curve {
            let metrics = crate::eval::seq2seq_rm_metrics(&m.valid(), tpl, c.pairs, c.rule, max_prompt, max_response, 32, c.device);
            points.extend(metrics.into_iter().filter(|(k, _)| CURVE_METRICS.contains(&k.as_str())).map(|(k, v)| (step, k, v)));
        }
    };
    let every = curve.as_ref().map_or(0, |c| c.every);
    let (model, log) = run_loop(model, "seq2seq_rm", cfg, |m, step| {
        if every > 0 && step % every == 0 {
            measure(m, step, &mut points);
        }
        let n_corr = mixing.corrections(step, bs);
        let idx = sampler.next_batch(bs);
        let mut prefixes = Vec::with_capacity(bs);
        let mut conts = Vec::with_capacity(bs);
        for (k, &i) in idx.iter().enumerate() {
            let p = &pairs[i];
            let input = if k < n_corr { &p.rejected } else { &p.chosen };
            let input = tpl.response_target(input, max_response);
            prefixes.push(tpl.seq2seq_prefix(&p.prompt, &input, max_prompt, max_response));
            conts.push(tpl.response_target(&p.chosen, max_response));
        }
        continuation_nll(m, &prefixes, &conts, device)
    })?;
    measure(&model, cfg.steps, &mut points);
    Ok((model, log, points))
}

#[cfg(test)]
#[test]
fn mixing_counts_correction_examples_per_batch() {
    let m = |kind, fraction| Mixing { kind, identity_warmup: 3, correction_fraction: fraction };
    assert_eq!(m("one_to_one", 0.5).corrections(0, 8), 4);
    assert_eq!(m("identity_only", 0.5).corrections(5, 8), 0);
    assert_eq!(m("correction_only", 0.5).corrections(5, 8), 8);
    assert_eq!((m("identity_warmup", 0.5).corrections(2, 8), m("identity_warmup", 0.5).corrections(3, 8)), (0, 4));
    // a quarter of 8 is 2; 0.3 of 8 rounds to 2; the ends are the single mappings
    assert_eq!(m("fraction", 0.25).corrections(0, 8), 2);
    assert_eq!(m("fraction", 0.3).corrections(0, 8), 2);
    assert_eq!((m("fraction", 0.0).corrections(0, 8), m("fraction", 1.0).corrections(0, 8)), (0, 8));
}

#[cfg(test)]
#[test]
fn the_seq2seq_curve_is_measured_every_n_steps_and_after_the_last() {
    let ad = Device::flex().autodiff();
    let cfg = crate::model::LmConfig { preset: "t".into(), vocab_size: 64, d_model: 16, n_layers: 1, n_heads: 2, d_ff: 32, max_seq_len: 64, ..Default::default() };
    let pair = |k: u32| PairIds { prompt: vec![10 + k, 11], chosen: vec![20, 21 + k], rejected: vec![30 + k], ..Default::default() };
    let pairs: Vec<PairIds> = (0..6).map(pair).collect();
    let rule = crate::reward::DivergenceRule { r_pos: 0.1, r_neg: -0.1, r_match_after: 0.0 };
    let curve = Curve { every: 2, pairs: &pairs[..3], rule: &rule, device: &Device::flex() };
    let lc = LoopCfg { steps: 5, lr: 1e-3, warmup_steps: 0, grad_clip: 1.0, cosine: false };
    let tpl = Template::builtin();
    let (_, log, points) = seq2seq_rm(cfg.init_seeded(&ad, 1), &tpl, &pairs, &Mixing { kind: "one_to_one", identity_warmup: 0, correction_fraction: 0.5 }, 8, 8, 4, &lc, 3, &ad, Some(curve)).unwrap();
    assert_eq!(log.len(), 5);
    let steps: std::collections::BTreeSet<usize> = points.iter().map(|p| p.0).collect();
    assert_eq!(steps.into_iter().collect::<Vec<_>>(), [0, 2, 4, 5]);
    assert_eq!(points.len(), 4 * CURVE_METRICS.len());
    assert!(points.iter().all(|(_, k, v)| CURVE_METRICS.contains(&k.as_str()) && v.is_finite()), "{points:?}");
}
