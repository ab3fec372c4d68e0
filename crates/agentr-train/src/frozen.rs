//! Products with a frozen weight: `x · Wᵀ` whose backward pass computes `x`'s gradient only.
//!
//! candle's matmul backward always computes both operands' gradients, even when one of them
//! records no graph. Under LoRA every base projection and the language-model head are frozen,
//! so each training step would pay for one `[out, in]` weight-gradient product per projection
//! (the size of the forward product) plus a buffer to sum it into, and then drop it: about a
//! third of the step's matrix work. [`linear`] routes such products through [`FrozenMatmul`],
//! a custom operation whose forward is candle's own matmul on the raw storages (any device
//! with a matmul, CPU and CUDA alike) and whose backward is `grad · W`.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor, bail,
};

/// `x · weightᵀ` for a 2-D `x` (`[rows, in]`) and `weight` (`[out, in]`). When `x` is part of
/// a graph and `weight` is not (a frozen weight), backward computes no weight gradient.
pub(crate) fn linear(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if x.track_op() && !weight.track_op() {
        x.apply_op1(FrozenMatmul {
            weight: weight.clone(),
        })
    } else {
        x.matmul(&weight.t()?)
    }
}

/// The operation behind [`linear`]; it holds the weight, so the graph sees only `x`.
struct FrozenMatmul {
    weight: Tensor,
}

impl FrozenMatmul {
    /// `x · Wᵀ` through the backend's matmul, with `W`'s layout transposed (no copy).
    fn product<S: BackendStorage>(
        x: &S,
        x_layout: &Layout,
        weight: &S,
        weight_layout: &Layout,
    ) -> Result<(S, Shape)> {
        let (rows, inner) = x_layout.shape().dims2()?;
        let (out, weight_inner) = weight_layout.shape().dims2()?;
        if inner != weight_inner {
            bail!("frozen-matmul: x is [{rows}, {inner}] but the weight is [{out}, {weight_inner}]")
        }
        let transposed = weight_layout.transpose(0, 1)?;
        let y = x.matmul(weight, (1, rows, out, inner), x_layout, &transposed)?;
        Ok((y, Shape::from((rows, out))))
    }
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (storage, weight_layout) = self.weight.storage_and_layout();
        let Storage::Cpu(weight) = &*storage else {
            bail!("frozen-matmul: x is on the CPU but the weight is not")
        };
        Self::product(x, layout, weight, weight_layout)
    }

    fn cuda_fwd(&self, x: &CudaStorage, layout: &Layout) -> Result<(CudaStorage, Shape)> {
        let (storage, weight_layout) = self.weight.storage_and_layout();
        let Storage::Cuda(weight) = &*storage else {
            bail!("frozen-matmul: x is on a CUDA device but the weight is not")
        };
        Self::product(x, layout, weight, weight_layout)
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.weight)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::tests::random;
    use candle_core::{DType, Var};
    use proptest::prelude::*;

    /// The value of `x · Wᵀ`, the gradient of `sum(y ∘ probe)` for `x`, and the shapes of
    /// every tensor in the gradient store.
    fn run(
        product: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
        x: &Tensor,
        weight: &Tensor,
    ) -> (Vec<f32>, Vec<f32>, Vec<Vec<usize>>) {
        let x = Var::from_tensor(x).unwrap();
        let y = product(x.as_tensor(), weight).unwrap();
        let probe = random(y.dims(), 7);
        let grads = (&y * probe).unwrap().sum_all().unwrap().backward().unwrap();
        let shapes = grads
            .get_ids()
            .map(|id| grads.get_id(*id).unwrap().dims().to_vec())
            .collect();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (flat(&y), flat(grads.get(x.as_tensor()).unwrap()), shapes)
    }

    fn composed(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
        x.matmul(&weight.t()?)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Same products as candle's matmul, bit for bit, and no weight-shaped gradient.
        #[test]
        fn matches_matmul_and_skips_the_weight_gradient(
            // Disjoint ranges, so a weight-shaped gradient cannot be mistaken for another.
            rows in 9usize..13,
            inner in 1usize..5,
            out in 5usize..9,
            seed in any::<u64>(),
        ) {
            let x = random(&[rows, inner], seed);
            let weight = random(&[out, inner], seed ^ 1);
            let (y, x_grad, shapes) = run(linear, &x, &weight);
            let (expected_y, expected_grad, composed_shapes) = run(composed, &x, &weight);
            prop_assert_eq!(y, expected_y);
            prop_assert_eq!(x_grad, expected_grad);
            prop_assert!(composed_shapes.contains(&vec![inner, out]));
            prop_assert!(!shapes.contains(&vec![inner, out]) && !shapes.contains(&vec![out, inner]));
        }
    }

    #[test]
    fn strided_inputs_and_bf16() {
        // A column slice of a wider matrix and a transposed-then-copied weight.
        let wide = random(&[5, 9], 1);
        let x = wide.narrow(1, 2, 4).unwrap();
        let weight = random(&[4, 3], 2).t().unwrap();
        assert!(!x.is_contiguous() && !weight.is_contiguous());
        let (y, x_grad, _) = run(linear, &x, &weight);
        let (expected_y, expected_grad, _) = run(composed, &x, &weight);
        assert_eq!((y, x_grad), (expected_y, expected_grad));

        let (x, weight) = (
            x.to_dtype(DType::BF16).unwrap(),
            weight.to_dtype(DType::BF16).unwrap(),
        );
        let expected = composed(&x, &weight).unwrap();
        let x = Var::from_tensor(&x).unwrap();
        let y = linear(x.as_tensor(), &weight).unwrap();
        assert_eq!(y.dtype(), DType::BF16);
        let flat = |t: &Tensor| {
            t.to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(flat(&y), flat(&expected));
    }

    #[test]
    fn mismatched_shapes_are_errors_and_trained_weights_keep_their_gradient() {
        let x = Var::from_tensor(&random(&[2, 3], 1)).unwrap();
        let message = linear(x.as_tensor(), &random(&[4, 5], 2))
            .unwrap_err()
            .to_string();
        assert!(message.contains("frozen-matmul"), "{message}");
        // A weight that records a graph takes candle's own matmul (both gradients wanted).
        let weight = Var::from_tensor(&random(&[4, 3], 3)).unwrap();
        let y = linear(x.as_tensor(), weight.as_tensor()).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(weight.as_tensor()).is_some());
    }
}
