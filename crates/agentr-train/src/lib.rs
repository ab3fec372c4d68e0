//! The learning part of agentr: a byte-level BPE tokenizer with ChatML rendering and loss
//! masks, a Llama-family decoder written with differentiable candle operations, an SFT trainer
//! with exact resume, generation with a KV cache, and the model as search policy and judge.
//! Pretrained checkpoints load from GGUF files ([`gguf`]) and Hugging Face folders ([`hf`]);
//! [`lora`] fine-tunes them with adapters.
//!
//! A tiny model from scratch: a tokenizer trained on the chats, three optimizer steps, then a
//! sampled answer (the `tiny-s` preset has about a million parameters, so this runs in a
//! moment):
//!
//! ```
//! use agentr_envs::Message;
//! use agentr_train::{ChatTokenizer, Llama, ModelAgent, ModelConfig, SftConfig, TrainData, train};
//! use candle_core::Device;
//!
//! let chats = vec![vec![
//!     Message::user("Goal: craft stick."),
//!     Message::assistant("Thought: sticks need planks.\nAction: get 1 oak logs", true),
//! ]];
//! let texts = chats.iter().flatten().map(|message| message.content.clone());
//! let tokenizer = ChatTokenizer::train(texts, 512)?;
//! let config = ModelConfig::preset("tiny-s", tokenizer.vocab_size()).expect("a preset");
//! let mut model = Llama::new(config, &Device::Cpu, 0)?;
//! let data = TrainData {
//!     agent: chats.iter().map(|chat| tokenizer.render(chat)).collect::<Result<_, _>>()?,
//!     general: Vec::new(),
//! };
//! let dir = std::env::temp_dir().join(format!("agentr-train-example-{}", std::process::id()));
//! let settings = SftConfig { steps: Some(3), ..SftConfig::default() };
//! let mut losses = Vec::new();
//! train(&mut model, &data, &settings, &dir, false, &mut |step| {
//!     losses.push(step.loss);
//!     true // go on
//! })?;
//! assert_eq!(losses.len(), 3);
//!
//! let agent = ModelAgent::new(model, tokenizer, &dir);
//! let answers = agent.respond(&chats[0][..1], 2, 1.0, 7)?;
//! assert_eq!(answers.len(), 2);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), agentr_train::TrainError>(())
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod agent;
mod attention;
mod block;
mod device;
mod error;
mod frozen;
mod fused;
mod generate;
pub mod gguf;
pub mod hf;
pub mod lora;
mod loss;
mod matvec;
mod model;
pub mod openai;
mod optim;
mod parallel;
mod products;
mod runtime;
mod sft;
mod tokenizer;

pub use agent::{AgentCompletion, GenerationWeights, JudgeAnswer, ModelAgent};
pub use device::{DeviceChoice, inference_dtype};
pub use error::TrainError;
pub use generate::{
    FinishReason, Generated, GenerationConfig, GenerationRequest, PrefixCache,
    continuation_logprob, fit_conversation, generate, generate_detailed, generate_with_cache,
    next_token_logits,
};
pub use lora::LoraConfig;
pub use loss::masked_cross_entropy;
pub use model::{KvCache, Llama, ModelConfig, ModelType, PROJECTIONS, RopeScaling};
pub use optim::{AdamW, AdamWConfig, clip_global_norm, learning_rate};
pub use runtime::tune_runtime;
pub use sft::{RunFiles, SftConfig, StepReport, TrainData, TrainOutcome, train};
pub use tokenizer::{ChatFormat, ChatTokenizer, END_OF_TEXT, IM_END, IM_START, Rendered};

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
