//! Supervised fine-tuning on JSONL samples: a preset trained from scratch (with a new
//! tokenizer), or any model `--model` names, fully or with LoRA adapters.

use std::path::{Path, PathBuf};

use agentr_envs::{ObservationStyles, Role};
use agentr_train::{
    AdamWConfig, ChatTokenizer, DeviceChoice, Llama, LoraConfig, ModelAgent, ModelConfig,
    SftConfig, TrainData, train as train_model,
};
use anyhow::{Context, Result, bail};
use candle_core::DType;

use super::files::remove_stale_temporaries;
use crate::report::Reporter;
use crate::samples::read_samples;

/// What to train. The command line's defaults are in `agentr train --help`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainJob {
    /// JSONL sample files.
    pub samples: Vec<PathBuf>,
    /// General data mixed in (Agent-R's eta of agent data).
    pub general: Vec<PathBuf>,
    /// A preset (tiny-xs, tiny-2l, tiny-s, tiny-m), a model folder, a GGUF file,
    /// smollm2-135m, or a Hugging Face model id.
    pub model: String,
    /// Output folder: the model (a Hugging Face folder), checkpoint and training log.
    pub out: PathBuf,
    /// Passes over the samples (unless `steps`).
    pub epochs: usize,
    /// Exactly this many optimizer steps instead of epochs.
    pub steps: Option<u64>,
    /// Peak learning rate.
    pub lr: f64,
    /// Padded tokens per micro-batch.
    pub batch_tokens: usize,
    /// Micro-batches per optimizer step.
    pub accumulation: usize,
    /// Longer samples are cut.
    pub max_seq_len: usize,
    /// Share of warm-up steps.
    pub warmup_ratio: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Share of agent data when general data is given.
    pub eta: f64,
    /// Seed of the data order and of a preset's initial weights.
    pub seed: u64,
    /// Vocabulary size of a preset's new tokenizer.
    pub vocab_size: usize,
    /// Checkpoint every this many optimizer steps.
    pub checkpoint_every: u64,
    /// Continue from the checkpoint in `out`.
    pub resume: bool,
    /// Also put loss on the environment's observations.
    pub observation_loss: bool,
    /// Recompute activations in the backward pass (less memory, more compute).
    pub recompute: bool,
    /// LoRA adapters instead of full fine-tuning.
    pub lora: Option<LoraConfig>,
    /// Where the model trains.
    pub device: DeviceChoice,
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainSummary {
    /// Optimizer steps, earlier runs' included.
    pub steps: u64,
    /// Samples with nothing to train after truncation.
    pub skipped_samples: usize,
    /// The adapter folder, for LoRA (the model in `out` has the adapters merged).
    pub adapter: Option<PathBuf>,
    /// The training log's last line.
    pub last_step: String,
}

impl TrainSummary {
    /// The summary in words, naming `out`, the model's folder.
    pub fn describe(&self, out: &Path) -> String {
        let adapter = match &self.adapter {
            Some(dir) => format!(" (adapters merged; the adapter alone in {})", dir.display()),
            None => String::new(),
        };
        format!(
            "trained {} steps ({} samples skipped: nothing to train after truncation); model in \
             {}{adapter}\nlast step: {}",
            self.steps,
            self.skipped_samples,
            out.display(),
            self.last_step
        )
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
fn adapter_base(
    arg: &str,
    resolved: &Path,
    agent: &ModelAgent,
    reporter: &dyn Reporter,
) -> Result<String> {
    if resolved.is_dir() {
        if crate::models::hub_id(Path::new(arg)).is_some_and(|id| !id.contains('@')) {
            return Ok(arg.to_owned());
        }
        let absolute = std::fs::canonicalize(resolved)
            .with_context(|| format!("resolving {}", resolved.display()))?;
        return Ok(absolute.display().to_string());
    }
    let folder = resolved.with_extension("hf");
    if !folder.join("tokenizer_config.json").exists() {
        reporter.line(&format!(
            "writing {} once: the adapter's base for Hugging Face tools (the GGUF's weights as \
             a model folder)",
            folder.display()
        ));
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

/// Trains as `job` says and writes the model into `job.out`.
pub fn train(job: &TrainJob, reporter: &dyn Reporter) -> Result<TrainSummary> {
    let device = job.device.open()?;
    let lora = &job.lora;
    // Full fine-tuning updates every weight, which bf16 would round away; under LoRA the base
    // is frozen and may take the device's cheaper inference dtype.
    let dtype = if lora.is_some() {
        agentr_train::inference_dtype(&device)
    } else {
        DType::F32
    };
    let mut samples = Vec::new();
    for path in &job.samples {
        samples.extend(read_samples(path)?);
    }
    let mut general = Vec::new();
    for path in &job.general {
        general.extend(read_samples(path)?);
    }
    if samples.is_empty() {
        bail!("no samples in {:?}", job.samples);
    }
    if let Some(warning) =
        ObservationStyles::of(samples.iter().chain(&general)).mix_warning("the samples")
    {
        reporter.line(&warning);
    }
    if job.observation_loss {
        samples
            .iter_mut()
            .chain(&mut general)
            .for_each(train_on_observations);
    }
    std::fs::create_dir_all(&job.out).with_context(|| format!("creating {}", job.out.display()))?;
    remove_stale_temporaries(&job.out, reporter)?;
    let tokenizer_path = job.out.join("tokenizer.json");
    // What the adapter records as its base model (PEFT's `base_model_name_or_path`): a Hub id,
    // a model folder's absolute path, or for a GGUF file a folder of its weights; nothing for
    // a preset, whose random weights are saved nowhere.
    let mut base_name = None;
    let (mut model, tokenizer) = match ModelConfig::preset(&job.model, job.vocab_size) {
        Some(_) if job.resume && tokenizer_path.exists() => {
            let tokenizer = ChatTokenizer::load(&tokenizer_path)?;
            let config = ModelConfig::preset(&job.model, tokenizer.vocab_size())
                .context("preset vanished")?;
            (Llama::new(config, &device, job.seed)?, tokenizer)
        }
        Some(_) => {
            let texts = samples
                .iter()
                .chain(&general)
                .flat_map(|s| s.messages.iter().map(|m| m.content.as_str()));
            reporter.line(&format!(
                "training a {}-token BPE tokenizer on the samples ...",
                job.vocab_size
            ));
            let tokenizer = ChatTokenizer::train(texts, job.vocab_size)?;
            tokenizer.save(&tokenizer_path)?;
            let config = ModelConfig::preset(&job.model, tokenizer.vocab_size())
                .context("preset vanished")?;
            (Llama::new(config, &device, job.seed)?, tokenizer)
        }
        None => {
            let path = crate::models::model_path(Path::new(&job.model))?;
            let agent = ModelAgent::load_as(&path, &device, dtype).with_context(|| {
                format!(
                    "`{}` is neither a preset (tiny-xs, tiny-2l, tiny-s, tiny-m) nor a model folder",
                    job.model
                )
            })?;
            if lora.is_some() {
                base_name = Some(adapter_base(&job.model, &path, &agent, reporter)?);
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
        epochs: job.epochs,
        steps: job.steps,
        lr: job.lr,
        min_lr: 0.0,
        warmup_ratio: job.warmup_ratio,
        optimizer: AdamWConfig {
            weight_decay: job.weight_decay,
            ..AdamWConfig::default()
        },
        max_grad_norm: 1.0,
        batch_tokens: job.batch_tokens,
        accumulation: job.accumulation,
        max_seq_len: job.max_seq_len,
        eta: if general.is_empty() { 1.0 } else { job.eta },
        seed: job.seed,
        checkpoint_every: job.checkpoint_every,
        recompute: job.recompute,
    };
    let trains = match lora {
        Some(lora) => {
            model.attach_lora(lora, job.seed)?;
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
    reporter.line(&format!(
        "{trains}, {} agent samples, {} general samples",
        data.agent.len(),
        data.general.len()
    ));
    let progress = reporter.progress("train", "steps", 0);
    let mut first_step = true;
    let outcome = train_model(
        &mut model,
        &data,
        &config,
        &job.out,
        job.resume,
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
    let adapter_dir = job.out.join("adapter");
    if lora.is_some() {
        match &base_name {
            Some(base) => model.save_adapter_with_base(&adapter_dir, base)?,
            None => model.save_adapter(&adapter_dir)?,
        }
        model.merge_lora()?;
    }
    model.save(&job.out)?;
    tokenizer.save_pretrained(&job.out)?;
    let last_step = std::fs::read_to_string(job.out.join("train_log.jsonl"))
        .ok()
        .and_then(|log| log.lines().last().map(str::to_owned))
        .unwrap_or_default();
    Ok(TrainSummary {
        steps: outcome.steps,
        skipped_samples: outcome.skipped_samples,
        adapter: lora.is_some().then_some(adapter_dir),
        last_step,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use agentr_envs::{Message, Sample};
    use agentr_train::{Llama, ModelAgent, ModelConfig};
    use candle_core::Device;

    use super::*;
    use crate::report::Quiet;

    /// `dir/samples.jsonl` with `count` one-step episodes (`Goal: craft item i.` answered
    /// `Action: get i oak logs`), for tests that train a toy model.
    pub(crate) fn write_toy_samples(dir: &Path, count: usize) -> PathBuf {
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

    /// A training of `model` on `samples` into `out` with the command line's defaults.
    fn toy_job(samples: Vec<PathBuf>, model: &str, out: &Path) -> TrainJob {
        TrainJob {
            samples,
            general: Vec::new(),
            model: model.to_owned(),
            out: out.to_owned(),
            epochs: 3,
            steps: None,
            lr: 1e-3,
            batch_tokens: 8192,
            accumulation: 1,
            max_seq_len: 2048,
            warmup_ratio: 0.03,
            weight_decay: 0.0,
            eta: 0.2,
            seed: 0,
            vocab_size: 2048,
            checkpoint_every: 200,
            resume: false,
            observation_loss: false,
            recompute: false,
            lora: None,
            device: DeviceChoice::Cpu,
        }
    }

    #[test]
    fn lora_training_writes_the_merged_model_and_the_adapter() {
        let dir = std::env::temp_dir().join(format!("agentr-train-lora-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let samples = write_toy_samples(&dir, 8);
        let out = dir.join("out");
        let job = TrainJob {
            epochs: 2,
            lr: 0.01,
            vocab_size: 300,
            seed: 3,
            lora: Some(LoraConfig {
                targets: vec!["q".into(), "v".into()],
                ..LoraConfig::with_rank(2)
            }),
            ..toy_job(vec![samples.clone()], "tiny-xs", &out)
        };
        train(&job, &Quiet).unwrap();
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
        let resumed = TrainJob {
            resume: true,
            ..job.clone()
        };
        train(&resumed, &Quiet).unwrap();
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
        let on_folder = TrainJob {
            model: relative,
            out: second.clone(),
            ..job.clone()
        };
        train(&on_folder, &Quiet).unwrap();
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
        let base = adapter_base("model-q4_1.gguf", &gguf, &agent, &Quiet).unwrap();
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
            adapter_base("model-q4_1.gguf", &gguf, &agent, &Quiet).unwrap(),
            base
        );
        assert_eq!(std::fs::read(&weights).unwrap(), b"kept");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
