//! Times training steps of a Hugging Face model folder (SmolLM2-135M-Instruct in
//! BENCHMARKS.md): LoRA or full fine-tuning on `--batch` sequences of `--seq` seeded token ids
//! per optimizer step, loss on every position, AdamW. Prints one JSON line: the median step
//! time after a first, untimed step, tokens/s, and the process's peak resident memory.
//! `bench/smollm2_train.py` times the same steps with PyTorch + PEFT.
//!
//! ```sh
//! cargo run --release -p agentr-train --example training_step -- MODEL [--lora-rank 16]
//!     [--batch 4] [--seq 512] [--steps 4] [--recompute]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use agentr_train::{Llama, LoraConfig, Rendered, SftConfig, TrainData, train};
use candle_core::Device;

struct Options {
    model: PathBuf,
    lora_rank: Option<usize>,
    batch: usize,
    seq: usize,
    steps: u64,
    recompute: bool,
}

fn options() -> Result<Options, Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: training_step MODEL [--lora-rank R] [--batch N] [--seq N] [--steps N] \
                 [--recompute]";
    let mut options = Options {
        model: PathBuf::from(args.next().ok_or(usage)?),
        lora_rank: None,
        batch: 4,
        seq: 512,
        steps: 4,
        recompute: false,
    };
    while let Some(arg) = args.next() {
        let mut number = || -> Result<usize, Box<dyn std::error::Error>> {
            Ok(args.next().ok_or(usage)?.parse()?)
        };
        match arg.as_str() {
            "--lora-rank" => options.lora_rank = Some(number()?),
            "--batch" => options.batch = number()?.max(1),
            "--seq" => options.seq = number()?.max(1),
            "--steps" => options.steps = number()?.max(2) as u64,
            "--recompute" => options.recompute = true,
            _ => return Err(usage.into()),
        }
    }
    Ok(options)
}

/// The process's peak resident memory in bytes (Linux), if it can be read.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: the first statement of main; no other thread exists yet.
    #[allow(unsafe_code)]
    unsafe {
        agentr_train::tune_runtime()
    };
    let options = options()?;
    let mut model = Llama::load(&options.model, &Device::Cpu)?;
    if let Some(rank) = options.lora_rank {
        let mut lora = LoraConfig::with_rank(rank);
        lora.alpha = 2.0 * rank as f64;
        model.attach_lora(&lora, 0)?;
    }
    let vocab = model.config().vocab_size as u64;
    let mut rng = agentr_envs::rng::Rng::new(5);
    // One more token than the sequence: inputs and targets are the ids shifted by one. Distinct
    // sequences for every step make the run one epoch, so the only checkpoint is written after
    // the last step, outside the timed steps (a repeated batch would end an epoch, and write
    // a checkpoint, on every step; PyTorch's side writes none).
    let agent = (0..options.batch * options.steps as usize)
        .map(|_| Rendered {
            ids: (0..=options.seq)
                .map(|_| 100 + rng.below(vocab - 200) as u32)
                .collect(),
            mask: vec![true; options.seq + 1],
        })
        .collect();
    let data = TrainData {
        agent,
        general: Vec::new(),
    };
    let config = SftConfig {
        epochs: 1,
        steps: Some(options.steps),
        lr: 1e-4,
        warmup_ratio: 0.0,
        batch_tokens: options.batch * options.seq,
        checkpoint_every: u64::MAX,
        recompute: options.recompute,
        ..SftConfig::default()
    };
    let dir = std::env::temp_dir().join(format!("agentr-training-step-{}", std::process::id()));
    let mut seconds = Vec::new();
    let mut last = Instant::now();
    train(&mut model, &data, &config, &dir, false, &mut |report| {
        let now = Instant::now();
        if report.step > 1 {
            seconds.push(now.duration_since(last).as_secs_f64());
        }
        last = now;
        true
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    println!(
        "{}",
        serde_json::json!({
            "model": options.model,
            "lora_rank": options.lora_rank,
            "batch": options.batch,
            "seq": options.seq,
            "recompute": options.recompute,
            "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "timed_steps": seconds.len(),
            "step_seconds": median,
            "tokens_per_second": (options.batch * options.seq) as f64 / median,
            "peak_rss_bytes": peak_rss(),
        })
    );
    Ok(())
}
