use anyhow::Result;
use clap::{Parser, Subcommand};
use s2rm::{report, runner, spec};
use std::path::PathBuf;
use std::process::ExitCode;

/// Reproduction harness for "Sequence to Sequence Reward Modeling" (AAAI 2025): runs a scalar-RM
/// versus seq2seq-RM RLHF comparison from a TOML experiment spec and writes CSV tables, figures
/// and a report.
#[derive(Parser)]
#[command(name = "s2rm", version, after_help = "Examples:\n  s2rm run experiments/safety.toml                 # default profile, best device\n  s2rm run experiments/safety.toml --profile smoke --device cpu\n  s2rm report results/safety                       # re-render tables, figures, REPORT.md\n  s2rm paper                                       # results/PAPER.md: paper claims vs our numbers\n  s2rm tables --pivot experiment,size:prompt_set --policy ppo_seq2seq --vs ppo_scalar --variant default\n  s2rm validate experiments/*.toml")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// What `run` and `judge` both take: the spec, the overrides and where things are.
#[derive(clap::Args)]
struct SpecArgs {
    /// Experiment spec (TOML), e.g. experiments/safety.toml.
    spec: PathBuf,
    /// Override any spec field: --set ppo.kl_coef=0.05 (repeatable; value is TOML).
    #[arg(long = "set")]
    sets: Vec<String>,
    /// auto (a real GPU through wgpu if present, else CPU), cpu, wgpu, or libtorch (LibTorch CPU kernels; only in a build with `--features libtorch`). Overrides experiment.device.
    #[arg(long)]
    device: Option<String>,
    /// Output directory (overrides experiment.output_dir); its .cache holds the stage cache.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Folder with the datasets (overrides experiment.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run an experiment end to end: data, tokenizer, base LM, SFT, judge, both RMs, two PPO runs
    /// per seed, evaluation, report.
    Run {
        #[command(flatten)]
        spec: SpecArgs,
        /// Profile: smoke (seconds), default (minutes on a 2-core CPU, model `tiny`), small (the second model size, results/<name>_small), pretrained (SmolLM2-135M as LoRA adapters over one frozen base, with the committed judge; 3 seeds in about 95-120 min on a 2-core CPU) or gpu (SmolLM2-135M fine-tuned in full, for a GPU).
        #[arg(long, default_value = "default")]
        profile: String,
        /// Seeds, comma-separated (overrides experiment.seeds), e.g. 1,2,3.
        #[arg(long, value_delimiter = ',')]
        seeds: Option<Vec<u64>>,
        /// Run the stages one after the other instead of two at a time (by default a stage starts
        /// as soon as its inputs are trained, so SFT runs beside the judge and one seed's reward
        /// models beside another's PPO). The results are identical; only wall time changes.
        #[arg(long)]
        sequential: bool,
        /// Folder of the stage cache (default: <output>/.cache). Point an ablation at its base
        /// run's cache to reuse every stage whose key it does not change, e.g.
        /// --cache results/world_safety/.cache --set seq2seq_rm.mixing="identity_only".
        #[arg(long)]
        cache: Option<PathBuf>,
        /// An existing folder (on a cluster: a network file system every node mounts) where the
        /// shared stages (tokenizer, base LM, SFT, judge) are read from and written to, keyed by
        /// their stage keys, so that runs of other seeds on other machines reuse them, e.g.
        /// --shared-dir /nfs/me/grid/shared --seeds 2 --output /nfs/me/grid/cells/seed2.
        #[arg(long)]
        shared_dir: Option<PathBuf>,
        /// Compute only the shared stages into --shared-dir and write no results (the first job of
        /// a grid; the cells then load them).
        #[arg(long, requires = "shared_dir")]
        shared_only: bool,
    },
    /// Train the judge alone (the judge stage and the stages it reads) and write its LoRA adapters
    /// and score head to a file, with its sha256, for a spec's `judge.adapter` and
    /// `judge.adapter_sha256`: every user's win rates then come from this one judge. The spec's
    /// own `judge.adapter` is ignored (this trains one, or takes --from's). The same spec,
    /// profile, device and number of cores retrain it bit-identically.
    #[command(after_help = "Example (the committed safety judge, data/judges/README.md):\n  s2rm judge experiments/safety.toml --profile pretrained --adapter data/judges/safety_smollm2.bpk")]
    Judge {
        #[command(flatten)]
        spec: SpecArgs,
        /// Profile; it must use LoRA (`model.lora`), e.g. pretrained.
        #[arg(long, default_value = "pretrained")]
        profile: String,
        /// Where to write the adapter (and, beside it, FILE.sha256).
        #[arg(long)]
        adapter: PathBuf,
        /// Do not train: take the judge from this file (a judge entry of a run's stage cache, or
        /// an older adapter), measure it, and write it as --adapter does.
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Plan an experiment × profile × variant × seed grid as independent cells (one `s2rm run` per
    /// seed reading the shared stages from one shared directory) and run it here (--local), write
    /// sbatch scripts for a Slurm cluster (--slurm), or print the plan. Finished cells are skipped.
    Grid(s2rm::grid::GridArgs),
    /// Join per-seed results directories (the cells of a grid) of one experiment and profile into
    /// one results directory: the same CSVs, figures and REPORT.md as one `s2rm run` of all their
    /// seeds (timings aside).
    #[command(after_help = "Example:
  s2rm merge grid/cells/safety/smoke/seed1 grid/cells/safety/smoke/seed2 --output results/safety_smoke")]
    Merge {
        /// Cell directories (each the --output of an `s2rm run`), e.g. grid/cells/safety/default/seed*.
        #[arg(required = true)]
        cells: Vec<PathBuf>,
        /// The merged results directory, e.g. results/safety.
        #[arg(long)]
        output: PathBuf,
    },
    /// Re-render metrics.csv, win_rates.csv, figures and REPORT.md from a results directory's CSVs
    /// (no training).
    Report {
        /// Results directory, e.g. results/safety.
        dir: PathBuf,
    },
    /// Write the paper's claims next to our numbers (results/PAPER.md) from every results directory
    /// holding a generations.csv, and the paper-level figures (<results>/figures/paper_*.png, .svg)
    /// from every directory's tables (no training).
    Paper {
        /// Folder whose subdirectories are results directories.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// Output file (default: <results>/PAPER.md).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Win rates, metrics, reward-model and PPO numbers across every results directory, as one
    /// table: filter, pivot, sort (no training). Reads each directory's win_rates.csv, metrics.csv,
    /// rm_eval.csv, ppo_log.csv and run_info.json.
    #[command(after_help = TABLES_EXAMPLES)]
    Tables(TablesArgs),
    /// Load a pretrained checkpoint (GGUF file or Hugging Face folder), answer prompts greedily with
    /// its chat template, and print load time, generation speed and the perplexity of a fixed
    /// English sentence.
    Sample {
        /// e.g. models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf (`make model-smollm2`).
        checkpoint: PathBuf,
        /// Prompt (repeatable).
        #[arg(long = "prompt", default_value = "What is the capital of France?")]
        prompts: Vec<String>,
        #[arg(long, default_value_t = 32)]
        max_new_tokens: usize,
        /// Rows of the throughput measurement (sampled generation, run twice: cold and warm).
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// auto, cpu, wgpu or libtorch (a `--features libtorch` build).
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Training tokens/s, generation tokens/s and a PPO-step breakdown per model preset, as a table
    /// and a CSV (compare with bench/torch_reference.py: `make bench`).
    Bench {
        /// Model presets: tiny, small (the experiments' two sizes), issue (d128, vocab 4096),
        /// pretrained (SmolLM2-135M's shape, random weights, trained in full), pretrained-lora (rank-16
        /// LoRA on every block) or pretrained-lora-top<K> (on the last K blocks, e.g. top8: the
        /// `pretrained` profile's roles).
        #[arg(long, value_delimiter = ',', default_value = "tiny,small")]
        presets: Vec<String>,
        /// Which benchmarks: train, generate, ppo; also matmul (a diagnostic: one training step's matrix
        /// products alone, without the rest of the step).
        #[arg(long, value_delimiter = ',', default_value = "train,generate,ppo")]
        benchmarks: Vec<String>,
        /// Timed repetitions per benchmark (the CSV holds their median, min and max).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Untimed repetitions first.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// auto, cpu, wgpu or libtorch (a `--features libtorch` build).
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long, default_value = "results/bench/burn.csv")]
        output: PathBuf,
        /// Spec whose `ppo` table (default profile) the PPO step uses.
        #[arg(long, default_value = "experiments/safety.toml")]
        ppo_spec: PathBuf,
    },
    /// Print the device `--device` selects on this machine and why (`auto`: a real GPU through
    /// wgpu, else the CPU). `make reproduce-safety` asks it which profile to run.
    Device {
        /// auto, cpu, wgpu or libtorch.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Exit with status 1 unless it selects wgpu (with `auto`: a real GPU, not a software renderer).
        #[arg(long)]
        require_gpu: bool,
    },
    /// Check specs (the base tables and every profile they define) without running anything.
    Validate {
        /// Spec files.
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Also print each profile's stage table: every stage, shared or per seed, what it reads
        /// and the spec fields of its cache key (see README, "Adding a stage").
        #[arg(long)]
        stages: bool,
    },
}

const TABLES_EXAMPLES: &str = "Examples:
  s2rm tables --policy ppo_seq2seq --vs ppo_scalar --prompt-set all      # the headline, every directory
  s2rm tables --policy ppo_seq2seq --vs ppo_scalar --variant default --pivot experiment,size:prompt_set
  s2rm tables --metric refusal_rate --prompt-set benign --pivot dir:policy --sort dir
  s2rm tables --experiment safety --size tiny --metric win_rate --seed all --format csv";

/// `s2rm tables`: every filter takes a comma-separated list; an unknown value is an error that
/// lists the known ones.
#[derive(clap::Args)]
struct TablesArgs {
    /// Folder whose subdirectories are results directories, e.g. --results results.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Results directories (by name), e.g. --dir safety,safety_mean_scaling.
    #[arg(long, value_delimiter = ',')]
    dir: Vec<String>,
    /// Experiments (run_info.json's `experiment`), e.g. --experiment safety,world_safety.
    #[arg(long, value_delimiter = ',')]
    experiment: Vec<String>,
    /// Model sizes (presets), e.g. --size small.
    #[arg(long, value_delimiter = ',')]
    size: Vec<String>,
    /// Variants: what a directory adds to its experiment and size (`default` for none), e.g.
    /// --variant mean_scaling or --variant null (a null control).
    #[arg(long, value_delimiter = ',')]
    variant: Vec<String>,
    /// Tiers: world, from_scratch, pretrained, e.g. --tier world.
    #[arg(long, value_delimiter = ',')]
    tier: Vec<String>,
    /// Prompt sets (`all` = the in-distribution union; PPO rows: `rollouts`), e.g. --prompt-set benign,ood_alpaca.
    #[arg(long, value_delimiter = ',')]
    prompt_set: Vec<String>,
    /// Policies (for win rates: policy A; for reward models: scalar_rm, seq2seq_rm, judge), e.g. --policy ppo_seq2seq.
    #[arg(long, value_delimiter = ',')]
    policy: Vec<String>,
    /// The opponent (policy B) of a win rate, e.g. --vs ppo_scalar.
    #[arg(long, value_delimiter = ',')]
    vs: Vec<String>,
    /// Metrics: win_rate, lc_win_rate, metrics.csv's (refusal_rate, mean_length_tokens, ...),
    /// rm_eval.csv's (pair_accuracy, ...) or ppo_<column> of ppo_log.csv, e.g. --metric refusal_rate,mean_length_tokens.
    #[arg(long, value_delimiter = ',', default_value = "win_rate")]
    metric: Vec<String>,
    /// pooled (over seeds; the mean over seeds for rm_eval and ppo_log), all, or one seed, e.g. --seed 2.
    #[arg(long, default_value = "pooled")]
    seed: s2rm::frame::query::SeedSel,
    /// PPO-log steps: last (each run's final step), all, or one step, e.g. --step 50.
    #[arg(long, default_value = "last")]
    step: s2rm::frame::query::StepSel,
    /// ROWS:COLUMNS: one row per value of the row columns, one column per value of the others, e.g.
    /// --pivot experiment,size:prompt_set. Each cell must be one row (filter the rest away).
    #[arg(long, value_parser = s2rm::frame::query::parse_pivot)]
    pivot: Option<(Vec<String>, Vec<String>)>,
    /// Sort by columns (before pivoting), `:desc` for descending, e.g. --sort value:desc,dir.
    #[arg(long, value_delimiter = ',', value_parser = s2rm::frame::query::parse_sort)]
    sort: Vec<(String, bool)>,
    /// Key columns to show (default: those that differ between rows), e.g. --columns dir,prompt_set.
    #[arg(long, value_delimiter = ',')]
    columns: Option<Vec<String>>,
    /// table (aligned, intervals as `22.1 [18.2, 25.7]`), markdown, csv or json (csv and json: every column, unformatted), e.g. --format csv.
    #[arg(long, value_enum, default_value = "table")]
    format: s2rm::frame::query::Format,
    /// Width the terminal table is fitted into, e.g. --width 140.
    #[arg(long, default_value_t = 100)]
    width: usize,
}

impl TablesArgs {
    fn query(&self) -> s2rm::frame::query::Query {
        let f = |v: &Vec<String>| v.clone();
        s2rm::frame::query::Query {
            filters: vec![
                ("dir", f(&self.dir)),
                ("experiment", f(&self.experiment)),
                ("size", f(&self.size)),
                ("variant", f(&self.variant)),
                ("tier", f(&self.tier)),
                ("prompt_set", f(&self.prompt_set)),
                ("policy", f(&self.policy)),
                ("opponent", f(&self.vs)),
                ("metric", f(&self.metric)),
            ],
            seed: self.seed.clone(),
            step: self.step.clone(),
            pivot: self.pivot.clone(),
            sort: self.sort.clone(),
            columns: self.columns.clone(),
            format: self.format,
            width: self.width,
        }
    }
}

/// glibc hands every block above 128 KiB back to the kernel on free (mmap / munmap), so each large
/// tensor burn allocates is fresh memory that page-faults and is zeroed by the kernel on first
/// write. Keeping such blocks in the heap (up to 32 MiB, glibc's largest mmap threshold; no trim
/// below 1 GiB) changes no computed value: a shortened safety run wrote byte-identical CSVs and
/// took 0.91× the wall time (README, Speed).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_large_allocations_in_the_heap() {
    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_TOP_PAD: i32 = -2;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only sets allocator parameters; called first thing, before any thread exists.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
        mallopt(M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_large_allocations_in_the_heap() {}

fn main() -> ExitCode {
    keep_large_allocations_in_the_heap();
    // A panic is a bug, not an input error: report it on one line like every other error (the
    // location says where to look; RUST_BACKTRACE=1 adds the backtrace).
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: internal error (a bug in s2rm, please report it): {}{at}", msg.replace('\n', "; "));
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
    }));
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_device(device: Option<&str>) -> Result<()> {
    if let Some(d) = device {
        if !s2rm::device::KINDS.contains(&d) {
            anyhow::bail!("--device: unknown device `{d}`; expected one of {}", s2rm::device::KINDS.join(", "));
        }
    }
    Ok(())
}

fn real_main(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Run { spec: SpecArgs { spec: file, mut sets, device, output, data_dir }, profile, seeds, sequential, cache, shared_dir, shared_only } => {
            if let Some(seeds) = seeds {
                let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
                sets.push(format!("experiment.seeds=[{}]", list.join(",")));
            }
            check_device(device.as_deref())?;
            let resolved = spec::load(&file, &profile, &sets)?;
            let opts = runner::RunOptions { output, data_dir, device, sequential, cache, shared_dir, shared_only };
            runner::run(&resolved, &opts)?;
        }
        Cmd::Judge { spec: SpecArgs { spec: file, mut sets, device, output, data_dir }, profile, adapter, from } => {
            check_device(device.as_deref())?;
            let (from, sha) = match &from {
                Some(f) => {
                    let bytes = std::fs::read(f).map_err(|e| anyhow::anyhow!("--from {}: {e}", f.display()))?;
                    (f.display().to_string(), s2rm::util::sha256_hex(&bytes))
                }
                None => (String::new(), String::new()),
            };
            // TOML string literals (a path's Debug form is not one when it holds a quote or a
            // non-ASCII character).
            let lit = |v: &str| toml::Value::String(v.into()).to_string();
            sets.extend([format!("judge.adapter={}", lit(&from)), format!("judge.adapter_sha256={}", lit(&sha))]);
            let resolved = spec::load(&file, &profile, &sets)?;
            let opts = runner::RunOptions { output, data_dir, device, ..Default::default() };
            let j = runner::train_judge(&resolved, &opts, &adapter)?;
            println!("wrote {} in {:.0} s", adapter.display(), j.seconds);
            for (k, v, n) in &j.metrics {
                println!("  held-out {k}: {v:.4} ({n} pairs)");
            }
            println!("for the spec:\n  judge = {{ adapter = \"{}\", adapter_sha256 = \"{}\" }}", adapter.display(), j.sha256);
        }
        Cmd::Grid(args) => s2rm::grid::grid(&args)?,
        Cmd::Merge { cells, output } => {
            let seeds = s2rm::grid::merge::merge(&cells, &output)?;
            println!("merged {} cells (seeds {seeds:?}) into {}", cells.len(), output.display());
        }
        Cmd::Sample { checkpoint, prompts, max_new_tokens, batch, device } => {
            let r = s2rm::sample::sample(&checkpoint, &prompts, max_new_tokens, batch.max(1), &device)?;
            println!("device: {}", r.device);
            println!("load: {:.2} s", r.load_seconds);
            println!("perplexity of the reference sentence: {:.2}", r.perplexity);
            for (p, a) in prompts.iter().zip(&r.answers) {
                println!("> {p}\n{a}");
            }
            println!(
                "generation, batch {}: {:.1} tokens/s cold (kernel compilation included), {:.1} tokens/s warm",
                r.batch, r.tokens_per_s_first, r.tokens_per_s_warm
            );
        }
        Cmd::Report { dir } => {
            if !dir.is_dir() {
                anyhow::bail!("results directory {} does not exist or is not a directory (give the output folder of `s2rm run`)", dir.display());
            }
            report::render(&dir)?;
            println!("rendered {}", dir.join("REPORT.md").display());
        }
        Cmd::Paper { results, output } => {
            let output = output.unwrap_or_else(|| results.join("PAPER.md"));
            report::write_paper(&results, &output)?;
            println!("wrote {}", output.display());
            let frame = s2rm::frame::load(&results)?;
            s2rm::frame::figures::write(&results, &frame)?;
            println!("wrote {}/figures/{{{}}}.{{png,svg}}", results.display(), s2rm::frame::figures::PAPER_FIGURES.join(","));
        }
        Cmd::Tables(a) => print!("{}", s2rm::frame::query::run(&a.results.clone(), &a.query())?),
        Cmd::Bench { presets, benchmarks, runs, warmup, device, output, ppo_spec } => {
            s2rm::bench::run(&s2rm::bench::BenchOptions { presets, benchmarks, runs, warmup, device, output, ppo_spec })?;
        }
        Cmd::Device { device, require_gpu } => {
            let sel = s2rm::device::select(&device)?;
            println!("{} — {}", sel.name, sel.reason);
            if require_gpu && sel.backend != s2rm::device::Backend::Wgpu {
                anyhow::bail!("--require-gpu: `{device}` selects {}, not a GPU", sel.name);
            }
        }
        Cmd::Validate { specs, stages } => {
            for file in specs {
                // `default` first: an unusable spec is reported as such, not as a missing profile.
                let profiles = spec::defined_profiles(&file);
                let mut tables = Vec::new();
                for profile in &profiles {
                    let r = spec::load(&file, profile, &[])?;
                    if stages {
                        tables.push((profile.clone(), s2rm::stages::describe(&s2rm::stages::table(&r.spec))));
                    }
                }
                println!("{}: ok (profiles {})", file.display(), profiles.join(", "));
                for (profile, t) in tables {
                    println!("\nprofile {profile}:\n{t}");
                }
            }
        }
    }
    Ok(())
}
