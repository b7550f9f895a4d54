//! Fixtures shared by the unit tests of the data module's files.

use std::path::{Path, PathBuf};

use super::Manifest;
use crate::util::sha256_hex;

/// A temp data dir holding `files` (id, file, format, bytes) and a manifest pinning them.
pub(super) fn fake(files: &[(&str, &str, &str, &[u8])]) -> (tempfile::TempDir, Manifest) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut toml = String::new();
    for (id, file, format, bytes) in files {
        let path = dir.path().join("data").join(file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write");
        toml.push_str(&format!(
            "[[dataset]]\nid = \"{id}\"\nfile = \"{file}\"\nformat = \"{format}\"\n\
             sha256 = \"{}\"\nlicence = \"test\"\nupstream = \"test\"\nkind = \"benign\"\n\
             description = \"test\"\n\n",
            sha256_hex(bytes)
        ));
    }
    let mpath = dir.path().join("datasets.toml");
    std::fs::write(&mpath, toml).expect("write manifest");
    let m = Manifest::load(&mpath).expect("load fake manifest");
    (dir, m)
}

pub(super) fn data_dir(d: &tempfile::TempDir) -> PathBuf {
    d.path().join("data")
}

pub(super) fn fr(v: &[(&str, f64)]) -> Vec<(String, f64)> {
    v.iter().map(|(n, f)| (n.to_string(), *f)).collect()
}

pub(super) fn repo_file(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(default))
}
