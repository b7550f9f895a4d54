//! PKU-SafeRLHF: manifest formats `pku_dpo_json`, a JSON array of preference rows
//! `{"prompt": str, "response": [safer, less_safe]}`, and `pku_sft_json`, a JSON array of SFT rows
//! `{"prompt": str, "response": str}`.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::Path;

use super::formats::{json_array, str_field};
use super::manifest::{Manifest, read_labelled};
use super::{PairSink, SftRow};

/// `[{"prompt": str, "response": [safer, less_safe]}]`.
pub(super) fn read_pku_dpo(file: &str, bytes: &[u8], sink: &mut PairSink) -> Result<()> {
    for (i, row) in json_array(file, bytes)?.iter().enumerate() {
        let at = format!("{file} row {}", i + 1);
        let prompt = str_field(&at, row, "prompt")?;
        let pair = match row
            .get("response")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            Some([Value::String(a), Value::String(b)]) => (a, b),
            _ => bail!("{at}: field `response` must be an array of 2 strings"),
        };
        sink.report.rows += 1;
        sink.push(&prompt, pair.0, pair.1);
    }
    Ok(())
}

/// `[{"prompt": str, "response": str}]` (format `pku_sft_json`), read for [`super::load_sft`]. Rows
/// with an empty prompt or response are skipped.
pub(super) fn read_pku_sft(manifest: &Manifest, data_dir: &Path, id: &str) -> Result<Vec<SftRow>> {
    let entry = manifest.get(id)?;
    let (bytes, label) = read_labelled(manifest, data_dir, id)?;
    let file = label.as_str();
    let context = || format!("dataset `{id}` (format {})", entry.format);
    let mut out = Vec::new();
    for (i, row) in json_array(file, &bytes).with_context(context)?.iter().enumerate() {
        let at = format!("{file} row {}", i + 1);
        let prompt = str_field(&at, row, "prompt").with_context(context)?;
        let response = str_field(&at, row, "response").with_context(context)?;
        if !prompt.is_empty() && !response.is_empty() {
            out.push(SftRow {
                prompt,
                response,
                source: entry.id.clone(),
            });
        }
    }
    Ok(out)
}
