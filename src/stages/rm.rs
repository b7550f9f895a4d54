//! The two proxy reward models, each from the SFT policy and trained on the rm split: the scalar
//! (Bradley–Terry) RM and the seq2seq RM (sequence MLE on correction and identity mappings).

use super::{Call, Ctx, Out, loop_cfg};
use crate::eval;
use crate::reward::{ScalarReward, Seq2seqReward};
use anyhow::Result;
use burn::prelude::*;

/// The seq2seq RM and its divergence-rule reward. Inputs: tokens, SFT.
pub fn seq2seq(ctx: &Ctx, call: &Call) -> Result<Out> {
    let (tokens, sft) = (call.inputs[0].tokens(), call.inputs[1].lm());
    let (mp, mr) = ctx.budgets();
    let q = &ctx.spec.seq2seq_rm;
    let tpl = &tokens.text.tpl;
    let start = ctx.role_start(sft, call.seed ^ 0x55);
    let measured = ctx.rm_eval_pairs(tokens);
    let held_out = super::spread(&measured, q.curve_pairs);
    let curve = (q.curve_every > 0).then(|| crate::train::Curve { every: q.curve_every, pairs: &held_out, rule: &q.rule, device: &ctx.dev });
    let (m, (log, curve)) = ctx.stages.stage(&ctx.timer, call.name, call.seed, &start, || {
        let mixing = crate::train::Mixing { kind: &q.mixing, identity_warmup: q.identity_warmup_steps, correction_fraction: q.correction_fraction };
        let (m, log, curve) = crate::train::seq2seq_rm(start.clone(), tpl, &tokens.rm_pairs, &mixing, mp, mr, q.batch_size, &loop_cfg(q.steps, q.lr, q.warmup_steps, q.grad_clip), call.seed ^ 0x55, &ctx.ad, curve)?;
        Ok((m, (log, curve)))
    })?;
    let m = m.valid();
    let metrics = eval::seq2seq_rm_metrics(&m, tpl, &measured, &q.rule, mp, mr, 32, &ctx.dev);
    let max_response = ctx.spec.ppo.max_new_tokens.max(mr);
    let reward = Seq2seqReward { model: m, tpl: tpl.clone(), device: ctx.dev.clone(), max_prompt: mp, max_response, rule: q.rule, per_token_mean: q.reward_scaling == "mean" };
    Ok(Out::Rm(Some(Box::new(reward)), log, metrics, curve))
}

/// The scalar RM and its whitened, clipped last-token reward. Inputs: tokens, SFT.
pub fn scalar(ctx: &Ctx, call: &Call) -> Result<Out> {
    let (tokens, sft) = (call.inputs[0].tokens(), call.inputs[1].lm());
    let (mp, mr) = ctx.budgets();
    let r = &ctx.spec.scalar_rm;
    let (tpl, rm_pairs) = (&tokens.text.tpl, &tokens.rm_pairs);
    let start = ctx.role_start(sft, call.seed ^ 0x44);
    let (m, log) = ctx.stages.stage(&ctx.timer, call.name, call.seed, &start, || {
        crate::train::scalar_rm(start.clone(), tpl, "scalar_rm", rm_pairs, mp, mr, r.batch_size, r.score_l2, &loop_cfg(r.steps, r.lr, r.warmup_steps, r.grad_clip), call.seed ^ 0x44, &ctx.ad, None)
    })?;
    let m = m.valid();
    let metrics = eval::scalar_rm_metrics(&m, tpl, &ctx.rm_eval_pairs(tokens), mp, mr, 32, &ctx.dev);
    // Normalise the scalar reward with the RM's own score statistics on its training pairs.
    let train_stats = eval::scalar_rm_metrics(&m, tpl, &rm_pairs[..rm_pairs.len().min(r.norm_pairs)], mp, mr, 32, &ctx.dev);
    let stat = |k: &str| train_stats.iter().find(|(m, _)| m == k).map(|(_, v)| *v as f32).unwrap_or(0.0);
    let (mean, std) = if r.normalize { (stat("score_mean"), stat("score_std").max(1e-6)) } else { (0.0, 1.0) };
    let reward = ScalarReward { model: m, tpl: tpl.clone(), device: ctx.dev.clone(), max_prompt: mp, mean, std, clip: ctx.spec.ppo.score_clip };
    Ok(Out::Rm(Some(Box::new(reward)), log, metrics, Vec::new()))
}
