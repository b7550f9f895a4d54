//! Anthropic HH-RLHF: manifest format `hh_jsonl_gz`, a gzip JSONL file with one row per line,
//! `{"chosen": dialogue, "rejected": dialogue}`, each dialogue a `\n\nHuman: …\n\nAssistant: …`
//! transcript. The prompt is everything before the final Assistant turn (it must be the same in
//! both dialogues), the responses are the final Assistant turns.

use anyhow::Result;

use super::PairSink;
use super::formats::{gunzip, jsonl, raw_str_field, utf8};

const HUMAN: &str = "\n\nHuman:";
const ASSISTANT: &str = "\n\nAssistant:";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Human,
    Assistant,
}

/// An HH dialogue cut into the prompt (everything before the final Assistant turn) and the
/// response (the final Assistant turn).
#[derive(Debug, PartialEq)]
struct HhSplit {
    /// The first Human turn's text, then every later turn with its source marker, e.g.
    /// `"A\n\nAssistant: B\n\nHuman: C"`; a single-turn prompt is just the Human text. Wrapping it
    /// as `"\n\nHuman: {prompt}\n\nAssistant: {response}"` gives back the source dialogue.
    prompt: String,
    response: String,
    humans: usize,
    assistants: usize,
}

/// Splits a dialogue on the `\n\nHuman:` / `\n\nAssistant:` markers. `None` when it does not parse:
/// text before the first marker, no marker, a first turn that is not Human, or a last turn that is
/// not Assistant. (Markers without the blank line, like an inline "  Human: …" inside a turn,
/// are part of the text, as in the source.)
fn split_hh(text: &str) -> Option<HhSplit> {
    let mut marks: Vec<(usize, Role, usize)> = text
        .match_indices(HUMAN)
        .map(|(i, _)| (i, Role::Human, HUMAN.len()))
        .chain(
            text.match_indices(ASSISTANT)
                .map(|(i, _)| (i, Role::Assistant, ASSISTANT.len())),
        )
        .collect();
    marks.sort_by_key(|m| m.0);
    let first = marks.first()?;
    if !text[..first.0].trim().is_empty() {
        return None;
    }
    let turns: Vec<(Role, &str)> = marks
        .iter()
        .enumerate()
        .map(|(k, &(start, role, len))| {
            let end = marks.get(k + 1).map_or(text.len(), |m| m.0);
            (role, text[start + len..end].trim())
        })
        .collect();
    let ((last_role, response), before) = turns.split_last()?;
    if *last_role != Role::Assistant || before.first()?.0 != Role::Human {
        return None;
    }
    let mut prompt = before[0].1.to_string();
    for (role, t) in &before[1..] {
        prompt.push_str(match role {
            Role::Human => HUMAN,
            Role::Assistant => ASSISTANT,
        });
        if !t.is_empty() {
            prompt.push(' ');
            prompt.push_str(t);
        }
    }
    let humans = turns.iter().filter(|t| t.0 == Role::Human).count();
    Some(HhSplit {
        prompt,
        response: response.to_string(),
        humans,
        assistants: turns.len() - humans,
    })
}

/// Gzip JSONL of `{"chosen": dialogue, "rejected": dialogue}`.
pub(super) fn read_hh(file: &str, bytes: &[u8], single_turn_only: bool, sink: &mut PairSink) -> Result<()> {
    let raw = gunzip(file, bytes)?;
    let text = utf8(file, &raw)?;
    for (line, row) in jsonl(file, text)? {
        let at = format!("{file} line {line}");
        // Untrimmed: the leading "\n\n" belongs to the first marker.
        let chosen = raw_str_field(&at, &row, "chosen")?;
        let rejected = raw_str_field(&at, &row, "rejected")?;
        sink.report.rows += 1;
        let (Some(c), Some(r)) = (split_hh(chosen), split_hh(rejected)) else {
            sink.report.unparsed += 1;
            continue;
        };
        if c.prompt != r.prompt {
            sink.report.prompt_mismatch += 1;
        } else if single_turn_only && (c.humans != 1 || c.assistants != 1 || r.assistants != 1) {
            sink.report.multi_turn += 1;
        } else {
            sink.push(&c.prompt, &c.response, &r.response);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::{data_dir, fake};
    use crate::data::{LoadReport, load_preferences_report};
    use std::io::Write;

    fn gz(text: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).expect("gz write");
        e.finish().expect("gz finish")
    }

    #[test]
    fn hh_single_turn() {
        let s =
            split_hh("\n\nHuman: How do I boil an egg?\n\nAssistant:  Put it in boiling water. ")
                .expect("parses");
        assert_eq!(s.prompt, "How do I boil an egg?");
        assert_eq!(s.response, "Put it in boiling water.");
        assert_eq!((s.humans, s.assistants), (1, 1));
    }

    #[test]
    fn hh_multi_turn_keeps_earlier_turns() {
        let src = "\n\nHuman: Hi.\n\nAssistant: Hello, how can I help?\n\nHuman: Name a fruit.\n\nAssistant: Apple.";
        let s = split_hh(src).expect("parses");
        assert_eq!(
            s.prompt,
            "Hi.\n\nAssistant: Hello, how can I help?\n\nHuman: Name a fruit."
        );
        assert_eq!(s.response, "Apple.");
        assert_eq!((s.humans, s.assistants), (2, 2));
        // The prompt is rendered so that the usual template rebuilds the source dialogue.
        assert_eq!(
            format!("\n\nHuman: {}\n\nAssistant: {}", s.prompt, s.response),
            src
        );
        // An inline marker without the blank line is text, not a turn.
        let s = split_hh("\n\nHuman: a  Human: b\n\nAssistant: c").expect("parses");
        assert_eq!((s.prompt.as_str(), s.humans), ("a  Human: b", 1));
    }

    #[test]
    fn hh_unparseable() {
        assert_eq!(split_hh("no markers at all"), None);
        assert_eq!(split_hh("preamble\n\nHuman: a\n\nAssistant: b"), None);
        assert_eq!(split_hh("\n\nHuman: a\n\nAssistant: b\n\nHuman: c"), None);
        assert_eq!(split_hh("\n\nAssistant: a\n\nAssistant: b"), None);
        assert_eq!(split_hh("\n\nAssistant: only"), None);
    }

    #[test]
    fn hh_loader_filters_and_counts() {
        let row = |c: &str, r: &str| serde_json::json!({"chosen": c, "rejected": r}).to_string();
        let lines = [
            // 1: single-turn, kept
            row(
                "\n\nHuman: Q1\n\nAssistant: good",
                "\n\nHuman: Q1\n\nAssistant: bad",
            ),
            // 2: multi-turn, kept unless single_turn_only
            row(
                "\n\nHuman: Q2\n\nAssistant: a\n\nHuman: more\n\nAssistant: good",
                "\n\nHuman: Q2\n\nAssistant: a\n\nHuman: more\n\nAssistant: bad",
            ),
            // 3: identical responses
            row(
                "\n\nHuman: Q3\n\nAssistant: same",
                "\n\nHuman: Q3\n\nAssistant: same ",
            ),
            // 4: empty rejected response
            row(
                "\n\nHuman: Q4\n\nAssistant: x",
                "\n\nHuman: Q4\n\nAssistant:   ",
            ),
            // 5: does not parse
            row("garbage", "\n\nHuman: Q5\n\nAssistant: y"),
            // 6: prompts differ
            row(
                "\n\nHuman: Q6\n\nAssistant: x",
                "\n\nHuman: Q6 other\n\nAssistant: y",
            ),
        ];
        let text = lines.join("\n") + "\n\n";
        let data = gz(&text);
        let (d, m) = fake(&[("hh", "hh/test.jsonl.gz", "hh_jsonl_gz", &data)]);

        let (all, rep) = load_preferences_report(&m, &data_dir(&d), "hh", false).expect("load");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].prompt, "Q1");
        assert_eq!(
            (all[0].chosen.as_str(), all[0].rejected.as_str()),
            ("good", "bad")
        );
        assert_eq!(all[1].prompt, "Q2\n\nAssistant: a\n\nHuman: more");
        assert_eq!(all[0].source, "hh");
        let expect = LoadReport {
            rows: 6,
            kept: 2,
            unparsed: 1,
            prompt_mismatch: 1,
            empty: 1,
            identical: 1,
            ..Default::default()
        };
        assert_eq!(rep, expect);

        let (single, rep) = load_preferences_report(&m, &data_dir(&d), "hh", true).expect("load");
        assert_eq!(single.len(), 1);
        assert_eq!(single[0].prompt, "Q1");
        assert_eq!(rep.multi_turn, 1);
        assert_eq!(rep.kept, 1);
    }
}
