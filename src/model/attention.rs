//! Scaled dot-product attention with grouped-query heads, for the batched forwards and generation.

use crate::fused::softmax;
use burn::prelude::*;

/// `softmax(q kᵀ / √dh + bias) v` for `q` [b, h, t, dh] and `k`, `v` [b, hkv, tk, dh]: query head
/// `j` reads key/value head `j / g`, `g = h / hkv`, through a copy of the keys and values per query
/// head, so that every head is its own `t × dh` by `dh × tk` product.
///
/// Not a broadcast of one key/value entry to its group: with the group axis beside the rows
/// (`[b, hkv, g, 1, dh]` against `[b, hkv, 1, dh, tk]`), burn's `matmul` folds a decode step's `g`
/// one-row products into one `g`-row product, and gemm sums a product whose output exceeds 256
/// elements in another order. Generation then parted from the copy's bits at caches past 85
/// positions (SmolLM2: 3 × 86), which changed a full run's PPO at step 14. The group axis before the
/// key/value heads keeps the bits but measured no faster than the copy
/// (`results/bench/2026-12-06-gqa-bits/`).
pub fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Tensor<4>) -> Tensor<4> {
    let [b, h, _, dh] = q.dims();
    let [_, hkv, tk, _] = k.dims();
    let g = h / hkv;
    let repeat = |z: Tensor<4>| if g == 1 { z } else { z.unsqueeze_dim::<5>(2).repeat_dim(2, g).reshape([b, h, tk, dh]) };
    softmax(q.matmul(repeat(k).swap_dims(2, 3)).div_scalar((dh as f64).sqrt()) + bias, 3).matmul(repeat(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{f32_tensor, to_vec_f32};
    use crate::util::SplitMix64;

    /// Each query head's output is the bits of its own products with its key/value head, at
    /// SmolLM2's heads (9 over 3, dh 64), for decode steps on both sides of gemm's 256-element
    /// threshold and for a prefill. The folded broadcast fails this at 86 cached positions.
    #[test]
    fn every_head_is_its_own_product() {
        let device = Device::flex();
        let (h, hkv, dh) = (9, 3, 64);
        let g = h / hkv;
        let mut rng = SplitMix64::new(11);
        let mut uniform = |n: usize| (0..n).map(|_| rng.next_f64() as f32 - 0.5).collect::<Vec<f32>>();
        for (b, t, tk) in [(8, 1, 20), (8, 1, 85), (8, 1, 86), (8, 1, 104), (3, 1, 300), (2, 7, 7)] {
            let q = f32_tensor(uniform(b * h * t * dh), [b, h, t, dh], &device);
            let k = f32_tensor(uniform(b * hkv * tk * dh), [b, hkv, tk, dh], &device);
            let v = f32_tensor(uniform(b * hkv * tk * dh), [b, hkv, tk, dh], &device);
            let zero = f32_tensor(vec![0.0; b * t * tk], [b, 1, t, tk], &device);
            let got = to_vec_f32(attend(q.clone(), k.clone(), v.clone(), zero.clone()));
            for (bi, hi) in [(0, 0), (0, 4), (b - 1, 8)] {
                let one = |z: &Tensor<4>, head: usize| z.clone().slice([bi..bi + 1, head..head + 1]);
                let want = one(&q, hi).matmul(one(&k, hi / g).swap_dims(2, 3)).div_scalar((dh as f64).sqrt());
                let want = to_vec_f32(softmax(want + one(&zero, 0), 3).matmul(one(&v, hi / g)));
                let got_head = &got[(bi * h + hi) * t * dh..(bi * h + hi + 1) * t * dh];
                let differ = want.iter().zip(got_head).filter(|(a, c)| a.to_bits() != c.to_bits()).count();
                assert_eq!(differ, 0, "b {b}, t {t}, tk {tk}, head {hi}: {differ} of {} outputs differ", want.len());
            }
        }
    }
}
