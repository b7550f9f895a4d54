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

/// Locks `<dir>/<stem>.lock`, waiting (with one line saying for whom) if another process holds it.
pub fn lock(dir: &Path, stem: &str) -> Result<EntryLock> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the shared stage cache {}", dir.display()))?;
    let path = dir.join(format!("{stem}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open lock file {} (is the shared directory writable?)", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            crate::train::say(&format!("waiting for another process computing {stem} (lock {})", path.display()));
            file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {} (does the file system support locks? NFS needs lockd)", path.display()));
        }
    }
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
        // Another entry's lock is independent.
        let _a = lock(dir.path(), "sft-0-abc").unwrap();
        let _b = lock(dir.path(), "judge-0-abc").unwrap();
    }
}
