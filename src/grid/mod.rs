//! Scale-out: an experiment × profile × variant × seed grid as independent cells.
//!
//! A cell is one `s2rm run SPEC --seeds N --shared-dir D --output <dir>/cells/...`: it reads the
//! stages shared across seeds (tokenizer, base LM, SFT, judge) from the shared directory, where
//! one job computed them once, and computes only its seed's stages. `s2rm merge` joins the cells
//! of one (experiment, profile, variant) into the results directory a single run of all the seeds
//! writes (`merge`). `s2rm grid` plans the cells (`plan`) and runs them here (`local`) or writes
//! sbatch scripts for a Slurm cluster (`slurm`); a finished cell is never run again.

mod cell;
mod local;
pub mod merge;
pub mod plan;
pub mod slurm;

use anyhow::{Result, bail};
use std::path::PathBuf;

/// `s2rm grid`'s options.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  s2rm grid experiments/safety.toml experiments/world_safety.toml --profiles smoke --seeds 1,2 --local\n  s2rm grid experiments/*.toml --profiles default,small --seeds 1,2,3 --dir /nfs/me/grid --slurm --partition cpu --time 4:00:00 --cpus 4\n  s2rm grid experiments/world_safety.toml --variant 'mean=seq2seq_rm.reward_scaling=\"mean\"' --local --workers 2")]
pub struct GridArgs {
    /// Experiment specs (TOML), e.g. experiments/safety.toml experiments/summarization.toml.
    #[arg(required = true)]
    pub specs: Vec<PathBuf>,
    /// Profiles, comma-separated, e.g. --profiles default,small (one results directory per spec and profile).
    #[arg(long, value_delimiter = ',', default_value = "default")]
    pub profiles: Vec<String>,
    /// Seeds, comma-separated (default: each spec's experiment.seeds); one cell per seed, e.g. --seeds 1,2,3.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,
    /// A variant of every spec and profile, with its own results directory <profile>_<NAME>:
    /// NAME=FIELD=VALUE as `s2rm run --set` takes it (repeat a NAME for several fields), e.g.
    /// --variant 'mean=seq2seq_rm.reward_scaling="mean"'. The unchanged spec is always in the grid.
    #[arg(long = "variant")]
    pub variants: Vec<String>,
    /// Folder of the grid (a network file system on a cluster): cells/, results/ (the merged
    /// results, <experiment>/<profile>), shared/, slurm/, logs/.
    #[arg(long, default_value = "grid")]
    pub dir: PathBuf,
    /// Where the shared stages are kept (default <dir>/shared); an existing folder, e.g. one that
    /// another grid of the same specs filled, whose cells then train no shared stage again.
    #[arg(long)]
    pub shared_dir: Option<PathBuf>,
    /// Device of every job, as `s2rm run --device` (default: each spec's experiment.device). The
    /// stage keys and `s2rm merge` require one device (and CPU count) for all cells of a spec.
    #[arg(long)]
    pub device: Option<String>,
    /// Folder with the datasets, as `s2rm run --data-dir` (default: each spec's experiment.data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Run the plan on this machine: the shared stages, the unfinished cells (--workers at a
    /// time, each its own process), then every merge.
    #[arg(long, conflicts_with = "slurm")]
    pub local: bool,
    /// Cells run at once with --local.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Write sbatch scripts into <dir>/slurm/ (shared job, cell array job, merge job, submit.sh)
    /// and print the command that submits them.
    #[arg(long)]
    pub slurm: bool,
    /// Slurm partition of every job, e.g. --partition cpu.
    #[arg(long, requires = "slurm")]
    pub partition: Option<String>,
    /// Slurm time limit of each job, e.g. --time 2:00:00.
    #[arg(long, requires = "slurm")]
    pub time: Option<String>,
    /// CPUs of the shared job and of each cell (sbatch --cpus-per-task), e.g. --cpus 4.
    #[arg(long, default_value_t = 2)]
    pub cpus: usize,
    /// GPUs of the shared job and of each cell (sbatch --gpus), e.g. --gpus 1 with --device wgpu.
    #[arg(long, requires = "slurm")]
    pub gpus: Option<usize>,
    /// Also submit the scripts (runs <dir>/slurm/submit.sh) and print the job ids.
    #[arg(long, requires = "slurm")]
    pub submit: bool,
}

/// `s2rm grid`: plans, then runs here, writes sbatch scripts, or (neither) prints the plan.
pub fn grid(a: &GridArgs) -> Result<()> {
    if let Some(d) = a.device.as_deref() {
        if !crate::device::KINDS.contains(&d) {
            bail!("--device: unknown device `{d}`; expected one of {}", crate::device::KINDS.join(", "));
        }
    }
    let req = plan::Request {
        specs: a.specs.clone(),
        profiles: a.profiles.clone(),
        seeds: a.seeds.clone(),
        variants: a.variants.clone(),
        dir: a.dir.clone(),
        shared_dir: a.shared_dir.clone(),
        device: a.device.clone(),
        data_dir: a.data_dir.clone(),
    };
    let plan = plan::Plan::build(&req)?;
    eprintln!("{}", plan.summary());
    if a.local {
        return local::run(&plan, a.workers);
    }
    if a.slurm {
        let r = slurm::Resources { partition: a.partition.clone(), time: a.time.clone(), cpus: a.cpus, gpus: a.gpus };
        let files = slurm::scripts(&plan, &r)?;
        crate::util::write_all_atomic(&files)?;
        let submit = plan.dir.join("slurm").join("submit.sh");
        if a.submit {
            println!("{}", slurm::submit(&submit)?);
        } else {
            println!("wrote {} (shared job, {} cells, merge job); submit with:\n  bash {}", plan.dir.join("slurm").display(), plan.todo().len(), submit.display());
        }
        return Ok(());
    }
    // Neither: the plan itself, as the commands a user could run by hand.
    let q = |args: &[String]| args.iter().map(|s| slurm::quote(s)).collect::<Vec<_>>().join(" ");
    println!("mkdir -p {}", slurm::quote(&plan.shared_dir.display().to_string()));
    for args in plan.shared_commands() {
        println!("s2rm {}", q(&args));
    }
    for c in plan.todo() {
        println!("s2rm {}", q(&plan.cell_command(c)));
    }
    for i in 0..plan.entries.len() {
        println!("s2rm {}", q(&plan.merge_command(i)));
    }
    eprintln!("(a plan only: pass --local to run it here or --slurm to write sbatch scripts)");
    Ok(())
}
