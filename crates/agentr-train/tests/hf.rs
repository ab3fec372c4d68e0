//! Hugging Face checkpoints in the layouts the hub serves (Llama 3.x, Qwen2.5, SmolLM2), put
//! into a fake hub cache, resolved by model id and loaded; and the errors for broken or
//! missing ones. Nothing here touches the network: every cache is offline or complete.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use agentr_train::hf::{self, HubCache};
use agentr_train::{ChatTokenizer, Llama, ModelAgent, ModelConfig, ModelType, RopeScaling};
use candle_core::{DType, Device, Tensor};
use serde_json::{Value, json};

const VOCAB: usize = 320;

/// A checkpoint as some publisher lays it out.
struct Layout {
    repo_id: &'static str,
    /// What `config.json` must read as.
    config: ModelConfig,
    /// `config.json` as the publisher writes it.
    hf_config: Value,
    /// The dtype the weights are stored in.
    stored: DType,
    /// 1: `model.safetensors`; more: shards with an index.
    shards: usize,
    /// Old checkpoints carry each layer's rotary buffer.
    inv_freq: bool,
    /// Some tied checkpoints also store the output projection.
    stray_lm_head: bool,
    /// Snapshot files as links into `blobs/`, as `huggingface_hub` writes them.
    blobs: bool,
}

fn tiny(model_type: ModelType, tie: bool) -> ModelConfig {
    ModelConfig {
        vocab_size: VOCAB,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 256,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: tie,
        model_type,
        attention_bias: false,
        rope_scaling: None,
    }
}

fn layouts() -> Vec<Layout> {
    let llama3 = ModelConfig {
        rope_theta: 500_000.0,
        rms_norm_eps: 1e-5,
        rope_scaling: Some(RopeScaling {
            rope_type: "llama3".into(),
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64,
        }),
        ..tiny(ModelType::Llama, true)
    };
    let qwen = ModelConfig {
        rope_theta: 1_000_000.0,
        max_position_embeddings: 512,
        ..tiny(ModelType::Qwen2, false)
    };
    let smollm = tiny(ModelType::Llama, true);
    vec![
        Layout {
            repo_id: "meta-llama/Llama-3.2-tiny-Instruct",
            config: llama3,
            hf_config: json!({
                "architectures": ["LlamaForCausalLM"],
                "attention_bias": false,
                "attention_dropout": 0.0,
                "bos_token_id": 128000,
                "eos_token_id": [128001, 128008, 128009],
                "head_dim": 8,
                "hidden_act": "silu",
                "hidden_size": 32,
                "initializer_range": 0.02,
                "intermediate_size": 64,
                "max_position_embeddings": 256,
                "mlp_bias": false,
                "model_type": "llama",
                "num_attention_heads": 4,
                "num_hidden_layers": 2,
                "num_key_value_heads": 2,
                "pretraining_tp": 1,
                "rms_norm_eps": 1e-05,
                "rope_scaling": {
                    "factor": 32.0,
                    "high_freq_factor": 4.0,
                    "low_freq_factor": 1.0,
                    "original_max_position_embeddings": 64,
                    "rope_type": "llama3"
                },
                "rope_theta": 500000.0,
                "tie_word_embeddings": true,
                "torch_dtype": "bfloat16",
                "transformers_version": "4.45.0.dev0",
                "use_cache": true,
                "vocab_size": VOCAB
            }),
            stored: DType::BF16,
            shards: 3,
            inv_freq: false,
            stray_lm_head: true,
            blobs: cfg!(unix),
        },
        Layout {
            repo_id: "Qwen/Qwen2.5-tiny-Instruct",
            config: qwen,
            hf_config: json!({
                "architectures": ["Qwen2ForCausalLM"],
                "attention_dropout": 0.0,
                "bos_token_id": 151643,
                "eos_token_id": 151645,
                "hidden_act": "silu",
                "hidden_size": 32,
                "initializer_range": 0.02,
                "intermediate_size": 64,
                "max_position_embeddings": 512,
                "max_window_layers": 21,
                "model_type": "qwen2",
                "num_attention_heads": 4,
                "num_hidden_layers": 2,
                "num_key_value_heads": 2,
                "rms_norm_eps": 1e-06,
                "rope_scaling": null,
                "rope_theta": 1000000.0,
                "sliding_window": 32768,
                "tie_word_embeddings": false,
                "torch_dtype": "bfloat16",
                "transformers_version": "4.43.1",
                "use_cache": true,
                "use_sliding_window": false,
                "vocab_size": VOCAB
            }),
            stored: DType::F32,
            shards: 1,
            inv_freq: false,
            stray_lm_head: false,
            blobs: false,
        },
        Layout {
            repo_id: "HuggingFaceTB/SmolLM2-tiny-Instruct",
            config: smollm,
            // No hidden_act, rope_theta or rms_norm_eps: LlamaConfig's defaults apply.
            hf_config: json!({
                "architectures": ["LlamaForCausalLM"],
                "bos_token_id": 1,
                "eos_token_id": 2,
                "hidden_size": 32,
                "initializer_range": 0.02,
                "intermediate_size": 64,
                "max_position_embeddings": 256,
                "model_type": "llama",
                "num_attention_heads": 4,
                "num_hidden_layers": 2,
                "num_key_value_heads": 2,
                "pad_token_id": 2,
                "pretraining_tp": 1,
                "rope_scaling": null,
                "tie_word_embeddings": true,
                "torch_dtype": "float32",
                "transformers_version": "4.42.3",
                "use_cache": true,
                "vocab_size": VOCAB
            }),
            stored: DType::F32,
            shards: 2,
            inv_freq: true,
            stray_lm_head: false,
            blobs: false,
        },
    ]
}

/// A fresh folder under the system's temporary one.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("agentr-hf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Random weights for every parameter of `config` (norms near 1), from a seeded generator.
fn random_weights(config: &ModelConfig, seed: u64) -> HashMap<String, Tensor> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    Llama::parameter_shapes(config)
        .into_iter()
        .map(|(name, shape)| {
            let count = shape.iter().product();
            let (base, scale) = if name.ends_with("norm.weight") {
                (1.0, 0.2)
            } else if name.contains("embed") || name.starts_with("lm_head") {
                (0.0, 1.0)
            } else {
                (0.0, 0.3)
            };
            let values: Vec<f32> = (0..count).map(|_| base + scale * uniform()).collect();
            let tensor = Tensor::from_vec(values, shape, &Device::Cpu).unwrap();
            (name, tensor)
        })
        .collect()
}

/// `weights` as the layout stores them (rounded to its dtype), back in f32.
fn as_stored(weights: &HashMap<String, Tensor>, dtype: DType) -> HashMap<String, Tensor> {
    weights
        .iter()
        .map(|(name, t)| {
            let t = t.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap();
            (name.clone(), t)
        })
        .collect()
}

fn tokenizer() -> ChatTokenizer {
    let texts = [
        "Goal: craft a stick. Thought: sticks need planks.",
        "Action: get 1 oak logs",
        "Observation: Got 1 oak logs.",
    ];
    let tokenizer = ChatTokenizer::train(texts.iter(), 300).unwrap();
    assert!(tokenizer.vocab_size() <= VOCAB);
    tokenizer
}

/// Writes the layout's checkpoint files into `dir`: `config.json`, the weights (with the
/// extras the layout carries) and `tokenizer.json`.
fn write_checkpoint(dir: &Path, layout: &Layout, weights: &HashMap<String, Tensor>) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::to_string_pretty(&layout.hf_config).unwrap();
    std::fs::write(dir.join(hf::CONFIG_FILE), config).unwrap();
    let mut stored: Vec<(String, Tensor)> = weights
        .iter()
        .map(|(name, t)| (name.clone(), t.to_dtype(layout.stored).unwrap()))
        .collect();
    stored.sort_by(|a, b| a.0.cmp(&b.0));
    if layout.inv_freq {
        let half = layout.config.head_dim() / 2;
        for layer in 0..layout.config.num_hidden_layers {
            let inv_freq = Tensor::ones(half, DType::F32, &Device::Cpu).unwrap();
            stored.push((
                format!("model.layers.{layer}.self_attn.rotary_emb.inv_freq"),
                inv_freq,
            ));
        }
    }
    if layout.stray_lm_head {
        let embeddings = stored
            .iter()
            .find(|(name, _)| name == "model.embed_tokens.weight")
            .map(|(_, t)| t.clone())
            .unwrap();
        stored.push(("lm_head.weight".into(), embeddings));
    }
    if layout.shards == 1 {
        let map: HashMap<String, Tensor> = stored.into_iter().collect();
        candle_core::safetensors::save(&map, dir.join(hf::WEIGHTS_FILE)).unwrap();
    } else {
        let per_shard = stored.len().div_ceil(layout.shards);
        let mut weight_map = serde_json::Map::new();
        for (index, chunk) in stored.chunks(per_shard).enumerate() {
            let file = format!("model-{:05}-of-{:05}.safetensors", index + 1, layout.shards);
            for (name, _) in chunk {
                weight_map.insert(name.clone(), json!(file));
            }
            let map: HashMap<String, Tensor> = chunk.iter().cloned().collect();
            candle_core::safetensors::save(&map, dir.join(&file)).unwrap();
        }
        let index = json!({"metadata": {"total_size": 12345}, "weight_map": weight_map});
        std::fs::write(
            dir.join(hf::WEIGHTS_INDEX_FILE),
            serde_json::to_string_pretty(&index).unwrap(),
        )
        .unwrap();
    }
    tokenizer().save(&dir.join(hf::TOKENIZER_FILE)).unwrap();
}

fn commit_hash(seed: usize) -> String {
    format!("{seed:08x}{}", "ab12".repeat(8))
}

/// Moves the checkpoint in `staged` into the hub cache `cache` as `repo_id` at commit `hash`,
/// with `refs/main` (and each of `tags`) pointing to it.
fn install(cache: &Path, repo_id: &str, hash: &str, staged: &Path, blobs: bool, tags: &[&str]) {
    let repo_dir = cache.join(format!("models--{}", repo_id.replace('/', "--")));
    let snapshot = repo_dir.join("snapshots").join(hash);
    std::fs::create_dir_all(&snapshot).unwrap();
    for (index, entry) in std::fs::read_dir(staged).unwrap().enumerate() {
        let entry = entry.unwrap();
        let target = snapshot.join(entry.file_name());
        if blobs {
            #[cfg(unix)]
            {
                let blob = repo_dir.join("blobs").join(format!("{index:064x}"));
                std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
                std::fs::copy(entry.path(), &blob).unwrap();
                let relative = Path::new("../../blobs").join(blob.file_name().unwrap());
                std::os::unix::fs::symlink(relative, &target).unwrap();
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    for (index, tag) in std::iter::once(&"main").chain(tags).enumerate() {
        // Hand-made refs may end in a newline; huggingface_hub writes none.
        let newline = if index % 2 == 1 { "\n" } else { "" };
        std::fs::write(repo_dir.join("refs").join(tag), format!("{hash}{newline}")).unwrap();
    }
}

fn logits(model: &Llama) -> Vec<f32> {
    let ids = Tensor::new(&[[1u32, 5, 17, 300, 42, 7, 0, 319, 256, 3]], &Device::Cpu).unwrap();
    model
        .forward(&ids, None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A cache holding every layout, with each layout's original weights.
struct Fixture {
    root: TempDir,
    cache: PathBuf,
    weights: Vec<HashMap<String, Tensor>>,
}

fn fixture(name: &str) -> Fixture {
    let root = TempDir::new(name);
    let cache = root.0.join("hub");
    let mut weights = Vec::new();
    for (index, layout) in layouts().iter().enumerate() {
        let original = random_weights(&layout.config, index as u64 + 1);
        let staged = root.0.join(format!("staged-{index}"));
        write_checkpoint(&staged, layout, &original);
        install(
            &cache,
            layout.repo_id,
            &commit_hash(index),
            &staged,
            layout.blobs,
            &["v1.0"],
        );
        std::fs::remove_dir_all(&staged).unwrap();
        weights.push(original);
    }
    Fixture {
        root,
        cache,
        weights,
    }
}

#[test]
fn hub_layouts_resolve_and_load_with_the_original_logits() {
    let fixture = fixture("layouts");
    let cache = HubCache::new(&fixture.cache, true);
    for (index, layout) in layouts().iter().enumerate() {
        let snapshot = cache.resolve(layout.repo_id).unwrap();
        assert!(
            snapshot.ends_with(format!("snapshots/{}", commit_hash(index))),
            "{}: {}",
            layout.repo_id,
            snapshot.display()
        );
        for spec in [
            format!("{}@v1.0", layout.repo_id),
            format!("{}@{}", layout.repo_id, commit_hash(index)),
        ] {
            assert_eq!(cache.resolve(&spec).unwrap(), snapshot, "{spec}");
        }

        let loaded = Llama::load(&snapshot, &Device::Cpu).unwrap();
        assert_eq!(loaded.config(), &layout.config, "{}", layout.repo_id);
        assert_eq!(loaded.dtype(), DType::F32);
        let original = &fixture.weights[index];
        let reference = Llama::from_weights(
            layout.config.clone(),
            as_stored(original, layout.stored),
            &Device::Cpu,
        )
        .unwrap();
        let got = logits(&loaded);
        let exact = max_difference(&got, &logits(&reference));
        assert!(exact < 1e-5, "{}: {exact}", layout.repo_id);
        let unrounded =
            Llama::from_weights(layout.config.clone(), original.clone(), &Device::Cpu).unwrap();
        let want = logits(&unrounded);
        let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let tolerance = if layout.stored == DType::F32 {
            1e-5
        } else {
            0.02
        } * scale.max(1.0);
        let drift = max_difference(&got, &want);
        assert!(
            drift < tolerance,
            "{}: {drift} > {tolerance}",
            layout.repo_id
        );

        let agent = ModelAgent::load(&snapshot, &Device::Cpu).unwrap();
        assert_eq!(agent.model.config(), &layout.config);
        assert_eq!(agent.tokenizer.vocab_size(), tokenizer().vocab_size());
    }
}

#[test]
fn a_saved_model_is_a_checkpoint_the_hub_cache_serves() {
    let root = TempDir::new("saved");
    let mut config = tiny(ModelType::Qwen2, false);
    config.rope_scaling = layouts()[0].config.rope_scaling.clone();
    let model = Llama::new(config.clone(), &Device::Cpu, 3).unwrap();
    let staged = root.0.join("staged");
    model.save(&staged).unwrap();
    tokenizer().save(&staged.join(hf::TOKENIZER_FILE)).unwrap();
    let cache = root.0.join("hub");
    install(&cache, "me/saved", &commit_hash(9), &staged, false, &[]);
    let snapshot = HubCache::new(&cache, true).resolve("me/saved").unwrap();
    let loaded = Llama::load(&snapshot, &Device::Cpu).unwrap();
    assert_eq!(loaded.config(), &config);
    assert_eq!(logits(&loaded), logits(&model));
    let bf16 = Llama::load_as(&snapshot, &Device::Cpu, DType::BF16).unwrap();
    assert_eq!(bf16.dtype(), DType::BF16);
}

/// What a broken checkpoint or cache must say.
struct Broken {
    name: &'static str,
    /// Breaks the fixture's cache (layouts: 0 Llama 3, 1 Qwen2.5, 2 SmolLM2).
    breakage: fn(&Path),
    /// Loads or resolves; the error it returns.
    attempt: fn(&Path) -> agentr_train::TrainError,
    /// Texts the error message must contain.
    expected: &'static [&'static str],
}

fn snapshot_of(cache: &Path, layout: usize) -> PathBuf {
    cache
        .join(format!(
            "models--{}",
            layouts()[layout].repo_id.replace('/', "--")
        ))
        .join("snapshots")
        .join(commit_hash(layout))
}

fn remove(cache: &Path, layout: usize, file: &str) {
    std::fs::remove_file(snapshot_of(cache, layout).join(file)).unwrap();
}

fn edit_config(cache: &Path, layout: usize, key: &str, value: Value) {
    let path = snapshot_of(cache, layout).join(hf::CONFIG_FILE);
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[key] = value;
    // Replace rather than write through a link into blobs/.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, config.to_string()).unwrap();
}

fn load_err(cache: &Path, layout: usize) -> agentr_train::TrainError {
    Llama::load(&snapshot_of(cache, layout), &Device::Cpu)
        .err()
        .expect("loading must fail")
}

fn resolve_err(cache: &Path, spec: &str) -> agentr_train::TrainError {
    HubCache::new(cache, true)
        .resolve(spec)
        .expect_err("resolving must fail")
}

fn broken_cases() -> Vec<Broken> {
    vec![
        Broken {
            name: "missing shard",
            breakage: |cache| remove(cache, 2, "model-00002-of-00002.safetensors"),
            attempt: |cache| load_err(cache, 2),
            expected: &["model-00002-of-00002.safetensors", "missing"],
        },
        Broken {
            name: "tensor not in the shard the index names",
            breakage: |cache| {
                let path = snapshot_of(cache, 0).join(hf::WEIGHTS_INDEX_FILE);
                let mut index: Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                index["weight_map"]["model.norm.weight"] =
                    json!("model-00001-of-00003.safetensors");
                index["weight_map"]["model.embed_tokens.weight"] =
                    json!("model-00003-of-00003.safetensors");
                std::fs::remove_file(&path).unwrap();
                std::fs::write(&path, index.to_string()).unwrap();
            },
            attempt: |cache| load_err(cache, 0),
            expected: &["model-0000", "of-00003.safetensors", "no tensor model."],
        },
        Broken {
            name: "no weights at all",
            breakage: |cache| remove(cache, 1, hf::WEIGHTS_FILE),
            attempt: |cache| load_err(cache, 1),
            expected: &["model.safetensors", "model.safetensors.index.json"],
        },
        Broken {
            name: "gelu activation",
            breakage: |cache| edit_config(cache, 2, "hidden_act", json!("gelu")),
            attempt: |cache| load_err(cache, 2),
            expected: &["config.json", "gelu", "hidden_act"],
        },
        Broken {
            name: "unknown model_type",
            breakage: |cache| edit_config(cache, 1, "model_type", json!("gemma2")),
            attempt: |cache| load_err(cache, 1),
            expected: &["config.json", "gemma2", "not supported"],
        },
        Broken {
            name: "weights of another shape",
            breakage: |cache| edit_config(cache, 1, "intermediate_size", json!(48)),
            attempt: |cache| load_err(cache, 1),
            expected: &["misshaped", "mlp.up_proj.weight"],
        },
        Broken {
            name: "offline with the tokenizer missing",
            breakage: |cache| remove(cache, 0, hf::TOKENIZER_FILE),
            attempt: |cache| resolve_err(cache, layouts()[0].repo_id),
            expected: &[
                "tokenizer.json",
                "HF_HUB_OFFLINE",
                "meta-llama/Llama-3.2-tiny-Instruct",
            ],
        },
        Broken {
            name: "offline with a shard missing",
            breakage: |cache| remove(cache, 0, "model-00003-of-00003.safetensors"),
            attempt: |cache| resolve_err(cache, layouts()[0].repo_id),
            expected: &["model-00003-of-00003.safetensors", "HF_HUB_OFFLINE"],
        },
        Broken {
            name: "revision not in refs",
            breakage: |_| {},
            attempt: |cache| resolve_err(cache, "Qwen/Qwen2.5-tiny-Instruct@v2"),
            expected: &[
                "Qwen/Qwen2.5-tiny-Instruct@v2",
                "refs",
                "cached revisions: main, v1.0",
            ],
        },
        Broken {
            name: "model not in the cache",
            breakage: |_| {},
            attempt: |cache| resolve_err(cache, "nobody/nothing"),
            expected: &[
                "nobody/nothing@main",
                "not in the Hugging Face cache",
                "HF_HUB_OFFLINE",
            ],
        },
        Broken {
            name: "not a model id",
            breakage: |_| {},
            attempt: |cache| resolve_err(cache, "a/b/c"),
            expected: &["\"a/b/c\"", "org/name"],
        },
    ]
}

#[test]
fn broken_checkpoints_and_caches_say_what_is_wrong() {
    for case in broken_cases() {
        let fixture = fixture("broken");
        (case.breakage)(&fixture.cache);
        let message = (case.attempt)(&fixture.cache).to_string();
        eprintln!("{}: {message}", case.name);
        for needle in case.expected {
            assert!(
                message.contains(needle),
                "{}: {message:?} lacks {needle:?}",
                case.name
            );
        }
        drop(fixture.root);
    }
}

/// Without the `hub` feature nothing downloads, offline or not: the error says how to fetch.
#[cfg(not(feature = "hub"))]
#[test]
fn without_the_hub_feature_missing_files_are_named_with_how_to_fetch_them() {
    let fixture = fixture("nohub");
    remove(&fixture.cache, 1, hf::TOKENIZER_FILE);
    let online = HubCache::new(&fixture.cache, false);
    let message = online
        .resolve("Qwen/Qwen2.5-tiny-Instruct@v1.0")
        .unwrap_err()
        .to_string();
    for needle in [
        "tokenizer.json",
        "huggingface-cli download Qwen/Qwen2.5-tiny-Instruct --revision v1.0",
        "--features hub",
    ] {
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
    assert!(hf::is_repo_id("Qwen/Qwen2.5-tiny-Instruct@v1.0"));
}
