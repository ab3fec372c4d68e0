//! One AgentGym server: a pooled, blocking HTTP/1.1 connection (ureq) with timeouts and the
//! retry policy of the module documentation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::AgentGymError;
use crate::http::{self, PostError, Retrier, Stopped, quote};
use crate::retry::Backoff;

/// Settings of a [`Remote`]. [`RemoteConfig::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteConfig {
    /// The server's root, e.g. `http://127.0.0.1:36001` (paths such as `/step` are appended).
    pub base_url: String,
    /// Longest wait for a connection (default 10 s).
    pub connect_timeout: Duration,
    /// Longest time one attempt may take, connection to the last byte (default 300 s, the
    /// AgentGym clients' timeout: a ScienceWorld server starts a JVM on `/create`).
    pub request_timeout: Duration,
    /// Attempts per call, the first included, for the failures worth retrying (default 5).
    pub max_attempts: u32,
    /// The first backoff (default 100 ms, the wait of AgentGym's WebShop client after a 503);
    /// doubled per attempt.
    pub base_delay: Duration,
    /// The longest backoff, and the cap on a server's `Retry-After` (default 5 s).
    pub max_delay: Duration,
    /// Seed of the backoff jitter; `None` seeds from the clock and the process id.
    pub jitter_seed: Option<u64>,
    /// The largest answer read (default 16 MiB).
    pub max_response_bytes: u64,
}

impl RemoteConfig {
    /// The defaults for the server at `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        RemoteConfig {
            base_url: base_url.into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(300),
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            jitter_seed: None,
            max_response_bytes: 16 << 20,
        }
    }
}

/// Whether a call may be sent again after the server may already have acted on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Sending it twice does what sending it once does (`/reset`).
    Safe,
    /// Sending it twice could act twice (`/step`, `/create`, `/close`): retried only when
    /// the server certainly did not act (refused connection, 503).
    Once,
}

/// A connection to one AgentGym server. Cloning shares the connection pool; safe to use
/// from several threads.
#[derive(Clone)]
pub struct Remote {
    inner: Arc<Inner>,
}

struct Inner {
    config: RemoteConfig,
    /// `base_url` without a trailing slash.
    base: String,
    agent: ureq::Agent,
    retrier: Retrier,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// A connection to `config.base_url`; checks the address without connecting. Only plain
    /// `http://` is supported (AgentGym servers run on a trusted network).
    pub fn new(config: RemoteConfig) -> Result<Self, AgentGymError> {
        let base = config.base_url.trim_end_matches('/').to_owned();
        let bad = |message: &str| AgentGymError::BadUrl {
            url: config.base_url.clone(),
            message: message.to_owned(),
        };
        let rest = match base.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(bad(
                    "https is not supported: AgentGym servers speak plain http",
                ));
            }
            _ => return Err(bad("the address must start with http://")),
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() {
            return Err(bad("the address has no host"));
        }
        if rest.contains(['?', '#']) {
            return Err(bad("the address must not have a query or fragment"));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_global(Some(config.request_timeout))
            // One connection per environment in use: many workers reach one server.
            .max_idle_connections_per_host(256)
            .max_idle_connections(256)
            // An environment server is a local service; a proxy in the environment would be a
            // surprise.
            .proxy(None)
            .user_agent(concat!("agentr/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Remote {
            inner: Arc::new(Inner {
                base,
                agent,
                retrier: Retrier {
                    max_attempts: config.max_attempts,
                    backoff: Backoff::new(config.base_delay, config.max_delay, config.jitter_seed),
                    max_wait: config.max_delay,
                },
                config,
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &RemoteConfig {
        &self.inner.config
    }

    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.base)
    }

    /// `POST path` with `body` as JSON; the answer decoded as `T`.
    pub(crate) fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        repeat: Repeat,
    ) -> Result<T, AgentGymError> {
        let url = self.url(path);
        let bytes = serde_json::to_vec(body).map_err(|e| AgentGymError::BadResponse {
            url: url.clone(),
            message: format!("could not encode the request: {e}"),
        })?;
        self.call(&url, &bytes, repeat)
    }

    /// `POST path` once, with the connect timeout as the whole budget: for clean-up that must
    /// not hold anything up. The outcome is ignored.
    pub(crate) fn post_briefly(&self, path: &str, body: &impl Serialize) {
        let Ok(bytes) = serde_json::to_vec(body) else {
            return;
        };
        let request = self
            .inner
            .agent
            .post(self.url(path))
            .config()
            .timeout_global(Some(self.inner.config.connect_timeout))
            .build()
            .header("content-type", "application/json");
        if let Ok(mut response) = request.send(&bytes[..]) {
            let _ = response.body_mut().read_to_vec();
        }
    }

    fn call<T: DeserializeOwned>(
        &self,
        url: &str,
        body: &[u8],
        repeat: Repeat,
    ) -> Result<T, AgentGymError> {
        let post = || {
            let request = self
                .inner
                .agent
                .post(url)
                .header("content-type", "application/json");
            http::post(request, body, self.inner.config.max_response_bytes)
        };
        let bytes = self
            .inner
            .retrier
            .run(repeat == Repeat::Safe, post)
            .map_err(|stopped| match stopped {
                Stopped::Fatal(PostError::Status { status, message }) => AgentGymError::Status {
                    url: url.to_owned(),
                    status,
                    message,
                },
                Stopped::Fatal(PostError::TooLarge { limit, .. }) => AgentGymError::BadResponse {
                    url: url.to_owned(),
                    message: format!("the answer is larger than {limit} bytes"),
                },
                Stopped::Fatal(PostError::Transport(message)) => AgentGymError::Transport {
                    url: url.to_owned(),
                    message,
                    attempts: 1,
                },
                Stopped::GaveUp { last, attempts } => match last.status {
                    Some(status) => AgentGymError::Status {
                        url: url.to_owned(),
                        status,
                        message: last.message,
                    },
                    None => AgentGymError::Transport {
                        url: url.to_owned(),
                        message: last.message,
                        attempts,
                    },
                },
            })?;
        decode(url, &bytes)
    }
}

/// A 200 answer: AgentGym's `{"error": ...}` is a refusal, anything else must decode as `T`.
fn decode<T: DeserializeOwned>(url: &str, bytes: &[u8]) -> Result<T, AgentGymError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| AgentGymError::BadResponse {
        url: url.to_owned(),
        message: format!("not JSON ({e}): {}", quote(bytes)),
    })?;
    if let Some(error) = value.as_object().and_then(|o| o.get("error")) {
        return Err(AgentGymError::Refused {
            url: url.to_owned(),
            message: match error {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        });
    }
    serde_json::from_value(value).map_err(|e| AgentGymError::BadResponse {
        url: url.to_owned(),
        message: format!("{e}: {}", quote(bytes)),
    })
}
