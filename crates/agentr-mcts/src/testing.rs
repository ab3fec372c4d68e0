//! A kit for property tests of searches, policies and anything built on trees (feature
//! `test-util`): a synthetic environment with known branching and rewards ([`Toy`]), a random
//! and a failing policy, and proptest strategies for environments and search settings.
//!
//! The search's own property tests use exactly this kit; the crate README shows a property
//! test of your own [`Policy`] written with it.

use agentr_envs::rng::Rng;
use agentr_envs::{EnvError, Environment, Snapshot, Split, Step, TaskId};
use proptest::prelude::{Just, Strategy, any};

use crate::{Policy, SampleRequest, SearchConfig};

/// Actions `a0`..`a{branching-1}`; anything else is answered `invalid` and changes nothing
/// (a rejection). Whether a state ends the episode, its reward (0, 0.5 or 1) and disasters
/// are a hash of (salt, task, path), so every run of the same game gives the same tree.
#[derive(Debug, Clone)]
pub struct Toy {
    /// Number of valid actions in every state.
    pub branching: u8,
    /// Episodes end after this many valid actions at the latest.
    pub max_len: usize,
    /// Varies the game: which states end, their rewards and disasters.
    pub salt: u64,
    /// A state ends the episode with probability about 1 / `end_one_in`.
    pub end_one_in: u64,
    /// Whether the environment offers snapshots (else the search restores by replay).
    pub snapshots: bool,
    /// The task of the current episode.
    pub task: Option<TaskId>,
    /// The valid actions taken so far in the current episode.
    pub path: Vec<u8>,
    /// Fail with an error on the step with this index (counted over the env's life).
    pub fail_at_step: Option<usize>,
    /// Steps taken over the environment's life.
    pub steps_taken: usize,
}

impl Toy {
    /// A game with `branching` valid actions per state and episodes of at most `max_len`
    /// actions; `salt` picks the game; `snapshots` whether it offers snapshots.
    pub fn new(branching: u8, max_len: usize, salt: u64, snapshots: bool) -> Self {
        Toy {
            branching,
            max_len,
            salt,
            end_one_in: 4,
            snapshots,
            task: None,
            path: Vec::new(),
            fail_at_step: None,
            steps_taken: 0,
        }
    }

    fn hash(&self) -> u64 {
        let mut parts = vec![self.salt, self.task.map_or(0, |t| t.0)];
        parts.extend(self.path.iter().map(|&p| u64::from(p)));
        Rng::from_parts(&parts).next_u64()
    }
}

impl Environment for Toy {
    fn name(&self) -> &'static str {
        "toy"
    }

    fn instruction(&self) -> &str {
        "Pick actions a0, a1, ... until the game ends.\nAnswer with Action: <action>."
    }

    fn is_rejection(&self, _previous: &str, observation: &str) -> bool {
        observation == "invalid"
    }

    fn reset(&mut self, task: TaskId) -> Result<String, EnvError> {
        self.task = Some(task);
        self.path.clear();
        Ok(format!("start\tof task {task}\n"))
    }

    fn step(&mut self, action: &str) -> Result<Step, EnvError> {
        self.steps_taken += 1;
        if self.fail_at_step == Some(self.steps_taken) {
            return Err(EnvError::NotReset { env: "toy" });
        }
        let choice = action
            .strip_prefix('a')
            .and_then(|d| d.parse::<u8>().ok())
            .filter(|&d| d < self.branching);
        let Some(choice) = choice else {
            return Ok(Step {
                observation: "invalid".into(),
                reward: 0.0,
                done: false,
                disaster: false,
            });
        };
        self.path.push(choice);
        let h = self.hash();
        let done = self.path.len() >= self.max_len || h.is_multiple_of(self.end_one_in);
        let disaster = !done && h.is_multiple_of(3 * self.end_one_in + 1);
        Ok(Step {
            observation: format!("at\n{:?}", self.path),
            // A disaster reports a positive reward on purpose: the search must clamp it.
            reward: if disaster {
                0.7
            } else if done {
                (h % 3) as f64 / 2.0
            } else {
                0.0
            },
            done: done || disaster,
            disaster,
        })
    }

    fn task_ids(&self, _: Split) -> Vec<TaskId> {
        (0..10).map(TaskId).collect()
    }

    fn snapshot(&self) -> Option<Snapshot> {
        self.snapshots
            .then(|| Snapshot::new("toy", (self.task, self.path.clone())))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), EnvError> {
        let (task, path) = snapshot.state::<(Option<TaskId>, Vec<u8>)>("toy")?.clone();
        self.task = task;
        self.path = path;
        Ok(())
    }
}

/// Picks among `vocabulary` actions (some invalid when larger than the branching) at random,
/// seeded by the request.
#[derive(Debug, Clone, Copy)]
pub struct RandomPolicy {
    /// Actions `a0`..`a{vocabulary-1}` are drawn.
    pub vocabulary: u64,
}

/// The error of the kit's policies.
#[derive(Debug, thiserror::Error)]
#[error("the policy gave up")]
pub struct GaveUp;

impl Policy for RandomPolicy {
    type Error = GaveUp;
    fn sample(&self, request: &SampleRequest<'_>) -> Result<Vec<String>, GaveUp> {
        let mut rng = Rng::new(request.seed);
        Ok((0..request.n)
            .map(|_| format!("Thought: hm\nAction: a{}", rng.below(self.vocabulary)))
            .collect())
    }
}

/// Fails on the `fail_on`-th call (1-based), else behaves like `inner`: for failure-injection
/// tests of code that drives a search.
#[derive(Debug)]
pub struct FailingPolicy {
    /// The policy that answers the other calls.
    pub inner: RandomPolicy,
    /// The call that fails, counting from 1.
    pub fail_on: usize,
    /// Calls so far.
    pub calls: std::sync::atomic::AtomicUsize,
}

impl Policy for FailingPolicy {
    type Error = GaveUp;
    fn sample(&self, request: &SampleRequest<'_>) -> Result<Vec<String>, GaveUp> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if call == self.fail_on {
            return Err(GaveUp);
        }
        self.inner.sample(request)
    }
}

/// Toy games: 1-4 valid actions, episodes of 1-11 actions, any salt, with or without
/// snapshots.
pub fn toys() -> impl Strategy<Value = Toy> {
    (1u8..5, 1usize..12, any::<u64>(), any::<bool>()).prop_map(
        |(branching, max_len, salt, snapshots)| Toy::new(branching, max_len, salt, snapshots),
    )
}

/// Search settings small enough for hundreds of cases: 0-9 iterations, 1-5 candidates, depth
/// limits 1-9, any seed; everything else the defaults.
pub fn search_configs() -> impl Strategy<Value = SearchConfig> {
    (0usize..10, 1usize..6, 1usize..10, any::<u64>()).prop_map(
        |(iterations, candidates, depth_limit, seed)| SearchConfig {
            iterations,
            candidates,
            depth_limit,
            seed,
            ..SearchConfig::default()
        },
    )
}

/// A toy game with a random policy over its actions plus up to `extra_invalid` invalid ones.
pub fn toys_with_random_policies(extra_invalid: u64) -> impl Strategy<Value = (Toy, RandomPolicy)> {
    (toys(), 0..=extra_invalid).prop_flat_map(|(toy, extra)| {
        let vocabulary = u64::from(toy.branching) + extra;
        (Just(toy), Just(RandomPolicy { vocabulary }))
    })
}
