//! The one error type of this crate.

use std::path::PathBuf;

/// What can go wrong while building, training or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A tensor operation failed (shapes, devices, ...).
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// The tokenizer library failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Settings that cannot work together.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file exists but has the wrong content.
    #[error("{}: {message}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A request to an OpenAI-compatible server failed: a status that is not retried (400,
    /// 401, 404, ...), retries exhausted on 429 / 5xx / connection errors, an endpoint that
    /// cannot be used (https without the `tls` feature), or a response that is not a chat
    /// completion.
    #[error("{url}: {}{message}", status.map(|s| format!("HTTP {s}: ")).unwrap_or_default())]
    Http {
        /// The endpoint (`.../chat/completions`) or base URL.
        url: String,
        /// The last HTTP status the server answered, if it answered.
        status: Option<u16>,
        /// The server's error message, or what went wrong on the way.
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

/// Maps an I/O error on `path` to [`TrainError::Io`].
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_owned(),
        source,
    }
}
