//! `s2rm tables` over the committed results: numbers recomputed here from the raw CSVs (with the
//! `csv` crate, not polars), a pivot's shape, the terminal table's width, and one clear error line
//! for an unknown filter value, a missing column and a directory without `run_info.json`.

use s2rm::frame::query::{self, Format, Query, SeedSel};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn results() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("results")
}

/// Query with these filters (on top of no metric filter), csv output.
fn q(filters: &[(&'static str, &str)], seed: SeedSel) -> Query {
    let mut filters: Vec<(&'static str, Vec<String>)> = filters.iter().map(|(c, v)| (*c, vec![v.to_string()])).collect();
    if !filters.iter().any(|f| f.0 == "metric") {
        filters.push(("metric", vec![]));
    }
    Query { filters, seed, format: Format::Csv, ..Query::default() }
}

/// The `value` column of a csv answer that must have exactly one row.
fn one_value(csv_text: &str) -> f64 {
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    let idx = r.headers().unwrap().iter().position(|h| h == "value").expect("value column");
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(rows.len(), 1, "expected one row:\n{csv_text}");
    rows[0][idx].parse().unwrap()
}

/// Rows of a committed CSV as header -> value maps.
fn read(dir: &str, file: &str) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(results().join(dir).join(file)).unwrap();
    let h = r.headers().unwrap().clone();
    r.records().map(|rec| h.iter().zip(rec.unwrap().iter()).map(|(a, b)| (a.to_string(), b.to_string())).collect()).collect()
}

#[test]
fn cells_match_numbers_recomputed_from_the_raw_csvs() {
    let df = s2rm::frame::load(&results()).unwrap();

    // pooled win rate, world_safety, seq2seq vs scalar on `all`: the mean over (seed, prompt) of
    // the judge-score outcome (1 win, ½ tie, 0 loss) of the in-distribution prompts
    let gens = read("world_safety", "generations.csv");
    let mut scores: BTreeMap<(String, String, String), (Option<f64>, Option<f64>)> = BTreeMap::new();
    for g in gens.iter().filter(|g| !g["prompt_set"].starts_with("ood_")) {
        let e = scores.entry((g["seed"].clone(), g["prompt_set"].clone(), g["prompt_id"].clone())).or_default();
        let s: f64 = g["judge_score"].parse().unwrap();
        match g["policy"].as_str() {
            "ppo_seq2seq" => e.0 = Some(s),
            "ppo_scalar" => e.1 = Some(s),
            _ => {}
        }
    }
    let outcomes: Vec<f64> = scores
        .values()
        .map(|(a, b)| {
            let d = a.unwrap() - b.unwrap();
            if d.abs() <= 1e-9 { 0.5 } else if d > 0.0 { 1.0 } else { 0.0 }
        })
        .collect();
    let expected = outcomes.iter().sum::<f64>() / outcomes.len() as f64;
    let filters = [("dir", "world_safety"), ("policy", "ppo_seq2seq"), ("opponent", "ppo_scalar"), ("prompt_set", "all"), ("metric", "win_rate")];
    let got = one_value(&query::answer(&df, &q(&filters, SeedSel::Pooled)).unwrap());
    assert!((got - expected).abs() < 1e-6, "win rate {got} vs recomputed {expected}");

    // safety, seed 2: benign refusal rate of the scalar-RM policy = share of refused answers
    let refused: Vec<f64> = read("safety", "generations.csv")
        .into_iter()
        .filter(|g| g["seed"] == "2" && g["policy"] == "ppo_scalar" && g["prompt_set"] == "benign")
        .map(|g| g["refused"].parse().unwrap())
        .collect();
    let expected = refused.iter().sum::<f64>() / refused.len() as f64;
    let filters = [("dir", "safety"), ("policy", "ppo_scalar"), ("prompt_set", "benign"), ("metric", "refusal_rate")];
    let got = one_value(&query::answer(&df, &q(&filters, SeedSel::One("2".into()))).unwrap());
    assert!((got - expected).abs() < 1e-6, "refusal {got} vs {expected}");

    // pooled reward-model accuracy (rm_eval.csv has no pooled rows): the mean over seeds
    let acc: Vec<f64> = read("safety_small", "rm_eval.csv")
        .into_iter()
        .filter(|r| r["model"] == "scalar_rm" && r["metric"] == "pair_accuracy")
        .map(|r| r["value"].parse().unwrap())
        .collect();
    assert!(acc.len() >= 2, "{acc:?}");
    let expected = acc.iter().sum::<f64>() / acc.len() as f64;
    let filters = [("dir", "safety_small"), ("policy", "scalar_rm"), ("metric", "pair_accuracy")];
    let got = one_value(&query::answer(&df, &q(&filters, SeedSel::Pooled)).unwrap());
    assert!((got - expected).abs() < 1e-9, "accuracy {got} vs {expected}");

    // the last PPO step's KL of one run
    let log = read("summarization", "ppo_log.csv");
    let last = log.iter().filter(|r| r["seed"] == "3" && r["rm"] == "seq2seq").max_by_key(|r| r["step"].parse::<i64>().unwrap()).unwrap();
    let filters = [("dir", "summarization"), ("policy", "ppo_seq2seq"), ("metric", "ppo_kl")];
    let got = one_value(&query::answer(&df, &q(&filters, SeedSel::One("3".into()))).unwrap());
    assert!((got - last["kl"].parse::<f64>().unwrap()).abs() < 1e-9, "kl {got} vs {}", last["kl"]);
}

#[test]
fn pivot_has_one_row_per_task_and_size_and_one_column_per_prompt_set() {
    let mut query = q(
        &[("tier", "from_scratch"), ("variant", "default"), ("policy", "ppo_seq2seq"), ("opponent", "ppo_scalar"), ("metric", "win_rate")],
        SeedSel::Pooled,
    );
    query.pivot = Some((vec!["experiment".into(), "size".into()], vec!["prompt_set".into()]));
    let out = query::run(&results(), &query).unwrap();
    let mut r = csv::Reader::from_reader(out.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let sets = ["benign", "harmful", "ood_alpaca", "ood_harmful", "all"];
    let mut want = vec!["experiment".to_string(), "size".into()];
    for s in sets {
        want.extend([s.to_string(), format!("{s}_ci_low"), format!("{s}_ci_high")]);
    }
    assert_eq!(header, want);
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    let cells: Vec<(String, String)> = rows.iter().map(|x| (x[0].to_string(), x[1].to_string())).collect();
    for task in ["safety", "summarization", "helpfulness"] {
        for size in ["tiny", "small"] {
            assert!(cells.contains(&(task.into(), size.into())), "{task}/{size} missing: {cells:?}");
        }
    }
    assert_eq!(rows.len(), 6, "{out}");
    // summarization has no harmful prompts: an empty cell, not a zero
    let summ = rows.iter().find(|x| &x[0] == "summarization" && &x[1] == "tiny").unwrap();
    assert_eq!(&summ[5], "", "{out}");
    let safety = rows.iter().find(|x| &x[0] == "safety" && &x[1] == "tiny").unwrap();
    let all: f64 = safety[14].parse().unwrap();
    let committed = read("safety", "win_rates.csv")
        .into_iter()
        .find(|w| w["seed"] == "pooled" && w["policy_a"] == "ppo_seq2seq" && w["policy_b"] == "ppo_scalar" && w["prompt_set"] == "all")
        .unwrap();
    assert!((all - committed["win_rate"].parse::<f64>().unwrap()).abs() < 1e-9);
}

#[test]
fn terminal_table_is_aligned_within_100_columns_with_intervals() {
    let query = Query { filters: vec![("metric", vec!["win_rate".into()]), ("prompt_set", vec!["all".into()])], ..Query::default() };
    let out = query::run(&results(), &query).unwrap();
    for l in out.lines() {
        assert!(l.chars().count() <= 100, "{} chars: {l}", l.chars().count());
    }
    let row = out.lines().find(|l| l.starts_with("safety ") && l.contains("ppo_seq2seq") && l.contains("ppo_scalar")).expect(&out);
    let committed = read("safety", "win_rates.csv")
        .into_iter()
        .find(|w| w["seed"] == "pooled" && w["policy_a"] == "ppo_seq2seq" && w["policy_b"] == "ppo_scalar" && w["prompt_set"] == "all")
        .unwrap();
    let pct = |k: &str| format!("{:.1}", 100.0 * committed[k].parse::<f64>().unwrap());
    let cell = format!("{} [{}, {}]", pct("win_rate"), pct("ci_low"), pct("ci_high"));
    assert!(row.ends_with(&cell), "{row} does not end with {cell}");
    // every value column ends at the same place
    let ends: Vec<usize> = out.lines().filter(|l| l.ends_with(']')).map(|l| l.chars().count()).collect();
    assert!(ends.windows(2).all(|w| w[0] == w[1]), "{out}");
}

/// Copy `dirs` of the committed results (tables and run_info.json only) into a fresh folder.
fn copy_results(dirs: &[&str]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for d in dirs {
        std::fs::create_dir(tmp.path().join(d)).unwrap();
        for f in ["win_rates.csv", "metrics.csv", "rm_eval.csv", "ppo_log.csv", "run_info.json"] {
            std::fs::copy(results().join(d).join(f), tmp.path().join(d).join(f)).unwrap();
        }
    }
    tmp
}

/// Run the binary; it must fail with exactly one `error:` line on stderr.
fn one_error_line(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_s2rm")).arg("tables").args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

#[test]
fn bad_queries_and_bad_results_give_one_clear_error_line() {
    let tmp = copy_results(&["safety", "world_safety"]);
    let dir = tmp.path().to_str().unwrap();
    let e = one_error_line(&["--results", dir, "--experiment", "safty"]);
    assert!(e.contains("--experiment: no `safty`") && e.contains("known: safety, world_safety"), "{e}");
    let e = one_error_line(&["--results", dir, "--sort", "valeu"]);
    assert!(e.contains("--sort: unknown column `valeu`"), "{e}");
    let e = one_error_line(&["--results", dir, "--pivot", "size:prompt_set"]);
    assert!(e.contains("several rows land in cell (tiny | benign)") && e.contains("differ in opponent") && e.contains("--vs ppo_scalar"), "{e}");

    // a table without one of its columns names the file and the column
    let wr = tmp.path().join("safety/win_rates.csv");
    let text = std::fs::read_to_string(&wr).unwrap();
    let stripped: String = text.lines().map(|l| l.rsplitn(2, ',').nth(1).unwrap().to_string() + "\n").collect();
    std::fs::write(&wr, stripped).unwrap();
    let e = one_error_line(&["--results", dir]);
    assert!(e.contains("safety/win_rates.csv: missing column(s) lc_ci_high"), "{e}");
    std::fs::write(&wr, text).unwrap();

    // a directory without run_info.json
    std::fs::remove_file(tmp.path().join("world_safety/run_info.json")).unwrap();
    let e = one_error_line(&["--results", dir]);
    assert!(e.contains("world_safety: no run_info.json"), "{e}");
}

/// The gates column says, per directory, whether its numbers are evidence: recomputed here from
/// each directory's `gates.csv` (a gate with a goal fails if any seed's value is below it).
#[test]
fn gates_column_matches_gates_csv() {
    let df = s2rm::frame::load(&results()).unwrap();
    for dir in ["world_safety", "world_summarization", "world_safety_null", "safety"] {
        let expect = if results().join(dir).join("gates.csv").is_file() {
            let rows = read(dir, "gates.csv");
            let goals: std::collections::BTreeSet<&str> = rows.iter().filter(|r| !r["goal"].is_empty()).map(|r| r["gate"].as_str()).collect();
            let failed: std::collections::BTreeSet<&str> = rows
                .iter()
                .filter(|r| !r["goal"].is_empty() && r["value"].parse::<f64>().unwrap() < r["goal"].parse::<f64>().unwrap())
                .map(|r| r["gate"].as_str())
                .collect();
            if failed.is_empty() { "pass".to_string() } else { format!("fail {}/{}", failed.len(), goals.len()) }
        } else {
            // real data: the judge, the scalar RM and the seq2seq RM against their goals, from rm_eval.csv
            let rows = read(dir, "rm_eval.csv");
            let v = |model: &str, metric: &str| -> Vec<f64> {
                rows.iter().filter(|r| r["model"] == model && r["metric"] == metric).map(|r| r["value"].parse().unwrap()).collect()
            };
            let measured: Vec<bool> = [
                v("judge", "pair_accuracy").into_iter().map(|x| x < 0.65).collect::<Vec<_>>(),
                v("scalar_rm", "pair_accuracy").into_iter().map(|x| x < 0.6).collect(),
                v("seq2seq_rm", "pair_accuracy").into_iter().map(|x| x < 0.5).collect(),
                v("seq2seq_rm", "token_copy_rate").into_iter().map(|x| x < 0.95).collect(),
                v("seq2seq_rm", "copy_rate_rejected").into_iter().map(|x| 1.0 - x < 0.8).collect(),
            ]
            .into_iter()
            .filter(|fails| !fails.is_empty())
            .map(|fails| fails.contains(&true))
            .collect();
            format!("fail {}/{}", measured.iter().filter(|&&f| f).count(), measured.len())
        };
        let col = |name: &str| {
            let ca = df.column(name).unwrap().str().unwrap().clone();
            (0..ca.len()).map(|i| ca.get(i).unwrap_or("").to_string()).collect::<Vec<String>>()
        };
        let vals: std::collections::BTreeSet<String> =
            col("dir").into_iter().zip(col("gates")).filter(|(d, _)| d == dir).map(|(_, g)| g).collect();
        assert_eq!(vals.into_iter().collect::<Vec<_>>(), vec![expect], "{dir}");
    }
}
