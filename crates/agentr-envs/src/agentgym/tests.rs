//! The client against scripted loopback servers: request shapes, answers, retries, errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;

/// One request as the scripted server saw it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    target: String,
    body: Value,
}

/// A server that answers each connection's one request with the next scripted reply
/// (`status`, body) and closes it; returns what it saw once the script is used up.
fn scripted(replies: Vec<(u16, &str)>) -> (String, JoinHandle<Vec<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let replies: Vec<(u16, String)> = replies.into_iter().map(|(s, b)| (s, b.into())).collect();
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for (status, body) in replies {
            let (stream, _) = listener.accept().unwrap();
            seen.push(answer(stream, status, &body));
        }
        seen
    });
    (url, handle)
}

fn answer(stream: TcpStream, status: u16, body: &str) -> Seen {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    );
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut bytes = vec![0; length];
    reader.read_exact(&mut bytes).unwrap();
    let reason = if status == 200 { "OK" } else { "Error" };
    let extra = if status == 503 {
        "retry-after: 0\r\n"
    } else {
        ""
    };
    write!(
        reader.get_mut(),
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n{extra}\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    Seen {
        method,
        target,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn remote(url: &str) -> Remote {
    let mut config = RemoteConfig::new(url);
    config.base_delay = Duration::from_millis(1);
    config.jitter_seed = Some(3);
    Remote::new(config).unwrap()
}

fn post(target: &str, body: Value) -> Seen {
    Seen {
        method: "POST".into(),
        target: target.into(),
        body,
    }
}

fn remote_source(error: EnvError) -> AgentGymError {
    match error {
        EnvError::Remote { source, .. } => *source,
        other => panic!("not a remote error: {other}"),
    }
}

#[test]
fn episodes_use_each_servers_shapes() {
    struct Case {
        kind: EnvKind,
        replies: Vec<(u16, &'static str)>,
        first: &'static str,
        step: Step,
        seen: Vec<Seen>,
    }
    let step = |observation: &str, reward: f64, done: bool, disaster: bool| Step {
        observation: observation.into(),
        reward,
        done,
        disaster,
    };
    let cases = [
        Case {
            kind: EnvKind::TextCraft,
            replies: vec![
                (200, r#"{"id":7,"observation":"c","done":false,"reward":0}"#),
                (
                    200,
                    r#"{"id":7,"observation":"first","done":false,"reward":0}"#,
                ),
                (
                    200,
                    r#"{"observation":"Crafted 1 minecraft:x","reward":1,"done":true}"#,
                ),
                (200, r#"{"closed":true}"#),
            ],
            first: "first",
            step: step("Crafted 1 minecraft:x", 1.0, true, false),
            seen: vec![
                post("/create", json!({"commands": null, "goal": null})),
                post("/reset", json!({"id": 7, "data_idx": 3})),
                post("/step", json!({"id": 7, "action": "craft 1 x using 1 y"})),
                post("/close", json!({"id": 7})),
            ],
        },
        Case {
            kind: EnvKind::SciWorld,
            replies: vec![
                (200, r#"{"id":0}"#),
                (
                    200,
                    r#"{"task_name":"boil","var_num":3,"task_description":"Your task is to boil water.",
                        "observation":"This room is called the hallway.\n","reward":0,"score":0,
                        "deleted":false,"done":false}"#,
                ),
                (
                    200,
                    r#"{"observation":"You focus on the door.\n\n","reward":-100,"score":-100,"done":true}"#,
                ),
                (200, r#"{"closed":true}"#),
            ],
            first: "Your task is to boil water.\nThis room is called the hallway.\n",
            step: step("You focus on the door.", 0.0, true, true),
            seen: vec![
                post("/create", Value::Null),
                post("/reset", json!({"id": 0, "data_idx": 3})),
                post("/step", json!({"id": 0, "action": "craft 1 x using 1 y"})),
                post("/close", json!({"id": 0})),
            ],
        },
        Case {
            kind: EnvKind::WebShop,
            replies: vec![
                (200, "48950076"),
                (
                    200,
                    r#"["WebShop [SEP] Instruction: [SEP] i [SEP] Search",null]"#,
                ),
                (
                    200,
                    r#"{"state":"Thank you","reward":0.75,"done":true,"info":null}"#,
                ),
                (200, r#"{"closed":true}"#),
            ],
            first: "WebShop [SEP] Instruction: [SEP] i [SEP] Search",
            step: step("Thank you", 0.75, true, false),
            seen: vec![
                post("/create", Value::Null),
                post("/reset", json!({"env_idx": 48950076u64, "session_id": 3})),
                post(
                    "/step",
                    json!({"env_idx": 48950076u64, "action": "craft 1 x using 1 y"}),
                ),
                post("/close", json!({"env_idx": 48950076u64})),
            ],
        },
    ];
    for case in cases {
        let (url, server) = scripted(case.replies);
        let mut env = AgentGymEnv::new(case.kind, remote(&url));
        assert_eq!(env.name(), case.kind.name());
        assert!(matches!(env.step("look"), Err(EnvError::NotReset { .. })));
        assert_eq!(env.reset(TaskId(3)).unwrap(), case.first, "{}", case.kind);
        assert_eq!(
            env.step("craft 1 x using 1 y").unwrap(),
            case.step,
            "{}",
            case.kind
        );
        drop(env);
        assert_eq!(server.join().unwrap(), case.seen, "{}", case.kind);
    }
}

#[test]
fn busy_servers_are_retried_and_refusals_are_typed() {
    let (url, server) = scripted(vec![
        (503, r#"{"error":"full"}"#),
        (503, r#"{"error":"full"}"#),
        (200, r#"{"id":1}"#),
        (
            200,
            r#"{"error":"sciworld has no task 99999 (ids run from 0 to 4638)"}"#,
        ),
        (200, r#"{"closed":true}"#),
    ]);
    let mut env = AgentGymEnv::new(EnvKind::SciWorld, remote(&url));
    let error = remote_source(env.reset(TaskId(99_999)).unwrap_err());
    assert!(
        matches!(&error, AgentGymError::Refused { message, .. } if message.contains("no task 99999")),
        "{error}"
    );
    assert_eq!(env.server_id(), Some(1));
    drop(env);
    let seen = server.join().unwrap();
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(
        targets,
        ["/create", "/create", "/create", "/reset", "/close"]
    );
}

#[test]
fn answers_of_the_wrong_shape_are_typed() {
    let (url, server) = scripted(vec![
        (200, "[1]"),
        (200, "<html>"),
        (404, r#"{"detail":"Not Found"}"#),
    ]);
    for want in ["expected struct TextCraftEpisode", "not JSON", "Not Found"] {
        let mut env = AgentGymEnv::new(EnvKind::TextCraft, remote(&url));
        let error = remote_source(env.reset(TaskId(0)).unwrap_err());
        let fits = match &error {
            AgentGymError::BadResponse { message, .. } => message.contains(want),
            AgentGymError::Status {
                status: 404,
                message,
                ..
            } => message == want,
            _ => false,
        };
        assert!(fits, "{want}: {error}");
    }
    assert_eq!(server.join().unwrap().len(), 3);
}

#[test]
fn steps_are_never_sent_twice_but_resets_are() {
    let (url, server) = scripted(vec![
        (200, r#"{"id":2,"observation":"c","done":false,"reward":0}"#),
        (500, "Internal Server Error"),
        (
            200,
            r#"{"id":2,"observation":"first","done":false,"reward":0}"#,
        ),
        (500, "Internal Server Error"),
        (200, r#"{"closed":true}"#),
    ]);
    let mut env = AgentGymEnv::new(EnvKind::TextCraft, remote(&url));
    assert_eq!(env.reset(TaskId(0)).unwrap(), "first");
    let error = remote_source(env.step("inventory").unwrap_err());
    assert!(
        matches!(&error, AgentGymError::Status { status: 500, message, .. }
            if message == "Internal Server Error"),
        "{error}"
    );
    drop(env);
    let targets: Vec<String> = server
        .join()
        .unwrap()
        .into_iter()
        .map(|s| s.target)
        .collect();
    assert_eq!(targets, ["/create", "/reset", "/reset", "/step", "/close"]);
}

#[test]
fn unreachable_and_silent_servers_are_transport_errors() {
    // A port nothing listens on: refused, retried up to the limit.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = RemoteConfig::new(format!("http://127.0.0.1:{port}"));
    config.base_delay = Duration::from_millis(1);
    config.max_attempts = 3;
    let mut env = AgentGymEnv::new(EnvKind::TextCraft, Remote::new(config).unwrap());
    let error = remote_source(env.reset(TaskId(0)).unwrap_err());
    assert!(
        matches!(error, AgentGymError::Transport { attempts: 3, .. }),
        "{error}"
    );
    // A server that accepts and never answers: the request timeout ends the call, and a step
    // (which the server may have executed) is not retried.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let mut streams = Vec::new();
        for stream in listener.incoming().take(2) {
            let mut stream = stream.unwrap();
            if streams.is_empty() {
                // Answer the create; hold the step's connection open without answering.
                let mut buffer = [0; 4096];
                let _ = stream.read(&mut buffer);
                let body = r#"{"id":5,"observation":"c","done":false,"reward":0}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
            streams.push(stream);
        }
        std::thread::sleep(Duration::from_secs(2));
    });
    let mut config = RemoteConfig::new(url);
    config.request_timeout = Duration::from_millis(300);
    config.connect_timeout = Duration::from_millis(300);
    let mut env = AgentGymEnv {
        kind: EnvKind::TextCraft,
        remote: Remote::new(config).unwrap(),
        id: None,
    };
    env.created().unwrap();
    let error = remote_source(env.step("inventory").unwrap_err());
    assert!(
        matches!(error, AgentGymError::Transport { attempts: 1, .. }),
        "{error}"
    );
    env.id = None;
    held.join().unwrap();
}

#[test]
fn addresses_are_checked_without_connecting() {
    for (url, ok) in [
        ("http://127.0.0.1:36001", true),
        ("http://localhost:8000/", true),
        ("HTTP://host/prefix", true),
        ("https://example.org", false),
        ("ftp://example.org", false),
        ("127.0.0.1:8000", false),
        ("http://", false),
        ("http://host/?x=1", false),
    ] {
        let result = Remote::new(RemoteConfig::new(url));
        assert_eq!(result.is_ok(), ok, "{url}: {result:?}");
        if let Err(error) = result {
            assert!(matches!(error, AgentGymError::BadUrl { .. }));
        }
    }
    let remote = remote("http://h:1/api/");
    assert_eq!(remote.url("/step"), "http://h:1/api/step");
}

#[test]
fn task_ids_are_agentgyms_without_a_server() {
    let env = |kind| AgentGymEnv::new(kind, remote("http://127.0.0.1:1"));
    let textcraft = env(EnvKind::TextCraft);
    assert_eq!(textcraft.task_ids(Split::All).len(), 544);
    assert_eq!(textcraft.task_ids(Split::Test).len(), 100);
    assert_eq!(textcraft.task_ids(Split::Train).len(), 444);
    let sciworld = env(EnvKind::SciWorld);
    assert_eq!(sciworld.task_ids(Split::Test), sciworld::test_ids());
    assert_eq!(sciworld.task_ids(Split::Train), sciworld::train_ids());
    assert_eq!(sciworld.task_ids(Split::All).len(), 4639);
    let webshop = env(EnvKind::WebShop);
    assert_eq!(webshop.task_ids(Split::Test).len(), 200);
    let all = webshop.task_ids(Split::All);
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(all.len(), 200 + webshop.task_ids(Split::Train).len());
    assert_eq!(
        textcraft.extract_action("Thought: x\nAction: get 1 oak_log!"),
        "get 1 oaklog"
    );
    assert!(sciworld.same_observation("a, b\nc", "c\nb, a"));
    assert!(!textcraft.same_observation("a, b", "b, a"));
    assert_eq!("webshop".parse::<EnvKind>(), Ok(EnvKind::WebShop));
    assert!("alfworld".parse::<EnvKind>().is_err());
}
