//! Hugging Face checkpoints: `config.json`, safetensors weights (one file or shards with an
//! index) and `tokenizer.json`, from a folder or from the hub cache.
//!
//! Supported are the layouts that are this crate's decoder exactly: `model_type` `llama`
//! (Llama 2 and 3.x, SmolLM and SmolLM2, this crate's own saves) and `qwen2` (Qwen2 and
//! Qwen2.5: biases on the query, key and value projections). Everything the decoder would
//! silently compute differently is refused rather than approximated: activations other than
//! SiLU, a `head_dim` that is not `hidden_size / num_attention_heads`, MLP biases, sliding-window
//! attention, and rotary scaling other than Llama 3.1's `llama3`. Fields a config leaves out take
//! the defaults of `transformers`' `LlamaConfig` / `Qwen2Config`, since that is what the
//! checkpoint's authors ran. Both the older spelling (`rope_theta` and `rope_scaling` at the top
//! level, `type` for `rope_type`) and transformers 5's `rope_parameters` are read.
//!
//! Weights are read onto the CPU whatever their dtype (f32, bf16, f16); the model converts them.
//! Tensors a checkpoint may carry that the decoder recomputes or shares are dropped: old
//! checkpoints' `rotary_emb.inv_freq` buffers and, with tied embeddings, a duplicate
//! `lm_head.weight`.
//!
//! The hub cache is the one `huggingface_hub` and `huggingface-cli download` fill
//! (`models--org--name/refs/REVISION` holding a commit hash, `snapshots/HASH/...`), found the
//! same way (`HF_HUB_CACHE`, `HF_HOME`, then `~/.cache/huggingface/hub`), so a model
//! downloaded by Python tools is used as is. Downloading missing files needs the `hub` feature,
//! the only one that brings a TLS stack; `HF_HUB_OFFLINE=1` forbids it even then.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use candle_core::{Device, Tensor};
use serde_json::{Map, Value};

use crate::{ModelConfig, ModelType, RopeScaling, TrainError};

/// The model's hyper-parameters.
pub const CONFIG_FILE: &str = "config.json";
/// The tokenizer (the `tokenizers` library's JSON).
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Unsharded weights.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Sharded weights: the index whose `weight_map` names each tensor's shard file.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";

/// Reads a Hugging Face `config.json` (`model_type` `llama` or `qwen2`, or one written by
/// [`crate::Llama::save`]) into a [`ModelConfig`], with `transformers`' defaults for absent
/// fields. Architectures this crate's decoder does not compute exactly are refused with
/// [`TrainError::BadFile`] naming the file and the field.
pub fn read_config(path: &Path) -> Result<ModelConfig, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: path.to_owned(),
        source,
    })?;
    let bad = |message: String| TrainError::BadFile {
        path: path.to_owned(),
        message,
    };
    let json: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let config = parse_config(&json).map_err(bad)?;
    config.validate().map_err(|e| match e {
        TrainError::Config(message) => bad(message),
        other => other,
    })?;
    Ok(config)
}

/// [`read_config`] on JSON already parsed; errors are [`TrainError::Config`].
pub fn config_from_json(json: &Value) -> Result<ModelConfig, TrainError> {
    let config = parse_config(json).map_err(TrainError::Config)?;
    config.validate()?;
    Ok(config)
}

/// The fields of a config object, read with `transformers`' conventions: an absent field and
/// an explicit `null` both mean "the default" (except where noted).
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|value| !value.is_null())
    }

    fn count(&self, key: &str, default: usize) -> Result<usize, String> {
        match self.get(key) {
            None => Ok(default),
            Some(value) => value
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| format!("{key} must be a non-negative integer, not {value}")),
        }
    }

    fn float(&self, key: &str, default: f64) -> Result<f64, String> {
        match self.get(key) {
            None => Ok(default),
            Some(value) => value
                .as_f64()
                .ok_or_else(|| format!("{key} must be a number, not {value}")),
        }
    }

    fn flag(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some(value) => value
                .as_bool()
                .ok_or_else(|| format!("{key} must be true or false, not {value}")),
        }
    }

    fn text(&self, key: &str) -> Result<Option<&str>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => value
                .as_str()
                .map(Some)
                .ok_or_else(|| format!("{key} must be a string, not {value}")),
        }
    }
}

/// `transformers`' defaults for the fields that differ between the two configuration classes.
struct Defaults {
    vocab_size: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
}

fn parse_config(json: &Value) -> Result<ModelConfig, String> {
    let object = json
        .as_object()
        .ok_or("a model configuration must be a JSON object")?;
    let fields = Fields(object);
    let model_type = model_type(&fields)?;
    let defaults = match model_type {
        ModelType::Llama => Defaults {
            vocab_size: 32_000,
            intermediate_size: 11_008,
            max_position_embeddings: 2048,
        },
        ModelType::Qwen2 => Defaults {
            vocab_size: 151_936,
            intermediate_size: 22_016,
            max_position_embeddings: 32_768,
        },
    };
    let hidden_size = fields.count("hidden_size", 4096)?;
    let num_hidden_layers = fields.count("num_hidden_layers", 32)?;
    let num_attention_heads = fields.count("num_attention_heads", 32)?;
    // Qwen2Config's default is 32 heads, LlamaConfig's is "as many as the query heads"; an
    // explicit null means the latter for both.
    let num_key_value_heads = match (model_type, object.get("num_key_value_heads")) {
        (ModelType::Qwen2, None) => 32,
        _ => fields.count("num_key_value_heads", num_attention_heads)?,
    };

    let activation = fields.text("hidden_act")?.unwrap_or("silu");
    // transformers maps both names to the same SiLU.
    if !matches!(activation, "silu" | "swish") {
        return Err(format!(
            "hidden_act {activation:?} is not supported (the decoder's MLP is SwiGLU: \"silu\")"
        ));
    }
    if let Some(head_dim) = fields.get("head_dim") {
        let implied = hidden_size.checked_div(num_attention_heads);
        if head_dim.as_u64().map(|d| d as usize) != implied {
            return Err(format!(
                "head_dim {head_dim} is not hidden_size / num_attention_heads ({hidden_size} / \
                 {num_attention_heads}): decoupled head widths are not supported"
            ));
        }
    }

    let attention_bias = match model_type {
        ModelType::Llama => {
            if fields.flag("mlp_bias", false)? {
                return Err("mlp_bias = true is not supported (the MLP has no biases)".into());
            }
            fields.flag("attention_bias", false)?
        }
        // Qwen2's biases are fixed by the architecture; transformers ignores these keys.
        ModelType::Qwen2 => {
            refuse_sliding_window(&fields, num_hidden_layers)?;
            false
        }
    };
    if let Some(layer_types) = fields.get("layer_types") {
        let sliding = layer_types
            .as_array()
            .is_some_and(|types| types.iter().any(|t| t != "full_attention"));
        if sliding {
            return Err(format!(
                "layer_types {layer_types} is not supported: only full attention in every layer"
            ));
        }
    }

    let (rope_theta, rope_scaling) = rope(&fields)?;
    Ok(ModelConfig {
        vocab_size: fields.count("vocab_size", defaults.vocab_size)?,
        hidden_size,
        intermediate_size: fields.count("intermediate_size", defaults.intermediate_size)?,
        num_hidden_layers,
        num_attention_heads,
        num_key_value_heads,
        max_position_embeddings: fields
            .count("max_position_embeddings", defaults.max_position_embeddings)?,
        rope_theta,
        rms_norm_eps: fields.float("rms_norm_eps", 1e-6)?,
        tie_word_embeddings: fields.flag("tie_word_embeddings", false)?,
        model_type,
        attention_bias,
        rope_scaling,
    })
}

/// `model_type`, else the architecture named in `architectures`; a config with neither is one
/// written by this crate before it recorded the type (always Llama).
fn model_type(fields: &Fields) -> Result<ModelType, String> {
    const SUPPORTED: &str = "supported: \"llama\" (Llama, SmolLM) and \"qwen2\" (Qwen2, Qwen2.5)";
    if let Some(name) = fields.text("model_type")? {
        return match name {
            "llama" => Ok(ModelType::Llama),
            "qwen2" => Ok(ModelType::Qwen2),
            other => Err(format!(
                "model_type {other:?} is not supported ({SUPPORTED})"
            )),
        };
    }
    let Some(architectures) = fields.get("architectures") else {
        return Ok(ModelType::Llama);
    };
    match architectures.as_array().map(Vec::as_slice) {
        Some([name]) if name == "LlamaForCausalLM" => Ok(ModelType::Llama),
        Some([name]) if name == "Qwen2ForCausalLM" => Ok(ModelType::Qwen2),
        _ => Err(format!(
            "no model_type, and architectures {architectures} is not one this crate reads \
             ({SUPPORTED})"
        )),
    }
}

/// Qwen2 slides its attention window in layers from `max_window_layers` on when
/// `use_sliding_window` is set; the decoder attends to the whole context.
fn refuse_sliding_window(fields: &Fields, num_hidden_layers: usize) -> Result<(), String> {
    if !fields.flag("use_sliding_window", false)? {
        return Ok(());
    }
    let window = fields.get("sliding_window").is_some() || !fields.0.contains_key("sliding_window");
    let first_sliding = fields.count("max_window_layers", 28)?;
    if window && first_sliding < num_hidden_layers {
        return Err(format!(
            "use_sliding_window = true is not supported (layers {first_sliding}.. would attend \
             to a sliding window; the decoder attends to the whole context)"
        ));
    }
    Ok(())
}

/// The rotary base and scaling, from transformers 5's `rope_parameters` or the older
/// `rope_theta` and `rope_scaling`.
fn rope(fields: &Fields) -> Result<(f64, Option<RopeScaling>), String> {
    let mut key = "rope_parameters";
    let mut parameters = fields.get(key);
    if parameters.is_none() {
        key = "rope_scaling";
        parameters = fields.get(key);
    }
    // Models with several attention kinds keep one set per layer type; ours has one.
    if let Some(full) = parameters.and_then(|p| p.get("full_attention")) {
        parameters = Some(full);
    }
    let Some(parameters) = parameters else {
        return Ok((fields.float("rope_theta", 10_000.0)?, None));
    };
    let object = parameters
        .as_object()
        .ok_or_else(|| format!("{key} must be an object or null, not {parameters}"))?;
    let rope = Fields(object);
    let theta = match rope.get("rope_theta") {
        Some(_) => rope.float("rope_theta", 10_000.0)?,
        None => fields.float("rope_theta", 10_000.0)?,
    };
    let kind = match rope.text("rope_type")? {
        Some(kind) => kind,
        None => rope.text("type")?.unwrap_or("default"),
    };
    match kind {
        "default" => Ok((theta, None)),
        "llama3" => {
            let need = |name: &str| {
                rope.get(name)
                    .ok_or_else(|| format!("{key} of type \"llama3\" needs {name}"))
            };
            need("factor")?;
            need("low_freq_factor")?;
            need("high_freq_factor")?;
            need("original_max_position_embeddings")?;
            Ok((
                theta,
                Some(RopeScaling {
                    rope_type: "llama3".into(),
                    factor: rope.float("factor", 1.0)?,
                    low_freq_factor: rope.float("low_freq_factor", 1.0)?,
                    high_freq_factor: rope.float("high_freq_factor", 1.0)?,
                    original_max_position_embeddings: rope
                        .count("original_max_position_embeddings", 0)?,
                }),
            ))
        }
        other => Err(format!(
            "{key} of type {other:?} is not supported (only none or \"llama3\")"
        )),
    }
}

/// The weights of the checkpoint in `dir`, by Hugging Face name, on the CPU in their stored
/// dtype: `model.safetensors`, else the shards `model.safetensors.index.json` lists (each read
/// once; every tensor the index lists must be in its shard). Buffers the model recomputes
/// (`*.rotary_emb.inv_freq`) and, when `config` ties the embeddings, `lm_head.weight` are
/// dropped; anything else is left for [`crate::Llama::from_weights`] to judge.
pub fn read_weights(
    dir: &Path,
    config: &ModelConfig,
) -> Result<HashMap<String, Tensor>, TrainError> {
    let single = dir.join(WEIGHTS_FILE);
    let index = dir.join(WEIGHTS_INDEX_FILE);
    let mut weights = if single.is_file() {
        read_safetensors(&single)?
    } else if index.is_file() {
        read_shards(dir, &index)?
    } else {
        let mut message = format!(
            "no weights: looked for {WEIGHTS_FILE} and {WEIGHTS_INDEX_FILE} (with its shards)"
        );
        if dir.join("pytorch_model.bin").exists()
            || dir.join("pytorch_model.bin.index.json").exists()
        {
            message.push_str(
                "; pytorch_model.bin checkpoints are not read: convert them to safetensors",
            );
        }
        return Err(not_found(dir, message));
    };
    weights.retain(|name, _| {
        !(name.ends_with(".rotary_emb.inv_freq")
            || (config.tie_word_embeddings && name == "lm_head.weight"))
    });
    Ok(weights)
}

fn not_found(path: &Path, message: String) -> TrainError {
    TrainError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, message),
    }
}

fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>, TrainError> {
    if !path.is_file() {
        return Err(not_found(path, "no such file".into()));
    }
    candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| TrainError::BadFile {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The `weight_map` of an index: tensor names by shard file name.
fn read_index(index: &Path) -> Result<BTreeMap<String, Vec<String>>, TrainError> {
    let bad = |message: String| TrainError::BadFile {
        path: index.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(index).map_err(|source| TrainError::Io {
        path: index.to_owned(),
        source,
    })?;
    let json: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no weight_map object".into()))?;
    let mut shards: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("the shard of {tensor} is not a file name: {file}")))?;
        // The shard is opened relative to the checkpoint: a name leaving it is not a shard.
        let plain = Path::new(file)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if !plain || file.is_empty() {
            return Err(bad(format!(
                "shard file name {file:?} is not a file in this folder"
            )));
        }
        shards
            .entry(file.to_owned())
            .or_default()
            .push(tensor.clone());
    }
    if shards.is_empty() {
        return Err(bad("the weight_map is empty".into()));
    }
    Ok(shards)
}

fn read_shards(dir: &Path, index: &Path) -> Result<HashMap<String, Tensor>, TrainError> {
    let mut weights = HashMap::new();
    for (file, names) in read_index(index)? {
        let path = dir.join(&file);
        if !path.is_file() {
            return Err(not_found(
                &path,
                format!("shard listed in {WEIGHTS_INDEX_FILE} is missing"),
            ));
        }
        let mut shard = read_safetensors(&path)?;
        for name in names {
            let tensor = shard.remove(&name).ok_or_else(|| TrainError::BadFile {
                path: path.clone(),
                message: format!("no tensor {name}, which {WEIGHTS_INDEX_FILE} places here"),
            })?;
            weights.insert(name, tensor);
        }
    }
    Ok(weights)
}

/// Whether `spec` reads as a Hugging Face model id, `org/name` or `org/name@revision`: one `/`
/// between two non-empty parts of letters, digits, `-`, `_` and `.` that do not start with `.`,
/// and a revision (branch, tag or commit hash) without `..` or a leading `/`.
pub fn is_repo_id(spec: &str) -> bool {
    parse_spec(spec).is_some()
}

/// `(repo_id, revision)`; the revision defaults to `main`.
fn parse_spec(spec: &str) -> Option<(&str, &str)> {
    let (repo_id, revision) = match spec.split_once('@') {
        Some((repo_id, revision)) => (repo_id, revision),
        None => (spec, "main"),
    };
    let (org, name) = repo_id.split_once('/')?;
    let part_ok = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && !part.contains("..")
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    // Branch names may hold `/` (`refs/pr/1`); the revision names a file under `refs/`.
    let revision_ok = !revision.is_empty()
        && Path::new(revision)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        && !revision.chars().any(|c| c.is_whitespace() || c == '\\');
    (part_ok(org) && part_ok(name) && revision_ok).then_some((repo_id, revision))
}

/// The local Hugging Face hub cache, and whether files missing from it may be downloaded.
#[derive(Clone)]
pub struct HubCache {
    dir: PathBuf,
    offline: bool,
    // Only the downloader (feature `hub`) reads these.
    #[cfg_attr(not(feature = "hub"), allow(dead_code))]
    token: Option<String>,
    #[cfg_attr(not(feature = "hub"), allow(dead_code))]
    token_path: Option<PathBuf>,
    #[cfg_attr(not(feature = "hub"), allow(dead_code))]
    endpoint: Option<String>,
}

// By hand, so that the token stays out of logs.
impl std::fmt::Debug for HubCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubCache")
            .field("dir", &self.dir)
            .field("offline", &self.offline)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("token_path", &self.token_path)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl HubCache {
    /// The cache in `dir` (the folder holding `models--org--name` folders); `offline` forbids
    /// downloading. No token and the default endpoint.
    pub fn new(dir: impl Into<PathBuf>, offline: bool) -> Self {
        HubCache {
            dir: dir.into(),
            offline,
            token: None,
            token_path: None,
            endpoint: None,
        }
    }

    /// The cache `huggingface_hub` uses, from the process environment: see
    /// [`HubCache::from_vars`].
    pub fn from_env() -> Result<Self, TrainError> {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// The cache `huggingface_hub` uses, with `var` looking up environment variables: the
    /// folder is `HF_HUB_CACHE` (or the older `HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`,
    /// else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`;
    /// `HF_HUB_OFFLINE` = `1`, `true`, `yes` or `on` forbids downloading; downloads (feature
    /// `hub`) send `HF_TOKEN` or the token file (`HF_TOKEN_PATH`, else `$HF_HOME/token`) and go
    /// to `HF_ENDPOINT` if set. Empty variables count as unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<Self, TrainError> {
        let var = |name: &str| var(name).filter(|value| !value.is_empty());
        let hf_home = var("HF_HOME").map(PathBuf::from).or_else(|| {
            let cache = var("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| {
                Some(PathBuf::from(var("HOME").or_else(|| var("USERPROFILE"))?).join(".cache"))
            })?;
            Some(cache.join("huggingface"))
        });
        let dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .or_else(|| hf_home.as_ref().map(|home| home.join("hub")))
            .ok_or_else(|| {
                TrainError::Config(
                    "cannot place the Hugging Face cache: set HF_HUB_CACHE, HF_HOME or HOME".into(),
                )
            })?;
        let offline = var("HF_HUB_OFFLINE").is_some_and(|value| {
            let value = value.to_string_lossy().trim().to_ascii_lowercase();
            matches!(value.as_str(), "1" | "true" | "yes" | "on")
        });
        Ok(HubCache {
            dir,
            offline,
            token: var("HF_TOKEN").and_then(|t| t.into_string().ok()),
            token_path: var("HF_TOKEN_PATH")
                .map(PathBuf::from)
                .or_else(|| hf_home.map(|home| home.join("token"))),
            endpoint: var("HF_ENDPOINT").and_then(|e| e.into_string().ok()),
        })
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether downloading is forbidden.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// The snapshot folder of `spec` (`org/name` or `org/name@revision`, default revision
    /// `main`; a revision is a branch or tag with a file under `refs/`, or a commit hash with a
    /// snapshot) holding `config.json`, `tokenizer.json` and the weights (`model.safetensors`,
    /// or the index and every shard it lists). A complete snapshot in the cache is used without
    /// asking the hub whether the revision moved (`huggingface-cli download` updates it).
    /// Missing files are downloaded into the cache with the `hub` feature unless offline;
    /// otherwise the error names them and how to get them.
    pub fn resolve(&self, spec: &str) -> Result<PathBuf, TrainError> {
        let (repo_id, revision) = parse_spec(spec).ok_or_else(|| {
            TrainError::Config(format!(
                "{spec:?} is not a Hugging Face model id (org/name or org/name@revision)"
            ))
        })?;
        let repo = hf_hub::Repo::with_revision(
            repo_id.to_owned(),
            hf_hub::RepoType::Model,
            revision.to_owned(),
        );
        let repo_dir = self.dir.join(repo.folder_name());
        let found = self.snapshot(&repo_dir, revision)?;
        let missing = match &found {
            Some(snapshot) => missing_files(snapshot)?,
            None => vec![
                CONFIG_FILE.into(),
                TOKENIZER_FILE.into(),
                WEIGHTS_FILE.into(),
            ],
        };
        if let (Some(snapshot), true) = (&found, missing.is_empty()) {
            return Ok(snapshot.clone());
        }
        let what = match &found {
            Some(_) => format!(
                "the cached snapshot of {repo_id}@{revision} lacks {}",
                missing.join(", ")
            ),
            None => format!(
                "{repo_id}@{revision} is not in the Hugging Face cache (no {}; cached revisions: \
                 {})",
                repo_dir.join("refs").join(revision).display(),
                self.revisions(&repo_dir)
            ),
        };
        let path = found.clone().unwrap_or(repo_dir.clone());
        if self.offline {
            return Err(not_found(
                &path,
                format!("{what}; HF_HUB_OFFLINE is set, which forbids downloading"),
            ));
        }
        self.download(repo_id, revision, &path, &what)?;
        match self.snapshot(&repo_dir, revision)? {
            Some(snapshot) => {
                let missing = missing_files(&snapshot)?;
                if missing.is_empty() {
                    Ok(snapshot)
                } else {
                    Err(not_found(
                        &snapshot,
                        format!("still lacks {} after downloading", missing.join(", ")),
                    ))
                }
            }
            None => Err(not_found(
                &repo_dir,
                format!("{what}, even after downloading"),
            )),
        }
    }

    /// The snapshot `revision` points to: through `refs/REVISION`, or a commit hash's own
    /// snapshot folder.
    fn snapshot(&self, repo_dir: &Path, revision: &str) -> Result<Option<PathBuf>, TrainError> {
        let ref_path = repo_dir.join("refs").join(revision);
        match std::fs::read_to_string(&ref_path) {
            Ok(hash) => {
                // huggingface_hub writes the bare hash; hand-made refs may end in a newline.
                let hash = hash.trim();
                let plain = !hash.is_empty()
                    && Path::new(hash)
                        .components()
                        .all(|c| matches!(c, Component::Normal(_)))
                    && !hash.contains('/');
                if !plain {
                    return Err(TrainError::BadFile {
                        path: ref_path,
                        message: format!("{hash:?} is not a commit hash"),
                    });
                }
                return Ok(Some(repo_dir.join("snapshots").join(hash)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(TrainError::Io {
                    path: ref_path,
                    source,
                });
            }
        }
        let direct = repo_dir.join("snapshots").join(revision);
        Ok(direct.is_dir().then_some(direct))
    }

    /// The branches and tags cached for a repository, for error messages.
    fn revisions(&self, repo_dir: &Path) -> String {
        let mut names = Vec::new();
        let mut pending = vec![(repo_dir.join("refs"), String::new())];
        while let Some((dir, prefix)) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
                if entry.path().is_dir() {
                    pending.push((entry.path(), format!("{name}/")));
                } else {
                    names.push(name);
                }
            }
        }
        names.sort();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    #[cfg(not(feature = "hub"))]
    fn download(
        &self,
        repo_id: &str,
        revision: &str,
        path: &Path,
        what: &str,
    ) -> Result<(), TrainError> {
        let revision_flag = if revision == "main" {
            String::new()
        } else {
            format!(" --revision {revision}")
        };
        Err(not_found(
            path,
            format!(
                "{what}; download it with `huggingface-cli download {repo_id}{revision_flag}` \
                 (into {}), or build agentr with `--features hub` to let it download",
                self.dir.display()
            ),
        ))
    }

    #[cfg(feature = "hub")]
    fn download(
        &self,
        repo_id: &str,
        revision: &str,
        _path: &Path,
        what: &str,
    ) -> Result<(), TrainError> {
        use hf_hub::api::sync::ApiBuilder;

        let endpoint = self
            .endpoint
            .clone()
            .unwrap_or_else(|| "https://huggingface.co".into());
        let url = format!("{endpoint}/{repo_id}");
        let failed = |e: &dyn std::fmt::Display| TrainError::Http {
            url: url.clone(),
            status: None,
            message: format!(
                "{what}, and downloading failed: {e} (a gated model needs HF_TOKEN, and \
                 access granted on its page)"
            ),
        };
        // hf-hub builds relative symlinks from absolute paths only.
        let dir = std::path::absolute(&self.dir).map_err(|source| TrainError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let token = self.token.clone().or_else(|| {
            let text = std::fs::read_to_string(self.token_path.as_ref()?).ok()?;
            let text = text.trim();
            (!text.is_empty()).then(|| text.to_owned())
        });
        let api = ApiBuilder::from_cache(hf_hub::Cache::new(dir))
            .with_endpoint(endpoint.clone())
            .with_token(token)
            .with_progress(true)
            .build()
            .map_err(|e| failed(&e))?;
        let repo = api.repo(hf_hub::Repo::with_revision(
            repo_id.to_owned(),
            hf_hub::RepoType::Model,
            revision.to_owned(),
        ));
        let info = repo.info().map_err(|e| failed(&e))?;
        let listed = |name: &str| info.siblings.iter().any(|s| s.rfilename == name);
        let mut wanted = vec![CONFIG_FILE.to_owned(), TOKENIZER_FILE.to_owned()];
        if let Some(absent) = wanted.iter().find(|name| !listed(name)) {
            return Err(failed(&format!("the repository has no {absent}")));
        }
        if listed(WEIGHTS_FILE) {
            wanted.push(WEIGHTS_FILE.to_owned());
        } else if listed(WEIGHTS_INDEX_FILE) {
            let index = repo.get(WEIGHTS_INDEX_FILE).map_err(|e| failed(&e))?;
            wanted.extend(read_index(&index)?.into_keys());
        } else {
            return Err(failed(&format!(
                "the repository has neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE}"
            )));
        }
        for name in &wanted {
            repo.get(name).map_err(|e| failed(&e))?;
        }
        Ok(())
    }
}

/// The files of a complete checkpoint that `snapshot` lacks (a dangling link into `blobs/`
/// counts as missing).
fn missing_files(snapshot: &Path) -> Result<Vec<String>, TrainError> {
    let mut missing: Vec<String> = [CONFIG_FILE, TOKENIZER_FILE]
        .into_iter()
        .filter(|name| !snapshot.join(name).is_file())
        .map(str::to_owned)
        .collect();
    let index = snapshot.join(WEIGHTS_INDEX_FILE);
    if snapshot.join(WEIGHTS_FILE).is_file() {
    } else if index.is_file() {
        missing.extend(
            read_index(&index)?
                .into_keys()
                .filter(|shard| !snapshot.join(shard).is_file()),
        );
    } else {
        missing.push(format!(
            "{WEIGHTS_FILE} (or {WEIGHTS_INDEX_FILE} and its shards)"
        ));
    }
    Ok(missing)
}

/// [`HubCache::resolve`] on the cache the environment names ([`HubCache::from_env`]):
/// `org/name[@revision]` to the snapshot folder holding its `config.json`, `tokenizer.json`
/// and weights, ready for [`crate::Llama::load`] and [`crate::ModelAgent::load`].
pub fn resolve(spec: &str) -> Result<PathBuf, TrainError> {
    HubCache::from_env()?.resolve(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use serde_json::json;

    fn parse(value: Value) -> Result<ModelConfig, String> {
        config_from_json(&value).map_err(|e| e.to_string())
    }

    #[test]
    fn absent_fields_take_transformers_defaults() {
        let llama = parse(json!({"model_type": "llama", "num_attention_heads": 8})).unwrap();
        assert_eq!(
            llama,
            ModelConfig {
                vocab_size: 32_000,
                hidden_size: 4096,
                intermediate_size: 11_008,
                num_hidden_layers: 32,
                num_attention_heads: 8,
                num_key_value_heads: 8,
                max_position_embeddings: 2048,
                rope_theta: 10_000.0,
                rms_norm_eps: 1e-6,
                tie_word_embeddings: false,
                model_type: ModelType::Llama,
                attention_bias: false,
                rope_scaling: None,
            }
        );
        let qwen = parse(json!({"model_type": "qwen2", "num_attention_heads": 64})).unwrap();
        assert_eq!(qwen.model_type, ModelType::Qwen2);
        assert_eq!(
            (
                qwen.vocab_size,
                qwen.intermediate_size,
                qwen.max_position_embeddings
            ),
            (151_936, 22_016, 32_768)
        );
        // Qwen2Config: 32 key/value heads when absent, as many as the query heads when null.
        assert_eq!(qwen.num_key_value_heads, 32);
        let qwen = parse(json!({"model_type": "qwen2", "num_attention_heads": 64,
            "num_key_value_heads": null}))
        .unwrap();
        assert_eq!(qwen.num_key_value_heads, 64);
    }

    #[test]
    fn model_type_comes_from_architectures_or_defaults_to_llama() {
        let qwen = parse(json!({"architectures": ["Qwen2ForCausalLM"]})).unwrap();
        assert_eq!(qwen.model_type, ModelType::Qwen2);
        // This crate's saves before `model_type` was written.
        let old = parse(
            json!({"vocab_size": 100, "hidden_size": 64, "intermediate_size": 176,
            "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4,
            "max_position_embeddings": 256, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
            "tie_word_embeddings": true}),
        )
        .unwrap();
        assert_eq!(old, {
            let mut c = ModelConfig::preset("tiny-xs", 100).unwrap();
            c.max_position_embeddings = 256;
            c
        });
        let err = parse(json!({"architectures": ["MistralForCausalLM"]})).unwrap_err();
        assert!(err.contains("MistralForCausalLM"), "{err}");
    }

    #[test]
    fn saved_configs_read_back() {
        let mut configs = vec![
            ModelConfig::preset("tiny-xs", 300).unwrap(),
            ModelConfig::preset("tiny-s", 2048).unwrap(),
        ];
        let mut qwen = ModelConfig::preset("tiny-xs", 300).unwrap();
        qwen.model_type = ModelType::Qwen2;
        qwen.tie_word_embeddings = false;
        qwen.rope_theta = 1e6;
        configs.push(qwen);
        let mut llama3 = ModelConfig::preset("tiny-xs", 300).unwrap();
        llama3.attention_bias = true;
        llama3.rope_scaling = Some(RopeScaling {
            rope_type: "llama3".into(),
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        });
        configs.push(llama3);
        for config in configs {
            for dtype in [DType::F32, DType::BF16] {
                assert_eq!(parse(config.to_hf_json(dtype)).unwrap(), config);
            }
        }
    }

    #[test]
    fn rope_scaling_spellings() {
        let base = json!({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
            "rope_theta": 500000.0});
        let with = |key: &str, value: Value| {
            let mut config = base.clone();
            config[key] = value;
            parse(config)
        };
        let scaling = |kind_key: &str| {
            json!({kind_key: "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
        };
        let expected = Some(RopeScaling {
            rope_type: "llama3".into(),
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        });
        for (key, value) in [
            ("rope_scaling", scaling("rope_type")),
            ("rope_scaling", scaling("type")),
            ("rope_parameters", scaling("rope_type")),
        ] {
            let config = with(key, value).unwrap();
            assert_eq!(
                (config.rope_theta, &config.rope_scaling),
                (500_000.0, &expected)
            );
        }
        // transformers 5 moves the base into rope_parameters.
        let config = with(
            "rope_parameters",
            json!({"rope_type": "default", "rope_theta": 1e6}),
        )
        .unwrap();
        assert_eq!((config.rope_theta, config.rope_scaling), (1e6, None));
        assert_eq!(
            with("rope_scaling", Value::Null).unwrap().rope_scaling,
            None
        );
        for kind in ["linear", "dynamic", "yarn"] {
            let err = with("rope_scaling", json!({"type": kind, "factor": 2.0})).unwrap_err();
            assert!(err.contains(kind), "{err}");
        }
        let err = with(
            "rope_scaling",
            json!({"rope_type": "llama3", "factor": 8.0}),
        )
        .unwrap_err();
        assert!(err.contains("low_freq_factor"), "{err}");
    }

    #[test]
    fn architectures_the_decoder_does_not_compute_are_refused() {
        let base = json!({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
            "num_hidden_layers": 2});
        let cases: [(&str, Value, &str); 9] = [
            ("model_type", json!("gemma"), "gemma"),
            ("model_type", json!("mistral"), "mistral"),
            ("hidden_act", json!("gelu"), "gelu"),
            ("head_dim", json!(32), "head_dim"),
            ("mlp_bias", json!(true), "mlp_bias"),
            (
                "layer_types",
                json!(["full_attention", "sliding_attention"]),
                "layer_types",
            ),
            ("num_attention_heads", json!(6), "num_attention_heads"),
            ("num_key_value_heads", json!(3), "num_key_value_heads"),
            ("rms_norm_eps", json!("small"), "rms_norm_eps"),
        ];
        for (key, value, needle) in cases {
            let mut config = base.clone();
            config[key] = value;
            let err = parse(config).unwrap_err();
            assert!(err.contains(needle), "{key}: {err}");
        }
        let mut fine = base.clone();
        fine["head_dim"] = json!(16);
        fine["hidden_act"] = json!("silu");
        fine["mlp_bias"] = json!(false);
        parse(fine).unwrap();

        let qwen = json!({"model_type": "qwen2", "hidden_size": 64, "num_attention_heads": 4,
            "num_key_value_heads": 2, "num_hidden_layers": 4, "use_sliding_window": true,
            "sliding_window": 4096, "max_window_layers": 2});
        let err = parse(qwen.clone()).unwrap_err();
        assert!(err.contains("use_sliding_window"), "{err}");
        // A window that starts after the last layer, or no window at all, slides nowhere.
        for (key, value) in [
            ("max_window_layers", json!(4)),
            ("sliding_window", Value::Null),
        ] {
            let mut config = qwen.clone();
            config[key] = value;
            parse(config).unwrap();
        }
    }

    #[test]
    fn read_config_names_the_file() {
        let dir = std::env::temp_dir().join(format!("agentr-hf-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(CONFIG_FILE);
        std::fs::write(&path, r#"{"model_type": "llama", "hidden_act": "gelu"}"#).unwrap();
        let err = read_config(&path).unwrap_err();
        assert!(matches!(&err, TrainError::BadFile { path: p, .. } if *p == path));
        assert!(err.to_string().contains("gelu"), "{err}");
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(
            read_config(&path),
            Err(TrainError::BadFile { .. })
        ));
        let err = read_config(&dir.join("absent.json")).unwrap_err();
        assert!(matches!(err, TrainError::Io { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn model_ids() {
        for (spec, expected) in [
            (
                "Qwen/Qwen2.5-0.5B-Instruct",
                Some(("Qwen/Qwen2.5-0.5B-Instruct", "main")),
            ),
            (
                "meta-llama/Llama-3.2-1B@v1.0",
                Some(("meta-llama/Llama-3.2-1B", "v1.0")),
            ),
            ("org/name@refs/pr/1", Some(("org/name", "refs/pr/1"))),
            (
                "HuggingFaceTB/SmolLM2-135M-Instruct",
                Some(("HuggingFaceTB/SmolLM2-135M-Instruct", "main")),
            ),
            ("runs/bc", Some(("runs/bc", "main"))),
            ("runs/bc/model", None),
            ("./runs", None),
            ("/abs/path", None),
            ("org/", None),
            ("org/name@", None),
            ("org/name@../../etc", None),
            ("org/.hidden", None),
            ("org/na me", None),
            ("smollm2-135m", None),
        ] {
            assert_eq!(parse_spec(spec), expected, "{spec}");
        }
    }

    #[test]
    fn cache_location_and_offline_flag_follow_huggingface_hub() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            HubCache::from_vars(move |name| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| OsString::from(value))
            })
        };
        let cache = env(&[("HOME", "/home/u")]).unwrap();
        assert_eq!(cache.dir(), Path::new("/home/u/.cache/huggingface/hub"));
        assert!(!cache.is_offline());
        assert_eq!(
            cache.token_path.as_deref(),
            Some(Path::new("/home/u/.cache/huggingface/token"))
        );
        let cache = env(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")]).unwrap();
        assert_eq!(cache.dir(), Path::new("/xdg/huggingface/hub"));
        let cache = env(&[
            ("HOME", "/home/u"),
            ("HF_HOME", "/hf"),
            ("HF_HUB_OFFLINE", "1"),
        ])
        .unwrap();
        assert_eq!(cache.dir(), Path::new("/hf/hub"));
        assert!(cache.is_offline());
        let cache = env(&[
            ("HF_HOME", "/hf"),
            ("HF_HUB_CACHE", "/c"),
            ("HF_HUB_OFFLINE", "TRUE"),
            ("HF_TOKEN", "t"),
        ])
        .unwrap();
        assert_eq!(cache.dir(), Path::new("/c"));
        assert!(cache.is_offline());
        assert_eq!(cache.token.as_deref(), Some("t"));
        assert!(
            format!("{cache:?}").contains("token: Some(\"<set>\")"),
            "{cache:?}"
        );
        for off in ["0", "false", ""] {
            let cache = HubCache::from_vars(|name| match name {
                "HF_HUB_CACHE" => Some("/c".into()),
                "HF_HUB_OFFLINE" => Some(off.into()),
                _ => None,
            })
            .unwrap();
            assert!(!cache.is_offline(), "{off:?}");
        }
        assert!(env(&[]).is_err());
    }
}
