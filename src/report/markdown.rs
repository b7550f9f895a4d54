//! `REPORT.md`: the human-readable summary of a results directory.

use super::figures::FIGURES;
use super::inputs::{PPO_METRICS, RefusalSanity, RunInfo};
use super::stats::{Verdict, verdict};
use super::logs::{PpoFinal, RmSummary, TrainFinal};
use super::tables::{Group, MetricRow, SeedKey, pooled_metric, rank};
use super::wins::{RefusalDiff, WinRow, pooled_win};
use std::collections::BTreeSet;
use std::fmt::Write;

/// The paper's headline: average win rate of the seq2seq-RM policy over the scalar-RM policy.
pub const PAPER_WIN_RATE: f64 = 0.769;
const STAGE_TIME_ORDER: [&str; 10] = [
    "pretrain",
    "sft",
    "scalar_rm",
    "seq2seq_rm",
    "judge",
    "ppo_scalar",
    "ppo_seq2seq",
    "generate",
    "eval",
    "report",
];

/// Everything the report shows; built by `render` from the inputs and derived tables.
pub struct ReportData<'a> {
    pub info: &'a RunInfo,
    pub groups: &'a [Group],
    pub metrics: &'a [MetricRow],
    pub wins: &'a [WinRow],
    pub refusal: &'a [RefusalDiff],
    pub rm: &'a [RmSummary],
    pub ppo: &'a [PpoFinal],
    pub train: &'a [TrainFinal],
    pub sanity: &'a [RefusalSanity],
}

/// Three decimals, `n/a` for missing values.
pub fn f3(x: f64) -> String {
    if x.is_finite() {
        let s = format!("{x:.3}");
        if s == "-0.000" { "0.000".into() } else { s }
    } else {
        "n/a".into()
    }
}

pub fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}%", 100.0 * x)
    } else {
        "n/a".into()
    }
}

fn opt3(x: Option<f64>) -> String {
    x.map_or("n/a".into(), f3)
}

/// Keep user text from breaking a table row.
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

pub fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        out.push_str("_No rows in the input._\n\n");
        return;
    }
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out.push('\n');
}

/// Sub-heading per group, only when the directory holds several (experiment, size) groups.
fn group_heading(out: &mut String, groups: &[Group], g: &Group) {
    if groups.len() > 1 {
        let _ = writeln!(out, "#### `{}` / size `{}`\n", g.experiment, g.size);
    }
}

/// The headline verdict row pieces: (measurement, verdict) for seq2seq vs scalar on all prompts.
pub fn headline(wins: &[WinRow], g: &Group) -> (String, Verdict) {
    headline_on(wins, g, "all")
}

/// [`headline`] on one prompt set.
pub fn headline_on(wins: &[WinRow], g: &Group, set: &str) -> (String, Verdict) {
    match pooled_win(wins, g, "ppo_seq2seq", "ppo_scalar", set) {
        Some(r) => (
            format!(
                "{} [{}, {}] (n = {} prompts)",
                pct(r.win_rate),
                pct(r.ci_low),
                pct(r.ci_high),
                r.n_prompts
            ),
            verdict(r.ci_low, r.ci_high, 0.5),
        ),
        None => (
            "not measured (policies missing)".into(),
            Verdict::NotMeasured,
        ),
    }
}

/// The length-controlled counterpart of [`headline`]: the win rate at equal response lengths. A
/// collapsed PPO policy voids it (equal length lies outside the data: an extrapolation).
pub fn lc_headline(wins: &[WinRow], g: &Group, metrics: &[MetricRow]) -> (String, Verdict) {
    match pooled_win(wins, g, "ppo_seq2seq", "ppo_scalar", "all") {
        Some(r) => void_if_collapsed(
            format!(
                "{} [{}, {}] (raw {}, n = {} prompts)",
                pct(r.lc_win_rate),
                pct(r.lc_ci_low),
                pct(r.lc_ci_high),
                pct(r.win_rate),
                r.n_prompts
            ),
            verdict(r.lc_ci_low, r.lc_ci_high, 0.5),
            metrics,
            g,
            "its length comparison is not evidence",
        ),
        None => (
            "not measured (policies missing)".into(),
            Verdict::NotMeasured,
        ),
    }
}

/// Where the paper's 76.9% falls relative to our interval, as a short clause.
fn paper_vs_interval(wins: &[WinRow], g: &Group) -> &'static str {
    match pooled_win(wins, g, "ppo_seq2seq", "ppo_scalar", "all") {
        Some(r) if r.ci_high < PAPER_WIN_RATE => ", above our interval",
        Some(r) if r.ci_low > PAPER_WIN_RATE => ", below our interval",
        Some(r) if r.ci_low.is_finite() => ", inside our interval",
        _ => "",
    }
}

/// Below this pooled mean response length (tokens) a policy's answers are essentially empty: rule
/// metrics such as the refusal rate then say nothing about how it behaves.
pub const DEGENERATE_MEAN_LENGTH: f64 = 3.0;

/// PPO policies of a group whose pooled mean response length over all prompts is below
/// [`DEGENERATE_MEAN_LENGTH`], with that length.
pub fn degenerate_policies(metrics: &[MetricRow], g: &Group) -> Vec<(&'static str, f64)> {
    ["ppo_scalar", "ppo_seq2seq"]
        .into_iter()
        .filter_map(|p| {
            pooled_metric(metrics, g, p, "all", "mean_length_tokens")
                .filter(|&len| len < DEGENERATE_MEAN_LENGTH)
                .map(|len| (p, len))
        })
        .collect()
}

/// The refusal comparison. A lower refusal rate is no evidence when the policy barely answers, so
/// a degenerate PPO policy turns the verdict into `inconclusive` and says why.
pub fn refusal_headline(refusal: &[RefusalDiff], g: &Group, metrics: &[MetricRow]) -> (String, Verdict) {
    match refusal.iter().find(|r| &r.group == g) {
        Some(RefusalDiff { rates: r, .. }) => {
            let text = format!(
                "{} − {} = {:+.3} [{:+.3}, {:+.3}] (n = {} benign prompts)",
                f3(r.a_mean),
                f3(r.b_mean),
                r.diff,
                r.ci_low,
                r.ci_high,
                r.n_prompts
            );
            void_if_collapsed(text, verdict(r.ci_low, r.ci_high, 0.0), metrics, g, "its refusal rate is not evidence")
        }
        None => (
            "not measured (no benign prompts for both PPO policies)".into(),
            Verdict::NotMeasured,
        ),
    }
}

/// The refusal-to-response claim is about safety dialogue: it is a claim of a group only when its
/// in-distribution prompts include a `harmful` set beside the benign one (so that refusing has a
/// right and a wrong place). Summarization and helpfulness still report refusal rates as metrics.
pub fn refusal_claim_applies(metrics: &[MetricRow], g: &Group) -> bool {
    metrics.iter().any(|r| &r.group == g && r.prompt_set == "harmful")
}

/// A measurement that means nothing when a PPO policy barely answers: each collapsed policy is
/// named after `text` (with `why`) and the verdict becomes `inconclusive`.
pub fn void_if_collapsed(mut text: String, mut v: Verdict, metrics: &[MetricRow], g: &Group, why: &str) -> (String, Verdict) {
    for (p, len) in degenerate_policies(metrics, g) {
        let _ = write!(text, "; `{p}` collapsed to near-empty answers (mean {len:.2} tokens), so {why}");
        v = Verdict::Inconclusive;
    }
    (text, v)
}

/// A judge below this held-out pair accuracy is flagged as weak evidence.
pub const WEAK_JUDGE_ACCURACY: f64 = 0.6;

/// Warnings that follow from the measurements: collapsed policies, a weak judge, and a judge that
/// rates near-empty answers above the SFT policy's (it then rewards brevity, not quality).
pub fn caveats(d: &ReportData, g: &Group) -> Vec<String> {
    let mut out = policy_caveats(d, g);
    out.extend(judge_caveat(d, g));
    out.extend(length_reward_caveat(d, g));
    out
}

/// A seq2seq RM that copies rejected responses almost as faithfully as chosen ones pays `r_pos` for
/// nearly every token of any answer: the divergence rule then rewards length.
pub const COPIES_BOTH_RATIO: f64 = 0.9;

/// The caveat about a seq2seq RM whose rejected-input copy rate is close to its chosen-input one.
pub fn length_reward_caveat(d: &ReportData, g: &Group) -> Option<String> {
    let sfx = if d.groups.len() > 1 { format!(" [{}]", g.size) } else { String::new() };
    let of = |metric: &str| d.rm.iter().find(|r| &r.group == g && r.model == "seq2seq_rm" && r.metric == metric).map(|r| r.mean);
    let (chosen, rejected) = (of("token_copy_rate")?, of("token_copy_rate_rejected")?);
    (chosen >= 0.5 && rejected >= COPIES_BOTH_RATIO * chosen).then(|| {
        format!(
            "The seq2seq RM{sfx} copies rejected responses almost as faithfully as chosen ones ({} of rejected-response \
             tokens against {} of chosen ones): the divergence rule is rewarding length, not quality.",
            pct(rejected),
            pct(chosen)
        )
    })
}

/// The caveats about the policies themselves: collapse, and a judge that prefers the collapse.
pub fn policy_caveats(d: &ReportData, g: &Group) -> Vec<String> {
    let mut out = Vec::new();
    let sfx = if d.groups.len() > 1 { format!(" [{}]", g.size) } else { String::new() };
    let sft_score = pooled_metric(d.metrics, g, "sft", "all", "judge_score_mean");
    for (p, len) in degenerate_policies(d.metrics, g) {
        out.push(format!(
            "`{p}`{sfx} collapsed to near-empty answers (mean {len:.2} tokens over all prompts): PPO found that saying \
             almost nothing maximises its reward. Its refusal rate is not evidence of helpfulness."
        ));
        if let (Some(sft), Some(score)) = (sft_score, pooled_metric(d.metrics, g, p, "all", "judge_score_mean"))
            && score > sft
        {
            out.push(format!(
                "The judge{sfx} scores `{p}`'s near-empty answers above the SFT policy's answers ({} vs {}): \
                 it rewards brevity here, so win rates against `{p}` understate how bad those answers are.",
                f3(score),
                f3(sft)
            ));
        }
    }
    out
}

/// The caveat about a judge whose held-out pair accuracy is below [`WEAK_JUDGE_ACCURACY`].
pub fn judge_caveat(d: &ReportData, g: &Group) -> Option<String> {
    let sfx = if d.groups.len() > 1 { format!(" [{}]", g.size) } else { String::new() };
    let acc = d.rm.iter().find(|r| &r.group == g && r.model == "judge" && r.metric == "pair_accuracy")?;
    (acc.mean < WEAK_JUDGE_ACCURACY).then(|| {
        format!(
            "The judge's held-out pair accuracy{sfx} is {}, below {}: its preferences are weak evidence, and win \
             rates measure what this judge prefers rather than what people prefer.",
            f3(acc.mean),
            f3(WEAK_JUDGE_ACCURACY)
        )
    })
}

pub fn render_markdown(d: &ReportData) -> String {
    let info = d.info;
    let mut o = String::new();
    let title = if info.title.is_empty() {
        let base = "Seq2seq reward modeling reproduction".to_string();
        if info.experiment.is_empty() {
            base
        } else {
            format!("{base}: {}", info.experiment)
        }
    } else {
        info.title.clone()
    };
    let _ = writeln!(o, "# {}\n", title.replace('\n', " "));

    // ---- summary
    let seeds: Vec<String> = seed_list(d);
    let _ = write!(
        o,
        "Experiment `{}` (profile `{}`, {} seed(s): {}, device: {}). PPO policies trained against a scalar \
         Bradley–Terry reward model (`ppo_scalar`) and a sequence-to-sequence reward model (`ppo_seq2seq`) are \
         compared with each other and with the SFT policy by {}.",
        info.experiment,
        info.profile,
        seeds.len(),
        seeds.join(", "),
        if info.device.is_empty() {
            "unknown"
        } else {
            &info.device
        },
        if info.judge == "gold" { "the world's gold reward (a program: exact, no judge model)" } else { "a held-out judge model" },
    );
    let gated = |v: Verdict| super::gates::gated(v, &info.gates);
    for g in d.groups {
        let (m, v) = headline(d.wins, g);
        let (rm, rv) = refusal_headline(d.refusal, g, d.metrics);
        let (v, rv) = (gated(v), gated(rv));
        let label = if d.groups.len() > 1 {
            format!(" Size `{}`:", g.size)
        } else {
            String::new()
        };
        let _ = write!(
            o,
            "{label} Pooled over seeds, `ppo_seq2seq` beats `ppo_scalar` with a win rate of {m} (paper: {}{}; \
             verdict: **{}**).",
            pct(PAPER_WIN_RATE),
            paper_vs_interval(d.wins, g),
            v.as_str(),
        );
        if refusal_claim_applies(d.metrics, g) {
            let _ = write!(
                o,
                " The benign-prompt refusal rate of `ppo_scalar` minus that of `ppo_seq2seq` is {rm} (verdict: **{}**).",
                rv.as_str()
            );
        }
    }
    o.push_str("\n\n");
    o.push_str(&super::gates::section(&info.gates));
    o.push_str(&super::gates::world_data(&info.world_label_stats));

    // ---- claim vs measurement
    o.push_str("## Claim vs measurement\n\n");
    if !info.claim.is_empty() {
        let _ = writeln!(
            o,
            "> **Paper's claim:** {}\n",
            info.claim.replace('\n', " ")
        );
    }
    let mut rows = Vec::new();
    for g in d.groups {
        let sfx = if d.groups.len() > 1 {
            format!(" [{}]", g.size)
        } else {
            String::new()
        };
        let (m, v) = headline(d.wins, g);
        let v = gated(v);
        rows.push(vec![
            format!("Win rate of `ppo_seq2seq` vs `ppo_scalar`, all prompts{sfx}"),
            format!("{} average win rate", pct(PAPER_WIN_RATE)),
            m,
            format!("**{}**", v.as_str()),
        ]);
        let (m, v) = lc_headline(d.wins, g, d.metrics);
        let v = gated(v);
        rows.push(vec![
            format!("Length-controlled win rate of `ppo_seq2seq` vs `ppo_scalar`, all prompts{sfx}"),
            "> 50%: the win is not only a length preference of the judge".into(),
            m,
            format!("**{}**", v.as_str()),
        ]);
        if !refusal_claim_applies(d.metrics, g) {
            continue;
        }
        let (m, v) = refusal_headline(d.refusal, g, d.metrics);
        let v = gated(v);
        rows.push(vec![
            format!("Benign refusal rate, `ppo_scalar` − `ppo_seq2seq`{sfx}"),
            "> 0: the seq2seq RM reduces refusal-to-response on benign prompts".into(),
            m,
            format!("**{}**", v.as_str()),
        ]);
    }
    if d.groups.is_empty() {
        rows.push(vec![
            "Win rate and benign refusal".into(),
            format!("{} average win rate", pct(PAPER_WIN_RATE)),
            "generations.csv has no rows".into(),
            format!("**{}**", Verdict::NotMeasured.as_str()),
        ]);
    }
    table(
        &mut o,
        &["Measurement", "Paper", "Ours (pooled, 95% CI)", "Verdict"],
        &rows,
    );
    o.push_str(
        "Verdict rule: **reproduced** if the 95% bootstrap interval lies entirely on the paper's side \
         (win rate > 0.5; refusal difference > 0), **not reproduced** if it lies entirely on the other side, \
         **inconclusive** otherwise. `all` is the union of the in-distribution prompt sets; out-of-distribution \
         sets (`ood_*`) have their own rows below.\n\n",
    );

    // ---- caveats derived from the numbers themselves
    let caveats: Vec<String> = d.groups.iter().flat_map(|g| caveats(d, g)).collect();
    if !caveats.is_empty() {
        o.push_str("## Caveats\n\n");
        for c in caveats {
            let _ = writeln!(o, "- {c}");
        }
        o.push('\n');
    }

    // ---- win rates
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
        info.n_bootstrap
    );
    for g in d.groups {
        group_heading(&mut o, d.groups, g);
        let rows: Vec<Vec<String>> = d
            .wins
            .iter()
            .filter(|r| &r.group == g)
            .map(|r| {
                let seed = match r.seed {
                    SeedKey::Pooled => "**pooled**".to_string(),
                    s => s.to_string(),
                };
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
        table(
            &mut o,
            &[
                "Pair (A vs B)",
                "Prompt set",
                "Seed",
                "n",
                "Win rate of A",
                "95% CI",
                "LC win rate of A",
                "LC 95% CI",
            ],
            &rows,
        );
    }

    // ---- generation metrics
    o.push_str("## Generation metrics (pooled over seeds)\n\n");
    for g in d.groups {
        group_heading(&mut o, d.groups, g);
        let cells: Vec<(String, String)> = {
            let mut seen = Vec::new();
            for r in d
                .metrics
                .iter()
                .filter(|r| &r.group == g && r.seed == SeedKey::Pooled)
            {
                let c = (r.policy.clone(), r.prompt_set.clone());
                if !seen.contains(&c) {
                    seen.push(c);
                }
            }
            // order by policy first (metrics.csv is ordered by policy then set already)
            seen
        };
        // reference columns only for groups whose data has references
        let has_ref = d.metrics.iter().any(|r| &r.group == g && r.metric == "rouge_l_f1");
        let rows: Vec<Vec<String>> = cells
            .iter()
            .map(|(p, s)| {
                let m = |name| pooled_metric(d.metrics, g, p, s, name);
                let mut row = vec![
                    format!("`{p}`"),
                    s.clone(),
                    opt3(m("refusal_rate")),
                    opt3(m("mean_length_tokens")),
                    opt3(m("truncation_rate")),
                    opt3(m("judge_score_mean")),
                ];
                if has_ref {
                    row.extend([opt3(m("rouge_l_f1")), opt3(m("length_ratio"))]);
                }
                row.push(m("n_prompts").map_or("n/a".into(), |n| format!("{n:.1}")));
                row
            })
            .collect();
        let mut header = vec![
            "Policy",
            "Prompt set",
            "Refusal rate",
            "Mean length (tokens)",
            "Truncation rate (hit the length limit)",
            "Judge score",
        ];
        if has_ref {
            header.extend(["ROUGE-L F1 vs reference", "Length / reference length"]);
        }
        header.push("n prompts");
        table(&mut o, &header, &rows);
    }

    // ---- reward models
    o.push_str("## Reward models\n\n");
    o.push_str(
        "From `rm_eval.csv` on held-out preference pairs: `pair_accuracy` (chosen scored above rejected; the judge's \
         row is its own accuracy), `length_score_corr` (correlation of score with response length), `copy_rate` \
         (seq2seq RM output copying its input), and others as logged. Mean over seeds, then each seed.\n\n",
    );
    for g in log_groups_of_rm(d.rm) {
        group_heading(&mut o, d.groups, &g);
        let rm: Vec<&RmSummary> = d.rm.iter().filter(|r| r.group == g).collect();
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
        table(
            &mut o,
            &header.iter().map(String::as_str).collect::<Vec<_>>(),
            &rows,
        );
    }
    if d.rm.is_empty() {
        table(&mut o, &[], &[]);
    }

    // ---- refusal sanity
    o.push_str("## Refusal detector sanity check\n\n");
    o.push_str(
        "Refusal rate of the preference data's own responses, as seen by the refusal detector.\n\n",
    );
    let mut sanity: Vec<&RefusalSanity> = d.sanity.iter().collect();
    sanity.sort_by(|a, b| {
        (&a.source, rank(&["chosen", "rejected"], &a.response_kind))
            .cmp(&(&b.source, rank(&["chosen", "rejected"], &b.response_kind)))
    });
    let rows: Vec<Vec<String>> = sanity
        .iter()
        .map(|r| {
            vec![
                cell(&r.source),
                cell(&r.response_kind),
                r.n.map_or("n/a".into(), |n| format!("{n:.0}")),
                opt3(r.refusal_rate),
            ]
        })
        .collect();
    table(
        &mut o,
        &["Source", "Response kind", "n", "Refusal rate"],
        &rows,
    );

    // ---- PPO end of training
    o.push_str("## PPO at the end of training\n\n");
    o.push_str("Each seed's last logged step, averaged over seeds.\n\n");
    let mut header: Vec<&str> = vec!["RM", "Seeds", "Last step"];
    header.extend(PPO_METRICS);
    let rows: Vec<Vec<String>> = d
        .ppo
        .iter()
        .map(|p| {
            let rm = if d.groups.len() > 1 {
                format!("`{}` [{}]", p.rm, p.group.size)
            } else {
                format!("`{}`", p.rm)
            };
            let mut row = vec![rm, p.n_seeds.to_string(), p.last_step.to_string()];
            row.extend(p.values.iter().map(|v| f3(*v)));
            row
        })
        .collect();
    table(&mut o, &header, &rows);

    // ---- training losses
    o.push_str("## Training losses\n\n");
    let rows: Vec<Vec<String>> = d
        .train
        .iter()
        .map(|t| {
            let stage = if d.groups.len() > 1 {
                format!("{} [{}]", t.stage, t.group.size)
            } else {
                t.stage.clone()
            };
            vec![
                cell(&stage),
                t.n_seeds.to_string(),
                t.last_step.to_string(),
                f3(t.first_loss),
                f3(t.final_loss),
            ]
        })
        .collect();
    table(
        &mut o,
        &["Stage", "Seeds", "Last step", "First loss", "Final loss"],
        &rows,
    );

    // ---- run facts
    o.push_str("## Run facts\n\n");
    let _ = writeln!(o, "- experiment: `{}`", info.experiment);
    let _ = writeln!(o, "- profile: `{}`", info.profile);
    let _ = writeln!(
        o,
        "- device: {}",
        if info.device.is_empty() {
            "unknown"
        } else {
            &info.device
        }
    );
    let _ = writeln!(
        o,
        "- seeds: {}",
        info.seeds
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        o,
        "- bootstrap: {} resamples, seed {}",
        info.n_bootstrap, info.bootstrap_seed
    );
    if !info.spec_file.is_empty() {
        let _ = writeln!(o, "- spec file: `{}`", info.spec_file);
    }
    let _ = writeln!(o, "- total wall time: {:.1} s\n", info.total_seconds);
    if !info.param_counts.is_empty() {
        let rows: Vec<Vec<String>> = info
            .param_counts
            .iter()
            .map(|(k, v)| vec![format!("`{}`", cell(k)), format_count(*v)])
            .collect();
        table(&mut o, &["Model", "Parameters"], &rows);
    }
    if !info.stage_seconds.is_empty() {
        let mut stages: Vec<(&String, &f64)> = info.stage_seconds.iter().collect();
        stages.sort_by_key(|(k, _)| rank(&STAGE_TIME_ORDER, k));
        let rows: Vec<Vec<String>> = stages
            .iter()
            .map(|(k, v)| vec![cell(k), format!("{v:.1}")])
            .collect();
        table(&mut o, &["Stage", "Seconds"], &rows);
    }

    // ---- notes
    if !info.notes.is_empty() {
        o.push_str("## Notes\n\n");
        for n in &info.notes {
            let _ = writeln!(o, "- {}", n.replace('\n', " "));
        }
        o.push('\n');
    }

    // ---- figures
    o.push_str("## Figures\n\n");
    for (name, caption) in FIGURES {
        let _ = writeln!(
            o,
            "**{caption}** ([svg](figures/{name}.svg))\n\n![{name}](figures/{name}.png)\n"
        );
    }

    // ---- regenerate
    o.push_str("## Regenerating\n\n");
    o.push_str(
        "The tables (`metrics.csv`, `win_rates.csv`), the figures and this file are derived only from the inputs \
         in this directory (`generations.csv`, `ppo_log.csv`, `rm_eval.csv`, `train_log.csv`, \
         `refusal_sanity.csv`, `run_info.json`). Rebuild them with\n\n```sh\ns2rm report <dir>\n# or\nmake figures\n```\n",
    );
    o
}

fn seed_list(d: &ReportData) -> Vec<String> {
    if !d.info.seeds.is_empty() {
        return d.info.seeds.iter().map(|s| s.to_string()).collect();
    }
    let s: BTreeSet<i64> = d
        .metrics
        .iter()
        .filter_map(|r| match r.seed {
            SeedKey::Seed(s) => Some(s),
            SeedKey::Pooled => None,
        })
        .collect();
    s.into_iter().map(|s| s.to_string()).collect()
}

fn log_groups_of_rm(rm: &[RmSummary]) -> Vec<Group> {
    let mut v: Vec<Group> = Vec::new();
    for r in rm {
        if !v.contains(&r.group) {
            v.push(r.group.clone());
        }
    }
    v
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
    use crate::report::wins::PairedDiff;

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

    #[test]
    fn a_collapsed_policy_makes_the_refusal_verdict_inconclusive() {
        let g = Group { experiment: "e".into(), size: "s".into() };
        let rates = PairedDiff { n_prompts: 10, a_mean: 0.3, b_mean: 0.0, diff: 0.3, ci_low: 0.1, ci_high: 0.5 };
        let diff = RefusalDiff { group: g.clone(), rates };
        let len = |policy: &str, value: f64| MetricRow {
            group: g.clone(),
            seed: SeedKey::Pooled,
            policy: policy.into(),
            prompt_set: "all".into(),
            metric: "mean_length_tokens",
            value,
        };
        let healthy = vec![len("ppo_scalar", 20.0), len("ppo_seq2seq", 15.0)];
        let (_, v) = refusal_headline(std::slice::from_ref(&diff), &g, &healthy);
        assert_eq!(v, Verdict::Reproduced);
        let collapsed = vec![len("ppo_scalar", 20.0), len("ppo_seq2seq", 1.0)];
        let (text, v) = refusal_headline(std::slice::from_ref(&diff), &g, &collapsed);
        assert_eq!(v, Verdict::Inconclusive);
        assert!(text.contains("`ppo_seq2seq` collapsed"), "{text}");

        // The length-controlled win rate of a collapsed policy is an extrapolation: no verdict.
        let win = WinRow {
            group: g.clone(),
            seed: SeedKey::Pooled,
            policy_a: "ppo_seq2seq".into(),
            policy_b: "ppo_scalar".into(),
            prompt_set: "all".into(),
            n_prompts: 10,
            win_rate: 0.2,
            ci_low: 0.1,
            ci_high: 0.3,
            lc_win_rate: 0.95,
            lc_ci_low: 0.8,
            lc_ci_high: 0.99,
        };
        assert_eq!(lc_headline(std::slice::from_ref(&win), &g, &healthy).1, Verdict::Reproduced);
        let (text, v) = lc_headline(std::slice::from_ref(&win), &g, &collapsed);
        assert_eq!(v, Verdict::Inconclusive);
        assert!(text.contains("`ppo_seq2seq` collapsed"), "{text}");
    }

    #[test]
    fn the_refusal_claim_needs_a_harmful_set() {
        let g = Group { experiment: "e".into(), size: "s".into() };
        let row = |set: &str| MetricRow { group: g.clone(), seed: SeedKey::Pooled, policy: "sft".into(), prompt_set: set.into(), metric: "refusal_rate", value: 0.0 };
        assert!(!refusal_claim_applies(&[row("benign"), row("ood_harmful")], &g), "an OOD harmful set is not the task's");
        assert!(refusal_claim_applies(&[row("benign"), row("harmful")], &g));
    }

    #[test]
    fn caveats_flag_collapse_brevity_loving_and_weak_judges() {
        let g = Group { experiment: "e".into(), size: "s".into() };
        let row = |policy: &str, metric: &'static str, value: f64| MetricRow {
            group: g.clone(),
            seed: SeedKey::Pooled,
            policy: policy.into(),
            prompt_set: "all".into(),
            metric,
            value,
        };
        let metrics = vec![
            row("sft", "judge_score_mean", 0.5),
            row("ppo_scalar", "mean_length_tokens", 12.0),
            row("ppo_seq2seq", "mean_length_tokens", 1.0),
            row("ppo_seq2seq", "judge_score_mean", 0.9),
        ];
        let judge = |acc: f64| RmSummary { group: g.clone(), model: "judge".into(), metric: "pair_accuracy".into(), mean: acc, per_seed: Default::default() };
        let info = RunInfo::default();
        let groups = vec![g.clone()];
        let rm = vec![judge(0.55)];
        let d = ReportData { info: &info, groups: &groups, metrics: &metrics, wins: &[], refusal: &[], rm: &rm, ppo: &[], train: &[], sanity: &[] };
        let c = caveats(&d, &g);
        assert_eq!(c.len(), 3, "{c:?}");
        assert!(c[0].contains("`ppo_seq2seq` collapsed") && c[1].contains("rewards brevity") && c[2].contains("0.550"));
        // A healthy run with a good judge has no caveats.
        let healthy = vec![row("sft", "judge_score_mean", 0.5), row("ppo_scalar", "mean_length_tokens", 12.0), row("ppo_seq2seq", "mean_length_tokens", 9.0)];
        let rm = vec![judge(0.7)];
        let d = ReportData { metrics: &healthy, rm: &rm, ..d };
        assert!(caveats(&d, &g).is_empty());
        // A seq2seq RM that copies rejected responses about as well as chosen ones rewards length.
        let copy = |metric: &str, mean: f64| RmSummary { group: g.clone(), model: "seq2seq_rm".into(), metric: metric.into(), mean, per_seed: Default::default() };
        let both = vec![judge(0.7), copy("token_copy_rate", 0.97), copy("token_copy_rate_rejected", 0.92)];
        let c = caveats(&ReportData { rm: &both, ..d }, &g);
        assert!(c.len() == 1 && c[0].contains("rewarding length") && c[0].contains("92.0%"), "{c:?}");
        let departs = vec![judge(0.7), copy("token_copy_rate", 0.97), copy("token_copy_rate_rejected", 0.55)];
        assert!(caveats(&ReportData { rm: &departs, ..d }, &g).is_empty());
    }
}
