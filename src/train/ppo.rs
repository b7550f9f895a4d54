//! PPO on the token-level MDP, identical for both reward models except for the reward vector.
//!
//! Per step: sample responses from the current policy (no autodiff), score them with the frozen
//! reward model (one reward per response token), subtract `β · (log π - log π_ref)` per token, run
//! GAE on the host, then `ppo_epochs` passes of clipped policy + value updates over minibatches.
//! The critic is a value head on the policy's own trunk (one forward pass serves both; a choice made
//! for CPU budgets, documented in the README).
//!
//! Checkpoints: with a path prefix in [`PpoInputs::checkpoint`] and `ppo.checkpoint_every = N > 0`,
//! the run writes, after every N-th step (not after the last), the policy (`<prefix>.step<k>.bpk`,
//! with its parameter ids, which key the optimizer state), the Adam state
//! (`<prefix>.step<k>.optim.bpk`) and then, last, `<prefix>.partial.json` (k, the log so far, the
//! prompt sampler and the minibatch shuffler). Each file is written to `.tmp` and renamed, and the
//! model files carry the step, so a kill at any point leaves the JSON naming files that are
//! complete. A later call with the same prefix resumes at step k; everything else a step needs
//! (sampling seeds, the learning rate) derives from the seed and the step index, so the resumed run
//! is bit-identical to an uninterrupted one (tested). A checkpoint that cannot be read is reported
//! and ignored.

use super::losses::{gae, kl_shaped_rewards, ppo_policy_loss, ppo_value_loss, whiten};
use super::ppo_checkpoint::{Partial, partial_path, read_checkpoint, remove_step_files, write_checkpoint};
use super::{LoopCfg, Sampler, adam, lr_at, progress};
use crate::data::RefusalDetector;
use crate::model::generate::{GenConfig, generate};
use crate::model::{Lm, Packed, entropy_of, f32_tensor, i64_tensor, next_token_logprobs, pack, to_vec_f32};
use crate::reward::TokenReward;
use crate::spec::PpoSpec;
use crate::text::{PAD, Text};
use crate::util::SplitMix64;
use anyhow::{Result, anyhow, bail};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use crate::fused::log_softmax;
use std::path::PathBuf;

/// One row of `ppo_log.csv`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct PpoLog {
    pub step: usize,
    /// Mean over responses of the summed RM token rewards (before the KL term).
    pub rm_reward: f32,
    /// Mean over responses of `Σ_t (log π - log π_ref)`.
    pub kl: f32,
    pub response_length: f32,
    pub refusal_rate: f32,
    pub entropy: f32,
    pub policy_loss: f32,
    pub value_loss: f32,
    pub clip_frac: f32,
    pub truncated_rate: f32,
}

/// A rollout batch with everything the update needs, on the host, in the packed layout.
struct Rollout {
    packed: Packed,
    targets: Vec<i64>,
    mask: Vec<f32>,
    old_lp: Vec<f32>,
    old_values: Vec<f32>,
    advantages: Vec<f32>,
    returns: Vec<f32>,
}

/// Log-probs `[B, T-1]` and values `[B, T-1]` (the value before each next token), with autodiff
/// when the model has it (the update).
fn forward_policy(model: &Lm, packed: &Packed, targets: &[i64], device: &Device) -> (Tensor<2>, Tensor<2>) {
    let tm = packed.t - 1;
    let hidden = model.hidden_packed(packed, device);
    let values = model.values(hidden.clone()).narrow(1, 0, tm);
    let lp = next_token_logprobs(model.logits(hidden), i64_tensor(targets.to_vec(), [packed.b, tm], device));
    (lp, values)
}

/// The rollout side's log-probs, values and (with `entropy`) entropies, in the `[B, T-1]`
/// next-token layout of [`forward_policy`] but computed only at the positions that predict a
/// continuation token (`p-1 ..`); the prompt positions, which nothing reads, stay 0. This skips
/// the prompt positions' LM head and softmax and computes one log-softmax for both log-probs and
/// entropies; every value it returns equals `forward_policy`'s bit for bit (tested).
fn rollout_scores(model: &Lm, packed: &Packed, targets: &[i64], entropy: bool, device: &Device) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (b, tm, p) = (packed.b, packed.t - 1, packed.p);
    let c = packed.t - p;
    let (mut lp, mut values, mut ent) = (vec![0f32; b * tm], vec![0f32; b * tm], vec![0f32; if entropy { b * tm } else { 0 }]);
    if c == 0 || p == 0 {
        return (lp, values, ent);
    }
    let hidden = model.hidden_packed(packed, device).narrow(1, p - 1, c);
    let v = to_vec_f32(model.values(hidden.clone()));
    let logits = model.logits(hidden);
    let tc: Vec<i64> = (0..b).flat_map(|r| targets[r * tm + p - 1..r * tm + p - 1 + c].iter().copied()).collect();
    // On flex one pass per row gives both (the same bits as the composition below).
    let (l, e) = match crate::fused::flex::logprobs_and_entropies(&logits, &tc, entropy) {
        Some((l, e)) => (l, entropy.then_some(e)),
        None => {
            let log_p = log_softmax(logits, 2);
            let l = to_vec_f32(log_p.clone().gather(2, i64_tensor(tc, [b, c, 1], device)));
            (l, entropy.then(|| to_vec_f32(entropy_of(log_p))))
        }
    };
    for r in 0..b {
        for j in 0..c {
            let (at, k) = (r * tm + p - 1 + j, r * c + j);
            lp[at] = l[k];
            values[at] = v[k];
            if let Some(e) = &e {
                ent[at] = e[k];
            }
        }
    }
    (lp, values, ent)
}

fn select_rows<T: Clone>(v: &[T], row_len: usize, rows: &[usize]) -> Vec<T> {
    rows.iter().flat_map(|&r| v[r * row_len..(r + 1) * row_len].iter().cloned()).collect()
}

impl Packed {
    /// The given rows, keeping the batch's layout (same `p` and `t`).
    pub fn rows(&self, rows: &[usize]) -> Packed {
        Packed {
            b: rows.len(),
            t: self.t,
            p: self.p,
            tokens: select_rows(&self.tokens, self.t, rows),
            positions: select_rows(&self.positions, self.t, rows),
            attn: select_rows(&self.attn, self.t, rows),
            prefix_lens: rows.iter().map(|&r| self.prefix_lens[r]).collect(),
            cont_lens: rows.iter().map(|&r| self.cont_lens[r]).collect(),
        }
    }
}

pub struct PpoInputs<'a> {
    pub sft: &'a Lm,
    pub reward: &'a dyn TokenReward,
    /// Raw prompt ids (no template) of the policy split.
    pub prompts: &'a [Vec<u32>],
    pub cfg: &'a PpoSpec,
    pub max_prompt: usize,
    pub seed: u64,
    pub text: &'a Text,
    pub refusal: &'a RefusalDetector,
    pub device: &'a Device,
    /// Path prefix of this run's checkpoint files (see the module docs); `None`: none are read or
    /// written. They are written every `cfg.checkpoint_every` steps (0 = never); one that exists is
    /// resumed from whatever `checkpoint_every` was when it was written (it does not change results).
    pub checkpoint: Option<PathBuf>,
}

/// Seconds spent in each phase of PPO steps, summed over the steps timed (`s2rm bench`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PhaseTimes {
    /// Sampling the responses (KV-cache generation).
    pub rollout: f64,
    /// The policy's log-probs, values and entropies on the rollout batch (no autodiff).
    pub policy_forward: f64,
    /// The reference model's log-probs.
    pub reference: f64,
    /// Reward-model scoring, KL shaping, GAE and whitening.
    pub reward: f64,
    /// `ppo_epochs` passes of minibatch forward, backward and Adam steps.
    pub update: f64,
}

impl PhaseTimes {
    pub fn total(&self) -> f64 {
        self.rollout + self.policy_forward + self.reference + self.reward + self.update
    }
}

/// Runs `work` and adds its wall time to `slot`. Every phase ends by reading its results back to
/// the host, so a lazy backend has finished the phase's work when the clock stops.
fn timed<T>(slot: &mut f64, work: impl FnOnce() -> T) -> T {
    let t = std::time::Instant::now();
    let out = work();
    *slot += t.elapsed().as_secs_f64();
    out
}

/// What one PPO step needs besides the policy: frozen models and settings.
pub struct StepCtx<'a> {
    pub reference: &'a Lm,
    pub reward: &'a dyn TokenReward,
    pub gen_cfg: &'a GenConfig,
    pub cfg: &'a PpoSpec,
    /// The stage's name in error messages.
    pub label: &'a str,
    pub device: &'a Device,
}

/// One step's prompts: raw ids (what the reward model reads), the templated prefixes the policy
/// continues, and one sampling seed per row.
pub struct StepBatch<'a> {
    pub raw: &'a [Vec<u32>],
    pub prefixes: &'a [Vec<u32>],
    pub seeds: &'a [u64],
}

/// What a step leaves for its log row: the responses and sums over the batch.
pub struct StepOut {
    pub tokens: Vec<Vec<u32>>,
    pub finished: Vec<bool>,
    pub rm_sum: f64,
    pub kl_sum: f64,
    pub ent_sum: f64,
    pub n_tok: f64,
    pub pl_sum: f64,
    pub vl_sum: f64,
    pub cf_sum: f64,
    pub n_mb: f64,
}

/// One PPO step: rollout, policy and reference log-probs, rewards + KL + GAE on the host, then the
/// clipped updates. [`train_ppo`] calls it once per step; `s2rm bench` times its phases.
#[allow(clippy::too_many_arguments)]
pub fn ppo_step(
    mut policy: Lm,
    optim: &mut ModuleOptimizer,
    ctx: &StepCtx,
    batch: &StepBatch,
    step: usize,
    lr: f64,
    mb_rng: &mut SplitMix64,
    times: &mut PhaseTimes,
) -> Result<(Lm, StepOut)> {
    let (cfg, device, label) = (ctx.cfg, ctx.device, ctx.label);
    // --- rollout (no autodiff anywhere in this block) ---
    let actor = policy.valid();
    let rollout = timed(&mut times.rollout, || generate(&actor, batch.prefixes, batch.seeds, ctx.gen_cfg, device));
    let packed = pack(batch.prefixes, &rollout.tokens, PAD);
    let (targets, mask) = packed.continuation_targets();
    let tm = packed.t - 1;
    let (old_lp, old_values, entropy) = timed(&mut times.policy_forward, || rollout_scores(&actor, &packed, &targets, true, device));
    let ref_lp = timed(&mut times.reference, || rollout_scores(ctx.reference, &packed, &targets, false, device).0);
    let reward_start = std::time::Instant::now();
    let rm = ctx.reward.token_rewards(batch.raw, &rollout.tokens);
    if let Some((row, v)) = rm.iter().enumerate().find_map(|(r, v)| v.iter().find(|x| !x.is_finite()).map(|x| (r, *x))) {
        bail!("stage `{label}`: reward is {v} at step {step} (response {row} of the batch); the {} reward model gives non-finite rewards", ctx.reward.kind());
    }

    // --- rewards, KL and GAE on the host ---
    let b = packed.b;
    let mut advantages = vec![0f32; b * tm];
    let mut returns = vec![0f32; b * tm];
    let mut all_adv = Vec::new();
    let (mut rm_sum, mut kl_sum, mut ent_sum, mut n_tok) = (0f64, 0f64, 0f64, 0f64);
    for row in 0..b {
        let n = rollout.tokens[row].len();
        let at = |j: usize| row * tm + packed.p + j - 1;
        let lp: Vec<f32> = (0..n).map(|j| old_lp[at(j)]).collect();
        let rlp: Vec<f32> = (0..n).map(|j| ref_lp[at(j)]).collect();
        let vals: Vec<f32> = (0..n).map(|j| old_values[at(j)]).collect();
        let mut shaped = kl_shaped_rewards(&rm[row], &lp, &rlp, cfg.kl_coef);
        if !rollout.finished[row] {
            if let Some(last) = shaped.last_mut() {
                *last += cfg.truncation_penalty;
            }
        }
        let (adv, ret) = gae(&shaped, &vals, cfg.gamma, cfg.lambda);
        for j in 0..n {
            advantages[at(j)] = adv[j];
            returns[at(j)] = ret[j];
            ent_sum += entropy[at(j)] as f64;
        }
        all_adv.extend_from_slice(&adv);
        rm_sum += rm[row].iter().map(|&r| r as f64).sum::<f64>();
        kl_sum += lp.iter().zip(&rlp).map(|(a, b)| (a - b) as f64).sum::<f64>();
        n_tok += n as f64;
    }
    if let Some(a) = all_adv.iter().find(|a| !a.is_finite()) {
        bail!("stage `{label}`: advantage is {a} at step {step} (the value head or the policy's log-probs diverged); lower ppo.lr ({:e})", cfg.lr);
    }
    if cfg.whiten_advantages {
        whiten(&mut all_adv);
        let mut k = 0;
        for row in 0..b {
            for j in 0..rollout.tokens[row].len() {
                advantages[row * tm + packed.p + j - 1] = all_adv[k];
                k += 1;
            }
        }
    }
    times.reward += reward_start.elapsed().as_secs_f64();
    let ro = Rollout { packed, targets, mask, old_lp, old_values, advantages, returns };

    // --- PPO update ---
    let update_start = std::time::Instant::now();
    let (mut pl_sum, mut vl_sum, mut cf_sum, mut n_mb) = (0f64, 0f64, 0f64, 0f64);
    for _epoch in 0..cfg.ppo_epochs {
        let mut order: Vec<usize> = (0..b).collect();
        mb_rng.shuffle(&mut order);
        for mb in order.chunks(cfg.minibatch_size) {
            let sub = ro.packed.rows(mb);
            let sub_targets = select_rows(&ro.targets, tm, mb);
            let t = |v: &[f32]| f32_tensor(select_rows(v, tm, mb), [mb.len(), tm], device);
            let (new_lp, new_v) = forward_policy(&policy, &sub, &sub_targets, device);
            let mask = t(&ro.mask);
            let (pg, clip_frac) = ppo_policy_loss(new_lp, t(&ro.old_lp), t(&ro.advantages), mask.clone(), cfg.clip_ratio);
            let vl = ppo_value_loss(new_v, t(&ro.old_values), t(&ro.returns), mask, cfg.value_clip);
            let loss = pg.clone() + vl.clone().mul_scalar(cfg.vf_coef);
            // One host read for the four numbers (each read waits for a GPU to finish).
            let read = to_vec_f32(Tensor::cat(vec![loss.clone(), pg, vl, clip_frac].into_iter().map(Tensor::detach).collect(), 0));
            let lv = read[0];
            if !lv.is_finite() {
                bail!("stage `{label}`: loss is {lv} at step {step}; lower ppo.lr ({:e})", cfg.lr);
            }
            let grads = GradientsParams::from_grads(loss.backward(), &policy);
            policy = optim.step(lr, policy, grads);
            pl_sum += read[1] as f64;
            vl_sum += read[2] as f64;
            cf_sum += read[3] as f64;
            n_mb += 1.0;
        }
    }
    times.update += update_start.elapsed().as_secs_f64();
    let out = StepOut {
        tokens: rollout.tokens,
        finished: rollout.finished,
        rm_sum,
        kl_sum,
        ent_sum,
        n_tok,
        pl_sum,
        vl_sum,
        cf_sum,
        n_mb,
    };
    Ok((policy, out))
}

/// Runs PPO from the SFT policy; returns the trained policy (inference copy) and the step log.
pub fn train_ppo(inp: PpoInputs) -> Result<(Lm, Vec<PpoLog>)> {
    let cfg = inp.cfg;
    let device = inp.device;
    if inp.prompts.is_empty() {
        bail!("PPO: the policy split has no prompts");
    }
    let reference = inp.sft.valid();
    let mut policy = inp.sft.valid().train();
    let mut optim = adam(cfg.grad_clip);
    let loop_cfg = LoopCfg { steps: cfg.steps, lr: cfg.lr, warmup_steps: 0, grad_clip: cfg.grad_clip, cosine: false };
    let mut prompt_sampler = Sampler::new(inp.prompts.len(), inp.seed ^ 0x5050_5050);
    let mut mb_rng = SplitMix64::derive(inp.seed, 0x4d42);
    let gen_cfg = GenConfig { max_new_tokens: cfg.max_new_tokens, eos: inp.text.tpl.eos, pad: PAD, greedy: false };
    let label = format!("ppo-{}", inp.reward.kind());
    // The runner's name of this stage, for messages.
    let stage = format!("ppo_{}", inp.reward.kind());
    let mut log = Vec::with_capacity(cfg.steps);
    let mut start = 0;
    // Steps of the checkpoint whose model files are on disk (deleted once a newer one is complete).
    let mut on_disk: Option<usize> = None;
    if let Some(prefix) = &inp.checkpoint {
        // A damaged file must not stop the run; burn's readers may panic on some malformations.
        // The template is the fresh policy: same structure and device.
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            read_checkpoint(prefix, &policy, cfg.grad_clip, inp.prompts.len(), cfg.steps)
        }))
        .unwrap_or_else(|_| Err(anyhow!("reading it panicked")));
        match read {
            Ok(None) => {}
            Ok(Some((p, o, partial))) => {
                super::say(&format!("stage {stage} (seed {}): resuming from the checkpoint at step {} of {}", inp.seed, partial.step, cfg.steps));
                (policy, optim) = (p, o);
                (prompt_sampler, mb_rng) = (partial.prompt_sampler, partial.mb_rng);
                (start, log) = (partial.step, partial.log);
                on_disk = Some(start);
            }
            Err(e) => super::say(&format!(
                "stage {stage} (seed {}): the checkpoint {} is ignored ({e:#}); starting from step 0",
                inp.seed,
                partial_path(prefix).display()
            )),
        }
    }
    let pb = progress(cfg.steps as u64, &label);
    pb.set_position(start as u64);
    pb.reset_eta();

    let ctx = StepCtx { reference: &reference, reward: inp.reward, gen_cfg: &gen_cfg, cfg, label: &label, device };
    for step in start..cfg.steps {
        // --- prompts and sampling seeds: functions of the seed and the step only ---
        let idx = prompt_sampler.next_batch(cfg.batch_size);
        let raw: Vec<Vec<u32>> = idx.iter().map(|&i| inp.prompts[i].clone()).collect();
        let prefixes: Vec<Vec<u32>> = raw.iter().map(|p| inp.text.tpl.policy_prefix(p, inp.max_prompt)).collect();
        let seeds: Vec<u64> = (0..raw.len())
            .map(|i| SplitMix64::derive(inp.seed, (step * cfg.batch_size + i) as u64).next_u64())
            .collect();
        let batch = StepBatch { raw: &raw, prefixes: &prefixes, seeds: &seeds };
        let out = match ppo_step(policy, &mut optim, &ctx, &batch, step, lr_at(&loop_cfg, step), &mut mb_rng, &mut PhaseTimes::default()) {
            Ok((p, out)) => {
                policy = p;
                out
            }
            Err(e) => {
                pb.abandon();
                return Err(e);
            }
        };
        let b = out.tokens.len();
        let texts: Vec<String> = out.tokens.iter().map(|r| inp.text.decode(r)).collect();
        let refusals = texts.iter().filter(|s| inp.refusal.is_refusal(s)).count();
        let entry = PpoLog {
            step,
            rm_reward: (out.rm_sum / b as f64) as f32,
            kl: (out.kl_sum / b as f64) as f32,
            response_length: (out.n_tok / b as f64) as f32,
            refusal_rate: refusals as f32 / b as f32,
            entropy: (out.ent_sum / out.n_tok.max(1.0)) as f32,
            policy_loss: (out.pl_sum / out.n_mb) as f32,
            value_loss: (out.vl_sum / out.n_mb) as f32,
            clip_frac: (out.cf_sum / out.n_mb) as f32,
            truncated_rate: out.finished.iter().filter(|&&f| !f).count() as f32 / b as f32,
        };
        pb.set_message(format!("R {:.3} KL {:.3} len {:.1}", entry.rm_reward, entry.kl, entry.response_length));
        pb.inc(1);
        log.push(entry);

        let done = step + 1;
        let every = cfg.checkpoint_every;
        if let Some(prefix) = &inp.checkpoint
            && every > 0
            && done % every == 0
            && done < cfg.steps
        {
            let partial = Partial { step: done, log: log.clone(), prompt_sampler: prompt_sampler.clone(), mb_rng: mb_rng.clone() };
            match write_checkpoint(prefix, &policy, &optim, &partial) {
                Ok(()) => {
                    if let Some(old) = on_disk.filter(|&o| o != done) {
                        remove_step_files(prefix, old);
                    }
                    on_disk = Some(done);
                    pb.suspend(|| eprintln!("stage {stage} (seed {}): checkpoint at step {done} of {} written", inp.seed, cfg.steps));
                }
                // A checkpoint is a convenience: the run goes on without it.
                Err(e) => pb.suspend(|| eprintln!("stage {stage} (seed {}): the checkpoint at step {done} could not be written ({e:#}); training goes on", inp.seed)),
            }
        }
    }
    pb.finish_and_clear();
    Ok((policy.valid(), log))
}

#[cfg(test)]
#[path = "ppo_tests.rs"]
mod tests;
