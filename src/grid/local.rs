//! `s2rm grid --local`: the plan on this machine, with the same commands a Slurm grid runs, each
//! cell its own `s2rm run` process (a failed cell stops nothing else), `--workers` at a time.

use super::plan::{Cell, Plan};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn spawn(plan: &Plan, args: &[String], log: &Path) -> Result<Child> {
    std::fs::create_dir_all(log.parent().unwrap_or(Path::new("."))).with_context(|| format!("cannot create the log folder of {}", log.display()))?;
    let file = std::fs::File::create(log).with_context(|| format!("cannot write log {}", log.display()))?;
    Command::new(&plan.exe)
        .args(args)
        .current_dir(&plan.cwd)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {}", plan.exe.display()))
}

/// The last line a failed process wrote, for the one-line error.
fn last_line(log: &Path) -> String {
    std::fs::read_to_string(log).ok().and_then(|t| t.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_string)).unwrap_or_default()
}

fn log_of(plan: &Plan, c: &Cell) -> PathBuf {
    plan.dir.join("logs").join(format!("{}-seed{}.log", plan.entries[c.entry].name.replace('/', "-"), c.seed))
}

/// Runs the shared stages, the unfinished cells and every merge; fails naming the failed cells.
pub fn run(plan: &Plan, workers: usize) -> Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(&plan.shared_dir).with_context(|| format!("cannot create the shared directory {}", plan.shared_dir.display()))?;
    for (i, args) in plan.shared_commands().iter().enumerate() {
        let log = plan.dir.join("logs").join(format!("shared-{i}.log"));
        eprintln!("grid: shared stages ({} {}) ...", args[1], args[3]);
        let status = spawn(plan, args, &log)?.wait()?;
        if !status.success() {
            bail!("grid: the shared stages of {} failed ({status}): {}; log {}", args[1], last_line(&log), log.display());
        }
    }
    let todo = plan.todo();
    let mut running: Vec<(Child, &Cell)> = Vec::new();
    let (mut next, mut failed) = (0, Vec::new());
    while next < todo.len() || !running.is_empty() {
        while running.len() < workers.max(1) && next < todo.len() {
            let c = todo[next];
            eprintln!("grid: cell {} seed {} ...", plan.entries[c.entry].name, c.seed);
            running.push((spawn(plan, &plan.cell_command(c), &log_of(plan, c))?, c));
            next += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut still = Vec::new();
        for (mut child, c) in running {
            match child.try_wait()? {
                None => still.push((child, c)),
                Some(status) if status.success() => eprintln!("grid: cell {} seed {} done", plan.entries[c.entry].name, c.seed),
                Some(status) => {
                    let log = log_of(plan, c);
                    failed.push(format!("{} seed {} ({status}: {}; log {})", plan.entries[c.entry].name, c.seed, last_line(&log), log.display()));
                }
            }
        }
        running = still;
    }
    // Every results directory whose cells all finished is merged, even when another's failed.
    let mut merged = 0;
    for (i, e) in plan.entries.iter().enumerate() {
        let dirs: Vec<PathBuf> = plan.cells.iter().filter(|c| c.entry == i).map(|c| c.dir.clone()).collect();
        if dirs.iter().all(|d| super::cell::read(d).is_ok()) {
            super::merge::merge(&dirs, &e.results).with_context(|| format!("merging {}", e.name))?;
            merged += 1;
        }
    }
    if !failed.is_empty() {
        bail!(
            "grid: {} of {} cells failed: {}; {merged} of {} results directories merged; run the same `s2rm grid` again to rerun only the unfinished cells",
            failed.len(),
            todo.len(),
            failed.join("; "),
            plan.entries.len()
        );
    }
    eprintln!("grid: {} cells run, {merged} results directories merged in {:.1}s; results in {}", todo.len(), started.elapsed().as_secs_f64(), plan.dir.join("results").display());
    Ok(())
}
