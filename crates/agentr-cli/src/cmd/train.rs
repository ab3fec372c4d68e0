//! `agentr train`: supervised fine-tuning on JSONL samples.

use std::path::{Path, PathBuf};

use agentr_envs::{ObservationStyles, Role};
use agentr_train::{
    AdamWConfig, ChatTokenizer, Llama, LoraConfig, ModelAgent, ModelConfig, SftConfig, TrainData,
    train,
};
use anyhow::{Context, Result, bail};
use candle_core::DType;

use crate::progress::Progress;
use crate::samples::read_samples;

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

/// The base model an adapter names for PEFT's `AutoPeftModelForCausalLM`: the Hub id as given
/// (a cached snapshot's folder when a revision was asked for, which PEFT reads from its own
/// field), a folder's absolute path (the adapter may be read from anywhere), or for a GGUF file
/// a Hugging Face folder of the weights agentr trained on (dequantised, beside the GGUF,
/// written once), since transformers loads a GGUF only when told the file's name.
fn adapter_base(arg: &str, resolved: &Path, agent: &ModelAgent) -> Result<String> {
    if resolved.is_dir() {
        if !Path::new(arg).exists() && !arg.contains('@') {
            return Ok(arg.to_owned());
        }
        let absolute = std::fs::canonicalize(resolved)
            .with_context(|| format!("resolving {}", resolved.display()))?;
        return Ok(absolute.display().to_string());
    }
    let folder = resolved.with_extension("hf");
    if !folder.join("tokenizer_config.json").exists() {
        eprintln!(
            "writing {} once: the adapter's base for Hugging Face tools (the GGUF's weights as \
             a model folder)",
            folder.display()
        );
        let staging = folder.with_extension(format!("hf.partial-{}", std::process::id()));
        agent.save(&staging)?;
        if folder.exists() {
            std::fs::remove_dir_all(&folder)
                .with_context(|| format!("replacing {}", folder.display()))?;
        }
        std::fs::rename(&staging, &folder)
            .with_context(|| format!("moving {} into place", staging.display()))?;
    }
    let absolute = std::fs::canonicalize(&folder)
        .with_context(|| format!("resolving {}", folder.display()))?;
    Ok(absolute.display().to_string())
}

pub fn run(args: Args) -> Result<()> {
    let device = args.device.open()?;
    let lora = args.lora.config()?;
    // Full fine-tuning updates every weight, which bf16 would round away; under LoRA the base
    // is frozen and may take the device's cheaper inference dtype.
    let dtype = if lora.is_some() {
        agentr_train::inference_dtype(&device)
    } else {
        DType::F32
    };
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
    if let Some(warning) =
        ObservationStyles::of(samples.iter().chain(&general)).mix_warning("the samples")
    {
        eprintln!("{warning}");
    }
    if args.observation_loss {
        samples
            .iter_mut()
            .chain(&mut general)
            .for_each(train_on_observations);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    super::remove_stale_temporaries(&args.out)?;
    let tokenizer_path = args.out.join("tokenizer.json");
    // What the adapter records as its base model (PEFT's `base_model_name_or_path`): a Hub id,
    // a model folder's absolute path, or for a GGUF file a folder of its weights; nothing for
    // a preset, whose random weights are saved nowhere.
    let mut base_name = None;
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
            let path = crate::models::model_path(std::path::Path::new(&args.model))?;
            let agent = ModelAgent::load_as(&path, &device, dtype).with_context(|| {
                format!(
                    "`{}` is neither a preset (tiny-xs, tiny-2l, tiny-s, tiny-m) nor a model folder",
                    args.model
                )
            })?;
            if lora.is_some() {
                base_name = Some(adapter_base(&args.model, &path, &agent)?);
            }
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
        steps: args.steps,
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
        recompute: args.recompute,
    };
    let trains = match &lora {
        Some(lora) => {
            model.attach_lora(lora, args.seed)?;
            let (adapters, base) = (model.parameter_count(), model.base_parameter_count());
            format!(
                "{adapters} LoRA parameters ({:.2}% of the {base} frozen ones; rank {}, alpha {}, \
                 on {})",
                100.0 * adapters as f64 / base.max(1) as f64,
                lora.rank,
                lora.alpha,
                lora.targets.join(",")
            )
        }
        None => format!("{} parameters", model.parameter_count()),
    };
    eprintln!(
        "{trains}, {} agent samples, {} general samples",
        data.agent.len(),
        data.general.len()
    );
    let progress = Progress::new("train", "steps", 0);
    let mut first_step = true;
    let outcome = train(
        &mut model,
        &data,
        &config,
        &args.out,
        args.resume,
        &mut |report| {
            progress.set_total(report.total_steps);
            if std::mem::take(&mut first_step) {
                // A resumed run's earlier steps do not count toward its rate and ETA.
                progress.start_at(report.step.saturating_sub(1));
            }
            progress.set_message(format!(
                "epoch {}, loss {:.4}, {:.0} tokens/s",
                report.epoch + 1,
                report.loss,
                report.tokens_per_second
            ));
            progress.set_position(report.step);
            true
        },
    )?;
    progress.finish();
    let adapter_dir = args.out.join("adapter");
    if lora.is_some() {
        match &base_name {
            Some(base) => model.save_adapter_with_base(&adapter_dir, base)?,
            None => model.save_adapter(&adapter_dir)?,
        }
        model.merge_lora()?;
    }
    model.save(&args.out)?;
    tokenizer.save_pretrained(&args.out)?;
    let last = std::fs::read_to_string(args.out.join("train_log.jsonl"))
        .ok()
        .and_then(|log| log.lines().last().map(str::to_owned))
        .unwrap_or_default();
    let adapter = match lora {
        Some(_) => format!(
            " (adapters merged; the adapter alone in {})",
            adapter_dir.display()
        ),
        None => String::new(),
    };
    eprintln!(
        "trained {} steps ({} samples skipped: nothing to train after truncation); model in {}{adapter}\nlast step: {last}",
        outcome.steps,
        outcome.skipped_samples,
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use agentr_envs::{Message, Sample};
    use candle_core::Device;
    use clap::Parser;

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

    /// `dir/samples.jsonl` with `count` one-step episodes (`Goal: craft item i.` answered
    /// `Action: get i oak logs`), for tests that train a toy model.
    pub(crate) fn write_toy_samples(dir: &std::path::Path, count: usize) -> PathBuf {
        let samples = dir.join("samples.jsonl");
        let lines: Vec<String> = (0..count)
            .map(|i| {
                let sample = Sample {
                    messages: vec![
                        Message::user(format!("Goal: craft item {i}.")),
                        Message::assistant(format!("Action: get {i} oak logs"), true),
                    ],
                    meta: Default::default(),
                };
                serde_json::to_string(&sample).unwrap()
            })
            .collect();
        std::fs::write(&samples, lines.join("\n")).unwrap();
        samples
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(flags: &[&str]) -> Result<Args, clap::Error> {
        Cli::try_parse_from(std::iter::once("train").chain(flags.iter().copied())).map(|c| c.args)
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

    #[test]
    fn lora_training_writes_the_merged_model_and_the_adapter() {
        let dir = std::env::temp_dir().join(format!("agentr-train-lora-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let samples = write_toy_samples(&dir, 8);
        let out = dir.join("out");
        let flags = [
            "--samples",
            samples.to_str().unwrap(),
            "--model",
            "tiny-xs",
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            "2",
            "--lr",
            "0.01",
            "--vocab-size",
            "300",
            "--seed",
            "3",
            "--lora-rank",
            "2",
            "--lora-targets",
            "q,v",
        ];
        run(parse(&flags).unwrap()).unwrap();
        for file in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "adapter/adapter_config.json",
            "adapter/adapter_model.safetensors",
            "checkpoint/adapter_model.safetensors",
        ] {
            assert!(out.join(file).exists(), "{file} is missing");
        }
        assert!(!out.join("checkpoint/model.safetensors").exists());
        let adapter: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join("adapter/adapter_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            adapter["target_modules"],
            serde_json::json!(["q_proj", "v_proj"])
        );
        assert_eq!(adapter["r"], 2);
        assert!(
            adapter["base_model_name_or_path"].is_null(),
            "a preset is no base"
        );

        // The merged model: the preset's base with only the q and v projections changed.
        let agent = ModelAgent::load(&out, &Device::Cpu).unwrap();
        let config = ModelConfig::preset("tiny-xs", agent.tokenizer.vocab_size()).unwrap();
        let base = Llama::new(config, &Device::Cpu, 3).unwrap();
        let trained: std::collections::HashMap<String, Vec<f32>> = agent
            .model
            .parameters()
            .into_iter()
            .map(|(name, var)| (name, var.flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
        for (name, var) in base.parameters() {
            let before: Vec<f32> = var.flatten_all().unwrap().to_vec1().unwrap();
            let adapted = name.contains("q_proj") || name.contains("v_proj");
            assert_eq!(trained[&name] != before, adapted, "{name}");
        }

        // Resuming the finished run rebuilds the same merged model from the checkpoint.
        let merged = std::fs::read(out.join("model.safetensors")).unwrap();
        run(parse(&[&flags[..], &["--resume"]].concat()).unwrap()).unwrap();
        assert!(std::fs::read(out.join("model.safetensors")).unwrap() == merged);

        // The merged model is a Hugging Face folder, and an adapter trained on it names the
        // folder by its absolute path, whatever path the command was given.
        for file in [
            "tokenizer_config.json",
            "special_tokens_map.json",
            "generation_config.json",
        ] {
            assert!(out.join(file).exists(), "{file} is missing");
        }
        let relative = format!("{}/../out", out.display());
        let second = dir.join("second");
        let mut on_folder = flags.to_vec();
        on_folder[3] = &relative;
        on_folder[5] = second.to_str().unwrap();
        run(parse(&on_folder).unwrap()).unwrap();
        let adapter: serde_json::Value = serde_json::from_slice(
            &std::fs::read(second.join("adapter/adapter_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            adapter["base_model_name_or_path"],
            std::fs::canonicalize(&out).unwrap().display().to_string()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_gguf_base_is_written_once_as_a_model_folder() {
        let dir = std::env::temp_dir().join(format!("agentr-train-gguf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let texts = ["Action: get 1 oak logs", "Goal: craft stick."];
        let tokenizer = ChatTokenizer::train(texts.iter(), 300).unwrap();
        let config = ModelConfig::preset("tiny-xs", tokenizer.vocab_size()).unwrap();
        let model = Llama::new(config, &Device::Cpu, 1).unwrap();
        let agent = ModelAgent::new(model, tokenizer, &dir);
        let gguf = dir.join("model-q4_1.gguf");
        std::fs::write(&gguf, b"stands for the file").unwrap();
        let base = adapter_base("model-q4_1.gguf", &gguf, &agent).unwrap();
        let folder = std::fs::canonicalize(dir.join("model-q4_1.hf")).unwrap();
        assert_eq!(base, folder.display().to_string());
        let loaded = ModelAgent::load(&folder, &Device::Cpu).unwrap();
        assert_eq!(
            loaded.model.parameters().len(),
            agent.model.parameters().len()
        );
        // Written once: a second adapter finds the folder and leaves it as it is.
        let weights = folder.join("model.safetensors");
        std::fs::write(&weights, b"kept").unwrap();
        assert_eq!(
            adapter_base("model-q4_1.gguf", &gguf, &agent).unwrap(),
            base
        );
        assert_eq!(std::fs::read(&weights).unwrap(), b"kept");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
