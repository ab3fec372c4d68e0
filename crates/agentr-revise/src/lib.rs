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
//!   ([`tree_label`]), so a model trained from scratch also learns to judge.
//!
//! Samples are the JSONL records of [`agentr_envs::Sample`]: OpenAI-style messages with
//! per-message `loss` flags, plus metadata (`kind`, `t_prime`, `r_good`, `r_bad`, the judge's
//! name, label and rationale, ...).
//!
//! ```no_run
//! use agentr_mcts::Tree;
//! use agentr_revise::{
//!     EnvFeedbackJudge, Mode, PairCondition, ReviseConfig, Signals, Thresholds, revise_tree,
//! };
//!
//! let tree = Tree::load(std::path::Path::new("trees/420.json"))?;
//! let config = ReviseConfig {
//!     mode: Mode::AgentR,
//!     thresholds: Thresholds { alpha: 0.5, beta: 0.2, condition: PairCondition::Paper },
//!     max_pairs_per_tree: Some(20),
//!     seed: 0,
//!     good_samples: true,
//! };
//! let (samples, stats) = revise_tree(&tree, &config, &Signals::default(), &EnvFeedbackJudge)?;
//! println!("{} samples, {} pairs", samples.len(), stats.pairs);
//! # Ok::<(), agentr_revise::ReviseError>(())
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod error;
mod judge;
mod pairs;
mod revise;
mod splice;
mod teach;

#[cfg(test)]
mod tests;

pub use error::ReviseError;
pub use judge::{
    EnvFeedbackJudge, Judge, JudgeRequest, Judgement, Label, NoError, ScriptedJudge, StepView,
    judge_prompt, parse_judgement,
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

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
