//! One PPO run from the SFT policy against one reward model (the table lists one per RM).

use super::{Call, Ctx, Out};
use crate::train::ppo::{PpoInputs, train_ppo};
use anyhow::Result;
use burn::prelude::*;

/// Inputs: tokens, SFT, the reward model.
pub fn run(ctx: &Ctx, call: &Call) -> Result<Out> {
    let (tokens, sft, reward) = (call.inputs[0].tokens(), call.inputs[1].lm(), call.inputs[2].reward());
    // Always passed: a checkpoint on disk is resumed even when `checkpoint_every` is now 0.
    let checkpoint = Some(ctx.stages.checkpoint_prefix(call.name, call.seed));
    let (mp, _) = ctx.budgets();
    let (m, log) = ctx.stages.stage(&ctx.timer, call.name, call.seed, &sft.valid(), || {
        train_ppo(PpoInputs {
            sft,
            reward,
            prompts: &tokens.policy_prompts,
            cfg: &ctx.spec.ppo,
            max_prompt: mp,
            seed: call.seed,
            text: &tokens.text,
            refusal: &ctx.refusal,
            device: &ctx.ad,
            checkpoint,
        })
    })?;
    Ok(Out::Ppo(Some(m), log, reward.kind()))
}
