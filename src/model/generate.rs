//! Batched KV-cache generation with seeded per-sequence sampling.
//!
//! Rollouts sample the exact policy distribution (temperature 1, no top-k / top-p), so that the KL
//! estimate against the reference stays unbiased. Each row has its own RNG stream, so a response
//! depends only on its prompt, its seed and the model, never on its batch mates.
//!
//! A decode step chooses its tokens on the host or on the device ([`Sampler`]): on a GPU, reading
//! back `[B, V]` logits for every generated token (1.5 MB at B = 8 and SmolLM2's vocabulary) and
//! a host log-softmax would cost more than the choice itself; there one `[B, 2]` read per token
//! remains. Both draw the same uniform from each row's stream.

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

/// Where a decode step chooses its tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampler {
    /// Read the step's `[B, V]` logits back and choose in f64 ([`choose`]). On a CPU backend the
    /// logits already lie in host memory, so this costs no transfer; every CPU run has used it.
    Host,
    /// Choose on the device and read back `[B, 2]`, each row's token and its log-prob
    /// ([`choose_on_device`]). It computes in f32, so a draw within rounding of a boundary of the
    /// cumulative distribution may pick the neighbouring token that [`Sampler::Host`] would not.
    Device,
}

impl Sampler {
    /// [`Sampler::Host`] on the CPU backends (flex, LibTorch), [`Sampler::Device`] on a GPU.
    pub fn for_device(device: &Device) -> Self {
        let cpu = *device == Device::flex();
        #[cfg(feature = "libtorch")]
        #[allow(deprecated)]
        let cpu = cpu || *device == Device::libtorch();
        if cpu { Sampler::Host } else { Sampler::Device }
    }
}

/// The uniform `u ∈ [0, 1)` a sampled row draws for one token, as f32 for the device: f64 → f32
/// may round up to 1, which would fall past the last token.
fn device_uniform(rng: &mut SplitMix64) -> f32 {
    (rng.next_f64() as f32).min(1.0 - f32::EPSILON / 2.0)
}

/// Tokens and their log-probs for `logits [B, V]`, chosen on the device: greedy takes the argmax;
/// sampled takes the first token whose cumulative probability exceeds `uniforms[r]` times the
/// row's total (the inverse CDF, as [`choose`]), so never a token of probability 0.
/// One `[B, 2]` host read (token ids are exact in f32 below 2^24).
pub fn choose_on_device(logits: Tensor<2>, uniforms: &[f32], greedy: bool) -> Vec<(usize, f32)> {
    let [b, v] = logits.dims();
    let device = logits.device();
    let lsm = crate::fused::log_softmax(logits, 1);
    let tokens = if greedy {
        lsm.clone().argmax(1)
    } else {
        assert_eq!(uniforms.len(), b, "choose_on_device: one uniform per row");
        let cdf = lsm.clone().exp().cumsum(1);
        let total = cdf.clone().narrow(1, v - 1, 1);
        let u = f32_tensor(uniforms.to_vec(), [b, 1], &device) * total;
        // The count of entries at or below u is the index of the first one above it, a token that
        // added probability. u < 1 keeps u · total below the last entry (= total), so the count
        // stays below V.
        cdf.lower_equal(u.expand([b, v])).int().sum_dim(1)
    };
    let lp = lsm.gather(1, tokens.clone());
    let read = to_vec_f32(Tensor::cat(vec![tokens.float(), lp], 1));
    read.chunks(2).map(|c| (c[0] as usize, c[1])).collect()
}

/// One decode step's choice for each live row: its token and log-prob (`None` for finished rows,
/// which draw nothing from their streams).
fn choose_step(logits: Tensor<2>, live: &[bool], rngs: &mut [SplitMix64], greedy: bool, sampler: Sampler) -> Vec<Option<(usize, f32)>> {
    match sampler {
        Sampler::Host => {
            let all = to_vec_f32(logits);
            let v = all.len() / live.len();
            let rows = live.iter().zip(rngs.iter_mut()).zip(all.chunks(v));
            rows.map(|((&l, rng), row)| {
                l.then(|| {
                    let lp = log_softmax_row(row);
                    let tok = choose(&lp, rng, greedy);
                    (tok, lp[tok] as f32)
                })
            })
            .collect()
        }
        Sampler::Device => {
            let draw = |(&l, rng): (&bool, &mut SplitMix64)| if l && !greedy { device_uniform(rng) } else { 0.0 };
            let uniforms: Vec<f32> = live.iter().zip(rngs.iter_mut()).map(draw).collect();
            let chosen = choose_on_device(logits, &uniforms, greedy);
            live.iter().zip(chosen).map(|(&l, c)| l.then_some(c)).collect()
        }
    }
}

/// Generates continuations of `prefixes` (token ids, e.g. a chat-formatted prompt). `seeds[i]`
/// seeds row `i`'s sampling stream. Tokens are chosen where [`Sampler::for_device`] says.
pub fn generate(model: &Lm, prefixes: &[Vec<u32>], seeds: &[u64], cfg: &GenConfig, device: &Device) -> Generation {
    generate_with(model, prefixes, seeds, cfg, device, Sampler::for_device(device))
}

/// [`generate`] with the tokens chosen by `sampler`.
pub fn generate_with(model: &Lm, prefixes: &[Vec<u32>], seeds: &[u64], cfg: &GenConfig, device: &Device, sampler: Sampler) -> Generation {
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
    let mut last_logits: Tensor<2> = model.logits(hidden.narrow(1, p - 1, 1)).squeeze_dim(1);

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
        let live: Vec<bool> = out.finished.iter().map(|f| !f).collect();
        let chosen = choose_step(last_logits, &live, &mut rngs, cfg.greedy, sampler);
        for (r, choice) in chosen.into_iter().enumerate() {
            if let Some((tok, lp)) = choice {
                out.tokens[r].push(tok as u32);
                out.logprobs[r].push(lp);
                if tok as u32 == cfg.eos {
                    out.finished[r] = true;
                }
                step_tokens[r] = tok as i64;
                step_pos[r] = n_real[r];
                n_real[r] += 1;
            }
            attn[r].push(live[r]);
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
        last_logits = model.logits(hidden).squeeze_dim(1);
    }
    out
}
