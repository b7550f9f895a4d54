//! The tokenizer stage: a BPE tokenizer trained on the corpus (or the pretrained checkpoint's
//! own), and every split encoded with it, so that later stages read token ids.

use super::{Call, Ctx, Out};
use crate::data::Preference;
use crate::eval::EvalPrompt;
use crate::model::LmConfig;
use crate::text::Text;
use crate::train::PairIds;
use crate::util::sha256_hex;
use anyhow::{Context, Result};
use std::collections::{BTreeSet, HashMap};

/// The tokenizer, the model config with its vocabulary size, and the data as token ids.
pub struct Tokens {
    pub text: Text,
    pub model_cfg: LmConfig,
    pub rm_pairs: Vec<PairIds>,
    pub eval_pairs: Vec<PairIds>,
    pub judge_pairs: Vec<PairIds>,
    pub sft_rows: Vec<(Vec<u32>, Vec<u32>)>,
    /// Raw prompt ids of the policy split, each prompt once.
    pub policy_prompts: Vec<Vec<u32>>,
    pub eval_prompts: Vec<EvalPrompt>,
    /// The pretraining corpus (empty for a pretrained model, which is not pretrained here).
    pub docs: Vec<Vec<u32>>,
}

/// Inputs: the corpus, and the checkpoint when the model is pretrained.
pub fn run(ctx: &Ctx, call: &Call) -> Result<Out> {
    let corpus = call.inputs[0].corpus();
    let mut model_cfg: LmConfig = ctx.spec.model.clone();
    let text = match call.inputs.get(1) {
        Some(ckpt) => Text::from_checkpoint(ckpt.checkpoint()).with_context(|| format!("model.checkpoint {}", model_cfg.checkpoint))?,
        None => {
            let text = ctx.timer.time("tokenizer", None, || tokenizer(&corpus.docs, model_cfg.vocab_size, ctx))?;
            model_cfg.vocab_size = text.vocab_size();
            text
        }
    };
    let ids = |v: &[Preference]| v.iter().map(|p| pair_ids(&text, p, &corpus.kind_of)).collect::<Vec<_>>();
    let mut policy_prompts: Vec<Vec<u32>> = Vec::new();
    let mut seen = BTreeSet::new();
    for p in &corpus.splits["policy"] {
        if seen.insert(p.prompt.clone()) {
            policy_prompts.push(text.encode(&p.prompt));
        }
    }
    let eval_prompts: Vec<EvalPrompt> = corpus
        .eval_prompts
        .iter()
        .flat_map(|(set, v)| {
            v.iter().enumerate().map(|(id, t)| EvalPrompt {
                set: set.clone(),
                id,
                text: t.clone(),
                ids: text.encode(t),
                reference: corpus.references.get(t).map(|r| (r.clone(), text.encode(r).len())),
            })
        })
        .collect();
    let docs = if model_cfg.is_pretrained() { Vec::new() } else { corpus.docs.iter().map(|s| text.encode(s)).collect() };
    Ok(Out::Tokens(Box::new(Tokens {
        rm_pairs: ids(&corpus.splits["rm"]),
        eval_pairs: ids(&corpus.splits["eval"]),
        judge_pairs: ids(&corpus.judge_pairs),
        sft_rows: corpus.sft_rows.iter().map(|(p, r)| (text.encode(p), text.encode(r))).collect(),
        policy_prompts,
        eval_prompts,
        docs,
        text,
        model_cfg,
    })))
}

/// Tokenizer trained on the corpus, cached under `<out>/.cache/` (or the shared directory) by a
/// hash of its inputs.
fn tokenizer(docs: &[String], vocab: usize, ctx: &Ctx) -> Result<Text> {
    let mut h = format!("vocab={vocab}\n");
    for d in docs {
        h.push_str(&sha256_hex(d.as_bytes())[..16]);
    }
    let stem = format!("tokenizer-{}", &sha256_hex(h.as_bytes())[..16]);
    let cache = ctx.shared_dir.as_deref().unwrap_or(&ctx.cache_dir);
    let path = cache.join(format!("{stem}.json"));
    let cached = || if path.exists() { Text::load(&path).ok() } else { None };
    if let Some(t) = cached() {
        return Ok(t);
    }
    // In a shared directory, one cell trains it while the others wait and then load it.
    let _lock = match &ctx.shared_dir {
        Some(dir) => Some(super::lock::lock(dir, &stem)?),
        None => None,
    };
    if let Some(t) = cached().filter(|_| ctx.shared_dir.is_some()) {
        return Ok(t);
    }
    let t = Text::train(docs, vocab)?;
    t.save(&path)?;
    Ok(t)
}

fn pair_ids(text: &Text, p: &Preference, kind_of: &HashMap<String, String>) -> PairIds {
    let kind = kind_of.get(&p.source).cloned().unwrap_or_default();
    PairIds { prompt: text.encode(&p.prompt), chosen: text.encode(&p.chosen), rejected: text.encode(&p.rejected), kind }
}
