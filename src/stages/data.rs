//! The data stage: reads, verifies and splits the spec's datasets into the text every later
//! stage trains and evaluates on (by prompt: no prompt crosses splits). The readers of each
//! dataset format live in `crate::data`.

use super::{Call, Ctx, Out};
use crate::data::{self, Manifest, Preference, RefusalDetector};
use crate::spec::Spec;
use crate::util::SplitMix64;
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

pub fn run(ctx: &Ctx, _: &Call) -> Result<Out> {
    let corpus = ctx.timer.time("data", None, || build_corpus(ctx.spec, &ctx.manifest, &ctx.data_dir, &ctx.refusal))?;
    Ok(Out::Corpus(corpus))
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
    /// The kind (benign / harmful) of each preference source, by manifest id: the held-out pair
    /// accuracies are also reported per kind, the way the eval prompt sets are split.
    pub kind_of: HashMap<String, String>,
    /// The controlled world the data was generated from (its gold reward judges), if any.
    pub world: Option<std::sync::Arc<crate::world::World>>,
}

pub(super) fn capped<T: Clone>(v: &[T], cap: usize, seed: u64) -> Vec<T> {
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
    let mut eval_prompts: Vec<(String, Vec<String>)> = prompts_by_kind(&raw_splits["eval"], |p| &kind_of[&p.source])
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

    let docs = corpus_docs(Vec::new(), &splits, &sft_rows, d.max_corpus_docs, seed);
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
    Ok(Corpus { splits, sft_rows, judge_pairs, eval_prompts, references, docs, refusal_sanity, counts, kind_of, world: None })
}

/// The pretraining / tokenizer corpus: `extra` documents, then the text of the rm and policy splits
/// (each pair's prompt with either response) and the SFT rows, capped at `cap` (0 = all).
pub(super) fn corpus_docs(mut docs: Vec<String>, splits: &BTreeMap<String, Vec<Preference>>, sft_rows: &[(String, String)], cap: usize, seed: u64) -> Vec<String> {
    for name in ["rm", "policy"] {
        for p in &splits[name] {
            docs.push(format!("{}\n{}", p.prompt, p.chosen));
            docs.push(format!("{}\n{}", p.prompt, p.rejected));
        }
    }
    docs.extend(sft_rows.iter().map(|(p, r)| format!("{p}\n{r}")));
    capped(&docs, cap, seed ^ 0xd0c5)
}

/// Each prompt of `pairs` once, grouped by its kind (`kind_of` a pair), in first-seen order.
pub(super) fn prompts_by_kind<'a>(pairs: &'a [Preference], kind_of: impl Fn(&'a Preference) -> &'a str) -> BTreeMap<String, Vec<String>> {
    let mut by_kind: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for p in pairs {
        if seen.insert(p.prompt.as_str()) {
            by_kind.entry(kind_of(p).to_string()).or_default().push(p.prompt.clone());
        }
    }
    by_kind
}
