//! `REPORT.md`: the human-readable summary of a results directory, one function per section.

use super::figures::{FIGURES, RM_CURVE_FIGURE};
use super::gates::gated;
use super::inputs::{PPO_METRICS, RefusalSanity};
use super::logs::RmSummary;
use super::stats::Verdict;
use super::tables::{Group, SeedKey, pooled_metric, rank};
use super::verdicts::*;
use std::collections::BTreeSet;
use std::fmt::Write;

const STAGE_TIME_ORDER: [&str; 10] =
    ["pretrain", "sft", "scalar_rm", "seq2seq_rm", "judge", "ppo_scalar", "ppo_seq2seq", "generate", "eval", "report"];

/// Sub-heading per group, only when the directory holds several (experiment, size) groups.
fn group_heading(out: &mut String, groups: &[Group], g: &Group) {
    if groups.len() > 1 {
        let _ = writeln!(out, "#### `{}` / size `{}`\n", g.experiment, g.size);
    }
}

pub fn render_markdown(d: &ReportData) -> String {
    let info = d.info;
    let mut o = String::new();
    let title = match (info.title.is_empty(), info.experiment.is_empty()) {
        (false, _) => info.title.clone(),
        (true, true) => "Seq2seq reward modeling reproduction".to_string(),
        (true, false) => format!("Seq2seq reward modeling reproduction: {}", info.experiment),
    };
    let _ = writeln!(o, "# {}\n", title.replace('\n', " "));
    summary(&mut o, d);
    o.push_str(&super::gates::section(&info.gates));
    o.push_str(&super::gates::world_data(&info.world_label_stats));
    claims(&mut o, d);
    let caveats: Vec<String> = d.groups.iter().flat_map(|g| caveats(d, g)).collect();
    bullets(&mut o, "## Caveats\n\n", &caveats);
    win_rates(&mut o, d);
    generation_metrics(&mut o, d);
    o.push_str(&super::samples::section(d.generations));
    reward_models(&mut o, d);
    logs(&mut o, d);
    run_facts(&mut o, d);
    bullets(&mut o, "## Notes\n\n", &info.notes.iter().map(|n| n.replace('\n', " ")).collect::<Vec<_>>());
    o.push_str("## Figures\n\n");
    let curve = d.rm_curve.then_some(RM_CURVE_FIGURE);
    for (name, caption) in FIGURES.iter().chain(curve.iter()) {
        let _ = writeln!(o, "**{caption}** ([svg](figures/{name}.svg))\n\n![{name}](figures/{name}.png)\n");
    }
    o.push_str("## Regenerating\n\n");
    o.push_str(
        "The tables (`metrics.csv`, `win_rates.csv`), the figures and this file are derived only from the inputs \
         in this directory (`generations.csv`, `ppo_log.csv`, `rm_eval.csv`, `train_log.csv`, \
         `refusal_sanity.csv`, `run_info.json`). Rebuild them with\n\n```sh\ns2rm report <dir>\n# or\nmake figures\n```\n",
    );
    o
}

/// A section of bullet points, left out when there are none.
fn bullets(o: &mut String, heading: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    o.push_str(heading);
    for i in items {
        let _ = writeln!(o, "- {i}");
    }
    o.push('\n');
}

fn summary(o: &mut String, d: &ReportData) {
    let info = d.info;
    let seeds = seed_list(d);
    let _ = write!(
        o,
        "Experiment `{}` (profile `{}`, {} seed(s): {}, device: {}). PPO policies trained against a scalar \
         Bradley–Terry reward model (`ppo_scalar`) and a sequence-to-sequence reward model (`ppo_seq2seq`) are \
         compared with each other and with the SFT policy by {}.",
        info.experiment,
        info.profile,
        seeds.len(),
        seeds.join(", "),
        or_unknown(&info.device),
        if info.judge == "gold" { "the world's gold reward (a program: exact, no judge model)" } else { "a held-out judge model" },
    );
    for g in d.groups {
        let (m, v) = headline(d.wins, g);
        let label = if d.groups.len() > 1 { format!(" Size `{}`:", g.size) } else { String::new() };
        let _ = write!(
            o,
            "{label} Pooled over seeds, `ppo_seq2seq` beats `ppo_scalar` with a win rate of {m} (paper: {}{}; \
             verdict: **{}**).",
            pct(PAPER_WIN_RATE),
            paper_vs_interval(d.wins, g),
            gated(v, &info.gates).as_str(),
        );
        if refusal_claim_applies(d.metrics, g) {
            let (rm, rv) = refusal_headline(d.refusal, g, d.metrics);
            let _ = write!(
                o,
                " The benign-prompt refusal rate of `ppo_scalar` minus that of `ppo_seq2seq` is {rm} (verdict: **{}**).",
                gated(rv, &info.gates).as_str()
            );
        }
    }
    o.push_str("\n\n");
}

fn claims(o: &mut String, d: &ReportData) {
    o.push_str("## Claim vs measurement\n\n");
    if !d.info.claim.is_empty() {
        let _ = writeln!(o, "> **Paper's claim:** {}\n", d.info.claim.replace('\n', " "));
    }
    let mut rows = Vec::new();
    let mut row = |what: String, paper: String, (m, v): (String, Verdict)| rows.push(vec![what, paper, m, bold(gated(v, &d.info.gates))]);
    for g in d.groups {
        let sfx = d.suffix(g);
        let vs = "`ppo_seq2seq` vs `ppo_scalar`, all prompts";
        row(format!("Win rate of {vs}{sfx}"), format!("{} average win rate", pct(PAPER_WIN_RATE)), headline(d.wins, g));
        row(
            format!("Length-controlled win rate of {vs}{sfx}"),
            "> 50%: the win is not only a length preference of the judge".into(),
            lc_headline(d.wins, g, d.metrics),
        );
        if refusal_claim_applies(d.metrics, g) {
            row(
                format!("Benign refusal rate, `ppo_scalar` − `ppo_seq2seq`{sfx}"),
                "> 0: the seq2seq RM reduces refusal-to-response on benign prompts".into(),
                refusal_headline(d.refusal, g, d.metrics),
            );
        }
    }
    if d.groups.is_empty() {
        let none = ("generations.csv has no rows".to_string(), Verdict::NotMeasured);
        row("Win rate and benign refusal".into(), format!("{} average win rate", pct(PAPER_WIN_RATE)), none);
    }
    table(o, &["Measurement", "Paper", "Ours (pooled, 95% CI)", "Verdict"], &rows);
    o.push_str(
        "Verdict rule: **reproduced** if the 95% bootstrap interval lies entirely on the paper's side \
         (win rate > 0.5; refusal difference > 0), **not reproduced** if it lies entirely on the other side, \
         **inconclusive** otherwise. `all` is the union of the in-distribution prompt sets; out-of-distribution \
         sets (`ood_*`) have their own rows below.\n\n",
    );
}

fn win_rates(o: &mut String, d: &ReportData) {
    o.push_str("## Win rates\n\n");
    let _ = writeln!(
        o,
        "Judge-score comparison per prompt (win = 1, tie = 0.5, loss = 0), averaged over prompts. `pooled` averages \
         each prompt's outcome over seeds first (prompts present in every seed). 95% percentile bootstrap over \
         prompts, {} resamples. `all` is the union of the in-distribution sets; `ood_*` sets are not part of it. \
         LC = length-controlled: a logistic regression of the outcome on the length difference (A − B, in \
         standard deviations over the row's prompts) gives the win rate at equal length, σ(intercept); its \
         interval comes from the same resamples. Where the two policies' lengths barely overlap (a collapsed \
         policy), equal length lies outside the data: the LC win rate is then an extrapolation with a wide \
         interval.\n",
        d.info.n_bootstrap
    );
    for g in d.groups {
        group_heading(o, d.groups, g);
        let rows: Vec<Vec<String>> = d
            .wins
            .iter()
            .filter(|r| &r.group == g)
            .map(|r| {
                let seed = if r.seed == SeedKey::Pooled { "**pooled**".to_string() } else { r.seed.to_string() };
                vec![
                    format!("`{}` vs `{}`", r.policy_a, r.policy_b),
                    r.prompt_set.clone(),
                    seed,
                    r.n_prompts.to_string(),
                    pct(r.win_rate),
                    format!("[{}, {}]", pct(r.ci_low), pct(r.ci_high)),
                    pct(r.lc_win_rate),
                    format!("[{}, {}]", pct(r.lc_ci_low), pct(r.lc_ci_high)),
                ]
            })
            .collect();
        let header = ["Pair (A vs B)", "Prompt set", "Seed", "n", "Win rate of A", "95% CI", "LC win rate of A", "LC 95% CI"];
        table(o, &header, &rows);
    }
}

fn generation_metrics(o: &mut String, d: &ReportData) {
    o.push_str("## Generation metrics (pooled over seeds)\n\n");
    for g in d.groups {
        group_heading(o, d.groups, g);
        // (policy, set) cells in metrics.csv order (by policy, then set)
        let mut cells: Vec<(&str, &str)> = Vec::new();
        for r in d.metrics.iter().filter(|r| &r.group == g && r.seed == SeedKey::Pooled) {
            if !cells.contains(&(&r.policy, &r.prompt_set)) {
                cells.push((&r.policy, &r.prompt_set));
            }
        }
        // reference columns only for groups whose data has references
        let has_ref = d.metrics.iter().any(|r| &r.group == g && r.metric == "rouge_l_f1");
        let mut names = vec!["refusal_rate", "mean_length_tokens", "truncation_rate", "judge_score_mean"];
        if has_ref {
            names.extend(["rouge_l_f1", "length_ratio"]);
        }
        let rows: Vec<Vec<String>> = cells
            .iter()
            .map(|&(p, s)| {
                let m = |name| pooled_metric(d.metrics, g, p, s, name);
                let mut row = vec![format!("`{p}`"), s.to_string()];
                row.extend(names.iter().map(|n| opt3(m(n))));
                row.push(m("n_prompts").map_or("n/a".into(), |n| format!("{n:.1}")));
                row
            })
            .collect();
        let mut header =
            vec!["Policy", "Prompt set", "Refusal rate", "Mean length (tokens)", "Truncation rate (hit the length limit)", "Judge score"];
        if has_ref {
            header.extend(["ROUGE-L F1 vs reference", "Length / reference length"]);
        }
        header.push("n prompts");
        table(o, &header, &rows);
    }
}

fn reward_models(o: &mut String, d: &ReportData) {
    o.push_str("## Reward models\n\n");
    o.push_str(
        "From `rm_eval.csv` on held-out preference pairs: `pair_accuracy` (chosen scored above rejected; the judge's \
         row is its own accuracy; `pair_accuracy_harmful` / `_benign`: on the pairs whose prompt comes from a harmful or \
         a benign source, as the eval prompt sets are split), `length_score_corr` (correlation of score with response \
         length), `copy_rate` (seq2seq RM output copying its input), and others as logged. Mean over seeds, then each \
         seed.\n\n",
    );
    // groups in the order of the rm table (sorted by group already)
    let mut groups: Vec<&Group> = Vec::new();
    for r in d.rm {
        if !groups.contains(&&r.group) {
            groups.push(&r.group);
        }
    }
    for g in groups {
        group_heading(o, d.groups, g);
        let rm: Vec<&RmSummary> = d.rm.iter().filter(|r| &r.group == g).collect();
        let seeds: BTreeSet<i64> = rm.iter().flat_map(|r| r.per_seed.keys().copied()).collect();
        let mut header: Vec<String> = vec!["Model".into(), "Metric".into(), "Mean".into()];
        header.extend(seeds.iter().map(|s| format!("seed {s}")));
        let rows: Vec<Vec<String>> = rm
            .iter()
            .map(|r| {
                let mut row = vec![format!("`{}`", r.model), r.metric.clone(), f3(r.mean)];
                row.extend(seeds.iter().map(|s| opt3(r.per_seed.get(s).copied())));
                row
            })
            .collect();
        table(o, &header.iter().map(String::as_str).collect::<Vec<_>>(), &rows);
    }
    if d.rm.is_empty() {
        table(o, &[], &[]);
    }
}

/// The refusal sanity check, the PPO end values and the training losses.
fn logs(o: &mut String, d: &ReportData) {
    o.push_str("## Refusal detector sanity check\n\n");
    o.push_str("Refusal rate of the preference data's own responses, as seen by the refusal detector.\n\n");
    let mut sanity: Vec<&RefusalSanity> = d.sanity.iter().collect();
    sanity.sort_by_cached_key(|r| (r.source.clone(), rank(&["chosen", "rejected"], &r.response_kind)));
    let rows: Vec<Vec<String>> = sanity
        .iter()
        .map(|r| vec![cell(&r.source), cell(&r.response_kind), r.n.map_or("n/a".into(), |n| format!("{n:.0}")), opt3(r.refusal_rate)])
        .collect();
    table(o, &["Source", "Response kind", "n", "Refusal rate"], &rows);

    o.push_str("## PPO at the end of training\n\n");
    o.push_str("Each seed's last logged step, averaged over seeds.\n\n");
    let mut header: Vec<&str> = vec!["RM", "Seeds", "Last step"];
    header.extend(PPO_METRICS);
    let sized = |name: &str, g: &Group| if d.groups.len() > 1 { format!("{name} [{}]", g.size) } else { name.to_string() };
    let rows: Vec<Vec<String>> = d
        .ppo
        .iter()
        .map(|p| {
            let mut row = vec![sized(&format!("`{}`", p.rm), &p.group), p.n_seeds.to_string(), p.last_step.to_string()];
            row.extend(p.values.iter().map(|v| f3(*v)));
            row
        })
        .collect();
    table(o, &header, &rows);

    o.push_str("## Training losses\n\n");
    let rows: Vec<Vec<String>> = d
        .train
        .iter()
        .map(|t| vec![cell(&sized(&t.stage, &t.group)), t.n_seeds.to_string(), t.last_step.to_string(), f3(t.first_loss), f3(t.final_loss)])
        .collect();
    table(o, &["Stage", "Seeds", "Last step", "First loss", "Final loss"], &rows);
}

fn run_facts(o: &mut String, d: &ReportData) {
    let info = d.info;
    o.push_str("## Run facts\n\n");
    let _ = writeln!(o, "- experiment: `{}`", info.experiment);
    let _ = writeln!(o, "- profile: `{}`", info.profile);
    let _ = writeln!(o, "- device: {}", or_unknown(&info.device));
    let _ = writeln!(o, "- seeds: {}", info.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "));
    let _ = writeln!(o, "- bootstrap: {} resamples, seed {}", info.n_bootstrap, info.bootstrap_seed);
    if !info.spec_file.is_empty() {
        let _ = writeln!(o, "- spec file: `{}`", info.spec_file);
    }
    let _ = writeln!(o, "- total wall time: {:.1} s\n", info.total_seconds);
    if !info.param_counts.is_empty() {
        let rows: Vec<Vec<String>> = info.param_counts.iter().map(|(k, v)| vec![format!("`{}`", cell(k)), format_count(*v)]).collect();
        table(o, &["Model", "Parameters"], &rows);
    }
    if !info.stage_seconds.is_empty() {
        let mut stages: Vec<(&String, &f64)> = info.stage_seconds.iter().collect();
        stages.sort_by_key(|(k, _)| rank(&STAGE_TIME_ORDER, k));
        let rows: Vec<Vec<String>> = stages.iter().map(|(k, v)| vec![cell(k), format!("{v:.1}")]).collect();
        table(o, &["Stage", "Seconds"], &rows);
    }
}

/// The run's seeds, from `run_info.json`, else those in `metrics.csv`.
fn seed_list(d: &ReportData) -> Vec<String> {
    if !d.info.seeds.is_empty() {
        return d.info.seeds.iter().map(|s| s.to_string()).collect();
    }
    let seeds: BTreeSet<i64> = d.metrics.iter().filter_map(|r| if let SeedKey::Seed(s) = r.seed { Some(s) } else { None }).collect();
    seeds.into_iter().map(|s| s.to_string()).collect()
}

/// 1234567 -> "1,234,567".
fn format_count(v: i64) -> String {
    let s = v.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(format_count(1234567), "1,234,567");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(-1000), "-1,000");
        assert_eq!(pct(0.769), "76.9%");
        assert_eq!(f3(f64::NAN), "n/a");
        assert_eq!(f3(-0.0001), "0.000");
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
