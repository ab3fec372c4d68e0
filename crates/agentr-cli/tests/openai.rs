//! `agentr serve-model` and the OpenAI-compatible client against each other, over loopback
//! only (needs the TextCraft recipes: `cargo xtask setup`). A tiny model is trained once per
//! test run on two expert episodes; each test starts its own server on a free port.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use agentr_envs::Message;
use agentr_train::TrainError;
use agentr_train::openai::{ChatClient, ChatCompletionRequest, ClientConfig, Stop, WireMessage};
use serde_json::Value;

mod common;
use common::{Served, agentr, temp_path, text};

/// A tiny-xs model trained for one epoch on two expert episodes (once per test binary).
fn tiny_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let gold = temp_path("gold.jsonl");
        let model = temp_path("model");
        let output = agentr(&[
            "gold",
            "textcraft",
            "--tasks",
            "train[:2]",
            "--out",
            gold.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        let output = agentr(&[
            "train",
            "--samples",
            gold.to_str().unwrap(),
            "--model",
            "tiny-xs",
            "--epochs",
            "1",
            "--out",
            model.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        model
    })
}

/// A running `agentr serve-model`, killed on drop.
struct Server {
    served: Served,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let model = tiny_model();
        let mut args = vec![
            "serve-model",
            "--model",
            model.to_str().unwrap(),
            "--port",
            "0",
        ];
        args.extend(extra);
        Server {
            served: Served::start(&args),
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}/v1", self.served.addr)
    }

    fn client(&self) -> ChatClient {
        let mut config = ClientConfig::new("tiny", self.base_url());
        config.base_delay = Duration::from_millis(5);
        config.jitter_seed = Some(1);
        ChatClient::new(config).unwrap()
    }

    /// One raw HTTP/1.1 exchange on a fresh connection: the status and the JSON body.
    fn raw(&self, request: &[u8]) -> (u16, Value) {
        let (status, head, body) = common::exchange(&self.served.addr, request);
        assert!(head.contains("content-length:"), "{head}");
        (status, serde_json::from_slice(&body).expect("a JSON body"))
    }

    fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.raw(&common::post(path, body))
    }

    fn models(&self) -> (u16, Value) {
        self.raw(&common::get("/v1/models"))
    }
}

fn conversation() -> Vec<Message> {
    vec![
        Message::user("You are an agent in a crafting game."),
        Message::assistant("Ok.", false),
        Message::user(
            "Crafting commands:\ncraft 4 oak planks using 1 oak logs\n\nGoal: craft oak planks.",
        ),
    ]
}

fn request(n: usize, temperature: f64, stop: &[&str]) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "tiny".into(),
        messages: conversation().iter().map(WireMessage::from).collect(),
        n: Some(n),
        temperature: Some(temperature),
        top_p: None,
        max_tokens: Some(24),
        max_completion_tokens: None,
        stop: (!stop.is_empty()).then(|| Stop::Many(stop.iter().map(|s| s.to_string()).collect())),
        seed: Some(11),
        stream: None,
    }
}

#[test]
fn the_server_answers_n_samples_in_the_openai_shape() {
    let server = Server::start(&["--name", "tiny"]);
    let client = server.client();
    let answers = client
        .sample_chat(&conversation(), 3, 1.0, 16, 5)
        .expect("three samples");
    assert_eq!(answers.len(), 3);
    let completion = client.complete(&request(2, 1.0, &[])).unwrap();
    assert_eq!(completion.object, "chat.completion");
    assert_eq!(completion.model, "tiny");
    assert!(completion.id.starts_with("chatcmpl-"));
    assert!(completion.created > 1_600_000_000);
    assert_eq!(completion.choices.len(), 2);
    for (index, choice) in completion.choices.iter().enumerate() {
        assert_eq!(choice.index, index);
        assert_eq!(choice.message.role, "assistant");
        assert!(choice.message.content.is_some());
        let reason = choice.finish_reason.as_deref().unwrap();
        assert!(reason == "stop" || reason == "length", "{reason}");
    }
    let usage = completion.usage.unwrap();
    assert!(usage.prompt_tokens > 10, "{usage:?}");
    assert!(usage.completion_tokens <= 2 * 24, "{usage:?}");
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );
    // The same seed gives the same samples.
    assert_eq!(
        client.complete(&request(2, 1.0, &[])).unwrap().choices,
        completion.choices
    );
    let (status, models) = server.models();
    assert_eq!(status, 200);
    assert_eq!(models["data"][0]["id"], "tiny");
}

#[test]
fn a_stop_string_cuts_the_sample() {
    let server = Server::start(&[]);
    let client = server.client();
    let free = client.complete(&request(1, 0.0, &[])).unwrap();
    let full = free.choices[0].message.content.clone().unwrap();
    assert!(full.len() >= 4 && full.is_ascii(), "greedy sample {full:?}");
    // Two characters from the middle of the greedy sample, as the stop string.
    let middle = full.len() / 2;
    let stop = &full[middle..middle + 2];
    let expected = &full[..full.find(stop).unwrap()];
    let cut = client.complete(&request(1, 0.0, &[stop])).unwrap();
    assert_eq!(cut.choices[0].message.content.as_deref(), Some(expected));
    assert_eq!(cut.choices[0].finish_reason.as_deref(), Some("stop"));
    // The limit: 24 tokens asked, the server allows 4.
    let server = Server::start(&["--max-tokens-limit", "4"]);
    let short = server.client().complete(&request(1, 0.0, &[])).unwrap();
    let usage = short.usage.unwrap();
    assert!(usage.completion_tokens <= 4, "{usage:?}");
    if usage.completion_tokens == 4 {
        assert_eq!(short.choices[0].finish_reason.as_deref(), Some("length"));
    }
}

#[test]
fn bad_requests_get_400_or_413_and_the_server_keeps_serving() {
    let server = Server::start(&["--max-body-bytes", "100000"]);
    let (status, body) = server.post("/v1/chat/completions", "{\"messages\": [");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid request body")
    );
    let (status, body) = server.post("/v1/chat/completions", r#"{"messages": "hi"}"#);
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.post(
        "/chat/completions",
        r#"{"messages": [{"role": "user", "content": "hi"}], "n": 0}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(server.post("/v1/nothing", "{}").0, 404);
    assert_eq!(server.models().0, 200);
    // A body over the limit: 413 as soon as the length is declared.
    let (status, body) = server.raw(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
          content-length: 9437184\r\n\r\n{\"messages\": [",
    );
    assert_eq!(status, 413);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    // The client gets the server's message as a typed error, without retrying.
    let mut bad = request(1, 0.0, &[]);
    bad.temperature = Some(7.0);
    let started = Instant::now();
    match server.client().complete(&bad) {
        Err(TrainError::Http {
            status: Some(400),
            message,
            ..
        }) => assert!(message.contains("temperature"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // Still serving.
    assert_eq!(server.models().0, 200);
    let (status, body) = server.post(
        "/v1/chat/completions",
        r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"].as_array().unwrap().len(), 1);
}

#[test]
fn collect_and_eval_run_against_the_server() {
    let server = Server::start(&["--max-tokens-limit", "24"]);
    let policy = format!("openai:tiny@{}", server.base_url());
    let trees = temp_path("trees");
    let output = agentr(&[
        "collect",
        "--env",
        "textcraft",
        "--policy",
        &policy,
        "--tasks",
        "train[:1]",
        "--out",
        trees.to_str().unwrap(),
        "--workers",
        "1",
        "--iterations",
        "2",
        "--candidates",
        "2",
        "--depth-limit",
        "2",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let files: Vec<_> = std::fs::read_dir(&trees).unwrap().collect();
    assert_eq!(files.len(), 1);
    let tree: Value =
        serde_json::from_slice(&std::fs::read(files[0].as_ref().unwrap().path()).unwrap()).unwrap();
    assert_eq!(tree["format"], "agentr-tree");
    assert!(tree["nodes"].as_array().unwrap().len() > 1);
    std::fs::remove_dir_all(&trees).unwrap();

    let out = temp_path("eval");
    let output = agentr(&[
        "eval",
        "--env",
        "textcraft",
        "--model",
        &policy,
        "--tasks",
        "test[:1]",
        "--max-rounds",
        "2",
        "--max-tokens",
        "16",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["protocol"]["model"], policy);
    assert!(summary["protocol"]["model_sha256"].is_null());
    std::fs::remove_dir_all(&out).unwrap();

    // An https endpoint in a build without TLS: one clear error, before any search.
    drop(server);
    if !cfg!(feature = "tls") {
        let output = agentr(&[
            "collect",
            "--env",
            "textcraft",
            "--policy",
            "openai:tiny@https://127.0.0.1:1/v1",
            "--tasks",
            "train[:1]",
            "--out",
            trees.to_str().unwrap(),
        ]);
        assert!(!output.status.success());
        let message = text(&output.stderr);
        assert!(message.contains("--features tls"), "{message}");
    }
}
