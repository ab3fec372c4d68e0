//! Fused CPU kernels with hand-written backward passes for the model's elementwise parts
//! (RMSNorm, rotary embeddings, SwiGLU), each beside the same function composed from candle
//! operations, which other devices use and the tests compare against.
//!
//! Composed, RMSNorm is seven tensor operations and rotary embeddings about ten, each
//! allocating and streaming a full activation (and as many again in the backward pass); on
//! two cores those passes cost as much as the matrix products. A fused kernel reads its inputs
//! once and writes its output once.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, D, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Rows per parallel task in the row-wise kernels.
const ROWS_PER_TASK: usize = 64;
/// Elements per parallel task in the elementwise kernels.
const ELEMENTS_PER_TASK: usize = 1 << 14;

pub(crate) fn fused_on(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32
}

/// `e^x`, written so that a loop over a slice vectorises (the standard library's `exp` is a
/// scalar call into libm, which profiling showed at 8 % of a training step).
///
/// Range reduction `x = n ln 2 + r` with `|r| <= ln 2 / 2` (ln 2 split in two parts so that
/// `n ln 2` is exact), a degree-7 Taylor polynomial for `e^r`, and `2^n` assembled from its
/// exponent bits. Within 2 ulp of the exact value on `[-87.3, 88]`; `0` below (where the
/// result would be subnormal), `e^88` above (the kernels only take `e^x` of `x <= 0` or
/// feed a larger value into `1 / (1 + e^x)`, where either is as good as infinity); NaN stays NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LN2_HIGH: f32 = 0.693_359_4; // 0x3f31_8000: few enough bits that n · LN2_HIGH is exact
    const LN2_LOW: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding it rounds an f32 to an integer, which lands in the low mantissa bits.
    const ROUNDER: f32 = 12_582_912.0;
    const SMALLEST: f32 = -87.3;
    let clamped = x.clamp(SMALLEST, 88.0);
    let shifted = clamped * std::f32::consts::LOG2_E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = (clamped - n * LN2_HIGH) - n * LN2_LOW;
    let poly = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // The bits of `shifted` are ROUNDER's plus n: rebias n by 127 into an exponent field.
    let two_to_n = f32::from_bits(shifted.to_bits().wrapping_sub(0x4b40_0000 - 127) << 23);
    let value = poly * two_to_n;
    if x < SMALLEST {
        0.0
    } else if x.is_nan() {
        x
    } else {
        value
    }
}

/// Lanes of the reductions below: eight independent partial results, so the loop vectorises
/// (a single running sum or maximum is a chain the compiler may not reorder).
const LANES: usize = 8;

/// `Σ f(v)` over `values`.
#[inline(always)]
pub(crate) fn sum_of(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// The largest of `values` (−∞ for none).
#[inline(always)]
pub(crate) fn max_of(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = if v > *lane { v } else { *lane };
        }
    }
    lanes.iter().copied().fold(rest, f32::max)
}

/// The f32 elements of a contiguous CPU tensor (what every fused kernel reads); `op` names the
/// kernel in the error.
pub(crate) fn slice<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op} takes f32 tensors");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op} takes contiguous tensors"),
    }
}

/// A tensor's f32 elements in order, as a hand-written backward pass reads its inputs:
/// borrowed from the tensor's storage when it is a contiguous CPU tensor (the usual case;
/// copying streamed every saved activation once more per backward pass), copied otherwise.
pub(crate) enum Elements<'a> {
    Borrowed {
        storage: candle_core::StorageRef<'a>,
        range: std::ops::Range<usize>,
    },
    Copied(Vec<f32>),
}

impl std::ops::Deref for Elements<'_> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match self {
            Elements::Borrowed { storage, range } => match &**storage {
                candle_core::Storage::Cpu(CpuStorage::F32(data)) => &data[range.clone()],
                _ => unreachable!("`elements` borrows f32 CPU storage only"),
            },
            Elements::Copied(data) => data,
        }
    }
}

pub(crate) fn elements(t: &Tensor) -> candle_core::Result<Elements<'_>> {
    let (storage, layout) = t.storage_and_layout();
    if let (candle_core::Storage::Cpu(CpuStorage::F32(_)), Some((start, end))) =
        (&*storage, layout.contiguous_offsets())
    {
        return Ok(Elements::Borrowed {
            storage,
            range: start..end,
        });
    }
    drop(storage);
    Ok(Elements::Copied(t.flatten_all()?.to_vec1::<f32>()?))
}

/// A gradient as a leaf tensor shaped like `like` (no second-order terms are needed).
pub(crate) fn leaf(data: Vec<f32>, like: &Tensor) -> candle_core::Result<Tensor> {
    Tensor::from_vec(data, like.shape(), like.device()).map(|t| t.detach())
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

/// `x * rsqrt(mean(x², last dim) + eps) * weight`.
pub(crate) fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    if fused_on(x) {
        x.contiguous()?
            .apply_op2(&weight.contiguous()?, FusedRmsNorm { eps: eps as f32 })
    } else {
        composed_rms_norm(x, weight, eps)
    }
}

pub(crate) fn composed_rms_norm(
    x: &Tensor,
    weight: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    // The statistics in f32 whatever the activations' dtype: a bf16 sum of squares over
    // thousands of features loses most of its digits.
    let dtype = x.dtype();
    let x = x.to_dtype(candle_core::DType::F32)?;
    let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?;
    let scale = (mean_square + eps)?.sqrt()?.recip()?;
    x.broadcast_mul(&scale)?
        .to_dtype(dtype)?
        .broadcast_mul(weight)
}

struct FusedRmsNorm {
    eps: f32,
}

fn inverse_rms(row: &[f32], eps: f32) -> f32 {
    let mean = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
    1.0 / (mean + eps).sqrt()
}

/// RMSNorm of every `w.len()`-wide row of `x` (row-major), scaled by `w`.
pub(crate) fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let width = w.len();
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(width * ROWS_PER_TASK)
        .zip(x.par_chunks(width * ROWS_PER_TASK))
        .for_each(|(out_rows, x_rows)| {
            for (o, row) in out_rows.chunks_mut(width).zip(x_rows.chunks(width)) {
                let r = inverse_rms(row, eps);
                for ((o, &v), &g) in o.iter_mut().zip(row).zip(w) {
                    *o = v * r * g;
                }
            }
        });
    out
}

/// [`rms_norm_rows`]'s backward pass: adds `x`'s gradient to `dx` and returns `w`'s. With
/// g = w ∘ dy and r the inverse RMS of the row: dx = r (g − x r² mean(g ∘ x)),
/// dw = Σ_rows dy ∘ x r.
pub(crate) fn rms_norm_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    eps: f32,
    dx: &mut [f32],
) -> Vec<f32> {
    let width = w.len();
    dx.par_chunks_mut(width * ROWS_PER_TASK)
        .zip(x.par_chunks(width * ROWS_PER_TASK))
        .zip(dy.par_chunks(width * ROWS_PER_TASK))
        .map(|((dx_rows, x_rows), dy_rows)| {
            let mut dw = vec![0.0f32; width];
            for ((dx, x), dy) in dx_rows
                .chunks_mut(width)
                .zip(x_rows.chunks(width))
                .zip(dy_rows.chunks(width))
            {
                let r = inverse_rms(x, eps);
                let dot: f32 = (0..width).map(|i| w[i] * dy[i] * x[i]).sum();
                let centre = r * r * dot / width as f32;
                for i in 0..width {
                    dx[i] += r * (w[i] * dy[i] - x[i] * centre);
                    dw[i] += dy[i] * x[i] * r;
                }
            }
            dw
        })
        .reduce(
            || vec![0.0f32; width],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        )
}

impl CustomOp2 for FusedRmsNorm {
    fn name(&self) -> &'static str {
        "agentr-rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w) = (slice(xs, xl, self.name())?, slice(ws, wl, self.name())?);
        let width = w.len();
        if width == 0 || xl.dims().last() != Some(&width) {
            candle_core::bail!("rms_norm: weight of {width} for input {:?}", xl.dims());
        }
        Ok((
            CpuStorage::F32(rms_norm_rows(x, w, self.eps)),
            xl.shape().clone(),
        ))
    }

    /// See [`rms_norm_backward`].
    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _out: &Tensor,
        grad_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (xs, w, dy) = (elements(x)?, elements(weight)?, elements(grad_out)?);
        let mut dx = vec![0.0f32; xs.len()];
        let dw = rms_norm_backward(&xs, &w, &dy, self.eps, &mut dx);
        Ok((Some(leaf(dx, x)?), Some(leaf(dw, weight)?)))
    }
}

// ---------------------------------------------------------------------------------------------
// SwiGLU

/// `silu(gate) * up` with `silu(x) = x · sigmoid(x)`.
pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    if fused_on(gate) {
        gate.contiguous()?.apply_op2(&up.contiguous()?, FusedSwiGlu)
    } else {
        composed_swiglu(gate, up)
    }
}

pub(crate) fn composed_swiglu(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    (gate * candle_nn::ops::sigmoid(gate)?)? * up
}

struct FusedSwiGlu;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `silu(gate) * up`, element by element.
pub(crate) fn swiglu_values(gate: &[f32], up: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; gate.len()];
    out.par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(gate.par_chunks(ELEMENTS_PER_TASK))
        .zip(up.par_chunks(ELEMENTS_PER_TASK))
        .for_each(|((o, g), u)| {
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = g * sigmoid(g) * u;
            }
        });
    out
}

/// The gradients of gate and up given the output's `dy`: d up = dy · g s; d gate = dy · u · s
/// (1 + g (1 − s)), with s = sigmoid(g).
pub(crate) fn swiglu_backward(g: &[f32], u: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut dg = vec![0.0f32; g.len()];
    let mut du = vec![0.0f32; g.len()];
    dg.par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(du.par_chunks_mut(ELEMENTS_PER_TASK))
        .zip(g.par_chunks(ELEMENTS_PER_TASK))
        .zip(
            u.par_chunks(ELEMENTS_PER_TASK)
                .zip(dy.par_chunks(ELEMENTS_PER_TASK)),
        )
        .for_each(|(((dg, du), g), (u, dy))| {
            for i in 0..g.len() {
                let s = sigmoid(g[i]);
                du[i] = dy[i] * g[i] * s;
                dg[i] = dy[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
            }
        });
    (dg, du)
}

impl CustomOp2 for FusedSwiGlu {
    fn name(&self) -> &'static str {
        "agentr-swiglu"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (gate, up) = (slice(gs, gl, self.name())?, slice(us, ul, self.name())?);
        if gl.dims() != ul.dims() {
            candle_core::bail!("swiglu: gate {:?} and up {:?} differ", gl.dims(), ul.dims());
        }
        Ok((CpuStorage::F32(swiglu_values(gate, up)), gl.shape().clone()))
    }

    /// See [`swiglu_backward`].
    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _out: &Tensor,
        grad_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (g, u, dy) = (elements(gate)?, elements(up)?, elements(grad_out)?);
        let (dg, du) = swiglu_backward(&g, &u, &dy);
        Ok((Some(leaf(dg, gate)?), Some(leaf(du, up)?)))
    }
}

// ---------------------------------------------------------------------------------------------
// Rotary embeddings

/// Rotates `x` `[batch, heads, seq, head_dim]` by the angles whose cosines and sines are
/// `cos`, `sin` `[seq, head_dim / 2]` (the half-split layout of Hugging Face Llama).
pub(crate) fn rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    if fused_on(x) {
        let op = FusedRotary {
            cos: elements(cos)?.to_vec(),
            sin: elements(sin)?.to_vec(),
        };
        x.contiguous()?.apply_op1(op)
    } else {
        composed_rotary(x, cos, sin)
    }
}

pub(crate) fn composed_rotary(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
) -> candle_core::Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let rotated_1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let rotated_2 = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    Tensor::cat(&[rotated_1, rotated_2], D::Minus1)
}

struct FusedRotary {
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl FusedRotary {
    /// Rotates every `[seq, dim]` block of `x` by `sign ·` the angles (−1 undoes it).
    fn rotate(&self, x: &[f32], dims: &[usize], sign: f32) -> candle_core::Result<Vec<f32>> {
        let [_, _, seq, dim] = dims else {
            candle_core::bail!("rotary takes [batch, heads, seq, head_dim], got {dims:?}");
        };
        if self.cos.len() != seq * (dim / 2) || dim % 2 != 0 {
            candle_core::bail!("rotary tables of {} for shape {dims:?}", self.cos.len());
        }
        let mut out = vec![0.0f32; x.len()];
        rotate_heads(x, &self.cos, &self.sin, *dim, sign, &mut out);
        Ok(out)
    }
}

/// Rotates every `[seq, dim]` block of `x` (`seq` = `cos.len() / (dim / 2)`) into `out` by
/// `sign ·` the angles whose cosines and sines are `cos`, `sin` `[seq, dim / 2]`.
pub(crate) fn rotate_heads(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    dim: usize,
    sign: f32,
    out: &mut [f32],
) {
    let half = dim / 2;
    let seq = cos.len() / half.max(1);
    out.par_chunks_mut(seq * dim)
        .zip(x.par_chunks(seq * dim))
        .for_each(|(out, x)| {
            for t in 0..seq {
                let (row, o) = (&x[t * dim..(t + 1) * dim], &mut out[t * dim..(t + 1) * dim]);
                let (cos, sin) = (&cos[t * half..], &sin[t * half..]);
                for i in 0..half {
                    let (c, s) = (cos[i], sign * sin[i]);
                    o[i] = row[i] * c - row[half + i] * s;
                    o[half + i] = row[half + i] * c + row[i] * s;
                }
            }
        });
}

impl CustomOp1 for FusedRotary {
    fn name(&self) -> &'static str {
        "agentr-rotary"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = self.rotate(slice(s, l, self.name())?, l.dims(), 1.0)?;
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    /// A rotation's transpose is the rotation by the opposite angle.
    fn bwd(
        &self,
        x: &Tensor,
        _out: &Tensor,
        grad_out: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let dx = self.rotate(&elements(grad_out)?, grad_out.dims(), -1.0)?;
        Ok(Some(leaf(dx, x)?))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::{Device, Var};

    pub(crate) fn random(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = agentr_envs::rng::Rng::new(seed);
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.unit_f64() as f32 * 2.0 - 1.0).collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// The largest absolute difference between `f` and `g` over the output and the gradients
    /// of `sum(out ∘ probe)` with respect to every input, by name ("out", then one per input).
    pub(crate) fn compare(
        f: impl Fn(&[Tensor]) -> candle_core::Result<Tensor>,
        g: impl Fn(&[Tensor]) -> candle_core::Result<Tensor>,
        inputs: &[Tensor],
        seed: u64,
    ) -> Vec<f32> {
        let run = |h: &dyn Fn(&[Tensor]) -> candle_core::Result<Tensor>| {
            let vars: Vec<Var> = inputs
                .iter()
                .map(|t| Var::from_tensor(t).unwrap())
                .collect();
            let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
            let out = h(&tensors).unwrap();
            let probe = random(out.dims(), seed);
            let grads = (&out * probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let mut results = vec![out];
            results.extend(
                vars.iter()
                    .map(|v| grads.get(v.as_tensor()).unwrap().clone()),
            );
            results
        };
        let (a, b) = (run(&f), run(&g));
        a.iter()
            .zip(&b)
            .map(|(a, b)| max_difference(a, b))
            .collect()
    }

    /// The largest absolute difference between two tensors of one shape.
    pub(crate) fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    fn assert_close(diffs: &[f32], what: &str) {
        assert!(
            diffs.iter().all(|d| *d < 1e-4),
            "{what}: differences {diffs:?}"
        );
    }

    #[test]
    fn fused_rms_norm_matches_composed() {
        for (rows, width, seed) in [(1, 4, 1), (3, 32, 2), (130, 16, 3)] {
            let inputs = [random(&[rows, width], seed), random(&[width], seed + 1)];
            let diffs = compare(
                |t| rms_norm(&t[0], &t[1], 1e-5),
                |t| composed_rms_norm(&t[0], &t[1], 1e-5),
                &inputs,
                seed,
            );
            assert_close(&diffs, &format!("rms_norm {rows}x{width}"));
        }
    }

    #[test]
    fn fused_swiglu_matches_composed() {
        for (n, seed) in [(1, 1), (7, 2), (40_000, 3)] {
            let inputs = [random(&[n], seed), random(&[n], seed + 1)];
            let diffs = compare(
                |t| swiglu(&t[0], &t[1]),
                |t| composed_swiglu(&t[0], &t[1]),
                &inputs,
                seed,
            );
            assert_close(&diffs, &format!("swiglu {n}"));
        }
    }

    #[test]
    fn fused_rotary_matches_composed() {
        for (shape, seed) in [([1, 1, 1, 2], 1u64), ([2, 3, 5, 8], 2), ([1, 2, 70, 16], 3)] {
            let (seq, half) = (shape[2], shape[3] / 2);
            let cos = random(&[seq, half], seed + 10);
            let sin = random(&[seq, half], seed + 11);
            let diffs = compare(
                |t| rotary(&t[0], &cos, &sin),
                |t| composed_rotary(&t[0], &cos, &sin),
                &[random(&shape, seed)],
                seed,
            );
            assert_close(&diffs, &format!("rotary {shape:?}"));
        }
    }

    /// Relative error against f64's `exp` in units of f32's epsilon.
    fn exp_error_ulps(x: f32) -> f64 {
        let exact = f64::from(x).exp();
        (f64::from(exp(x)) - exact).abs() / exact / f64::from(f32::EPSILON)
    }

    #[test]
    fn exp_is_within_two_ulp_over_its_range() {
        let worst = (0..=200_000)
            .map(|i| -87.3 + 175.3 * i as f32 / 200_000.0)
            .map(exp_error_ulps)
            .fold(0.0, f64::max);
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::INFINITY), exp(88.0));
        assert!(exp(f32::NAN).is_nan());
    }

    proptest::proptest! {
        #[test]
        fn exp_is_accurate_non_negative_and_monotone(a in proptest::num::f32::ANY, b in -87.3f32..88.0) {
            let (ea, eb) = (exp(a), exp(b));
            proptest::prop_assert!(a.is_nan() || ea >= 0.0);
            proptest::prop_assert!(exp_error_ulps(b) <= 2.0, "exp({}) off by {} ulp", b, exp_error_ulps(b));
            if !a.is_nan() && a <= b {
                proptest::prop_assert!(ea <= eb, "exp({}) = {} > exp({}) = {}", a, ea, b, eb);
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let x = random(&[2, 8], 1);
        assert!(rms_norm(&x, &random(&[4], 2), 1e-5).is_err());
        assert!(swiglu(&x, &random(&[2, 4], 3)).is_err());
        let tables = random(&[3, 4], 4);
        assert!(rotary(&random(&[1, 1, 2, 8], 5), &tables, &tables).is_err());
    }
}
