//! `make figures` is a pure function of the CSVs: re-rendering the committed default-profile
//! results must reproduce the committed derived tables and report byte for byte.

use std::path::Path;

#[test]
fn rerendering_committed_results_reproduces_tables_and_report() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/safety");
    if !committed.join("generations.csv").is_file() {
        eprintln!("SKIP: no committed results in {}", committed.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let inputs = ["generations.csv", "ppo_log.csv", "rm_eval.csv", "train_log.csv", "refusal_sanity.csv", "run_info.json"];
    for f in inputs {
        std::fs::copy(committed.join(f), tmp.path().join(f)).unwrap();
    }
    s2rm::report::render(tmp.path()).unwrap();
    for f in ["metrics.csv", "win_rates.csv", "REPORT.md"] {
        let a = std::fs::read(committed.join(f)).unwrap();
        let b = std::fs::read(tmp.path().join(f)).unwrap();
        assert!(a == b, "{f}: re-rendered output differs from the committed one (run `make figures` and commit)");
    }
}
