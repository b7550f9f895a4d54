//! The controlled-world section of `results/PAPER.md`: every directory judged by a world's gold
//! reward (worlds, their null controls and ablations), one row each, with its competence gates and
//! the paper's claims measured exactly. Real-data directories never enter it, and worlds never enter
//! the real-data tables or their average (`paper::write_paper` splits the directories by judge).

use super::gates::{failed, gated};
use super::paper::{Run, length_diff, ood_sets};
use super::stats::Verdict;
use super::tables::{Group, pooled_metric};
use super::verdicts::{cell, f3, headline, headline_on, pct, refusal_headline, table, void_if_collapsed};
use super::wins::pooled_win;
use std::fmt::Write;

/// Streams of the world length differences (after `paper.rs`'s real-data streams).
const WORLD_LENGTH_STREAM: u64 = 3 << 32;

pub(super) fn section(o: &mut String, runs: &[Run]) {
    let worlds: Vec<(usize, &Run)> = runs.iter().enumerate().filter(|(_, r)| r.info.judge == "gold").collect();
    if worlds.is_empty() {
        return;
    }
    o.push_str("## Controlled worlds (gold reward, planted biases, controls)\n\n");
    o.push_str(
        "Synthetic versions of the experiments (`experiments/world_*.toml`, `src/world/`): a generated language \
         whose gold reward is a program, so every answer is scored exactly (no judge model) and the bias the paper \
         blames is planted on purpose — a refusal shortcut in the safety pairs, a length preference in the \
         summarization labels — or left out (`null` controls). A verdict counts only where every competence gate \
         passed on every seed; otherwise it is *inconclusive (gate failed)*. Win rates: gold score per prompt, ties \
         ½, 95% bootstrap over prompts.\n\n",
    );
    let mut rows = Vec::new();
    for (ri, run) in &worlds {
        for g in &run.groups {
            let gates = &run.info.gates;
            let bad = failed(gates);
            let gate_cell = if gates.is_empty() {
                "not measured".to_string()
            } else if bad.is_empty() {
                "all pass".to_string()
            } else {
                format!("failed: {}", bad.iter().map(|b| format!("`{b}`")).collect::<Vec<_>>().join(", "))
            };
            let c = claims(run, g, *ri);
            let refusal = match &c.refusal {
                Some((text, v)) => {
                    let rate = |p: &str| pooled_metric(&run.metrics, g, p, "benign", "refusal_rate").map_or("n/a".into(), pct);
                    format!(
                        "SFT {} → scalar {} / seq2seq {}; scalar − seq2seq {text} **{}**",
                        rate("sft"),
                        rate("ppo_scalar"),
                        rate("ppo_seq2seq"),
                        v.as_str()
                    )
                }
                None => "—".to_string(),
            };
            let length = c.length.as_ref().map_or("—".to_string(), |(len, v)| format!("{len} **{}**", v.as_str()));
            let gold = |p: &str| pooled_metric(&run.metrics, g, p, "all", "judge_score_mean").map_or("n/a".into(), f3);
            let ood: Vec<String> = ood_sets(run, g)
                .iter()
                .filter(|set| pooled_win(&run.wins, g, "ppo_seq2seq", "ppo_scalar", set).is_some())
                .map(|set| {
                    let (text, v) = headline_on(&run.wins, g, set);
                    format!("`{}` {text} **{}**", cell(set), gated(v, gates).as_str())
                })
                .collect();
            rows.push(vec![
                format!("`{}`", cell(&run.name)),
                format!("`{}` ({})", cell(&run.info.profile), run.info.seeds.len()),
                gate_cell,
                format!("{} / {} / {}", gold("sft"), gold("ppo_scalar"), gold("ppo_seq2seq")),
                format!("{} **{}**", c.win.0, c.win.1.as_str()),
                refusal,
                length,
                if ood.is_empty() { "—".to_string() } else { ood.join("; ") },
            ]);
        }
    }
    table(
        o,
        &[
            "Directory",
            "Profile (seeds)",
            "Gates",
            "Mean gold: SFT / scalar / seq2seq",
            "Win rate seq2seq vs scalar, all (> 50%)",
            "Benign refusal (scalar − seq2seq > 0)",
            "Length, scalar − seq2seq (> 0: scalar longer)",
            "OOD win rate seq2seq vs scalar (> 50%)",
        ],
        &rows,
    );
    claims_under_control(o, runs);
    let _ = writeln!(
        o,
        "Reading: a bias claim holds under control when it is *reproduced* in the planted world and the same \
         difference is absent (*inconclusive* or *not reproduced*) in its `null` control. Verdicts void by a failed \
         gate say nothing about the method; see each directory's `REPORT.md` for the gates' numbers.\n"
    );
}

/// One world directory's three claims for group `g`, each its text and its verdict gated by the
/// directory's competence gates; `None` where a claim does not apply (the refusal claim needs benign
/// prompts; the length claim is the summarization world's, since a safety world's refusals are
/// short by nature). `ri` picks the run's bootstrap stream for the length difference.
struct Claims {
    win: (String, Verdict),
    refusal: Option<(String, Verdict)>,
    length: Option<(String, Verdict)>,
}

fn claims(run: &Run, g: &Group, ri: usize) -> Claims {
    let gate = |(text, v): (String, Verdict)| (text, gated(v, &run.info.gates));
    let refusal =
        pooled_metric(&run.metrics, g, "sft", "benign", "refusal_rate").map(|_| gate(refusal_headline(&run.refusal, g, &run.metrics)));
    let length = is_summary(run).then(|| {
        let (len, v) = length_diff(run, g, "ppo_scalar", "ppo_seq2seq", WORLD_LENGTH_STREAM + ri as u64);
        gate(void_if_collapsed(len, v, &run.metrics, g, "the length difference is not evidence"))
    });
    Claims { win: gate(headline(&run.wins, g)), refusal, length }
}

impl Claims {
    /// The gated verdict of `claim`, if it applies.
    fn verdict(&self, claim: Claim) -> Option<Verdict> {
        match claim {
            Claim::Refusal => self.refusal.as_ref().map(|c| c.1),
            Claim::Length => self.length.as_ref().map(|c| c.1),
            Claim::WinRate => Some(self.win.1),
        }
    }
}

#[derive(Clone, Copy)]
enum Claim {
    Refusal,
    Length,
    WinRate,
}

/// One sentence per (world, claim): does the claim hold under control? It holds when it is
/// reproduced in the planted world (profile `default`) and not in its `null` control.
pub(super) fn claims_under_control(o: &mut String, runs: &[Run]) {
    let mut lines = Vec::new();
    let experiments: std::collections::BTreeSet<&str> =
        runs.iter().filter(|r| r.info.judge == "gold").map(|r| r.info.experiment.as_str()).collect();
    for e in experiments {
        let of = |profile: &str| {
            runs.iter().enumerate().find(|(_, r)| {
                r.info.judge == "gold" && r.info.experiment == e && r.info.profile == profile && r.name == dir_of(e, profile)
            })
        };
        let Some((pi, planted)) = of("default") else { continue };
        let Some(g) = planted.groups.first() else { continue };
        let planted_claims = claims(planted, g, pi);
        let null = of("null");
        let null_claims = null.and_then(|(ni, n)| Some(claims(n, n.groups.first()?, ni)));
        for (claim, what) in [
            (Claim::Refusal, "the scalar-RM policy refuses benign prompts more than the seq2seq-RM policy (refusal-to-response)"),
            (Claim::Length, "the scalar-RM policy answers longer than the seq2seq-RM policy (long-response bias)"),
            (Claim::WinRate, "the seq2seq-RM policy wins against the scalar-RM policy (gold win rate > 50%)"),
        ] {
            let Some(pv) = planted_claims.verdict(claim) else { continue };
            let nv = null_claims.as_ref().and_then(|c| c.verdict(claim));
            let null_failed = null.map(|(_, n)| failed(&n.info.gates)).unwrap_or_default();
            let control = match nv {
                Some(v) if null_failed.is_empty() => format!("null control: **{}**", v.as_str()),
                Some(_) => format!(
                    "null control: gate(s) {} failed, so it controls nothing",
                    null_failed.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ")
                ),
                None => "no null control run".to_string(),
            };
            // A null control that failed its gates is no control at all.
            let nv = if null_failed.is_empty() { nv } else { None };
            let outcome = match (pv, nv) {
                (Verdict::Reproduced, Some(Verdict::Inconclusive | Verdict::NotReproduced)) => "**holds under control**",
                (Verdict::Reproduced, Some(Verdict::Reproduced)) => "reproduced, but also without the planted bias: not attributable to it",
                (Verdict::Reproduced, _) => "reproduced in the planted world (no usable control)",
                (Verdict::NotReproduced, _) => "**does not hold** here (the interval lies on the other side)",
                _ => "inconclusive",
            };
            lines.push(format!("- `{e}`: {what} — planted world: **{}**, {control}: {outcome}.", pv.as_str()));
        }
    }
    if !lines.is_empty() {
        o.push_str("### Which claims hold under control\n\n");
        for l in lines {
            let _ = writeln!(o, "{l}");
        }
        o.push('\n');
    }
}

/// The directory `make reproduce-worlds` writes a world's profile to.
fn dir_of(experiment: &str, profile: &str) -> String {
    if profile == "default" { experiment.to_string() } else { format!("{experiment}_{profile}") }
}

/// A summarization world (its in-distribution prompt set is `summary`).
fn is_summary(run: &Run) -> bool {
    run.gens.iter().any(|g| g.prompt_set == "summary")
}
