//! The AgentGym-compatible environment server behind `agentr serve`: AgentGym's endpoints and
//! JSON shapes (`agentr_envs::agentgym::wire`) over the native environments, so AgentGym's
//! Python clients, the Agent-R reference scripts and agentr's own `--agentgym` client can use
//! it in place of AgentGym's servers.
//!
//! Endpoints (`id` is `env_idx` for WebShop, in bodies and queries):
//!
//! | env | POST | GET |
//! | --- | --- | --- |
//! | textcraft | `/create`, `/step`, `/reset`, `/close` | `/`, `/observation`, `/detail` |
//! | sciworld | `/create`, `/step`, `/reset`, `/close` | `/`, `/observation`, `/action_hint`, `/goals`, `/detail` |
//! | webshop | `/create`, `/step`, `/reset`, `/close` | `/`, `/observation`, `/available_actions`, `/instruction_text`, `/list_envs` |
//!
//! Answers follow AgentGym's servers:
//!
//! * A call the environment refuses (unknown id: `The id 5 is not valid.`; closed or evicted
//!   id: `The task with environment 5 has been deleted.`, except on TextCraft, whose server
//!   forgets closed ids and answers `not valid`; a ScienceWorld episode that ended:
//!   `... has finished.`; an unknown task, a failed simulator) is HTTP 200 with
//!   `{"error": message}`. AgentGym's WebShop server crashes into a bare 500 on an unknown id
//!   instead; this server answers it like the other two.
//! * A request its models cannot read (not JSON, not an object, a missing or mistyped field,
//!   a missing query parameter) is FastAPI's 422 with `{"detail": [{"type", "loc", "msg"}]}`;
//!   an unknown path 404 and a wrong method 405, with FastAPI's `{"detail": ...}`; a body over
//!   `--max-body-bytes` 413 with `{"error": {"message", "type"}}` (the shared HTTP layer's
//!   answer; FastAPI has no limit).
//! * `/create` when `--max-envs` environments exist evicts the least recently used one that
//!   has been idle for longer than `--idle-timeout` (logged), or, when none has, is 503 with
//!   `{"error": ...}` and `Retry-After: 1`. Nothing is evicted while there is room: a client
//!   waiting for its turn keeps its environment however long it waits. (AgentGym's servers
//!   never evict; its WebShop server hands out an existing environment once it holds 8,000.)
//! * Ids count up from 0 (AgentGym's WebShop server draws random ones). `/create` resets
//!   TextCraft to task `id` and WebShop to goal `id` modulo the goals, as the originals do
//!   (WebShop's with a random goal); a WebShop `/reset` without `session_id` draws its goal
//!   from a generator seeded with the id and the reset count.
//! * TextCraft's rewards are whole numbers on the wire (`"reward": 1`), as its server's
//!   Python integers are.
//! * `/close` answers `{"closed": true}` (WebShop: `{"closed": false}` for an id it does not
//!   hold; the others refuse such ids as above). AgentGym's current TextCraft and ScienceWorld
//!   servers answer a bare `true` (TextCraft `false` for an id it does not hold), and its
//!   current WebShop server has no `/close`; the object is kept because agentr's client and
//!   earlier AgentGym clients read it, and AgentGym's clients ignore the answer.
//! * Not served: TextCraft's `/commands` and `/goal` (routed in AgentGym to methods its
//!   server does not have), WebShop's `/state` (the original's URL and HTML; this shop has
//!   no HTML pages). A ScienceWorld reset reports reward and score 0, and its `/create` starts
//!   no JVM (the first reset does).

mod native;
mod pool;
mod request;

use std::sync::Arc;
use std::time::Duration;

use agentr_envs::agentgym::EnvKind;
use agentr_envs::agentgym::wire::{Closed, ErrorReply};
use hyper::body::Bytes;
use hyper::header::{ALLOW, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};

pub use native::Natives;
use native::{Answer, Op, Served};
use pool::{CreateError, Eviction, Lookup, Pool};
use request::{Detail, Fields, query_int};

use crate::http::{self, Body, Handler};

/// What a path does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Hello,
    Create,
    Step,
    Reset,
    Close,
    Observation,
    Detail,
    ActionHint,
    Goals,
    AvailableActions,
    InstructionText,
    ListEnvs,
}

/// `(path, POST?, endpoint)` of each environment's server: the six every AgentGym server has,
/// then the environment's own.
fn routes(kind: EnvKind) -> impl Iterator<Item = (&'static str, bool, Endpoint)> {
    use Endpoint::*;
    const COMMON: [(&str, bool, Endpoint); 6] = [
        ("/", false, Hello),
        ("/create", true, Create),
        ("/step", true, Step),
        ("/reset", true, Reset),
        ("/close", true, Close),
        ("/observation", false, Observation),
    ];
    let own: &[(&str, bool, Endpoint)] = match kind {
        EnvKind::TextCraft => &[("/detail", false, Detail)],
        EnvKind::SciWorld => &[
            ("/detail", false, Detail),
            ("/action_hint", false, ActionHint),
            ("/goals", false, Goals),
        ],
        EnvKind::WebShop => &[
            ("/available_actions", false, AvailableActions),
            ("/instruction_text", false, InstructionText),
            ("/list_envs", false, ListEnvs),
        ],
    };
    COMMON.iter().chain(own).copied()
}

/// Limits of a [`GymServer`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most environments held at once.
    pub max_envs: usize,
    /// An environment untouched for longer may be evicted.
    pub idle_timeout: Duration,
}

/// The server: one kind of environment, many instances by id.
pub struct GymServer {
    natives: Arc<Natives>,
    kind: EnvKind,
    pool: Arc<Pool<Served>>,
}

impl GymServer {
    /// A server of `natives` with these limits.
    pub fn new(natives: Natives, limits: Limits) -> Self {
        GymServer {
            kind: natives.kind(),
            natives: Arc::new(natives),
            pool: Arc::new(Pool::new(limits.max_envs, limits.idle_timeout)),
        }
    }

    /// The endpoint of `path`; FastAPI's 404 or 405 when there is none for `method`.
    fn route(&self, method: &Method, path: &str) -> Result<Endpoint, Box<Response<Body>>> {
        let Some((_, post, endpoint)) = routes(self.kind).find(|r| r.0 == path) else {
            return Err(Box::new(detail(StatusCode::NOT_FOUND, "Not Found")));
        };
        let allowed = if post { Method::POST } else { Method::GET };
        if *method == allowed {
            return Ok(endpoint);
        }
        let mut response = detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        response.headers_mut().insert(
            ALLOW,
            HeaderValue::from_static(if post { "POST" } else { "GET" }),
        );
        Err(Box::new(response))
    }

    fn create(&self, body: &[u8]) -> Response<Body> {
        if self.kind == EnvKind::TextCraft {
            // AgentGym's TextCraft server can replace the task's commands and goal; these
            // environments play the task of their id only.
            let mut fields = match Fields::parse(body) {
                Ok(fields) => fields,
                Err(details) => return invalid(details),
            };
            let custom = [
                fields.optional_string("commands"),
                fields.optional_string("goal"),
            ];
            if let Err(details) = fields.check() {
                return invalid(details);
            }
            if custom.iter().any(Option::is_some) {
                return refused("custom `commands` and `goal` are not supported by agentr serve");
            }
        }
        match self.pool.create(|id| self.natives.create(id)) {
            Ok((id, answer, eviction)) => {
                if let Some(Eviction { id: evicted, idle }) = eviction {
                    tracing::info!(
                        "evicted environment {evicted} (untouched for {:.0} s) to make room for \
                         environment {id}",
                        idle.as_secs_f64()
                    );
                }
                http::json_bytes(StatusCode::OK, answer)
            }
            Err(CreateError::Failed(message)) => refused(&message),
            Err(CreateError::Full(max)) => {
                let mut response = http::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &ErrorReply {
                        error: format!(
                            "the server holds its maximum of {max} environments and none is \
                             idle; close some or retry later"
                        ),
                    },
                );
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
        }
    }

    fn close(&self, body: &[u8]) -> Response<Body> {
        let id = match self.body_id(body, |_| {}) {
            Ok((id, ())) => id,
            Err(details) => return invalid(details),
        };
        match (self.pool.close(id), self.kind) {
            (Lookup::Live(entry), kind) => {
                // A ScienceWorld environment stops its JVM when dropped: not on the executor.
                if kind != EnvKind::TextCraft {
                    tokio::task::spawn_blocking(move || drop(entry));
                }
                http::json(StatusCode::OK, &Closed { closed: true })
            }
            (_, EnvKind::WebShop) => http::json(StatusCode::OK, &Closed { closed: false }),
            (Lookup::Deleted, _) => refused(&self.gone(id)),
            (Lookup::Unknown, _) => refused(&not_valid(id)),
        }
    }

    /// The refusal for an id that was closed or evicted. AgentGym's TextCraft server forgets a
    /// closed id (`The id 5 is not valid.`); its ScienceWorld and WebShop servers remember it
    /// (`... has been deleted.`).
    fn gone(&self, id: i64) -> String {
        match self.kind {
            EnvKind::TextCraft => not_valid(id),
            EnvKind::SciWorld | EnvKind::WebShop => deleted(id),
        }
    }

    /// Reads the id field and whatever else `rest` reads, or why the request is refused.
    fn body_id<T>(
        &self,
        body: &[u8],
        rest: impl FnOnce(&mut Fields) -> T,
    ) -> Result<(i64, T), Vec<Detail>> {
        let mut fields = Fields::parse(body)?;
        let id = fields.int(self.kind.id_field());
        let value = rest(&mut fields);
        fields.check()?;
        Ok((id, value))
    }

    /// Runs `op` on environment `id`, off the executor when it may block.
    async fn run(&self, id: i64, op: Op) -> Response<Body> {
        let entry = match self.pool.get(id) {
            Lookup::Live(entry) => entry,
            Lookup::Deleted => return refused(&self.gone(id)),
            Lookup::Unknown => return refused(&not_valid(id)),
        };
        // TextCraft answers in microseconds; a JVM call or a search would hold up the
        // executor's other connections.
        let answer: Answer = if self.kind == EnvKind::TextCraft {
            entry.lock().run(op)
        } else {
            match tokio::task::spawn_blocking(move || entry.lock().run(op)).await {
                Ok(answer) => answer,
                Err(error) => Err(format!("the environment failed: {error}")),
            }
        };
        match answer {
            Ok(json) => http::json_bytes(StatusCode::OK, json),
            Err(message) => refused(&message),
        }
    }
}

impl Handler for GymServer {
    async fn handle(&self, request: Request<Bytes>) -> Response<Body> {
        let endpoint = match self.route(request.method(), request.uri().path()) {
            Ok(endpoint) => endpoint,
            Err(response) => return *response,
        };
        let body = request.body();
        let query = || query_int(request.uri().query(), self.kind.id_field());
        let (id, op) = match endpoint {
            Endpoint::Hello => {
                let hello = match self.kind {
                    EnvKind::TextCraft => "This is environment TextCraft.",
                    EnvKind::SciWorld => "This is environment ScienceWorld.",
                    EnvKind::WebShop => "ok",
                };
                return http::json(StatusCode::OK, &hello);
            }
            Endpoint::ListEnvs => return http::json(StatusCode::OK, &self.pool.ids()),
            Endpoint::Create => return self.create(body),
            Endpoint::Close => return self.close(body),
            Endpoint::Step => match self.body_id(body, |f| f.string("action")) {
                Ok((id, action)) => (id, Op::Step(action)),
                Err(details) => return invalid(details),
            },
            Endpoint::Reset => {
                let field = match self.kind {
                    EnvKind::WebShop => "session_id",
                    EnvKind::TextCraft | EnvKind::SciWorld => "data_idx",
                };
                // ScienceWorld's model requires `data_idx`; TextCraft's defaults it to 0,
                // WebShop's `session_id` to a random goal.
                let required = self.kind == EnvKind::SciWorld;
                let read = self.body_id(body, |f| {
                    if required {
                        Some(f.int(field))
                    } else {
                        f.optional_int(field)
                    }
                });
                let (id, task) = match read {
                    Ok(read) => read,
                    Err(details) => return invalid(details),
                };
                match task.map(u64::try_from) {
                    None => (id, Op::Reset(None)),
                    Some(Ok(task)) => (id, Op::Reset(Some(task))),
                    Some(Err(_)) => return refused(&format!("{field} must not be negative")),
                }
            }
            Endpoint::Observation
            | Endpoint::Detail
            | Endpoint::ActionHint
            | Endpoint::Goals
            | Endpoint::AvailableActions
            | Endpoint::InstructionText => {
                let id = match query() {
                    Ok(id) => id,
                    Err(details) => return invalid(details),
                };
                let op = match endpoint {
                    Endpoint::Detail => Op::Detail,
                    Endpoint::ActionHint => Op::ActionHint,
                    Endpoint::Goals => Op::Goals,
                    Endpoint::AvailableActions => Op::AvailableActions,
                    Endpoint::InstructionText => Op::InstructionText,
                    _ => Op::Observation,
                };
                (id, op)
            }
        };
        self.run(id, op).await
    }
}

fn not_valid(id: i64) -> String {
    format!("The id {id} is not valid.")
}

fn deleted(id: i64) -> String {
    format!("The task with environment {id} has been deleted.")
}

/// AgentGym's refusal: HTTP 200 with `{"error": message}`.
fn refused(message: &str) -> Response<Body> {
    http::json(
        StatusCode::OK,
        &ErrorReply {
            error: message.to_owned(),
        },
    )
}

/// FastAPI's 422.
fn invalid(details: Vec<Detail>) -> Response<Body> {
    http::json(
        StatusCode::UNPROCESSABLE_ENTITY,
        &serde_json::json!({ "detail": details }),
    )
}

/// FastAPI's answer for an unknown path or a wrong method.
fn detail(status: StatusCode, message: &str) -> Response<Body> {
    http::json(status, &serde_json::json!({ "detail": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_routes_its_endpoints_only() {
        let expect = [
            (EnvKind::TextCraft, "/detail", true),
            (EnvKind::TextCraft, "/goals", false),
            (EnvKind::TextCraft, "/list_envs", false),
            (EnvKind::SciWorld, "/action_hint", true),
            (EnvKind::SciWorld, "/available_actions", false),
            (EnvKind::WebShop, "/instruction_text", true),
            (EnvKind::WebShop, "/detail", false),
            (EnvKind::WebShop, "/state", false),
        ];
        for (kind, path, served) in expect {
            assert_eq!(routes(kind).any(|r| r.0 == path), served, "{kind} {path}");
        }
        for kind in [EnvKind::TextCraft, EnvKind::SciWorld, EnvKind::WebShop] {
            let paths: Vec<&str> = routes(kind).map(|r| r.0).collect();
            for path in ["/", "/create", "/step", "/reset", "/close", "/observation"] {
                assert!(paths.contains(&path), "{kind} {path}");
            }
        }
    }
}
