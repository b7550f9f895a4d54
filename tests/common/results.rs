//! Comparing a merged results directory with one `s2rm run` of the same seeds (tests/grid.rs,
//! tests/slurm.rs).

use s2rm::runner::{RunOptions, run};
use std::path::{Path, PathBuf};

/// One `s2rm run` of the smoke profile with `seeds`, in this process.
pub fn single_run(experiment: &str, seeds: &str, data: &Path, out: &Path) {
    let sets = vec![format!("experiment.seeds=[{seeds}]")];
    let resolved = s2rm::spec::load(Path::new(&format!("experiments/{experiment}.toml")), "smoke", &sets).unwrap();
    let opts = RunOptions { output: Some(out.into()), data_dir: Some(data.into()), device: Some("cpu".into()), ..Default::default() };
    run(&resolved, &opts).expect("single run");
}

/// REPORT.md without its timings (total wall time, the stage-seconds table), which a merge sums
/// over cells.
fn report_without_timings(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    let mut out = Vec::new();
    let mut in_stages = false;
    for l in text.lines() {
        in_stages = (in_stages && l.starts_with('|')) || l.starts_with("| Stage | Seconds |");
        if !in_stages && !l.starts_with("- total wall time") {
            out.push(l);
        }
    }
    out.join("\n")
}

/// Every CSV, the resolved spec and every figure byte for byte, and REPORT.md but for its
/// timings; returns how many files were compared.
pub fn assert_same_results(single: &Path, merged: &Path) -> usize {
    let mut files: Vec<PathBuf> = std::fs::read_dir(single).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "csv")).collect();
    files.push(single.join("resolved_spec.toml"));
    files.extend(std::fs::read_dir(single.join("figures")).unwrap().map(|e| e.unwrap().path()));
    assert!(files.len() > 20, "{files:?}");
    for f in &files {
        let rel = f.strip_prefix(single).unwrap();
        let m = merged.join(rel);
        assert!(std::fs::read(f).unwrap() == std::fs::read(&m).unwrap_or_default(), "{} differs from the single run's {}", m.display(), f.display());
    }
    assert_eq!(report_without_timings(single), report_without_timings(merged), "REPORT.md (timings aside)");
    files.len() + 1
}

