//! What the flex ops of this module share: a tensor unwrapped into flex's f32 primitive (outside
//! autodiff, or under it with its checkpointing strategy), and wrapped back.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::{BackendTensor, BackendTypes, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind, Flex, GradientCheckpointingStrategy};
use burn::prelude::*;
use burn::tensor::DType;

/// A float tensor of burn's autodiff over flex (burn names it only through an associated type).
pub type AdTensor = <Autodiff<Flex> as BackendTypes>::FloatTensorPrimitive;

/// A flex f32 tensor's primitive.
pub enum FlexPrimitive {
    /// Outside autodiff.
    Plain(FlexTensor, DispatchAutodiffContext),
    /// Under autodiff (tracked or not), with the strategy its ops are prepared with.
    Autodiff(AdTensor, GradientCheckpointingStrategy),
}

impl FlexPrimitive {
    /// `x`'s primitive when `x` is a flex f32 tensor; any other tensor is handed back untouched.
    pub fn of<const D: usize>(x: Tensor<D>) -> Result<Self, Tensor<D>> {
        match x.into_dispatch() {
            DispatchTensor { kind: DispatchTensorKind::Flex(BackendTensor::Float(p)), autodiff } if p.dtype() == DType::F32 => Ok(Self::Plain(p, autodiff)),
            DispatchTensor { kind: DispatchTensorKind::Autodiff(inner), autodiff: DispatchAutodiffContext::Enabled(s) } => match *inner {
                DispatchTensorKind::Flex(BackendTensor::Autodiff(ad)) if ad.primitive().dtype() == DType::F32 => Ok(Self::Autodiff(ad, s)),
                other => Err(Tensor::from_dispatch(DispatchTensor { kind: DispatchTensorKind::Autodiff(Box::new(other)), autodiff: DispatchAutodiffContext::Enabled(s) })),
            },
            d => Err(Tensor::from_dispatch(d)),
        }
    }

    /// The tensor of this primitive.
    pub fn into_tensor<const D: usize>(self) -> Tensor<D> {
        Tensor::from_dispatch(match self {
            Self::Plain(p, autodiff) => DispatchTensor { kind: DispatchTensorKind::Flex(BackendTensor::Float(p)), autodiff },
            Self::Autodiff(ad, s) => DispatchTensor {
                kind: DispatchTensorKind::Autodiff(Box::new(DispatchTensorKind::Flex(BackendTensor::Autodiff(ad)))),
                autodiff: DispatchAutodiffContext::Enabled(s),
            },
        })
    }
}

/// `x` itself when it is contiguous from offset 0, else a contiguous copy.
pub fn contiguous(x: FlexTensor) -> FlexTensor {
    if x.layout().is_contiguous() && x.layout().start_offset() == 0 { x } else { x.to_contiguous() }
}

/// The state a one-input flex op keeps for its backward pass, and that pass: the input's gradient
/// from the output's (contiguous).
pub trait UnaryGrad: Clone + Send + Sync + std::fmt::Debug + 'static {
    fn grad(&self, g: &[f32]) -> FlexTensor;
}

#[derive(Debug)]
struct UnaryOp<S>(std::marker::PhantomData<S>);

impl<S: UnaryGrad> Backward<Flex, 1> for UnaryOp<S> {
    type State = S;

    fn backward(self, ops: Ops<S, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let st = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| st.grad(contiguous(grad).as_slice::<f32>().expect("contiguous gradient")));
    }
}

/// `out`, computed from `x` by a one-input op, as an autodiff tensor; where `x` is tracked, `st`
/// is kept for the backward pass.
pub fn record_unary<C: CheckpointStrategy, S: UnaryGrad>(x: &AdTensor, st: S, out: FlexTensor) -> AdTensor {
    match UnaryOp::<S>(std::marker::PhantomData).prepare::<C>([x.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(st, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}
