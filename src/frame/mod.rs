//! Every results directory as one tidy polars frame: one row per (directory, table, seed, policy,
//! opponent, prompt set, PPO step, metric) with its value and, where the table has one, its 95%
//! interval. `s2rm tables` and the paper-level figures read this frame.
//!
//! Sources, per directory (lazy CSV scans, every column read as text and cast explicitly so that a
//! `pooled` seed or an empty cell never changes a column's type between directories):
//! - `win_rates.csv` -> metrics `win_rate` and `lc_win_rate` (policy = policy A, opponent = B);
//! - `metrics.csv` -> its metrics as they are;
//! - `rm_eval.csv` -> its metrics, policy = the model (`scalar_rm`, `seq2seq_rm`, `judge`);
//! - `ppo_log.csv` -> `ppo_<column>` per step, policy = `ppo_<rm>`, prompt set `rollouts`.
//!
//! `rm_eval.csv` and `ppo_log.csv` have no pooled rows; the frame adds them (mean over seeds) so
//! that `--seed pooled` means the same thing for every table. Each directory's `run_info.json`
//! gives the columns `profile`, `device`, `seeds`, `tier`, `gates` (`pass`, `fail 2/4` (the directory's
//! `gates.csv` names them), or `none` where no competence gate was measured) and (with the directory name) `variant`, joined on
//! `dir`. A directory's numbers with `fail K/N` are not evidence (its verdicts are inconclusive).


pub mod figures;
pub mod query;
mod render;

use anyhow::{Context, Result, bail};
use polars::prelude::*;
use std::path::Path;

/// The frame's columns, in order.
pub const COLUMNS: [&str; 20] = [
    "dir", "tier", "gates", "experiment", "size", "profile", "variant", "device", "seeds", "table", "seed",
    "policy", "opponent", "prompt_set", "step", "metric", "value", "ci_low", "ci_high", "n",
];

/// The key columns (what identifies a row), in display order.
pub const KEYS: [&str; 16] = [
    "dir", "tier", "gates", "experiment", "size", "profile", "variant", "device", "seeds", "table", "seed",
    "policy", "opponent", "prompt_set", "step", "metric",
];

/// A results directory is one that holds any of these tables (e.g. `results/bench` holds none).
const TABLES: [&str; 4] = ["win_rates.csv", "metrics.csv", "rm_eval.csv", "ppo_log.csv"];

/// The columns each table must have.
const REQUIRED: [(&str, &[&str]); 4] = [
    ("win_rates.csv", &["experiment", "size", "seed", "policy_a", "policy_b", "prompt_set", "n_prompts", "win_rate", "ci_low", "ci_high", "lc_win_rate", "lc_ci_low", "lc_ci_high"]),
    ("metrics.csv", &["experiment", "size", "seed", "policy", "prompt_set", "metric", "value"]),
    ("rm_eval.csv", &["experiment", "size", "seed", "model", "metric", "value"]),
    ("ppo_log.csv", &["experiment", "size", "seed", "rm", "step"]),
];

/// The PPO-log columns that become metrics (`ppo_<name>`); absent ones are skipped.
const PPO_COLUMNS: [&str; 9] = [
    "rm_reward", "kl", "response_length", "refusal_rate", "entropy", "policy_loss", "value_loss",
    "clip_frac", "truncated_rate",
];

/// What `run_info.json` (and the directory name) says about one results directory.
#[derive(Clone, Debug, PartialEq)]
pub struct RunMeta {
    pub dir: String,
    pub experiment: String,
    pub profile: String,
    /// What the directory adds to its experiment and size: `default`, or e.g. `mean_scaling`,
    /// `null` (the directory name without the experiment prefix and the `_<size>` suffix).
    pub variant: String,
    pub device: String,
    /// The seeds, comma-separated.
    pub seeds: String,
    /// `world` (a controlled world, gold judge), `pretrained` or `from_scratch`.
    pub tier: String,
    /// The competence gates over all seeds: `pass`, `fail 2/4` (gates failed on some seed of
    /// those with a goal), or `none` (not measured).
    pub gates: String,
}

impl RunMeta {
    pub fn load(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join("run_info.json");
        if !path.is_file() {
            bail!(
                "{}: no run_info.json (every directory `s2rm run` writes has one; move this directory out of the results folder or point --results elsewhere)",
                dir.display()
            );
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let j: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?;
        let s = |k: &str| j.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let experiment = s("experiment");
        let preset = j.pointer("/model/preset").and_then(|v| v.as_str()).unwrap_or("");
        let seeds = j.get("seeds").and_then(|v| v.as_array()).map_or(String::new(), |a| {
            a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
        });
        let profile = s("profile");
        let pretrained = j.pointer("/model/checkpoint").is_some_and(|v| !v.is_null())
            || matches!(profile.as_str(), "gpu" | "pretrained");
        let gates = crate::report::gates_of(path.parent().unwrap_or(Path::new(".")), &j)?;
        let failed = crate::report::gates::failed(&gates);
        let gates = if gates.iter().all(|g| g.goal.is_none()) {
            "none".to_string()
        } else if failed.is_empty() {
            "pass".to_string()
        } else {
            let n = gates.iter().filter(|g| g.goal.is_some()).map(|g| &g.gate).collect::<std::collections::BTreeSet<_>>().len();
            format!("fail {}/{n}", failed.len())
        };
        let tier = if s("judge") == "gold" {
            "world"
        } else if pretrained {
            "pretrained"
        } else {
            "from_scratch"
        };
        Ok(Self {
            dir: name.to_string(),
            variant: variant_of(name, &experiment, preset),
            experiment,
            profile,
            device: s("device"),
            seeds,
            tier: tier.to_string(),
            gates,
        })
    }
}

/// `safety_mean_scaling` (experiment `safety`) -> `mean_scaling`; `safety_small` (preset `small`)
/// and `safety` -> `default`; a name not starting with the experiment stays as it is.
fn variant_of(dir: &str, experiment: &str, preset: &str) -> String {
    let Some(rest) = dir.strip_prefix(experiment) else { return dir.to_string() };
    let rest = rest.strip_prefix('_').unwrap_or(rest);
    let rest = if rest == preset { "" } else { rest.strip_suffix(&format!("_{preset}")).unwrap_or(rest) };
    if rest.is_empty() { "default".into() } else { rest.into() }
}

/// The results directories under `results` (sorted by name): those holding any of the tables.
pub fn result_dirs(results: &Path) -> Result<Vec<String>> {
    if !results.is_dir() {
        bail!("--results {}: not a directory (give the folder whose subdirectories `s2rm run` wrote, e.g. results)", results.display());
    }
    let mut names: Vec<String> = std::fs::read_dir(results)
        .with_context(|| format!("cannot list {}", results.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| TABLES.iter().any(|t| e.path().join(t).is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("--results {}: no results directory inside (none holds win_rates.csv, metrics.csv, rm_eval.csv or ppo_log.csv)", results.display());
    }
    Ok(names)
}

/// The tidy frame over every results directory under `results`, sorted by directory, then table
/// (win rates, metrics, reward models, PPO), then the order of the rows in their file.
pub fn load(results: &Path) -> Result<DataFrame> {
    let names = result_dirs(results)?;
    let mut dirs = Vec::new();
    let mut metas = Vec::new();
    for name in &names {
        let dir = results.join(name);
        metas.push(RunMeta::load(&dir, name)?);
        let mut parts = Vec::new();
        for (rank, (table, required)) in REQUIRED.iter().enumerate() {
            let path = dir.join(table);
            if !path.is_file() {
                continue;
            }
            let header = check_header(&path, required)?;
            let lf = scan(&path)?.with_row_index("row", None).with_columns([lit(name.as_str()).alias("dir")]);
            let tidy = match rank {
                0 => win_rates(lf),
                1 => vec![metrics(lf)],
                2 => with_pooled([rm_eval(lf)]),
                _ => with_pooled(ppo_log(lf, &header)),
            };
            parts.extend(tidy.into_iter().map(|p| p.with_columns([lit(rank as u32).alias("table_rank")])));
        }
        // collected per directory, so that a bad value names its directory
        let df = pl(concat(parts, UnionArgs::default())?.collect()).with_context(|| format!("reading the tables of {}", dir.display()))?;
        dirs.push(df.lazy());
    }
    let sort = SortMultipleOptions::default().with_maintain_order(true);
    let lf = concat(dirs, UnionArgs::default())?
        .join(meta_frame(&metas)?.lazy(), [col("dir")], [col("dir")], JoinArgs::new(JoinType::Left))
        .sort(["dir", "table_rank", "row", "sub"], sort)
        .select(COLUMNS.map(col));
    pl(lf.collect()).with_context(|| format!("joining the tables under {} with their run_info.json", results.display()))
}

fn meta_frame(metas: &[RunMeta]) -> Result<DataFrame> {
    let c = |name: &str, f: fn(&RunMeta) -> &str| Column::new(name.into(), metas.iter().map(f).collect::<Vec<_>>());
    Ok(DataFrame::new_infer_height(vec![
        c("dir", |m| &m.dir),
        c("tier", |m| &m.tier),
        c("gates", |m| &m.gates),
        c("profile", |m| &m.profile),
        c("variant", |m| &m.variant),
        c("device", |m| &m.device),
        c("seeds", |m| &m.seeds),
    ])?)
}

/// The header row of a CSV, checked for the columns the frame needs.
fn check_header(path: &Path, required: &[&str]) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let header: Vec<String> = text.lines().next().unwrap_or("").split(',').map(|h| h.trim().to_string()).collect();
    let missing: Vec<&str> = required.iter().copied().filter(|c| !header.iter().any(|h| h == c)).collect();
    if !missing.is_empty() {
        let dir = path.parent().map_or(String::new(), |d| d.display().to_string());
        bail!(
            "{}: missing column(s) {} (re-render the directory with `s2rm report {dir}`, or move it out of the results folder)",
            path.display(),
            missing.join(", ")
        );
    }
    Ok(header)
}

/// Every column as text: the frame casts what it needs, so a file never changes a column's type.
fn scan(path: &Path) -> Result<LazyFrame> {
    let p = pl(PlRefPath::try_from_path(path)).with_context(|| format!("path {}", path.display()))?;
    pl(LazyCsvReader::new(p).with_has_header(true).with_infer_schema_length(Some(0)).finish()).with_context(|| format!("cannot scan {}", path.display()))
}

/// A polars result as an anyhow one (both crates' `Context` traits are in scope here).
pub(crate) fn pl<T>(r: PolarsResult<T>) -> Result<T> {
    Ok(r?)
}

/// The values of a text column (null as empty).
pub(crate) fn strings(df: &DataFrame, column: &str) -> Result<Vec<String>> {
    let c = df.column(column)?.cast(&DataType::String)?;
    let ca = c.str()?;
    Ok((0..ca.len()).map(|i| ca.get(i).unwrap_or("").to_string()).collect())
}

/// The values of a float column.
pub(crate) fn floats(df: &DataFrame, column: &str) -> Result<Vec<Option<f64>>> {
    let ca = df.column(column)?.f64()?.clone();
    Ok((0..ca.len()).map(|i| ca.get(i)).collect())
}

fn num(c: &str) -> Expr {
    col(c).strict_cast(DataType::Float64)
}

fn null_f64() -> Expr {
    lit(NULL).cast(DataType::Float64)
}

/// The row shape every table is brought into (before the join with `run_info.json`); `sub` puts a
/// pooled row after the per-seed rows it averages.
#[allow(clippy::too_many_arguments)]
fn tidy(lf: LazyFrame, table: &str, policy: Expr, opponent: Expr, step: Expr, metric: Expr, value: Expr, ci: (Expr, Expr), n: Expr) -> LazyFrame {
    lf.select([
        col("dir"),
        col("row"),
        lit(0u32).alias("sub"),
        col("experiment"),
        col("size"),
        lit(table).alias("table"),
        col("seed"),
        policy.alias("policy"),
        opponent.alias("opponent"),
        col("prompt_set"),
        step.alias("step"),
        metric.alias("metric"),
        value.alias("value"),
        ci.0.alias("ci_low"),
        ci.1.alias("ci_high"),
        n.alias("n"),
    ])
}

const TIDY: [&str; 16] = [
    "dir", "row", "sub", "experiment", "size", "table", "seed", "policy", "opponent", "prompt_set", "step", "metric", "value", "ci_low", "ci_high", "n",
];

fn no_step() -> Expr {
    lit(NULL).cast(DataType::Int64)
}

fn win_rates(lf: LazyFrame) -> Vec<LazyFrame> {
    let one = |metric: &str, v: &str, lo: &str, hi: &str| {
        tidy(lf.clone(), "win_rates", col("policy_a"), col("policy_b"), no_step(), lit(metric), num(v), (num(lo), num(hi)), num("n_prompts"))
    };
    vec![one("win_rate", "win_rate", "ci_low", "ci_high"), one("lc_win_rate", "lc_win_rate", "lc_ci_low", "lc_ci_high")]
}

fn metrics(lf: LazyFrame) -> LazyFrame {
    tidy(lf, "metrics", col("policy"), lit(""), no_step(), col("metric"), num("value"), (null_f64(), null_f64()), null_f64())
}

/// Reward-model numbers have no prompt set; `n` is the number of held-out pairs (if given).
fn rm_eval(lf: LazyFrame) -> LazyFrame {
    let lf = lf.with_columns([lit("").alias("prompt_set")]);
    let n = if lf.clone().collect_schema().is_ok_and(|s| s.contains("n")) { num("n") } else { null_f64() };
    tidy(lf, "rm_eval", col("model"), lit(""), no_step(), col("metric"), num("value"), (null_f64(), null_f64()), n)
}

fn ppo_log(lf: LazyFrame, header: &[String]) -> Vec<LazyFrame> {
    let lf = lf.with_columns([lit("rollouts").alias("prompt_set")]);
    PPO_COLUMNS
        .iter()
        .filter(|c| header.iter().any(|h| h == *c))
        .map(|c| {
            let step = col("step").strict_cast(DataType::Int64);
            tidy(lf.clone(), "ppo_log", lit("ppo_") + col("rm"), lit(""), step, lit(format!("ppo_{c}")), num(c), (null_f64(), null_f64()), null_f64())
        })
        .collect()
}

/// The per-seed rows plus one `pooled` row per cell: the mean over seeds (a table without pooled
/// rows of its own; for the judge, trained once, that is its one value).
fn with_pooled(parts: impl IntoIterator<Item = LazyFrame>) -> Vec<LazyFrame> {
    let keys = ["dir", "experiment", "size", "table", "policy", "opponent", "prompt_set", "step", "metric"];
    let mut out = Vec::new();
    for lf in parts {
        let pooled = lf
            .clone()
            .group_by_stable(keys.map(col))
            .agg([col("row").max(), col("value").mean(), col("n").mean()])
            .with_columns([lit(1u32).alias("sub"), lit("pooled").alias("seed"), null_f64().alias("ci_low"), null_f64().alias("ci_high")])
            .select(TIDY.map(col));
        out.push(lf);
        out.push(pooled);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_is_what_the_directory_name_adds() {
        assert_eq!(variant_of("safety", "safety", "tiny"), "default");
        assert_eq!(variant_of("safety_small", "safety", "small"), "default");
        assert_eq!(variant_of("safety_mean_scaling", "safety", "tiny"), "mean_scaling");
        assert_eq!(variant_of("world_safety_null", "world_safety", "tiny"), "null");
        assert_eq!(variant_of("safety-kl05", "safety", "tiny"), "-kl05");
        assert_eq!(variant_of("mine", "safety", "tiny"), "mine");
    }

    #[test]
    fn pivot_and_sort_arguments_parse() {
        use query::{parse_pivot, parse_sort};
        assert_eq!(parse_pivot("experiment,size:prompt_set").unwrap(), (vec!["experiment".into(), "size".into()], vec!["prompt_set".into()]));
        assert!(parse_pivot("experiment").unwrap_err().contains("ROWS:COLUMNS"));
        assert!(parse_pivot(":prompt_set").is_err());
        assert_eq!(parse_sort("value:desc").unwrap(), ("value".into(), true));
        assert_eq!(parse_sort("dir").unwrap(), ("dir".into(), false));
        assert!(parse_sort("value:down").is_err());
    }
}
