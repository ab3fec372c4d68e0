//! The request loop of agentr's two HTTP clients, the AgentGym client here
//! ([`crate::agentgym`]) and the OpenAI-compatible one in agentr-train: one POST per attempt
//! ([`post`]), answers sorted into done, worth another attempt, or final, and the attempts
//! driven by a [`Retrier`] with jittered exponential backoff ([`Backoff`]) or the server's
//! `Retry-After`.
//!
//! A failure is *certain* when the server cannot have acted on the request: the connection
//! was refused or never made, or the server answered 429 or 503 (busy, turned away). Other
//! retryable failures (a timeout while waiting for the answer, a broken connection, another
//! 5xx) may have come after the server acted, so a request that must not act twice retries
//! only certain failures.

use std::time::Duration;

use crate::retry::Backoff;

/// Characters of a body quoted in messages.
const QUOTED_CHARS: usize = 300;

/// A failure worth another attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Retryable {
    /// Whether the server certainly did not act on the request.
    pub certain: bool,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    /// What went wrong (the error body's message, or the transport's).
    pub message: String,
    /// The server's `Retry-After`, when it sent one in seconds.
    pub wait: Option<Duration>,
}

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt<E> {
    /// A 2xx answer's body.
    Done(Vec<u8>),
    /// Worth another attempt, if the request allows it.
    Retry(Retryable),
    /// Final.
    Fatal(E),
}

/// Why a [`post`] is final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostError {
    /// The server answered a status no retry can change (4xx but 429).
    Status {
        /// The status.
        status: u16,
        /// The error body's message ([`error_message`]).
        message: String,
    },
    /// The answer was larger than the limit.
    TooLarge {
        /// The status.
        status: u16,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The request could not be made at all (a bad URL or header, a TLS set-up problem).
    Transport(String),
}

/// Sends `request` with `body`, reads at most `limit` bytes of the answer and sorts the
/// outcome. Never panics.
pub fn post(
    request: ureq::RequestBuilder<ureq::typestate::WithBody>,
    body: &[u8],
    limit: u64,
) -> Attempt<PostError> {
    let mut response = match request.send(body) {
        Ok(response) => response,
        Err(error) => return transport_failure(error),
    };
    let status = response.status().as_u16();
    let wait = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_retry_after);
    let bytes = match response.body_mut().with_config().limit(limit).read_to_vec() {
        Ok(bytes) => bytes,
        Err(ureq::Error::BodyExceedsLimit(limit)) => {
            return Attempt::Fatal(PostError::TooLarge { status, limit });
        }
        Err(error) => return transport_failure(error),
    };
    let retry = |certain| {
        Attempt::Retry(Retryable {
            certain,
            status: Some(status),
            message: error_message(&bytes),
            wait,
        })
    };
    match status {
        200..=299 => Attempt::Done(bytes),
        // Busy or full: the server turned the request away before acting on it.
        429 | 503 => retry(true),
        500..=599 => retry(false),
        _ => Attempt::Fatal(PostError::Status {
            status,
            message: error_message(&bytes),
        }),
    }
}

/// Failures before the request could reach the server are certain; later ones (a timeout
/// waiting for the answer, a connection that broke) may have come after the server acted.
/// A bad URL, header or TLS set-up is final.
fn transport_failure(error: ureq::Error) -> Attempt<PostError> {
    let certain = match &error {
        ureq::Error::ConnectionFailed => true,
        ureq::Error::Io(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Connect | ureq::Timeout::Resolve),
        ureq::Error::Protocol(_) => false,
        _ => return Attempt::Fatal(PostError::Transport(error.to_string())),
    };
    Attempt::Retry(Retryable {
        certain,
        status: None,
        message: error.to_string(),
        wait: None,
    })
}

/// How a client retries: attempts in all, the backoff between them, and the longest wait a
/// server's `Retry-After` may ask for.
#[derive(Debug)]
pub struct Retrier {
    /// Attempts per request, the first included (at least 1 is made).
    pub max_attempts: u32,
    /// The waits when the server names none.
    pub backoff: Backoff,
    /// The cap on a server's `Retry-After`.
    pub max_wait: Duration,
}

/// Why a [`Retrier`] stopped without an answer.
#[derive(Debug)]
pub enum Stopped<E> {
    /// An attempt was final.
    Fatal(E),
    /// The last attempt was worth another one, but the attempts are used up or the request
    /// must not be sent again after an uncertain failure.
    GaveUp {
        /// The last failure.
        last: Retryable,
        /// Attempts made.
        attempts: u32,
    },
}

impl Retrier {
    /// Makes attempts until one is done or final, or no other may follow: after
    /// `max_attempts`, or after an uncertain failure unless `repeatable` (sending the request
    /// twice does what sending it once does).
    pub fn run<E>(
        &self,
        repeatable: bool,
        mut attempt: impl FnMut() -> Attempt<E>,
    ) -> Result<Vec<u8>, Stopped<E>> {
        let max_attempts = self.max_attempts.max(1);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match attempt() {
                Attempt::Done(bytes) => return Ok(bytes),
                Attempt::Fatal(error) => return Err(Stopped::Fatal(error)),
                Attempt::Retry(last) => {
                    if !(last.certain || repeatable) || attempts >= max_attempts {
                        return Err(Stopped::GaveUp { last, attempts });
                    }
                    let wait = last.wait.map_or_else(
                        || self.backoff.delay(attempts),
                        |wait| wait.min(self.max_wait),
                    );
                    std::thread::sleep(wait);
                }
            }
        }
    }
}

/// The message of an error body: `error.message` or `error` (OpenAI, TGI, AgentGym),
/// `message` (vLLM), `detail` (FastAPI: a string, or a list of `{loc, msg}` shown as
/// `loc.path: msg`), else the body itself; at most 300 characters. Never panics.
pub fn error_message(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return quote(body);
    };
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let found = if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        error.get("message").map_or_else(|| text(error), text)
    } else if let Some(message) = value.get("message").filter(|m| !m.is_null()) {
        text(message)
    } else {
        match value.get("detail") {
            Some(serde_json::Value::Array(details)) => details
                .iter()
                .map(|d| {
                    let loc = d
                        .get("loc")
                        .and_then(serde_json::Value::as_array)
                        .map(|parts| parts.iter().map(text).collect::<Vec<_>>().join("."));
                    let msg = d.get("msg").map_or_else(|| text(d), text);
                    match loc {
                        Some(loc) => format!("{loc}: {msg}"),
                        None => msg,
                    }
                })
                .collect::<Vec<_>>()
                .join("; "),
            Some(detail) if !detail.is_null() => text(detail),
            _ => return quote(body),
        }
    };
    shorten(&found)
}

/// The body as trimmed text for messages, at most 300 characters; `(empty body)` for none.
pub fn quote(body: &[u8]) -> String {
    match shorten(String::from_utf8_lossy(body).trim()) {
        quoted if quoted.is_empty() => "(empty body)".to_owned(),
        quoted => quoted,
    }
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// Reads a `Retry-After` value given in seconds (`"2"`, also `"0.5"`); HTTP dates and
/// anything else give `None`.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(1e9)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, proptest};

    #[test]
    fn error_bodies_of_common_servers_are_read() {
        for (body, message) in [
            (
                r#"{"error":"The id 4 is not valid."}"#,
                "The id 4 is not valid.",
            ),
            (
                r#"{"error":{"message":"too large","type":"x"}}"#,
                "too large",
            ),
            (r#"{"error":"b","error_type":"x"}"#, "b"),
            (r#"{"object":"error","message":"c"}"#, "c"),
            (r#"{"detail":"Not Found"}"#, "Not Found"),
            (
                r#"{"detail":[{"type":"missing","loc":["body","id"],"msg":"Field required"}]}"#,
                "body.id: Field required",
            ),
            (r#"{"detail":[{"msg":"d"}]}"#, "d"),
            ("Internal Server Error", "Internal Server Error"),
            ("  plain text ", "plain text"),
            ("", "(empty body)"),
            (r#"{"other":1}"#, r#"{"other":1}"#),
        ] {
            assert_eq!(error_message(body.as_bytes()), message, "{body}");
        }
        let long = "\u{e9}".repeat(1000);
        assert_eq!(error_message(long.as_bytes()).chars().count(), 303);
        let long_json = format!(r#"{{"error":"{long}"}}"#);
        assert_eq!(error_message(long_json.as_bytes()).chars().count(), 303);
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("inf"), None);
    }

    fn retrier(max_attempts: u32) -> Retrier {
        Retrier {
            max_attempts,
            backoff: Backoff::new(Duration::ZERO, Duration::ZERO, Some(0)),
            max_wait: Duration::ZERO,
        }
    }

    fn failure(certain: bool) -> Attempt<&'static str> {
        Attempt::Retry(Retryable {
            certain,
            status: Some(503),
            message: "busy".into(),
            wait: Some(Duration::from_secs(60)),
        })
    }

    /// Certain failures are retried up to the limit; an uncertain one ends a request that
    /// must not act twice at once; a long Retry-After is capped.
    #[test]
    fn attempts_follow_certainty_and_the_limit() {
        let mut calls = 0;
        let done = retrier(3).run(false, || {
            calls += 1;
            if calls < 3 {
                failure(true)
            } else {
                Attempt::Done(b"ok".to_vec())
            }
        });
        assert_eq!(done.unwrap(), b"ok");
        let mut calls = 0;
        let gave_up = retrier(3).run(false, || {
            calls += 1;
            failure(true)
        });
        assert!(matches!(gave_up, Err(Stopped::GaveUp { attempts: 3, .. })));
        let mut calls = 0;
        let once = retrier(3).run(false, || {
            calls += 1;
            failure(false)
        });
        assert!(matches!(once, Err(Stopped::GaveUp { attempts: 1, .. })));
        let repeated = retrier(2).run(true, || failure(false));
        assert!(matches!(repeated, Err(Stopped::GaveUp { attempts: 2, .. })));
        let fatal = retrier(5).run(true, || Attempt::<&str>::Fatal("no"));
        assert!(matches!(fatal, Err(Stopped::Fatal("no"))));
    }

    proptest! {
        #[test]
        fn reading_bodies_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), text in ".{0,40}") {
            let _ = error_message(&bytes);
            let _ = quote(&bytes);
            let _ = parse_retry_after(&text);
        }
    }
}
