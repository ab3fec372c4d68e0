//! Fault injection: `collect`, `train` and `self-train` killed with SIGKILL at seeded random
//! moments, then started again with the same command (`train` with `--resume`) until one run
//! finishes. What they leave must equal an uninterrupted run's, byte for byte (files that
//! record wall times are compared without them), with no temporary file left over.
//!
//! Each scenario runs the uninterrupted command first, moves its folder aside, then runs the
//! killed one into the same path (paths are recorded in the outputs). A few minutes in all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use agentr_envs::rng::Rng;
use serde_json::Value;

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("agentr-faults-{name}-{}", std::process::id()))
}

fn agentr() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agentr"));
    command.stdin(Stdio::null()).stdout(Stdio::null());
    command
}

/// Runs `args` to the end; panics with its error output when it fails.
fn finish(args: &[String]) {
    let output = agentr()
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .expect("agentr runs");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts `first`, then `again` after each kill: up to `kills` times a run is killed with
/// SIGKILL after a delay drawn from `window` (milliseconds) with `seed`, unless it finished
/// by then; a last run goes to the end. The first kill must land: a first run that finishes
/// before its delay (a machine faster or less loaded than when `window` was measured) is
/// thrown away with its output folder `out`, and tried again with the window halved.
fn kill_and_resume(
    first: &[String],
    again: &[String],
    out: &Path,
    seed: u64,
    mut window: (u64, u64),
    kills: usize,
) {
    let mut rng = Rng::new(seed);
    let mut made = 0;
    let mut args = first;
    let mut tries = 0;
    while made < kills {
        assert!(window.0 < window.1, "empty kill window {window:?}");
        let mut child = agentr()
            .args(args)
            .stderr(Stdio::null())
            .spawn()
            .expect("agentr starts");
        let delay = window.0 + rng.below(window.1 - window.0);
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().expect("status").is_some() {
            if made > 0 {
                break;
            }
            tries += 1;
            assert!(
                tries < 6,
                "the first run finished before every kill, down to {window:?} ms"
            );
            std::fs::remove_dir_all(out).unwrap();
            window = (window.0 / 2, window.1 / 2);
            continue;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        made += 1;
        args = again;
    }
    finish(args);
}

/// Every file under `dir`, by relative path.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                found.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    found
}

/// A file's content without what records wall time: the `seconds`, `elapsed_seconds` and
/// `tokens_per_second` of JSON and JSON-lines files, and a manifest's or results' stage times.
fn without_times(name: &str, bytes: &[u8]) -> Vec<u8> {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for key in [
                    "seconds",
                    "elapsed_seconds",
                    "tokens_per_second",
                    "wall_seconds",
                ] {
                    map.remove(key);
                }
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(bytes);
    let parsed: Option<Vec<Value>> = if name.ends_with(".jsonl") {
        text.lines().map(|l| serde_json::from_str(l).ok()).collect()
    } else if name.ends_with(".json") {
        serde_json::from_str(&text).ok().map(|v| vec![v])
    } else {
        None
    };
    match parsed {
        Some(mut values) => {
            values.iter_mut().for_each(strip);
            serde_json::to_vec(&values).unwrap()
        }
        None => bytes.to_vec(),
    }
}

/// The killed run's folder holds the same files as the uninterrupted one's, with the same
/// content up to wall times, and no temporary file.
fn assert_same(reference: &Path, killed: &Path) {
    let (expected, found) = (files(reference), files(killed));
    let names = |files: &BTreeMap<String, Vec<u8>>| files.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&found), names(&expected), "{}", killed.display());
    for (name, bytes) in &expected {
        assert!(
            without_times(name, bytes) == without_times(name, &found[name]),
            "{name} differs after the kills"
        );
    }
}

/// Runs a scenario: `make(path)` gives the first command and the resuming one for an output
/// folder at `path`. Kills come between `window.0` and `window.1` thousandths of the
/// uninterrupted run's wall time: a window in milliseconds would miss every run on a machine
/// fast enough (CI once finished self-training before its first kill) and hit only start-up
/// on a slow one.
fn scenario(
    name: &str,
    make: impl Fn(&Path) -> (Vec<String>, Vec<String>),
    seed: u64,
    window: (u64, u64),
    kills: usize,
) {
    let dir = temp_path(name);
    let reference = temp_path(&format!("{name}-reference"));
    for path in [&dir, &reference] {
        let _ = std::fs::remove_dir_all(path);
    }
    let (first, again) = make(&dir);
    let started = std::time::Instant::now();
    finish(&first);
    let wall_ms = started.elapsed().as_millis() as u64;
    std::fs::rename(&dir, &reference).unwrap();
    let window_ms = (wall_ms * window.0 / 1000, wall_ms * window.1 / 1000);
    kill_and_resume(&first, &again, &dir, seed, window_ms, kills);
    assert_same(&reference, &dir);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&reference).unwrap();
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

#[test]
fn a_killed_collection_resumes_to_the_same_trees() {
    scenario(
        "collect",
        |dir| {
            let out = dir.to_str().unwrap();
            let args = strings(&[
                "collect",
                "--env",
                "textcraft",
                "--policy",
                "noisy-expert:0.3",
                "--tasks",
                "train[:60]",
                "--workers",
                "2",
                "--out",
                out,
            ]);
            (args.clone(), args)
        },
        11,
        (20, 700),
        5,
    );
}

#[test]
fn a_killed_training_resumes_to_the_same_weights() {
    let samples = temp_path("train-samples.jsonl");
    finish(&strings(&[
        "gold",
        "textcraft",
        "--tasks",
        "train[:24]",
        "--out",
        samples.to_str().unwrap(),
    ]));
    scenario(
        "train",
        |dir| {
            let args = strings(&[
                "train",
                "--samples",
                samples.to_str().unwrap(),
                "--model",
                "tiny-xs",
                "--steps",
                "16",
                "--checkpoint-every",
                "2",
                "--batch-tokens",
                "1024",
                "--out",
                dir.to_str().unwrap(),
            ]);
            let mut resumed = args.clone();
            resumed.push("--resume".into());
            (args, resumed)
        },
        12,
        (50, 700),
        4,
    );
    std::fs::remove_file(&samples).unwrap();
}

#[test]
fn a_killed_self_training_resumes_to_the_same_run() {
    let config = serde_json::json!({
        "preset": "quick", "mode": "agent-r", "judge": "env-feedback", "envs": ["textcraft"],
        "seed": 0, "start_model": null,
        "bc": {"tasks": 3, "textcraft_seeds": [42], "renamed_worlds": 0,
               "observation_loss": false, "model": "tiny-xs", "epochs": 1, "lr": 0.002},
        "iterations": 1,
        "search": {"tasks_per_iteration": 2, "passes": 2, "candidates": 2, "depth_limit": 3,
                   "temperature": 1.0, "cloned_goals": false},
        "train": {"epochs": [1], "lr": 0.001, "beta": 0.2, "max_pairs_per_tree": 10,
                  "judge_samples_per_label": 2, "observation_loss": false, "general": [],
                  "mix_expert_episodes": true, "eta": 0.5},
        "eval": {"tasks": "test[:2]", "max_rounds": 2, "max_tokens": 16, "reflection_rounds": 2},
        "batch_tokens": 4096
    });
    let config_path = temp_path("self-train-config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    scenario(
        "self-train",
        |dir| {
            let args = strings(&[
                "self-train",
                "--config",
                config_path.to_str().unwrap(),
                "--out",
                dir.to_str().unwrap(),
            ]);
            (args.clone(), args)
        },
        13,
        (50, 700),
        4,
    );
    std::fs::remove_file(&config_path).unwrap();
}
