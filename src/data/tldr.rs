//! TL;DR summarisation: a judged evaluation CSV, one row per Reddit post with columns `query` (the
//! post, ending in `TL;DR:`), `postprocessed_response` (a policy summary), `reference_responses`
//! (the human summary) and `preferred` (`ours` | `reference` | blank). Two manifest formats read
//! the same file: `tldr_judged_csv` as preference pairs (the preferred summary vs the other one)
//! and `tldr_reference_csv` as SFT rows (each post with its reference summary).

use anyhow::{Result, anyhow, bail};
use std::path::Path;

use super::formats::{csv_column, utf8};
use super::manifest::{Manifest, read_labelled};
use super::{PairSink, SftRow};

/// CSV with columns `query`, `postprocessed_response`, `reference_responses`, `preferred`
/// (`ours` | `reference` | blank); the pair is the preferred summary vs the other one.
pub(super) fn read_tldr(file: &str, bytes: &[u8], sink: &mut PairSink) -> Result<()> {
    let text = utf8(file, bytes)?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| anyhow!("{file}: cannot read the CSV header: {e}"))?
        .clone();
    let col = |name: &str| csv_column(file, &headers, name);
    let (q, ours, reference, preferred) = (
        col("query")?,
        col("postprocessed_response")?,
        col("reference_responses")?,
        col("preferred")?,
    );
    for (i, rec) in rdr.records().enumerate() {
        let at = format!("{file} row {}", i + 1);
        let rec = rec.map_err(|e| anyhow!("{at}: invalid CSV: {e}"))?;
        // Rows have as many fields as the header (the reader is not `flexible`), so these exist.
        let field = |k: usize| rec.get(k).unwrap_or("");
        sink.report.rows += 1;
        match field(preferred).trim() {
            "ours" => sink.push(field(q), field(ours), field(reference)),
            "reference" => sink.push(field(q), field(reference), field(ours)),
            "" => sink.report.unlabelled += 1,
            other => bail!(
                "{at}: field `preferred` must be `ours`, `reference` or blank, found {other:?}"
            ),
        }
    }
    Ok(())
}

/// The TL;DR CSV read as SFT rows: every post (`query`, ending in `TL;DR:`) with its human
/// reference summary (`reference_responses`), judged or not; rows with an empty side are skipped.
pub(super) fn read_tldr_references(manifest: &Manifest, data_dir: &Path, id: &str) -> Result<Vec<SftRow>> {
    let entry = manifest.get(id)?;
    let (bytes, label) = read_labelled(manifest, data_dir, id)?;
    let file = label.as_str();
    let text = utf8(file, &bytes)?;
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let headers = rdr.headers().map_err(|e| anyhow!("{file}: cannot read the CSV header: {e}"))?.clone();
    let col = |name: &str| csv_column(file, &headers, name);
    let (q, reference) = (col("query")?, col("reference_responses")?);
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| anyhow!("{file} row {}: invalid CSV: {e}", i + 1))?;
        let (prompt, response) = (rec.get(q).unwrap_or("").trim(), rec.get(reference).unwrap_or("").trim());
        if !prompt.is_empty() && !response.is_empty() {
            out.push(SftRow { prompt: prompt.to_string(), response: response.to_string(), source: entry.id.clone() });
        }
    }
    Ok(out)
}
