//! Datasets: the manifest (`data/datasets.toml`), checksum-verified reads from the data dir,
//! per-format readers that turn the files into preference pairs / SFT rows / prompts, a
//! prompt-disjoint splitter, and a rule-based refusal detector.
//!
//! Files are read in place (default `../shared/datasets` relative to the repo root) and never copied
//! into the project. Every reader trims surrounding whitespace of prompts and responses and keeps
//! the inner text as is. Schema errors (a missing field, a wrong type, bad JSON, invalid UTF-8) are
//! errors naming the file, the row and the field; rows that are well-formed but unusable (an HH
//! dialogue that does not parse, an empty or identical pair, an unjudged TL;DR row) are dropped and
//! counted in a [`LoadReport`].

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use crate::util::{SplitMix64, sha256_hex};

/// Default data dir, relative to the repo root.
pub const DEFAULT_DATA_DIR: &str = "../shared/datasets";
/// Default manifest path, relative to the repo root.
pub const DEFAULT_MANIFEST: &str = "data/datasets.toml";
/// Default refusal-pattern list, relative to the repo root.
pub const DEFAULT_REFUSAL_PATTERNS: &str = "data/refusal_patterns.txt";

/// Every reader format a manifest entry may name.
pub const FORMATS: &[&str] = &[
    "pku_dpo_json",
    "pku_sft_json",
    "hh_jsonl_gz",
    "prompts_json",
    "alpaca_outputs_json",
    "tldr_judged_csv",
    "tldr_reference_csv",
    "ultrafeedback_jsonl",
];
/// The formats that hold preference pairs.
pub const PREFERENCE_FORMATS: &[&str] = &[
    "pku_dpo_json",
    "hh_jsonl_gz",
    "tldr_judged_csv",
    "ultrafeedback_jsonl",
];
/// Allowed values of `kind`: the nature of a dataset's prompts.
pub const KINDS: &[&str] = &["harmful", "benign"];

#[derive(Clone, Debug, PartialEq)]
pub struct Preference {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    /// Manifest id of the dataset the pair came from.
    pub source: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SftRow {
    pub prompt: String,
    pub response: String,
    /// Manifest id of the dataset the row came from.
    pub source: String,
}

// ---------------------------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------------------------

/// One `[[dataset]]` table of the manifest.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    pub id: String,
    /// Path relative to the data dir.
    pub file: String,
    pub format: String,
    /// Full lowercase hex sha256 of the file.
    pub sha256: String,
    pub licence: String,
    pub upstream: String,
    /// `harmful` or `benign`.
    pub kind: String,
    pub description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    dataset: Vec<DatasetEntry>,
}

#[derive(Clone, Debug)]
pub struct Manifest {
    pub path: PathBuf,
    pub entries: Vec<DatasetEntry>,
}

impl Manifest {
    /// Reads and validates a manifest: unknown fields, duplicate ids, unknown formats or kinds,
    /// malformed checksums and absolute file paths are errors naming the manifest file.
    pub fn load(path: &Path) -> Result<Manifest> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read dataset manifest {}", path.display()))?;
        let text = crate::util::utf8_text(&format!("dataset manifest {}", path.display()), &bytes)?;
        let parsed: ManifestFile = toml::from_str(text).map_err(|e| {
            anyhow!("dataset manifest {}", crate::util::toml_error(path, text, &e))
        })?;
        let manifest = Manifest {
            path: path.to_path_buf(),
            entries: parsed.dataset,
        };
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<()> {
        let where_ = self.path.display();
        if self.entries.is_empty() {
            bail!("dataset manifest {where_} has no [[dataset]] entries");
        }
        let mut seen = HashSet::new();
        for (i, e) in self.entries.iter().enumerate() {
            let at = format!("dataset manifest {where_}, entry {} (id `{}`)", i + 1, e.id);
            let snake = !e.id.is_empty()
                && e.id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !snake {
                bail!("{at}: `id` must be non-empty snake_case ([a-z0-9_])");
            }
            if !seen.insert(e.id.as_str()) {
                bail!("{at}: duplicate id");
            }
            if e.file.trim().is_empty() || Path::new(&e.file).is_absolute() {
                bail!(
                    "{at}: `file` must be a non-empty path relative to the data dir, got {:?}",
                    e.file
                );
            }
            if !FORMATS.contains(&e.format.as_str()) {
                bail!(
                    "{at}: unknown format `{}`; valid formats: {}",
                    e.format,
                    FORMATS.join(", ")
                );
            }
            if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("{at}: `sha256` must be 64 hex digits, got {:?}", e.sha256);
            }
            if !KINDS.contains(&e.kind.as_str()) {
                bail!(
                    "{at}: `kind` must be one of {}, got `{}`",
                    KINDS.join(", "),
                    e.kind
                );
            }
        }
        Ok(())
    }

    /// The entry with this id; an unknown id is an error listing the valid ids and the closest one.
    pub fn get(&self, id: &str) -> Result<&DatasetEntry> {
        if let Some(e) = self.entries.iter().find(|e| e.id == id) {
            return Ok(e);
        }
        let ids: Vec<&str> = self.entries.iter().map(|e| e.id.as_str()).collect();
        let hint = ids
            .iter()
            .min_by_key(|c| levenshtein(id, c))
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        bail!(
            "unknown dataset id `{id}`{hint}; {} lists: {}",
            self.path.display(),
            ids.join(", ")
        )
    }
}

/// Edit distance in chars, for "did you mean" hints.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------------------------
// Verified reads
// ---------------------------------------------------------------------------------------------

/// A file already verified in this process.
struct Verified {
    len: u64,
    mtime: SystemTime,
    /// When it was hashed.
    at: SystemTime,
    sha256: String,
}

/// Absolute path -> last successful verification. A file whose length and mtime are unchanged is
/// not hashed again, but only if it was already [`RACY_WINDOW`] old when it was hashed: a file
/// rewritten within the mtime granularity of its first write would otherwise keep a stale entry
/// (git's "racily clean" problem).
type VerifiedCache = HashMap<PathBuf, Verified>;
const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

fn verified_cache() -> &'static Mutex<VerifiedCache> {
    static CACHE: OnceLock<Mutex<VerifiedCache>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// `data_dir/file` as an absolute path (for error messages that say where we looked).
fn resolve(data_dir: &Path, file: &str) -> PathBuf {
    let p = data_dir.join(file);
    std::path::absolute(&p).unwrap_or(p)
}

/// Resolves and verifies a file: a missing file or a checksum mismatch is an error naming the
/// file. Returns the bytes.
pub fn read_verified(manifest: &Manifest, data_dir: &Path, id: &str) -> Result<Vec<u8>> {
    let entry = manifest.get(id)?;
    let path = resolve(data_dir, &entry.file);
    let meta = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => bail!("dataset `{id}`: {} is not a file", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "dataset `{id}`: file {} not found; set data_dir (spec field `experiment.data_dir` or \
             --data-dir) to the folder holding the datasets (default {DEFAULT_DATA_DIR})",
            path.display()
        ),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("dataset `{id}`: cannot stat {}", path.display()));
        }
    };
    let bytes = std::fs::read(&path)
        .with_context(|| format!("dataset `{id}`: cannot read {}", path.display()))?;
    if bytes.is_empty() {
        bail!(
            "dataset `{id}`: {} is empty (0 bytes); restore the file or remove `{id}` from the spec",
            path.display()
        );
    }
    let expected = entry.sha256.to_ascii_lowercase();
    let (len, mtime) = (bytes.len() as u64, meta.modified().ok());
    {
        // A poisoned lock only means another thread panicked while holding it; the map is fine.
        let cache = verified_cache().lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(v), Some(mtime)) = (cache.get(&path), mtime)
            && v.len == len
            && v.mtime == mtime
            && v.sha256 == expected
            && mtime.checked_add(RACY_WINDOW).is_some_and(|t| t <= v.at)
        {
            return Ok(bytes);
        }
    }
    let actual = sha256_hex(&bytes);
    if actual != expected {
        bail!(
            "dataset `{id}`: checksum mismatch for {}: expected sha256 {expected} (field `sha256` of \
             id `{id}` in {}), actual {actual}; restore the original file (upstream: {}), or if the \
             change is intended, put the actual hash in the manifest",
            path.display(),
            manifest.path.display(),
            entry.upstream
        );
    }
    if let Some(mtime) = mtime {
        let v = Verified {
            len,
            mtime,
            at: SystemTime::now(),
            sha256: actual,
        };
        verified_cache()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path, v);
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// Low-level parsing helpers
// ---------------------------------------------------------------------------------------------

/// The bytes as UTF-8 text (a leading BOM is dropped); invalid UTF-8 is an error naming the file,
/// the line and column.
fn utf8<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str> {
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
fn json_array(file: &str, bytes: &[u8]) -> Result<Vec<Value>> {
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
fn jsonl(file: &str, text: &str) -> Result<Vec<(usize, Value)>> {
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
fn raw_str_field<'a>(at: &str, row: &'a Value, field: &str) -> Result<&'a str> {
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
fn str_field(at: &str, row: &Value, field: &str) -> Result<String> {
    Ok(raw_str_field(at, row, field)?.trim().to_string())
}

fn gunzip(file: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    // MultiGzDecoder: a .gz may legally hold several concatenated members.
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| anyhow!("{file}: not a valid gzip stream: {e}"))?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// HH-RLHF dialogues
// ---------------------------------------------------------------------------------------------

const HUMAN: &str = "\n\nHuman:";
const ASSISTANT: &str = "\n\nAssistant:";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Human,
    Assistant,
}

/// An HH dialogue cut into the prompt (everything before the final Assistant turn) and the
/// response (the final Assistant turn).
#[derive(Debug, PartialEq)]
struct HhSplit {
    /// The first Human turn's text, then every later turn with its source marker, e.g.
    /// `"A\n\nAssistant: B\n\nHuman: C"`; a single-turn prompt is just the Human text. Wrapping it
    /// as `"\n\nHuman: {prompt}\n\nAssistant: {response}"` gives back the source dialogue.
    prompt: String,
    response: String,
    humans: usize,
    assistants: usize,
}

/// Splits a dialogue on the `\n\nHuman:` / `\n\nAssistant:` markers. `None` when it does not parse:
/// text before the first marker, no marker, a first turn that is not Human, or a last turn that is
/// not Assistant. (Markers without the blank line, like an inline "  Human: …" inside a turn,
/// are part of the text, as in the source.)
fn split_hh(text: &str) -> Option<HhSplit> {
    let mut marks: Vec<(usize, Role, usize)> = text
        .match_indices(HUMAN)
        .map(|(i, _)| (i, Role::Human, HUMAN.len()))
        .chain(
            text.match_indices(ASSISTANT)
                .map(|(i, _)| (i, Role::Assistant, ASSISTANT.len())),
        )
        .collect();
    marks.sort_by_key(|m| m.0);
    let first = marks.first()?;
    if !text[..first.0].trim().is_empty() {
        return None;
    }
    let turns: Vec<(Role, &str)> = marks
        .iter()
        .enumerate()
        .map(|(k, &(start, role, len))| {
            let end = marks.get(k + 1).map_or(text.len(), |m| m.0);
            (role, text[start + len..end].trim())
        })
        .collect();
    let ((last_role, response), before) = turns.split_last()?;
    if *last_role != Role::Assistant || before.first()?.0 != Role::Human {
        return None;
    }
    let mut prompt = before[0].1.to_string();
    for (role, t) in &before[1..] {
        prompt.push_str(match role {
            Role::Human => HUMAN,
            Role::Assistant => ASSISTANT,
        });
        if !t.is_empty() {
            prompt.push(' ');
            prompt.push_str(t);
        }
    }
    let humans = turns.iter().filter(|t| t.0 == Role::Human).count();
    Some(HhSplit {
        prompt,
        response: response.to_string(),
        humans,
        assistants: turns.len() - humans,
    })
}

// ---------------------------------------------------------------------------------------------
// Preference readers
// ---------------------------------------------------------------------------------------------

/// What a preference reader kept and dropped. `rows == kept + every drop count`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Data rows read from the file.
    pub rows: usize,
    pub kept: usize,
    /// HH dialogues that do not parse (see the HH notes in the module docs).
    pub unparsed: usize,
    /// HH rows whose chosen and rejected dialogues do not share the prompt.
    pub prompt_mismatch: usize,
    /// Rows with more than one Human or Assistant turn, dropped by `single_turn_only`.
    pub multi_turn: usize,
    /// Rows with an empty prompt, chosen or rejected (after trimming).
    pub empty: usize,
    /// Rows whose chosen and rejected responses are equal (after trimming).
    pub identical: usize,
    /// TL;DR rows without a judgement (`preferred` blank).
    pub unlabelled: usize,
}

/// Accumulates pairs, applying the drop rules shared by every preference format.
struct PairSink<'a> {
    source: &'a str,
    out: Vec<Preference>,
    report: LoadReport,
}

impl PairSink<'_> {
    fn push(&mut self, prompt: &str, chosen: &str, rejected: &str) {
        let (prompt, chosen, rejected) = (prompt.trim(), chosen.trim(), rejected.trim());
        if prompt.is_empty() || chosen.is_empty() || rejected.is_empty() {
            self.report.empty += 1;
        } else if chosen == rejected {
            self.report.identical += 1;
        } else {
            self.report.kept += 1;
            self.out.push(Preference {
                prompt: prompt.to_string(),
                chosen: chosen.to_string(),
                rejected: rejected.to_string(),
                source: self.source.to_string(),
            });
        }
    }
}

/// Preference pairs of a dataset in file order. `single_turn_only` keeps only HH rows with exactly
/// one Human and one Assistant turn; it has no effect on the other (single-turn) formats.
pub fn load_preferences(
    manifest: &Manifest,
    data_dir: &Path,
    id: &str,
    single_turn_only: bool,
) -> Result<Vec<Preference>> {
    Ok(load_preferences_report(manifest, data_dir, id, single_turn_only)?.0)
}

/// [`load_preferences`], plus the counts of rows kept and dropped.
pub fn load_preferences_report(
    manifest: &Manifest,
    data_dir: &Path,
    id: &str,
    single_turn_only: bool,
) -> Result<(Vec<Preference>, LoadReport)> {
    let entry = manifest.get(id)?;
    let bytes = read_verified(manifest, data_dir, id)?;
    let label = resolve(data_dir, &entry.file).display().to_string();
    let file = label.as_str();
    let mut sink = PairSink {
        source: &entry.id,
        out: Vec::new(),
        report: LoadReport::default(),
    };
    let read = match entry.format.as_str() {
        "pku_dpo_json" => read_pku_dpo(file, &bytes, &mut sink),
        "hh_jsonl_gz" => read_hh(file, &bytes, single_turn_only, &mut sink),
        "tldr_judged_csv" => read_tldr(file, &bytes, &mut sink),
        "ultrafeedback_jsonl" => read_ultrafeedback(file, &bytes, &mut sink),
        other => bail!(
            "dataset `{id}` has format `{other}`, which holds no preference pairs (pair formats: {})",
            PREFERENCE_FORMATS.join(", ")
        ),
    };
    read.with_context(|| format!("dataset `{id}` (format {})", entry.format))?;
    Ok((sink.out, sink.report))
}

/// `[{"prompt": str, "response": [safer, less_safe]}]`.
fn read_pku_dpo(file: &str, bytes: &[u8], sink: &mut PairSink) -> Result<()> {
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

/// Gzip JSONL of `{"chosen": dialogue, "rejected": dialogue}`.
fn read_hh(file: &str, bytes: &[u8], single_turn_only: bool, sink: &mut PairSink) -> Result<()> {
    let raw = gunzip(file, bytes)?;
    let text = utf8(file, &raw)?;
    for (line, row) in jsonl(file, text)? {
        let at = format!("{file} line {line}");
        // Untrimmed: the leading "\n\n" belongs to the first marker.
        let chosen = raw_str_field(&at, &row, "chosen")?;
        let rejected = raw_str_field(&at, &row, "rejected")?;
        sink.report.rows += 1;
        let (Some(c), Some(r)) = (split_hh(chosen), split_hh(rejected)) else {
            sink.report.unparsed += 1;
            continue;
        };
        if c.prompt != r.prompt {
            sink.report.prompt_mismatch += 1;
        } else if single_turn_only && (c.humans != 1 || c.assistants != 1 || r.assistants != 1) {
            sink.report.multi_turn += 1;
        } else {
            sink.push(&c.prompt, &c.response, &r.response);
        }
    }
    Ok(())
}

/// Index of column `name` in a CSV header, or an error listing the columns there are.
fn csv_column(file: &str, headers: &csv::StringRecord, name: &str) -> Result<usize> {
    headers.iter().position(|h| h == name).ok_or_else(|| {
        anyhow!("{file}: CSV header has no column `{name}` (columns: {})", headers.iter().collect::<Vec<_>>().join(", "))
    })
}

/// CSV with columns `query`, `postprocessed_response`, `reference_responses`, `preferred`
/// (`ours` | `reference` | blank); the pair is the preferred summary vs the other one.
fn read_tldr(file: &str, bytes: &[u8], sink: &mut PairSink) -> Result<()> {
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
fn read_tldr_references(manifest: &Manifest, data_dir: &Path, id: &str) -> Result<Vec<SftRow>> {
    let entry = manifest.get(id)?;
    let bytes = read_verified(manifest, data_dir, id)?;
    let label = resolve(data_dir, &entry.file).display().to_string();
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

/// JSONL of `{"prompt": str, "chosen": str, "rejected": str, ...}`.
fn read_ultrafeedback(file: &str, bytes: &[u8], sink: &mut PairSink) -> Result<()> {
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

// ---------------------------------------------------------------------------------------------
// SFT rows and prompts
// ---------------------------------------------------------------------------------------------

/// SFT rows: `pku_sft_json` rows, or the chosen response of any preference format. Rows with an
/// empty prompt or response are skipped.
pub fn load_sft(manifest: &Manifest, data_dir: &Path, id: &str) -> Result<Vec<SftRow>> {
    let entry = manifest.get(id)?;
    if PREFERENCE_FORMATS.contains(&entry.format.as_str()) {
        let prefs = load_preferences(manifest, data_dir, id, false)?;
        return Ok(prefs
            .into_iter()
            .map(|p| SftRow {
                prompt: p.prompt,
                response: p.chosen,
                source: p.source,
            })
            .collect());
    }
    if entry.format == "tldr_reference_csv" {
        return read_tldr_references(manifest, data_dir, id);
    }
    if entry.format != "pku_sft_json" {
        bail!(
            "dataset `{id}` has format `{}`, which holds no responses; load_sft reads pku_sft_json, \
             tldr_reference_csv or a preference format ({})",
            entry.format,
            PREFERENCE_FORMATS.join(", ")
        );
    }
    let bytes = read_verified(manifest, data_dir, id)?;
    let label = resolve(data_dir, &entry.file).display().to_string();
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

/// Prompts: `prompts_json` rows in file order (duplicates kept), `alpaca_outputs_json`
/// instructions without the `helpful_base` rows, or the distinct prompts (first-occurrence order)
/// of a preference or SFT format. Empty prompts are skipped.
pub fn load_prompts(manifest: &Manifest, data_dir: &Path, id: &str) -> Result<Vec<String>> {
    let entry = manifest.get(id)?;
    let format = entry.format.as_str();
    let distinct = |prompts: Vec<String>| {
        let mut seen = HashSet::new();
        prompts
            .into_iter()
            .filter(|p| seen.insert(p.clone()))
            .collect::<Vec<_>>()
    };
    if PREFERENCE_FORMATS.contains(&format) {
        let prefs = load_preferences(manifest, data_dir, id, false)?;
        return Ok(distinct(prefs.into_iter().map(|p| p.prompt).collect()));
    }
    match format {
        "pku_sft_json" | "tldr_reference_csv" => {
            let rows = load_sft(manifest, data_dir, id)?;
            Ok(distinct(rows.into_iter().map(|r| r.prompt).collect()))
        }
        "alpaca_outputs_json" => load_alpaca_prompts(manifest, data_dir, id, true),
        "prompts_json" => {
            let bytes = read_verified(manifest, data_dir, id)?;
            let label = resolve(data_dir, &entry.file).display().to_string();
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
        other => bail!("dataset `{id}`: load_prompts cannot read format `{other}`"),
    }
}

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
    let bytes = read_verified(manifest, data_dir, id)?;
    let label = resolve(data_dir, &entry.file).display().to_string();
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

// ---------------------------------------------------------------------------------------------
// Splits
// ---------------------------------------------------------------------------------------------

/// Splits by prompt: every distinct prompt goes to exactly one split, so no prompt crosses splits.
/// `fractions` are (split name, fraction), each > 0, summing to 1 within 1e-6, names unique.
/// Deterministic: distinct prompts sorted, shuffled with `SplitMix64::new(seed)`, then cut in the
/// order given at the rounded cumulative fractions (so the counts sum to the number of prompts);
/// all pairs of a prompt follow it. Every split name is present in the result, possibly empty;
/// pairs keep their original order.
pub fn split_by_prompt(
    prefs: &[Preference],
    fractions: &[(String, f64)],
    seed: u64,
) -> Result<BTreeMap<String, Vec<Preference>>> {
    let listed = || {
        fractions
            .iter()
            .map(|(n, f)| format!("{n}={f}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sum: f64 = fractions.iter().map(|(_, f)| f).sum();
    if fractions.is_empty()
        || fractions.iter().any(|(_, f)| !(f.is_finite() && *f > 0.0))
        || (sum - 1.0).abs() > 1e-6
    {
        bail!(
            "split fractions must each be > 0 and sum to 1 (within 1e-6); got [{}] (sum {sum})",
            listed()
        );
    }
    let mut names = HashSet::new();
    if let Some((dup, _)) = fractions.iter().find(|(n, _)| !names.insert(n.as_str())) {
        bail!("split name `{dup}` appears twice in [{}]", listed());
    }

    let mut prompts: Vec<&str> = prefs
        .iter()
        .map(|p| p.prompt.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    SplitMix64::new(seed).shuffle(&mut prompts);
    let n = prompts.len();
    let mut split_of: HashMap<&str, usize> = HashMap::with_capacity(n);
    let (mut cum, mut start) = (0.0, 0usize);
    for (k, (_, f)) in fractions.iter().enumerate() {
        cum += f;
        // Cutting at rounded cumulative positions (last cut pinned to n) makes the counts sum to n.
        let end = if k + 1 == fractions.len() {
            n
        } else {
            ((cum * n as f64).round() as usize).clamp(start, n)
        };
        for p in &prompts[start..end] {
            split_of.insert(p, k);
        }
        start = end;
    }

    let mut out: BTreeMap<String, Vec<Preference>> = fractions
        .iter()
        .map(|(name, _)| (name.clone(), Vec::new()))
        .collect();
    for p in prefs {
        // Every prompt was assigned above; the lookups cannot miss.
        if let Some(list) = split_of
            .get(p.prompt.as_str())
            .and_then(|&k| out.get_mut(&fractions[k].0))
        {
            list.push(p.clone());
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------

/// Refusal detector: case-insensitive substring match against patterns, one per line in
/// `data/refusal_patterns.txt` (lines starting with # are comments, blanks ignored). Curly
/// apostrophes are matched as straight ones. A rule metric, not a judge.
pub struct RefusalDetector {
    patterns: Vec<String>,
}

/// Lowercase, with curly single quotes turned into straight apostrophes.
fn normalise(s: &str) -> String {
    s.replace(['\u{2019}', '\u{2018}'], "'").to_lowercase()
}

impl RefusalDetector {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read refusal patterns {}", path.display()))?;
        let patterns: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
        if patterns.is_empty() {
            bail!(
                "refusal patterns {}: no patterns (only comments or blank lines)",
                path.display()
            );
        }
        Ok(Self::from_patterns(patterns))
    }

    /// Blank patterns are ignored (an empty pattern would match everything).
    pub fn from_patterns(p: Vec<String>) -> Self {
        let patterns = p
            .iter()
            .map(|s| normalise(s.trim()))
            .filter(|s| !s.is_empty())
            .collect();
        Self { patterns }
    }

    pub fn is_refusal(&self, text: &str) -> bool {
        let t = normalise(text);
        self.patterns.iter().any(|p| t.contains(p.as_str()))
    }

    /// Fraction of `texts` that are refusals (0 for no texts).
    pub fn rate<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> f64 {
        let (mut hits, mut n) = (0usize, 0usize);
        for t in texts {
            n += 1;
            hits += usize::from(self.is_refusal(t));
        }
        if n == 0 { 0.0 } else { hits as f64 / n as f64 }
    }

    /// The normalised patterns.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    // ---- fixtures ----

    /// A temp data dir holding `files` (id, file, format, bytes) and a manifest pinning them.
    fn fake(files: &[(&str, &str, &str, &[u8])]) -> (tempfile::TempDir, Manifest) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut toml = String::new();
        for (id, file, format, bytes) in files {
            let path = dir.path().join("data").join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, bytes).expect("write");
            toml.push_str(&format!(
                "[[dataset]]\nid = \"{id}\"\nfile = \"{file}\"\nformat = \"{format}\"\n\
                 sha256 = \"{}\"\nlicence = \"test\"\nupstream = \"test\"\nkind = \"benign\"\n\
                 description = \"test\"\n\n",
                sha256_hex(bytes)
            ));
        }
        let mpath = dir.path().join("datasets.toml");
        std::fs::write(&mpath, toml).expect("write manifest");
        let m = Manifest::load(&mpath).expect("load fake manifest");
        (dir, m)
    }

    fn data_dir(d: &tempfile::TempDir) -> PathBuf {
        d.path().join("data")
    }

    fn gz(text: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).expect("gz write");
        e.finish().expect("gz finish")
    }

    fn pref(prompt: &str, tag: usize) -> Preference {
        Preference {
            prompt: prompt.into(),
            chosen: format!("c{tag}"),
            rejected: format!("r{tag}"),
            source: "t".into(),
        }
    }

    fn fr(v: &[(&str, f64)]) -> Vec<(String, f64)> {
        v.iter().map(|(n, f)| (n.to_string(), *f)).collect()
    }

    // ---- HH parsing ----

    #[test]
    fn hh_single_turn() {
        let s =
            split_hh("\n\nHuman: How do I boil an egg?\n\nAssistant:  Put it in boiling water. ")
                .expect("parses");
        assert_eq!(s.prompt, "How do I boil an egg?");
        assert_eq!(s.response, "Put it in boiling water.");
        assert_eq!((s.humans, s.assistants), (1, 1));
    }

    #[test]
    fn hh_multi_turn_keeps_earlier_turns() {
        let src = "\n\nHuman: Hi.\n\nAssistant: Hello, how can I help?\n\nHuman: Name a fruit.\n\nAssistant: Apple.";
        let s = split_hh(src).expect("parses");
        assert_eq!(
            s.prompt,
            "Hi.\n\nAssistant: Hello, how can I help?\n\nHuman: Name a fruit."
        );
        assert_eq!(s.response, "Apple.");
        assert_eq!((s.humans, s.assistants), (2, 2));
        // The prompt is rendered so that the usual template rebuilds the source dialogue.
        assert_eq!(
            format!("\n\nHuman: {}\n\nAssistant: {}", s.prompt, s.response),
            src
        );
        // An inline marker without the blank line is text, not a turn.
        let s = split_hh("\n\nHuman: a  Human: b\n\nAssistant: c").expect("parses");
        assert_eq!((s.prompt.as_str(), s.humans), ("a  Human: b", 1));
    }

    #[test]
    fn hh_unparseable() {
        assert_eq!(split_hh("no markers at all"), None);
        assert_eq!(split_hh("preamble\n\nHuman: a\n\nAssistant: b"), None);
        assert_eq!(split_hh("\n\nHuman: a\n\nAssistant: b\n\nHuman: c"), None);
        assert_eq!(split_hh("\n\nAssistant: a\n\nAssistant: b"), None);
        assert_eq!(split_hh("\n\nAssistant: only"), None);
    }

    #[test]
    fn hh_loader_filters_and_counts() {
        let row = |c: &str, r: &str| serde_json::json!({"chosen": c, "rejected": r}).to_string();
        let lines = [
            // 1: single-turn, kept
            row(
                "\n\nHuman: Q1\n\nAssistant: good",
                "\n\nHuman: Q1\n\nAssistant: bad",
            ),
            // 2: multi-turn, kept unless single_turn_only
            row(
                "\n\nHuman: Q2\n\nAssistant: a\n\nHuman: more\n\nAssistant: good",
                "\n\nHuman: Q2\n\nAssistant: a\n\nHuman: more\n\nAssistant: bad",
            ),
            // 3: identical responses
            row(
                "\n\nHuman: Q3\n\nAssistant: same",
                "\n\nHuman: Q3\n\nAssistant: same ",
            ),
            // 4: empty rejected response
            row(
                "\n\nHuman: Q4\n\nAssistant: x",
                "\n\nHuman: Q4\n\nAssistant:   ",
            ),
            // 5: does not parse
            row("garbage", "\n\nHuman: Q5\n\nAssistant: y"),
            // 6: prompts differ
            row(
                "\n\nHuman: Q6\n\nAssistant: x",
                "\n\nHuman: Q6 other\n\nAssistant: y",
            ),
        ];
        let text = lines.join("\n") + "\n\n";
        let data = gz(&text);
        let (d, m) = fake(&[("hh", "hh/test.jsonl.gz", "hh_jsonl_gz", &data)]);

        let (all, rep) = load_preferences_report(&m, &data_dir(&d), "hh", false).expect("load");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].prompt, "Q1");
        assert_eq!(
            (all[0].chosen.as_str(), all[0].rejected.as_str()),
            ("good", "bad")
        );
        assert_eq!(all[1].prompt, "Q2\n\nAssistant: a\n\nHuman: more");
        assert_eq!(all[0].source, "hh");
        let expect = LoadReport {
            rows: 6,
            kept: 2,
            unparsed: 1,
            prompt_mismatch: 1,
            empty: 1,
            identical: 1,
            ..Default::default()
        };
        assert_eq!(rep, expect);

        let (single, rep) = load_preferences_report(&m, &data_dir(&d), "hh", true).expect("load");
        assert_eq!(single.len(), 1);
        assert_eq!(single[0].prompt, "Q1");
        assert_eq!(rep.multi_turn, 1);
        assert_eq!(rep.kept, 1);
    }

    // ---- other readers ----

    #[test]
    fn pku_tldr_ultrafeedback_alpaca_readers() {
        let pku = br#"[{"prompt": " P ", "response": ["safe", "unsafe"]},
                       {"prompt": "P", "response": [" b ", "a"]}]"#;
        let tldr = "\"\",query,postprocessed_response,reference_responses,preferred\n\
                    0,Q1,ours1,ref1,ours\n1,Q2,ours2,ref2,reference\n2,Q3,ours3,ref3,\n";
        let uf = "{\"prompt\":\"u\",\"chosen\":\"c\",\"rejected\":\"r\",\"metadata\":{}}\n";
        let alpaca = br#"[{"instruction":"i1","dataset":"helpful_base"},{"instruction":"i2","dataset":"oasst"}]"#;
        let (d, m) = fake(&[
            ("pku", "pku.json", "pku_dpo_json", pku),
            ("tldr", "t.csv", "tldr_judged_csv", tldr.as_bytes()),
            ("uf", "u.jsonl", "ultrafeedback_jsonl", uf.as_bytes()),
            ("alp", "a.json", "alpaca_outputs_json", alpaca),
        ]);
        let dd = data_dir(&d);

        let p = load_preferences(&m, &dd, "pku", false).expect("pku");
        assert_eq!(p.len(), 2);
        assert_eq!(
            (
                p[0].prompt.as_str(),
                p[0].chosen.as_str(),
                p[0].rejected.as_str()
            ),
            ("P", "safe", "unsafe")
        );
        assert_eq!(p[1].chosen, "b");
        assert_eq!(
            load_prompts(&m, &dd, "pku").expect("prompts"),
            vec!["P".to_string()]
        );
        let sft = load_sft(&m, &dd, "pku").expect("sft from pairs");
        assert_eq!(sft[0].response, "safe");

        let (t, rep) = load_preferences_report(&m, &dd, "tldr", false).expect("tldr");
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].chosen.as_str(), t[0].rejected.as_str()),
            ("ours1", "ref1")
        );
        assert_eq!(
            (t[1].chosen.as_str(), t[1].rejected.as_str()),
            ("ref2", "ours2")
        );
        assert_eq!(rep.unlabelled, 1);

        let u = load_preferences(&m, &dd, "uf", false).expect("uf");
        assert_eq!(
            u,
            vec![Preference {
                prompt: "u".into(),
                chosen: "c".into(),
                rejected: "r".into(),
                source: "uf".into()
            }]
        );

        assert_eq!(
            load_prompts(&m, &dd, "alp").expect("alpaca"),
            vec!["i2".to_string()]
        );
        assert_eq!(
            load_alpaca_prompts(&m, &dd, "alp", false)
                .expect("alpaca")
                .len(),
            2
        );
        assert!(load_preferences(&m, &dd, "alp", false).is_err());
        assert!(load_sft(&m, &dd, "alp").is_err());
    }

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

    // ---- verified reads and manifest ----

    #[test]
    fn missing_file_and_checksum_mismatch_name_the_file() {
        let (d, m) = fake(&[
            ("a", "sub/a.json", "prompts_json", br#"[{"prompt":"x"}]"#),
            ("b", "sub/b.json", "prompts_json", br#"[{"prompt":"y"}]"#),
        ]);
        let dd = data_dir(&d);
        assert_eq!(
            read_verified(&m, &dd, "a").expect("ok"),
            br#"[{"prompt":"x"}]"#.to_vec()
        );

        std::fs::remove_file(dd.join("sub/b.json")).expect("rm");
        let e = format!("{:#}", read_verified(&m, &dd, "b").expect_err("missing"));
        assert!(
            e.contains("sub/b.json") && e.contains("not found") && e.contains("data_dir"),
            "{e}"
        );

        // Same length, so only the hash (not a cached length/mtime) can catch the change.
        std::fs::write(dd.join("sub/a.json"), br#"[{"prompt":"z"}]"#).expect("write");
        let e = format!("{:#}", read_verified(&m, &dd, "a").expect_err("mismatch"));
        assert!(
            e.contains("sub/a.json") && e.contains("checksum mismatch"),
            "{e}"
        );
        assert!(e.contains(&m.entries[0].sha256), "{e}");
        assert!(e.contains(&sha256_hex(br#"[{"prompt":"z"}]"#)), "{e}");
    }

    #[test]
    fn manifest_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).expect("write");
            p
        };
        let entry = |extra: &str, id: &str, sha: &str| {
            format!(
                "[[dataset]]\nid = \"{id}\"\nfile = \"f.json\"\nformat = \"prompts_json\"\n\
                 sha256 = \"{sha}\"\nlicence = \"l\"\nupstream = \"u\"\nkind = \"benign\"\n\
                 description = \"d\"\n{extra}\n"
            )
        };
        let good_sha = "0".repeat(64);

        let p = write("unknown.toml", &entry("colour = \"red\"", "a", &good_sha));
        let e = format!("{:#}", Manifest::load(&p).expect_err("unknown field"));
        assert!(e.contains("unknown.toml") && e.contains("colour"), "{e}");

        let p = write("badsha.toml", &entry("", "a", "abc"));
        let e = format!("{:#}", Manifest::load(&p).expect_err("bad sha"));
        assert!(e.contains("badsha.toml") && e.contains("sha256"), "{e}");

        let p = write(
            "dup.toml",
            &(entry("", "a", &good_sha) + &entry("", "a", &good_sha)),
        );
        assert!(Manifest::load(&p).is_err());

        let p = write("broken.toml", "[[dataset]\nid = ");
        let e = format!("{:#}", Manifest::load(&p).expect_err("bad toml"));
        assert!(e.contains("broken.toml"), "{e}");

        let p = write(
            "ok.toml",
            &(entry("", "hh_helpful_base", &good_sha) + &entry("", "pku_safe_sft", &good_sha)),
        );
        let m = Manifest::load(&p).expect("ok");
        assert_eq!(m.get("pku_safe_sft").expect("get").id, "pku_safe_sft");
        let e = format!("{:#}", m.get("hh_helpfull_base").expect_err("unknown id"));
        assert!(
            e.contains("did you mean `hh_helpful_base`") && e.contains("pku_safe_sft"),
            "{e}"
        );
    }

    // ---- splits ----

    fn repeated_prompts() -> Vec<Preference> {
        // 40 prompts, prompt k repeated (k % 4) + 1 times, interleaved.
        let mut v = Vec::new();
        for rep in 0..4 {
            for k in 0..40 {
                if rep <= k % 4 {
                    v.push(pref(&format!("prompt {k}"), v.len()));
                }
            }
        }
        v
    }

    #[test]
    fn split_is_prompt_disjoint_complete_and_ordered() {
        let prefs = repeated_prompts();
        let f = fr(&[("train", 0.8), ("val", 0.1), ("test", 0.1)]);
        let s = split_by_prompt(&prefs, &f, 7).expect("split");
        assert_eq!(
            s.keys().cloned().collect::<Vec<_>>(),
            vec!["test", "train", "val"]
        );
        let mut owner: HashMap<&str, &str> = HashMap::new();
        for (name, list) in &s {
            for p in list {
                let prev = owner.insert(p.prompt.as_str(), name.as_str());
                assert!(
                    prev.is_none() || prev == Some(name.as_str()),
                    "{} in two splits",
                    p.prompt
                );
            }
        }
        assert_eq!(owner.len(), 40);
        assert_eq!(s.values().map(Vec::len).sum::<usize>(), prefs.len());
        // Prompt counts follow the fractions: 32 / 4 / 4.
        let count = |n: &str| s[n].iter().map(|p| &p.prompt).collect::<HashSet<_>>().len();
        assert_eq!((count("train"), count("val"), count("test")), (32, 4, 4));
        // Pairs keep their original relative order.
        for list in s.values() {
            let pos: Vec<usize> = list
                .iter()
                .map(|p| prefs.iter().position(|q| q == p).expect("in input"))
                .collect();
            assert!(pos.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn split_is_deterministic_per_seed() {
        let prefs = repeated_prompts();
        let f = fr(&[("a", 0.5), ("b", 0.5)]);
        let one = split_by_prompt(&prefs, &f, 1).expect("split");
        assert_eq!(one, split_by_prompt(&prefs, &f, 1).expect("split"));
        // Input order does not matter (prompts are sorted before shuffling).
        let mut rev = prefs.clone();
        rev.reverse();
        let r = split_by_prompt(&rev, &f, 1).expect("split");
        let names = |m: &BTreeMap<String, Vec<Preference>>, k: &str| {
            m[k].iter()
                .map(|p| p.prompt.clone())
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(names(&one, "a"), names(&r, "a"));
        assert_ne!(one, split_by_prompt(&prefs, &f, 2).expect("split"));
    }

    #[test]
    fn split_fraction_errors_and_empty_splits() {
        let prefs = repeated_prompts();
        for bad in [
            fr(&[("a", 0.5), ("b", 0.4)]),
            fr(&[("a", 1.2), ("b", -0.2)]),
            fr(&[("a", 1.0), ("b", 0.0)]),
            fr(&[("a", f64::NAN)]),
            fr(&[]),
        ] {
            let e = split_by_prompt(&prefs, &bad, 0).expect_err("bad fractions");
            assert!(e.to_string().contains("fractions"), "{e}");
        }
        let e = split_by_prompt(&prefs, &fr(&[("a", 0.5), ("a", 0.5)]), 0).expect_err("dup");
        assert!(e.to_string().contains("twice"), "{e}");

        // Within 1e-6 is accepted.
        assert!(split_by_prompt(&prefs, &fr(&[("a", 0.3), ("b", 0.7 + 5e-7)]), 0).is_ok());
        // A fraction too small for any prompt leaves its split empty, but present.
        let s = split_by_prompt(&prefs, &fr(&[("big", 0.999), ("tiny", 0.001)]), 0).expect("split");
        assert!(s["tiny"].is_empty());
        assert_eq!(s["big"].len(), prefs.len());
        // No pairs at all: every split present and empty.
        let s = split_by_prompt(&[], &fr(&[("x", 0.5), ("y", 0.5)]), 0).expect("split");
        assert_eq!(s.len(), 2);
        assert!(s.values().all(Vec::is_empty));
    }

    // ---- refusals ----

    #[test]
    fn refusal_detector_literals() {
        let r = RefusalDetector::from_patterns(vec![
            "I'm sorry".into(),
            "  ".into(),
            "As an AI".into(),
            "I can’t".into(),
        ]);
        assert_eq!(r.patterns().len(), 3);
        assert!(r.is_refusal("I'm sorry, but no."));
        assert!(r.is_refusal("i’m SORRY, I won’t do that")); // curly apostrophe in the text
        assert!(r.is_refusal("Well, as an AI language model..."));
        assert!(r.is_refusal("I can't do that")); // curly apostrophe in the pattern
        assert!(!r.is_refusal("Sure! Here is a recipe for bread."));
        assert!(!r.is_refusal(""));
        assert_eq!(r.rate(["I'm sorry", "ok", "ok", "ok"]), 0.25);
        assert_eq!(r.rate(std::iter::empty()), 0.0);

        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("pat.txt");
        std::fs::write(&p, "# comment\n\n  I refuse  \n# I'm sorry\n").expect("write");
        let r = RefusalDetector::load(&p).expect("load");
        assert_eq!(r.patterns(), ["i refuse"]);
        assert!(!r.is_refusal("I'm sorry"));
        std::fs::write(&p, "# only comments\n").expect("write");
        assert!(RefusalDetector::load(&p).is_err());
    }

    // ---- the repo's own files and the real data ----

    fn repo_file(var: &str, default: &str) -> PathBuf {
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(default))
    }

    fn real_data_dir() -> Option<PathBuf> {
        let dir = repo_file("S2RM_DATA_DIR", DEFAULT_DATA_DIR);
        if dir.is_dir() {
            Some(dir)
        } else {
            // In CI the data sits beside the clone: a skip there would hide a broken path.
            assert!(std::env::var_os("CI").is_none(), "CI: datasets not found at {}", dir.display());
            eprintln!(
                "skipping real-data test: {} not found (set S2RM_DATA_DIR)",
                dir.display()
            );
            None
        }
    }

    const EXPECTED_IDS: &[&str] = &[
        "pku_saferlhf_dpo",
        "pku_safe_sft",
        "hh_harmless_base",
        "hh_helpful_base",
        "hh_helpful_online",
        "hh_helpful_rs",
        "beavertails_eval",
        "harmfulqa",
        "catqa_english",
        "dangerousqa",
        "tldr_judged",
        "tldr_references",
        "ultrafeedback_train",
        "ultrafeedback_eval",
        "alpaca_eval_outputs",
    ];

    #[test]
    fn repo_manifest_and_patterns_load() {
        let m = Manifest::load(&repo_file("S2RM_MANIFEST", DEFAULT_MANIFEST)).expect("manifest");
        let ids: Vec<&str> = m.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, EXPECTED_IDS);
        let harmful = [
            "pku_saferlhf_dpo",
            "pku_safe_sft",
            "hh_harmless_base",
            "beavertails_eval",
            "harmfulqa",
            "catqa_english",
            "dangerousqa",
        ];
        for e in &m.entries {
            let want = if harmful.contains(&e.id.as_str()) {
                "harmful"
            } else {
                "benign"
            };
            assert_eq!(e.kind, want, "{}", e.id);
        }
        let r = RefusalDetector::load(&repo_file(
            "S2RM_REFUSAL_PATTERNS",
            DEFAULT_REFUSAL_PATTERNS,
        ))
        .expect("patterns");
        assert!(r.is_refusal("I’m sorry, but I can’t help with that."));
        assert!(!r.is_refusal("Here are three ways to cook rice."));
    }

    #[test]
    fn real_data_counts() {
        let Some(dd) = real_data_dir() else { return };
        let m = Manifest::load(&repo_file("S2RM_MANIFEST", DEFAULT_MANIFEST)).expect("manifest");
        // Every file verifies against its pinned checksum.
        for e in &m.entries {
            read_verified(&m, &dd, &e.id).unwrap_or_else(|err| panic!("{err:#}"));
        }

        let pku = load_preferences(&m, &dd, "pku_saferlhf_dpo", false).expect("pku");
        assert_eq!(pku.len(), 5135);
        assert_eq!(
            pku.iter().map(|p| &p.prompt).collect::<HashSet<_>>().len(),
            930
        );
        assert_eq!(
            load_prompts(&m, &dd, "pku_saferlhf_dpo")
                .expect("prompts")
                .len(),
            930
        );
        assert_eq!(load_sft(&m, &dd, "pku_safe_sft").expect("sft").len(), 5188);

        for (id, n) in [
            ("beavertails_eval", 140),
            ("harmfulqa", 196),
            ("catqa_english", 110),
            ("dangerousqa", 200),
        ] {
            assert_eq!(load_prompts(&m, &dd, id).expect(id).len(), n, "{id}");
        }
        assert_eq!(
            load_prompts(&m, &dd, "alpaca_eval_outputs")
                .expect("alpaca")
                .len(),
            805 - 129
        );

        for (id, rows) in [
            ("hh_harmless_base", 2312),
            ("hh_helpful_base", 2354),
            ("hh_helpful_online", 1137),
            ("hh_helpful_rs", 2749),
        ] {
            let (all, rep) = load_preferences_report(&m, &dd, id, false).expect(id);
            let (single, srep) = load_preferences_report(&m, &dd, id, true).expect(id);
            eprintln!("{id}: all {rep:?}");
            eprintln!("{id}: single-turn {srep:?}");
            assert_eq!(rep.rows, rows, "{id}");
            let dropped =
                rep.unparsed + rep.prompt_mismatch + rep.multi_turn + rep.empty + rep.identical;
            assert_eq!(rep.kept + dropped, rep.rows, "{id}");
            assert_eq!(all.len(), rep.kept);
            // Drops are rare; about 30% of rows are single-turn.
            assert!(dropped * 100 < rows * 2, "{id}: {rep:?}");
            assert!(
                (rows * 25..rows * 40).contains(&(single.len() * 100)),
                "{id}: {}",
                single.len()
            );
        }

        let (t, rep) = load_preferences_report(&m, &dd, "tldr_judged", false).expect("tldr");
        eprintln!("tldr_judged: {rep:?}");
        assert_eq!((rep.rows, rep.unlabelled, t.len()), (1945, 945, 1000));
        // The same file as references: every post, and each judged pair holds its post's reference
        // on one side (the other is the 1.3B PPO summary).
        let refs = load_sft(&m, &dd, "tldr_references").expect("tldr references");
        assert_eq!(refs.len(), 1945);
        let by_post: HashMap<&str, &str> = refs.iter().map(|r| (r.prompt.as_str(), r.response.as_str())).collect();
        for p in &t {
            let r = by_post[p.prompt.as_str()];
            assert!(r == p.chosen || r == p.rejected, "reference of a judged post is neither side");
        }
        assert_eq!(load_prompts(&m, &dd, "tldr_references").expect("posts").len(), 1945);
        // UltraFeedback: 4 + 1 identical pairs and 2 with an empty side are dropped.
        for (id, rows, kept) in [
            ("ultrafeedback_train", 1000, 994),
            ("ultrafeedback_eval", 200, 199),
        ] {
            let (_, rep) = load_preferences_report(&m, &dd, id, false).expect(id);
            eprintln!("{id}: {rep:?}");
            assert_eq!((rep.rows, rep.kept), (rows, kept), "{id}");
        }

        // Refusal rates: on PKU the safer (chosen) responses refuse clearly more often.
        let r = RefusalDetector::load(&repo_file(
            "S2RM_REFUSAL_PATTERNS",
            DEFAULT_REFUSAL_PATTERNS,
        ))
        .expect("patterns");
        let rates = |p: &[Preference]| {
            (
                r.rate(p.iter().map(|x| x.chosen.as_str())),
                r.rate(p.iter().map(|x| x.rejected.as_str())),
            )
        };
        let (c, j) = rates(&pku);
        eprintln!("refusal rate pku_saferlhf_dpo: chosen {c:.4} rejected {j:.4}");
        assert!(c > 1.5 * j && c > j + 0.02, "chosen {c} rejected {j}");
        for id in ["hh_harmless_base", "hh_helpful_base"] {
            let single = load_preferences(&m, &dd, id, true).expect(id);
            let (c, j) = rates(&single);
            eprintln!(
                "refusal rate {id} (single-turn, {} pairs): chosen {c:.4} rejected {j:.4}",
                single.len()
            );
        }
        let split = split_by_prompt(&pku, &fr(&[("train", 0.8), ("val", 0.1), ("test", 0.1)]), 0)
            .expect("split");
        eprintln!(
            "pku split sizes: {:?}",
            split
                .iter()
                .map(|(k, v)| (k.as_str(), v.len()))
                .collect::<Vec<_>>()
        );
    }
}
