//! Masked next-token cross-entropy: a fused CPU kernel for the log-probabilities of the
//! targets, with a hand-written backward pass, beside the same function composed from candle
//! operations (other devices, and the tests' reference).
//!
//! Composed, the log-softmax and the pick stream the `[tokens, vocab]` logits about eight
//! times forward and as many backward, each pass allocating a tensor of that size; the fused
//! kernel reads the logits once forward and writes their gradient once backward, skipping the
//! rows the mask leaves out.

use candle_core::{CpuStorage, CustomOp1, D, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::TrainError;
use crate::fused::{elements, exp, fused_on, leaf, max_of, slice, sum_of};

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 16;

/// Mean negative log-likelihood of `targets` under `logits`, over the positions where `mask`
/// is one. Shapes: logits `[batch, seq, vocab]`; targets (u32) and mask (f32) `[batch, seq]`.
/// Returns the scalar loss and the number of positions it averages over.
pub fn masked_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
) -> Result<(Tensor, f64), TrainError> {
    let picked = if fused_on(logits) {
        let vocab = logits.dim(D::Minus1)?;
        let rows = logits.contiguous()?.reshape(((), vocab))?;
        let op = PickedLogProb {
            targets: targets.flatten_all()?.to_vec1::<u32>()?,
        };
        rows.apply_op1(op)?.reshape(targets.shape())?
    } else {
        composed_picked_log_prob(logits, targets)?
    };
    let count = mask.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let total = (picked * mask)?.sum_all()?;
    let loss = (total.neg()? / count.max(1.0))?;
    Ok((loss, count))
}

/// `log_softmax(logits)[target]` per position, from candle operations.
fn composed_picked_log_prob(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_normaliser = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let log_probs = shifted.broadcast_sub(&log_normaliser)?;
    log_probs
        .gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?
        .squeeze(D::Minus1)
}

/// `log_softmax(row)[target]` for each row of a `[rows, vocab]` tensor.
struct PickedLogProb {
    targets: Vec<u32>,
}

/// Fills `exps` with `exp(row − max)` and returns the row's maximum and `Σ exps` (two passes
/// so that each loop vectorises).
fn shifted_exps(row: &[f32], exps: &mut [f32]) -> (f32, f32) {
    let max = max_of(row);
    for (e, &v) in exps.iter_mut().zip(row) {
        *e = exp(v - max);
    }
    (max, sum_of(exps, |e| e))
}

impl PickedLogProb {
    fn check(&self, len: usize, vocab: usize) -> candle_core::Result<()> {
        if vocab == 0 || len != self.targets.len() * vocab {
            candle_core::bail!(
                "cross-entropy: {} targets for {len} logits of width {vocab}",
                self.targets.len()
            );
        }
        if let Some(&bad) = self.targets.iter().find(|&&t| t as usize >= vocab) {
            candle_core::bail!("cross-entropy: target {bad} outside a vocabulary of {vocab}");
        }
        Ok(())
    }
}

impl CustomOp1 for PickedLogProb {
    fn name(&self) -> &'static str {
        "agentr-picked-log-prob"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l, self.name())?;
        let vocab = l.dims().last().copied().unwrap_or(0);
        self.check(x.len(), vocab)?;
        let mut out = vec![0.0f32; self.targets.len()];
        out.par_chunks_mut(ROWS_PER_TASK)
            .zip(x.par_chunks(vocab * ROWS_PER_TASK))
            .zip(self.targets.par_chunks(ROWS_PER_TASK))
            .for_each(|((out, rows), targets)| {
                let mut exps = vec![0.0f32; vocab];
                for ((o, row), &t) in out.iter_mut().zip(rows.chunks(vocab)).zip(targets) {
                    let (max, sum) = shifted_exps(row, &mut exps);
                    *o = row[t as usize] - max - sum.ln();
                }
            });
        Ok((CpuStorage::F32(out), Shape::from(self.targets.len())))
    }

    /// d row_j = g (onehot(target)_j − softmax(row)_j); rows with g = 0 (masked) stay zero.
    fn bwd(
        &self,
        x: &Tensor,
        _out: &Tensor,
        grad_out: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (xs, g) = (elements(x)?, elements(grad_out)?);
        let vocab = x.dim(D::Minus1)?;
        let mut dx = vec![0.0f32; xs.len()];
        dx.par_chunks_mut(vocab * ROWS_PER_TASK)
            .zip(xs.par_chunks(vocab * ROWS_PER_TASK))
            .zip(g.par_chunks(ROWS_PER_TASK))
            .zip(self.targets.par_chunks(ROWS_PER_TASK))
            .for_each(|(((dx, rows), g), targets)| {
                for (((dx, row), &g), &t) in dx
                    .chunks_mut(vocab)
                    .zip(rows.chunks(vocab))
                    .zip(g)
                    .zip(targets)
                {
                    if g == 0.0 {
                        continue;
                    }
                    let (_, sum) = shifted_exps(row, dx);
                    let scale = -g / sum;
                    dx.iter_mut().for_each(|d| *d *= scale);
                    dx[t as usize] += g;
                }
            });
        Ok(Some(leaf(dx, x)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::tests::{compare, random};
    use candle_core::Device;

    #[test]
    fn matches_a_hand_computed_value() {
        let device = Device::Cpu;
        // One position, two classes with logits (0, ln 3): p(target = 1) = 3/4.
        let logits = Tensor::new(&[[[0.0f32, 3f32.ln()], [5.0, 5.0]]], &device).unwrap();
        let targets = Tensor::new(&[[1u32, 0]], &device).unwrap();
        let mask = Tensor::new(&[[1f32, 0.0]], &device).unwrap();
        let (loss, count) = masked_cross_entropy(&logits, &targets, &mask).unwrap();
        assert_eq!(count, 1.0);
        let value = loss.to_scalar::<f32>().unwrap();
        assert!((value - (4.0f32 / 3.0).ln()).abs() < 1e-6, "{value}");
    }

    #[test]
    fn fused_pick_matches_composed() {
        for (batch, seq, vocab, seed) in [(1, 1, 2, 1u64), (2, 5, 7, 2), (3, 40, 300, 3)] {
            let mut rng = agentr_envs::rng::Rng::new(seed);
            let ids: Vec<u32> = (0..batch * seq).map(|_| rng.index(vocab) as u32).collect();
            let targets = Tensor::from_vec(ids, (batch, seq), &Device::Cpu).unwrap();
            // Large logits test the max shift.
            let logits = (random(&[batch, seq, vocab], seed) * 30.0).unwrap();
            let fused = |t: &[Tensor]| {
                let rows = t[0].reshape(((), vocab))?;
                let op = PickedLogProb {
                    targets: targets.flatten_all()?.to_vec1::<u32>()?,
                };
                rows.apply_op1(op)?.reshape(targets.shape())
            };
            let diffs = compare(
                fused,
                |t| composed_picked_log_prob(&t[0], &targets),
                &[logits],
                seed,
            );
            assert!(
                diffs.iter().all(|d| *d < 1e-4),
                "{batch}x{seq}x{vocab}: {diffs:?}"
            );
        }
    }

    #[test]
    fn masked_rows_get_no_gradient_and_bad_targets_are_errors() {
        let device = Device::Cpu;
        let logits = candle_core::Var::from_tensor(&random(&[1, 3, 4], 9)).unwrap();
        let targets = Tensor::new(&[[0u32, 1, 2]], &device).unwrap();
        let mask = Tensor::new(&[[1f32, 0.0, 1.0]], &device).unwrap();
        let (loss, count) = masked_cross_entropy(logits.as_tensor(), &targets, &mask).unwrap();
        assert_eq!(count, 2.0);
        let grads = loss.backward().unwrap();
        let grad = grads.get(logits.as_tensor()).unwrap();
        let rows = grad.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        assert!(rows[1].iter().all(|&v| v == 0.0), "{rows:?}");
        // Each trained row's gradient sums to zero (softmax minus one-hot).
        assert!(rows[0].iter().sum::<f32>().abs() < 1e-6);
        let outside = Tensor::new(&[[0u32, 1, 4]], &device).unwrap();
        assert!(masked_cross_entropy(logits.as_tensor(), &outside, &mask).is_err());
    }
}
