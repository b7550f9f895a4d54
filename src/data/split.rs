//! Prompt-disjoint splitting of preference pairs.

use anyhow::{Result, bail};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::Preference;
use crate::util::SplitMix64;

/// Splits by prompt: every distinct prompt goes to exactly one split, so no prompt crosses splits.
/// `fractions` are (split name, fraction), each > 0, summing to 1 within 1e-6, names unique.
/// Deterministic: distinct prompts sorted, shuffled with `SplitMix64::new(seed)`, then cut in the
/// order given at the rounded cumulative fractions (so the counts sum to the number of prompts);
/// all pairs of a prompt follow it. Every split name is present in the result, possibly empty;
/// pairs keep their original order.
pub fn split_by_prompt(
    prefs: &[Preference],
    fractions: &[(String, f64)],
    seed: u64,
) -> Result<BTreeMap<String, Vec<Preference>>> {
    let listed = || {
        fractions
            .iter()
            .map(|(n, f)| format!("{n}={f}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sum: f64 = fractions.iter().map(|(_, f)| f).sum();
    if fractions.is_empty()
        || fractions.iter().any(|(_, f)| !(f.is_finite() && *f > 0.0))
        || (sum - 1.0).abs() > 1e-6
    {
        bail!(
            "split fractions must each be > 0 and sum to 1 (within 1e-6); got [{}] (sum {sum})",
            listed()
        );
    }
    let mut names = HashSet::new();
    if let Some((dup, _)) = fractions.iter().find(|(n, _)| !names.insert(n.as_str())) {
        bail!("split name `{dup}` appears twice in [{}]", listed());
    }

    let mut prompts: Vec<&str> = prefs
        .iter()
        .map(|p| p.prompt.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    SplitMix64::new(seed).shuffle(&mut prompts);
    let n = prompts.len();
    let mut split_of: HashMap<&str, usize> = HashMap::with_capacity(n);
    let (mut cum, mut start) = (0.0, 0usize);
    for (k, (_, f)) in fractions.iter().enumerate() {
        cum += f;
        // Cutting at rounded cumulative positions (last cut pinned to n) makes the counts sum to n.
        let end = if k + 1 == fractions.len() {
            n
        } else {
            ((cum * n as f64).round() as usize).clamp(start, n)
        };
        for p in &prompts[start..end] {
            split_of.insert(p, k);
        }
        start = end;
    }

    let mut out: BTreeMap<String, Vec<Preference>> = fractions
        .iter()
        .map(|(name, _)| (name.clone(), Vec::new()))
        .collect();
    for p in prefs {
        // Every prompt was assigned above; the lookups cannot miss.
        if let Some(list) = split_of
            .get(p.prompt.as_str())
            .and_then(|&k| out.get_mut(&fractions[k].0))
        {
            list.push(p.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::fr;

    fn pref(prompt: &str, tag: usize) -> Preference {
        Preference {
            prompt: prompt.into(),
            chosen: format!("c{tag}"),
            rejected: format!("r{tag}"),
            source: "t".into(),
        }
    }

    fn repeated_prompts() -> Vec<Preference> {
        // 40 prompts, prompt k repeated (k % 4) + 1 times, interleaved.
        let mut v = Vec::new();
        for rep in 0..4 {
            for k in 0..40 {
                if rep <= k % 4 {
                    v.push(pref(&format!("prompt {k}"), v.len()));
                }
            }
        }
        v
    }

    #[test]
    fn split_is_prompt_disjoint_complete_and_ordered() {
        let prefs = repeated_prompts();
        let f = fr(&[("train", 0.8), ("val", 0.1), ("test", 0.1)]);
        let s = split_by_prompt(&prefs, &f, 7).expect("split");
        assert_eq!(
            s.keys().cloned().collect::<Vec<_>>(),
            vec!["test", "train", "val"]
        );
        let mut owner: HashMap<&str, &str> = HashMap::new();
        for (name, list) in &s {
            for p in list {
                let prev = owner.insert(p.prompt.as_str(), name.as_str());
                assert!(
                    prev.is_none() || prev == Some(name.as_str()),
                    "{} in two splits",
                    p.prompt
                );
            }
        }
        assert_eq!(owner.len(), 40);
        assert_eq!(s.values().map(Vec::len).sum::<usize>(), prefs.len());
        // Prompt counts follow the fractions: 32 / 4 / 4.
        let count = |n: &str| s[n].iter().map(|p| &p.prompt).collect::<HashSet<_>>().len();
        assert_eq!((count("train"), count("val"), count("test")), (32, 4, 4));
        // Pairs keep their original relative order.
        for list in s.values() {
            let pos: Vec<usize> = list
                .iter()
                .map(|p| prefs.iter().position(|q| q == p).expect("in input"))
                .collect();
            assert!(pos.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn split_is_deterministic_per_seed() {
        let prefs = repeated_prompts();
        let f = fr(&[("a", 0.5), ("b", 0.5)]);
        let one = split_by_prompt(&prefs, &f, 1).expect("split");
        assert_eq!(one, split_by_prompt(&prefs, &f, 1).expect("split"));
        // Input order does not matter (prompts are sorted before shuffling).
        let mut rev = prefs.clone();
        rev.reverse();
        let r = split_by_prompt(&rev, &f, 1).expect("split");
        let names = |m: &BTreeMap<String, Vec<Preference>>, k: &str| {
            m[k].iter()
                .map(|p| p.prompt.clone())
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(names(&one, "a"), names(&r, "a"));
        assert_ne!(one, split_by_prompt(&prefs, &f, 2).expect("split"));
    }

    #[test]
    fn split_fraction_errors_and_empty_splits() {
        let prefs = repeated_prompts();
        for bad in [
            fr(&[("a", 0.5), ("b", 0.4)]),
            fr(&[("a", 1.2), ("b", -0.2)]),
            fr(&[("a", 1.0), ("b", 0.0)]),
            fr(&[("a", f64::NAN)]),
            fr(&[]),
        ] {
            let e = split_by_prompt(&prefs, &bad, 0).expect_err("bad fractions");
            assert!(e.to_string().contains("fractions"), "{e}");
        }
        let e = split_by_prompt(&prefs, &fr(&[("a", 0.5), ("a", 0.5)]), 0).expect_err("dup");
        assert!(e.to_string().contains("twice"), "{e}");

        // Within 1e-6 is accepted.
        assert!(split_by_prompt(&prefs, &fr(&[("a", 0.3), ("b", 0.7 + 5e-7)]), 0).is_ok());
        // A fraction too small for any prompt leaves its split empty, but present.
        let s = split_by_prompt(&prefs, &fr(&[("big", 0.999), ("tiny", 0.001)]), 0).expect("split");
        assert!(s["tiny"].is_empty());
        assert_eq!(s["big"].len(), prefs.len());
        // No pairs at all: every split present and empty.
        let s = split_by_prompt(&[], &fr(&[("x", 0.5), ("y", 0.5)]), 0).expect("split");
        assert_eq!(s.len(), 2);
        assert!(s.values().all(Vec::is_empty));
    }
}
