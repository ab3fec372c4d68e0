//! Masked next-token cross-entropy, from differentiable operations.

use candle_core::{D, DType, Tensor};

use crate::TrainError;

/// Mean negative log-likelihood of `targets` under `logits`, over the positions where `mask`
/// is one. Shapes: logits `[batch, seq, vocab]`; targets (u32) and mask (f32) `[batch, seq]`.
/// Returns the scalar loss and the number of positions it averages over.
pub fn masked_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
) -> Result<(Tensor, f64), TrainError> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_normaliser = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let log_probs = shifted.broadcast_sub(&log_normaliser)?;
    let picked = log_probs
        .gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?
        .squeeze(D::Minus1)?;
    let count = mask.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let total = (picked * mask)?.sum_all()?;
    let loss = (total.neg()? / count.max(1.0))?;
    Ok((loss, count))
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
