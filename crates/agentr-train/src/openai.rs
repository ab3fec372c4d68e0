//! A client for OpenAI-compatible chat-completions servers (OpenAI, vLLM, llama.cpp, TGI,
//! `agentr serve-model`, ...) as a search [`Policy`] and a first-error [`Judge`], and the wire
//! types both the client and `agentr serve-model` use.
//!
//! * One request is `POST {base_url}/chat/completions` with `model`, `messages`, `n` (sent only
//!   when above 1), `temperature`, `max_tokens`, `stop` (sent only when not empty) and `seed`.
//! * **Retries** (the request loop of [`agentr_envs::http`], shared with the AgentGym client):
//!   429, 5xx and connection-level errors (refused or reset connections, timeouts, broken
//!   responses) are retried up to [`ClientConfig::max_attempts`] attempts in all. The
//!   wait before attempt k+1 is the server's `Retry-After` (in seconds; HTTP dates are not
//!   read) capped at [`ClientConfig::max_retry_after`], else an exponential backoff with
//!   "equal jitter": `d = min(max_delay, base_delay * 2^(k-1))`, then a uniform draw from
//!   `[d/2, d]`. The jitter (see [`Backoff`]) is seeded with [`ClientConfig::jitter_seed`], or,
//!   when that is `None` (the default), from the clock and the process id, so that clients
//!   started together do not retry in step. Other 4xx statuses are never retried: they come
//!   back at once as [`TrainError::Http`] with the server's own message.
//! * **Partial `n`**: some servers (llama.cpp, TGI) ignore `n > 1` and return one choice. When
//!   fewer than `n` choices come back, the client asks again for the missing ones, with the
//!   seed advanced by one per extra request (so a server that honours seeds does not repeat
//!   itself), until it has `n` (extra choices are dropped). A response without any choice is
//!   an error, so this ends after at most `n` requests.
//! * **Seeds** go on the wire reduced to 31 bits (`seed & 0x7fff_ffff`): servers disagree on
//!   the integer type (llama.cpp reads a 32-bit unsigned seed and treats `0xffffffff` as
//!   "random", vLLM a signed 64-bit one).
//! * **TLS**: plain `http://` by default. `https://` endpoints need this crate's `tls` feature
//!   (rustls with the webpki roots); without it [`ChatClient::new`] says so.
//! * Proxies: `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` from the environment apply, except to
//!   loopback hosts (`localhost`, `127.0.0.1`, `[::1]`), which are always reached directly.
//!
//! ```no_run
//! use agentr_envs::Message;
//! use agentr_train::openai::{ChatClient, ClientConfig};
//!
//! let client = ChatClient::new(ClientConfig::new("qwen2.5-7b", "http://localhost:8000/v1"))?;
//! let answers = client.sample_chat(&[Message::user("Say hi.")], 2, 0.7, 64, 7)?;
//! assert_eq!(answers.len(), 2);
//! # Ok::<(), agentr_train::TrainError>(())
//! ```

use std::fmt;
use std::time::Duration;

use agentr_envs::http::{self, PostError, Retrier, Stopped, quote};
use agentr_envs::retry::Backoff;
use agentr_envs::{Message, Role};
use agentr_mcts::{Policy, SampleRequest};
use agentr_revise::{Judge, JudgeRequest, Judgement, judge_prompt, parse_judgement};
use serde::{Deserialize, Serialize};

use crate::TrainError;

// ---------------------------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------------------------

/// A message's content: a string, or (newer OpenAI clients) a list of typed parts, of which
/// the `text` parts are read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Typed parts (`{"type": "text", "text": "..."}`); parts without text count as empty.
    Parts(Vec<ContentPart>),
}

impl Content {
    /// The text: the string, or the parts' texts joined.
    pub fn text(&self) -> String {
        match self {
            Content::Text(text) => text.clone(),
            Content::Parts(parts) => parts.iter().filter_map(|p| p.text.as_deref()).collect(),
        }
    }
}

/// One part of a [`Content::Parts`] message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    /// The part's type (`text`, `image_url`, ...).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A request message: role and content (the project's `loss` flags are not sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireMessage {
    /// `system`, `user` or `assistant`.
    pub role: Role,
    /// The text.
    pub content: Content,
}

impl From<&Message> for WireMessage {
    fn from(message: &Message) -> Self {
        WireMessage {
            role: message.role,
            content: Content::Text(message.content.clone()),
        }
    }
}

/// `stop`: one string or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

impl Stop {
    /// The stop strings, empty ones left out.
    pub fn strings(&self) -> Vec<String> {
        let all = match self {
            Stop::One(one) => std::slice::from_ref(one),
            Stop::Many(many) => many.as_slice(),
        };
        all.iter().filter(|s| !s.is_empty()).cloned().collect()
    }
}

/// The body of `POST /chat/completions` (the fields this project sends or serves; others are
/// ignored when read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// The model's name on the server.
    #[serde(default)]
    pub model: String,
    /// The conversation.
    pub messages: Vec<WireMessage>,
    /// How many choices (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// Sampling temperature; 0 is greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Most new tokens per choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    /// The newer name of `max_tokens` (read when `max_tokens` is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<usize>,
    /// A choice ends before the first of these strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Server-sent events (not supported by `agentr serve-model`; never sent by the client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

/// A choice's message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChoiceMessage {
    /// `assistant`.
    #[serde(default)]
    pub role: String,
    /// The text (`null` for tool calls and refusals; read as empty).
    #[serde(default)]
    pub content: Option<String>,
}

/// One choice of a completion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Its position.
    #[serde(default)]
    pub index: usize,
    /// The generated message.
    #[serde(default)]
    pub message: ChoiceMessage,
    /// `stop` (end token or stop string) or `length` (token limit).
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// Token counts of a completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt.
    #[serde(default)]
    pub prompt_tokens: usize,
    /// Tokens generated over all choices.
    #[serde(default)]
    pub completion_tokens: usize,
    /// The sum.
    #[serde(default)]
    pub total_tokens: usize,
}

/// The response to `POST /chat/completions`. Every field has a default when read, so that
/// servers that leave some out still parse; a response without choices is rejected by the
/// client, not by the parser.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// The completion's id.
    #[serde(default)]
    pub id: String,
    /// `chat.completion`.
    #[serde(default)]
    pub object: String,
    /// Unix time of creation, in seconds.
    #[serde(default)]
    pub created: u64,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// The choices.
    #[serde(default)]
    pub choices: Vec<Choice>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// The body of an error response: `{"error": {"message", "type"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What [`ErrorBody`] holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Human-readable.
    pub message: String,
    /// `invalid_request_error`, `server_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
}

/// Reads a chat-completion response body. Never panics, whatever the bytes.
pub(crate) fn parse_completion(body: &[u8]) -> Result<ChatCompletion, String> {
    serde_json::from_slice::<ChatCompletion>(body).map_err(|e| {
        format!(
            "the response is not a chat completion ({e}): {}",
            quote(body)
        )
    })
}

/// Splits `MODEL@BASE_URL` (e.g. `qwen2.5-7b@http://localhost:8000/v1`) at the `@` before
/// `http://` or `https://`, so model names may contain `@` themselves.
///
/// ```
/// use agentr_train::openai::parse_target;
/// assert_eq!(
///     parse_target("qwen2.5-7b@http://localhost:8000/v1"),
///     Some(("qwen2.5-7b", "http://localhost:8000/v1"))
/// );
/// assert_eq!(parse_target("m@v2@https://h/v1"), Some(("m@v2", "https://h/v1")));
/// assert_eq!(parse_target("no-url"), None);
/// assert_eq!(parse_target("@http://h"), None);
/// ```
pub fn parse_target(spec: &str) -> Option<(&str, &str)> {
    let at = ["@http://", "@https://"]
        .iter()
        .filter_map(|marker| spec.find(marker))
        .min()?;
    let (model, url) = (&spec[..at], &spec[at + 1..]);
    let host = url.split_once("://").map_or("", |(_, rest)| rest);
    (!model.is_empty() && !host.is_empty()).then_some((model, url))
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// Settings of a [`ChatClient`]. [`ClientConfig::new`] gives the defaults.
#[derive(Clone)]
pub struct ClientConfig {
    /// The API root, e.g. `http://localhost:8000/v1` (`/chat/completions` is appended).
    pub base_url: String,
    /// The model's name on the server.
    pub model: String,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// Longest wait for a connection (default 10 s).
    pub connect_timeout: Duration,
    /// Longest time one attempt may take, connection to the last byte of the answer (default
    /// 300 s: a busy server generating many samples is slow).
    pub request_timeout: Duration,
    /// Attempts per request, the first included (default 5; 1 disables retries).
    pub max_attempts: u32,
    /// The first backoff (default 500 ms); doubled per attempt.
    pub base_delay: Duration,
    /// The longest backoff (default 30 s).
    pub max_delay: Duration,
    /// The longest wait a server's `Retry-After` can ask for (default 120 s).
    pub max_retry_after: Duration,
    /// Seed of the backoff jitter; `None` seeds from the clock and the process id.
    pub jitter_seed: Option<u64>,
    /// `max_tokens` of policy samples (default 128, as [`ModelAgent`](crate::ModelAgent)).
    pub max_tokens: usize,
    /// `max_tokens` of judge answers (default 512: reasons, then the label line).
    pub judge_max_tokens: usize,
    /// Stop strings sent with policy samples (default none).
    pub stop: Vec<String>,
    /// The largest response body read (default 16 MiB).
    pub max_response_bytes: u64,
}

impl ClientConfig {
    /// The defaults for `model` at `base_url`.
    pub fn new(model: impl Into<String>, base_url: impl Into<String>) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(300),
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            jitter_seed: None,
            max_tokens: 128,
            judge_max_tokens: 512,
            stop: Vec::new(),
            max_response_bytes: 16 << 20,
        }
    }
}

/// Leaves the API key out.
impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .field("max_retry_after", &self.max_retry_after)
            .field("jitter_seed", &self.jitter_seed)
            .field("max_tokens", &self.max_tokens)
            .field("judge_max_tokens", &self.judge_max_tokens)
            .field("stop", &self.stop)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

/// An OpenAI-compatible chat-completions client: a [`Policy`] and a [`Judge`]. Safe to share
/// between threads (connections are pooled).
pub struct ChatClient {
    config: ClientConfig,
    endpoint: String,
    agent: ureq::Agent,
    retrier: Retrier,
}

impl fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatClient")
            .field("endpoint", &self.endpoint)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ChatClient {
    /// A client; checks the base URL (scheme, and TLS support for https) without connecting.
    pub fn new(config: ClientConfig) -> Result<Self, TrainError> {
        let base = config.base_url.trim_end_matches('/').to_owned();
        let bad = |message: String| TrainError::Http {
            url: config.base_url.clone(),
            status: None,
            message,
        };
        let Some((scheme, rest)) = base.split_once("://") else {
            return Err(bad(
                "the base URL must start with http:// or https://".into()
            ));
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() {
            return Err(bad("the base URL has no host".into()));
        }
        match scheme.to_ascii_lowercase().as_str() {
            "http" => {}
            "https" if cfg!(feature = "tls") => {}
            "https" => {
                return Err(bad(
                    "https needs TLS support, which this build lacks: build agentr with \
                     `--features tls` (or use a plain http:// endpoint)"
                        .into(),
                ));
            }
            other => {
                return Err(bad(format!(
                    "unsupported scheme `{other}`: use http:// or https://"
                )));
            }
        }
        // The host without user information and port.
        let host_port = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let host_name = match host_port.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host_port.split(':').next().unwrap_or_default(),
        };
        let loopback = host_name.eq_ignore_ascii_case("localhost")
            || host_name == "::1"
            || host_name.starts_with("127.");
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_global(Some(config.request_timeout))
            .user_agent(concat!("agentr/", env!("CARGO_PKG_VERSION")));
        if loopback {
            builder = builder.proxy(None);
        }
        let agent: ureq::Agent = builder.build().into();
        Ok(ChatClient {
            endpoint: format!("{base}/chat/completions"),
            retrier: Retrier {
                max_attempts: config.max_attempts,
                backoff: Backoff::new(config.base_delay, config.max_delay, config.jitter_seed),
                max_wait: config.max_retry_after,
            },
            config,
            agent,
        })
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// `{base_url}/chat/completions`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `openai:<model>@<base URL>`, as the command line names it.
    fn target(&self) -> String {
        format!(
            "openai:{}@{}",
            self.config.model,
            self.config.base_url.trim_end_matches('/')
        )
    }

    /// One request, retried as the module documentation says; the parsed response.
    pub fn complete(&self, request: &ChatCompletionRequest) -> Result<ChatCompletion, TrainError> {
        let body = serde_json::to_vec(request).map_err(|e| self.error(None, e.to_string()))?;
        let post = || {
            let mut request = self
                .agent
                .post(&self.endpoint)
                .header("content-type", "application/json")
                .header("accept", "application/json");
            if let Some(key) = &self.config.api_key {
                request = request.header("authorization", format!("Bearer {key}"));
            }
            http::post(request, &body, self.config.max_response_bytes)
        };
        // Sampling again does no harm: every retryable failure is retried.
        let bytes = self
            .retrier
            .run(true, post)
            .map_err(|stopped| match stopped {
                Stopped::Fatal(PostError::Status { status, message }) => {
                    self.error(Some(status), message)
                }
                Stopped::Fatal(PostError::TooLarge { status, limit }) => self.error(
                    Some(status),
                    format!("the response is larger than {limit} bytes"),
                ),
                Stopped::Fatal(PostError::Transport(message)) => self.error(None, message),
                Stopped::GaveUp { last, attempts } => self.error(
                    last.status,
                    format!("{} (gave up after {attempts} attempts)", last.message),
                ),
            })?;
        parse_completion(&bytes).map_err(|m| self.error(Some(200), m))
    }

    /// `n` answers to `messages`: as many requests as it takes when the server returns fewer
    /// choices than asked for (see the module documentation). `seed` is reduced to 31 bits.
    pub fn sample_chat(
        &self,
        messages: &[Message],
        n: usize,
        temperature: f64,
        max_tokens: usize,
        seed: u64,
    ) -> Result<Vec<String>, TrainError> {
        let wire: Vec<WireMessage> = messages.iter().map(WireMessage::from).collect();
        let mut answers = Vec::with_capacity(n);
        let mut round = 0u64;
        while answers.len() < n {
            let missing = n - answers.len();
            let request = ChatCompletionRequest {
                model: self.config.model.clone(),
                messages: wire.clone(),
                n: (missing > 1).then_some(missing),
                temperature: Some(temperature),
                top_p: None,
                max_tokens: Some(max_tokens),
                max_completion_tokens: None,
                stop: (!self.config.stop.is_empty()).then(|| Stop::Many(self.config.stop.clone())),
                seed: Some(wire_seed(seed, round)),
                stream: None,
            };
            let completion = self.complete(&request)?;
            if completion.choices.is_empty() {
                return Err(self.error(Some(200), "the response has no choices".into()));
            }
            answers.extend(
                completion
                    .choices
                    .into_iter()
                    .take(missing)
                    .map(|choice| choice.message.content.unwrap_or_default()),
            );
            round += 1;
        }
        Ok(answers)
    }

    fn error(&self, status: Option<u16>, message: String) -> TrainError {
        TrainError::Http {
            url: self.endpoint.clone(),
            status,
            message,
        }
    }
}

/// The seed sent for request `round` of a sampling call.
fn wire_seed(seed: u64, round: u64) -> i64 {
    (seed.wrapping_add(round) & 0x7fff_ffff) as i64
}

/// Sends the conversation (roles and contents; loss flags dropped) and returns `n` answers.
impl Policy for ChatClient {
    type Error = TrainError;

    fn sample(&self, request: &SampleRequest<'_>) -> Result<Vec<String>, TrainError> {
        self.sample_chat(
            request.conversation,
            request.n,
            request.temperature,
            self.config.max_tokens,
            request.seed,
        )
    }

    /// `openai:<model>@<base URL>`.
    fn describe(&self) -> Option<String> {
        Some(self.target())
    }
}

/// Sends [`judge_prompt`] at temperature 0 and reads the answer with [`parse_judgement`]. The
/// history is sent whole: a server whose context it overflows answers with an error.
impl Judge for ChatClient {
    type Error = TrainError;

    fn name(&self) -> String {
        self.target()
    }

    fn judge(&self, request: &JudgeRequest<'_>) -> Result<Judgement, TrainError> {
        let prompt = judge_prompt(request);
        let answers = self.sample_chat(&prompt, 1, 0.0, self.config.judge_max_tokens, 0)?;
        Ok(parse_judgement(answers.first().map_or("", String::as_str)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentr_envs::TaskId;
    use agentr_revise::{Label, StepView};
    use proptest::prelude::{any, proptest};
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::time::Instant;

    /// A request the scripted server received.
    #[derive(Debug)]
    struct Seen {
        headers: String,
        body: serde_json::Value,
    }

    /// A loopback server answering one connection per canned response, in order (each with
    /// `Connection: close`), and returning what it was sent.
    fn scripted(responses: Vec<String>) -> (String, std::thread::JoinHandle<Vec<Seen>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        // Non-blocking accept with a deadline, so a failing client cannot hang the test.
        listener.set_nonblocking(true).unwrap();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            for response in responses {
                let stream = loop {
                    match listener.accept() {
                        Ok((stream, _)) => break stream,
                        Err(_) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(error) => panic!("no request came: {error}"),
                    }
                };
                stream.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(stream);
                let mut headers = String::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    headers.push_str(&line.to_ascii_lowercase());
                }
                let length: usize = headers
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                seen.push(Seen {
                    headers,
                    body: serde_json::from_slice(&body).unwrap(),
                });
                let mut stream = reader.into_inner();
                stream.write_all(response.as_bytes()).unwrap();
                stream.flush().unwrap();
            }
            seen
        });
        (url, handle)
    }

    fn http(status: &str, extra_headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n{extra_headers}\r\n{body}",
            body.len()
        )
    }

    fn choices(texts: &[&str]) -> String {
        let choices: Vec<_> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                serde_json::json!({"index": i, "message": {"role": "assistant", "content": t},
                    "finish_reason": "stop"})
            })
            .collect();
        http(
            "200 OK",
            "",
            &serde_json::json!({"id": "x", "object": "chat.completion", "created": 1,
                "model": "m", "choices": choices})
            .to_string(),
        )
    }

    fn fast_client(url: &str) -> ChatClient {
        let mut config = ClientConfig::new("m", url);
        config.base_delay = Duration::from_millis(1);
        config.max_delay = Duration::from_millis(5);
        config.jitter_seed = Some(3);
        config.max_attempts = 4;
        ChatClient::new(config).unwrap()
    }

    fn say(text: &str) -> Vec<Message> {
        vec![Message::user(text)]
    }

    #[test]
    fn retries_429_and_5xx_then_succeeds() {
        let (url, server) = scripted(vec![
            http(
                "429 Too Many Requests",
                "",
                r#"{"error":{"message":"slow down"}}"#,
            ),
            http("500 Internal Server Error", "", "oops"),
            http("503 Service Unavailable", "", ""),
            choices(&["hello"]),
        ]);
        let client = fast_client(&url);
        let answers = client.sample_chat(&say("hi"), 1, 0.5, 16, 9).unwrap();
        assert_eq!(answers, ["hello"]);
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 4);
        for request in &seen {
            assert!(request.headers.starts_with("post /v1/chat/completions "));
            assert!(!request.headers.contains("authorization"));
            assert_eq!(request.body["model"], "m");
            assert_eq!(request.body["messages"][0]["role"], "user");
            assert_eq!(request.body["messages"][0]["content"], "hi");
            assert_eq!(request.body["max_tokens"], 16);
            assert_eq!(request.body["temperature"], 0.5);
            assert_eq!(request.body["seed"], 9);
            assert!(request.body.get("n").is_none());
            assert!(request.body.get("stop").is_none());
        }
    }

    #[test]
    fn other_4xx_are_not_retried_and_carry_the_servers_message() {
        let (url, server) = scripted(vec![http(
            "400 Bad Request",
            "",
            r#"{"error":{"message":"max_tokens is too large","type":"invalid_request_error"}}"#,
        )]);
        let mut config = ClientConfig::new("m", &url);
        config.api_key = Some("sk-test".into());
        config.base_delay = Duration::from_millis(1);
        let client = ChatClient::new(config).unwrap();
        let error = client.sample_chat(&say("hi"), 1, 0.0, 8, 0).unwrap_err();
        match &error {
            TrainError::Http {
                url: endpoint,
                status,
                message,
            } => {
                assert_eq!(*status, Some(400));
                assert_eq!(message, "max_tokens is too large");
                assert_eq!(*endpoint, format!("{url}/chat/completions"));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            error
                .to_string()
                .contains("HTTP 400: max_tokens is too large")
        );
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].headers.contains("authorization: bearer sk-test"));
        assert!(!format!("{client:?}").contains("sk-test"));
    }

    #[test]
    fn retries_stop_after_max_attempts() {
        let (url, server) = scripted(vec![
            http("502 Bad Gateway", "", ""),
            http(
                "500 Internal Server Error",
                "",
                r#"{"error":"model overloaded"}"#,
            ),
        ]);
        let mut config = ClientConfig::new("m", &url);
        config.max_attempts = 2;
        config.base_delay = Duration::from_millis(1);
        let error = ChatClient::new(config)
            .unwrap()
            .sample_chat(&say("hi"), 1, 0.0, 8, 0)
            .unwrap_err();
        let TrainError::Http {
            status, message, ..
        } = &error
        else {
            panic!("{error:?}")
        };
        assert_eq!(*status, Some(500));
        assert_eq!(message, "model overloaded (gave up after 2 attempts)");
        assert_eq!(server.join().unwrap().len(), 2);
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_cap() {
        let (url, server) = scripted(vec![
            http("429 Too Many Requests", "retry-after: 3600\r\n", ""),
            choices(&["ok"]),
        ]);
        let mut config = ClientConfig::new("m", &url);
        config.base_delay = Duration::from_millis(1);
        config.max_delay = Duration::from_millis(1);
        config.max_retry_after = Duration::from_millis(150);
        let started = Instant::now();
        let answers = ChatClient::new(config)
            .unwrap()
            .sample_chat(&say("hi"), 1, 0.0, 8, 0)
            .unwrap();
        let waited = started.elapsed();
        assert_eq!(answers, ["ok"]);
        // The backoff alone would have waited about 1 ms.
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        assert!(waited < Duration::from_secs(30), "{waited:?}");
        server.join().unwrap();
    }

    #[test]
    fn missing_choices_are_asked_for_again() {
        // A server that ignores `n` in part, then gives more than asked (dropped).
        let (url, server) = scripted(vec![
            choices(&["a"]),
            choices(&["b", "c"]),
            choices(&["d", "e", "f"]),
        ]);
        let client = fast_client(&url);
        let answers = client.sample_chat(&say("hi"), 4, 1.0, 8, 100).unwrap();
        assert_eq!(answers, ["a", "b", "c", "d"]);
        let seen = server.join().unwrap();
        let asked: Vec<_> = seen.iter().map(|s| s.body["n"].clone()).collect();
        // The last request asks for one: `n` is left out.
        assert_eq!(
            asked,
            [serde_json::json!(4), 3.into(), serde_json::Value::Null]
        );
        let seeds: Vec<_> = seen.iter().map(|s| s.body["seed"].clone()).collect();
        assert_eq!(seeds, [serde_json::json!(100), 101.into(), 102.into()]);
    }

    #[test]
    fn a_response_without_choices_or_json_is_an_error() {
        let (url, server) = scripted(vec![
            http("200 OK", "", r#"{"choices": []}"#),
            http("200 OK", "", "not json"),
        ]);
        let client = fast_client(&url);
        let error = client.sample_chat(&say("hi"), 2, 1.0, 8, 0).unwrap_err();
        assert!(error.to_string().contains("no choices"), "{error}");
        let error = client.sample_chat(&say("hi"), 2, 1.0, 8, 0).unwrap_err();
        assert!(
            error.to_string().contains("not a chat completion"),
            "{error}"
        );
        assert_eq!(server.join().unwrap().len(), 2);
    }

    #[test]
    fn refused_connections_are_retried_then_reported() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = fast_client(&format!("http://127.0.0.1:{port}/v1/"));
        assert_eq!(
            client.endpoint(),
            format!("http://127.0.0.1:{port}/v1/chat/completions")
        );
        let error = client.sample_chat(&say("hi"), 1, 0.0, 8, 0).unwrap_err();
        let TrainError::Http {
            status, message, ..
        } = &error
        else {
            panic!("{error:?}")
        };
        assert_eq!(*status, None);
        assert!(message.ends_with("(gave up after 4 attempts)"), "{message}");
    }

    #[test]
    fn base_urls_are_checked() {
        for bad in ["localhost:8000", "ftp://h/v1", "http://", "http:///v1"] {
            let error = ChatClient::new(ClientConfig::new("m", bad)).unwrap_err();
            assert!(
                matches!(error, TrainError::Http { status: None, .. }),
                "{bad}"
            );
        }
        let https = ChatClient::new(ClientConfig::new("m", "https://api.openai.com/v1"));
        if cfg!(feature = "tls") {
            assert!(https.is_ok());
        } else {
            let message = https.unwrap_err().to_string();
            assert!(message.contains("--features tls"), "{message}");
        }
    }

    #[test]
    fn the_backoff_follows_the_settings_and_wire_seeds_fit_31_bits() {
        let client = fast_client("http://127.0.0.1:9/v1");
        for attempt in 1..20 {
            let wait = client.retrier.backoff.delay(attempt);
            assert!(wait >= Duration::from_micros(500) && wait <= Duration::from_millis(5));
        }
        assert_eq!(wire_seed(u64::MAX, 1), 0);
        assert_eq!(wire_seed(0x1_8000_0005, 0), 5);
    }

    #[test]
    fn the_judge_asks_greedily_and_parses_the_label() {
        let (url, server) = scripted(vec![choices(&["The craft was rejected.\nJudgment: Bad"])]);
        let client = fast_client(&url);
        assert_eq!(client.name(), format!("openai:m@{url}"));
        let step = StepView {
            response: "Action: craft stick",
            action: "craft stick",
            observation: "Could not find enough items to craft minecraft:stick",
        };
        let request = JudgeRequest {
            env: "textcraft",
            task: TaskId(0),
            node: &[0],
            task_description: "Goal: craft stick.",
            history: Vec::new(),
            step,
            rejected: true,
        };
        let judgement = client.judge(&request).unwrap();
        assert_eq!(judgement.label, Label::Bad);
        assert!(judgement.parsed);
        let seen = server.join().unwrap();
        assert_eq!(seen[0].body["temperature"], 0.0);
        assert_eq!(seen[0].body["max_tokens"], 512);
        let prompt = seen[0].body["messages"][0]["content"].as_str().unwrap();
        assert!(prompt.contains("Goal: craft stick."));
    }

    #[test]
    fn the_policy_sends_roles_and_contents_only() {
        let (url, server) = scripted(vec![choices(&["Action: inventory", "Action: look"])]);
        let mut config = ClientConfig::new("m", &url);
        config.stop = vec!["\nObservation".into()];
        let client = ChatClient::new(config).unwrap();
        let conversation = vec![
            Message::user("instruction"),
            Message::assistant("Ok.", false),
            Message::user("Goal: craft stick."),
        ];
        let request = SampleRequest {
            conversation: &conversation,
            n: 2,
            temperature: 1.0,
            seed: 5,
        };
        let answers = client.sample(&request).unwrap();
        assert_eq!(answers, ["Action: inventory", "Action: look"]);
        let seen = server.join().unwrap();
        assert_eq!(
            seen[0].body["messages"],
            serde_json::json!([
                {"role": "user", "content": "instruction"},
                {"role": "assistant", "content": "Ok."},
                {"role": "user", "content": "Goal: craft stick."},
            ])
        );
        assert_eq!(seen[0].body["stop"], serde_json::json!(["\nObservation"]));
        assert_eq!(seen[0].body["n"], 2);
        assert_eq!(seen[0].body["max_tokens"], 128);
    }

    #[test]
    fn completions_parse_leniently() {
        let parsed = parse_completion(
            br#"{"choices":[{"message":{"content":null}},{"message":{"content":"x"}}],"extra":1}"#,
        )
        .unwrap();
        assert_eq!(parsed.choices.len(), 2);
        assert_eq!(parsed.choices[0].message.content, None);
        assert!(parse_completion(br#"{"choices": 3}"#).is_err());
        let request: ChatCompletionRequest = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},
                {"type":"image_url"},{"type":"text","text":"b"}]}],"stop":"x","user":"u"}"#,
        )
        .unwrap();
        assert_eq!(request.messages[0].content.text(), "ab");
        assert_eq!(request.stop.unwrap().strings(), ["x"]);
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
            prop_oneof![
                Just("choices"),
                Just("message"),
                Just("content"),
                Just("error")
            ]
            .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let key = prop_oneof![
                Just("choices".to_owned()),
                Just("message".to_owned()),
                Just("content".to_owned()),
                Just("index".to_owned()),
                Just("finish_reason".to_owned()),
                Just("usage".to_owned()),
                Just("error".to_owned()),
                Just("created".to_owned()),
                ".{0,6}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(key, inner, 0..5)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_completion(&bytes);
        }

        #[test]
        fn parsing_arbitrary_json_never_panics(value in json_value()) {
            let bytes = serde_json::to_vec(&value).unwrap();
            let _ = parse_completion(&bytes);
            let _ = serde_json::from_slice::<ChatCompletionRequest>(&bytes);
        }

        #[test]
        fn targets_never_panic(text in ".{0,40}") {
            let _ = parse_target(&text);
        }
    }
}
