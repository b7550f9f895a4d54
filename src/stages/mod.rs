//! The experiment's stages as a declared table.
//!
//! Each stage is one [`Stage`] entry in [`table`]: its name, whether it runs once (shared, seeded
//! with `experiment.base_seed`) or once per seed, the stages whose outputs it reads, the spec
//! fields of its cache key, and one function that runs it, in a file of its own beside this one.
//! The runner turns the table into a graph for `schedule` and never looks inside a stage.
//!
//! Adding a stage: write `src/stages/<name>.rs` with a `run(&Ctx, &Call) -> Result<Out>`, add one
//! entry to [`table`] (and an [`Out`] variant if it hands on something new), and extend the
//! expectation in `tests` below.

mod cache;
pub mod data;
mod eval;
mod judge;
pub mod lock;
mod ppo;
mod pretrain;
mod rm;
mod sft;
mod tokenize;
mod world;

pub use cache::{StageCache, Timer, exe_hash};
pub use data::{Corpus, build_corpus};
pub use judge::check_adapter as check_judge_adapter;
pub use tokenize::Tokens;

use crate::data::{Manifest, RefusalDetector};
use crate::eval::GenRow;
use crate::model::Lm;
use crate::pretrained::Checkpoint;
use crate::reward::TokenReward;
use crate::spec::Spec;
use crate::train::StepLog;
use crate::train::ppo::PpoLog;
use anyhow::Result;
use burn::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;

/// Whether a stage runs once or once per seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Once, seeded with `experiment.base_seed`; every seed's stages read the same output.
    Shared,
    /// Once per seed of `experiment.seeds`; it reads the same seed's per-seed stages.
    PerSeed,
}

/// The CPU threads a stage gets on LibTorch (flex shares one rayon pool, wgpu runs on the GPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// Every thread: no other stage can run beside it (every later stage reads it).
    All,
    /// Half of them: two stage-graph workers share the machine. Fixed whatever the worker count,
    /// so that `--sequential` computes the same bits.
    Half,
}

/// What a stage's function gets: its name (one function may serve two stages), its seed and the
/// outputs of the stages it reads, in the order of [`Stage::reads`].
pub struct Call<'i> {
    pub name: &'static str,
    pub seed: u64,
    pub inputs: &'i [Arc<Out>],
}

pub type RunFn = fn(&Ctx, &Call) -> Result<Out>;

/// One entry of the stage table.
pub struct Stage {
    pub name: &'static str,
    pub scope: Scope,
    /// Names of the stages whose outputs this one reads (listed before it in the table).
    pub reads: &'static [&'static str],
    /// Spec fields of the cache key, besides the keys of the stages it reads: a table (`ppo`) or a
    /// field (`seq2seq_rm.rule`); `!path` leaves a field out (`!ppo.checkpoint_every`).
    pub key: &'static [&'static str],
    /// Spec fields naming files whose content is part of the key (the manifest, the patterns).
    pub key_files: &'static [&'static str],
    /// Whether the trained model is kept in the stage cache (a rerun loads it).
    pub cached: bool,
    pub threads: Threads,
    pub run: RunFn,
}

/// The stages of `spec`, in an order in which each reads only stages listed before it (the order
/// one worker runs them in). A pretrained model replaces tokenizer training and pretraining by a
/// checkpoint that brings its own tokenizer and weights; a controlled world has no judge stage.
pub fn table(spec: &Spec) -> Vec<Stage> {
    use Scope::*;
    use Threads::*;
    let s = |name, scope, reads, key, cached, run| Stage { name, scope, reads, key, key_files: &[], cached, threads: Half, run };
    // A controlled world generates its data, and its gold reward is the judge.
    let world = spec.data.world.is_some();
    let mut t = vec![Stage {
        key_files: &["data.manifest", "data.refusal_patterns"],
        ..s("data", Shared, &[], &["experiment.base_seed", "data"], false, if world { world::run } else { data::run })
    }];
    if spec.model.is_pretrained() {
        t.push(Stage { key_files: &["model.checkpoint"], ..s("checkpoint", Shared, &[], &["model"], false, pretrain::checkpoint) });
        t.push(s("tokenizer", Shared, &["data", "checkpoint"], &[], false, tokenize::run));
        t.push(s("base", Shared, &["tokenizer", "checkpoint"], &[], false, pretrain::base));
    } else {
        t.push(s("tokenizer", Shared, &["data"], &["model.vocab_size"], false, tokenize::run));
        t.push(Stage { threads: All, ..s("pretrain", Shared, &["tokenizer"], &["model", "pretrain"], true, pretrain::run) });
    }
    let from_base: &'static [&'static str] = if spec.model.is_pretrained() { &["tokenizer", "base"] } else { &["tokenizer", "pretrain"] };
    t.push(s("sft", Shared, from_base, &["sft"], true, sft::run));
    if !world {
        t.push(s("judge", Shared, from_base, &["judge", "!judge.curve_every"], true, judge::run));
    }
    // The judge's place in eval's inputs: the learned judge, or the world (its gold reward).
    let eval_reads: &'static [&'static str] =
        if world { &["tokenizer", "sft", "data", "ppo_scalar", "ppo_seq2seq"] } else { &["tokenizer", "sft", "judge", "ppo_scalar", "ppo_seq2seq"] };
    t.extend([
        // The seq2seq RM first: it takes longer, and with two workers it should start first. Its
        // reward rule and scaling change no trained weight, so they key the PPO run instead.
        s(
            "seq2seq_rm",
            PerSeed,
            &["tokenizer", "sft"],
            &["seq2seq_rm", "!seq2seq_rm.rule", "!seq2seq_rm.reward_scaling"],
            true,
            rm::seq2seq,
        ),
        s("scalar_rm", PerSeed, &["tokenizer", "sft"], &["scalar_rm"], true, rm::scalar),
        s("ppo_scalar", PerSeed, &["tokenizer", "sft", "scalar_rm"], &["ppo", "!ppo.checkpoint_every"], true, ppo::run),
        s(
            "ppo_seq2seq",
            PerSeed,
            &["tokenizer", "sft", "seq2seq_rm"],
            &["ppo", "!ppo.checkpoint_every", "seq2seq_rm.rule", "seq2seq_rm.reward_scaling"],
            true,
            ppo::run,
        ),
        // Evaluation trains nothing: new prompt sets or sizes reuse every finished stage.
        s("eval", PerSeed, eval_reads, &["eval"], false, eval::run),
    ]);
    t
}

/// The table as text, one stage a line: what the table test pins and `s2rm validate` can show.
pub fn describe(table: &[Stage]) -> String {
    let mut out = String::new();
    for s in table {
        let scope = if s.scope == Scope::Shared { "shared" } else { "per-seed" };
        let reads = if s.reads.is_empty() { "-".to_string() } else { s.reads.join(",") };
        let mut key: Vec<String> = s.key.iter().map(|k| k.to_string()).collect();
        key.extend(s.key_files.iter().map(|f| format!("file:{f}")));
        let cached = if s.cached { " cached" } else { "" };
        out.push_str(&format!("{:<12} {scope:<8} reads {reads:<48} key {}{cached}\n", s.name, key.join(" ")));
    }
    out
}

/// What a run's stages share: the spec, the device, the data files, the caches and the timer.
pub struct Ctx<'a> {
    pub spec: &'a Spec,
    /// The device without and with autodiff.
    pub dev: Device,
    pub ad: Device,
    pub data_dir: PathBuf,
    pub manifest: Manifest,
    pub refusal: RefusalDetector,
    /// `<out>/.cache`: the tokenizer's cache and, under `stages/`, the stage cache.
    pub cache_dir: PathBuf,
    /// `--shared-dir`: where the shared stages (and the tokenizer) are kept for every cell of a
    /// grid; `None` keeps them in `cache_dir`.
    pub shared_dir: Option<PathBuf>,
    pub stages: StageCache,
    pub timer: Timer,
}

impl Ctx<'_> {
    /// Prompt and response token budgets (`data.max_prompt_tokens`, `data.max_response_tokens`).
    pub fn budgets(&self) -> (usize, usize) {
        (self.spec.data.max_prompt_tokens, self.spec.data.max_response_tokens)
    }

    /// The held-out pairs a reward model or the judge is measured on (`eval.max_rm_pairs`).
    pub fn rm_eval_pairs(&self, tokens: &Tokens) -> Vec<crate::train::PairIds> {
        spread(&tokens.eval_pairs, self.spec.eval.max_rm_pairs)
    }
}

/// `cap` items spread evenly over `items`, in order (0 = all of them). The eval split lists its
/// pairs source by source, so its first `cap` would all come from one source (in safety: 64 PKU
/// pairs and no HH pair); evenly spaced picks keep every source in its proportion.
pub fn spread<T: Clone>(items: &[T], cap: usize) -> Vec<T> {
    let n = capped_len(items.len(), cap);
    (0..n).map(|i| items[i * items.len() / n].clone()).collect()
}

/// `len` cut to `cap`, where a cap of 0 means none (the specs' "0 = all").
pub fn capped_len(len: usize, cap: usize) -> usize {
    if cap == 0 { len } else { len.min(cap) }
}

/// What a stage hands on. Models are dropped (`None`) once every stage that reads them has
/// finished; logs, metrics and data stay for the result files.
pub enum Out {
    /// The data splits, as text.
    Corpus(Corpus),
    /// A pretrained checkpoint, read by the tokenizer and the base model.
    Checkpoint(Option<Checkpoint>),
    /// The tokenizer, the model config it implies and every split as token ids.
    Tokens(Box<Tokens>),
    /// The base LM (pretrained here or loaded), its training log and its parameter count.
    Base(Option<Lm>, Vec<StepLog>, usize),
    /// SFT (training mode: PPO starts from it) or the judge (eval mode), its training log and
    /// its reward-model metrics (judge only).
    Lm(Option<Lm>, Vec<StepLog>, Vec<(String, f64)>),
    /// A reward model, ready to score PPO rollouts; its training log, metrics and (seq2seq RM)
    /// the curve of its copy metrics while it trained.
    Rm(Option<Box<dyn TokenReward + Send>>, Vec<StepLog>, Vec<(String, f64)>, Vec<crate::train::CurvePoint>),
    /// A PPO policy, its log and the kind of reward it was trained on.
    Ppo(Option<Lm>, Vec<PpoLog>, &'static str),
    /// Every policy's answers to the eval prompts.
    Eval(Vec<GenRow>),
}

impl Out {
    pub fn corpus(&self) -> &Corpus {
        match self {
            Out::Corpus(c) => c,
            _ => unreachable!("the stage table reads the corpus from another stage"),
        }
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        match self {
            Out::Checkpoint(Some(c)) => c,
            _ => unreachable!("the stage table reads a checkpoint from a stage that has none (left)"),
        }
    }

    pub fn tokens(&self) -> &Tokens {
        match self {
            Out::Tokens(t) => t,
            _ => unreachable!("the stage table reads tokens from another stage"),
        }
    }

    pub fn lm(&self) -> &Lm {
        match self {
            Out::Base(Some(m), ..) | Out::Lm(Some(m), ..) | Out::Ppo(Some(m), ..) => m,
            _ => unreachable!("the stage table reads a model from a stage that has none (left)"),
        }
    }

    pub fn reward(&self) -> &dyn TokenReward {
        match self {
            Out::Rm(Some(r), ..) => r.as_ref(),
            _ => unreachable!("the stage table reads a reward model from a stage that has none (left)"),
        }
    }

    /// Drops the models, which nothing reads once the stages that read them are done.
    pub fn release(&mut self) {
        match self {
            Out::Base(m, ..) | Out::Lm(m, ..) | Out::Ppo(m, ..) => *m = None,
            Out::Rm(r, ..) => *r = None,
            Out::Checkpoint(c) => *c = None,
            Out::Corpus(_) | Out::Tokens(_) | Out::Eval(_) => {}
        }
    }
}

/// A copy of `model` whose parameters are new autodiff leaves with the same values. Two stages
/// that train clones of one model at the same time would otherwise share leaf nodes, hence one
/// autodiff graph, and burn 0.22's graph locking can deadlock between one thread's backward pass
/// and the other's forward (seen: `GraphCleaner::init` against `GraphLocator::select`).
pub(crate) fn own_leaves(model: &Lm) -> Lm {
    model.valid().train()
}

impl Ctx<'_> {
    /// Where a fine-tuning stage starts from `parent`: its own leaves, with fresh LoRA adapters
    /// when `model.lora` asks for them and the parent has none (SFT and the judge from the base;
    /// the RMs and PPO start from the SFT model's adapters). Also the template its cache entry
    /// loads into.
    pub(crate) fn role_start(&self, parent: &Lm, seed: u64) -> Lm {
        self.role_start_with(parent, seed, &self.spec.model.lora)
    }

    /// [`Self::role_start`] with adapters as `lora` says (the judge's own `judge.lora_layers`).
    pub(crate) fn role_start_with(&self, parent: &Lm, seed: u64, lora: &crate::model::lora::LoraConfig) -> Lm {
        own_leaves(parent).with_lora(lora, &self.ad, seed)
    }
}

pub(crate) fn loop_cfg(steps: usize, lr: f64, warmup_steps: usize, grad_clip: f32) -> crate::train::LoopCfg {
    crate::train::LoopCfg { steps, lr, warmup_steps, grad_clip, cosine: false }
}

#[cfg(test)]
mod tests;
