//! Summarization world (long-response bias). A document is `facts_per_doc` fact sentences; the
//! prompt names a topic entity, and the key facts are exactly the sentences whose subject is that
//! entity (`key_facts` of them); the fillers are about other training entities. Each entity has
//! `facts_per_topic` facts in the world's hidden table and a document quotes some of them, so a
//! policy can know the facts and must read the document only for which of them it holds (with
//! `facts_per_topic = 0` every document draws fresh facts and a summary must be copied from it).
//! Either way the gold reads everything it needs from the prompt text.
//!
//! Grammar (whitespace tokens):
//! - fact: `the <entity> is <adjective> .` (5 tokens) | `the <entity> <relation> the <noun> .` (6);
//! - prompt: a template around the document, e.g. `summarize about <topic> : <facts>` (at most
//!   7 + 6 * facts_per_doc tokens: 43 for the default 6 facts, 55 for the maximum 8);
//! - summary: 1 to `MAX_SUMMARY_SENTENCES` fact sentences. Generated ones hold at most
//!   `MAX_GEN_SENTENCES` (<= 30 tokens); the gold-best one, the key facts in document order,
//!   holds 10–12 tokens for the default 2 key facts.
//!
//! Anything else does not parse, the empty summary included.
//!
//! Gold of a parsable summary, reading its sentences in order:
//!
//! ```text
//! KEY_FACT * (distinct key facts) - FILLER_COST * (distinct document facts not about the topic)
//!   - UNSUPPORTED_COST * (distinct sentences not in the document) - REPEAT_COST * (repeats)
//! ```
//!
//! where a repeat is a sentence equal to an earlier one (it earns or costs nothing else).
//! Unparsable: `super::UNPARSABLE` (-10, below -MAX_SUMMARY_SENTENCES * UNSUPPORTED_COST = -8, the
//! lowest parsable score). With 2 key facts: both +2, both and a filler +1.5, both with one of
//! them repeated +1.5, one key and one unsupported fact 0.

use super::{Draft, GoldScore, WorldSpec, render, tokens};
use crate::util::SplitMix64;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Gain per distinct key fact.
pub const KEY_FACT: f64 = 1.0;
/// Cost per distinct filler fact.
pub const FILLER_COST: f64 = 0.5;
/// Cost per distinct sentence that is not a fact of the document.
pub const UNSUPPORTED_COST: f64 = 1.0;
/// Cost per repeated sentence.
pub const REPEAT_COST: f64 = 0.5;
/// Most sentences a parsable summary holds.
pub const MAX_SUMMARY_SENTENCES: usize = 8;
/// Upper bound of `facts_per_doc`.
pub const MAX_FACTS_PER_DOC: usize = 8;
/// Upper bound of `key_facts`.
pub const MAX_KEY_FACTS: usize = 4;
/// Upper bound of `facts_per_topic` (below the MIN_POOL + MIN_POOL^2 facts a subject can have).
pub const MAX_FACTS_PER_TOPIC: usize = 12;
/// Most sentences in a generated summary: 5 * 6 = 30 tokens.
const MAX_GEN_SENTENCES: usize = 5;
/// Chance that a generated summary repeats one of its sentences.
const REPEAT_RATE: f64 = 0.25;
/// Smallest adjective, relation and noun pools.
const MIN_POOL: usize = 4;

/// Prompt templates of the training data (`{doc}` is the document).
pub const TRAIN_TEMPLATES: [&str; 4] = [
    "summarize about {t} : {doc}",
    "what does it say about {t} ? {doc}",
    "key points on {t} : {doc}",
    "{doc} summarize the {t} .",
];
/// Held-out templates: only in the `ood_templates` set.
pub const OOD_TEMPLATES: [&str; 2] = ["{doc} tell me about {t} .", "facts on {t} please : {doc}"];
pub(crate) const FIXED_TEXTS: &[&[&str]] = &[&TRAIN_TEMPLATES, &OOD_TEMPLATES, &["the is ."]];

pub(crate) fn words_needed(spec: &WorldSpec) -> usize {
    spec.n_topics + spec.n_ood_tasks + 3 * MIN_POOL
}

fn template(id: usize) -> &'static str {
    if id < TRAIN_TEMPLATES.len() {
        TRAIN_TEMPLATES[id]
    } else {
        OOD_TEMPLATES[id - TRAIN_TEMPLATES.len()]
    }
}

/// A parsed prompt.
pub(crate) struct Doc {
    pub template: usize,
    pub topic: String,
    /// (subject, sentence) in document order.
    pub facts: Vec<(String, String)>,
}

impl Doc {
    /// The key facts: the sentences whose subject is the topic, in document order.
    fn key_facts(&self) -> impl Iterator<Item = &str> {
        self.facts.iter().filter(|(s, _)| *s == self.topic).map(|(_, f)| f.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummTable {
    /// Training topics first, then the held-out ones.
    pub entities: Vec<String>,
    n_train: usize,
    facts_per_doc: usize,
    key_facts: usize,
    adjectives: Vec<String>,
    relations: Vec<String>,
    nouns: Vec<String>,
    entity_set: BTreeSet<String>,
    adjective_set: BTreeSet<String>,
    relation_set: BTreeSet<String>,
    noun_set: BTreeSet<String>,
    /// Each entity's facts (the hidden table); empty with `facts_per_topic = 0`.
    known: Vec<Vec<String>>,
}

/// Matches template tokens `pat` (literals and a `{t}` slot) against `toks`.
fn match_affix<'a>(pat: &[&str], toks: &[&'a str], topic: &mut Option<&'a str>) -> bool {
    pat.len() == toks.len()
        && pat.iter().zip(toks).all(|(p, &x)| {
            if *p == "{t}" {
                *topic = Some(x);
                true
            } else {
                *p == x
            }
        })
}

impl SummTable {
    pub(crate) fn build(spec: &WorldSpec, words: Vec<String>, rng: &mut SplitMix64) -> SummTable {
        let mut it = words.into_iter();
        let entities: Vec<String> = it.by_ref().take(spec.n_topics + spec.n_ood_tasks).collect();
        let mut rest: Vec<String> = it.collect();
        let third = rest.len() / 3;
        let nouns = rest.split_off(2 * third);
        let relations = rest.split_off(third);
        let adjectives = rest;
        let set = |v: &Vec<String>| v.iter().cloned().collect::<BTreeSet<String>>();
        let mut t = SummTable {
            entity_set: set(&entities),
            adjective_set: set(&adjectives),
            relation_set: set(&relations),
            noun_set: set(&nouns),
            entities,
            n_train: spec.n_topics,
            facts_per_doc: spec.facts_per_doc,
            key_facts: spec.key_facts,
            adjectives,
            relations,
            nouns,
            known: Vec::new(),
        };
        t.known = (0..t.entities.len())
            .map(|e| {
                let mut facts: Vec<String> = Vec::with_capacity(spec.facts_per_topic);
                // Terminates: a subject has at least MIN_POOL + MIN_POOL^2 > MAX_FACTS_PER_TOPIC facts.
                while facts.len() < spec.facts_per_topic {
                    let f = t.fresh_fact(&t.entities[e], rng);
                    if !facts.contains(&f) {
                        facts.push(f);
                    }
                }
                facts
            })
            .collect();
        t
    }

    /// (subject, sentence) of each fact sentence; `None` unless `toks` is a sequence of them.
    fn parse_facts(&self, toks: &[&str]) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            let r = &toks[i..];
            let n = if r.len() >= 5
                && r[0] == "the"
                && r[2] == "is"
                && self.adjective_set.contains(r[3])
                && r[4] == "."
            {
                5
            } else if r.len() >= 6
                && r[0] == "the"
                && self.relation_set.contains(r[2])
                && r[3] == "the"
                && self.noun_set.contains(r[4])
                && r[5] == "."
            {
                6
            } else {
                return None;
            };
            if !self.entity_set.contains(r[1]) {
                return None;
            }
            out.push((r[1].to_string(), r[..n].join(" ")));
            i += n;
        }
        Some(out)
    }

    /// `None` for no template, an unknown topic or a document that is not fact sentences.
    pub(crate) fn parse_prompt(&self, prompt: &str) -> Option<Doc> {
        let toks = tokens(prompt);
        (0..TRAIN_TEMPLATES.len() + OOD_TEMPLATES.len()).find_map(|id| {
            let tt: Vec<&str> = template(id).split(' ').collect();
            let at = tt
                .iter()
                .position(|t| *t == "{doc}")
                .expect("every template has {doc}");
            let (pre, suf) = (&tt[..at], &tt[at + 1..]);
            if toks.len() < pre.len() + suf.len() {
                return None;
            }
            let mut topic = None;
            let body = &toks[pre.len()..toks.len() - suf.len()];
            if !match_affix(pre, &toks[..pre.len()], &mut topic)
                || !match_affix(suf, &toks[toks.len() - suf.len()..], &mut topic)
            {
                return None;
            }
            let topic = topic.filter(|t| self.entity_set.contains(*t))?;
            let facts = self.parse_facts(body).filter(|f| !f.is_empty())?;
            Some(Doc {
                template: id,
                topic: topic.to_string(),
                facts,
            })
        })
    }

    pub(crate) fn gold(&self, prompt: &str, response: &str) -> Option<GoldScore> {
        let doc = self.parse_prompt(prompt)?;
        let mut g = GoldScore::unparsable(Some("summary"));
        let sents = match self.parse_facts(&tokens(response)) {
            Some(s) if !s.is_empty() && s.len() <= MAX_SUMMARY_SENTENCES => s,
            _ => return Some(g),
        };
        let key: BTreeSet<&str> = doc.key_facts().collect();
        let all: BTreeSet<&str> = doc.facts.iter().map(|(_, f)| f.as_str()).collect();
        let mut seen = BTreeSet::new();
        for (_, s) in &sents {
            if !seen.insert(s.as_str()) {
                g.n_repeated += 1;
            } else if key.contains(s.as_str()) {
                g.n_correct += 1;
            } else if all.contains(s.as_str()) {
                g.n_wrong += 1;
            } else {
                g.n_unsupported += 1;
            }
        }
        g.parses = true;
        g.score = KEY_FACT * g.n_correct as f64
            - FILLER_COST * g.n_wrong as f64
            - UNSUPPORTED_COST * g.n_unsupported as f64
            - REPEAT_COST * g.n_repeated as f64;
        Some(g)
    }

    pub(crate) fn prompt_kind(&self, prompt: &str) -> Option<&'static str> {
        self.parse_prompt(prompt).map(|_| "summary")
    }

    pub(crate) fn best_response(&self, prompt: &str) -> Option<String> {
        let doc = self.parse_prompt(prompt)?;
        Some(doc.key_facts().collect::<Vec<_>>().join(" "))
    }

    /// A fact about entity `e`: one of its table facts, or a fresh one without a table.
    fn fact(&self, e: usize, rng: &mut SplitMix64) -> String {
        match self.known.get(e).filter(|k| !k.is_empty()) {
            Some(k) => k[rng.below(k.len())].clone(),
            None => self.fresh_fact(&self.entities[e], rng),
        }
    }

    fn fresh_fact(&self, subject: &str, rng: &mut SplitMix64) -> String {
        if rng.below(2) == 0 {
            format!(
                "the {subject} is {} .",
                self.adjectives[rng.below(self.adjectives.len())]
            )
        } else {
            let r = &self.relations[rng.below(self.relations.len())];
            format!(
                "the {subject} {r} the {} .",
                self.nouns[rng.below(self.nouns.len())]
            )
        }
    }

    /// A shuffled document about entity `topic`: (is key, sentence), all sentences distinct.
    fn make_doc(&self, topic: usize, rng: &mut SplitMix64) -> Vec<(bool, String)> {
        let mut doc: Vec<(bool, String)> = Vec::with_capacity(self.facts_per_doc);
        // Terminates: a subject has at least key_facts table facts (validated) or MIN_POOL +
        // MIN_POOL^2 fresh ones, and the other entities at least the fillers needed.
        while doc.len() < self.key_facts {
            let f = self.fact(topic, rng);
            if !doc.iter().any(|(_, x)| *x == f) {
                doc.push((true, f));
            }
        }
        while doc.len() < self.facts_per_doc {
            let other = rng.below(self.n_train);
            if other == topic {
                continue;
            }
            let f = self.fact(other, rng);
            if !doc.iter().any(|(_, x)| *x == f) {
                doc.push((false, f));
            }
        }
        rng.shuffle(&mut doc);
        doc
    }

    fn doc_prompt(
        &self,
        topic: usize,
        template: &str,
        rng: &mut SplitMix64,
    ) -> (String, Vec<(bool, String)>) {
        let doc = self.make_doc(topic, rng);
        let text = doc
            .iter()
            .map(|(_, f)| f.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let prompt = render(template, |slot| {
            if slot == "{t}" {
                self.entities[topic].clone()
            } else {
                text.clone()
            }
        });
        (prompt, doc)
    }

    fn key_summary(doc: &[(bool, String)]) -> String {
        doc.iter()
            .filter(|(k, _)| *k)
            .map(|(_, f)| f.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A summary with a random number of key facts and fillers (at least one sentence, in
    /// document order), sometimes with one sentence repeated right after itself.
    fn draw_summary(doc: &[(bool, String)], rng: &mut SplitMix64) -> String {
        let mut keys: Vec<usize> = (0..doc.len()).filter(|&i| doc[i].0).collect();
        let mut fillers: Vec<usize> = (0..doc.len()).filter(|&i| !doc[i].0).collect();
        let mut k = rng.below(keys.len() + 1);
        let mut f = rng.below(fillers.len().min(MAX_GEN_SENTENCES - k) + 1);
        if k + f == 0 {
            if rng.below(2) == 0 { k = 1 } else { f = 1 }
        }
        rng.shuffle(&mut keys);
        rng.shuffle(&mut fillers);
        let mut pick: Vec<usize> = keys[..k].iter().chain(&fillers[..f]).copied().collect();
        pick.sort_unstable();
        let mut sents: Vec<&str> = pick.iter().map(|&i| doc[i].1.as_str()).collect();
        if sents.len() < MAX_GEN_SENTENCES && rng.next_f64() < REPEAT_RATE {
            let j = rng.below(sents.len());
            sents.insert(j + 1, sents[j]);
        }
        sents.join(" ")
    }

    pub(crate) fn draft_pair(&self, rng: &mut SplitMix64) -> Draft {
        let topic = rng.below(self.n_train);
        let (prompt, doc) = self.doc_prompt(
            topic,
            TRAIN_TEMPLATES[rng.below(TRAIN_TEMPLATES.len())],
            rng,
        );
        let a = Self::draw_summary(&doc, rng);
        // Terminates: every document admits at least three distinct summaries.
        let b = loop {
            let b = Self::draw_summary(&doc, rng);
            if b != a {
                break b;
            }
        };
        Draft {
            prompt,
            a,
            b,
            kind: "summary",
            edit_step: None,
        }
    }

    /// A fresh document prompt (none of `used`) with its key-fact summary.
    pub(crate) fn draft_sft(
        &self,
        rng: &mut SplitMix64,
        used: &BTreeSet<&str>,
    ) -> (String, String) {
        loop {
            let topic = rng.below(self.n_train);
            let (prompt, doc) = self.doc_prompt(
                topic,
                TRAIN_TEMPLATES[rng.below(TRAIN_TEMPLATES.len())],
                rng,
            );
            if !used.contains(prompt.as_str()) {
                return (prompt, Self::key_summary(&doc));
            }
        }
    }

    /// A training prompt and a summary (the key-fact one half the time), half the time repeated.
    pub(crate) fn draft_corpus(&self, rng: &mut SplitMix64) -> String {
        let topic = rng.below(self.n_train);
        let (prompt, doc) = self.doc_prompt(
            topic,
            TRAIN_TEMPLATES[rng.below(TRAIN_TEMPLATES.len())],
            rng,
        );
        let s = if rng.below(2) == 0 {
            Self::key_summary(&doc)
        } else {
            Self::draw_summary(&doc, rng)
        };
        if rng.below(2) == 0 {
            format!("{prompt} {s} {s}")
        } else {
            format!("{prompt} {s}")
        }
    }

    /// `ood_topics`: held-out topics with training templates; `ood_templates`: training topics
    /// with held-out templates; `cap` prompts each.
    pub(crate) fn ood_prompts(
        &self,
        cap: usize,
        rng: &mut SplitMix64,
    ) -> BTreeMap<String, Vec<String>> {
        let n_ood = self.entities.len() - self.n_train;
        let mut out = BTreeMap::new();
        if n_ood > 0 {
            let v = (0..cap)
                .map(|_| {
                    let topic = self.n_train + rng.below(n_ood);
                    self.doc_prompt(
                        topic,
                        TRAIN_TEMPLATES[rng.below(TRAIN_TEMPLATES.len())],
                        rng,
                    )
                    .0
                })
                .collect();
            out.insert("ood_topics".to_string(), v);
        }
        let v = (0..cap)
            .map(|_| {
                let topic = rng.below(self.n_train);
                self.doc_prompt(topic, OOD_TEMPLATES[rng.below(OOD_TEMPLATES.len())], rng)
                    .0
            })
            .collect();
        out.insert("ood_templates".to_string(), v);
        out
    }
}

#[cfg(test)]
#[path = "summarization_tests.rs"]
mod tests;
