//! The judge: a scalar Bradley–Terry RM from the base LM, trained on the judge split plus extra
//! preference sets the proxy RMs never see; frozen, with its held-out pair accuracy reported.

use super::{Call, Ctx, Out, loop_cfg};
use anyhow::Result;
use burn::prelude::*;

/// Inputs: tokens, the base LM.
pub fn run(ctx: &Ctx, call: &Call) -> Result<Out> {
    let (tokens, base) = (call.inputs[0].tokens(), call.inputs[1].lm());
    let (mp, mr) = ctx.budgets();
    let j = &ctx.spec.judge;
    let tpl = &tokens.text.tpl;
    let start = ctx.role_start(base, call.seed ^ 0x33);
    let (m, log) = ctx.stages.stage(&ctx.timer, call.name, call.seed, &start, || {
        crate::train::scalar_rm(start.clone(), tpl, "judge", &tokens.judge_pairs, mp, mr, j.batch_size, j.score_l2, &loop_cfg(j.steps, j.lr, j.warmup_steps, j.grad_clip), call.seed ^ 0x33, &ctx.ad)
    })?;
    let m = m.valid();
    let metrics = crate::eval::scalar_rm_metrics(&m, tpl, ctx.rm_eval_pairs(tokens), mp, mr, 32, &ctx.dev);
    Ok(Out::Lm(Some(m), log, metrics))
}
