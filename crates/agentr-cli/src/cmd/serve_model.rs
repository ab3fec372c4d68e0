//! `agentr serve-model`: a model trained with `agentr train` behind an OpenAI-compatible
//! chat-completions API (`POST /v1/chat/completions`, `GET /v1/models`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentr_envs::Message;
use agentr_envs::rng::Rng;
use agentr_train::openai::{ChatCompletion, ChatCompletionRequest, Choice, ChoiceMessage, Usage};
use agentr_train::{AgentCompletion, GenerationConfig, ModelAgent, TrainError};
use anyhow::{Context, Result, bail};
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};

use crate::http::{self, Body, Handler, ServerOptions};

/// Arguments of `agentr serve-model`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model folder (config.json, model.safetensors, tokenizer.json), a .gguf file,
    /// smollm2-135m (SmolLM2-135M-Instruct, fetched by set-up), or a Hugging Face model id
    /// org/name[@revision] (from the hub cache).
    #[arg(long, value_name = "DIR")]
    pub(crate) model: PathBuf,
    /// Port; 0 picks a free one. The bound address is printed to stderr as
    /// `listening on http://HOST:PORT`.
    #[arg(long, default_value_t = 8000)]
    pub(crate) port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: String,
    /// The model's name in responses and in /v1/models (default: the folder's name). Requests
    /// may name any model; this one answers.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Most new tokens per choice: larger `max_tokens` are lowered to it, and a request
    /// without `max_tokens` gets it.
    #[arg(long, default_value_t = 512)]
    pub(crate) max_tokens_limit: usize,
    /// Most choices (`n`) per request.
    #[arg(long, default_value_t = 64)]
    pub(crate) max_n: usize,
    /// Largest request body in bytes (larger ones get 413).
    #[arg(long, default_value_t = 8 << 20)]
    pub(crate) max_body_bytes: usize,
    #[command(flatten)]
    pub(crate) connections: http::ConnectionArgs,
    #[command(flatten)]
    pub(crate) device: crate::device::DeviceArg,
    #[command(flatten)]
    pub(crate) weights: crate::device::WeightsArg,
}

/// Limits a request is checked against.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_tokens: usize,
    max_n: usize,
    /// The model's context, in tokens.
    context: usize,
    /// The most bytes of text one token stands for: a prompt of more than `context` times
    /// this many bytes cannot fit, and is refused before it is tokenized (a tokenizer holds
    /// many times a text's size in memory while it works).
    token_bytes: usize,
}

/// A checked request, ready for the model.
#[derive(Debug, Clone, PartialEq)]
struct Job {
    messages: Vec<Message>,
    n: usize,
    generation: GenerationConfig,
    seed: u64,
}

/// Reads and checks a request body; the error is the message of a 400 answer. Never panics.
fn parse_job(body: &[u8], limits: Limits, default_seed: u64) -> Result<Job, String> {
    let request: ChatCompletionRequest =
        serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))?;
    if request.stream == Some(true) {
        return Err("streaming (`stream: true`) is not supported".into());
    }
    if request.messages.is_empty() {
        return Err("`messages` must not be empty".into());
    }
    let n = request.n.unwrap_or(1);
    if !(1..=limits.max_n).contains(&n) {
        return Err(format!("`n` must be from 1 to {}", limits.max_n));
    }
    let temperature = request.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err("`temperature` must be from 0 to 2".into());
    }
    let top_p = request.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err("`top_p` must be in (0, 1]".into());
    }
    let max_tokens = request
        .max_tokens
        .or(request.max_completion_tokens)
        .unwrap_or(limits.max_tokens);
    if max_tokens == 0 {
        return Err("`max_tokens` must be at least 1".into());
    }
    let prompt_bytes: usize = request
        .messages
        .iter()
        .map(|m| m.content.text().len())
        .sum();
    if prompt_bytes > limits.context.saturating_mul(limits.token_bytes) {
        return Err(format!(
            "the messages hold {prompt_bytes} bytes, at least {} tokens; the model takes at \
             most {} tokens",
            prompt_bytes / limits.token_bytes.max(1),
            limits.context
        ));
    }
    let stop = request.stop.map(|s| s.strings()).unwrap_or_default();
    if stop.len() > 16 {
        return Err("at most 16 `stop` strings".into());
    }
    let messages = request
        .messages
        .iter()
        .map(|m| Message {
            role: m.role,
            content: m.content.text(),
            loss: None,
        })
        .collect();
    Ok(Job {
        messages,
        n,
        generation: GenerationConfig {
            max_new_tokens: max_tokens.min(limits.max_tokens),
            temperature,
            top_p,
            stop,
        },
        seed: request.seed.map_or(default_seed, |s| s as u64),
    })
}

/// The server's state.
struct ModelServer {
    agent: Arc<ModelAgent>,
    /// One generation at a time: the model's kernels already use every core, and parallel
    /// requests would only multiply the memory of their caches.
    gate: Arc<Mutex<()>>,
    name: String,
    limits: Limits,
    /// `GET /v1/models`, serialised once.
    models: Bytes,
    /// Completion ids and default seeds.
    counter: AtomicU64,
    /// Mixed into default seeds, so two server runs do not repeat each other.
    started: u64,
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ModelServer {
    async fn chat_completion(&self, body: &[u8]) -> Response<Body> {
        let number = self.counter.fetch_add(1, Ordering::Relaxed);
        let default_seed = Rng::from_parts(&[self.started, number]).next_u64();
        let job = match parse_job(body, self.limits, default_seed) {
            Ok(job) => job,
            Err(message) => {
                return http::error_response(
                    StatusCode::BAD_REQUEST,
                    &message,
                    "invalid_request_error",
                );
            }
        };
        let agent = Arc::clone(&self.agent);
        let gate = Arc::clone(&self.gate);
        let result = tokio::task::spawn_blocking(move || {
            let _turn = gate.lock().unwrap_or_else(|p| p.into_inner());
            agent.complete(&job.messages, job.n, &job.generation, job.seed)
        })
        .await;
        match result {
            Ok(Ok(completion)) => http::json(StatusCode::OK, &self.response(number, completion)),
            // Settings the model cannot follow, e.g. a prompt longer than its context.
            Ok(Err(TrainError::Config(message))) => {
                http::error_response(StatusCode::BAD_REQUEST, &message, "invalid_request_error")
            }
            Ok(Err(error)) => {
                tracing::error!("generation failed: {error}");
                http::error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("generation failed: {error}"),
                    "server_error",
                )
            }
            Err(error) => {
                tracing::error!("generation panicked: {error}");
                http::error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "generation failed",
                    "server_error",
                )
            }
        }
    }

    fn response(&self, number: u64, completion: AgentCompletion) -> ChatCompletion {
        let completion_tokens = completion.samples.iter().map(|s| s.tokens).sum();
        ChatCompletion {
            id: format!("chatcmpl-{:x}-{number}", self.started),
            object: "chat.completion".into(),
            created: unix_seconds(),
            model: self.name.clone(),
            choices: completion
                .samples
                .into_iter()
                .enumerate()
                .map(|(index, sample)| Choice {
                    index,
                    message: ChoiceMessage {
                        role: "assistant".into(),
                        content: Some(sample.text),
                    },
                    finish_reason: Some(sample.finish.as_str().into()),
                })
                .collect(),
            usage: Some(Usage {
                prompt_tokens: completion.prompt_tokens,
                completion_tokens,
                total_tokens: completion.prompt_tokens + completion_tokens,
            }),
        }
    }
}

impl Handler for ModelServer {
    async fn handle(&self, request: Request<Bytes>) -> Response<Body> {
        const COMPLETIONS: [&str; 2] = ["/v1/chat/completions", "/chat/completions"];
        const MODELS: [&str; 2] = ["/v1/models", "/models"];
        let path = request.uri().path();
        let method = request.method();
        if COMPLETIONS.contains(&path) {
            if method == Method::POST {
                return self.chat_completion(request.body()).await;
            }
        } else if MODELS.contains(&path) {
            if method == Method::GET {
                return http::json_bytes(StatusCode::OK, self.models.to_vec());
            }
        } else {
            return http::error_response(
                StatusCode::NOT_FOUND,
                &format!("no route for {path}; try POST /v1/chat/completions"),
                "invalid_request_error",
            );
        }
        http::error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{method} is not allowed on {path}"),
            "invalid_request_error",
        )
    }
}

pub fn run(args: Args) -> Result<()> {
    if args.max_tokens_limit == 0 || args.max_n == 0 {
        bail!("--max-tokens-limit and --max-n must be at least 1");
    }
    let mut agent = ModelAgent::load(
        &crate::models::model_path(&args.model)?,
        &args.device.open()?,
    )
    .with_context(|| format!("loading the model from {}", args.model.display()))?;
    args.weights.apply(&mut agent)?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.model
            .canonicalize()
            .unwrap_or_else(|_| args.model.clone())
            .file_name()
            .map_or_else(|| "agentr".into(), |n| n.to_string_lossy().into_owned())
    });
    let models = serde_json::json!({
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": "agentr"}],
    });
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let limits = Limits {
        max_tokens: args.max_tokens_limit,
        max_n: args.max_n,
        context: agent.model.config().max_position_embeddings,
        token_bytes: agent.tokenizer.longest_token_bytes(),
    };
    let server = ModelServer {
        agent: Arc::new(agent),
        gate: Arc::new(Mutex::new(())),
        name: name.clone(),
        limits,
        models: Bytes::from(models.to_string()),
        counter: AtomicU64::new(0),
        started: Rng::from_parts(&[started, u64::from(std::process::id())]).next_u64() >> 16,
    };
    let options = ServerOptions::new(
        args.max_body_bytes,
        Duration::from_secs(30),
        &args.connections,
    );
    let host = if args.host.contains(':') && !args.host.starts_with('[') {
        format!("[{}]", args.host)
    } else {
        args.host.clone()
    };
    let addr = format!("{host}:{}", args.port);
    http::run(&addr, server, options, |bound| {
        tracing::info!(
            "serving {name} ({}) with an OpenAI-compatible API",
            args.model.display()
        );
        // Plain, for scripts that wait for the address (a port of 0 picks a free one).
        eprintln!("listening on http://{bound}");
    })
    .with_context(|| format!("serving on {addr}"))?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, proptest};

    const LIMITS: Limits = Limits {
        max_tokens: 100,
        max_n: 8,
        context: 64,
        token_bytes: 4,
    };

    /// A prompt longer than the context can hold at any tokenization is refused by its size
    /// alone; one that might fit goes on to the model (which counts its tokens).
    #[test]
    fn prompts_past_any_tokenization_of_the_context_are_refused_by_size() {
        let body = |bytes: usize| {
            format!(
                r#"{{"model":"x","messages":[{{"role":"user","content":"{}"}}]}}"#,
                "a".repeat(bytes)
            )
        };
        assert!(parse_job(body(256).as_bytes(), LIMITS, 0).is_ok());
        let message = parse_job(body(257).as_bytes(), LIMITS, 0).unwrap_err();
        assert!(
            message.contains("257 bytes, at least 64 tokens; the model takes at most 64"),
            "{message}"
        );
    }

    #[test]
    fn requests_are_read_with_defaults_and_limits() {
        let job = parse_job(
            br#"{"model":"x","messages":[{"role":"system","content":"s"},
                {"role":"user","content":"hi"}],"n":3,"temperature":0,"max_tokens":1000,
                "stop":["\n",""],"seed":-1,"user":"ignored"}"#,
            LIMITS,
            7,
        )
        .unwrap();
        assert_eq!(job.messages.len(), 2);
        assert_eq!(job.messages[1].content, "hi");
        assert_eq!(job.n, 3);
        assert_eq!(job.generation.temperature, 0.0);
        assert_eq!(job.generation.max_new_tokens, 100);
        assert_eq!(job.generation.stop, ["\n"]);
        assert_eq!(job.seed, u64::MAX);
        let job = parse_job(
            br#"{"messages":[{"role":"user","content":"a"}]}"#,
            LIMITS,
            7,
        )
        .unwrap();
        assert_eq!((job.n, job.seed, job.generation.temperature), (1, 7, 1.0));
        assert_eq!(job.generation.max_new_tokens, 100);
        for bad in [
            "",
            "{",
            "[]",
            r#"{"messages":[]}"#,
            r#"{"messages":"hi"}"#,
            r#"{"messages":[{"role":"robot","content":"a"}]}"#,
            r#"{"messages":[{"role":"user"}]}"#,
            r#"{"messages":[{"role":"user","content":"a"}],"n":0}"#,
            r#"{"messages":[{"role":"user","content":"a"}],"n":9}"#,
            r#"{"messages":[{"role":"user","content":"a"}],"n":-1}"#,
            r#"{"messages":[{"role":"user","content":"a"}],"temperature":3}"#,
            r#"{"messages":[{"role":"user","content":"a"}],"temperature":"hot"}"#,
            r#"{"messages":[{"role":"user","content":"a"}],"top_p":0}"#,
            r#"{"messages":[{"role":"user","content":"a"}],"max_tokens":0}"#,
            r#"{"messages":[{"role":"user","content":"a"}],"stream":true}"#,
        ] {
            assert!(parse_job(bad.as_bytes(), LIMITS, 0).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bodies_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_job(&bytes, LIMITS, 0);
        }

        #[test]
        fn parsing_arbitrary_numbers_never_panics(
            n in any::<i64>(), temperature in any::<f64>(), top_p in any::<f64>(),
            max_tokens in any::<i64>(), seed in any::<i64>(),
        ) {
            let body = serde_json::json!({"messages": [{"role": "user", "content": "a"}],
                "n": n, "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens,
                "seed": seed});
            if let Ok(job) = parse_job(body.to_string().as_bytes(), LIMITS, 0) {
                assert!((1..=8).contains(&job.n));
                assert!((1..=100).contains(&job.generation.max_new_tokens));
            }
        }
    }
}
