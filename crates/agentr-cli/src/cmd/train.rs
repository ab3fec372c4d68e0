//! `agentr train`: supervised fine-tuning on JSONL samples (see
//! [`agentr_cli::pipeline::train`]).

use std::path::PathBuf;

use agentr_cli::pipeline::train::{TrainJob, train};
use agentr_train::LoraConfig;
use anyhow::Result;

use crate::terminal::Terminal;

/// Arguments of `agentr train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSONL sample files (from `agentr gold`, `agentr revise`, ...).
    #[arg(long, required = true, num_args = 1..)]
    pub(crate) samples: Vec<PathBuf>,
    /// tiny-xs, tiny-2l, tiny-s or tiny-m (trained from scratch, with a new tokenizer), a model
    /// folder, a .gguf file, smollm2-135m (SmolLM2-135M-Instruct, fetched by set-up), or a
    /// Hugging Face model id org/name[@revision] (Llama, Qwen2, SmolLM; from the hub cache).
    #[arg(long)]
    pub(crate) model: String,
    /// Output folder: the final model, tokenizer, checkpoint and training log.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Passes over the samples.
    #[arg(long, default_value_t = 3, conflicts_with = "steps")]
    pub(crate) epochs: usize,
    /// Recompute each layer's activations in the backward pass instead of keeping them all:
    /// a fraction of the memory for about a third more compute.
    #[arg(long)]
    pub(crate) recompute: bool,
    /// Exactly this many optimizer steps instead of --epochs passes (the samples are passed
    /// over as often as that takes): the same training budget for data sets of any size.
    #[arg(long)]
    pub(crate) steps: Option<u64>,
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
    /// LoRA instead of full fine-tuning.
    #[command(flatten)]
    pub(crate) lora: LoraArgs,
    #[command(flatten)]
    pub(crate) device: crate::device::DeviceArg,
}

/// The LoRA flags of `agentr train`; none given means full fine-tuning.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LoraArgs {
    /// Train LoRA adapters of this rank on the frozen model instead of every weight. The
    /// output folder gets the merged model (so every other command reads it as usual) and the
    /// adapter alone, in PEFT's layout, in its adapter/ folder.
    #[arg(long, value_name = "R")]
    pub(crate) lora_rank: Option<usize>,
    /// LoRA alpha: the adapters' update is scaled by alpha / rank [default: 2 x rank].
    #[arg(long, value_name = "A", requires = "lora_rank")]
    pub(crate) lora_alpha: Option<f64>,
    /// The projections that get adapters, comma-separated [default: q,k,v,o,gate,up,down].
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        requires = "lora_rank"
    )]
    pub(crate) lora_targets: Vec<String>,
}

impl LoraArgs {
    /// The LoRA settings asked for, checked; `None` for full fine-tuning.
    pub(crate) fn config(&self) -> Result<Option<LoraConfig>> {
        let Some(rank) = self.lora_rank else {
            return Ok(None);
        };
        let mut config = LoraConfig::with_rank(rank);
        if let Some(alpha) = self.lora_alpha {
            config.alpha = alpha;
        }
        if !self.lora_targets.is_empty() {
            config.targets = self.lora_targets.clone();
        }
        config.validate()?;
        Ok(Some(config))
    }
}

pub fn run(args: Args) -> Result<()> {
    let job = TrainJob {
        samples: args.samples,
        general: args.general,
        model: args.model,
        out: args.out,
        epochs: args.epochs,
        steps: args.steps,
        lr: args.lr,
        batch_tokens: args.batch_tokens,
        accumulation: args.accumulation,
        max_seq_len: args.max_seq_len,
        warmup_ratio: args.warmup_ratio,
        weight_decay: args.weight_decay,
        eta: args.eta,
        seed: args.seed,
        vocab_size: args.vocab_size,
        checkpoint_every: args.checkpoint_every,
        resume: args.resume,
        observation_loss: args.observation_loss,
        recompute: args.recompute,
        lora: args.lora.config()?,
        device: args.device.device,
    };
    let summary = train(&job, &Terminal)?;
    eprintln!("{}", summary.describe(&job.out));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> Result<Args, clap::Error> {
        super::super::parse_flags("train", flags)
    }

    #[test]
    fn lora_flags_give_checked_settings() {
        let base = ["--samples", "s.jsonl", "--model", "tiny-xs", "--out", "o"];
        let args = parse(&base).unwrap();
        assert!(args.lora.config().unwrap().is_none());
        let args = parse(&[&base[..], &["--lora-rank", "4"]].concat()).unwrap();
        assert_eq!(args.lora.config().unwrap(), Some(LoraConfig::with_rank(4)));
        let flags = [
            "--lora-rank",
            "4",
            "--lora-alpha",
            "3",
            "--lora-targets",
            "q,v_proj",
        ];
        let args = parse(&[&base[..], &flags].concat()).unwrap();
        let config = args.lora.config().unwrap().unwrap();
        assert_eq!((config.rank, config.alpha), (4, 3.0));
        assert_eq!(config.targets, ["q", "v_proj"]);
        assert!(parse(&[&base[..], &["--lora-alpha", "3"]].concat()).is_err());
        for flags in [
            ["--lora-rank", "0", "--lora-targets", "q"],
            ["--lora-rank", "2", "--lora-targets", "q,lm_head"],
        ] {
            let args = parse(&[&base[..], &flags].concat()).unwrap();
            assert!(args.lora.config().is_err(), "{flags:?}");
        }
    }
}
