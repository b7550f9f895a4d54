//! `results/PAPER.md`: each claim of the paper next to our number, its 95% interval, the number of
//! seeds and a verdict, over every results directory. Written by `s2rm paper`; like `REPORT.md` it
//! is a pure, byte-deterministic function of the directories' input CSVs, and it reuses the
//! per-directory tables (`tables.rs`, `wins.rs`) and verdict texts (`verdicts.rs`) rather than
//! recomputing.

use super::gates::{failed, gated, gated_if};
use super::inputs::{Generation, Inputs, RunInfo};
use super::logs::{RmSummary, rm_summaries};
use super::stats::{Verdict, mean, stratified_mean_ci, verdict};
use super::tables::{self, ALL_SETS, Group, MetricRow, OOD_PREFIX, pooled_metric};
use super::verdicts::{
    PAPER_WIN_RATE, ReportData, bold, cell, degenerate_policies, f3, headline, lc_headline, pct, policy_caveats,
    refusal_headline, table, void_if_collapsed,
};
use super::wins::{self, RefusalDiff, WinRow, pooled_per_prompt, pooled_win};
use crate::util::{SplitMix64, write_atomic};
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

/// The paper's three tasks, by our experiment names, in table order.
pub const EXPERIMENTS: [(&str, &str); 3] = [
    ("safety", "single-turn safety dialogue"),
    ("summarization", "text summarization (TL;DR)"),
    ("helpfulness", "third NLP task (stand-in: HH-RLHF helpfulness)"),
];
/// Bootstrap of the average win rate over (experiment, size) cells: resamples and RNG seed.
const AVERAGE_N_BOOT: usize = 2000;
const AVERAGE_BOOT_SEED: u64 = 769;
/// Streams of the summarization length differences: past the refusal streams of `wins.rs`.
const LENGTH_STREAM_BASE: u64 = 2 << 32;
/// Columns of the claim tables (i) and (ii); (iii) and (iv) add the length-controlled win rate.
const CLAIM_HEADER: [&str; 5] = ["Claim", "Where", "Ours (pooled, 95% CI)", "Seeds", "Verdict"];
const WIN_CLAIM_HEADER: [&str; 6] = ["Claim", "Where", "Ours (pooled, 95% CI)", "Length-controlled (95% CI)", "Seeds", "Verdict"];

/// One results directory with the tables `render` derives from it.
pub(super) struct Run {
    pub(super) name: String,
    pub(super) info: RunInfo,
    pub(super) gens: Vec<Generation>,
    pub(super) groups: Vec<Group>,
    pub(super) metrics: Vec<MetricRow>,
    pub(super) wins: Vec<WinRow>,
    pub(super) refusal: Vec<RefusalDiff>,
    pub(super) rm: Vec<RmSummary>,
}

impl Run {
    fn load(dir: &Path, name: String) -> Result<Self> {
        let inp = Inputs::load(dir).with_context(|| format!("results directory {name}"))?;
        let (gens, n_boot, seed) = (&inp.generations, inp.info.n_bootstrap, inp.info.bootstrap_seed);
        Ok(Self {
            groups: tables::groups_of(gens),
            metrics: tables::compute_metrics(gens)?,
            wins: wins::compute_win_rates(gens, n_boot, seed),
            refusal: wins::compute_refusal_diffs(gens, n_boot, seed),
            rm: rm_summaries(&inp.rm_eval),
            gens: inp.generations,
            info: inp.info,
            name,
        })
    }

    fn seeds(&self, g: &Group) -> String {
        tables::in_group(&self.gens, g).map(|r| r.seed).collect::<BTreeSet<_>>().len().to_string()
    }

    /// The report data of this run, for the per-group caveats of `verdicts.rs`.
    fn report_data(&self) -> ReportData<'_> {
        let (info, groups, metrics, wins, refusal, rm) = (&self.info, &self.groups, &self.metrics, &self.wins, &self.refusal, &self.rm);
        ReportData { info, groups, metrics, wins, refusal, rm, ppo: &[], train: &[], sanity: &[], generations: &[], rm_curve: false }
    }
}

/// Read every `results/*/` directory holding a `generations.csv` (sorted by name) and write the
/// claim table to `output`.
pub fn write_paper(results: &Path, output: &Path) -> Result<()> {
    if !results.is_dir() {
        bail!("results directory {} does not exist or is not a directory", results.display());
    }
    let mut names: Vec<String> = std::fs::read_dir(results)
        .with_context(|| format!("cannot list {}", results.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(super::inputs::GENERATIONS).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let runs = names.into_iter().map(|n| Run::load(&results.join(&n), n)).collect::<Result<Vec<_>>>()?;
    // A controlled world is judged by its gold and gated: it has its own section, and its cells
    // must not enter the paper's tables or their average as if they were paper tasks.
    let (worlds, real): (Vec<Run>, Vec<Run>) = runs.into_iter().partition(|r| r.info.judge == "gold");
    write_atomic(output, render_paper(&real, &worlds).as_bytes())
}

/// The (run, group) cells that stand for their (experiment, size) in the average: the directory
/// named after the experiment if it has that group, else the first directory (by name) that has
/// it. Other directories with the same group are variants (ablations), shown but not averaged.
struct Primary(BTreeSet<(usize, Group)>);

impl Primary {
    fn of(runs: &[Run]) -> Self {
        let mut chosen: BTreeMap<Group, usize> = BTreeMap::new();
        for (ri, run) in runs.iter().enumerate() {
            for g in &run.groups {
                if chosen.get(g).is_none_or(|&prev| runs[prev].name != g.experiment && run.name == g.experiment) {
                    chosen.insert(g.clone(), ri);
                }
            }
        }
        Self(chosen.into_iter().map(|(g, ri)| (ri, g)).collect())
    }

    fn has(&self, ri: usize, g: &Group) -> bool {
        self.0.contains(&(ri, g.clone()))
    }

    /// "`dir` / size", marked when the cell is a variant.
    fn place(&self, run: &Run, g: &Group, ri: usize) -> String {
        let variant = if self.has(ri, g) { "" } else { " (variant)" };
        format!("`{}` / {}{variant}", cell(&run.name), cell(&g.size))
    }
}

/// Every (run, group) of one experiment, in directory then size order.
fn cells_of<'a>(runs: &'a [Run], experiment: &'a str) -> impl Iterator<Item = (usize, &'a Run, &'a Group)> {
    runs.iter().enumerate().flat_map(move |(ri, r)| r.groups.iter().filter(move |g| g.experiment == experiment).map(move |g| (ri, r, g)))
}

/// "LC [low, high]" of a win-rate row; flagged when a PPO policy of the cell collapsed (equal
/// length then lies outside the data, so the number is an extrapolation).
fn lc_interval(w: &WinRow, run: &Run, g: &Group) -> String {
    let flag = if degenerate_policies(&run.metrics, g).is_empty() { "" } else { " (extrapolated: a policy collapsed)" };
    format!("{} [{}, {}]{flag}", pct(w.lc_win_rate), pct(w.lc_ci_low), pct(w.lc_ci_high))
}

/// A claim row without a measurement; `lc` adds the length-controlled column.
fn not_run(claim: &str, what: &str, lc: bool) -> Vec<String> {
    let mut r = vec![claim.into(), "—".into(), format!("not run ({what})"), "—".into(), "—".into()];
    if lc {
        r.insert(3, "—".into());
    }
    r
}

fn render_paper(runs: &[Run], worlds: &[Run]) -> String {
    let primary = Primary::of(runs);
    let mut o = String::new();
    o.push_str("# The paper's claims vs this reproduction\n\n");
    header(&mut o, runs, &primary);
    if !worlds.is_empty() {
        let names: Vec<String> = worlds.iter().map(|r| format!("`{}`", cell(&r.name))).collect();
        let _ = writeln!(
            o,
            "Sections (i)–(iv) read the real-data directories above. The controlled worlds ({}) are judged by \
             their gold reward and gated by their models' competence: they have their own section below and \
             are not averaged with the paper's tasks.\n",
            names.join(", ")
        );
    }
    refusal_claim(&mut o, runs, &primary);
    length_claim(&mut o, runs, &primary);
    win_rate_claim(&mut o, runs, &primary);
    ood_claim(&mut o, runs, &primary);
    super::worlds::section(&mut o, worlds);
    caveat_section(&mut o, &runs.iter().chain(worlds).collect::<Vec<_>>());
    o.push_str("## Regenerating\n\n```sh\ns2rm paper --results results --output results/PAPER.md\n# or\nmake figures\n```\n");
    o
}

fn header(o: &mut String, runs: &[Run], primary: &Primary) {
    o.push_str(
        "Zhou, Ji, Dai, Li, Yang, *Sequence to Sequence Reward Modeling: Improving RLHF by Language Feedback*, \
         AAAI 2025. This file is generated by `s2rm paper` from the input CSVs of the results directories \
         (`generations.csv`, `rm_eval.csv`, `run_info.json`, ...); it uses the same tables as each directory's \
         `REPORT.md`. Do not edit it by hand.\n\n",
    );
    if runs.is_empty() {
        o.push_str("No results directory with a `generations.csv` was found: every claim below is **not run**.\n\n");
    } else {
        o.push_str("Directories used (sorted by name):\n\n");
        let or = |v: Vec<String>, sep: &str, none: &str| if v.is_empty() { none.to_string() } else { v.join(sep) };
        for (ri, r) in runs.iter().enumerate() {
            let sizes =
                r.groups.iter().map(|g| format!("`{}` / {}{}", g.experiment, g.size, if primary.has(ri, g) { "" } else { ", variant" }));
            let seeds = r.info.seeds.iter().map(|s| s.to_string()).collect();
            let device = if r.info.device.is_empty() { "unknown".into() } else { cell(&r.info.device) };
            let _ = writeln!(
                o,
                "- `{}`: {}; profile `{}`, seeds {}, device {device}",
                cell(&r.name),
                or(sizes.collect(), "; ", "no rows"),
                cell(&r.info.profile),
                or(seeds, ", ", "n/a"),
            );
        }
        o.push('\n');
        o.push_str(
            "A *variant* is a second directory with the same (experiment, size), e.g. an ablation: it is shown but \
             not averaged; the directory named after the experiment stands for it.\n\n",
        );
    }
    let judges: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            let v: Vec<String> = r.rm.iter().filter(|s| s.model == "judge" && s.metric == "pair_accuracy").map(|s| f3(s.mean)).collect();
            (!v.is_empty()).then(|| format!("{} (`{}`)", v.join(", "), cell(&r.name)))
        })
        .collect();
    let _ = write!(
        o,
        "**The judge.** Win rates are judged by a small scalar reward model with the policies' architecture, \
         trained on preference data the proxy RMs never see — not the strong LLM judge the paper presumably used. \
         Its held-out pair accuracy: {}. Below {} its preferences are weak evidence, and a win rate then measures \
         what this judge prefers rather than what people prefer (see each directory's `REPORT.md`).\n\n",
        if judges.is_empty() { "not measured".to_string() } else { judges.join("; ") },
        f3(super::gates::JUDGE_GOAL)
    );
    o.push_str(
        "**Verdicts.** *reproduced*: the whole 95% interval lies on the paper's side (win rate > 50%, difference \
         > 0); *not reproduced*: it lies entirely on the other side; *inconclusive*: it straddles the threshold \
         (or a policy collapsed, which voids the comparison); *not run*: the experiment has no results directory \
         yet. Intervals: percentile bootstrap over prompts, each prompt's outcome first averaged over seeds. \
         `all` is the union of the in-distribution prompt sets (`ood_*` sets are separate). The paper gives \
         numbers for the win rate only (76.9% average over 3 tasks × {2B, 7B}); our models are far smaller.\n\n",
    );
}

// ---------------------------------------------------------------------------------------------
// (i) refusal-to-response

fn refusal_claim(o: &mut String, runs: &[Run], primary: &Primary) {
    o.push_str("## (i) Refusal-to-response (safety)\n\n");
    o.push_str(
        "> **Paper:** in single-turn safety dialogue, PPO with a scalar RM falls into the refusal-to-response \
         paradigm (it refuses even when it should answer); the seq2seq RM avoids it.\n\n",
    );
    let claim = "Benign refusal rate, `ppo_scalar` − `ppo_seq2seq` > 0";
    let mut rows: Vec<Vec<String>> = cells_of(runs, "safety")
        .map(|(ri, run, g)| {
            let (m, v) = refusal_headline(&run.refusal, g, &run.metrics);
            vec![claim.into(), primary.place(run, g, ri), m, run.seeds(g), bold(gated(v, &run.info.gates))]
        })
        .collect();
    if rows.is_empty() {
        rows.push(not_run(claim, "no `safety` results directory", false));
    }
    table(o, &CLAIM_HEADER, &rows);
}

// ---------------------------------------------------------------------------------------------
// (ii) long-response bias

/// Mean length per policy and the pooled length ratio to the reference, as one phrase.
fn length_facts(run: &Run, g: &Group) -> String {
    let mut parts = Vec::new();
    for p in ["sft", "ppo_scalar", "ppo_seq2seq"] {
        if let Some(len) = pooled_metric(&run.metrics, g, p, ALL_SETS, "mean_length_tokens") {
            let ratio =
                pooled_metric(&run.metrics, g, p, ALL_SETS, "length_ratio").map_or(String::new(), |r| format!(", {} × reference", f3(r)));
            parts.push(format!("`{p}` {} tokens{ratio}", f3(len)));
        }
    }
    parts.join("; ")
}

/// Paired length difference of `a` minus `b` (a policy name, or `reference`) over `all` prompts.
pub(super) fn length_diff(run: &Run, g: &Group, a: &str, b: &str, stream: u64) -> (String, Verdict) {
    let len = |r: &Generation| Some(r.length_tokens);
    let xa = pooled_per_prompt(&run.gens, g, a, ALL_SETS, len);
    // the reference's length, read off policy a's rows (every policy carries it)
    let xb = if b == "reference" {
        pooled_per_prompt(&run.gens, g, a, ALL_SETS, Generation::reference_length)
    } else {
        pooled_per_prompt(&run.gens, g, b, ALL_SETS, len)
    };
    let mut rng = SplitMix64::derive(run.info.bootstrap_seed, LENGTH_STREAM_BASE + stream);
    let d = wins::paired_diff_of(&xa, &xb, run.info.n_bootstrap, &mut rng);
    if d.n_prompts == 0 {
        let why = if b == "reference" { "no references in generations.csv" } else { "policies missing" };
        return (format!("not measured ({why})"), Verdict::NotMeasured);
    }
    let text = format!(
        "{} − {} = {:+.1} [{:+.1}, {:+.1}] tokens (n = {} prompts)",
        f3(d.a_mean),
        f3(d.b_mean),
        d.diff,
        d.ci_low,
        d.ci_high,
        d.n_prompts
    );
    (text, verdict(d.ci_low, d.ci_high, 0.0))
}

fn length_claim(o: &mut String, runs: &[Run], primary: &Primary) {
    o.push_str("## (ii) Long-response bias (summarization)\n\n");
    o.push_str(
        "> **Paper:** in text summarization, PPO with a scalar RM develops a long-response bias; the seq2seq RM \
         avoids it.\n\n",
    );
    let claims = [
        "Mean length, `ppo_scalar` − `ppo_seq2seq` > 0",
        "Mean length, `ppo_scalar` − reference > 0",
        "Length-controlled win rate, `ppo_seq2seq` vs `ppo_scalar` > 50%",
    ];
    let mut rows = Vec::new();
    let mut facts = Vec::new();
    for (k, (ri, run, g)) in cells_of(runs, "summarization").enumerate() {
        let at = primary.place(run, g, ri);
        let stream = 2 * k as u64;
        let (m, v) = length_diff(run, g, "ppo_scalar", "ppo_seq2seq", stream);
        let measured = [
            // A seq2seq-RM policy that stopped answering is shorter for no reason the claim means.
            void_if_collapsed(m, v, &run.metrics, g, "the length difference is not evidence"),
            length_diff(run, g, "ppo_scalar", "reference", stream + 1),
            lc_headline(&run.wins, g, &run.metrics),
        ];
        for (claim, (m, v)) in claims.iter().zip(measured) {
            rows.push(vec![claim.to_string(), at.clone(), m, run.seeds(g), bold(gated(v, &run.info.gates))]);
        }
        facts.push(format!("{at}: {}", length_facts(run, g)));
    }
    if rows.is_empty() {
        rows.extend(claims.iter().map(|c| not_run(c, "no `summarization` results directory", false)));
    }
    table(o, &CLAIM_HEADER, &rows);
    if !facts.is_empty() {
        o.push_str("Mean response length over the in-distribution prompts (pooled over seeds) and its ratio to the reference:\n\n");
        for f in facts {
            let _ = writeln!(o, "- {f}");
        }
        o.push('\n');
    }
}

// ---------------------------------------------------------------------------------------------
// (iii) win rate, per experiment × size and on average

/// The pooled per-prompt outcomes behind a cell's headline win rate (for the average's bootstrap).
fn headline_outcomes(run: &Run, g: &Group) -> Vec<f64> {
    let per_seed = wins::paired_prompts(&run.gens, g, "ppo_seq2seq", "ppo_scalar", ALL_SETS);
    wins::pool_paired(&per_seed).outcome.into_values().collect()
}

fn win_rate_claim(o: &mut String, runs: &[Run], primary: &Primary) {
    o.push_str("## (iii) Win rate of the seq2seq-RM policy against the scalar-RM policy\n\n");
    let _ = writeln!(
        o,
        "> **Paper:** the seq2seq RM improves RLHF on 3 NLP tasks with 2B and 7B models: average win rate {} \
         (`ppo_seq2seq` vs `ppo_scalar`).\n",
        pct(PAPER_WIN_RATE)
    );
    let mut experiments: Vec<(String, String)> = EXPERIMENTS.iter().map(|(e, t)| (e.to_string(), t.to_string())).collect();
    for g in runs.iter().flat_map(|r| &r.groups) {
        if !experiments.iter().any(|(e, _)| e == &g.experiment) {
            experiments.push((g.experiment.clone(), "not a task of the paper".into()));
        }
    }
    let mut rows = Vec::new();
    let mut strata: Vec<Vec<f64>> = Vec::new();
    let mut averaged: Vec<String> = Vec::new();
    // the average is evidence only if every cell it averages passed its gates
    let mut any_failed = false;
    for (e, task) in &experiments {
        let claim = format!("`{e}` — {task}: win rate > 50%");
        let before = rows.len();
        for (ri, run, g) in cells_of(runs, e) {
            let (m, v) = headline(&run.wins, g);
            let lc = pooled_win(&run.wins, g, "ppo_seq2seq", "ppo_scalar", ALL_SETS).map_or("n/a".into(), |w| lc_interval(w, run, g));
            rows.push(vec![claim.clone(), primary.place(run, g, ri), m, lc, run.seeds(g), bold(gated(v, &run.info.gates))]);
            let outcomes = headline_outcomes(run, g);
            if primary.has(ri, g) && !outcomes.is_empty() {
                any_failed |= !failed(&run.info.gates).is_empty();
                strata.push(outcomes);
                averaged.push(format!("`{}` / {}", cell(&run.name), cell(&g.size)));
            }
        }
        if rows.len() == before {
            rows.push(not_run(&claim, &format!("no `{e}` results directory"), true));
        }
    }
    // the average over (experiment, size) cells, each cell's prompts resampled within it
    let claim = format!("Average over tasks × sizes: > 50% (paper: {})", pct(PAPER_WIN_RATE));
    let avg = if strata.is_empty() {
        not_run(&claim, "no cell measured", true)
    } else {
        let m = mean(&strata.iter().map(|s| mean(s)).collect::<Vec<_>>());
        let (lo, hi) = stratified_mean_ci(&strata, AVERAGE_N_BOOT, &mut SplitMix64::new(AVERAGE_BOOT_SEED));
        let paper_side = if hi < PAPER_WIN_RATE {
            "above our interval"
        } else if lo > PAPER_WIN_RATE {
            "below our interval"
        } else {
            "inside our interval"
        };
        vec![
            claim,
            format!("{} cells (the paper has {}): {}", strata.len(), EXPERIMENTS.len() * 2, averaged.join(", ")),
            format!("{} [{}, {}]; the paper's 76.9% is {paper_side}", pct(m), pct(lo), pct(hi)),
            "—".into(),
            "—".into(),
            bold(gated_if(verdict(lo, hi, 0.5), any_failed)),
        ]
    };
    rows.push(avg);
    table(o, &WIN_CLAIM_HEADER, &rows);
    let _ = writeln!(
        o,
        "The average weighs every (experiment, size) cell equally; its interval resamples each cell's prompts within \
         the cell ({AVERAGE_N_BOOT} resamples, seed {AVERAGE_BOOT_SEED}). Sizes: ours are the `size` column of the \
         CSVs, the paper's were 2B and 7B.\n"
    );
}

// ---------------------------------------------------------------------------------------------
// (iv) out-of-distribution prompts

/// The out-of-distribution prompt sets (`ood_*`) of group `g`, display-ordered.
pub(super) fn ood_sets(run: &Run, g: &Group) -> Vec<String> {
    tables::sets_of(&run.gens, g).into_iter().filter(|s| s.starts_with(OOD_PREFIX)).collect()
}

fn ood_claim(o: &mut String, runs: &[Run], primary: &Primary) {
    o.push_str("## (iv) Out-of-distribution prompts\n\n");
    o.push_str("> **Paper:** the seq2seq RM still improves RLHF on out-of-distribution prompts.\n\n");
    let mut rows = Vec::new();
    for (ri, run) in runs.iter().enumerate() {
        for g in &run.groups {
            for set in ood_sets(run, g) {
                let Some(w) = pooled_win(&run.wins, g, "ppo_seq2seq", "ppo_scalar", &set) else { continue };
                rows.push(vec![
                    format!("`{set}`: win rate > 50%"),
                    primary.place(run, g, ri),
                    format!("{} [{}, {}] (n = {} prompts)", pct(w.win_rate), pct(w.ci_low), pct(w.ci_high), w.n_prompts),
                    lc_interval(w, run, g),
                    run.seeds(g),
                    bold(gated(verdict(w.ci_low, w.ci_high, 0.5), &run.info.gates)),
                ]);
            }
        }
    }
    if rows.is_empty() {
        rows.push(not_run("`ood_*` sets: win rate > 50%", "no `ood_*` prompt set in any results directory", true));
    }
    table(o, &WIN_CLAIM_HEADER, &rows);
}

// ---------------------------------------------------------------------------------------------
// caveats

fn caveat_section(o: &mut String, runs: &[&Run]) {
    let mut lines = Vec::new();
    for r in runs {
        let d = r.report_data();
        for g in &r.groups {
            lines.extend(policy_caveats(&d, g).into_iter().map(|c| format!("`{}` / {}: {c}", cell(&r.name), cell(&g.size))));
        }
    }
    if lines.is_empty() {
        return;
    }
    o.push_str("## Caveats from the measurements\n\n");
    for l in lines {
        let _ = writeln!(o, "- {l}");
    }
    o.push('\n');
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Fixture, write_fixture_with};
    use super::*;

    fn fixture(results: &Path, name: &str, experiment: &str, swap: bool) {
        let dir = results.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let reference = experiment == "summarization";
        let f = Fixture { experiment, swap, reference, ood: reference };
        write_fixture_with(&dir, &f);
    }

    fn paper(results: &Path) -> String {
        let out = results.join("PAPER.md");
        write_paper(results, &out).unwrap();
        std::fs::read_to_string(out).unwrap()
    }

    fn row<'a>(md: &'a str, starts: &str, at: &str) -> &'a str {
        md.lines().find(|l| l.starts_with(starts) && l.contains(at)).unwrap_or_else(|| panic!("no row {starts} … {at} in\n{md}"))
    }

    #[test]
    fn no_results_means_every_claim_is_not_run() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("not_a_run")).unwrap(); // no generations.csv: skipped
        let md = paper(tmp.path());
        assert!(md.contains("s2rm paper"));
        for claim in ["| Benign refusal", "| Mean length, `ppo_scalar` − `ppo_seq2seq`", "| `helpfulness`", "| `ood_*`"] {
            assert!(row(&md, claim, "").contains("not run"), "{claim}");
        }
        assert!(row(&md, "| Average", "").contains("not run"));
        assert!(!md.contains("(n = "), "no numbers may be invented");
    }

    /// A gold-judged world enters only the worlds section: never the paper's tables or their
    /// average, even when its directory is named like a paper task.
    #[test]
    fn worlds_stay_out_of_the_paper_tables() {
        let tmp = tempfile::tempdir().unwrap();
        let res = tmp.path();
        fixture(res, "safety", "safety", false);
        fixture(res, "world_safety", "world_safety", false);
        fixture(res, "summarization_world", "summarization", false);
        for w in ["world_safety", "summarization_world"] {
            let p = res.join(w).join("run_info.json");
            let mut info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            info["judge"] = "gold".into();
            std::fs::write(&p, info.to_string()).unwrap();
        }
        let md = paper(res);
        let avg = row(&md, "| Average", "");
        assert!(avg.contains("1 cells (the paper has 6): `safety` / tiny |"), "{avg}");
        assert!(!md.contains("not a task of the paper"));
        let (tables, worlds) = md.split_once("## Controlled worlds").unwrap();
        assert!(!tables.contains("| `summarization_world`") && !tables.contains("`world_safety` /"));
        assert!(row(worlds, "| `world_safety`", "").contains("not measured"));
        assert!(row(worlds, "| `summarization_world`", "").contains("not measured"));
    }

    #[test]
    fn claims_from_several_directories_deterministically() {
        let tmp = tempfile::tempdir().unwrap();
        let res = tmp.path();
        fixture(res, "safety", "safety", false);
        // an ablation of the same (experiment, size): shown, not averaged
        fixture(res, "safety_ablation", "safety", true);
        fixture(res, "summarization", "summarization", false);
        let md = paper(res);
        assert_eq!(md, paper(res), "byte-deterministic");

        // (i): the fixture's scalar policy refuses half the benign prompts, seq2seq none
        assert!(row(&md, "| Benign refusal", "| `safety` / tiny |").contains("**reproduced**"));
        assert!(row(&md, "| Benign refusal", "`safety_ablation` / tiny (variant)").contains("+0.500"));
        // (ii): ppo_scalar (8–12 tokens) is shorter than ppo_seq2seq (25–41) and than the reference (10–13)
        let longer = row(&md, "| Mean length, `ppo_scalar` − `ppo_seq2seq`", "`summarization` / tiny");
        assert!(longer.contains("**not reproduced**"), "{longer}");
        let vs_ref = row(&md, "| Mean length, `ppo_scalar` − reference", "`summarization` / tiny");
        assert!(vs_ref.contains("(n = 18 prompts)"), "OOD prompts have no reference: {vs_ref}");
        assert!(md.contains("× reference"));
        // (iii): safety and summarization measured (seq2seq wins every prompt), helpfulness not run;
        // the average covers the two primary cells only
        assert!(row(&md, "| `safety`", "| `safety` / tiny |").contains("100.0% [100.0%, 100.0%]"));
        assert!(row(&md, "| `safety`", "`safety_ablation`").contains("**not reproduced**"));
        assert!(row(&md, "| `helpfulness`", "").contains("not run"));
        let avg = row(&md, "| Average", "");
        assert!(avg.contains("2 cells (the paper has 6): `safety` / tiny, `summarization` / tiny"), "{avg}");
        assert!(avg.contains("**reproduced**") && avg.contains("below our interval"), "{avg}");
        // (iv): the summarization fixture has an OOD set
        assert!(row(&md, "| `ood_alpaca`", "`summarization` / tiny").contains("(n = 6 prompts)"));
        // the judge's accuracy (0.9 + 0.01·seed) is named, the directories too
        assert!(md.contains("0.905 (`safety`)") && md.contains("- `safety_ablation`: `safety` / tiny, variant"));
    }
}
