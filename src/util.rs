//! Small shared helpers: a portable seeded RNG, atomic file writes, hashing.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::Path;

/// SplitMix64: a tiny, fully specified PRNG. Used wherever the stream must be identical on every
/// platform and crate version (splits, bootstrap resampling, per-sequence sampling seeds). Its whole
/// state is one `u64`, serialised as is (PPO checkpoints keep the minibatch shuffler's).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator for a sub-stream, e.g. `(seed, sequence index)`.
    pub fn derive(seed: u64, stream: u64) -> Self {
        let mut g = Self::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        g.next_u64();
        g
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n). `n` must be > 0.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "below(0)");
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// Hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Write a file atomically: write to `<path>.tmp`, flush it to disk, then rename it over `path`,
/// so that a reader (or a resumed run) never sees a half-written file and a failed write (a full
/// disk, an unwritable directory) leaves the previous `path`, if any, untouched. On failure the
/// temporary file is removed and the error names `path` and the cause.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = stage(path, bytes)?;
    commit(&tmp, path)
}

/// Writes several files so that either all of them are replaced or, when a write fails, none is:
/// every temporary file is written first, then all are renamed. A failure in the first phase
/// removes the temporary files already written and leaves every target untouched.
pub fn write_all_atomic(files: &[(std::path::PathBuf, Vec<u8>)]) -> Result<()> {
    let mut staged = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        match stage(path, bytes) {
            Ok(tmp) => staged.push((tmp, path)),
            Err(e) => {
                for (tmp, _) in &staged {
                    let _ = std::fs::remove_file(tmp);
                }
                return Err(e);
            }
        }
    }
    for (tmp, path) in staged {
        commit(&tmp, path)?;
    }
    Ok(())
}

/// `<path>.tmp` (the extension kept: `x.csv` → `x.csv.tmp`).
fn tmp_path(path: &Path) -> std::path::PathBuf {
    path.with_extension(match path.extension() {
        Some(e) => format!("{}.tmp", e.to_string_lossy()),
        None => "tmp".to_string(),
    })
}

/// Writes and syncs `<path>.tmp`; returns its path. Removes it again on any failure.
fn stage(path: &Path, bytes: &[u8]) -> Result<std::path::PathBuf> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).with_context(|| {
                format!("cannot write {}: cannot create directory {}", path.display(), dir.display())
            })?;
        }
    }
    let tmp = tmp_path(path);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        // A full disk may only show up when the data is flushed.
        f.sync_all()
    });
    if let Err(e) = written {
        // Only a file we created (or a stale one of ours); never a directory.
        if std::fs::symlink_metadata(&tmp).is_ok_and(|m| !m.is_dir()) {
            let _ = std::fs::remove_file(&tmp);
        }
        return Err(e).with_context(|| {
            format!(
                "cannot write {} (temporary file {}); the previous file, if any, is untouched",
                path.display(),
                tmp.display()
            )
        });
    }
    Ok(tmp)
}

fn commit(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        anyhow::Error::new(e).context(format!("cannot rename {} to {}", tmp.display(), path.display()))
    })
}

/// Where a byte offset falls in a text: (1-based line, 1-based column in chars).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Bytes as UTF-8 text; invalid UTF-8 is an error naming `label`, the line, column and byte offset
/// of the first bad byte.
pub fn utf8_text<'a>(label: &str, bytes: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let ok = e.valid_up_to();
        // The prefix up to the bad byte is valid UTF-8 by definition.
        let prefix = std::str::from_utf8(&bytes[..ok]).unwrap_or_default();
        let (line, col) = line_col(prefix, ok);
        anyhow::anyhow!(
            "{label}:{line}:{col}: not valid UTF-8 (bad byte 0x{:02x} at byte offset {ok}); save the file as UTF-8",
            bytes[ok]
        )
    })
}

/// A TOML parse or schema error on one line: `file:line:col: message` (the position when the
/// parser gives one).
pub fn toml_error(file: &Path, text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', "; ");
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            format!("{}:{line}:{col}: {msg}", file.display())
        }
        None => format!("{}: {msg}", file.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // Reference stream of SplitMix64 seeded with 0 (Vigna's reference implementation).
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(g.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn below_is_in_range_and_covers() {
        let mut g = SplitMix64::new(7);
        let mut seen = [false; 5];
        for _ in 0..200 {
            let k = g.below(5);
            assert!(k < 5);
            seen[k] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.csv");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(!dir.path().join("sub/x.csv.tmp").exists());
    }

    #[test]
    fn failed_write_names_the_path_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, b"old results").unwrap();
        // A directory where the temporary file goes: the write fails before touching `x.csv`.
        std::fs::create_dir(dir.path().join("x.csv.tmp")).unwrap();
        let e = format!("{:#}", write_atomic(&p, b"new").unwrap_err());
        assert!(e.contains(&p.display().to_string()) && e.contains("untouched"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old results");
        assert!(dir.path().join("x.csv.tmp").is_dir(), "a directory is never removed");

        // A parent that is a file.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let e = format!("{:#}", write_atomic(&blocker.join("y.csv"), b"new").unwrap_err());
        assert!(e.contains("cannot create directory") && e.contains("file"), "{e}");
    }

    #[test]
    fn full_disk_is_an_error_naming_the_path_and_keeps_the_old_file() {
        // /dev/full fails every write with ENOSPC; the temporary file is pointed at it.
        if !Path::new("/dev/full").exists() {
            eprintln!("skipping: no /dev/full");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.csv");
        std::fs::write(&p, b"old results").unwrap();
        let tmp = dir.path().join("metrics.csv.tmp");
        #[cfg(unix)]
        std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
        #[cfg(not(unix))]
        return;
        let e = format!("{:#}", write_atomic(&p, &vec![b'x'; 1 << 16]).unwrap_err());
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert!(e.to_lowercase().contains("no space left"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old results");
        assert!(std::fs::symlink_metadata(&tmp).is_err(), "temporary file left behind");
        assert!(Path::new("/dev/full").exists());

        // Several files: one failing write leaves every target as it was, and no temporary file.
        let q = dir.path().join("win_rates.csv");
        std::fs::write(&q, b"old q").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
        let e = write_all_atomic(&[(q.clone(), b"new q".to_vec()), (p.clone(), b"new p".to_vec())]).unwrap_err();
        assert!(format!("{e:#}").contains("metrics.csv"), "{e:#}");
        assert_eq!(std::fs::read(&q).unwrap(), b"old q");
        assert_eq!(std::fs::read(&p).unwrap(), b"old results");
        assert!(!dir.path().join("win_rates.csv.tmp").exists());
        assert!(std::fs::symlink_metadata(&tmp).is_err());
    }

    #[test]
    fn positions_and_utf8_errors() {
        assert_eq!(line_col("ab\ncd\nef", 4), (2, 2));
        assert_eq!(line_col("", 0), (1, 1));
        let e = utf8_text("f.json", b"[\n  \"a\xff\"]").unwrap_err().to_string();
        assert!(e.starts_with("f.json:2:5: not valid UTF-8") && e.contains("offset 6"), "{e}");
    }
}
