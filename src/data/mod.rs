//! Datasets: the manifest (`data/datasets.toml`), checksum-verified reads from the data dir,
//! per-format readers that turn the files into preference pairs / SFT rows / prompts, a
//! prompt-disjoint splitter, and a rule-based refusal detector.
//!
//! Files are read in place (default `../shared/datasets` relative to the repo root) and never copied
//! into the project. Every reader trims surrounding whitespace of prompts and responses and keeps
//! the inner text as is. Schema errors (a missing field, a wrong type, bad JSON, invalid UTF-8) are
//! errors naming the file, the row and the field; rows that are well-formed but unusable (an HH
//! dialogue that does not parse, an empty or identical pair, an unjudged TL;DR row) are dropped and
//! counted in a [`LoadReport`].
//!
//! One file per concern: `manifest` (the manifest and verified reads), `formats` (parsing
//! helpers shared by the readers), one reader file per dataset family (`pku`, `hh`, `tldr`,
//! `ultrafeedback`, `alpaca`, `prompts`; each says which manifest `format` values it reads),
//! `split` (prompt-disjoint splits) and `refusal` (the refusal detector). This file holds the
//! shared types and the entry points that dispatch on an entry's format. A new format gets its
//! own reader file, a name in [`FORMATS`] (and [`PREFERENCE_FORMATS`] if it holds pairs), and an
//! arm in the entry points below.

use anyhow::{Context, Result, bail};
use std::collections::HashSet;
use std::path::Path;

mod alpaca;
mod formats;
mod hh;
mod manifest;
mod pku;
mod prompts;
mod refusal;
mod split;
#[cfg(test)]
mod test_util;
mod tldr;
mod ultrafeedback;

pub use alpaca::load_alpaca_prompts;
pub use manifest::{DatasetEntry, Manifest, read_verified};
pub use refusal::RefusalDetector;
pub use split::split_by_prompt;

use manifest::read_labelled;

/// Default data dir, relative to the repo root.
pub const DEFAULT_DATA_DIR: &str = "../shared/datasets";
/// Default manifest path, relative to the repo root.
pub const DEFAULT_MANIFEST: &str = "data/datasets.toml";
/// Default refusal-pattern list, relative to the repo root.
pub const DEFAULT_REFUSAL_PATTERNS: &str = "data/refusal_patterns.txt";

/// Every reader format a manifest entry may name.
pub const FORMATS: &[&str] = &[
    "pku_dpo_json",
    "pku_sft_json",
    "hh_jsonl_gz",
    "prompts_json",
    "alpaca_outputs_json",
    "tldr_judged_csv",
    "tldr_reference_csv",
    "ultrafeedback_jsonl",
];
/// The formats that hold preference pairs.
pub const PREFERENCE_FORMATS: &[&str] = &[
    "pku_dpo_json",
    "hh_jsonl_gz",
    "tldr_judged_csv",
    "ultrafeedback_jsonl",
];
/// Allowed values of `kind`: the nature of a dataset's prompts.
pub const KINDS: &[&str] = &["harmful", "benign"];

#[derive(Clone, Debug, PartialEq)]
pub struct Preference {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    /// Manifest id of the dataset the pair came from.
    pub source: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SftRow {
    pub prompt: String,
    pub response: String,
    /// Manifest id of the dataset the row came from.
    pub source: String,
}

// ---------------------------------------------------------------------------------------------
// Preference readers
// ---------------------------------------------------------------------------------------------

/// What a preference reader kept and dropped. `rows == kept + every drop count`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Data rows read from the file.
    pub rows: usize,
    pub kept: usize,
    /// HH dialogues that do not parse (see the HH notes in the module docs).
    pub unparsed: usize,
    /// HH rows whose chosen and rejected dialogues do not share the prompt.
    pub prompt_mismatch: usize,
    /// Rows with more than one Human or Assistant turn, dropped by `single_turn_only`.
    pub multi_turn: usize,
    /// Rows with an empty prompt, chosen or rejected (after trimming).
    pub empty: usize,
    /// Rows whose chosen and rejected responses are equal (after trimming).
    pub identical: usize,
    /// TL;DR rows without a judgement (`preferred` blank).
    pub unlabelled: usize,
}

/// Accumulates pairs, applying the drop rules shared by every preference format.
struct PairSink<'a> {
    source: &'a str,
    out: Vec<Preference>,
    report: LoadReport,
}

impl PairSink<'_> {
    fn push(&mut self, prompt: &str, chosen: &str, rejected: &str) {
        let (prompt, chosen, rejected) = (prompt.trim(), chosen.trim(), rejected.trim());
        if prompt.is_empty() || chosen.is_empty() || rejected.is_empty() {
            self.report.empty += 1;
        } else if chosen == rejected {
            self.report.identical += 1;
        } else {
            self.report.kept += 1;
            self.out.push(Preference {
                prompt: prompt.to_string(),
                chosen: chosen.to_string(),
                rejected: rejected.to_string(),
                source: self.source.to_string(),
            });
        }
    }
}

/// Preference pairs of a dataset in file order. `single_turn_only` keeps only HH rows with exactly
/// one Human and one Assistant turn; it has no effect on the other (single-turn) formats.
pub fn load_preferences(
    manifest: &Manifest,
    data_dir: &Path,
    id: &str,
    single_turn_only: bool,
) -> Result<Vec<Preference>> {
    Ok(load_preferences_report(manifest, data_dir, id, single_turn_only)?.0)
}

/// [`load_preferences`], plus the counts of rows kept and dropped.
pub fn load_preferences_report(
    manifest: &Manifest,
    data_dir: &Path,
    id: &str,
    single_turn_only: bool,
) -> Result<(Vec<Preference>, LoadReport)> {
    let entry = manifest.get(id)?;
    let (bytes, label) = read_labelled(manifest, data_dir, id)?;
    let file = label.as_str();
    let mut sink = PairSink {
        source: &entry.id,
        out: Vec::new(),
        report: LoadReport::default(),
    };
    let read = match entry.format.as_str() {
        "pku_dpo_json" => pku::read_pku_dpo(file, &bytes, &mut sink),
        "hh_jsonl_gz" => hh::read_hh(file, &bytes, single_turn_only, &mut sink),
        "tldr_judged_csv" => tldr::read_tldr(file, &bytes, &mut sink),
        "ultrafeedback_jsonl" => ultrafeedback::read_ultrafeedback(file, &bytes, &mut sink),
        other => bail!(
            "dataset `{id}` has format `{other}`, which holds no preference pairs (pair formats: {})",
            PREFERENCE_FORMATS.join(", ")
        ),
    };
    read.with_context(|| format!("dataset `{id}` (format {})", entry.format))?;
    Ok((sink.out, sink.report))
}

// ---------------------------------------------------------------------------------------------
// SFT rows and prompts
// ---------------------------------------------------------------------------------------------

/// SFT rows: `pku_sft_json` rows, or the chosen response of any preference format. Rows with an
/// empty prompt or response are skipped.
pub fn load_sft(manifest: &Manifest, data_dir: &Path, id: &str) -> Result<Vec<SftRow>> {
    let entry = manifest.get(id)?;
    if PREFERENCE_FORMATS.contains(&entry.format.as_str()) {
        let prefs = load_preferences(manifest, data_dir, id, false)?;
        return Ok(prefs
            .into_iter()
            .map(|p| SftRow {
                prompt: p.prompt,
                response: p.chosen,
                source: p.source,
            })
            .collect());
    }
    if entry.format == "tldr_reference_csv" {
        return tldr::read_tldr_references(manifest, data_dir, id);
    }
    if entry.format != "pku_sft_json" {
        bail!(
            "dataset `{id}` has format `{}`, which holds no responses; load_sft reads pku_sft_json, \
             tldr_reference_csv or a preference format ({})",
            entry.format,
            PREFERENCE_FORMATS.join(", ")
        );
    }
    pku::read_pku_sft(manifest, data_dir, id)
}

/// Prompts: `prompts_json` rows in file order (duplicates kept), `alpaca_outputs_json`
/// instructions without the `helpful_base` rows, or the distinct prompts (first-occurrence order)
/// of a preference or SFT format. Empty prompts are skipped.
pub fn load_prompts(manifest: &Manifest, data_dir: &Path, id: &str) -> Result<Vec<String>> {
    let entry = manifest.get(id)?;
    let format = entry.format.as_str();
    let distinct = |prompts: Vec<String>| {
        let mut seen = HashSet::new();
        prompts
            .into_iter()
            .filter(|p| seen.insert(p.clone()))
            .collect::<Vec<_>>()
    };
    if PREFERENCE_FORMATS.contains(&format) {
        let prefs = load_preferences(manifest, data_dir, id, false)?;
        return Ok(distinct(prefs.into_iter().map(|p| p.prompt).collect()));
    }
    match format {
        "pku_sft_json" | "tldr_reference_csv" => {
            let rows = load_sft(manifest, data_dir, id)?;
            Ok(distinct(rows.into_iter().map(|r| r.prompt).collect()))
        }
        "alpaca_outputs_json" => load_alpaca_prompts(manifest, data_dir, id, true),
        "prompts_json" => prompts::read_prompts(manifest, data_dir, id),
        other => bail!("dataset `{id}`: load_prompts cannot read format `{other}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::test_util::{data_dir, fake, fr, repo_file};
    use std::collections::HashMap;
    use std::path::PathBuf;

    fn real_data_dir() -> Option<PathBuf> {
        let dir = repo_file("S2RM_DATA_DIR", DEFAULT_DATA_DIR);
        if dir.is_dir() {
            Some(dir)
        } else {
            // In CI the data sits beside the clone: a skip there would hide a broken path.
            assert!(std::env::var_os("CI").is_none(), "CI: datasets not found at {}", dir.display());
            eprintln!(
                "skipping real-data test: {} not found (set S2RM_DATA_DIR)",
                dir.display()
            );
            None
        }
    }

    #[test]
    fn pku_tldr_ultrafeedback_alpaca_readers() {
        let pku = br#"[{"prompt": " P ", "response": ["safe", "unsafe"]},
                       {"prompt": "P", "response": [" b ", "a"]}]"#;
        let tldr = "\"\",query,postprocessed_response,reference_responses,preferred\n\
                    0,Q1,ours1,ref1,ours\n1,Q2,ours2,ref2,reference\n2,Q3,ours3,ref3,\n";
        let uf = "{\"prompt\":\"u\",\"chosen\":\"c\",\"rejected\":\"r\",\"metadata\":{}}\n";
        let alpaca = br#"[{"instruction":"i1","dataset":"helpful_base"},{"instruction":"i2","dataset":"oasst"}]"#;
        let (d, m) = fake(&[
            ("pku", "pku.json", "pku_dpo_json", pku),
            ("tldr", "t.csv", "tldr_judged_csv", tldr.as_bytes()),
            ("uf", "u.jsonl", "ultrafeedback_jsonl", uf.as_bytes()),
            ("alp", "a.json", "alpaca_outputs_json", alpaca),
        ]);
        let dd = data_dir(&d);

        let p = load_preferences(&m, &dd, "pku", false).expect("pku");
        assert_eq!(p.len(), 2);
        assert_eq!(
            (
                p[0].prompt.as_str(),
                p[0].chosen.as_str(),
                p[0].rejected.as_str()
            ),
            ("P", "safe", "unsafe")
        );
        assert_eq!(p[1].chosen, "b");
        assert_eq!(
            load_prompts(&m, &dd, "pku").expect("prompts"),
            vec!["P".to_string()]
        );
        let sft = load_sft(&m, &dd, "pku").expect("sft from pairs");
        assert_eq!(sft[0].response, "safe");

        let (t, rep) = load_preferences_report(&m, &dd, "tldr", false).expect("tldr");
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].chosen.as_str(), t[0].rejected.as_str()),
            ("ours1", "ref1")
        );
        assert_eq!(
            (t[1].chosen.as_str(), t[1].rejected.as_str()),
            ("ref2", "ours2")
        );
        assert_eq!(rep.unlabelled, 1);

        let u = load_preferences(&m, &dd, "uf", false).expect("uf");
        assert_eq!(
            u,
            vec![Preference {
                prompt: "u".into(),
                chosen: "c".into(),
                rejected: "r".into(),
                source: "uf".into()
            }]
        );

        assert_eq!(
            load_prompts(&m, &dd, "alp").expect("alpaca"),
            vec!["i2".to_string()]
        );
        assert_eq!(
            load_alpaca_prompts(&m, &dd, "alp", false)
                .expect("alpaca")
                .len(),
            2
        );
        assert!(load_preferences(&m, &dd, "alp", false).is_err());
        assert!(load_sft(&m, &dd, "alp").is_err());
    }

    #[test]
    fn real_data_counts() {
        let Some(dd) = real_data_dir() else { return };
        let m = Manifest::load(&repo_file("S2RM_MANIFEST", DEFAULT_MANIFEST)).expect("manifest");
        // Every file verifies against its pinned checksum.
        for e in &m.entries {
            read_verified(&m, &dd, &e.id).unwrap_or_else(|err| panic!("{err:#}"));
        }

        let pku = load_preferences(&m, &dd, "pku_saferlhf_dpo", false).expect("pku");
        assert_eq!(pku.len(), 5135);
        assert_eq!(
            pku.iter().map(|p| &p.prompt).collect::<HashSet<_>>().len(),
            930
        );
        assert_eq!(
            load_prompts(&m, &dd, "pku_saferlhf_dpo")
                .expect("prompts")
                .len(),
            930
        );
        assert_eq!(load_sft(&m, &dd, "pku_safe_sft").expect("sft").len(), 5188);

        for (id, n) in [
            ("beavertails_eval", 140),
            ("harmfulqa", 196),
            ("catqa_english", 110),
            ("dangerousqa", 200),
        ] {
            assert_eq!(load_prompts(&m, &dd, id).expect(id).len(), n, "{id}");
        }
        assert_eq!(
            load_prompts(&m, &dd, "alpaca_eval_outputs")
                .expect("alpaca")
                .len(),
            805 - 129
        );

        for (id, rows) in [
            ("hh_harmless_base", 2312),
            ("hh_helpful_base", 2354),
            ("hh_helpful_online", 1137),
            ("hh_helpful_rs", 2749),
        ] {
            let (all, rep) = load_preferences_report(&m, &dd, id, false).expect(id);
            let (single, srep) = load_preferences_report(&m, &dd, id, true).expect(id);
            eprintln!("{id}: all {rep:?}");
            eprintln!("{id}: single-turn {srep:?}");
            assert_eq!(rep.rows, rows, "{id}");
            let dropped =
                rep.unparsed + rep.prompt_mismatch + rep.multi_turn + rep.empty + rep.identical;
            assert_eq!(rep.kept + dropped, rep.rows, "{id}");
            assert_eq!(all.len(), rep.kept);
            // Drops are rare; about 30% of rows are single-turn.
            assert!(dropped * 100 < rows * 2, "{id}: {rep:?}");
            assert!(
                (rows * 25..rows * 40).contains(&(single.len() * 100)),
                "{id}: {}",
                single.len()
            );
        }

        let (t, rep) = load_preferences_report(&m, &dd, "tldr_judged", false).expect("tldr");
        eprintln!("tldr_judged: {rep:?}");
        assert_eq!((rep.rows, rep.unlabelled, t.len()), (1945, 945, 1000));
        // The same file as references: every post, and each judged pair holds its post's reference
        // on one side (the other is the 1.3B PPO summary).
        let refs = load_sft(&m, &dd, "tldr_references").expect("tldr references");
        assert_eq!(refs.len(), 1945);
        let by_post: HashMap<&str, &str> = refs.iter().map(|r| (r.prompt.as_str(), r.response.as_str())).collect();
        for p in &t {
            let r = by_post[p.prompt.as_str()];
            assert!(r == p.chosen || r == p.rejected, "reference of a judged post is neither side");
        }
        assert_eq!(load_prompts(&m, &dd, "tldr_references").expect("posts").len(), 1945);
        // UltraFeedback: 4 + 1 identical pairs and 2 with an empty side are dropped.
        for (id, rows, kept) in [
            ("ultrafeedback_train", 1000, 994),
            ("ultrafeedback_eval", 200, 199),
        ] {
            let (_, rep) = load_preferences_report(&m, &dd, id, false).expect(id);
            eprintln!("{id}: {rep:?}");
            assert_eq!((rep.rows, rep.kept), (rows, kept), "{id}");
        }

        // Refusal rates: on PKU the safer (chosen) responses refuse clearly more often.
        let r = RefusalDetector::load(&repo_file(
            "S2RM_REFUSAL_PATTERNS",
            DEFAULT_REFUSAL_PATTERNS,
        ))
        .expect("patterns");
        let rates = |p: &[Preference]| {
            (
                r.rate(p.iter().map(|x| x.chosen.as_str())),
                r.rate(p.iter().map(|x| x.rejected.as_str())),
            )
        };
        let (c, j) = rates(&pku);
        eprintln!("refusal rate pku_saferlhf_dpo: chosen {c:.4} rejected {j:.4}");
        assert!(c > 1.5 * j && c > j + 0.02, "chosen {c} rejected {j}");
        for id in ["hh_harmless_base", "hh_helpful_base"] {
            let single = load_preferences(&m, &dd, id, true).expect(id);
            let (c, j) = rates(&single);
            eprintln!(
                "refusal rate {id} (single-turn, {} pairs): chosen {c:.4} rejected {j:.4}",
                single.len()
            );
        }
        let split = split_by_prompt(&pku, &fr(&[("train", 0.8), ("val", 0.1), ("test", 0.1)]), 0)
            .expect("split");
        eprintln!(
            "pku split sizes: {:?}",
            split
                .iter()
                .map(|(k, v)| (k.as_str(), v.len()))
                .collect::<Vec<_>>()
        );
    }
}
