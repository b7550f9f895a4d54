//! `s2rm merge`: the per-seed cells of one (experiment, profile) joined into one results
//! directory, as if one `s2rm run` had done every seed.
//!
//! A run writes each CSV as the shared stages' rows (seeded with `experiment.base_seed`) followed
//! by each seed's rows in seed order (`runner::gather`). So the merged CSV is the shared rows,
//! which every cell must hold byte for byte, then each cell's own rows, cells in seed order; the
//! tables, figures and REPORT.md are then rendered from them by `report::render`, exactly as after
//! a run. Only timings differ from a single run: `run_info.json` sums the cells' stage seconds,
//! lists the stages they loaded, and names the cells (`merged_from`).

use super::cell::{self, Cell};
use crate::runner::{CSVS, csv_bytes};
use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Merges the finished cells in `dirs` into `out` (created if needed); returns the seeds merged.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Vec<u64>> {
    if dirs.is_empty() {
        bail!("merge: no cell directories given; pass the --output folders of the cells' `s2rm run`");
    }
    // Every unfinished cell is named at once: the user reruns them all, then merges again.
    let (mut cells, mut bad) = (Vec::new(), Vec::new());
    for d in dirs {
        match cell::read(d) {
            Ok(c) => cells.push(c),
            Err(e) => bad.push(format!("{e:#}")),
        }
    }
    if !bad.is_empty() {
        bail!("cannot merge: {} of {} cells are not finished: {}", bad.len(), dirs.len(), bad.join("; "));
    }
    cells.sort_by_key(|c| c.seeds.first().copied());
    for c in &cells[1..] {
        if let Some(why) = cells[0].mismatch(c)? {
            bail!("cannot merge: {why}");
        }
    }
    let mut owner: BTreeMap<u64, &Path> = BTreeMap::new();
    for c in &cells {
        if same_dir(&c.dir, out) {
            bail!("cannot merge into {}: it is one of the cells; pass another --output", out.display());
        }
        for &s in &c.seeds {
            if let Some(other) = owner.insert(s, &c.dir) {
                bail!("cannot merge: seed {s} is in both {} and {}; pass each seed's cell once", other.display(), c.dir.display());
            }
        }
    }
    let seeds: Vec<u64> = cells.iter().flat_map(|c| c.seeds.iter().copied()).collect();
    let mut files = Vec::new();
    for name in CSVS {
        if let Some(bytes) = merge_csv(&cells, name)? {
            files.push((out.join(name), bytes));
        }
    }
    let first = &cells[0];
    let mut spec = first.spec.clone();
    spec.experiment.seeds = seeds.clone();
    files.push((out.join("resolved_spec.toml"), format!("{}\n{}", first.spec_header, spec.to_toml()?).into_bytes()));
    files.push((out.join("run_info.json"), serde_json::to_string_pretty(&run_info(&cells, &seeds))?.into_bytes()));
    std::fs::create_dir_all(out).with_context(|| format!("cannot create output directory {}", out.display()))?;
    crate::util::write_all_atomic(&files)?;
    crate::report::render(out)?;
    Ok(seeds)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn read_csv(path: &Path) -> Result<(csv::ByteRecord, Vec<csv::ByteRecord>)> {
    let mut r = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let header = r.byte_headers().with_context(|| format!("{}: no header", path.display()))?.clone();
    let rows = r.byte_records().collect::<Result<Vec<_>, _>>().with_context(|| format!("{}: not a CSV", path.display()))?;
    Ok((header, rows))
}

/// One CSV of every cell joined (`None`: no cell wrote it).
fn merge_csv(cells: &[Cell], name: &str) -> Result<Option<Vec<u8>>> {
    let present: Vec<&Cell> = cells.iter().filter(|c| c.dir.join(name).is_file()).collect();
    if present.is_empty() {
        return Ok(None);
    }
    if let Some(c) = cells.iter().find(|c| !c.dir.join(name).is_file()) {
        bail!("cannot merge: {} has no {name}, {} has: the cell is incomplete; rerun it", c.dir.display(), present[0].dir.display());
    }
    let tables = cells.iter().map(|c| read_csv(&c.dir.join(name))).collect::<Result<Vec<_>>>()?;
    let header = &tables[0].0;
    if let Some(i) = tables.iter().position(|t| &t.0 != header) {
        bail!("cannot merge: {name} of {} has other columns than that of {}", cells[i].dir.display(), cells[0].dir.display());
    }
    // A file without a seed column holds shared rows only: every cell has the same.
    let Some(col) = header.iter().position(|h| h == b"seed") else {
        disagree(cells, &tables, name, |rows| rows.len())?;
        return Ok(Some(csv_bytes(header, &tables[0].1)?));
    };
    // The shared rows: the leading rows of seed `base_seed`, counted in a cell that does not also
    // run that seed as one of its own (with one cell, any split gives its file back).
    let base = cells[0].base_seed.to_string();
    let lead = |rows: &[csv::ByteRecord]| rows.iter().take_while(|r| &r[col] == base.as_bytes()).count();
    let reference = cells.iter().position(|c| !c.seeds.contains(&c.base_seed)).unwrap_or(0);
    let n_shared = lead(&tables[reference].1);
    disagree(cells, &tables, name, |_| n_shared)?;
    let mut rows: Vec<&csv::ByteRecord> = tables[0].1[..n_shared].iter().collect();
    for (_, t) in &tables {
        rows.extend(&t[n_shared..]);
    }
    Ok(Some(csv_bytes(header, rows)?))
}

/// Fails unless every cell's first `n(rows)` rows equal the first cell's: the shared stages' rows.
fn disagree(cells: &[Cell], tables: &[(csv::ByteRecord, Vec<csv::ByteRecord>)], name: &str, n: impl Fn(&[csv::ByteRecord]) -> usize) -> Result<()> {
    let k = n(&tables[0].1);
    for (c, (_, rows)) in cells.iter().zip(tables).skip(1) {
        if rows.len() < k || n(rows) != k || rows[..k] != tables[0].1[..k] {
            bail!(
                "cannot merge: {} and {} disagree on the shared stages' rows of {name}: they did not read the same shared stages (same --shared-dir, spec and build?)",
                c.dir.display(),
                cells[0].dir.display()
            );
        }
    }
    Ok(())
}

/// The first cell's run_info.json with every seed's part joined and the timings summed.
fn run_info(cells: &[Cell], seeds: &[u64]) -> serde_json::Value {
    let mut info = cells[0].info.clone();
    info["seeds"] = serde_json::json!(seeds);
    let mut stage_seconds: BTreeMap<String, f64> = BTreeMap::new();
    let (mut loaded, mut gates, mut total) = (BTreeSet::new(), Vec::new(), 0.0);
    for c in cells {
        if let Some(m) = c.info["stage_seconds"].as_object() {
            for (k, v) in m {
                *stage_seconds.entry(k.clone()).or_default() += v.as_f64().unwrap_or(0.0);
            }
        }
        loaded.extend(c.info["stages_loaded_from_cache"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)));
        gates.extend(c.info["gates"].as_array().into_iter().flatten().cloned());
        total += c.info["total_seconds"].as_f64().unwrap_or(0.0);
    }
    info["stage_seconds"] = serde_json::json!(stage_seconds);
    info["stages_loaded_from_cache"] = serde_json::json!(loaded);
    info["total_seconds"] = serde_json::json!(total);
    if info.get("gates").is_some() {
        info["gates"] = serde_json::Value::Array(gates);
    }
    info["merged_from"] = cells
        .iter()
        .map(|c| serde_json::json!({ "dir": c.dir.display().to_string(), "seeds": c.seeds, "total_seconds": c.info["total_seconds"] }))
        .collect();
    info
}
