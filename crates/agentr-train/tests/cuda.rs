//! The model on a CUDA GPU: built only with `--features cuda` and run on a machine with a GPU
//! (`cargo test -p agentr-train --features cuda --test cuda -- --nocapture`). On the GPU the
//! model is composed from candle's elementary operations (the fused kernels are CPU-only), so
//! these tests check that path against the CPU's: same logits, same gradients, and SFT that
//! lowers the loss. They print the GPU's training throughput.
#![cfg(feature = "cuda")]

use std::collections::HashMap;

use agentr_train::{
    DeviceChoice, Llama, LoraConfig, ModelConfig, Rendered, SftConfig, TrainData, inference_dtype,
    masked_cross_entropy, train,
};
use candle_core::{DType, Device, Tensor};

fn gpu() -> Device {
    DeviceChoice::Cuda(0)
        .open()
        .expect("a CUDA GPU (these tests run only in `--features cuda` builds)")
}

fn config() -> ModelConfig {
    ModelConfig {
        vocab_size: 512,
        hidden_size: 128,
        intermediate_size: 352,
        num_hidden_layers: 3,
        num_attention_heads: 8,
        num_key_value_heads: 4,
        max_position_embeddings: 512,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-5,
        tie_word_embeddings: true,
        model_type: agentr_train::ModelType::Llama,
        attention_bias: false,
        rope_scaling: None,
    }
}

/// Token ids `[batch, seq]` (a fixed pattern) on `device`.
fn ids(batch: usize, seq: usize, device: &Device) -> Tensor {
    let values: Vec<u32> = (0..batch * seq)
        .map(|i| ((i * 37 + 11) % 512) as u32)
        .collect();
    Tensor::from_vec(values, (batch, seq), device).unwrap()
}

fn max_abs_difference(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.to_device(&Device::Cpu).unwrap().flatten_all().unwrap();
    let b = b.to_device(&Device::Cpu).unwrap().flatten_all().unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Loss and gradients by parameter name for one batch.
fn loss_and_gradients(model: &Llama) -> (f64, HashMap<String, Tensor>) {
    let device = model.device().clone();
    let input = ids(2, 48, &device);
    let targets = input.narrow(1, 1, 47).unwrap().contiguous().unwrap();
    let input = input.narrow(1, 0, 47).unwrap().contiguous().unwrap();
    let mask = Tensor::ones((2, 47), DType::F32, &device).unwrap();
    let logits = model.forward(&input, None).unwrap();
    let (loss, value) = masked_cross_entropy(&logits, &targets, &mask).unwrap();
    let store = loss.backward().unwrap();
    (value, model.gradients(&store))
}

#[test]
fn the_gpu_agrees_with_the_cpu() {
    let cpu = Llama::new(config(), &Device::Cpu, 7).unwrap();
    let gpu_model = Llama::new(config(), &gpu(), 7).unwrap();
    let difference = max_abs_difference(
        &cpu.forward(&ids(2, 40, &Device::Cpu), None).unwrap(),
        &gpu_model.forward(&ids(2, 40, &gpu()), None).unwrap(),
    );
    println!("logits: max |cpu - gpu| = {difference:e}");
    assert!(difference < 1e-3, "{difference}");

    let (cpu_loss, cpu_gradients) = loss_and_gradients(&cpu);
    let (gpu_loss, gpu_gradients) = loss_and_gradients(&gpu_model);
    println!("loss: cpu {cpu_loss} gpu {gpu_loss}");
    assert!((cpu_loss - gpu_loss).abs() < 1e-3);
    assert_eq!(cpu_gradients.len(), gpu_gradients.len());
    for (name, cpu_gradient) in &cpu_gradients {
        let gpu_gradient = &gpu_gradients[name];
        let scale = cpu_gradient
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .max(1e-6);
        let difference = max_abs_difference(cpu_gradient, gpu_gradient);
        assert!(
            difference / scale < 1e-2,
            "{name}: max difference {difference} at scale {scale}"
        );
    }
}

#[test]
fn bf16_weights_on_the_gpu_give_nearly_the_f32_logits() {
    let device = gpu();
    assert_eq!(inference_dtype(&device), DType::BF16);
    let cpu = Llama::new(config(), &Device::Cpu, 7).unwrap();
    let half = Llama::new(config(), &device, 7)
        .unwrap()
        .with_dtype(DType::BF16)
        .unwrap();
    let reference = cpu.forward(&ids(2, 40, &Device::Cpu), None).unwrap();
    let logits = half.forward(&ids(2, 40, &device), None).unwrap();
    assert_eq!(logits.dtype(), DType::F32, "logits are always f32");
    let scale = max_abs_difference(&reference, &reference.zeros_like().unwrap());
    let difference = max_abs_difference(&reference, &logits);
    println!("bf16 logits: max |f32 cpu - bf16 gpu| = {difference:e} at scale {scale:e}");
    assert!(difference < 0.05 * scale, "{difference} at scale {scale}");
}

#[test]
fn sft_on_the_gpu_lowers_the_loss() {
    let preset = ModelConfig::preset("tiny-m", 2048).unwrap();
    let mut model = Llama::new(preset, &gpu(), 3).unwrap();
    let (first, last) = train_on_patterns(&mut model, 4);
    assert!(last < 0.5 * first, "{first} -> {last}");
}

#[test]
fn lora_on_a_bf16_base_trains_on_the_gpu() {
    let preset = ModelConfig::preset("tiny-m", 2048).unwrap();
    let mut model = Llama::new(preset, &gpu(), 3)
        .unwrap()
        .with_dtype(DType::BF16)
        .unwrap();
    model.attach_lora(&LoraConfig::with_rank(16), 1).unwrap();
    let (first, last) = train_on_patterns(&mut model, 4);
    assert!(last < 0.8 * first, "{first} -> {last}");
}

/// SFT of `model` for `epochs` on repeated patterns; the first and last step's loss.
fn train_on_patterns(model: &mut Llama, epochs: usize) -> (f64, f64) {
    // 64 sequences of 256 tokens: a repeated pattern per sequence, the second half trained.
    let agent: Vec<Rendered> = (0..64)
        .map(|s| {
            let ids: Vec<u32> = (0..256)
                .map(|i| ((s * 13 + (i % 16) * 7) % 2048) as u32)
                .collect();
            let mask = (0..256).map(|i| i >= 128).collect();
            Rendered { ids, mask }
        })
        .collect();
    let data = TrainData {
        agent,
        general: Vec::new(),
    };
    let sft = SftConfig {
        epochs,
        lr: 2e-3,
        batch_tokens: 4096,
        checkpoint_every: 1_000_000,
        ..SftConfig::default()
    };
    let dir = std::env::temp_dir().join(format!("agentr-cuda-sft-{}", std::process::id()));
    let mut losses = Vec::new();
    let mut throughput = 0.0;
    train(model, &data, &sft, &dir, false, &mut |report| {
        losses.push(report.loss);
        throughput = report.tokens_per_second;
        true
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "tiny-m SFT on the GPU ({:?} weights, adapters: {}): {} steps, loss {:.3} -> {:.3}, \
         {throughput:.0} tokens/s",
        model.dtype(),
        model.has_adapters(),
        losses.len(),
        losses[0],
        losses[losses.len() - 1]
    );
    assert!(losses.len() >= 8);
    (losses[0], losses[losses.len() - 1])
}
