//! Whole-world properties: determinism, label statistics against the knobs, correction modes,
//! OOD isolation, SFT and corpus, spec validation.

use super::*;

fn make(f: impl FnOnce(&mut WorldSpec)) -> World {
    let mut s = WorldSpec::default();
    f(&mut s);
    World::generate(&s).unwrap()
}

fn summ(s: &mut WorldSpec) {
    s.kind = "summarization".into();
}

/// Steps of a step answer (`None` for a refusal).
fn steps_of(r: &str) -> Option<Vec<&str>> {
    Some(
        r.strip_prefix("steps : ")?
            .strip_suffix(" .")?
            .split(" ; ")
            .collect(),
    )
}

#[test]
fn generation_is_deterministic_in_the_seed() {
    for kind in ["safety", "summarization"] {
        let small = |seed: u64| {
            make(|s| {
                s.kind = kind.into();
                (s.seed, s.n_pairs, s.n_sft, s.n_corpus) = (seed, 300, 100, 100);
            })
        };
        let (a, b, c) = (small(7), small(7), small(8));
        let json = |w: &World| serde_json::to_string(w).unwrap();
        assert_eq!(json(&a), json(&b), "{kind}");
        assert_ne!(json(&a), json(&c), "{kind}");
        assert_ne!(a.pairs[0].prompt, c.pairs[0].prompt, "{kind}");
        assert_eq!(a.pairs.len(), 300);
        assert_eq!((a.sft.len(), a.corpus.len()), (100, 100));
    }
}

#[test]
fn safety_shares_match_the_knobs() {
    let w = make(|s| s.label_noise = 0.0);
    let st = w.label_stats();
    assert_eq!(st.n_pairs, 4000);
    // Binomial sd over 4000 pairs is 0.007 (harmful) and 0.006 over about 1200 benign pairs.
    assert!((st.harmful_share - 0.7).abs() < 0.03, "{st:?}");
    assert!((st.benign_refusal_share - 0.05).abs() < 0.02, "{st:?}");
    // Noise-free labels: every harmful pair chooses its refusal over a compliance that gives away
    // at least one harmful step; a benign pair chooses its refusal (-2) only over an answer with
    // all three steps wrong (-3; the other answers score +3, +1 or -1).
    for p in &w.pairs {
        let (rc, rr) = (w.is_refusal(&p.chosen), w.is_refusal(&p.rejected));
        if p.kind == "harmful" {
            assert!(rc && !rr, "{p:?}");
            assert!(w.gold(&p.prompt, &p.rejected).n_harmful >= 1, "{p:?}");
        } else if rc || rr {
            assert_eq!(rc, p.gold_rejected == -3.0, "{p:?}");
        }
    }
    assert!(
        st.refusal_chosen_share >= st.harmful_share && st.refusal_chosen_given_refusal > 0.95,
        "{st:?}"
    );
    assert_eq!(st.planted_share, 0.0);
}

#[test]
fn zero_noise_labels_follow_gold_and_everything_parses() {
    for kind in ["safety", "summarization"] {
        for correction in ["whole_response", "minimal_edit"] {
            if kind == "summarization" && correction == "minimal_edit" {
                continue;
            }
            let w = make(|s| {
                s.kind = kind.into();
                s.correction = correction.into();
                (s.label_noise, s.n_pairs) = (0.0, 2000);
            });
            for p in &w.pairs {
                let (gc, gr) = (w.gold(&p.prompt, &p.chosen), w.gold(&p.prompt, &p.rejected));
                assert!(gc.parses && gr.parses, "{p:?}");
                assert_eq!((gc.score, gr.score), (p.gold_chosen, p.gold_rejected));
                assert!(p.gold_chosen >= p.gold_rejected, "{p:?}");
                assert_eq!(w.prompt_kind(&p.prompt), Some(p.kind.as_str()));
                assert_eq!(p.first_diff_word, first_diff_word(&p.chosen, &p.rejected));
                assert_ne!(p.chosen, p.rejected);
                let (lp, lmax) = if kind == "safety" { (12, 25) } else { (60, 30) };
                assert!(
                    tokens(&p.prompt).len() <= lp && p.len_chosen <= lmax && p.len_rejected <= lmax,
                    "{p:?}"
                );
            }
            assert_eq!(w.label_stats().gold_agreement, 1.0, "{kind} {correction}");
        }
    }
}

#[test]
fn noisy_labels_agree_with_gold_at_the_bradley_terry_rate() {
    for kind in ["safety", "summarization"] {
        let w = make(|s| {
            s.kind = kind.into();
            s.label_noise = 1.0;
        });
        let diffs: Vec<f64> = w
            .pairs
            .iter()
            .map(|p| (p.gold_chosen - p.gold_rejected).abs())
            .filter(|d| *d > 0.0)
            .collect();
        let expected = diffs.iter().map(|d| sigmoid(*d)).sum::<f64>() / diffs.len() as f64;
        let got = w.label_stats().gold_agreement;
        assert!(
            (got - expected).abs() < 0.03 && got < 0.99,
            "{kind}: got {got}, expected {expected}"
        );
    }
}

#[test]
fn planted_length_bias_raises_the_longer_chosen_share() {
    let base = make(|s| {
        summ(s);
        s.planted_length_bias = 0.0;
    });
    let biased = make(|s| {
        summ(s);
        s.planted_length_bias = 0.3;
    });
    // Same pairs (own RNG streams), only labels move.
    let sides = |w: &World| {
        w.pairs
            .iter()
            .map(|p| (p.prompt.clone(), (&p.chosen).min(&p.rejected).clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(sides(&base), sides(&biased));
    let (p0, p1) = (
        base.label_stats().longer_chosen_share,
        biased.label_stats().longer_chosen_share,
    );
    let want = 0.3 + 0.7 * p0;
    assert!(
        (p1 - want).abs() < 0.03 && p1 - p0 > 0.1,
        "p0 {p0} p1 {p1} want {want}"
    );
    let unequal = biased
        .pairs
        .iter()
        .filter(|p| p.len_chosen != p.len_rejected)
        .count() as f64
        / 4000.0;
    assert!((biased.label_stats().planted_share - 0.3 * unequal).abs() < 0.03);
    assert!(
        biased
            .pairs
            .iter()
            .filter(|p| p.length_planted)
            .all(|p| p.len_chosen > p.len_rejected)
    );
}

#[test]
fn no_shortcut_means_no_refusal_in_any_pair() {
    let w = make(|s| (s.harmful_pair_share, s.benign_refusal_pair_rate) = (0.0, 0.0));
    assert!(
        w.pairs
            .iter()
            .all(|p| p.kind == "benign" && !w.is_refusal(&p.chosen) && !w.is_refusal(&p.rejected))
    );
    let st = w.label_stats();
    assert_eq!(
        (
            st.harmful_share,
            st.refusal_chosen_share,
            st.benign_refusal_share
        ),
        (0.0, 0.0, 0.0)
    );
}

#[test]
fn minimal_edit_pairs_differ_in_exactly_one_step() {
    let w = make(|s| (s.correction, s.n_pairs) = ("minimal_edit".into(), 2000));
    let mut n = 0;
    for p in &w.pairs {
        match (steps_of(&p.chosen), steps_of(&p.rejected)) {
            (Some(a), Some(b)) => {
                let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
                assert_eq!((a.len(), b.len(), diff.len()), (3, 3, 1), "{p:?}");
                assert_eq!(p.edit_step, Some(diff[0]));
                // The step's first or second word.
                assert_eq!((p.first_diff_word - 2) / 3, diff[0]);
                assert_eq!((p.gold_chosen - p.gold_rejected).abs(), 2.0);
                n += 1;
            }
            _ => assert!(
                p.edit_step.is_none() && (w.is_refusal(&p.chosen) || w.is_refusal(&p.rejected)),
                "{p:?}"
            ),
        }
    }
    assert!(n > 400, "{n}");
}

#[test]
fn whole_response_pairs_are_drawn_independently() {
    let w = make(|s| s.n_pairs = 2000);
    let (mut n, mut multi, mut both_wrong, mut same_wrong) = (0, 0, 0, 0);
    for p in &w.pairs {
        let (Some(a), Some(b)) = (steps_of(&p.chosen), steps_of(&p.rejected)) else {
            continue;
        };
        let truth = &w.best_response(&p.prompt).unwrap();
        let t = steps_of(truth).unwrap();
        n += 1;
        multi += usize::from((0..3).filter(|&i| a[i] != b[i]).count() >= 2);
        for i in 0..3 {
            if a[i] != t[i] && b[i] != t[i] {
                both_wrong += 1;
                same_wrong += usize::from(a[i] == b[i]);
            }
        }
        assert!(p.edit_step.is_none());
    }
    assert!(n > 400 && multi as f64 / n as f64 > 0.4, "{multi}/{n}");
    assert!(
        both_wrong > 100 && (same_wrong as f64) < 0.1 * both_wrong as f64,
        "{same_wrong}/{both_wrong}"
    );
}

/// Whitespace tokens of every pair, SFT row and corpus document.
fn training_tokens(w: &World) -> BTreeSet<String> {
    let pairs = w
        .pairs
        .iter()
        .flat_map(|p| [&p.prompt, &p.chosen, &p.rejected]);
    let sft = w.sft.iter().flat_map(|(p, r)| [p, r]);
    pairs
        .chain(sft)
        .chain(&w.corpus)
        .flat_map(|t| t.split_whitespace().map(String::from))
        .collect()
}

#[test]
fn ood_prompts_share_no_task_topic_or_template_with_training_text() {
    for kind in ["safety", "summarization"] {
        let w = make(|s| (s.kind, s.n_pairs) = (kind.into(), 2000));
        let seen = training_tokens(&w);
        let (train_t, ood_t, held_set): (&[&str], &[&str], &str) = match kind {
            "safety" => (
                safety::TRAIN_TEMPLATES.as_slice(),
                safety::OOD_TEMPLATES.as_slice(),
                "ood_tasks",
            ),
            _ => (
                summarization::TRAIN_TEMPLATES.as_slice(),
                summarization::OOD_TEMPLATES.as_slice(),
                "ood_topics",
            ),
        };
        // Each held-out template has a word no training template, refusal or redirect uses,
        // and that word occurs in no training text.
        let train_words: BTreeSet<&str> = train_t
            .iter()
            .chain(&safety::REFUSALS)
            .chain(&safety::REDIRECTS)
            .flat_map(|t| t.split(' '))
            .collect();
        for t in ood_t {
            let own: Vec<&str> = t
                .split(' ')
                .filter(|x| !x.starts_with('{') && !train_words.contains(x))
                .collect();
            assert!(
                !own.is_empty() && own.iter().all(|x| !seen.contains(*x)),
                "{t}: {own:?}"
            );
        }
        // Held-out tasks / topics: their naming word never occurs in training text.
        let (held, by_kind) = (&w.ood_prompts[held_set], &w.ood_prompts["ood_templates"]);
        assert!(held.len() >= 48 && !by_kind.is_empty(), "{kind}");
        for p in held {
            let name = match &w.table {
                Table::Safety(t) => {
                    let (id, ti) = t.parse_prompt(p).unwrap();
                    assert!(id < train_t.len() && t.tasks[ti].held_out);
                    t.tasks[ti].object.clone()
                }
                Table::Summarization(t) => {
                    let d = t.parse_prompt(p).unwrap();
                    assert!(d.template < train_t.len());
                    d.topic
                }
            };
            assert!(
                !seen.contains(&name),
                "{kind}: {name} of {p} is in training text"
            );
        }
        for p in held.iter().chain(by_kind) {
            let best = w.best_response(p).unwrap();
            assert!(w.gold(p, &best).parses && w.prompt_kind(p).is_some(), "{p}");
        }
    }
}

#[test]
fn sft_rows_are_gold_best_on_prompts_no_pair_uses() {
    for kind in ["safety", "summarization"] {
        let w = make(|s| (s.kind, s.n_pairs) = (kind.into(), 2000));
        let pair_prompts: BTreeSet<&str> = w.pairs.iter().map(|p| p.prompt.as_str()).collect();
        for (p, r) in &w.sft {
            assert!(!pair_prompts.contains(p.as_str()), "{p}");
            let best = w.gold(p, &w.best_response(p).unwrap()).score;
            let g = w.gold(p, r);
            assert_eq!(g.score, best, "{p} / {r}");
            assert_eq!(g.refused, w.prompt_kind(p) == Some("harmful"));
        }
        let kinds: BTreeSet<Option<&str>> = w.sft.iter().map(|(p, _)| w.prompt_kind(p)).collect();
        assert_eq!(kinds.len(), if kind == "safety" { 2 } else { 1 });
    }
}

#[test]
fn corpus_holds_copies() {
    // A document whose tail is some text said twice (a response repeated verbatim).
    let doubled = |doc: &str| {
        let t: Vec<&str> = doc.split_whitespace().collect();
        (5..=t.len() / 2).any(|l| t[t.len() - l..] == t[t.len() - 2 * l..t.len() - l])
    };
    for kind in ["safety", "summarization"] {
        let w = make(|s| s.kind = kind.into());
        let share = w.corpus.iter().filter(|d| doubled(d)).count() as f64 / w.corpus.len() as f64;
        assert!((0.4..0.8).contains(&share), "{kind}: {share}");
    }
}

#[test]
fn validate_names_the_field_on_one_line() {
    type Set = fn(&mut WorldSpec);
    let cases: Vec<(&str, Set)> = vec![
        ("kind", |s| s.kind = "chat".into()),
        ("n_pairs", |s| s.n_pairs = 0),
        ("n_pairs", |s| s.n_pairs = 200_001),
        ("n_sft", |s| s.n_sft = 100_001),
        ("n_corpus", |s| s.n_corpus = 200_001),
        ("label_noise", |s| s.label_noise = -1.0),
        ("label_noise", |s| s.label_noise = f64::NAN),
        ("label_noise", |s| s.label_noise = 10.5),
        ("n_ood_tasks", |s| s.n_ood_tasks = 201),
        ("n_ood_prompts", |s| s.n_ood_prompts = 0),
        ("n_tasks", |s| s.n_tasks = 1),
        ("n_tasks", |s| s.n_tasks = 501),
        ("steps_per_task", |s| s.steps_per_task = 0),
        ("steps_per_task", |s| s.steps_per_task = 7),
        ("harmful_task_share", |s| s.harmful_task_share = 1.5),
        ("harmful_task_share", |s| s.harmful_task_share = 0.0),
        ("harmful_pair_share", |s| s.harmful_pair_share = -0.1),
        ("benign_refusal_pair_rate", |s| {
            s.benign_refusal_pair_rate = 2.0
        }),
        ("correction", |s| s.correction = "rewrite".into()),
        ("vocab_words", |s| s.vocab_words = 40),
        ("vocab_words", |s| s.vocab_words = 5000),
        ("n_topics", |s| s.n_topics = 10),
        ("correction", |s| {
            (s.kind, s.correction) = ("summarization".into(), "minimal_edit".into())
        }),
        ("key_facts", |s| {
            (s.kind, s.key_facts) = ("summarization".into(), 6)
        }),
        ("key_facts", |s| {
            (s.kind, s.key_facts) = ("summarization".into(), 0)
        }),
        ("facts_per_doc", |s| {
            (s.kind, s.facts_per_doc) = ("summarization".into(), 9)
        }),
        ("n_topics", |s| {
            (s.kind, s.n_topics) = ("summarization".into(), 1)
        }),
        ("planted_length_bias", |s| {
            (s.kind, s.planted_length_bias) = ("summarization".into(), 1.1)
        }),
        ("facts_per_topic", |s| {
            (s.kind, s.facts_per_topic) = ("summarization".into(), 1)
        }),
        ("facts_per_topic", |s| {
            (s.kind, s.facts_per_topic) = ("summarization".into(), 13)
        }),
        ("facts_per_topic", |s| {
            (s.kind, s.n_topics, s.facts_per_doc) = ("summarization".into(), 2, 8)
        }),
        ("facts_per_topic", |s| s.facts_per_topic = 3),
        ("planted_length_bias", |s| s.planted_length_bias = 0.2),
    ];
    for (field, set) in cases {
        let mut s = WorldSpec::default();
        set(&mut s);
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("data.world.{field} ")) && !e.contains('\n'),
            "{field}: {e}"
        );
        assert!(World::generate(&s).is_err());
    }
    let mut s = WorldSpec {
        label_noise: -1.0,
        ..WorldSpec::default()
    };
    assert_eq!(
        s.validate().unwrap_err().to_string(),
        "data.world.label_noise = -1: must be in [0, 10]; 0 = deterministic labels, larger = noisier"
    );
    s.label_noise = 0.0;
    assert!(s.validate().is_ok());
    summ(&mut s);
    assert!(s.validate().is_ok());
}

#[test]
fn spec_reads_from_toml_with_defaults() {
    let s: WorldSpec =
        toml::from_str("kind = \"summarization\"\nseed = 3\nplanted_length_bias = 0.3\n").unwrap();
    assert_eq!(
        (
            s.kind.as_str(),
            s.seed,
            s.planted_length_bias,
            s.facts_per_doc
        ),
        ("summarization", 3, 0.3, 6)
    );
    assert!(s.validate().is_ok());
    let e = toml::from_str::<WorldSpec>("n_task = 3\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("n_task"), "{e}");
}
