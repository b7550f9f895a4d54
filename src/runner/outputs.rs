//! The result files of a run: every CSV, the resolved spec and `run_info.json`, as bytes to be
//! written all at once (a failed write leaves earlier results intact).

use super::Gathered;
use crate::device::Selected;
use crate::spec::{Resolved, Spec};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every CSV [`files`] can write (`gates.csv` only for a controlled world). `s2rm merge` joins
/// these from the cells of a grid; the rest of a results directory is rendered from them.
pub const CSVS: &[&str] = &["generations.csv", "prompts.csv", "ppo_log.csv", "rm_eval.csv", "rm_curve.csv", "train_log.csv", "refusal_sanity.csv", "gates.csv"];

/// CSV text from a header and rows (strings here, the byte records of cells in `s2rm merge`).
pub(crate) fn csv_bytes<R>(header: impl IntoIterator<Item = impl AsRef<[u8]>>, rows: impl IntoIterator<Item = R>) -> Result<Vec<u8>>
where
    R: IntoIterator,
    R::Item: AsRef<[u8]>,
{
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

pub(super) fn files(
    resolved: &Resolved,
    sel: &Selected,
    g: &Gathered,
    stage_seconds: BTreeMap<String, f64>,
    loaded: Vec<String>,
    total: f64,
    exe: &str,
    out: &Path,
) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let spec = &resolved.spec;
    let ex = &spec.experiment;
    let size = &spec.model.preset;
    let (gens, ppo_log, rm_eval, train_log, corpus) = (&g.gens, &g.ppo_log, &g.rm_eval, &g.train_log, &g.corpus);
    let (eval_prompts, model_cfg, lm_params) = (&g.tokens.eval_prompts, &g.tokens.model_cfg, g.lm_params);
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
    // Written only when a curve was asked for (`seq2seq_rm.curve_every`): the report draws it then.
    if !g.rm_curve.is_empty() {
        let rows: Vec<Vec<String>> = g
            .rm_curve
            .iter()
            .map(|(seed, m, step, metric, v, n)| vec![name.clone(), size.clone(), seed.to_string(), m.clone(), step.to_string(), metric.clone(), f(*v), n.to_string()])
            .collect();
        files.push((out.join("rm_curve.csv"), csv_bytes(&["experiment", "size", "seed", "model", "step", "metric", "value", "n"], &rows)?));
    }
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

    let gates = match g.corpus.world.as_deref() {
        Some(w) => super::gates::measure(w, g, &ex.seeds),
        None => crate::report::gates::real_data(g.rm_eval.iter().map(|(s, m, k, v, _)| (*s, m.as_str(), k.as_str(), *v))),
    };
    if !gates.is_empty() {
        let rows: Vec<Vec<String>> = gates
            .iter()
            .map(|q| {
                let passed = q.passed().map_or(String::new(), |p| if p { "1".into() } else { "0".into() });
                vec![name.clone(), size.clone(), q.seed.to_string(), q.gate.clone(), f(q.value), q.goal.map(f).unwrap_or_default(), passed]
            })
            .collect();
        files.push((out.join("gates.csv"), csv_bytes(&["experiment", "size", "seed", "gate", "value", "goal", "passed"], &rows)?));
    }
    let mut info = serde_json::json!({
        "experiment": name,
        "title": ex.title,
        "claim": ex.claim,
        "profile": resolved.profile,
        "device": sel.name,
        "device_reason": sel.reason,
        "seeds": ex.seeds,
        "base_seed": ex.base_seed,
        "n_bootstrap": spec.eval.n_bootstrap,
        "bootstrap_seed": spec.eval.bootstrap_seed,
        "stage_seconds": stage_seconds,
        "stages_loaded_from_cache": loaded,
        "total_seconds": total,
        "param_counts": { "lm (policy, reference, RMs, judge; each)": lm_params, "score/value head": model_cfg.d_model + 1 },
        "data_counts": corpus.counts,
        "model": model_cfg,
        "notes": notes(spec),
        "spec_file": resolved.file.display().to_string(),
        // Which build computed these results: `s2rm merge` refuses cells of different builds.
        "binary_sha256": exe,
    });
    // Only a world run says how it was judged and what its gates were: the run_info.json of a
    // real-data run stays as it was.
    if let Some(world) = &g.corpus.world {
        info["judge"] = "gold".into();
        info["gates"] = serde_json::to_value(&gates)?;
        info["world_label_stats"] = serde_json::to_value(world.label_stats())?;
    }
    files.push((out.join("run_info.json"), serde_json::to_string_pretty(&info)?.into_bytes()));
    Ok(files)
}

fn notes(spec: &Spec) -> Vec<String> {
    let mut notes = vec![
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
    ];
    if spec.data.world.is_some() {
        // A world has no learned judge: its gold reward scores every answer.
        notes[1] = "Judge: the world's gold reward, a program that parses each answer and scores it exactly (src/world/); no judge model is trained. Held-out reward-model pair accuracies are against the world's labels (with their noise and planted bias; run_info.json's world_label_stats says how often the labels agree with the gold). Competence gates (gates.csv) say whether the models can do the task; a failed gate makes every verdict inconclusive.".into();
    }
    if !spec.judge.adapter.is_empty() {
        notes[1] = format!(
            "Judge: not trained in this run but loaded from {} (sha256 {}), LoRA adapters and a score head over the base LM that `s2rm judge` trained on the judge split{}, which the proxy RMs never see (data/judges/README.md: the command that retrains it). Its held-out pair accuracy is in the reward-model table; weigh win rates by it. The paper used a strong LLM judge; none is available offline.",
            spec.judge.adapter,
            spec.judge.adapter_sha256,
            if spec.data.judge_extra.is_empty() { String::new() } else { format!(" plus {}", spec.data.judge_extra.join(", ")) }
        );
    }
    notes
}

