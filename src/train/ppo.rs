//! PPO on the token-level MDP, identical for both reward models except for the reward vector.
//!
//! Per step: sample responses from the current policy (no autodiff), score them with the frozen
//! reward model (one reward per response token), subtract `β · (log π - log π_ref)` per token, run
//! GAE on the host, then `ppo_epochs` passes of clipped policy + value updates over minibatches.
//! The critic is a value head on the policy's own trunk (one forward pass serves both; a choice made
//! for CPU budgets, documented in the README).

use super::losses::{gae, kl_shaped_rewards, ppo_policy_loss, ppo_value_loss, whiten};
use super::{LoopCfg, Sampler, adam, lr_at, progress};
use crate::data::RefusalDetector;
use crate::model::generate::{GenConfig, generate};
use crate::model::{Lm, Packed, f32_tensor, i64_tensor, next_token_entropy, next_token_logprobs, pack, to_vec_f32};
use crate::reward::TokenReward;
use crate::spec::PpoSpec;
use crate::text::{PAD, Text};
use crate::util::SplitMix64;
use anyhow::{Result, bail};
use burn::optim::GradientsParams;
use burn::prelude::*;

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

/// Log-probs `[B, T-1]`, values `[B, T-1]` (the value before each next token) and entropies.
fn forward_policy(model: &Lm, packed: &Packed, targets: &[i64], device: &Device) -> (Tensor<2>, Tensor<2>, Tensor<3>) {
    let tm = packed.t - 1;
    let hidden = model.hidden_packed(packed, device);
    let values = model.values(hidden.clone()).narrow(1, 0, tm);
    let logits = model.logits(hidden);
    let lp = next_token_logprobs(logits.clone(), i64_tensor(targets.to_vec(), [packed.b, tm], device));
    (lp, values, logits)
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
    let loop_cfg = LoopCfg { steps: cfg.steps, lr: cfg.lr, warmup_steps: 0, grad_clip: cfg.grad_clip };
    let mut prompt_sampler = Sampler::new(inp.prompts.len(), inp.seed ^ 0x5050_5050);
    let mut mb_rng = SplitMix64::derive(inp.seed, 0x4d42);
    let gen_cfg = GenConfig { max_new_tokens: cfg.max_new_tokens, eos: inp.text.tpl.eos, pad: PAD, greedy: false };
    let label = format!("ppo-{}", inp.reward.kind());
    let pb = progress(cfg.steps as u64, &label);
    let mut log = Vec::with_capacity(cfg.steps);

    for step in 0..cfg.steps {
        // --- rollout (no autodiff anywhere in this block) ---
        let idx = prompt_sampler.next_batch(cfg.batch_size);
        let raw: Vec<Vec<u32>> = idx.iter().map(|&i| inp.prompts[i].clone()).collect();
        let prefixes: Vec<Vec<u32>> = raw.iter().map(|p| inp.text.tpl.policy_prefix(p, inp.max_prompt)).collect();
        let seeds: Vec<u64> = (0..raw.len())
            .map(|i| SplitMix64::derive(inp.seed, (step * cfg.batch_size + i) as u64).next_u64())
            .collect();
        let actor = policy.valid();
        let rollout = generate(&actor, &prefixes, &seeds, &gen_cfg, device);
        let packed = pack(&prefixes, &rollout.tokens, PAD);
        let (targets, mask) = packed.continuation_targets();
        let tm = packed.t - 1;
        let (old_lp_t, old_v_t, logits) = forward_policy(&actor, &packed, &targets, device);
        let entropy = to_vec_f32(next_token_entropy(logits));
        let old_lp = to_vec_f32(old_lp_t);
        let old_values = to_vec_f32(old_v_t);
        let (ref_lp_t, _, _) = forward_policy(&reference, &packed, &targets, device);
        let ref_lp = to_vec_f32(ref_lp_t);
        let rm = inp.reward.token_rewards(&raw, &rollout.tokens);
        if let Some((row, v)) = rm.iter().enumerate().find_map(|(r, v)| v.iter().find(|x| !x.is_finite()).map(|x| (r, *x))) {
            pb.abandon();
            bail!("stage `{label}`: reward is {v} at step {step} (response {row} of the batch); the {} reward model gives non-finite rewards", inp.reward.kind());
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
            pb.abandon();
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
        let ro = Rollout { packed, targets, mask, old_lp, old_values, advantages, returns };

        // --- PPO update ---
        let (mut pl_sum, mut vl_sum, mut cf_sum, mut n_mb) = (0f64, 0f64, 0f64, 0f64);
        for _epoch in 0..cfg.ppo_epochs {
            let mut order: Vec<usize> = (0..b).collect();
            mb_rng.shuffle(&mut order);
            for mb in order.chunks(cfg.minibatch_size) {
                let sub = ro.packed.rows(mb);
                let sub_targets = select_rows(&ro.targets, tm, mb);
                let t = |v: &[f32]| f32_tensor(select_rows(v, tm, mb), [mb.len(), tm], device);
                let (new_lp, new_v, _) = forward_policy(&policy, &sub, &sub_targets, device);
                let mask = t(&ro.mask);
                let (pg, clip_frac) = ppo_policy_loss(new_lp, t(&ro.old_lp), t(&ro.advantages), mask.clone(), cfg.clip_ratio);
                let vl = ppo_value_loss(new_v, t(&ro.old_values), t(&ro.returns), mask, cfg.value_clip);
                let loss = pg.clone() + vl.clone().mul_scalar(cfg.vf_coef);
                let lv = to_vec_f32(loss.clone())[0];
                if !lv.is_finite() {
                    pb.abandon();
                    bail!("stage `{label}`: loss is {lv} at step {step}; lower ppo.lr ({:e})", cfg.lr);
                }
                let grads = GradientsParams::from_grads(loss.backward(), &policy);
                policy = optim.step(lr_at(&loop_cfg, step), policy, grads);
                pl_sum += to_vec_f32(pg)[0] as f64;
                vl_sum += to_vec_f32(vl)[0] as f64;
                cf_sum += to_vec_f32(clip_frac)[0] as f64;
                n_mb += 1.0;
            }
        }

        let texts: Vec<String> = rollout.tokens.iter().map(|r| inp.text.decode(r)).collect();
        let refusals = texts.iter().filter(|s| inp.refusal.is_refusal(s)).count();
        let entry = PpoLog {
            step,
            rm_reward: (rm_sum / b as f64) as f32,
            kl: (kl_sum / b as f64) as f32,
            response_length: (n_tok / b as f64) as f32,
            refusal_rate: refusals as f32 / b as f32,
            entropy: (ent_sum / n_tok.max(1.0)) as f32,
            policy_loss: (pl_sum / n_mb) as f32,
            value_loss: (vl_sum / n_mb) as f32,
            clip_frac: (cf_sum / n_mb) as f32,
            truncated_rate: rollout.finished.iter().filter(|&&f| !f).count() as f32 / b as f32,
        };
        pb.set_message(format!("R {:.3} KL {:.3} len {:.1}", entry.rm_reward, entry.kl, entry.response_length));
        pb.inc(1);
        log.push(entry);
    }
    pb.finish_and_clear();
    Ok((policy.valid(), log))
}
