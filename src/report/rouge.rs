//! ROUGE-L F1 of a response against its reference (summarization's standard overlap metric),
//! matching Google's `rouge-score` package with its default tokenizer and no stemming.

/// `rouge-score`'s default tokenization: lowercase, every run of characters outside `[a-z0-9]` is a
/// separator (so punctuation and non-ASCII letters vanish).
pub fn rouge_tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Length of the longest common subsequence of two token sequences (O(n·m) dynamic programme,
/// one row at a time).
pub fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { cur[j].max(prev[j + 1]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L F-measure (beta = 1): P = LCS / |response|, R = LCS / |reference|, F = 2PR / (P + R);
/// 0 when either side has no tokens or nothing is shared (as `rouge-score` does).
pub fn rouge_l_f1(response: &str, reference: &str) -> f64 {
    let (c, r) = (rouge_tokens(response), rouge_tokens(reference));
    if c.is_empty() || r.is_empty() {
        return 0.0;
    }
    let l = lcs_len(&c, &r) as f64;
    if l == 0.0 {
        return 0.0;
    }
    let (p, rec) = (l / c.len() as f64, l / r.len() as f64);
    2.0 * p * rec / (p + rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_is_rouge_scores_default() {
        assert_eq!(rouge_tokens("The CAT's mat, 2nd-floor! café"), ["the", "cat", "s", "mat", "2nd", "floor", "caf"]);
        assert!(rouge_tokens("  ... !!").is_empty());
    }

    #[test]
    fn hand_computed_values() {
        // LCS "the cat on the mat" = 5 of 6 tokens on both sides: P = R = F = 5/6.
        let f = rouge_l_f1("the cat sat on the mat", "the cat lay on the mat");
        assert!((f - 5.0 / 6.0).abs() < 1e-12, "{f}");
        // Response "a b c d", reference "a c": LCS 2, P = 1/2, R = 1, F = 2/3.
        assert!((rouge_l_f1("a b c d", "A, c.") - 2.0 / 3.0).abs() < 1e-12);
        // Order matters: "c b a" vs "a b c" share only one in-order token: P = R = F = 1/3.
        assert!((rouge_l_f1("c b a", "a b c") - 1.0 / 3.0).abs() < 1e-12);
        // Police killed the gunman / the gunman was shot by police: LCS 2 ("the gunman"),
        // P = 2/4, R = 2/6, F = 2·(1/2)(1/3)/(5/6) = 0.4.
        let f = rouge_l_f1("police killed the gunman", "the gunman was shot by police");
        assert!((f - 0.4).abs() < 1e-12, "{f}");
        assert_eq!(rouge_l_f1("same words", "Same, words!"), 1.0);
        assert_eq!(rouge_l_f1("x y", "z"), 0.0);
        assert_eq!(rouge_l_f1("", "the cat"), 0.0);
        assert_eq!(rouge_l_f1("the cat", "..."), 0.0);
    }
}
