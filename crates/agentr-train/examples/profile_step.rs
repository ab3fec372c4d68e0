//! Times tiny-s (a development aid for BENCHMARKS.md): one forward and backward pass at a few
//! batch shapes, then generation after a 512-token prompt, one sample and four samples sharing
//! the prefill.
use std::time::Instant;

use agentr_train::{
    ChatTokenizer, GenerationConfig, Llama, ModelConfig, generate, masked_cross_entropy,
};
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
            "train {batch} x {seq}: forward {forward:?}, forward+backward {total:?}, {:.0} tokens/s",
            (batch * seq) as f64 / total.as_secs_f64()
        );
    }
    // A tokenizer whose chat tokens exist; the untrained model rarely emits the end token, so
    // every sample runs to max_new_tokens.
    let tokenizer = ChatTokenizer::train(["craft 4 stick using 2 planks"].iter(), 300)?;
    let prompt: Vec<u32> = (0..512).map(|i| 3 + i % 250).collect();
    let config = GenerationConfig {
        max_new_tokens: 64,
        temperature: 1.0,
        ..GenerationConfig::default()
    };
    let input = Tensor::new(prompt.as_slice(), &device)?.unsqueeze(0)?;
    let start = Instant::now();
    model.forward(&input, None)?;
    let prefill = start.elapsed().as_secs_f64();
    println!(
        "prefill of 512 tokens: {prefill:.2}s ({:.0} tokens/s)",
        512.0 / prefill
    );
    for n in [1, 4] {
        let start = Instant::now();
        let outputs = generate(&model, &tokenizer, &prompt, n, &config, 0)?;
        let elapsed = start.elapsed().as_secs_f64();
        // Upper bound: a sample that drew an end token early produced fewer than 64 tokens.
        let decoded = (n * config.max_new_tokens) as f64;
        println!(
            "generate n={n} after a 512-token prompt: {elapsed:.2}s in all, decoding about {:.0} tokens/s ({} outputs)",
            decoded / (elapsed - prefill).max(1e-9),
            outputs.len()
        );
    }
    Ok(())
}
