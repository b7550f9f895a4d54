//! `make figures` is a pure function of the CSVs: re-rendering every committed results directory
//! must reproduce its derived tables and report byte for byte.

use std::path::Path;

#[test]
fn rerendering_committed_results_reproduces_tables_and_report() {
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let mut checked = 0;
    for entry in std::fs::read_dir(&results).expect("results/ exists") {
        let committed = entry.unwrap().path();
        if !committed.join("generations.csv").is_file() {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        for f in ["generations.csv", "ppo_log.csv", "rm_eval.csv", "train_log.csv", "refusal_sanity.csv", "run_info.json"] {
            std::fs::copy(committed.join(f), tmp.path().join(f)).unwrap();
        }
        s2rm::report::render(tmp.path()).unwrap();
        for f in ["metrics.csv", "win_rates.csv", "REPORT.md"] {
            let a = std::fs::read(committed.join(f)).unwrap();
            let b = std::fs::read(tmp.path().join(f)).unwrap();
            assert!(a == b, "{}/{f}: re-rendered output differs from the committed one (run `make figures` and commit)", committed.display());
        }
        checked += 1;
    }
    assert!(checked >= 1, "no committed results directory under {}", results.display());
}
