//! The model as an agent: a [`Policy`](agentr_mcts::Policy) for search and evaluation and a
//! [`Judge`](agentr_revise::Judge) for first-error detection.

use std::path::{Path, PathBuf};

use agentr_envs::Message;
use agentr_mcts::{Policy, SampleRequest};
use agentr_revise::{Judge, JudgeRequest, Judgement, judge_prompt, parse_judgement};
use candle_core::{DType, Device};

use agentr_revise::Label;
use serde::{Deserialize, Serialize};

use crate::{
    ChatTokenizer, Generated, GenerationConfig, GenerationRequest, Llama, PrefixCache, TrainError,
    fit_conversation, generate::next_token_logits, generate_detailed, generate_with_cache,
};

/// Tokens the judge may write (reasons plus the label line).
const JUDGE_TOKENS: usize = 192;

/// How a scored judge's reply starts (the label line of the verifier prompt).
const SCORED_ANSWER_START: &str = "Judgment:";

/// Prompts whose keys and values an agent keeps for reuse (a few MB each for tiny models):
/// enough for the episodes of a few workers and the recent nodes of a search.
const CACHED_PROMPTS: usize = 16;

/// How the model, as a judge, gives its verdict on the verifier prompt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JudgeAnswer {
    /// It writes its reasons and a `Judgment: <label>` line, which is parsed (the paper's
    /// verifier; an answer without that line counts as uncertain).
    #[default]
    Written,
    /// Its reply is started for it with `Judgment:`, and the verdict is the label whose first
    /// token it finds likelier next (Good or Bad). For models too small to follow the answer
    /// format: SmolLM2-135M-Instruct echoes the task instead of writing a label line (the
    /// golden answers in agentr-revise's tests), but its next-token distribution after
    /// `Judgment:` still says which label it prefers.
    Scored,
}

/// The weights generation reads: the model's own (f32 on the CPU), or 8-bit copies for the
/// decoding steps ([`Llama::quantize_for_generation`]), which run about twice as fast on the
/// CPU and may change a greedy choice where two tokens are nearly tied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GenerationWeights {
    /// The model's weights as loaded.
    #[default]
    F32,
    /// 8-bit copies for decoding (CPU only).
    Int8,
}

impl GenerationWeights {
    /// `f32` or `int8`.
    pub fn as_str(self) -> &'static str {
        match self {
            GenerationWeights::F32 => "f32",
            GenerationWeights::Int8 => "int8",
        }
    }
}

impl std::str::FromStr for GenerationWeights {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(GenerationWeights::F32),
            "int8" => Ok(GenerationWeights::Int8),
            other => Err(format!("unknown weights `{other}` (expected f32 or int8)")),
        }
    }
}

impl std::fmt::Display for GenerationWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A model with its tokenizer and sampling settings.
pub struct ModelAgent {
    /// The decoder.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: ChatTokenizer,
    /// Sampling settings (temperature and seed come from each request).
    pub generation: GenerationConfig,
    /// Where the model was loaded from (recorded as the judge's name).
    pub source: PathBuf,
    /// How it answers as a judge.
    pub judge_answer: JudgeAnswer,
    /// A [`JudgeAnswer::Scored`] judge calls a step Bad when its probability of Bad
    /// (renormalised over the two labels) exceeds this; 0.5, the default, takes the likelier
    /// label. A small model's preference can lean one way on every step while still ranking
    /// the steps, and a threshold calibrated on labelled trees reads that ranking.
    pub bad_above: f64,
    prefixes: PrefixCache,
}

impl ModelAgent {
    /// Loads a Hugging Face checkpoint folder `dir` (`config.json`, safetensors weights,
    /// `tokenizer.json`; see [`Llama::load_as`]) or, when `dir` is a `.gguf` file, the model
    /// and tokenizer in it ([`crate::gguf::load`]). The weights take the device's
    /// [`inference_dtype`](crate::inference_dtype): bf16 on a GPU, f32 on the CPU.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, TrainError> {
        Self::load_as(dir, device, crate::inference_dtype(device))
    }

    /// [`ModelAgent::load`] with the weights in `dtype` (f32 for full fine-tuning, which
    /// needs f32 weights whatever the device).
    pub fn load_as(dir: &Path, device: &Device, dtype: DType) -> Result<Self, TrainError> {
        if dir.extension().is_some_and(|e| e == "gguf") && dir.is_file() {
            let (model, tokenizer) = crate::gguf::load(dir, device)?;
            let model = if model.dtype() == dtype {
                model
            } else {
                model.with_dtype(dtype)?
            };
            return Ok(Self::new(model, tokenizer, dir));
        }
        let model = Llama::load_as(dir, device, dtype)?;
        let tokenizer = ChatTokenizer::load(&dir.join("tokenizer.json"))?;
        if tokenizer.vocab_size() > model.config().vocab_size {
            return Err(TrainError::BadFile {
                path: dir.join("tokenizer.json"),
                message: format!(
                    "the tokenizer has {} tokens but the model only {}",
                    tokenizer.vocab_size(),
                    model.config().vocab_size
                ),
            });
        }
        Ok(Self::new(model, tokenizer, dir))
    }

    /// An agent from a model and its tokenizer; `source` names it in judge records.
    pub fn new(model: Llama, tokenizer: ChatTokenizer, source: &Path) -> Self {
        ModelAgent {
            model,
            tokenizer,
            generation: GenerationConfig {
                max_new_tokens: 128,
                ..GenerationConfig::default()
            },
            source: source.to_owned(),
            judge_answer: JudgeAnswer::default(),
            bad_above: 0.5,
            prefixes: PrefixCache::new(CACHED_PROMPTS),
        }
    }

    /// Makes generation read `weights` ([`GenerationWeights`]).
    pub fn use_weights(&mut self, weights: GenerationWeights) -> Result<(), TrainError> {
        match weights {
            GenerationWeights::F32 => self.model.drop_quantized(),
            GenerationWeights::Int8 => self.model.quantize_for_generation()?,
        }
        Ok(())
    }

    /// Writes model and tokenizer into `dir` as a Hugging Face model folder
    /// ([`Llama::save`], [`ChatTokenizer::save_pretrained`]).
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        self.model.save(dir)?;
        self.tokenizer.save_pretrained(dir)
    }

    /// `n` responses to the conversation (the oldest turns are dropped when it does not fit).
    pub fn respond(
        &self,
        conversation: &[Message],
        n: usize,
        temperature: f64,
        seed: u64,
    ) -> Result<Vec<String>, TrainError> {
        let generation = GenerationConfig {
            temperature,
            ..self.generation.clone()
        };
        let completion = self.complete(conversation, n, &generation, seed)?;
        Ok(completion.samples.into_iter().map(|s| s.text).collect())
    }

    /// [`respond`](Self::respond) with every sampling setting given (`self.generation` is not
    /// used), reporting the prompt's length and each sample's token count and finish reason.
    pub fn complete(
        &self,
        conversation: &[Message],
        n: usize,
        generation: &GenerationConfig,
        seed: u64,
    ) -> Result<AgentCompletion, TrainError> {
        let budget = self.model.config().max_position_embeddings;
        let fitted = fit_conversation(
            &self.tokenizer,
            conversation,
            budget,
            generation.max_new_tokens,
        )?;
        let prompt = self.tokenizer.render_prompt(&fitted)?;
        let request = GenerationRequest {
            prompt: &prompt,
            n,
            config: generation,
            seed,
        };
        let samples = generate_detailed(&self.model, &self.tokenizer, &request, &self.prefixes)?;
        Ok(AgentCompletion {
            prompt_tokens: prompt.len(),
            samples,
        })
    }
}

/// What [`ModelAgent::complete`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCompletion {
    /// Tokens of the prompt the model saw (after old turns were dropped to fit).
    pub prompt_tokens: usize,
    /// The samples, in order.
    pub samples: Vec<Generated>,
}

impl Policy for ModelAgent {
    type Error = TrainError;

    fn sample(&self, request: &SampleRequest<'_>) -> Result<Vec<String>, TrainError> {
        self.respond(
            request.conversation,
            request.n,
            request.temperature,
            request.seed,
        )
    }

    /// `model:<folder>`, with ` (int8 generation)` when 8-bit generation weights are on (they
    /// sample other tokens than f32 weights).
    fn describe(&self) -> Option<String> {
        let weights = if self.model.is_quantized() {
            " (int8 generation)"
        } else {
            ""
        };
        Some(format!("model:{}{weights}", self.source.display()))
    }
}

impl ModelAgent {
    /// The verdict of a [`JudgeAnswer::Scored`] judge on `prompt` (which ends with the start
    /// of its answer): Good or Bad, whichever label's first token is likelier next, with both
    /// probabilities (renormalised over the two) as the rationale.
    fn scored_verdict(&self, prompt: &[u32]) -> Result<Judgement, TrainError> {
        let first_token = |word: &str| -> Result<Option<u32>, TrainError> {
            Ok(self.tokenizer.encode(word)?.first().copied())
        };
        let (good, bad) = (first_token(" Good")?, first_token(" Bad")?);
        let (Some(good), Some(bad)) = (good, bad) else {
            return Ok(unscorable("the labels have no tokens"));
        };
        if good == bad {
            return Ok(unscorable("the labels start with the same token"));
        }
        let logits = next_token_logits(&self.model, prompt, &self.prefixes)?;
        let (Some(&good_logit), Some(&bad_logit)) =
            (logits.get(good as usize), logits.get(bad as usize))
        else {
            return Ok(unscorable(
                "the labels' tokens are outside the model's vocabulary",
            ));
        };
        let p_bad = 1.0 / (1.0 + f64::from(good_logit - bad_logit).exp());
        let label = if p_bad > self.bad_above {
            Label::Bad
        } else {
            Label::Good
        };
        Ok(Judgement {
            label,
            rationale: format!(
                "scored after `{SCORED_ANSWER_START}`: Good {:.3}, Bad {p_bad:.3}",
                1.0 - p_bad
            ),
            parsed: true,
        })
    }
}

/// The verdict of a scored judge that cannot score: uncertain, unparsed.
fn unscorable(why: &str) -> Judgement {
    Judgement {
        label: Label::Uncertain,
        rationale: format!("not scored: {why}"),
        parsed: false,
    }
}

impl Judge for ModelAgent {
    type Error = TrainError;

    fn name(&self) -> String {
        match self.judge_answer {
            JudgeAnswer::Written => format!("model:{}", self.source.display()),
            JudgeAnswer::Scored => format!("model:{} (scored)", self.source.display()),
        }
    }

    fn judge(&self, request: &JudgeRequest<'_>) -> Result<Judgement, TrainError> {
        // Like the policy's context budget: the oldest history steps go first.
        let budget = self.model.config().max_position_embeddings;
        let mut trimmed = request.clone();
        let mut prompt = self.tokenizer.render_prompt(&judge_prompt(&trimmed))?;
        // A scored judge needs room for its answer's start only, but the same history keeps
        // the two kinds of judge comparable.
        while prompt.len() + JUDGE_TOKENS > budget && !trimmed.history.is_empty() {
            trimmed.history.remove(0);
            prompt = self.tokenizer.render_prompt(&judge_prompt(&trimmed))?;
        }
        if self.judge_answer == JudgeAnswer::Scored {
            prompt.extend(self.tokenizer.encode(SCORED_ANSWER_START)?);
            return self.scored_verdict(&prompt);
        }
        let generation = GenerationConfig {
            max_new_tokens: JUDGE_TOKENS,
            temperature: 0.0,
            ..self.generation.clone()
        };
        let request = GenerationRequest {
            prompt: &prompt,
            n: 1,
            config: &generation,
            seed: 0,
        };
        let answer = generate_with_cache(&self.model, &self.tokenizer, &request, &self.prefixes)?;
        Ok(parse_judgement(answer.first().map_or("", String::as_str)))
    }
}
