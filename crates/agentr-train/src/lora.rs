//! LoRA adapters (Hu et al., 2021) on the attention and MLP projections of a [`Llama`].
//!
//! An adapted projection computes `x Wᵀ + b + (alpha / rank) · x Aᵀ Bᵀ`, with `A` of shape
//! `[rank, in]` and `B` of shape `[out, rank]`: only `A` and `B` train.
//!
//! * **`B` starts at zero**, so attaching adapters changes nothing: fine-tuning starts from
//!   the base model's exact outputs. `A` starts random (PEFT's default, Kaiming-uniform with
//!   `a = √5`, i.e. `U(−1/√in, 1/√in)`), otherwise the gradients of both factors would be zero
//!   forever.
//! * **The base is frozen**: its weights reach the forward pass as detached views, and their
//!   products go through `frozen::linear`, so backward computes no weight-gradient products
//!   (the large matrix products of a full fine-tune; candle's own matmul backward would
//!   compute them for a frozen operand too and drop them), the
//!   optimizer keeps moments only for the adapters, and checkpoints hold only the adapters.
//! * **Adapters are f32** even when the frozen base is bf16 (half the memory, on CUDA): an
//!   update of a low-rank factor is a small relative change that bf16's 8-bit mantissa would
//!   round away. They are cast to the activations' dtype in the forward pass.
//!
//! Adapters are saved in the layout of Hugging Face PEFT (`adapter_config.json` and
//! `adapter_model.safetensors`, names like
//! `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`), so `PeftModel` reads
//! them and adapters trained with PEFT load here. [`Llama::merge_lora`] folds them into the
//! base weights (`W += (alpha / rank) · B A`), after which [`Llama::save`] writes an ordinary
//! Hugging Face checkpoint; [`Llama::export_merged`] does both without touching the model.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::io;
use crate::model::{Adapter, PROJECTIONS};
use crate::{Llama, ModelConfig, TrainError};

/// The adapter settings file of the PEFT layout.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// The adapter weights file of the PEFT layout.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// The short target names, in [`PROJECTIONS`] order.
const SHORT_NAMES: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];

/// PEFT's module names (`target_modules`), in [`PROJECTIONS`] order.
const PEFT_NAMES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// What PEFT puts before a parameter's name in `adapter_model.safetensors`.
const PEFT_PREFIX: &str = "base_model.model.";

/// LoRA settings.
///
/// `targets` name the adapted projections, each as a short name (`q`, `k`, `v`, `o`, `gate`,
/// `up`, `down`), a PEFT module name (`q_proj`, ..., `down_proj`) or a [`PROJECTIONS`] entry
/// (`self_attn.q_proj`, ...). The default is rank 8, alpha 16 on all seven projections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    /// Rank of the update `B A`.
    pub rank: usize,
    /// The update is scaled by `alpha / rank`.
    pub alpha: f64,
    /// The adapted projections.
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig::with_rank(8)
    }
}

impl LoraConfig {
    /// Rank `rank`, alpha `2 · rank` (scale 2), all seven projections.
    pub fn with_rank(rank: usize) -> Self {
        LoraConfig {
            rank,
            alpha: 2.0 * rank as f64,
            targets: SHORT_NAMES.iter().map(|&s| s.to_owned()).collect(),
        }
    }

    /// The factor `alpha / rank` the update is scaled by.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Checks the rank is positive, alpha positive and finite, and the targets non-empty and
    /// known.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.projections().map(|_| ())
    }

    /// The PEFT module names of the targets (`q_proj`, ...), in [`PROJECTIONS`] order.
    pub fn peft_target_modules(&self) -> Result<Vec<&'static str>, TrainError> {
        Ok(self
            .projections()?
            .into_iter()
            .map(|i| PEFT_NAMES[i])
            .collect())
    }

    /// The targets as indices into [`PROJECTIONS`], sorted and without repeats.
    fn projections(&self) -> Result<Vec<usize>, TrainError> {
        if self.rank == 0 {
            return Err(TrainError::Config("the LoRA rank must be positive".into()));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(TrainError::Config(format!(
                "the LoRA alpha must be positive and finite, not {}",
                self.alpha
            )));
        }
        if self.targets.is_empty() {
            return Err(TrainError::Config(
                "LoRA needs at least one target projection (q, k, v, o, gate, up, down)".into(),
            ));
        }
        let mut indices = Vec::new();
        for target in &self.targets {
            let index = target_index(target).ok_or_else(|| {
                TrainError::Config(format!(
                    "unknown LoRA target `{target}`: use q, k, v, o, gate, up, down (or PEFT's \
                     q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"
                ))
            })?;
            indices.push(index);
        }
        indices.sort_unstable();
        indices.dedup();
        Ok(indices)
    }
}

/// The index into [`PROJECTIONS`] of a target name in any of its three spellings.
fn target_index(name: &str) -> Option<usize> {
    let name = name.trim();
    if let Some(index) = PROJECTIONS.iter().position(|&p| p == name) {
        return Some(index);
    }
    let short = name.strip_suffix("_proj").unwrap_or(name);
    SHORT_NAMES.iter().position(|&s| s == short)
}

/// `alpha` as a JSON number: an integer when it is one (PEFT's configs write `lora_alpha: 16`).
fn alpha_json(alpha: f64) -> serde_json::Value {
    if alpha.fract() == 0.0 && alpha.abs() < 9e15 {
        serde_json::json!(alpha as i64)
    } else {
        serde_json::json!(alpha)
    }
}

/// The PEFT `adapter_config.json` of `config`.
fn peft_config_json(
    config: &LoraConfig,
    base_model: Option<&str>,
) -> Result<serde_json::Value, TrainError> {
    Ok(serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": config.rank,
        "lora_alpha": alpha_json(config.alpha),
        "lora_dropout": 0.0,
        "target_modules": config.peft_target_modules()?,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": null,
        "layers_to_transform": null,
        "rank_pattern": {},
        "alpha_pattern": {},
    }))
}

/// Reads the settings of a PEFT `adapter_config.json`, refusing the variants this crate does
/// not implement. `lora_dropout` is ignored (training here applies no dropout).
fn parse_peft_config(text: &str) -> Result<LoraConfig, String> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let field = |name: &str| json.get(name).filter(|v| !v.is_null());
    if let Some(kind) = field("peft_type")
        && kind.as_str() != Some("LORA")
    {
        return Err(format!("peft_type is {kind}, not \"LORA\""));
    }
    let rank = field("r")
        .and_then(serde_json::Value::as_u64)
        .ok_or("`r` (the rank) is missing or not a positive integer")?;
    let alpha = field("lora_alpha")
        .and_then(serde_json::Value::as_f64)
        .ok_or("`lora_alpha` is missing or not a number")?;
    let targets = match field("target_modules") {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("target_modules holds {item}, not a module name"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(serde_json::Value::String(s)) if s == "all-linear" => {
            PEFT_NAMES.iter().map(|&s| s.to_owned()).collect()
        }
        Some(other) => {
            return Err(format!(
                "target_modules {other} (a regular expression) is not supported: list the \
                 modules (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"
            ));
        }
        None => return Err("`target_modules` is missing".into()),
    };
    if let Some(bias) = field("bias")
        && bias.as_str() != Some("none")
    {
        return Err(format!("bias {bias} is not supported (only \"none\")"));
    }
    for flag in ["use_dora", "use_rslora", "fan_in_fan_out"] {
        if field(flag).and_then(serde_json::Value::as_bool) == Some(true) {
            return Err(format!("{flag} is not supported"));
        }
    }
    let non_empty = |v: &serde_json::Value| match v {
        serde_json::Value::Array(items) => !items.is_empty(),
        serde_json::Value::Object(map) => !map.is_empty(),
        _ => true,
    };
    for setting in [
        "layers_to_transform",
        "rank_pattern",
        "alpha_pattern",
        "modules_to_save",
    ] {
        if let Some(value) = field(setting).filter(|v| non_empty(v)) {
            return Err(format!(
                "{setting} {value} is not supported (every layer gets the same adapters)"
            ));
        }
    }
    Ok(LoraConfig {
        rank: usize::try_from(rank).map_err(|e| e.to_string())?,
        alpha,
        targets,
    })
}

/// One adapter a model of `config` has for `targets` at some rank.
struct Slot {
    layer: usize,
    /// Index into [`PROJECTIONS`].
    projection: usize,
    /// `model.layers.N.self_attn.q_proj`: `.lora_A.weight` / `.lora_B.weight` name the factors.
    name: String,
    /// `[out_features, in_features]` of the projection.
    shape: [usize; 2],
}

impl Slot {
    /// The factors' names (without the PEFT prefix) and shapes at `rank`: A, then B.
    fn factors(&self, rank: usize) -> [(String, Vec<usize>); 2] {
        let [out, inp] = self.shape;
        [
            (format!("{}.lora_A.weight", self.name), vec![rank, inp]),
            (format!("{}.lora_B.weight", self.name), vec![out, rank]),
        ]
    }
}

/// Every adapter of a model of `config` for `targets` (indices into [`PROJECTIONS`]), layer by
/// layer.
fn slots(config: &ModelConfig, targets: &[usize]) -> Vec<Slot> {
    (0..config.num_hidden_layers)
        .flat_map(|layer| {
            targets.iter().map(move |&projection| {
                let name = PROJECTIONS[projection];
                let shape = config
                    .projection_shape(name)
                    .unwrap_or_else(|| unreachable!("{name} is listed in PROJECTIONS"));
                Slot {
                    layer,
                    projection,
                    name: format!("model.layers.{layer}.{name}"),
                    shape,
                }
            })
        })
        .collect()
}

/// `W + scale · B A`, computed in f32 and returned in `weight`'s dtype.
fn merged_weight(weight: &Tensor, adapter: &Adapter) -> candle_core::Result<Tensor> {
    let update = (adapter.b.as_tensor().matmul(adapter.a.as_tensor())? * adapter.scale)?;
    (weight.to_dtype(DType::F32)? + update)?.to_dtype(weight.dtype())
}

/// The weight of `projection` (`model.layers.N.self_attn.q_proj`) among `base`.
fn base_weight<'a, T>(base: &'a HashMap<String, T>, projection: &str) -> Result<&'a T, TrainError> {
    let key = format!("{projection}.weight");
    base.get(&key)
        .ok_or_else(|| TrainError::Config(format!("the model has no base weight {key}")))
}

impl Llama {
    /// Attaches LoRA adapters to the `config.targets` projections of every layer and freezes
    /// the base: from now on [`Llama::parameters`] (and so the optimizer and the trainer) sees
    /// only the adapters. `A` is drawn from `U(−1/√in, 1/√in)` as a pure function of `seed`
    /// and the adapter's name, `B` is zero, so the model's output is unchanged. Fails when
    /// adapters are already attached.
    pub fn attach_lora(&mut self, config: &LoraConfig, seed: u64) -> Result<(), TrainError> {
        let targets = config.projections()?;
        if self.has_adapters() {
            return Err(TrainError::Config(
                "LoRA adapters are already attached: merge (Llama::merge_lora) or remove \
                 (Llama::remove_lora) them first"
                    .into(),
            ));
        }
        let device = self.device().clone();
        for slot in slots(self.config(), &targets) {
            let [(a_name, a_shape), (_, b_shape)] = slot.factors(config.rank);
            let bound = 1.0 / (slot.shape[1] as f64).sqrt();
            let mut parts = vec![seed];
            parts.extend(a_name.bytes().map(u64::from));
            let mut rng = agentr_envs::rng::Rng::from_parts(&parts);
            let values: Vec<f32> = (0..a_shape.iter().product())
                .map(|_| ((2.0 * rng.unit_f64() - 1.0) * bound) as f32)
                .collect();
            self.layers[slot.layer].projections[slot.projection].adapter = Some(Adapter {
                a: Var::from_vec(values, a_shape, &device)?,
                b: Var::zeros(b_shape, DType::F32, &device)?,
                scale: config.scale(),
            });
        }
        self.set_base_frozen(true);
        Ok(())
    }

    /// The settings of the attached adapters (`None` without adapters), as read back from
    /// them: targets as short names in [`PROJECTIONS`] order, `alpha` as `scale · rank`.
    pub fn lora_config(&self) -> Option<LoraConfig> {
        let layer = self
            .layers
            .iter()
            .find(|l| l.projections.iter().any(|p| p.adapter.is_some()))?;
        let mut config = LoraConfig {
            rank: 0,
            alpha: 0.0,
            targets: Vec::new(),
        };
        for (short, projection) in SHORT_NAMES.iter().zip(&layer.projections) {
            if let Some(adapter) = &projection.adapter {
                config.rank = adapter.a.dims()[0];
                config.alpha = adapter.scale * config.rank as f64;
                config.targets.push((*short).to_owned());
            }
        }
        let rounded = config.alpha.round();
        if (config.alpha - rounded).abs() <= 1e-9 * rounded.abs() {
            config.alpha = rounded;
        }
        Some(config)
    }

    /// Number of scalars in the base weights (trainable or frozen); [`Llama::parameter_count`]
    /// counts only the adapters while they are attached.
    pub fn base_parameter_count(&self) -> usize {
        self.base_parameters()
            .iter()
            .map(|(_, v)| v.elem_count())
            .sum()
    }

    /// Folds the adapters into the base weights (`W += (alpha / rank) · B A`, computed in f32
    /// and stored in the weights' dtype), removes them and makes the base trainable again:
    /// the model computes what it computed with the adapters, and [`Llama::save`] then writes
    /// the fine-tuned model as a plain Hugging Face checkpoint. Fails without adapters.
    pub fn merge_lora(&mut self) -> Result<(), TrainError> {
        if !self.has_adapters() {
            return Err(TrainError::Config("no LoRA adapters to merge".into()));
        }
        self.drop_quantized();
        let base: HashMap<String, Var> = self.base_parameters().into_iter().collect();
        for (projection, adapter) in self.adapters() {
            let var = base_weight(&base, &projection)?;
            var.set(&merged_weight(var.as_tensor(), adapter)?)?;
        }
        self.remove_lora();
        Ok(())
    }

    /// Removes the adapters without merging them (the base model again, trainable) and
    /// returns their settings, `None` when none were attached.
    pub fn remove_lora(&mut self) -> Option<LoraConfig> {
        let config = self.lora_config()?;
        for layer in &mut self.layers {
            for projection in &mut layer.projections {
                projection.adapter = None;
            }
        }
        self.set_base_frozen(false);
        Some(config)
    }

    /// Writes the merged model (base plus adapters, see [`Llama::merge_lora`]) into `dir` as a
    /// Hugging Face checkpoint (`config.json`, `model.safetensors`), leaving this model and
    /// its adapters as they are. Needs memory for a second copy of the weights. Without
    /// adapters it is [`Llama::save`].
    pub fn export_merged(&self, dir: &Path) -> Result<(), TrainError> {
        if !self.has_adapters() {
            return self.save(dir);
        }
        let mut weights: HashMap<String, Tensor> = self
            .base_parameters()
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().clone()))
            .collect();
        for (projection, adapter) in self.adapters() {
            let merged = merged_weight(base_weight(&weights, &projection)?, adapter)?;
            weights.insert(format!("{projection}.weight"), merged);
        }
        Llama::from_weights_as(self.config().clone(), weights, self.device(), self.dtype())?
            .save(dir)
    }

    /// Writes the adapters into `dir` (created if missing) in PEFT's layout:
    /// `adapter_config.json` and `adapter_model.safetensors` (f32), each written atomically.
    /// Fails without adapters.
    pub fn save_adapter(&self, dir: &Path) -> Result<(), TrainError> {
        self.write_adapter(dir, None)
    }

    /// [`Llama::save_adapter`], recording `base_model` (a Hub id or a folder) as the config's
    /// `base_model_name_or_path`, which PEFT's `AutoPeftModelForCausalLM` loads the base from.
    pub fn save_adapter_with_base(&self, dir: &Path, base_model: &str) -> Result<(), TrainError> {
        self.write_adapter(dir, Some(base_model))
    }

    fn write_adapter(&self, dir: &Path, base_model: Option<&str>) -> Result<(), TrainError> {
        let config = self.lora_config().ok_or_else(|| {
            TrainError::Config("no LoRA adapters are attached: there is no adapter to save".into())
        })?;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let tensors: HashMap<String, Tensor> = self
            .parameters()
            .into_iter()
            .map(|(name, var)| (format!("{PEFT_PREFIX}{name}"), var.as_tensor().clone()))
            .collect();
        let weights = dir.join(ADAPTER_WEIGHTS);
        agentr_envs::atomic::write_with(&weights, |tmp| {
            candle_core::safetensors::save(&tensors, tmp).map_err(std::io::Error::other)
        })
        .map_err(io(&weights))?;
        let config_path = dir.join(ADAPTER_CONFIG);
        let json = serde_json::to_vec_pretty(&peft_config_json(&config, base_model)?)
            .map_err(std::io::Error::other)
            .map_err(io(&config_path))?;
        agentr_envs::atomic::write(&config_path, &json).map_err(io(&config_path))
    }

    /// Reads adapters in PEFT's layout from `dir` (as [`Llama::save_adapter`] or PEFT's
    /// `save_pretrained` writes them; their dtype is converted to f32). Without adapters
    /// attached, they are attached and the base frozen. With adapters attached, the file must
    /// have the same rank, alpha and targets, and its values are copied into the attached
    /// variables (so an optimizer over [`Llama::parameters`] keeps working: how training
    /// resumes). Every tensor must be present with its exact shape and nothing else may be:
    /// the error names what is missing, unexpected or misshaped.
    pub fn load_adapter(&mut self, dir: &Path) -> Result<(), TrainError> {
        let config_path = dir.join(ADAPTER_CONFIG);
        let text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
        let bad_config = |message: String| TrainError::BadFile {
            path: config_path.clone(),
            message,
        };
        let config = parse_peft_config(&text).map_err(&bad_config)?;
        let targets = config
            .projections()
            .map_err(|e| bad_config(e.to_string()))?;
        if let Some(attached) = self.lora_config() {
            let same_targets = attached.projections().ok().as_ref() == Some(&targets);
            let same_scale = (attached.scale() - config.scale()).abs() <= 1e-12 * config.scale();
            if !(same_targets && attached.rank == config.rank && same_scale) {
                return Err(TrainError::Config(format!(
                    "the adapter in {} (rank {}, alpha {}, targets {}) does not match the \
                     attached one (rank {}, alpha {}, targets {}): remove it first \
                     (Llama::remove_lora)",
                    dir.display(),
                    config.rank,
                    config.alpha,
                    config.targets.join(","),
                    attached.rank,
                    attached.alpha,
                    attached.targets.join(","),
                )));
            }
        }
        let weights_path = dir.join(ADAPTER_WEIGHTS);
        let mut tensors =
            candle_core::safetensors::load(&weights_path, self.device()).map_err(|e| {
                TrainError::BadFile {
                    path: weights_path.clone(),
                    message: e.to_string(),
                }
            })?;
        let slots = slots(self.config(), &targets);
        let expected: Vec<(String, Vec<usize>)> = slots
            .iter()
            .flat_map(|slot| slot.factors(config.rank))
            .map(|(name, shape)| (format!("{PEFT_PREFIX}{name}"), shape))
            .collect();
        if let Some(problems) = crate::model::tensor_mismatches(&expected, &tensors) {
            return Err(TrainError::BadFile {
                path: weights_path,
                message: format!(
                    "the adapter does not fit the model (rank {}, targets {}): {problems}",
                    config.rank,
                    config.targets.join(",")
                ),
            });
        }
        let attach = !self.has_adapters();
        for slot in slots {
            let [a, b] = slot.factors(config.rank).map(|(name, _)| {
                tensors
                    .remove(&format!("{PEFT_PREFIX}{name}"))
                    .unwrap_or_else(|| unreachable!("{name} is present (checked above)"))
                    .to_dtype(DType::F32)
            });
            let (a, b) = (a?, b?);
            let projection = &mut self.layers[slot.layer].projections[slot.projection];
            match &projection.adapter {
                Some(adapter) => {
                    adapter.a.set(&a)?;
                    adapter.b.set(&b)?;
                }
                None => {
                    projection.adapter = Some(Adapter {
                        a: Var::from_tensor(&a)?,
                        b: Var::from_tensor(&b)?,
                        scale: config.scale(),
                    });
                }
            }
        }
        if attach {
            self.set_base_frozen(true);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::flat_logits;
    use crate::{ModelType, masked_cross_entropy};
    use candle_core::Device;
    use proptest::prelude::*;

    fn tiny(model_type: ModelType, tie: bool) -> ModelConfig {
        ModelConfig {
            vocab_size: 53,
            model_type,
            ..crate::model::tests::small(tie)
        }
    }

    fn ids(batch: usize, seq: usize) -> Tensor {
        let values: Vec<u32> = (0..batch * seq).map(|i| (i * 11 % 53) as u32).collect();
        Tensor::from_vec(values, (batch, seq), &Device::Cpu).unwrap()
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("agentr-lora-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Sets every `B` to seeded normal values of standard deviation `std`.
    fn perturb(model: &Llama, seed: u64, std: f64) {
        let mut rng = agentr_envs::rng::Rng::new(seed);
        for (name, var) in model.parameters() {
            if !name.contains("lora_B") {
                continue;
            }
            let values: Vec<f32> = (0..var.elem_count())
                .map(|_| (std * crate::model::standard_normal(&mut rng)) as f32)
                .collect();
            var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }

    fn max_relative_difference(a: &[f32], b: &[f32]) -> f32 {
        let scale = a.iter().map(|v| v.abs()).fold(1e-3f32, f32::max);
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
            / scale
    }

    #[test]
    fn settings_are_validated_with_clear_errors() {
        let default = LoraConfig::default();
        assert_eq!((default.rank, default.alpha), (8, 16.0));
        assert_eq!(default.scale(), 2.0);
        assert_eq!(default.peft_target_modules().unwrap(), PEFT_NAMES);
        let spelled = LoraConfig {
            targets: vec![
                "down".into(),
                "q_proj".into(),
                "self_attn.v_proj".into(),
                "q".into(),
            ],
            ..LoraConfig::default()
        };
        assert_eq!(
            spelled.peft_target_modules().unwrap(),
            ["q_proj", "v_proj", "down_proj"]
        );
        let message = |config: LoraConfig| config.validate().unwrap_err().to_string();
        assert!(message(LoraConfig::with_rank(0)).contains("rank must be positive"));
        let unknown = message(LoraConfig {
            targets: vec!["q".into(), "lm_head".into()],
            ..LoraConfig::default()
        });
        assert!(
            unknown.contains("`lm_head`") && unknown.contains("gate"),
            "{unknown}"
        );
        let empty = message(LoraConfig {
            targets: Vec::new(),
            ..LoraConfig::default()
        });
        assert!(empty.contains("at least one target"), "{empty}");
        assert!(
            message(LoraConfig {
                alpha: 0.0,
                ..LoraConfig::default()
            })
            .contains("alpha")
        );
        // Partial JSON takes the defaults.
        let parsed: LoraConfig = serde_json::from_str(r#"{"rank": 4}"#).unwrap();
        assert_eq!(parsed.targets, LoraConfig::default().targets);
    }

    #[test]
    fn attached_adapters_are_all_that_trains() {
        let mut model = Llama::new(tiny(ModelType::Llama, false), &Device::Cpu, 1).unwrap();
        let base_count = model.parameter_count();
        let config = LoraConfig {
            rank: 3,
            alpha: 6.0,
            targets: vec!["q".into(), "v".into(), "down".into()],
        };
        model.attach_lora(&config, 9).unwrap();
        assert!(model.has_adapters());
        assert_eq!(model.base_parameter_count(), base_count);
        let params = model.parameters();
        assert_eq!(params.len(), 2 * 3 * 2);
        for (name, var) in &params {
            let shape = var.dims();
            match name.as_str() {
                "model.layers.0.self_attn.q_proj.lora_A.weight" => assert_eq!(shape, [3, 32]),
                "model.layers.1.self_attn.v_proj.lora_B.weight" => assert_eq!(shape, [16, 3]),
                "model.layers.1.mlp.down_proj.lora_A.weight" => assert_eq!(shape, [3, 48]),
                _ => {}
            }
            let values = var.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            if name.contains("lora_B") {
                assert!(values.iter().all(|&v| v == 0.0), "{name} is not zero");
            } else {
                let bound = 1.0 / (shape[1] as f32).sqrt();
                assert!(values.iter().all(|v| v.abs() <= bound), "{name}");
                assert!(values.iter().any(|v| v.abs() > bound / 2.0), "{name}");
            }
        }
        assert_eq!(
            model.parameter_count(),
            2 * (3 * 32 + 32 * 3 + 3 * 32 + 16 * 3 + 3 * 48 + 32 * 3)
        );
        assert_eq!(
            model.lora_config().unwrap(),
            LoraConfig {
                targets: vec!["q".into(), "v".into(), "down".into()],
                ..config.clone()
            }
        );
        let again = model.attach_lora(&config, 9).unwrap_err().to_string();
        assert!(again.contains("already attached"), "{again}");

        // Gradients reach the adapters only (A's is zero while B is zero).
        perturb(&model, 3, 0.1);
        let input = ids(2, 6);
        let logits = model.forward(&input, None).unwrap();
        let mask = Tensor::ones((2, 6), DType::F32, &Device::Cpu).unwrap();
        let (loss, _) = masked_cross_entropy(&logits, &input, &mask).unwrap();
        let store = loss.backward().unwrap();
        let grads = model.gradients(&store);
        assert_eq!(grads.len(), params.len());
        for (name, var) in model.base_parameters() {
            assert!(
                store.get(var.as_tensor()).is_none(),
                "{name} got a gradient"
            );
        }
        // Nor is a base matrix's gradient computed and dropped (candle's matmul backward
        // computes one for a frozen operand too; see frozen.rs): no tensor in the store has
        // the shape of a base matrix or of its transpose.
        let mut matrices: Vec<Vec<usize>> = model
            .base_parameters()
            .iter()
            .map(|(_, var)| var.dims().to_vec())
            .filter(|dims| dims.len() == 2)
            .collect();
        matrices.extend(matrices.clone().into_iter().map(|d| vec![d[1], d[0]]));
        for id in store.get_ids() {
            let dims = store.get_id(*id).unwrap().dims();
            assert!(
                !matrices.iter().any(|m| m == dims),
                "a gradient of shape {dims:?} was computed"
            );
        }
    }

    #[test]
    fn adapters_are_drawn_from_the_seed() {
        let adapters = |seed| {
            let mut model = Llama::new(tiny(ModelType::Llama, true), &Device::Cpu, 1).unwrap();
            model.attach_lora(&LoraConfig::with_rank(2), seed).unwrap();
            crate::model::tests::flat_weights(&model)
        };
        assert_eq!(adapters(4), adapters(4));
        assert_ne!(adapters(4), adapters(5));
    }

    #[test]
    fn merging_keeps_the_logits_and_removes_the_adapters() {
        for (model_type, tie) in [(ModelType::Llama, true), (ModelType::Qwen2, false)] {
            let mut model = Llama::new(tiny(model_type, tie), &Device::Cpu, 2).unwrap();
            let input = ids(2, 7);
            let base = flat_logits(&model, &input);
            model.attach_lora(&LoraConfig::with_rank(4), 1).unwrap();
            perturb(&model, 8, 0.05);
            let adapted = flat_logits(&model, &input);
            assert_ne!(adapted, base);
            let dir = temp_dir("export");
            model.export_merged(&dir).unwrap();
            assert!(model.has_adapters(), "exporting leaves the model alone");
            let saved = model.save(&dir).unwrap_err().to_string();
            assert!(saved.contains("merge"), "{saved}");
            model.merge_lora().unwrap();
            assert!(!model.has_adapters() && model.lora_config().is_none());
            assert_eq!(model.parameter_count(), model.base_parameter_count());
            let merged = flat_logits(&model, &input);
            assert!(max_relative_difference(&adapted, &merged) < 1e-4);
            let exported = Llama::load(&dir, &Device::Cpu).unwrap();
            assert_eq!(flat_logits(&exported, &input), merged);
            // The merged base trains again.
            let logits = model.forward(&input, None).unwrap();
            let mask = Tensor::ones((2, 7), DType::F32, &Device::Cpu).unwrap();
            let (loss, _) = masked_cross_entropy(&logits, &input, &mask).unwrap();
            let grads = model.gradients(&loss.backward().unwrap());
            assert_eq!(grads.len(), model.parameters().len());
            let again = model.merge_lora().unwrap_err().to_string();
            assert!(again.contains("no LoRA adapters"), "{again}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn removing_the_adapters_restores_the_base() {
        let mut model = Llama::new(tiny(ModelType::Llama, true), &Device::Cpu, 2).unwrap();
        let input = ids(1, 5);
        let base = flat_logits(&model, &input);
        assert!(model.remove_lora().is_none());
        model.attach_lora(&LoraConfig::default(), 1).unwrap();
        perturb(&model, 8, 0.05);
        assert_ne!(flat_logits(&model, &input), base);
        assert_eq!(model.remove_lora(), Some(LoraConfig::default()));
        assert_eq!(flat_logits(&model, &input), base);
    }

    #[test]
    fn saved_adapters_follow_peft_and_load_back() {
        let dir = temp_dir("save");
        let config = LoraConfig {
            rank: 2,
            alpha: 5.0,
            targets: vec!["k".into(), "up".into()],
        };
        let mut model = Llama::new(tiny(ModelType::Qwen2, true), &Device::Cpu, 3).unwrap();
        assert!(
            model
                .save_adapter(&dir)
                .unwrap_err()
                .to_string()
                .contains("no LoRA adapters")
        );
        model.attach_lora(&config, 1).unwrap();
        perturb(&model, 2, 0.05);
        model
            .save_adapter_with_base(&dir, "Qwen/Qwen2.5-0.5B")
            .unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(ADAPTER_CONFIG)).unwrap()).unwrap();
        assert_eq!(json["peft_type"], "LORA");
        assert_eq!(json["task_type"], "CAUSAL_LM");
        assert_eq!(json["r"], 2);
        assert_eq!(json["lora_alpha"], 5);
        assert_eq!(
            json["target_modules"],
            serde_json::json!(["k_proj", "up_proj"])
        );
        assert_eq!(json["bias"], "none");
        assert_eq!(json["base_model_name_or_path"], "Qwen/Qwen2.5-0.5B");
        let tensors =
            candle_core::safetensors::load(dir.join(ADAPTER_WEIGHTS), &Device::Cpu).unwrap();
        assert_eq!(tensors.len(), 2 * 2 * 2);
        assert_eq!(
            tensors["base_model.model.model.layers.1.mlp.up_proj.lora_B.weight"].dims(),
            [48, 2]
        );
        assert!(
            std::fs::read_dir(&dir).unwrap().count() == 2,
            "no temporary files"
        );

        let input = ids(2, 6);
        let expected = flat_logits(&model, &input);
        let mut fresh = Llama::new(tiny(ModelType::Qwen2, true), &Device::Cpu, 3).unwrap();
        fresh.load_adapter(&dir).unwrap();
        assert_eq!(fresh.lora_config().unwrap(), config);
        assert_eq!(flat_logits(&fresh, &input), expected);

        // Into matching attached adapters: copied into the same variables.
        let mut resumed = Llama::new(tiny(ModelType::Qwen2, true), &Device::Cpu, 3).unwrap();
        resumed.attach_lora(&config, 7).unwrap();
        let before = resumed.parameters();
        resumed.load_adapter(&dir).unwrap();
        assert_eq!(flat_logits(&resumed, &input), expected);
        for ((_, old), (_, new)) in before.iter().zip(resumed.parameters()) {
            assert_eq!(old.as_tensor().id(), new.as_tensor().id());
        }
        // Into other adapters: refused.
        let mut other = Llama::new(tiny(ModelType::Qwen2, true), &Device::Cpu, 3).unwrap();
        other.attach_lora(&LoraConfig::with_rank(2), 7).unwrap();
        let message = other.load_adapter(&dir).unwrap_err().to_string();
        assert!(message.contains("does not match"), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn broken_or_unsupported_adapters_are_refused_by_name() {
        let dir = temp_dir("broken");
        let mut model = Llama::new(tiny(ModelType::Llama, true), &Device::Cpu, 3).unwrap();
        model
            .attach_lora(
                &LoraConfig {
                    targets: vec!["q".into(), "o".into()],
                    ..LoraConfig::with_rank(2)
                },
                1,
            )
            .unwrap();
        model.save_adapter(&dir).unwrap();
        let weights = dir.join(ADAPTER_WEIGHTS);
        let mut tensors = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
        tensors.remove("base_model.model.model.layers.1.self_attn.o_proj.lora_A.weight");
        tensors.insert(
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight".into(),
            Tensor::zeros((32, 3), DType::F32, &Device::Cpu).unwrap(),
        );
        tensors.insert(
            "base_model.model.lm_head.weight".into(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
        candle_core::safetensors::save(&tensors, &weights).unwrap();
        let load = |dir: &Path| {
            let mut fresh = Llama::new(tiny(ModelType::Llama, true), &Device::Cpu, 3).unwrap();
            let result = fresh.load_adapter(dir).map_err(|e| e.to_string());
            (result, fresh.has_adapters())
        };
        let (result, attached) = load(&dir);
        let message = result.unwrap_err();
        assert!(!attached, "nothing is attached from a broken adapter");
        for part in [
            "missing base_model.model.model.layers.1.self_attn.o_proj.lora_A.weight",
            "unexpected base_model.model.lm_head.weight",
            "misshaped base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight \
             (expected [32, 2], found [32, 3])",
        ] {
            assert!(message.contains(part), "{message}");
        }

        let config_path = dir.join(ADAPTER_CONFIG);
        let original: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
        for (field, value, expected) in [
            ("use_dora", serde_json::json!(true), "use_dora"),
            ("bias", serde_json::json!("all"), "bias"),
            (
                "target_modules",
                serde_json::json!(".*proj"),
                "regular expression",
            ),
            (
                "target_modules",
                serde_json::json!(["q_proj", "lm_head"]),
                "lm_head",
            ),
            (
                "layers_to_transform",
                serde_json::json!([0]),
                "layers_to_transform",
            ),
            ("r", serde_json::json!(0), "rank must be positive"),
            ("peft_type", serde_json::json!("IA3"), "IA3"),
        ] {
            let mut json = original.clone();
            json[field] = value;
            std::fs::write(&config_path, serde_json::to_vec(&json).unwrap()).unwrap();
            let message = load(&dir).0.unwrap_err();
            assert!(
                message.contains(expected) && message.contains(ADAPTER_CONFIG),
                "{field}: {message}"
            );
        }
        // `all-linear` is every projection: these weights only have two.
        let mut json = original.clone();
        json["target_modules"] = serde_json::json!("all-linear");
        std::fs::write(&config_path, serde_json::to_vec(&json).unwrap()).unwrap();
        let message = load(&dir).0.unwrap_err();
        assert!(
            message.contains("missing base_model.model.model.layers.0.self_attn.k_proj.lora_A"),
            "{message}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn adapters_stay_f32_on_a_bf16_base() {
        let config = tiny(ModelType::Qwen2, false);
        let model = Llama::new(config.clone(), &Device::Cpu, 2).unwrap();
        let weights: HashMap<String, Tensor> = model
            .parameters()
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().clone()))
            .collect();
        let mut half = Llama::from_weights_as(config, weights, &Device::Cpu, DType::BF16).unwrap();
        let input = ids(1, 6);
        let base = flat_logits(&half, &input);
        half.attach_lora(&LoraConfig::with_rank(4), 3).unwrap();
        assert!(
            half.parameters()
                .iter()
                .all(|(_, v)| v.dtype() == DType::F32)
        );
        assert_eq!(flat_logits(&half, &input), base);
        perturb(&half, 5, 0.05);
        let adapted = flat_logits(&half, &input);
        half.merge_lora().unwrap();
        assert_eq!(half.dtype(), DType::BF16);
        // The merged weights are rounded to bf16.
        assert!(max_relative_difference(&adapted, &flat_logits(&half, &input)) < 0.05);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn attaching_changes_nothing_and_merging_keeps_the_adapted_logits(
            rank in 1usize..6,
            alpha in 0.5f64..40.0,
            targets in proptest::sample::subsequence(SHORT_NAMES.to_vec(), 1..=7),
            qwen in any::<bool>(),
            model_seed in any::<u64>(),
            lora_seed in any::<u64>(),
            perturbation in any::<u64>(),
        ) {
            let model_type = if qwen { ModelType::Qwen2 } else { ModelType::Llama };
            let mut model = Llama::new(tiny(model_type, !qwen), &Device::Cpu, model_seed).unwrap();
            let input = ids(2, 5);
            let base = flat_logits(&model, &input);
            let config = LoraConfig {
                rank,
                alpha,
                targets: targets.iter().map(|&s| s.to_owned()).collect(),
            };
            model.attach_lora(&config, lora_seed).unwrap();
            prop_assert_eq!(flat_logits(&model, &input), base.clone());
            perturb(&model, perturbation, 0.05);
            let adapted = flat_logits(&model, &input);
            prop_assert_ne!(&adapted, &base);
            model.merge_lora().unwrap();
            let merged = flat_logits(&model, &input);
            let difference = max_relative_difference(&adapted, &merged);
            prop_assert!(difference < 1e-4, "relative difference {}", difference);
        }
    }
}
