//! `s2rm grid --slurm`: the plan as sbatch scripts in `<dir>/slurm/`: one job for the shared
//! stages, an array job of the unfinished cells that starts once the shared job succeeded
//! (`afterok`), and a merge job that starts once every cell ended (`afterany`, so that it can
//! name the cells that failed), plus `submit.sh`, which submits the three in order and, when an
//! sbatch fails, cancels the jobs it already submitted.

use super::plan::Plan;
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

/// Resources of the shared job and of each cell (the merge job takes one CPU).
#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub partition: Option<String>,
    pub time: Option<String>,
    pub cpus: usize,
    pub gpus: Option<usize>,
}

/// An argument as the shell reads it back unchanged.
pub fn quote(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "_./=,:+-@%".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

fn line(plan: &Plan, args: &[String]) -> String {
    let mut l = quote(&plan.exe.display().to_string());
    for a in args {
        l.push(' ');
        l.push_str(&quote(a));
    }
    l
}

fn header(plan: &Plan, name: &str, log: &str, r: &Resources, cpus: usize, gpus: Option<usize>) -> String {
    let logs = plan.dir.join("slurm").join("logs");
    let mut h = format!("#!/bin/bash\n#SBATCH --job-name=s2rm-{name}\n#SBATCH --output={}/{log}\n#SBATCH --cpus-per-task={cpus}\n", logs.display());
    if let Some(p) = &r.partition {
        h.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(t) = &r.time {
        h.push_str(&format!("#SBATCH --time={t}\n"));
    }
    if let Some(g) = gpus {
        h.push_str(&format!("#SBATCH --gpus={g}\n"));
    }
    h
}

/// The script files: (path, content), written together by the caller.
pub fn scripts(plan: &Plan, r: &Resources) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    if r.cpus == 0 {
        bail!("--cpus 0: each job needs at least one CPU");
    }
    for (what, v) in [("--partition", &r.partition), ("--time", &r.time)] {
        if v.as_deref().is_some_and(|v| v.is_empty() || v.contains(char::is_whitespace)) {
            bail!("{what} `{}`: a Slurm {} is one word, e.g. {what} {}", v.as_deref().unwrap_or(""), &what[2..], if what == "--time" { "1:00:00" } else { "gpu" });
        }
    }
    let dir = plan.dir.join("slurm");
    let cd = format!("set -euo pipefail\n# Spec, manifest and data paths are relative to where `s2rm grid` ran.\ncd {}\n", quote(&plan.cwd.display().to_string()));
    let mut files = Vec::new();
    let todo = plan.todo();

    let mut shared = header(plan, "shared", "shared-%j.out", r, r.cpus, r.gpus);
    shared.push_str(&format!("# The stages every cell reads (tokenizer, base LM, SFT, judge), once, into the shared directory.\n{cd}mkdir -p {}\n", quote(&plan.shared_dir.display().to_string())));
    for args in plan.shared_commands() {
        shared.push_str(&line(plan, &args));
        shared.push('\n');
    }
    files.push((dir.join("shared.sbatch"), shared));

    let mut cells = header(plan, "cells", "cell-%A_%a.out", r, r.cpus, r.gpus);
    cells.push_str(&format!("#SBATCH --array=0-{}\n", todo.len().saturating_sub(1)));
    cells.push_str(&format!("# One cell per array task: one seed of one (spec, profile, variant); rerun one alone with\n# `sbatch --array=K {}`.\n{cd}case \"$SLURM_ARRAY_TASK_ID\" in\n", dir.join("cells.sbatch").display()));
    for (k, c) in todo.iter().enumerate() {
        cells.push_str(&format!("  {k}) exec {} ;;\n", line(plan, &plan.cell_command(c))));
    }
    cells.push_str(&format!("  *) echo \"error: this grid has no cell $SLURM_ARRAY_TASK_ID (0-{})\" >&2; exit 2 ;;\nesac\n", todo.len().saturating_sub(1)));
    files.push((dir.join("cells.sbatch"), cells));

    let mut merge = header(plan, "merge", "merge-%j.out", r, 1, None);
    merge.push_str(&format!("# Each results directory from its cells; names the cells that failed.\n{cd}status=0\n"));
    for i in 0..plan.entries.len() {
        merge.push_str(&format!("{} || status=1\n", line(plan, &plan.merge_command(i))));
    }
    merge.push_str("exit $status\n");
    files.push((dir.join("merge.sbatch"), merge));

    let mut submit = String::from(
        "#!/usr/bin/env bash\n# Submits this grid: the shared stages, the cells (after the shared job succeeded), the merge\n# (after every cell ended). If an sbatch fails, the jobs already submitted are cancelled.\nset -uo pipefail\ncd \"$(dirname \"$0\")\"\nsubmitted=\"\"\nsubmit() {\n  local out\n  if ! out=$(sbatch --parsable \"$@\" 2>&1); then\n    [ -n \"$submitted\" ] && scancel $submitted\n    echo \"error: sbatch $* failed: ${out//$'\\n'/ }${submitted:+ (cancelled the jobs already submitted:$submitted)}\" >&2\n    exit 1\n  fi\n  echo \"${out%%;*}\"\n}\nmkdir -p logs\n",
    );
    let s = plan.todo().len();
    if s > 0 {
        submit.push_str("shared=$(submit shared.sbatch) || exit 1\nsubmitted=\" $shared\"\ncells=$(submit --dependency=afterok:$shared cells.sbatch) || exit 1\nsubmitted=\"$submitted $cells\"\n");
        submit.push_str("merge=$(submit --dependency=afterany:$cells merge.sbatch) || exit 1\n");
        submit.push_str(&format!("echo \"submitted: shared stages job $shared, cells array job $cells ({s} cells), merge job $merge\"\n"));
    } else {
        // Every cell finished already: only the merge is left.
        submit.push_str("merge=$(submit merge.sbatch) || exit 1\necho \"submitted: merge job $merge (every cell finished already)\"\n");
    }
    files.push((dir.join("submit.sh"), submit));
    Ok(files.into_iter().map(|(p, s)| (p, s.into_bytes())).collect())
}

/// Runs `submit.sh`; returns what it printed (the job ids).
pub fn submit(submit_sh: &Path) -> Result<String> {
    let out = std::process::Command::new("bash").arg(submit_sh).output();
    let out = match out {
        Ok(o) => o,
        Err(e) => bail!("cannot run {}: {e}", submit_sh.display()),
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    if !out.status.success() {
        let err = text(&out.stderr);
        if err.contains("sbatch: command not found") || err.contains("No such file") && err.contains("sbatch") {
            bail!("sbatch not found: this machine is not a Slurm submit host; run {} on one, or use --local", submit_sh.display());
        }
        bail!("{}", err.lines().last().unwrap_or("submit.sh failed").trim_start_matches("error: "));
    }
    Ok(text(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        for a in ["plain", "with space", "it's", "seq2seq_rm.mixing=\"identity_only\"", ""] {
            let out = std::process::Command::new("sh").arg("-c").arg(format!("printf %s {}", quote(a))).output().unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), a);
        }
    }
}
