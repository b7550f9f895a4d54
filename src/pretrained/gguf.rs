//! GGUF (llama.cpp) → [`Checkpoint`] with Hugging Face names, shapes and RoPE layout.
//!
//! The container is parsed by `gguf-rs-lib` (see the module doc of [`super`] for why); this file
//! maps llama.cpp's tensor names to HF's, reverses GGUF's dimension order (GGUF lists `ne[0]`, the
//! fastest-varying dimension, first; PyTorch lists it last, so the row-major bytes are already in
//! PyTorch order), dequantizes ([`super::quant`]) and undoes the Q/K row permutation of llama.cpp's
//! `convert_hf_to_gguf.py` ([`unpermute_qk`]).

use super::quant::{GgmlType, dequantize};
use super::tokenizer::tokenizer_from_gguf_metadata;
use super::{Checkpoint, HostTensor, LlamaConfig};
use anyhow::{Context, Result, anyhow, bail, ensure};
use gguf_rs_lib::format::metadata::{Metadata, MetadataValue};
use gguf_rs_lib::tensor::TensorType;
use std::collections::BTreeMap;
use std::path::Path;

/// llama.cpp → Hugging Face tensor name (`None` for names this loader does not know).
pub fn hf_name(gguf_name: &str) -> Option<String> {
    let fixed = match gguf_name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(n) = fixed {
        return Some(n.to_string());
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let part = match rest {
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{part}"))
}

/// Hugging Face → llama.cpp tensor name (inverse of [`hf_name`]).
pub fn gguf_name(hf_name: &str) -> Option<String> {
    let fixed = match hf_name {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(n) = fixed {
        return Some(n.to_string());
    }
    let (layer, rest) = hf_name.strip_prefix("model.layers.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let part = match rest {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{part}"))
}

/// Every `q_proj`/`k_proj` of `ckpt` put into llama.cpp's row order ([`permute_qk`]): what a
/// loader that forgot to un-permute would hand the model. For tests of that failure.
pub fn permute_checkpoint_qk(ckpt: &mut Checkpoint) -> Result<()> {
    let c = ckpt.config.clone();
    for (name, t) in ckpt.tensors.iter_mut() {
        let heads = if name.ends_with("q_proj.weight") {
            c.num_attention_heads
        } else if name.ends_with("k_proj.weight") {
            c.num_key_value_heads
        } else {
            continue;
        };
        t.data = permute_qk(&t.data, t.shape[0], t.shape[1], heads)?;
    }
    Ok(())
}

/// llama.cpp's Q/K permutation (`LlamaModel.permute` in `convert_hf_to_gguf.py`), applied to a
/// row-major `[rows, cols]` matrix whose rows are `n_head` heads of `rows / n_head` dims:
/// within each head, HF row `half·(hd/2) + i` moves to row `2i + half`. It turns HF's
/// `rotate_half` pairing `(i, i + hd/2)` into the adjacent pairing `(2i, 2i+1)` that llama.cpp's
/// RoPE kernel rotates. Pass `num_attention_heads` for `q_proj` and `num_key_value_heads` for
/// `k_proj`.
pub fn permute_qk(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Result<Vec<f32>> {
    move_rows(data, rows, cols, n_head, |hd, r| {
        let (half, i) = (r / (hd / 2), r % (hd / 2));
        2 * i + half
    })
}

/// Inverse of [`permute_qk`]: llama.cpp row `2i + half` goes back to HF row `half·(hd/2) + i`.
pub fn unpermute_qk(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Result<Vec<f32>> {
    move_rows(data, rows, cols, n_head, |hd, r| {
        let (i, half) = (r / 2, r % 2);
        half * (hd / 2) + i
    })
}

/// Copies row `h·hd + r` of `data` to row `h·hd + dest(hd, r)` for every head `h`.
fn move_rows(
    data: &[f32],
    rows: usize,
    cols: usize,
    n_head: usize,
    dest: impl Fn(usize, usize) -> usize,
) -> Result<Vec<f32>> {
    ensure!(data.len() == rows * cols, "Q/K permutation: {} values for [{rows}, {cols}]", data.len());
    ensure!(n_head > 0 && rows % (2 * n_head) == 0, "Q/K permutation: {rows} rows, {n_head} heads");
    let hd = rows / n_head;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for r in 0..hd {
            let src = (h * hd + r) * cols;
            let dst = (h * hd + dest(hd, r)) * cols;
            out[dst..dst + cols].copy_from_slice(&data[src..src + cols]);
        }
    }
    Ok(out)
}

fn ggml_type(t: TensorType) -> Result<GgmlType> {
    Ok(match t {
        TensorType::F32 => GgmlType::F32,
        TensorType::F16 => GgmlType::F16,
        TensorType::BF16 => GgmlType::BF16,
        TensorType::Q4_0 => GgmlType::Q4_0,
        TensorType::Q4_1 => GgmlType::Q4_1,
        TensorType::Q8_0 => GgmlType::Q8_0,
        other => bail!(
            "GGML tensor type {other:?} is not supported (supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0)"
        ),
    })
}

/// Typed access to GGUF metadata, with the key in every error.
pub(crate) struct Meta<'a>(pub &'a Metadata);

impl Meta<'_> {
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.0.get(key)
    }
    pub fn str(&self, key: &str) -> Result<&str> {
        self.get(key)
            .with_context(|| format!("GGUF metadata has no {key}"))?
            .as_str()
            .with_context(|| format!("GGUF metadata {key} is not a string"))
    }
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let n = v
            .as_u64()
            .or_else(|| v.as_i64().and_then(|i| u64::try_from(i).ok()))
            .with_context(|| format!("GGUF metadata {key} is not a non-negative integer: {v}"))?;
        Ok(Some(n))
    }
    pub fn usize(&self, key: &str) -> Result<usize> {
        let n = self.opt_u64(key)?.with_context(|| format!("GGUF metadata has no {key}"))?;
        usize::try_from(n).with_context(|| format!("GGUF metadata {key} = {n} is too large"))
    }
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        self.opt_u64(key)?
            .map(|n| u32::try_from(n).with_context(|| format!("GGUF metadata {key} = {n}")))
            .transpose()
    }
    pub fn f64(&self, key: &str) -> Result<Option<f64>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let x = v.as_f64().with_context(|| format!("GGUF metadata {key} is not a float: {v}"))?;
        // An f32 such as 1e-5 widens to 9.99999974e-6; keep the decimal the file's writer meant.
        let x = match v {
            MetadataValue::F32(f) => f.to_string().parse().unwrap_or(x),
            _ => x,
        };
        Ok(Some(x))
    }
    /// A string array (e.g. `tokenizer.ggml.tokens`).
    pub fn strings(&self, key: &str) -> Result<Vec<&str>> {
        let MetadataValue::Array(arr) =
            self.get(key).with_context(|| format!("GGUF metadata has no {key}"))?
        else {
            bail!("GGUF metadata {key} is not an array");
        };
        arr.iter()
            .map(|v| v.as_str().with_context(|| format!("GGUF metadata {key}: non-string item")))
            .collect()
    }
    /// An integer array (e.g. `tokenizer.ggml.token_type`).
    pub fn ints(&self, key: &str) -> Result<Vec<i64>> {
        let MetadataValue::Array(arr) =
            self.get(key).with_context(|| format!("GGUF metadata has no {key}"))?
        else {
            bail!("GGUF metadata {key} is not an array");
        };
        arr.iter()
            .map(|v| {
                v.as_i64()
                    .or_else(|| v.as_u64().and_then(|u| i64::try_from(u).ok()))
                    .with_context(|| format!("GGUF metadata {key}: non-integer item {v}"))
            })
            .collect()
    }
}

/// Reads `path` (GGUF v3, `general.architecture = llama`) into a [`Checkpoint`]: HF names and
/// shapes, `f32` data, Q/K rows in HF `rotate_half` order, the config from `llama.*` metadata
/// (`tie_word_embeddings` = the file has no `output.weight`) and, for `tokenizer.ggml.model =
/// gpt2`, a byte-level BPE tokenizer rebuilt from the `tokenizer.ggml.*` metadata.
pub fn load_gguf(path: &Path) -> Result<Checkpoint> {
    load_gguf_inner(path).with_context(|| format!("loading GGUF {}", path.display()))
}

fn load_gguf_inner(path: &Path) -> Result<Checkpoint> {
    let mut reader = gguf_rs_lib::reader::open_gguf_file(path).map_err(|e| anyhow!("{e}"))?;
    let meta = Meta(reader.metadata());
    let arch = meta.str("general.architecture")?;
    ensure!(arch == "llama", "architecture {arch:?} is not supported (only llama)");
    if let Some(v) = meta.get("llama.rope.scaling.type") {
        let kind = v.as_str().unwrap_or("?");
        ensure!(kind == "none", "RoPE scaling {kind:?} is not supported");
    }

    let infos: Vec<(String, Vec<u64>, TensorType)> = reader
        .tensor_infos()
        .iter()
        .map(|t| (t.name().to_string(), t.shape().dims().to_vec(), t.tensor_type()))
        .collect();
    let has = |name: &str| infos.iter().any(|(n, _, _)| n == name);
    let embd_rows = infos
        .iter()
        .find(|(n, _, _)| n == "token_embd.weight")
        .and_then(|(_, d, _)| d.get(1).copied())
        .context("no token_embd.weight tensor")? as usize;

    let tokens = meta.strings("tokenizer.ggml.tokens").ok();
    let vocab_size = tokens.as_ref().map_or(embd_rows, Vec::len);
    ensure!(
        vocab_size == embd_rows,
        "tokenizer has {vocab_size} tokens but token_embd.weight has {embd_rows} rows"
    );
    let config = LlamaConfig {
        vocab_size,
        hidden_size: meta.usize("llama.embedding_length")?,
        intermediate_size: meta.usize("llama.feed_forward_length")?,
        num_hidden_layers: meta.usize("llama.block_count")?,
        num_attention_heads: meta.usize("llama.attention.head_count")?,
        num_key_value_heads: match meta.opt_u64("llama.attention.head_count_kv")? {
            Some(n) => n as usize,
            None => meta.usize("llama.attention.head_count")?,
        },
        rms_norm_eps: meta
            .f64("llama.attention.layer_norm_rms_epsilon")?
            .context("GGUF metadata has no llama.attention.layer_norm_rms_epsilon")?,
        rope_theta: meta.f64("llama.rope.freq_base")?.unwrap_or(10_000.0),
        max_position_embeddings: meta.usize("llama.context_length")?,
        tie_word_embeddings: !has("output.weight"),
        bos_token_id: meta.opt_u32("tokenizer.ggml.bos_token_id")?,
        eos_token_id: meta.opt_u32("tokenizer.ggml.eos_token_id")?,
    };
    config.validate()?;
    if let Some(rot) = meta.opt_u64("llama.rope.dimension_count")? {
        ensure!(
            rot as usize == config.head_dim(),
            "partial rotary embeddings ({rot} of {} dims) are not supported",
            config.head_dim()
        );
    }
    let tokenizer = tokenizer_from_gguf_metadata(&meta)?;

    let mut tensors = BTreeMap::new();
    for (name, dims, ty) in &infos {
        let hf = hf_name(name).with_context(|| format!("unknown GGUF tensor {name}"))?;
        let ty = ggml_type(*ty).with_context(|| format!("tensor {name}"))?;
        let shape: Vec<usize> = dims.iter().rev().map(|&d| d as usize).collect();
        let n: usize = shape.iter().product();
        let payload = reader
            .load_tensor_data(name)
            .map_err(|e| anyhow!("{e}"))?
            .with_context(|| format!("tensor {name} has no data"))?;
        let mut data = dequantize(ty, payload.as_slice(), n).with_context(|| format!("tensor {name}"))?;
        let heads = if hf.ends_with("self_attn.q_proj.weight") {
            Some(config.num_attention_heads)
        } else if hf.ends_with("self_attn.k_proj.weight") {
            Some(config.num_key_value_heads)
        } else {
            None
        };
        if let Some(heads) = heads {
            ensure!(shape.len() == 2, "{name}: expected a matrix, got shape {shape:?}");
            data = unpermute_qk(&data, shape[0], shape[1], heads)
                .with_context(|| format!("tensor {name}"))?;
        }
        tensors.insert(hf, HostTensor::new(shape, data)?);
    }
    let ckpt = Checkpoint { config, tensors, tokenizer };
    ckpt.validate()?;
    Ok(ckpt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in [
            "token_embd.weight",
            "output_norm.weight",
            "output.weight",
            "blk.0.attn_q.weight",
            "blk.12.attn_k.weight",
            "blk.3.attn_v.weight",
            "blk.3.attn_output.weight",
            "blk.29.ffn_gate.weight",
            "blk.29.ffn_up.weight",
            "blk.29.ffn_down.weight",
            "blk.7.attn_norm.weight",
            "blk.7.ffn_norm.weight",
        ] {
            let hf = hf_name(n).unwrap();
            assert_eq!(gguf_name(&hf).as_deref(), Some(n), "{n} -> {hf}");
        }
        assert_eq!(hf_name("blk.12.attn_k.weight").unwrap(), "model.layers.12.self_attn.k_proj.weight");
        assert!(hf_name("rope_freqs.weight").is_none());
        assert!(hf_name("blk.x.attn_q.weight").is_none());
    }

    /// The permutation as written in `convert_hf_to_gguf.py`:
    /// `w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)`.
    fn numpy_permute(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
        let half = rows / n_head / 2;
        let mut out = vec![0f32; w.len()];
        // out[h, i, two, c] = w[h, two, i, c]
        for h in 0..n_head {
            for two in 0..2 {
                for i in 0..half {
                    for c in 0..cols {
                        let src = ((h * 2 + two) * half + i) * cols + c;
                        let dst = ((h * half + i) * 2 + two) * cols + c;
                        out[dst] = w[src];
                    }
                }
            }
        }
        out
    }

    #[test]
    fn permute_matches_convert_hf_to_gguf_and_unpermute_inverts_it() {
        for (rows, cols, heads) in [(8, 3, 1), (16, 5, 2), (12, 4, 3), (576, 2, 9), (192, 1, 3)] {
            let w: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let p = permute_qk(&w, rows, cols, heads).unwrap();
            assert_eq!(p, numpy_permute(&w, rows, cols, heads), "[{rows},{cols}] heads {heads}");
            assert_ne!(p, w);
            assert_eq!(unpermute_qk(&p, rows, cols, heads).unwrap(), w);
            assert_eq!(permute_qk(&unpermute_qk(&w, rows, cols, heads).unwrap(), rows, cols, heads).unwrap(), w);
        }
        // Explicit case: one head of 4 dims. HF rows [a0 a1 b0 b1] (a = first half, b = second
        // half, pairs (a_i, b_i)) become llama.cpp rows [a0 b0 a1 b1].
        let w = [10.0, 11.0, 20.0, 21.0];
        assert_eq!(permute_qk(&w, 4, 1, 1).unwrap(), vec![10.0, 20.0, 11.0, 21.0]);
        assert!(permute_qk(&w, 4, 1, 3).is_err());
    }
}
