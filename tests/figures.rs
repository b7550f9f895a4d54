//! `make figures` is a pure function of the CSVs: re-rendering every committed results directory
//! must reproduce its derived tables and report byte for byte, and `s2rm paper` over the copies
//! must reproduce the committed `results/PAPER.md`. A change to the report code that changes these
//! outputs fails here until the committed files are regenerated (`make figures`) and committed.

use std::path::Path;

const INPUTS: [&str; 7] = ["generations.csv", "ppo_log.csv", "rm_eval.csv", "rm_curve.csv", "train_log.csv", "refusal_sanity.csv", "run_info.json"];
const DERIVED: [&str; 3] = ["metrics.csv", "win_rates.csv", "REPORT.md"];

#[test]
fn rerendering_committed_results_reproduces_tables_report_and_paper() {
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(&results).expect("results/ exists") {
        let committed = entry.unwrap().path();
        if !committed.join("generations.csv").is_file() {
            continue;
        }
        // only the inputs travel: every derived file must come back from them
        let copy = tmp.path().join(committed.file_name().unwrap());
        std::fs::create_dir(&copy).unwrap();
        for f in INPUTS {
            if committed.join(f).is_file() || f != "rm_curve.csv" {
                std::fs::copy(committed.join(f), copy.join(f)).unwrap();
            }
        }
        s2rm::report::render(&copy).unwrap();
        for f in DERIVED {
            let a = std::fs::read(committed.join(f)).unwrap();
            let b = std::fs::read(copy.join(f)).unwrap();
            assert!(a == b, "{}/{f}: re-rendered output differs from the committed one (run `make figures` and commit)", committed.display());
        }
        checked += 1;
    }
    assert!(checked >= 1, "no committed results directory under {}", results.display());

    let paper = tmp.path().join("PAPER.md");
    s2rm::report::write_paper(tmp.path(), &paper).unwrap();
    let a = std::fs::read(results.join("PAPER.md")).expect("results/PAPER.md is committed (run `make figures`)");
    let b = std::fs::read(&paper).unwrap();
    assert!(a == b, "results/PAPER.md differs from `s2rm paper` over the committed results (run `make figures` and commit)");
}
