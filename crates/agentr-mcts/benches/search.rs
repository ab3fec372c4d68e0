//! Search on TextCraft with the noisy expert (needs `cargo xtask setup`).
//!
//! * `search/snapshot` and `search/replay`: 40 training tasks with the default settings,
//!   restoring node states from snapshots or by reset + replay;
//! * afterwards, one untimed-by-criterion run that splits wall time into policy, environment
//!   and the search's own work, printed as `overhead: ...` (the figure BENCHMARKS.md records).

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agentr_envs::textcraft::{RecipeBook, TextCraft, TextCraftExpert};
use agentr_envs::{EnvError, Environment, NoisyExpert, Snapshot, Split, Step, TaskId, assets};
use agentr_mcts::{Policy, Restore, SampleRequest, SearchConfig, search};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn textcraft() -> TextCraft {
    let dir = assets::textcraft_recipes_dir(&assets::agentr_home());
    let book = RecipeBook::load(&dir).unwrap_or_else(|e| panic!("{e}\n(run `cargo xtask setup`)"));
    TextCraft::new(Arc::new(book))
}

fn tasks(env: &TextCraft) -> Vec<TaskId> {
    env.task_ids(Split::Train)
        .into_iter()
        .step_by(11)
        .take(40)
        .collect()
}

/// Accumulated wall time of the calls it wrapped.
#[derive(Default)]
struct Stopwatch(AtomicU64);

impl Stopwatch {
    fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.0
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }

    fn spent(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

/// Counts the time spent inside the wrapped environment.
struct TimedEnv<E> {
    inner: E,
    watch: Stopwatch,
}

impl<E: Environment> Environment for TimedEnv<E> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn instruction(&self) -> &str {
        self.inner.instruction()
    }
    fn reset(&mut self, task: TaskId) -> Result<String, EnvError> {
        let inner = &mut self.inner;
        self.watch.time(|| inner.reset(task))
    }
    fn step(&mut self, action: &str) -> Result<Step, EnvError> {
        let inner = &mut self.inner;
        self.watch.time(|| inner.step(action))
    }
    fn extract_action(&self, response: &str) -> String {
        self.watch.time(|| self.inner.extract_action(response))
    }
    fn task_ids(&self, split: Split) -> Vec<TaskId> {
        self.inner.task_ids(split)
    }
    fn is_rejection(&self, previous: &str, observation: &str) -> bool {
        self.inner.is_rejection(previous, observation)
    }
    fn snapshot(&self) -> Option<Snapshot> {
        self.watch.time(|| self.inner.snapshot())
    }
    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), EnvError> {
        let inner = &mut self.inner;
        self.watch.time(|| inner.restore(snapshot))
    }
}

/// Counts the time spent inside the wrapped policy.
struct TimedPolicy<P> {
    inner: P,
    watch: Stopwatch,
}

impl<P: Policy> Policy for TimedPolicy<P> {
    type Error = P::Error;
    fn sample(&self, request: &SampleRequest<'_>) -> Result<Vec<String>, P::Error> {
        self.watch.time(|| self.inner.sample(request))
    }
}

fn bench(c: &mut Criterion) {
    let env = textcraft();
    let tasks = tasks(&env);
    let policy = NoisyExpert::new(TextCraftExpert, 0.3);
    let mut group = c.benchmark_group("search");
    group.sample_size(10);
    group.throughput(Throughput::Elements(tasks.len() as u64));
    for (name, restore) in [("snapshot", Restore::Auto), ("replay", Restore::Replay)] {
        let config = SearchConfig {
            restore,
            ..SearchConfig::default()
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                for &task in &tasks {
                    let tree = search(&mut env.clone(), &policy, task, &config).expect("search");
                    std::hint::black_box(tree.nodes.len());
                }
            })
        });
    }
    group.finish();

    for restore in [Restore::Auto, Restore::Replay] {
        let config = SearchConfig {
            restore,
            ..SearchConfig::default()
        };
        let timed_policy = TimedPolicy {
            inner: NoisyExpert::new(TextCraftExpert, 0.3),
            watch: Stopwatch::default(),
        };
        let mut timed_env = TimedEnv {
            inner: env.clone(),
            watch: Stopwatch::default(),
        };
        let start = Instant::now();
        let mut nodes = 0;
        for _ in 0..3 {
            for &task in &tasks {
                nodes += search(&mut timed_env, &timed_policy, task, &config)
                    .expect("search")
                    .nodes
                    .len();
            }
        }
        let total = start.elapsed();
        let policy_time = timed_policy.watch.spent();
        let env_time = timed_env.watch.spent();
        let own = total.saturating_sub(policy_time + env_time);
        eprintln!(
            "overhead ({restore:?}): total {:.1} ms for {} searches ({nodes} nodes): policy {:.1}%, env {:.1}%, search itself {:.2}%",
            total.as_secs_f64() * 1e3,
            3 * tasks.len(),
            100.0 * policy_time.as_secs_f64() / total.as_secs_f64(),
            100.0 * env_time.as_secs_f64() / total.as_secs_f64(),
            100.0 * own.as_secs_f64() / total.as_secs_f64(),
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
