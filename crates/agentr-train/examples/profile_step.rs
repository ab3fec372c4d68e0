//! Times one forward and backward pass of tiny-s (a development aid).
use std::time::Instant;

use agentr_train::{Llama, ModelConfig, masked_cross_entropy};
use candle_core::{DType, Device, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::Cpu;
    let model = Llama::new(
        ModelConfig::preset("tiny-s", 2048).ok_or("preset")?,
        &device,
        0,
    )?;
    for (batch, seq) in [(1, 128), (4, 256), (8, 512)] {
        let ids = Tensor::zeros((batch, seq), DType::U32, &device)?;
        let mask = Tensor::ones((batch, seq), DType::F32, &device)?;
        let start = Instant::now();
        let logits = model.forward(&ids, None)?;
        let forward = start.elapsed();
        let (loss, _) = masked_cross_entropy(&logits, &ids, &mask)?;
        let grads = loss.backward()?;
        let total = start.elapsed();
        drop(grads);
        println!(
            "batch {batch} x {seq}: forward {forward:?}, forward+backward {total:?}, {:.0} tokens/s",
            (batch * seq) as f64 / total.as_secs_f64()
        );
    }
    Ok(())
}
