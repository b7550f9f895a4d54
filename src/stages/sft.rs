//! Supervised fine-tuning of the base LM on (prompt, response) rows; loss on response tokens only.

use super::{Call, Ctx, Out, loop_cfg};
use anyhow::Result;

/// Inputs: tokens, the base LM.
pub fn run(ctx: &Ctx, call: &Call) -> Result<Out> {
    let (tokens, base) = (call.inputs[0].tokens(), call.inputs[1].lm());
    let (mp, mr) = ctx.budgets();
    let s = &ctx.spec.sft;
    let start = ctx.role_start(base, call.seed ^ 0x22);
    let (m, log) = ctx.stages.stage(&ctx.timer, call.name, call.seed, &start, || {
        crate::train::sft(start.clone(), &tokens.text.tpl, &tokens.sft_rows, mp, mr, s.batch_size, &crate::train::LoopCfg { cosine: s.cosine_decay, ..loop_cfg(s.steps, s.lr, s.warmup_steps, s.grad_clip) }, call.seed ^ 0x22, &ctx.ad)
    })?;
    Ok(Out::Lm(Some(m), log, Vec::new()))
}
