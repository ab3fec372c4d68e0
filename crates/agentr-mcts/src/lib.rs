//! Agent-R's Monte Carlo tree search over any [`Environment`](agentr_envs::Environment) with
//! any [`Policy`].
//!
//! * [`search`] grows the tree of one task (the reference's loop, without its off-by-one
//!   depth limit), restoring node states from snapshots when the environment has them and by
//!   reset + replay otherwise;
//! * [`Tree`] is the arena the search builds, with a validated JSON form and the helpers the
//!   revision step needs (leaves, paths, conversations);
//! * [`collect()`] searches many tasks with several workers and writes one tree file per task;
//! * [`testing`] (feature `test-util`): a synthetic environment, test policies and proptest
//!   strategies for property tests of your own policies.
//!
//! The model-free [`NoisyExpert`](agentr_envs::NoisyExpert) is a [`Policy`], so trees with
//! both failed and successful branches can be grown without any model (on TextCraft:
//! `NoisyExpert::new(TextCraftExpert, 0.3)`). Here a random policy searches the synthetic game
//! of the test kit ([`testing`], feature `test-util`):
//!
//! ```
//! # #[cfg(feature = "test-util")] {
//! use agentr_envs::TaskId;
//! use agentr_mcts::testing::{RandomPolicy, Toy};
//! use agentr_mcts::{SearchConfig, search};
//!
//! let mut env = Toy::new(3, 6, 42, true);
//! let policy = RandomPolicy { vocabulary: 4 }; // one action in four is invalid
//! let tree = search(&mut env, &policy, TaskId(0), &SearchConfig::default())?;
//! tree.validate().expect("searched trees keep every invariant");
//! for leaf in tree.leaves() {
//!     println!("leaf {leaf}: reward {} after {} actions", tree.leaf_reward(leaf), tree.nodes[leaf].depth);
//! }
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod collect;
mod config;
mod error;
mod policy;
mod search;
pub mod tree;

#[cfg(any(test, feature = "test-util"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use collect::collect;
pub use config::{Restore, SearchConfig};
pub use error::{InvalidConfig, InvalidTree, NodePath, SearchError};
pub use policy::{Named, Policy, SampleRequest};
pub use search::search;
pub use tree::{Node, NodeId, Tree};

/// The README's examples, compiled as doctests so they stay true. They use the test kit, which
/// the workspace's tests always enable (a published package's tests need `--features
/// test-util`).
#[cfg(all(doctest, feature = "test-util"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
