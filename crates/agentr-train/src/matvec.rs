//! Products `x · Wᵀ` of generation: a few activation rows with a weight matrix (decoding:
//! one row per sample being generated) in f32 or with 8-bit weights, and any number of rows
//! (a prefill) with 8-bit weights.
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
//! which takes a third of the instructions of converting each weight to f32. A prefill with
//! 8-bit weights splits its rows between the threads instead of its outputs; the same kernel
//! then keeps each group of weights in the L1 cache while the rows pass over it.

use candle_core::{CpuStorage, DType, Storage, Tensor};

/// Inputs per quantisation block of [`Int8Matrix`].
pub(crate) const BLOCK: usize = 32;

/// The most activation rows [`f32_product`] is meant for (beyond that gemm's blocking reuses
/// each loaded weight more), and the most that [`int8_product`] splits by outputs.
pub(crate) const MAX_ROWS: usize = 8;

/// Outputs per parallel task, at least: a task should stream tens of kilobytes of weights to
/// be worth a thread hand-off.
const MIN_OUTPUTS_PER_TASK: usize = 16;

/// Output rows per group of an [`Int8Matrix`]: one 256-bit register holds four consecutive
/// weights of each of them, so a dot-product instruction advances all eight outputs at once.
const GROUP: usize = 8;

/// Rows of bytes with one scale per row and block of [`BLOCK`] values, each row zero-padded to
/// whole blocks: `row[r][i] ≈ values[r * padded + i] * scales[r * blocks + i / BLOCK]`, where
/// `padded = blocks * BLOCK`.
#[derive(Debug, Clone)]
pub(crate) struct QuantizedRows {
    rows: usize,
    inner: usize,
    blocks: usize,
    values: Vec<i8>,
    /// `values` with 128 added (as unsigned bytes): the operand AVX-VNNI's unsigned-by-signed
    /// byte product needs.
    biased: Vec<u8>,
    scales: Vec<f32>,
}

/// One row to quantise: its values, and where its bytes, biased bytes and scales go.
type QuantizeRow<'a> = (&'a [f32], &'a mut [i8], &'a mut [u8], &'a mut [f32]);

/// Quantises one row by blocks: each block's scale maps its largest magnitude to 127 (so
/// values stay in -127..=127), and values round to the nearest step.
fn quantize_row(x: &[f32], values: &mut [i8], biased: &mut [u8], scales: &mut [f32]) {
    for (b, block) in x.chunks(BLOCK).enumerate() {
        let largest = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = largest / 127.0;
        scales[b] = scale;
        let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        let span = b * BLOCK..b * BLOCK + block.len();
        for ((slot, unsigned), v) in values[span.clone()]
            .iter_mut()
            .zip(&mut biased[span])
            .zip(block)
        {
            // Half away from zero, as `round`, without its libm call.
            let scaled = v * inverse;
            *slot = (scaled + 0.5f32.copysign(scaled)).clamp(-127.0, 127.0) as i8;
            *unsigned = (*slot as u8) ^ 0x80;
        }
    }
}

impl QuantizedRows {
    /// Quantises the row-major `[rows, inner]` matrix `x`: each block's scale maps its largest
    /// magnitude to 127 (so values stay in -127..=127), and values round to the nearest step.
    pub(crate) fn quantize(x: &[f32], rows: usize, inner: usize) -> Self {
        assert_eq!(x.len(), rows * inner, "matrix of the wrong size");
        let blocks = inner.div_ceil(BLOCK);
        let padded = blocks * BLOCK;
        let mut values = vec![0i8; rows * padded];
        let mut biased = vec![0x80u8; rows * padded];
        let mut scales = vec![0f32; rows * blocks];
        if inner > 0 {
            let mut outs: Vec<_> = x
                .chunks_exact(inner)
                .zip(values.chunks_exact_mut(padded))
                .zip(biased.chunks_exact_mut(padded))
                .zip(scales.chunks_exact_mut(blocks))
                .map(|(((x, values), biased), scales)| (x, values, biased, scales))
                .collect();
            let quantize_rows = |part: &mut [QuantizeRow]| {
                for (x, values, biased, scales) in part.iter_mut() {
                    quantize_row(x, values, biased, scales);
                }
            };
            if rows > MAX_ROWS {
                // A prefill's activations or a weight matrix: rows split between the threads.
                let per_task = rows.div_ceil(crate::parallel::threads());
                crate::parallel::for_each_chunk(&mut outs, per_task, |_, part| quantize_rows(part));
            } else {
                quantize_rows(&mut outs);
            }
        }
        QuantizedRows {
            rows,
            inner,
            blocks,
            values,
            biased,
            scales,
        }
    }

    /// Value `i` of row `r` and its block's scale.
    #[cfg(test)]
    fn get(&self, r: usize, i: usize) -> (i8, f32) {
        (
            self.values[r * self.blocks * BLOCK + i],
            self.scales[r * self.blocks + i / BLOCK],
        )
    }
}

/// A weight matrix `[out, inner]` in 8 bits, quantised as [`QuantizedRows`] (llama.cpp's Q8_0
/// blocks, with an f32 scale) and stored for decoding: the output rows in groups of [`GROUP`]
/// (the last padded with zero rows), and within a group and block the bytes interleaved four
/// at a time, `[chunk of 4 inputs][output row of the group][4 bytes]`. A register then loads
/// four inputs of eight outputs, the activation's four bytes are broadcast against it, and the
/// eight sums come out in eight lanes: no horizontal sum per output, and each loaded weight
/// serves every activation row. Laid out row by row, a decoding step spent more instructions
/// than memory time (llama.cpp's repacked Q8_0 decoded SmolLM2 2.4 times as fast).
#[derive(Debug, Clone)]
pub(crate) struct Int8Matrix {
    out: usize,
    inner: usize,
    blocks: usize,
    /// `[group][block][chunk][row][4]`.
    values: Vec<i8>,
    /// `[group][block][row]`.
    scales: Vec<f32>,
    /// 128 times the sum of each row's values in a block, `[group][block][row]`: what the
    /// biased activations add to a dot product.
    bias_sums: Vec<i32>,
}

impl Int8Matrix {
    /// Quantises the row-major `[out, inner]` matrix `w` and interleaves it.
    pub(crate) fn quantize(w: &[f32], out: usize, inner: usize) -> Self {
        let rows = QuantizedRows::quantize(w, out, inner);
        let (blocks, padded) = (rows.blocks, rows.blocks * BLOCK);
        let groups = out.div_ceil(GROUP);
        let mut values = vec![0i8; groups * blocks * GROUP * BLOCK];
        let mut scales = vec![0f32; groups * blocks * GROUP];
        let mut bias_sums = vec![0i32; groups * blocks * GROUP];
        for o in 0..out {
            let (g, lane) = (o / GROUP, o % GROUP);
            for b in 0..blocks {
                let block = &rows.values[o * padded + b * BLOCK..o * padded + (b + 1) * BLOCK];
                let at = (g * blocks + b) * GROUP * BLOCK;
                for (chunk, bytes) in block.chunks_exact(4).enumerate() {
                    let slot = at + (chunk * GROUP + lane) * 4;
                    values[slot..slot + 4].copy_from_slice(bytes);
                }
                let meta = (g * blocks + b) * GROUP + lane;
                scales[meta] = rows.scales[o * blocks + b];
                bias_sums[meta] = 128 * block.iter().map(|&v| i32::from(v)).sum::<i32>();
            }
        }
        Int8Matrix {
            out,
            inner,
            blocks,
            values,
            scales,
            bias_sums,
        }
    }

    /// Value `i` of output row `o` and its block's scale.
    #[cfg(test)]
    fn get(&self, o: usize, i: usize) -> (i8, f32) {
        let (g, lane, b) = (o / GROUP, o % GROUP, i / BLOCK);
        let chunk = (i % BLOCK) / 4;
        let at = (g * self.blocks + b) * GROUP * BLOCK + (chunk * GROUP + lane) * 4 + i % 4;
        (
            self.values[at],
            self.scales[(g * self.blocks + b) * GROUP + lane],
        )
    }
}

/// `x · weightᵀ` for a 2-D `x` (`[rows, in]`) and `weight` (`[out, in]`) when nothing needs a
/// gradient (the result records no graph): with `int8` (the same weight in 8 bits) when given
/// and `x` is f32 on the CPU, with [`f32_product`] for at most [`MAX_ROWS`] such rows, and with
/// candle's matmul otherwise (an f32 prefill, another device or dtype).
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
    let f32_rows = rows > 0 && x.device().is_cpu() && x.dtype() == DType::F32;
    let activations = || x.flatten_all()?.to_vec1::<f32>();
    let y = match (f32_rows, int8) {
        (false, _) => None,
        (true, Some(packed)) => Some(int8_product(&activations()?, rows, packed)),
        (true, None) if rows > MAX_ROWS => None,
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
    product(rows, out, 1, |outputs, sums| {
        kernels::f32_rows(x, rows, inner, w, outputs, sums);
    })
}

/// `x · wᵀ` with the 8-bit weight `w`, `x` quantised to 8 bits by blocks: `[rows, w.out]`.
pub(crate) fn int8_product(x: &[f32], rows: usize, w: &Int8Matrix) -> Vec<f32> {
    assert_eq!(x.len(), rows * w.inner, "activations of the wrong size");
    let x = QuantizedRows::quantize(x, rows, w.inner);
    if rows <= MAX_ROWS {
        return product(rows, w.out, GROUP, |outputs, sums| {
            kernels::int8_rows(&x, w, &kernels::Span::by_output(rows, outputs), sums);
        });
    }
    // A prefill: each thread takes a range of rows against every output and writes its rows
    // of the result in place (the decoding split's transposition was a tenth of a prefill).
    let mut y = vec![0f32; rows * w.out];
    let per_task = rows.div_ceil(crate::parallel::threads()).max(1);
    crate::parallel::for_each_chunk(&mut y, per_task * w.out, |task, part| {
        let first = task * per_task;
        let span = kernels::Span::by_row(first..first + part.len() / w.out, w.out);
        kernels::int8_rows(&x, w, &span, part);
    });
    y
}

/// `x · wᵀ` for `x` row-major `[rows, inner]` and `w` row-major `[out, inner]`, on the calling
/// thread, output-major: `sums[o * rows + r]` (a few query rows against many keys).
pub(crate) fn f32_product_into(x: &[f32], rows: usize, w: &[f32], sums: &mut [f32]) {
    let inner = x.len().checked_div(rows).unwrap_or(0);
    assert_eq!(x.len(), rows * inner, "activations of the wrong size");
    let out = w.len().checked_div(inner).unwrap_or(0);
    kernels::f32_rows(x, rows, inner, w, 0..out, &mut sums[..out * rows]);
}

/// `out += weights · values` on the calling thread, for `out` row-major `[rows, dim]`, `values`
/// row-major `[keys, dim]` and row `r` of `weights` at `weights[r * stride..][..keys]`
/// (attention weights applied to values).
pub(crate) fn weighted_sum_into(
    out: &mut [f32],
    dim: usize,
    weights: &[f32],
    stride: usize,
    values: &[f32],
) {
    kernels::weighted_rows(out, dim, weights, stride, values);
}

#[cfg(target_arch = "x86_64")]
pub(crate) use kernels::has_avx2;

/// Runs `compute(outputs, sums)` over ranges of outputs in parallel ([`crate::parallel`]),
/// each starting at a multiple of `align`, where `sums` is `[outputs.len(), rows]`
/// (output-major), and gathers the result as `[rows, out]`.
fn product(
    rows: usize,
    out: usize,
    align: usize,
    compute: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
) -> Vec<f32> {
    let per_task = out
        .div_ceil(4 * crate::parallel::threads())
        .max(MIN_OUTPUTS_PER_TASK)
        .next_multiple_of(align)
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
/// has them (as gemm does). The f32 versions compute the same products and differ only in the
/// order of their additions; every int8 version gives the same bits.
mod kernels {
    use super::{BLOCK, GROUP, Int8Matrix, QuantizedRows};

    /// The size of the next group of rows (4, 2 or 1) when `remaining` rows are left: a group
    /// shares each loaded weight. (A loop over it, not a closure: a closure does not inherit
    /// its caller's target features, and the intrinsics inlined into it would become calls.)
    #[inline(always)]
    fn row_group(remaining: usize) -> usize {
        match remaining {
            1 => 1,
            2 | 3 => 2,
            _ => 4,
        }
    }

    /// The products an 8-bit kernel call computes and where it writes them: activation rows
    /// `rows` against outputs `outputs` (starting at a multiple of [`GROUP`]), product `(r, o)`
    /// at `sums[(r - rows.start) * row_stride + (o - outputs.start) * output_stride]`.
    #[derive(Debug, Clone)]
    pub(super) struct Span {
        pub(super) rows: std::ops::Range<usize>,
        pub(super) outputs: std::ops::Range<usize>,
        pub(super) row_stride: usize,
        pub(super) output_stride: usize,
    }

    impl Span {
        /// Every row of `rows` against `outputs`, output-major (a decoding step's split).
        pub(super) fn by_output(rows: usize, outputs: std::ops::Range<usize>) -> Self {
            Span {
                rows: 0..rows,
                outputs,
                row_stride: 1,
                output_stride: rows,
            }
        }

        /// Rows `rows` against all `out` outputs, row-major (a prefill's split).
        pub(super) fn by_row(rows: std::ops::Range<usize>, out: usize) -> Self {
            Span {
                rows,
                outputs: 0..out,
                row_stride: out,
                output_stride: 1,
            }
        }

        #[inline(always)]
        fn at(&self, row: usize, output: usize) -> usize {
            (row - self.rows.start) * self.row_stride
                + (output - self.outputs.start) * self.output_stride
        }

        /// Whether every product fits in `len` values.
        fn fits(&self, len: usize) -> bool {
            self.rows.is_empty()
                || self.outputs.is_empty()
                || self.at(self.rows.end - 1, self.outputs.end - 1) < len
        }
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

    /// `out[r] += Σ_k weights[r * stride + k] · values[k]` for the `dim`-long rows of `out`
    /// and `values`.
    pub(super) fn weighted_portable(
        out: &mut [f32],
        dim: usize,
        weights: &[f32],
        stride: usize,
        values: &[f32],
    ) {
        for (r, out) in out.chunks_exact_mut(dim).enumerate() {
            for (&weight, value) in weights[r * stride..].iter().zip(values.chunks_exact(dim)) {
                for (o, &v) in out.iter_mut().zip(value) {
                    *o += weight * v;
                }
            }
        }
    }

    /// [`f32_portable`] for 8-bit rows `x` and weights `w`, with `outputs` starting at a
    /// multiple of [`GROUP`]: per block, the dot product in integers, then `sum = dot ·
    /// (w_scale · x_scale) + sum` fused. The vector kernels do the same operations in the same
    /// order, so every version gives the same bits.
    pub(super) fn int8_portable(x: &QuantizedRows, w: &Int8Matrix, span: &Span, sums: &mut [f32]) {
        let blocks = w.blocks;
        for o in span.outputs.clone() {
            let (g, lane) = (o / GROUP, o % GROUP);
            for r in span.rows.clone() {
                let mut sum = 0f32;
                for b in 0..blocks {
                    let at = (g * blocks + b) * GROUP * BLOCK;
                    let x_block = &x.values[(r * blocks + b) * BLOCK..(r * blocks + b + 1) * BLOCK];
                    let dot: i32 = x_block
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| {
                            let weight = w.values[at + ((i / 4) * GROUP + lane) * 4 + i % 4];
                            i32::from(weight) * i32::from(v)
                        })
                        .sum();
                    let scale =
                        w.scales[(g * blocks + b) * GROUP + lane] * x.scales[r * blocks + b];
                    sum = (dot as f32).mul_add(scale, sum);
                }
                sums[span.at(r, o)] = sum;
            }
        }
    }

    /// AVX2 and FMA versions (the compiler's own vectorisation of the portable loops used
    /// two-lane registers). The public functions check the sizes the loops rely on.
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    pub(super) mod avx2 {
        use std::arch::x86_64::*;

        use super::{BLOCK, GROUP, Int8Matrix, QuantizedRows, Span, row_group};

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

        /// One step of a block's dot products: four bytes of one activation row (`x4`, read as
        /// an `i32`) against four bytes of each of the eight weight rows of a group (`w`), added
        /// to the eight sums in `acc`.
        pub(super) trait ByteDot {
            /// Whether the step reads the biased activations (each byte plus 128), and the
            /// weights' bias sums must be taken off its sums.
            const BIASED: bool;

            /// # Safety
            /// The CPU has the instructions of the implementation.
            unsafe fn step(acc: __m256i, x4: i32, w: __m256i) -> __m256i;
        }

        /// AVX2's `maddubs` + `madd`, whose first operand is unsigned: `|x| · (w · sign(x))`.
        /// With `|x|, |w| <= 127` a pair's sum (at most 32,258) stays within `maddubs`'s i16.
        pub(super) struct Maddubs;

        impl ByteDot for Maddubs {
            const BIASED: bool = false;

            #[inline(always)]
            unsafe fn step(acc: __m256i, x4: i32, w: __m256i) -> __m256i {
                // SAFETY: the caller runs with AVX2.
                unsafe {
                    let x = _mm256_set1_epi32(x4);
                    let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(x), _mm256_sign_epi8(w, x));
                    _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
                }
            }
        }

        /// AVX-VNNI's `dpbusd` on the biased activations: `(x + 128) · w`, one instruction,
        /// in 32 bits without saturation; `128 · Σw` is taken off per block.
        pub(super) struct Vnni;

        impl ByteDot for Vnni {
            const BIASED: bool = true;

            #[inline(always)]
            unsafe fn step(acc: __m256i, x4: i32, w: __m256i) -> __m256i {
                // SAFETY: the caller runs with AVX-VNNI.
                unsafe { _mm256_dpbusd_avx_epi32(acc, _mm256_set1_epi32(x4), w) }
            }
        }

        /// Rows `first..first + R` of `x` against the output group `group` of `w`: per block,
        /// eight chunk steps whose weight register serves all `R` rows, then the integer sums
        /// are scaled and added, lane `l` holding output `group * GROUP + l`. Outputs below
        /// `span.outputs.end` are written where `span` says.
        ///
        /// # Safety
        /// The CPU has AVX2, FMA and `D`'s instructions; `x.blocks == w.blocks`,
        /// `span.rows.start <= first`, `first + R <= span.rows.end <= x.rows`, `group * GROUP <
        /// w.out`, `span.outputs.start <= group * GROUP`, `span.outputs.end <= w.out` and
        /// `span` fits in `sums`.
        #[inline(always)]
        unsafe fn int8_group<D: ByteDot, const R: usize>(
            x: &QuantizedRows,
            first: usize,
            w: &Int8Matrix,
            group: usize,
            span: &Span,
            sums: &mut [f32],
        ) {
            let blocks = w.blocks;
            // SAFETY: the caller's bounds: each activation row holds `blocks` whole blocks and
            // scales, the group `blocks` blocks of GROUP rows; raw pointers keep bounds checks
            // out of the loop.
            unsafe {
                let x_at: [*const u8; R] = std::array::from_fn(|r| {
                    let at = (first + r) * blocks * BLOCK;
                    match D::BIASED {
                        true => x.biased.as_ptr().add(at),
                        false => x.values.as_ptr().add(at).cast(),
                    }
                });
                let x_scales: [*const f32; R] =
                    std::array::from_fn(|r| x.scales.as_ptr().add((first + r) * blocks));
                let mut acc = [_mm256_setzero_ps(); R];
                for b in 0..blocks {
                    let meta = (group * blocks + b) * GROUP;
                    let weights = w.values.as_ptr().add(meta * BLOCK);
                    let mut dots = [_mm256_setzero_si256(); R];
                    for chunk in 0..BLOCK / 4 {
                        let wk = _mm256_loadu_si256(weights.add(chunk * GROUP * 4).cast());
                        for r in 0..R {
                            let x4 = x_at[r].add(b * BLOCK + chunk * 4).cast::<i32>();
                            dots[r] = D::step(dots[r], x4.read_unaligned(), wk);
                        }
                    }
                    let scales = _mm256_loadu_ps(w.scales.as_ptr().add(meta));
                    let bias = _mm256_loadu_si256(w.bias_sums.as_ptr().add(meta).cast());
                    for r in 0..R {
                        let dot = match D::BIASED {
                            true => _mm256_sub_epi32(dots[r], bias),
                            false => dots[r],
                        };
                        let both = _mm256_mul_ps(scales, _mm256_set1_ps(*x_scales[r].add(b)));
                        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), both, acc[r]);
                    }
                }
                let lanes = (span.outputs.end - group * GROUP).min(GROUP);
                for (r, acc) in acc.iter().enumerate() {
                    let mut values = [0f32; GROUP];
                    _mm256_storeu_ps(values.as_mut_ptr(), *acc);
                    for (lane, value) in values.iter().take(lanes).enumerate() {
                        *sums.get_unchecked_mut(span.at(first + r, group * GROUP + lane)) = *value;
                    }
                }
            }
        }

        /// The rows of `span` against its output groups, in row groups of 4, 2 and 1: a
        /// group's weights (at most a few kilobytes) stay in the L1 cache while the row groups
        /// pass over them.
        ///
        /// # Safety
        /// The CPU has AVX2, FMA and `D`'s instructions; `x.blocks == w.blocks`,
        /// `span.outputs.start` is a multiple of GROUP, `span.outputs.end <= w.out`,
        /// `span.rows.end <= x.rows` and `span` fits in `sums`.
        #[inline(always)]
        unsafe fn int8_all<D: ByteDot>(
            x: &QuantizedRows,
            w: &Int8Matrix,
            span: &Span,
            sums: &mut [f32],
        ) {
            for group in span.outputs.start / GROUP..span.outputs.end.div_ceil(GROUP) {
                let mut first = span.rows.start;
                while first < span.rows.end {
                    let size = row_group(span.rows.end - first);
                    // SAFETY: forwarded from the caller; first + size <= span.rows.end.
                    unsafe {
                        match size {
                            1 => int8_group::<D, 1>(x, first, w, group, span, sums),
                            2 => int8_group::<D, 2>(x, first, w, group, span, sums),
                            _ => int8_group::<D, 4>(x, first, w, group, span, sums),
                        }
                    }
                    first += size;
                }
            }
        }

        /// [`super::weighted_portable`] with the output row's values in registers, `LANES`
        /// of them per pass over the weights, and fused multiply-adds.
        ///
        /// # Safety
        /// The CPU has AVX2 and FMA; `LANES` is a multiple of 8; `out` holds whole rows of
        /// `dim`; `weights` holds `stride * (rows - 1) + keys` values, where `keys =
        /// values.len() / dim`, and `values` whole rows.
        #[inline(always)]
        unsafe fn weighted_lanes<const LANES: usize>(
            out: &mut [f32],
            dim: usize,
            weights: &[f32],
            stride: usize,
            values: &[f32],
            columns: std::ops::Range<usize>,
        ) {
            let keys = values.len() / dim;
            for (r, out) in out.chunks_exact_mut(dim).enumerate() {
                let w = weights.as_ptr().wrapping_add(r * stride);
                for c in columns.clone().step_by(LANES) {
                    // SAFETY: c + LANES <= columns.end <= dim, within `out` and each value
                    // row; k < keys, within the weights' row and `values`.
                    unsafe {
                        let mut acc: [__m256; 8] = [_mm256_setzero_ps(); 8];
                        for (i, acc) in acc.iter_mut().take(LANES / 8).enumerate() {
                            *acc = _mm256_loadu_ps(out.as_ptr().add(c + 8 * i));
                        }
                        for k in 0..keys {
                            let weight = _mm256_set1_ps(*w.add(k));
                            let row = values.as_ptr().add(k * dim + c);
                            for (i, acc) in acc.iter_mut().take(LANES / 8).enumerate() {
                                *acc =
                                    _mm256_fmadd_ps(weight, _mm256_loadu_ps(row.add(8 * i)), *acc);
                            }
                        }
                        for (i, acc) in acc.iter().take(LANES / 8).enumerate() {
                            _mm256_storeu_ps(out.as_mut_ptr().add(c + 8 * i), *acc);
                        }
                    }
                }
            }
        }

        /// # Safety
        /// As for [`weighted_lanes`], with AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn weighted_rows(
            out: &mut [f32],
            dim: usize,
            weights: &[f32],
            stride: usize,
            values: &[f32],
        ) {
            let (wide, narrow) = (dim - dim % 64, dim - dim % 8);
            // SAFETY: forwarded from the caller; the column ranges are whole passes.
            unsafe {
                weighted_lanes::<64>(out, dim, weights, stride, values, 0..wide);
                weighted_lanes::<8>(out, dim, weights, stride, values, wide..narrow);
            }
            if narrow < dim {
                let keys = values.len() / dim;
                for (r, out) in out.chunks_exact_mut(dim).enumerate() {
                    for k in 0..keys {
                        let weight = weights[r * stride + k];
                        for c in narrow..dim {
                            out[c] = weight.mul_add(values[k * dim + c], out[c]);
                        }
                    }
                }
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
            let mut first = 0;
            while first < rows {
                let size = row_group(rows - first);
                let outputs = outputs.clone();
                // SAFETY: forwarded from the caller; first + size <= rows.
                unsafe {
                    match size {
                        1 => f32_group::<1>(x, first, rows, inner, w, outputs, sums),
                        2 => f32_group::<2>(x, first, rows, inner, w, outputs, sums),
                        _ => f32_group::<4>(x, first, rows, inner, w, outputs, sums),
                    }
                }
                first += size;
            }
        }

        /// # Safety
        /// As for [`int8_all`], with AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub(in crate::matvec) unsafe fn int8_rows(
            x: &QuantizedRows,
            w: &Int8Matrix,
            span: &Span,
            sums: &mut [f32],
        ) {
            // SAFETY: forwarded from the caller.
            unsafe { int8_all::<Maddubs>(x, w, span, sums) }
        }

        /// # Safety
        /// As for [`int8_all`], with AVX2, FMA and AVX-VNNI.
        #[target_feature(enable = "avx2,fma,avxvnni")]
        pub(in crate::matvec) unsafe fn int8_rows_vnni(
            x: &QuantizedRows,
            w: &Int8Matrix,
            span: &Span,
            sums: &mut [f32],
        ) {
            // SAFETY: forwarded from the caller.
            unsafe { int8_all::<Vnni>(x, w, span, sums) }
        }
    }

    /// Whether the AVX2 + FMA versions may run here.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn has_avx2() -> bool {
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

    /// `out += weights · values` (see [`super::weighted_sum_into`]).
    pub(super) fn weighted_rows(
        out: &mut [f32],
        dim: usize,
        weights: &[f32],
        stride: usize,
        values: &[f32],
    ) {
        assert!(dim > 0 && out.len().is_multiple_of(dim) && values.len().is_multiple_of(dim));
        let (rows, keys) = (out.len() / dim, values.len() / dim);
        assert!(rows == 0 || keys == 0 || weights.len() >= stride * (rows - 1) + keys);
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA, and the sizes were checked just above.
            #[allow(unsafe_code)]
            unsafe {
                avx2::weighted_rows(out, dim, weights, stride, values)
            };
            return;
        }
        weighted_portable(out, dim, weights, stride, values);
    }

    /// [`f32_rows`] with 8-bit rows and weights.
    pub(super) fn int8_rows(x: &QuantizedRows, w: &Int8Matrix, span: &Span, sums: &mut [f32]) {
        assert!(x.inner == w.inner && x.blocks == w.blocks);
        assert!(span.outputs.end <= w.out && span.outputs.start.is_multiple_of(GROUP));
        assert!(span.rows.end <= x.rows && span.fits(sums.len()));
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA (and AVX-VNNI where it is used), and the sizes
            // were checked just above.
            #[allow(unsafe_code)]
            unsafe {
                if has_vnni() {
                    avx2::int8_rows_vnni(x, w, span, sums)
                } else {
                    avx2::int8_rows(x, w, span, sums)
                }
            };
            return;
        }
        int8_portable(x, w, span, sums);
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

    /// What 8-bit rows stand for: each value times its block's scale, `[rows, inner]`.
    fn dequantized(rows: usize, inner: usize, get: impl Fn(usize, usize) -> (i8, f32)) -> Vec<f32> {
        (0..rows * inner)
            .map(|k| {
                let (value, scale) = get(k / inner, k % inner);
                f32::from(value) * scale
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

        /// The products of a few rows with many (query rows with keys), output-major, and
        /// weighted sums of rows (attention weights with values), into outputs that already
        /// hold values, against sums in f64, with the vector and the portable kernels.
        #[test]
        fn attention_products_equal_the_plain_sums(
            rows in 1usize..7,
            keys in 0usize..50,
            dim in 1usize..140,
            extra_stride in 0usize..5,
            seed in any::<u64>(),
        ) {
            let (x, w) = (values(rows * dim, seed), values(keys * dim, seed ^ 1));
            let expected = reference(&x, rows, &w, keys);
            let mut sums = vec![0f32; rows * keys];
            f32_product_into(&x, rows, &w, &mut sums);
            for r in 0..rows {
                for k in 0..keys {
                    let (e, f) = (expected[r * keys + k], sums[k * rows + r]);
                    prop_assert!((e - f64::from(f)).abs() <= 1e-5 * dim as f64, "{e} vs {f}");
                }
            }
            let stride = keys + extra_stride;
            let weights = values(rows * stride, seed ^ 2);
            let start = values(rows * dim, seed ^ 3);
            let (mut vector, mut portable) = (start.clone(), start.clone());
            weighted_sum_into(&mut vector, dim, &weights, stride, &w);
            kernels::weighted_portable(&mut portable, dim, &weights, stride, &w);
            for r in 0..rows {
                for c in 0..dim {
                    let e = f64::from(start[r * dim + c])
                        + (0..keys)
                            .map(|k| f64::from(weights[r * stride + k]) * f64::from(w[k * dim + c]))
                            .sum::<f64>();
                    for f in [vector[r * dim + c], portable[r * dim + c]] {
                        prop_assert!((e - f64::from(f)).abs() <= 1e-5 * (keys + 1) as f64, "{e} vs {f}");
                    }
                }
            }
        }

        /// The 8-bit product is the exact product of the two quantised matrices (up to f32
        /// rounding), and each quantised value is within half a step of the original, which
        /// bounds the distance to the f32 product.
        #[test]
        fn int8_product_is_the_product_of_the_quantised_matrices(
            rows in 1usize..=3 * MAX_ROWS,
            out in 1usize..40,
            inner in 1usize..100,
            scale in 0.01f32..100.0,
            seed in any::<u64>(),
        ) {
            let x: Vec<f32> = values(rows * inner, seed).iter().map(|v| v * scale).collect();
            let w = values(out * inner, seed ^ 1);
            let (wq, xq) = (Int8Matrix::quantize(&w, out, inner), QuantizedRows::quantize(&x, rows, inner));
            let wd = dequantized(out, inner, |o, i| wq.get(o, i));
            let xd = dequantized(rows, inner, |r, i| xq.get(r, i));
            let exact = reference(&xd, rows, &wd, out);
            let f32_exact = reference(&x, rows, &w, out);
            let found = int8_product(&x, rows, &wq);
            let mut portable = vec![0f32; rows * out];
            kernels::int8_portable(&xq, &wq, &kernels::Span::by_output(rows, 0..out), &mut portable);
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
                            let step_w = f64::from(wq.get(o, i).1) / 2.0;
                            let step_x = f64::from(xq.get(r, i).1) / 2.0;
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

    /// The portable, AVX2 and AVX-VNNI kernels give bit-identical sums (the same integer dot
    /// products, scaled and added in the same order), where the CPU has them; so do ranges of
    /// outputs that end inside a group.
    #[test]
    #[allow(unsafe_code)]
    fn every_int8_kernel_gives_the_same_bits() {
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for (rows, out, inner) in [(1, 9, 64), (3, 17, 96), (4, 5, 70), (2, 4, 31), (7, 24, 32)] {
            let x = QuantizedRows::quantize(&values(rows * inner, 3), rows, inner);
            let w = Int8Matrix::quantize(&values(out * inner, 4), out, inner);
            let by_output = |outputs| kernels::Span::by_output(rows, outputs);
            let mut portable = vec![0f32; rows * out];
            kernels::int8_portable(&x, &w, &by_output(0..out), &mut portable);
            // Rows 1.. row-major, as a prefill's threads write them.
            let mut by_row = vec![0f32; (rows - 1) * out];
            kernels::int8_rows(&x, &w, &kernels::Span::by_row(1..rows, out), &mut by_row);
            for r in 1..rows {
                for o in 0..out {
                    assert_eq!(
                        by_row[(r - 1) * out + o].to_bits(),
                        portable[o * rows + r].to_bits()
                    );
                }
            }
            let mut dispatched = vec![0f32; rows * out];
            kernels::int8_rows(&x, &w, &by_output(0..out), &mut dispatched);
            assert_eq!(bits(&portable), bits(&dispatched), "{rows} {out} {inner}");
            let mut tail = vec![0f32; rows * (out - GROUP.min(out - 1))];
            let from = out - tail.len() / rows;
            if from.is_multiple_of(GROUP) {
                kernels::int8_rows(&x, &w, &by_output(from..out), &mut tail);
                assert_eq!(bits(&portable[from * rows..]), bits(&tail));
            }
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("avxvnni")
            {
                let mut plain = vec![0f32; rows * out];
                let mut vnni = vec![0f32; rows * out];
                // SAFETY: the features were detected just above; the sizes fit.
                unsafe {
                    kernels::avx2::int8_rows(&x, &w, &by_output(0..out), &mut plain);
                    kernels::avx2::int8_rows_vnni(&x, &w, &by_output(0..out), &mut vnni);
                }
                assert_eq!(bits(&portable), bits(&plain));
                assert_eq!(bits(&portable), bits(&vnni));
            }
        }
    }

    #[test]
    fn quantisation_keeps_exact_multiples_and_zero_blocks() {
        // Multiples of the block's largest magnitude / 127 come back exactly (to f32 rounding).
        let mut w: Vec<f32> = (0..BLOCK)
            .map(|i| (i as f32 * 8.0 - 127.0) * 0.01)
            .collect();
        w.extend(std::iter::repeat_n(0.0, BLOCK));
        let rows = QuantizedRows::quantize(&w, 1, 2 * BLOCK);
        let packed = Int8Matrix::quantize(&w, 1, 2 * BLOCK);
        let getters: [&dyn Fn(usize) -> (i8, f32); 2] =
            [&|i| rows.get(0, i), &|i| packed.get(0, i)];
        for get in getters {
            assert_eq!(get(BLOCK).1, 0.0);
            assert!((BLOCK..2 * BLOCK).all(|i| get(i).0 == 0));
            assert_eq!(get(0).0, -127);
            let restored = dequantized(1, 2 * BLOCK, |_, i| get(i));
            for (q, v) in restored.iter().zip(&w) {
                assert!((q - v).abs() < 1e-6, "{q} vs {v}");
            }
        }
        // The interleaved layout's bias sums are 128 times each row's block sum.
        let sum: i32 = (0..BLOCK).map(|i| i32::from(packed.get(0, i).0)).sum();
        assert_eq!(packed.bias_sums[0], 128 * sum);
    }
}
