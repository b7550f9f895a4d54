//! End to end: the `smoke` profile of every experiment spec on the CPU, on the real data. Checks
//! every output file and column, that the same spec + seed + device gives byte-identical CSVs, the
//! summarization references and the out-of-distribution prompt sets.

mod common;

use common::data_dir;
use s2rm::runner::{RunOptions, run};
use s2rm::spec;
use std::path::Path;

fn smoke(out: &Path, data: &Path, sets: &[&str]) {
    smoke_of("safety", out, data, sets)
}

fn smoke_of(experiment: &str, out: &Path, data: &Path, sets: &[&str]) {
    smoke_with(experiment, out, data, sets, false)
}

fn smoke_with(experiment: &str, out: &Path, data: &Path, sets: &[&str], sequential: bool) {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let file = format!("experiments/{experiment}.toml");
    let resolved = spec::load(Path::new(&file), "smoke", &sets).expect("spec loads");
    let opts = RunOptions { output: Some(out.to_path_buf()), data_dir: Some(data.to_path_buf()), device: Some("cpu".into()), sequential, ..Default::default() };
    run(&resolved, &opts).expect("smoke run succeeds");
}

fn header(path: &Path) -> Vec<String> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.headers().unwrap().iter().map(str::to_string).collect()
}

fn rows(path: &Path) -> Vec<csv::StringRecord> {
    csv::Reader::from_path(path).unwrap().records().map(Result::unwrap).collect()
}

#[test]
fn smoke_profile_writes_every_output() {
    let Some(data) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("safety");
    smoke(&out, &data, &[]);

    let expect: &[(&str, &[&str])] = &[
        ("generations.csv", &["experiment", "size", "seed", "policy", "prompt_set", "prompt_id", "response", "length_tokens", "truncated", "refused", "judge_score", "reference", "reference_length_tokens"]),
        ("ppo_log.csv", &["experiment", "size", "seed", "rm", "step", "rm_reward", "kl", "response_length", "refusal_rate", "entropy", "policy_loss", "value_loss", "clip_frac", "truncated_rate"]),
        ("prompts.csv", &["experiment", "prompt_set", "prompt_id", "prompt"]),
        ("rm_eval.csv", &["experiment", "size", "seed", "model", "metric", "value", "n"]),
        ("train_log.csv", &["experiment", "size", "seed", "stage", "step", "loss"]),
        ("refusal_sanity.csv", &["source", "response_kind", "n", "refusal_rate"]),
        ("metrics.csv", &["experiment", "size", "seed", "policy", "prompt_set", "metric", "value"]),
        ("win_rates.csv", &["experiment", "size", "seed", "policy_a", "policy_b", "prompt_set", "n_prompts", "win_rate", "ci_low", "ci_high", "lc_win_rate", "lc_ci_low", "lc_ci_high"]),
    ];
    for (file, cols) in expect {
        let path = out.join(file);
        assert_eq!(header(&path), cols.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{file} columns");
        assert!(!rows(&path).is_empty(), "{file} has no rows");
    }
    for f in ["REPORT.md", "run_info.json", "resolved_spec.toml"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    for fig in ["win_rates", "refusal_rates", "length_hist", "length_over_ppo", "win_vs_length_ratio", "ppo_curves", "rm_accuracy"] {
        for ext in ["png", "svg"] {
            let p = out.join("figures").join(format!("{fig}.{ext}"));
            assert!(p.metadata().map(|m| m.len() > 1000).unwrap_or(false), "{} missing or empty", p.display());
        }
    }

    // Content: 2 seeds × 3 policies × every eval prompt, both prompt sets present.
    let g = rows(&out.join("generations.csv"));
    let policies: std::collections::BTreeSet<_> = g.iter().map(|r| r[3].to_string()).collect();
    assert_eq!(policies.into_iter().collect::<Vec<_>>(), ["ppo_scalar", "ppo_seq2seq", "sft"]);
    let sets: std::collections::BTreeSet<_> = g.iter().map(|r| r[4].to_string()).collect();
    assert!(sets.contains("benign") && sets.contains("harmful"), "prompt sets: {sets:?}");
    assert_eq!(g.len() % 6, 0, "each prompt answered by 3 policies × 2 seeds");
    for r in &g {
        assert!(r[10].parse::<f64>().unwrap().is_finite());
    }
    // PPO log: steps × 2 RMs × 2 seeds; every number finite.
    let p = rows(&out.join("ppo_log.csv"));
    assert_eq!(p.len(), 2 * 2 * 2);
    for r in &p {
        for v in r.iter().skip(5) {
            assert!(v.parse::<f64>().unwrap().is_finite(), "non-finite ppo_log value {v}");
        }
    }
    // RM metrics exist for all three models.
    let m = rows(&out.join("rm_eval.csv"));
    for model in ["scalar_rm", "seq2seq_rm", "judge"] {
        assert!(m.iter().any(|r| &r[3] == model && &r[4] == "pair_accuracy"), "{model} pair_accuracy");
    }
    assert!(m.iter().any(|r| &r[3] == "seq2seq_rm" && &r[4] == "copy_rate"));
    assert!(m.iter().any(|r| &r[3] == "scalar_rm" && &r[4] == "length_score_corr"));
    let report = std::fs::read_to_string(out.join("REPORT.md")).unwrap();
    assert!(report.contains("reproduced") || report.contains("inconclusive"), "REPORT.md has no verdict");
}

/// Also: running the stage graph on two workers (the default; stages of two seeds overlap) gives
/// the same bytes as one after the other (`--sequential`).
#[test]
fn same_spec_seed_and_device_give_identical_csvs() {
    let Some(data) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    smoke(&a, &data, &["experiment.seeds=[3, 4]"]);
    smoke_with("safety", &b, &data, &["experiment.seeds=[3, 4]"], true);
    for f in ["generations.csv", "prompts.csv", "ppo_log.csv", "rm_eval.csv", "train_log.csv", "metrics.csv", "win_rates.csv", "refusal_sanity.csv"] {
        let (x, y) = (std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap());
        assert!(x == y, "{f} differs between two identical runs");
    }
}

/// An ablation rerun in the same output folder: changing a seq2seq-RM training field reuses the
/// cached base LM, SFT, judge, scalar RMs and scalar-RM PPO runs, and retrains the seq2seq RMs and
/// their PPO runs (the per-stage cache key).
#[test]
fn a_seq2seq_rm_change_retrains_only_the_seq2seq_arm() {
    let Some(data) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("safety");
    let loaded = |out: &Path| -> Vec<String> {
        let info: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("run_info.json")).unwrap()).unwrap();
        info["stages_loaded_from_cache"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    smoke(&out, &data, &[]);
    assert!(loaded(&out).is_empty(), "a first run loads nothing");
    smoke(&out, &data, &["seq2seq_rm.steps=5"]);
    assert_eq!(loaded(&out), ["judge/0", "ppo_scalar/1", "ppo_scalar/2", "pretrain/0", "scalar_rm/1", "scalar_rm/2", "sft/0"]);
    // The reused stages give what a fresh run of the ablation computes.
    let fresh = tmp.path().join("fresh");
    smoke(&fresh, &data, &["seq2seq_rm.steps=5"]);
    for f in ["generations.csv", "ppo_log.csv", "rm_eval.csv", "train_log.csv", "win_rates.csv"] {
        assert!(std::fs::read(out.join(f)).unwrap() == std::fs::read(fresh.join(f)).unwrap(), "{f}: the ablation rerun differs from a fresh run");
    }
}

/// Column index of `name` in a CSV file's header.
fn col(path: &Path, name: &str) -> usize {
    header(path).iter().position(|h| h == name).unwrap_or_else(|| panic!("{}: no column {name}", path.display()))
}

#[test]
fn summarization_smoke_scores_against_the_human_references() {
    let Some(data) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("summarization");
    smoke_of("summarization", &out, &data, &["experiment.seeds=[1]"]);
    let path = out.join("generations.csv");
    let (reference, ref_len) = (col(&path, "reference"), col(&path, "reference_length_tokens"));
    let g = rows(&path);
    assert!(!g.is_empty());
    // The eval prompts are TL;DR posts (they end with "TL;DR:"), each listed once.
    let posts = rows(&out.join("prompts.csv"));
    assert_eq!(posts.len(), g.len() / 3, "one row per post; 3 policies answer each");
    for r in &posts {
        assert!(r[3].trim_end().ends_with("TL;DR:"), "not a TL;DR post: {}", &r[3]);
    }
    // Every eval post has its human reference.
    for r in &g {
        assert!(!r[reference].is_empty(), "eval post without reference");
        assert!(r[ref_len].parse::<usize>().unwrap() > 0);
    }
    // SFT imitates references only: the chosen side of the judged pairs is not added.
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("run_info.json")).unwrap()).unwrap();
    let counts = &info["data_counts"];
    assert_eq!(counts["sft_rows"], counts["sft_rows_tldr_references"], "SFT rows other than references: {counts}");
}

#[test]
fn helpfulness_smoke_answers_out_of_distribution_sets_no_stage_trained_on() {
    let Some(data) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("helpfulness");
    smoke_of("helpfulness", &out, &data, &["experiment.seeds=[1]"]);
    let g = rows(&out.join("generations.csv"));
    let sets: std::collections::BTreeSet<_> = g.iter().map(|r| r[4].to_string()).collect();
    assert_eq!(sets.into_iter().collect::<Vec<_>>(), ["benign", "ood_alpaca", "ood_harmful"]);

    // The OOD prompts are disjoint from every prompt a stage trains or is evaluated on.
    let resolved = spec::load(Path::new("experiments/helpfulness.toml"), "smoke", &[]).unwrap();
    let s = &resolved.spec;
    let manifest = s2rm::data::Manifest::load(Path::new(&s.data.manifest)).unwrap();
    let refusal = s2rm::data::RefusalDetector::load(Path::new(&s.data.refusal_patterns)).unwrap();
    let c = s2rm::stages::build_corpus(s, &manifest, &data, &refusal).unwrap();
    let mut trained: std::collections::BTreeSet<&str> = c.sft_rows.iter().map(|(p, _)| p.as_str()).collect();
    trained.extend(c.judge_pairs.iter().map(|p| p.prompt.as_str()));
    trained.extend(c.splits.values().flatten().map(|p| p.prompt.as_str()));
    let mut n_ood = 0;
    for (set, prompts) in &c.eval_prompts {
        if set.starts_with("ood_") {
            n_ood += prompts.len();
            assert!(prompts.iter().all(|p| !trained.contains(p.as_str())), "{set} holds a trained-on prompt");
        }
    }
    assert_eq!(n_ood, 2 * s.eval.max_prompts_per_set, "both OOD sets capped at max_prompts_per_set");
}

/// Every controlled-world spec end to end: no judge stage is trained, every answer's judge score is
/// the world's gold (recomputed here from a freshly generated world), the world's OOD sets are
/// answered, and the competence gates are measured and written.
#[test]
fn world_smoke_runs_are_judged_by_the_gold_and_gated() {
    let data = data_dir().unwrap_or_else(|| std::env::temp_dir());
    let tmp = tempfile::tempdir().unwrap();
    for (experiment, sets) in [("world_safety", ["benign", "harmful", "ood_tasks", "ood_templates"]), ("world_summarization", ["ood_templates", "ood_topics", "summary", ""])] {
        let out = tmp.path().join(experiment);
        smoke_of(experiment, &out, &data, &["experiment.seeds=[1]"]);
        let info: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("run_info.json")).unwrap()).unwrap();
        assert_eq!(info["judge"], "gold", "{experiment}");
        assert!(!info["stage_seconds"].as_object().unwrap().contains_key("judge"), "{experiment}: a world trains no judge");
        let gates: Vec<String> = rows(&out.join("gates.csv")).iter().map(|r| r[3].to_string()).collect();
        for g in ["sft_parse_rate", "scalar_rm_accuracy", "seq2seq_rm_accuracy", "seq2seq_copy_chosen", "seq2seq_diverges_on_rejected"] {
            assert!(gates.iter().any(|x| x == g), "{experiment}: gate {g} missing from {gates:?}");
        }
        let spec = spec::load(Path::new(&format!("experiments/{experiment}.toml")), "smoke", &[]).unwrap().spec;
        let world = s2rm::world::World::generate(spec.data.world.as_ref().unwrap()).unwrap();
        let prompts: std::collections::BTreeMap<(String, String), String> =
            rows(&out.join("prompts.csv")).iter().map(|r| ((r[1].to_string(), r[2].to_string()), r[3].to_string())).collect();
        let gens = out.join("generations.csv");
        let (set, id, resp, score) = (col(&gens, "prompt_set"), col(&gens, "prompt_id"), col(&gens, "response"), col(&gens, "judge_score"));
        let g = rows(&gens);
        let seen: std::collections::BTreeSet<String> = g.iter().map(|r| r[set].to_string()).collect();
        let want: std::collections::BTreeSet<String> = sets.iter().filter(|s| !s.is_empty()).map(|s| s.to_string()).collect();
        assert_eq!(seen, want, "{experiment}: prompt sets");
        for r in &g {
            let prompt = &prompts[&(r[set].to_string(), r[id].to_string())];
            let gold = world.gold(prompt, &r[resp]).score;
            assert_eq!(r[score].parse::<f64>().unwrap(), gold, "{experiment}: judge score of {:?} is not its gold", &r[resp]);
        }
        // Deterministic, on one worker as on two.
        let again = tmp.path().join(format!("{experiment}_again"));
        smoke_with(experiment, &again, &data, &["experiment.seeds=[1]"], true);
        for f in ["generations.csv", "ppo_log.csv", "rm_eval.csv", "train_log.csv", "gates.csv", "win_rates.csv"] {
            assert!(std::fs::read(out.join(f)).unwrap() == std::fs::read(again.join(f)).unwrap(), "{experiment}: {f} differs between two runs");
        }
    }
}
