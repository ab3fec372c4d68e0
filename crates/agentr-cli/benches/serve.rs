//! Load test of `agentr serve --env textcraft`: step requests per second and step latency
//! with 1 and 8 concurrent keep-alive clients, for BENCHMARKS.md.
//!
//! Not a criterion benchmark: the figures are a throughput under concurrency and latency
//! percentiles. Starts the `agentr` binary of this build on a free loopback port; each client
//! is a thread with one keep-alive connection and one environment (`POST /create`), playing
//! the TextCraft expert's episodes of the test goals over and over (`POST /reset`, then one
//! `POST /step` per action; every answer is checked). Requests are written and read with plain
//! sockets so the client costs as little as possible: client and server share the machine.
//!
//! `cargo bench -p agentr-cli --bench serve [-- --seconds S --clients 1,8]`. Prints a table
//! and one JSON line per client count. Needs the TextCraft recipes (`cargo xtask setup`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentr_envs::episode::{RolloutOptions, rollout};
use agentr_envs::textcraft::{TextCraft, TextCraftExpert};
use agentr_envs::{EnvError, Environment, Expert, Split};

/// One keep-alive connection speaking just enough HTTP/1.1.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    body: Vec<u8>,
}

impl Connection {
    fn open(addr: &str) -> Connection {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Connection {
            writer: stream.try_clone().expect("clone"),
            reader: BufReader::with_capacity(1 << 16, stream),
            body: Vec::new(),
        }
    }

    /// Sends a prepared request and reads the answer's body into `self.body`.
    fn exchange(&mut self, request: &[u8]) -> &[u8] {
        self.writer.write_all(request).expect("write");
        let mut length = None;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("read");
            if first {
                assert!(line.starts_with("HTTP/1.1 200"), "status line {line:?}");
                first = false;
            } else if line == "\r\n" {
                break;
            } else if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        self.body.resize(length.expect("content-length"), 0);
        self.reader.read_exact(&mut self.body).expect("body");
        &self.body
    }
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An episode as prepared requests: the reset, then the steps.
struct Episode {
    reset: Vec<u8>,
    steps: Vec<Vec<u8>>,
}

fn episodes(id: u64, plans: &[(u64, Vec<String>)]) -> Vec<Episode> {
    plans
        .iter()
        .map(|(task, actions)| Episode {
            reset: post("/reset", &format!(r#"{{"id": {id}, "data_idx": {task}}}"#)),
            steps: actions
                .iter()
                .map(|action| {
                    let body = serde_json::json!({"id": id, "action": action});
                    post("/step", &body.to_string())
                })
                .collect(),
        })
        .collect()
}

/// What one client measured.
struct Run {
    steps: u64,
    latencies_ns: Vec<u64>,
}

fn client(addr: String, plans: Vec<(u64, Vec<String>)>, warmup: Duration, run: Duration) -> Run {
    let mut connection = Connection::open(&addr);
    let created = connection.exchange(&post("/create", "{}"));
    let created: serde_json::Value = serde_json::from_slice(created).expect("create answer");
    let id = created["id"].as_u64().expect("an id");
    let episodes = episodes(id, &plans);
    let start = Instant::now();
    let mut measuring = false;
    let mut result = Run {
        steps: 0,
        latencies_ns: Vec::with_capacity(1 << 20),
    };
    'outer: loop {
        for episode in &episodes {
            let answer = connection.exchange(&episode.reset);
            assert!(answer.starts_with(br#"{"id":"#), "reset answer");
            for step in &episode.steps {
                let sent = Instant::now();
                let answer = connection.exchange(step);
                let took = sent.elapsed();
                assert!(answer.starts_with(br#"{"observation":"#), "step answer");
                if measuring {
                    result.steps += 1;
                    result.latencies_ns.push(took.as_nanos() as u64);
                }
            }
            let elapsed = start.elapsed();
            if elapsed >= warmup + run {
                break 'outer;
            }
            measuring = elapsed >= warmup;
        }
    }
    result
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at] as f64 / 1000.0
}

/// A running server, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let seconds: f64 = value("--seconds").map_or(5.0, |v| v.parse().expect("--seconds"));
    let counts: Vec<usize> = value("--clients").map_or_else(
        || vec![1, 8],
        |v| {
            v.split(',')
                .map(|c| c.parse().expect("--clients"))
                .collect()
        },
    );

    let mut env = TextCraft::from_default_assets()
        .unwrap_or_else(|e| panic!("{e}\n(run `cargo xtask setup` first)"));
    let plans: Vec<(u64, Vec<String>)> = env
        .task_ids(Split::Test)
        .into_iter()
        .map(|task| {
            let episode =
                rollout::<EnvError, _>(&mut env, task, RolloutOptions::default(), |chat| {
                    TextCraftExpert.respond(chat)
                })
                .expect("expert episode");
            let actions = episode.responses().map(|r| env.extract_action(r)).collect();
            (task.0, actions)
        })
        .collect();
    let actions: usize = plans.iter().map(|(_, a)| a.len()).sum();

    let mut child = Command::new(env!("CARGO_BIN_EXE_agentr"))
        .args(["serve", "--env", "textcraft", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agentr serve starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("agentr serve ended before listening")
            .expect("stderr line");
        if let Some(addr) = line.strip_prefix("listening on http://") {
            break addr.to_owned();
        }
    };
    let _server = Server(child);
    std::thread::spawn(move || for _ in lines {});

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "agentr serve --env textcraft on {addr}; {cpus} CPUs; workload: the expert's episodes \
         of the {} test goals ({actions} steps), repeated; {seconds} s per run after 1 s warm-up",
        plans.len()
    );
    println!("| clients | steps / s | p50 latency | p99 latency | p99.9 latency |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for &count in &counts {
        let run = Duration::from_secs_f64(seconds);
        let warmup = Duration::from_secs(1);
        let threads: Vec<_> = (0..count)
            .map(|c| {
                let addr = addr.clone();
                // Clients start at different episodes so they do not move in step.
                let mut plans = plans.clone();
                let shift = c * plans.len() / count.max(1);
                plans.rotate_left(shift);
                std::thread::spawn(move || client(addr, plans, warmup, run))
            })
            .collect();
        let runs: Vec<Run> = threads
            .into_iter()
            .map(|t| t.join().expect("client"))
            .collect();
        let steps: u64 = runs.iter().map(|r| r.steps).sum();
        let mut latencies: Vec<u64> = runs.into_iter().flat_map(|r| r.latencies_ns).collect();
        latencies.sort_unstable();
        // Each client measured for `run` (its last episode may end a little later).
        let per_second = steps as f64 / seconds;
        let (p50, p99, p999) = (
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            percentile(&latencies, 0.999),
        );
        println!("| {count} | {per_second:.0} | {p50:.0} µs | {p99:.0} µs | {p999:.0} µs |");
        println!(
            "{}",
            serde_json::json!({
                "clients": count, "steps": steps, "steps_per_s": per_second.round(),
                "p50_us": p50, "p99_us": p99, "p999_us": p999, "cpus": cpus,
            })
        );
    }
}
