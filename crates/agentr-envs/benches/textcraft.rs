//! TextCraft throughput: reset + a full expert episode for every one of the 544 goals.
//!
//! Two workloads:
//! * `expert_episodes`: the expert plans every step from the conversation (what `agentr gold`
//!   does);
//! * `replay_episodes`: the same actions, precomputed, only reset + step — the workload that
//!   `bench/textcraft_python.py` runs on the Python package, for the ratio in BENCHMARKS.md.
//!
//! Needs the recipes (`cargo xtask setup`).

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;
use std::sync::Arc;

use agentr_envs::episode::{RolloutOptions, rollout};
use agentr_envs::textcraft::{RecipeBook, TextCraft, TextCraftExpert};
use agentr_envs::{EnvError, Environment, Expert, Split, TaskId, assets};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn load() -> TextCraft {
    let dir = assets::textcraft_recipes_dir(&assets::agentr_home());
    let book =
        RecipeBook::load(&dir).unwrap_or_else(|e| panic!("{e}\n(run `cargo xtask setup` first)"));
    TextCraft::new(Arc::new(book))
}

fn expert_actions(env: &mut TextCraft, tasks: &[TaskId]) -> Vec<(TaskId, Vec<String>)> {
    tasks
        .iter()
        .map(|&task| {
            let episode = rollout::<EnvError, _>(env, task, RolloutOptions::default(), |c| {
                TextCraftExpert.respond(c)
            })
            .expect("expert episode");
            let actions = episode.responses().map(|r| env.extract_action(r)).collect();
            (task, actions)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut env = load();
    let tasks = env.task_ids(Split::All);
    let workload = expert_actions(&mut env, &tasks);
    let steps: usize = workload.iter().map(|(_, a)| a.len()).sum();

    let mut group = c.benchmark_group("textcraft_all_goals");
    group.sample_size(10);
    group.throughput(Throughput::Elements(tasks.len() as u64));
    group.bench_function("expert_episodes", |b| {
        b.iter(|| {
            for &task in &tasks {
                let episode =
                    rollout::<EnvError, _>(&mut env, task, RolloutOptions::default(), |c| {
                        TextCraftExpert.respond(c)
                    })
                    .expect("expert episode");
                black_box(episode.reward);
            }
        })
    });
    group.bench_function("replay_episodes", |b| {
        b.iter(|| {
            for (task, actions) in &workload {
                black_box(env.reset(*task).expect("reset"));
                for action in actions {
                    black_box(env.step(action).expect("step"));
                }
            }
        })
    });
    group.finish();
    eprintln!(
        "workload: {} episodes, {steps} steps (mean {:.2} steps per episode)",
        tasks.len(),
        steps as f64 / tasks.len() as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
