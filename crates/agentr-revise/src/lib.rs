//! Agent-R's revision step: from search trees to training samples.
//!
//! * [`find_pairs`]: (good, bad) leaf pairs under the paper's reward condition or the reference
//!   code's gap condition, with the alpha schedule of [`alpha_for_iteration`];
//! * [`Judge`]: labels single steps Good / Bad / Uncertain; [`judge_prompt`] and
//!   [`parse_judgement`] serve model judges; [`EnvFeedbackJudge`] and [`ScriptedJudge`] need no
//!   model;
//! * [`revise_tree`]: finds the transition point t' (first step judged Bad, or the end of the
//!   bad branch in direct mode) and splices revision trajectories: shared prefix and bad steps
//!   up to t' without loss, the revision turn `Thought: <signal>\nAction: wait` and the good
//!   continuation with loss. Good trajectories become samples too;
//! * [`judge_samples`]: verifier prompts with answers labelled from the tree's statistics
//!   ([`tree_label`]), so a model trained from scratch also learns to judge;
//! * [`testing`] (feature `test-util`): random trees, a proptest strategy over them and a judge
//!   with labels known in advance, for property tests of your own judges.
//!
//! Samples are the JSONL records of [`agentr_envs::Sample`]: OpenAI-style messages with
//! per-message `loss` flags, plus metadata (`kind`, `t_prime`, `r_good`, `r_bad`, the judge's
//! name, label and rationale, ...).
//!
//! ```
//! # #[cfg(feature = "test-util")] {
//! use agentr_revise::testing::{is_rejection, random_tree};
//! use agentr_revise::{
//!     EnvFeedbackJudge, Mode, PairCondition, ReviseConfig, Signals, Thresholds, revise_tree,
//! };
//!
//! // A random tree of the test kit (feature `test-util`); `agentr_mcts::Tree::load` reads
//! // the files `agentr collect` writes.
//! let tree = random_tree(7, 5, 3);
//! let config = ReviseConfig {
//!     mode: Mode::AgentR,
//!     thresholds: Thresholds { alpha: 0.5, beta: 0.2, condition: PairCondition::Paper },
//!     max_pairs_per_tree: Some(20),
//!     seed: 0,
//!     good_samples: true,
//! };
//! // How the tree's environment refuses an action (for TextCraft's trees,
//! // agentr_envs::textcraft::is_rejection).
//! let (samples, stats) =
//!     revise_tree(&tree, &config, &Signals::default(), is_rejection, &EnvFeedbackJudge)?;
//! assert_eq!(stats.trees, 1);
//! println!("{} samples, {} pairs", samples.len(), stats.pairs);
//! # }
//! # Ok::<(), agentr_revise::ReviseError>(())
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod error;
mod judge;
mod pairs;
mod revise;
mod splice;
mod teach;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

#[cfg(test)]
mod tests;

pub use error::ReviseError;
pub use judge::{
    EnvFeedbackJudge, Judge, JudgeRequest, Judgement, Label, NoError, ScriptError, ScriptedJudge,
    StepView, judge_prompt, parse_judgement,
};
pub use pairs::{
    Pair, PairCondition, Thresholds, TreePairs, alpha_for_iteration, find_pairs,
    lowest_common_ancestor,
};
pub use revise::{Mode, ReviseConfig, Stats, revise_tree};
pub use splice::{
    DEFAULT_SIGNALS, REVISION_ACK, REVISION_ACTION, Signals, Splice, good_messages,
    revision_messages,
};
pub use teach::{Agreement, judge_agreement, judge_samples, tree_label};

/// The README's examples, compiled as doctests so they stay true. They use the test kit, which
/// the workspace's tests always enable (a published package's tests need `--features
/// test-util`).
#[cfg(all(doctest, feature = "test-util"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
