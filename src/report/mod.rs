//! Results-directory report: derived tables, figures and `REPORT.md`.
//!
//! [`render`] is a pure function of the files in a results directory. It reads the pipeline's
//! outputs (`generations.csv`, `ppo_log.csv`, `rm_eval.csv`, `train_log.csv`,
//! `refusal_sanity.csv`, `run_info.json`) and (re)writes
//!
//! - `metrics.csv`: per (seed, policy, prompt set) refusal rate, mean length, truncation rate
//!   (responses that hit the length limit), mean judge score, ROUGE-L F1 and length ratio against
//!   the reference (cells where every response has one) and prompt count, plus the union set `all`
//!   of the in-distribution sets (not `ood_*`) and `pooled` rows (mean over seeds);
//! - `win_rates.csv`: judge win rates for (ppo_seq2seq, ppo_scalar), (ppo_seq2seq, sft),
//!   (ppo_scalar, sft) per seed and pooled, raw and length-controlled, with 95%
//!   percentile-bootstrap intervals over prompts;
//! - `figures/<name>.{png,svg}` for every name in `figures::FIGURES`;
//! - `REPORT.md`: claim-vs-measurement verdicts and all tables.
//!
//! [`write_paper`] (`s2rm paper`) reads every results directory and writes `results/PAPER.md`: the
//! paper's claims next to our numbers, from the same tables.
//!
//! The CSVs and `REPORT.md` are byte-identical for identical inputs: rows are sorted by explicit
//! keys, floats use fixed decimals and the bootstrap RNG is seeded from `run_info.json`.

mod charts;
pub(crate) mod figures;
pub mod gates;
mod inputs;
mod logs;
mod markdown;
mod paper;
mod rouge;
mod samples;
mod stats;
mod tables;
mod verdicts;
mod wins;
mod worlds;

pub use paper::write_paper;

/// A results directory's competence gates: those `run_info.json` holds, or for a real-data run
/// without them, the ones its `rm_eval.csv` gives ([`gates::real_data`]).
pub fn gates_of(dir: &Path, info: &serde_json::Value) -> Result<Vec<gates::Gate>> {
    let stored: Vec<gates::Gate> = match info.get("gates") {
        Some(v) => serde_json::from_value(v.clone()).with_context(|| format!("{}: field gates", dir.join(inputs::RUN_INFO).display()))?,
        None => Vec::new(),
    };
    let judge = info.get("judge").and_then(|j| j.as_str()).unwrap_or("");
    inputs::stored_or_derived(stored, judge, || Ok(inputs::real_data_gates(&inputs::load_rm_eval(dir)?)))
}

use anyhow::{Context, Result};
use std::path::Path;

use crate::util::write_atomic;

/// Regenerate `metrics.csv`, `win_rates.csv`, `figures/*` and `REPORT.md` in `dir` from its inputs.
pub fn render(dir: &Path) -> Result<()> {
    let inp = inputs::Inputs::load(dir)?;
    let (info, gens) = (&inp.info, &inp.generations);
    let metrics = tables::compute_metrics(gens)?;
    let wins = wins::compute_win_rates(gens, info.n_bootstrap, info.bootstrap_seed);
    let refusal = wins::compute_refusal_diffs(gens, info.n_bootstrap, info.bootstrap_seed);
    let rm = logs::rm_summaries(&inp.rm_eval);
    let groups = tables::groups_of(gens);

    write_csv(&dir.join("metrics.csv"), &tables::METRICS_HEADER, &tables::metrics_records(&metrics))?;
    write_csv(&dir.join("win_rates.csv"), &wins::WIN_HEADER, &wins::win_records(&wins))?;

    figures::save(dir, "win_rates", &charts::win_rate_chart(&wins, &groups))?;
    figures::save(dir, "refusal_rates", &charts::refusal_chart(&metrics, &groups, gens))?;
    figures::save(dir, "length_hist", &charts::length_hist(gens))?;
    figures::save(dir, "length_over_ppo", &charts::length_over_ppo(&inp.ppo, gens))?;
    figures::save(dir, "win_vs_length_ratio", &charts::win_vs_length_ratio(gens, &groups))?;
    figures::save(dir, "ppo_curves", &charts::ppo_panels(&inp.ppo))?;
    figures::save(dir, "rm_accuracy", &charts::rm_accuracy_chart(&rm, &groups))?;
    figures::save(dir, "train_loss", &charts::train_panels(&inp.train))?;
    if !inp.rm_curve.is_empty() {
        figures::save(dir, "rm_curve", &charts::rm_curve_panels(&inp.rm_curve))?;
    }

    let md = markdown::render_markdown(&verdicts::ReportData {
        info,
        groups: &groups,
        metrics: &metrics,
        wins: &wins,
        refusal: &refusal,
        rm: &rm,
        ppo: &logs::ppo_finals(&inp.ppo),
        train: &logs::train_finals(&inp.train),
        sanity: &inp.refusal_sanity,
        generations: gens,
        rm_curve: !inp.rm_curve.is_empty(),
    });
    write_atomic(&dir.join("REPORT.md"), md.as_bytes())
}

fn write_csv(path: &Path, header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    w.write_record(header)?;
    for r in rows {
        w.write_record(r)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("csv buffer: {e}"))?;
    write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::figures::FIGURES;
    use super::*;
    use std::fmt::Write as _;

    /// What [`write_fixture_with`] writes.
    pub(in crate::report) struct Fixture<'a> {
        pub experiment: &'a str,
        /// Swap the judge scores of the two PPO policies (ppo_scalar then wins).
        pub swap: bool,
        /// Add the `reference` columns, with a reference on every in-distribution prompt.
        pub reference: bool,
        /// Add 6 `ood_alpaca` prompts (ids 18..24, no reference).
        pub ood: bool,
    }

    /// A small but complete results directory: 2 seeds, 3 policies, 12 benign + 6 harmful prompts.
    /// Judge scores make ppo_seq2seq clearly better than ppo_scalar; `swap` flips that.
    fn write_fixture(dir: &Path, swap: bool) {
        let f = Fixture { experiment: "demo", swap, reference: false, ood: false };
        write_fixture_with(dir, &f);
    }

    pub(in crate::report) fn write_fixture_with(dir: &Path, f: &Fixture) {
        let (exp, swap) = (f.experiment, f.swap);
        let mut g =
            String::from("experiment,size,seed,policy,prompt_set,prompt_id,prompt,response,length_tokens,truncated,refused,judge_score");
        g.push_str(if f.reference { ",reference,reference_length_tokens\n" } else { "\n" });
        let n_prompts = if f.ood { 24 } else { 18 };
        for seed in [0, 1] {
            for pid in 0..n_prompts {
                let set = match pid {
                    0..12 => "benign",
                    12..18 => "harmful",
                    _ => "ood_alpaca",
                };
                for policy in ["sft", "ppo_scalar", "ppo_seq2seq"] {
                    // deterministic pseudo-variation
                    let h = (pid * 7 + seed * 3 + policy.len() as i64) % 5;
                    let (mut s, refused, len) = match policy {
                        "sft" => (0.0 + 0.1 * h as f64, pid % 4 == 0, 20 + h * 3),
                        "ppo_scalar" => (-0.5 + 0.1 * h as f64, set == "benign" && pid % 2 == 0 || set == "harmful", 8 + h),
                        _ => (1.0 + 0.1 * h as f64, set == "harmful", 25 + h * 4),
                    };
                    if swap && policy != "sft" {
                        s = if policy == "ppo_scalar" { 1.0 + 0.1 * h as f64 } else { -0.5 + 0.1 * h as f64 };
                    }
                    let _ = write!(
                        g,
                        "{exp},tiny,{seed},{policy},{set},{pid},\"prompt {pid}, with comma\",\"line one\nline two\",{len},{},{},{s:.4}",
                        (len > 30) as u8,
                        refused as u8
                    );
                    match (f.reference, set) {
                        (false, _) => g.push('\n'),
                        (true, "ood_alpaca") => g.push_str(",,\n"),
                        (true, _) => {
                            let _ = writeln!(g, ",\"line one, the reference {pid}\",{}", 10 + pid % 4);
                        }
                    }
                }
            }
        }
        std::fs::write(dir.join("generations.csv"), g).unwrap();

        let mut p = String::from(
            "experiment,size,seed,rm,step,rm_reward,kl,response_length,refusal_rate,entropy,policy_loss,value_loss,clip_frac,truncated_rate\n",
        );
        for seed in [0, 1] {
            for rm in ["scalar", "seq2seq"] {
                for step in 0..10 {
                    let t = step as f64 + seed as f64 * 0.3;
                    let _ = writeln!(
                        p,
                        "{exp},tiny,{seed},{rm},{step},{:.3},{:.3},{:.1},{:.3},{:.3},{:.3},{:.3},0.1,0.0",
                        t * 0.1,
                        t * 0.02,
                        if rm == "scalar" { 30.0 - t } else { 30.0 + t * 0.5 },
                        if rm == "scalar" { 0.2 + t * 0.05 } else { 0.2 },
                        2.0 - t * 0.05,
                        -0.01 * t,
                        1.0 / (1.0 + t)
                    );
                }
            }
        }
        std::fs::write(dir.join("ppo_log.csv"), p).unwrap();

        let mut r = String::from("experiment,size,seed,model,metric,value,n\n");
        for seed in [0, 1] {
            for (model, acc) in [("scalar_rm", 0.7), ("seq2seq_rm", 0.75), ("judge", 0.9)] {
                let _ = writeln!(r, "{exp},tiny,{seed},{model},pair_accuracy,{},200", acc + 0.01 * seed as f64);
                let _ = writeln!(r, "{exp},tiny,{seed},{model},length_score_corr,0.{}5,200", 1 + seed);
            }
            let _ = writeln!(r, "{exp},tiny,{seed},seq2seq_rm,copy_rate,0.3,200");
        }
        std::fs::write(dir.join("rm_eval.csv"), r).unwrap();

        let mut t = String::from("experiment,size,seed,stage,step,loss\n");
        for seed in [0, 1] {
            for stage in ["pretrain", "sft", "scalar_rm", "seq2seq_rm", "judge"] {
                for step in 0..5 {
                    let _ = writeln!(t, "{exp},tiny,{seed},{stage},{step},{:.4}", 3.0 / (1.0 + step as f64 + seed as f64));
                }
            }
        }
        std::fs::write(dir.join("train_log.csv"), t).unwrap();

        std::fs::write(
            dir.join("refusal_sanity.csv"),
            "source,response_kind,n,refusal_rate\nsafety,rejected,100,0.4\nsafety,chosen,100,0.05\nhelpful,chosen,80,0.0\n",
        )
        .unwrap();

        std::fs::write(
            dir.join("run_info.json"),
            r#"{"experiment":"demo","title":"Demo: seq2seq RM vs scalar RM","claim":"The seq2seq-RM policy beats the scalar-RM policy (76.9% average win rate) and refuses benign prompts less.",
               "profile":"test","device":"cpu","seeds":[0,1],"n_bootstrap":200,"bootstrap_seed":17,
               "stage_seconds":{"sft":1.5,"pretrain":2.0},"total_seconds":3.5,"param_counts":{"policy":123456},
               "notes":["synthetic fixture"],"spec_file":"specs/demo.toml","extra_field":{"ignored":true}}"#
                .replace("\"demo\"", &format!("\"{exp}\"")),
        )
        .unwrap();
    }

    const OUTPUTS: [&str; 3] = ["metrics.csv", "win_rates.csv", "REPORT.md"];

    fn read_outputs(dir: &Path) -> Vec<Vec<u8>> {
        OUTPUTS.iter().map(|f| std::fs::read(dir.join(f)).unwrap()).collect()
    }

    /// The Claim-vs-measurement row of the headline win rate.
    fn headline_row(md: &str) -> &str {
        md.lines().find(|l| l.starts_with("| Win rate of `ppo_seq2seq` vs `ppo_scalar`, all prompts")).expect("headline row")
    }

    #[test]
    fn end_to_end_render_is_complete_and_deterministic() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write_fixture(dir, false);
        render(dir).unwrap();
        let first = read_outputs(dir);
        for (name, _) in FIGURES {
            for ext in ["png", "svg"] {
                let p = dir.join("figures").join(format!("{name}.{ext}"));
                let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                assert!(len > 1000, "{} missing or tiny ({len} bytes)", p.display());
            }
        }
        // no scratch files left behind
        let stray: Vec<_> = std::fs::read_dir(dir.join("figures"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.') || n.ends_with(".tmp"))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");

        let metrics = String::from_utf8(first[0].clone()).unwrap();
        let wins = String::from_utf8(first[1].clone()).unwrap();
        assert_eq!(metrics.lines().next().unwrap(), "experiment,size,seed,policy,prompt_set,metric,value");
        assert_eq!(
            wins.lines().next().unwrap(),
            "experiment,size,seed,policy_a,policy_b,prompt_set,n_prompts,win_rate,ci_low,ci_high,lc_win_rate,lc_ci_low,lc_ci_high"
        );
        // 3 policies x 3 sets (benign, harmful, all) x 3 seed keys x 5 metrics
        assert_eq!(metrics.lines().count(), 1 + 135);
        // 3 pairs x 3 sets x 3 seed keys
        assert_eq!(wins.lines().count(), 1 + 27);
        assert!(
            wins.contains("demo,tiny,pooled,ppo_seq2seq,ppo_scalar,all,18,1.000000,1.000000,1.000000,1.000000,1.000000,1.000000\n"),
            "{wins}"
        );

        // second render over the same inputs: byte-identical derived files
        render(dir).unwrap();
        assert_eq!(first, read_outputs(dir), "render is not deterministic");

        let md = String::from_utf8(first[2].clone()).unwrap();
        assert!(headline_row(&md).contains("**reproduced**"), "{}", headline_row(&md));
        assert!(md.contains("76.9%"));
        // benign refusal: scalar refuses half the benign prompts, seq2seq none
        let refusal_row = md.lines().find(|l| l.starts_with("| Benign refusal rate")).unwrap();
        assert!(refusal_row.contains("0.500 − 0.000") && refusal_row.contains("**reproduced**"), "{refusal_row}");
        for section in ["## Claim vs measurement", "## Win rates", "## Reward models", "## Run facts", "## Notes"] {
            assert!(md.contains(section), "missing {section}");
        }
        assert!(md.contains("![win_rates](figures/win_rates.png)"));
        assert!(md.contains("s2rm report <dir>"));
        assert!(md.contains("123,456"));

        // swap the judge scores of the two PPO policies: the headline flips
        write_fixture(dir, true);
        render(dir).unwrap();
        let md = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
        assert!(headline_row(&md).contains("**not reproduced**"), "{}", headline_row(&md));
    }

    #[test]
    fn missing_input_is_named() {
        for missing in ["generations.csv", "ppo_log.csv", "rm_eval.csv", "train_log.csv", "refusal_sanity.csv", "run_info.json"] {
            let tmp = tempfile::tempdir().unwrap();
            write_fixture(tmp.path(), false);
            std::fs::remove_file(tmp.path().join(missing)).unwrap();
            let err = render(tmp.path()).unwrap_err();
            assert!(format!("{err:#}").contains(missing), "{missing}: {err:#}");
            assert!(!tmp.path().join("REPORT.md").exists());
        }
    }

    #[test]
    fn header_only_inputs_still_render() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write_fixture(dir, false);
        for f in ["generations.csv", "ppo_log.csv", "rm_eval.csv", "train_log.csv", "refusal_sanity.csv"] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            std::fs::write(dir.join(f), format!("{}\n", text.lines().next().unwrap())).unwrap();
        }
        std::fs::write(dir.join("run_info.json"), "{}").unwrap();
        render(dir).unwrap();
        let md = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
        assert!(md.contains("## Claim vs measurement"));
        assert_eq!(std::fs::read_to_string(dir.join("win_rates.csv")).unwrap().lines().count(), 1);
        assert!(dir.join("figures/ppo_curves.svg").exists());
    }

    #[test]
    fn bad_csv_content_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        write_fixture(tmp.path(), false);
        let path = tmp.path().join("generations.csv");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("demo,tiny,0,sft,benign,99,p,r,12,0,maybe,0.5\n");
        std::fs::write(&path, &text).unwrap();
        let err = format!("{:#}", render(tmp.path()).unwrap_err());
        // each earlier record spans two physical lines (the response has a newline)
        assert!(err.contains("generations.csv line 218"), "{err}");
        assert!(err.contains("expected 0 or 1"), "{err}");
    }
    /// The (set, win rate, LC win rate, n) of the pooled rows of one prompt set.
    fn pooled_wins(dir: &Path, set: &str) -> Vec<String> {
        std::fs::read_to_string(dir.join("win_rates.csv"))
            .unwrap()
            .lines()
            .filter(|l| l.contains(",pooled,") && l.split(',').nth(5) == Some(set))
            .map(|l| l.split(',').skip(3).take(5).chain(l.split(',').nth(10)).collect::<Vec<_>>().join(","))
            .collect()
    }

    #[test]
    fn ood_sets_stay_out_of_all_and_references_add_metrics() {
        let base = tempfile::tempdir().unwrap();
        write_fixture(base.path(), false);
        render(base.path()).unwrap();

        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let f = Fixture { experiment: "demo", swap: false, reference: true, ood: true };
        write_fixture_with(dir, &f);
        render(dir).unwrap();
        // `all` is the in-distribution union: the same prompts and win rates as without OOD rows
        assert_eq!(pooled_wins(dir, "all"), pooled_wins(base.path(), "all"));
        assert_eq!(pooled_wins(dir, "ood_alpaca").len(), 3, "one pooled row per pair");
        let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        for set in ["benign", "harmful", "all"] {
            assert!(metrics.contains(&format!(",pooled,ppo_scalar,{set},rouge_l_f1,")), "{set}");
            assert!(metrics.contains(&format!(",pooled,ppo_scalar,{set},length_ratio,")), "{set}");
        }
        // the fixture's response "line one line two" vs "line one the reference N":
        // LCS 2 of 4 and 5 tokens -> F1 = 2·(1/2)(2/5)/(9/10) = 4/9
        assert!(metrics.contains("demo,tiny,0,sft,benign,rouge_l_f1,0.444444\n"), "{metrics}");
        assert!(!metrics.contains("ood_alpaca,rouge_l_f1") && !metrics.contains("ood_alpaca,length_ratio"));
        assert!(!metrics.to_lowercase().contains("nan"));
        let md = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
        assert!(md.contains("ROUGE-L F1 vs reference") && md.contains("| ood_alpaca |"));
        assert!(md.contains("LC win rate of A"));
        assert!(md.contains("| Length-controlled win rate of `ppo_seq2seq` vs `ppo_scalar`, all prompts |"));
        for name in ["length_hist", "length_over_ppo", "win_vs_length_ratio"] {
            let svg = std::fs::read_to_string(dir.join(format!("figures/{name}.svg"))).unwrap();
            assert!(!svg.contains("no data"), "{name}");
        }
        let hist = std::fs::read_to_string(dir.join("figures/length_hist.svg")).unwrap();
        assert!(hist.contains("\nreference\n"), "the reference series is in the legend");
        let hist_base = std::fs::read_to_string(base.path().join("figures/length_hist.svg")).unwrap();
        assert!(!hist_base.contains("\nreference\n"));
    }
}
