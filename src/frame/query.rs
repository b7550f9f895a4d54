//! `s2rm tables`: filter the tidy frame, optionally pivot it, sort it and print it.
//!
//! Filters are checked against the values the frame holds, so a typo is an error that lists what
//! there is, not an empty table. A pivot cell must be one row of the filtered frame; when several
//! rows land in one cell the error names the columns they differ in.

use super::render::{self, Table};
use anyhow::{Context, Result, bail};
use polars::prelude::*;
use std::collections::BTreeSet;
use std::path::Path;

/// Which seeds' rows to keep.
#[derive(Clone, Debug, PartialEq)]
pub enum SeedSel {
    Pooled,
    All,
    One(String),
}

impl std::str::FromStr for SeedSel {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "pooled" => Ok(Self::Pooled),
            "all" => Ok(Self::All),
            n if n.parse::<u64>().is_ok() => Ok(Self::One(n.to_string())),
            other => Err(format!("`{other}`: expected pooled, all or a seed number such as 1")),
        }
    }
}

/// Which PPO-log steps to keep (other tables have no step).
#[derive(Clone, Debug, PartialEq)]
pub enum StepSel {
    Last,
    All,
    One(i64),
}

impl std::str::FromStr for StepSel {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "last" => Ok(Self::Last),
            "all" => Ok(Self::All),
            n => n.parse().map(Self::One).map_err(|_| format!("`{n}`: expected last, all or a step number such as 99")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Markdown,
    Json,
}

/// Everything `s2rm tables` is asked.
#[derive(Clone, Debug)]
pub struct Query {
    /// (frame column, accepted values); an empty list keeps every value.
    pub filters: Vec<(&'static str, Vec<String>)>,
    pub seed: SeedSel,
    pub step: StepSel,
    /// (row keys, column keys).
    pub pivot: Option<(Vec<String>, Vec<String>)>,
    /// (column, descending).
    pub sort: Vec<(String, bool)>,
    /// Key columns to show (default: those whose values differ between the rows).
    pub columns: Option<Vec<String>>,
    pub format: Format,
    /// Terminal width the table is fitted into.
    pub width: usize,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            filters: vec![("metric", vec!["win_rate".into()])],
            seed: SeedSel::Pooled,
            step: StepSel::Last,
            pivot: None,
            sort: Vec::new(),
            columns: None,
            format: Format::Table,
            width: 100,
        }
    }
}

/// `experiment,size:prompt_set` -> (rows, columns).
pub fn parse_pivot(s: &str) -> std::result::Result<(Vec<String>, Vec<String>), String> {
    let Some((rows, cols)) = s.split_once(':') else {
        return Err(format!("`{s}`: expected ROWS:COLUMNS, e.g. experiment,size:prompt_set"));
    };
    let list = |x: &str| x.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect::<Vec<_>>();
    let (rows, cols) = (list(rows), list(cols));
    if rows.is_empty() || cols.is_empty() {
        return Err(format!("`{s}`: both sides need a column, e.g. experiment,size:prompt_set"));
    }
    Ok((rows, cols))
}

/// `value:desc` -> ("value", true).
pub fn parse_sort(s: &str) -> std::result::Result<(String, bool), String> {
    match s.rsplit_once(':') {
        Some((c, "desc")) => Ok((c.to_string(), true)),
        Some((c, "asc")) => Ok((c.to_string(), false)),
        Some((_, other)) => Err(format!("`{s}`: the order after `:` is asc or desc, not `{other}`")),
        None => Ok((s.to_string(), false)),
    }
}

fn check_column(option: &str, c: &str) -> Result<()> {
    if !super::COLUMNS.contains(&c) {
        bail!("{option}: unknown column `{c}`; the frame's columns are {}", super::COLUMNS.join(", "));
    }
    Ok(())
}

/// The distinct values of a text column, sorted.
pub fn values_of(df: &DataFrame, column: &str) -> Result<BTreeSet<String>> {
    Ok(super::strings(df, column)?.into_iter().collect())
}

/// The rows of the frame a query selects, in the frame's order or `sort`'s.
pub fn select(df: &DataFrame, q: &Query) -> Result<DataFrame> {
    let mut lf = df.clone().lazy();
    for (column, wanted) in &q.filters {
        if wanted.is_empty() {
            continue;
        }
        let known = values_of(df, column)?;
        if let Some(bad) = wanted.iter().find(|w| !known.contains(*w)) {
            let list: Vec<&str> = known.iter().map(String::as_str).filter(|v| !v.is_empty()).collect();
            bail!("--{}: no `{bad}` in the results; known: {}", option_name(column), list.join(", "));
        }
        lf = lf.filter(any_of(col(*column), wanted));
    }
    lf = match &q.seed {
        SeedSel::Pooled => lf.filter(col("seed").eq(lit("pooled"))),
        SeedSel::All => lf,
        SeedSel::One(n) => lf.filter(col("seed").eq(lit(n.as_str()))),
    };
    // the last step is per PPO run (directory, policy, seed, metric): runs may differ in length
    lf = match q.step {
        StepSel::All => lf,
        StepSel::One(s) => lf.filter(col("step").is_null().or(col("step").eq(lit(s)))),
        StepSel::Last => {
            let last = col("step").max().over([col("dir"), col("size"), col("policy"), col("seed"), col("metric")])?;
            lf.filter(col("step").is_null().or(col("step").eq(last)))
        }
    };
    if !q.sort.is_empty() {
        for (c, _) in &q.sort {
            check_column("--sort", c)?;
        }
        let by: Vec<Expr> = q.sort.iter().map(|(c, _)| col(c.as_str())).collect();
        let desc: Vec<bool> = q.sort.iter().map(|s| s.1).collect();
        let opts = SortMultipleOptions::default().with_order_descending_multi(desc).with_maintain_order(true).with_nulls_last(true);
        lf = lf.sort_by_exprs(by, opts);
    }
    let out = super::pl(lf.collect()).context("selecting rows")?;
    if out.height() == 0 {
        bail!("no rows match these filters (they exist, but not together); drop one, or try --seed all");
    }
    Ok(out)
}

fn any_of(c: Expr, values: &[String]) -> Expr {
    values.iter().map(|v| c.clone().eq(lit(v.as_str()))).reduce(|a, b| a.or(b)).unwrap_or(lit(true))
}

/// The command-line option of a filtered column.
fn option_name(column: &str) -> String {
    match column {
        "opponent" => "vs".into(),
        c => c.replace('_', "-"),
    }
}

/// The answer to `s2rm tables`, as the text to print.
pub fn run(results: &Path, q: &Query) -> Result<String> {
    let df = super::load(results)?;
    answer(&df, q)
}

/// [`run`] over a frame already loaded.
pub fn answer(df: &DataFrame, q: &Query) -> Result<String> {
    if let Some(cols) = &q.columns {
        for c in cols {
            check_column("--columns", c)?;
        }
    }
    let rows = select(df, q)?;
    let table = match &q.pivot {
        Some((r, c)) => {
            for k in r.iter().chain(c) {
                check_column("--pivot", k)?;
            }
            pivot(&rows, r, c)?
        }
        // machine-readable long output: every column of the frame, values as they are
        None if matches!(q.format, Format::Csv | Format::Json) => return render::frame(rows, q.format),
        None => long(&rows, q)?,
    };
    Ok(match q.format {
        Format::Table => render::text(&table, q.width),
        Format::Markdown => render::markdown(&table),
        Format::Csv | Format::Json => render::frame(table.to_frame()?, q.format)?,
    })
}

/// A text cell of any column (a step or a count printed as an integer; null as empty).
pub fn cell(df: &DataFrame, column: &str, i: usize) -> Result<String> {
    let v = df.column(column)?.get(i)?;
    Ok(match v {
        AnyValue::Null => String::new(),
        AnyValue::String(s) => s.to_string(),
        AnyValue::StringOwned(s) => s.to_string(),
        AnyValue::Float64(x) if x.fract() == 0.0 && column == "n" => format!("{x:.0}"),
        other => other.to_string(),
    })
}

fn float(df: &DataFrame, column: &str, i: usize) -> Result<Option<f64>> {
    Ok(df.column(column)?.f64()?.get(i))
}

/// One value with its interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Value {
    pub value: Option<f64>,
    pub ci: Option<(f64, f64)>,
}

fn value_at(df: &DataFrame, i: usize) -> Result<Value> {
    let ci = match (float(df, "ci_low", i)?, float(df, "ci_high", i)?) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    };
    Ok(Value { value: float(df, "value", i)?, ci })
}

/// Key columns shown for the rows: the chosen ones, or those that differ between rows (the
/// directory name already says the experiment, variant, profile and tier, so those are then left
/// to the constant line, or out; not the gates, which say whether a row is evidence at all).
fn shown_keys(rows: &DataFrame, q: &Query) -> Result<(Vec<String>, Vec<(String, String)>)> {
    const CANDIDATES: [&str; 13] =
        ["dir", "gates", "tier", "experiment", "size", "profile", "variant", "seed", "policy", "opponent", "prompt_set", "step", "metric"];
    let mut shown = Vec::new();
    let mut constant = Vec::new();
    for c in CANDIDATES {
        let vals = values_of(rows, c)?;
        if vals.len() > 1 {
            shown.push(c.to_string());
        } else if let Some(v) = vals.into_iter().next().filter(|v| !v.is_empty()) {
            constant.push((c.to_string(), v));
        }
    }
    if let Some(c) = &q.columns {
        // the chosen columns; the constant line still says what every row shares
        constant.retain(|(k, _)| !c.contains(k));
        return Ok((c.clone(), constant));
    }
    if shown.iter().any(|c| c == "dir") {
        shown.retain(|c| !matches!(c.as_str(), "tier" | "experiment" | "profile" | "variant"));
    }
    Ok((shown, constant))
}

fn long(rows: &DataFrame, q: &Query) -> Result<Table> {
    let (keys, constant) = shown_keys(rows, q)?;
    let mut t = Table { keys: keys.clone(), value_columns: vec!["value".into()], constant, ..Default::default() };
    let metrics = values_of(rows, "metric")?;
    t.percent_metrics = metrics.into_iter().filter(|m| render::is_rate(m)).collect();
    for i in 0..rows.height() {
        let key = t.keys.iter().map(|k| cell(rows, k, i)).collect::<Result<Vec<_>>>()?;
        t.rows.push((key, vec![Some((cell(rows, "metric", i)?, value_at(rows, i)?))]));
    }
    Ok(t)
}

/// Rows keyed by `row_keys`, one column per distinct value of `col_keys` (in their display
/// order); each cell must be exactly one row of the selection.
pub fn pivot(rows: &DataFrame, row_keys: &[String], col_keys: &[String]) -> Result<Table> {
    let key_at = |keys: &[String], i: usize| keys.iter().map(|k| cell(rows, k, i)).collect::<Result<Vec<_>>>();
    let mut row_order: Vec<Vec<String>> = Vec::new();
    let mut col_order: Vec<Vec<String>> = Vec::new();
    let mut cells: std::collections::BTreeMap<(usize, usize), usize> = Default::default();
    for i in 0..rows.height() {
        let (rk, ck) = (key_at(row_keys, i)?, key_at(col_keys, i)?);
        let r = position_or_push(&mut row_order, rk);
        let c = position_or_push(&mut col_order, ck);
        if let Some(&prev) = cells.get(&(r, c)) {
            let differ: Vec<&str> = super::KEYS
                .iter()
                .copied()
                .filter(|k| cell(rows, k, prev).ok() != cell(rows, k, i).ok())
                .collect();
            // suggest keeping the first row's value of the first column that has a filter option
            const FILTERED: [&str; 11] = ["dir", "experiment", "size", "variant", "tier", "prompt_set", "policy", "opponent", "metric", "seed", "step"];
            let hint = match differ.iter().find(|k| FILTERED.contains(k)) {
                Some(k) => format!(" (e.g. --{} {})", option_name(k), cell(rows, k, prev)?),
                None => String::new(),
            };
            bail!(
                "--pivot: several rows land in cell ({} | {}); they differ in {}: add those columns to the pivot's rows or filter them{hint}",
                row_order[r].join(", "),
                col_order[c].join(", "),
                differ.join(", "),
            );
        }
        cells.insert((r, c), i);
    }
    // columns in display order (prompt sets benign, harmful, OOD, all; seeds numerically; ...)
    let mut cols: Vec<usize> = (0..col_order.len()).collect();
    cols.sort_by_key(|&c| col_keys.iter().zip(&col_order[c]).map(|(k, v)| display_rank(k, v)).collect::<Vec<_>>());
    let metrics = values_of(rows, "metric")?;
    let mut t = Table {
        keys: row_keys.to_vec(),
        value_columns: cols.iter().map(|&c| col_order[c].join("/")).collect(),
        percent_metrics: metrics.into_iter().filter(|m| render::is_rate(m)).collect(),
        ..Default::default()
    };
    let (_, constant) = shown_keys(rows, &Query::default())?;
    t.constant = constant.into_iter().filter(|(k, _)| !row_keys.contains(k) && !col_keys.contains(k)).collect();
    for (r, key) in row_order.iter().enumerate() {
        let mut out = Vec::new();
        for &c in &cols {
            out.push(match cells.get(&(r, c)) {
                Some(&i) => Some((cell(rows, "metric", i)?, value_at(rows, i)?)),
                None => None,
            });
        }
        t.rows.push((key.clone(), out));
    }
    Ok(t)
}

fn position_or_push(v: &mut Vec<Vec<String>>, k: Vec<String>) -> usize {
    v.iter().position(|x| *x == k).unwrap_or_else(|| {
        v.push(k);
        v.len() - 1
    })
}

/// The report's display orders for the columns a pivot spreads: in-distribution prompt sets, then
/// `ood_*`, then the union `all`; seeds and steps numerically (`pooled` last); others by name.
fn display_rank(column: &str, value: &str) -> (usize, usize, i64, String) {
    let order: &[&str] = match column {
        "prompt_set" => &["benign", "harmful", "summary"],
        "policy" | "opponent" => &["sft", "ppo_scalar", "ppo_seq2seq", "scalar_rm", "seq2seq_rm", "judge"],
        "size" => &["nano", "micro", "tiny", "small", "base", "medium", "large", "xl"],
        "tier" => &["world", "from_scratch", "pretrained"],
        _ => &[],
    };
    let group = match value {
        "all" if column == "prompt_set" => 2,
        v if column == "prompt_set" && v.starts_with("ood_") => 1,
        _ => 0,
    };
    let pos = order.iter().position(|o| *o == value).unwrap_or(order.len());
    let num = value.parse::<i64>().unwrap_or(i64::MAX);
    (group, pos, num, value.to_string())
}
