//! Next-token log-probs on flex as one op, bit for bit equal to burn's composition.
//!
//! burn builds `log_softmax(logits[:, :-1]).gather(targets)` from a dozen passes over the `[B, T, V]`
//! logits (at SmolLM2's vocabulary of 49,152, 150 MB each for a PPO batch): the slice copy, max,
//! subtract, exp, sum, log, subtract and gather forward, then zeros and scatter for the gather, sum,
//! reciprocal, broadcast, exp, multiply and add for the log-softmax, zeros and slice-assign for the
//! slice backward; every elementwise one on one thread. Here the forward is one pass that writes
//! `exp(x - max)` for a chunk of rows, flex's own row sum over it, and one gather; the backward is
//! one pass writing `dx = g·[v = target] + (-g · 1/S) · exp(x - max)`; rows run in parallel.
//!
//! Every float operation is the one burn's composition performs, in the same order, on the same
//! values (libm's `expf`, computed sixteen at a time by [`super::exp`]; `logf`; flex's SIMD row
//! sum; IEEE `+ - * /`), so the results are the same bits: `tests/model_equivalence.rs` compares
//! them with `assert_eq!`, values and gradients. So a run on this op reproduces a run made before
//! it existed, byte for byte.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::prelude::*;
use rayon::prelude::*;

use super::exp::exp_in_place;
use super::flex_dispatch::{AdTensor, FlexPrimitive, UnaryGrad, contiguous, record_unary};

/// Rows per parallel task: their `exp(x - max)` (at V = 49,152, 12.6 MB) stays below glibc's
/// 32 MiB mmap threshold (`main`'s `mallopt`), so its buffer is reused, not faulted in afresh.
pub(super) const ROWS_PER_TASK: usize = 64;

/// `[B, T, V]` logits, the rows read (`(b, t < used)`: `used = T-1` for next-token log-probs), each
/// row's target, max and sum of `exp(x - max)`.
#[derive(Clone, Debug)]
struct Rows {
    x: FlexTensor,
    dims: [usize; 3],
    used: usize,
    targets: Vec<usize>,
    max: Vec<f32>,
    sum: Vec<f32>,
}

impl Rows {
    /// The logits of row `r` (position `r % used` of sequence `r / used`).
    fn row(&self, r: usize) -> &[f32] {
        let [_, t, v] = self.dims;
        let start = (r / self.used * t + r % self.used) * v;
        &self.x.storage::<f32>()[start..start + v]
    }

    fn new(x: FlexTensor, used: usize, targets: Vec<i64>) -> Self {
        let x = contiguous(x);
        let d = x.layout().shape().dims::<3>();
        let [b, t, v] = d;
        assert!(used <= t);
        let n = b * used;
        assert_eq!(targets.len(), n, "flex log-probs: one target per row read");
        let targets: Vec<usize> = targets.iter().map(|&i| usize::try_from(i).ok().filter(|&i| i < v).expect("target token id outside the vocabulary")).collect();
        let mut rows = Rows { x, dims: d, used, targets, max: Vec::new(), sum: Vec::new() };
        // burn: max_dim of the detached logits (exact in any order), then exp(x - max) summed
        // by flex's `sum_dim`.
        (rows.max, rows.sum) = row_sums(n, v, |r, e| {
            let row = rows.row(r);
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let at = e.len();
            e.extend(row.iter().map(|&xv| xv - m));
            exp_in_place(&mut e[at..]);
            m
        });
        rows
    }

    /// `(x[target] - max) - ln(S)` per row.
    fn logprob_vec(&self) -> Vec<f32> {
        (0..self.targets.len()).map(|r| (self.row(r)[self.targets[r]] - self.max[r]) - self.sum[r].ln()).collect()
    }

    /// The log-probs as a `[B, used]` tensor.
    fn logprobs(&self) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(self.logprob_vec(), [self.dims[0], self.used]))
    }

    /// Entropy per row as burn's `entropy_of(log_softmax(x))` computes it: `lp = (x - max) - ln(S)`,
    /// `-(Σ exp(lp) · lp)` with flex's row sum.
    fn entropies(&self) -> Vec<f32> {
        let (_, sums) = row_sums(self.targets.len(), self.dims[2], |r, plp| {
            let (m, lse) = (self.max[r], self.sum[r].ln());
            let at = plp.len();
            plp.extend(self.row(r).iter().map(|&xv| (xv - m) - lse));
            let mut p = plp[at..].to_vec();
            exp_in_place(&mut p);
            for (lp, p) in plp[at..].iter_mut().zip(p) {
                *lp = p * *lp;
            }
            0.0
        });
        sums.into_iter().map(|s| -s).collect()
    }

    /// `dx [B, T, V]` for the incoming gradient `g [B, T-1]`: burn's backward of the composition,
    /// op for op. The gather gives `0 + g` at the target, `0` elsewhere; the subtracted
    /// log-sum-exp gets `-g` (the row sum of the negated scatter, exact), the log multiplies it by
    /// `1/S`, the sum broadcasts it, the exp multiplies it by `exp(x - max)`, and the two paths add.
    /// Position `T-1` (sliced off) gets zeros.
    fn backward(&self, g: &[f32]) -> FlexTensor {
        let [b, t, v] = self.dims;
        let mut dx = vec![0.0f32; b * t * v];
        dx.par_chunks_mut(v).enumerate().for_each(|(i, out)| {
            let (bi, ti) = (i / t, i % t);
            if ti >= self.used {
                return;
            }
            let r = bi * self.used + ti;
            let c = (-g[r]) * (1.0 / self.sum[r]);
            let m = self.max[r];
            for (o, &xv) in out.iter_mut().zip(self.row(r)) {
                *o = xv - m;
            }
            exp_in_place(out);
            for o in out.iter_mut() {
                *o = 0.0 + c * *o;
            }
            out[self.targets[r]] = (0.0 + g[r]) + c * (self.row(r)[self.targets[r]] - m).exp();
        });
        FlexTensor::from_data(TensorData::new(dx, [b, t, v]))
    }
}

/// The sum of each row of `v` values in `values`, by flex's `sum_dim` over the last axis: the SIMD
/// row sum burn's compositions call, so the same bits. Every flex op here sums rows through it.
pub(super) fn flex_row_sums(values: Vec<f32>, v: usize) -> Vec<f32> {
    let n = values.len() / v;
    Flex::float_sum_dim(FlexTensor::from_data(TensorData::new(values, [n, v])), 1).storage::<f32>()[..n].to_vec()
}

/// Rows `0..n` of `v` values each, in parallel tasks of [`ROWS_PER_TASK`] rows: `fill(r, buf)`
/// appends row `r`'s values to the task's buffer and returns a value of its own; flex's `sum_dim`
/// (the SIMD row sum burn's composition calls, so the same bits) sums each row. Returns the
/// values `fill` returned and the row sums, in row order.
pub(super) fn row_sums(n: usize, v: usize, fill: impl Fn(usize, &mut Vec<f32>) -> f32 + Sync) -> (Vec<f32>, Vec<f32>) {
    let tasks: Vec<(Vec<f32>, Vec<f32>)> = (0..n.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .map(|c| {
            let rs = c * ROWS_PER_TASK..n.min((c + 1) * ROWS_PER_TASK);
            let mut buf = Vec::with_capacity(rs.len() * v);
            let own: Vec<f32> = rs.clone().map(|r| fill(r, &mut buf)).collect();
            (own, flex_row_sums(buf, v))
        })
        .collect();
    tasks.into_iter().fold((Vec::with_capacity(n), Vec::with_capacity(n)), |(mut own, mut sums), (o, s)| {
        own.extend(o);
        sums.extend(s);
        (own, sums)
    })
}

impl UnaryGrad for Rows {
    fn grad(&self, g: &[f32]) -> FlexTensor {
        self.backward(g)
    }
}

fn tracked_op<C: CheckpointStrategy>(x: AdTensor, targets: Vec<i64>) -> AdTensor {
    let t = x.primitive().layout().shape().dims::<3>()[1];
    let rows = Rows::new(x.primitive().clone(), t - 1, targets);
    let lp = rows.logprobs();
    record_unary::<C, _>(&x, rows, lp)
}

/// The op on flex logits (tracked by autodiff or not); any other tensor is handed back untouched.
pub fn next_token_logprobs(logits: Tensor<3>, targets: &Tensor<2, Int>) -> Result<Tensor<2>, Tensor<3>> {
    let targets = || crate::model::to_vec_i64(targets.clone());
    Ok(match FlexPrimitive::of(logits)? {
        FlexPrimitive::Plain(x, ctx) => {
            let t = x.layout().shape().dims::<3>()[1];
            FlexPrimitive::Plain(Rows::new(x, t - 1, targets()).logprobs(), ctx).into_tensor()
        }
        FlexPrimitive::Autodiff(ad, s) => FlexPrimitive::Autodiff(with_strategy!(s, |C| tracked_op::<C>(ad, targets())), s).into_tensor(),
    })
}

/// Log-probs of `targets [B, T]` under untracked flex `logits [B, T, V]` at every position (no
/// next-token shift), and with `entropy` the entropies: burn's `log_softmax(logits)` gathered at the
/// targets, and `entropy_of` of it, bit for bit. `None` for any other tensor.
pub fn logprobs_and_entropies(logits: &Tensor<3>, targets: &[i64], entropy: bool) -> Option<(Vec<f32>, Vec<f32>)> {
    let Ok(FlexPrimitive::Plain(x, _)) = FlexPrimitive::of(logits.clone()) else { return None };
    let t = x.layout().shape().dims::<3>()[1];
    let rows = Rows::new(x, t, targets.to_vec());
    Some((rows.logprob_vec(), if entropy { rows.entropies() } else { Vec::new() }))
}
