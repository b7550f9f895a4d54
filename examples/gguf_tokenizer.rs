//! Writes the Hugging Face `tokenizer.json` rebuilt from a GGUF file's `tokenizer.ggml.*` metadata
//! (used by `scripts/fetch_smollm2.sh`).
//!
//! `cargo run --example gguf_tokenizer -- MODEL.gguf OUT/tokenizer.json`

use anyhow::{Context, Result};
use std::path::PathBuf;

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let usage = "usage: gguf_tokenizer MODEL.gguf OUT/tokenizer.json";
    let gguf = PathBuf::from(args.next().context(usage)?);
    let out = PathBuf::from(args.next().context(usage)?);
    s2rm::pretrained::tokenizer::write_tokenizer_json(&gguf, &out)
}
