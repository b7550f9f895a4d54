//! Gold and grammar of the summarization world on hand-built summaries.

use super::*;
use crate::world::{Table, UNPARSABLE, World};

fn world() -> World {
    let spec = WorldSpec {
        kind: "summarization".into(),
        n_pairs: 50,
        n_sft: 10,
        n_corpus: 10,
        ..WorldSpec::default()
    };
    World::generate(&spec).unwrap()
}

fn table(w: &World) -> &SummTable {
    match &w.table {
        Table::Summarization(t) => t,
        Table::Safety(_) => panic!("not a summarization world"),
    }
}

/// A hand-built prompt: two key facts about entity 0, two fillers about entity 1; and the facts
/// [k1, k2, f1, f2, u] where `u` is about the topic but not in the document.
fn hand_doc(t: &SummTable) -> (String, [String; 5]) {
    let (e0, e1) = (&t.entities[0], &t.entities[1]);
    let k1 = format!("the {e0} is {} .", t.adjectives[0]);
    let k2 = format!("the {e0} {} the {} .", t.relations[0], t.nouns[0]);
    let f1 = format!("the {e1} is {} .", t.adjectives[1]);
    let f2 = format!("the {e1} {} the {} .", t.relations[1], t.nouns[1]);
    let u = format!("the {e0} is {} .", t.adjectives[2]);
    (
        format!("summarize about {e0} : {k1} {f1} {k2} {f2}"),
        [k1, k2, f1, f2, u],
    )
}

#[test]
fn gold_on_hand_built_summaries() {
    let w = world();
    let t = table(&w);
    let (p, [k1, k2, f1, f2, u]) = hand_doc(t);
    let score = |s: &str| w.gold(&p, s).score;
    let g = w.gold(&p, &format!("{k1} {k2}"));
    assert_eq!(
        (
            g.score,
            g.parses,
            g.n_correct,
            g.n_wrong,
            g.prompt_kind.as_deref()
        ),
        (2.0, true, 2, 0, Some("summary"))
    );
    // Order does not matter; fillers cost FILLER_COST each.
    assert_eq!(score(&format!("{k2} {k1}")), 2.0);
    assert_eq!(score(&format!("{k1} {f1} {k2}")), 1.5);
    assert_eq!(score(&format!("{k1} {f1} {k2} {f2}")), 1.0);
    assert_eq!(score(&f1), -0.5);
    // A repeated fact costs REPEAT_COST and counts once.
    let g = w.gold(&p, &format!("{k1} {k1} {k2}"));
    assert_eq!((g.score, g.n_correct, g.n_repeated), (1.5, 2, 1));
    assert_eq!(score(&format!("{f1} {f1}")), -1.0);
    // A fact not in the document costs UNSUPPORTED_COST.
    let g = w.gold(&p, &format!("{k1} {u}"));
    assert_eq!((g.score, g.n_unsupported), (0.0, 1));
    // Glued punctuation reads the same.
    assert_eq!(score(&format!("{k1} {k2}").replace(" .", ".")), 2.0);
    assert_eq!(
        w.best_response(&p).as_deref(),
        Some(format!("{k1} {k2}").as_str())
    );
}

#[test]
fn unparsable_summaries_and_prompts() {
    let w = world();
    let t = table(&w);
    let (p, [k1, k2, ..]) = hand_doc(t);
    let e0 = &t.entities[0];
    for bad in [
        String::new(),
        "the summary is short".to_string(),
        format!("{k1} and {k2}"),
        format!("the {e0} is"),
        format!("the {e0} is {} .", t.nouns[0]), // a noun where an adjective belongs
        format!("{k1} {}", k2.trim_end_matches(" .")),
    ] {
        let g = w.gold(&p, &bad);
        assert!(
            !g.parses && g.score == UNPARSABLE && g.prompt_kind.as_deref() == Some("summary"),
            "{bad:?} -> {g:?}"
        );
    }
    // Eight sentences parse (the lowest parsable score, -8, stays above UNPARSABLE); nine do not.
    let unsupported: Vec<String> = (0..9)
        .map(|i| format!("the {} is {} .", t.entities[2], t.adjectives[i]))
        .collect();
    let g = w.gold(&p, &unsupported[..8].join(" "));
    assert!(g.parses && g.score == -8.0 && g.score > UNPARSABLE, "{g:?}");
    assert!(!w.parses(&p, &unsupported.join(" ")));
    // Unknown topic, no template, a document that is not facts.
    for bad in [
        format!("summarize about nobody : {k1}"),
        format!("summarize {e0} : {k1}"),
        format!("summarize about {e0} : hello there ."),
        format!("summarize about {e0} :"),
    ] {
        assert!(
            w.prompt_kind(&bad).is_none() && w.gold_checked(&bad, &k1).is_err(),
            "{bad}"
        );
        assert_eq!(w.gold(&bad, &k1).score, UNPARSABLE);
    }
}

#[test]
fn generated_documents_mark_key_facts_by_subject() {
    let w = world();
    let t = table(&w);
    let mut rng = SplitMix64::new(5);
    for topic in 0..t.entities.len() {
        for id in 0..TRAIN_TEMPLATES.len() + OOD_TEMPLATES.len() {
            let (p, doc) = t.doc_prompt(topic, template(id), &mut rng);
            assert!(tokens(&p).len() <= 60, "{p}");
            let d = t.parse_prompt(&p).unwrap();
            assert_eq!(
                (d.template, d.topic.as_str()),
                (id, t.entities[topic].as_str())
            );
            let parsed: Vec<(bool, String)> = d
                .facts
                .iter()
                .map(|(s, f)| (*s == d.topic, f.clone()))
                .collect();
            assert_eq!(parsed, doc);
            assert_eq!(doc.iter().filter(|(k, _)| *k).count(), 2);
            // Fillers are about training entities only.
            assert!(
                d.facts
                    .iter()
                    .all(|(s, _)| *s == d.topic || t.entities[..t.n_train].contains(s))
            );
            let summary = SummTable::draw_summary(&doc, &mut rng);
            assert!(
                tokens(&summary).len() <= 30 && w.parses(&p, &summary),
                "{summary}"
            );
        }
    }
}

/// With a fact table every document quotes its entities' table facts; with `facts_per_topic = 0`
/// the same documents draw facts outside any table.
#[test]
fn documents_quote_the_hidden_fact_table() {
    let w = world();
    let t = table(&w);
    assert!(t.known.iter().all(|k| k.len() == 4));
    let known = |s: &str, f: &str| {
        let e = t.entities.iter().position(|x| x == s).unwrap();
        t.known[e].iter().any(|k| k == f)
    };
    let mut rng = SplitMix64::new(9);
    for topic in 0..t.entities.len() {
        let (p, _) = t.doc_prompt(topic, TRAIN_TEMPLATES[0], &mut rng);
        let d = t.parse_prompt(&p).unwrap();
        assert!(d.facts.iter().all(|(s, f)| known(s, f)), "{p}");
    }
    let fresh = World::generate(&WorldSpec {
        facts_per_topic: 0,
        ..w.spec.clone()
    })
    .unwrap();
    let ft = table(&fresh);
    assert!(ft.known.is_empty() || ft.known.iter().all(|k| k.is_empty()));
    let outside = (0..ft.entities.len()).any(|topic| {
        let (p, _) = ft.doc_prompt(topic, TRAIN_TEMPLATES[0], &mut rng);
        let d = ft.parse_prompt(&p).unwrap();
        d.facts.iter().any(|(s, f)| !known(s, f))
    });
    assert!(outside);
}

#[test]
fn longest_document_fits_the_prompt_budget() {
    let spec = WorldSpec {
        kind: "summarization".into(),
        facts_per_doc: MAX_FACTS_PER_DOC,
        key_facts: MAX_KEY_FACTS,
        n_pairs: 300,
        n_sft: 0,
        n_corpus: 0,
        ..WorldSpec::default()
    };
    let w = World::generate(&spec).unwrap();
    for p in &w.pairs {
        assert!(tokens(&p.prompt).len() <= 60, "{}", p.prompt);
        assert!(p.len_chosen <= 30 && p.len_rejected <= 30, "{p:?}");
        assert_eq!(
            w.gold(&p.prompt, &w.best_response(&p.prompt).unwrap())
                .score,
            MAX_KEY_FACTS as f64
        );
    }
}
