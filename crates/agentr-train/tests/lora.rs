//! LoRA end to end: adapters trained by the SFT trainer while the base stays bit-identical,
//! saved and loaded in PEFT's layout, merged and exported as a Hugging Face checkpoint that
//! reloads with the merged model's logits; and an adapter as PEFT writes it.

use std::collections::HashMap;
use std::path::PathBuf;

use agentr_train::lora::{ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use agentr_train::{
    Llama, LoraConfig, ModelConfig, ModelType, Rendered, SftConfig, TrainData, train,
};
use candle_core::{DType, Device, Tensor, Var};

fn model_config(model_type: ModelType) -> ModelConfig {
    ModelConfig {
        vocab_size: 40,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 128,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-5,
        // Qwen2's q, k and v biases, with untied embeddings; plain Llama with tied ones.
        tie_word_embeddings: model_type == ModelType::Llama,
        model_type,
        attention_bias: false,
        rope_scaling: None,
    }
}

/// Counting sequences modulo 40 from every start: after the two prompt tokens the model must
/// continue in steps of `stride` (5, 6, 7, ... or 5, 8, 11, ...).
fn data(n: usize, stride: u32) -> TrainData {
    let agent = (0..n)
        .map(|i| {
            let start = (i % 40) as u32;
            let len = 6 + i % 7;
            let ids: Vec<u32> = (0..len as u32).map(|k| (start + stride * k) % 40).collect();
            let mask = (0..len).map(|k| k >= 2).collect();
            Rendered { ids, mask }
        })
        .collect();
    TrainData {
        agent,
        general: Vec::new(),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agentr-lora-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn values(vars: &[(String, Var)]) -> Vec<(String, Vec<f32>)> {
    vars.iter()
        .map(|(name, var)| {
            let flat = var.as_tensor().flatten_all().unwrap();
            (name.clone(), flat.to_vec1::<f32>().unwrap())
        })
        .collect()
}

fn input() -> Tensor {
    let ids: Vec<u32> = (0..2 * 9).map(|i| (i * 7 % 40) as u32).collect();
    Tensor::from_vec(ids, (2, 9), &Device::Cpu).unwrap()
}

fn logits(model: &Llama) -> Vec<f32> {
    model
        .forward(&input(), None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
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
fn lora_trains_only_the_adapters_and_exports_a_hugging_face_checkpoint() {
    for (model_type, architecture) in [
        (ModelType::Llama, "LlamaForCausalLM"),
        (ModelType::Qwen2, "Qwen2ForCausalLM"),
    ] {
        let config = model_config(model_type);
        let dir = temp_dir(architecture);
        // The base: a model that learned to count in ones (a random tiny base cannot express
        // confident predictions through its frozen embeddings and head). The adapters then
        // teach it to count in threes.
        let mut model = Llama::new(config.clone(), &Device::Cpu, 5).unwrap();
        let pretraining = SftConfig {
            epochs: 8,
            lr: 1e-2,
            warmup_ratio: 0.1,
            batch_tokens: 64,
            checkpoint_every: 1000,
            ..SftConfig::default()
        };
        let base_dir = dir.join("base");
        train(
            &mut model,
            &data(40, 1),
            &pretraining,
            &base_dir,
            false,
            &mut |_| true,
        )
        .unwrap();
        model.save(&base_dir).unwrap();
        let base_copy = || Llama::load(&base_dir, &Device::Cpu).unwrap();
        // The base variables themselves: they stay readable while the adapters hide them.
        let base = model.parameters();
        let base_before = values(&base);
        let base_logits = logits(&model);
        model.attach_lora(&LoraConfig::with_rank(4), 1).unwrap();
        assert_eq!(logits(&model), base_logits, "attaching changes nothing");
        let adapters_before = values(&model.parameters());
        assert!(
            adapters_before
                .iter()
                .all(|(name, _)| name.contains(".lora_"))
        );

        let sft = SftConfig {
            epochs: 8,
            lr: 2e-2,
            warmup_ratio: 0.1,
            batch_tokens: 64,
            checkpoint_every: 1000,
            ..SftConfig::default()
        };
        let mut losses = Vec::new();
        train(
            &mut model,
            &data(40, 3),
            &sft,
            &dir.join("run"),
            false,
            &mut |r| {
                losses.push(r.loss);
                true
            },
        )
        .unwrap();

        // (a) Only the adapters changed; every one of them did.
        assert_eq!(values(&base), base_before, "{architecture}: the base moved");
        for ((name, before), (_, after)) in adapters_before.iter().zip(values(&model.parameters()))
        {
            assert_ne!(before, &after, "{architecture}: {name} did not train");
        }
        // (b) The loss went down.
        let first = losses[..3].iter().sum::<f64>() / 3.0;
        let last = losses[losses.len() - 3..].iter().sum::<f64>() / 3.0;
        assert!(
            last < first * 0.25,
            "{architecture}: loss went from {first:.3} to {last:.3}: {losses:?}"
        );
        let adapted = logits(&model);
        assert_ne!(adapted, base_logits);

        // (c) The saved adapter on a fresh copy of the base gives identical logits.
        model
            .save_adapter_with_base(&dir.join("adapter"), "base")
            .unwrap();
        let mut fresh = base_copy();
        fresh.load_adapter(&dir.join("adapter")).unwrap();
        assert_eq!(fresh.lora_config(), model.lora_config());
        assert_eq!(logits(&fresh), adapted);

        // (d) Merged and saved, the checkpoint reloads with the merged model's logits.
        model.merge_lora().unwrap();
        assert!(!model.has_adapters());
        let merged = logits(&model);
        let difference = max_relative_difference(&adapted, &merged);
        assert!(
            difference < 1e-4,
            "{architecture}: merging moved by {difference}"
        );
        model.save(&dir.join("merged")).unwrap();
        let exported = Llama::load(&dir.join("merged"), &Device::Cpu).unwrap();
        assert_eq!(exported.config(), &config);
        assert_eq!(logits(&exported), merged);
        // The same through the non-destructive export of the adapter-loaded copy.
        fresh.export_merged(&dir.join("exported")).unwrap();
        let exported = Llama::load(&dir.join("exported"), &Device::Cpu).unwrap();
        assert_eq!(logits(&exported), merged);

        // (e) The export is a Hugging Face checkpoint: HF config, HF tensor names, no LoRA.
        let text = std::fs::read_to_string(dir.join("merged/config.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["architectures"][0], architecture);
        assert!(!text.contains("lora"));
        let tensors =
            candle_core::safetensors::load(dir.join("merged/model.safetensors"), &Device::Cpu)
                .unwrap();
        let mut saved: Vec<(String, Vec<usize>)> = tensors
            .iter()
            .map(|(name, t)| (name.clone(), t.dims().to_vec()))
            .collect();
        saved.sort();
        assert_eq!(saved, Llama::parameter_shapes(&config));
        if model_type == ModelType::Qwen2 {
            assert!(tensors.contains_key("model.layers.1.self_attn.k_proj.bias"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// An `adapter_config.json` as PEFT 0.13's `save_pretrained` writes it (`target_modules` is a
/// set, so in any order), with f16 weights.
#[test]
fn an_adapter_written_by_peft_loads_and_applies_alpha_over_rank() {
    let config = model_config(ModelType::Llama);
    let dir = temp_dir("peft");
    std::fs::create_dir_all(&dir).unwrap();
    let peft_config = r#"{
  "alpha_pattern": {},
  "auto_mapping": null,
  "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",
  "bias": "none",
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": true,
  "layer_replication": null,
  "layers_pattern": null,
  "layers_to_transform": null,
  "loftq_config": {},
  "lora_alpha": 12,
  "lora_dropout": 0.05,
  "megatron_config": null,
  "megatron_core": "megatron.core",
  "modules_to_save": null,
  "peft_type": "LORA",
  "r": 3,
  "rank_pattern": {},
  "revision": null,
  "target_modules": ["v_proj", "q_proj"],
  "task_type": "CAUSAL_LM",
  "use_dora": false,
  "use_rslora": false
}"#;
    std::fs::write(dir.join(ADAPTER_CONFIG), peft_config).unwrap();
    let mut rng = agentr_envs::rng::Rng::new(3);
    let mut random = |shape: (usize, usize)| {
        let values: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| (rng.unit_f64() as f32 - 0.5) * 0.2)
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap()
    };
    let mut tensors = HashMap::new();
    for layer in 0..2 {
        for (name, out) in [("q_proj", 32), ("v_proj", 16)] {
            let prefix = format!("base_model.model.model.layers.{layer}.self_attn.{name}");
            tensors.insert(format!("{prefix}.lora_A.weight"), random((3, 32)));
            tensors.insert(format!("{prefix}.lora_B.weight"), random((out, 3)));
        }
    }
    candle_core::safetensors::save(&tensors, dir.join(ADAPTER_WEIGHTS)).unwrap();

    let mut model = Llama::new(config.clone(), &Device::Cpu, 5).unwrap();
    // The expected model, built by hand: W + (12 / 3) B A on the adapted projections.
    let mut weights: HashMap<String, Tensor> = model
        .parameters()
        .into_iter()
        .map(|(name, var)| (name, var.as_tensor().clone()))
        .collect();
    for (name, weight) in weights.iter_mut() {
        let Some(projection) = name.strip_suffix(".weight") else {
            continue;
        };
        let a = format!("base_model.model.{projection}.lora_A.weight");
        let b = format!("base_model.model.{projection}.lora_B.weight");
        if let (Some(a), Some(b)) = (tensors.get(&a), tensors.get(&b)) {
            let a = a.to_dtype(DType::F32).unwrap();
            let b = b.to_dtype(DType::F32).unwrap();
            *weight = (&*weight + (b.matmul(&a).unwrap() * 4.0).unwrap()).unwrap();
        }
    }
    let expected = Llama::from_weights(config, weights, &Device::Cpu).unwrap();

    model.load_adapter(&dir).unwrap();
    assert_eq!(
        model.lora_config().unwrap(),
        LoraConfig {
            rank: 3,
            alpha: 12.0,
            targets: vec!["q".into(), "v".into()],
        }
    );
    let difference = max_relative_difference(&logits(&expected), &logits(&model));
    assert!(difference < 1e-4, "{difference}");
    std::fs::remove_dir_all(&dir).unwrap();
}
