//! One finished cell of a grid: a results directory of `s2rm run` for some seeds of one spec,
//! read back with what identifies it (spec, profile, build, device), so that `merge` can refuse
//! cells that do not belong together and `grid` can tell a finished cell from one to rerun.

use crate::spec::Spec;
use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};

/// What a cell directory holds once its run has finished.
pub struct Cell {
    pub dir: PathBuf,
    /// `run_info.json`, as written.
    pub info: serde_json::Value,
    pub seeds: Vec<u64>,
    pub base_seed: u64,
    pub profile: String,
    pub device: String,
    pub binary: String,
    /// The first line of `resolved_spec.toml` (which spec file, which profile).
    pub spec_header: String,
    pub spec: Spec,
}

/// Why a directory is not a finished cell: a one-line reason.
pub fn read(dir: &Path) -> Result<Cell> {
    if !dir.exists() {
        bail!("{}: missing (the cell never ran or wrote elsewhere)", dir.display());
    }
    let info_path = dir.join("run_info.json");
    if !info_path.is_file() {
        // run_info.json is the last file a run renames into place: without it the run stopped.
        bail!("{}: not finished (no run_info.json): the cell failed or is still running; see its log and rerun it", dir.display());
    }
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(&info_path)?)
        .with_context(|| format!("{}: not a run_info.json of s2rm", info_path.display()))?;
    let text = std::fs::read_to_string(dir.join("resolved_spec.toml")).with_context(|| format!("{}: no resolved_spec.toml", dir.display()))?;
    let (header, body) = text.split_once('\n').unwrap_or((&text, ""));
    let spec: Spec = toml::from_str(body).with_context(|| format!("{}: resolved_spec.toml does not parse", dir.display()))?;
    let field = |k: &str| info[k].as_str().map(str::to_string).ok_or_else(|| anyhow!("{}: run_info.json has no `{k}`", info_path.display()));
    let binary = field("binary_sha256").map_err(|_| {
        anyhow!("{}: run_info.json names no binary (binary_sha256): it was written by an older s2rm; rerun the cell with this one", info_path.display())
    })?;
    Ok(Cell {
        seeds: spec.experiment.seeds.clone(),
        base_seed: spec.experiment.base_seed,
        profile: field("profile")?,
        device: field("device")?,
        binary,
        spec_header: header.to_string(),
        spec,
        info,
        dir: dir.to_path_buf(),
    })
}

/// The spec as a TOML value without `experiment.seeds`: what every cell of one results
/// directory shares.
fn without_seeds(spec: &Spec) -> Result<toml::Value> {
    let mut v = toml::Value::try_from(spec)?;
    if let Some(ex) = v.get_mut("experiment").and_then(|e| e.as_table_mut()) {
        ex.remove("seeds");
    }
    Ok(v)
}

/// The first field (dotted path) where two TOML values differ, if any.
pub(super) fn first_difference(a: &toml::Value, b: &toml::Value, at: &str) -> Option<String> {
    match (a, b) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => first_difference(p, q, &path),
                    _ => Some(path),
                }
            })
        }
        _ if a == b => None,
        _ => Some(at.to_string()),
    }
}

impl Cell {
    /// Why `other` cannot be merged with this cell (another spec, profile, build or device), or
    /// `None` when it can.
    pub fn mismatch(&self, other: &Cell) -> Result<Option<String>> {
        let (a, b) = (self.dir.display(), other.dir.display());
        if self.binary != other.binary {
            return Ok(Some(format!("{b} was computed by another s2rm binary than {a} (binary_sha256 {} vs {}); rerun it with this build", short(&other.binary), short(&self.binary))));
        }
        if self.device != other.device {
            return Ok(Some(format!("{b} ran on another device than {a} (`{}` vs `{}`); rerun it with the same --device and CPU count", other.device, self.device)));
        }
        if self.profile != other.profile {
            return Ok(Some(format!("{b} is profile `{}`, {a} profile `{}`: merge cells of one profile", other.profile, self.profile)));
        }
        if let Some(field) = first_difference(&without_seeds(&self.spec)?, &without_seeds(&other.spec)?, "") {
            return Ok(Some(format!("{b} and {a} have different specs (resolved_spec.toml differs at `{field}`): merge cells of one experiment")));
        }
        Ok(None)
    }

    /// Whether this finished cell is the one a plan expects: this spec (seeds aside, which must be
    /// `seeds`), profile and build. (Devices are compared by `merge`: a plan cannot know a name.)
    pub fn is(&self, spec: &Spec, profile: &str, seeds: &[u64], binary: &str) -> Result<bool> {
        Ok(self.seeds == seeds
            && self.profile == profile
            && self.binary == binary
            && first_difference(&without_seeds(&self.spec)?, &without_seeds(spec)?, "").is_none())
    }
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_difference_names_the_field() {
        let a: toml::Value = toml::from_str("[x]\na = 1\nb = 2\n[y]\nc = 3\n").unwrap();
        let b: toml::Value = toml::from_str("[x]\na = 1\nb = 5\n[y]\nc = 3\n").unwrap();
        let c: toml::Value = toml::from_str("[x]\na = 1\nb = 2\n").unwrap();
        assert_eq!(first_difference(&a, &a, ""), None);
        assert_eq!(first_difference(&a, &b, "").as_deref(), Some("x.b"));
        assert_eq!(first_difference(&a, &c, "").as_deref(), Some("y"));
    }
}
