//! Helpers shared by the integration tests that run on the real datasets.

use std::path::{Path, PathBuf};

/// The datasets folder (`S2RM_DATA_DIR`, else `../shared/datasets` beside the repo), or `None`
/// with a SKIP message when it is absent outside CI.
pub fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var("S2RM_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets"));
    if dir.join("pku-saferlhf").is_dir() {
        Some(dir)
    } else {
        // In CI the data sits beside the clone: a skip there would hide a broken path.
        assert!(std::env::var_os("CI").is_none(), "CI: datasets not found at {}", dir.display());
        eprintln!("SKIP: datasets not found at {} (set S2RM_DATA_DIR)", dir.display());
        None
    }
}
