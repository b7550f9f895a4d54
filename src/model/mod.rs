//! The causal transformer LM shared by every role in the pipeline (policy, reference, scalar RM,
//! seq2seq RM, judge), its KV-cache generation and the batch layout every stage uses.
//!
//! One layout serves training and generation alike (see [`pack`]): each row is
//! `[pad.. | prefix | continuation | pad..]`, the prefix left-padded to a common width `P` and the
//! continuation right-padded. Positions count real tokens only, and attention never looks at pads,
//! so a row's numbers do not depend on how much padding its batch mates forced on it. Generation
//! builds exactly this layout token by token, which is why log-probs recorded while sampling equal
//! those of the training forward pass (tested below).

mod attention;
pub mod generate;
pub mod load;
pub mod lora;
mod packed;

use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig, RmsNorm,
    RmsNormConfig,
};
use burn::prelude::*;
use crate::fused::log_softmax;
use lora::{Adapter, adapted};
pub use packed::{Packed, causal_bias, pack, positions_from_attn};
use burn::tensor::activation::gelu;
use serde::{Deserialize, Serialize};

/// Additive attention bias for keys that must not be seen. Finite, so that a fully masked row
/// (a left pad acting as query) gives a uniform softmax instead of NaN; such rows are never read.
pub const MASKED: f32 = -1.0e9;

/// LayerNorm epsilon of the `gpt` family (burn's default, PyTorch's too).
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// Transformer family. `gpt`: learned positions, LayerNorm, GELU MLP, separate LM head (the
/// from-scratch presets). `llama`: rotary positions, RMSNorm, SwiGLU MLP, grouped-query attention,
/// optionally tied embeddings (pretrained checkpoints such as SmolLM2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    #[default]
    Gpt,
    Llama,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Shape of the transformer. `preset` names the size in every results table. Fields that only the
/// `llama` family uses are left out of the written spec when unset, so `gpt` configs read as before.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmConfig {
    pub preset: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub arch: Arch,
    #[serde(default)]
    pub vocab_size: usize,
    #[serde(default)]
    pub d_model: usize,
    #[serde(default)]
    pub n_layers: usize,
    #[serde(default)]
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention); 0 = `n_heads`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub n_kv_heads: usize,
    #[serde(default)]
    pub d_ff: usize,
    #[serde(default)]
    pub max_seq_len: usize,
    /// Rotary base (`llama` only).
    #[serde(default, skip_serializing_if = "is_default")]
    pub rope_theta: f64,
    /// RMSNorm epsilon (`llama` only; LayerNorm keeps burn's 1e-5).
    #[serde(default, skip_serializing_if = "is_default")]
    pub norm_eps: f64,
    /// LM head shares the token-embedding matrix.
    #[serde(default, skip_serializing_if = "is_default")]
    pub tie_embeddings: bool,
    /// Pretrained weights (a `.gguf` file or a Hugging Face folder); the model starts from them
    /// instead of pretraining, and its tokenizer replaces the trained one.
    #[serde(default, skip_serializing_if = "is_default")]
    pub checkpoint: String,
    /// LoRA adapters for every fine-tuned role (`rank = 0`: full fine-tuning); see [`lora`].
    #[serde(default, skip_serializing_if = "is_default")]
    pub lora: lora::LoraConfig,
}

impl LmConfig {
    /// Fills unset fields of a built-in pretrained preset (`smollm2-135m`: `preset` alone gives
    /// every shape field and the checkpoint path; fields the spec sets itself win, e.g. a shorter
    /// `max_seq_len`), then the usual rotary base and RMSNorm epsilon of any `llama` config that
    /// leaves them out. The preset goes first, so that its own rotary base is not pre-empted.
    pub fn apply_preset(&mut self) {
        if self.preset == "smollm2-135m" {
            let fill = |v: &mut usize, x: usize| {
                if *v == 0 {
                    *v = x
                }
            };
            self.arch = Arch::Llama;
            fill(&mut self.vocab_size, 49152);
            fill(&mut self.d_model, 576);
            fill(&mut self.n_layers, 30);
            fill(&mut self.n_heads, 9);
            fill(&mut self.n_kv_heads, 3);
            fill(&mut self.d_ff, 1536);
            fill(&mut self.max_seq_len, 2048);
            if self.rope_theta == 0.0 {
                self.rope_theta = 100_000.0;
            }
            self.tie_embeddings = true;
            if self.checkpoint.is_empty() {
                self.checkpoint = "models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf".into();
            }
        }
        if self.arch == Arch::Llama {
            if self.rope_theta == 0.0 {
                self.rope_theta = 10_000.0;
            }
            if self.norm_eps == 0.0 {
                self.norm_eps = 1e-5;
            }
        }
    }

    pub fn kv_heads(&self) -> usize {
        if self.n_kv_heads == 0 { self.n_heads } else { self.n_kv_heads }
    }

    pub fn is_pretrained(&self) -> bool {
        !self.checkpoint.is_empty()
    }
}

/// LayerNorm (`gpt`) or RMSNorm (`llama`).
#[derive(Module, Debug)]
pub enum Norm {
    Layer(LayerNorm),
    Rms(RmsNorm),
}

impl Norm {
    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Norm::Layer(n) => crate::fused::layer_norm(n, x, LAYER_NORM_EPS),
            Norm::Rms(n) => n.forward(x),
        }
    }
}

/// `fc2(gelu(fc1 x))` (`gpt`) or `down(silu(gate x) * up x)` with gate and up fused into one
/// matmul (`llama`).
#[derive(Module, Debug)]
pub enum Mlp {
    Gelu(GeluMlp),
    SwiGlu(SwiGluMlp),
}

#[derive(Module, Debug)]
pub struct GeluMlp {
    fc1: Linear,
    fc2: Linear,
    fc1_lora: Option<Adapter>,
    fc2_lora: Option<Adapter>,
}

#[derive(Module, Debug)]
pub struct SwiGluMlp {
    gate_up: Linear,
    down: Linear,
    d_ff: usize,
    gate_up_lora: Option<Adapter>,
    down_lora: Option<Adapter>,
}

impl Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            Mlp::Gelu(m) => adapted(&m.fc2, &m.fc2_lora, gelu(adapted(&m.fc1, &m.fc1_lora, x))),
            Mlp::SwiGlu(m) => {
                let gu = adapted(&m.gate_up, &m.gate_up_lora, x);
                let gate = gu.clone().narrow(2, 0, m.d_ff);
                let up = gu.narrow(2, m.d_ff, m.d_ff);
                adapted(&m.down, &m.down_lora, crate::fused::swiglu(gate, up))
            }
        }
    }
}

#[derive(Module, Debug)]
pub struct Block {
    ln1: Norm,
    /// Fused query/key/value projection: `d_model + 2 · n_kv_heads · d_head` outputs.
    qkv: Linear,
    proj: Linear,
    ln2: Norm,
    mlp: Mlp,
    n_heads: usize,
    n_kv_heads: usize,
    /// LoRA adapters of `qkv` and `proj` (`model.lora`; `None` in full fine-tuning).
    qkv_lora: Option<Adapter>,
    proj_lora: Option<Adapter>,
}

/// Decoder-only LM with three heads: next-token logits, a scalar score (reward models, judge) and a
/// value estimate (PPO critic). A role uses the heads it needs; unused heads get no gradient.
#[derive(Module, Debug)]
pub struct Lm {
    tok_emb: Embedding,
    /// Learned positions (`gpt`); `None` with rotary positions.
    pos_emb: Option<Embedding>,
    blocks: Vec<Block>,
    ln_f: Norm,
    /// `None` when tied to `tok_emb`.
    lm_head: Option<Linear>,
    score_head: Linear,
    value_head: Linear,
    /// Rotary base; 0 = no rotary positions.
    rope_theta: f64,
}

/// Keys and values of every layer for the tokens seen so far: `[B, H, T_seen, d_head]`.
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
}

impl KvCache {
    pub fn new(n_layers: usize) -> Self {
        Self { layers: (0..n_layers).map(|_| None).collect() }
    }
}

impl LmConfig {
    pub fn init(&self, device: &Device) -> Lm {
        let small = Initializer::Normal { mean: 0.0, std: 0.02 };
        let d = self.d_model;
        let llama = self.arch == Arch::Llama;
        let kv = self.kv_heads() * (d / self.n_heads);
        let bias = !llama;
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).with_bias(bias).with_initializer(small.clone()).init(device);
        let norm = || {
            if llama {
                Norm::Rms(RmsNormConfig::new(d).with_epsilon(self.norm_eps).init(device))
            } else {
                Norm::Layer(LayerNormConfig::new(d).with_epsilon(LAYER_NORM_EPS).init(device))
            }
        };
        let blocks = (0..self.n_layers)
            .map(|_| Block {
                ln1: norm(),
                qkv: linear(d, d + 2 * kv),
                proj: linear(d, d),
                ln2: norm(),
                mlp: if llama {
                    Mlp::SwiGlu(SwiGluMlp { gate_up: linear(d, 2 * self.d_ff), down: linear(self.d_ff, d), d_ff: self.d_ff, gate_up_lora: None, down_lora: None })
                } else {
                    Mlp::Gelu(GeluMlp { fc1: linear(d, self.d_ff), fc2: linear(self.d_ff, d), fc1_lora: None, fc2_lora: None })
                },
                n_heads: self.n_heads,
                n_kv_heads: self.kv_heads(),
                qkv_lora: None,
                proj_lora: None,
            })
            .collect();
        Lm {
            tok_emb: EmbeddingConfig::new(self.vocab_size, d)
                .with_initializer(small.clone())
                .init(device),
            pos_emb: (!llama).then(|| {
                EmbeddingConfig::new(self.max_seq_len, d)
                    .with_initializer(small.clone())
                    .init(device)
            }),
            blocks,
            ln_f: norm(),
            lm_head: (!self.tie_embeddings).then(|| {
                LinearConfig::new(d, self.vocab_size)
                    .with_bias(false)
                    .with_initializer(small)
                    .init(device)
            }),
            // Zero-initialised heads: every score and value starts at exactly 0.
            score_head: LinearConfig::new(d, 1).with_initializer(Initializer::Zeros).init(device),
            value_head: LinearConfig::new(d, 1).with_initializer(Initializer::Zeros).init(device),
            rope_theta: if llama { self.rope_theta } else { 0.0 },
        }
    }

    /// Initialises with burn's RNG seeded to `seed`, reproducibly even when other threads of the
    /// process initialise models at the same time: the backend RNG is process-global, and burn
    /// draws parameters lazily, so seeding, initialising and the first use (one forward pass, which
    /// materialises every random parameter) happen under one lock.
    pub fn init_seeded(&self, device: &Device, seed: u64) -> Lm {
        seeded(device, seed, || {
            let lm = self.init(device);
            lm.probe_all_heads(device);
            lm
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.d_model == 0 || self.n_layers == 0 || self.n_heads == 0 || self.d_ff == 0 {
            return Err("d_model, n_layers, n_heads and d_ff must all be > 0".into());
        }
        if self.kv_heads() == 0 || self.n_heads % self.kv_heads() != 0 {
            return Err(format!("n_heads ({}) must be a multiple of n_kv_heads ({})", self.n_heads, self.kv_heads()));
        }
        if self.arch == Arch::Llama && (self.d_model / self.n_heads.max(1)) % 2 != 0 {
            return Err("llama: d_model / n_heads must be even (rotary positions)".into());
        }
        if self.arch == Arch::Llama && !(self.rope_theta > 0.0 && self.norm_eps > 0.0) {
            return Err("llama: rope_theta and norm_eps must be > 0".into());
        }
        if self.d_model % self.n_heads != 0 {
            return Err(format!(
                "d_model ({}) must be divisible by n_heads ({})",
                self.d_model, self.n_heads
            ));
        }
        if self.vocab_size < 64 {
            return Err(format!("vocab_size ({}) must be at least 64", self.vocab_size));
        }
        if self.max_seq_len < 8 {
            return Err(format!("max_seq_len ({}) must be at least 8", self.max_seq_len));
        }
        self.lora.validate()
    }
}

/// Runs `draw` with burn's process-global RNG seeded to `seed`, under one lock, so that two
/// threads drawing random parameters at once (initialising models, attaching LoRA adapters) each
/// get their own seed's draws.
pub(crate) fn seeded<T>(device: &Device, seed: u64, draw: impl FnOnce() -> T) -> T {
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    draw()
}

/// Rotary tables `(cos, sin)`, each `[B, 1, T, d_head]`, for the given positions (Hugging Face's
/// `rotate_half` convention: frequency `i` drives dims `i` and `i + d_head/2`).
fn rope_tables(positions: Tensor<2, Int>, d_head: usize, theta: f64) -> (Tensor<4>, Tensor<4>) {
    let [b, t] = positions.dims();
    let device = positions.device();
    let half = d_head / 2;
    let inv: Vec<f32> = (0..half).map(|i| (1.0 / theta.powf((2 * i) as f64 / d_head as f64)) as f32).collect();
    let inv = f32_tensor(inv, [1, 1, half], &device);
    let angles = positions.float().reshape([b, t, 1]) * inv;
    let angles = Tensor::cat(vec![angles.clone(), angles], 2).unsqueeze_dim::<4>(1);
    (angles.clone().cos(), angles.sin())
}

fn apply_rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let dh = x.dims()[3];
    let half = dh / 2;
    let rotated = Tensor::cat(vec![x.clone().narrow(3, half, half).neg(), x.clone().narrow(3, 0, half)], 3);
    x * cos.clone() + rotated * sin.clone()
}

impl Block {
    /// `x`: `[B, T, D]`; `bias`: `[B, 1, T, T_past + T]`; the cache (if any) gets this chunk's keys
    /// and values appended (after the rotary map, with `n_kv_heads` heads).
    fn forward(
        &self,
        x: Tensor<3>,
        bias: Tensor<4>,
        rope: Option<&(Tensor<4>, Tensor<4>)>,
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
    ) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let (h, hkv) = (self.n_heads, self.n_kv_heads);
        let dh = d / h;
        let kvd = hkv * dh;
        let qkv = adapted(&self.qkv, &self.qkv_lora, self.ln1.forward(x.clone()));
        let split = |start: usize, width: usize, heads: usize| {
            qkv.clone()
                .narrow(2, start, width)
                .reshape([b, t, heads, dh])
                .swap_dims(1, 2)
        };
        let (mut q, mut k, mut v) = (split(0, d, h), split(d, kvd, hkv), split(d + kvd, kvd, hkv));
        if let Some((cos, sin)) = rope {
            q = apply_rope(q, cos, sin);
            k = apply_rope(k, cos, sin);
        }
        if let Some(slot) = cache {
            if let Some((pk, pv)) = slot.take() {
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let ctx = attention::attend(q, k, v, bias);
        let ctx = ctx.swap_dims(1, 2).reshape([b, t, d]);
        let x = x + adapted(&self.proj, &self.proj_lora, ctx);
        let m = self.mlp.forward(self.ln2.forward(x.clone()));
        x + m
    }
}

impl Lm {
    fn embed(&self, tokens: Tensor<2, Int>, positions: Tensor<2, Int>) -> (Tensor<3>, Option<(Tensor<4>, Tensor<4>)>) {
        let x = self.tok_emb.forward(tokens);
        match &self.pos_emb {
            Some(pe) => (x + pe.forward(positions), None),
            None => {
                let [_, d] = self.tok_emb.weight.shape().dims();
                let dh = d / self.blocks[0].n_heads;
                (x, Some(rope_tables(positions, dh, self.rope_theta)))
            }
        }
    }

    /// Final hidden states `[B, T, D]` of a packed batch.
    pub fn hidden(&self, tokens: Tensor<2, Int>, positions: Tensor<2, Int>, bias: Tensor<4>) -> Tensor<3> {
        let (mut x, rope) = self.embed(tokens, positions);
        for block in &self.blocks {
            x = block.forward(x, bias.clone(), rope.as_ref(), None);
        }
        self.ln_f.forward(x)
    }

    /// [`Lm::hidden`] of a host-side packed batch.
    pub fn hidden_packed(&self, packed: &Packed, device: &Device) -> Tensor<3> {
        self.hidden(packed.tokens_tensor(device), packed.positions_tensor(device), packed.bias_tensor(device))
    }

    /// Same as [`Lm::hidden`] for a chunk of new tokens, attending to (and extending) the cache.
    pub fn hidden_cached(
        &self,
        tokens: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        bias: Tensor<4>,
        cache: &mut KvCache,
    ) -> Tensor<3> {
        let (mut x, rope) = self.embed(tokens, positions);
        for (block, slot) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            x = block.forward(x, bias.clone(), rope.as_ref(), Some(slot));
        }
        self.ln_f.forward(x)
    }

    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [b, t, d] = hidden.dims();
                let w = self.tok_emb.weight.val(); // [V, D]
                let v = w.dims()[0];
                hidden.reshape([b * t, d]).matmul(w.transpose()).reshape([b, t, v])
            }
        }
    }

    /// Scalar score at every position `[B, T]`.
    pub fn scores(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, t, _] = hidden.dims();
        self.score_head.forward(hidden).reshape([b, t])
    }

    /// Value estimate at every position `[B, T]`.
    pub fn values(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, t, _] = hidden.dims();
        self.value_head.forward(hidden).reshape([b, t])
    }

    /// Scalar score `[B]` of each `(prefix, continuation)` row, read at its last real continuation
    /// token (never on padding). Keeps autodiff when the model has it (RM training).
    pub fn scores_at_last(&self, prefixes: &[Vec<u32>], conts: &[Vec<u32>], device: &Device) -> Tensor<1> {
        let packed = pack(prefixes, conts, crate::text::PAD);
        let hidden = self.hidden_packed(&packed, device);
        let idx: Vec<i64> = packed.last_real_index().iter().map(|&i| i as i64).collect();
        self.scores(hidden).gather(1, i64_tensor(idx, [packed.b, 1], device)).reshape([packed.b])
    }

    /// One probe forward through every head, so that every lazily initialised parameter exists.
    /// (Not burn's `Module::materialize`: the forward's order of first use is the order in which
    /// random parameters draw from the seeded RNG, which the committed results were made with.)
    pub(crate) fn probe_all_heads(&self, device: &Device) {
        let probe = pack(&[vec![crate::text::BOS]], &[vec![]], crate::text::PAD);
        let hidden = self.hidden_packed(&probe, device);
        let _ = to_vec_f32(self.logits(hidden.clone()));
        let _ = to_vec_f32(self.scores(hidden.clone()) + self.values(hidden));
    }

    pub fn n_layers(&self) -> usize {
        self.blocks.len()
    }

    pub fn vocab_size(&self) -> usize {
        let [v, _] = self.tok_emb.weight.shape().dims();
        v
    }

    /// Parameters of the trunk and the LM head (the two small scalar heads excluded).
    pub fn lm_params(&self) -> usize {
        self.num_params() - self.score_head.num_params() - self.value_head.num_params()
    }
}

/// Log-probability of each next token: `logits [B, T, V]`, `targets [B, T-1]` → `[B, T-1]`, where
/// entry `i` is `log p(token_{i+1} | tokens_{<=i})`.
pub fn next_token_logprobs(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<2> {
    crate::fused::next_token_logprobs(logits, targets)
}

/// Entropy of the next-token distribution at each position `[B, T-1]`.
pub fn next_token_entropy(logits: Tensor<3>) -> Tensor<2> {
    let [_, t, _] = logits.dims();
    entropy_of(log_softmax(logits.narrow(1, 0, t - 1), 2))
}

/// Entropy `-Σ p log p` over the last axis of log-probabilities `[B, T, V]` → `[B, T]`.
pub fn entropy_of(log_p: Tensor<3>) -> Tensor<2> {
    let p = log_p.clone().exp();
    (p * log_p).sum_dim(2).squeeze_dim::<2>(2).neg()
}

/// Reads a 2-D float tensor into a host `Vec<f32>` (row-major).
pub fn to_vec_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("float tensor readback")
}

pub fn to_vec_i64<const D: usize>(t: Tensor<D, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().try_into_vec::<i64>().expect("int tensor readback")
}

pub fn f32_tensor<const D: usize>(v: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

pub fn i64_tensor<const D: usize>(v: Vec<i64>, shape: [usize; D], device: &Device) -> Tensor<D, Int> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smollm2_preset_keeps_its_rotary_base_when_the_spec_names_the_family() {
        for arch in [Arch::Gpt, Arch::Llama] {
            let mut c = LmConfig { preset: "smollm2-135m".into(), arch, ..Default::default() };
            c.apply_preset();
            assert_eq!((c.arch, c.rope_theta, c.norm_eps, c.d_model, c.n_kv_heads), (Arch::Llama, 100_000.0, 1e-5, 576, 3));
        }
        let mut c = LmConfig { preset: "x".into(), arch: Arch::Llama, ..Default::default() };
        c.apply_preset();
        assert_eq!((c.rope_theta, c.norm_eps), (10_000.0, 1e-5));
    }

    #[test]
    fn pack_left_pads_prefixes_and_right_pads_continuations() {
        let p = pack(&[vec![7, 8, 9], vec![5]], &[vec![20], vec![30, 31, 32]], 0);
        assert_eq!((p.b, p.p, p.t), (2, 3, 6));
        assert_eq!(p.tokens, vec![7, 8, 9, 20, 0, 0, 0, 0, 5, 30, 31, 32]);
        assert_eq!(p.attn, vec![true, true, true, true, false, false, false, false, true, true, true, true]);
        // Positions count real tokens only.
        assert_eq!(p.positions, vec![0, 1, 2, 3, 0, 0, 0, 0, 0, 1, 2, 3]);
        assert_eq!(p.last_real_index(), vec![3, 5]);
    }

    #[test]
    fn continuation_mask_covers_only_target_tokens() {
        let p = pack(&[vec![7, 8, 9], vec![5]], &[vec![20], vec![30, 31, 32]], 0);
        let (targets, mask) = p.continuation_targets();
        // Row 0 predicts 20 from index 2; row 1 predicts 30, 31, 32 from indices 2, 3, 4.
        assert_eq!(mask, vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        assert_eq!(&targets[0..5], &[8, 9, 20, 0, 0]);
        assert_eq!(&targets[5..10], &[0, 5, 30, 31, 32]);
    }

    #[test]
    fn causal_bias_masks_future_and_padding() {
        let attn = vec![false, true, true];
        let bias = causal_bias(&attn, 1, 3);
        // Query 2 sees keys 1 and 2 (key 0 is a pad); query 1 sees key 1 only.
        assert_eq!(&bias[6..9], &[MASKED, 0.0, 0.0]);
        assert_eq!(&bias[3..6], &[MASKED, 0.0, MASKED]);
        // A pad query sees nothing (uniform softmax, never read).
        assert_eq!(&bias[0..3], &[MASKED, MASKED, MASKED]);
    }
}
