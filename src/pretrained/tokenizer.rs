//! A `tokenizers::Tokenizer` rebuilt from GGUF `tokenizer.ggml.*` metadata.
//!
//! Supported: `tokenizer.ggml.model = "gpt2"` (byte-level BPE: GPT-2, SmolLM, Qwen-style). The
//! result is built as Hugging Face `tokenizer.json` text, so [`tokenizer_json_from_gguf`] can
//! also write it next to the model for other tools.
//!
//! * model: BPE over `tokenizer.ggml.tokens` (id = index) and `tokenizer.ggml.merges`
//!   (`"left right"`, rank = index), no unknown token, no byte fallback;
//! * pre-tokenizer from `tokenizer.ggml.pre` (llama.cpp's name for the HF pre-tokenizer, chosen by
//!   its converter from a hash of the HF tokenizer's output): `smollm`, `starcoder`, `refact`,
//!   `codeshell` split every digit on its own and then apply the GPT-2 regex; llama.cpp's
//!   `llama-vocab.cpp` gives them `["\p{N}", GPT-2 regex]`, which is HF's
//!   `Sequence[Digits(individual_digits), ByteLevel(add_prefix_space=false, use_regex=true)]`.
//!   `gpt-2` is `ByteLevel` alone. Other pre-types (and a missing key) are refused rather than
//!   tokenized differently from the model's training;
//! * decoder and post-processor: `ByteLevel` (the post-processor only fixes offsets);
//! * added tokens: every `CONTROL` token (`token_type` 3) is a *special* added token and every
//!   `USER_DEFINED` token (type 4) a non-special one, both matched before pre-tokenization and
//!   never normalized. For SmolLM2 that is ids 0..=16: `<|endoftext|>`, `<|im_start|>`,
//!   `<|im_end|>`, `<repo_name>`, …
//!
//! No BOS/EOS is inserted by `encode` (`tokenizer.ggml.add_bos_token` is false for SmolLM2 and
//! its chat template writes `<|im_start|>` itself); a model that wants one must add it.

use super::gguf::Meta;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::path::Path;

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The HF `tokenizer.json` value for the tokenizer described by GGUF metadata, or `None` when the
/// file carries no tokenizer.
pub(crate) fn tokenizer_json_from_metadata(meta: &Meta) -> Result<Option<Value>> {
    let model = match meta.get("tokenizer.ggml.model") {
        None => return Ok(None),
        Some(_) => meta.str("tokenizer.ggml.model")?,
    };
    if model != "gpt2" {
        bail!("tokenizer.ggml.model = {model:?} is not supported (only gpt2 byte-level BPE)");
    }
    let tokens = meta.strings("tokenizer.ggml.tokens")?;
    let merges = meta.strings("tokenizer.ggml.merges")?;
    let types = match meta.get("tokenizer.ggml.token_type") {
        Some(_) => meta.ints("tokenizer.ggml.token_type")?,
        None => vec![1; tokens.len()],
    };
    if types.len() != tokens.len() {
        bail!("{} token types for {} tokens", types.len(), tokens.len());
    }
    let pre = match meta.get("tokenizer.ggml.pre") {
        None => bail!("no tokenizer.ggml.pre: the pre-tokenizer is unknown (re-convert the model)"),
        Some(_) => meta.str("tokenizer.ggml.pre")?,
    };
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let pre_tokenizer = match pre {
        "smollm" | "starcoder" | "refact" | "codeshell" => json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level],
        }),
        "gpt-2" => byte_level,
        other => bail!("tokenizer.ggml.pre = {other:?} is not supported (smollm, starcoder, refact, codeshell, gpt-2)"),
    };

    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    for (id, tok) in tokens.iter().enumerate() {
        if vocab.insert(tok.to_string(), json!(id)).is_some() {
            bail!("duplicate token {tok:?} in tokenizer.ggml.tokens");
        }
    }
    let added: Vec<Value> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, t))| **t == TOKEN_TYPE_CONTROL || **t == TOKEN_TYPE_USER_DEFINED)
        .map(|(id, (tok, t))| {
            json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": *t == TOKEN_TYPE_CONTROL,
            })
        })
        .collect();

    Ok(Some(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    })))
}

pub(crate) fn tokenizer_from_gguf_metadata(meta: &Meta) -> Result<Option<tokenizers::Tokenizer>> {
    let Some(json) = tokenizer_json_from_metadata(meta)? else { return Ok(None) };
    let tok = tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&json)?)
        .map_err(|e| anyhow!("rebuilding the tokenizer from GGUF metadata: {e}"))?;
    Ok(Some(tok))
}

/// The HF `tokenizer.json` text rebuilt from the metadata of the GGUF file at `path`.
pub fn tokenizer_json_from_gguf(path: &Path) -> Result<String> {
    let reader = gguf_rs_lib::reader::open_gguf_file(path)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("reading GGUF {}", path.display()))?;
    let json = tokenizer_json_from_metadata(&Meta(reader.metadata()))?
        .with_context(|| format!("{} has no tokenizer metadata", path.display()))?;
    Ok(serde_json::to_string(&json)?)
}

/// Writes [`tokenizer_json_from_gguf`]`(gguf)` to `out` (e.g. `models/smollm2-135m/tokenizer.json`),
/// after checking that it loads.
pub fn write_tokenizer_json(gguf: &Path, out: &Path) -> Result<()> {
    let text = tokenizer_json_from_gguf(gguf)?;
    tokenizers::Tokenizer::from_bytes(text.as_bytes())
        .map_err(|e| anyhow!("rebuilt tokenizer does not load: {e}"))?;
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))
}
