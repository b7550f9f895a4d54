//! Printing a selection: an aligned terminal table fitted to a width, Markdown, or CSV / JSON
//! through polars' writers.

use super::query::{Format, Value};
use anyhow::Result;
use polars::prelude::*;

/// A table to print: key columns, then value columns whose cells are (metric, value) or empty.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub keys: Vec<String>,
    pub value_columns: Vec<String>,
    pub rows: Vec<(Vec<String>, Vec<Option<(String, Value)>>)>,
    /// Key columns with one value over all rows, said once above the table.
    pub constant: Vec<(String, String)>,
    /// The metrics shown, of those printed in percent.
    pub percent_metrics: Vec<String>,
}

/// Metrics that are fractions of prompts, pairs or tokens: printed in percent.
pub fn is_rate(metric: &str) -> bool {
    metric.ends_with("_rate") || metric.ends_with("accuracy") || metric.ends_with("accuracy_mean_logprob")
}

fn number(metric: &str, x: f64) -> String {
    if is_rate(metric) {
        format!("{:.1}", 100.0 * x)
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// `22.1 [18.2, 25.7]` (rates in percent), or the bare value without an interval.
pub fn format_value(metric: &str, v: &Value) -> String {
    let Some(x) = v.value else { return String::new() };
    match v.ci {
        Some((lo, hi)) => format!("{} [{}, {}]", number(metric, x), number(metric, lo), number(metric, hi)),
        None => number(metric, x),
    }
}

/// The printed rows; `intervals` false leaves the intervals out (a table too wide for them).
fn cells(t: &Table, intervals: bool) -> Vec<Vec<String>> {
    t.rows
        .iter()
        .map(|(k, vs)| {
            let vals = vs.iter().map(|c| {
                c.as_ref().map_or(String::new(), |(m, v)| format_value(m, &if intervals { *v } else { Value { ci: None, ..*v } }))
            });
            k.iter().cloned().chain(vals).collect()
        })
        .collect()
}

fn has_intervals(t: &Table) -> bool {
    t.rows.iter().any(|r| r.1.iter().flatten().any(|c| c.1.ci.is_some()))
}

fn notes(t: &Table, intervals: bool) -> Vec<String> {
    let mut out = Vec::new();
    if !t.constant.is_empty() {
        let c: Vec<String> = t.constant.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push(format!("all rows: {}", c.join(" · ")));
    }
    let mut units = Vec::new();
    if !t.percent_metrics.is_empty() {
        units.push(format!("in %: {}", t.percent_metrics.join(", ")));
    }
    match (has_intervals(t), intervals) {
        (true, true) => units.push("[low, high] = 95% bootstrap interval".into()),
        (true, false) => units.push("intervals left out to fit the width (--width, or --format csv)".into()),
        _ => {}
    }
    if !units.is_empty() {
        out.push(units.join("; "));
    }
    out
}

/// Cut to `w` characters, marking the cut.
fn cut(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        s.to_string()
    } else {
        s.chars().take(w.saturating_sub(1)).chain(['…']).collect()
    }
}

/// Word-wrap a note to `width`.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let last = lines.last_mut().unwrap();
        if !last.is_empty() && last.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

/// Aligned columns (keys left, values right) that fit `width` characters: the widest key column
/// is cut (with `…`) until the table fits or every key column is down to 8 characters.
pub fn text(t: &Table, width: usize) -> String {
    let header: Vec<String> = t.keys.iter().chain(&t.value_columns).cloned().collect();
    let widths = |body: &[Vec<String>]| {
        let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for r in body {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        w
    };
    let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
    // intervals first go when the table is too wide, then the key columns are cut
    let mut intervals = true;
    let mut body = cells(t, true);
    let mut w = widths(&body);
    if total(&w) > width && has_intervals(t) {
        intervals = false;
        body = cells(t, false);
        w = widths(&body);
    }
    while total(&w) > width {
        let Some((i, _)) = w[..t.keys.len()].iter().enumerate().filter(|(_, x)| **x > 8).max_by_key(|(i, x)| (**x, usize::MAX - i)) else {
            break;
        };
        w[i] -= 1;
    }
    let mut out = String::new();
    for n in notes(t, intervals) {
        for l in wrap(&n, width) {
            out.push_str(&l);
            out.push('\n');
        }
    }
    let line = |r: &[String]| {
        let parts: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let c = cut(c, w[i]);
                if i < t.keys.len() { format!("{c:<0$}", w[i]) } else { format!("{c:>0$}", w[i]) }
            })
            .collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    out.push_str(&line(&header));
    out.push_str(&line(&w.iter().map(|n| "-".repeat(*n)).collect::<Vec<_>>()));
    for r in &body {
        out.push_str(&line(r));
    }
    out
}

pub fn markdown(t: &Table) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = String::new();
    for n in notes(t, true) {
        out.push_str(&format!("{n}\n\n"));
    }
    let header: Vec<String> = t.keys.iter().chain(&t.value_columns).map(|h| esc(h)).collect();
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    let align: Vec<&str> = (0..header.len()).map(|i| if i < t.keys.len() { "---" } else { "---:" }).collect();
    out.push_str(&format!("|{}|\n", align.join("|")));
    for r in cells(t, true) {
        let r: Vec<String> = r.iter().map(|c| esc(c)).collect();
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out
}

impl Table {
    /// The table as a frame: key columns as text, per value column its value and, where any row
    /// of it has one, `<column>_ci_low` and `<column>_ci_high`.
    pub fn to_frame(&self) -> Result<DataFrame> {
        let mut cols = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            let v: Vec<&str> = self.rows.iter().map(|r| r.0[i].as_str()).collect();
            cols.push(Column::new(k.as_str().into(), v));
        }
        for (j, name) in self.value_columns.iter().enumerate() {
            let vals: Vec<Option<Value>> = self.rows.iter().map(|r| r.1[j].as_ref().map(|c| c.1)).collect();
            cols.push(Column::new(name.as_str().into(), vals.iter().map(|v| v.and_then(|v| v.value)).collect::<Vec<_>>()));
            if vals.iter().any(|v| v.is_some_and(|v| v.ci.is_some())) {
                for (suffix, pick) in [("ci_low", 0), ("ci_high", 1)] {
                    let c: Vec<Option<f64>> = vals.iter().map(|v| v.and_then(|v| v.ci).map(|c| if pick == 0 { c.0 } else { c.1 })).collect();
                    cols.push(Column::new(format!("{name}_{suffix}").into(), c));
                }
            }
        }
        Ok(DataFrame::new_infer_height(cols)?)
    }
}

/// CSV (header row, `\n` line ends) or JSON (an array of row objects).
pub fn frame(mut df: DataFrame, format: Format) -> Result<String> {
    let mut buf = Vec::new();
    match format {
        Format::Json => JsonWriter::new(&mut buf).with_json_format(JsonFormat::Json).finish(&mut df)?,
        _ => CsvWriter::new(&mut buf).include_header(true).finish(&mut df)?,
    }
    let mut s = String::from_utf8(buf)?;
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(value: f64, ci: Option<(f64, f64)>) -> Value {
        Value { value: Some(value), ci }
    }

    #[test]
    fn rates_print_in_percent_with_their_interval() {
        assert_eq!(format_value("win_rate", &v(0.2214, Some((0.1818, 0.2571)))), "22.1 [18.2, 25.7]");
        assert_eq!(format_value("mean_length_tokens", &v(38.69, None)), "38.690");
        assert_eq!(format_value("ppo_response_length", &v(123.456, None)), "123.5");
        assert_eq!(format_value("pair_accuracy", &v(0.5, None)), "50.0");
        assert_eq!(format_value("win_rate", &Value { value: None, ci: None }), "");
    }

    #[test]
    fn text_cuts_the_widest_key_column_to_fit() {
        let long = "a_results_directory_with_a_very_long_name_indeed".to_string();
        let t = Table {
            keys: vec!["dir".into(), "set".into()],
            value_columns: vec!["value".into()],
            rows: vec![
                (vec![long.clone(), "benign".into()], vec![Some(("win_rate".into(), v(0.5, Some((0.4, 0.6)))))]),
                (vec!["b".into(), "harmful".into()], vec![None]),
            ],
            constant: vec![("seed".into(), "pooled".into())],
            percent_metrics: vec!["win_rate".into()],
        };
        // too wide: the intervals go first, then the widest key column is cut
        let out = text(&t, 40);
        assert!(out.lines().all(|l| l.chars().count() <= 40), "{out}");
        assert!(out.contains('…') && out.contains("50.0") && !out.contains("[40.0"), "{out}");
        assert!(out.contains("all rows: seed pooled") && out.contains("intervals left out"), "{out}");
        let mid = text(&t, 70);
        assert!(mid.contains(&long) && !mid.contains("[40.0"), "{mid}");
        let wide = text(&t, 200);
        assert!(wide.contains(&long) && wide.contains("50.0 [40.0, 60.0]") && wide.contains("95% bootstrap"), "{wide}");
        let md = markdown(&t);
        assert!(md.contains("| dir | set | value |\n|---|---|---:|\n"), "{md}");
    }
}
