//! A plain-Rust reference forward of a Llama checkpoint: the oracle for the burn model.
//!
//! Exactly Hugging Face's `LlamaForCausalLM` in `f32`, one sequence, no cache: token embedding;
//! per layer `x += o_proj(attn(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))` with
//! `n = rms_norm(x)`, then `x += down_proj(silu(gate_proj(n)) * up_proj(n))` with
//! `n = rms_norm(x)`; final `rms_norm`; logits = `x · lm_headᵀ` (the embedding when tied).
//!
//! * RMSNorm: `x / sqrt(mean(x²) + eps) * w` (mean accumulated in `f64`).
//! * RoPE, HF `rotate_half`: for head dim `d` and `i < d/2`, the pair `(x[i], x[i + d/2])` is
//!   rotated by angle `pos · theta^(-2i/d)` (`pos` = 0, 1, … in the sequence; angle in `f64`).
//! * Attention: causal, scaled by `1/sqrt(d)`, query head `h` reads key/value head
//!   `h / (num_attention_heads / num_key_value_heads)` (GQA).
//!
//! Matrix products are split over the machine's threads (`std::thread::scope`); the arithmetic of
//! each output is the same whatever the thread count.

use super::Checkpoint;
use anyhow::{Result, ensure};

/// `y[t][o] = Σ_i x[t][i] · w[o][i]` for `x` `[n, k]` and `w` `[m, k]` (row-major); returns `[n, m]`.
pub fn matmul_t(x: &[f32], n: usize, k: usize, w: &[f32], m: usize) -> Vec<f32> {
    assert_eq!(x.len(), n * k);
    assert_eq!(w.len(), m * k);
    if n == 0 || m == 0 {
        return Vec::new();
    }
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(m.max(1));
    let rows_per = m.div_ceil(threads);
    // Each thread fills whole rows of yᵀ [m, n], so the chunks are disjoint.
    let mut yt = vec![0f32; m * n];
    std::thread::scope(|s| {
        for (c, chunk) in yt.chunks_mut(rows_per * n).enumerate() {
            s.spawn(move || {
                for (r, out) in chunk.chunks_mut(n).enumerate() {
                    let o = c * rows_per + r;
                    let wr = &w[o * k..(o + 1) * k];
                    for (t, y) in out.iter_mut().enumerate() {
                        *y = dot(&x[t * k..(t + 1) * k], wr);
                    }
                }
            });
        }
    });
    let mut y = vec![0f32; n * m];
    for o in 0..m {
        for t in 0..n {
            y[t * m + o] = yt[o * n + t];
        }
    }
    y
}

/// Dot product with eight independent accumulators (vectorisable, fixed summation order).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// RMSNorm of each `dim`-row of `x` in place.
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f64) {
    for row in x.chunks_mut(w.len()) {
        let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / row.len() as f64;
        let inv = (1.0 / (ms + eps).sqrt()) as f32;
        for (v, g) in row.iter_mut().zip(w) {
            *v = *v * inv * g;
        }
    }
}

/// HF `rotate_half` RoPE on one head vector `x` (length `d`) at position `pos`.
pub fn rope_rotate_half(x: &mut [f32], pos: usize, theta: f64) {
    let d = x.len();
    let half = d / 2;
    for i in 0..half {
        let inv_freq = theta.powf(-((2 * i) as f64) / d as f64);
        let (sin, cos) = (pos as f64 * inv_freq).sin_cos();
        let (sin, cos) = (sin as f32, cos as f32);
        let (a, b) = (x[i], x[i + half]);
        x[i] = a * cos - b * sin;
        x[i + half] = b * cos + a * sin;
    }
}

fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

/// The final hidden states `[n, hidden]` (after the last RMSNorm).
pub fn hidden_states(ckpt: &Checkpoint, tokens: &[u32]) -> Result<Vec<f32>> {
    let c = &ckpt.config;
    c.validate()?;
    let (h, n) = (c.hidden_size, tokens.len());
    let (nh, nkv, hd, f) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim(), c.intermediate_size);
    let group = nh / nkv;
    let emb = ckpt.tensor("model.embed_tokens.weight")?;
    let mut x = Vec::with_capacity(n * h);
    for &t in tokens {
        ensure!((t as usize) < c.vocab_size, "token id {t} >= vocab size {}", c.vocab_size);
        x.extend_from_slice(&emb.data[t as usize * h..(t as usize + 1) * h]);
    }
    let scale = 1.0 / (hd as f32).sqrt();
    for l in 0..c.num_hidden_layers {
        let w = |s: &str| ckpt.tensor(&format!("model.layers.{l}.{s}"));
        // Attention block.
        let mut nx = x.clone();
        rms_norm(&mut nx, &w("input_layernorm.weight")?.data, c.rms_norm_eps);
        let mut q = matmul_t(&nx, n, h, &w("self_attn.q_proj.weight")?.data, nh * hd);
        let mut k = matmul_t(&nx, n, h, &w("self_attn.k_proj.weight")?.data, nkv * hd);
        let v = matmul_t(&nx, n, h, &w("self_attn.v_proj.weight")?.data, nkv * hd);
        for t in 0..n {
            for head in q[t * nh * hd..(t + 1) * nh * hd].chunks_mut(hd) {
                rope_rotate_half(head, t, c.rope_theta);
            }
            for head in k[t * nkv * hd..(t + 1) * nkv * hd].chunks_mut(hd) {
                rope_rotate_half(head, t, c.rope_theta);
            }
        }
        let mut attn = vec![0f32; n * nh * hd];
        let mut p = vec![0f32; n];
        for head in 0..nh {
            let kvh = head / group;
            for t in 0..n {
                let qv = &q[(t * nh + head) * hd..(t * nh + head + 1) * hd];
                let mut max = f32::NEG_INFINITY;
                for s in 0..=t {
                    let kv = &k[(s * nkv + kvh) * hd..(s * nkv + kvh + 1) * hd];
                    p[s] = dot(qv, kv) * scale;
                    max = max.max(p[s]);
                }
                let mut sum = 0f32;
                for ps in &mut p[..=t] {
                    *ps = (*ps - max).exp();
                    sum += *ps;
                }
                let out = &mut attn[(t * nh + head) * hd..(t * nh + head + 1) * hd];
                for s in 0..=t {
                    let vv = &v[(s * nkv + kvh) * hd..(s * nkv + kvh + 1) * hd];
                    let a = p[s] / sum;
                    for (o, vj) in out.iter_mut().zip(vv) {
                        *o += a * vj;
                    }
                }
            }
        }
        let o = matmul_t(&attn, n, nh * hd, &w("self_attn.o_proj.weight")?.data, h);
        for (xi, oi) in x.iter_mut().zip(&o) {
            *xi += oi;
        }
        // MLP block.
        let mut nx = x.clone();
        rms_norm(&mut nx, &w("post_attention_layernorm.weight")?.data, c.rms_norm_eps);
        let gate = matmul_t(&nx, n, h, &w("mlp.gate_proj.weight")?.data, f);
        let up = matmul_t(&nx, n, h, &w("mlp.up_proj.weight")?.data, f);
        let act: Vec<f32> = gate.iter().zip(&up).map(|(&g, &u)| silu(g) * u).collect();
        let down = matmul_t(&act, n, f, &w("mlp.down_proj.weight")?.data, h);
        for (xi, di) in x.iter_mut().zip(&down) {
            *xi += di;
        }
    }
    rms_norm(&mut x, &ckpt.tensor("model.norm.weight")?.data, c.rms_norm_eps);
    Ok(x)
}

/// Logits `[n][vocab]` for every position of `tokens` (position `t` predicts token `t + 1`).
pub fn try_logits(ckpt: &Checkpoint, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
    let (h, v) = (ckpt.config.hidden_size, ckpt.config.vocab_size);
    let x = hidden_states(ckpt, tokens)?;
    let y = matmul_t(&x, tokens.len(), h, &ckpt.lm_head()?.data, v);
    Ok(y.chunks(v).map(<[f32]>::to_vec).collect())
}

/// [`try_logits`], panicking on a malformed checkpoint or an out-of-vocabulary token.
pub fn logits(ckpt: &Checkpoint, tokens: &[u32]) -> Vec<Vec<f32>> {
    try_logits(ckpt, tokens).expect("reference forward")
}

/// Logits of the last position only (skips the output projection of the others).
pub fn last_logits(ckpt: &Checkpoint, tokens: &[u32]) -> Result<Vec<f32>> {
    ensure!(!tokens.is_empty(), "no tokens");
    let h = ckpt.config.hidden_size;
    let x = hidden_states(ckpt, tokens)?;
    let last = &x[(tokens.len() - 1) * h..];
    Ok(matmul_t(last, 1, h, &ckpt.lm_head()?.data, ckpt.config.vocab_size))
}

/// `log p(tokens[t+1] | tokens[..=t])` for every `t`, from one forward.
pub fn token_log_probs(ckpt: &Checkpoint, tokens: &[u32]) -> Result<Vec<f64>> {
    ensure!(tokens.len() >= 2, "need at least two tokens");
    let lg = try_logits(ckpt, tokens)?;
    Ok((0..tokens.len() - 1)
        .map(|t| {
            let row = &lg[t];
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let lse = max + row.iter().map(|&z| (z as f64 - max).exp()).sum::<f64>().ln();
            row[tokens[t + 1] as usize] as f64 - lse
        })
        .collect())
}

/// Perplexity `exp(-mean log p)` of `tokens[1..]` given their prefixes.
pub fn perplexity(ckpt: &Checkpoint, tokens: &[u32]) -> Result<f64> {
    let lp = token_log_probs(ckpt, tokens)?;
    Ok((-lp.iter().sum::<f64>() / lp.len() as f64).exp())
}

/// Index of the largest value (the first one on ties).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy decoding: up to `max_new` tokens after `prompt`, stopping after `stop` if given.
/// Returns only the new tokens.
pub fn greedy(ckpt: &Checkpoint, prompt: &[u32], max_new: usize, stop: Option<u32>) -> Result<Vec<u32>> {
    let mut seq = prompt.to_vec();
    let mut new = Vec::new();
    for _ in 0..max_new {
        let next = argmax(&last_logits(ckpt, &seq)?);
        seq.push(next);
        new.push(next);
        if Some(next) == stop {
            break;
        }
    }
    Ok(new)
}
