//! Plain prompt sets (BeaverTails eval, HarmfulQA, CatQA, DangerousQA, ...): manifest format
//! `prompts_json`, a JSON array of `{"prompt": str, ...}` rows.

use anyhow::{Context, Result};
use std::path::Path;

use super::formats::{json_array, str_field};
use super::manifest::{Manifest, read_labelled};

/// `prompts_json` rows in file order (duplicates kept), read for [`super::load_prompts`]. Empty
/// prompts are skipped.
pub(super) fn read_prompts(manifest: &Manifest, data_dir: &Path, id: &str) -> Result<Vec<String>> {
    let entry = manifest.get(id)?;
    let format = entry.format.as_str();
    let (bytes, label) = read_labelled(manifest, data_dir, id)?;
    let file = label.as_str();
    let context = || format!("dataset `{id}` (format {format})");
    let mut out = Vec::new();
    for (i, row) in json_array(file, &bytes).with_context(context)?.iter().enumerate() {
        let prompt = str_field(&format!("{file} row {}", i + 1), row, "prompt").with_context(context)?;
        if !prompt.is_empty() {
            out.push(prompt);
        }
    }
    Ok(out)
}
