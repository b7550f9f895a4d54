//! The base LM: pretrained here on the corpus (`pretrain`), or loaded from a pretrained checkpoint
//! (`checkpoint` reads the file, `base` builds the model from it).

use super::{Call, Ctx, Out, loop_cfg};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::time::Instant;

/// Pretraining from scratch. Inputs: tokens.
pub fn run(ctx: &Ctx, call: &Call) -> Result<Out> {
    let tokens = call.inputs[0].tokens();
    let cfg = &tokens.model_cfg;
    let base = cfg.init_seeded(&ctx.ad, call.seed);
    let lm_params = announce(&base, cfg);
    let (mp, mr) = ctx.budgets();
    let pt = &ctx.spec.pretrain;
    let template = base.clone();
    let (base, log) = ctx.stages.stage(&ctx.timer, call.name, call.seed, &template, || {
        crate::train::pretrain(base, &tokens.docs, mp + mr, pt.batch_size, &crate::train::LoopCfg { cosine: pt.cosine_decay, ..loop_cfg(pt.steps, pt.lr, pt.warmup_steps, pt.grad_clip) }, call.seed ^ 0x11, &ctx.ad)
    })?;
    Ok(Out::Base(Some(base), log, lm_params))
}

/// Reads `model.checkpoint`. No inputs.
pub fn checkpoint(ctx: &Ctx, _: &Call) -> Result<Out> {
    let path = PathBuf::from(&ctx.spec.model.checkpoint);
    if !path.exists() {
        bail!("model.checkpoint {} does not exist; `make model-smollm2` fetches SmolLM2-135M-Instruct into models/", path.display());
    }
    let t = Instant::now();
    let ckpt = crate::pretrained::load(&path).with_context(|| format!("loading model.checkpoint {}", path.display()))?;
    eprintln!("checkpoint {} loaded in {:.1}s", path.display(), t.elapsed().as_secs_f64());
    Ok(Out::Checkpoint(Some(ckpt)))
}

/// The pretrained model as the base LM (no pretraining stage). Inputs: tokens, checkpoint.
pub fn base(ctx: &Ctx, call: &Call) -> Result<Out> {
    let cfg = &call.inputs[0].tokens().model_cfg;
    let base = cfg.load_pretrained(call.inputs[1].checkpoint(), &ctx.ad)?;
    let lm_params = announce(&base, cfg);
    eprintln!("stage pretrain skipped: the model is pretrained ({})", cfg.checkpoint);
    Ok(Out::Base(Some(base), Vec::new(), lm_params))
}

fn announce(base: &crate::model::Lm, cfg: &crate::model::LmConfig) -> usize {
    let lm_params = base.lm_params();
    eprintln!("model `{}`: {lm_params} parameters (trunk + LM head), vocab {}", cfg.preset, cfg.vocab_size);
    lm_params
}
