//! Low-level parsing helpers shared by the format readers: UTF-8 text, JSON arrays and JSONL with
//! errors that name the file, line and column, string fields of a row, gzip, CSV columns. A new
//! format's reader should build on these so its errors read like the others'.

use anyhow::{Result, anyhow, bail};
use serde_json::Value;
use std::io::Read;

/// The bytes as UTF-8 text (a leading BOM is dropped); invalid UTF-8 is an error naming the file,
/// the line and column.
pub(super) fn utf8<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str> {
    let text = crate::util::utf8_text(file, bytes)?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `file line L, column C: invalid JSON: what` (`lines_before`: lines of the file before the text
/// that was parsed, for JSONL).
fn json_error(file: &str, lines_before: usize, e: &serde_json::Error) -> anyhow::Error {
    let full = e.to_string();
    // serde_json appends " at line L column C"; the position is given in front instead.
    let what = full.rsplit_once(" at line ").map_or(full.as_str(), |(w, _)| w);
    let truncated = if e.is_eof() { " (the file looks truncated)" } else { "" };
    anyhow!(
        "{file} line {}, column {}: invalid JSON: {what}{truncated}",
        lines_before + e.line(),
        e.column()
    )
}

/// A file holding one JSON array of objects.
pub(super) fn json_array(file: &str, bytes: &[u8]) -> Result<Vec<Value>> {
    let text = utf8(file, bytes)?;
    let v: Value = serde_json::from_str(text).map_err(|e| json_error(file, 0, &e))?;
    match v {
        Value::Array(rows) => Ok(rows),
        other => bail!(
            "{file}: expected a JSON array at the top level, found {}",
            json_type(&other)
        ),
    }
}

/// The non-blank lines of a JSONL text as (1-based line number, value).
pub(super) fn jsonl(file: &str, text: &str) -> Result<Vec<(usize, Value)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| json_error(file, i, &e))?;
        out.push((i + 1, v));
    }
    Ok(out)
}

/// Field `field` of row `row` as a string, untrimmed; `at` labels the row, e.g. "x.json row 3".
pub(super) fn raw_str_field<'a>(at: &str, row: &'a Value, field: &str) -> Result<&'a str> {
    let obj = row
        .as_object()
        .ok_or_else(|| anyhow!("{at}: expected a JSON object, found {}", json_type(row)))?;
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => bail!(
            "{at}: field `{field}` must be a string, found {}",
            json_type(other)
        ),
        None => bail!("{at}: missing field `{field}`"),
    }
}

/// [`raw_str_field`], trimmed.
pub(super) fn str_field(at: &str, row: &Value, field: &str) -> Result<String> {
    Ok(raw_str_field(at, row, field)?.trim().to_string())
}

pub(super) fn gunzip(file: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    // MultiGzDecoder: a .gz may legally hold several concatenated members.
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| anyhow!("{file}: not a valid gzip stream: {e}"))?;
    Ok(out)
}

/// Index of column `name` in a CSV header, or an error listing the columns there are.
pub(super) fn csv_column(file: &str, headers: &csv::StringRecord, name: &str) -> Result<usize> {
    headers.iter().position(|h| h == name).ok_or_else(|| {
        anyhow!("{file}: CSV header has no column `{name}` (columns: {})", headers.iter().collect::<Vec<_>>().join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::{data_dir, fake};
    use crate::data::{Preference, load_preferences, load_prompts};

    #[test]
    fn bad_json_errors_name_file_row_and_field() {
        let (d, m) = fake(&[
            (
                "shape",
                "pku/shape.json",
                "pku_dpo_json",
                br#"[{"prompt":"a","response":["x","y"]},{"prompt":"b","response":"x"}]"#,
            ),
            (
                "trunc",
                "pku/trunc.json",
                "pku_dpo_json",
                b"[{\"prompt\": \"a\",\n \"response\": [\"x\"",
            ),
            (
                "utf8",
                "pku/utf8.json",
                "prompts_json",
                b"[{\"prompt\": \"\xff\xfe\"}]",
            ),
            (
                "missing",
                "p/missing.json",
                "prompts_json",
                br#"[{"prompt":"a"},{"text":"b"}]"#,
            ),
            (
                "notarray",
                "p/obj.json",
                "prompts_json",
                br#"{"prompt":"a"}"#,
            ),
            ("badgz", "h/bad.jsonl.gz", "hh_jsonl_gz", b"not gzip"),
            (
                "tldrbad",
                "t/bad.csv",
                "tldr_judged_csv",
                b"query,postprocessed_response,reference_responses,preferred\nq,a,b,maybe\n",
            ),
        ]);
        let dd = data_dir(&d);
        let err = |r: Result<Vec<String>>| format!("{:#}", r.expect_err("must fail"));
        let perr = |r: Result<Vec<Preference>>| format!("{:#}", r.expect_err("must fail"));

        let e = perr(load_preferences(&m, &dd, "shape", false));
        assert!(
            e.contains("pku/shape.json row 2: field `response` must be an array of 2 strings"),
            "{e}"
        );
        let e = perr(load_preferences(&m, &dd, "trunc", false));
        assert!(e.contains("pku/trunc.json") && e.contains("line 2"), "{e}");
        let e = err(load_prompts(&m, &dd, "utf8"));
        assert!(
            e.contains("p") && e.contains("pku/utf8.json") && e.contains("UTF-8"),
            "{e}"
        );
        let e = err(load_prompts(&m, &dd, "missing"));
        assert!(
            e.contains("p/missing.json row 2: missing field `prompt`"),
            "{e}"
        );
        let e = err(load_prompts(&m, &dd, "notarray"));
        assert!(e.contains("p/obj.json") && e.contains("array"), "{e}");
        let e = perr(load_preferences(&m, &dd, "badgz", false));
        assert!(e.contains("h/bad.jsonl.gz") && e.contains("gzip"), "{e}");
        let e = perr(load_preferences(&m, &dd, "tldrbad", false));
        assert!(e.contains("t/bad.csv row 1: field `preferred`"), "{e}");
    }
}
