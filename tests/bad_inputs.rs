//! The bad-input corpus (`tests/bad_inputs/<case>/`, see its README.md): every case runs the real
//! binary and must fail with exit code ≠ 0 and exactly one `error:` line (no panic, no backtrace)
//! that contains every substring listed in the case's `expect.txt`. Cases that reach `run` must
//! leave no new results (no CSV, no temporary file) in the output directory, and an earlier
//! run's results there untouched.

use std::path::{Path, PathBuf};
use std::process::Command;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bad_inputs");
const MIN_CASES: usize = 50;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Non-empty lines that are not comments.
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// The command line of a case: its `args` file, else `run` for a case with data, `validate` for a
/// spec and `report` for a results folder.
fn args_of(case: &Path, out: &Path) -> Vec<String> {
    let given = lines(&case.join("args"));
    let words: Vec<String> = if !given.is_empty() {
        given.iter().flat_map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>()).collect()
    } else if case.join("datasets.toml").exists() || case.join("data").exists() {
        ["run", "../_common/spec.toml", "--device", "cpu", "--output", "$OUT"].map(String::from).to_vec()
    } else if case.join("spec.toml").exists() {
        vec!["validate".into(), "spec.toml".into()]
    } else if case.join("results").exists() {
        vec!["report".into(), "results".into()]
    } else {
        panic!("{}: no args, spec.toml, datasets.toml or results/", case.display());
    };
    words.into_iter().map(|w| w.replace("$OUT", &out.display().to_string())).collect()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Runs one case; returns what is wrong with its outcome, if anything.
fn check_case(name: &str) -> Option<String> {
    let src = Path::new(CORPUS).join(name);
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&Path::new(CORPUS).join("_common"), &tmp.path().join("_common"));
    let case = tmp.path().join(name);
    copy_dir(&src, &case);
    let out = tmp.path().join("out");
    // Results of an earlier run in the output directory must survive a failed run untouched.
    const OLD: &[u8] = b"experiment,size\nearlier,run\n";
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("generations.csv"), OLD).unwrap();
    let args = args_of(&case, &out);
    let expect = lines(&src.join("expect.txt"));
    if expect.is_empty() {
        return Some("expect.txt lists no expected substrings".into());
    }
    let output = Command::new(env!("CARGO_BIN_EXE_s2rm"))
        .args(&args)
        .current_dir(&case)
        .output()
        .expect("run s2rm");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let code = output.status.code();
    let mut problems = Vec::new();
    match code {
        Some(0) => problems.push("exit code 0 (the input was accepted)".to_string()),
        Some(101) => problems.push("exit code 101 (a panic)".to_string()),
        None => problems.push("killed by a signal (an abort?)".to_string()),
        _ => {}
    }
    for bad in ["panicked", "internal error", "stack backtrace", "RUST_BACKTRACE"] {
        if stderr.contains(bad) {
            problems.push(format!("stderr contains `{bad}`"));
        }
    }
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    let last = stderr.lines().filter(|l| !l.trim().is_empty()).last().unwrap_or("");
    if errors.len() != 1 {
        problems.push(format!("{} `error:` lines (want exactly 1)", errors.len()));
    } else if errors[0] != last {
        problems.push("the error message spans several lines".into());
    }
    let message = errors.first().copied().unwrap_or("");
    for want in &expect {
        if !message.contains(want.as_str()) {
            problems.push(format!("message lacks `{want}`"));
        }
    }
    // Nothing half-written: a failed run leaves no new results in its output directory, and the
    // earlier ones as they were.
    for f in files_under(&out) {
        let s = f.display().to_string();
        let old = f == out.join("generations.csv");
        if !old && (s.ends_with(".csv") || s.ends_with(".tmp") || s.ends_with(".md") || s.ends_with("run_info.json")) {
            problems.push(format!("left {s} behind"));
        }
    }
    if std::fs::read(out.join("generations.csv")).ok().as_deref() != Some(OLD) {
        problems.push("an earlier generations.csv in the output directory was changed".into());
    }
    if problems.is_empty() {
        None
    } else {
        Some(format!("{}\n    args: {}\n    stderr: {}", problems.join("; "), args.join(" "), stderr.trim().replace('\n', "\n            ")))
    }
}

#[test]
fn every_bad_input_fails_with_one_clear_message() {
    let mut cases: Vec<String> = std::fs::read_dir(CORPUS)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('_'))
        .collect();
    cases.sort();
    assert!(cases.len() >= MIN_CASES, "only {} cases in {CORPUS}", cases.len());
    let only = std::env::var("BAD_INPUT_CASE").ok();
    let mut failures = Vec::new();
    for name in &cases {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        if let Some(why) = check_case(name) {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} bad-input cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Not a bad input: prompts (and responses) far longer than the context are truncated by design
/// (prompts keep their end, responses their start), never a panic or an out-of-range position.
#[test]
fn prompts_longer_than_the_context_are_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&Path::new(CORPUS).join("_common"), &tmp.path().join("_common"));
    let case = tmp.path().join("long");
    std::fs::create_dir_all(case.join("data")).unwrap();
    let long_words: String = (0..3000).map(|j| format!("point{j} ")).collect();
    let rows: Vec<String> = (0..24)
        .map(|i| {
            let prompt = if i % 3 == 0 { format!("Please explain {long_words}for garden {i}?") } else { format!("How do I water garden {i}?") };
            let chosen = if i % 4 == 0 { format!("Water garden {i} at dawn. ").repeat(300) } else { format!("Water garden {i} at dawn.") };
            format!("{{\"prompt\": \"{prompt}\", \"response\": [\"{chosen}\", \"Garden {i} needs nothing.\"]}}")
        })
        .collect();
    let bytes = format!("[{}]", rows.join(",\n")).into_bytes();
    std::fs::write(case.join("data/prefs.json"), &bytes).unwrap();
    std::fs::write(
        case.join("datasets.toml"),
        format!(
            "[[dataset]]\nid = \"prefs\"\nfile = \"prefs.json\"\nformat = \"pku_dpo_json\"\nsha256 = \"{}\"\nlicence = \"test\"\nupstream = \"test\"\nkind = \"benign\"\ndescription = \"long prompts\"\n",
            s2rm::util::sha256_hex(&bytes)
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_s2rm"))
        .args(["run", "../_common/spec.toml", "--device", "cpu", "--output"])
        .arg(&out)
        .current_dir(&case)
        .output()
        .expect("run s2rm");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "long prompts must be truncated, not fatal:\n{stderr}");
    for f in ["generations.csv", "ppo_log.csv", "train_log.csv", "REPORT.md"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(files_under(&out).iter().all(|f| !f.display().to_string().ends_with(".tmp")), "temporary file left behind");
}
