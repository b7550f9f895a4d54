//! The batch layout every role shares: each row a left-padded prefix block (prompt, template)
//! followed by a right-padded continuation block (response), so that continuation token `j` sits
//! at the same index `p + j` in every row; positions count real tokens only, and a causal bias
//! keeps padding out of attention.

use super::MASKED;
use burn::prelude::*;

/// A batch in the shared layout, on the host. `t = p + c`.
#[derive(Clone, Debug)]
pub struct Packed {
    pub b: usize,
    pub t: usize,
    /// Width of the left-padded prefix block.
    pub p: usize,
    pub tokens: Vec<i64>,
    pub positions: Vec<i64>,
    pub attn: Vec<bool>,
    pub prefix_lens: Vec<usize>,
    pub cont_lens: Vec<usize>,
}

/// Packs `(prefix, continuation)` rows. Pads use token `pad`.
pub fn pack(prefixes: &[Vec<u32>], conts: &[Vec<u32>], pad: u32) -> Packed {
    assert_eq!(prefixes.len(), conts.len(), "pack: prefixes and continuations differ in count");
    let b = prefixes.len();
    let p = prefixes.iter().map(Vec::len).max().unwrap_or(0);
    let c = conts.iter().map(Vec::len).max().unwrap_or(0);
    let t = p + c;
    let mut tokens = vec![pad as i64; b * t];
    let mut attn = vec![false; b * t];
    for (row, (pre, cont)) in prefixes.iter().zip(conts).enumerate() {
        let base = row * t;
        let start = p - pre.len();
        for (i, &tok) in pre.iter().enumerate() {
            tokens[base + start + i] = tok as i64;
            attn[base + start + i] = true;
        }
        for (j, &tok) in cont.iter().enumerate() {
            tokens[base + p + j] = tok as i64;
            attn[base + p + j] = true;
        }
    }
    let positions = positions_from_attn(&attn, b, t);
    Packed {
        b,
        t,
        p,
        tokens,
        positions,
        attn,
        prefix_lens: prefixes.iter().map(Vec::len).collect(),
        cont_lens: conts.iter().map(Vec::len).collect(),
    }
}

/// Position of a token = number of real tokens before it in its row (pads get 0; never read).
pub fn positions_from_attn(attn: &[bool], b: usize, t: usize) -> Vec<i64> {
    let mut pos = vec![0i64; b * t];
    for row in 0..b {
        let mut n = 0i64;
        for i in 0..t {
            if attn[row * t + i] {
                pos[row * t + i] = n;
                n += 1;
            }
        }
    }
    pos
}

/// Causal + key-padding bias `[B, 1, T, T]` (0 where attention is allowed, [`MASKED`] elsewhere).
pub fn causal_bias(attn: &[bool], b: usize, t: usize) -> Vec<f32> {
    let mut bias = vec![MASKED; b * t * t];
    for row in 0..b {
        for i in 0..t {
            for j in 0..=i {
                if attn[row * t + j] {
                    bias[(row * t + i) * t + j] = 0.0;
                }
            }
        }
    }
    bias
}

impl Packed {
    pub fn tokens_tensor(&self, device: &Device) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(self.tokens.clone(), [self.b, self.t]), device)
    }
    pub fn positions_tensor(&self, device: &Device) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(self.positions.clone(), [self.b, self.t]), device)
    }
    pub fn bias_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(causal_bias(&self.attn, self.b, self.t), [self.b, 1, self.t, self.t]),
            device,
        )
    }

    /// Index (in the length-`t` row) of continuation token `j`.
    pub fn cont_index(&self, j: usize) -> usize {
        self.p + j
    }

    /// Targets `[B, T-1]` for next-token prediction (token at i+1) and a mask `[B, T-1]` that is 1
    /// exactly where the target is a real continuation token with a real token before it.
    pub fn continuation_targets(&self) -> (Vec<i64>, Vec<f32>) {
        let tm = self.t.saturating_sub(1);
        let mut targets = vec![0i64; self.b * tm];
        let mut mask = vec![0f32; self.b * tm];
        for row in 0..self.b {
            for i in 0..tm {
                targets[row * tm + i] = self.tokens[row * self.t + i + 1];
            }
            for j in 0..self.cont_lens[row] {
                let idx = self.p + j; // target index in the row
                if idx >= 1 && self.attn[row * self.t + idx - 1] {
                    mask[row * tm + idx - 1] = 1.0;
                }
            }
        }
        (targets, mask)
    }

    /// Row-major index of the last real continuation token of each row (the prefix's last token
    /// when the continuation is empty). This is where a scalar score is read.
    pub fn last_real_index(&self) -> Vec<usize> {
        (0..self.b)
            .map(|row| {
                let n = self.cont_lens[row];
                if n > 0 { self.p + n - 1 } else { self.p.saturating_sub(1) }
            })
            .collect()
    }
}
