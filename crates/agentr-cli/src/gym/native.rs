//! The native environments behind the endpoints, with what AgentGym's servers remember about
//! each episode (the last observation, reward, score, ...), and their answers as JSON.

use std::sync::Arc;

use agentr_envs::agentgym::EnvKind;
use agentr_envs::agentgym::wire::{
    AvailableActions, SciWorldActionHint, SciWorldCreated, SciWorldDetail, SciWorldGoals,
    SciWorldReset, SciWorldStep, TextCraftDetail, TextCraftEpisode, TextCraftStep, WebShopStep,
};
use agentr_envs::rng::Rng;
use agentr_envs::sciworld::{self, SciWorld, SciWorldConfig};
use agentr_envs::textcraft::TextCraft;
use agentr_envs::webshop::{ShopData, WebShop};
use agentr_envs::{EnvError, Environment, TaskId};
use serde::Serialize;

/// The loaded assets of the served environment; makes one environment per `/create`.
pub enum Natives {
    /// A TextCraft environment to clone (the recipe book is shared).
    TextCraft(TextCraft),
    /// The ScienceWorld settings (each environment starts its JVM at its first reset).
    SciWorld(SciWorldConfig),
    /// The shop every WebShop environment shares.
    WebShop(Arc<ShopData>),
}

/// What one endpoint asks of an environment.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `/step` with the action.
    Step(String),
    /// `/reset` with `data_idx` / `session_id` (WebShop: `None` draws a goal).
    Reset(Option<u64>),
    /// `GET /observation`.
    Observation,
    /// `GET /detail`.
    Detail,
    /// ScienceWorld `GET /action_hint`.
    ActionHint,
    /// ScienceWorld `GET /goals`.
    Goals,
    /// WebShop `GET /available_actions`.
    AvailableActions,
    /// WebShop `GET /instruction_text`.
    InstructionText,
}

/// A served environment.
pub struct Served {
    id: u64,
    state: State,
}

enum State {
    TextCraft {
        env: TextCraft,
        info: TextCraftDetail,
    },
    SciWorld {
        env: Box<SciWorld>,
        info: SciWorldDetail,
    },
    WebShop {
        env: WebShop,
        /// The goal being played.
        task: u64,
        observation: String,
        done: bool,
        resets: u64,
    },
}

/// A JSON answer, or the message of AgentGym's `{"error": ...}`.
pub type Answer = Result<Vec<u8>, String>;

fn to_json(value: &impl Serialize) -> Answer {
    serde_json::to_vec(value).map_err(|e| format!("could not encode the answer: {e}"))
}

fn message(error: EnvError) -> String {
    error.to_string()
}

impl Natives {
    /// Which environment these are.
    pub fn kind(&self) -> EnvKind {
        match self {
            Natives::TextCraft(_) => EnvKind::TextCraft,
            Natives::SciWorld(_) => EnvKind::SciWorld,
            Natives::WebShop(_) => EnvKind::WebShop,
        }
    }

    /// Environment `id` as AgentGym's `/create` leaves it, and the answer: TextCraft resets to
    /// task `id`, WebShop to goal `id` (modulo the goals), ScienceWorld waits for a reset.
    pub fn create(&self, id: u64) -> Result<(Served, Vec<u8>), String> {
        let (state, answer) = match self {
            Natives::TextCraft(prototype) => {
                let mut env = prototype.clone();
                let observation = env.reset(TaskId(id)).map_err(message)?;
                let answer = to_json(&TextCraftEpisode {
                    id,
                    observation: observation.clone(),
                    done: false,
                    reward: 0.0,
                })?;
                let info = TextCraftDetail {
                    observation,
                    done: false,
                    reward: 0.0,
                    deleted: false,
                };
                (State::TextCraft { env, info }, answer)
            }
            Natives::SciWorld(config) => {
                let env = Box::new(SciWorld::new(config.clone()));
                let answer = to_json(&SciWorldCreated { id })?;
                let info = SciWorldDetail::default();
                (State::SciWorld { env, info }, answer)
            }
            Natives::WebShop(data) => {
                let task = id % data.goals().len() as u64;
                let mut env = WebShop::new(Arc::clone(data));
                let observation = env.reset(TaskId(task)).map_err(message)?;
                let state = State::WebShop {
                    env,
                    task,
                    observation,
                    done: false,
                    resets: 0,
                };
                (state, to_json(&id)?)
            }
        };
        Ok((Served { id, state }, answer))
    }
}

impl Served {
    /// Runs `op`; the JSON answer or AgentGym's error message.
    pub fn run(&mut self, op: Op) -> Answer {
        let id = self.id;
        match &mut self.state {
            State::TextCraft { env, info } => textcraft(id, env, info, op),
            State::SciWorld { env, info } => sciworld(id, env, info, op),
            State::WebShop {
                env,
                task,
                observation,
                done,
                resets,
            } => match op {
                Op::Step(action) => {
                    let step = env.step(&action).map_err(message)?;
                    observation.clone_from(&step.observation);
                    *done = step.done;
                    to_json(&WebShopStep {
                        state: step.observation,
                        reward: step.reward,
                        done: step.done,
                        info: None,
                    })
                }
                Op::Reset(session) => {
                    let goals = env.data().goals().len() as u64;
                    // The original draws a goal at random when no session is named.
                    let chosen =
                        session.unwrap_or_else(|| Rng::from_parts(&[id, *resets]).below(goals));
                    *observation = env.reset(TaskId(chosen)).map_err(message)?;
                    *task = chosen;
                    *done = false;
                    *resets += 1;
                    to_json(&(observation.as_str(), None::<()>))
                }
                Op::Observation => to_json(observation),
                Op::AvailableActions => {
                    let clickables = env.clickables();
                    // Only the search page and the done page have no clickables.
                    let searching = clickables.is_empty() && !*done;
                    to_json(&AvailableActions {
                        has_search_bar: searching,
                        clickables: if searching {
                            vec!["search".to_owned()]
                        } else {
                            clickables
                        },
                    })
                }
                Op::InstructionText => {
                    let goal = &env.data().goals()[*task as usize];
                    to_json(&format!("Instruction: {}", goal.instruction_text))
                }
                Op::Detail | Op::ActionHint | Op::Goals => {
                    Err("this endpoint is not served for webshop".into())
                }
            },
        }
    }
}

fn textcraft(id: u64, env: &mut TextCraft, info: &mut TextCraftDetail, op: Op) -> Answer {
    match op {
        Op::Step(action) => {
            let step = env.step(&action).map_err(message)?;
            info.observation.clone_from(&step.observation);
            info.reward = step.reward;
            info.done = step.done;
            to_json(&TextCraftStep {
                observation: step.observation,
                reward: step.reward,
                done: step.done,
            })
        }
        Op::Reset(task) => {
            let observation = env.reset(TaskId(task.unwrap_or(0))).map_err(message)?;
            *info = TextCraftDetail {
                observation,
                done: false,
                reward: 0.0,
                deleted: false,
            };
            to_json(&TextCraftEpisode {
                id,
                observation: info.observation.clone(),
                done: false,
                reward: 0.0,
            })
        }
        Op::Observation => to_json(&info.observation),
        Op::Detail => to_json(info),
        Op::ActionHint | Op::Goals | Op::AvailableActions | Op::InstructionText => {
            Err("this endpoint is not served for textcraft".into())
        }
    }
}

fn sciworld(id: u64, env: &mut SciWorld, info: &mut SciWorldDetail, op: Op) -> Answer {
    // AgentGym's ScienceWorld server answers nothing but a reset once an episode ended.
    if info.done && !matches!(op, Op::Reset(_)) {
        return Err(format!("The task with environment {id} has finished."));
    }
    match op {
        Op::Step(action) => {
            let step = env.step(&action).map_err(message)?;
            let score = env.score();
            let reward = score - info.score.unwrap_or(0);
            info.observation = Some(step.observation.clone());
            info.reward = Some(reward);
            info.score = Some(score);
            info.done = step.done;
            to_json(&SciWorldStep {
                observation: step.observation,
                reward,
                score,
                done: step.done,
            })
        }
        Op::Reset(task) => {
            let task = TaskId(task.unwrap_or(0));
            let first = env.reset(task).map_err(message)?;
            let description = env.task_description().map_err(message)?;
            // The native first observation is the description, a newline and the look.
            let look = first
                .strip_prefix(description.as_str())
                .and_then(|rest| rest.strip_prefix('\n'))
                .unwrap_or(&first)
                .to_owned();
            let (game, variation) =
                sciworld::game_of(task).ok_or_else(|| format!("sciworld has no task {task}"))?;
            let reset = SciWorldReset {
                task_name: game.name.to_owned(),
                var_num: variation,
                task_description: description,
                observation: look,
                reward: 0,
                score: 0,
                deleted: false,
                done: false,
            };
            *info = SciWorldDetail {
                deleted: false,
                done: false,
                task_name: Some(reset.task_name.clone()),
                var_num: Some(variation),
                task_description: Some(reset.task_description.clone()),
                observation: Some(reset.observation.clone()),
                reward: Some(0),
                score: Some(0),
            };
            to_json(&reset)
        }
        Op::Observation => match &info.observation {
            Some(observation) => to_json(observation),
            None => Err(format!(
                "The task with environment {id} has not been reset."
            )),
        },
        Op::Detail => to_json(info),
        Op::ActionHint => {
            let (possible_actions, possible_objects) = env.action_hint().map_err(message)?;
            to_json(&SciWorldActionHint {
                possible_actions,
                possible_objects,
            })
        }
        Op::Goals => to_json(&SciWorldGoals {
            goals: env.goal_progress().map_err(message)?,
        }),
        Op::AvailableActions | Op::InstructionText => {
            Err("this endpoint is not served for sciworld".into())
        }
    }
}
