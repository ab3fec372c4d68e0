//! Playing one episode with any responder and recording it as a chat.

use serde_json::json;

use crate::EnvError;
use crate::chat::{Message, Sample, clean_observation, conversation_start};
use crate::env::{Environment, TaskId};

/// How an episode is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutOptions {
    /// At most this many responses (rounds); AgentGym's evaluation used 100.
    pub max_rounds: usize,
    /// Replace newlines and tabs in observations by spaces, as the Agent-R reference did for
    /// its training data.
    pub clean_observations: bool,
}

impl Default for RolloutOptions {
    fn default() -> Self {
        RolloutOptions {
            max_rounds: 100,
            clean_observations: false,
        }
    }
}

/// A finished (or cut-off) episode.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// The environment's name.
    pub env: &'static str,
    /// The task played.
    pub task: TaskId,
    /// Instruction, `Ok.`, first observation, then response/observation pairs. Responses carry
    /// `loss: true`.
    pub messages: Vec<Message>,
    /// The last step's reward (0 when no step was taken).
    pub reward: f64,
    /// Number of actions taken.
    pub steps: usize,
    /// Whether the environment ended the episode (as opposed to running out of rounds).
    pub done: bool,
    /// Whether it ended in a fatal mistake.
    pub disaster: bool,
}

impl Episode {
    /// The episode as a JSONL sample with `meta: {env, task, reward, steps, done}`.
    pub fn to_sample(&self) -> Sample {
        let meta = json!({
            "env": self.env,
            "task": self.task,
            "reward": self.reward,
            "steps": self.steps,
            "done": self.done,
        });
        Sample {
            messages: self.messages.clone(),
            meta: match meta {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
        }
    }

    /// The agent's responses, in order.
    pub fn responses(&self) -> impl Iterator<Item = &str> {
        self.messages
            .iter()
            .skip(3)
            .step_by(2)
            .map(|m| m.content.as_str())
    }
}

/// Plays `task` to the end (or `max_rounds`), asking `respond` for each response.
///
/// The responder's error type must absorb [`EnvError`], so one `?`-friendly error comes back.
pub fn rollout<E, F>(
    env: &mut dyn Environment,
    task: TaskId,
    options: RolloutOptions,
    mut respond: F,
) -> Result<Episode, E>
where
    E: From<EnvError>,
    F: FnMut(&[Message]) -> Result<String, E>,
{
    let clean = |text: String| {
        if options.clean_observations {
            clean_observation(&text)
        } else {
            text
        }
    };
    let first = clean(env.reset(task)?);
    let mut episode = Episode {
        env: env.name(),
        task,
        messages: conversation_start(env.instruction(), &first),
        reward: 0.0,
        steps: 0,
        done: false,
        disaster: false,
    };
    while episode.steps < options.max_rounds && !episode.done {
        let response = respond(&episode.messages)?;
        let step = env.step(&env.extract_action(&response))?;
        episode.messages.push(Message::assistant(response, true));
        episode
            .messages
            .push(Message::user(clean(step.observation)));
        episode.steps += 1;
        episode.reward = step.reward;
        episode.done = step.done;
        episode.disaster = step.disaster;
    }
    Ok(episode)
}
