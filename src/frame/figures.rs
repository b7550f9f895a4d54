//! Paper-level figures over every results directory, from the tidy frame, written by
//! `s2rm paper` (so `make figures`) into `<results>/figures/` as PNG + SVG:
//!
//! - `paper_win_rates`: the seq2seq-vs-scalar win rate on the in-distribution prompts (`all`),
//!   pooled over seeds, with its 95% interval, per directory (every task × size, world, control
//!   and ablation), and the 50% line; a directory whose competence gates failed is marked `✗` (its
//!   win rate is not evidence);
//! - `paper_refusal`: the benign refusal rate of the SFT, scalar-RM and seq2seq-RM policies per
//!   directory (the summarization tasks, which have no benign requests, are left out);
//! - `paper_length`: each policy's mean response length relative to the reference: the data's
//!   reference answer where it has one (the pooled `length_ratio`), else the SFT policy (PPO's
//!   reference policy; its bar is then 1).

use crate::report::figures::{Bar, BarChart, save_sized};
use anyhow::Result;
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

pub const PAPER_FIGURES: [&str; 3] = ["paper_win_rates", "paper_refusal", "paper_length"];
const SIZE: (u32, u32) = (2000, 700);
const X_DESC: &str = "results directory (WS = world_safety, WSum = world_summarization, help = helpfulness, summ = summarization)";
const POLICIES: [&str; 3] = ["sft", "ppo_scalar", "ppo_seq2seq"];

/// Pooled (value, interval) per (dir, policy, opponent, prompt set, metric).
type Cells = BTreeMap<(String, String, String, String, String), (f64, Option<(f64, f64)>)>;

fn pooled_cells(df: &DataFrame) -> Result<Cells> {
    let sel = df
        .clone()
        .lazy()
        .filter(col("seed").eq(lit("pooled")).and(col("table").eq(lit("win_rates")).or(col("table").eq(lit("metrics")))))
        .collect()?;
    let s = |c: &str| super::strings(&sel, c);
    let f = |c: &str| super::floats(&sel, c);
    let (dir, pol, opp, set, met) = (s("dir")?, s("policy")?, s("opponent")?, s("prompt_set")?, s("metric")?);
    let (v, lo, hi) = (f("value")?, f("ci_low")?, f("ci_high")?);
    let mut out = Cells::new();
    for i in 0..sel.height() {
        let Some(value) = v[i] else { continue };
        let ci = lo[i].zip(hi[i]);
        out.insert((dir[i].clone(), pol[i].clone(), opp[i].clone(), set[i].clone(), met[i].clone()), (value, ci));
    }
    Ok(out)
}

fn get(c: &Cells, dir: &str, policy: &str, opponent: &str, set: &str, metric: &str) -> Option<(f64, Option<(f64, f64)>)> {
    c.get(&(dir.into(), policy.into(), opponent.into(), set.into(), metric.into())).copied()
}

/// Directory names made short enough for a crowded axis.
fn short(dir: &str) -> String {
    let d = dir.replace("world_summarization", "WSum").replace("world_safety", "WS").replace("summarization", "summ").replace("helpfulness", "help");
    match d.split_once('_') {
        Some((w @ ("WS" | "WSum"), rest)) => format!("{w}·{rest}"),
        _ => d,
    }
}

fn dirs(c: &Cells) -> Vec<String> {
    let mut d: Vec<String> = c.keys().map(|k| k.0.clone()).collect();
    d.dedup();
    d
}

/// The `gates` column per directory (`pass`, `fail K/N`, `none`).
fn gates_of(df: &DataFrame) -> Result<BTreeMap<String, String>> {
    Ok(super::strings(df, "dir")?.into_iter().zip(super::strings(df, "gates")?).collect())
}

pub fn win_rates(c: &Cells, gates: &BTreeMap<String, String>) -> BarChart {
    let mut cats = Vec::new();
    let mut bars = Vec::new();
    for d in dirs(c) {
        if let Some((v, ci)) = get(c, &d, "ppo_seq2seq", "ppo_scalar", "all", "win_rate") {
            let failed = gates.get(&d).is_some_and(|g| g.starts_with("fail"));
            cats.push(if failed { format!("{} ✗", short(&d)) } else { short(&d) });
            bars.push(Some(Bar { value: v, err: ci, points: vec![] }));
        }
    }
    BarChart {
        title: "Win rate of the seq2seq-RM policy vs the scalar-RM policy, in-distribution prompts (paper: 76.9%)".into(),
        x_desc: format!("{X_DESC}; ✗ = a competence gate failed (not evidence)"),
        y_desc: "win rate (pooled over seeds, 95% CI)".into(),
        categories: cats,
        series: vec![("ppo_seq2seq vs ppo_scalar".into(), "ppo_seq2seq".into(), bars)],
        y_max: 1.2,
        hline: Some((0.5, "0.5 (no preference)".into())),
        value_label: Some(|v| format!("{:.0}", 100.0 * v)),
    }
}

fn by_policy(dirs: &[String], value: impl Fn(&str, &str) -> Option<f64>) -> Vec<(String, String, Vec<Option<Bar>>)> {
    POLICIES
        .iter()
        .map(|p| {
            let bars = dirs.iter().map(|d| value(d, p).map(|v| Bar { value: v, err: None, points: vec![] })).collect();
            (p.to_string(), p.to_string(), bars)
        })
        .collect()
}

pub fn refusal(c: &Cells) -> BarChart {
    let ds: Vec<String> = dirs(c)
        .into_iter()
        .filter(|d| !d.contains("summarization") && get(c, d, "sft", "", "benign", "refusal_rate").is_some())
        .collect();
    BarChart {
        title: "Benign refusal rate per policy (pooled over seeds)".into(),
        x_desc: X_DESC.into(),
        y_desc: "refusal rate on benign prompts".into(),
        categories: ds.iter().map(|d| short(d)).collect(),
        series: by_policy(&ds, |d, p| get(c, d, p, "", "benign", "refusal_rate").map(|v| v.0)),
        y_max: 1.2,
        hline: None,
        value_label: Some(|v| format!("{:.0}", 100.0 * v)),
    }
}

/// A policy's length relative to the reference answer (where the data has one) or to SFT.
fn relative_length(c: &Cells, dir: &str, policy: &str) -> Option<f64> {
    if let Some((r, _)) = get(c, dir, policy, "", "all", "length_ratio") {
        return Some(r);
    }
    let len = |p: &str| get(c, dir, p, "", "all", "mean_length_tokens").map(|v| v.0);
    Some(len(policy)? / len("sft").filter(|l| *l > 0.0)?)
}

pub fn length(c: &Cells) -> BarChart {
    let ds: Vec<String> = dirs(c).into_iter().filter(|d| relative_length(c, d, "sft").is_some()).collect();
    let max = ds.iter().flat_map(|d| POLICIES.iter().filter_map(|p| relative_length(c, d, p))).fold(1.0_f64, f64::max);
    let categories = ds
        .iter()
        .map(|d| {
            let by_ref = get(c, d, "sft", "", "all", "length_ratio").is_some();
            format!("{}{}", short(d), if by_ref { " (ref)" } else { "" })
        })
        .collect();
    BarChart {
        title: "Mean response length relative to the reference: the data's reference answer (ref) or the SFT policy".into(),
        x_desc: X_DESC.into(),
        y_desc: "length ÷ reference length".into(),
        categories,
        series: by_policy(&ds, |d, p| relative_length(c, d, p)),
        y_max: (max * 1.15).max(1.2),
        hline: Some((1.0, "1 = the reference's length".into())),
        value_label: Some(|v| format!("{v:.2}")),
    }
}

/// Write the paper-level figures into `<results>/figures/`.
pub fn write(results: &Path, df: &DataFrame) -> Result<()> {
    let c = pooled_cells(df)?;
    save_sized(results, PAPER_FIGURES[0], &win_rates(&c, &gates_of(df)?), SIZE)?;
    save_sized(results, PAPER_FIGURES[1], &refusal(&c), SIZE)?;
    save_sized(results, PAPER_FIGURES[2], &length(&c), SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_figures_hold_every_directory_and_the_right_reference() {
        let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
        let df = super::super::load(&results).unwrap();
        let c = pooled_cells(&df).unwrap();
        let w = win_rates(&c, &gates_of(&df).unwrap());
        let n_dirs = dirs(&c).len();
        assert!(n_dirs >= 10, "{n_dirs}");
        assert_eq!(w.categories.len(), n_dirs, "every directory has a seq2seq-vs-scalar win rate");
        // real data from scratch fails its gates (judge, scalar RM, copy): marked too
        let safety = w.categories.iter().position(|x| x == "safety ✗").unwrap();
        let bar = w.series[0].2[safety].as_ref().unwrap();
        assert!((bar.value - 0.220833).abs() < 1e-9 && bar.err.is_some(), "{bar:?}");
        // the world that passed every gate is unmarked, its null control (copy gate) is marked
        assert!(w.categories.contains(&"WS".to_string()) && w.categories.contains(&"WS·null ✗".to_string()), "{:?}", w.categories);
        let r = refusal(&c);
        assert!(r.categories.iter().all(|x| !x.contains("summ")), "{:?}", r.categories);
        assert!(r.categories.contains(&"WS·null".to_string()), "{:?}", r.categories);
        // summarization has references: its SFT bar is the length ratio, not 1
        let l = length(&c);
        let summ = l.categories.iter().position(|x| x == "summ (ref)").unwrap();
        let sft = l.series[0].2[summ].as_ref().unwrap().value;
        assert!((sft - 1.009696).abs() < 1e-9, "{sft}");
        let help = l.categories.iter().position(|x| x == "help").unwrap();
        assert_eq!(l.series[0].2[help].as_ref().unwrap().value, 1.0);
    }
}
