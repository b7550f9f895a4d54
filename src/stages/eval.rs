//! Evaluation: the SFT policy and both PPO policies answer the same held-out and OOD prompts with
//! the same sampling seeds; the judge scores every answer.

use super::{Call, Ctx, Out};
use crate::eval::{self, EvalCtx, Judge};
use anyhow::Result;
use burn::prelude::*;

/// Inputs: tokens, SFT, the judge (or the world's data, whose gold reward judges), the scalar-RM
/// policy, the seq2seq-RM policy.
pub fn run(ctx: &Ctx, call: &Call) -> Result<Out> {
    let i = call.inputs;
    let tokens = i[0].tokens();
    let (mp, _) = ctx.budgets();
    let judge = match &*i[2] {
        Out::Corpus(c) => Judge::Gold(c.world.as_deref().expect("eval reads the data stage only in a world")),
        judge => Judge::Model(judge.lm()),
    };
    let ectx = EvalCtx { judge, text: &tokens.text, refusal: &ctx.refusal, max_prompt: mp, max_new_tokens: ctx.spec.eval.max_new_tokens, batch: 32, device: &ctx.dev };
    let sft = i[1].lm().valid();
    // Named as the table names the PPO stages this stage reads.
    let policies = [("sft", &sft), ("ppo_scalar", i[3].lm()), ("ppo_seq2seq", i[4].lm())];
    ctx.timer.time(call.name, Some(call.seed), || {
        Ok(Out::Eval(policies.into_iter().flat_map(|(name, policy)| eval::answer(&ectx, name, policy, &tokens.eval_prompts, call.seed)).collect()))
    })
}
