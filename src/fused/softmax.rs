//! Softmax over the last axis of a flex tensor under autodiff as one op, bit for bit equal to
//! burn's composition. The attention weights of every block go through it.
//!
//! Under autodiff burn builds softmax from `max`, `sub`, `exp`, `sum`, `div` (flex's own fused
//! softmax serves only tensors outside autodiff), and its backward from a dozen more passes
//! (`recip`, `neg`, `powi`, `div`, products, a broadcast sum, `ones ·`, `exp` recomputed), each
//! elementwise one on one thread, over `[B, H, T, T]` in every block. Here the forward is one
//! parallel pass that also keeps `exp(x - max)`, and the backward one pass for the row sums of
//! the divisor's gradient and one for the result.
//!
//! Every float operation is the composition's, in its order, on the same values: libm's `expf`,
//! flex's SIMD row sum (through [`super::flex::flex_row_sums`]), IEEE `+ - * /`. The two gradient paths
//! into `exp` are added in either order (IEEE addition commutes). `tests/model_equivalence.rs`
//! compares values and gradients with `assert_eq!` on bits.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::prelude::*;
use burn::tensor::Shape;
use rayon::prelude::*;

use super::exp::exp_in_place;
use super::flex::{ROWS_PER_TASK, flex_row_sums, row_sums};
use super::flex_dispatch::{AdTensor, FlexPrimitive, UnaryGrad, contiguous, record_unary};

/// What the backward pass reads: `exp(x - max)` and each row's sum of it.
#[derive(Clone, Debug)]
struct State {
    exp: Vec<f32>,
    sum: Vec<f32>,
    shape: Shape,
}

/// `softmax(x)` over the last axis of contiguous `x`; returns it and the backward state.
fn forward(x: &FlexTensor) -> (FlexTensor, State) {
    let shape = x.layout().shape().clone();
    let v = shape[shape.num_dims() - 1];
    let xs = &x.storage::<f32>()[..shape.num_elements()];
    let mut exp = vec![0.0f32; xs.len()];
    let mut out = vec![0.0f32; xs.len()];
    let chunk = ROWS_PER_TASK * v;
    let sums: Vec<Vec<f32>> = exp
        .par_chunks_mut(chunk)
        .zip(out.par_chunks_mut(chunk))
        .zip(xs.par_chunks(chunk))
        .map(|((e, o), x)| {
            // burn: max of the detached input (exact in any order), `exp(x - max)`, flex's row
            // sum, then `exp / sum`.
            for (e, x) in e.chunks_mut(v).zip(x.chunks(v)) {
                let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                for (e, &xv) in e.iter_mut().zip(x) {
                    *e = xv - m;
                }
            }
            exp_in_place(e);
            let s = flex_row_sums(e.to_vec(), v);
            for ((o, e), &s) in o.chunks_mut(v).zip(e.chunks(v)).zip(&s) {
                for (o, &ev) in o.iter_mut().zip(e) {
                    *o = ev / s;
                }
            }
            s
        })
        .collect();
    let sum = sums.concat();
    (FlexTensor::from_data(TensorData::new(out, shape.clone())), State { exp, sum, shape })
}

/// `dx` for the incoming gradient `g`, burn's backward op for op:
/// - `exp / sum`: `g · recip(sum)` to `exp`; `g · (-exp / sum²)` to `sum`, summed over the row
///   (the broadcast's backward, flex's row sum);
/// - `sum`: `ones · sum_dim(that)` (a sum over a length-1 axis, taken with flex's own op);
/// - `exp`: the two paths added, times `exp(x - max)`; `sub` passes it through to `x`.
fn backward(st: &State, g: &[f32]) -> FlexTensor {
    let v = st.shape[st.shape.num_dims() - 1];
    let n = st.sum.len();
    let recip = Flex::float_recip(FlexTensor::from_data(TensorData::new(st.sum.clone(), [n]))).storage::<f32>()[..n].to_vec();
    let (_, d_sum) = row_sums(n, v, |r, buf| {
        let s2 = st.sum[r] * st.sum[r];
        let (e, g) = (&st.exp[r * v..(r + 1) * v], &g[r * v..(r + 1) * v]);
        buf.extend(e.iter().zip(g).map(|(&ev, &gv)| gv * ((-ev) / s2)));
        0.0
    });
    let d_sum = flex_row_sums(d_sum, 1);
    let mut dx = vec![0.0f32; n * v];
    dx.par_chunks_mut(v).enumerate().for_each(|(r, out)| {
        let (e, g) = (&st.exp[r * v..(r + 1) * v], &g[r * v..(r + 1) * v]);
        let (rs, ds) = (recip[r], 1.0 * d_sum[r]);
        for ((o, &ev), &gv) in out.iter_mut().zip(e).zip(g) {
            *o = (gv * rs + ds) * ev;
        }
    });
    FlexTensor::from_data(TensorData::new(dx, st.shape.clone()))
}

impl UnaryGrad for State {
    fn grad(&self, g: &[f32]) -> FlexTensor {
        backward(self, g)
    }
}

fn tracked_op<C: CheckpointStrategy>(x: AdTensor) -> AdTensor {
    let (y, st) = forward(&contiguous(x.primitive().clone()));
    record_unary::<C, _>(&x, st, y)
}

/// The op on a flex f32 tensor under autodiff (tracked or not), softmax over its last axis; any
/// other tensor (flex outside autodiff takes flex's own fused softmax) is handed back untouched.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Result<Tensor<D>, Tensor<D>> {
    match FlexPrimitive::of(x)? {
        FlexPrimitive::Autodiff(ad, s) => Ok(FlexPrimitive::Autodiff(with_strategy!(s, |C| tracked_op::<C>(ad)), s).into_tensor()),
        plain => Err(plain.into_tensor()),
    }
}
