//! An exclusive lock on one entry of a shared stage cache (`--shared-dir`).
//!
//! Cells of a grid run on several machines at once and may all miss the same shared entry (no
//! shared job ran first, or two grids overlap). The first to lock `<stem>.lock` computes and
//! stores the entry; the others wait, then load it. The lock is the kernel's (`flock`, which Linux
//! maps to POSIX locks on NFS), so it dies with its holder: a killed cell never leaves a lock that
//! blocks the grid, and its half-written temporary files are replaced by the next holder.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// Held while alive; dropping it (or the process dying) releases the lock.
pub struct EntryLock {
    _file: File,
}

fn open(dir: &Path, stem: &str) -> Result<(File, std::path::PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{stem}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open lock file {} (is the folder writable?)", path.display()))?;
    Ok((file, path))
}

/// Locks `<dir>/<stem>.lock` if no other process holds it; `None` if one does.
pub fn try_lock(dir: &Path, stem: &str) -> Result<Option<EntryLock>> {
    let (file, path) = open(dir, stem)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(EntryLock { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {} (does the file system support locks? NFS needs lockd)", path.display())),
    }
}

/// Locks `<dir>/<stem>.lock`, waiting (with one line saying for whom) if another process holds it.
pub fn lock(dir: &Path, stem: &str) -> Result<EntryLock> {
    if let Some(l) = try_lock(dir, stem)? {
        return Ok(l);
    }
    let (file, path) = open(dir, stem)?;
    crate::train::say(&format!("waiting for another process computing {stem} (lock {})", path.display()));
    file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(EntryLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Two holders never overlap: each thread checks that it is alone inside the lock.
    #[test]
    fn holders_of_one_entry_never_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let inside = AtomicUsize::new(0);
        let max = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..5 {
                        let _l = lock(dir.path(), "sft-0-abc").unwrap();
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(max.load(Ordering::SeqCst), 1, "two holders were inside the lock at once");
        // Another entry's lock is independent; a held one is not taken twice.
        let _a = lock(dir.path(), "sft-0-abc").unwrap();
        let _b = lock(dir.path(), "judge-0-abc").unwrap();
        assert!(try_lock(dir.path(), "sft-0-abc").unwrap().is_none());
        drop(_a);
        assert!(try_lock(dir.path(), "sft-0-abc").unwrap().is_some());
    }
}
