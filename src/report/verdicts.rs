//! The claims' measurements as text with a verdict, the caveats that follow from the numbers, and
//! the Markdown helpers that `REPORT.md`, `PAPER.md` and the gates section share.

use super::gates::JUDGE_GOAL;
use super::inputs::RefusalSanity;
use super::inputs::RunInfo;
use super::logs::{PpoFinal, RmSummary, TrainFinal};
use super::stats::{Verdict, verdict};
use super::tables::{Group, MetricRow, pooled_metric};
use super::wins::{RefusalDiff, WinRow, pooled_win};
use std::fmt::Write;

/// The paper's headline: average win rate of the seq2seq-RM policy over the scalar-RM policy.
pub const PAPER_WIN_RATE: f64 = 0.769;
/// Below this pooled mean response length (tokens) a policy's answers are essentially empty: rule
/// metrics such as the refusal rate then say nothing about how it behaves.
pub const DEGENERATE_MEAN_LENGTH: f64 = 3.0;
/// A seq2seq RM that copies rejected responses almost as faithfully as chosen ones pays `r_pos` for
/// nearly every token of any answer: the divergence rule then rewards length.
pub const COPIES_BOTH_RATIO: f64 = 0.9;

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
    /// Every answer, for the sample-answers section.
    pub generations: &'a [super::inputs::Generation],
    /// Whether the seq2seq RM's curve was measured (`rm_curve.csv`, figure `rm_curve`).
    pub rm_curve: bool,
}

impl ReportData<'_> {
    /// ` [size]` after a label, when the directory holds several (experiment, size) groups.
    pub fn suffix(&self, g: &Group) -> String {
        if self.groups.len() > 1 { format!(" [{}]", g.size) } else { String::new() }
    }
}

/// Three decimals, `n/a` for missing values.
pub fn f3(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let s = format!("{x:.3}");
    if s == "-0.000" { "0.000".into() } else { s }
}

pub fn pct(x: f64) -> String {
    if x.is_finite() { format!("{:.1}%", 100.0 * x) } else { "n/a".into() }
}

pub fn opt3(x: Option<f64>) -> String {
    x.map_or("n/a".into(), f3)
}

pub fn bold(v: Verdict) -> String {
    format!("**{}**", v.as_str())
}

/// Keep user text from breaking a table row.
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

pub fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "unknown" } else { s }
}

pub fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        out.push_str("_No rows in the input._\n\n");
        return;
    }
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}|", vec!["---"; header.len()].join("|"));
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out.push('\n');
}

fn not_measured(why: &str) -> (String, Verdict) {
    (format!("not measured ({why})"), Verdict::NotMeasured)
}

/// The headline verdict row pieces: (measurement, verdict) for seq2seq vs scalar on all prompts.
pub fn headline(wins: &[WinRow], g: &Group) -> (String, Verdict) {
    headline_on(wins, g, "all")
}

/// [`headline`] on one prompt set.
pub fn headline_on(wins: &[WinRow], g: &Group, set: &str) -> (String, Verdict) {
    match pooled_win(wins, g, "ppo_seq2seq", "ppo_scalar", set) {
        Some(r) => (
            format!("{} [{}, {}] (n = {} prompts)", pct(r.win_rate), pct(r.ci_low), pct(r.ci_high), r.n_prompts),
            verdict(r.ci_low, r.ci_high, 0.5),
        ),
        None => not_measured("policies missing"),
    }
}

/// The length-controlled counterpart of [`headline`]: the win rate at equal response lengths. A
/// collapsed PPO policy voids it (equal length lies outside the data: an extrapolation).
pub fn lc_headline(wins: &[WinRow], g: &Group, metrics: &[MetricRow]) -> (String, Verdict) {
    let Some(r) = pooled_win(wins, g, "ppo_seq2seq", "ppo_scalar", "all") else { return not_measured("policies missing") };
    let text = format!(
        "{} [{}, {}] (raw {}, n = {} prompts)",
        pct(r.lc_win_rate),
        pct(r.lc_ci_low),
        pct(r.lc_ci_high),
        pct(r.win_rate),
        r.n_prompts
    );
    void_if_collapsed(text, verdict(r.lc_ci_low, r.lc_ci_high, 0.5), metrics, g, "its length comparison is not evidence")
}

/// Where the paper's 76.9% falls relative to our interval, as a short clause.
pub fn paper_vs_interval(wins: &[WinRow], g: &Group) -> &'static str {
    match pooled_win(wins, g, "ppo_seq2seq", "ppo_scalar", "all") {
        Some(r) if r.ci_high < PAPER_WIN_RATE => ", above our interval",
        Some(r) if r.ci_low > PAPER_WIN_RATE => ", below our interval",
        Some(r) if r.ci_low.is_finite() => ", inside our interval",
        _ => "",
    }
}

/// PPO policies of a group whose pooled mean response length over all prompts is below
/// [`DEGENERATE_MEAN_LENGTH`], with that length.
pub fn degenerate_policies(metrics: &[MetricRow], g: &Group) -> Vec<(&'static str, f64)> {
    ["ppo_scalar", "ppo_seq2seq"]
        .into_iter()
        .filter_map(|p| {
            pooled_metric(metrics, g, p, "all", "mean_length_tokens").filter(|&len| len < DEGENERATE_MEAN_LENGTH).map(|len| (p, len))
        })
        .collect()
}

/// The refusal comparison. A lower refusal rate is no evidence when the policy barely answers, so
/// a degenerate PPO policy turns the verdict into `inconclusive` and says why.
pub fn refusal_headline(refusal: &[RefusalDiff], g: &Group, metrics: &[MetricRow]) -> (String, Verdict) {
    let Some(RefusalDiff { rates: r, .. }) = refusal.iter().find(|r| &r.group == g) else {
        return ("not measured (no benign prompts for both PPO policies)".into(), Verdict::NotMeasured);
    };
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

/// Warnings that follow from the measurements: collapsed policies, a weak judge, and a judge that
/// rates near-empty answers above the SFT policy's (it then rewards brevity, not quality).
pub fn caveats(d: &ReportData, g: &Group) -> Vec<String> {
    let mut out = policy_caveats(d, g);
    out.extend(judge_caveat(d, g));
    out.extend(length_reward_caveat(d, g));
    out
}

fn rm_mean(d: &ReportData, g: &Group, model: &str, metric: &str) -> Option<f64> {
    d.rm.iter().find(|r| &r.group == g && r.model == model && r.metric == metric).map(|r| r.mean)
}

/// The caveat about a seq2seq RM whose rejected-input copy rate is close to its chosen-input one.
pub fn length_reward_caveat(d: &ReportData, g: &Group) -> Option<String> {
    let sfx = d.suffix(g);
    let of = |metric: &str| rm_mean(d, g, "seq2seq_rm", metric);
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
    let sfx = d.suffix(g);
    let score = |p: &str| pooled_metric(d.metrics, g, p, "all", "judge_score_mean");
    for (p, len) in degenerate_policies(d.metrics, g) {
        out.push(format!(
            "`{p}`{sfx} collapsed to near-empty answers (mean {len:.2} tokens over all prompts): PPO found that saying \
             almost nothing maximises its reward. Its refusal rate is not evidence of helpfulness."
        ));
        if let (Some(sft), Some(score)) = (score("sft"), score(p))
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

/// The caveat about a judge whose held-out pair accuracy is below its gate ([`JUDGE_GOAL`]), overall
/// or on one kind of prompt (benign / harmful, as the eval sets are split): a judge that fails its
/// gate always gets it, and one that passes overall is still named for the kind it fails on.
pub fn judge_caveat(d: &ReportData, g: &Group) -> Option<String> {
    let acc = rm_mean(d, g, "judge", "pair_accuracy")?;
    let weak: Vec<String> = crate::data::KINDS
        .iter()
        .filter_map(|k| Some((k, rm_mean(d, g, "judge", &format!("{}{k}", crate::eval::BY_KIND))?)))
        .filter(|(_, a)| *a < JUDGE_GOAL)
        .map(|(k, a)| format!("{} on {k} prompts", f3(a)))
        .collect();
    let mut c = if acc < JUDGE_GOAL {
        format!(
            "The judge's held-out pair accuracy{} is {}, below {}: its preferences are weak evidence, and win \
             rates measure what this judge prefers rather than what people prefer.",
            d.suffix(g),
            f3(acc),
            f3(JUDGE_GOAL)
        )
    } else if !weak.is_empty() {
        format!("The judge's held-out pair accuracy{} is {} overall.", d.suffix(g), f3(acc))
    } else {
        return None;
    };
    if !weak.is_empty() {
        c.push_str(&format!(
            " By kind of prompt it is below {} at {}: the win rates on those prompt sets rest on it.",
            f3(JUDGE_GOAL),
            weak.join(" and ")
        ));
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::inputs::RunInfo;
    use crate::report::tables::SeedKey;
    use crate::report::wins::PairedDiff;

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
        let row = |set: &str| MetricRow {
            group: g.clone(),
            seed: SeedKey::Pooled,
            policy: "sft".into(),
            prompt_set: set.into(),
            metric: "refusal_rate",
            value: 0.0,
        };
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
        let judge = |acc: f64| RmSummary {
            group: g.clone(),
            model: "judge".into(),
            metric: "pair_accuracy".into(),
            mean: acc,
            per_seed: Default::default(),
        };
        let info = RunInfo::default();
        let groups = vec![g.clone()];
        let rm = vec![judge(0.55)];
        let d = ReportData {
            info: &info,
            groups: &groups,
            metrics: &metrics,
            wins: &[],
            refusal: &[],
            rm: &rm,
            ppo: &[],
            train: &[],
            sanity: &[],
            generations: &[],
            rm_curve: false,
        };
        let c = caveats(&d, &g);
        assert_eq!(c.len(), 3, "{c:?}");
        assert!(c[0].contains("`ppo_seq2seq` collapsed") && c[1].contains("rewards brevity") && c[2].contains("0.550"));
        // A healthy run with a good judge has no caveats.
        let healthy = vec![
            row("sft", "judge_score_mean", 0.5),
            row("ppo_scalar", "mean_length_tokens", 12.0),
            row("ppo_seq2seq", "mean_length_tokens", 9.0),
        ];
        let rm = vec![judge(0.7)];
        let d = ReportData { metrics: &healthy, rm: &rm, ..d };
        assert!(caveats(&d, &g).is_empty());
        // A seq2seq RM that copies rejected responses about as well as chosen ones rewards length.
        let copy = |metric: &str, mean: f64| RmSummary {
            group: g.clone(),
            model: "seq2seq_rm".into(),
            metric: metric.into(),
            mean,
            per_seed: Default::default(),
        };
        let both = vec![judge(0.7), copy("token_copy_rate", 0.97), copy("token_copy_rate_rejected", 0.92)];
        let c = caveats(&ReportData { rm: &both, ..d }, &g);
        assert!(c.len() == 1 && c[0].contains("rewarding length") && c[0].contains("92.0%"), "{c:?}");
        let departs = vec![judge(0.7), copy("token_copy_rate", 0.97), copy("token_copy_rate_rejected", 0.55)];
        assert!(caveats(&ReportData { rm: &departs, ..d }, &g).is_empty());
        // A judge that passes overall but not on one kind of prompt is named for that kind.
        let kind = |k: &str, mean: f64| RmSummary { metric: format!("pair_accuracy_{k}"), ..judge(mean) };
        let by_kind = vec![judge(0.7), kind("harmful", 0.75), kind("benign", 0.514)];
        let c = caveats(&ReportData { rm: &by_kind, ..d }, &g);
        assert!(c.len() == 1 && c[0].contains("0.700 overall") && c[0].contains("0.514 on benign prompts") && !c[0].contains("harmful"), "{c:?}");
        let good = vec![judge(0.7), kind("harmful", 0.75), kind("benign", 0.66)];
        assert!(caveats(&ReportData { rm: &good, ..d }, &g).is_empty());
        let weak = vec![judge(0.611), kind("harmful", 0.625), kind("benign", 0.514)];
        let c = caveats(&ReportData { rm: &weak, ..d }, &g);
        assert!(c.len() == 1 && c[0].contains("is 0.611, below 0.650") && c[0].contains("0.625 on harmful prompts and 0.514 on benign prompts"), "{c:?}");
    }
}
