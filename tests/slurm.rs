//! The grid on a real Slurm (not a mock): the smoke grid of two specs × two seeds submitted with
//! `s2rm grid --slurm --submit`, run by slurmctld/slurmd, merged by the merge job, and compared
//! byte for byte with one-process runs; then resubmitted after a cell "failed" (its run_info.json
//! removed), which runs that cell alone and completes the grid; and an sbatch that fails.
//!
//! Skipped with a message where no Slurm controller answers (`sinfo`). `scripts/slurm-localhost.sh
//! start DIR` starts a one-node cluster on this machine (CI does, and sets S2RM_REQUIRE_SLURM=1 so
//! that a skip there is a failure).

mod common;
#[path = "common/results.rs"]
mod results;

use results::{assert_same_results, single_run};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn slurm_answers() -> bool {
    let up = Command::new("sinfo").args(["-h", "-o", "%t"]).output().is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if !up {
        assert!(std::env::var_os("S2RM_REQUIRE_SLURM").is_none(), "S2RM_REQUIRE_SLURM is set but no Slurm controller answers `sinfo` (SLURM_CONF?)");
        eprintln!("SKIP: no Slurm controller answers `sinfo` (start one with scripts/slurm-localhost.sh start DIR, then export SLURM_CONF)");
    }
    up
}

fn s2rm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_s2rm")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().expect("s2rm runs")
}

/// The job id after `merge job ` in submit.sh's report.
fn merge_job(stdout: &[u8]) -> String {
    let s = String::from_utf8_lossy(stdout);
    s.split("merge job ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or_else(|| panic!("no merge job in {s}")).to_string()
}

fn job_state(id: &str) -> String {
    let o = Command::new("scontrol").args(["show", "job", id]).output().unwrap();
    let s = String::from_utf8_lossy(&o.stdout).to_string();
    s.split("JobState=").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("UNKNOWN").to_string()
}

/// Waits (bounded) for the merge job, which starts after every cell ended; fails with its log.
fn wait_for(id: &str, grid: &Path, limit: Duration) {
    let t = Instant::now();
    loop {
        let state = job_state(id);
        match state.as_str() {
            "COMPLETED" => return,
            "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING" if t.elapsed() < limit => std::thread::sleep(Duration::from_millis(500)),
            _ => {
                let logs: Vec<String> = std::fs::read_dir(grid.join("slurm/logs")).into_iter().flatten().flatten().map(|e| {
                    format!("== {}\n{}", e.path().display(), std::fs::read_to_string(e.path()).unwrap_or_default())
                }).collect();
                panic!("merge job {id}: {state} after {:.0}s\n{}", t.elapsed().as_secs_f64(), logs.join("\n"));
            }
        }
    }
}

#[test]
fn a_smoke_grid_on_slurm_merges_into_the_bytes_of_one_run() {
    if !slurm_answers() {
        return;
    }
    let Some(data) = common::data_dir() else { return };
    // A local temporary folder: the one-node cluster's jobs run on this machine (on a real
    // cluster the grid folder is on a file system every node mounts).
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid");
    let (d, g) = (data.display().to_string(), grid.display().to_string());
    let args = ["grid", "experiments/safety.toml", "experiments/world_safety.toml", "--profiles", "smoke", "--seeds", "1,2", "--device", "cpu", "--data-dir", &d, "--dir", &g, "--slurm", "--cpus", "1", "--submit"];
    let t = Instant::now();
    let o = s2rm(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_for(&merge_job(&o.stdout), &grid, Duration::from_secs(300));
    eprintln!("slurm grid: 4 cells + shared + merge in {:.1}s", t.elapsed().as_secs_f64());
    for e in ["safety", "world_safety"] {
        let single = tmp.path().join(format!("single_{e}"));
        single_run(e, "1,2", &data, &single);
        let n = assert_same_results(&single, &grid.join("results").join(e).join("smoke"));
        eprintln!("{e}: {n} files of the Slurm grid equal to one run of seeds 1,2");
    }
    for f in ["shared.sbatch", "cells.sbatch", "merge.sbatch", "submit.sh"] {
        eprintln!("==== {f}\n{}", std::fs::read_to_string(grid.join("slurm").join(f)).unwrap());
    }

    // A failed cell, resubmitted: only it runs (one array task), and the merge completes the grid.
    let cell = grid.join("cells/safety/smoke/seed2");
    std::fs::remove_file(cell.join("run_info.json")).unwrap();
    std::fs::remove_file(grid.join("results/safety/smoke/generations.csv")).unwrap();
    let o = s2rm(&args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success() && err.contains("(3 finished, 1 to run)"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("(1 cells)"), "{}", String::from_utf8_lossy(&o.stdout));
    wait_for(&merge_job(&o.stdout), &grid, Duration::from_secs(300));
    assert_same_results(&tmp.path().join("single_safety"), &grid.join("results/safety/smoke"));

    // An sbatch that fails (no such partition): one error line naming it, no job left queued.
    let bad = tmp.path().join("bad").display().to_string();
    let mut a = args.to_vec();
    a[12] = &bad;
    a.extend(["--partition", "no_such_partition"]);
    let o = s2rm(&a);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert!(!o.status.success() && lines.len() == 1 && lines[0].contains("invalid partition"), "{err}");
    let queued = Command::new("squeue").args(["-h", "-o", "%j", "-p", "no_such_partition"]).output().unwrap();
    assert!(queued.stdout.is_empty(), "a job of the failed submission is queued");
}
