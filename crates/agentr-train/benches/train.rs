//! tiny-s on the CPU (BENCHMARKS.md; `bench/torch_reference.sh` times PyTorch on the same
//! shapes):
//!
//! * `train_step/BxT`: one optimizer step on a `B x T` batch: forward, masked loss, backward,
//!   global-norm clipping and AdamW, as `agentr train` does it;
//! * `lora_step/4x256`: the same step with rank-8 LoRA adapters on every projection (the base
//!   frozen, only adapters in the optimizer);
//! * `generate/n`: greedy decoding of 64 new tokens after a 512-token prompt, for one sample
//!   and for four samples sharing the prefill (the prefill is inside the timing).

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::time::Duration;

use agentr_train::{
    AdamW, AdamWConfig, ChatTokenizer, GenerationConfig, GenerationRequest, Llama, LoraConfig,
    ModelConfig, clip_global_norm, generate, masked_cross_entropy,
};
use candle_core::{DType, Device, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};

const NEW_TOKENS: usize = 64;

fn model() -> Llama {
    let config = ModelConfig::preset("tiny-s", 2048).expect("preset");
    Llama::new(config, &Device::Cpu, 0).expect("model")
}

/// Times optimizer steps of `model` (all its trainable parameters) on each `B x T` shape.
fn bench_steps(c: &mut Criterion, name: &str, model: &Llama, shapes: &[(usize, usize)]) {
    let device = Device::Cpu;
    let mut optimizer = AdamW::new(model.parameters(), AdamWConfig::default()).expect("adamw");
    let mut group = c.benchmark_group(name);
    group.sample_size(10).warm_up_time(Duration::from_secs(5));
    for &(batch, seq) in shapes {
        let mut rng = agentr_envs::rng::Rng::new(1);
        let ids: Vec<u32> = (0..batch * seq)
            .map(|_| 3 + rng.below(2045) as u32)
            .collect();
        let ids = Tensor::from_vec(ids, (batch, seq), &device).expect("ids");
        let mask = Tensor::ones((batch, seq), DType::F32, &device).expect("mask");
        group.throughput(Throughput::Elements((batch * seq) as u64));
        group.bench_function(BenchmarkId::from_parameter(format!("{batch}x{seq}")), |b| {
            b.iter(|| {
                let logits = model.forward(&ids, None).expect("forward");
                let (loss, _) = masked_cross_entropy(&logits, &ids, &mask).expect("loss");
                let mut grads = model.gradients(&loss.backward().expect("backward"));
                clip_global_norm(&mut grads, 1.0).expect("clip");
                optimizer.step(&grads, 1e-4).expect("step");
            })
        });
    }
    group.finish();
}

fn train_step(c: &mut Criterion) {
    bench_steps(c, "train_step", &model(), &[(1, 128), (4, 256), (8, 512)]);
}

fn lora_step(c: &mut Criterion) {
    let mut model = model();
    model
        .attach_lora(&LoraConfig::with_rank(8), 0)
        .expect("adapters");
    bench_steps(c, "lora_step", &model, &[(4, 256)]);
}

fn generation(c: &mut Criterion) {
    let model = model();
    let tokenizer =
        ChatTokenizer::train(["craft 4 stick using 2 planks"].iter(), 300).expect("tokenizer");
    // The untrained model must not stop early: zero the stop tokens' rows of the (tied)
    // embedding, so their logits are exactly 0 while the largest logit is positive.
    let (_, embedding) = model
        .parameters()
        .into_iter()
        .find(|(name, _)| name == "model.embed_tokens.weight")
        .expect("embedding");
    let mut rows = embedding.as_tensor().to_vec2::<f32>().expect("rows");
    for stop in [tokenizer.turn_end(), tokenizer.end_of_text()] {
        rows[stop as usize].fill(0.0);
    }
    embedding
        .set(&Tensor::new(rows, &Device::Cpu).expect("tensor"))
        .expect("set");
    let prompt: Vec<u32> = (0..512).map(|i| 3 + i % 250).collect();
    let config = GenerationConfig {
        max_new_tokens: NEW_TOKENS,
        temperature: 0.0,
        ..GenerationConfig::default()
    };
    let mut group = c.benchmark_group("generate");
    group.sample_size(10);
    for n in [1usize, 4] {
        group.throughput(Throughput::Elements((n * NEW_TOKENS) as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            let request = GenerationRequest {
                prompt: &prompt,
                n,
                config: &config,
                seed: 0,
            };
            b.iter(|| generate(&model, &tokenizer, &request).expect("generate"))
        });
    }
    group.finish();
}

criterion_group!(benches, train_step, lora_step, generation);

/// criterion's own main, after the runtime tuning (which must come before any thread starts:
/// the benchmarks' rayon pool would otherwise exist from the first one on).
fn main() {
    // SAFETY: the first statement of main; no other thread exists yet.
    #[allow(unsafe_code)]
    unsafe {
        agentr_train::tune_runtime()
    };
    benches();
    Criterion::default().configure_from_args().final_summary();
}
