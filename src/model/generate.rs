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
use crate::fused::exp::exp_f64_in_place;
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

/// Log-softmax of one row of logits, in f64 for a stable reference value. The exps run a register at
/// a time ([`exp_f64_in_place`], the same bits as `f64::exp`), the sum in order.
fn log_softmax_row(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let mut e: Vec<f64> = logits.iter().map(|&x| x as f64 - max).collect();
    exp_f64_in_place(&mut e);
    let lse = e.iter().sum::<f64>().ln() + max;
    logits.iter().map(|&x| x as f64 - lse).collect()
}

/// Draws a token from `log_probs` (inverse CDF with one uniform draw) or takes the argmax.
/// The probabilities are exponentiated a block at a time and summed in order, as one by one.
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
    const BLOCK: usize = 512;
    let u = rng.next_f64();
    let mut acc = 0.0;
    let mut last_nonzero = 0;
    let mut buf = [0.0f64; BLOCK];
    for (b, lps) in log_probs.chunks(BLOCK).enumerate() {
        let ps = &mut buf[..lps.len()];
        ps.copy_from_slice(lps);
        exp_f64_in_place(ps);
        for (j, &p) in ps.iter().enumerate() {
            let i = b * BLOCK + j;
            if p > 0.0 {
                last_nonzero = i;
            }
            acc += p;
            if u < acc {
                return i;
            }
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

/// The output projection of decode steps. A tied head multiplies by `E^T` `[D, V]`; through the
/// strided view of [`Lm::logits`], gemm (flex) copies all of `E` element by element at every decode
/// step (16–22% of SmolLM2's generation time), so a tied head is made contiguous once per call.
/// gemm then forms the same products and sums them in the same order: the logits are the same bits
/// as [`Lm::logits`]. Except for a single row, where gemm's matrix-vector path sums in an order that
/// depends on the layout: a call with one row keeps the view.
struct DecodeHead(Option<Tensor<2>>);

impl DecodeHead {
    fn new(model: &Lm, rows: usize) -> Self {
        DecodeHead((model.lm_head.is_none() && rows > 1).then(|| contiguous_t(model.tok_emb.weight.val())))
    }

    /// Logits of `hidden` `[rows, 1, D]`.
    fn logits(&self, model: &Lm, hidden: Tensor<3>) -> Tensor<3> {
        match &self.0 {
            Some(w_t) => {
                let [b, t, d] = hidden.dims();
                let v = w_t.dims()[1];
                hidden.reshape([b * t, d]).matmul(w_t.clone()).reshape([b, t, v])
            }
            None => model.logits(hidden),
        }
    }
}

/// `w^T` in contiguous memory: a reshape of the transposed view materialises it, on every backend.
fn contiguous_t(w: Tensor<2>) -> Tensor<2> {
    let [r, c] = w.dims();
    w.transpose().reshape([r * c]).reshape([c, r])
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
    let head = DecodeHead::new(model, b);
    let mut last_logits: Tensor<2> = head.logits(model, hidden.narrow(1, p - 1, 1)).squeeze_dim(1);

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
        last_logits = head.logits(model, hidden).squeeze_dim(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Through the contiguous copy the tied head's products are the same bits as through the strided
    /// view, at SmolLM2's output shape (D 576, V 49,152), from 2 rows (a single row keeps the view,
    /// see [`DecodeHead`]) to a batch larger than any profile's.
    #[test]
    fn the_decode_head_gives_the_bits_of_the_strided_view() {
        let device = Device::flex();
        let (v, d) = (49_152, 576);
        let mut rng = SplitMix64::new(3);
        let mut uniform = |n: usize, scale: f32| (0..n).map(|_| (rng.next_f64() as f32 - 0.5) * scale).collect::<Vec<f32>>();
        let e = f32_tensor(uniform(v * d, 0.1), [v, d], &device);
        let e_t = contiguous_t(e.clone());
        for rows in [2, 3, 8, 16, 17, 48, 65, 160] {
            let h = f32_tensor(uniform(rows * d, 1.0), [rows, d], &device);
            let want = to_vec_f32(h.clone().matmul(e.clone().transpose()));
            let got = to_vec_f32(h.matmul(e_t.clone()));
            assert!(want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()), "{rows} rows: the logits differ");
        }
    }
}
