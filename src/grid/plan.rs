//! The plan of a grid: every (spec, profile, variant) is one results directory, every seed of it
//! one cell; the commands that compute the shared stages, each cell and each merge; and which
//! cells are finished already (a resubmitted grid runs only the others).

use super::cell;
use crate::spec::{self, Spec};
use crate::stages::{self, Scope, StageCache};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// What `s2rm grid` was asked for.
pub struct Request {
    pub specs: Vec<PathBuf>,
    pub profiles: Vec<String>,
    pub seeds: Option<Vec<u64>>,
    /// `NAME=FIELD=VALUE` (also `NAME=--set FIELD=VALUE`); one name may be given several times.
    pub variants: Vec<String>,
    pub dir: PathBuf,
    pub shared_dir: Option<PathBuf>,
    pub device: Option<String>,
    pub data_dir: Option<PathBuf>,
}

/// One results directory of the grid.
pub struct Entry {
    pub spec_file: PathBuf,
    pub profile: String,
    pub variant: Option<String>,
    /// The variant's `--set` overrides.
    pub sets: Vec<String>,
    pub spec: Spec,
    pub seeds: Vec<u64>,
    pub results: PathBuf,
    /// The shared stages' cache stems: entries with the same set share one computation.
    pub shared_stems: Vec<String>,
    /// `<experiment>/<profile>[_<variant>]`, the entry's place under cells/ and results/.
    pub name: String,
}

pub struct Cell {
    pub entry: usize,
    pub seed: u64,
    pub dir: PathBuf,
    /// Finished by this build with this spec: not run again.
    pub done: bool,
}

pub struct Plan {
    pub dir: PathBuf,
    pub shared_dir: PathBuf,
    /// This s2rm binary, which every job runs (the stage keys name it).
    pub exe: PathBuf,
    /// Where the jobs run (spec and manifest paths are relative to it).
    pub cwd: PathBuf,
    device: Option<String>,
    data_dir: Option<PathBuf>,
    pub entries: Vec<Entry>,
    pub cells: Vec<Cell>,
}

fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) }
}

/// `NAME=FIELD=VALUE` → (NAME, `FIELD=VALUE`).
fn parse_variant(v: &str) -> Result<(String, String)> {
    let Some((name, set)) = v.split_once('=') else { bail!("--variant `{v}`: expected NAME=FIELD=VALUE, e.g. --variant 'mean=seq2seq_rm.reward_scaling=\"mean\"'") };
    let set = set.trim_start();
    let set = set.strip_prefix("--set=").or_else(|| set.strip_prefix("--set ")).unwrap_or(set).trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        bail!("--variant `{v}`: the name `{name}` must be letters, digits, - or _ (it names a folder)");
    }
    if !set.contains('=') {
        bail!("--variant `{v}`: `{set}` is not FIELD=VALUE, e.g. --variant 'mean=seq2seq_rm.reward_scaling=\"mean\"'");
    }
    Ok((name.to_string(), set.to_string()))
}

impl Plan {
    pub fn build(req: &Request) -> Result<Plan> {
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let exe = std::env::current_exe().context("cannot find the s2rm executable")?;
        let dir = absolute(&req.dir, &cwd);
        let shared_dir = match &req.shared_dir {
            Some(d) if !d.is_dir() => bail!(
                "--shared-dir {} does not exist or is not a directory; create it on a file system every node mounts, or leave --shared-dir out (default <dir>/shared)",
                d.display()
            ),
            Some(d) => absolute(d, &cwd),
            None => dir.join("shared"),
        };
        // Variants in the order first named; each with all of its overrides.
        let mut variants: Vec<(Option<String>, Vec<String>)> = vec![(None, Vec::new())];
        for v in &req.variants {
            let (name, set) = parse_variant(v)?;
            match variants.iter_mut().find(|(n, _)| n.as_deref() == Some(&name)) {
                Some((_, sets)) => sets.push(set),
                None => variants.push((Some(name), vec![set])),
            }
        }
        let exe_hash = stages::exe_hash();
        let device = req.device.clone().unwrap_or_else(|| "auto".into());
        let mut entries: Vec<Entry> = Vec::new();
        for file in &req.specs {
            for profile in &req.profiles {
                for (variant, sets) in &variants {
                    let mut all = sets.clone();
                    if let Some(seeds) = &req.seeds {
                        let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
                        all.push(format!("experiment.seeds=[{}]", list.join(",")));
                    }
                    let what = || format!("{} (profile {profile}{})", file.display(), variant.as_ref().map(|v| format!(", variant {v}")).unwrap_or_default());
                    let spec = spec::load(file, profile, &all).with_context(what)?.spec;
                    let table = stages::table(&spec);
                    let keys = StageCache::with_exe(PathBuf::new(), &table, &spec, &device, &exe_hash)?;
                    let shared_stems = table.iter().filter(|s| s.scope == Scope::Shared).map(|s| keys.stem(s.name, spec.experiment.base_seed).to_string()).collect();
                    let name = format!("{}/{profile}{}", spec.experiment.name, variant.as_ref().map(|v| format!("_{v}")).unwrap_or_default());
                    let entry = Entry {
                        spec_file: file.clone(),
                        profile: profile.clone(),
                        variant: variant.clone(),
                        sets: sets.clone(),
                        seeds: spec.experiment.seeds.clone(),
                        results: dir.join("results").join(&name),
                        spec,
                        shared_stems,
                        name,
                    };
                    check_collision(&entries, &entry)?;
                    entries.push(entry);
                }
            }
        }
        let mut cells = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            for &seed in &e.seeds {
                let dir = dir.join("cells").join(&e.name).join(format!("seed{seed}"));
                let done = cell::read(&dir).ok().map(|c| c.is(&e.spec, &e.profile, &[seed], &exe_hash)).transpose()?.unwrap_or(false);
                cells.push(Cell { entry: i, seed, dir, done });
            }
        }
        let data_dir = req.data_dir.as_ref().map(|d| absolute(d, &cwd));
        Ok(Plan { dir, shared_dir, exe, cwd, device: req.device.clone(), data_dir, entries, cells })
    }

    /// The options every `s2rm run` of the plan gets: spec, profile, variant, device, data.
    fn run_args(&self, e: &Entry) -> Vec<String> {
        let mut a = vec!["run".to_string(), e.spec_file.display().to_string(), "--profile".into(), e.profile.clone()];
        for s in &e.sets {
            a.extend(["--set".to_string(), s.clone()]);
        }
        if let Some(d) = &self.device {
            a.extend(["--device".to_string(), d.clone()]);
        }
        if let Some(d) = &self.data_dir {
            a.extend(["--data-dir".to_string(), d.display().to_string()]);
        }
        a.extend(["--shared-dir".to_string(), self.shared_dir.display().to_string()]);
        a
    }

    /// One `s2rm run --shared-only` per distinct set of shared stages that an unfinished cell
    /// reads (a variant that changes no shared field shares its base's).
    pub fn shared_commands(&self) -> Vec<Vec<String>> {
        let mut seen: Vec<&[String]> = Vec::new();
        let mut out = Vec::new();
        for c in self.cells.iter().filter(|c| !c.done) {
            let e = &self.entries[c.entry];
            if !seen.contains(&e.shared_stems.as_slice()) {
                seen.push(&e.shared_stems);
                let mut a = self.run_args(e);
                a.push("--shared-only".into());
                out.push(a);
            }
        }
        out
    }

    pub fn cell_command(&self, c: &Cell) -> Vec<String> {
        let mut a = self.run_args(&self.entries[c.entry]);
        a.extend(["--seeds".to_string(), c.seed.to_string(), "--output".into(), c.dir.display().to_string()]);
        a
    }

    pub fn merge_command(&self, entry: usize) -> Vec<String> {
        let mut a = vec!["merge".to_string()];
        a.extend(self.cells.iter().filter(|c| c.entry == entry).map(|c| c.dir.display().to_string()));
        a.extend(["--output".to_string(), self.entries[entry].results.display().to_string()]);
        a
    }

    pub fn todo(&self) -> Vec<&Cell> {
        self.cells.iter().filter(|c| !c.done).collect()
    }

    /// One line for the console: how many cells, finished, to run.
    pub fn summary(&self) -> String {
        let done = self.cells.iter().filter(|c| c.done).count();
        format!(
            "grid {}: {} results directories, {} cells ({done} finished, {} to run); shared stages in {}",
            self.dir.display(),
            self.entries.len(),
            self.cells.len(),
            self.cells.len() - done,
            self.shared_dir.display()
        )
    }
}

/// Two entries writing one results directory: the same experiment given twice, or two specs of
/// one `experiment.name` whose shared stages disagree (their cells would mix two experiments).
fn check_collision(entries: &[Entry], new: &Entry) -> Result<()> {
    let Some(old) = entries.iter().find(|e| e.name == new.name) else { return Ok(()) };
    let (a, b) = (old.spec_file.display(), new.spec_file.display());
    if let Some((x, y)) = old.shared_stems.iter().zip(&new.shared_stems).find(|(x, y)| x != y) {
        bail!(
            "{a} and {b} both write {} but their shared stages disagree ({x} vs {y}): their cells cannot share one results directory; give one of them another experiment.name",
            new.name
        );
    }
    if old.shared_stems.len() != new.shared_stems.len() {
        bail!("{a} and {b} both write {} but their shared stages disagree (different stage tables); give one of them another experiment.name", new.name);
    }
    match cell::first_difference(&toml::Value::try_from(&old.spec)?, &toml::Value::try_from(&new.spec)?, "") {
        None => bail!("{a} and {b} are the same experiment `{}` (profile {}) given twice; pass it once", new.spec.experiment.name, new.profile),
        Some(field) => bail!("{a} and {b} both write {} but differ at `{field}`; give one of them another experiment.name, or make the change a --variant", new.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_parse_in_both_spellings_and_reject_bad_names() {
        assert_eq!(parse_variant("mean=seq2seq_rm.reward_scaling=\"mean\"").unwrap(), ("mean".into(), "seq2seq_rm.reward_scaling=\"mean\"".into()));
        assert_eq!(parse_variant("k5=--set ppo.kl_coef=0.5").unwrap(), ("k5".into(), "ppo.kl_coef=0.5".into()));
        assert_eq!(parse_variant("k5=--set=ppo.kl_coef=0.5").unwrap().1, "ppo.kl_coef=0.5");
        assert!(parse_variant("a/b=ppo.kl_coef=1").is_err(), "a name with a slash would escape its folder");
        assert!(parse_variant("k5=ppo").is_err());
        assert!(parse_variant("nothing").is_err());
    }
}
