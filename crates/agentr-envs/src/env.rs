//! The [`Environment`] trait and its small vocabulary.

use std::any::Any;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::EnvError;

/// A task index as AgentGym numbers them (`data_idx`): which goal, game or instruction an
/// episode plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TaskId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(TaskId)
    }
}

/// [`Environment::is_rejection`] as a plain function of (previous observation, observation),
/// for work on recorded episodes and trees where no environment runs: each environment module
/// exports its own (`textcraft::is_rejection`, ...).
pub type RejectionRule = fn(previous: &str, observation: &str) -> bool;

/// A named set of task ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Ids for training, search and judge labels.
    Train,
    /// The held-out ids the benchmark reports on (AgentGym's test lists).
    Test,
    /// Every id of the environment.
    All,
}

impl FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            "all" => Ok(Split::All),
            other => Err(format!(
                "unknown split `{other}` (expected train, test or all)"
            )),
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
            Split::All => "all",
        })
    }
}

/// What one action did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The environment's answer, verbatim.
    pub observation: String,
    /// Reward in `[0, 1]` (the episode's reward so far for environments with partial credit).
    pub reward: f64,
    /// Whether the episode has ended.
    pub done: bool,
    /// Whether it ended in a fatal mistake (reward clamped to 0).
    pub disaster: bool,
}

/// An opaque, cheaply cloned copy of an environment's episode state, for search to fork
/// from without replaying actions.
pub struct Snapshot {
    env: &'static str,
    state: Box<dyn Any + Send + Sync>,
}

impl Snapshot {
    /// Wraps an environment's state.
    pub fn new<T: Any + Send + Sync>(env: &'static str, state: T) -> Self {
        Snapshot {
            env,
            state: Box::new(state),
        }
    }

    /// The environment that took the snapshot.
    pub fn env(&self) -> &'static str {
        self.env
    }

    /// The state, if it is of type `T` and was taken by `env`.
    pub fn state<T: Any>(&self, env: &'static str) -> Result<&T, EnvError> {
        let mismatch = || EnvError::SnapshotMismatch {
            expected: env,
            found: self.env,
        };
        if self.env != env {
            return Err(mismatch());
        }
        self.state.downcast_ref::<T>().ok_or_else(mismatch)
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot").field("env", &self.env).finish()
    }
}

/// The outcome of replaying a list of actions from a fresh reset.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// The observation after reset.
    pub first_observation: String,
    /// One step per action, in order.
    pub steps: Vec<Step>,
}

/// A text environment with AgentGym's episode protocol.
///
/// Invalid actions are not errors: the environment answers them with an observation (as the
/// reference servers do). Errors mean the environment itself cannot go on.
pub trait Environment: Send {
    /// Short lowercase name, e.g. `textcraft`.
    fn name(&self) -> &'static str;

    /// The user turn that opens every conversation: the action grammar and the expected
    /// `Thought: ...` / `Action: ...` reply format.
    fn instruction(&self) -> &str;

    /// Starts the episode of `task` and returns its first observation.
    fn reset(&mut self, task: TaskId) -> Result<String, EnvError>;

    /// Executes one action (already extracted from a response).
    fn step(&mut self, action: &str) -> Result<Step, EnvError>;

    /// The action an environment executes for a model `response`. Default: the text after the
    /// last `Action:`.
    fn extract_action(&self, response: &str) -> String {
        crate::action::after_last_action(response).to_owned()
    }

    /// The task ids of a split.
    fn task_ids(&self, split: Split) -> Vec<TaskId>;

    /// Whether this environment refused the action that turned `previous` (the observation
    /// the action answered) into `observation`. Evaluation counts these as invalid actions,
    /// and the environment-feedback judge calls such steps bad. Every environment says how it
    /// refuses (a message, an unchanged page), so there is no default. The same rule as a plain
    /// function, for recorded episodes without a live environment: [`RejectionRule`].
    fn is_rejection(&self, previous: &str, observation: &str) -> bool;

    /// Whether two observations of this environment say the same thing: equality, unless the
    /// environment's text varies in ways that carry no meaning (ScienceWorld lists a room's
    /// objects in an order that changes between loads). Replaying a recorded episode checks
    /// its observations with this.
    fn same_observation(&self, a: &str, b: &str) -> bool {
        a == b
    }

    /// The agent's current inventory as text, without spending a step, when the environment
    /// has one (for people playing in a terminal).
    fn inventory_text(&self) -> Option<String> {
        None
    }

    /// A snapshot of the current episode state, when supported.
    fn snapshot(&self) -> Option<Snapshot> {
        None
    }

    /// Restores a state taken by [`Environment::snapshot`].
    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), EnvError> {
        let _ = snapshot;
        Err(EnvError::SnapshotUnsupported { env: self.name() })
    }

    /// Resets to `task` and executes `actions` in order: the restore method that works for
    /// every environment.
    fn replay(&mut self, task: TaskId, actions: &[String]) -> Result<Replay, EnvError> {
        let first_observation = self.reset(task)?;
        let steps = actions
            .iter()
            .map(|action| self.step(action))
            .collect::<Result<_, _>>()?;
        Ok(Replay {
            first_observation,
            steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_checks_env_and_type() {
        let snapshot = Snapshot::new("a", 5u32);
        assert_eq!(*snapshot.state::<u32>("a").unwrap(), 5);
        assert!(matches!(
            snapshot.state::<u32>("b"),
            Err(EnvError::SnapshotMismatch { .. })
        ));
        assert!(snapshot.state::<u64>("a").is_err());
    }

    #[test]
    fn splits_and_ids_parse() {
        assert_eq!("test".parse::<Split>().unwrap(), Split::Test);
        assert!("dev".parse::<Split>().is_err());
        assert_eq!(" 12 ".parse::<TaskId>().unwrap(), TaskId(12));
        assert_eq!(serde_json::to_string(&TaskId(3)).unwrap(), "3");
    }
}
