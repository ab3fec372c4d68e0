//! ScienceWorld throughput and memory per worker: the gold action sequences of the first 20
//! AgentGym test games, replayed (reset, then every gold action) on one JVM, the workload
//! `bench/sciworld_python.sh` runs on the Python `scienceworld` package for BENCHMARKS.md.
//!
//! Not a criterion benchmark: one pass takes tens of seconds and the figure of interest is the
//! median of a few passes plus the JVM's resident memory. Prints one JSON object.
//! With `--workload FILE`, also writes the workload (task name, variation, actions) there.
//! Needs the jar and Java 11+ (`cargo xtask setup`).

use std::time::Instant;

use agentr_envs::sciworld::{SciWorld, game_of, test_ids};
use agentr_envs::{Environment, TaskId};

const GAMES: usize = 20;
const PASSES: usize = 3;

/// The JVM's resident set, from /proc (Linux), in MiB.
fn resident_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let workload_out = args
        .iter()
        .position(|a| a == "--workload")
        .and_then(|i| args.get(i + 1));
    let mut env = SciWorld::from_default_assets()
        .unwrap_or_else(|e| panic!("{e}\n(run `cargo xtask setup` first)"));
    let tasks: Vec<TaskId> = test_ids().into_iter().take(GAMES).collect();
    let gold: Vec<(TaskId, Vec<String>)> = tasks
        .iter()
        .map(|&task| (task, env.gold_actions(task).expect("gold path")))
        .collect();
    if let Some(path) = workload_out {
        let games: Vec<serde_json::Value> = gold
            .iter()
            .map(|(task, actions)| {
                let (game, variation) = game_of(*task).expect("known task");
                serde_json::json!({"task": task.0, "name": game.name, "variation": variation, "actions": actions})
            })
            .collect();
        std::fs::write(path, serde_json::to_vec(&games).expect("json"))
            .expect("writing the workload");
    }
    let steps: usize = gold.iter().map(|(_, a)| a.len()).sum();
    let mut passes = Vec::new();
    for _ in 0..PASSES {
        let (mut reset_s, mut step_s) = (0.0, 0.0);
        for (task, actions) in &gold {
            let started = Instant::now();
            env.reset(*task).expect("reset");
            reset_s += started.elapsed().as_secs_f64();
            let started = Instant::now();
            for action in actions {
                std::hint::black_box(env.step(action).expect("step"));
            }
            step_s += started.elapsed().as_secs_f64();
        }
        passes.push((reset_s, step_s));
    }
    passes.sort_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)));
    let (reset_s, step_s) = passes[PASSES / 2];
    let rss = env.jvm_pid().and_then(resident_mib);
    println!(
        "{}",
        serde_json::json!({
            "implementation": "agentr",
            "games": GAMES,
            "steps": steps,
            "passes": PASSES,
            "median_pass": {"reset_seconds": reset_s, "step_seconds": step_s},
            "steps_per_second": steps as f64 / step_s,
            "episodes_per_second": GAMES as f64 / (reset_s + step_s),
            "jvm_resident_mib": rss,
        })
    );
}
