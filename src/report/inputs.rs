//! Loading the results directory: the five input CSVs and `run_info.json`.
//!
//! Every loader checks the header for the columns it needs and reports problems as
//! `<file> line <n>: ...`, so that a bad row in a long run is easy to find. Extra columns are ignored.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;

pub const GENERATIONS: &str = "generations.csv";
pub const PPO_LOG: &str = "ppo_log.csv";
pub const RM_EVAL: &str = "rm_eval.csv";
pub const TRAIN_LOG: &str = "train_log.csv";
pub const REFUSAL_SANITY: &str = "refusal_sanity.csv";
pub const RUN_INFO: &str = "run_info.json";
/// Optional: written only when the spec asks for the seq2seq RM's curve.
pub const RM_CURVE: &str = "rm_curve.csv";

/// One sampled response (a row of `generations.csv`; the prompt text is not needed). `response`,
/// `reference` and `reference_length_tokens` default to empty, so files written before those
/// columns existed still load.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Generation {
    pub experiment: String,
    pub size: String,
    pub seed: i64,
    pub policy: String,
    pub prompt_set: String,
    pub prompt_id: i64,
    #[serde(default)]
    pub response: String,
    pub length_tokens: f64,
    #[serde(deserialize_with = "de_flag")]
    pub truncated: bool,
    #[serde(deserialize_with = "de_flag")]
    pub refused: bool,
    pub judge_score: f64,
    /// A reference answer for the prompt (e.g. the human TL;DR summary); empty when there is none.
    #[serde(default)]
    pub reference: String,
    #[serde(default)]
    pub reference_length_tokens: Option<f64>,
}

impl Generation {
    /// The reference's length in tokens, if this row has a usable reference (text and a positive
    /// length): the reference-based metrics (ROUGE-L, length ratio) need both.
    pub fn reference_length(&self) -> Option<f64> {
        self.reference_length_tokens.filter(|&l| l > 0.0 && !self.reference.is_empty())
    }
}

/// One PPO logging step. Optional fields may be empty (a metric not logged at that step).
#[derive(Clone, Debug, Deserialize)]
pub struct PpoStep {
    pub experiment: String,
    pub size: String,
    pub seed: i64,
    pub rm: String,
    pub step: i64,
    pub rm_reward: Option<f64>,
    pub kl: Option<f64>,
    pub response_length: Option<f64>,
    pub refusal_rate: Option<f64>,
    pub entropy: Option<f64>,
    pub policy_loss: Option<f64>,
    pub value_loss: Option<f64>,
    pub clip_frac: Option<f64>,
    pub truncated_rate: Option<f64>,
}

/// The PPO metrics in the order they are shown (CSV column names).
pub const PPO_METRICS: [&str; 9] =
    ["rm_reward", "kl", "response_length", "refusal_rate", "entropy", "value_loss", "policy_loss", "clip_frac", "truncated_rate"];

impl PpoStep {
    /// The value of one of [`PPO_METRICS`], if logged and finite.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let v = match name {
            "rm_reward" => self.rm_reward,
            "kl" => self.kl,
            "response_length" => self.response_length,
            "refusal_rate" => self.refusal_rate,
            "entropy" => self.entropy,
            "policy_loss" => self.policy_loss,
            "value_loss" => self.value_loss,
            "clip_frac" => self.clip_frac,
            "truncated_rate" => self.truncated_rate,
            _ => None,
        };
        v.filter(|x| x.is_finite())
    }
}

/// One reward-model evaluation number.
#[derive(Clone, Debug, Deserialize)]
pub struct RmEval {
    pub experiment: String,
    pub size: String,
    pub seed: i64,
    pub model: String,
    pub metric: String,
    pub value: Option<f64>,
}

/// A run's competence gates: those `run_info.json` stored, or for a real-data run stored without
/// any (made before real-data gates existed), those `derive` gives from its `rm_eval.csv`.
pub fn stored_or_derived(stored: Vec<super::gates::Gate>, judge: &str, derive: impl FnOnce() -> Result<Vec<super::gates::Gate>>) -> Result<Vec<super::gates::Gate>> {
    if stored.is_empty() && judge != "gold" { derive() } else { Ok(stored) }
}

/// The gates of a real-data run from its reward-model rows.
pub fn real_data_gates(rm_eval: &[RmEval]) -> Vec<super::gates::Gate> {
    super::gates::real_data(rm_eval.iter().filter_map(|r| Some((r.seed as u64, r.model.as_str(), r.metric.as_str(), r.value?))))
}

/// One point of the seq2seq RM's curve (`rm_curve.csv`).
#[derive(Clone, Debug, Deserialize)]
pub struct CurveRow {
    pub experiment: String,
    pub size: String,
    pub step: i64,
    pub metric: String,
    pub value: f64,
}

/// One training-loss row.
#[derive(Clone, Debug, Deserialize)]
pub struct TrainStep {
    pub experiment: String,
    pub size: String,
    pub seed: i64,
    pub stage: String,
    pub step: i64,
    pub loss: Option<f64>,
}

/// Refusal-detector sanity check on the preference data itself.
#[derive(Clone, Debug, Deserialize)]
pub struct RefusalSanity {
    pub source: String,
    pub response_kind: String,
    pub n: Option<f64>,
    pub refusal_rate: Option<f64>,
}

/// `run_info.json`. Unknown fields are ignored; missing ones take defaults.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct RunInfo {
    pub experiment: String,
    pub title: String,
    pub claim: String,
    pub profile: String,
    pub device: String,
    pub seeds: Vec<i64>,
    pub n_bootstrap: usize,
    pub bootstrap_seed: u64,
    pub stage_seconds: BTreeMap<String, f64>,
    pub total_seconds: f64,
    pub param_counts: BTreeMap<String, i64>,
    pub notes: Vec<String>,
    pub spec_file: String,
    /// How answers were judged: `gold` (a controlled world's program) or `learned` (a judge RM;
    /// runs from before this field).
    pub judge: String,
    /// Competence gates (measured in controlled worlds).
    pub gates: Vec<super::gates::Gate>,
    /// What the generated preference data of a world looks like (the planted knobs, measured).
    pub world_label_stats: BTreeMap<String, f64>,
}

impl Default for RunInfo {
    fn default() -> Self {
        Self {
            experiment: String::new(),
            title: String::new(),
            claim: String::new(),
            profile: String::new(),
            device: String::new(),
            seeds: Vec::new(),
            n_bootstrap: 1000,
            bootstrap_seed: 0,
            stage_seconds: BTreeMap::new(),
            total_seconds: 0.0,
            param_counts: BTreeMap::new(),
            notes: Vec::new(),
            spec_file: String::new(),
            judge: String::new(),
            gates: Vec::new(),
            world_label_stats: BTreeMap::new(),
        }
    }
}

/// Everything `render` reads.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub generations: Vec<Generation>,
    pub ppo: Vec<PpoStep>,
    pub rm_eval: Vec<RmEval>,
    pub train: Vec<TrainStep>,
    pub refusal_sanity: Vec<RefusalSanity>,
    /// The seq2seq RM's copy metrics while it trained (`rm_curve.csv`; empty without one).
    pub rm_curve: Vec<CurveRow>,
    pub info: RunInfo,
}

impl Inputs {
    pub fn load(dir: &Path) -> Result<Self> {
        let info_path = dir.join(RUN_INFO);
        let info_text = read_required(&info_path, RUN_INFO)?;
        let info: RunInfo =
            serde_json::from_str(&info_text).with_context(|| format!("{RUN_INFO}: invalid JSON ({})", info_path.display()))?;
        let mut inp = Self {
            generations: load_csv(
                dir,
                GENERATIONS,
                &[
                    "experiment",
                    "size",
                    "seed",
                    "policy",
                    "prompt_set",
                    "prompt_id",
                    "length_tokens",
                    "truncated",
                    "refused",
                    "judge_score",
                ],
                check_generation,
            )?,
            ppo: load_csv(dir, PPO_LOG, &["experiment", "size", "seed", "rm", "step"], |_| Ok(()))?,
            rm_eval: load_rm_eval(dir)?,
            train: load_csv(dir, TRAIN_LOG, &["experiment", "size", "seed", "stage", "step", "loss"], |_| Ok(()))?,
            refusal_sanity: load_csv(dir, REFUSAL_SANITY, &["source", "response_kind", "n", "refusal_rate"], |_| Ok(()))?,
            rm_curve: if dir.join(RM_CURVE).is_file() {
                load_csv(dir, RM_CURVE, &["experiment", "size", "seed", "model", "step", "metric", "value"], |_| Ok(()))?
            } else {
                Vec::new()
            },
            info,
        };
        let stored = std::mem::take(&mut inp.info.gates);
        inp.info.gates = stored_or_derived(stored, &inp.info.judge, || Ok(real_data_gates(&inp.rm_eval)))?;
        Ok(inp)
    }
}

/// The win-rate and length statistics need real numbers here; a NaN would silently skew them.
fn check_generation(g: &Generation) -> Result<()> {
    if !g.judge_score.is_finite() {
        bail!("judge_score is not a finite number ({})", g.judge_score);
    }
    if !g.length_tokens.is_finite() || g.length_tokens < 0.0 {
        bail!("length_tokens must be a non-negative number ({})", g.length_tokens);
    }
    // A reference without its length (or with a broken one) would silently drop the row from the
    // reference-based metrics; say so instead.
    match (g.reference.is_empty(), g.reference_length_tokens) {
        (_, Some(l)) if !l.is_finite() || l < 0.0 => {
            bail!("reference_length_tokens must be a non-negative number ({l})")
        }
        (false, None) => bail!("reference is given but reference_length_tokens is empty"),
        _ => {}
    }
    Ok(())
}

fn read_required(path: &Path, name: &str) -> Result<String> {
    if !path.is_file() {
        bail!("missing input file {name} (expected at {})", path.display());
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {name} ({})", path.display()))
}

/// Parse a CSV with a header row into `T`, checking that `required` columns exist and running
/// `check` on each row. Errors name the file and the (1-based, physical) line of the record.
pub fn load_rm_eval(dir: &Path) -> Result<Vec<RmEval>> {
    load_csv(dir, RM_EVAL, &["experiment", "size", "seed", "model", "metric", "value"], |_| Ok(()))
}

fn load_csv<T: DeserializeOwned>(dir: &Path, name: &str, required: &[&str], check: impl Fn(&T) -> Result<()>) -> Result<Vec<T>> {
    let path = dir.join(name);
    let text = read_required(&path, name)?;
    parse_csv(&text, name, required, check)
}

pub(crate) fn parse_csv<T: DeserializeOwned>(
    text: &str,
    name: &str,
    required: &[&str],
    check: impl Fn(&T) -> Result<()>,
) -> Result<Vec<T>> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let headers = rdr.headers().with_context(|| format!("{name}: cannot read the header row"))?.clone();
    let missing: Vec<&str> = required.iter().copied().filter(|c| !headers.iter().any(|h| h.trim() == *c)).collect();
    if !missing.is_empty() {
        bail!("{name}: header is missing column(s) {}", missing.join(", "));
    }
    let mut out = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                bail!("{name} line {line}: {e}");
            }
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        record.trim();
        let row: T =
            record.deserialize(Some(&headers)).map_err(|e| anyhow::anyhow!("{name} line {line}: {}", describe_csv_error(&e, &headers)))?;
        check(&row).with_context(|| format!("{name} line {line}"))?;
        out.push(row);
    }
    Ok(out)
}

/// csv's deserialize errors name the field by index; name the column instead.
fn describe_csv_error(e: &csv::Error, headers: &csv::StringRecord) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => match err.field().and_then(|i| headers.get(i as usize)) {
            Some(col) => format!("column '{}': {}", col.trim(), err.kind()),
            None => err.kind().to_string(),
        },
        _ => e.to_string(),
    }
}

/// Accept `0`/`1` (and `true`/`false`) for boolean flag columns.
fn de_flag<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    match s.trim() {
        "1" | "true" | "True" | "TRUE" => Ok(true),
        "0" | "false" | "False" | "FALSE" => Ok(false),
        other => Err(serde::de::Error::custom(format!("expected 0 or 1, got {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_row_names_file_and_line() {
        let text = "experiment,size,seed,rm,step,kl\nx,tiny,0,scalar,1,0.5\nx,tiny,zero,scalar,2,0.1\n";
        let err = parse_csv::<PpoStep>(text, PPO_LOG, &["seed"], |_| Ok(())).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("ppo_log.csv line 3"), "{msg}");
        assert!(msg.contains("column 'seed'"), "{msg}");
    }

    #[test]
    fn missing_column_is_reported() {
        let text = "experiment,size,seed\nx,tiny,0\n";
        let err = parse_csv::<TrainStep>(text, TRAIN_LOG, &["stage", "loss"], |_| Ok(())).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("train_log.csv") && msg.contains("stage, loss"), "{msg}");
    }

    #[test]
    fn flags_and_empty_optionals() {
        let text = "experiment,size,seed,rm,step,kl,entropy\nx,tiny,0,scalar,1,,0.5\n";
        let rows = parse_csv::<PpoStep>(text, PPO_LOG, &[], |_| Ok(())).unwrap();
        assert_eq!(rows[0].kl, None);
        assert_eq!(rows[0].metric("entropy"), Some(0.5));
        let g = "experiment,size,seed,policy,prompt_set,prompt_id,length_tokens,truncated,refused,judge_score\n\
                 x,tiny,0,sft,benign,1,10,0,2,0.1\n";
        let err = parse_csv::<Generation>(g, GENERATIONS, &[], |_| Ok(())).unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    }
    #[test]
    fn reference_columns_are_optional() {
        const OLD: &str = "experiment,size,seed,policy,prompt_set,prompt_id,prompt,response,length_tokens,truncated,refused,judge_score\n\
                           x,tiny,0,sft,benign,1,p,an answer,10,0,0,0.1\n";
        let rows = parse_csv::<Generation>(OLD, GENERATIONS, &[], check_generation).unwrap();
        assert_eq!(rows[0].response, "an answer");
        assert_eq!((rows[0].reference.as_str(), rows[0].reference_length_tokens), ("", None));
        assert_eq!(rows[0].reference_length(), None);

        let new = "experiment,size,seed,policy,prompt_set,prompt_id,prompt,response,length_tokens,truncated,refused,judge_score,reference,reference_length_tokens\n\
                   x,tiny,0,sft,benign,1,p,a,10,0,0,0.1,the cat sat,4\n\
                   x,tiny,0,sft,ood_alpaca,2,p,a,10,0,0,0.1,,\n";
        let rows = parse_csv::<Generation>(new, GENERATIONS, &[], check_generation).unwrap();
        assert_eq!(rows[0].reference, "the cat sat");
        assert_eq!(rows[0].reference_length(), Some(4.0));
        assert_eq!(rows[1].reference_length(), None);

        let bad = "experiment,size,seed,policy,prompt_set,prompt_id,prompt,response,length_tokens,truncated,refused,judge_score,reference,reference_length_tokens\n\
                   x,tiny,0,sft,benign,1,p,a,10,0,0,0.1,the cat sat,\n";
        let err = parse_csv::<Generation>(bad, GENERATIONS, &[], check_generation).unwrap_err();
        assert!(format!("{err:#}").contains("reference_length_tokens is empty"), "{err:#}");
    }
}
