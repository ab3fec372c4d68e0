//! A Llama-family decoder written with candle operations that all have a backward pass.
//!
//! candle's fused `rms_norm`, `softmax_last_dim` and `rope` kernels have no backward and
//! silently cut gradients (candle issue 2168). On the CPU, RMSNorm, rotary embeddings, SwiGLU
//! and attention are this crate's own fused kernels with hand-written backward passes
//! (`fused.rs`, `attention.rs`); on other devices they are composed from elementary
//! operations. `every_parameter_receives_a_gradient` guards both.
//!
//! Weights use Hugging Face tensor names (`model.layers.0.self_attn.q_proj.weight`, ...) and
//! are stored as safetensors next to a `config.json` that Hugging Face `transformers` reads
//! (Llama or Qwen2 architecture), so a saved model is a Hugging Face checkpoint.
//!
//! Weights may be f32 or, for inference and for the frozen base under LoRA adapters, bf16
//! (meant for CUDA): activations then run in bf16 while normalisation statistics, softmax and
//! the logits are computed in f32.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{D, DType, Device, Module, Tensor, Var};
use candle_nn::{Embedding, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// Architecture hyper-parameters (a subset of Hugging Face's `LlamaConfig`, same field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Longest sequence the rotary tables cover.
    pub max_position_embeddings: usize,
    /// Rotary base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Share the input embedding with the output projection.
    pub tie_word_embeddings: bool,
    /// The Hugging Face architecture the weights follow.
    #[serde(default)]
    pub model_type: ModelType,
    /// Llama's `attention_bias`: biases on the query, key, value and output projections.
    #[serde(default)]
    pub attention_bias: bool,
    /// Llama 3.1's frequency-dependent stretch of the rotary wavelengths; `None` for plain RoPE.
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
}

/// Hugging Face's `model_type`: which projections carry biases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    /// Llama 2/3, SmolLM and this crate's presets: biases only with `attention_bias`.
    #[default]
    Llama,
    /// Qwen2 and Qwen2.5: biases on the query, key and value projections.
    Qwen2,
}

/// Llama 3.1's rotary scaling (`rope_type: "llama3"`, the only kind supported): wavelengths
/// longer than `original_max_position_embeddings / low_freq_factor` are stretched by `factor`,
/// those shorter than `original_max_position_embeddings / high_freq_factor` are kept, and
/// those between are interpolated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    /// Must be `llama3` (older configs call the field `type`).
    #[serde(alias = "type")]
    pub rope_type: String,
    /// How much long wavelengths are stretched.
    pub factor: f64,
    /// Wavelengths above `original / low_freq_factor` are fully stretched.
    pub low_freq_factor: f64,
    /// Wavelengths below `original / high_freq_factor` are kept.
    pub high_freq_factor: f64,
    /// The context length the model was pre-trained with.
    pub original_max_position_embeddings: usize,
}

impl RopeScaling {
    /// `inv_freq` after scaling.
    fn apply(&self, inv_freq: f64) -> f64 {
        let original = self.original_max_position_embeddings as f64;
        let wavelength = std::f64::consts::TAU / inv_freq;
        if wavelength < original / self.high_freq_factor {
            inv_freq
        } else if wavelength > original / self.low_freq_factor {
            inv_freq / self.factor
        } else {
            let smooth = (original / wavelength - self.low_freq_factor)
                / (self.high_freq_factor - self.low_freq_factor);
            (1.0 - smooth) * inv_freq / self.factor + smooth * inv_freq
        }
    }
}

/// The projections of a layer, by their Hugging Face names (`self_attn.q_proj`, ...), in a
/// fixed order.
pub const PROJECTIONS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

impl ModelConfig {
    /// A named preset for `vocab_size` tokens: `tiny-s` (about 5M parameters with a 2k
    /// vocabulary), `tiny-m` (about 20M), `tiny-2l` (tiny-s's width with two layers, about 2M:
    /// trained from scratch on CPU it learns to copy names from its prompt in fewer minutes
    /// than tiny-s), or `tiny-xs` (about 0.3M, for smoke tests).
    pub fn preset(name: &str, vocab_size: usize) -> Option<Self> {
        let (hidden_size, intermediate_size, num_hidden_layers) = match name {
            "tiny-s" => (256, 704, 6),
            "tiny-2l" => (256, 704, 2),
            "tiny-m" => (512, 1408, 6),
            "tiny-xs" => (64, 176, 2),
            _ => return None,
        };
        Some(ModelConfig {
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads: 8,
            num_key_value_heads: 4,
            max_position_embeddings: 4096,
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-5,
            tie_word_embeddings: true,
            model_type: ModelType::Llama,
            attention_bias: false,
            rope_scaling: None,
        })
    }

    /// `[out_features, in_features]` of the projection `name` (one of [`PROJECTIONS`]).
    pub fn projection_shape(&self, name: &str) -> Option<[usize; 2]> {
        let hidden = self.hidden_size;
        let kv_width = self.num_key_value_heads * self.head_dim();
        let inner = self.intermediate_size;
        Some(match name {
            "self_attn.q_proj" | "self_attn.o_proj" => [hidden, hidden],
            "self_attn.k_proj" | "self_attn.v_proj" => [kv_width, hidden],
            "mlp.gate_proj" | "mlp.up_proj" => [inner, hidden],
            "mlp.down_proj" => [hidden, inner],
            _ => return None,
        })
    }

    /// Whether the projection `name` has a bias.
    pub fn has_bias(&self, name: &str) -> bool {
        match self.model_type {
            ModelType::Llama => self.attention_bias && name.starts_with("self_attn."),
            ModelType::Qwen2 => matches!(
                name,
                "self_attn.q_proj" | "self_attn.k_proj" | "self_attn.v_proj"
            ),
        }
    }

    /// The `config.json` Hugging Face `transformers` reads: these fields plus the architecture
    /// name, the activation and the weights' dtype.
    pub fn to_hf_json(&self, dtype: DType) -> serde_json::Value {
        let mut json = serde_json::to_value(self).unwrap_or_default();
        let architecture = match self.model_type {
            ModelType::Llama => "LlamaForCausalLM",
            ModelType::Qwen2 => "Qwen2ForCausalLM",
        };
        let torch_dtype = match dtype {
            DType::BF16 => "bfloat16",
            DType::F16 => "float16",
            _ => "float32",
        };
        if let Some(fields) = json.as_object_mut() {
            fields.insert("architectures".into(), serde_json::json!([architecture]));
            fields.insert("hidden_act".into(), "silu".into());
            fields.insert("torch_dtype".into(), torch_dtype.into());
            if self.model_type == ModelType::Qwen2 {
                fields.insert("use_sliding_window".into(), false.into());
            }
        }
        json
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Checks the shapes fit together.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |message: String| Err(TrainError::Config(message));
        if self.num_attention_heads == 0
            || self.num_key_value_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return bad(format!(
                "hidden_size {} must split into num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return bad(format!(
                "num_attention_heads {} must be a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad("the head width must be even for rotary embeddings".into());
        }
        if self.vocab_size == 0 || self.num_hidden_layers == 0 {
            return bad("vocab_size and num_hidden_layers must be positive".into());
        }
        if let Some(scaling) = &self.rope_scaling {
            if scaling.rope_type != "llama3" {
                return bad(format!(
                    "rope_scaling of type {:?} is not supported (only \"llama3\")",
                    scaling.rope_type
                ));
            }
            if !(scaling.factor > 0.0 && scaling.high_freq_factor > scaling.low_freq_factor) {
                return bad(format!(
                    "rope_scaling needs factor > 0 and high_freq_factor > low_freq_factor: {scaling:?}"
                ));
            }
        }
        Ok(())
    }
}

/// What keeps `found` from being exactly the tensors `expected` (name and shape each):
/// "missing a, b and 3 more; unexpected c; misshaped d (expected [2], found [3])", at most six
/// names per kind, or `None` when they fit.
pub(crate) fn tensor_mismatches(
    expected: &[(String, Vec<usize>)],
    found: &HashMap<String, Tensor>,
) -> Option<String> {
    let missing = expected
        .iter()
        .filter(|(name, _)| !found.contains_key(name))
        .map(|(name, _)| name.clone())
        .collect();
    let known: std::collections::HashSet<&str> =
        expected.iter().map(|(name, _)| name.as_str()).collect();
    let mut unexpected: Vec<String> = found
        .keys()
        .filter(|name| !known.contains(name.as_str()))
        .cloned()
        .collect();
    unexpected.sort();
    let misshaped = expected
        .iter()
        .filter_map(|(name, shape)| {
            let dims = found.get(name)?.dims();
            (dims != shape.as_slice())
                .then(|| format!("{name} (expected {shape:?}, found {dims:?})"))
        })
        .collect();
    let parts: Vec<String> = [
        ("missing", missing),
        ("unexpected", unexpected),
        ("misshaped", misshaped),
    ]
    .into_iter()
    .filter(|(_, names): &(&str, Vec<String>)| !names.is_empty())
    .map(|(kind, names)| {
        let shown = names.iter().take(6).cloned().collect::<Vec<_>>().join(", ");
        match names.len().saturating_sub(6) {
            0 => format!("{kind} {shown}"),
            more => format!("{kind} {shown} and {more} more"),
        }
    })
    .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// A standard normal draw (Box-Muller: two uniforms give one).
pub(crate) fn standard_normal(rng: &mut agentr_envs::rng::Rng) -> f64 {
    let u1 = rng.unit_f64().max(f64::MIN_POSITIVE);
    let u2 = rng.unit_f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Softmax over the last dimension, from differentiable operations (the maximum is detached:
/// subtracting it changes nothing but the numerics).
pub(crate) fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let exp = x.broadcast_sub(&max)?.exp()?;
    let sum = exp.sum_keepdim(D::Minus1)?;
    exp.broadcast_div(&sum)
}

/// Rotary tables: cos and sin of shape `[max_positions, head_dim / 2]`.
struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    fn new(config: &ModelConfig, device: &Device) -> candle_core::Result<Self> {
        let half = config.head_dim() / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                let inv_freq = 1.0
                    / config
                        .rope_theta
                        .powf(2.0 * i as f64 / config.head_dim() as f64);
                match &config.rope_scaling {
                    Some(scaling) => scaling.apply(inv_freq) as f32,
                    None => inv_freq as f32,
                }
            })
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let positions = Tensor::arange(0u32, config.max_position_embeddings as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((config.max_position_embeddings, 1))?;
        let angles = positions.broadcast_mul(&inv_freq)?;
        Ok(Rotary {
            cos: angles.cos()?,
            sin: angles.sin()?,
        })
    }

    /// Rotates `x` of shape `[batch, heads, seq, head_dim]` for positions `start..start+seq`
    /// (the half-split layout of Hugging Face Llama checkpoints).
    fn apply(&self, x: &Tensor, start: usize) -> candle_core::Result<Tensor> {
        let seq = x.dim(2)?;
        // The tables stay f32 (angles of late positions need its precision) and are cast per call.
        let cos = self.cos.narrow(0, start, seq)?.to_dtype(x.dtype())?;
        let sin = self.sin.narrow(0, start, seq)?.to_dtype(x.dtype())?;
        crate::fused::rotary(x, &cos, &sin)
    }
}

/// How a forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Recording the graph a backward pass needs.
    Train,
    /// Generating: nothing records a graph, products of a few rows (a decoding step) go
    /// through [`crate::matvec`], and 8-bit weights are used where the model has them.
    Generate,
}

impl Pass {
    /// `t` as this pass reads it: detached when generating, so no operation records a graph.
    fn read(self, t: &Tensor) -> Tensor {
        match self {
            Pass::Train => t.clone(),
            Pass::Generate => t.detach(),
        }
    }
}

/// A linear map `x Wᵀ + b`, plus `scale · x Aᵀ Bᵀ` when a LoRA adapter is attached.
pub(crate) struct Projection {
    pub(crate) weight: Tensor,
    pub(crate) bias: Option<Tensor>,
    pub(crate) adapter: Option<Adapter>,
    /// The weight in 8 bits, for generation only ([`Llama::quantize_for_generation`]).
    pub(crate) int8: Option<crate::matvec::Int8Matrix>,
}

/// A low-rank update: `a` is `[rank, in]`, `b` is `[out, rank]` (f32 trainable variables,
/// cast to the activations' dtype in the forward pass).
pub(crate) struct Adapter {
    pub(crate) a: Var,
    pub(crate) b: Var,
    pub(crate) scale: f64,
}

impl Projection {
    fn forward(&self, x: &Tensor, pass: Pass) -> candle_core::Result<Tensor> {
        let adapter = |adapter: &Adapter| -> candle_core::Result<(Tensor, Tensor)> {
            Ok((
                pass.read(adapter.a.as_tensor()).to_dtype(x.dtype())?,
                pass.read(adapter.b.as_tensor()).to_dtype(x.dtype())?,
            ))
        };
        let mut y = match (pass, &self.adapter) {
            (Pass::Train, None) => crate::frozen::linear(x, &self.weight)?,
            (Pass::Train, Some(low_rank)) => {
                let (a, b) = adapter(low_rank)?;
                crate::frozen::lora_linear(x, &self.weight, &a, &b, low_rank.scale)?
            }
            (Pass::Generate, None) => crate::matvec::linear(x, &self.weight, self.int8.as_ref())?,
            (Pass::Generate, Some(low_rank)) => {
                let (a, b) = adapter(low_rank)?;
                let base = crate::matvec::linear(x, &self.weight, self.int8.as_ref())?;
                (base + crate::frozen::low_rank(x, &a, &b, low_rank.scale)?)?
            }
        };
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(&pass.read(bias))?;
        }
        Ok(y)
    }
}

pub(crate) struct Layer {
    input_layernorm: Tensor,
    post_attention_layernorm: Tensor,
    /// The seven projections in [`PROJECTIONS`] order.
    pub(crate) projections: Vec<Projection>,
}

// Indices into `Layer::projections`, matching `PROJECTIONS`.
const Q: usize = 0;
const K: usize = 1;
const V: usize = 2;
const O: usize = 3;
const GATE: usize = 4;
const UP: usize = 5;
const DOWN: usize = 6;

/// Cached keys and values of every layer, for incremental decoding.
///
/// Each layer keeps its keys and values in buffers with room to grow (`[batch, kv_heads,
/// capacity, head_dim]`), and a step writes its new positions in place: joining the past and
/// the new positions anew each step copied the whole cache per token, which at the contexts
/// of an evaluation (a thousand tokens) streamed more bytes than the weights. A buffer shared
/// with another cache (a clone, a [truncated](KvCache::truncate) prefix) is copied before
/// its first write, so no cache sees another's positions.
///
/// The samples of one prompt ([`KvCache::repeat_batch`]) share the prompt's positions: each
/// layer keeps them once, as a prefix beside the samples' own positions, and a decoding step
/// reads them once for all samples (copied per sample, four samples of a 300-token prompt
/// streamed 55 MB of keys and values per token, and each query head took its own small
/// products).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
}

/// One layer's buffers; positions `0..len` are valid (after the shared prefix, when there is
/// one).
#[derive(Debug, Clone)]
struct LayerCache {
    keys: Tensor,
    values: Tensor,
    len: usize,
    /// Held by every cache sharing these buffers: writing in place needs it alone.
    owner: std::sync::Arc<()>,
    /// Positions before these that every batch row shares (a batch-1 cache, never written
    /// through this one).
    prefix: Option<Box<LayerCache>>,
}

impl LayerCache {
    /// A cache owning `keys` and `values` (`[batch, kv_heads, len, head_dim]`, no graph).
    fn new(keys: Tensor, values: Tensor) -> candle_core::Result<Self> {
        let len = keys.dim(2)?;
        Ok(LayerCache {
            keys: keys.detach().contiguous()?,
            values: values.detach().contiguous()?,
            len,
            owner: std::sync::Arc::new(()),
            prefix: None,
        })
    }

    /// Positions cached, the shared prefix's included.
    fn positions(&self) -> usize {
        self.prefix.as_ref().map_or(0, |prefix| prefix.len) + self.len
    }

    /// This cache's own valid positions: views into the buffers.
    fn own_views(&self) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((
            self.keys.narrow(2, 0, self.len)?,
            self.values.narrow(2, 0, self.len)?,
        ))
    }

    /// Every valid position of every batch row: views into the buffers without a shared
    /// prefix, otherwise the prefix repeated for each row before the row's own positions.
    fn views(&self) -> candle_core::Result<(Tensor, Tensor)> {
        let (keys, values) = self.own_views()?;
        let Some(prefix) = &self.prefix else {
            return Ok((keys, values));
        };
        let (prefix_keys, prefix_values) = prefix.own_views()?;
        let batch = keys.dim(0)?;
        let join = |prefix: Tensor, own: Tensor| -> candle_core::Result<Tensor> {
            let prefix = prefix.repeat((batch, 1, 1, 1))?;
            match own.dim(2)? {
                0 => Ok(prefix),
                _ => Tensor::cat(&[&prefix, &own], 2),
            }
        };
        Ok((join(prefix_keys, keys)?, join(prefix_values, values)?))
    }

    /// Writes `keys` and `values` (`[batch, kv_heads, seq, head_dim]`) after the valid
    /// positions, into fresh buffers when these are shared or full.
    fn append(&mut self, keys: &Tensor, values: &Tensor) -> candle_core::Result<()> {
        let needed = self.len + keys.dim(2)?;
        let capacity = self.keys.dim(2)?;
        let alone = std::sync::Arc::strong_count(&self.owner) == 1;
        if needed > capacity || !alone {
            // Half as much room again, so growing costs a constant per position.
            let capacity = if needed > capacity {
                needed + needed / 2
            } else {
                capacity
            };
            let grow = |buffer: &Tensor| -> candle_core::Result<Tensor> {
                let (batch, heads, _, dim) = buffer.dims4()?;
                let room = Tensor::zeros(
                    (batch, heads, capacity - self.len, dim),
                    buffer.dtype(),
                    buffer.device(),
                )?;
                match self.len {
                    0 => Ok(room),
                    len => Tensor::cat(&[&buffer.narrow(2, 0, len)?, &room], 2),
                }
            };
            self.keys = grow(&self.keys)?;
            self.values = grow(&self.values)?;
            self.owner = std::sync::Arc::new(());
        }
        self.keys
            .slice_set(&keys.detach().contiguous()?, 2, self.len)?;
        self.values
            .slice_set(&values.detach().contiguous()?, 2, self.len)?;
        self.len = needed;
        Ok(())
    }
}

impl KvCache {
    /// Number of positions cached.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, LayerCache::positions)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same cache repeated `n` times along the batch (a shared prefill for `n` samples).
    /// A batch-1 cache of f32 on the CPU (where the decoding steps' attention reads
    /// a shared prefix) becomes the shared prefix of `n` rows, kept once: the rows' new
    /// positions go to buffers of their own.
    pub fn repeat_batch(&self, n: usize) -> Result<Self, TrainError> {
        let shareable = self.layers.iter().flatten().all(|layer| {
            layer.prefix.is_none()
                && layer.keys.dim(0).is_ok_and(|b| b == 1)
                && crate::attention::decoding_applies(&layer.keys)
        });
        if n == 1 || !shareable {
            return self.map_tensors(|t| t.repeat((n, 1, 1, 1)));
        }
        self.map_layers(|layer| {
            let empty = |t: &Tensor| -> candle_core::Result<Tensor> {
                let (_, heads, _, dim) = t.dims4()?;
                Tensor::zeros((n, heads, 0, dim), t.dtype(), t.device())
            };
            Ok(LayerCache {
                keys: empty(&layer.keys)?,
                values: empty(&layer.values)?,
                len: 0,
                owner: std::sync::Arc::new(()),
                prefix: Some(Box::new(layer.clone())),
            })
        })
    }

    /// The first `len` positions (all of them when fewer are cached), sharing this cache's
    /// buffers until either writes.
    pub fn truncate(&self, len: usize) -> Result<Self, TrainError> {
        fn cut(layer: &LayerCache, len: usize) -> LayerCache {
            let prefix = layer.prefix.as_ref().map(|prefix| cut(prefix, len));
            let before = prefix.as_ref().map_or(0, |prefix| prefix.len);
            LayerCache {
                len: len.saturating_sub(before).min(layer.len),
                prefix: prefix.map(Box::new),
                ..layer.clone()
            }
        }
        let layers = self
            .layers
            .iter()
            .map(|layer| layer.as_ref().map(|layer| cut(layer, len)))
            .collect();
        Ok(KvCache { layers })
    }

    /// Keeps only the batch rows `rows` (in that order), for samples still generating.
    pub fn select_batch(&self, rows: &[u32]) -> Result<Self, TrainError> {
        let Some(device) = self
            .layers
            .iter()
            .flatten()
            .next()
            .map(|layer| layer.keys.device().clone())
        else {
            return Ok(self.clone());
        };
        let index = Tensor::new(rows, &device)?;
        self.map_tensors(|t| t.index_select(&index, 0))
    }

    /// A cache of fresh buffers: `f` applied along the batch to every layer's own buffers
    /// (their room to grow included, so the next step writes in place); a shared prefix stays
    /// shared.
    fn map_tensors(
        &self,
        f: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    ) -> Result<Self, TrainError> {
        self.map_layers(|layer| {
            Ok(LayerCache {
                keys: f(&layer.keys)?,
                values: f(&layer.values)?,
                len: layer.len,
                owner: std::sync::Arc::new(()),
                prefix: layer.prefix.clone(),
            })
        })
    }

    /// A cache of `f` applied to every layer's cache.
    fn map_layers(
        &self,
        f: impl Fn(&LayerCache) -> candle_core::Result<LayerCache>,
    ) -> Result<Self, TrainError> {
        let layers = self
            .layers
            .iter()
            .map(|layer| layer.as_ref().map(&f).transpose())
            .collect::<candle_core::Result<_>>()?;
        Ok(KvCache { layers })
    }
}

/// Adds each of `more` to the gradient of the same name in `sums` (or inserts it): the parts of
/// one gradient from several backward passes (micro-batches, recomputed layers).
pub(crate) fn add_gradients(
    sums: &mut HashMap<String, Tensor>,
    more: impl IntoIterator<Item = (String, Tensor)>,
) -> candle_core::Result<()> {
    for (name, grad) in more {
        let summed = match sums.remove(&name) {
            Some(previous) => (previous + grad)?,
            None => grad,
        };
        sums.insert(name, summed);
    }
    Ok(())
}

/// The decoder with its parameters.
pub struct Llama {
    config: ModelConfig,
    embed_tokens: Embedding,
    pub(crate) layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Tensor,
    /// The head in 8 bits, for generation only ([`Llama::quantize_for_generation`]).
    lm_head_int8: Option<crate::matvec::Int8Matrix>,
    rotary: Rotary,
    varmap: VarMap,
    device: Device,
    dtype: DType,
}

impl Llama {
    /// A freshly initialised model: projection and embedding weights drawn from N(0, 0.02²)
    /// (Hugging Face Llama's `initializer_range`), norms at 1, biases at 0. The draw is a pure function of
    /// `seed` and each tensor's name (candle's CPU generator cannot be seeded).
    pub fn new(config: ModelConfig, device: &Device, seed: u64) -> Result<Self, TrainError> {
        config.validate()?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let model = Self::build(config, vb, varmap, device)?;
        for (name, var) in model.parameters() {
            if name.ends_with("norm.weight") {
                continue;
            }
            if name.ends_with(".bias") {
                var.set(&var.zeros_like()?)?;
                continue;
            }
            let mut parts = vec![seed];
            parts.extend(name.bytes().map(u64::from));
            let mut rng = agentr_envs::rng::Rng::from_parts(&parts);
            let values: Vec<f32> = (0..var.elem_count())
                .map(|_| (0.02 * standard_normal(&mut rng)) as f32)
                .collect();
            var.set(&Tensor::from_vec(values, var.shape(), device)?)?;
        }
        Ok(model)
    }

    /// The name and shape of every parameter a model of `config` has (Hugging Face Llama
    /// names, row-major shapes: a projection is `[out_features, in_features]`), sorted by name:
    /// what [`Llama::from_weights`] expects and [`Llama::parameters`] returns.
    pub fn parameter_shapes(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
        let hidden = config.hidden_size;
        let mut shapes = vec![
            (
                "model.embed_tokens.weight".to_owned(),
                vec![config.vocab_size, hidden],
            ),
            ("model.norm.weight".to_owned(), vec![hidden]),
        ];
        if !config.tie_word_embeddings {
            shapes.push(("lm_head.weight".to_owned(), vec![config.vocab_size, hidden]));
        }
        for index in 0..config.num_hidden_layers {
            let layer = format!("model.layers.{index}");
            for norm in ["input_layernorm", "post_attention_layernorm"] {
                shapes.push((format!("{layer}.{norm}.weight"), vec![hidden]));
            }
            for name in PROJECTIONS {
                let [out, inp] = config
                    .projection_shape(name)
                    .unwrap_or_else(|| unreachable!("{name} is listed in PROJECTIONS"));
                shapes.push((format!("{layer}.{name}.weight"), vec![out, inp]));
                if config.has_bias(name) {
                    shapes.push((format!("{layer}.{name}.bias"), vec![out]));
                }
            }
        }
        shapes.sort_by(|a, b| a.0.cmp(&b.0));
        shapes
    }

    /// A model of `config` with the given weights, by Hugging Face name (see
    /// [`Llama::parameter_shapes`]; `lm_head.weight` only when the embeddings are untied).
    /// Every expected tensor must be present with its exact shape and nothing else may be:
    /// the error lists the missing, unexpected and misshaped names. Tensors of other dtypes
    /// are converted to f32; all are copied onto `device` as fresh trainable parameters.
    pub fn from_weights(
        config: ModelConfig,
        weights: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self, TrainError> {
        Self::from_weights_as(config, weights, device, DType::F32)
    }

    /// [`Llama::from_weights`] with the weights converted to `dtype` (f32, or bf16 for
    /// inference and LoRA on CUDA) before they are copied onto `device`.
    pub fn from_weights_as(
        config: ModelConfig,
        mut weights: HashMap<String, Tensor>,
        device: &Device,
        dtype: DType,
    ) -> Result<Self, TrainError> {
        if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(TrainError::Config(format!(
                "weights must be f32, bf16 or f16, not {dtype:?}"
            )));
        }
        config.validate()?;
        let expected = Self::parameter_shapes(&config);
        if let Some(problems) = tensor_mismatches(&expected, &weights) {
            return Err(TrainError::Config(format!(
                "the weights do not fit the model: {problems}"
            )));
        }
        let varmap = VarMap::new();
        {
            let mut data = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
            for (name, _) in &expected {
                let Some(tensor) = weights.remove(name) else {
                    continue;
                };
                // Detached first, so that a parameter of another model is copied, not shared.
                let tensor = tensor.detach().to_dtype(dtype)?.to_device(device)?;
                data.insert(name.clone(), Var::from_tensor(&tensor)?);
            }
        }
        let vb = VarBuilder::from_varmap(&varmap, dtype, device);
        Self::build(config, vb, varmap, device)
    }

    /// [`Llama::load_as`] with f32 weights.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, TrainError> {
        Self::load_as(dir, device, DType::F32)
    }

    /// Loads the Hugging Face checkpoint in `dir` (Llama, SmolLM or Qwen2 layout, or one
    /// written by [`Llama::save`]): `config.json` through [`crate::hf::read_config`], the
    /// weights (`model.safetensors` or shards with an index) through
    /// [`crate::hf::read_weights`], converted to `dtype` (f32, bf16 or f16) on `device`.
    pub fn load_as(dir: &Path, device: &Device, dtype: DType) -> Result<Self, TrainError> {
        let config = crate::hf::read_config(&dir.join(crate::hf::CONFIG_FILE))?;
        let weights = crate::hf::read_weights(dir, &config)?;
        // The mismatch is the checkpoint's, so the error names its folder.
        Self::from_weights_as(config, weights, device, dtype).map_err(|e| match e {
            TrainError::Config(message) => TrainError::BadFile {
                path: dir.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Replaces the weights with those of a safetensors file written by [`Llama::save`].
    pub fn load_weights(&mut self, path: &Path) -> Result<(), TrainError> {
        self.drop_quantized();
        self.varmap.load(path).map_err(|e| TrainError::BadFile {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (created if missing): a Hugging
    /// Face checkpoint. The tokenizer's files, chat template and generation config come from
    /// [`ChatTokenizer::save_pretrained`](crate::ChatTokenizer::save_pretrained);
    /// [`ModelAgent::save`](crate::ModelAgent::save) writes both. With LoRA adapters attached
    /// this is refused (their base weights alone would pass for the trained model): merge them
    /// first or save the adapters.
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        if self.has_adapters() {
            return Err(TrainError::Config(
                "the model has LoRA adapters: merge them (Llama::merge_lora) or save them \
                 (Llama::save_adapter)"
                    .into(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let config_path = dir.join("config.json");
        let config = serde_json::to_vec_pretty(&self.config.to_hf_json(self.dtype))
            .map_err(std::io::Error::other);
        config
            .and_then(|bytes| agentr_envs::atomic::write(&config_path, &bytes))
            .map_err(|source| TrainError::Io {
                path: config_path,
                source,
            })?;
        let weights = dir.join("model.safetensors");
        agentr_envs::atomic::write_with(&weights, |tmp| {
            self.varmap.save(tmp).map_err(std::io::Error::other)
        })
        .map_err(|source| TrainError::Io {
            path: weights.clone(),
            source,
        })
    }

    fn build(
        config: ModelConfig,
        vb: VarBuilder,
        varmap: VarMap,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let hidden = config.hidden_size;
        let dtype = vb.dtype();
        let model_vb = vb.pp("model");
        let embed_tokens =
            candle_nn::embedding(config.vocab_size, hidden, model_vb.pp("embed_tokens"))?;
        let ones = candle_nn::Init::Const(1.0);
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for index in 0..config.num_hidden_layers {
            let lvb = model_vb.pp(format!("layers.{index}"));
            let mut projections = Vec::with_capacity(PROJECTIONS.len());
            for name in PROJECTIONS {
                let [out, inp] = config
                    .projection_shape(name)
                    .unwrap_or_else(|| unreachable!("{name} is listed in PROJECTIONS"));
                let pvb = lvb.pp(name);
                // candle_nn's own initialisation (Kaiming-uniform weights, uniform biases);
                // `Llama::new` overwrites the weights with its seeded draw.
                let bound = 1.0 / (inp as f64).sqrt();
                let bias = config
                    .has_bias(name)
                    .then(|| {
                        pvb.get_with_hints(
                            out,
                            "bias",
                            candle_nn::Init::Uniform {
                                lo: -bound,
                                up: bound,
                            },
                        )
                    })
                    .transpose()?;
                projections.push(Projection {
                    weight: pvb.get_with_hints(
                        (out, inp),
                        "weight",
                        candle_nn::init::DEFAULT_KAIMING_NORMAL,
                    )?,
                    bias,
                    adapter: None,
                    int8: None,
                });
            }
            layers.push(Layer {
                input_layernorm: lvb
                    .pp("input_layernorm")
                    .get_with_hints(hidden, "weight", ones)?,
                post_attention_layernorm: lvb
                    .pp("post_attention_layernorm")
                    .get_with_hints(hidden, "weight", ones)?,
                projections,
            });
        }
        let norm = model_vb.pp("norm").get_with_hints(hidden, "weight", ones)?;
        let lm_head = if config.tie_word_embeddings {
            embed_tokens.embeddings().clone()
        } else {
            vb.pp("lm_head").get_with_hints(
                (config.vocab_size, hidden),
                "weight",
                candle_nn::init::DEFAULT_KAIMING_NORMAL,
            )?
        };
        let rotary = Rotary::new(&config, device)?;
        Ok(Llama {
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
            lm_head_int8: None,
            rotary,
            varmap,
            device: device.clone(),
            dtype,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The weights' dtype (LoRA adapters are always f32).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The same model with its weights in `dtype` (a copy; adapters are not carried over).
    pub fn with_dtype(&self, dtype: DType) -> Result<Self, TrainError> {
        let weights = self
            .base_parameters()
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().clone()))
            .collect();
        Self::from_weights_as(self.config.clone(), weights, &self.device, dtype)
    }

    /// Adds an 8-bit copy of every projection and of the head (signed bytes with one f32
    /// scale per block of 32 weights, llama.cpp's Q8_0 layout) that generation
    /// ([`Llama::forward_last`]) uses for its decoding steps: a quarter of the bytes to
    /// stream per token. Prefills of more than a few tokens, [`Llama::forward`] and training
    /// keep the f32 weights. CPU only. A quantised model cannot be trained, and
    /// [`Llama::load_weights`] and [`Llama::merge_lora`] drop the copies (quantise again
    /// after them).
    pub fn quantize_for_generation(&mut self) -> Result<(), TrainError> {
        if !self.device.is_cpu() {
            return Err(TrainError::Config(
                "8-bit generation weights are for the CPU only".into(),
            ));
        }
        let quantize = |weight: &Tensor| -> Result<crate::matvec::Int8Matrix, TrainError> {
            let (out, inner) = weight.dims2()?;
            let values = weight
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            Ok(crate::matvec::Int8Matrix::quantize(&values, out, inner))
        };
        for layer in &mut self.layers {
            for projection in &mut layer.projections {
                projection.int8 = Some(quantize(&projection.weight)?);
            }
        }
        self.lm_head_int8 = Some(quantize(&self.lm_head)?);
        Ok(())
    }

    /// Whether the model has 8-bit generation weights ([`Llama::quantize_for_generation`]).
    pub fn is_quantized(&self) -> bool {
        self.lm_head_int8.is_some()
    }

    /// Drops the 8-bit generation weights (they would no longer match changed weights).
    pub fn drop_quantized(&mut self) {
        self.lm_head_int8 = None;
        for layer in &mut self.layers {
            for projection in &mut layer.projections {
                projection.int8 = None;
            }
        }
    }

    /// Whether LoRA adapters are attached (then only they train).
    pub fn has_adapters(&self) -> bool {
        self.layers
            .iter()
            .any(|layer| layer.projections.iter().any(|p| p.adapter.is_some()))
    }

    /// Every trainable parameter, sorted by name: the LoRA adapters when attached
    /// (`model.layers.N.self_attn.q_proj.lora_A.weight`, ...), otherwise every weight under
    /// its Hugging Face name.
    pub fn parameters(&self) -> Vec<(String, Var)> {
        if self.has_adapters() {
            let mut adapters: Vec<(String, Var)> = self
                .adapters()
                .flat_map(|(projection, adapter)| {
                    [
                        (format!("{projection}.lora_A.weight"), adapter.a.clone()),
                        (format!("{projection}.lora_B.weight"), adapter.b.clone()),
                    ]
                })
                .collect();
            adapters.sort_by(|a, b| a.0.cmp(&b.0));
            return adapters;
        }
        self.base_parameters()
    }

    /// Every attached adapter with its projection's name (`model.layers.N.self_attn.q_proj`).
    pub(crate) fn adapters(&self) -> impl Iterator<Item = (String, &Adapter)> {
        self.layers.iter().enumerate().flat_map(|(index, layer)| {
            PROJECTIONS
                .iter()
                .zip(&layer.projections)
                .filter_map(move |(name, projection)| {
                    let adapter = projection.adapter.as_ref()?;
                    Some((format!("model.layers.{index}.{name}"), adapter))
                })
        })
    }

    /// Freezes the base weights (every tensor the forward pass reads becomes a detached view of
    /// its variable, so backward computes no weight gradients: what LoRA training needs) or
    /// makes them trainable again. The views share storage with the variables, so
    /// [`Var::set`] on a base parameter is seen either way.
    pub(crate) fn set_base_frozen(&mut self, frozen: bool) {
        let data = self.varmap.data().lock().unwrap_or_else(|p| p.into_inner());
        let view = |name: String, current: &Tensor| -> Tensor {
            match data.get(&name) {
                Some(var) if !frozen => var.as_tensor().clone(),
                _ => current.detach(),
            }
        };
        let embeddings = view(
            "model.embed_tokens.weight".into(),
            self.embed_tokens.embeddings(),
        );
        self.embed_tokens = Embedding::new(embeddings, self.config.hidden_size);
        self.norm = view("model.norm.weight".into(), &self.norm);
        self.lm_head = if self.config.tie_word_embeddings {
            self.embed_tokens.embeddings().clone()
        } else {
            view("lm_head.weight".into(), &self.lm_head)
        };
        for (index, layer) in self.layers.iter_mut().enumerate() {
            let prefix = format!("model.layers.{index}");
            layer.input_layernorm = view(
                format!("{prefix}.input_layernorm.weight"),
                &layer.input_layernorm,
            );
            layer.post_attention_layernorm = view(
                format!("{prefix}.post_attention_layernorm.weight"),
                &layer.post_attention_layernorm,
            );
            for (name, projection) in PROJECTIONS.iter().zip(&mut layer.projections) {
                projection.weight = view(format!("{prefix}.{name}.weight"), &projection.weight);
                if let Some(bias) = &projection.bias {
                    projection.bias = Some(view(format!("{prefix}.{name}.bias"), bias));
                }
            }
        }
    }

    /// Every weight of the base model under its Hugging Face name, sorted by name.
    pub(crate) fn base_parameters(&self) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().unwrap_or_else(|p| p.into_inner());
        let mut params: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        params
    }

    /// The gradient of every parameter found in `store`, by parameter name (the map
    /// [`crate::AdamW::step`] and [`crate::clip_global_norm`] take).
    pub fn gradients(&self, store: &GradStore) -> HashMap<String, Tensor> {
        self.parameters()
            .into_iter()
            .filter_map(|(name, var)| store.get(var.as_tensor()).map(|g| (name, g.clone())))
            .collect()
    }

    /// Number of trainable scalars.
    pub fn parameter_count(&self) -> usize {
        self.parameters().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Logits `[batch, seq, vocab]` for token ids `[batch, seq]` at positions
    /// `cache.len()..`. With a cache, keys and values are appended to it.
    pub fn forward(&self, ids: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor, TrainError> {
        let (batch, seq) = ids.dims2()?;
        let hidden = self.hidden_inner(ids, cache, Pass::Train)?;
        Ok(self
            .head_inner(&hidden, Pass::Train)?
            .reshape((batch, seq, self.config.vocab_size))?)
    }

    /// The final normalised hidden states, `[batch * seq, hidden]`: what the vocabulary head
    /// reads. With [`Llama::head`] on a subset of the rows, the `[tokens, vocab]` logits (the
    /// head is a fifth of SmolLM2's parameters, and its output 85 times wider than the hidden
    /// state) are computed only where they are needed: the trained positions, the last one.
    pub fn hidden_states(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor, TrainError> {
        Ok(self.hidden_inner(ids, cache, Pass::Train)?)
    }

    /// f32 logits `[rows, vocab]` of hidden-state rows `[rows, hidden]`.
    pub fn head(&self, rows: &Tensor) -> Result<Tensor, TrainError> {
        Ok(self.head_inner(rows, Pass::Train)?)
    }

    /// f32 logits `[batch, vocab]` of each sequence's last position (generation's need). It
    /// records no graph (nothing can be differentiated through it), multiplies the few rows
    /// of a decoding step with the crate's own small-product kernels, and uses the 8-bit
    /// weights of a model [quantised for generation](Llama::quantize_for_generation).
    pub fn forward_last(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor, TrainError> {
        let (batch, seq) = ids.dims2()?;
        let hidden = self.hidden_inner(ids, cache, Pass::Generate)?;
        let last = match seq {
            1 => hidden,
            _ => {
                let rows: Vec<u32> = (0..batch).map(|b| (b * seq + seq - 1) as u32).collect();
                let rows = Tensor::from_vec(rows, batch, hidden.device())?;
                hidden.index_select(&rows, 0)?
            }
        };
        Ok(self.head_inner(&last, Pass::Generate)?)
    }

    fn head_inner(&self, rows: &Tensor, pass: Pass) -> candle_core::Result<Tensor> {
        match pass {
            Pass::Train => crate::frozen::linear(rows, &self.lm_head)?,
            Pass::Generate => {
                crate::matvec::linear(rows, &self.lm_head, self.lm_head_int8.as_ref())?
            }
        }
        .to_dtype(DType::F32)
    }

    fn hidden_inner(
        &self,
        ids: &Tensor,
        mut cache: Option<&mut KvCache>,
        pass: Pass,
    ) -> candle_core::Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        let start = cache.as_ref().map_or(0, |c| c.len());
        if start + seq > self.config.max_position_embeddings {
            candle_core::bail!(
                "sequence of {} tokens exceeds max_position_embeddings {}",
                start + seq,
                self.config.max_position_embeddings
            );
        }
        if let Some(cache) = cache.as_mut() {
            cache.layers.resize(self.layers.len(), None);
        }
        let hidden = self.config.hidden_size;
        // The residual stream is kept as [batch * seq, hidden] so every projection is one
        // matrix product (and its weight gradient one more), not a batched product over a
        // broadcast weight.
        let mut x = pass.read(
            &self
                .embed_tokens
                .forward(ids)?
                .reshape((batch * seq, hidden))?,
        );
        for (index, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_mut().map(|c| &mut c.layers[index]);
            x = self.layer_forward(layer, &x, (batch, seq), start, slot, pass)?;
        }
        crate::fused::rms_norm(&x, &pass.read(&self.norm), self.config.rms_norm_eps)
    }

    /// One decoder layer on the residual stream `x` (`[batch * seq, hidden]`).
    fn layer_forward(
        &self,
        layer: &Layer,
        x: &Tensor,
        (batch, seq): (usize, usize),
        start: usize,
        cache: Option<&mut Option<LayerCache>>,
        pass: Pass,
    ) -> candle_core::Result<Tensor> {
        let eps = self.config.rms_norm_eps;
        let fused_attention = match (pass, &cache) {
            // A whole sequence with a graph: the fused block, where it applies.
            (Pass::Train, None) if start == 0 => crate::block::attention(
                x,
                &layer.input_layernorm,
                eps,
                [Q, K, V, O].map(|index| &layer.projections[index]),
                crate::block::AttentionShape {
                    batch,
                    seq,
                    heads: self.config.num_attention_heads,
                    kv_heads: self.config.num_key_value_heads,
                    head_dim: self.config.head_dim(),
                },
                (
                    &self.rotary.cos.narrow(0, 0, seq)?,
                    &self.rotary.sin.narrow(0, 0, seq)?,
                ),
            )?,
            _ => None,
        };
        let x = match fused_attention {
            Some(x) => x,
            None => {
                let normed = crate::fused::rms_norm(x, &pass.read(&layer.input_layernorm), eps)?;
                (x + self.attention(layer, &normed, (batch, seq), start, cache, pass)?)?
            }
        };
        let feed_forward = [GATE, UP, DOWN].map(|index| &layer.projections[index]);
        if pass == Pass::Train
            && let Some(y) =
                crate::block::feed_forward(&x, &layer.post_attention_layernorm, eps, feed_forward)?
        {
            return Ok(y);
        }
        let normed = crate::fused::rms_norm(&x, &pass.read(&layer.post_attention_layernorm), eps)?;
        let gate = layer.projections[GATE].forward(&normed, pass)?;
        let up = layer.projections[UP].forward(&normed, pass)?;
        let swiglu = crate::fused::swiglu(&gate, &up)?;
        x + layer.projections[DOWN].forward(&swiglu, pass)?
    }

    /// The loss that `loss_of` computes from the final normalised hidden states of `ids`
    /// (`[batch * seq, hidden]`, as [`Llama::hidden_states`] gives them), and the gradient of
    /// every trainable parameter (those `loss_of` returns beside its loss, computed outside
    /// the graph, added in), by layer-wise recomputation: the forward pass keeps only
    /// each layer's input, and the backward pass runs each layer's forward again, with its
    /// graph, just before differentiating through it. Only one layer's activations are alive
    /// at a time instead of all of them (for SmolLM2 at 2,048 tokens, gigabytes), for about
    /// one more forward pass of compute. The gradients are those of `loss.backward()` on the
    /// whole graph (the same operations, differentiated in the same order per layer).
    pub fn recomputed_gradients(
        &self,
        ids: &Tensor,
        loss_of: impl Fn(&Tensor) -> Result<(Tensor, HashMap<String, Tensor>), TrainError>,
    ) -> Result<(Tensor, HashMap<String, Tensor>), TrainError> {
        let (batch, seq) = ids.dims2()?;
        let embed = || -> candle_core::Result<Tensor> {
            self.embed_tokens
                .forward(ids)?
                .reshape((batch * seq, self.config.hidden_size))
        };
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut x = embed()?.detach();
        for layer in &self.layers {
            let next = self.layer_forward(layer, &x, (batch, seq), 0, None, Pass::Train)?;
            inputs.push(std::mem::replace(&mut x, next.detach()));
        }
        // The head: final norm, vocabulary projection and loss, from the last layer's output.
        let top = Var::from_tensor(&x)?;
        let normed = crate::fused::rms_norm(top.as_tensor(), &self.norm, self.config.rms_norm_eps)?;
        let (loss, mut gradients) = loss_of(&normed)?;
        let mut add = |store: &GradStore| add_gradients(&mut gradients, self.gradients(store));
        let store = loss.backward()?;
        add(&store)?;
        let missing = || TrainError::Config("the loss does not depend on the model".into());
        let mut upstream = store.get(top.as_tensor()).ok_or_else(missing)?.detach();
        drop(store);
        for (layer, input) in self.layers.iter().zip(inputs).rev() {
            let input = Var::from_tensor(&input)?;
            let output =
                self.layer_forward(layer, input.as_tensor(), (batch, seq), 0, None, Pass::Train)?;
            // d(output · upstream)/dθ is the loss's gradient through this layer.
            let store = (output * &upstream)?.sum_all()?.backward()?;
            add(&store)?;
            upstream = store.get(input.as_tensor()).ok_or_else(missing)?.detach();
        }
        let embedded = embed()?;
        if embedded.track_op() {
            add(&(embedded * &upstream)?.sum_all()?.backward()?)?;
        }
        Ok((loss.detach(), gradients))
    }

    fn attention(
        &self,
        layer: &Layer,
        x: &Tensor,
        (batch, seq): (usize, usize),
        start: usize,
        cache: Option<&mut Option<LayerCache>>,
        pass: Pass,
    ) -> candle_core::Result<Tensor> {
        let hidden = x.dim(1)?;
        let head_dim = self.config.head_dim();
        let heads = |t: Tensor, n: usize| -> candle_core::Result<Tensor> {
            t.reshape((batch, seq, n, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (query_heads, kv_heads) = (
            self.config.num_attention_heads,
            self.config.num_key_value_heads,
        );
        let rotary = &self.rotary;
        let q = rotary.apply(
            &heads(layer.projections[Q].forward(x, pass)?, query_heads)?,
            start,
        )?;
        let k = rotary.apply(
            &heads(layer.projections[K].forward(x, pass)?, kv_heads)?,
            start,
        )?;
        let v = heads(layer.projections[V].forward(x, pass)?, kv_heads)?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let attend = |k: &Tensor, v: &Tensor| crate::attention::causal_attention(&q, k, v, scale);
        // The cache holds detached copies: a cached tensor would otherwise keep its whole
        // computation graph (every activation of the pass that made it) alive for as long as
        // the cache lives.
        let attended = match (cache, pass) {
            (Some(slot @ None), _) => {
                *slot = Some(LayerCache::new(k.clone(), v.clone())?);
                attend(&k, &v)?
            }
            // Generating: attention reads the buffers in place.
            (Some(Some(cached)), Pass::Generate) => {
                cached.append(&k, &v)?;
                if seq == 1 && crate::attention::decoding_applies(&q) {
                    let shared = cached.prefix.as_ref().map(|p| p.own_views()).transpose()?;
                    crate::attention::decoding_attention(&q, shared, cached.own_views()?, scale)?
                } else {
                    let (k, v) = cached.views()?;
                    attend(&k, &v)?
                }
            }
            // Training through a cache: the new positions keep their graph.
            (Some(Some(cached)), Pass::Train) => {
                let (past_k, past_v) = cached.views()?;
                cached.append(&k, &v)?;
                attend(
                    &Tensor::cat(&[&past_k, &k], 2)?,
                    &Tensor::cat(&[&past_v, &v], 2)?,
                )?
            }
            (None, _) => attend(&k, &v)?,
        };
        attended
            .transpose(1, 2)?
            .reshape((batch * seq, hidden))
            .and_then(|t| layer.projections[O].forward(&t, pass))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::masked_cross_entropy;

    /// A two-layer model small enough for every test (shared by this crate's tests).
    pub(crate) fn small(tie: bool) -> ModelConfig {
        ModelConfig {
            vocab_size: 61,
            hidden_size: 32,
            intermediate_size: 48,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            max_position_embeddings: 64,
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-5,
            tie_word_embeddings: tie,
            model_type: ModelType::Llama,
            attention_bias: false,
            rope_scaling: None,
        }
    }

    fn ids(batch: usize, seq: usize) -> Tensor {
        let values: Vec<u32> = (0..batch * seq).map(|i| (i * 7 % 61) as u32).collect();
        Tensor::from_vec(values, (batch, seq), &Device::Cpu).unwrap()
    }

    #[test]
    fn every_parameter_receives_a_gradient() {
        for tie in [true, false] {
            let model = Llama::new(small(tie), &Device::Cpu, 1).unwrap();
            let input = ids(2, 9);
            let logits = model.forward(&input, None).unwrap();
            let targets = ids(2, 9);
            let mask = Tensor::ones((2, 9), DType::F32, &Device::Cpu).unwrap();
            let (loss, _) = masked_cross_entropy(&logits, &targets, &mask).unwrap();
            let grads = loss.backward().unwrap();
            let params = model.parameters();
            let expected = 2 + 9 * 2 + usize::from(!tie);
            assert_eq!(params.len(), expected);
            for (name, var) in params {
                let grad = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("{name} received no gradient"));
                let norm = grad
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(
                    norm > 0.0 && norm.is_finite(),
                    "{name}: gradient norm {norm}"
                );
            }
        }
    }

    /// Layer-wise recomputation gives the loss and gradients of one backward pass over the
    /// whole graph: full fine-tuning with tied and untied embeddings, and LoRA.
    #[test]
    fn recomputed_gradients_equal_the_whole_graphs() {
        for (tie, lora) in [(true, false), (false, false), (true, true)] {
            let mut model = Llama::new(small(tie), &Device::Cpu, 1).unwrap();
            if lora {
                model
                    .attach_lora(&crate::LoraConfig::with_rank(4), 3)
                    .unwrap();
                // Adapters start at B = 0; move them so every factor gets a gradient.
                for (_, var) in model.parameters() {
                    let moved = (var.as_tensor() + 0.05).unwrap();
                    var.set(&moved).unwrap();
                }
            }
            let input = ids(2, 9);
            let targets = ids(2, 9);
            let mask = Tensor::ones((2, 9), DType::F32, &Device::Cpu).unwrap();
            let loss_of =
                |hidden: &Tensor| -> Result<(Tensor, HashMap<String, Tensor>), TrainError> {
                    let logits = model.head(hidden)?.reshape((2, 9, 61))?;
                    Ok((
                        masked_cross_entropy(&logits, &targets, &mask)?.0,
                        HashMap::new(),
                    ))
                };
            let whole = loss_of(&model.hidden_states(&input, None).unwrap())
                .unwrap()
                .0;
            let expected = model.gradients(&whole.backward().unwrap());
            let (loss, found) = model.recomputed_gradients(&input, loss_of).unwrap();
            let scalar = |t: &Tensor| t.to_scalar::<f32>().unwrap();
            assert_eq!(scalar(&loss), scalar(&whole));
            assert_eq!(found.len(), expected.len(), "tie {tie}, lora {lora}");
            assert_eq!(found.len(), model.parameters().len());
            for (name, grad) in &expected {
                let difference = crate::fused::tests::max_difference(grad, &found[name]);
                assert!(
                    difference < 1e-6,
                    "{name}: {difference} (tie {tie}, lora {lora})"
                );
            }
        }
    }

    #[test]
    fn names_follow_hugging_face_llama() {
        let model = Llama::new(small(false), &Device::Cpu, 1).unwrap();
        let names: Vec<String> = model.parameters().into_iter().map(|(n, _)| n).collect();
        for name in [
            "lm_head.weight",
            "model.embed_tokens.weight",
            "model.norm.weight",
            "model.layers.1.self_attn.k_proj.weight",
            "model.layers.0.mlp.gate_proj.weight",
            "model.layers.0.post_attention_layernorm.weight",
        ] {
            assert!(
                names.iter().any(|n| n == name),
                "{name} missing from {names:?}"
            );
        }
    }

    #[test]
    fn the_last_positions_logits_alone_equal_the_full_passs() {
        let model = Llama::new(small(false), &Device::Cpu, 2).unwrap();
        let input = ids(2, 6);
        let full = model.forward(&input, None).unwrap();
        let expected = full.narrow(1, 5, 1).unwrap().squeeze(1).unwrap();
        let last = model.forward_last(&input, None).unwrap();
        assert_eq!(last.dims(), [2, 61]);
        // Products over other row counts may sum in another order: equal up to rounding.
        let largest = |t: &Tensor| crate::fused::tests::max_difference(t, &expected);
        assert!(largest(&last) < 1e-5, "{}", largest(&last));
        // With a cache, one position at a time.
        let mut cache = KvCache::default();
        model
            .forward_last(&input.narrow(1, 0, 5).unwrap(), Some(&mut cache))
            .unwrap();
        let stepped = model
            .forward_last(&input.narrow(1, 5, 1).unwrap(), Some(&mut cache))
            .unwrap();
        assert_eq!(stepped.dims(), [2, 61]);
        assert!(largest(&stepped) < 1e-4, "{}", largest(&stepped));
    }

    #[test]
    fn eight_bit_generation_stays_near_f32_and_is_never_trained() {
        let mut model = Llama::new(small(false), &Device::Cpu, 4).unwrap();
        let input = ids(3, 8);
        let decode = |model: &Llama| {
            let mut cache = KvCache::default();
            model
                .forward_last(&input.narrow(1, 0, 7).unwrap(), Some(&mut cache))
                .unwrap();
            model
                .forward_last(&input.narrow(1, 7, 1).unwrap(), Some(&mut cache))
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let exact = decode(&model);
        model.quantize_for_generation().unwrap();
        assert!(model.is_quantized());
        let quantized = decode(&model);
        let range = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
        let largest = exact
            .iter()
            .zip(&quantized)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(largest > 0.0, "the 8-bit weights were not used");
        assert!(
            largest < 0.05 * range,
            "{largest} against logits up to {range}"
        );
        // The full pass (training's) reads the f32 weights.
        let full = model.forward(&input, None).unwrap();
        assert_eq!(full.dims(), [3, 8, 61]);
        let dir = std::env::temp_dir().join(format!("agentr-int8-{}", std::process::id()));
        let data = crate::TrainData {
            agent: Vec::new(),
            general: Vec::new(),
        };
        let refused = crate::train(
            &mut model,
            &data,
            &crate::SftConfig::default(),
            &dir,
            false,
            &mut |_| true,
        );
        assert!(
            matches!(&refused, Err(TrainError::Config(m)) if m.contains("8-bit")),
            "{:?}",
            refused.err()
        );
        assert!(!dir.exists(), "a refused run wrote its folder");
        model.drop_quantized();
        assert!(!model.is_quantized());
        assert_eq!(decode(&model), exact);
    }

    #[test]
    fn incremental_decoding_matches_the_full_pass() {
        let model = Llama::new(small(true), &Device::Cpu, 1).unwrap();
        let input = ids(1, 7);
        let full = model.forward(&input, None).unwrap();
        let mut cache = KvCache::default();
        let prefix = model
            .forward(&input.narrow(1, 0, 4).unwrap(), Some(&mut cache))
            .unwrap();
        assert_eq!(cache.len(), 4);
        let mut pieces = vec![prefix];
        for t in 4..7 {
            pieces.push(
                model
                    .forward(&input.narrow(1, t, 1).unwrap(), Some(&mut cache))
                    .unwrap(),
            );
        }
        // Regression: cached tensors carried their computation graph, so a prefix cache kept
        // every earlier pass's activations alive (an evaluation grew past 20 GB).
        assert!(
            cache
                .layers
                .iter()
                .flatten()
                .all(|layer| !layer.keys.track_op() && !layer.values.track_op())
        );
        let stepped = Tensor::cat(&pieces, 1).unwrap();
        let diff = crate::fused::tests::max_difference(&full, &stepped);
        assert!(diff < 1e-4, "max difference {diff}");
        let batch = cache.repeat_batch(3).unwrap();
        assert_eq!(batch.len(), 7);
    }

    /// A prefill repeated over a batch (kept once, as the rows' shared prefix) continues like
    /// separate runs of each row, in f32 and with 8-bit weights, after rows leave the batch,
    /// and after the cache is cut back into its prefix or its rows' own positions.
    #[test]
    fn samples_of_a_shared_prefill_continue_like_separate_runs() {
        let mut model = Llama::new(small(true), &Device::Cpu, 9).unwrap();
        for int8 in [false, true] {
            if int8 {
                model.quantize_for_generation().unwrap();
            }
            let prompt: Vec<u32> = (0..7).map(|i| (i * 5 % 61) as u32).collect();
            // The logits after `tokens` from a cache of their own: the first `prefill` in one
            // pass, the rest one step at a time.
            let alone = |tokens: &[u32], prefill: usize| -> Tensor {
                let mut cache = KvCache::default();
                let input = Tensor::new(&tokens[..prefill], &Device::Cpu).unwrap();
                let mut last = model.forward_last(&input.unsqueeze(0).unwrap(), Some(&mut cache));
                for &token in &tokens[prefill..] {
                    let step = Tensor::new(&[[token]], &Device::Cpu).unwrap();
                    last = model.forward_last(&step, Some(&mut cache));
                }
                last.unwrap().squeeze(0).unwrap()
            };
            let mut shared = KvCache::default();
            let input = Tensor::new(prompt.as_slice(), &Device::Cpu).unwrap();
            model
                .forward_last(&input.unsqueeze(0).unwrap(), Some(&mut shared))
                .unwrap();
            let mut batch = shared.repeat_batch(3).unwrap();
            let mut sequences: Vec<Vec<u32>> = vec![prompt.clone(); 3];
            // Row `i` of `logits` against `sequences[i]` run alone, its first `prefill(len)`
            // tokens in one pass.
            let check =
                |logits: &Tensor, sequences: &[Vec<u32>], prefill: &dyn Fn(usize) -> usize| {
                    for (i, sequence) in sequences.iter().enumerate() {
                        let expected = alone(sequence, prefill(sequence.len()));
                        let diff =
                            crate::fused::tests::max_difference(&logits.get(i).unwrap(), &expected);
                        assert!(diff < 1e-4, "int8 {int8}: {diff} after {sequence:?}");
                    }
                };
            let after_the_prompt = |_: usize| prompt.len();
            for step in 0..4u32 {
                let tokens: Vec<u32> = (0..3).map(|row| 10 + 3 * row + step).collect();
                for (sequence, &token) in sequences.iter_mut().zip(&tokens) {
                    sequence.push(token);
                }
                let next = Tensor::from_vec(tokens, (3, 1), &Device::Cpu).unwrap();
                let logits = model.forward_last(&next, Some(&mut batch)).unwrap();
                check(&logits, &sequences, &after_the_prompt);
            }
            assert_eq!(batch.len(), 11);
            // Rows 2 and 0 go on; the prefill's own cache is untouched.
            let mut kept = batch.select_batch(&[2, 0]).unwrap();
            let mut two = vec![sequences[2].clone(), sequences[0].clone()];
            for (sequence, token) in two.iter_mut().zip([50, 51]) {
                sequence.push(token);
            }
            let next = Tensor::new(&[[50u32], [51]], &Device::Cpu).unwrap();
            let logits = model.forward_last(&next, Some(&mut kept)).unwrap();
            check(&logits, &two, &after_the_prompt);
            assert_eq!(shared.len(), 7);
            // Cut inside the prefix, and inside the rows' own positions.
            for (len, tokens) in [(5usize, [40u32, 41, 42]), (9, [43, 44, 45])] {
                let mut cut = batch.truncate(len).unwrap();
                assert_eq!(cut.len(), len);
                let mut cut_sequences: Vec<Vec<u32>> =
                    sequences.iter().map(|s| s[..len].to_vec()).collect();
                for (sequence, &token) in cut_sequences.iter_mut().zip(&tokens) {
                    sequence.push(token);
                }
                let next = Tensor::from_vec(tokens.to_vec(), (3, 1), &Device::Cpu).unwrap();
                let logits = model.forward_last(&next, Some(&mut cut)).unwrap();
                // A cut shorter than the prompt is checked against a prompt as long: each
                // sequence in one pass.
                check(&logits, &cut_sequences, &|len| len);
            }
        }
    }

    /// Two caches sharing buffers (a prefix handed out by the prefix cache, a clone kept
    /// there) write their new positions apart: each continues as a fresh prefill would.
    #[test]
    fn caches_sharing_a_prefix_do_not_see_each_others_positions() {
        let model = Llama::new(small(true), &Device::Cpu, 5).unwrap();
        let input = ids(1, 9);
        let fresh = |tokens: &[u32]| {
            let ids = Tensor::new(tokens, &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            model
                .forward_last(&ids, None)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        };
        let tokens: Vec<u32> = input.flatten_all().unwrap().to_vec1().unwrap();
        let mut first = KvCache::default();
        model
            .forward_last(&input.narrow(1, 0, 6).unwrap(), Some(&mut first))
            .unwrap();
        let kept = first.clone();
        let mut second = first.truncate(4).unwrap();
        assert_eq!((first.len(), second.len(), kept.len()), (6, 4, 6));
        let step = |cache: &mut KvCache, token: u32| {
            let ids = Tensor::new(&[[token]], &Device::Cpu).unwrap();
            model
                .forward_last(&ids, Some(cache))
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        };
        let close = |a: &[Vec<f32>], b: &[Vec<f32>]| {
            let diff = a[0]
                .iter()
                .zip(&b[0])
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-4, "{diff}");
        };
        // Interleaved, so a shared buffer would be overwritten between the reads.
        for round in 0..3 {
            let a = step(&mut first, tokens[6 + round]);
            let b = step(&mut second, 40 + round as u32);
            let mut a_prefix = tokens[..7 + round].to_vec();
            a_prefix.truncate(7 + round);
            close(&a, &fresh(&a_prefix));
            let mut b_prefix = tokens[..4].to_vec();
            b_prefix.extend((0..=round).map(|r| 40 + r as u32));
            close(&b, &fresh(&b_prefix));
        }
        let mut again = kept.clone();
        close(&step(&mut again, tokens[6]), &fresh(&tokens[..7]));
    }

    #[test]
    fn save_and_load_give_identical_logits() {
        let dir = std::env::temp_dir().join(format!("agentr-model-{}", std::process::id()));
        let model = Llama::new(small(true), &Device::Cpu, 1).unwrap();
        model.save(&dir).unwrap();
        let loaded = Llama::load(&dir, &Device::Cpu).unwrap();
        assert_eq!(loaded.config(), model.config());
        let input = ids(2, 5);
        assert_eq!(flat_logits(&loaded, &input), flat_logits(&model, &input));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The logits for `ids`, flattened (shared by this crate's tests).
    pub(crate) fn flat_logits(model: &Llama, ids: &Tensor) -> Vec<f32> {
        model
            .forward(ids, None)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    }

    /// Every parameter value, in name order (shared by this crate's tests).
    pub(crate) fn flat_weights(model: &Llama) -> Vec<f32> {
        model
            .parameters()
            .iter()
            .flat_map(|(_, v)| {
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn initialisation_is_a_function_of_the_seed() {
        let weights = |seed| flat_weights(&Llama::new(small(true), &Device::Cpu, seed).unwrap());
        assert_eq!(weights(3), weights(3));
        assert_ne!(weights(3), weights(4));
        let w = weights(3);
        let std = (w.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        assert!(std < 0.1, "{std}");
    }

    #[test]
    fn presets_have_the_advertised_sizes() {
        let s = Llama::new(
            ModelConfig::preset("tiny-s", 2048).unwrap(),
            &Device::Cpu,
            0,
        )
        .unwrap();
        let m = Llama::new(
            ModelConfig::preset("tiny-m", 2048).unwrap(),
            &Device::Cpu,
            0,
        )
        .unwrap();
        let (s, m) = (s.parameter_count(), m.parameter_count());
        assert!((4_000_000..6_000_000).contains(&s), "tiny-s has {s}");
        assert!((17_000_000..23_000_000).contains(&m), "tiny-m has {m}");
        assert!(ModelConfig::preset("huge", 10).is_none());
    }

    #[test]
    fn parameter_shapes_match_the_built_model() {
        for tie in [true, false] {
            let model = Llama::new(small(tie), &Device::Cpu, 1).unwrap();
            let built: Vec<(String, Vec<usize>)> = model
                .parameters()
                .into_iter()
                .map(|(name, var)| (name, var.dims().to_vec()))
                .collect();
            assert_eq!(built, Llama::parameter_shapes(&small(tie)));
        }
    }

    #[test]
    fn from_weights_rebuilds_a_model_and_names_what_is_wrong() {
        for tie in [true, false] {
            let model = Llama::new(small(tie), &Device::Cpu, 5).unwrap();
            let weights: HashMap<String, Tensor> = model
                .parameters()
                .into_iter()
                .map(|(name, var)| (name, var.as_tensor().clone()))
                .collect();
            let rebuilt = Llama::from_weights(small(tie), weights.clone(), &Device::Cpu).unwrap();
            assert_eq!(flat_weights(&rebuilt), flat_weights(&model));
            let input = ids(1, 7);
            assert_eq!(flat_logits(&rebuilt, &input), flat_logits(&model, &input));
            // The copy owns its parameters: changing one leaves the source alone.
            let (name, var) = &rebuilt.parameters()[0];
            var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
            assert_ne!(
                flat_weights(&rebuilt),
                flat_weights(&model),
                "{name} is shared"
            );

            let mut broken = weights.clone();
            broken.remove("model.layers.1.mlp.up_proj.weight");
            broken.insert(
                "model.layers.0.self_attn.k_proj.weight".into(),
                Tensor::zeros((3, 32), DType::F32, &Device::Cpu).unwrap(),
            );
            broken.insert(
                "model.layers.9.mlp.up_proj.weight".into(),
                Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
            );
            let message = Llama::from_weights(small(tie), broken, &Device::Cpu)
                .err()
                .expect("broken weights are refused")
                .to_string();
            for part in [
                "missing model.layers.1.mlp.up_proj.weight",
                "unexpected model.layers.9.mlp.up_proj.weight",
                "misshaped model.layers.0.self_attn.k_proj.weight (expected [16, 32], found [3, 32])",
            ] {
                assert!(message.contains(part), "{message}");
            }
        }
        let weights: HashMap<String, Tensor> = Llama::new(small(true), &Device::Cpu, 5)
            .unwrap()
            .parameters()
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().clone()))
            .collect();
        let message = Llama::from_weights(small(false), weights, &Device::Cpu)
            .err()
            .expect("an untied model needs lm_head")
            .to_string();
        assert!(message.contains("missing lm_head.weight"), "{message}");
    }

    fn qwen2() -> ModelConfig {
        ModelConfig {
            model_type: ModelType::Qwen2,
            ..small(false)
        }
    }

    #[test]
    fn biases_follow_the_architecture_and_train() {
        let names = |config: &ModelConfig| -> Vec<String> {
            Llama::parameter_shapes(config)
                .into_iter()
                .filter(|(name, _)| name.ends_with(".bias"))
                .map(|(name, _)| name)
                .collect()
        };
        assert!(names(&small(true)).is_empty());
        let qwen = names(&qwen2());
        assert_eq!(qwen.len(), 2 * 3, "{qwen:?}");
        assert!(qwen.contains(&"model.layers.1.self_attn.v_proj.bias".to_owned()));
        let llama_with_bias = ModelConfig {
            attention_bias: true,
            ..small(true)
        };
        assert_eq!(names(&llama_with_bias).len(), 2 * 4);

        // Fresh biases are zero, and a bias changes the output when set.
        let model = Llama::new(qwen2(), &Device::Cpu, 1).unwrap();
        let input = ids(1, 6);
        let before = flat_logits(&model, &input);
        let (name, bias) = model
            .parameters()
            .into_iter()
            .find(|(name, _)| name == "model.layers.0.self_attn.v_proj.bias")
            .unwrap();
        assert!(
            bias.as_tensor()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                == 0.0
        );
        bias.set(&(bias.as_tensor().ones_like().unwrap() * 0.5).unwrap())
            .unwrap();
        assert_ne!(flat_logits(&model, &input), before, "{name} is not used");
        let logits = model.forward(&input, None).unwrap();
        let mask = Tensor::ones((1, 6), DType::F32, &Device::Cpu).unwrap();
        let (loss, _) = masked_cross_entropy(&logits, &input, &mask).unwrap();
        let grads = loss.backward().unwrap();
        assert!(grads.get(bias.as_tensor()).is_some());
    }

    #[test]
    fn llama3_rope_scaling_stretches_only_long_wavelengths() {
        let scaling = RopeScaling {
            rope_type: "llama3".into(),
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        };
        // Wavelength 2π / f: short (< 2048) kept, long (> 8192) divided by the factor,
        // between interpolated (continuous at both ends).
        assert_eq!(scaling.apply(1.0), 1.0);
        let long = std::f64::consts::TAU / 10_000.0;
        assert!((scaling.apply(long) - long / 8.0).abs() < 1e-15);
        let middle = std::f64::consts::TAU / 4096.0;
        let scaled = scaling.apply(middle);
        assert!(middle / 8.0 < scaled && scaled < middle, "{scaled}");
        for edge in [2048.0, 8192.0] {
            let f = std::f64::consts::TAU / edge;
            let (below, above) = (scaling.apply(f * 1.000001), scaling.apply(f * 0.999999));
            assert!(
                (below - above).abs() < 1e-5 * f,
                "jump at wavelength {edge}"
            );
        }

        let scaled_config = ModelConfig {
            rope_scaling: Some(scaling.clone()),
            ..small(true)
        };
        let plain = Llama::new(small(true), &Device::Cpu, 1).unwrap();
        let scaled = Llama::from_weights(
            scaled_config.clone(),
            plain
                .parameters()
                .into_iter()
                .map(|(n, v)| (n, v.as_tensor().clone()))
                .collect(),
            &Device::Cpu,
        )
        .unwrap();
        assert_ne!(
            flat_logits(&plain, &ids(1, 40)),
            flat_logits(&scaled, &ids(1, 40))
        );
        for rope_type in ["linear", "yarn"] {
            let config = ModelConfig {
                rope_scaling: Some(RopeScaling {
                    rope_type: rope_type.into(),
                    ..scaling.clone()
                }),
                ..small(true)
            };
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(rope_type), "{message}");
        }
    }

    #[test]
    fn bf16_weights_give_nearly_the_f32_logits() {
        for config in [small(true), qwen2()] {
            let model = Llama::new(config.clone(), &Device::Cpu, 2).unwrap();
            let weights: HashMap<String, Tensor> = model
                .parameters()
                .into_iter()
                .map(|(name, var)| (name, var.as_tensor().clone()))
                .collect();
            let half = Llama::from_weights_as(config, weights, &Device::Cpu, DType::BF16).unwrap();
            assert_eq!(half.dtype(), DType::BF16);
            let input = ids(2, 11);
            let (full, low) = (flat_logits(&model, &input), flat_logits(&half, &input));
            let worst = full
                .iter()
                .zip(&low)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let scale = full.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
            assert!(
                worst < 0.05 * scale.max(0.1),
                "worst {worst}, scale {scale}"
            );
            // Incremental decoding works in bf16 too.
            let mut cache = KvCache::default();
            half.forward(&input.narrow(1, 0, 5).unwrap(), Some(&mut cache))
                .unwrap();
            half.forward(&input.narrow(1, 5, 1).unwrap(), Some(&mut cache))
                .unwrap();
            assert_eq!(cache.len(), 6);
        }
    }

    #[test]
    fn saved_config_is_a_hugging_face_config() {
        for (config, architecture) in [
            (small(true), "LlamaForCausalLM"),
            (qwen2(), "Qwen2ForCausalLM"),
        ] {
            let json = config.to_hf_json(DType::F32);
            assert_eq!(json["architectures"][0], architecture);
            assert_eq!(json["hidden_act"], "silu");
            assert_eq!(json["torch_dtype"], "float32");
            let back: ModelConfig = serde_json::from_value(json).unwrap();
            assert_eq!(back, config);
        }
    }

    #[test]
    fn frozen_weights_get_no_gradient_and_thaw_again() {
        let mut model = Llama::new(qwen2(), &Device::Cpu, 1).unwrap();
        let gradients = |model: &Llama| {
            let input = ids(1, 5);
            let logits = model.forward(&input, None).unwrap();
            let mask = Tensor::ones((1, 5), DType::F32, &Device::Cpu).unwrap();
            let (loss, _) = masked_cross_entropy(&logits, &input, &mask).unwrap();
            model.gradients(&loss.backward().unwrap()).len()
        };
        let all = model.parameters().len();
        assert_eq!(gradients(&model), all);
        let before = flat_logits(&model, &ids(1, 5));
        model.set_base_frozen(true);
        assert_eq!(gradients(&model), 0);
        assert_eq!(flat_logits(&model, &ids(1, 5)), before);
        // Frozen views still see their variables.
        let (_, norm) = &model.parameters()[1];
        norm.set(&(norm.as_tensor() * 2.0).unwrap()).unwrap();
        let changed = flat_logits(&model, &ids(1, 5));
        assert_ne!(changed, before);
        model.set_base_frozen(false);
        assert_eq!(gradients(&model), all);
        assert_eq!(flat_logits(&model, &ids(1, 5)), changed);
    }

    #[test]
    fn bad_configs_are_rejected() {
        let mut config = small(true);
        config.num_key_value_heads = 3;
        assert!(matches!(
            Llama::new(config, &Device::Cpu, 0),
            Err(TrainError::Config(_))
        ));
    }
}
