//! Pretrained weights into [`Lm`]: a Llama-family checkpoint (Hugging Face names and shapes, as
//! [`crate::pretrained`] returns them for both GGUF files and HF folders) replaces the randomly
//! initialised trunk. The score and value heads stay zero-initialised: every role that needs them
//! (scalar RM, judge, PPO critic) learns them from the pretrained trunk.

use super::{Arch, Block, Lm, LmConfig, Mlp, Norm};
use crate::pretrained::{Checkpoint, HostTensor};
use anyhow::{Context, Result, bail};
use burn::module::Param;
use burn::prelude::*;

/// Row-major `[rows, cols]` → `[cols, rows]`.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

struct Source<'a> {
    ckpt: &'a Checkpoint,
}

impl Source<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<&HostTensor> {
        let t = self.ckpt.tensors.get(name).with_context(|| format!("checkpoint has no tensor `{name}`"))?;
        if t.shape != shape {
            bail!("checkpoint tensor `{name}` has shape {:?}, the model expects {shape:?}", t.shape);
        }
        Ok(t)
    }

    /// PyTorch linear weights `[out_i, in]` stacked along `out` → burn's `[in, Σ out_i]`.
    fn linear(&self, names: &[(&str, usize)], d_in: usize, device: &Device) -> Result<Param<Tensor<2>>> {
        let mut stacked = Vec::new();
        let mut d_out = 0;
        for (name, out) in names {
            stacked.extend_from_slice(&self.get(name, &[*out, d_in])?.data);
            d_out += out;
        }
        let t = transpose(&stacked, d_out, d_in);
        Ok(Param::from_tensor(Tensor::from_data(TensorData::new(t, [d_in, d_out]), device)))
    }

    /// A tensor taken as it is (embedding, norm weights).
    fn param<const D: usize>(&self, name: &str, shape: [usize; D], device: &Device) -> Result<Param<Tensor<D>>> {
        let t = self.get(name, &shape)?;
        Ok(Param::from_tensor(Tensor::from_data(TensorData::new(t.data.clone(), shape), device)))
    }
}

impl LmConfig {
    /// The config of a checkpoint as it is (for loading a file outside an experiment spec).
    pub fn from_checkpoint(preset: &str, path: &str, ckpt: &Checkpoint) -> LmConfig {
        let c = &ckpt.config;
        LmConfig {
            preset: preset.into(),
            arch: Arch::Llama,
            vocab_size: c.vocab_size,
            d_model: c.hidden_size,
            n_layers: c.num_hidden_layers,
            n_heads: c.num_attention_heads,
            n_kv_heads: c.num_key_value_heads,
            d_ff: c.intermediate_size,
            max_seq_len: c.max_position_embeddings,
            rope_theta: c.rope_theta,
            norm_eps: c.rms_norm_eps,
            tie_embeddings: c.tie_word_embeddings,
            checkpoint: path.into(),
            lora: Default::default(),
        }
    }

    /// Checks that `ckpt` has this config's shape (a spec that names a preset but points at a
    /// different file fails here, naming both).
    pub fn check_checkpoint(&self, ckpt: &Checkpoint) -> Result<()> {
        let c = &ckpt.config;
        let pairs = [
            ("vocab_size", self.vocab_size, c.vocab_size),
            ("d_model", self.d_model, c.hidden_size),
            ("n_layers", self.n_layers, c.num_hidden_layers),
            ("n_heads", self.n_heads, c.num_attention_heads),
            ("n_kv_heads", self.kv_heads(), c.num_key_value_heads),
            ("d_ff", self.d_ff, c.intermediate_size),
        ];
        for (field, ours, theirs) in pairs {
            if ours != theirs {
                bail!(
                    "model.{field} = {ours} but the checkpoint {} has {theirs}; remove model.{field} from the spec to take the preset's value, or use a checkpoint of this shape",
                    self.checkpoint
                );
            }
        }
        if self.arch != Arch::Llama {
            bail!("pretrained checkpoints need model.arch = \"llama\"");
        }
        if self.tie_embeddings != c.tie_word_embeddings {
            bail!("model.tie_embeddings = {} but the checkpoint has tie_word_embeddings = {}", self.tie_embeddings, c.tie_word_embeddings);
        }
        Ok(())
    }

    /// A model with the checkpoint's weights (score and value heads zero); nothing random.
    pub fn load_pretrained(&self, ckpt: &Checkpoint, device: &Device) -> Result<Lm> {
        self.check_checkpoint(ckpt)?;
        let mut lm = self.init(device);
        let src = Source { ckpt };
        let d = self.d_model;
        let kv = self.kv_heads() * (d / self.n_heads);
        let ff = self.d_ff;
        lm.tok_emb.weight = src.param("model.embed_tokens.weight", [self.vocab_size, d], device)?;
        for (i, block) in lm.blocks.iter_mut().enumerate() {
            let p = |s: &str| format!("model.layers.{i}.{s}");
            let (q, k, v, o) = (p("self_attn.q_proj.weight"), p("self_attn.k_proj.weight"), p("self_attn.v_proj.weight"), p("self_attn.o_proj.weight"));
            let Block { ln1, qkv, proj, ln2, mlp, .. } = block;
            qkv.weight = src.linear(&[(&q, d), (&k, kv), (&v, kv)], d, device)?;
            proj.weight = src.linear(&[(&o, d)], d, device)?;
            let (g, u, dn) = (p("mlp.gate_proj.weight"), p("mlp.up_proj.weight"), p("mlp.down_proj.weight"));
            match mlp {
                Mlp::SwiGlu(m) => {
                    m.gate_up.weight = src.linear(&[(&g, ff), (&u, ff)], d, device)?;
                    m.down.weight = src.linear(&[(&dn, d)], ff, device)?;
                }
                Mlp::Gelu(_) => bail!("pretrained checkpoints need the llama MLP"),
            }
            for (norm, name) in [(ln1, p("input_layernorm.weight")), (ln2, p("post_attention_layernorm.weight"))] {
                match norm {
                    Norm::Rms(n) => n.gamma = src.param(&name, [d], device)?,
                    Norm::Layer(_) => bail!("pretrained checkpoints need RMSNorm"),
                }
            }
        }
        match &mut lm.ln_f {
            Norm::Rms(n) => n.gamma = src.param("model.norm.weight", [d], device)?,
            Norm::Layer(_) => bail!("pretrained checkpoints need RMSNorm"),
        }
        if let Some(head) = &mut lm.lm_head {
            head.weight = src.linear(&[("lm_head.weight", self.vocab_size)], d, device)?;
        }
        // Materialise the zero heads now, as a random init does.
        lm.probe_all_heads(device);
        Ok(lm)
    }
}

#[cfg(test)]
mod tests {
    use super::transpose;

    #[test]
    fn transpose_moves_rows_to_columns() {
        assert_eq!(transpose(&[1., 2., 3., 4., 5., 6.], 2, 3), vec![1., 4., 2., 5., 3., 6.]);
    }
}
