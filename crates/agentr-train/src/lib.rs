//! The learning part of agentr: a byte-level BPE tokenizer with ChatML rendering and loss
//! masks, a Llama-family decoder written with differentiable candle operations, an SFT trainer
//! with exact resume, generation with a KV cache, and the model as search policy and judge.

#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod agent;
mod attention;
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
    FinishReason, Generated, GenerationConfig, PrefixCache, continuation_logprob, fit_conversation,
    generate, generate_detailed, generate_with_cache, next_token_logits,
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
