//! Generation speed of a model on this machine, in the terms of llama.cpp's `llama-bench`:
//! prefill of a `PP`-token prompt (tokens/s), decoding of `TG` new tokens after a `CTX`-token
//! prompt at batch 1 (tokens/s, prefill excluded), and `N` samples decoded as one batch from a
//! shared prefill (tokens/s over all samples), twice: greedy through the model alone (every
//! sample decodes all `TG` tokens), and sampled at temperature 1 through the library's
//! generation loop (`generate_detailed`: sampling, end tokens, detokenisation; its prompt
//! already in a prefix cache, so only the last prompt token runs again). Each figure is the
//! median of `REPS`.
//!
//! Usage: `cargo run --release -p agentr-train --example generation_speed -- MODEL
//! [--pp 512] [--ctx 300] [--tg 128] [--n 4] [--reps 3] [--int8]`, where MODEL is a model
//! folder or a .gguf file (SmolLM2's is in `$AGENTR_HOME/models/smollm2-135m/` after
//! `agentr setup`). `--int8` runs the 8-bit generation path. Prints one JSON object.
use std::path::PathBuf;
use std::time::Instant;

use agentr_train::{
    GenerationConfig, GenerationRequest, KvCache, Llama, ModelAgent, PrefixCache, generate_detailed,
};
use candle_core::{Device, Tensor};

struct Options {
    model: PathBuf,
    pp: usize,
    ctx: usize,
    tg: usize,
    n: usize,
    reps: usize,
    int8: bool,
}

fn options() -> Result<Options, Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        model: PathBuf::new(),
        pp: 512,
        ctx: 300,
        tg: 128,
        n: 4,
        reps: 3,
        int8: false,
    };
    let usage =
        "usage: generation_speed MODEL [--pp N] [--ctx N] [--tg N] [--n N] [--reps N] [--int8]";
    while let Some(arg) = args.next() {
        let mut number = || -> Result<usize, Box<dyn std::error::Error>> {
            Ok(args.next().ok_or(usage)?.parse()?)
        };
        match arg.as_str() {
            "--pp" => options.pp = number()?,
            "--ctx" => options.ctx = number()?,
            "--tg" => options.tg = number()?,
            "--n" => options.n = number()?,
            "--reps" => options.reps = number()?.max(1),
            "--int8" => options.int8 = true,
            _ if options.model.as_os_str().is_empty() => options.model = PathBuf::from(arg),
            _ => return Err(usage.into()),
        }
    }
    if options.model.as_os_str().is_empty() {
        return Err(usage.into());
    }
    Ok(options)
}

/// Token ids that are not special tokens, deterministic.
fn prompt(len: usize, vocab: usize) -> Vec<u32> {
    let mut rng = agentr_envs::rng::Rng::new(11);
    (0..len)
        .map(|_| 100 + rng.below(vocab as u64 - 200) as u32)
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Seconds to prefill `ids` (batch 1) into `cache`, and the last position's logits.
fn prefill(model: &Llama, ids: &[u32], cache: &mut KvCache) -> candle_core::Result<(f64, Tensor)> {
    let input = Tensor::from_vec(ids.to_vec(), (1, ids.len()), model.device())?;
    let started = Instant::now();
    let last = model
        .forward_last(&input, Some(cache))
        .map_err(candle_core::Error::wrap)?;
    Ok((started.elapsed().as_secs_f64(), last))
}

/// Seconds to decode `steps` tokens for `batch` rows after `cache` (greedy from each row's
/// logits; the choice of token does not change the work).
fn decode(
    model: &Llama,
    cache: &KvCache,
    last: &Tensor,
    batch: usize,
    steps: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut cache = cache.repeat_batch(batch)?;
    let mut logits = last.repeat((batch, 1))?;
    let started = Instant::now();
    for _ in 0..steps {
        let next = logits.argmax(1)?.reshape((batch, 1))?;
        logits = model.forward_last(&next, Some(&mut cache))?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Tokens/s of `n` samples of at most `steps` tokens from `prompt` at temperature 1, through
/// the library's generation loop, with `prompt` already in `prefixes`.
fn sampled(
    agent: &ModelAgent,
    prompt: &[u32],
    prefixes: &PrefixCache,
    n: usize,
    steps: usize,
    seed: u64,
) -> Result<f64, Box<dyn std::error::Error>> {
    let config = GenerationConfig {
        max_new_tokens: steps,
        temperature: 1.0,
        top_p: 1.0,
        stop: Vec::new(),
    };
    let request = GenerationRequest {
        prompt,
        n,
        config: &config,
        seed,
    };
    let started = Instant::now();
    let samples = generate_detailed(&agent.model, &agent.tokenizer, &request, prefixes)?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(samples.iter().map(|s| s.tokens).sum::<usize>() as f64 / seconds)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: the first statement of main; no other thread exists yet.
    #[allow(unsafe_code)]
    unsafe {
        agentr_train::tune_runtime()
    };
    let options = options()?;
    let mut agent = ModelAgent::load(&options.model, &Device::Cpu)?;
    if options.int8 {
        agent.model.quantize_for_generation()?;
    }
    let model = &agent.model;
    let vocab = agent.tokenizer.vocab_size();
    let context = prompt(options.ctx, vocab);
    let prefixes = PrefixCache::new(1);
    sampled(&agent, &context, &prefixes, 1, 1, 0)?;
    let (mut pp, mut tg1, mut tgn, mut sampled_n) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rep in 0..options.reps {
        let (seconds, _) = prefill(model, &prompt(options.pp, vocab), &mut KvCache::default())?;
        pp.push(options.pp as f64 / seconds);
        let mut cache = KvCache::default();
        let (_, last) = prefill(model, &context, &mut cache)?;
        tg1.push(options.tg as f64 / decode(model, &cache, &last, 1, options.tg)?);
        let seconds = decode(model, &cache, &last, options.n, options.tg)?;
        tgn.push((options.n * options.tg) as f64 / seconds);
        sampled_n.push(sampled(
            &agent, &context, &prefixes, options.n, options.tg, rep as u64,
        )?);
    }
    let (pp, tg1, tgn, sampled_n) = (median(pp), median(tg1), median(tgn), median(sampled_n));
    println!(
        "{}",
        serde_json::json!({
            "model": options.model,
            "weights": if options.int8 { "int8" } else { "f32" },
            "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "prefill_tokens": options.pp,
            "prefill_tokens_per_second": pp,
            "context_tokens": options.ctx,
            "decode_tokens": options.tg,
            "decode_tokens_per_second": tg1,
            "batch": options.n,
            "batch_decode_tokens_per_second": tgn,
            "batch_speedup": tgn / tg1,
            "sampled_batch_tokens_per_second": sampled_n,
            "sampled_batch_speedup": sampled_n / tg1,
        })
    );
    Ok(())
}
