//! Writes a tiny-s model and what agentr computes with it, for `bench/torch_reference.py`
//! (see `bench/torch_reference.sh`): `config.json`, `model.safetensors` and `parity.json` with
//! token ids, targets, a loss mask, the first logits, the masked loss, and the loss after one
//! clipped AdamW step. The PyTorch side loads the same weights and must agree before its
//! timings are compared with agentr's.
//!
//! Usage: `cargo run --release -p agentr-train --example torch_parity -- OUT_DIR`
use std::path::PathBuf;

use agentr_train::{
    AdamW, AdamWConfig, Llama, ModelConfig, clip_global_norm, masked_cross_entropy,
};
use candle_core::{Device, Tensor};

const LR: f64 = 1e-3;
const CLIP: f64 = 1.0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: the first statement of main; no other thread exists yet.
    #[allow(unsafe_code)]
    unsafe {
        agentr_train::tune_runtime()
    };
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: torch_parity OUT_DIR")?,
    );
    let device = Device::Cpu;
    let config = ModelConfig::preset("tiny-s", 2048).ok_or("preset")?;
    let vocab = config.vocab_size;
    let model = Llama::new(config, &device, 0)?;
    model.save(&out)?;

    let (batch, seq) = (2, 48);
    let mut rng = agentr_envs::rng::Rng::new(7);
    let ids: Vec<Vec<u32>> = (0..batch)
        .map(|_| (0..seq).map(|_| rng.below(vocab as u64) as u32).collect())
        .collect();
    let targets: Vec<Vec<u32>> = ids
        .iter()
        .map(|row| row.iter().map(|&t| (t * 31 + 5) % vocab as u32).collect())
        .collect();
    // Loss on the second half of each row only, as for assistant turns.
    let mask: Vec<Vec<f32>> = (0..batch)
        .map(|_| {
            (0..seq)
                .map(|t| f32::from(u8::from(t >= seq / 2)))
                .collect()
        })
        .collect();
    let to_tensor = |rows: &Vec<Vec<u32>>| Tensor::new(rows.clone(), &device);
    let (ids_t, targets_t) = (to_tensor(&ids)?, to_tensor(&targets)?);
    let mask_t = Tensor::new(mask.clone(), &device)?;

    let logits = model.forward(&ids_t, None)?;
    let first_row = logits.get(0)?.narrow(1, 0, 8)?.to_vec2::<f32>()?;
    let (loss, _) = masked_cross_entropy(&logits, &targets_t, &mask_t)?;
    let loss_value = loss.to_scalar::<f32>()?;
    let mut grads = model.gradients(&loss.backward()?);
    clip_global_norm(&mut grads, CLIP)?;
    let mut optimizer = AdamW::new(model.parameters(), AdamWConfig::default())?;
    optimizer.step(&grads, LR)?;
    let logits = model.forward(&ids_t, None)?;
    let after = masked_cross_entropy(&logits, &targets_t, &mask_t)?
        .0
        .to_scalar::<f32>()?;

    let parity = serde_json::json!({
        "ids": ids,
        "targets": targets,
        "mask": mask,
        "logits_first_row": first_row,
        "loss": loss_value,
        "lr": LR,
        "clip": CLIP,
        "loss_after_step": after,
    });
    std::fs::write(out.join("parity.json"), serde_json::to_vec(&parity)?)?;
    println!("wrote {}", out.display());
    Ok(())
}
