//! The judge: a scalar Bradley–Terry RM from the base LM, trained on the judge split plus extra
//! preference sets the proxy RMs never see; frozen, with its held-out pair accuracy reported.
//! With `judge.adapter` it is not trained but loaded: a committed adapter (checked against
//! `judge.adapter_sha256`) that `s2rm judge` wrote, so that every user's win rates come from the
//! same judge.

use super::{Call, Ctx, Out, loop_cfg};
use crate::model::Lm;
use crate::spec::JudgeSpec;
use anyhow::{Context, Result, bail};
use burn::prelude::*;
use std::path::Path;

/// Inputs: tokens, the base LM.
pub fn run(ctx: &Ctx, call: &Call) -> Result<Out> {
    let (tokens, base) = (call.inputs[0].tokens(), call.inputs[1].lm());
    let (mp, mr) = ctx.budgets();
    let j = &ctx.spec.judge;
    let tpl = &tokens.text.tpl;
    let start = ctx.role_start_with(base, call.seed ^ 0x33, &j.lora(&ctx.spec.model.lora));
    let measured = ctx.rm_eval_pairs(tokens);
    let (m, log) = if j.adapter.is_empty() {
        ctx.stages.stage(&ctx.timer, call.name, call.seed, &start, || {
            let watch = crate::train::Watch { every: j.curve_every, pairs: &measured, device: &ctx.dev };
            crate::train::scalar_rm(start.clone(), tpl, "judge", &tokens.judge_pairs, mp, mr, j.batch_size, j.score_l2, &loop_cfg(j.steps, j.lr, j.warmup_steps, j.grad_clip), call.seed ^ 0x33, &ctx.ad, Some(watch))
        })?
    } else {
        crate::train::say(&format!("stage judge: loaded from {} (sha256 {}), not trained", j.adapter, &j.adapter_sha256[..12]));
        (load_adapter(j, start)?, Vec::new())
    };
    let m = m.valid();
    let metrics = crate::eval::scalar_rm_metrics(&m, tpl, &measured, mp, mr, 32, &ctx.dev);
    Ok(Out::Lm(Some(m), log, metrics))
}

/// Checks that `judge.adapter` exists and has the sha256 the spec names (before any work: the
/// runner calls it first).
pub fn check_adapter(j: &JudgeSpec) -> Result<()> {
    if j.adapter.is_empty() {
        return Ok(());
    }
    let bytes = std::fs::read(&j.adapter).with_context(|| {
        format!("`judge.adapter`: cannot read {}; run from the repository root, or retrain it with `s2rm judge SPEC --profile PROFILE --output {}` (README, \"The judge\")", j.adapter, j.adapter)
    })?;
    let got = crate::util::sha256_hex(&bytes);
    if !got.eq_ignore_ascii_case(&j.adapter_sha256) {
        bail!("`judge.adapter`: {} has sha256 {got}, but `judge.adapter_sha256` is {}; restore the committed file (git checkout -- {}) or, for a judge you retrained on purpose, set the new hash", j.adapter, j.adapter_sha256, j.adapter);
    }
    Ok(())
}

fn load_adapter(j: &JudgeSpec, start: Lm) -> Result<Lm> {
    check_adapter(j)?;
    start.load_weights(Path::new(&j.adapter)).with_context(|| format!("`judge.adapter` {} does not fit this spec's model and `model.lora`", j.adapter))
}
