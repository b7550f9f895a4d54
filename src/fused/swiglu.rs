//! The Llama MLP's `silu(gate) * up` on flex as one op, bit for bit equal to burn's composition.
//!
//! burn computes it as `gate * sigmoid(gate)`, then `* up`: three passes forward, and seven
//! backward (the sigmoid recomputed, four products, the sigmoid's backward, one sum), each on one
//! thread, over `[B, T, d_ff]` in every block. Here the forward is one pass and the backward one
//! pass, over chunks in parallel.
//!
//! Each element goes through the float operations burn's composition performs, in its order:
//! flex's sigmoid (`1/(1+exp(-x))` for `x ≥ 0`, else `e/(1+e)` with libm's `expf`), the products
//! of the multiply's backward (`grad · rhs`, `grad · lhs`), the sigmoid's backward
//! (`g · s · (1 - s)`) and the sum of the gate's two gradient paths (IEEE addition commutes, so
//! the order autodiff adds them in does not matter). `tests/model_equivalence.rs` compares values
//! and gradients with `assert_eq!` on bits.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use rayon::prelude::*;

use super::exp::exp_in_place;
use super::flex_dispatch::{AdTensor, FlexPrimitive, contiguous};

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// flex's `sigmoid_f32` (`burn-flex` `ops/activation.rs`), which burn's `sigmoid` runs on flex:
/// `1 / (1 + exp(-x))` for `x ≥ 0`, else `e / (1 + e)` with `e = exp(x)`. Both take `exp(-|x|)`,
/// so the exps run as one slice ([`exp_in_place`]).
fn sigmoids(x: &[f32]) -> Vec<f32> {
    let mut e: Vec<f32> = x.iter().map(|&xv| -xv.abs()).collect();
    exp_in_place(&mut e);
    for (s, &xv) in e.iter_mut().zip(x) {
        *s = if xv >= 0.0 { 1.0 / (1.0 + *s) } else { *s / (1.0 + *s) };
    }
    e
}

fn f32s(x: &FlexTensor) -> &[f32] {
    &x.storage::<f32>()[..x.layout().num_elements()]
}

/// `(gate · sigmoid(gate)) · up`, elementwise.
fn forward(gate: &FlexTensor, up: &FlexTensor) -> FlexTensor {
    let (x, u) = (f32s(gate), f32s(up));
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let (x, u) = (&x[c * CHUNK..][..o.len()], &u[c * CHUNK..][..o.len()]);
        for (((o, &xv), &uv), s) in o.iter_mut().zip(x).zip(u).zip(sigmoids(x)) {
            *o = (xv * s) * uv;
        }
    });
    FlexTensor::from_data(TensorData::new(out, gate.layout().shape().clone()))
}

/// The gradients of gate and up for the incoming gradient `g`, as burn's backward computes them:
/// the product's `dA = g · up` and `dUp = g · A` (`A = gate · s`), the silu product's `dA · s`
/// and `dA · gate`, the sigmoid's `(dA · gate) · s · (1 - s)`, and the gate's two paths added.
fn backward(gate: &FlexTensor, up: &FlexTensor, g: &[f32]) -> (FlexTensor, FlexTensor) {
    let (x, u) = (f32s(gate), f32s(up));
    let (mut dx, mut du) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
    dx.par_chunks_mut(CHUNK).zip(du.par_chunks_mut(CHUNK)).enumerate().for_each(|(c, (dx, du))| {
        let at = c * CHUNK;
        let s = sigmoids(&x[at..at + dx.len()]);
        for (i, (dx, du)) in dx.iter_mut().zip(du.iter_mut()).enumerate() {
            let (xv, uv, gv, s) = (x[at + i], u[at + i], g[at + i], s[i]);
            let da = gv * uv;
            *du = gv * (xv * s);
            let through_sigmoid = da * xv;
            *dx = da * s + through_sigmoid * s * (1.0 - s);
        }
    });
    let shape = gate.layout().shape().clone();
    (FlexTensor::from_data(TensorData::new(dx, shape.clone())), FlexTensor::from_data(TensorData::new(du, shape)))
}

#[derive(Debug)]
struct SwigluBackward;

impl Backward<Flex, 2> for SwigluBackward {
    /// gate and up, contiguous.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (gate, up) = ops.state;
        let g = contiguous(grads.consume::<Flex>(&ops.node));
        let (dx, du) = backward(&gate, &up, f32s(&g));
        let [gate_node, up_node] = ops.parents;
        if let Some(node) = gate_node {
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = up_node {
            grads.register::<Flex>(node.id, du);
        }
    }
}

fn tracked_op<C: CheckpointStrategy>(gate: AdTensor, up: AdTensor) -> AdTensor {
    let (x, u) = (contiguous(gate.primitive().clone()), contiguous(up.primitive().clone()));
    let out = forward(&x, &u);
    match SwigluBackward.prepare::<C>([gate.node(), up.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((x, u), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// `silu(gate) * up` as one op on flex f32 tensors of one shape (tracked by autodiff or not); any
/// other pair is handed back untouched.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Result<Tensor<D>, (Tensor<D>, Tensor<D>)> {
    if gate.dims() != up.dims() {
        return Err((gate, up));
    }
    match (FlexPrimitive::of(gate), FlexPrimitive::of(up)) {
        (Ok(FlexPrimitive::Plain(x, ctx)), Ok(FlexPrimitive::Plain(u, _))) => Ok(FlexPrimitive::Plain(forward(&contiguous(x), &contiguous(u)), ctx).into_tensor()),
        (Ok(FlexPrimitive::Autodiff(x, s)), Ok(FlexPrimitive::Autodiff(u, _))) => Ok(FlexPrimitive::Autodiff(with_strategy!(s, |C| tracked_op::<C>(x, u)), s).into_tensor()),
        (gate, up) => Err((gate.map_or_else(|t| t, FlexPrimitive::into_tensor), up.map_or_else(|t| t, FlexPrimitive::into_tensor))),
    }
}
