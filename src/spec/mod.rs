//! Experiment specs: serde structs mirroring `experiments/*.toml`, profiles (partial tables deep-
//! merged over the base), `--set key=value` overrides and validation with errors that name the
//! file, the field and the fix.

use crate::model::LmConfig;
use crate::reward::DivergenceRule;
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub experiment: ExperimentSpec,
    pub data: DataSpec,
    pub model: LmConfig,
    pub pretrain: TrainSpec,
    pub sft: TrainSpec,
    pub scalar_rm: ScalarRmSpec,
    pub seq2seq_rm: Seq2seqRmSpec,
    pub judge: JudgeSpec,
    pub ppo: PpoSpec,
    pub eval: EvalSpec,
    /// Named partial specs merged over the base (`smoke`, `default`, `gpu`).
    #[serde(default, skip_serializing)]
    pub profiles: BTreeMap<String, toml::Table>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    pub name: String,
    pub title: String,
    /// The paper's claim this experiment tests, quoted in the report.
    pub claim: String,
    pub seeds: Vec<u64>,
    /// Folder holding the datasets (relative paths are resolved from the working directory).
    pub data_dir: String,
    pub output_dir: String,
    /// `auto`, `cpu` or `wgpu`.
    pub device: String,
    /// Seed of the shared stages (splits, tokenizer, base LM, SFT, judge).
    pub base_seed: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Manifest of the datasets (file, sha256, licence, upstream).
    pub manifest: String,
    /// Preference sets split by prompt into rm / policy / judge / eval.
    pub preference: Vec<String>,
    /// HH-RLHF dialogues: keep single-turn rows only.
    pub single_turn_only: bool,
    /// Extra SFT rows (prompt, response); rows whose prompt is an eval or judge prompt are dropped.
    pub sft_extra: Vec<String>,
    /// SFT also imitates the chosen responses of the rm and policy splits (default). Summarization
    /// sets it false: its chosen side is often a PPO policy's summary, and SFT should imitate the
    /// human references (`sft_extra`).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub sft_from_chosen: bool,
    /// A dataset of (prompt, response) rows whose response is the reference answer of an eval
    /// prompt (e.g. the human TL;DR summary): enables ROUGE-L and length-ratio metrics. Empty: none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reference: String,
    /// Extra preference sets only the judge trains on.
    pub judge_extra: Vec<String>,
    /// Split fractions by prompt; must sum to 1.
    pub split: BTreeMap<String, f64>,
    /// Cap on pairs read per preference source (0 = all), applied after the split, per split.
    pub max_pairs_per_split: usize,
    pub max_prompt_tokens: usize,
    pub max_response_tokens: usize,
    pub refusal_patterns: String,
    /// Cap on documents in the pretraining / tokenizer corpus (0 = all).
    pub max_corpus_docs: usize,
    /// A controlled world (`src/world/`) instead of datasets: its pairs, SFT demonstrations,
    /// corpus and out-of-distribution prompts are generated, and its gold reward is the judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<crate::world::WorldSpec>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub grad_clip: f32,
    /// Decay the learning rate along a cosine to a tenth after the warm-up (default: constant).
    #[serde(default, skip_serializing_if = "is_false")]
    pub cosine_decay: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalarRmSpec {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub grad_clip: f32,
    /// Coefficient of the L2 term on the scores (PKU frameworks: 0.001).
    pub score_l2: f64,
    /// PPO reward = (score - mean) / std over the RM's training responses, then clipped.
    pub normalize: bool,
    /// Training pairs whose scores give that mean and std (the first this many).
    #[serde(default = "norm_pairs", skip_serializing_if = "is_norm_pairs")]
    pub norm_pairs: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seq2seqRmSpec {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub grad_clip: f32,
    /// `one_to_one`: every batch mixes correction and identity examples 1:1;
    /// `identity_warmup`: identity only for `identity_warmup_steps`, then 1:1; `identity_only` /
    /// `correction_only`: one mapping alone (ablations); `fraction`: `correction_fraction` of
    /// every batch are correction examples, the rest identity ones.
    pub mixing: String,
    /// The share of correction examples per batch under `mixing = "fraction"` (0.5 is 1:1).
    #[serde(default = "half", skip_serializing_if = "is_half")]
    pub correction_fraction: f64,
    pub identity_warmup_steps: usize,
    pub rule: DivergenceRule,
    /// `sum`: the divergence rule as stated, one reward per token (a response's return grows with
    /// its length); `mean`: each token's reward divided by the response length, so the return is the
    /// mean token reward and length itself earns nothing (an ablation; the paper leaves scaling open).
    pub reward_scaling: String,
    /// Measure the RM on `curve_pairs` held-out pairs every this many training steps (and after
    /// the last), for `rm_curve.csv` and its figure: how copying chosen and rejected inputs
    /// develops; 0 = only after training.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub curve_every: usize,
    #[serde(default = "curve_pairs", skip_serializing_if = "is_curve_pairs")]
    pub curve_pairs: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeSpec {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub grad_clip: f32,
    pub score_l2: f64,
    /// Say the judge's held-out pair accuracy on the console every this many steps while it
    /// trains (0 = only after training); it changes no trained weight.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub curve_every: usize,
    /// Adapt the judge's last this many blocks (0 = every block) instead of `model.lora.layers`:
    /// the judge decides every win rate, so it may be given more capacity than the roles it judges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_layers: Option<usize>,
    /// A trained judge (LoRA adapters and score head, as `s2rm judge` writes them) loaded instead
    /// of training one, so that every user's win rates come from the same judge; "" = train it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub adapter: String,
    /// The adapter file's sha256 (hex); a file with another hash is refused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub adapter_sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PpoSpec {
    pub steps: usize,
    /// Prompts per rollout batch.
    pub batch_size: usize,
    pub ppo_epochs: usize,
    pub minibatch_size: usize,
    pub lr: f64,
    pub grad_clip: f32,
    pub kl_coef: f32,
    pub clip_ratio: f64,
    pub value_clip: f64,
    pub vf_coef: f64,
    pub gamma: f32,
    pub lambda: f32,
    /// Scalar scores are clipped to ±score_clip after normalisation.
    pub score_clip: f32,
    pub max_new_tokens: usize,
    /// Added to the last token's reward of a response cut off without an end token (both RMs).
    pub truncation_penalty: f32,
    pub whiten_advantages: bool,
    /// Write a checkpoint (policy, optimizer state, log and sampler states) every this many PPO
    /// steps, which a rerun of an interrupted run resumes from; 0 = never. Results do not depend on
    /// it (it is left out of the stage-cache key).
    #[serde(default)]
    pub checkpoint_every: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// Eval prompts per prompt set (benign / harmful, from the eval split); 0 = all.
    pub max_prompts_per_set: usize,
    pub max_new_tokens: usize,
    pub n_bootstrap: usize,
    pub bootstrap_seed: u64,
    /// Held-out pairs of the eval split the reward models and the judge are measured on
    /// (`rm_eval.csv`), the first this many; 0 = all. Measuring trains nothing, so it is no part of
    /// any stage key.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_rm_pairs: usize,
    /// Out-of-distribution prompt sets: set name (`ood_…`) → prompt datasets pooled into it (capped
    /// at `max_prompts_per_set`). No stage trains on them, and the `eval` table is not part of the
    /// stage-cache key, so adding a set to a finished run reuses every trained model.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_sets: BTreeMap<String, Vec<String>>,
}

/// A spec after profile and overrides, with where it came from.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub spec: Spec,
    pub file: PathBuf,
    pub profile: String,
}

fn norm_pairs() -> usize {
    512
}

fn is_norm_pairs(n: &usize) -> bool {
    *n == norm_pairs()
}

fn curve_pairs() -> usize {
    32
}

fn is_curve_pairs(n: &usize) -> bool {
    *n == curve_pairs()
}

fn half() -> f64 {
    0.5
}

fn is_half(x: &f64) -> bool {
    *x == half()
}

impl JudgeSpec {
    /// The judge's LoRA: `model_lora` with the judge's own `lora_layers`, where set.
    pub fn lora(&self, model_lora: &crate::model::lora::LoraConfig) -> crate::model::lora::LoraConfig {
        crate::model::lora::LoraConfig { layers: self.lora_layers.unwrap_or(model_lora.layers), ..model_lora.clone() }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Profiles a spec may define: `smoke` (seconds, what the tests run), `default` (the committed
/// results, model preset `tiny`), `small` (the second model size, same steps), `pretrained`
/// (SmolLM2-135M as LoRA roles, a budget for the 2-core CPU), `gpu` (SmolLM2-135M fine-tuned in
/// full, a GPU budget), `null` (a controlled world's null control: its planted biases off).
pub const PROFILES: [&str; 6] = ["smoke", "default", "small", "pretrained", "gpu", "null"];

pub mod schema;
mod validate;
use schema::{Problem, Schema};
pub use validate::validate;

/// The profiles a spec file defines, in [`PROFILES`] order, with `default` always first (it is the
/// base tables themselves). An unreadable file gives just `default`, whose load reports the problem.
pub fn defined_profiles(file: &Path) -> Vec<String> {
    let defined: Vec<String> = std::fs::read_to_string(file)
        .ok()
        .and_then(|text| toml::from_str::<toml::Table>(&text).ok())
        .and_then(|t| t.get("profiles").and_then(|p| p.as_table()).map(|p| p.keys().cloned().collect()))
        .unwrap_or_default();
    let mut out = vec!["default".to_string()];
    out.extend(PROFILES.iter().filter(|&&p| p != "default" && defined.iter().any(|d| d == p)).map(|p| p.to_string()));
    out
}

/// The key tree of [`Spec`], traced once from the structs.
fn spec_schema() -> &'static Schema {
    static SCHEMA: std::sync::OnceLock<Schema> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| Schema::of::<Spec>().unwrap_or_default())
}

/// Reads a spec, merges the profile and `--set` overrides, validates. Every error is one line that
/// names the file (with line and column where known), the key and what is expected.
pub fn load(file: &Path, profile: &str, sets: &[String]) -> Result<Resolved> {
    let shown = file.display();
    let bytes = std::fs::read(file).with_context(|| format!("cannot read spec {shown}"))?;
    let text = crate::util::utf8_text(&shown.to_string(), &bytes)?;
    let mut base: toml::Table = toml::from_str(text)
        .map_err(|e| anyhow!("{}", crate::util::toml_error(file, text, &e).replacen(": ", ": invalid TOML: ", 1)))?;
    let schema = spec_schema();
    let problem = |p: Problem, origin: Option<&str>| -> anyhow::Error {
        let (path, msg) = match p {
            Problem::Unknown { path, suggestion, valid } => {
                let hint = match suggestion {
                    Some(s) => format!(" — did you mean `{s}`?"),
                    None => format!("; valid keys here: {}", valid.join(", ")),
                };
                (path.clone(), format!("unknown key `{path}`{hint}"))
            }
            Problem::WrongType { path, expected, found } => {
                (path.clone(), format!("`{path}` must be {expected}, found {found}"))
            }
        };
        match origin {
            Some(set) => anyhow!("{shown}: --set {set}: {msg}"),
            None => match find_line(text, &path) {
                Some(line) => anyhow!("{shown}:{line}: {msg}"),
                None => anyhow!("{shown}: {msg}"),
            },
        }
    };
    let profiles = base.remove("profiles");
    if let Some(p) = schema.check(&base, "", "") {
        return Err(problem(p, None));
    }
    let mut chosen = None;
    if let Some(p) = profiles.as_ref() {
        let table = p.as_table().ok_or_else(|| anyhow!("{shown}: `profiles` must be a table of profiles ({})", PROFILES.join(", ")))?;
        for (name, over) in table {
            if !PROFILES.contains(&name.as_str()) {
                let hint = schema::closest(name, &PROFILES).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
                bail!("{shown}: unknown profile `profiles.{name}`{hint}; profiles are {}", PROFILES.join(", "));
            }
            let over = over.as_table().ok_or_else(|| anyhow!("{shown}: `profiles.{name}` must be a table"))?;
            if let Some(p) = schema.check(over, "", &format!("profiles.{name}")) {
                return Err(problem(p, None));
            }
            if name == profile {
                chosen = Some(over);
            }
        }
        if let Some(over) = chosen {
            // A profile naming another model preset describes a new model: its `model` table
            // replaces the base one instead of merging into it (no stale shape fields).
            let preset = |t: &toml::Table| t.get("model").and_then(|m| m.get("preset")).cloned();
            if preset(over).is_some() && preset(over) != preset(&base) {
                base.remove("model");
            }
            merge(&mut base, over);
        } else if profile != "default" {
            bail!("{shown}: no profile `{profile}` (has: {})", table.keys().cloned().collect::<Vec<_>>().join(", "));
        }
    } else if profile != "default" {
        bail!("{shown}: no profiles table, so profile `{profile}` does not exist");
    }
    for s in sets {
        let mut alone = toml::Table::new();
        apply_set(&mut alone, s).map_err(|e| anyhow!("--set {s}: {e}"))?;
        if let Some(p) = schema.check(&alone, "", "") {
            return Err(problem(p, Some(s)));
        }
        apply_set(&mut base, s).map_err(|e| anyhow!("--set {s}: {e}"))?;
    }
    let mut spec: Spec = toml::Value::Table(base.clone())
        .try_into()
        .map_err(|e: toml::de::Error| anyhow!("{shown} (profile {profile}): {}", describe_de_error(&e, &base, schema)))?;
    spec.model.apply_preset();
    validate(&spec).map_err(|e| {
        // Point at the line that set the offending key: the chosen profile's, else the base's.
        let msg = e.to_string();
        let key = msg.split('`').nth(1).unwrap_or("");
        if let Some(set) = sets.iter().find(|s| s.split('=').next().map(str::trim) == Some(key)) {
            return anyhow!("{shown} (profile {profile}, --set {set}): {msg}");
        }
        let in_profile = chosen.is_some_and(|t| lookup_value(t, key).is_some());
        let line = if in_profile { find_line(text, &format!("profiles.{profile}.{key}")) } else { find_line(text, key) };
        match line {
            Some(l) => anyhow!("{shown}:{l} (profile {profile}): {msg}"),
            None => anyhow!("{shown} (profile {profile}): {msg}"),
        }
    })?;
    Ok(Resolved { spec, file: file.to_path_buf(), profile: profile.to_string() })
}

/// serde's message, with the full key path of a missing field (serde names only the field).
fn describe_de_error(e: &toml::de::Error, table: &toml::Table, schema: &Schema) -> String {
    let msg = e.message().trim().replace('\n', "; ");
    let missing = msg.strip_prefix("missing field `").and_then(|r| r.split('`').next());
    if let Some(field) = missing {
        // The struct that lacks it: a table present in the spec whose schema has the field.
        for (path, kind) in &schema.kinds {
            let schema::Kind::Table(fields) = kind else { continue };
            if !fields.iter().any(|f| *f == field) {
                continue;
            }
            let here = if path.is_empty() { Some(table) } else { lookup(table, path) };
            if here.is_some_and(|t| !t.contains_key(field)) {
                let full = if path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
                let what = match schema.kinds.get(&full) {
                    Some(schema::Kind::Table(_)) => format!("a [{full}] table"),
                    Some(k) => k.expected().to_string(),
                    None => "a value".to_string(),
                };
                return format!("missing key `{full}` (expected {what})");
            }
        }
    }
    msg
}

fn lookup_value<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let (parents, key) = match path.rsplit_once('.') {
        Some((p, k)) => (Some(p), k),
        None => (None, path),
    };
    let t = match parents {
        Some(p) => lookup(table, p)?,
        None => table,
    };
    t.get(key)
}

fn lookup<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Table> {
    let mut t = table;
    for k in path.split('.') {
        t = t.get(k)?.as_table()?;
    }
    Some(t)
}

/// The line (1-based) where key `path` (e.g. `ppo.lr`, `profiles.smoke.ppo.steps`, `seeds[1]`) is
/// written, when exactly one line fits: a `key =` line under a header that, together with the
/// inline keys on the line, spells the path, or a `[path]` header. A best effort for messages.
fn find_line(text: &str, path: &str) -> Option<usize> {
    if path.is_empty() || path.contains(char::is_whitespace) {
        return None;
    }
    let path = path.split('[').next().unwrap_or(path);
    let segs: Vec<&str> = path.split('.').collect();
    let (key, parents) = segs.split_last()?;
    let mut header: Vec<String> = Vec::new();
    let mut hits = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            let inner = line.trim_start_matches('[').trim_end_matches(']').trim();
            header = inner.split('.').map(|s| s.trim().trim_matches('"').to_string()).collect();
            if header == segs {
                hits.push(i + 1);
            }
            continue;
        }
        // The header must be a prefix of the parents, and the rest of the parents appear on the line.
        if header.len() > parents.len() || header.iter().zip(parents.iter()).any(|(a, b)| a != b) {
            continue;
        }
        let rest = &parents[header.len()..];
        let has_key = |k: &str| {
            line.match_indices(k).any(|(at, _)| {
                let before = line[..at].chars().next_back();
                let after = line[at + k.len()..].trim_start();
                before.is_none_or(|c| matches!(c, ' ' | '{' | ',' | '.' | '\t'))
                    && (after.starts_with('=') || after.starts_with('.'))
            })
        };
        if rest.iter().all(|p| has_key(p)) && has_key(key) {
            hits.push(i + 1);
        }
    }
    if hits.len() == 1 { Some(hits[0]) } else { None }
}

/// Deep merge: tables merge key by key, everything else is replaced.
pub fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `a.b.c=value`, where value is TOML (`3`, `1e-4`, `true`, `"text"`, `[1, 2]`); a bare word is a string.
pub fn apply_set(base: &mut toml::Table, s: &str) -> Result<()> {
    let (path, raw) = s.split_once('=').ok_or_else(|| anyhow!("expected key=value"))?;
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let keys: Vec<&str> = path.trim().split('.').collect();
    let mut table = base;
    for k in &keys[..keys.len() - 1] {
        table = table
            .entry(k.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| anyhow!("`{k}` is not a table"))?;
    }
    table.insert(keys[keys.len() - 1].to_string(), value);
    Ok(())
}

impl Spec {
    /// The resolved spec as TOML (saved beside the results).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("cannot serialise spec")
    }

    pub fn split_fractions(&self) -> Vec<(String, f64)> {
        self.data.split.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spec in experiments/ loads and validates in every profile it defines, and the three
    /// paper experiments are there (what `s2rm validate experiments/*.toml` checks).
    #[test]
    fn every_experiment_spec_validates_in_every_profile() {
        let mut names = Vec::new();
        for e in std::fs::read_dir("experiments").unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                for profile in defined_profiles(&path) {
                    let r = load(&path, &profile, &[]).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                    assert!(r.spec.experiment.output_dir.starts_with("results/"), "{}", path.display());
                    if profile == "default" {
                        names.push(r.spec.experiment.name.clone());
                    }
                }
            }
        }
        names.sort();
        assert_eq!(names, ["helpfulness", "safety", "summarization", "world_safety", "world_summarization"]);
    }

    #[test]
    fn the_judge_may_adapt_other_blocks_than_the_roles_it_judges() {
        let s = load(Path::new("experiments/safety.toml"), "pretrained", &[]).unwrap().spec;
        assert_eq!(s.judge.lora_layers, None);
        assert_eq!(s.judge.lora(&s.model.lora), s.model.lora, "unset: the model's LoRA");
        let s = load(Path::new("experiments/safety.toml"), "pretrained", &["judge.lora_layers=0".into()]).unwrap().spec;
        let j = s.judge.lora(&s.model.lora);
        assert_eq!((j.layers, j.rank, j.alpha), (0, s.model.lora.rank, s.model.lora.alpha));
        assert_eq!(s.model.lora.layers, 8, "the other roles keep theirs");
    }

    #[test]
    fn merge_is_deep_and_set_parses_values() {
        let mut base: toml::Table = toml::from_str("[a]\nx = 1\ny = 2\n[b]\nz = \"q\"").unwrap();
        let over: toml::Table = toml::from_str("[a]\ny = 5").unwrap();
        merge(&mut base, &over);
        assert_eq!(base["a"]["x"].as_integer(), Some(1));
        assert_eq!(base["a"]["y"].as_integer(), Some(5));
        apply_set(&mut base, "a.x=1e-4").unwrap();
        apply_set(&mut base, "b.z=cpu").unwrap();
        apply_set(&mut base, "c.w=[1, 2]").unwrap();
        assert_eq!(base["a"]["x"].as_float(), Some(1e-4));
        assert_eq!(base["b"]["z"].as_str(), Some("cpu"));
        assert_eq!(base["c"]["w"].as_array().unwrap().len(), 2);
        assert!(apply_set(&mut base, "novalue").is_err());
    }
}

#[cfg(test)]
mod schema_of_spec {
    /// The key tree of the real `Spec` traces (a failure would silently disable the unknown-key
    /// and type checks).
    #[test]
    fn spec_schema_traces() {
        let s = super::schema::Schema::of::<super::Spec>();
        assert!(s.is_ok(), "{:?}", s.err());
        assert!(s.unwrap().fields("model").unwrap().contains(&"arch"));
    }
}
