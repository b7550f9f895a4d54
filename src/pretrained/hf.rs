//! Hugging Face model directories: `config.json` + `*.safetensors` (+ `tokenizer.json`).
//!
//! Reading accepts F32, F16 and BF16 tensors, one file or several shards (every `*.safetensors`
//! in the directory); writing produces one `model.safetensors` in F32 with `{"format": "pt"}`
//! metadata, a `config.json` that `transformers.LlamaForCausalLM.from_pretrained` accepts, and
//! `tokenizer.json` when the checkpoint has a tokenizer.

use super::{Checkpoint, HostTensor, LlamaConfig};
use anyhow::{Context, Result, anyhow, bail, ensure};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

fn get_usize(cfg: &Value, key: &str) -> Result<Option<usize>> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Ok(Some(
            v.as_u64().with_context(|| format!("config.json {key} is not an integer: {v}"))? as usize,
        )),
    }
}

fn req_usize(cfg: &Value, key: &str) -> Result<usize> {
    get_usize(cfg, key)?.with_context(|| format!("config.json has no {key}"))
}

fn get_f64(cfg: &Value, key: &str) -> Result<Option<f64>> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Ok(Some(v.as_f64().with_context(|| format!("config.json {key} is not a number: {v}"))?)),
    }
}

/// A token id, or the first of a list (Llama 3 lists several EOS ids).
fn get_token_id(cfg: &Value, key: &str) -> Result<Option<u32>> {
    let v = match cfg.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => match a.first() {
            None => return Ok(None),
            Some(v) => v,
        },
        Some(v) => v,
    };
    let id = v.as_u64().with_context(|| format!("config.json {key} is not a token id: {v}"))?;
    Ok(Some(u32::try_from(id)?))
}

/// Parses an HF Llama `config.json`, refusing settings the reference forward does not implement.
pub fn parse_config(text: &str) -> Result<LlamaConfig> {
    let cfg: Value = serde_json::from_str(text).context("config.json is not JSON")?;
    if let Some(mt) = cfg.get("model_type").and_then(Value::as_str) {
        ensure!(mt == "llama", "model_type {mt:?} is not supported (only llama)");
    }
    if let Some(act) = cfg.get("hidden_act").and_then(Value::as_str) {
        ensure!(act == "silu", "hidden_act {act:?} is not supported (only silu)");
    }
    if let Some(rs) = cfg.get("rope_scaling") {
        ensure!(rs.is_null(), "rope_scaling {rs} is not supported");
    }
    for key in ["attention_bias", "mlp_bias"] {
        ensure!(
            !cfg.get(key).and_then(Value::as_bool).unwrap_or(false),
            "{key} = true is not supported"
        );
    }
    let heads = req_usize(&cfg, "num_attention_heads")?;
    let config = LlamaConfig {
        vocab_size: req_usize(&cfg, "vocab_size")?,
        hidden_size: req_usize(&cfg, "hidden_size")?,
        intermediate_size: req_usize(&cfg, "intermediate_size")?,
        num_hidden_layers: req_usize(&cfg, "num_hidden_layers")?,
        num_attention_heads: heads,
        num_key_value_heads: get_usize(&cfg, "num_key_value_heads")?.unwrap_or(heads),
        rms_norm_eps: get_f64(&cfg, "rms_norm_eps")?.unwrap_or(1e-6),
        rope_theta: get_f64(&cfg, "rope_theta")?.unwrap_or(10_000.0),
        max_position_embeddings: get_usize(&cfg, "max_position_embeddings")?.unwrap_or(2048),
        tie_word_embeddings: cfg.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
        bos_token_id: get_token_id(&cfg, "bos_token_id")?,
        eos_token_id: get_token_id(&cfg, "eos_token_id")?,
    };
    if let Some(hd) = get_usize(&cfg, "head_dim")? {
        ensure!(hd == config.head_dim(), "head_dim {hd} != hidden_size / num_attention_heads");
    }
    config.validate()?;
    Ok(config)
}

/// The `config.json` text for `config` (HF `LlamaConfig` keys).
pub fn config_json(config: &LlamaConfig) -> String {
    let v = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "head_dim": config.head_dim(),
        "hidden_act": "silu",
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": null,
        "max_position_embeddings": config.max_position_embeddings,
        "tie_word_embeddings": config.tie_word_embeddings,
        "attention_bias": false,
        "mlp_bias": false,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "torch_dtype": "float32",
    });
    serde_json::to_string_pretty(&v).expect("a JSON value serialises")
}

fn to_f32(view: &TensorView<'_>, name: &str) -> Result<Vec<f32>> {
    let b = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => bail!("tensor {name}: dtype {other:?} is not supported (F32, F16, BF16)"),
    })
}

fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    ensure!(!files.is_empty(), "{} has no *.safetensors file", dir.display());
    Ok(files)
}

/// Reads a Hugging Face Llama model directory. With tied embeddings a stored `lm_head.weight` is
/// dropped (HF ignores it too); without, it is required.
pub fn load_hf_dir(dir: &Path) -> Result<Checkpoint> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("reading {}", cfg_path.display()))?;
    let config = parse_config(&text).with_context(|| format!("{}", cfg_path.display()))?;
    let mut tensors = BTreeMap::new();
    for file in safetensors_files(dir)? {
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow!("{}: {e}", file.display()))?;
        for (name, view) in st.tensors() {
            if config.tie_word_embeddings && name == "lm_head.weight" {
                continue;
            }
            let data = to_f32(&view, &name).with_context(|| format!("{}", file.display()))?;
            let t = HostTensor::new(view.shape().to_vec(), data)?;
            ensure!(tensors.insert(name.clone(), t).is_none(), "tensor {name} stored twice");
        }
    }
    let tok_path = dir.join("tokenizer.json");
    let tokenizer = if tok_path.exists() {
        Some(
            tokenizers::Tokenizer::from_file(&tok_path)
                .map_err(|e| anyhow!("loading {}: {e}", tok_path.display()))?,
        )
    } else {
        None
    };
    let ckpt = Checkpoint { config, tensors, tokenizer };
    ckpt.validate().with_context(|| format!("checkpoint in {}", dir.display()))?;
    Ok(ckpt)
}

/// Writes `ckpt` as a Hugging Face model directory (created if missing): `config.json`,
/// `model.safetensors` (all tensors in F32) and, when present, `tokenizer.json`.
pub fn save_hf_dir(ckpt: &Checkpoint, dir: &Path) -> Result<()> {
    ckpt.validate()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("config.json"), config_json(&ckpt.config))?;
    let bytes: Vec<(&String, &HostTensor, Vec<u8>)> = ckpt
        .tensors
        .iter()
        .map(|(n, t)| (n, t, t.data.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, t, b)| {
            TensorView::new(Dtype::F32, t.shape.clone(), b)
                .map(|v| ((*n).clone(), v))
                .map_err(|e| anyhow!("tensor {n}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let st_path = dir.join("model.safetensors");
    safetensors::serialize_to_file(views, Some(meta), &st_path)
        .map_err(|e| anyhow!("writing model.safetensors: {e}"))?;
    // serialize_to_file goes through a temporary file created with mode 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&st_path, std::fs::Permissions::from_mode(0o644))?;
    }
    if let Some(tok) = &ckpt.tokenizer {
        tok.save(dir.join("tokenizer.json"), false)
            .map_err(|e| anyhow!("writing tokenizer.json: {e}"))?;
    }
    Ok(())
}
