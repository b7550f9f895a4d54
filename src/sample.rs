//! `s2rm sample`: load a pretrained checkpoint, answer prompts with its chat template and report
//! load time, generation speed and the perplexity of a fixed English sentence — a quick check
//! that a checkpoint, its tokenizer and a device work before a long experiment.

use crate::device;
use crate::model::generate::{GenConfig, generate};
use crate::model::{LmConfig, i64_tensor, next_token_logprobs, pack, to_vec_f32};
use crate::text::{PAD, Text};
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Instant;

/// The sentence whose perplexity `sample` reports (also used by the pretrained-model tests).
pub const ENGLISH: &str = "The quick brown fox jumps over the lazy dog. It was a sunny day, and the children played in the park until dinner time.";

pub struct SampleReport {
    pub device: String,
    pub load_seconds: f64,
    pub perplexity: f64,
    pub answers: Vec<String>,
    /// Generated tokens per second, first call (includes kernel compilation on a GPU) and warm.
    pub tokens_per_s_first: f64,
    pub tokens_per_s_warm: f64,
    pub batch: usize,
}

/// Mean negative log-likelihood per token of `ids[1..]` given its prefix, as a perplexity.
pub fn perplexity(model: &crate::model::Lm, ids: &[u32], device: &burn::prelude::Device) -> f64 {
    let packed = pack(&[ids[..1].to_vec()], &[ids[1..].to_vec()], PAD);
    let (targets, mask) = packed.continuation_targets();
    let tm = packed.t - 1;
    let hidden = model.hidden_packed(&packed, device);
    let lp = to_vec_f32(next_token_logprobs(model.logits(hidden), i64_tensor(targets, [1, tm], device)));
    let (sum, n) = lp.iter().zip(&mask).filter(|(_, m)| **m > 0.0).fold((0.0f64, 0usize), |(s, n), (l, _)| (s - *l as f64, n + 1));
    (sum / n.max(1) as f64).exp()
}

pub fn sample(path: &Path, prompts: &[String], max_new_tokens: usize, batch: usize, device_kind: &str) -> Result<SampleReport> {
    let sel = device::select(device_kind)?;
    eprintln!("device: {} — {}", sel.name, sel.reason);
    let t = Instant::now();
    let ckpt = crate::pretrained::load(path).with_context(|| format!("loading {}", path.display()))?;
    let cfg = LmConfig::from_checkpoint("pretrained", &path.display().to_string(), &ckpt);
    let text = Text::from_checkpoint(&ckpt)?;
    let model = cfg.load_pretrained(&ckpt, &sel.device)?;
    drop(ckpt);
    let load_seconds = t.elapsed().as_secs_f64();
    eprintln!("loaded in {load_seconds:.1}s: {} parameters", model.lm_params());
    let perplexity = perplexity(&model, &text.encode(ENGLISH), &sel.device);
    let gen_cfg = GenConfig { max_new_tokens, eos: text.tpl.eos, pad: PAD, greedy: true };
    // Greedy answers to each prompt, one batch.
    let prefixes: Vec<Vec<u32>> = prompts.iter().map(|p| text.tpl.policy_prefix(&text.encode(p), usize::MAX)).collect();
    let seeds = vec![0; prefixes.len()];
    let out = generate(&model, &prefixes, &seeds, &gen_cfg, &sel.device);
    let answers = out.tokens.iter().map(|t| text.decode(t)).collect();
    // Throughput: a batch of `batch` rows (the prompts repeated), sampled, twice.
    let rows: Vec<Vec<u32>> = (0..batch).map(|i| prefixes[i % prefixes.len()].clone()).collect();
    let seeds: Vec<u64> = (0..batch as u64).collect();
    let sampled = GenConfig { greedy: false, ..gen_cfg };
    let mut speeds = Vec::new();
    for _ in 0..2 {
        let t = Instant::now();
        let g = generate(&model, &rows, &seeds, &sampled, &sel.device);
        let n: usize = g.tokens.iter().map(Vec::len).sum();
        speeds.push(n as f64 / t.elapsed().as_secs_f64());
    }
    Ok(SampleReport { device: sel.name, load_seconds, perplexity, answers, tokens_per_s_first: speeds[0], tokens_per_s_warm: speeds[1], batch })
}
