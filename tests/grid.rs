//! The grid end to end through the `s2rm` binary (a cell is its own process): `grid --local` of
//! smoke specs merges into the same bytes as one `s2rm run` of all the seeds, a rerun skips the
//! finished cells and completes a failed one, and bad input fails with one clear line.

mod common;
#[path = "common/results.rs"]
mod results;

use common::data_dir;
use results::{assert_same_results, single_run};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn s2rm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_s2rm")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().expect("s2rm runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The error of a failed command: exactly one line starting with `error:`, and it is the last
/// (as in tests/bad_inputs; `--submit` says what it planned before sbatch is found missing).
fn one_error_line(o: &Output) -> String {
    assert!(!o.status.success(), "expected a failure, got success: {}", stderr(o));
    let e = stderr(o);
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.iter().filter(|l| l.starts_with("error:")).count(), 1, "expected one error line, got: {e}");
    let last = lines.last().expect("an error line");
    assert!(last.starts_with("error: "), "{e}");
    last.to_string()
}

#[test]
fn grid_local_merges_into_the_bytes_of_one_run_and_reruns_only_unfinished_cells() {
    let Some(data) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("grid");
    let (d, g) = (data.display().to_string(), dir.display().to_string());
    let args = ["grid", "experiments/safety.toml", "experiments/world_safety.toml", "--profiles", "smoke", "--seeds", "1,2", "--device", "cpu", "--data-dir", &d, "--dir", &g, "--local", "--workers", "2"];
    let o = s2rm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("4 cells (0 finished, 4 to run)"), "{}", stderr(&o));
    for e in ["safety", "world_safety"] {
        let single = tmp.path().join(format!("single_{e}"));
        single_run(e, "1,2", &data, &single);
        let n = assert_same_results(&single, &dir.join("results").join(e).join("smoke"));
        eprintln!("{e}: {n} files equal to one run of seeds 1,2");
    }
    // Every cell loaded the shared stages instead of training them.
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("cells/safety/smoke/seed2/run_info.json")).unwrap()).unwrap();
    assert_eq!(info["stages_loaded_from_cache"], serde_json::json!(["judge/0", "pretrain/0", "sft/0"]));

    // Resubmitted: nothing to run, no cell rewritten.
    let cell_info = dir.join("cells/world_safety/smoke/seed1/run_info.json");
    let before = std::fs::metadata(&cell_info).unwrap().modified().unwrap();
    let o = s2rm(&args);
    assert!(o.status.success() && stderr(&o).contains("4 cells (4 finished, 0 to run)"), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&cell_info).unwrap().modified().unwrap(), before, "a finished cell ran again");

    // A cell that failed (no run_info.json): merge names it; the grid reruns it alone and completes.
    std::fs::remove_file(dir.join("cells/safety/smoke/seed2/run_info.json")).unwrap();
    let cells = [dir.join("cells/safety/smoke/seed1"), dir.join("cells/safety/smoke/seed2")].map(|p| p.display().to_string());
    let e = one_error_line(&s2rm(&["merge", &cells[0], &cells[1], "--output", &tmp.path().join("m").display().to_string()]));
    assert!(e.contains("1 of 2 cells are not finished") && e.contains("seed2: not finished"), "{e}");
    assert!(!tmp.path().join("m").exists(), "a refused merge writes nothing");
    let o = s2rm(&args);
    assert!(o.status.success() && stderr(&o).contains("(3 finished, 1 to run)"), "{}", stderr(&o));
    assert_same_results(&tmp.path().join("single_safety"), &dir.join("results/safety/smoke"));
}

#[test]
fn merge_refuses_cells_of_other_specs_builds_devices_and_names_missing_ones() {
    // The world needs no dataset: this test runs everywhere.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("grid");
    let g = dir.display().to_string();
    let o = s2rm(&["grid", "experiments/world_safety.toml", "--profiles", "smoke", "--seeds", "1,2", "--variant", "kl=ppo.kl_coef=0.5", "--device", "cpu", "--dir", &g, "--local"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cell = |v: &str, s: u64| dir.join(format!("cells/world_safety/{v}/seed{s}"));
    let out = tmp.path().join("merged");
    let merge = |cells: &[PathBuf]| {
        let mut a: Vec<String> = vec!["merge".into()];
        a.extend(cells.iter().map(|c| c.display().to_string()));
        a.extend(["--output".into(), out.display().to_string()]);
        s2rm(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let e = one_error_line(&merge(&[cell("smoke", 1), cell("smoke_kl", 2)]));
    assert!(e.contains("different specs") && e.contains("ppo.kl_coef"), "{e}");
    // A cell of another build, and one of another device (run_info.json says which).
    for (field, value, want) in [("binary_sha256", "0123456789abcdef", "another s2rm binary"), ("device", "wgpu NVIDIA (DiscreteGpu, Vulkan)", "another device")] {
        let copy = tmp.path().join(format!("copy_{field}"));
        std::fs::create_dir_all(&copy).unwrap();
        for f in std::fs::read_dir(cell("smoke", 2)).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()) {
            std::fs::copy(&f, copy.join(f.file_name().unwrap())).unwrap();
        }
        let path = copy.join("run_info.json");
        let mut info: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        info[field] = value.into();
        std::fs::write(&path, serde_json::to_vec(&info).unwrap()).unwrap();
        let e = one_error_line(&merge(&[cell("smoke", 1), copy.clone()]));
        assert!(e.contains(want) && e.contains(&copy.display().to_string()), "{e}");
    }
    let missing = tmp.path().join("nope");
    let e = one_error_line(&merge(&[cell("smoke", 1), missing.clone(), tmp.path().to_path_buf()]));
    assert!(e.contains("2 of 3 cells are not finished") && e.contains(&format!("{}: missing", missing.display())), "{e}");
    let e = one_error_line(&merge(&[cell("smoke", 1), cell("smoke", 1)]));
    assert!(e.contains("seed 1 is in both"), "{e}");
    assert!(!out.exists(), "a refused merge writes nothing");
    // The variant merged on its own, and the plan names it.
    assert!(dir.join("results/world_safety/smoke_kl/win_rates.csv").is_file());
}

#[test]
fn grid_and_run_reject_bad_input_with_one_line_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("grid");
    let g = dir.display().to_string();
    let ws = "experiments/world_safety.toml";
    // The same spec twice; a copy of it (same experiment.name) whose SFT, a shared stage, differs.
    let e = one_error_line(&s2rm(&["grid", ws, ws, "--profiles", "smoke", "--dir", &g]));
    assert!(e.contains("given twice"), "{e}");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(ws)).unwrap();
    let copy = tmp.path().join("world_safety_copy.toml");
    std::fs::write(&copy, text.replace("sft = { steps = 4,", "sft = { steps = 5,")).unwrap();
    let e = one_error_line(&s2rm(&["grid", ws, &copy.display().to_string(), "--profiles", "smoke", "--dir", &g]));
    assert!(e.contains("shared stages disagree") && e.contains("sft-0-"), "{e}");
    // A shared directory that does not exist, for grid and for run.
    let missing = tmp.path().join("no_such_dir").display().to_string();
    let e = one_error_line(&s2rm(&["grid", ws, "--profiles", "smoke", "--dir", &g, "--shared-dir", &missing, "--local"]));
    assert!(e.contains("--shared-dir") && e.contains("does not exist"), "{e}");
    let cell = tmp.path().join("cell").display().to_string();
    let e = one_error_line(&s2rm(&["run", ws, "--profile", "smoke", "--device", "cpu", "--shared-dir", &missing, "--output", &cell]));
    assert!(e.contains("--shared-dir") && e.contains("does not exist"), "{e}");
    let e = one_error_line(&s2rm(&["grid", ws, "--profiles", "smoke", "--dir", &g, "--variant", "x/y=ppo.kl_coef=1"]));
    assert!(e.contains("must be letters"), "{e}");
    assert!(!dir.exists() && !Path::new(&cell).exists() && !Path::new(&missing).exists(), "bad input wrote something");
    // A cell whose output folder another run is writing (a grid resubmitted while it runs).
    let busy = tmp.path().join("busy");
    let held = s2rm::stages::lock::try_lock(&busy.join(".cache"), "run").unwrap().expect("a fresh lock");
    let e = one_error_line(&s2rm(&["run", ws, "--profile", "smoke", "--device", "cpu", "--output", &busy.display().to_string()]));
    assert!(e.contains("being written by another s2rm run"), "{e}");
    assert!(!busy.join("generations.csv").exists());
    drop(held);
    // Without Slurm, submitting says so (the real-Slurm test covers a failing sbatch).
    if Command::new("sbatch").arg("--version").output().is_err() {
        let e = one_error_line(&s2rm(&["grid", ws, "--profiles", "smoke", "--dir", &g, "--slurm", "--submit"]));
        assert!(e.contains("sbatch not found"), "{e}");
    }
}

/// Two cells started at once on an empty shared directory (no shared job first): one computes
/// each shared entry under its lock, the other waits and loads it; both finish, and their merge
/// equals the merge of a grid whose shared job ran first.
#[test]
fn concurrent_cells_share_one_computation_of_each_shared_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let s = shared.display().to_string();
    let cell = |seed: u64| tmp.path().join(format!("seed{seed}"));
    let children: Vec<_> = [1u64, 2]
        .iter()
        .map(|&seed| {
            let out = cell(seed).display().to_string();
            Command::new(env!("CARGO_BIN_EXE_s2rm"))
                .args(["run", "experiments/world_safety.toml", "--profile", "smoke", "--device", "cpu", "--seeds", &seed.to_string(), "--shared-dir", &s, "--output", &out])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let c = c.wait_with_output().unwrap();
        assert!(c.status.success(), "{}", stderr(&c));
    }
    // No temporary file is left, and each shared entry exists once.
    let names: Vec<String> = std::fs::read_dir(shared.join("stages")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    assert_eq!(names.iter().filter(|n| n.starts_with("sft-0-") && n.ends_with(".json")).count(), 1, "{names:?}");
    // Whatever the interleaving, exactly one of the two trained each shared stage.
    for stage in ["pretrain/0", "sft/0"] {
        let loaded = [1, 2]
            .iter()
            .filter(|&&seed| {
                let info: serde_json::Value = serde_json::from_slice(&std::fs::read(cell(seed).join("run_info.json")).unwrap()).unwrap();
                info["stages_loaded_from_cache"].as_array().unwrap().iter().any(|v| v == stage)
            })
            .count();
        assert_eq!(loaded, 1, "{stage}: loaded by {loaded} of the 2 cells");
    }
    let merged = tmp.path().join("merged");
    let o = s2rm(&["merge", &cell(2).display().to_string(), &cell(1).display().to_string(), "--output", &merged.display().to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let single = tmp.path().join("single");
    let data = data_dir().unwrap_or_else(std::env::temp_dir);
    single_run("world_safety", "1,2", &data, &single);
    assert_same_results(&single, &merged);
}
