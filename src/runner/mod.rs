//! Spec → stage table → stage graph → result files.
//!
//! The stages are declared in `crate::stages` (one file each, one table entry each); this module
//! checks the output folder, selects the device, hands the table to `schedule` as a graph (two
//! workers, a stage starts when its inputs exist), gathers what the stages hand on and writes
//! the CSVs and `run_info.json` that `report::render` turns into tables and figures.

mod gates;
mod outputs;

pub use outputs::CSVS;
pub(crate) use outputs::csv_bytes;

use crate::data::{Manifest, RefusalDetector};
use crate::device;
use crate::eval::GenRow;
use crate::schedule;
use crate::spec::Resolved;
use crate::stages::{self, Call, Ctx, Out, Scope, Stage, StageCache, Threads, Timer};
use crate::train::StepLog;
use crate::train::ppo::PpoLog;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    /// The stage cache's folder (default `<output>/.cache`): an ablation pointed at its base run's
    /// cache reuses every stage whose key it leaves unchanged.
    pub cache: Option<PathBuf>,
    /// `--shared-dir`: an existing folder (a network file system on a cluster) where the shared
    /// stages are read from and written to, content-addressed by their stage keys, so that the
    /// per-seed cells of a grid on other machines reuse them.
    pub shared_dir: Option<PathBuf>,
    /// `--shared-only`: compute the shared stages into `shared_dir` and write no results (the
    /// shared job of a grid).
    pub shared_only: bool,
}

/// A stage of the graph: its name and seed (`experiment.base_seed` for the shared stages).
type Key = (&'static str, u64);

/// What the stages handed on, gathered for the result files.
pub(crate) struct Gathered {
    pub corpus: stages::Corpus,
    pub tokens: Box<stages::Tokens>,
    pub lm_params: usize,
    pub train_log: Vec<(u64, StepLog)>,
    /// (seed, model, metric, value, n pairs)
    pub rm_eval: Vec<(u64, String, String, f64, usize)>,
    /// (seed, model, step, metric, value, n pairs)
    pub rm_curve: Vec<(u64, String, usize, String, f64, usize)>,
    pub ppo_log: Vec<(u64, &'static str, PpoLog)>,
    pub gens: Vec<(u64, GenRow)>,
}

/// What [`prepare`] sets up for the stages: the output folder, the device, the context and
/// the threads of each stage.
struct Prepared<'a> {
    out: PathBuf,
    sel: device::Selected,
    ctx: Ctx<'a>,
    threads: BTreeMap<&'static str, usize>,
    _writing: Option<stages::lock::EntryLock>,
}

/// Checks the output folder (and locks it), selects the device and builds the stage context:
/// everything before the first stage, so that an unusable path or file fails in a second.
fn prepare<'a>(resolved: &'a Resolved, opts: &RunOptions, table: &[Stage]) -> Result<Prepared<'a>> {
    let spec = &resolved.spec;
    let ex = &spec.experiment;
    let out = opts.output.clone().unwrap_or_else(|| PathBuf::from(&ex.output_dir));
    let shared_dir = opts.shared_dir.as_deref().map(check_shared_dir).transpose()?;
    if opts.shared_only && shared_dir.is_none() {
        bail!("--shared-only computes the shared stages into --shared-dir; pass --shared-dir DIR");
    }
    // Checked before any work, so that an unusable output path fails in a second, not after training.
    // One run per output folder: a grid resubmitted while a cell still runs must not have two
    // processes writing one cell's files (the lock dies with its holder).
    let _writing = if opts.shared_only {
        None
    } else {
        writable_dir(&out, "output directory", "pass another --output or experiment.output_dir")?;
        let lock = stages::lock::try_lock(&out.join(".cache"), "run")?;
        if lock.is_none() {
            bail!("output directory {} is being written by another s2rm run (lock {}); wait for it to end or pass another --output", out.display(), out.join(".cache/run.lock").display());
        }
        lock
    };
    stages::check_judge_adapter(&spec.judge)?;
    let cache_dir = opts.cache.clone().unwrap_or_else(|| out.join(".cache"));
    let sel = device::select(opts.device.as_deref().unwrap_or(&ex.device))?;
    eprintln!("device: {} — {}", sel.name, sel.reason);
    // Stages that do not take the whole machine share it with the other worker, or have it to
    // themselves under `--sequential` (on LibTorch on 2 cores: 2 threads instead of 1, a
    // shortened run 1.8x faster).
    let share = (sel.threads / workers(opts)).max(1);
    let ctx = Ctx {
        spec,
        dev: sel.device.clone(),
        ad: sel.device.clone().autodiff(),
        data_dir: opts.data_dir.clone().unwrap_or_else(|| PathBuf::from(&ex.data_dir)),
        manifest: Manifest::load(Path::new(&spec.data.manifest))?,
        refusal: RefusalDetector::load(Path::new(&spec.data.refusal_patterns))?,
        stages: StageCache::new(cache_dir.join("stages"), shared_dir.as_ref().map(|d| d.join("stages")), table, spec, &sel.cache_name(share))?,
        cache_dir,
        shared_dir,
        timer: Timer::default(),
    };
    let threads = table.iter().map(|s| (s.name, if s.threads == Threads::All { sel.threads } else { share })).collect();
    Ok(Prepared { out, sel, ctx, threads, _writing })
}

/// Stages run at once: two, or one under `--sequential`.
fn workers(opts: &RunOptions) -> usize {
    if opts.sequential { 1 } else { 2 }
}

/// Runs an experiment; returns the output directory.
pub fn run(resolved: &Resolved, opts: &RunOptions) -> Result<PathBuf> {
    let started = Instant::now();
    let spec = &resolved.spec;
    let ex = &spec.experiment;
    let table = stages::table(spec);
    let Prepared { out, sel, ctx, threads, _writing } = prepare(resolved, opts, &table)?;
    let seeds: &[u64] = if opts.shared_only { &[] } else { &ex.seeds };
    let done = schedule::run(workers(opts), graph(&ctx, &table, seeds), Out::release, |key: &Key| {
        sel.use_threads_on_this_thread(threads[key.0])
    })?;
    if let (true, Some(dir)) = (opts.shared_only, &ctx.shared_dir) {
        eprintln!("shared stages done in {:.1}s; kept in {}", started.elapsed().as_secs_f64(), dir.display());
        return Ok(dir.clone());
    }
    let gathered = gather(&table, spec, done);

    let total = started.elapsed().as_secs_f64();
    // Sorted: with several workers, stages are reached in no fixed order.
    let mut loaded = ctx.stages.loaded.into_inner().unwrap_or_else(|e| e.into_inner());
    loaded.sort();
    let stage_seconds = ctx.timer.stages.into_inner().unwrap_or_else(|e| e.into_inner());
    let files = outputs::files(resolved, &sel, &gathered, stage_seconds, loaded, total, &ctx.stages.exe, &out)?;
    crate::util::write_all_atomic(&files)?;
    crate::report::render(&out)?;
    eprintln!("done in {total:.1}s; results in {}", out.display());
    Ok(out)
}

/// Creates `dir` if needed and checks that it is a writable directory (`what` names it, `fix`
/// says what to pass instead).
fn writable_dir(dir: &Path, what: &str, fix: &str) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("{what} {} exists and is not a directory; {fix}", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {what} {}", dir.display()))?;
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"ok").with_context(|| format!("{what} {} is not writable; {fix}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The shared directory must exist already: a mistyped path on a cluster would otherwise make
/// every cell silently retrain the shared stages into a folder no other node sees.
fn check_shared_dir(dir: &Path) -> Result<PathBuf> {
    if !dir.is_dir() {
        bail!(
            "--shared-dir {} does not exist or is not a directory; create it on a file system every node mounts (`s2rm grid` creates its own)",
            dir.display()
        );
    }
    writable_dir(dir, "--shared-dir", "give a folder this user can write")?;
    Ok(dir.to_path_buf())
}

/// The table as scheduler tasks: the shared stages once (seeded with `experiment.base_seed`),
/// then every per-seed stage for each of `seeds`, in table order. A per-seed stage reads its own
/// seed's per-seed stages and the shared ones.
fn graph<'a>(ctx: &'a Ctx, table: &'a [Stage], seeds: &'a [u64]) -> Vec<schedule::Task<'a, Key, Out>> {
    let ex = &ctx.spec.experiment;
    let scope: BTreeMap<&str, Scope> = table.iter().map(|s| (s.name, s.scope)).collect();
    let mut tasks = Vec::new();
    let mut add = |stage: &'a Stage, seed: u64| {
        let after: Vec<Key> = stage.reads.iter().map(|r| (*r, if scope[r] == Scope::Shared { ex.base_seed } else { seed })).collect();
        tasks.push(schedule::task((stage.name, seed), &after, move |inputs: &[Arc<Out>]| {
            (stage.run)(ctx, &Call { name: stage.name, seed, inputs })
        }));
    };
    for stage in table.iter().filter(|s| s.scope == Scope::Shared) {
        add(stage, ex.base_seed);
    }
    for &seed in seeds {
        for stage in table.iter().filter(|s| s.scope == Scope::PerSeed) {
            add(stage, seed);
        }
    }
    tasks
}

/// Collects the outputs in a fixed order, whatever order the stages finished in: the shared
/// stages in table order, then per seed its stages by name (so scalar-RM rows come before
/// seq2seq-RM rows in every file).
fn gather(table: &[Stage], spec: &crate::spec::Spec, mut done: BTreeMap<Key, Out>) -> Gathered {
    let ex = &spec.experiment;
    let (mut corpus, mut tokens, mut lm_params) = (None, None, 0);
    let (mut train_log, mut rm_eval, mut ppo_log, mut gens) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut rm_curve = Vec::new();
    let mut per_seed: Vec<&'static str> = table.iter().filter(|s| s.scope == Scope::PerSeed).map(|s| s.name).collect();
    per_seed.sort_unstable();
    let shared = table.iter().filter(|s| s.scope == Scope::Shared).map(|s| (s.name, ex.base_seed));
    let seeded = ex.seeds.iter().flat_map(|&seed| per_seed.iter().map(move |&n| (n, seed)));
    // The held-out pairs every RM and the judge are measured on (each metric's `n`).
    let mut measured = Vec::new();
    for (name, seed) in shared.chain(seeded).collect::<Vec<_>>() {
        match done.remove(&(name, seed)).expect("every stage of the graph ran") {
            Out::Corpus(c) => corpus = Some(c),
            Out::Tokens(t) => {
                measured = stages::spread(&t.eval_pairs, spec.eval.max_rm_pairs);
                tokens = Some(t);
            }
            Out::Checkpoint(_) => {}
            Out::Base(_, log, n) => {
                train_log.extend(log.into_iter().map(|l| (seed, l)));
                lm_params = n;
            }
            Out::Lm(_, log, metrics) => {
                train_log.extend(log.into_iter().map(|l| (seed, l)));
                rm_eval.extend(crate::eval::with_counts(metrics, &measured).map(|(metric, v, n)| (seed, name.to_string(), metric, v, n)));
            }
            Out::Rm(_, log, metrics, curve) => {
                train_log.extend(log.into_iter().map(|l| (seed, l)));
                rm_eval.extend(crate::eval::with_counts(metrics, &measured).map(|(metric, v, n)| (seed, name.to_string(), metric, v, n)));
                let n = measured.len().min(spec.seq2seq_rm.curve_pairs);
                rm_curve.extend(curve.into_iter().map(|(step, metric, v)| (seed, name.to_string(), step, metric, v, n)));
            }
            Out::Ppo(_, log, kind) => ppo_log.extend(log.into_iter().map(|l| (seed, kind, l))),
            Out::Eval(rows) => gens.extend(rows.into_iter().map(|g| (seed, g))),
        }
    }
    let (corpus, tokens) = (corpus.expect("a data stage"), tokens.expect("a tokenizer stage"));
    Gathered { corpus, tokens, lm_params, train_log, rm_eval, rm_curve, ppo_log, gens }
}

/// What `s2rm judge` trained: the adapter file, its sha256 and the judge's held-out metrics
/// `(metric, value, pairs measured)`.
pub struct TrainedJudge {
    pub sha256: String,
    pub metrics: Vec<(String, f64, usize)>,
    pub seconds: f64,
}

/// `s2rm judge`: runs the judge stage and the stages it reads (nothing else; the stage cache of
/// `--output`'s folder, or `--cache`, keeps it like a run's), then writes the judge's adapters
/// and score head to `file` (with `Lm::with_stable_ids`), and `file.sha256` beside it. With
/// `judge.adapter` set, the stage loads that file instead of training.
pub fn train_judge(resolved: &Resolved, opts: &RunOptions, file: &Path) -> Result<TrainedJudge> {
    let started = Instant::now();
    let spec = &resolved.spec;
    if !spec.model.lora.enabled() {
        bail!("`s2rm judge` writes LoRA adapters; this spec's profile trains every weight (`model.lora.rank` = 0); use a profile with model.lora, e.g. --profile pretrained");
    }
    if spec.data.world.is_some() {
        bail!("a controlled world has no learned judge: its gold reward judges");
    }
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        writable_dir(dir, "the adapter's folder", "pass another --adapter path")?;
    }
    let mut table = stages::table(spec);
    // The judge and its ancestors only.
    let mut keep = vec!["judge"];
    for s in table.iter().rev() {
        if keep.contains(&s.name) {
            keep.extend(s.reads.iter().copied());
        }
    }
    table.retain(|s| keep.contains(&s.name));
    // Each stage gets the threads it gets in a run with the same `--sequential` (the judge: half
    // the machine, or all of it), so that this computes the bits that run's judge stage computes;
    // its stage cache serves both.
    let Prepared { sel, ctx, threads, .. } = prepare(resolved, opts, &table)?;
    let mut done = schedule::run(workers(opts), graph(&ctx, &table, &[]), |_: &mut Out| {}, |key: &Key| sel.use_threads_on_this_thread(threads[key.0]))?;
    let Some(Out::Lm(Some(judge), _, metrics)) = done.remove(&("judge", spec.experiment.base_seed)) else {
        unreachable!("the judge stage hands on its model")
    };
    let measured = ctx.rm_eval_pairs(done[&("tokenizer", spec.experiment.base_seed)].tokens());
    let metrics = crate::eval::with_counts(metrics, &measured).collect();
    let tmp = file.with_extension("tmp");
    judge.with_stable_ids().save_weights(&tmp)?;
    let bytes = std::fs::read(&tmp).with_context(|| format!("cannot read back {}", tmp.display()))?;
    let sha256 = crate::util::sha256_hex(&bytes);
    std::fs::rename(&tmp, file).with_context(|| format!("cannot write {}", file.display()))?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    crate::util::write_atomic(&file.with_extension("sha256"), format!("{sha256}  {name}\n").as_bytes())?;
    Ok(TrainedJudge { sha256, metrics, seconds: started.elapsed().as_secs_f64() })
}
