//! Products `x · Wᵀ` of a few activation rows with a weight matrix (decoding: one row per
//! sample being generated), in f32 or with 8-bit weights.
//!
//! Decoding reads every weight once per token for a handful of rows, so it is bound by memory
//! bandwidth, not by arithmetic. A general matrix kernel (gemm, which candle calls) packs its
//! operands into blocks for reuse that a single row never gets: for SmolLM2 it took two thirds
//! of a decoding step. Here each output is a dot product of contiguous weight rows with the
//! activation rows, the weight row is loaded once for all of them, and the outputs are split
//! between the threads. [`Int8Matrix`] stores the weights as signed bytes with one f32 scale
//! per block of [`BLOCK`] inputs (llama.cpp's Q8_0 layout, with an f32 scale): a quarter of the
//! bytes to stream. The activation rows are quantised the same way for each product, so a
//! block's dot product is a sum of byte products in integers (as llama.cpp does for Q8_0),
//! which takes a third of the instructions of converting each weight to f32.

use candle_core::{CpuStorage, DType, Storage, Tensor};

/// Inputs per quantisation block of [`Int8Matrix`].
pub(crate) const BLOCK: usize = 32;

/// The most activation rows [`f32_product`] and [`int8_product`] are meant for: beyond that a
/// blocked matrix kernel reuses each loaded weight more than they do.
pub(crate) const MAX_ROWS: usize = 8;

/// Outputs per parallel task, at least: a task should stream tens of kilobytes of weights to
/// be worth a thread hand-off.
const MIN_OUTPUTS_PER_TASK: usize = 16;

/// A matrix `[out, inner]` as signed bytes, with one scale per row and block of [`BLOCK`]
/// inputs: `w[o][i] ≈ values[o * inner + i] * scales[o * blocks + i / BLOCK]`.
#[derive(Debug, Clone)]
pub(crate) struct Int8Matrix {
    out: usize,
    inner: usize,
    values: Vec<i8>,
    scales: Vec<f32>,
}

impl Int8Matrix {
    /// Quantises the row-major `[out, inner]` matrix `w`: each block's scale maps its largest
    /// magnitude to 127, and values round to the nearest step.
    pub(crate) fn quantize(w: &[f32], out: usize, inner: usize) -> Self {
        assert_eq!(w.len(), out * inner, "weight of the wrong size");
        let blocks = inner.div_ceil(BLOCK);
        let mut values = vec![0i8; out * inner];
        let mut scales = vec![0f32; out * blocks];
        for o in 0..out {
            let row = &w[o * inner..(o + 1) * inner];
            for (b, block) in row.chunks(BLOCK).enumerate() {
                let largest = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = largest / 127.0;
                scales[o * blocks + b] = scale;
                let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                let start = o * inner + b * BLOCK;
                for (slot, v) in values[start..start + block.len()].iter_mut().zip(block) {
                    // Half away from zero, as `round`, without its libm call.
                    let scaled = v * inverse;
                    *slot = (scaled + 0.5f32.copysign(scaled)).clamp(-127.0, 127.0) as i8;
                }
            }
        }
        Int8Matrix {
            out,
            inner,
            values,
            scales,
        }
    }
}

/// `x · weightᵀ` for a 2-D `x` (`[rows, in]`) and `weight` (`[out, in]`) when nothing needs a
/// gradient (the result records no graph): with `int8` (the same weight in 8 bits) when given
/// and `x` has at most [`MAX_ROWS`] rows, with [`f32_product`] for such rows of f32 on the CPU,
/// and with candle's matmul otherwise (a prefill, another device or dtype).
pub(crate) fn linear(
    x: &Tensor,
    weight: &Tensor,
    int8: Option<&Int8Matrix>,
) -> candle_core::Result<Tensor> {
    let (rows, inner) = x.dims2()?;
    let (out, weight_inner) = weight.dims2()?;
    if inner != weight_inner {
        candle_core::bail!(
            "linear: x is [{rows}, {inner}] but the weight is [{out}, {weight_inner}]"
        )
    }
    let few_f32_rows =
        rows > 0 && rows <= MAX_ROWS && x.device().is_cpu() && x.dtype() == DType::F32;
    let activations = || x.flatten_all()?.to_vec1::<f32>();
    let y = match (few_f32_rows, int8) {
        (false, _) => None,
        (true, Some(packed)) => Some(int8_product(&activations()?, rows, packed)),
        (true, None) => {
            let (storage, layout) = weight.storage_and_layout();
            match (&*storage, layout.contiguous_offsets()) {
                (Storage::Cpu(CpuStorage::F32(values)), Some((begin, end))) => {
                    Some(f32_product(&activations()?, rows, &values[begin..end], out))
                }
                _ => None,
            }
        }
    };
    match y {
        Some(y) => Tensor::from_vec(y, (rows, out), x.device()),
        None => x.detach().matmul(&weight.detach().t()?),
    }
}

/// `x · wᵀ` for `x` row-major `[rows, inner]` and `w` row-major `[out, inner]`: `[rows, out]`.
pub(crate) fn f32_product(x: &[f32], rows: usize, w: &[f32], out: usize) -> Vec<f32> {
    let inner = x.len().checked_div(rows).unwrap_or(0);
    assert_eq!(x.len(), rows * inner, "activations of the wrong size");
    assert_eq!(w.len(), out * inner, "weight of the wrong size");
    product(rows, out, |outputs, sums| {
        kernels::f32_rows(x, rows, inner, w, outputs, sums);
    })
}

/// `x · wᵀ` with the 8-bit weight `w`, `x` quantised to 8 bits by blocks: `[rows, w.out]`.
pub(crate) fn int8_product(x: &[f32], rows: usize, w: &Int8Matrix) -> Vec<f32> {
    assert_eq!(x.len(), rows * w.inner, "activations of the wrong size");
    let x = Int8Matrix::quantize(x, rows, w.inner);
    product(rows, w.out, |outputs, sums| {
        kernels::int8_rows(&x, w, outputs, sums);
    })
}

/// Runs `compute(outputs, sums)` over ranges of outputs in parallel ([`crate::parallel`]),
/// where `sums` is `[outputs.len(), rows]` (output-major), and gathers the result as
/// `[rows, out]`.
fn product(
    rows: usize,
    out: usize,
    compute: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
) -> Vec<f32> {
    let per_task = out
        .div_ceil(4 * crate::parallel::threads())
        .max(MIN_OUTPUTS_PER_TASK)
        .min(out.max(1));
    let mut sums = vec![0f32; out * rows];
    crate::parallel::for_each_chunk(&mut sums, per_task * rows, |task, part| {
        let first = task * per_task;
        compute(first..first + part.len() / rows, part);
    });
    let mut y = vec![0f32; rows * out];
    for (o, per_row) in sums.chunks_exact(rows.max(1)).enumerate() {
        for (r, value) in per_row.iter().enumerate() {
            y[r * out + o] = *value;
        }
    }
    y
}

/// The dot-product loops: portable ones, and AVX2 + FMA ones chosen at run time when the CPU
/// has them (as gemm does). Both compute the same sums per block; only the order of the f32
/// additions differs.
mod kernels {
    use super::{BLOCK, Int8Matrix};

    /// Calls `group(size, first)` for groups of 4, 2 and 1 rows covering `0..rows` (a group
    /// shares each loaded weight row).
    fn run_groups(rows: usize, mut group: impl FnMut(usize, usize)) {
        let mut first = 0;
        while first < rows {
            let size = match rows - first {
                1 => 1,
                2 | 3 => 2,
                _ => 4,
            };
            group(size, first);
            first += size;
        }
    }

    /// The dot product of two row blocks of 8-bit values, in integers.
    fn block_dot(w: &[i8], x: &[i8]) -> i32 {
        w.iter()
            .zip(x)
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum()
    }

    /// Every row of `x` (`[rows, inner]`) against weight rows `outputs` of `w`
    /// (`[out, inner]`), written as `sums[(o - outputs.start) * rows + r]`.
    pub(super) fn f32_portable(
        x: &[f32],
        rows: usize,
        inner: usize,
        w: &[f32],
        outputs: std::ops::Range<usize>,
        sums: &mut [f32],
    ) {
        let start = outputs.start;
        for o in outputs {
            let row = &w[o * inner..(o + 1) * inner];
            for r in 0..rows {
                let xr = &x[r * inner..(r + 1) * inner];
                sums[(o - start) * rows + r] = xr.iter().zip(row).map(|(a, b)| a * b).sum();
            }
        }
    }

    /// [`f32_portable`] for 8-bit rows `x` and weights `w`.
    pub(super) fn int8_portable(
        x: &Int8Matrix,
        w: &Int8Matrix,
        outputs: std::ops::Range<usize>,
        sums: &mut [f32],
    ) {
        let (inner, rows) = (w.inner, x.out);
        let blocks = inner.div_ceil(BLOCK);
        let start = outputs.start;
        for o in outputs {
            for r in 0..rows {
                let mut total = 0f32;
                for b in 0..blocks {
                    let span = b * BLOCK..((b + 1) * BLOCK).min(inner);
                    let dot = block_dot(
                        &w.values[o * inner + span.start..o * inner + span.end],
                        &x.values[r * inner + span.start..r * inner + span.end],
                    );
                    total += dot as f32 * (w.scales[o * blocks + b] * x.scales[r * blocks + b]);
                }
                sums[(o - start) * rows + r] = total;
            }
        }
    }

    /// AVX2 and FMA versions (the compiler's own vectorisation of the portable loops used
    /// two-lane registers). The public functions check the sizes the loops rely on.
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    pub(super) mod avx2 {
        use std::arch::x86_64::*;

        use super::{BLOCK, Int8Matrix, block_dot, run_groups};

        /// The sum of the eight lanes of `v`.
        #[target_feature(enable = "avx2,fma")]
        fn lanes_sum(v: __m256) -> f32 {
            let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let pairs = _mm_add_ps(half, _mm_movehl_ps(half, half));
            let one = _mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1));
            _mm_cvtss_f32(one)
        }

        /// Rows `first..first + R` of `x` against weight rows `outputs` of `w`.
        ///
        /// # Safety
        /// The CPU has AVX2 and FMA; `x` holds `rows * inner` values, `first + R <= rows`,
        /// `w` holds at least `outputs.end * inner` values and `sums` `outputs.len() * rows`.
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn f32_group<const R: usize>(
            x: &[f32],
            first: usize,
            rows: usize,
            inner: usize,
            w: &[f32],
            outputs: std::ops::Range<usize>,
            sums: &mut [f32],
        ) {
            let whole = inner - inner % 16;
            let start = outputs.start;
            for o in outputs {
                let row = &w[o * inner..(o + 1) * inner];
                let mut low = [_mm256_setzero_ps(); R];
                let mut high = [_mm256_setzero_ps(); R];
                for i in (0..whole).step_by(16) {
                    // SAFETY: i + 16 <= whole <= inner, within `row` and each row of `x`.
                    unsafe {
                        let w0 = _mm256_loadu_ps(row.as_ptr().add(i));
                        let w1 = _mm256_loadu_ps(row.as_ptr().add(i + 8));
                        for r in 0..R {
                            let xp = x.as_ptr().add((first + r) * inner + i);
                            low[r] = _mm256_fmadd_ps(_mm256_loadu_ps(xp), w0, low[r]);
                            high[r] = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(8)), w1, high[r]);
                        }
                    }
                }
                for r in 0..R {
                    let xr = &x[(first + r) * inner..(first + r + 1) * inner];
                    let tail: f32 = (whole..inner).map(|i| xr[i] * row[i]).sum();
                    sums[(o - start) * rows + first + r] =
                        lanes_sum(_mm256_add_ps(low[r], high[r])) + tail;
                }
            }
        }

        /// Sums of four adjacent byte products per 32-bit lane, of an unsigned and a signed
        /// operand: `maddubs` then `madd` on AVX2, one `dpbusd` with AVX-VNNI. Both give the
        /// same lanes (|values| <= 127 keeps `maddubs`'s pair sums within i16).
        pub(super) trait ByteDot {
            /// # Safety
            /// The CPU has the instructions of the implementation.
            unsafe fn dot(unsigned: __m256i, signed: __m256i) -> __m256i;
        }

        /// AVX2's `maddubs` + `madd`.
        pub(super) struct Maddubs;

        impl ByteDot for Maddubs {
            #[inline(always)]
            unsafe fn dot(unsigned: __m256i, signed: __m256i) -> __m256i {
                // SAFETY: the caller runs with AVX2.
                unsafe {
                    _mm256_madd_epi16(_mm256_maddubs_epi16(unsigned, signed), _mm256_set1_epi16(1))
                }
            }
        }

        /// AVX-VNNI's `dpbusd`.
        pub(super) struct Vnni;

        impl ByteDot for Vnni {
            #[inline(always)]
            unsafe fn dot(unsigned: __m256i, signed: __m256i) -> __m256i {
                // SAFETY: the caller runs with AVX-VNNI.
                unsafe { _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), unsigned, signed) }
            }
        }

        /// Row `row` of the 8-bit rows `x` against the `O` weight rows from `first_out` of
        /// `w`: per block of 32, the byte products summed in integers (`|w| · sign(w)·x`,
        /// since the instructions take one unsigned operand), then scaled by both blocks'
        /// scales. The `O` weight rows are separate streams from memory, and the activation
        /// block is loaded once for all of them.
        ///
        /// # Safety
        /// The CPU has AVX2, FMA and `D`'s instructions; `x` and `w` have the same `inner`,
        /// `row < x.out`, `first_out + O <= outputs.end <= w.out`, `outputs.start <=
        /// first_out` and `sums` holds `outputs.len() * x.out` values.
        #[inline(always)]
        unsafe fn int8_tile<D: ByteDot, const O: usize>(
            x: &Int8Matrix,
            row: usize,
            w: &Int8Matrix,
            first_out: usize,
            outputs_start: usize,
            sums: &mut [f32],
        ) {
            let (inner, rows) = (w.inner, x.out);
            let blocks = inner.div_ceil(BLOCK);
            let whole = inner / BLOCK;
            let x_values = &x.values[row * inner..(row + 1) * inner];
            let x_scales = &x.scales[row * blocks..(row + 1) * blocks];
            // SAFETY: the caller's bounds: every weight row and scale row of the tile, and
            // `x_values` and `x_scales`, hold `inner` values and `blocks` scales, and
            // begin + 32 <= inner below. Raw pointers keep bounds checks out of the loop
            // (they doubled its instructions).
            unsafe {
                let mut acc = [_mm256_setzero_ps(); O];
                let rows_at: [*const i8; O] =
                    std::array::from_fn(|i| w.values.as_ptr().add((first_out + i) * inner));
                let scales_at: [*const f32; O] =
                    std::array::from_fn(|i| w.scales.as_ptr().add((first_out + i) * blocks));
                for b in 0..whole {
                    let begin = b * BLOCK;
                    let xq = _mm256_loadu_si256(x_values.as_ptr().add(begin).cast());
                    let x_scale = *x_scales.as_ptr().add(b);
                    for i in 0..O {
                        let wq = _mm256_loadu_si256(rows_at[i].add(begin).cast());
                        let dot = D::dot(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq));
                        let both = _mm256_set1_ps(*scales_at[i].add(b) * x_scale);
                        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), both, acc[i]);
                    }
                }
                for (i, acc) in acc.iter().enumerate() {
                    let o = first_out + i;
                    let tail = if whole < blocks {
                        let span = whole * BLOCK..inner;
                        let dot = block_dot(
                            &w.values[o * inner + span.start..o * inner + span.end],
                            &x_values[span],
                        );
                        dot as f32 * (w.scales[o * blocks + whole] * x_scales[whole])
                    } else {
                        0.0
                    };
                    sums[(o - outputs_start) * rows + row] = lanes_sum(*acc) + tail;
                }
            }
        }

        /// Every row of `x` against weight rows `outputs` of `w`, four weight rows at a time
        /// when `x` has several rows. For one row, four interleaved weight rows decoded
        /// SmolLM2 slower (39-48 against 57-62 tokens/s in alternated runs), so it takes one
        /// at a time; the sums are the same bits either way.
        ///
        /// # Safety
        /// The CPU has AVX2, FMA and `D`'s instructions; `x` and `w` have the same `inner`,
        /// `outputs.end <= w.out` and `sums` holds `outputs.len() * x.out` values.
        #[inline(always)]
        unsafe fn int8_all<D: ByteDot>(
            x: &Int8Matrix,
            w: &Int8Matrix,
            outputs: std::ops::Range<usize>,
            sums: &mut [f32],
        ) {
            let start = outputs.start;
            let mut first_out = start;
            while first_out < outputs.end {
                let four = x.out > 1 && outputs.end - first_out >= 4;
                for row in 0..x.out {
                    // SAFETY: forwarded from the caller; the tile stays within `outputs`.
                    unsafe {
                        if four {
                            int8_tile::<D, 4>(x, row, w, first_out, start, sums);
                        } else {
                            int8_tile::<D, 1>(x, row, w, first_out, start, sums);
                        }
                    }
                }
                first_out += if four { 4 } else { 1 };
            }
        }

        /// # Safety
        /// As for [`f32_group`], for all of `0..rows`.
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn f32_rows(
            x: &[f32],
            rows: usize,
            inner: usize,
            w: &[f32],
            outputs: std::ops::Range<usize>,
            sums: &mut [f32],
        ) {
            run_groups(rows, |size, first| {
                let outputs = outputs.clone();
                // SAFETY: forwarded from the caller; run_groups keeps first + size <= rows.
                unsafe {
                    match size {
                        1 => f32_group::<1>(x, first, rows, inner, w, outputs, sums),
                        2 => f32_group::<2>(x, first, rows, inner, w, outputs, sums),
                        _ => f32_group::<4>(x, first, rows, inner, w, outputs, sums),
                    }
                }
            });
        }

        /// # Safety
        /// As for [`int8_all`], with AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub(in crate::matvec) unsafe fn int8_rows(
            x: &Int8Matrix,
            w: &Int8Matrix,
            outputs: std::ops::Range<usize>,
            sums: &mut [f32],
        ) {
            // SAFETY: forwarded from the caller.
            unsafe { int8_all::<Maddubs>(x, w, outputs, sums) }
        }

        /// # Safety
        /// As for [`int8_all`], with AVX2, FMA and AVX-VNNI.
        #[target_feature(enable = "avx2,fma,avxvnni")]
        pub(in crate::matvec) unsafe fn int8_rows_vnni(
            x: &Int8Matrix,
            w: &Int8Matrix,
            outputs: std::ops::Range<usize>,
            sums: &mut [f32],
        ) {
            // SAFETY: forwarded from the caller.
            unsafe { int8_all::<Vnni>(x, w, outputs, sums) }
        }
    }

    /// Whether the AVX2 + FMA versions may run here.
    #[cfg(target_arch = "x86_64")]
    fn has_avx2() -> bool {
        static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *DETECTED
            .get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }

    /// Whether the CPU also has AVX-VNNI's byte dot products.
    #[cfg(target_arch = "x86_64")]
    fn has_vnni() -> bool {
        static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| is_x86_feature_detected!("avxvnni"))
    }

    /// Every row of `x` (`[rows, inner]`) against weight rows `outputs` of `w`
    /// (`[out, inner]`), into `sums` (`[outputs.len(), rows]`).
    pub(super) fn f32_rows(
        x: &[f32],
        rows: usize,
        inner: usize,
        w: &[f32],
        outputs: std::ops::Range<usize>,
        sums: &mut [f32],
    ) {
        assert!(x.len() == rows * inner && w.len() >= outputs.end * inner);
        assert!(sums.len() == outputs.len() * rows);
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA, and the sizes were checked just above.
            #[allow(unsafe_code)]
            unsafe {
                avx2::f32_rows(x, rows, inner, w, outputs, sums)
            };
            return;
        }
        f32_portable(x, rows, inner, w, outputs, sums);
    }

    /// [`f32_rows`] with 8-bit rows and weights.
    pub(super) fn int8_rows(
        x: &Int8Matrix,
        w: &Int8Matrix,
        outputs: std::ops::Range<usize>,
        sums: &mut [f32],
    ) {
        assert!(x.inner == w.inner && outputs.end <= w.out);
        assert!(sums.len() == outputs.len() * x.out);
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA (and AVX-VNNI where it is used), and the sizes
            // were checked just above.
            #[allow(unsafe_code)]
            unsafe {
                if has_vnni() {
                    avx2::int8_rows_vnni(x, w, outputs, sums)
                } else {
                    avx2::int8_rows(x, w, outputs, sums)
                }
            };
            return;
        }
        int8_portable(x, w, outputs, sums);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(x: &[f32], rows: usize, w: &[f32], out: usize) -> Vec<f64> {
        let inner = x.len() / rows;
        let mut y = vec![0f64; rows * out];
        for r in 0..rows {
            for o in 0..out {
                y[r * out + o] = (0..inner)
                    .map(|i| f64::from(x[r * inner + i]) * f64::from(w[o * inner + i]))
                    .sum::<f64>();
            }
        }
        y
    }

    /// What an 8-bit matrix stands for: its values times their block's scale.
    fn dequantized(m: &Int8Matrix) -> Vec<f32> {
        let blocks = m.inner.div_ceil(BLOCK);
        (0..m.out * m.inner)
            .map(|k| {
                let (row, col) = (k / m.inner, k % m.inner);
                f32::from(m.values[k]) * m.scales[row * blocks + col / BLOCK]
            })
            .collect()
    }

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = agentr_envs::rng::Rng::new(seed);
        (0..len)
            .map(|_| rng.unit_f64() as f32 * 2.0 - 1.0)
            .collect()
    }

    proptest! {
        #[test]
        fn f32_product_equals_the_plain_sum(
            rows in 1usize..=MAX_ROWS,
            out in 1usize..80,
            inner in 1usize..100,
            seed in any::<u64>(),
        ) {
            let (x, w) = (values(rows * inner, seed), values(out * inner, seed ^ 1));
            let expected = reference(&x, rows, &w, out);
            let found = f32_product(&x, rows, &w, out);
            let mut portable = vec![0f32; rows * out];
            kernels::f32_portable(&x, rows, inner, &w, 0..out, &mut portable);
            for r in 0..rows {
                for o in 0..out {
                    let e = expected[r * out + o];
                    for f in [found[r * out + o], portable[o * rows + r]] {
                        prop_assert!((e - f64::from(f)).abs() <= 1e-5 * inner as f64, "{e} vs {f}");
                    }
                }
            }
        }

        /// The 8-bit product is the exact product of the two quantised matrices (up to f32
        /// rounding), and each quantised value is within half a step of the original, which
        /// bounds the distance to the f32 product.
        #[test]
        fn int8_product_is_the_product_of_the_quantised_matrices(
            rows in 1usize..=MAX_ROWS,
            out in 1usize..40,
            inner in 1usize..100,
            scale in 0.01f32..100.0,
            seed in any::<u64>(),
        ) {
            let x: Vec<f32> = values(rows * inner, seed).iter().map(|v| v * scale).collect();
            let w = values(out * inner, seed ^ 1);
            let (wq, xq) = (Int8Matrix::quantize(&w, out, inner), Int8Matrix::quantize(&x, rows, inner));
            let (wd, xd) = (dequantized(&wq), dequantized(&xq));
            let exact = reference(&xd, rows, &wd, out);
            let f32_exact = reference(&x, rows, &w, out);
            let found = int8_product(&x, rows, &wq);
            let mut portable = vec![0f32; rows * out];
            kernels::int8_portable(&xq, &wq, 0..out, &mut portable);
            let blocks = inner.div_ceil(BLOCK);
            for r in 0..rows {
                for o in 0..out {
                    let e = exact[r * out + o];
                    let magnitude: f64 = (0..inner)
                        .map(|i| f64::from(xd[r * inner + i].abs() * wd[o * inner + i].abs()))
                        .sum();
                    for f in [found[r * out + o], portable[o * rows + r]] {
                        prop_assert!((e - f64::from(f)).abs() <= 1e-5 * magnitude + 1e-6, "{e} vs {f}");
                    }
                    let bound: f64 = (0..inner)
                        .map(|i| {
                            let step_w = f64::from(wq.scales[o * blocks + i / BLOCK]) / 2.0;
                            let step_x = f64::from(xq.scales[r * blocks + i / BLOCK]) / 2.0;
                            f64::from(x[r * inner + i].abs()) * step_w
                                + f64::from(w[o * inner + i].abs()) * step_x
                                + step_w * step_x
                        })
                        .sum();
                    let distance = (f32_exact[r * out + o] - f64::from(found[r * out + o])).abs();
                    prop_assert!(distance <= bound * 1.001 + 1e-5, "{distance} > {bound}");
                }
            }
        }
    }

    /// The AVX2 and AVX-VNNI kernels give bit-identical sums (the same lanes, summed and
    /// scaled in the same order), where the CPU has them.
    #[cfg(target_arch = "x86_64")]
    #[test]
    #[allow(unsafe_code)]
    fn both_byte_dot_kernels_give_the_same_bits() {
        if !(is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("avxvnni"))
        {
            return;
        }
        for (rows, out, inner) in [(1, 9, 64), (3, 17, 96), (4, 5, 70), (2, 4, 31)] {
            let x = Int8Matrix::quantize(&values(rows * inner, 3), rows, inner);
            let w = Int8Matrix::quantize(&values(out * inner, 4), out, inner);
            let mut plain = vec![0f32; rows * out];
            let mut vnni = vec![0f32; rows * out];
            // SAFETY: the features were detected above; the sizes fit.
            unsafe {
                kernels::avx2::int8_rows(&x, &w, 0..out, &mut plain);
                kernels::avx2::int8_rows_vnni(&x, &w, 0..out, &mut vnni);
            }
            assert_eq!(
                plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                vnni.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn quantisation_keeps_exact_multiples_and_zero_blocks() {
        // Multiples of the block's largest magnitude / 127 come back exactly (to f32 rounding).
        let mut w: Vec<f32> = (0..BLOCK)
            .map(|i| (i as f32 * 8.0 - 127.0) * 0.01)
            .collect();
        w.extend(std::iter::repeat_n(0.0, BLOCK));
        let packed = Int8Matrix::quantize(&w, 1, 2 * BLOCK);
        assert_eq!(packed.scales[1], 0.0);
        assert!(packed.values[BLOCK..].iter().all(|&v| v == 0));
        for (q, v) in dequantized(&packed).iter().zip(&w) {
            assert!((q - v).abs() < 1e-6, "{q} vs {v}");
        }
        assert_eq!(packed.values[0], -127);
    }
}
