//! Products with a frozen weight: `x · Wᵀ` whose backward pass computes `x`'s gradient only.
//!
//! candle's matmul backward always computes both operands' gradients, even when one of them
//! records no graph. Under LoRA every base projection and the language-model head are frozen,
//! so each training step would pay for one `[out, in]` weight-gradient product per projection
//! (the size of the forward product) plus a buffer to sum it into, and then drop it: about a
//! third of the step's matrix work. [`linear`] routes such products through [`FrozenMatmul`],
//! a custom operation whose forward is candle's own matmul on the raw storages (any device
//! with a matmul, CPU and CUDA alike) and whose backward is `grad · W`.
//!
//! A LoRA projection `x Wᵀ + s (x Aᵀ) Bᵀ` composed from candle operations is five graph
//! nodes, two of them `[rows, out]` (the low-rank product and the sum), and candle's backward
//! pass accumulates every node's gradient into a zeroed buffer of its size: per projection,
//! several passes over `[rows, out]` that the matrix products do not need. [`lora_linear`]
//! is one node on the CPU: the low-rank product is accumulated into the base product's
//! output by gemm, and the backward pass accumulates `x`'s two gradient terms the same way.
//!
//! A trained weight (full fine-tuning) through candle's `x.matmul(&w.t())` is two graph nodes,
//! the transposition and the product: the backward pass sums `[in, out]` into a zeroed buffer
//! for the transposed view, then sums its transposition (a strided read) into another zeroed
//! buffer for the weight. [`TrainedMatmul`] computes `gradᵀ · x` directly in the weight's
//! `[out, in]` layout, one node and one sum per weight.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Storage,
    Tensor, bail,
};

use crate::fused::{elements, fused_on, leaf, slice};
use crate::products::{View, parallel_matmul_into};

/// `x · weightᵀ` for a 2-D `x` (`[rows, in]`) and `weight` (`[out, in]`). When `x` is part of
/// a graph and `weight` is not (a frozen weight), backward computes no weight gradient; a
/// trained f32 weight on the CPU gets its gradient from one fused operation.
pub(crate) fn linear(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if x.track_op() && !weight.track_op() {
        x.apply_op1(FrozenMatmul {
            weight: weight.clone(),
        })
    } else if weight.track_op() && fused_on(x) && fused_on(weight) && x.rank() == 2 {
        x.contiguous()?
            .apply_op2(&weight.contiguous()?, TrainedMatmul)
    } else {
        x.matmul(&weight.t()?)
    }
}

/// `x · Wᵀ` for a weight that trains: the backward pass gives `grad · W` and `gradᵀ · x`.
struct TrainedMatmul;

impl CustomOp2 for TrainedMatmul {
    fn name(&self) -> &'static str {
        "agentr-trained-matmul"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (x, weight) = (slice(xs, xl, name)?, slice(ws, wl, name)?);
        let (rows, inner) = xl.shape().dims2()?;
        let (out, weight_inner) = wl.shape().dims2()?;
        if inner != weight_inner {
            bail!("{name}: x is [{rows}, {inner}] but the weight is [{out}, {weight_inner}]")
        }
        let (y, _) = Operands::plain(weight, out, inner).forward(x, rows);
        Ok((CpuStorage::F32(y), Shape::from((rows, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (rows, inner) = x.dims2()?;
        let (out, _) = weight.dims2()?;
        let (xs, ws, gs) = (elements(x)?, elements(weight)?, elements(grad)?);
        let mut gx = x.track_op().then(|| vec![0.0f32; rows * inner]);
        let grads =
            Operands::plain(&ws, out, inner).backward(&xs, &[], &gs, rows, gx.as_deref_mut(), true);
        let gx = gx.map(|gx| leaf(gx, x)).transpose()?;
        Ok((gx, grads.weight.map(|gw| leaf(gw, weight)).transpose()?))
    }
}

/// One projection's operands as slices: `y = x Wᵀ + scale (x Aᵀ) Bᵀ` with `weight` `[out,
/// inner]` and an optional adapter `a` `[rank, inner]`, `b` `[out, rank]`. The fused
/// operations share its forward and backward products.
#[derive(Clone, Copy)]
pub(crate) struct Operands<'a> {
    pub(crate) weight: &'a [f32],
    pub(crate) out: usize,
    pub(crate) inner: usize,
    pub(crate) adapter: Option<Adapter<'a>>,
}

/// A LoRA adapter's operands.
#[derive(Clone, Copy)]
pub(crate) struct Adapter<'a> {
    pub(crate) a: &'a [f32],
    pub(crate) b: &'a [f32],
    pub(crate) rank: usize,
    pub(crate) scale: f32,
}

/// The parameter gradients of one projection's backward pass (those asked for).
pub(crate) struct ProjectionGradients {
    pub(crate) weight: Option<Vec<f32>>,
    pub(crate) a: Option<Vec<f32>>,
    pub(crate) b: Option<Vec<f32>>,
}

impl<'a> Operands<'a> {
    /// A projection without an adapter.
    pub(crate) fn plain(weight: &'a [f32], out: usize, inner: usize) -> Self {
        Operands {
            weight,
            out,
            inner,
            adapter: None,
        }
    }

    /// `y` `[rows, out]` for `x` `[rows, inner]`, and `x Aᵀ` `[rows, rank]` (empty without an
    /// adapter), which the backward pass reads.
    pub(crate) fn forward(&self, x: &[f32], rows: usize) -> (Vec<f32>, Vec<f32>) {
        let (out, inner) = (self.out, self.inner);
        let x_view = View::rows(x, rows, inner, inner);
        let mut y = vec![0.0f32; rows * out];
        parallel_matmul_into(
            &mut y,
            out,
            x_view,
            View::rows(self.weight, out, inner, inner).t(),
            1.0,
            false,
        );
        let Some(Adapter { b, rank, scale, .. }) = self.adapter else {
            return (y, Vec::new());
        };
        let low = self.low(x, rows);
        parallel_matmul_into(
            &mut y,
            out,
            View::rows(&low, rows, rank, rank),
            View::rows(b, out, rank, rank).t(),
            scale,
            true,
        );
        (y, low)
    }

    /// `x Aᵀ` (`[rows, rank]`; empty without an adapter).
    pub(crate) fn low(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let Some(Adapter { a, rank, .. }) = self.adapter else {
            return Vec::new();
        };
        let inner = self.inner;
        let mut low = vec![0.0f32; rows * rank];
        parallel_matmul_into(
            &mut low,
            rank,
            View::rows(x, rows, inner, inner),
            View::rows(a, rank, inner, inner).t(),
            1.0,
            false,
        );
        low
    }

    /// The backward pass given `grad` (`dL/dy`): adds `dL/dx` to `gx` when given, and returns
    /// the adapter's gradients (with an adapter) and the weight's (when `weight_trains`).
    /// `low` is what [`Operands::forward`] returned beside `y`.
    pub(crate) fn backward(
        &self,
        x: &[f32],
        low: &[f32],
        grad: &[f32],
        rows: usize,
        gx: Option<&mut [f32]>,
        weight_trains: bool,
    ) -> ProjectionGradients {
        let (out, inner) = (self.out, self.inner);
        let x_view = View::rows(x, rows, inner, inner);
        let g_view = View::rows(grad, rows, out, out);
        let mut gradients = ProjectionGradients {
            weight: None,
            a: None,
            b: None,
        };
        if weight_trains {
            let mut gw = vec![0.0f32; out * inner];
            parallel_matmul_into(&mut gw, inner, g_view.t(), x_view, 1.0, false);
            gradients.weight = Some(gw);
        }
        // dL/d(x Aᵀ) = s · grad · B, at rank width.
        let g_low = self.adapter.map(|Adapter { b, rank, scale, .. }| {
            let mut g_low = vec![0.0f32; rows * rank];
            let b_view = View::rows(b, out, rank, rank);
            parallel_matmul_into(&mut g_low, rank, g_view, b_view, scale, false);
            g_low
        });
        if let Some(gx) = gx {
            // dL/dx += grad · W + (s · grad · B) · A.
            let weight = View::rows(self.weight, out, inner, inner);
            parallel_matmul_into(gx, inner, g_view, weight, 1.0, true);
            if let (Some(g_low), Some(Adapter { a, rank, .. })) = (&g_low, self.adapter) {
                let a_view = View::rows(a, rank, inner, inner);
                parallel_matmul_into(
                    gx,
                    inner,
                    View::rows(g_low, rows, rank, rank),
                    a_view,
                    1.0,
                    true,
                );
            }
        }
        if let (Some(g_low), Some(Adapter { rank, scale, .. })) = (g_low, self.adapter) {
            // dL/dA = (s · grad · B)ᵀ · x.
            let mut ga = vec![0.0f32; rank * inner];
            let g_low_view = View::rows(&g_low, rows, rank, rank);
            parallel_matmul_into(&mut ga, inner, g_low_view.t(), x_view, 1.0, false);
            // dL/dB = s · gradᵀ · (x Aᵀ).
            let mut gb = vec![0.0f32; out * rank];
            let low_view = View::rows(low, rows, rank, rank);
            parallel_matmul_into(&mut gb, rank, g_view.t(), low_view, scale, false);
            gradients.a = Some(ga);
            gradients.b = Some(gb);
        }
        gradients
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

/// `x · weightᵀ + scale · (x · aᵀ) · bᵀ` for a 2-D `x` (`[rows, in]`), a frozen `weight`
/// (`[out, in]`) and a LoRA adapter `a` (`[rank, in]`), `b` (`[out, rank]`): one fused
/// operation for f32 on the CPU when `weight` records no graph, candle operations otherwise.
pub(crate) fn lora_linear(
    x: &Tensor,
    weight: &Tensor,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    if fused_on(x) && !weight.track_op() && x.rank() == 2 {
        let weight = weight.contiguous()?;
        x.contiguous()?.apply_op3(
            &a.contiguous()?,
            &b.contiguous()?,
            FusedLora {
                weight,
                scale: scale as f32,
            },
        )
    } else {
        composed_lora_linear(x, weight, a, b, scale)
    }
}

/// The same function from candle operations (differentiable through candle's autograd).
pub(crate) fn composed_lora_linear(
    x: &Tensor,
    weight: &Tensor,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    linear(x, weight)? + low_rank(x, a, b, scale)?
}

/// `scale · (x · aᵀ) · bᵀ`, the adapter's term, from candle operations.
pub(crate) fn low_rank(x: &Tensor, a: &Tensor, b: &Tensor, scale: f64) -> Result<Tensor> {
    // Scaled at rank width ([rows, rank]), not at output width.
    (x.matmul(&a.t()?)? * scale)?.matmul(&b.t()?)
}

/// The operation behind [`lora_linear`]'s CPU path; it holds the frozen weight, so the graph
/// sees only `x` and the adapter.
struct FusedLora {
    weight: Tensor,
    scale: f32,
}

impl CustomOp3 for FusedLora {
    fn name(&self) -> &'static str {
        "agentr-lora-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        a_s: &CpuStorage,
        al: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (x, a, b) = (
            slice(xs, xl, name)?,
            slice(a_s, al, name)?,
            slice(bs, bl, name)?,
        );
        let (rows, inner) = xl.shape().dims2()?;
        let (rank, a_inner) = al.shape().dims2()?;
        let (out, b_rank) = bl.shape().dims2()?;
        let (weight_out, weight_inner) = self.weight.dims2()?;
        if (a_inner, b_rank, weight_out, weight_inner) != (inner, rank, out, inner) {
            bail!(
                "{name}: x [{rows}, {inner}], A [{rank}, {a_inner}], B [{out}, {b_rank}] and the \
                 weight [{weight_out}, {weight_inner}] do not fit"
            )
        }
        let (storage, weight_layout) = self.weight.storage_and_layout();
        let weight = slice_of(&storage, weight_layout, name)?;
        let (y, _) = self
            .operands(weight, a, b, out, inner, rank)
            .forward(x, rows);
        Ok((CpuStorage::F32(y), Shape::from((rows, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (rows, inner) = x.dims2()?;
        let (rank, _) = a.dims2()?;
        let (out, _) = b.dims2()?;
        let (xs, a_s, bs, gs) = (elements(x)?, elements(a)?, elements(b)?, elements(grad)?);
        let (storage, weight_layout) = self.weight.storage_and_layout();
        let weight = slice_of(&storage, weight_layout, self.name())?;
        let operands = self.operands(weight, &a_s, &bs, out, inner, rank);
        // The forward pass's x Aᵀ, recomputed at rank width rather than kept.
        let low = operands.low(&xs, rows);
        let mut gx = vec![0.0f32; rows * inner];
        let grads = operands.backward(&xs, &low, &gs, rows, Some(&mut gx), false);
        let (Some(ga), Some(gb)) = (grads.a, grads.b) else {
            bail!("{}: the adapter's gradients are missing", self.name())
        };
        Ok((Some(leaf(gx, x)?), Some(leaf(ga, a)?), Some(leaf(gb, b)?)))
    }
}

impl FusedLora {
    fn operands<'a>(
        &self,
        weight: &'a [f32],
        a: &'a [f32],
        b: &'a [f32],
        out: usize,
        inner: usize,
        rank: usize,
    ) -> Operands<'a> {
        Operands {
            weight,
            out,
            inner,
            adapter: Some(Adapter {
                a,
                b,
                rank,
                scale: self.scale,
            }),
        }
    }
}

/// The frozen weight's f32 elements (contiguous, as [`lora_linear`] makes it).
fn slice_of<'a>(storage: &'a Storage, layout: &Layout, name: &str) -> Result<&'a [f32]> {
    match storage {
        Storage::Cpu(cpu) => slice(cpu, layout, name),
        _ => bail!("{name}: x is on the CPU but the weight is not"),
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The fused LoRA projection gives the composed one's output and the gradients of x,
        /// A and B (the frozen weight gets none), over shapes from one row and rank one up.
        #[test]
        fn fused_lora_matches_the_composed_projection(
            rows in 1usize..20,
            inner in 1usize..12,
            rank in 1usize..5,
            out in 1usize..10,
            scale in -3.0f64..3.0,
            seed in any::<u64>(),
        ) {
            let x = random(&[rows, inner], seed);
            let weight = random(&[out, inner], seed ^ 1);
            let a = random(&[rank, inner], seed ^ 2);
            let b = random(&[out, rank], seed ^ 3);
            let differences = crate::fused::tests::compare(
                |t| lora_linear(&t[0], &weight, &t[1], &t[2], scale),
                |t| composed_lora_linear(&t[0], &weight, &t[1], &t[2], scale),
                &[x, a, b],
                seed ^ 4,
            );
            for (what, difference) in ["out", "x", "a", "b"].iter().zip(differences) {
                prop_assert!(difference < 1e-4, "{} differs by {}", what, difference);
            }
        }
    }

    #[test]
    fn fused_lora_reads_strided_inputs_and_names_shape_errors() {
        let wide = Var::from_tensor(&random(&[6, 9], 1)).unwrap();
        let x = wide.as_tensor().narrow(1, 2, 4).unwrap();
        assert!(!x.is_contiguous());
        let weight = random(&[3, 4], 2);
        let a = Var::from_tensor(&random(&[2, 4], 3)).unwrap();
        let b = Var::from_tensor(&random(&[3, 2], 4)).unwrap();
        let fused = lora_linear(&x, &weight, a.as_tensor(), b.as_tensor(), 0.5).unwrap();
        let composed =
            composed_lora_linear(&x, &weight, a.as_tensor(), b.as_tensor(), 0.5).unwrap();
        assert!(crate::fused::tests::max_difference(&fused, &composed) < 1e-5);
        let grads = fused.sum_all().unwrap().backward().unwrap();
        let expected = composed.sum_all().unwrap().backward().unwrap();
        for t in [wide.as_tensor(), a.as_tensor(), b.as_tensor()] {
            let difference = crate::fused::tests::max_difference(
                grads.get(t).unwrap(),
                expected.get(t).unwrap(),
            );
            assert!(difference < 1e-5);
        }
        let wrong = random(&[3, 5], 5);
        let message = lora_linear(&x, &wrong, a.as_tensor(), b.as_tensor(), 0.5)
            .unwrap_err()
            .to_string();
        assert!(message.contains("agentr-lora-linear"), "{message}");
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
        // A weight that records a graph gets its gradient too.
        let weight = Var::from_tensor(&random(&[4, 3], 3)).unwrap();
        let y = linear(x.as_tensor(), weight.as_tensor()).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(weight.as_tensor()).is_some());
        let message = linear(
            x.as_tensor(),
            Var::from_tensor(&random(&[4, 5], 4)).unwrap().as_tensor(),
        )
        .unwrap_err()
        .to_string();
        assert!(message.contains("agentr-trained-matmul"), "{message}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// A trained weight's product gives candle's matmul output and the gradients of x and
        /// the weight. (That the fused operation is the one taken is shown by its name in
        /// the shape error above: candle's gradient store drops the intermediate nodes'
        /// gradients, so their shapes cannot show it.)
        #[test]
        fn trained_weight_matches_matmul(
            rows in 1usize..9,
            inner in 9usize..13,
            out in 13usize..17,
            seed in any::<u64>(),
        ) {
            let x = random(&[rows, inner], seed);
            let weight = random(&[out, inner], seed ^ 1);
            let differences = crate::fused::tests::compare(
                |t| linear(&t[0], &t[1]),
                |t| composed(&t[0], &t[1]),
                &[x.clone(), weight.clone()],
                seed ^ 2,
            );
            for (what, difference) in ["out", "x", "weight"].iter().zip(differences) {
                prop_assert!(difference < 1e-4, "{} differs by {}", what, difference);
            }
        }
    }
}
