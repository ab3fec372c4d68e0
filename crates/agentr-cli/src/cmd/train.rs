//! `agentr train`: supervised fine-tuning on JSONL samples.

use std::path::PathBuf;

use agentr_envs::Role;
use agentr_train::{
    AdamWConfig, ChatTokenizer, Llama, ModelAgent, ModelConfig, SftConfig, TrainData, train,
};
use anyhow::{Context, Result, bail};
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};

use crate::samples::read_samples;

/// Arguments of `agentr train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSONL sample files (from `agentr gold`, `agentr revise`, ...).
    #[arg(long, required = true, num_args = 1..)]
    pub(crate) samples: Vec<PathBuf>,
    /// tiny-xs, tiny-2l, tiny-s or tiny-m (trained from scratch, with a new tokenizer), a model
    /// folder, a .gguf file, or smollm2-135m (SmolLM2-135M-Instruct, fetched by set-up).
    #[arg(long)]
    pub(crate) model: String,
    /// Output folder: the final model, tokenizer, checkpoint and training log.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Passes over the samples.
    #[arg(long, default_value_t = 3)]
    pub(crate) epochs: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub(crate) lr: f64,
    /// Padded tokens per micro-batch.
    #[arg(long, default_value_t = 8192)]
    pub(crate) batch_tokens: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub(crate) accumulation: usize,
    /// Longer samples are cut.
    #[arg(long, default_value_t = 2048)]
    pub(crate) max_seq_len: usize,
    /// Share of warm-up steps.
    #[arg(long, default_value_t = 0.03)]
    pub(crate) warmup_ratio: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) weight_decay: f64,
    /// General data (JSONL samples) to mix in: chat data, or expert episodes that keep a
    /// small model acting while it learns from its own samples.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub(crate) general: Vec<PathBuf>,
    /// Share of agent data when --general is given (Agent-R's eta).
    #[arg(long, default_value_t = 0.2)]
    pub(crate) eta: f64,
    /// Seed of the data order and, for presets, of the initial weights.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Vocabulary size of a new tokenizer (presets only).
    #[arg(long, default_value_t = 2048)]
    pub(crate) vocab_size: usize,
    /// Checkpoint every this many optimizer steps.
    #[arg(long, default_value_t = 200)]
    pub(crate) checkpoint_every: u64,
    /// Continue from the checkpoint in --out.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Also put loss on the environment's observations (user turns after the instruction) of
    /// every sample, general data included: practice in reading the environment's text, which a model trained
    /// from scratch lacks (it has no pre-training that taught it to copy names from its
    /// prompt).
    #[arg(long)]
    pub(crate) observation_loss: bool,
}

/// Marks the user turns after the first (the observations) as trained, unless a sample says
/// otherwise.
fn train_on_observations(sample: &mut agentr_envs::Sample) {
    let first_user = sample.messages.iter().position(|m| m.role == Role::User);
    for (index, message) in sample.messages.iter_mut().enumerate() {
        if message.role == Role::User && Some(index) != first_user && message.loss.is_none() {
            message.loss = Some(true);
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let device = Device::Cpu;
    let mut samples = Vec::new();
    for path in &args.samples {
        samples.extend(read_samples(path)?);
    }
    let mut general = Vec::new();
    for path in &args.general {
        general.extend(read_samples(path)?);
    }
    if samples.is_empty() {
        bail!("no samples in {:?}", args.samples);
    }
    if args.observation_loss {
        samples
            .iter_mut()
            .chain(&mut general)
            .for_each(train_on_observations);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let tokenizer_path = args.out.join("tokenizer.json");
    let (mut model, tokenizer) = match ModelConfig::preset(&args.model, args.vocab_size) {
        Some(_) if args.resume && tokenizer_path.exists() => {
            let tokenizer = ChatTokenizer::load(&tokenizer_path)?;
            let config = ModelConfig::preset(&args.model, tokenizer.vocab_size())
                .context("preset vanished")?;
            (Llama::new(config, &device, args.seed)?, tokenizer)
        }
        Some(_) => {
            let texts = samples
                .iter()
                .chain(&general)
                .flat_map(|s| s.messages.iter().map(|m| m.content.as_str()));
            eprintln!(
                "training a {}-token BPE tokenizer on the samples ...",
                args.vocab_size
            );
            let tokenizer = ChatTokenizer::train(texts, args.vocab_size)?;
            tokenizer.save(&tokenizer_path)?;
            let config = ModelConfig::preset(&args.model, tokenizer.vocab_size())
                .context("preset vanished")?;
            (Llama::new(config, &device, args.seed)?, tokenizer)
        }
        None => {
            let agent = ModelAgent::load(&crate::models::model_path(std::path::Path::new(&args.model))?, &device).with_context(
                || {
                    format!(
                        "`{}` is neither a preset (tiny-xs, tiny-2l, tiny-s, tiny-m) nor a model folder",
                        args.model
                    )
                },
            )?;
            agent.tokenizer.save(&tokenizer_path)?;
            (agent.model, agent.tokenizer)
        }
    };
    let render = |samples: &[agentr_envs::Sample]| -> Result<Vec<agentr_train::Rendered>> {
        samples
            .iter()
            .map(|s| tokenizer.render(&s.messages).map_err(Into::into))
            .collect()
    };
    let data = TrainData {
        agent: render(&samples)?,
        general: render(&general)?,
    };
    let config = SftConfig {
        epochs: args.epochs,
        lr: args.lr,
        min_lr: 0.0,
        warmup_ratio: args.warmup_ratio,
        optimizer: AdamWConfig {
            weight_decay: args.weight_decay,
            ..AdamWConfig::default()
        },
        max_grad_norm: 1.0,
        batch_tokens: args.batch_tokens,
        accumulation: args.accumulation,
        max_seq_len: args.max_seq_len,
        eta: if general.is_empty() { 1.0 } else { args.eta },
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
    };
    eprintln!(
        "{} parameters, {} agent samples, {} general samples",
        model.parameter_count(),
        data.agent.len(),
        data.general.len()
    );
    let progress = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} steps, {msg} [{elapsed}<{eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let outcome = train(
        &mut model,
        &data,
        &config,
        &args.out,
        args.resume,
        &mut |report| {
            progress.set_length(report.total_steps);
            progress.set_position(report.step);
            progress.set_message(format!(
                "epoch {}, loss {:.4}, {:.0} tokens/s",
                report.epoch + 1,
                report.loss,
                report.tokens_per_second
            ));
            true
        },
    )?;
    progress.finish_and_clear();
    model.save(&args.out)?;
    tokenizer.save(&tokenizer_path)?;
    let last = std::fs::read_to_string(args.out.join("train_log.jsonl"))
        .ok()
        .and_then(|log| log.lines().last().map(str::to_owned))
        .unwrap_or_default();
    eprintln!(
        "trained {} steps ({} samples skipped: nothing to train after truncation); model in {}\nlast step: {last}",
        outcome.steps,
        outcome.skipped_samples,
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use agentr_envs::{Message, Sample};

    use super::*;

    #[test]
    fn observation_loss_trains_observations_but_not_the_instruction_or_flagged_turns() {
        let mut excluded = Message::user("Got 1 oak logs");
        excluded.loss = Some(false);
        let mut sample = Sample {
            messages: vec![
                Message::user("instruction"),
                Message::assistant("Ok.", false),
                Message::user("Crafting commands: ..."),
                Message::assistant("Action: get 1 oak logs", true),
                excluded,
            ],
            meta: Default::default(),
        };
        train_on_observations(&mut sample);
        let trains: Vec<bool> = sample.messages.iter().map(Message::trains).collect();
        assert_eq!(trains, [false, false, true, true, false]);
    }
}
