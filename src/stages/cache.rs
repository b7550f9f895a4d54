//! The stage cache and the stage timer.
//!
//! Finished model stages are kept under `<out>/.cache/stages/`: a rerun of an interrupted
//! experiment, or of an ablation that changes one stage's fields, loads them instead of training
//! again. A stage's key hashes the spec fields it declares (see [`super::Stage::key`]), the content
//! of the files it declares, its name and seed, the keys of the stages it reads (so a change
//! upstream retrains everything downstream and nothing else), the device and the s2rm executable
//! itself (a rebuilt binary never reuses another build's artifacts). The model file is written
//! first and the log file last, each by rename, so a kill leaves no entry that looks finished but
//! is not. A PPO stage also keeps its checkpoints here while it runs
//! (`<stage>-<seed>-<key>.partial.json` and `.step<k>[.optim].bpk`, see `train::ppo`), removed once
//! the stage is stored.
//!
//! With a shared directory (`--shared-dir`), the shared stages' entries live there instead, so that
//! every cell of a grid, on any machine that mounts it, loads them; a miss there is computed under
//! an entry lock (`super::lock`), so concurrent cells never write one entry twice.

use super::{Scope, Stage};
use crate::model::Lm;
use crate::spec::Spec;
use crate::util::sha256_hex;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

pub struct StageCache {
    dir: PathBuf,
    /// Where the shared stages' entries live, if not in `dir` (`--shared-dir`/stages).
    shared: Option<PathBuf>,
    /// The stages whose entries live in `shared`.
    shared_stages: Vec<&'static str>,
    /// sha256 of the s2rm executable (part of every key; `run_info.json` names it).
    pub exe: String,
    /// `<stage>-<seed>-<key>` of every stage of the run.
    stems: BTreeMap<(&'static str, u64), String>,
    /// `<stage>/<seed>` of each stage loaded instead of trained.
    pub loaded: Mutex<Vec<String>>,
}

/// The spec fields `paths` select (tables or fields; `!path` removes one), as TOML text.
fn key_fields(spec: &toml::Value, paths: &[&str]) -> Result<String> {
    let mut picked = toml::Table::new();
    for path in paths.iter().filter(|p| !p.starts_with('!')) {
        let Some(v) = lookup(spec, path) else { bail!("stage key field `{path}` is not a spec field") };
        insert(&mut picked, path, v.clone());
    }
    for path in paths.iter().filter_map(|p| p.strip_prefix('!')) {
        let (parent, leaf) = path.rsplit_once('.').unwrap_or(("", path));
        let table = if parent.is_empty() { Some(&mut picked) } else { lookup_mut(&mut picked, parent) };
        if table.and_then(|t| t.remove(leaf)).is_none() && lookup(spec, path).is_some() {
            bail!("stage key field `!{path}` removes a field that no listed table holds");
        }
    }
    Ok(toml::to_string(&picked)?)
}

fn lookup<'a>(v: &'a toml::Value, path: &str) -> Option<&'a toml::Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn lookup_mut<'a>(t: &'a mut toml::Table, path: &str) -> Option<&'a mut toml::Table> {
    path.split('.').try_fold(t, |t, k| t.get_mut(k)?.as_table_mut())
}

fn insert(t: &mut toml::Table, path: &str, v: toml::Value) {
    match path.split_once('.') {
        None => {
            t.insert(path.to_string(), v);
        }
        Some((head, rest)) => {
            let sub = t.entry(head).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let Some(sub) = sub.as_table_mut() {
                insert(sub, rest, v);
            }
        }
    }
}

/// Hash of the file a spec field names; a missing file hashes as absent (the stage that reads it
/// reports it with its own message).
fn file_hash(spec: &toml::Value, field: &str) -> Result<String> {
    let Some(path) = lookup(spec, field).and_then(|v| v.as_str()) else { bail!("stage key file field `{field}` is not a path field") };
    Ok(std::fs::read(path).map(|b| sha256_hex(&b)).unwrap_or_else(|_| "absent".into()))
}

impl StageCache {
    /// The keys of every stage of `table` for `spec`'s seeds on `device`.
    /// `shared`: the folder of the shared stages' entries (`--shared-dir`/stages), if any.
    pub fn new(dir: PathBuf, shared: Option<PathBuf>, table: &[Stage], spec: &Spec, device: &str) -> Result<Self> {
        let mut c = Self::with_exe(dir, table, spec, device, &exe_hash())?;
        c.shared_stages = if shared.is_some() { table.iter().filter(|s| s.scope == Scope::Shared).map(|s| s.name).collect() } else { Vec::new() };
        c.shared = shared;
        Ok(c)
    }

    pub(crate) fn with_exe(dir: PathBuf, table: &[Stage], spec: &Spec, device: &str, exe: &str) -> Result<Self> {
        let value = toml::Value::try_from(spec).context("serialising the spec for the stage cache")?;
        let ex = &spec.experiment;
        let mut keys: BTreeMap<(&'static str, u64), String> = BTreeMap::new();
        let mut scopes = BTreeMap::new();
        for stage in table {
            let mut own = format!("{}\n{}\n", key_fields(&value, stage.key)?, device);
            for f in stage.key_files {
                own.push_str(&format!("{f}={}\n", file_hash(&value, f)?));
            }
            own.push_str(exe);
            let seeds = if stage.scope == Scope::Shared { vec![ex.base_seed] } else { ex.seeds.clone() };
            for seed in seeds {
                let mut h = format!("{}\n{seed}\n{own}", stage.name);
                for r in stage.reads {
                    let of = if scopes.get(r) == Some(&Scope::Shared) { ex.base_seed } else { seed };
                    let Some(k) = keys.get(&(*r, of)) else { bail!("stage `{}` reads `{r}`, which is not listed before it", stage.name) };
                    h.push_str(&format!("\n{r}={k}"));
                }
                keys.insert((stage.name, seed), sha256_hex(h.as_bytes())[..24].to_string());
            }
            scopes.insert(stage.name, stage.scope);
        }
        let stems = keys.into_iter().map(|((n, s), k)| ((n, s), format!("{n}-{s}-{k}"))).collect();
        Ok(Self { dir, shared: None, shared_stages: Vec::new(), exe: exe.to_string(), stems, loaded: Mutex::new(Vec::new()) })
    }

    /// The folder of `stage`'s entries: the shared directory for a shared stage when there is one.
    fn dir_of(&self, stage: &str) -> &PathBuf {
        match &self.shared {
            Some(shared) if self.shared_stages.contains(&stage) => shared,
            _ => &self.dir,
        }
    }

    /// `<stage>-<seed>-<key>`: the name of every file of this stage.
    pub fn stem(&self, stage: &str, seed: u64) -> &str {
        self.stems.iter().find(|((n, s), _)| *n == stage && *s == seed).map(|(_, v)| v.as_str()).expect("a stage of the table")
    }

    fn paths(&self, stage: &str, seed: u64) -> (PathBuf, PathBuf) {
        let (stem, dir) = (self.stem(stage, seed), self.dir_of(stage));
        (dir.join(format!("{stem}.bpk")), dir.join(format!("{stem}.json")))
    }

    /// The path prefix of the stage's within-stage checkpoints (PPO).
    pub fn checkpoint_prefix(&self, stage: &str, seed: u64) -> PathBuf {
        self.dir_of(stage).join(self.stem(stage, seed))
    }

    /// Removes the stage's checkpoint files and the temporary files of an interrupted write: a
    /// run killed while storing this stage leaves `<stem>.bpk.tmp`, `<stem>.json.tmp` or burn's
    /// own `<stem>.bpk.tmp.<pid>-<n>.tmp`, which no later write replaces.
    fn clear_checkpoints(&self, stage: &str, seed: u64) {
        let stem = self.stem(stage, seed);
        let (step, partial, own) = (format!("{stem}.step"), format!("{stem}.partial."), format!("{stem}."));
        let Ok(entries) = std::fs::read_dir(self.dir_of(stage)) else { return };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&step) || name.starts_with(&partial) || (name.starts_with(&own) && name.ends_with(".tmp")) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    fn load<L: serde::de::DeserializeOwned>(&self, stage: &str, seed: u64, template: &Lm) -> Option<(Lm, L)> {
        let (model, log) = self.paths(stage, seed);
        let log: L = serde_json::from_slice(&std::fs::read(log).ok()?).ok()?;
        let model = template.clone().load_weights(&model).ok()?;
        Some((model, log))
    }

    fn store<L: serde::Serialize>(&self, stage: &str, seed: u64, model: &Lm, log: &L) -> Result<()> {
        let (model_path, log_path) = self.paths(stage, seed);
        let dir = self.dir_of(stage);
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = model_path.with_extension("bpk.tmp");
        model.save_weights(&tmp)?;
        std::fs::rename(&tmp, &model_path).with_context(|| format!("cannot rename {} to {}", tmp.display(), model_path.display()))?;
        crate::util::write_atomic(&log_path, &serde_json::to_vec(log)?)
    }

    /// The stage's model and log from an earlier run, or `train` run now and kept.
    pub fn stage<L: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        timer: &Timer,
        stage: &str,
        seed: u64,
        template: &Lm,
        train: impl FnOnce() -> Result<(Lm, L)>,
    ) -> Result<(Lm, L)> {
        let shared = self.shared.is_some() && self.shared_stages.contains(&stage);
        let hit = |c: &Self| {
            let hit = c.load(stage, seed, template)?;
            crate::train::say(&format!("stage {stage} (seed {seed}): finished in an earlier run, loaded from {}", c.dir_of(stage).display()));
            c.loaded.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{stage}/{seed}"));
            Some(hit)
        };
        // A shared entry is read without the lock: its log file, renamed last, exists only once
        // the entry is whole. Its leftovers are cleared only by the lock's holder.
        if let Some(hit) = hit(self) {
            if !shared {
                self.clear_checkpoints(stage, seed);
            }
            return Ok(hit);
        }
        let _lock = if shared { Some(super::lock::lock(self.dir_of(stage), self.stem(stage, seed))?) } else { None };
        // Another cell may have stored it while this one waited for the lock.
        if let Some(hit) = shared.then(|| hit(self)).flatten() {
            return Ok(hit);
        }
        // Kept before the stage reports itself done: "done" on the console means it is on disk.
        timer.time(stage, Some(seed), || {
            let out = train()?;
            self.store(stage, seed, &out.0, &out.1)?;
            self.clear_checkpoints(stage, seed);
            Ok(out)
        })
    }
}

/// sha256 of the running s2rm executable (empty if it cannot be read).
pub fn exe_hash() -> String {
    std::env::current_exe().and_then(std::fs::read).map(|b| sha256_hex(&b)).unwrap_or_default()
}

/// Wall seconds per stage (summed over seeds). Two stages that run at the same time each count
/// their own wall time.
#[derive(Default)]
pub struct Timer {
    pub stages: Mutex<BTreeMap<String, f64>>,
}

impl Timer {
    /// Times `work`; `seed` names which run of a per-seed (or shared, seeded) stage this is, since
    /// several stages of different seeds can be running at once.
    pub fn time<T>(&self, stage: &str, seed: Option<u64>, work: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = Instant::now();
        let label = match seed {
            Some(seed) => format!("{stage} (seed {seed})"),
            None => stage.to_string(),
        };
        crate::train::say(&format!("stage {label} ..."));
        let out = work()?;
        let s = t.elapsed().as_secs_f64();
        *self.stages.lock().unwrap_or_else(|e| e.into_inner()).entry(stage.to_string()).or_default() += s;
        crate::train::say(&format!("stage {label} done in {s:.1}s"));
        Ok(out)
    }
}

#[cfg(test)]
pub(super) fn stems_for(spec: &Spec) -> StageCache {
    StageCache::with_exe(PathBuf::from("c"), &super::table(spec), spec, "cpu", "exe").unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_fields_pick_tables_and_fields_and_drop_exclusions() {
        let v: toml::Value = toml::from_str("[a]\nx = 1\ny = 2\n[b]\nz = 3\nw = 4\n[c]\nq = 5\n").unwrap();
        let got = key_fields(&v, &["a", "!a.y", "b.z"]).unwrap();
        assert_eq!(got, "[a]\nx = 1\n\n[b]\nz = 3\n");
        assert!(key_fields(&v, &["nope"]).is_err());
        assert!(key_fields(&v, &["a", "!c.q"]).is_err(), "an exclusion outside the listed tables is a table bug");
    }
}
