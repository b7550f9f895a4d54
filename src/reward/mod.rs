//! Per-token rewards for PPO. Both reward models produce the same shape — one reward per response
//! token — so that the PPO code is identical for both and only this module differs.
//!
//! * Scalar RM (Bradley–Terry): zeros, with the (normalised, clipped) score on the last real
//!   response token.
//! * Seq2seq RM: the paper's divergence rule (Figure 2 caption): feed `(prompt, response)` as the
//!   RM's input, teacher-force the response as its output, and compare the RM's argmax with each
//!   response token. Tokens before the first divergence get `r_pos`; from the first divergence on,
//!   a token the RM would not have produced gets `r_neg` and one it agrees with gets
//!   `r_match_after` (a choice the paper leaves open; a spec field).

use crate::model::{Lm, next_token_logprobs, pack, to_vec_f32, to_vec_i64, i64_tensor};
use crate::text::{PAD, Template};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// The reward values of the divergence rule.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DivergenceRule {
    pub r_pos: f32,
    pub r_neg: f32,
    pub r_match_after: f32,
}

/// The divergence rule on one response. `rm_argmax[j]` is the RM's most likely token at the
/// position of `response[j]` (same length as `response`).
pub fn divergence_rewards(response: &[u32], rm_argmax: &[u32], rule: &DivergenceRule) -> Vec<f32> {
    assert_eq!(response.len(), rm_argmax.len(), "one RM prediction per response token");
    let mut diverged = false;
    response
        .iter()
        .zip(rm_argmax)
        .map(|(&y, &a)| {
            if y != a {
                diverged = true;
                rule.r_neg
            } else if diverged {
                rule.r_match_after
            } else {
                rule.r_pos
            }
        })
        .collect()
}

/// Index of the first token where the RM diverges from the response (`len` if none).
pub fn first_divergence(response: &[u32], rm_argmax: &[u32]) -> usize {
    response.iter().zip(rm_argmax).position(|(y, a)| y != a).unwrap_or(response.len())
}

/// The scalar RM's reward vector: zeros with `score` on the last real token.
pub fn scalar_token_rewards(score: f32, len: usize) -> Vec<f32> {
    let mut r = vec![0.0; len];
    if let Some(last) = r.last_mut() {
        *last = score;
    }
    r
}

/// Common interface of the two reward models as PPO sees them.
pub trait TokenReward: Sync {
    /// One reward per response token. `prompts` are raw prompt token ids (no template).
    fn token_rewards(&self, prompts: &[Vec<u32>], responses: &[Vec<u32>]) -> Vec<Vec<f32>>;
    fn kind(&self) -> &'static str;
}

/// Scalar score of each `(prompt, response)`, read at the last real response token.
pub fn scalar_scores(model: &Lm, tpl: &Template, prompts: &[Vec<u32>], responses: &[Vec<u32>], max_prompt: usize, device: &Device) -> Vec<f32> {
    let prefixes: Vec<Vec<u32>> = prompts.iter().map(|p| tpl.policy_prefix(p, max_prompt)).collect();
    to_vec_f32(model.scores_at_last(&prefixes, responses, device))
}

pub struct ScalarReward {
    pub model: Lm,
    pub tpl: Template,
    pub device: Device,
    pub max_prompt: usize,
    /// Scores are whitened with the RM's mean and std on its training responses, then clipped.
    pub mean: f32,
    pub std: f32,
    pub clip: f32,
}

impl TokenReward for ScalarReward {
    fn token_rewards(&self, prompts: &[Vec<u32>], responses: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let scores = scalar_scores(&self.model, &self.tpl, prompts, responses, self.max_prompt, &self.device);
        scores
            .iter()
            .zip(responses)
            .map(|(&s, r)| {
                let z = ((s - self.mean) / self.std).clamp(-self.clip, self.clip);
                scalar_token_rewards(z, r.len())
            })
            .collect()
    }
    fn kind(&self) -> &'static str {
        "scalar"
    }
}

/// Largest logits tensor (elements) one pass may materialise: 512 MiB of f32. wgpu refuses a
/// single buffer beyond its limit (seen: 2.5 GB for 64 rows × 200 tokens × SmolLM2's 49,152-token
/// vocabulary on an H200), so long batches over a large vocabulary are scored in row chunks.
pub const MAX_LOGITS: usize = 1 << 27;

/// Teacher-forced pass of the seq2seq RM over `(prompt, response) -> response`.
/// Returns, per row, the RM's argmax and the log-prob it gives each response token. Rows are
/// independent of their batch mates, so chunking (see [`MAX_LOGITS`]) changes nothing but memory.
pub fn seq2seq_teacher_forced(
    model: &Lm,
    tpl: &Template,
    prompts: &[Vec<u32>],
    responses: &[Vec<u32>],
    max_prompt: usize,
    max_response: usize,
    device: &Device,
) -> (Vec<Vec<u32>>, Vec<Vec<f32>>) {
    let (_, s2s) = tpl.overhead();
    let t = prompts
        .iter()
        .zip(responses)
        .map(|(p, r)| s2s + p.len().min(max_prompt) + r.len().min(max_response) + r.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let rows = (MAX_LOGITS / (t * model.vocab_size())).max(1);
    seq2seq_teacher_forced_chunked(model, tpl, prompts, responses, max_prompt, max_response, rows, device)
}

/// [`seq2seq_teacher_forced`] in passes of at most `rows` rows.
#[allow(clippy::too_many_arguments)]
pub fn seq2seq_teacher_forced_chunked(
    model: &Lm,
    tpl: &Template,
    prompts: &[Vec<u32>],
    responses: &[Vec<u32>],
    max_prompt: usize,
    max_response: usize,
    rows: usize,
    device: &Device,
) -> (Vec<Vec<u32>>, Vec<Vec<f32>>) {
    let (mut am, mut lp) = (Vec::with_capacity(prompts.len()), Vec::with_capacity(prompts.len()));
    for (p, r) in prompts.chunks(rows).zip(responses.chunks(rows)) {
        let (a, l) = teacher_forced_chunk(model, tpl, p, r, max_prompt, max_response, device);
        am.extend(a);
        lp.extend(l);
    }
    (am, lp)
}

fn teacher_forced_chunk(
    model: &Lm,
    tpl: &Template,
    prompts: &[Vec<u32>],
    responses: &[Vec<u32>],
    max_prompt: usize,
    max_response: usize,
    device: &Device,
) -> (Vec<Vec<u32>>, Vec<Vec<f32>>) {
    let prefixes: Vec<Vec<u32>> = prompts
        .iter()
        .zip(responses)
        .map(|(p, r)| tpl.seq2seq_prefix(p, r, max_prompt, max_response))
        .collect();
    let packed = pack(&prefixes, responses, PAD);
    if packed.t < 2 {
        return (vec![Vec::new(); prompts.len()], vec![Vec::new(); prompts.len()]);
    }
    let hidden = model.hidden_packed(&packed, device);
    let logits = model.logits(hidden);
    let tm = packed.t - 1;
    let argmax = to_vec_i64(logits.clone().narrow(1, 0, tm).argmax(2).reshape([packed.b, tm]));
    let (targets, _) = packed.continuation_targets();
    let lps = to_vec_f32(next_token_logprobs(logits, i64_tensor(targets, [packed.b, tm], device)));
    let mut am = Vec::with_capacity(packed.b);
    let mut lp = Vec::with_capacity(packed.b);
    for (row, r) in responses.iter().enumerate() {
        let idx = |j: usize| row * tm + packed.p + j - 1;
        am.push((0..r.len()).map(|j| argmax[idx(j)] as u32).collect());
        lp.push((0..r.len()).map(|j| lps[idx(j)]).collect());
    }
    (am, lp)
}

pub struct Seq2seqReward {
    pub model: Lm,
    pub tpl: Template,
    pub device: Device,
    pub max_prompt: usize,
    pub max_response: usize,
    pub rule: DivergenceRule,
    /// Divide each token's reward by the response length (`reward_scaling = "mean"`).
    pub per_token_mean: bool,
}

/// `rewards / len` when `mean` is set (the return becomes the mean token reward).
pub fn scale_rewards(mut rewards: Vec<f32>, mean: bool) -> Vec<f32> {
    if mean && !rewards.is_empty() {
        let n = rewards.len() as f32;
        rewards.iter_mut().for_each(|r| *r /= n);
    }
    rewards
}

impl TokenReward for Seq2seqReward {
    fn token_rewards(&self, prompts: &[Vec<u32>], responses: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let (argmax, _) =
            seq2seq_teacher_forced(&self.model, &self.tpl, prompts, responses, self.max_prompt, self.max_response, &self.device);
        responses
            .iter()
            .zip(&argmax)
            .map(|(r, a)| scale_rewards(divergence_rewards(r, a, &self.rule), self.per_token_mean))
            .collect()
    }
    fn kind(&self) -> &'static str {
        "seq2seq"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: DivergenceRule = DivergenceRule { r_pos: 0.5, r_neg: -1.0, r_match_after: 0.1 };

    #[test]
    fn identical_response_is_all_positive() {
        assert_eq!(divergence_rewards(&[5, 6, 7, 1], &[5, 6, 7, 1], &RULE), vec![0.5, 0.5, 0.5, 0.5]);
        assert_eq!(first_divergence(&[5, 6, 7, 1], &[5, 6, 7, 1]), 4);
    }

    #[test]
    fn divergence_at_token_k() {
        // Diverges at k = 2; token 3 agrees again (r_match_after), token 4 disagrees (r_neg).
        let r = divergence_rewards(&[5, 6, 9, 8, 4], &[5, 6, 7, 8, 3], &RULE);
        assert_eq!(r, vec![0.5, 0.5, -1.0, 0.1, -1.0]);
        assert_eq!(first_divergence(&[5, 6, 9, 8, 4], &[5, 6, 7, 8, 3]), 2);
    }

    #[test]
    fn response_longer_than_rm_output_gets_negatives() {
        // The RM would have ended (EOS = 1) after two tokens; the response goes on.
        let r = divergence_rewards(&[5, 6, 7, 8, 1], &[5, 6, 1, 1, 1], &RULE);
        assert_eq!(r, vec![0.5, 0.5, -1.0, -1.0, 0.1]);
    }

    #[test]
    fn empty_response_has_no_rewards() {
        assert!(divergence_rewards(&[], &[], &RULE).is_empty());
        assert!(scalar_token_rewards(2.0, 0).is_empty());
    }

    #[test]
    fn mean_scaling_divides_by_length() {
        assert_eq!(scale_rewards(vec![0.5, 0.5, -1.0, 1.0], true), vec![0.125, 0.125, -0.25, 0.25]);
        assert_eq!(scale_rewards(vec![0.5, -1.0], false), vec![0.5, -1.0]);
        assert!(scale_rewards(vec![], true).is_empty());
    }

    #[test]
    fn scalar_reward_sits_on_last_token() {
        assert_eq!(scalar_token_rewards(2.0, 4), vec![0.0, 0.0, 0.0, 2.0]);
        assert_eq!(scalar_token_rewards(-1.5, 1), vec![-1.5]);
    }
}
