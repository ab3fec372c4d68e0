//! The one error type of this crate.

use std::path::PathBuf;

use agentr_envs::{EnvError, TaskId};

use crate::tree::NodeId;

/// Positions among siblings from the root to a node, e.g. `[0, 2]`.
pub type NodePath = Vec<usize>;

fn show(path: &NodePath) -> String {
    if path.is_empty() {
        "root".to_owned()
    } else {
        let parts: Vec<String> = path.iter().map(usize::to_string).collect();
        format!("root/{}", parts.join("/"))
    }
}

/// What can end a search or a collection run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    /// The policy failed while expanding a node; that task's search stops.
    #[error("task {task}, node {}: policy failed: {source}", show(node))]
    Policy {
        /// The task being searched.
        task: TaskId,
        /// The node being expanded.
        node: NodePath,
        /// The policy's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The environment failed; that task's search stops.
    #[error("task {task}, node {}: environment failed: {source}", show(node))]
    Env {
        /// The task being searched.
        task: TaskId,
        /// The node being expanded or restored.
        node: NodePath,
        /// The environment's error.
        #[source]
        source: EnvError,
    },
    /// The search settings are unusable.
    #[error("invalid search config: {0}")]
    Config(#[from] InvalidConfig),
    /// A tree file does not hold a valid tree.
    #[error("{}: {message}", path.display())]
    BadTree {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tree file of an earlier run, found when resuming, was made with other settings or
    /// another policy than this run's.
    #[error(
        "{}: made with other settings than this run ({}); collect into another folder, or \
         with the same settings",
        path.display(),
        differences.join("; ")
    )]
    OtherSettings {
        /// The file.
        path: PathBuf,
        /// Each difference, `name: <in the file> in the file, <in this run> in this run`.
        differences: Vec<String>,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Why search settings are unusable ([`crate::SearchConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct InvalidConfig {
    /// The offending setting, e.g. `candidates`.
    pub field: &'static str,
    /// What is wrong with its value, e.g. `must be at least 1`.
    pub problem: String,
}

/// Which invariant of [`crate::Tree`] a tree breaks ([`crate::Tree::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{problem}", node.map(|id| format!("node {id}: ")).unwrap_or_default())]
pub struct InvalidTree {
    /// The node that breaks it, when one does (not for the format, version or settings).
    pub node: Option<NodeId>,
    /// What is wrong.
    pub problem: String,
}
