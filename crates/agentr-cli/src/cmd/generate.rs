//! `agentr generate`: sample from a trained model.

use std::path::PathBuf;

use agentr_envs::Message;
use agentr_train::ModelAgent;
use anyhow::Result;

/// Arguments of `agentr generate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model folder (config.json, model.safetensors, tokenizer.json), a .gguf file,
    /// smollm2-135m (SmolLM2-135M-Instruct, fetched by set-up), or a Hugging Face model id
    /// org/name[@revision] (from the hub cache).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// The user message.
    #[arg(long)]
    prompt: String,
    /// Most new tokens per sample.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Number of samples (they share one prefill).
    #[arg(long, default_value_t = 1)]
    n: usize,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    pub(crate) device: crate::device::DeviceArg,
    #[command(flatten)]
    pub(crate) weights: crate::device::WeightsArg,
}

pub fn run(args: Args) -> Result<()> {
    let mut agent = ModelAgent::load(
        &crate::models::model_path(&args.model)?,
        &args.device.open()?,
    )?;
    args.weights.apply(&mut agent)?;
    agent.generation.max_new_tokens = args.max_tokens;
    agent.generation.top_p = args.top_p;
    let outputs = agent.respond(
        &[Message::user(args.prompt)],
        args.n,
        args.temperature,
        args.seed,
    )?;
    for (index, output) in outputs.iter().enumerate() {
        if args.n > 1 {
            println!("--- sample {}", index + 1);
        }
        println!("{output}");
    }
    Ok(())
}
