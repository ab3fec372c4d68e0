//! Causal scaled-dot-product attention with grouped-query heads: a fused CPU kernel with a
//! hand-written backward pass, and the same computation composed from candle operations for
//! other devices (and as the kernel's test oracle).
//!
//! Composed from tensor operations, attention materialises several `[batch, heads, T, T]`
//! tensors per layer (scores, mask, exponentials, weights, and their gradients); at 8 x 512
//! tokens that is hundreds of megabytes per step, and the CPU spends its time allocating,
//! zeroing and streaming them. The fused kernel works one block of query rows at a time in a
//! small scratch buffer, never builds the masked half, shares each key/value head between its
//! query heads without copying, and recomputes the attention weights in the backward pass
//! (flash-attention style) instead of storing them. The matrix products go through `gemm`,
//! the kernel candle itself uses, so they get the same runtime SIMD dispatch.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::fused::{elements, exp, leaf, max_of, slice, sum_of};
use crate::matvec::{f32_product_into, weighted_sum_into};
use crate::products::{View, matmul_into};

/// Query rows per block: the scratch buffers hold `QUERY_BLOCK x keys` scores.
const QUERY_BLOCK: usize = 64;

/// `softmax(q kᵀ · scale + causal mask) v` for `q` `[batch, heads, tq, dim]` and `k`, `v`
/// `[batch, kv_heads, tk, dim]` with `tk >= tq`: query row `i` sits at position `tk - tq + i`
/// and sees keys `0..=tk - tq + i` (a prefill after a cached prefix, or a whole sequence when
/// `tk == tq`). Query head `h` reads key/value head `h / (heads / kv_heads)`.
pub(crate) fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
) -> candle_core::Result<Tensor> {
    if q.device().is_cpu() && q.dtype() == candle_core::DType::F32 {
        let (k, v) = (rows_contiguous(k)?, rows_contiguous(v)?);
        q.contiguous()?.apply_op3(&k, &v, FusedAttention { scale })
    } else {
        let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
        composed_attention(&q, &k, &v, scale)
    }
}

/// `t` (`[batch, heads, positions, dim]`) itself when each head's positions are contiguous
/// rows, as in a view of the KV cache's buffers (heads further apart than their positions
/// need), which the CPU kernel reads in place; otherwise a contiguous copy.
fn rows_contiguous(t: &Tensor) -> candle_core::Result<Tensor> {
    let (stride, dims) = (t.stride(), t.dims());
    if dims.len() == 4 && rows_are_contiguous(stride, dims[2], dims[3]) {
        Ok(t.clone())
    } else {
        t.contiguous()
    }
}

/// Whether `positions x dim` blocks with these strides are contiguous rows (the stride of a
/// dimension of size 1 is never used, and candle leaves it arbitrary).
fn rows_are_contiguous(stride: &[usize], positions: usize, dim: usize) -> bool {
    (stride[3] == 1 || dim <= 1) && (stride[2] == dim || positions <= 1)
}

/// Keys or values for the CPU kernel: each head's `positions x dim` block is contiguous, and
/// heads sit `head_stride` apart (more than a block for a view of the KV cache's buffers).
#[derive(Clone, Copy)]
pub(crate) struct Heads<'a> {
    data: &'a [f32],
    batch_stride: usize,
    head_stride: usize,
    block: usize,
}

impl<'a> Heads<'a> {
    /// The heads of a tensor whose rows [`rows_contiguous`] accepts.
    fn of(storage: &'a CpuStorage, layout: &Layout, op: &str) -> candle_core::Result<Self> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("{op} takes f32 tensors");
        };
        let (batch, heads, positions, dim) = layout.shape().dims4()?;
        let stride = layout.stride();
        if !rows_are_contiguous(stride, positions, dim) {
            candle_core::bail!("{op} takes heads of contiguous rows");
        }
        let block = positions * dim;
        let start = layout.start_offset();
        let last = match (batch, heads) {
            (0, _) | (_, 0) => 0,
            _ => (batch - 1) * stride[0] + (heads - 1) * stride[1] + block,
        };
        if start + last > data.len() {
            candle_core::bail!("{op}: the layout reaches past the storage");
        }
        Ok(Heads {
            data: &data[start..],
            batch_stride: stride[0],
            head_stride: stride[1],
            block,
        })
    }

    /// The heads of a contiguous `[batch, heads, positions, dim]` buffer.
    pub(crate) fn contiguous(data: &'a [f32], heads: usize, positions: usize, dim: usize) -> Self {
        Heads {
            data,
            batch_stride: heads * positions * dim,
            head_stride: positions * dim,
            block: positions * dim,
        }
    }

    /// Head `head` of batch row `b`: `positions x dim`, row-major.
    fn head(&self, b: usize, head: usize) -> &'a [f32] {
        let start = b * self.batch_stride + head * self.head_stride;
        &self.data[start..start + self.block]
    }
}

/// The same function from candle operations (differentiable through candle's autograd).
pub(crate) fn composed_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
) -> candle_core::Result<Tensor> {
    let (batch, heads, tq, dim) = q.dims4()?;
    let (_, kv_heads, tk, _) = k.dims4()?;
    let group = heads / kv_heads;
    let expand = |t: &Tensor| -> candle_core::Result<Tensor> {
        if group == 1 {
            return Ok(t.clone());
        }
        t.unsqueeze(2)?
            .broadcast_as((batch, kv_heads, group, tk, dim))?
            .reshape((batch, heads, tk, dim))
    };
    let (k, v) = (expand(k)?, expand(v)?);
    // Scores and softmax in f32 whatever the activations' dtype (bf16 on CUDA).
    let mut scores = (q
        .matmul(&k.t()?.contiguous()?)?
        .to_dtype(candle_core::DType::F32)?
        * scale)?;
    if tq > 1 {
        let offset = tk - tq;
        let mask: Vec<f32> = (0..tq)
            .flat_map(|i| {
                (0..tk).map(move |j| {
                    if j > offset + i {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        scores = scores.broadcast_add(&Tensor::from_vec(mask, (tq, tk), q.device())?)?;
    }
    crate::model::softmax_last_dim(&scores)?
        .to_dtype(v.dtype())?
        .matmul(&v.contiguous()?)
}

struct FusedAttention {
    scale: f64,
}

/// Sizes shared by the forward and backward kernels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    heads: usize,
    kv_heads: usize,
    tq: usize,
    tk: usize,
    dim: usize,
}

impl Dims {
    fn of(q: &Shape, k: &Shape, v: &Shape) -> candle_core::Result<Self> {
        let (batch, heads, tq, dim) = q.dims4()?;
        let (kb, kv_heads, tk, kd) = k.dims4()?;
        if kb != batch || kd != dim || v.dims() != k.dims() {
            candle_core::bail!("attention shapes do not fit: q {q:?}, k {k:?}, v {v:?}");
        }
        if kv_heads == 0 || heads % kv_heads != 0 || tk < tq {
            candle_core::bail!(
                "attention needs heads divisible by kv heads and tk >= tq: q {q:?}, k {k:?}"
            );
        }
        Ok(Dims {
            heads,
            kv_heads,
            tq,
            tk,
            dim,
        })
    }

    /// Sizes of a whole-sequence pass (`tq == tk == positions`).
    pub(crate) fn whole(heads: usize, kv_heads: usize, positions: usize, dim: usize) -> Self {
        Dims {
            heads,
            kv_heads,
            tq: positions,
            tk: positions,
            dim,
        }
    }

    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Keys visible to query row `row` (in `0..tq`).
    fn visible(&self, row: usize) -> usize {
        self.tk - self.tq + row + 1
    }
}

/// Turns the scores of query rows `first..first + rows.len() / width` (row stride `width`)
/// into attention weights: a softmax over each row's visible keys, zeros after them.
fn causal_softmax(scores: &mut [f32], width: usize, first: usize, dims: &Dims) {
    for (r, row) in scores.chunks_mut(width).enumerate() {
        let (visible, hidden) = row.split_at_mut(dims.visible(first + r));
        softmax(visible);
        hidden.fill(0.0);
    }
}

/// `row` replaced by its softmax, in 256-bit registers where the CPU has AVX2 (the same
/// bits either way: the reductions' lanes are fixed by [`sum_of`] and [`max_of`], and the
/// rest is elementwise without fused operations).
fn softmax(row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::matvec::has_avx2() {
        #[target_feature(enable = "avx2")]
        fn softmax_avx2(row: &mut [f32]) {
            softmax_portable(row)
        }
        // SAFETY: the CPU has AVX2.
        #[allow(unsafe_code)]
        unsafe {
            softmax_avx2(row)
        };
        return;
    }
    softmax_portable(row)
}

#[inline(always)]
fn softmax_portable(row: &mut [f32]) {
    let max = max_of(row);
    for x in row.iter_mut() {
        *x = exp(*x - max);
    }
    let inv = 1.0 / sum_of(row, |x| x);
    row.iter_mut().for_each(|x| *x *= inv);
}

/// Attention weights of query rows `first..first + n` of one head into `scratch`
/// (`n x width`, `width` = keys visible to the last of those rows).
fn weights_block(
    q_head: &[f32],
    k_head: &[f32],
    first: usize,
    n: usize,
    dims: &Dims,
    scale: f32,
    scratch: &mut [f32],
) -> usize {
    let width = dims.visible(first + n - 1);
    let d = dims.dim;
    let q_rows = View::rows(&q_head[first * d..], n, d, d);
    let keys = View::rows(k_head, width, d, d);
    matmul_into(scratch, width, q_rows, keys.t(), scale, false);
    causal_softmax(&mut scratch[..n * width], width, first, dims);
    width
}

pub(crate) fn forward(q: &[f32], k: Heads, v: Heads, dims: &Dims, scale: f32) -> Vec<f32> {
    let Dims {
        heads, tq, tk, dim, ..
    } = *dims;
    let group = dims.group();
    let mut out = vec![0.0f32; q.len()];
    crate::parallel::for_each_chunk(&mut out, tq * dim, |bh, out_head| {
        let (b, h) = (bh / heads, bh % heads);
        let (k_head, v_head) = (k.head(b, h / group), v.head(b, h / group));
        let q_head = &q[bh * tq * dim..(bh + 1) * tq * dim];
        let mut scratch = vec![0.0f32; QUERY_BLOCK.min(tq) * tk];
        for first in (0..tq).step_by(QUERY_BLOCK) {
            let n = QUERY_BLOCK.min(tq - first);
            let width = weights_block(q_head, k_head, first, n, dims, scale, &mut scratch);
            let weights = View::rows(&scratch, n, width, width);
            let values = View::rows(v_head, width, dim, dim);
            matmul_into(
                &mut out_head[first * dim..],
                dim,
                weights,
                values,
                1.0,
                false,
            );
        }
    });
    out
}

/// Whether [`decoding_attention`] takes these queries (f32 on the CPU).
pub(crate) fn decoding_applies(q: &Tensor) -> bool {
    q.device().is_cpu() && q.dtype() == candle_core::DType::F32
}

/// Attention of one new position per batch row, for `q` `[batch, heads, 1, dim]` over keys and
/// values that may begin with positions every row shares (`shared`: keys and values `[1,
/// kv_heads, p, dim]`) and go on with the row's own (`own`: `[batch, kv_heads, s, dim]`, the
/// new position last): what [`causal_attention`] gives with the shared positions repeated
/// before each row's own (a new position sees every key, so nothing is masked).
///
/// The query heads that read one key/value head take their products together, in kernels for
/// a few rows against many keys ([`crate::matvec`]): gemm's packing and dispatch cost more
/// than the arithmetic of one query row, and a decoding step makes dozens of such products per
/// layer. With several samples of one prompt, the rows of all samples take one product with
/// the shared positions, so a step reads the prompt's keys and values once, not per sample.
pub(crate) fn decoding_attention(
    q: &Tensor,
    shared: Option<(Tensor, Tensor)>,
    own: (Tensor, Tensor),
    scale: f64,
) -> candle_core::Result<Tensor> {
    let (batch, heads, tq, dim) = q.dims4()?;
    let (own_batch, kv_heads, own_len, own_dim) = own.0.dims4()?;
    let shared_fits = shared.as_ref().is_none_or(|(keys, values)| {
        keys.dims4()
            .is_ok_and(|(b, h, _, d)| (b, h, d) == (1, kv_heads, dim))
            && values.dims() == keys.dims()
    });
    if tq != 1
        || own_batch != batch
        || own_dim != dim
        || own.1.dims() != own.0.dims()
        || !shared_fits
        || kv_heads == 0
        || heads % kv_heads != 0
    {
        candle_core::bail!(
            "decoding attention shapes do not fit: q {:?}, shared {:?}, own {:?}",
            q.dims(),
            shared.as_ref().map(|(keys, _)| keys.dims()),
            own.0.dims()
        );
    }
    if !decoding_applies(q) {
        candle_core::bail!("decoding attention takes f32 tensors on the CPU");
    }
    let q = q.contiguous()?;
    let mut tensors = vec![rows_contiguous(&own.0)?, rows_contiguous(&own.1)?];
    if let Some((keys, values)) = &shared {
        tensors.extend([rows_contiguous(keys)?, rows_contiguous(values)?]);
    }
    let guards: Vec<_> = tensors.iter().map(Tensor::storage_and_layout).collect();
    let op = "decoding attention";
    let heads_of = |index: usize| -> candle_core::Result<Heads> {
        let (storage, layout) = &guards[index];
        match &**storage {
            candle_core::Storage::Cpu(cpu) => Heads::of(cpu, layout, op),
            _ => candle_core::bail!("{op} takes CPU tensors"),
        }
    };
    let (q_storage, q_layout) = q.storage_and_layout();
    let q_values = match &*q_storage {
        candle_core::Storage::Cpu(cpu) => slice(cpu, q_layout, op)?,
        _ => candle_core::bail!("{op} takes CPU tensors"),
    };
    let shared = match shared {
        Some((keys, _)) => Some((keys.dim(2)?, heads_of(2)?, heads_of(3)?)),
        None => None,
    };
    let dims = DecodingDims {
        batch,
        heads,
        kv_heads,
        own: own_len,
        dim,
    };
    let out = decoding_forward(
        q_values,
        shared,
        (heads_of(0)?, heads_of(1)?),
        &dims,
        scale as f32,
    );
    Tensor::from_vec(out, (batch, heads, 1, dim), q.device())
}

/// Sizes of [`decoding_forward`]: `own` positions per batch row after the shared ones.
struct DecodingDims {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    own: usize,
    dim: usize,
}

/// [`decoding_attention`] on slices: `shared` is the number of shared positions with their
/// keys and values (batch 1).
fn decoding_forward(
    q: &[f32],
    shared: Option<(usize, Heads, Heads)>,
    (own_keys, own_values): (Heads, Heads),
    dims: &DecodingDims,
    scale: f32,
) -> Vec<f32> {
    let DecodingDims {
        batch,
        heads,
        kv_heads,
        own,
        dim,
    } = *dims;
    let group = heads / kv_heads;
    // Query row `r` of a key/value head is query head `r % group` of its group in batch row
    // `r / group`. Each head's rows are split in parts so that every thread gets work.
    let rows = batch * group;
    let parts = (2 * crate::parallel::threads())
        .div_ceil(kv_heads)
        .clamp(1, rows.max(1));
    let per_part = rows.div_ceil(parts).max(1);
    let parts = rows.div_ceil(per_part);
    let query_at = |g: usize, r: usize| ((r / group) * heads + g * group + r % group) * dim;
    let shared_len = shared.as_ref().map_or(0, |(len, _, _)| *len);
    let width = shared_len + own;
    let mut results = vec![0f32; kv_heads * parts * per_part * dim];
    crate::parallel::for_each_chunk(&mut results, per_part * dim, |task, out| {
        let (g, first) = (task / parts, (task % parts) * per_part);
        let n = per_part.min(rows - first);
        let queries: Vec<f32> = (first..first + n)
            .flat_map(|r| &q[query_at(g, r)..query_at(g, r) + dim])
            .copied()
            .collect();
        // Scores by key (the products' order), then by row as the softmax wants them.
        let mut by_key = vec![0f32; width * n];
        let (shared_part, own_part) = by_key.split_at_mut(shared_len * n);
        if let Some((_, keys, _)) = &shared {
            f32_product_into(&queries, n, keys.head(0, g), shared_part);
        }
        // The rows of one batch row are consecutive: one product per batch row.
        let mut i = 0;
        while i < n {
            let b = (first + i) / group;
            let m = (group - (first + i) % group).min(n - i);
            let mut sums = vec![0f32; own * m];
            let rows = &queries[i * dim..(i + m) * dim];
            f32_product_into(rows, m, own_keys.head(b, g), &mut sums);
            for (key, per_row) in sums.chunks_exact(m).enumerate() {
                own_part[key * n + i..key * n + i + m].copy_from_slice(per_row);
            }
            i += m;
        }
        let mut scores = vec![0f32; n * width];
        for (i, row) in scores.chunks_exact_mut(width).enumerate() {
            for (key, score) in row.iter_mut().enumerate() {
                *score = scale * by_key[key * n + i];
            }
            softmax(row);
        }
        let out = &mut out[..n * dim];
        if let Some((_, _, values)) = &shared {
            weighted_sum_into(out, dim, &scores, width, values.head(0, g));
        }
        for (i, out) in out.chunks_exact_mut(dim).enumerate() {
            let b = (first + i) / group;
            let weights = &scores[i * width + shared_len..];
            weighted_sum_into(out, dim, weights, width, own_values.head(b, g));
        }
    });
    let mut out = vec![0f32; q.len()];
    for g in 0..kv_heads {
        for r in 0..rows {
            let at = (g * parts * per_part + r) * dim;
            out[query_at(g, r)..query_at(g, r) + dim].copy_from_slice(&results[at..at + dim]);
        }
    }
    out
}

/// Gradients of q, k and v, given the output and its gradient (same layouts as the inputs).
pub(crate) struct Gradients {
    pub(crate) q: Vec<f32>,
    pub(crate) k: Vec<f32>,
    pub(crate) v: Vec<f32>,
}

pub(crate) fn backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    grad_out: &[f32],
    dims: &Dims,
    scale: f32,
) -> Gradients {
    let Dims { tq, tk, dim, .. } = *dims;
    let group = dims.group();
    let head = tq * dim;
    let mut grads = Gradients {
        q: vec![0.0; q.len()],
        k: vec![0.0; k.len()],
        v: vec![0.0; v.len()],
    };
    // One task per key/value head: it owns that head's dk and dv and the dq of its query heads,
    // so no two tasks write the same memory.
    grads
        .q
        .par_chunks_mut(group * head)
        .zip(grads.k.par_chunks_mut(tk * dim))
        .zip(grads.v.par_chunks_mut(tk * dim))
        .enumerate()
        .for_each(|(kv_index, ((dq_group, dk), dv))| {
            let kv = kv_index * tk * dim;
            let (k_head, v_head) = (&k[kv..kv + tk * dim], &v[kv..kv + tk * dim]);
            let rows = QUERY_BLOCK.min(tq);
            let mut weights = vec![0.0f32; rows * tk];
            let mut grad_scores = vec![0.0f32; rows * tk];
            for g in 0..group {
                let at = (kv_index * group + g) * head;
                let q_head = &q[at..at + head];
                let o_head = &out[at..at + head];
                let do_head = &grad_out[at..at + head];
                let dq_head = &mut dq_group[g * head..(g + 1) * head];
                for first in (0..tq).step_by(QUERY_BLOCK) {
                    let n = QUERY_BLOCK.min(tq - first);
                    let width = weights_block(q_head, k_head, first, n, dims, scale, &mut weights);
                    let p = View::rows(&weights, n, width, width);
                    let d_out = View::rows(&do_head[first * dim..], n, dim, dim);
                    // dv[..width] += pᵀ · d_out
                    matmul_into(dv, dim, p.t(), d_out, 1.0, true);
                    // d_p = d_out · vᵀ
                    let values = View::rows(v_head, width, dim, dim);
                    matmul_into(&mut grad_scores, width, d_out, values.t(), 1.0, false);
                    // d_s = p ∘ (d_p − rowsum(d_out ∘ out)): the softmax backward.
                    for r in 0..n {
                        let o_row = &o_head[(first + r) * dim..(first + r + 1) * dim];
                        let do_row = &do_head[(first + r) * dim..(first + r + 1) * dim];
                        let centre: f32 = o_row.iter().zip(do_row).map(|(a, b)| a * b).sum();
                        let p_row = &weights[r * width..(r + 1) * width];
                        let ds_row = &mut grad_scores[r * width..(r + 1) * width];
                        for (ds, &p) in ds_row.iter_mut().zip(p_row) {
                            *ds = p * (*ds - centre);
                        }
                    }
                    let d_scores = View::rows(&grad_scores, n, width, width);
                    // dq = scale · d_s · k; dk[..width] += scale · d_sᵀ · q
                    let keys = View::rows(k_head, width, dim, dim);
                    matmul_into(
                        &mut dq_head[first * dim..],
                        dim,
                        d_scores,
                        keys,
                        scale,
                        false,
                    );
                    let q_rows = View::rows(&q_head[first * dim..], n, dim, dim);
                    matmul_into(dk, dim, d_scores.t(), q_rows, scale, true);
                }
            }
        });
    grads
}

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "agentr-causal-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = Dims::of(ql.shape(), kl.shape(), vl.shape())?;
        let q = slice(qs, ql, "fused attention (q)")?;
        let k = Heads::of(ks, kl, "fused attention (k)")?;
        let v = Heads::of(vs, vl, "fused attention (v)")?;
        let out = forward(q, k, v, &dims, self.scale as f32);
        Ok((CpuStorage::F32(out), ql.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        grad_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = Dims::of(q.shape(), k.shape(), v.shape())?;
        let grads = backward(
            &elements(q)?,
            &elements(k)?,
            &elements(v)?,
            &elements(out)?,
            &elements(grad_out)?,
            &dims,
            self.scale as f32,
        );
        Ok((
            Some(leaf(grads.q, q)?),
            Some(leaf(grads.k, k)?),
            Some(leaf(grads.v, v)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::tests::{compare, max_difference, random};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Decoding steps (one query row per head, grouped heads) give the composed
        /// operations' output after any cached prefix (the test above rarely draws them).
        #[test]
        fn decoding_steps_match_composed(
            batch in 1usize..4,
            kv_heads in 1usize..4,
            group in 2usize..5,
            prefix in 0usize..40,
            dim in prop::sample::select(vec![2usize, 8, 64]),
            seed in 0u64..1000,
        ) {
            let heads = kv_heads * group;
            let tk = 1 + prefix;
            let q = random(&[batch, heads, 1, dim], seed);
            let k = random(&[batch, kv_heads, tk, dim], seed + 1);
            let v = random(&[batch, kv_heads, tk, dim], seed + 2);
            let fused = causal_attention(&q, &k, &v, 0.3).unwrap();
            let composed = composed_attention(&q, &k, &v, 0.3).unwrap();
            let diff = max_difference(&fused, &composed);
            prop_assert!(diff < 1e-5, "{}", diff);
        }

        /// The fused kernel and the composed operations agree on the output and on every
        /// gradient, across query blocks, cached prefixes, single-token decoding and head
        /// groupings.
        #[test]
        fn fused_matches_composed(
            batch in 1usize..3,
            kv_heads in 1usize..3,
            group in prop::sample::select(vec![1usize, 2, 4]),
            tq in 1usize..150,
            prefix in prop::sample::select(vec![0usize, 1, 7, 70]),
            dim in prop::sample::select(vec![2usize, 8, 16]),
            seed in 0u64..1000,
        ) {
            let heads = kv_heads * group;
            let tk = tq + prefix;
            let inputs = [
                random(&[batch, heads, tq, dim], seed),
                random(&[batch, kv_heads, tk, dim], seed + 1),
                random(&[batch, kv_heads, tk, dim], seed + 2),
            ];
            let diffs = compare(
                |t| causal_attention(&t[0], &t[1], &t[2], 0.3),
                |t| composed_attention(&t[0], &t[1], &t[2], 0.3),
                &inputs,
                seed + 3,
            );
            for (name, diff) in ["out", "dq", "dk", "dv"].iter().zip(diffs) {
                prop_assert!(diff < 2e-4, "{} differs by {}", name, diff);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// One new position per batch row over positions shared by every row (stored once)
        /// and the row's own (read in place from buffers with room to grow) gives what the
        /// fused kernel gives on the shared positions repeated before each row's own.
        #[test]
        fn decoding_attention_matches_the_repeated_prefix(
            batch in 1usize..5,
            kv_heads in 1usize..4,
            group in 1usize..4,
            shared in prop::option::of(0usize..40),
            own in 1usize..20,
            dim in prop::sample::select(vec![2usize, 8, 64, 72]),
            seed in 0u64..1000,
        ) {
            let heads = kv_heads * group;
            let q = random(&[batch, heads, 1, dim], seed);
            let room = |t: Tensor| t.narrow(2, 0, own).unwrap();
            let own_kv = (
                room(random(&[batch, kv_heads, own + 3, dim], seed + 1)),
                room(random(&[batch, kv_heads, own + 3, dim], seed + 2)),
            );
            let shared_kv = shared.map(|len| {
                (
                    random(&[1, kv_heads, len, dim], seed + 3),
                    random(&[1, kv_heads, len, dim], seed + 4),
                )
            });
            let whole = |own: &Tensor, shared: Option<&Tensor>| match shared {
                Some(shared) => Tensor::cat(&[&shared.repeat((batch, 1, 1, 1)).unwrap(), own], 2)
                    .unwrap(),
                None => own.clone(),
            };
            let expected = causal_attention(
                &q,
                &whole(&own_kv.0, shared_kv.as_ref().map(|kv| &kv.0)),
                &whole(&own_kv.1, shared_kv.as_ref().map(|kv| &kv.1)),
                0.3,
            )
            .unwrap();
            let found = decoding_attention(&q, shared_kv, own_kv, 0.3).unwrap();
            let diff = max_difference(&found, &expected);
            prop_assert!(diff < 1e-5, "{}", diff);
        }
    }

    #[test]
    fn decoding_attention_rejects_shapes_that_do_not_fit() {
        let q = random(&[2, 4, 1, 8], 1);
        let own = || (random(&[2, 2, 3, 8], 2), random(&[2, 2, 3, 8], 3));
        let shared = |batch, heads| random(&[batch, heads, 5, 8], 4);
        assert!(decoding_attention(&q, None, own(), 1.0).is_ok());
        for bad in [shared(2, 2), shared(1, 1)] {
            let pair = Some((bad.clone(), bad));
            assert!(decoding_attention(&q, pair, own(), 1.0).is_err());
        }
        let two_rows = random(&[2, 4, 2, 8], 5);
        assert!(decoding_attention(&two_rows, None, own(), 1.0).is_err());
        let other_batch = (random(&[3, 2, 3, 8], 6), random(&[3, 2, 3, 8], 7));
        assert!(decoding_attention(&q, None, other_batch, 1.0).is_err());
    }

    /// Keys and values read in place from a larger buffer (the KV cache's) give what their
    /// contiguous copies give.
    #[test]
    fn heads_inside_a_larger_buffer_are_read_in_place() {
        let q = random(&[2, 4, 3, 8], 1);
        let buffer = random(&[2, 2, 11, 8], 2);
        let (k, v) = (
            buffer.narrow(2, 0, 7).unwrap(),
            buffer.narrow(2, 1, 7).unwrap(),
        );
        assert!(!k.is_contiguous());
        let strided = causal_attention(&q, &k, &v, 0.5).unwrap();
        let copied =
            causal_attention(&q, &k.contiguous().unwrap(), &v.contiguous().unwrap(), 0.5).unwrap();
        assert_eq!(max_difference(&strided, &copied), 0.0);
    }

    #[test]
    fn mismatched_shapes_are_errors_not_panics() {
        let q = random(&[1, 4, 5, 8], 1);
        let k = random(&[1, 3, 5, 8], 2);
        assert!(causal_attention(&q, &k, &k, 1.0).is_err());
        let short = random(&[1, 2, 3, 8], 3);
        assert!(causal_attention(&q, &short, &short, 1.0).is_err());
    }
}
