//! A synthetic environment and policies with known branching and rewards, for tests.

use agentr_envs::rng::Rng;
use agentr_envs::{EnvError, Environment, Snapshot, Split, Step, TaskId};

use crate::{Policy, SampleRequest};

/// Actions `a0`..`a{branching-1}`; anything else is answered `invalid` and changes nothing.
/// Whether a state ends the episode, its reward and disasters are a hash of the path.
#[derive(Debug, Clone)]
pub struct Toy {
    pub branching: u8,
    pub max_len: usize,
    pub salt: u64,
    /// A state ends the episode with probability about 1 / `end_one_in`.
    pub end_one_in: u64,
    pub snapshots: bool,
    pub task: Option<TaskId>,
    pub path: Vec<u8>,
    /// Fail with an error on the step with this index (counted over the env's life).
    pub fail_at_step: Option<usize>,
    pub steps_taken: usize,
}

impl Toy {
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

/// Picks among `vocabulary` actions (some invalid when larger than the branching) at random.
#[derive(Debug, Clone, Copy)]
pub struct RandomPolicy {
    pub vocabulary: u64,
}

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

/// Fails on the `fail_on`-th call (1-based), else behaves like `inner`.
pub struct FailingPolicy {
    pub inner: RandomPolicy,
    pub fail_on: usize,
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
