//! Spec → stages → result files.
//!
//! Shared stages (seeded with `experiment.base_seed`): data splits, tokenizer, base LM, SFT, judge.
//! Per-seed stages: scalar RM, seq2seq RM, one PPO run per RM, evaluation. From SFT and the judge
//! on, the stages form a graph that `schedule` runs two at a time. Everything the report
//! needs is written as CSV + `run_info.json`; `report::render` then derives tables and figures.

use crate::data::{self, Manifest, Preference, RefusalDetector};
use crate::device;
use crate::eval::{self, EvalCtx, EvalPrompt, GenRow};
use crate::model::{Lm, LmConfig};
use crate::reward::{ScalarReward, Seq2seqReward, TokenReward};
use crate::schedule;
use crate::spec::{Resolved, Spec};
use crate::text::Text;
use crate::train::ppo::{PpoInputs, PpoLog, train_ppo};
use crate::train::{self, LoopCfg, PairIds, StepLog};
use crate::util::{SplitMix64, sha256_hex};
use anyhow::{Context, Result, bail};
use burn::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// Command-line overrides of spec fields.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub output: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub device: Option<String>,
    /// Run the stage graph on one worker (stages one after the other) instead of two. Same
    /// results; for timing comparisons.
    pub sequential: bool,
}

/// Everything the data stage hands to training, as text.
pub struct Corpus {
    pub splits: BTreeMap<String, Vec<Preference>>,
    pub sft_rows: Vec<(String, String)>,
    pub judge_pairs: Vec<Preference>,
    pub eval_prompts: Vec<(String, Vec<String>)>,
    /// Reference answer of an eval prompt (`data.reference`), by prompt text.
    pub references: HashMap<String, String>,
    pub docs: Vec<String>,
    pub refusal_sanity: Vec<(String, String, usize, f64)>,
    pub counts: BTreeMap<String, usize>,
}

fn capped<T: Clone>(v: &[T], cap: usize, seed: u64) -> Vec<T> {
    if cap == 0 || v.len() <= cap {
        return v.to_vec();
    }
    let mut idx: Vec<usize> = (0..v.len()).collect();
    SplitMix64::new(seed).shuffle(&mut idx);
    let mut keep: Vec<usize> = idx[..cap].to_vec();
    keep.sort_unstable();
    keep.into_iter().map(|i| v[i].clone()).collect()
}

/// Reads, verifies and splits the data of a spec (by prompt: no prompt crosses splits).
pub fn build_corpus(spec: &Spec, manifest: &Manifest, data_dir: &Path, refusal: &RefusalDetector) -> Result<Corpus> {
    let d = &spec.data;
    let seed = spec.experiment.base_seed;
    let mut all = Vec::new();
    let mut kind_of: HashMap<String, String> = HashMap::new();
    let mut counts = BTreeMap::new();
    let mut refusal_sanity = Vec::new();
    for id in &d.preference {
        let entry = manifest.get(id)?;
        kind_of.insert(id.clone(), entry.kind.clone());
        let (prefs, report) = data::load_preferences_report(manifest, data_dir, id, d.single_turn_only)?;
        if prefs.is_empty() {
            bail!("dataset `{id}` gave no usable preference pairs (file {}, {report:?})", entry.file);
        }
        counts.insert(format!("pairs_{id}"), prefs.len());
        for (kind, pick) in [("chosen", true), ("rejected", false)] {
            let rate = refusal.rate(prefs.iter().map(|p| if pick { p.chosen.as_str() } else { p.rejected.as_str() }));
            refusal_sanity.push((id.clone(), kind.to_string(), prefs.len(), rate));
        }
        all.extend(prefs);
    }
    let raw_splits = data::split_by_prompt(&all, &spec.split_fractions(), seed)?;
    if let Some((name, _)) = raw_splits.iter().find(|(_, v)| v.is_empty()) {
        let prompts = all.iter().map(|p| p.prompt.as_str()).collect::<BTreeSet<_>>().len();
        bail!(
            "data split `{name}` is empty: the preference datasets ({}) have only {prompts} distinct prompts, too few to split by `data.split`; add data or change the fractions",
            d.preference.join(", ")
        );
    }
    // Cap each split per source, so that one large source cannot crowd out the others.
    let mut splits = BTreeMap::new();
    for (name, pairs) in &raw_splits {
        let mut kept = Vec::new();
        for (k, id) in d.preference.iter().enumerate() {
            let of_src: Vec<Preference> = pairs.iter().filter(|p| &p.source == id).cloned().collect();
            kept.extend(capped(&of_src, d.max_pairs_per_split, seed ^ (k as u64 + 1) * 0x9e37));
        }
        counts.insert(format!("split_{name}_pairs"), kept.len());
        splits.insert(name.clone(), kept);
    }
    let eval_set: BTreeSet<&str> = raw_splits["eval"].iter().map(|p| p.prompt.as_str()).collect();
    let judge_set: BTreeSet<&str> = raw_splits["judge"].iter().map(|p| p.prompt.as_str()).collect();

    // Eval prompt sets, named by the kind of their source (benign / harmful).
    let mut by_kind: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for p in &raw_splits["eval"] {
        if seen.insert(p.prompt.clone()) {
            by_kind.entry(kind_of[&p.source].clone()).or_default().push(p.prompt.clone());
        }
    }
    let mut eval_prompts: Vec<(String, Vec<String>)> = by_kind
        .into_iter()
        .map(|(k, v)| {
            let v = capped(&v, spec.eval.max_prompts_per_set, seed ^ 0xe7a1);
            counts.insert(format!("eval_prompts_{k}"), v.len());
            (k, v)
        })
        .collect();

    // SFT: chosen responses of the rm and policy splits (unless `sft_from_chosen = false`), plus
    // extra SFT rows whose prompt is neither an eval nor a judge prompt.
    let mut sft_rows: Vec<(String, String)> = Vec::new();
    if d.sft_from_chosen {
        for name in ["rm", "policy"] {
            sft_rows.extend(splits[name].iter().map(|p| (p.prompt.clone(), p.chosen.clone())));
        }
    }
    for id in &d.sft_extra {
        let rows = data::load_sft(manifest, data_dir, id)?;
        let before = sft_rows.len();
        sft_rows.extend(
            rows.into_iter()
                .filter(|r| !eval_set.contains(r.prompt.as_str()) && !judge_set.contains(r.prompt.as_str()))
                .map(|r| (r.prompt, r.response)),
        );
        counts.insert(format!("sft_rows_{id}"), sft_rows.len() - before);
    }
    counts.insert("sft_rows".into(), sft_rows.len());

    // Judge: the judge split plus extra sets the proxies never see; never an eval prompt.
    let mut judge_pairs = splits["judge"].clone();
    for id in &d.judge_extra {
        let extra = data::load_preferences(manifest, data_dir, id, d.single_turn_only)?;
        let extra: Vec<Preference> = extra.into_iter().filter(|p| !eval_set.contains(p.prompt.as_str())).collect();
        counts.insert(format!("judge_extra_{id}"), extra.len());
        judge_pairs.extend(extra);
    }
    counts.insert("judge_pairs".into(), judge_pairs.len());

    // Pretraining / tokenizer corpus: text of the rm and policy splits and the SFT rows.
    let mut docs: Vec<String> = Vec::new();
    for name in ["rm", "policy"] {
        for p in &splits[name] {
            docs.push(format!("{}\n{}", p.prompt, p.chosen));
            docs.push(format!("{}\n{}", p.prompt, p.rejected));
        }
    }
    docs.extend(sft_rows.iter().map(|(p, r)| format!("{p}\n{r}")));
    let docs = capped(&docs, d.max_corpus_docs, seed ^ 0xd0c5);
    counts.insert("corpus_docs".into(), docs.len());

    // Out-of-distribution sets: prompts of other datasets, pooled per set; a prompt some stage
    // trains on (or an in-distribution eval prompt) is dropped, so they stay unseen.
    let mut seen: BTreeSet<&str> = sft_rows.iter().map(|(p, _)| p.as_str()).collect();
    seen.extend(judge_pairs.iter().map(|p| p.prompt.as_str()));
    seen.extend(raw_splits.values().flatten().map(|p| p.prompt.as_str()));
    for (k, (name, ids)) in spec.eval.extra_sets.iter().enumerate() {
        let mut pooled = Vec::new();
        let mut distinct = BTreeSet::new();
        for id in ids {
            for p in data::load_prompts(manifest, data_dir, id).with_context(|| format!("eval.extra_sets.{name}"))? {
                if !seen.contains(p.as_str()) && distinct.insert(p.clone()) {
                    pooled.push(p);
                }
            }
        }
        if pooled.is_empty() {
            bail!("eval.extra_sets.{name}: its datasets ({}) gave no prompt that no stage trains on", ids.join(", "));
        }
        let v = capped(&pooled, spec.eval.max_prompts_per_set, seed ^ 0x00d5 ^ ((k as u64 + 1) << 20));
        counts.insert(format!("eval_prompts_{name}"), v.len());
        eval_prompts.push((name.clone(), v));
    }

    let mut references = HashMap::new();
    if !d.reference.is_empty() {
        for r in data::load_sft(manifest, data_dir, &d.reference).context("data.reference")? {
            references.entry(r.prompt).or_insert(r.response);
        }
        let with = eval_prompts.iter().flat_map(|(_, v)| v).filter(|p| references.contains_key(*p)).count();
        counts.insert("eval_prompts_with_reference".into(), with);
    }
    Ok(Corpus { splits, sft_rows, judge_pairs, eval_prompts, references, docs, refusal_sanity, counts })
}

/// Tokenizer trained on the corpus, cached under `<out>/.cache/` by a hash of its inputs.
fn tokenizer(docs: &[String], vocab: usize, cache: &Path) -> Result<Text> {
    let mut h = format!("vocab={vocab}\n");
    for d in docs {
        h.push_str(&sha256_hex(d.as_bytes())[..16]);
    }
    let path = cache.join(format!("tokenizer-{}.json", &sha256_hex(h.as_bytes())[..16]));
    if path.exists() {
        if let Ok(t) = Text::load(&path) {
            return Ok(t);
        }
    }
    let t = Text::train(docs, vocab)?;
    t.save(&path)?;
    Ok(t)
}

fn pair_ids(text: &Text, p: &Preference) -> PairIds {
    PairIds { prompt: text.encode(&p.prompt), chosen: text.encode(&p.chosen), rejected: text.encode(&p.rejected) }
}

fn loop_cfg(steps: usize, lr: f64, warmup_steps: usize, grad_clip: f32) -> LoopCfg {
    LoopCfg { steps, lr, warmup_steps, grad_clip }
}

/// CSV text from a header and rows.
fn csv_bytes(header: &[&str], rows: &[Vec<String>]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)?;
    for r in rows {
        w.write_record(r)?;
    }
    Ok(w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?)
}

fn f(v: f64) -> String {
    format!("{v:.6}")
}

/// Finished model stages, kept under `<out>/.cache/stages/`: a rerun of an interrupted experiment
/// loads them instead of training again. The key hashes the resolved spec (without the seed list
/// and the paths, so adding a seed reuses the shared stages), the stage, its seed, the device and
/// the s2rm executable itself (a rebuilt binary never reuses another build's artifacts). The model
/// file is written first and the log file last, each by rename, so a kill leaves no entry that
/// looks finished but is not. A PPO stage also keeps its checkpoints here while it runs
/// (`<stage>-<seed>-<key>.partial.json` and `.step<k>[.optim].bpk`, see `train::ppo`), removed once
/// the stage is stored; `ppo.checkpoint_every` is left out of the key, since it changes no result.
struct StageCache {
    dir: PathBuf,
    base: String,
    loaded: Mutex<Vec<String>>,
}

impl StageCache {
    fn new(dir: PathBuf, spec: &Spec, device: &str) -> Result<Self> {
        let mut v = toml::Value::try_from(spec).context("serialising the spec for the stage cache")?;
        if let Some(e) = v.get_mut("experiment").and_then(|e| e.as_table_mut()) {
            for k in ["seeds", "output_dir", "data_dir"] {
                e.remove(k);
            }
        }
        // Evaluation settings change no trained model (eval prompts are chosen by the data split,
        // which the `data` table keys), so new prompt sets reuse every finished stage; how often
        // PPO checkpoints changes no result either.
        if let Some(t) = v.as_table_mut() {
            t.remove("eval");
        }
        if let Some(p) = v.get_mut("ppo").and_then(|p| p.as_table_mut()) {
            p.remove("checkpoint_every");
        }
        let exe = std::env::current_exe().and_then(std::fs::read).map(|b| sha256_hex(&b)).unwrap_or_default();
        let base = format!("{}\n{device}\n{exe}", toml::to_string(&v).context("spec to TOML")?);
        Ok(Self { dir, base, loaded: Mutex::new(Vec::new()) })
    }

    /// `<stage>-<seed>-<key>`: the name of every file of this stage.
    fn stem(&self, stage: &str, seed: u64) -> String {
        let key = &sha256_hex(format!("{}\n{stage}\n{seed}", self.base).as_bytes())[..24];
        format!("{stage}-{seed}-{key}")
    }

    fn paths(&self, stage: &str, seed: u64) -> (PathBuf, PathBuf) {
        let stem = self.stem(stage, seed);
        (self.dir.join(format!("{stem}.bpk")), self.dir.join(format!("{stem}.json")))
    }

    /// The path prefix of the stage's within-stage checkpoints (PPO).
    fn checkpoint_prefix(&self, stage: &str, seed: u64) -> PathBuf {
        self.dir.join(self.stem(stage, seed))
    }

    /// Removes the stage's checkpoint files and the temporary files of an interrupted write: a
    /// run killed while storing this stage leaves `<stem>.bpk.tmp`, `<stem>.json.tmp` or burn's
    /// own `<stem>.bpk.tmp.<pid>-<n>.tmp`, which no later write replaces.
    fn clear_checkpoints(&self, stage: &str, seed: u64) {
        let stem = self.stem(stage, seed);
        let (step, partial, own) = (format!("{stem}.step"), format!("{stem}.partial."), format!("{stem}."));
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&step) || name.starts_with(&partial) || (name.starts_with(&own) && name.ends_with(".tmp")) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    fn load<L: serde::de::DeserializeOwned>(&self, stage: &str, seed: u64, template: &Lm) -> Option<(Lm, L)> {
        let (model, log) = self.paths(stage, seed);
        let log: L = serde_json::from_slice(&std::fs::read(log).ok()?).ok()?;
        let model = template.clone().try_load_file(&model).ok()?;
        Some((model, log))
    }

    fn store<L: serde::Serialize>(&self, stage: &str, seed: u64, model: &Lm, log: &L) -> Result<()> {
        let (model_path, log_path) = self.paths(stage, seed);
        std::fs::create_dir_all(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        let tmp = model_path.with_extension("bpk.tmp");
        model.clone().save_file(&tmp).map_err(|e| anyhow::anyhow!("cannot write {}: {e:?}", tmp.display()))?;
        std::fs::rename(&tmp, &model_path).with_context(|| format!("cannot rename {} to {}", tmp.display(), model_path.display()))?;
        crate::util::write_atomic(&log_path, &serde_json::to_vec(log)?)
    }

    /// The stage's model and log from an earlier run, or `train` run now and kept.
    fn stage<L: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        timer: &Timer,
        stage: &str,
        seed: u64,
        template: &Lm,
        train: impl FnOnce() -> Result<(Lm, L)>,
    ) -> Result<(Lm, L)> {
        if let Some(hit) = self.load(stage, seed, template) {
            crate::train::say(&format!("stage {stage} (seed {seed}): finished in an earlier run, loaded from {}", self.dir.display()));
            self.loaded.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{stage}/{seed}"));
            self.clear_checkpoints(stage, seed);
            return Ok(hit);
        }
        // Kept before the stage reports itself done: "done" on the console means it is on disk.
        timer.time(stage, Some(seed), || {
            let out = train()?;
            self.store(stage, seed, &out.0, &out.1)?;
            self.clear_checkpoints(stage, seed);
            Ok(out)
        })
    }
}

/// Wall seconds per stage (summed over seeds). Two stages that run at the same time each count
/// their own wall time.
struct Timer {
    stages: Mutex<BTreeMap<String, f64>>,
}

impl Timer {
    /// Times `work`; `seed` names which run of a per-seed (or shared, seeded) stage this is, since
    /// several stages of different seeds can be running at once.
    fn time<T>(&self, stage: &str, seed: Option<u64>, work: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = Instant::now();
        let label = match seed {
            Some(seed) => format!("{stage} (seed {seed})"),
            None => stage.to_string(),
        };
        crate::train::say(&format!("stage {label} ..."));
        let out = work()?;
        let s = t.elapsed().as_secs_f64();
        *self.stages.lock().unwrap_or_else(|e| e.into_inner()).entry(stage.to_string()).or_default() += s;
        crate::train::say(&format!("stage {label} done in {s:.1}s"));
        Ok(out)
    }
}

/// A copy of `model` whose parameters are new autodiff leaves with the same values. Two stages
/// that train clones of one model at the same time would otherwise share leaf nodes, hence one
/// autodiff graph, and burn 0.22's graph locking can deadlock between one thread's backward pass
/// and the other's forward (seen: `GraphCleaner::init` against `GraphLocator::select`).
fn own_leaves(model: &Lm) -> Lm {
    model.valid().train()
}

/// The two PPO runs of a seed, each with the reward model stage it reads.
const PPO_RUNS: [(&str, &str); 2] = [("ppo_scalar", "scalar_rm"), ("ppo_seq2seq", "seq2seq_rm")];

/// A stage of the graph: its name and seed (`experiment.base_seed` for the shared stages).
type Key = (&'static str, u64);

/// The outputs of the stages a stage reads, in the order it names them.
type Inputs = [std::sync::Arc<Out>];

/// What a stage of the graph hands on. The model is dropped (`None`) once every stage that reads
/// it has finished; the logs and metrics stay for the result files.
enum Out {
    /// SFT (training mode, PPO starts from it) or the judge (eval mode), its training log and its
    /// reward-model metrics (judge only).
    Lm(Option<Lm>, Vec<StepLog>, Vec<(String, f64)>),
    /// A reward model, ready to score PPO rollouts; its training log and metrics.
    Rm(Option<Box<dyn TokenReward + Send>>, Vec<StepLog>, Vec<(String, f64)>),
    /// A PPO policy, its log and the kind of reward it was trained on.
    Ppo(Option<Lm>, Vec<PpoLog>, &'static str),
    /// Every policy's answers to the eval prompts.
    Eval(Vec<GenRow>),
}

impl Out {
    fn lm(&self) -> &Lm {
        match self {
            Out::Lm(Some(m), ..) | Out::Ppo(Some(m), ..) => m,
            _ => unreachable!("the stage graph reads a model from a stage that has none (left)"),
        }
    }

    fn reward(&self) -> &dyn TokenReward {
        match self {
            Out::Rm(Some(r), ..) => r.as_ref(),
            _ => unreachable!("the stage graph reads a reward model from a stage that has none (left)"),
        }
    }

    fn release(&mut self) {
        match self {
            Out::Lm(m, ..) | Out::Ppo(m, ..) => *m = None,
            Out::Rm(r, ..) => *r = None,
            Out::Eval(_) => {}
        }
    }
}

/// Runs an experiment; returns the output directory.
pub fn run(resolved: &Resolved, opts: &RunOptions) -> Result<PathBuf> {
    let started = Instant::now();
    let spec = &resolved.spec;
    let ex = &spec.experiment;
    let out = opts.output.clone().unwrap_or_else(|| PathBuf::from(&ex.output_dir));
    // Checked before any work, so that an unusable output path fails in a second, not after training.
    if out.exists() && !out.is_dir() {
        bail!("output directory {} exists and is not a directory; pass another --output or experiment.output_dir", out.display());
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create output directory {}", out.display()))?;
    let probe = out.join(".write-test");
    std::fs::write(&probe, b"ok").with_context(|| format!("output directory {} is not writable", out.display()))?;
    let _ = std::fs::remove_file(&probe);
    let cache = out.join(".cache");
    let data_dir = opts.data_dir.clone().unwrap_or_else(|| PathBuf::from(&ex.data_dir));
    let sel = device::select(opts.device.as_deref().unwrap_or(&ex.device))?;
    eprintln!("device: {} — {}", sel.name, sel.reason);
    let dev = sel.device.clone();
    let ad = dev.clone().autodiff();
    let size = spec.model.preset.clone();
    let d = &spec.data;
    let (mp, mr) = (d.max_prompt_tokens, d.max_response_tokens);
    let timer = Timer { stages: Mutex::new(BTreeMap::new()) };
    let stages = StageCache::new(cache.join("stages"), spec, &sel.name)?;

    // --- data, tokenizer ---
    let manifest = Manifest::load(Path::new(&d.manifest))?;
    let refusal = RefusalDetector::load(Path::new(&d.refusal_patterns))?;
    let corpus = timer.time("data", None, || build_corpus(spec, &manifest, &data_dir, &refusal))?;
    let mut model_cfg: LmConfig = spec.model.clone();
    // A pretrained model brings its own weights and tokenizer; otherwise both are trained here.
    let pretrained = if model_cfg.is_pretrained() {
        let path = PathBuf::from(&model_cfg.checkpoint);
        if !path.exists() {
            bail!("model.checkpoint {} does not exist; `make model-smollm2` fetches SmolLM2-135M-Instruct into models/", path.display());
        }
        let t = Instant::now();
        let ckpt = crate::pretrained::load(&path).with_context(|| format!("loading model.checkpoint {}", path.display()))?;
        eprintln!("checkpoint {} loaded in {:.1}s", path.display(), t.elapsed().as_secs_f64());
        Some(ckpt)
    } else {
        None
    };
    let text = match &pretrained {
        Some(ckpt) => {
            Text::from_checkpoint(ckpt).with_context(|| format!("model.checkpoint {}", model_cfg.checkpoint))?
        }
        None => {
            let text = timer.time("tokenizer", None, || tokenizer(&corpus.docs, spec.model.vocab_size, &cache))?;
            model_cfg.vocab_size = text.vocab_size();
            text
        }
    };
    let tpl = &text.tpl;
    let ids = |v: &[Preference]| v.iter().map(|p| pair_ids(&text, p)).collect::<Vec<_>>();
    let rm_pairs = ids(&corpus.splits["rm"]);
    let eval_pairs = ids(&corpus.splits["eval"]);
    let judge_pairs = ids(&corpus.judge_pairs);
    let sft_rows: Vec<(Vec<u32>, Vec<u32>)> =
        corpus.sft_rows.iter().map(|(p, r)| (text.encode(p), text.encode(r))).collect();
    let mut policy_prompts: Vec<Vec<u32>> = Vec::new();
    let mut seen = BTreeSet::new();
    for p in &corpus.splits["policy"] {
        if seen.insert(p.prompt.clone()) {
            policy_prompts.push(text.encode(&p.prompt));
        }
    }
    let eval_prompts: Vec<EvalPrompt> = corpus
        .eval_prompts
        .iter()
        .flat_map(|(set, v)| {
            v.iter().enumerate().map(|(id, t)| EvalPrompt {
                set: set.clone(),
                id,
                text: t.clone(),
                ids: text.encode(t),
                reference: corpus.references.get(t).map(|r| (r.clone(), text.encode(r).len())),
            })
        })
        .collect();

    // --- shared models ---
    let base_seed = ex.base_seed;
    let mut train_log: Vec<(u64, StepLog)> = Vec::new();
    let base = match &pretrained {
        Some(ckpt) => model_cfg.load_pretrained(ckpt, &ad)?,
        None => model_cfg.init_seeded(&ad, base_seed),
    };
    drop(pretrained);
    let lm_params = base.lm_params();
    eprintln!("model `{size}`: {lm_params} parameters (trunk + LM head), vocab {}", model_cfg.vocab_size);
    let base = if model_cfg.is_pretrained() {
        eprintln!("stage pretrain skipped: the model is pretrained ({})", model_cfg.checkpoint);
        base
    } else {
        let docs: Vec<Vec<u32>> = corpus.docs.iter().map(|s| text.encode(s)).collect();
        let pt = &spec.pretrain;
        let template = base.clone();
        let (base, log) = stages.stage(&timer, "pretrain", base_seed, &template, || {
            train::pretrain(base, &docs, mp + mr, pt.batch_size, &loop_cfg(pt.steps, pt.lr, pt.warmup_steps, pt.grad_clip), base_seed ^ 0x11, &ad)
        })?;
        train_log.extend(log.into_iter().map(|l| (base_seed, l)));
        base
    };
    // --- the stage graph: SFT and judge from the base LM; per seed, both RMs from SFT, one PPO
    // run per RM, evaluation. Listed in the order one worker runs them (see `schedule`). ---
    let b0 = base_seed;
    let mut done = {
        let (stages, timer, text, refusal, dev, ad) = (&stages, &timer, &text, &refusal, &dev, &ad);
        let (rm_pairs, eval_pairs, judge_pairs, sft_rows, policy_prompts, eval_prompts, base) =
            (&rm_pairs, &eval_pairs, &judge_pairs, &sft_rows, &policy_prompts, &eval_prompts, &base);
        let (s, j, r, q) = (&spec.sft, &spec.judge, &spec.scalar_rm, &spec.seq2seq_rm);
        let mut graph: Vec<schedule::Task<Key, Out>> = Vec::new();
        graph.push(schedule::task(("sft", b0), &[], move |_: &Inputs| {
            let (m, log) = stages.stage(timer, "sft", b0, base, || {
                train::sft(own_leaves(base), tpl, sft_rows, mp, mr, s.batch_size, &loop_cfg(s.steps, s.lr, s.warmup_steps, s.grad_clip), b0 ^ 0x22, ad)
            })?;
            Ok(Out::Lm(Some(m), log, Vec::new()))
        }));
        graph.push(schedule::task(("judge", b0), &[], move |_: &Inputs| {
            let (m, log) = stages.stage(timer, "judge", b0, base, || {
                train::scalar_rm(own_leaves(base), tpl, "judge", judge_pairs, mp, mr, j.batch_size, j.score_l2, &loop_cfg(j.steps, j.lr, j.warmup_steps, j.grad_clip), b0 ^ 0x33, ad)
            })?;
            let m = m.valid();
            let metrics = eval::scalar_rm_metrics(&m, tpl, eval_pairs, mp, mr, 32, dev);
            Ok(Out::Lm(Some(m), log, metrics))
        }));
        for &seed in &ex.seeds {
            // The seq2seq RM first: it takes longer, and with two workers it should start first.
            graph.push(schedule::task(("seq2seq_rm", seed), &[("sft", b0)], move |i: &Inputs| {
                let sft = i[0].lm();
                let (m, log) = stages.stage(timer, "seq2seq_rm", seed, sft, || {
                    train::seq2seq_rm(own_leaves(sft), tpl, rm_pairs, &q.mixing, q.identity_warmup_steps, mp, mr, q.batch_size, &loop_cfg(q.steps, q.lr, q.warmup_steps, q.grad_clip), seed ^ 0x55, ad)
                })?;
                let m = m.valid();
                let metrics = eval::seq2seq_rm_metrics(&m, tpl, eval_pairs, &q.rule, mp, mr, 32, dev);
                let reward = Seq2seqReward { model: m, tpl: tpl.clone(), device: dev.clone(), max_prompt: mp, max_response: spec.ppo.max_new_tokens.max(mr), rule: q.rule, per_token_mean: q.reward_scaling == "mean" };
                Ok(Out::Rm(Some(Box::new(reward)), log, metrics))
            }));
            graph.push(schedule::task(("scalar_rm", seed), &[("sft", b0)], move |i: &Inputs| {
                let sft = i[0].lm();
                let (m, log) = stages.stage(timer, "scalar_rm", seed, sft, || {
                    train::scalar_rm(own_leaves(sft), tpl, "scalar_rm", rm_pairs, mp, mr, r.batch_size, r.score_l2, &loop_cfg(r.steps, r.lr, r.warmup_steps, r.grad_clip), seed ^ 0x44, ad)
                })?;
                let m = m.valid();
                let metrics = eval::scalar_rm_metrics(&m, tpl, eval_pairs, mp, mr, 32, dev);
                // Normalise the scalar reward with the RM's own score statistics on its training pairs.
                let train_stats = eval::scalar_rm_metrics(&m, tpl, &rm_pairs[..rm_pairs.len().min(512)], mp, mr, 32, dev);
                let stat = |k: &str| train_stats.iter().find(|(m, _)| m == k).map(|(_, v)| *v as f32).unwrap_or(0.0);
                let (mean, std) = if r.normalize { (stat("score_mean"), stat("score_std").max(1e-6)) } else { (0.0, 1.0) };
                let reward = ScalarReward { model: m, tpl: tpl.clone(), device: dev.clone(), max_prompt: mp, mean, std, clip: spec.ppo.score_clip };
                Ok(Out::Rm(Some(Box::new(reward)), log, metrics))
            }));
            for (name, rm) in PPO_RUNS {
                graph.push(schedule::task((name, seed), &[("sft", b0), (rm, seed)], move |i: &Inputs| {
                    let (sft, reward) = (i[0].lm(), i[1].reward());
                    // Always passed: a checkpoint on disk is resumed even when `checkpoint_every` is now 0.
                    let checkpoint = Some(stages.checkpoint_prefix(name, seed));
                    let (m, log) = stages.stage(timer, name, seed, &sft.valid(), || {
                        train_ppo(PpoInputs { sft, reward, prompts: policy_prompts, cfg: &spec.ppo, max_prompt: mp, seed, text, refusal, device: ad, checkpoint })
                    })?;
                    Ok(Out::Ppo(Some(m), log, reward.kind()))
                }));
            }
            let after = [("sft", b0), ("judge", b0), (PPO_RUNS[0].0, seed), (PPO_RUNS[1].0, seed)];
            graph.push(schedule::task(("eval", seed), &after, move |i: &Inputs| {
                let ctx = EvalCtx { judge: i[1].lm(), text, refusal, max_prompt: mp, max_new_tokens: spec.eval.max_new_tokens, batch: 32, device: dev };
                let sft = i[0].lm().valid();
                let policies = [("sft", &sft), (PPO_RUNS[0].0, i[2].lm()), (PPO_RUNS[1].0, i[3].lm())];
                timer.time("eval", Some(seed), || {
                    Ok(Out::Eval(policies.into_iter().flat_map(|(name, policy)| eval::answer(&ctx, name, policy, eval_prompts, seed)).collect()))
                })
            }));
        }
        // On LibTorch each worker gets half the threads whatever the worker count, so that a
        // stage computes the same bits with --sequential (its thread count is part of its numbers).
        let stage_threads = (sel.threads / 2).max(1);
        schedule::run(if opts.sequential { 1 } else { 2 }, graph, Out::release, || sel.use_threads_on_this_thread(stage_threads))?
    };

    // Collected in list order, whatever order the stages finished in.
    let mut take = |stage: &'static str, seed: u64| done.remove(&(stage, seed)).expect("every stage of the graph ran");
    let mut rm_eval: Vec<(u64, String, String, f64, usize)> = Vec::new();
    for stage in ["sft", "judge"] {
        let Out::Lm(_, log, metrics) = take(stage, b0) else { unreachable!("{stage} is a model stage") };
        train_log.extend(log.into_iter().map(|l| (b0, l)));
        rm_eval.extend(metrics.into_iter().map(|(metric, v)| (b0, stage.to_string(), metric, v, eval_pairs.len())));
    }
    let mut gens: Vec<(u64, GenRow)> = Vec::new();
    let mut ppo_log: Vec<(u64, &'static str, PpoLog)> = Vec::new();
    for &seed in &ex.seeds {
        for stage in ["scalar_rm", "seq2seq_rm"] {
            let Out::Rm(_, log, metrics) = take(stage, seed) else { unreachable!("{stage} is a reward model stage") };
            train_log.extend(log.into_iter().map(|l| (seed, l)));
            rm_eval.extend(metrics.into_iter().map(|(metric, v)| (seed, stage.to_string(), metric, v, eval_pairs.len())));
        }
        for (name, _) in PPO_RUNS {
            let Out::Ppo(_, log, kind) = take(name, seed) else { unreachable!("{name} is a PPO stage") };
            ppo_log.extend(log.into_iter().map(|l| (seed, kind, l)));
        }
        let Out::Eval(rows) = take("eval", seed) else { unreachable!("eval stage") };
        gens.extend(rows.into_iter().map(|g| (seed, g)));
    }

    // --- outputs: all written at once, or none (a failed write leaves earlier results intact) ---
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let name = &ex.name;
    let b = |v: bool| if v { "1".to_string() } else { "0".to_string() };
    let rows: Vec<Vec<String>> = gens
        .iter()
        .map(|(seed, g)| {
            vec![
                name.clone(), size.clone(), seed.to_string(), g.policy.clone(), g.set.clone(), g.prompt_id.to_string(),
                g.response.clone(), g.length_tokens.to_string(), b(g.truncated), b(g.refused), f(g.judge_score as f64),
                g.reference.clone().map(|r| r.0).unwrap_or_default(), g.reference.as_ref().map(|r| r.1.to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    files.push((out.join("generations.csv"), csv_bytes(
        &["experiment", "size", "seed", "policy", "prompt_set", "prompt_id", "response", "length_tokens", "truncated", "refused", "judge_score", "reference", "reference_length_tokens"],
        &rows,
    )?));
    // Each eval prompt once (generations.csv names it by set and id: a TL;DR post repeated on every
    // seed and policy's row would make that file mostly copies of the data).
    let rows: Vec<Vec<String>> =
        eval_prompts.iter().map(|p| vec![name.clone(), p.set.clone(), p.id.to_string(), p.text.clone()]).collect();
    files.push((out.join("prompts.csv"), csv_bytes(&["experiment", "prompt_set", "prompt_id", "prompt"], &rows)?));
    let rows: Vec<Vec<String>> = ppo_log
        .iter()
        .map(|(seed, rm, l)| {
            vec![
                name.clone(), size.clone(), seed.to_string(), rm.to_string(), l.step.to_string(), f(l.rm_reward as f64), f(l.kl as f64),
                f(l.response_length as f64), f(l.refusal_rate as f64), f(l.entropy as f64), f(l.policy_loss as f64),
                f(l.value_loss as f64), f(l.clip_frac as f64), f(l.truncated_rate as f64),
            ]
        })
        .collect();
    files.push((out.join("ppo_log.csv"), csv_bytes(
        &["experiment", "size", "seed", "rm", "step", "rm_reward", "kl", "response_length", "refusal_rate", "entropy", "policy_loss", "value_loss", "clip_frac", "truncated_rate"],
        &rows,
    )?));
    let rows: Vec<Vec<String>> = rm_eval
        .iter()
        .map(|(seed, m, metric, v, n)| vec![name.clone(), size.clone(), seed.to_string(), m.clone(), metric.clone(), f(*v), n.to_string()])
        .collect();
    files.push((out.join("rm_eval.csv"), csv_bytes(&["experiment", "size", "seed", "model", "metric", "value", "n"], &rows)?));
    let rows: Vec<Vec<String>> = train_log
        .iter()
        .map(|(seed, l)| vec![name.clone(), size.clone(), seed.to_string(), l.stage.clone(), l.step.to_string(), f(l.loss as f64)])
        .collect();
    files.push((out.join("train_log.csv"), csv_bytes(&["experiment", "size", "seed", "stage", "step", "loss"], &rows)?));
    let rows: Vec<Vec<String>> = corpus
        .refusal_sanity
        .iter()
        .map(|(src, kind, n, rate)| vec![src.clone(), kind.clone(), n.to_string(), f(*rate)])
        .collect();
    files.push((out.join("refusal_sanity.csv"), csv_bytes(&["source", "response_kind", "n", "refusal_rate"], &rows)?));
    let mut resolved_toml = format!("# Resolved spec: {} with profile `{}`\n", resolved.file.display(), resolved.profile);
    resolved_toml.push_str(&spec.to_toml()?);
    files.push((out.join("resolved_spec.toml"), resolved_toml.into_bytes()));

    let total = started.elapsed().as_secs_f64();
    // Sorted: with several workers, stages are reached in no fixed order.
    let mut loaded = stages.loaded.into_inner().unwrap_or_else(|e| e.into_inner());
    loaded.sort();
    let info = serde_json::json!({
        "experiment": name,
        "title": ex.title,
        "claim": ex.claim,
        "profile": resolved.profile,
        "device": sel.name,
        "device_reason": sel.reason,
        "seeds": ex.seeds,
        "base_seed": base_seed,
        "n_bootstrap": spec.eval.n_bootstrap,
        "bootstrap_seed": spec.eval.bootstrap_seed,
        "stage_seconds": timer.stages.into_inner().unwrap_or_else(|e| e.into_inner()),
        "stages_loaded_from_cache": loaded,
        "total_seconds": total,
        "param_counts": { "lm (policy, reference, RMs, judge; each)": lm_params, "score/value head": model_cfg.d_model + 1 },
        "data_counts": corpus.counts,
        "model": model_cfg,
        "notes": notes(spec),
        "spec_file": resolved.file.display().to_string(),
    });
    files.push((out.join("run_info.json"), serde_json::to_string_pretty(&info)?.into_bytes()));
    crate::util::write_all_atomic(&files)?;
    crate::report::render(&out)?;
    eprintln!("done in {total:.1}s; results in {}", out.display());
    Ok(out)
}

fn notes(spec: &Spec) -> Vec<String> {
    vec![
        "Shared across seeds (seeded with experiment.base_seed): data splits, tokenizer, base LM, SFT policy and the judge. Per seed: scalar RM, seq2seq RM, both PPO runs and evaluation sampling.".into(),
        "Judge: a scalar Bradley–Terry RM initialised from the base LM and trained on the judge split plus extra preference sets the proxy RMs never see; its held-out pair accuracy is in the reward-model table. It has the proxies' architecture (larger in data, not in parameters), so it can share their biases; weigh win rates by its accuracy. The paper used a strong LLM judge; none is available offline.".into(),
        "PPO critic: a value head on the policy's own trunk (one forward pass serves actor and critic), identical for both reward models.".into(),
        format!(
            "Seq2seq rewards: r_pos = {}, r_neg = {}, r_match_after = {} (tokens after the first divergence that the RM agrees with), reward_scaling = {}; scalar rewards: score whitened with the RM's training statistics (normalize = {}), clipped at ±{}, on the last real response token.",
            spec.seq2seq_rm.rule.r_pos, spec.seq2seq_rm.rule.r_neg, spec.seq2seq_rm.rule.r_match_after, spec.seq2seq_rm.reward_scaling, spec.scalar_rm.normalize, spec.ppo.score_clip
        ),
        format!(
            "Responses cut off at {} tokens without an end token get {} added to their last token's reward (both RMs).",
            spec.ppo.max_new_tokens, spec.ppo.truncation_penalty
        ),
        "Rollouts and evaluation sample at temperature 1 with no top-k/top-p (the exact policy distribution); each prompt has its own sampling seed shared by all policies.".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_every_and_eval_settings_are_not_part_of_the_stage_key() {
        let spec = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            crate::spec::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/safety.toml")), "smoke", &sets).unwrap().spec
        };
        let stem = |sets: &[&str]| StageCache::new(PathBuf::from("c"), &spec(sets), "cpu").unwrap().stem("ppo_scalar", 1);
        let base = stem(&[]);
        assert_eq!(stem(&["ppo.checkpoint_every=0"]), base);
        assert_eq!(stem(&["ppo.checkpoint_every=7"]), base);
        // New out-of-distribution sets or eval sizes re-evaluate, they do not retrain.
        assert_eq!(stem(&["eval.extra_sets.ood_new=[\"harmfulqa\"]"]), base);
        assert_eq!(stem(&["eval.max_prompts_per_set=3", "eval.max_new_tokens=5"]), base);
        assert_ne!(stem(&["ppo.lr=1e-3"]), base, "a field that changes results must change the key");
    }
}
