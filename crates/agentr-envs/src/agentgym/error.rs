//! What can go wrong talking to an AgentGym server.

/// A failed call to an AgentGym environment server. Each variant carries the URL called.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentGymError {
    /// The server address cannot be used (scheme, host, TLS support).
    #[error("AgentGym server `{url}`: {message}")]
    BadUrl {
        /// The address as given.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// No usable answer: the connection was refused, broke or timed out. `attempts` says how
    /// often the call was tried (calls the server may have acted on are tried once).
    #[error("{url}: {message} (after {attempts} attempt(s))")]
    Transport {
        /// The URL called.
        url: String,
        /// The transport's error.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The server answered with an HTTP error status (422 for a request it cannot read, 503
    /// when it is full, ...).
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        /// The URL called.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's message, from its JSON body when it has one.
        message: String,
    },
    /// The server refused the call with AgentGym's `{"error": ...}` (unknown or closed
    /// environment id, unknown task, a simulator failure, ...).
    #[error("{url}: the server refused: {message}")]
    Refused {
        /// The URL called.
        url: String,
        /// The server's message.
        message: String,
    },
    /// The answer is not the JSON the protocol promises.
    #[error("{url}: unexpected answer: {message}")]
    BadResponse {
        /// The URL called.
        url: String,
        /// What was wrong with it.
        message: String,
    },
}
