//! The judge: a scalar Bradley–Terry RM from the base LM, trained on the judge split plus extra
//! preference sets the proxy RMs never see; frozen, with its held-out pair accuracy reported.

use super::{Call, Ctx, Out, loop_cfg, own_leaves};
use anyhow::Result;
use burn::prelude::*;

/// Inputs: tokens, the base LM.
pub fn run(ctx: &Ctx, call: &Call) -> Result<Out> {
    let (tokens, base) = (call.inputs[0].tokens(), call.inputs[1].lm());
    let (mp, mr) = ctx.budgets();
    let j = &ctx.spec.judge;
    let tpl = &tokens.text.tpl;
    let (m, log) = ctx.stages.stage(&ctx.timer, call.name, call.seed, base, || {
        crate::train::scalar_rm(own_leaves(base), tpl, "judge", &tokens.judge_pairs, mp, mr, j.batch_size, j.score_l2, &loop_cfg(j.steps, j.lr, j.warmup_steps, j.grad_clip), call.seed ^ 0x33, &ctx.ad)
    })?;
    let m = m.valid();
    let metrics = crate::eval::scalar_rm_metrics(&m, tpl, &tokens.eval_pairs, mp, mr, 32, &ctx.dev);
    Ok(Out::Lm(Some(m), log, metrics))
}
