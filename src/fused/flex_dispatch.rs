//! What the flex ops of this module share: a tensor unwrapped into flex's f32 primitive (outside
//! autodiff, or under it with its checkpointing strategy), and wrapped back.

use burn::backend::autodiff::Autodiff;
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
