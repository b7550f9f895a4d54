//! The losses and RL math of the pipeline, as small pure functions pinned by hand-computed tests.
//! Tensor losses take `[B, T-1]` per-token tensors and a 0/1 mask of the tokens that count.

use burn::prelude::*;
use burn::tensor::activation::log_sigmoid;

/// Mean over masked entries. The mask is 0/1; an all-zero mask gives 0 (not NaN).
pub fn masked_mean(x: Tensor<2>, mask: Tensor<2>) -> Tensor<1> {
    let n = mask.clone().sum().clamp_min(1.0);
    (x * mask).sum().div(n)
}

/// Sequence MLE: token-level cross-entropy averaged over target tokens only.
/// `logprobs[b, i] = log p(token_{i+1})`; `mask` marks target tokens.
pub fn sequence_nll(logprobs: Tensor<2>, mask: Tensor<2>) -> Tensor<1> {
    masked_mean(logprobs.neg(), mask)
}

/// Bradley–Terry loss `mean(-log σ(r_w - r_l))` plus `l2 · mean(r_w² + r_l²) / 2` (the score
/// regulariser of the PKU frameworks; 0 turns it off).
pub fn bradley_terry_loss(chosen: Tensor<1>, rejected: Tensor<1>, l2: f64) -> Tensor<1> {
    let bt = log_sigmoid(chosen.clone() - rejected.clone()).neg().mean();
    if l2 == 0.0 {
        bt
    } else {
        let reg = (chosen.square() + rejected.square()).mean().mul_scalar(l2 / 2.0);
        bt + reg
    }
}

/// PPO clipped surrogate: `mean_mask max(-A·ρ, -A·clip(ρ, 1-ε, 1+ε))`, `ρ = exp(new - old)`.
/// Also returns the clipped fraction tensor (share of masked tokens where the clip is active).
pub fn ppo_policy_loss(new_lp: Tensor<2>, old_lp: Tensor<2>, adv: Tensor<2>, mask: Tensor<2>, clip: f64) -> (Tensor<1>, Tensor<1>) {
    let ratio = (new_lp - old_lp).exp();
    let unclipped = adv.clone().neg() * ratio.clone();
    let clipped = adv.neg() * ratio.clone().clamp(1.0 - clip, 1.0 + clip);
    let active = clipped.clone().greater(unclipped.clone()).float();
    let loss = masked_mean(unclipped.max_pair(clipped), mask.clone());
    (loss, masked_mean(active, mask))
}

/// Clipped value loss: `0.5 · mean_mask max((V-R)², (V_old + clip(V-V_old, ±c) - R)²)`.
pub fn ppo_value_loss(values: Tensor<2>, old_values: Tensor<2>, returns: Tensor<2>, mask: Tensor<2>, clip: f64) -> Tensor<1> {
    let v_clipped = old_values.clone() + (values.clone() - old_values).clamp(-clip, clip);
    let l1 = (values - returns.clone()).square();
    let l2 = (v_clipped - returns).square();
    masked_mean(l1.max_pair(l2), mask).mul_scalar(0.5)
}

/// Generalised advantage estimation over one response (host side). `values[t]` is the critic's
/// estimate before token `t`; the value after the last token is 0 (the episode ends there).
/// Returns `(advantages, returns)` with `returns = advantages + values`.
pub fn gae(rewards: &[f32], values: &[f32], gamma: f32, lambda: f32) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(rewards.len(), values.len(), "gae: one value per reward");
    let n = rewards.len();
    let mut adv = vec![0.0f32; n];
    let mut last = 0.0f32;
    for t in (0..n).rev() {
        let next_v = if t + 1 < n { values[t + 1] } else { 0.0 };
        let delta = rewards[t] + gamma * next_v - values[t];
        last = delta + gamma * lambda * last;
        adv[t] = last;
    }
    let ret = adv.iter().zip(values).map(|(a, v)| a + v).collect();
    (adv, ret)
}

/// Per-token reward that PPO optimises: the RM's token reward minus `β · (log π - log π_ref)`
/// (the k1 KL estimator, unbiased under samples from π).
pub fn kl_shaped_rewards(rm: &[f32], logp: &[f32], ref_logp: &[f32], beta: f32) -> Vec<f32> {
    rm.iter()
        .zip(logp.iter().zip(ref_logp))
        .map(|(r, (lp, rlp))| r - beta * (lp - rlp))
        .collect()
}

/// Whitens values in place to mean 0, std 1 (population std, floored at 1e-8).
pub fn whiten(values: &mut [f32]) {
    if values.is_empty() {
        return;
    }
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt().max(1e-8);
    for v in values.iter_mut() {
        *v = ((*v as f64 - mean) / std) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{f32_tensor, to_vec_f32};

    fn dev() -> Device {
        Device::flex()
    }
    fn scalar(t: Tensor<1>) -> f32 {
        to_vec_f32(t)[0]
    }
    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn sequence_nll_counts_only_masked_tokens() {
        let d = dev();
        let lp = f32_tensor(vec![-1.0, -2.0, -100.0, -4.0], [2, 2], &d);
        let mask = f32_tensor(vec![1.0, 1.0, 0.0, 1.0], [2, 2], &d);
        // (1 + 2 + 4) / 3; the -100 under a zero mask must not count.
        assert!(close(scalar(sequence_nll(lp, mask)), 7.0 / 3.0));
        let empty = f32_tensor(vec![0.0; 4], [2, 2], &d);
        assert!(close(scalar(sequence_nll(f32_tensor(vec![-1.0; 4], [2, 2], &d), empty)), 0.0));
    }

    #[test]
    fn bradley_terry_matches_hand_values() {
        let d = dev();
        let c = f32_tensor(vec![1.0, 0.0], [2], &d);
        let r = f32_tensor(vec![0.0, 2.0], [2], &d);
        // -log σ(1) = 0.3132617, -log σ(-2) = 2.1269280
        let want = (0.313_261_7 + 2.126_928) / 2.0;
        assert!(close(scalar(bradley_terry_loss(c.clone(), r.clone(), 0.0)), want));
        // l2 = 0.1: + 0.1 · mean(1 + 0, 0 + 4) / 2 = + 0.125
        assert!(close(scalar(bradley_terry_loss(c, r, 0.1)), want + 0.125));
    }

    #[test]
    fn ppo_policy_loss_clips() {
        let d = dev();
        let ln = |x: f32| x.ln();
        // ratios 1.5, 0.5, 1.1 ; advantages +1, +1, -2 ; clip 0.2
        let new = f32_tensor(vec![ln(1.5), ln(0.5), ln(1.1)], [1, 3], &d);
        let old = f32_tensor(vec![0.0, 0.0, 0.0], [1, 3], &d);
        let adv = f32_tensor(vec![1.0, 1.0, -2.0], [1, 3], &d);
        let mask = f32_tensor(vec![1.0, 1.0, 1.0], [1, 3], &d);
        let (loss, frac) = ppo_policy_loss(new, old, adv, mask, 0.2);
        // token 1: max(-1.5, -1.2) = -1.2 (clipped); token 2: max(-0.5, -0.8) = -0.5;
        // token 3: max(2.2, 2.2) = 2.2 → mean = 0.5/3
        assert!(close(scalar(loss), (-1.2 - 0.5 + 2.2) / 3.0));
        assert!(close(scalar(frac), 1.0 / 3.0));
    }

    #[test]
    fn ppo_value_loss_clips() {
        let d = dev();
        let v = f32_tensor(vec![2.0, 0.0], [1, 2], &d);
        let old = f32_tensor(vec![0.0, 0.0], [1, 2], &d);
        let ret = f32_tensor(vec![3.0, 1.0], [1, 2], &d);
        let mask = f32_tensor(vec![1.0, 1.0], [1, 2], &d);
        // token 1: max((2-3)², (0+0.5-3)²) = 6.25; token 2: max(1, 1) = 1 → 0.5 · 7.25 / 2
        assert!(close(scalar(ppo_value_loss(v, old, ret, mask, 0.5)), 0.5 * 7.25 / 2.0));
    }

    #[test]
    fn gae_matches_hand_computation() {
        let (adv, ret) = gae(&[0.0, 0.0, 1.0], &[0.5, 0.2, 0.1], 1.0, 0.9);
        // deltas: 0.2-0.5 = -0.3, 0.1-0.2 = -0.1, 1-0.1 = 0.9
        // A2 = 0.9; A1 = -0.1 + 0.9·0.9 = 0.71; A0 = -0.3 + 0.9·0.71 = 0.339
        assert!(close(adv[2], 0.9) && close(adv[1], 0.71) && close(adv[0], 0.339));
        assert!(close(ret[0], 0.839) && close(ret[2], 1.0));
        // γ < 1 discounts the bootstrap: λ = 1, γ = 0.5 → A1 = 1 - 0.1 = 0.9; A0 = 0.5·0.1 - 0.5 + 0.5·0.9 = 0.0
        let (adv, _) = gae(&[0.0, 1.0], &[0.5, 0.1], 0.5, 1.0);
        assert!(close(adv[1], 0.9) && close(adv[0], 0.0));
        assert!(gae(&[], &[], 1.0, 0.95).0.is_empty());
    }

    #[test]
    fn kl_shaping_and_whitening() {
        let r = kl_shaped_rewards(&[0.0, 2.0], &[-1.0, -2.0], &[-1.5, -1.0], 0.1);
        assert!(close(r[0], -0.05) && close(r[1], 2.1));
        let mut v = vec![1.0, 2.0, 3.0];
        whiten(&mut v);
        assert!(close(v[1], 0.0) && close(v[0], -1.224_744_9));
    }
}
