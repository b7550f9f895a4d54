//! PPO checkpoints (`ppo.checkpoint_every`): the policy adapters, the optimizer state and a JSON
//! of the host-side state (steps done, log, samplers), each written to a temporary file and
//! renamed, the JSON last, so that a run killed at any moment resumes from the last complete one
//! with identical results.

use super::ppo::PpoLog;
use super::{Sampler, adam};
use crate::model::Lm;
use crate::util::SplitMix64;
use anyhow::{Context, Result, anyhow, bail};
use burn::optim::ModuleOptimizer;
use std::path::{Path, PathBuf};

/// The JSON part of a checkpoint: the steps done and the host-side state the next step needs.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Partial {
    /// Steps completed, so the index of the next step.
    pub step: usize,
    pub log: Vec<PpoLog>,
    pub prompt_sampler: Sampler,
    pub mb_rng: SplitMix64,
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// `<prefix>.partial.json`, written last.
pub(super) fn partial_path(prefix: &Path) -> PathBuf {
    with_suffix(prefix, ".partial.json")
}

pub(super) fn model_path(prefix: &Path, step: usize) -> PathBuf {
    with_suffix(prefix, &format!(".step{step}.bpk"))
}

pub(super) fn optim_path(prefix: &Path, step: usize) -> PathBuf {
    with_suffix(prefix, &format!(".step{step}.optim.bpk"))
}

/// Runs `save` on `<path>.tmp`, then renames it to `path`; removes the temporary file on failure.
fn save_renamed<E: std::fmt::Display>(path: &Path, save: impl FnOnce(&Path) -> Result<(), E>) -> Result<()> {
    let tmp = with_suffix(path, ".tmp");
    let done = save(&tmp)
        .map_err(|e| anyhow!("cannot write {}: {e}", tmp.display()))
        .and_then(|()| std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display())));
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

/// Writes the checkpoint after `partial.step` steps: model, optimizer, then the JSON.
pub(super) fn write_checkpoint(prefix: &Path, policy: &Lm, optim: &ModuleOptimizer, partial: &Partial) -> Result<()> {
    if let Some(dir) = prefix.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    save_renamed(&model_path(prefix, partial.step), |p| policy.save_weights(p))?;
    save_renamed(&optim_path(prefix, partial.step), |p| optim.save(p))?;
    crate::util::write_atomic(&partial_path(prefix), &serde_json::to_vec(partial)?)
}

/// Removes the model and optimizer files of the checkpoint after `step` steps.
pub(super) fn remove_step_files(prefix: &Path, step: usize) {
    let _ = std::fs::remove_file(model_path(prefix, step));
    let _ = std::fs::remove_file(optim_path(prefix, step));
}

/// The checkpoint at `prefix`, if there is one: `Ok(None)` when there is no JSON, an error when it
/// or the files it names cannot be read or do not fit this run.
pub(super) fn read_checkpoint(prefix: &Path, template: &Lm, grad_clip: f32, n_prompts: usize, steps: usize) -> Result<Option<(Lm, ModuleOptimizer, Partial)>> {
    let json = partial_path(prefix);
    let bytes = match std::fs::read(&json) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", json.display())),
    };
    let partial: Partial = serde_json::from_slice(&bytes).with_context(|| format!("cannot parse {}", json.display()))?;
    let k = partial.step;
    if k == 0 || k >= steps || partial.log.len() != k || partial.log.iter().enumerate().any(|(i, l)| l.step != i) {
        bail!("{} does not fit this run (step {k} of {steps}, {} log rows)", json.display(), partial.log.len());
    }
    if !partial.prompt_sampler.fits(n_prompts) {
        bail!("{}: its prompt sampler is not one over the {n_prompts} policy prompts", json.display());
    }
    let model = model_path(prefix, k);
    let policy = template.clone().load_weights(&model).map_err(|e| anyhow!("cannot load {}: {e:#}", model.display()))?;
    let optim_file = optim_path(prefix, k);
    let optim = adam(grad_clip).load(&optim_file).map_err(|e| anyhow!("cannot load {}: {e}", optim_file.display()))?;
    Ok(Some((policy, optim, partial)))
}
