//! The two halves of a decoder layer as one training operation each on the CPU, their
//! backward passes written by hand: [`attention`] (`x + o(attention(rope(q(n)), rope(k(n)),
//! v(n)))`) and [`feed_forward`] (`x + down(swiglu(gate(n), up(n)))`), each with `n =
//! rms_norm(x)`.
//!
//! Composed from the fused kernels, the two halves are about twenty graph nodes per layer.
//! candle keeps every node's inputs alive until the backward pass (normalised inputs, the
//! projections' outputs and their head-layout copies, gate, up, the SwiGLU product: about
//! 100 MB per SmolLM2 layer at 2,048 tokens), and its backward pass sums each node's gradient
//! into a freshly zeroed buffer of the node's size, on the calling thread. A fused half keeps
//! only what its backward pass reads (the rotated queries and keys, the values and the
//! attention's output; gate and up), recomputes the norm and the SwiGLU product elementwise,
//! and passes gradients between its parts in buffers of its own.
//!
//! The parameters' gradients still reach candle's gradient store under their own variables:
//! each trainable parameter enters the graph through a [`GradientTap`], a node whose value is
//! a single zero and whose backward pass hands over the gradient the fused operation left in
//! its slot. The taps are the operation's second input, so candle differentiates the
//! operation before them.

use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, bail};

use crate::attention::{Dims, Heads};
use crate::frozen::{Adapter, Operands, ProjectionGradients};
use crate::fused::{
    elements, fused_on, leaf, rms_norm_backward, rms_norm_rows, rotate_heads, slice,
    swiglu_backward, swiglu_values,
};
use crate::model::Projection;

/// `x + down(swiglu(gate(n), up(n)))`, `n = rms_norm(x, norm)`, for `x` `[rows, hidden]`
/// when the fused operation applies (f32 on the CPU, projections without biases, something
/// to differentiate); `None` otherwise, and the caller composes it.
pub(crate) fn feed_forward(
    x: &Tensor,
    norm: &Tensor,
    eps: f64,
    projections: [&Projection; 3],
) -> Result<Option<Tensor>> {
    let Some((block, taps)) = Block::new(x, norm, eps, projections)? else {
        return Ok(None);
    };
    x.contiguous()?
        .apply_op2(&taps, FusedFeedForward { block })
        .map(Some)
}

/// The sizes of an attention block's input: `batch * seq` rows of `heads * head_dim`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttentionShape {
    pub(crate) batch: usize,
    pub(crate) seq: usize,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
}

/// `x + o(attention(rope(q(n)), rope(k(n)), v(n)))`, `n = rms_norm(x, norm)`, for a whole
/// sequence from position 0 (no KV cache), causal, with grouped key/value heads; `cos` and
/// `sin` are the rotary tables of positions `0..seq` (`[seq, head_dim / 2]`). `None` when the
/// fused operation does not apply, as for [`feed_forward`].
pub(crate) fn attention(
    x: &Tensor,
    norm: &Tensor,
    eps: f64,
    projections: [&Projection; 4],
    shape: AttentionShape,
    (cos, sin): (&Tensor, &Tensor),
) -> Result<Option<Tensor>> {
    if !fused_on(cos) || !fused_on(sin) {
        return Ok(None);
    }
    let Some((block, taps)) = Block::new(x, norm, eps, projections)? else {
        return Ok(None);
    };
    let op = FusedAttentionBlock {
        block,
        shape,
        cos: elements(cos)?.to_vec(),
        sin: elements(sin)?.to_vec(),
    };
    x.contiguous()?.apply_op2(&taps, op).map(Some)
}

/// What both fused operations hold: the norm before the projections, the projections, the
/// gradient slots of what trains, and what the forward pass keeps for the backward pass.
struct Block<const N: usize, S> {
    eps: f32,
    norm: Tensor,
    norm_slot: Option<usize>,
    parts: [Part; N],
    slots: Arc<Slots>,
    saved: Mutex<Option<S>>,
}

impl<const N: usize, S> Block<N, S> {
    /// The block and its taps, when the fused operation applies.
    fn new(
        x: &Tensor,
        norm: &Tensor,
        eps: f64,
        projections: [&Projection; N],
    ) -> Result<Option<(Self, Tensor)>> {
        if !fusable(x, norm, &projections) {
            return Ok(None);
        }
        let mut trained = Trained::default();
        let norm_slot = trained.slot(norm);
        let parts = projections.map(|p| Part::of(p, &mut trained));
        if trained.tensors.is_empty() && !x.track_op() {
            return Ok(None);
        }
        let (slots, taps) = trained.taps(x.device())?;
        let block = Block {
            eps: eps as f32,
            norm: norm.clone(),
            norm_slot,
            parts,
            slots,
            saved: Mutex::new(None),
        };
        Ok(Some((block, taps)))
    }

    fn keep(&self, saved: S) {
        *self.saved.lock().unwrap_or_else(PoisonError::into_inner) = Some(saved);
    }

    fn take(&self, name: &str) -> Result<S> {
        match self
            .saved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            Some(saved) => Ok(saved),
            None => bail!("{name}: differentiated twice"),
        }
    }

    /// The end of a backward pass: `x`'s gradient (the residual's `grad` plus the norm's
    /// share from `g_normed`), the parameters' gradients left in their slots, and the taps'
    /// gradient (without which candle skips their backward passes).
    fn finish(
        &self,
        x: &Tensor,
        taps: &Tensor,
        grad: &[f32],
        g_normed: &[f32],
        gradients: [ProjectionGradients; N],
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (xs, norm) = (elements(x)?, elements(&self.norm)?);
        let mut gx = grad.to_vec();
        let g_norm = rms_norm_backward(&xs, &norm, g_normed, self.eps, &mut gx);
        self.slots
            .put(self.norm_slot, || leaf(g_norm, &self.norm))?;
        self.slots.put_projections(&self.parts, gradients)?;
        let gx = x.track_op().then(|| leaf(gx, x)).transpose()?;
        let g_taps = taps.track_op().then(|| taps.zeros_like()).transpose()?;
        Ok((gx, g_taps))
    }

    /// The norm's output for `x` (`[rows, hidden]`).
    fn normed(&self, x: &[f32]) -> Result<Vec<f32>> {
        Ok(rms_norm_rows(x, &elements(&self.norm)?, self.eps))
    }
}

/// Whether the fused operations take these operands: f32 on the CPU, a 2-D input, contiguous
/// parameters, projections without biases.
fn fusable(x: &Tensor, norm: &Tensor, projections: &[&Projection]) -> bool {
    let f32_cpu = |t: &Tensor| fused_on(t) && t.is_contiguous();
    fused_on(x)
        && x.rank() == 2
        && f32_cpu(norm)
        && projections.iter().all(|p| {
            p.bias.is_none()
                && f32_cpu(&p.weight)
                && p.adapter.as_ref().is_none_or(|adapter| {
                    f32_cpu(adapter.a.as_tensor()) && f32_cpu(adapter.b.as_tensor())
                })
        })
}

/// A block's trainable parameters in the order their slots were handed out.
#[derive(Default)]
struct Trained {
    tensors: Vec<Tensor>,
}

impl Trained {
    /// The slot of `t`'s gradient when it trains.
    fn slot(&mut self, t: &Tensor) -> Option<usize> {
        t.track_op().then(|| {
            self.tensors.push(t.clone());
            self.tensors.len() - 1
        })
    }

    /// The slots and the operation's second input: every parameter's tap, joined (a constant
    /// when nothing trains).
    fn taps(self, device: &candle_core::Device) -> Result<(Arc<Slots>, Tensor)> {
        let slots = Arc::new(Slots(Mutex::new(vec![None; self.tensors.len()])));
        let taps = self
            .tensors
            .iter()
            .enumerate()
            .map(|(index, t)| {
                t.apply_op1(GradientTap {
                    slots: slots.clone(),
                    index,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let joined = match taps.is_empty() {
            true => Tensor::zeros(1, candle_core::DType::F32, device)?,
            false => Tensor::cat(&taps, 0)?,
        };
        Ok((slots, joined))
    }
}

/// One projection of the block, as the operation holds it.
struct Part {
    weight: Tensor,
    weight_slot: Option<usize>,
    adapter: Option<PartAdapter>,
}

impl Part {
    fn of(p: &Projection, trained: &mut Trained) -> Self {
        Part {
            weight: p.weight.clone(),
            weight_slot: trained.slot(&p.weight),
            adapter: p.adapter.as_ref().map(|adapter| PartAdapter {
                a: adapter.a.as_tensor().clone(),
                b: adapter.b.as_tensor().clone(),
                scale: adapter.scale as f32,
                slots: [
                    trained.slot(adapter.a.as_tensor()),
                    trained.slot(adapter.b.as_tensor()),
                ],
            }),
        }
    }
}

struct PartAdapter {
    a: Tensor,
    b: Tensor,
    scale: f32,
    /// The slots of A's and B's gradients (adapters always train).
    slots: [Option<usize>; 2],
}

/// The gradients the fused operation computed for its trainable parameters, by tap index.
struct Slots(Mutex<Vec<Option<Tensor>>>);

impl Slots {
    fn put(&self, index: Option<usize>, gradient: impl FnOnce() -> Result<Tensor>) -> Result<()> {
        if let Some(index) = index {
            let gradient = gradient()?;
            self.0.lock().unwrap_or_else(PoisonError::into_inner)[index] = Some(gradient);
        }
        Ok(())
    }

    /// Leaves each part's requested gradients in their slots.
    fn put_projections<const N: usize>(
        &self,
        parts: &[Part; N],
        gradients: [ProjectionGradients; N],
    ) -> Result<()> {
        let missing = || candle_core::Error::Msg("a requested gradient is missing".into());
        for (part, grads) in parts.iter().zip(gradients) {
            self.put(part.weight_slot, || {
                leaf(grads.weight.ok_or_else(missing)?, &part.weight)
            })?;
            if let Some(adapter) = &part.adapter {
                let [a_slot, b_slot] = adapter.slots;
                self.put(a_slot, || leaf(grads.a.ok_or_else(missing)?, &adapter.a))?;
                self.put(b_slot, || leaf(grads.b.ok_or_else(missing)?, &adapter.b))?;
            }
        }
        Ok(())
    }

    fn take(&self, index: usize) -> Option<Tensor> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)[index].take()
    }
}

/// A parameter's entry into the graph: the value is one zero, and the backward pass returns
/// the gradient the fused operation left in slot `index`.
struct GradientTap {
    slots: Arc<Slots>,
    index: usize,
}

impl CustomOp1 for GradientTap {
    fn name(&self) -> &'static str {
        "agentr-gradient-tap"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((CpuStorage::F32(vec![0.0]), Shape::from(1)))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, _grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(self.slots.take(self.index))
    }
}

/// What the forward pass keeps for the backward pass: the gate and up projections and each
/// projection's `x Aᵀ`.
struct Saved {
    gate: Vec<f32>,
    up: Vec<f32>,
    lows: [Vec<f32>; 3],
}

struct FusedFeedForward {
    block: Block<3, Saved>,
}

/// The f32 elements of every tensor a part reads, borrowed for one pass.
struct PartData<'a> {
    weight: crate::fused::Elements<'a>,
    adapter: Option<(
        crate::fused::Elements<'a>,
        crate::fused::Elements<'a>,
        usize,
        f32,
    )>,
    out: usize,
    inner: usize,
}

impl<'a> PartData<'a> {
    fn of(part: &'a Part) -> Result<Self> {
        let (out, inner) = part.weight.dims2()?;
        let adapter = match &part.adapter {
            Some(adapter) => Some((
                elements(&adapter.a)?,
                elements(&adapter.b)?,
                adapter.a.dim(0)?,
                adapter.scale,
            )),
            None => None,
        };
        Ok(PartData {
            weight: elements(&part.weight)?,
            adapter,
            out,
            inner,
        })
    }

    fn operands(&self) -> Operands<'_> {
        Operands {
            weight: &self.weight,
            out: self.out,
            inner: self.inner,
            adapter: self.adapter.as_ref().map(|(a, b, rank, scale)| Adapter {
                a,
                b,
                rank: *rank,
                scale: *scale,
            }),
        }
    }
}

/// Every part's data, borrowed for one pass.
fn data<const N: usize>(parts: &[Part; N]) -> Result<[PartData<'_>; N]> {
    let data = parts.iter().map(PartData::of).collect::<Result<Vec<_>>>()?;
    Ok(data
        .try_into()
        .unwrap_or_else(|_| unreachable!("one datum per part")))
}

impl CustomOp2 for FusedFeedForward {
    fn name(&self) -> &'static str {
        "agentr-feed-forward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let x = slice(xs, xl, name)?;
        let (rows, hidden) = xl.shape().dims2()?;
        let [gate, up, down] = data(&self.block.parts)?;
        if self.block.norm.elem_count() != hidden
            || gate.inner != hidden
            || up.inner != hidden
            || up.out != gate.out
            || down.inner != gate.out
            || down.out != hidden
        {
            bail!("{name}: the projections do not fit an input of width {hidden}")
        }
        let normed = self.block.normed(x)?;
        let (gate_out, gate_low) = gate.operands().forward(&normed, rows);
        let (up_out, up_low) = up.operands().forward(&normed, rows);
        let product = swiglu_values(&gate_out, &up_out);
        let (mut y, down_low) = down.operands().forward(&product, rows);
        y.iter_mut().zip(x).for_each(|(y, x)| *y += x);
        self.block.keep(Saved {
            gate: gate_out,
            up: up_out,
            lows: [gate_low, up_low, down_low],
        });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        taps: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = self.block.take(self.name())?;
        let (rows, hidden) = x.dims2()?;
        let gs = elements(grad)?;
        let [gate, up, down] = data(&self.block.parts)?;
        let trains = self.block.parts.each_ref().map(|p| p.weight_slot.is_some());
        let product = swiglu_values(&saved.gate, &saved.up);
        let mut g_product = vec![0.0f32; rows * down.inner];
        let down_grads = down.operands().backward(
            &product,
            &saved.lows[2],
            &gs,
            rows,
            Some(&mut g_product),
            trains[2],
        );
        drop(product);
        let (g_gate, g_up) = swiglu_backward(&saved.gate, &saved.up, &g_product);
        drop(g_product);
        let normed = self.block.normed(&elements(x)?)?;
        let mut g_normed = vec![0.0f32; rows * hidden];
        let gate_grads = gate.operands().backward(
            &normed,
            &saved.lows[0],
            &g_gate,
            rows,
            Some(&mut g_normed),
            trains[0],
        );
        let up_grads = up.operands().backward(
            &normed,
            &saved.lows[1],
            &g_up,
            rows,
            Some(&mut g_normed),
            trains[1],
        );
        self.block
            .finish(x, taps, &gs, &g_normed, [gate_grads, up_grads, down_grads])
    }
}

/// What the attention block's forward pass keeps: the rotated queries and keys, the values
/// and the attention's output (`[batch, heads, seq, head_dim]` each), and each projection's
/// `x Aᵀ`.
struct AttentionSaved {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    out: Vec<f32>,
    lows: [Vec<f32>; 4],
}

struct FusedAttentionBlock {
    block: Block<4, AttentionSaved>,
    shape: AttentionShape,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// `[batch * seq, heads * dim]` rows as `[batch, heads, seq, dim]`.
fn to_heads(rows: &[f32], shape: &AttentionShape, heads: usize) -> Vec<f32> {
    let (seq, dim) = (shape.seq, shape.head_dim);
    let mut out = vec![0.0f32; rows.len()];
    for (bh, block) in out.chunks_mut(seq * dim).enumerate() {
        let (b, h) = (bh / heads, bh % heads);
        for (t, row) in block.chunks_mut(dim).enumerate() {
            let at = ((b * seq + t) * heads + h) * dim;
            row.copy_from_slice(&rows[at..at + dim]);
        }
    }
    out
}

/// The inverse of [`to_heads`].
fn from_heads(blocks: &[f32], shape: &AttentionShape, heads: usize) -> Vec<f32> {
    let (seq, dim) = (shape.seq, shape.head_dim);
    let mut out = vec![0.0f32; blocks.len()];
    for (bh, block) in blocks.chunks(seq * dim).enumerate() {
        let (b, h) = (bh / heads, bh % heads);
        for (t, row) in block.chunks(dim).enumerate() {
            let at = ((b * seq + t) * heads + h) * dim;
            out[at..at + dim].copy_from_slice(row);
        }
    }
    out
}

impl FusedAttentionBlock {
    fn dims(&self) -> Dims {
        let s = &self.shape;
        Dims::whole(s.heads, s.kv_heads, s.seq, s.head_dim)
    }

    fn scale(&self) -> f32 {
        1.0 / (self.shape.head_dim as f32).sqrt()
    }

    /// `[batch * seq, heads * dim]` rows as rotated `[batch, heads, seq, dim]` heads.
    fn rotated(&self, rows: &[f32], heads: usize) -> Vec<f32> {
        let blocks = to_heads(rows, &self.shape, heads);
        let mut out = vec![0.0f32; blocks.len()];
        rotate_heads(
            &blocks,
            &self.cos,
            &self.sin,
            self.shape.head_dim,
            1.0,
            &mut out,
        );
        out
    }

    /// The inverse of [`FusedAttentionBlock::rotated`] (a rotation's transpose is the
    /// rotation by the opposite angle), for gradients.
    fn unrotated(&self, blocks: &[f32], heads: usize) -> Vec<f32> {
        let mut plain = vec![0.0f32; blocks.len()];
        rotate_heads(
            blocks,
            &self.cos,
            &self.sin,
            self.shape.head_dim,
            -1.0,
            &mut plain,
        );
        from_heads(&plain, &self.shape, heads)
    }
}

impl CustomOp2 for FusedAttentionBlock {
    fn name(&self) -> &'static str {
        "agentr-attention-block"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let x = slice(xs, xl, name)?;
        let (rows, hidden) = xl.shape().dims2()?;
        let AttentionShape {
            batch,
            seq,
            heads,
            kv_heads,
            head_dim,
        } = self.shape;
        let [q, k, v, o] = data(&self.block.parts)?;
        let fits = rows == batch * seq
            && self.block.norm.elem_count() == hidden
            && [&q, &k, &v].iter().all(|p| p.inner == hidden)
            && q.out == heads * head_dim
            && k.out == kv_heads * head_dim
            && v.out == kv_heads * head_dim
            && o.inner == heads * head_dim
            && o.out == hidden
            && kv_heads > 0
            && heads % kv_heads == 0
            && head_dim % 2 == 0
            && self.cos.len() == seq * head_dim / 2
            && self.sin.len() == self.cos.len();
        if !fits {
            bail!(
                "{name}: the projections, heads and tables do not fit an input of [{rows}, {hidden}]"
            )
        }
        let normed = self.block.normed(x)?;
        let (q_rows, q_low) = q.operands().forward(&normed, rows);
        let (k_rows, k_low) = k.operands().forward(&normed, rows);
        let (v_rows, v_low) = v.operands().forward(&normed, rows);
        drop(normed);
        let q_heads = self.rotated(&q_rows, heads);
        let k_heads = self.rotated(&k_rows, kv_heads);
        let v_heads = to_heads(&v_rows, &self.shape, kv_heads);
        let keys = Heads::contiguous(&k_heads, kv_heads, seq, head_dim);
        let values = Heads::contiguous(&v_heads, kv_heads, seq, head_dim);
        let out = crate::attention::forward(&q_heads, keys, values, &self.dims(), self.scale());
        let attended = from_heads(&out, &self.shape, heads);
        let (mut y, o_low) = o.operands().forward(&attended, rows);
        y.iter_mut().zip(x).for_each(|(y, x)| *y += x);
        self.block.keep(AttentionSaved {
            q: q_heads,
            k: k_heads,
            v: v_heads,
            out,
            lows: [q_low, k_low, v_low, o_low],
        });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        taps: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = self.block.take(self.name())?;
        let (rows, hidden) = x.dims2()?;
        let (heads, kv_heads) = (self.shape.heads, self.shape.kv_heads);
        let gs = elements(grad)?;
        let [q, k, v, o] = data(&self.block.parts)?;
        let trains = self.block.parts.each_ref().map(|p| p.weight_slot.is_some());
        let attended = from_heads(&saved.out, &self.shape, heads);
        let mut g_attended = vec![0.0f32; attended.len()];
        let o_grads = o.operands().backward(
            &attended,
            &saved.lows[3],
            &gs,
            rows,
            Some(&mut g_attended),
            trains[3],
        );
        drop(attended);
        let g_out = to_heads(&g_attended, &self.shape, heads);
        drop(g_attended);
        let g_heads = crate::attention::backward(
            &saved.q,
            &saved.k,
            &saved.v,
            &saved.out,
            &g_out,
            &self.dims(),
            self.scale(),
        );
        drop(g_out);
        let g_q = self.unrotated(&g_heads.q, heads);
        let g_k = self.unrotated(&g_heads.k, kv_heads);
        let g_v = from_heads(&g_heads.v, &self.shape, kv_heads);
        drop(g_heads);
        let normed = self.block.normed(&elements(x)?)?;
        let mut g_normed = vec![0.0f32; rows * hidden];
        let mut project_back = |operands: Operands, low: &[f32], g: &[f32], trains: bool| {
            operands.backward(&normed, low, g, rows, Some(&mut g_normed), trains)
        };
        let q_grads = project_back(q.operands(), &saved.lows[0], &g_q, trains[0]);
        let k_grads = project_back(k.operands(), &saved.lows[1], &g_k, trains[1]);
        let v_grads = project_back(v.operands(), &saved.lows[2], &g_v, trains[2]);
        self.block.finish(
            x,
            taps,
            &gs,
            &g_normed,
            [q_grads, k_grads, v_grads, o_grads],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::tests::random;
    use crate::model::Adapter as LoraAdapter;
    use candle_core::Var;
    use proptest::prelude::*;

    const EPS: f64 = 1e-5;

    struct Case {
        x: Var,
        norm: Tensor,
        projections: Vec<Projection>,
    }

    /// Random operands: `x` `[rows, hidden]`, the norm, and projections of `shapes`
    /// (`[out, in]`); every weight trains when `full`, otherwise the base is frozen and the
    /// projections flagged in `adapters` get LoRA adapters of `rank`.
    fn case(
        (rows, hidden): (usize, usize),
        shapes: &[[usize; 2]],
        rank: usize,
        adapters: &[bool],
        full: bool,
        seed: u64,
    ) -> Case {
        let tensor = |dims: &[usize], salt: u64| random(dims, seed ^ salt);
        let base = |t: Tensor| match full {
            true => Var::from_tensor(&t).unwrap().as_tensor().clone(),
            false => t,
        };
        let projections = shapes
            .iter()
            .zip(adapters)
            .enumerate()
            .map(|(i, (&[out, input], &adapted))| {
                let salt = 10 * (i as u64 + 1);
                Projection {
                    weight: base(tensor(&[out, input], salt)),
                    bias: None,
                    adapter: (!full && adapted).then(|| LoraAdapter {
                        a: Var::from_tensor(&tensor(&[rank, input], salt + 1)).unwrap(),
                        b: Var::from_tensor(&tensor(&[out, rank], salt + 2)).unwrap(),
                        scale: 0.75,
                    }),
                    int8: None,
                }
            })
            .collect();
        Case {
            x: Var::from_tensor(&tensor(&[rows, hidden], 1)).unwrap(),
            norm: base((tensor(&[hidden], 2) + 1.0).unwrap()),
            projections,
        }
    }

    fn feed_forward_case(
        rows: usize,
        hidden: usize,
        inner: usize,
        rank: usize,
        adapters: [bool; 3],
        full: bool,
        seed: u64,
    ) -> Case {
        let shapes = [[inner, hidden], [inner, hidden], [hidden, inner]];
        case((rows, hidden), &shapes, rank, &adapters, full, seed)
    }

    /// Compares the fused block's output and gradients with the composed block's, relative
    /// to the largest value (with one key, the queries' and keys' exact gradients are 0, and
    /// both sides compute them as differences of large sums).
    fn check(
        case: &Case,
        expected: Tensor,
        actual: Tensor,
        seed: u64,
    ) -> std::result::Result<(), TestCaseError> {
        let difference = crate::fused::tests::max_difference(&expected, &actual);
        let largest = largest_magnitude(&expected).max(1.0);
        prop_assert!(
            difference < 1e-4 * largest,
            "output differs by {} (largest {})",
            difference,
            largest
        );
        let probe = random(expected.dims(), seed ^ 99);
        let expected = (expected * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let actual = (actual * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let tensors = differentiated(case);
        let largest = tensors
            .iter()
            .map(|t| largest_magnitude(expected.get(t).unwrap()))
            .fold(1.0f32, f32::max);
        for t in tensors {
            let (e, a) = (expected.get(&t).unwrap(), actual.get(&t));
            prop_assert!(
                a.is_some(),
                "no gradient for a tensor of shape {:?}",
                t.dims()
            );
            let difference = crate::fused::tests::max_difference(e, a.unwrap());
            prop_assert!(
                difference < 1e-4 * largest,
                "{:?} differs by {} (largest gradient {})",
                t.dims(),
                difference,
                largest
            );
        }
        Ok(())
    }

    /// A projection from candle operations.
    fn project(x: &Tensor, p: &Projection) -> Tensor {
        match &p.adapter {
            Some(adapter) => crate::frozen::composed_lora_linear(
                x,
                &p.weight,
                adapter.a.as_tensor(),
                adapter.b.as_tensor(),
                adapter.scale,
            ),
            None => x.matmul(&p.weight.t().unwrap()),
        }
        .unwrap()
    }

    fn composed(case: &Case) -> Tensor {
        let x = case.x.as_tensor();
        let normed = crate::fused::composed_rms_norm(x, &case.norm, EPS).unwrap();
        let gate = project(&normed, &case.projections[0]);
        let up = project(&normed, &case.projections[1]);
        let product = crate::fused::composed_swiglu(&gate, &up).unwrap();
        (x + project(&product, &case.projections[2])).unwrap()
    }

    fn fused(case: &Case) -> Tensor {
        let [gate, up, down] = [0, 1, 2].map(|i| &case.projections[i]);
        feed_forward(case.x.as_tensor(), &case.norm, EPS, [gate, up, down])
            .unwrap()
            .expect("the fused operation applies")
    }

    /// Every tensor whose gradient the case asks for: x, and what trains.
    fn differentiated(case: &Case) -> Vec<Tensor> {
        let mut tensors = vec![case.x.as_tensor().clone(), case.norm.clone()];
        for p in &case.projections {
            tensors.push(p.weight.clone());
            if let Some(adapter) = &p.adapter {
                tensors.push(adapter.a.as_tensor().clone());
                tensors.push(adapter.b.as_tensor().clone());
            }
        }
        tensors.retain(|t| t.track_op());
        tensors
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The fused block gives the composed block's output and the gradient of x and of
        /// every trainable parameter (full fine-tuning, and adapters on any projections).
        #[test]
        fn fused_block_matches_the_composed_one(
            rows in 1usize..7,
            hidden in 1usize..9,
            inner in 1usize..11,
            rank in 1usize..4,
            adapters in prop::array::uniform3(any::<bool>()),
            full in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let case = feed_forward_case(rows, hidden, inner, rank, adapters, full, seed);
            check(&case, composed(&case), fused(&case), seed)?;
        }
    }

    /// An attention block's case: projections q, k, v and o.
    fn attention_case(
        shape: AttentionShape,
        rank: usize,
        adapters: [bool; 4],
        full: bool,
        seed: u64,
    ) -> Case {
        let hidden = shape.heads * shape.head_dim + 2;
        let (q_out, kv_out) = (
            shape.heads * shape.head_dim,
            shape.kv_heads * shape.head_dim,
        );
        let shapes = [
            [q_out, hidden],
            [kv_out, hidden],
            [kv_out, hidden],
            [hidden, q_out],
        ];
        case(
            (shape.batch * shape.seq, hidden),
            &shapes,
            rank,
            &adapters,
            full,
            seed,
        )
    }

    fn largest_magnitude(t: &Tensor) -> f32 {
        t.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Rotary tables for positions `0..seq`.
    fn tables(seq: usize, half: usize) -> (Tensor, Tensor) {
        let angles: Vec<f32> = (0..seq * half)
            .map(|i| (i / half) as f32 * 0.3 / (1 + i % half) as f32)
            .collect();
        let angles = Tensor::from_vec(angles, (seq, half), &candle_core::Device::Cpu).unwrap();
        (angles.cos().unwrap(), angles.sin().unwrap())
    }

    fn composed_attention(
        case: &Case,
        shape: AttentionShape,
        (cos, sin): (&Tensor, &Tensor),
    ) -> Tensor {
        let AttentionShape {
            batch,
            seq,
            heads,
            kv_heads,
            head_dim,
        } = shape;
        let x = case.x.as_tensor();
        let normed = crate::fused::composed_rms_norm(x, &case.norm, EPS).unwrap();
        let project = |i: usize, input: &Tensor| project(input, &case.projections[i]);
        let to_heads = |t: Tensor, n: usize| {
            t.reshape((batch, seq, n, head_dim))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let q =
            crate::fused::composed_rotary(&to_heads(project(0, &normed), heads), cos, sin).unwrap();
        let k = crate::fused::composed_rotary(&to_heads(project(1, &normed), kv_heads), cos, sin)
            .unwrap();
        let v = to_heads(project(2, &normed), kv_heads);
        let scale = 1.0 / (head_dim as f64).sqrt();
        let attended = crate::attention::composed_attention(&q, &k, &v, scale)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((batch * seq, heads * head_dim))
            .unwrap();
        (x + project(3, &attended)).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// The fused attention block gives the composed block's output and the gradient of x
        /// and of every trainable parameter, with grouped key/value heads.
        #[test]
        fn fused_attention_block_matches_the_composed_one(
            batch in 1usize..3,
            seq in 1usize..7,
            kv_heads in 1usize..3,
            group in 1usize..4,
            half in 1usize..4,
            rank in 1usize..3,
            adapters in prop::array::uniform4(any::<bool>()),
            full in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let shape = AttentionShape { batch, seq, heads: kv_heads * group, kv_heads, head_dim: 2 * half };
            let case = attention_case(shape, rank, adapters, full, seed);
            let (cos, sin) = tables(seq, half);
            let expected = composed_attention(&case, shape, (&cos, &sin));
            let [q, k, v, o] = [0, 1, 2, 3].map(|i| &case.projections[i]);
            let actual = attention(case.x.as_tensor(), &case.norm, EPS, [q, k, v, o], shape, (&cos, &sin))
                .unwrap()
                .expect("the fused operation applies");
            check(&case, expected, actual, seed)?;
        }
    }

    #[test]
    fn biases_and_other_dtypes_are_left_to_the_composed_path() {
        let mut with_bias = feed_forward_case(2, 3, 4, 1, [false; 3], true, 1);
        with_bias.projections[1].bias = Some(random(&[4], 5));
        let [gate, up, down] = [0, 1, 2].map(|i| &with_bias.projections[i]);
        let x = with_bias.x.as_tensor();
        assert!(
            feed_forward(x, &with_bias.norm, EPS, [gate, up, down])
                .unwrap()
                .is_none()
        );
        let plain = feed_forward_case(2, 3, 4, 1, [false; 3], true, 1);
        let [gate, up, down] = [0, 1, 2].map(|i| &plain.projections[i]);
        let bf16 = x.to_dtype(candle_core::DType::BF16).unwrap();
        assert!(
            feed_forward(&bf16, &plain.norm, EPS, [gate, up, down])
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_second_backward_pass_is_an_error_not_a_wrong_gradient() {
        let case = feed_forward_case(2, 3, 4, 1, [true, false, true], false, 3);
        let y = fused(&case).sum_all().unwrap();
        y.backward().unwrap();
        let message = y.backward().unwrap_err().to_string();
        assert!(message.contains("differentiated twice"), "{message}");
    }
}
