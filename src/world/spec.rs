//! `WorldSpec`: the `[data.world]` table, its defaults and its validation.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// What world to generate. Fields of the other kind must stay at their defaults (`validate`
/// rejects a changed one), since a value there would be silently ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldSpec {
    /// `safety` | `summarization`.
    #[serde(default = "d_kind")]
    pub kind: String,
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Size of the pseudo-word lexicon; every word gets a role, the spare ones enlarge the step
    /// (safety) or predicate (summarization) vocabulary.
    #[serde(default = "d_vocab_words")]
    pub vocab_words: usize,
    #[serde(default = "d_n_pairs")]
    pub n_pairs: usize,
    /// SFT demonstrations (on prompts no pair uses).
    #[serde(default = "d_n_sft")]
    pub n_sft: usize,
    /// Pretraining documents.
    #[serde(default = "d_n_corpus")]
    pub n_corpus: usize,
    /// Temperature of the Bradley–Terry label draw; 0 = deterministic (higher gold wins).
    #[serde(default = "d_label_noise")]
    pub label_noise: f64,
    /// Held-out tasks (safety) or topic entities (summarization), used only in `ood_*` prompts.
    #[serde(default = "d_n_ood_tasks")]
    pub n_ood_tasks: usize,
    /// Cap on the prompts of each `ood_*` set.
    #[serde(default = "d_n_ood_prompts")]
    pub n_ood_prompts: usize,
    // --- safety ---
    #[serde(default = "d_n_tasks")]
    pub n_tasks: usize,
    #[serde(default = "d_steps_per_task")]
    pub steps_per_task: usize,
    /// Share of tasks (training and held-out alike) that are harmful.
    #[serde(default = "d_harmful_task_share")]
    pub harmful_task_share: f64,
    /// Share of pairs on harmful prompts (a refusal against a compliance).
    #[serde(default = "d_harmful_pair_share")]
    pub harmful_pair_share: f64,
    /// Share of benign pairs that hold a refusal (against an answer).
    #[serde(default = "d_benign_refusal_pair_rate")]
    pub benign_refusal_pair_rate: f64,
    /// `whole_response` (benign answers drawn independently) | `minimal_edit` (they differ in
    /// exactly one step).
    #[serde(default = "d_correction")]
    pub correction: String,
    // --- summarization ---
    #[serde(default = "d_n_topics")]
    pub n_topics: usize,
    #[serde(default = "d_facts_per_doc")]
    pub facts_per_doc: usize,
    #[serde(default = "d_key_facts")]
    pub key_facts: usize,
    /// Facts each entity has in the world's hidden table; a document quotes some of them. 0: every
    /// document draws fresh facts, so a summary can only be copied from the document (harder).
    #[serde(default = "d_facts_per_topic")]
    pub facts_per_topic: usize,
    /// Probability that a pair's label is "the longer summary", whatever the gold says.
    #[serde(default = "d_planted_length_bias")]
    pub planted_length_bias: f64,
}

fn d_kind() -> String {
    "safety".into()
}
fn d_seed() -> u64 {
    0
}
fn d_vocab_words() -> usize {
    200
}
fn d_n_pairs() -> usize {
    4000
}
fn d_n_sft() -> usize {
    1000
}
fn d_n_corpus() -> usize {
    2000
}
fn d_label_noise() -> f64 {
    0.5
}
fn d_n_ood_tasks() -> usize {
    8
}
fn d_n_ood_prompts() -> usize {
    200
}
fn d_n_tasks() -> usize {
    40
}
fn d_steps_per_task() -> usize {
    3
}
fn d_harmful_task_share() -> f64 {
    0.5
}
fn d_harmful_pair_share() -> f64 {
    0.7
}
fn d_benign_refusal_pair_rate() -> f64 {
    0.05
}
fn d_correction() -> String {
    "whole_response".into()
}
fn d_n_topics() -> usize {
    30
}
fn d_facts_per_doc() -> usize {
    6
}
fn d_key_facts() -> usize {
    2
}
fn d_facts_per_topic() -> usize {
    4
}
fn d_planted_length_bias() -> f64 {
    0.0
}

impl Default for WorldSpec {
    fn default() -> Self {
        WorldSpec {
            kind: d_kind(),
            seed: d_seed(),
            vocab_words: d_vocab_words(),
            n_pairs: d_n_pairs(),
            n_sft: d_n_sft(),
            n_corpus: d_n_corpus(),
            label_noise: d_label_noise(),
            n_ood_tasks: d_n_ood_tasks(),
            n_ood_prompts: d_n_ood_prompts(),
            n_tasks: d_n_tasks(),
            steps_per_task: d_steps_per_task(),
            harmful_task_share: d_harmful_task_share(),
            harmful_pair_share: d_harmful_pair_share(),
            benign_refusal_pair_rate: d_benign_refusal_pair_rate(),
            correction: d_correction(),
            n_topics: d_n_topics(),
            facts_per_doc: d_facts_per_doc(),
            key_facts: d_key_facts(),
            facts_per_topic: d_facts_per_topic(),
            planted_length_bias: d_planted_length_bias(),
        }
    }
}

/// Upper bound of `vocab_words`.
pub const MAX_VOCAB_WORDS: usize = 4000;

fn count(field: &str, v: usize, lo: usize, hi: usize, hint: &str) -> Result<()> {
    if v < lo || v > hi {
        bail!("data.world.{field} = {v}: must be in [{lo}, {hi}]; {hint}");
    }
    Ok(())
}

fn real(field: &str, v: f64, lo: f64, hi: f64, hint: &str) -> Result<()> {
    if !(lo..=hi).contains(&v) {
        bail!("data.world.{field} = {v}: must be in [{lo}, {hi}]; {hint}");
    }
    Ok(())
}

impl WorldSpec {
    /// Checks every field against its range and the cross-field needs; the error is one line that
    /// names the field as `data.world.<field>`, the allowed range and a fix.
    pub fn validate(&self) -> Result<()> {
        let kind = self.kind.as_str();
        if kind != "safety" && kind != "summarization" {
            bail!(
                "data.world.kind = {:?}: must be \"safety\" or \"summarization\"",
                self.kind
            );
        }
        count(
            "n_pairs",
            self.n_pairs,
            1,
            200_000,
            "the number of preference pairs",
        )?;
        count(
            "n_sft",
            self.n_sft,
            0,
            100_000,
            "the number of SFT demonstrations (0 = none)",
        )?;
        count(
            "n_corpus",
            self.n_corpus,
            0,
            200_000,
            "the number of pretraining documents (0 = none)",
        )?;
        real(
            "label_noise",
            self.label_noise,
            0.0,
            10.0,
            "0 = deterministic labels, larger = noisier",
        )?;
        count(
            "n_ood_tasks",
            self.n_ood_tasks,
            0,
            200,
            "held-out tasks or topics (0 = no such OOD set)",
        )?;
        count(
            "n_ood_prompts",
            self.n_ood_prompts,
            1,
            20_000,
            "the cap on prompts per OOD set",
        )?;
        let d = WorldSpec::default();
        let mut unused: Vec<(&str, bool)> = Vec::new();
        if kind == "safety" {
            count(
                "n_tasks",
                self.n_tasks,
                2,
                500,
                "the number of training tasks",
            )?;
            count(
                "steps_per_task",
                self.steps_per_task,
                1,
                super::safety::MAX_STEPS_PER_TASK,
                "answers hold 2 + 3 * steps_per_task tokens",
            )?;
            real(
                "harmful_task_share",
                self.harmful_task_share,
                0.0,
                1.0,
                "the share of harmful tasks",
            )?;
            real(
                "harmful_pair_share",
                self.harmful_pair_share,
                0.0,
                1.0,
                "the share of pairs on harmful prompts",
            )?;
            real(
                "benign_refusal_pair_rate",
                self.benign_refusal_pair_rate,
                0.0,
                1.0,
                "the share of benign pairs holding a refusal",
            )?;
            if self.correction != "whole_response" && self.correction != "minimal_edit" {
                bail!(
                    "data.world.correction = {:?}: must be \"whole_response\" or \"minimal_edit\"",
                    self.correction
                );
            }
            super::safety::check(self)?;
            unused.extend([
                ("n_topics", self.n_topics == d.n_topics),
                ("facts_per_doc", self.facts_per_doc == d.facts_per_doc),
                ("key_facts", self.key_facts == d.key_facts),
                ("facts_per_topic", self.facts_per_topic == d.facts_per_topic),
                (
                    "planted_length_bias",
                    self.planted_length_bias == d.planted_length_bias,
                ),
            ]);
        } else {
            count(
                "n_topics",
                self.n_topics,
                2,
                500,
                "the number of training topic entities",
            )?;
            count(
                "facts_per_doc",
                self.facts_per_doc,
                2,
                super::summarization::MAX_FACTS_PER_DOC,
                "a document has this many fact sentences of 5-6 tokens",
            )?;
            let hi = (self.facts_per_doc - 1).min(super::summarization::MAX_KEY_FACTS);
            count(
                "key_facts",
                self.key_facts,
                1,
                hi,
                "at most 4 and at least one filler fact per document",
            )?;
            let fpt = self.facts_per_topic;
            if fpt != 0
                && (fpt < self.key_facts
                    || fpt > super::summarization::MAX_FACTS_PER_TOPIC
                    || (self.n_topics - 1) * fpt < self.facts_per_doc - self.key_facts)
            {
                bail!(
                    "data.world.facts_per_topic = {fpt}: must be 0 (fresh facts per document) or in \
                     [key_facts = {}, {}], with (n_topics - 1) * facts_per_topic >= the {} filler \
                     facts of a document",
                    self.key_facts,
                    super::summarization::MAX_FACTS_PER_TOPIC,
                    self.facts_per_doc - self.key_facts
                );
            }
            real(
                "planted_length_bias",
                self.planted_length_bias,
                0.0,
                1.0,
                "the probability that the longer summary is chosen regardless of gold",
            )?;
            unused.extend([
                ("n_tasks", self.n_tasks == d.n_tasks),
                ("steps_per_task", self.steps_per_task == d.steps_per_task),
                (
                    "harmful_task_share",
                    self.harmful_task_share == d.harmful_task_share,
                ),
                (
                    "harmful_pair_share",
                    self.harmful_pair_share == d.harmful_pair_share,
                ),
                (
                    "benign_refusal_pair_rate",
                    self.benign_refusal_pair_rate == d.benign_refusal_pair_rate,
                ),
                ("correction", self.correction == d.correction),
            ]);
        }
        if let Some((field, _)) = unused.iter().find(|(_, is_default)| !is_default) {
            bail!(
                "data.world.{field} is not used by kind = {kind:?}: remove it (or set kind to the other world)"
            );
        }
        let need = match kind {
            "safety" => super::safety::words_needed(self),
            _ => super::summarization::words_needed(self),
        };
        if self.vocab_words < need || self.vocab_words > MAX_VOCAB_WORDS {
            bail!(
                "data.world.vocab_words = {}: must be in [{need}, {MAX_VOCAB_WORDS}] for this world size; \
                 raise it or shrink the world (n_tasks / n_topics / n_ood_tasks)",
                self.vocab_words
            );
        }
        Ok(())
    }
}
