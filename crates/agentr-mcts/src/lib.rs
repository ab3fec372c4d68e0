//! Agent-R's Monte Carlo tree search over any [`Environment`](agentr_envs::Environment) with
//! any [`Policy`].
//!
//! * [`search`] grows the tree of one task (the reference's loop, without its off-by-one
//!   depth limit), restoring node states from snapshots when the environment has them and by
//!   reset + replay otherwise;
//! * [`Tree`] is the arena the search builds, with a validated JSON form and the helpers the
//!   revision step needs (leaves, paths, conversations);
//! * [`collect()`] searches many tasks with several workers and writes one tree file per task.
//!
//! The model-free [`NoisyExpert`](agentr_envs::NoisyExpert) is a [`Policy`], so trees with
//! both failed and successful branches can be grown without any model:
//!
//! ```no_run
//! use agentr_envs::textcraft::{TextCraft, TextCraftExpert};
//! use agentr_envs::{NoisyExpert, TaskId};
//! use agentr_mcts::{SearchConfig, search};
//!
//! let mut env = TextCraft::from_default_assets()?;
//! let policy = NoisyExpert::new(TextCraftExpert, 0.3);
//! let tree = search(&mut env, &policy, TaskId(200), &SearchConfig::default())?;
//! for leaf in tree.leaves() {
//!     println!("leaf {leaf}: reward {} after {} actions", tree.leaf_reward(leaf), tree.nodes[leaf].depth);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod collect;
mod config;
mod error;
mod policy;
mod search;
pub mod tree;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod toy;

pub use collect::collect;
pub use config::{Restore, SearchConfig};
pub use error::{NodePath, SearchError};
pub use policy::{Policy, SampleRequest};
pub use search::search;
pub use tree::{Node, NodeId, Tree};

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
