//! Log-softmax, softmax, LayerNorm and next-token log-probs as LibTorch kernels under burn's
//! autodiff (the `libtorch` cargo feature).
//!
//! Under autodiff, burn 0.22 builds log-softmax, softmax and LayerNorm from elementwise primitives
//! (max, subtract, exp, sum, log, divide; mean, variance, square root ...), and so does their
//! backward pass: about a dozen passes over each `[B, T, V]` logits tensor where PyTorch eager makes
//! two or three. Here a tracked LibTorch tensor goes instead through a custom autodiff op:
//! - log-softmax and softmax: LibTorch's own forward and backward kernels
//!   (`_log_softmax_backward_data`, `_softmax_backward_data`), as PyTorch eager calls them;
//! - LayerNorm: `native_layer_norm` forward; the backward is written here in a few LibTorch ops
//!   (tch does not expose `native_layer_norm_backward`);
//! - next-token log-probs: one op for slice, log-softmax and gather (see [`next_token_logprobs`]).
//!
//! On flex, next-token log-probs ([`flex`]), the Llama MLP's `silu(gate) * up` ([`swiglu`]) and,
//! under autodiff, softmax over the last axis ([`softmax`]) are one op each, computing burn's
//! composition bit for bit.
//!
//! Every other tensor (wgpu, untracked LibTorch tensors, which burn already sends to LibTorch's
//! fused forward kernels) takes burn's own op, unchanged: a default build computes the same bits as
//! before this module existed. Each op is tested against burn's composition, values and gradients,
//! in `tests/model_equivalence.rs`.

use burn::nn::LayerNorm;
use burn::prelude::*;

/// Runs a body generic over the checkpointing strategy type that burn picked at run time (burn
/// prepares an autodiff op with the strategy as a type parameter).
macro_rules! with_strategy {
    ($s:expr, |$C:ident| $body:expr) => {
        match $s {
            burn::backend::GradientCheckpointingStrategy::Disabled => {
                type $C = burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
                $body
            }
            burn::backend::GradientCheckpointingStrategy::Balanced => {
                type $C = burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
                $body
            }
        }
    };
}

pub mod exp;
pub mod flex;
mod flex_dispatch;
pub mod softmax;
pub mod swiglu;

/// Whether the ops of this module run LibTorch's fused kernels on `x` (a tracked LibTorch tensor),
/// rather than burn's own op.
pub fn is_fused<const D: usize>(x: &Tensor<D>) -> bool {
    #[cfg(feature = "libtorch")]
    return tch_autodiff::is_tracked(x);
    #[cfg(not(feature = "libtorch"))]
    {
        let _ = x;
        false
    }
}

/// `log_softmax(x, dim)`.
pub fn log_softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    #[cfg(feature = "libtorch")]
    let x = match tch_autodiff::try_op(x, |t, s| tch_autodiff::log_softmax(t, dim, s)) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::log_softmax(x, dim)
}

/// `softmax(x, dim)`.
pub fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    #[cfg(feature = "libtorch")]
    let x = match tch_autodiff::try_op(x, |t, s| tch_autodiff::softmax(t, dim, s)) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let x = if dim + 1 == D {
        match softmax::softmax_last(x) {
            Ok(y) => return y,
            Err(x) => x,
        }
    } else {
        x
    };
    burn::tensor::activation::softmax(x, dim)
}

/// Log-probability of each next token, `logits [B, T, V]`, `targets [B, T-1]` → `[B, T-1]`: entry
/// `i` is `log_softmax(logits[:, i])[targets[:, i]]` (see [`crate::model::next_token_logprobs`]).
///
/// burn's way, and PyTorch eager's (`log_softmax(logits[:, :-1]).gather(..)`), writes the sliced
/// logits out contiguously, then the whole log-softmax; its backward writes a zero tensor for the
/// gather, the log-softmax gradient, and another zero tensor for the slice: about eleven passes over
/// `[B, T, V]`. On LibTorch this is one op: a log-softmax over all `T` positions (the last one is
/// dropped afterwards, 1/T extra work), whose backward is `-g · softmax` with `g` scattered back
/// at the targets: about six passes.
pub fn next_token_logprobs(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<2> {
    #[cfg(feature = "libtorch")]
    let logits = match tch_autodiff::try_op(logits, |t, s| {
        let tgt = tch_autodiff::int_tensor(&targets).expect("targets on the logits' LibTorch device");
        tch_autodiff::next_token_logprobs(t, tgt, s)
    }) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let logits = match flex::next_token_logprobs(logits, &targets) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let [b, t, _] = logits.dims();
    let lp = burn::tensor::activation::log_softmax(logits.narrow(1, 0, t - 1), 2);
    lp.gather(2, targets.unsqueeze_dim::<3>(2)).reshape([b, t - 1])
}

/// `silu(gate) * up`: one op on flex ([`swiglu::swiglu`]), burn's composition elsewhere.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    match swiglu::swiglu(gate, up) {
        Ok(y) => y,
        Err((gate, up)) => burn::tensor::activation::silu(gate) * up,
    }
}

/// `ln.forward(x)`: LayerNorm over the last axis. `eps` must be the module's own epsilon (burn
/// keeps that field private); the model builds every LayerNorm with [`crate::model::LAYER_NORM_EPS`].
pub fn layer_norm<const D: usize>(ln: &LayerNorm, x: Tensor<D>, eps: f64) -> Tensor<D> {
    #[cfg(feature = "libtorch")]
    if let Some(y) = tch_autodiff::layer_norm(ln, &x, eps) {
        return y;
    }
    #[cfg(not(feature = "libtorch"))]
    let _ = eps;
    ln.forward(x)
}

#[cfg(feature = "libtorch")]
#[allow(deprecated)] // burn 0.22 marks burn-tch deprecated (to be removed upstream); it is optional here.
mod tch_autodiff {
    use burn::backend::{
        BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind, GradientCheckpointingStrategy, LibTorch,
    };
    use burn::prelude::*;
    use burn_autodiff::Autodiff;
    use burn_autodiff::checkpoint::base::Checkpointer;
    use burn_autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn_autodiff::grads::Gradients;
    use burn_autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn_tch::TchTensor;

    /// A tracked float tensor of burn's autodiff over LibTorch (burn names it only through the
    /// backend's associated type).
    pub type AdTensor = <Autodiff<LibTorch> as burn::backend::BackendTypes>::FloatTensorPrimitive;

    /// The checkpointing strategy of a tracked LibTorch tensor, with the tensor itself; `None` for
    /// any other tensor.
    fn tracked(t: &DispatchTensor) -> Option<(&AdTensor, GradientCheckpointingStrategy)> {
        match (&t.kind, t.autodiff) {
            (DispatchTensorKind::Autodiff(inner), DispatchAutodiffContext::Enabled(strategy)) => match inner.as_ref() {
                DispatchTensorKind::LibTorch(BackendTensor::Autodiff(ad)) => Some((ad, strategy)),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn is_tracked<const D: usize>(x: &Tensor<D>) -> bool {
        tracked(&x.clone().into_dispatch()).is_some()
    }

    fn wrap<const D: usize>(out: AdTensor, strategy: GradientCheckpointingStrategy) -> Tensor<D> {
        Tensor::from_dispatch(DispatchTensor {
            kind: DispatchTensorKind::Autodiff(Box::new(DispatchTensorKind::LibTorch(BackendTensor::Autodiff(out)))),
            autodiff: DispatchAutodiffContext::Enabled(strategy),
        })
    }

    /// Runs `op` when `x` is a tracked LibTorch tensor; otherwise hands `x` back untouched.
    pub fn try_op<const D: usize, const E: usize>(
        x: Tensor<D>,
        op: impl FnOnce(AdTensor, GradientCheckpointingStrategy) -> AdTensor,
    ) -> Result<Tensor<E>, Tensor<D>> {
        let d = x.into_dispatch();
        let Some((_, strategy)) = tracked(&d) else { return Err(Tensor::from_dispatch(d)) };
        let DispatchTensorKind::Autodiff(inner) = d.kind else { unreachable!() };
        let DispatchTensorKind::LibTorch(BackendTensor::Autodiff(ad)) = *inner else { unreachable!() };
        Ok(wrap(op(ad, strategy), strategy))
    }


    /// LibTorch's backward kernel of an op whose gradient needs only its output `y`:
    /// `(dy, y, dim, dtype) -> dx`. `_log_softmax_backward_data` is `dx = dy - exp(y) · Σ dy`,
    /// `_softmax_backward_data` is `dx = y · (dy - Σ y·dy)`.
    type OutputKernel = fn(&tch::Tensor, &tch::Tensor, i64, tch::Kind) -> tch::Tensor;

    #[derive(Debug)]
    struct FromOutput(OutputKernel);

    impl Backward<LibTorch, 1> for FromOutput {
        type State = (TchTensor, i64);

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (out, dim) = ops.state;
            unary::<LibTorch, _>(ops.parents, ops.node, grads, |grad| {
                TchTensor::new((self.0)(&grad.tensor, &out.tensor, dim, out.tensor.kind()))
            });
        }
    }

    /// A one-input op along `dim`: forward by LibTorch's `f`, backward by its `kernel` from the output.
    fn output_saving<C: CheckpointStrategy>(kernel: OutputKernel, x: AdTensor, dim: usize, f: impl Fn(&tch::Tensor, i64) -> tch::Tensor) -> AdTensor {
        let dim = dim as i64;
        let out = TchTensor::new(f(&x.primitive().tensor, dim));
        match FromOutput(kernel).prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((out.clone(), dim), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    pub fn log_softmax(x: AdTensor, dim: usize, s: GradientCheckpointingStrategy) -> AdTensor {
        let f = |t: &tch::Tensor, d: i64| t.log_softmax(d, t.kind());
        with_strategy!(s, |C| output_saving::<C>(tch::Tensor::internal_log_softmax_backward_data, x, dim, f))
    }

    pub fn softmax(x: AdTensor, dim: usize, s: GradientCheckpointingStrategy) -> AdTensor {
        let f = |t: &tch::Tensor, d: i64| t.softmax(d, t.kind());
        with_strategy!(s, |C| output_saving::<C>(tch::Tensor::internal_softmax_backward_data, x, dim, f))
    }

    /// The LibTorch tensor of an integer tensor on a LibTorch device (autodiff or not).
    pub fn int_tensor<const D: usize>(x: &Tensor<D, Int>) -> Option<TchTensor> {
        match x.clone().into_dispatch().kind {
            DispatchTensorKind::LibTorch(BackendTensor::Int(t)) => Some(t),
            DispatchTensorKind::Autodiff(inner) => match *inner {
                DispatchTensorKind::LibTorch(BackendTensor::Int(t)) => Some(t),
                _ => None,
            },
            _ => None,
        }
    }

    /// Backward of the next-token log-probs: with `y = log_softmax(x)` over all `T` positions and
    /// `g` the incoming gradient padded with a zero for position `T-1`,
    /// `dx = -g · exp(y)`, plus `g` at each target.
    #[derive(Debug)]
    struct NextTokenBackward;

    impl Backward<LibTorch, 1> for NextTokenBackward {
        /// (log-softmax over all positions `[B, T, V]`, targets padded to `[B, T, 1]`)
        type State = (TchTensor, TchTensor);

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (lsm, tgt) = ops.state;
            unary::<LibTorch, _>(ops.parents, ops.node, grads, |grad| {
                let g = grad.tensor.constant_pad_nd([0i64, 1].as_slice()).unsqueeze(-1);
                let mut dx = lsm.tensor.exp();
                let _ = dx.g_mul_(&g.neg());
                let _ = dx.scatter_add_(2, &tgt.tensor, &g);
                TchTensor::new(dx)
            });
        }
    }

    pub fn next_token_logprobs(x: AdTensor, targets: TchTensor, s: GradientCheckpointingStrategy) -> AdTensor {
        with_strategy!(s, |C| next_token_logprobs_op::<C>(x, targets))
    }

    fn next_token_logprobs_op<C: CheckpointStrategy>(x: AdTensor, targets: TchTensor) -> AdTensor {
        let xt = &x.primitive().tensor;
        let t = xt.size()[1];
        let lsm = xt.log_softmax(-1, xt.kind());
        let tgt = targets.tensor.constant_pad_nd([0i64, 1].as_slice()).unsqueeze(-1);
        let lp = lsm.gather(2, &tgt, false).squeeze_dim(-1).narrow(1, 0, t - 1).contiguous();
        match NextTokenBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((TchTensor::new(lsm), TchTensor::new(tgt)), TchTensor::new(lp)),
            OpsKind::UnTracked(prep) => prep.finish(TchTensor::new(lp)),
        }
    }

    /// Backward of LayerNorm `y = x̂ · γ + β`, `x̂ = (x - μ) · r`, `r = 1 / sqrt(σ² + ε)` over the
    /// last axis (the state keeps x̂ and r from `native_layer_norm`):
    /// `dx = r · (g - mean(g) - x̂ · mean(g · x̂))` with `g = dy · γ`; `dγ = Σ dy · x̂`; `dβ = Σ dy`.
    #[derive(Debug)]
    struct LayerNormBackward;

    impl Backward<LibTorch, 3> for LayerNormBackward {
        /// (x̂, r `[.., 1]`, γ)
        type State = (TchTensor, TchTensor, TchTensor);

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let (xhat, rstd, gamma) = ops.state;
            let [px, pg, pb] = ops.parents;
            let dy = grads.consume::<LibTorch>(&ops.node).tensor;
            let (xhat, rstd, gamma) = (&xhat.tensor, &rstd.tensor, &gamma.tensor);
            let rows: Vec<i64> = (0..dy.dim() as i64 - 1).collect();
            if let Some(p) = pb {
                grads.register::<LibTorch>(p.id, TchTensor::new(dy.sum_dim_intlist(rows.as_slice(), false, dy.kind())));
            }
            if let Some(p) = pg {
                let dg = (&dy * xhat).sum_dim_intlist(rows.as_slice(), false, dy.kind());
                grads.register::<LibTorch>(p.id, TchTensor::new(dg));
            }
            if let Some(p) = px {
                let g = &dy * gamma;
                let last = [dy.dim() as i64 - 1];
                let mean_g = g.mean_dim(last.as_slice(), true, g.kind());
                let mean_gx = (&g * xhat).mean_dim(last.as_slice(), true, g.kind());
                let dx = (g - mean_g - xhat * mean_gx) * rstd;
                grads.register::<LibTorch>(p.id, TchTensor::new(dx));
            }
        }
    }

    /// `ln` on a tracked LibTorch input (with tracked γ and β); `None` for any other tensor, or with
    /// β absent (not a configuration of this crate), so the caller uses burn's op. The input is
    /// looked at first, so other backends pay for one check only.
    pub fn layer_norm<const D: usize>(ln: &burn::nn::LayerNorm, x: &Tensor<D>, eps: f64) -> Option<Tensor<D>> {
        let dx = x.clone().into_dispatch();
        let (ax, s) = tracked(&dx)?;
        let beta = ln.beta.as_ref()?;
        let (dg, db) = (ln.gamma.val().into_dispatch(), beta.val().into_dispatch());
        let (ag, sg) = tracked(&dg)?;
        let (ab, sb) = tracked(&db)?;
        if sg != s || sb != s {
            return None;
        }
        let out = with_strategy!(s, |C| layer_norm_op::<C>(ax, ag, ab, eps));
        Some(wrap(out, s))
    }

    fn layer_norm_op<C: CheckpointStrategy>(x: &AdTensor, gamma: &AdTensor, beta: &AdTensor, eps: f64) -> AdTensor {
        let (xt, gt, bt) = (&x.primitive().tensor, &gamma.primitive().tensor, &beta.primitive().tensor);
        let d = xt.size()[xt.dim() - 1];
        let (y, mean, rstd) = xt.native_layer_norm([d].as_slice(), Some(gt), Some(bt), eps);
        match LayerNormBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let xhat = (xt - &mean) * &rstd;
                prep.finish((TchTensor::new(xhat), TchTensor::new(rstd), gamma.primitive().clone()), TchTensor::new(y))
            }
            OpsKind::UnTracked(prep) => prep.finish(TchTensor::new(y)),
        }
    }
}
