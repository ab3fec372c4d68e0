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
        let max = max_of(visible);
        for x in visible.iter_mut() {
            *x = exp(*x - max);
        }
        let inv = 1.0 / sum_of(visible, |x| x);
        visible.iter_mut().for_each(|x| *x *= inv);
        hidden.fill(0.0);
    }
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
