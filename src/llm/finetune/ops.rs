//! Two autograd ops candle lacks, for training with a frozen base.
//!
//! - [`frozen_linear`]: `x · Wᵀ` whose backward pass returns the gradient for `x` only.
//!   Through a plain `matmul` candle's backward also computes `xᵀ · grad` for the weight
//!   and keeps it to the end of the pass: a third of the backward arithmetic and a full
//!   copy of the model's weights in memory, for tensors nobody trains.
//! - [`softmax`]: the fused last-dimension softmax with a backward pass (candle-nn's
//!   `softmax_last_dim` has none, and the composed `softmax` keeps three score-sized
//!   intermediates per layer).
//!
//! Both run the existing candle kernels in their forward pass: the input storage is copied
//! into a detached tensor (one copy of an activation, small next to the op itself), the
//! kernel runs on it, and the result's storage is handed back to the graph.

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::op::BackpropOp;
use candle_core::{CpuStorage, CustomOp1, D, Layout, Shape, Storage, Tensor};

/// A contiguous copy of the view `layout` of `storage` (any strides, any offset).
fn copy_view<S, Dv>(storage: &S, layout: &Layout) -> candle_core::Result<S>
where
    S: BackendStorage<Device = Dv>,
    Dv: BackendDevice<Storage = S>,
{
    let mut dst = storage
        .device()
        .zeros_impl(layout.shape(), storage.dtype())?;
    storage.copy_strided_src(&mut dst, 0, layout)?;
    Ok(dst)
}

/// The view `layout` of `storage` as a fresh contiguous tensor outside any graph.
fn detached<S, Dv>(
    storage: &S,
    layout: &Layout,
    wrap: impl FnOnce(S) -> Storage,
) -> candle_core::Result<Tensor>
where
    S: BackendStorage<Device = Dv>,
    Dv: BackendDevice<Storage = S>,
{
    Ok(Tensor::from_storage(
        wrap(copy_view(storage, layout)?),
        layout.shape().clone(),
        BackpropOp::none(),
        false,
    ))
}

/// A contiguous copy of `t`'s storage, and its shape.
fn storage_of<S>(
    t: &Tensor,
    unwrap: impl FnOnce(&Storage, &Layout) -> candle_core::Result<S>,
) -> candle_core::Result<(S, Shape)> {
    let (storage, layout) = t.storage_and_layout();
    Ok((unwrap(&storage, layout)?, t.shape().clone()))
}

fn cpu(s: &Storage, l: &Layout) -> candle_core::Result<CpuStorage> {
    match s {
        Storage::Cpu(c) => copy_view(c, l),
        _ => candle_core::bail!("finetune op: expected a CPU tensor"),
    }
}

#[cfg(feature = "cuda")]
fn cuda(s: &Storage, l: &Layout) -> candle_core::Result<candle_core::cuda_backend::CudaStorage> {
    match s {
        Storage::Cuda(c) => copy_view(c, l),
        _ => candle_core::bail!("finetune op: expected a CUDA tensor"),
    }
}

/// Defines `cpu_fwd` (and `cuda_fwd` with the `cuda` feature) from a tensor-level forward.
macro_rules! forward_via_tensors {
    () => {
        fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
            let x = detached(s, l, Storage::Cpu)?;
            storage_of(&self.forward(&x)?, cpu)
        }

        #[cfg(feature = "cuda")]
        fn cuda_fwd(
            &self,
            s: &candle_core::cuda_backend::CudaStorage,
            l: &Layout,
        ) -> candle_core::Result<(candle_core::cuda_backend::CudaStorage, Shape)> {
            let x = detached(s, l, Storage::Cuda)?;
            storage_of(&self.forward(&x)?, cuda)
        }
    };
}

/// `x · Wᵀ` with `W` (out × in) frozen.
struct FrozenLinear {
    weight: Tensor,
}

impl FrozenLinear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.broadcast_matmul(&self.weight.t()?)
    }
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    forward_via_tensors!();

    fn bwd(
        &self,
        _x: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.broadcast_matmul(&self.weight)?))
    }
}

/// `x · Wᵀ` (x: … × in, W: out × in) differentiable in `x` only. Without a graph on `x`
/// it is a plain matmul.
pub fn frozen_linear(x: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
    if !x.track_op() {
        return x.broadcast_matmul(&weight.t()?);
    }
    x.apply_op1_arc(std::sync::Arc::new(Box::new(FrozenLinear {
        weight: weight.clone(),
    })))
}

/// Softmax over the last dimension.
struct Softmax;

impl Softmax {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::softmax_last_dim(x)
    }
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax-last-dim-with-backward"
    }

    forward_via_tensors!();

    /// `p ⊙ (g − Σ g⊙p)`, in f32 for bf16 scores.
    fn bwd(&self, _x: &Tensor, p: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dtype = p.dtype();
        let (p, g) = (
            p.to_dtype(candle_core::DType::F32)?,
            g.to_dtype(candle_core::DType::F32)?,
        );
        let dot = (&g * &p)?.sum_keepdim(D::Minus1)?;
        Ok(Some((g.broadcast_sub(&dot)? * p)?.to_dtype(dtype)?))
    }
}

/// Softmax over the last dimension, differentiable.
pub fn softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    if !x.track_op() {
        return candle_nn::ops::softmax_last_dim(x);
    }
    x.apply_op1(Softmax)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::arch::tests::max_diff;
    use candle_core::{DType, Device, Var};

    /// Value and input gradient of `op` against the composed reference, on a weighted
    /// sum so that every output element's gradient differs.
    fn check(
        op: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
        reference: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
        shape: &[usize],
        out_shape: &[usize],
    ) {
        let dev = Device::Cpu;
        let x0 = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
        // A strided view, so the forward's copy of a non-contiguous input is covered.
        let x0 = x0.t().unwrap();
        let w = Tensor::randn(0f32, 1.0, out_shape, &dev).unwrap();
        let grads = |f: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>| {
            let x = Var::from_tensor(&x0).unwrap();
            let y = f(x.as_tensor()).unwrap();
            let loss = (&y * &w).unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap();
            (y, g.get(x.as_tensor()).unwrap().clone())
        };
        let (y1, g1) = grads(&op);
        let (y2, g2) = grads(&reference);
        assert!(max_diff(&y1, &y2) < 1e-5, "values differ");
        assert!(max_diff(&g1, &g2) < 1e-5, "gradients differ");
        assert!(
            g1.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0
        );
    }

    #[test]
    fn frozen_linear_matches_matmul_and_leaves_the_weight_without_a_gradient() {
        let dev = Device::Cpu;
        let weight = Tensor::randn(0f32, 1.0, (5, 3), &dev).unwrap();
        check(
            |x| frozen_linear(x, &weight),
            |x| x.matmul(&weight.t()?),
            &[3, 4],
            &[4, 5],
        );
        let x = Var::from_tensor(&Tensor::ones((2, 3), DType::F32, &dev).unwrap()).unwrap();
        let g = frozen_linear(x.as_tensor(), &weight)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        // Only the input has a gradient (a plain matmul also leaves one for `Wᵀ`).
        assert_eq!(g.get_ids().count(), 1, "a frozen weight got a gradient");
        assert!(g.get(x.as_tensor()).is_some());
        let plain = x.as_tensor().matmul(&weight.t().unwrap()).unwrap();
        let g = plain.sum_all().unwrap().backward().unwrap();
        assert_eq!(g.get_ids().count(), 2);
    }

    #[test]
    fn softmax_backward_matches_the_composed_softmax() {
        check(
            softmax,
            |x| candle_nn::ops::softmax(x, D::Minus1),
            &[6, 4],
            &[4, 6],
        );
    }
}
