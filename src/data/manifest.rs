//! The dataset manifest (`data/datasets.toml`): one [`DatasetEntry`] per `[[dataset]]` table,
//! validated on load, and checksum-verified reads of the files it pins ([`read_verified`]).

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use super::{DEFAULT_DATA_DIR, FORMATS, KINDS};
use crate::util::sha256_hex;

/// One `[[dataset]]` table of the manifest.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    pub id: String,
    /// Path relative to the data dir.
    pub file: String,
    pub format: String,
    /// Full lowercase hex sha256 of the file.
    pub sha256: String,
    pub licence: String,
    pub upstream: String,
    /// `harmful` or `benign`.
    pub kind: String,
    pub description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    dataset: Vec<DatasetEntry>,
}

#[derive(Clone, Debug)]
pub struct Manifest {
    pub path: PathBuf,
    pub entries: Vec<DatasetEntry>,
}

impl Manifest {
    /// Reads and validates a manifest: unknown fields, duplicate ids, unknown formats or kinds,
    /// malformed checksums and absolute file paths are errors naming the manifest file.
    pub fn load(path: &Path) -> Result<Manifest> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read dataset manifest {}", path.display()))?;
        let text = crate::util::utf8_text(&format!("dataset manifest {}", path.display()), &bytes)?;
        let parsed: ManifestFile = toml::from_str(text).map_err(|e| {
            anyhow!("dataset manifest {}", crate::util::toml_error(path, text, &e))
        })?;
        let manifest = Manifest {
            path: path.to_path_buf(),
            entries: parsed.dataset,
        };
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<()> {
        let where_ = self.path.display();
        if self.entries.is_empty() {
            bail!("dataset manifest {where_} has no [[dataset]] entries");
        }
        let mut seen = HashSet::new();
        for (i, e) in self.entries.iter().enumerate() {
            let at = format!("dataset manifest {where_}, entry {} (id `{}`)", i + 1, e.id);
            let snake = !e.id.is_empty()
                && e.id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !snake {
                bail!("{at}: `id` must be non-empty snake_case ([a-z0-9_])");
            }
            if !seen.insert(e.id.as_str()) {
                bail!("{at}: duplicate id");
            }
            if e.file.trim().is_empty() || Path::new(&e.file).is_absolute() {
                bail!(
                    "{at}: `file` must be a non-empty path relative to the data dir, got {:?}",
                    e.file
                );
            }
            if !FORMATS.contains(&e.format.as_str()) {
                bail!(
                    "{at}: unknown format `{}`; valid formats: {}",
                    e.format,
                    FORMATS.join(", ")
                );
            }
            if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("{at}: `sha256` must be 64 hex digits, got {:?}", e.sha256);
            }
            if !KINDS.contains(&e.kind.as_str()) {
                bail!(
                    "{at}: `kind` must be one of {}, got `{}`",
                    KINDS.join(", "),
                    e.kind
                );
            }
        }
        Ok(())
    }

    /// The entry with this id; an unknown id is an error listing the valid ids and the closest one.
    pub fn get(&self, id: &str) -> Result<&DatasetEntry> {
        if let Some(e) = self.entries.iter().find(|e| e.id == id) {
            return Ok(e);
        }
        let ids: Vec<&str> = self.entries.iter().map(|e| e.id.as_str()).collect();
        let hint = ids
            .iter()
            .min_by_key(|c| levenshtein(id, c))
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        bail!(
            "unknown dataset id `{id}`{hint}; {} lists: {}",
            self.path.display(),
            ids.join(", ")
        )
    }
}

/// Edit distance in chars, for "did you mean" hints.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------------------------
// Verified reads
// ---------------------------------------------------------------------------------------------

/// A file already verified in this process.
struct Verified {
    len: u64,
    mtime: SystemTime,
    /// When it was hashed.
    at: SystemTime,
    sha256: String,
}

/// Absolute path -> last successful verification. A file whose length and mtime are unchanged is
/// not hashed again, but only if it was already [`RACY_WINDOW`] old when it was hashed: a file
/// rewritten within the mtime granularity of its first write would otherwise keep a stale entry
/// (git's "racily clean" problem).
type VerifiedCache = HashMap<PathBuf, Verified>;
const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

fn verified_cache() -> &'static Mutex<VerifiedCache> {
    static CACHE: OnceLock<Mutex<VerifiedCache>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// `data_dir/file` as an absolute path (for error messages that say where we looked).
pub(super) fn resolve(data_dir: &Path, file: &str) -> PathBuf {
    let p = data_dir.join(file);
    std::path::absolute(&p).unwrap_or(p)
}

/// [`read_verified`] for a reader: the bytes and the file's path as its messages name it.
pub(super) fn read_labelled(manifest: &Manifest, data_dir: &Path, id: &str) -> Result<(Vec<u8>, String)> {
    let bytes = read_verified(manifest, data_dir, id)?;
    Ok((bytes, resolve(data_dir, &manifest.get(id)?.file).display().to_string()))
}

/// Resolves and verifies a file: a missing file or a checksum mismatch is an error naming the
/// file. Returns the bytes.
pub fn read_verified(manifest: &Manifest, data_dir: &Path, id: &str) -> Result<Vec<u8>> {
    let entry = manifest.get(id)?;
    let path = resolve(data_dir, &entry.file);
    let meta = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => bail!("dataset `{id}`: {} is not a file", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "dataset `{id}`: file {} not found; set data_dir (spec field `experiment.data_dir` or \
             --data-dir) to the folder holding the datasets (default {DEFAULT_DATA_DIR})",
            path.display()
        ),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("dataset `{id}`: cannot stat {}", path.display()));
        }
    };
    let bytes = std::fs::read(&path)
        .with_context(|| format!("dataset `{id}`: cannot read {}", path.display()))?;
    if bytes.is_empty() {
        bail!(
            "dataset `{id}`: {} is empty (0 bytes); restore the file or remove `{id}` from the spec",
            path.display()
        );
    }
    let expected = entry.sha256.to_ascii_lowercase();
    let (len, mtime) = (bytes.len() as u64, meta.modified().ok());
    {
        // A poisoned lock only means another thread panicked while holding it; the map is fine.
        let cache = verified_cache().lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(v), Some(mtime)) = (cache.get(&path), mtime)
            && v.len == len
            && v.mtime == mtime
            && v.sha256 == expected
            && mtime.checked_add(RACY_WINDOW).is_some_and(|t| t <= v.at)
        {
            return Ok(bytes);
        }
    }
    let actual = sha256_hex(&bytes);
    if actual != expected {
        bail!(
            "dataset `{id}`: checksum mismatch for {}: expected sha256 {expected} (field `sha256` of \
             id `{id}` in {}), actual {actual}; restore the original file (upstream: {}), or if the \
             change is intended, put the actual hash in the manifest",
            path.display(),
            manifest.path.display(),
            entry.upstream
        );
    }
    if let Some(mtime) = mtime {
        let v = Verified {
            len,
            mtime,
            at: SystemTime::now(),
            sha256: actual,
        };
        verified_cache()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path, v);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::{data_dir, fake, repo_file};
    use crate::data::{DEFAULT_MANIFEST, DEFAULT_REFUSAL_PATTERNS, RefusalDetector};

    #[test]
    fn missing_file_and_checksum_mismatch_name_the_file() {
        let (d, m) = fake(&[
            ("a", "sub/a.json", "prompts_json", br#"[{"prompt":"x"}]"#),
            ("b", "sub/b.json", "prompts_json", br#"[{"prompt":"y"}]"#),
        ]);
        let dd = data_dir(&d);
        assert_eq!(
            read_verified(&m, &dd, "a").expect("ok"),
            br#"[{"prompt":"x"}]"#.to_vec()
        );

        std::fs::remove_file(dd.join("sub/b.json")).expect("rm");
        let e = format!("{:#}", read_verified(&m, &dd, "b").expect_err("missing"));
        assert!(
            e.contains("sub/b.json") && e.contains("not found") && e.contains("data_dir"),
            "{e}"
        );

        // Same length, so only the hash (not a cached length/mtime) can catch the change.
        std::fs::write(dd.join("sub/a.json"), br#"[{"prompt":"z"}]"#).expect("write");
        let e = format!("{:#}", read_verified(&m, &dd, "a").expect_err("mismatch"));
        assert!(
            e.contains("sub/a.json") && e.contains("checksum mismatch"),
            "{e}"
        );
        assert!(e.contains(&m.entries[0].sha256), "{e}");
        assert!(e.contains(&sha256_hex(br#"[{"prompt":"z"}]"#)), "{e}");
    }

    #[test]
    fn manifest_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).expect("write");
            p
        };
        let entry = |extra: &str, id: &str, sha: &str| {
            format!(
                "[[dataset]]\nid = \"{id}\"\nfile = \"f.json\"\nformat = \"prompts_json\"\n\
                 sha256 = \"{sha}\"\nlicence = \"l\"\nupstream = \"u\"\nkind = \"benign\"\n\
                 description = \"d\"\n{extra}\n"
            )
        };
        let good_sha = "0".repeat(64);

        let p = write("unknown.toml", &entry("colour = \"red\"", "a", &good_sha));
        let e = format!("{:#}", Manifest::load(&p).expect_err("unknown field"));
        assert!(e.contains("unknown.toml") && e.contains("colour"), "{e}");

        let p = write("badsha.toml", &entry("", "a", "abc"));
        let e = format!("{:#}", Manifest::load(&p).expect_err("bad sha"));
        assert!(e.contains("badsha.toml") && e.contains("sha256"), "{e}");

        let p = write(
            "dup.toml",
            &(entry("", "a", &good_sha) + &entry("", "a", &good_sha)),
        );
        assert!(Manifest::load(&p).is_err());

        let p = write("broken.toml", "[[dataset]\nid = ");
        let e = format!("{:#}", Manifest::load(&p).expect_err("bad toml"));
        assert!(e.contains("broken.toml"), "{e}");

        let p = write(
            "ok.toml",
            &(entry("", "hh_helpful_base", &good_sha) + &entry("", "pku_safe_sft", &good_sha)),
        );
        let m = Manifest::load(&p).expect("ok");
        assert_eq!(m.get("pku_safe_sft").expect("get").id, "pku_safe_sft");
        let e = format!("{:#}", m.get("hh_helpfull_base").expect_err("unknown id"));
        assert!(
            e.contains("did you mean `hh_helpful_base`") && e.contains("pku_safe_sft"),
            "{e}"
        );
    }

    const EXPECTED_IDS: &[&str] = &[
        "pku_saferlhf_dpo",
        "pku_safe_sft",
        "hh_harmless_base",
        "hh_helpful_base",
        "hh_helpful_online",
        "hh_helpful_rs",
        "beavertails_eval",
        "harmfulqa",
        "catqa_english",
        "dangerousqa",
        "tldr_judged",
        "tldr_references",
        "ultrafeedback_train",
        "ultrafeedback_eval",
        "alpaca_eval_outputs",
    ];

    #[test]
    fn repo_manifest_and_patterns_load() {
        let m = Manifest::load(&repo_file("S2RM_MANIFEST", DEFAULT_MANIFEST)).expect("manifest");
        let ids: Vec<&str> = m.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, EXPECTED_IDS);
        let harmful = [
            "pku_saferlhf_dpo",
            "pku_safe_sft",
            "hh_harmless_base",
            "beavertails_eval",
            "harmfulqa",
            "catqa_english",
            "dangerousqa",
        ];
        for e in &m.entries {
            let want = if harmful.contains(&e.id.as_str()) {
                "harmful"
            } else {
                "benign"
            };
            assert_eq!(e.kind, want, "{}", e.id);
        }
        let r = RefusalDetector::load(&repo_file(
            "S2RM_REFUSAL_PATTERNS",
            DEFAULT_REFUSAL_PATTERNS,
        ))
        .expect("patterns");
        assert!(r.is_refusal("I’m sorry, but I can’t help with that."));
        assert!(!r.is_refusal("Here are three ways to cook rice."));
    }
}
