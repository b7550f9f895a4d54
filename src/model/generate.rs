//! Batched KV-cache generation with seeded per-sequence sampling.
//!
//! Rollouts sample the exact policy distribution (temperature 1, no top-k / top-p), so that the KL
//! estimate against the reference stays unbiased. Each row has its own RNG stream, so a response
//! depends only on its prompt, its seed and the model, never on its batch mates.

use super::{KvCache, Lm, MASKED, f32_tensor, i64_tensor, pack, to_vec_f32};
use crate::util::SplitMix64;
use burn::prelude::*;

#[derive(Clone, Debug)]
pub struct GenConfig {
    pub max_new_tokens: usize,
    pub eos: u32,
    pub pad: u32,
    /// Argmax decoding instead of sampling (tests, diagnostics).
    pub greedy: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Generation {
    /// Generated tokens per row, the end token included when one was produced.
    pub tokens: Vec<Vec<u32>>,
    /// `log p(token)` under the model at sampling time, one per generated token.
    pub logprobs: Vec<Vec<f32>>,
    /// True when the row stopped with the end token (false = cut off at `max_new_tokens`).
    pub finished: Vec<bool>,
}

/// Log-softmax of one row of logits, in f64 for a stable reference value.
fn log_softmax_row(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let lse = logits.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
    logits.iter().map(|&x| x as f64 - lse).collect()
}

/// Draws a token from `log_probs` (inverse CDF with one uniform draw) or takes the argmax.
pub fn choose(log_probs: &[f64], rng: &mut SplitMix64, greedy: bool) -> usize {
    if greedy {
        let mut best = 0;
        for (i, &lp) in log_probs.iter().enumerate() {
            if lp > log_probs[best] {
                best = i;
            }
        }
        return best;
    }
    let u = rng.next_f64();
    let mut acc = 0.0;
    let mut last_nonzero = 0;
    for (i, &lp) in log_probs.iter().enumerate() {
        let p = lp.exp();
        if p > 0.0 {
            last_nonzero = i;
        }
        acc += p;
        if u < acc {
            return i;
        }
    }
    last_nonzero // rounding left u above the total mass
}

/// Generates continuations of `prefixes` (token ids, e.g. a chat-formatted prompt). `seeds[i]`
/// seeds row `i`'s sampling stream.
pub fn generate(model: &Lm, prefixes: &[Vec<u32>], seeds: &[u64], cfg: &GenConfig, device: &Device) -> Generation {
    let b = prefixes.len();
    assert_eq!(seeds.len(), b, "generate: one seed per prefix");
    if b == 0 {
        return Generation::default();
    }
    let packed = pack(prefixes, &vec![Vec::new(); b], cfg.pad);
    let p = packed.p;

    let mut cache = KvCache::new(model.n_layers());
    let hidden = model.hidden_cached(
        packed.tokens_tensor(device),
        packed.positions_tensor(device),
        packed.bias_tensor(device),
        &mut cache,
    );
    let mut last_logits = to_vec_f32(model.logits(hidden.narrow(1, p - 1, 1)));
    let v = last_logits.len() / b;

    // Attention history per row: which cached positions are real tokens.
    let mut attn: Vec<Vec<bool>> = (0..b).map(|r| packed.attn[r * p..(r + 1) * p].to_vec()).collect();
    let mut n_real: Vec<i64> = packed.prefix_lens.iter().map(|&l| l as i64).collect();
    let mut rngs: Vec<SplitMix64> = seeds.iter().map(|&s| SplitMix64::new(s)).collect();
    let mut out = Generation {
        tokens: vec![Vec::new(); b],
        logprobs: vec![Vec::new(); b],
        finished: vec![false; b],
    };

    for step in 0..cfg.max_new_tokens {
        let mut step_tokens = vec![cfg.pad as i64; b];
        let mut step_pos = vec![0i64; b];
        for r in 0..b {
            let live = !out.finished[r];
            if live {
                let lp = log_softmax_row(&last_logits[r * v..(r + 1) * v]);
                let tok = choose(&lp, &mut rngs[r], cfg.greedy);
                out.tokens[r].push(tok as u32);
                out.logprobs[r].push(lp[tok] as f32);
                if tok as u32 == cfg.eos {
                    out.finished[r] = true;
                }
                step_tokens[r] = tok as i64;
                step_pos[r] = n_real[r];
                n_real[r] += 1;
            }
            attn[r].push(live);
        }
        if out.finished.iter().all(|&f| f) || step + 1 == cfg.max_new_tokens {
            break;
        }
        // One decode step for the tokens just chosen.
        let k = p + step + 1;
        let mut bias = vec![MASKED; b * k];
        for r in 0..b {
            for j in 0..k {
                if attn[r][j] {
                    bias[r * k + j] = 0.0;
                }
            }
        }
        let hidden = model.hidden_cached(
            i64_tensor(step_tokens, [b, 1], device),
            i64_tensor(step_pos, [b, 1], device),
            f32_tensor(bias, [b, 1, 1, k], device),
            &mut cache,
        );
        last_logits = to_vec_f32(model.logits(hidden));
    }
    out
}
