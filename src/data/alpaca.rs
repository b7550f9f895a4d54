//! AlpacaEval: manifest format `alpaca_outputs_json`, the `outputs.json` JSON array of
//! `{"instruction": str, "dataset": str | null, ...}` rows, read as prompts.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::Path;

use super::formats::{json_array, str_field};
use super::manifest::{Manifest, read_labelled};

/// AlpacaEval `outputs.json` instructions in file order; `drop_helpful_base` drops the rows with
/// `dataset == "helpful_base"` (they come from HH-RLHF, so they are not out of distribution for a
/// model trained on HH).
pub fn load_alpaca_prompts(
    manifest: &Manifest,
    data_dir: &Path,
    id: &str,
    drop_helpful_base: bool,
) -> Result<Vec<String>> {
    let entry = manifest.get(id)?;
    if entry.format != "alpaca_outputs_json" {
        bail!(
            "dataset `{id}` has format `{}`, not alpaca_outputs_json",
            entry.format
        );
    }
    let (bytes, label) = read_labelled(manifest, data_dir, id)?;
    let file = label.as_str();
    let context = || format!("dataset `{id}` (format {})", entry.format);
    let mut out = Vec::new();
    for (i, row) in json_array(file, &bytes).with_context(context)?.iter().enumerate() {
        let at = format!("{file} row {}", i + 1);
        let instruction = str_field(&at, row, "instruction").with_context(context)?;
        let dataset = match row.get("dataset") {
            None | Some(Value::Null) => String::new(),
            Some(_) => str_field(&at, row, "dataset").with_context(context)?,
        };
        let dropped = drop_helpful_base && dataset == "helpful_base";
        if !instruction.is_empty() && !dropped {
            out.push(instruction);
        }
    }
    Ok(out)
}
