//! The data stage of a controlled world (`data.world`): the world is generated from its spec and
//! split by prompt like real data; its gold reward replaces the learned judge.
//!
//! Held-out pairs keep the world's labels (with their noise and planted bias), like real data: a
//! reward model's held-out accuracy says whether it learned its data, and the gold-scored policies
//! say what that data taught.

use super::data::{capped, corpus_docs, prompts_by_kind};
use super::{Call, Corpus, Ctx, Out};
use crate::data::{Preference, split_by_prompt};
use crate::spec::Spec;
use crate::world::{World, WorldSpec};
use anyhow::{Result, bail};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

pub fn run(ctx: &Ctx, _: &Call) -> Result<Out> {
    let ws = ctx.spec.data.world.as_ref().expect("the world table is used only for a world spec");
    Ok(Out::Corpus(ctx.timer.time("data", None, || build(ctx.spec, ws))?))
}

/// The corpus of the world `ws`, split as `spec.data.split` says.
pub fn build(spec: &Spec, ws: &WorldSpec) -> Result<Corpus> {
    let d = &spec.data;
    let seed = spec.experiment.base_seed;
    let world = World::generate(ws)?;
    let mut counts = BTreeMap::new();
    let all: Vec<Preference> = world
        .pairs
        .iter()
        .map(|p| Preference { prompt: p.prompt.clone(), chosen: p.chosen.clone(), rejected: p.rejected.clone(), source: p.kind.clone() })
        .collect();
    counts.insert("pairs_world".to_string(), all.len());
    let raw = split_by_prompt(&all, &spec.split_fractions(), seed)?;
    if let Some((name, _)) = raw.iter().find(|(_, v)| v.is_empty()) {
        bail!("data split `{name}` is empty: the world has too few distinct prompts for `data.split`; raise data.world.n_pairs or n_tasks");
    }
    let mut splits = BTreeMap::new();
    for (name, pairs) in &raw {
        let kept = capped(pairs, d.max_pairs_per_split, seed ^ 0x9e37);
        counts.insert(format!("split_{name}_pairs"), kept.len());
        splits.insert(name.clone(), kept);
    }

    // Eval prompt sets by kind (benign / harmful, or summary), then the world's OOD sets.
    let by_kind = prompts_by_kind(&raw["eval"], |p| &p.source);
    let mut eval_prompts: Vec<(String, Vec<String>)> = Vec::new();
    let sets = by_kind.into_iter().chain(world.ood_prompts.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (k, (name, v)) in sets.enumerate() {
        let v = capped(&v, spec.eval.max_prompts_per_set, seed ^ 0xe7a1 ^ ((k as u64) << 20));
        counts.insert(format!("eval_prompts_{name}"), v.len());
        eval_prompts.push((name, v));
    }

    // SFT: the world's demonstrations (gold-best answers on prompts no pair uses), plus the chosen
    // side of the rm and policy splits if `data.sft_from_chosen`.
    let mut sft_rows = world.sft.clone();
    if d.sft_from_chosen {
        for name in ["rm", "policy"] {
            sft_rows.extend(splits[name].iter().map(|p: &Preference| (p.prompt.clone(), p.chosen.clone())));
        }
    }
    counts.insert("sft_rows".into(), sft_rows.len());

    let docs = corpus_docs(world.corpus.clone(), &splits, &sft_rows, d.max_corpus_docs, seed);
    counts.insert("corpus_docs".into(), docs.len());

    // Summaries are measured against the gold-best summary (length ratio, ROUGE-L).
    let mut references = HashMap::new();
    if ws.kind == "summarization" {
        for p in eval_prompts.iter().flat_map(|(_, v)| v) {
            if let Some(best) = world.best_response(p) {
                references.insert(p.clone(), best);
            }
        }
        counts.insert("eval_prompts_with_reference".into(), references.len());
    }

    let mut refusal_sanity = Vec::new();
    let kinds: BTreeSet<&str> = all.iter().map(|p| p.source.as_str()).collect();
    for kind in kinds {
        let of: Vec<&Preference> = all.iter().filter(|p| p.source == kind).collect();
        for (side, pick) in [("chosen", true), ("rejected", false)] {
            let refused = of.iter().filter(|p| world.is_refusal(if pick { &p.chosen } else { &p.rejected })).count();
            refusal_sanity.push((format!("world_{kind}"), side.to_string(), of.len(), refused as f64 / of.len().max(1) as f64));
        }
    }
    Ok(Corpus { splits, sft_rows, judge_pairs: Vec::new(), eval_prompts, references, docs, refusal_sanity, counts, kind_of: Default::default(), world: Some(Arc::new(world)) })
}
