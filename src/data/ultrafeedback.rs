//! UltraFeedback (binarized): manifest format `ultrafeedback_jsonl`, JSONL with one preference row
//! per line, `{"prompt": str, "chosen": str, "rejected": str, ...}` (other fields ignored).

use anyhow::Result;

use super::PairSink;
use super::formats::{jsonl, str_field, utf8};

/// JSONL of `{"prompt": str, "chosen": str, "rejected": str, ...}`.
pub(super) fn read_ultrafeedback(file: &str, bytes: &[u8], sink: &mut PairSink) -> Result<()> {
    let text = utf8(file, bytes)?;
    for (line, row) in jsonl(file, text)? {
        let at = format!("{file} line {line}");
        let prompt = str_field(&at, &row, "prompt")?;
        let chosen = str_field(&at, &row, "chosen")?;
        let rejected = str_field(&at, &row, "rejected")?;
        sink.report.rows += 1;
        sink.push(&prompt, &chosen, &rejected);
    }
    Ok(())
}
