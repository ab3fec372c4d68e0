//! Environments behind AgentGym's HTTP servers (feature `agentgym`): TextCraft, ScienceWorld
//! and WebShop as [`Environment`]s that call a server, so search, revision and training run
//! unchanged against AgentGym's Python servers, the real WebShop with its real data, or
//! `agentr serve`.
//!
//! * **Protocol** (the shapes are in [`wire`]): an environment is created on the server at
//!   its first reset (`POST /create`), then `POST /reset` and `POST /step` with the id the
//!   server gave; dropping the [`AgentGymEnv`] sends `POST /close` (once, briefly; servers
//!   without `/close` evict idle environments themselves).
//! * **Same episodes as the native environments**: the name, instruction prompt, action
//!   extraction and observation comparison are the native environment's, ScienceWorld's first
//!   observation is `task_description + "\n" + observation` as AgentGym's client builds it,
//!   its step observations are cleaned as the native environment cleans them, and its score
//!   becomes the native reward (score / 100, a negative score a disaster with reward 0).
//! * **Task ids** are AgentGym's, known without the server: TextCraft's 544 goals and 100 test
//!   ids, ScienceWorld's 4,639 games and 200 test ids, WebShop's id lists for the real data
//!   (its `All` is their union). Against a server with another WebShop catalogue (such as
//!   `agentr serve --env webshop` over the synthetic one), name ids explicitly.
//! * **Errors** are [`EnvError::Remote`] with an [`AgentGymError`]: a refusal (`{"error":
//!   ...}`, e.g. an unknown task id), an HTTP status, a transport failure, an unexpected answer.
//! * **Retries** (up to [`RemoteConfig::max_attempts`], exponential backoff with jitter, a
//!   server's `Retry-After` honoured up to [`RemoteConfig::max_delay`]): 503 and 429 (the
//!   server turned the call away) and refused connections are retried for every call. Other 5xx
//!   answers, timeouts and broken connections are retried only for `/reset`, which is safe to
//!   repeat: a `/step` the server may have executed is never sent twice.
//! * Snapshots are not supported: search restores by reset + replay.
//!
//! ```no_run
//! use agentr_envs::agentgym::{AgentGymEnv, EnvKind, Remote, RemoteConfig};
//! use agentr_envs::{Environment, TaskId};
//! let remote = Remote::new(RemoteConfig::new("http://127.0.0.1:36001"))?;
//! let mut env = AgentGymEnv::new(EnvKind::TextCraft, remote);
//! println!("{}", env.reset(TaskId(3))?);
//! println!("{:?}", env.step("inventory")?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod remote;
pub mod wire;

use std::fmt;
use std::str::FromStr;

pub use error::AgentGymError;
pub use remote::{Remote, RemoteConfig};

use crate::env::{Environment, Split, Step, TaskId};
use crate::{EnvError, sciworld, splits, textcraft, webshop};
use remote::Repeat;
use wire::{
    CloseRequest, ResetRequest, SciWorldCreated, SciWorldReset, SciWorldStep, StepRequest,
    TextCraftCreate, TextCraftEpisode, TextCraftStep, WebShopCloseRequest, WebShopReset,
    WebShopResetRequest, WebShopStep, WebShopStepRequest,
};

/// The number of TextCraft goals (task ids `0..544`; larger ids wrap around).
pub const TEXTCRAFT_GOALS: u64 = 544;

/// Which environment a server runs: it fixes the endpoints' shapes and the native behaviour
/// the client reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnvKind {
    /// AgentGym's `agentenv-textcraft`.
    TextCraft,
    /// AgentGym's `agentenv-sciworld`.
    SciWorld,
    /// AgentGym's `agentenv-webshop`.
    WebShop,
}

impl EnvKind {
    /// The native environment's name (`textcraft`, `sciworld`, `webshop`).
    pub fn name(self) -> &'static str {
        match self {
            EnvKind::TextCraft => textcraft::NAME,
            EnvKind::SciWorld => sciworld::NAME,
            EnvKind::WebShop => webshop::NAME,
        }
    }

    /// The name of the environment-id field in requests and queries.
    pub fn id_field(self) -> &'static str {
        match self {
            EnvKind::TextCraft | EnvKind::SciWorld => "id",
            EnvKind::WebShop => "env_idx",
        }
    }
}

impl fmt::Display for EnvKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EnvKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [EnvKind::TextCraft, EnvKind::SciWorld, EnvKind::WebShop]
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| format!("unknown environment `{s}` (textcraft, sciworld or webshop)"))
    }
}

/// An environment on an AgentGym server (see the module documentation).
#[derive(Debug)]
pub struct AgentGymEnv {
    kind: EnvKind,
    remote: Remote,
    /// The server's id for this environment, once created.
    id: Option<u64>,
}

impl AgentGymEnv {
    /// An environment of `kind` on `remote`'s server; nothing is sent before the first reset.
    pub fn new(kind: EnvKind, remote: Remote) -> Self {
        AgentGymEnv {
            kind,
            remote,
            id: None,
        }
    }

    /// Which environment this is.
    pub fn kind(&self) -> EnvKind {
        self.kind
    }

    /// The server's id of this environment, once the first reset created it.
    pub fn server_id(&self) -> Option<u64> {
        self.id
    }

    fn remote_error(&self, source: AgentGymError) -> EnvError {
        EnvError::Remote {
            env: self.kind.name(),
            source: Box::new(source),
        }
    }

    /// The server's id, creating the environment first if needed.
    fn created(&mut self) -> Result<u64, AgentGymError> {
        if let Some(id) = self.id {
            return Ok(id);
        }
        let id = match self.kind {
            EnvKind::TextCraft => {
                let body = TextCraftCreate::default();
                let created: TextCraftEpisode = self.remote.post("/create", &body, Repeat::Once)?;
                created.id
            }
            EnvKind::SciWorld => {
                let created: SciWorldCreated = self.remote.post("/create", &(), Repeat::Once)?;
                created.id
            }
            EnvKind::WebShop => self.remote.post("/create", &(), Repeat::Once)?,
        };
        self.id = Some(id);
        Ok(id)
    }

    fn reset_remote(&mut self, task: TaskId) -> Result<String, AgentGymError> {
        let id = self.created()?;
        let remote = &self.remote;
        Ok(match self.kind {
            EnvKind::TextCraft => {
                let body = ResetRequest {
                    id,
                    data_idx: task.0,
                };
                let episode: TextCraftEpisode = remote.post("/reset", &body, Repeat::Safe)?;
                episode.observation
            }
            EnvKind::SciWorld => {
                let body = ResetRequest {
                    id,
                    data_idx: task.0,
                };
                let reset: SciWorldReset = remote.post("/reset", &body, Repeat::Safe)?;
                format!("{}\n{}", reset.task_description, reset.observation)
            }
            EnvKind::WebShop => {
                let body = WebShopResetRequest {
                    env_idx: id,
                    session_id: Some(task.0),
                };
                let (observation, _): WebShopReset = remote.post("/reset", &body, Repeat::Safe)?;
                observation
            }
        })
    }

    fn step_remote(&mut self, id: u64, action: &str) -> Result<Step, AgentGymError> {
        let remote = &self.remote;
        let action = action.to_owned();
        Ok(match self.kind {
            EnvKind::TextCraft => {
                let step: TextCraftStep =
                    remote.post("/step", &StepRequest { id, action }, Repeat::Once)?;
                Step {
                    observation: step.observation,
                    reward: step.reward,
                    done: step.done,
                    disaster: false,
                }
            }
            EnvKind::SciWorld => {
                let step: SciWorldStep =
                    remote.post("/step", &StepRequest { id, action }, Repeat::Once)?;
                let (reward, disaster) = sciworld::reward_of_score(step.score);
                Step {
                    observation: sciworld::clean_observation(step.observation),
                    reward,
                    done: step.done || disaster,
                    disaster,
                }
            }
            EnvKind::WebShop => {
                let body = WebShopStepRequest {
                    env_idx: id,
                    action,
                };
                let step: WebShopStep = remote.post("/step", &body, Repeat::Once)?;
                Step {
                    observation: step.state,
                    reward: step.reward,
                    done: step.done,
                    disaster: false,
                }
            }
        })
    }
}

impl Environment for AgentGymEnv {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn instruction(&self) -> &str {
        match self.kind {
            EnvKind::TextCraft => textcraft::INSTRUCTION,
            EnvKind::SciWorld => sciworld::INSTRUCTION,
            EnvKind::WebShop => webshop::INSTRUCTION,
        }
    }

    fn reset(&mut self, task: TaskId) -> Result<String, EnvError> {
        self.reset_remote(task).map_err(|e| self.remote_error(e))
    }

    fn step(&mut self, action: &str) -> Result<Step, EnvError> {
        let Some(id) = self.id else {
            return Err(EnvError::NotReset {
                env: self.kind.name(),
            });
        };
        self.step_remote(id, action)
            .map_err(|e| self.remote_error(e))
    }

    fn extract_action(&self, response: &str) -> String {
        match self.kind {
            EnvKind::TextCraft => crate::action::textcraft_action(response),
            EnvKind::SciWorld | EnvKind::WebShop => {
                crate::action::after_last_action(response).to_owned()
            }
        }
    }

    fn task_ids(&self, split: Split) -> Vec<TaskId> {
        match (self.kind, split) {
            (EnvKind::TextCraft, Split::Test) => textcraft::TextCraft::test_ids().to_vec(),
            (EnvKind::TextCraft, split) => {
                let test = textcraft::TextCraft::test_ids();
                (0..TEXTCRAFT_GOALS)
                    .map(TaskId)
                    .filter(|id| split == Split::All || !test.contains(id))
                    .collect()
            }
            (EnvKind::SciWorld, Split::Train) => sciworld::train_ids(),
            (EnvKind::SciWorld, Split::Test) => sciworld::test_ids(),
            (EnvKind::SciWorld, Split::All) => (0..sciworld::task_count()).map(TaskId).collect(),
            (EnvKind::WebShop, Split::Train) => splits::webshop_train().to_vec(),
            (EnvKind::WebShop, Split::Test) => splits::webshop_test().to_vec(),
            (EnvKind::WebShop, Split::All) => {
                let mut ids = splits::webshop_train().to_vec();
                ids.extend_from_slice(splits::webshop_test());
                ids.sort_unstable();
                ids.dedup();
                ids
            }
        }
    }

    fn same_observation(&self, a: &str, b: &str) -> bool {
        match self.kind {
            EnvKind::SciWorld => sciworld::same_listing(a, b),
            EnvKind::TextCraft | EnvKind::WebShop => a == b,
        }
    }

    fn is_rejection(&self, previous: &str, observation: &str) -> bool {
        let rule = match self.kind {
            EnvKind::TextCraft => textcraft::is_rejection,
            EnvKind::SciWorld => sciworld::is_rejection,
            EnvKind::WebShop => webshop::is_rejection,
        };
        rule(previous, observation)
    }
}

impl Drop for AgentGymEnv {
    /// Frees the server's environment (best effort, bounded by the connect timeout).
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        match self.kind {
            EnvKind::TextCraft | EnvKind::SciWorld => {
                self.remote.post_briefly("/close", &CloseRequest { id });
            }
            EnvKind::WebShop => {
                self.remote
                    .post_briefly("/close", &WebShopCloseRequest { env_idx: id });
            }
        }
    }
}

#[cfg(test)]
mod tests;
