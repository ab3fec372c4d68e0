//! The one error type of this crate.

use std::path::PathBuf;

use agentr_envs::TaskId;

/// What can go wrong while building revision data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReviseError {
    /// The judge failed on a step.
    #[error("task {task}, step {node:?}: judge failed: {source}")]
    Judge {
        /// The tree's task.
        task: TaskId,
        /// The judged step as child positions from the root.
        node: Vec<usize>,
        /// The judge's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A tree file could not be read.
    #[error(transparent)]
    Tree(#[from] agentr_mcts::SearchError),
    /// An input file (signals, judge script) is malformed.
    #[error("{}: {message}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
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
