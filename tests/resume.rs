//! An interrupted run, started again, skips every finished stage, resumes an interrupted PPO run
//! from its last checkpoint and ends with the same CSVs as an uninterrupted one. The smoke run is
//! killed with SIGKILL at several points — right after a stage finished, in the middle of a PPO run
//! after it wrote a checkpoint (the smoke profile checkpoints every step), and right at the start
//! of a PPO run — and restarted each time in the same folder.

mod common;

use common::data_dir;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CSVS: [&str; 8] =
    ["generations.csv", "prompts.csv", "ppo_log.csv", "rm_eval.csv", "train_log.csv", "metrics.csv", "win_rates.csv", "refusal_sanity.csv"];


/// The smoke run with 8 PPO steps instead of 2: it checkpoints after steps 1 to 7, so that a
/// kill sent on reading "checkpoint at step 1" lands before the stage finishes even when the test
/// process is slow to react (a smoke PPO step with its checkpoint takes some 40 ms).
fn smoke(out: &Path, data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_s2rm"));
    c.args(["run", "experiments/safety.toml", "--profile", "smoke", "--set", "ppo.steps=8", "--device", "cpu", "--output"])
        .arg(out)
        .arg("--data-dir")
        .arg(data)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Runs until a line of stderr shows one of `markers`, then SIGKILLs the process. Returns the
/// stderr seen.
fn kill_at(out: &Path, data: &Path, markers: &[&str]) -> String {
    let mut child = smoke(out, data).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut seen = String::new();
    let reader = BufReader::new(child.stderr.take().unwrap());
    for line in reader.lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if markers.iter().any(|m| line.contains(m)) {
            child.kill().unwrap(); // SIGKILL: no destructor, no cleanup runs
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before any of {markers:?}:\n{seen}");
    seen
}

#[test]
fn killed_runs_resume_and_end_with_the_csvs_of_an_uninterrupted_run() {
    let Some(data) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (whole, resumed) = (tmp.path().join("whole"), tmp.path().join("resumed"));
    assert!(smoke(&whole, &data).output().unwrap().status.success());

    // Kill points: after the shared SFT stage (the judge, which runs beside it, may or may not be
    // done), after seed 1's seq2seq RM, in seed 1's scalar-RM PPO run after its first checkpoint,
    // right after that run resumed from it, and when seed 1 is evaluated (both its PPO runs done).
    // Stages run two at a time in no fixed order, so no kill point relies on the order of two
    // stages that can run at once.
    // A kill lands a few milliseconds after its marker, and smoke stages take milliseconds, so a
    // killed run may have stored a stage or two more than its marker says: each marker below
    // accepts the line of a stage that an earlier run already stored.
    kill_at(&resumed, &data, &["stage sft (seed 0) done"]);
    let second = kill_at(&resumed, &data, &["stage seq2seq_rm (seed 1) done", "stage seq2seq_rm (seed 1): finished in an earlier run"]);
    assert!(second.contains("stage sft (seed 0): finished in an earlier run"), "SFT was not reused:\n{second}");
    let third = kill_at(&resumed, &data, &["stage ppo_scalar (seed 1): checkpoint at step "]);
    assert!(third.contains("stage seq2seq_rm (seed 1): finished in an earlier run"), "seq2seq RM was not reused:\n{third}");
    // The marker is the check: the run killed after its checkpoint resumes from it.
    kill_at(&resumed, &data, &["stage ppo_scalar (seed 1): resuming from the checkpoint at step "]);
    let fifth = kill_at(&resumed, &data, &["stage eval (seed 1) done"]);
    assert!(fifth.contains("stage ppo_scalar (seed 1): resuming from the checkpoint at step "), "{fifth}");
    assert!(!fifth.contains("stage ppo_scalar (seed 1): finished in an earlier run"), "an interrupted stage must be redone:\n{fifth}");
    for f in CSVS {
        assert!(!resumed.join(f).exists(), "{f} written by a killed run");
    }
    let last = smoke(&resumed, &data).output().unwrap();
    let log = String::from_utf8_lossy(&last.stderr);
    assert!(last.status.success(), "{log}");
    for stage in ["ppo_scalar", "ppo_seq2seq"] {
        assert!(log.contains(&format!("stage {stage} (seed 1): finished in an earlier run")), "{log}");
    }

    for f in CSVS {
        let (x, y) = (std::fs::read(whole.join(f)).unwrap(), std::fs::read(resumed.join(f)).unwrap());
        assert!(x == y, "{f}: the resumed run differs from the uninterrupted one");
    }
    let leftovers: Vec<_> = walk(&resumed).into_iter().filter(|p| p.to_string_lossy().ends_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}");
    // Checkpoints are removed once their stage is stored.
    let checkpoints: Vec<_> = walk(&resumed)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.contains(".partial.") || name.contains(".step")
        })
        .collect();
    assert!(checkpoints.is_empty(), "PPO checkpoints left behind: {checkpoints:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
