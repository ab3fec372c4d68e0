//! Playing one episode with any responder and recording it as a chat.

use serde_json::json;

use crate::EnvError;
use crate::chat::{
    CLEAN_OBSERVATIONS, Message, REVISION_ACK, REVISION_ACTION, Sample, clean_observation,
    conversation_start,
};
use crate::env::{Environment, TaskId};

/// What happens to a revision turn (`Action: wait`) during an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RevisionTurns {
    /// Not sent to the environment: the agent is answered `ok.`; the turn counts as a round.
    #[default]
    Acknowledge,
    /// Sent to the environment like any action (the reference's behaviour; ScienceWorld then
    /// really waits).
    SendToEnvironment,
}

/// How an episode is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutOptions {
    /// At most this many responses (rounds); AgentGym's evaluation used 100.
    pub max_rounds: usize,
    /// Replace newlines and tabs in observations by spaces, as the Agent-R reference did for
    /// its training data.
    pub clean_observations: bool,
    /// Handling of revision turns.
    pub revision_turns: RevisionTurns,
}

impl Default for RolloutOptions {
    fn default() -> Self {
        RolloutOptions {
            max_rounds: 100,
            clean_observations: false,
            revision_turns: RevisionTurns::default(),
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
    /// Number of responses (rounds), revision turns included.
    pub steps: usize,
    /// Whether the environment ended the episode (as opposed to running out of rounds).
    pub done: bool,
    /// Whether it ended in a fatal mistake.
    pub disaster: bool,
    /// Whether its observations were cleaned ([`RolloutOptions::clean_observations`]).
    pub clean_observations: bool,
}

impl Episode {
    /// An episode of `task` before any response: instruction, `Ok.`, first observation
    /// (already cleaned when `clean_observations`).
    fn start(
        env: &dyn Environment,
        task: TaskId,
        first_observation: &str,
        clean_observations: bool,
    ) -> Self {
        Episode {
            env: env.name(),
            task,
            messages: conversation_start(env.instruction(), first_observation),
            reward: 0.0,
            steps: 0,
            done: false,
            disaster: false,
            clean_observations,
        }
    }

    /// The episode as a JSONL sample with `meta: {env, task, reward, steps, done,
    /// clean_observations}`.
    pub fn to_sample(&self) -> Sample {
        let meta = json!({
            "env": self.env,
            "task": self.task,
            "reward": self.reward,
            "steps": self.steps,
            "done": self.done,
            CLEAN_OBSERVATIONS: self.clean_observations,
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
    respond: F,
) -> Result<Episode, E>
where
    E: From<EnvError>,
    F: FnMut(&[Message]) -> Result<String, E>,
{
    let first = options.clean(env.reset(task)?);
    let episode = Episode::start(env, task, &first, options.clean_observations);
    play_on(env, episode, options, respond)
}

/// Restores the state after a recorded conversation of `task` (instruction, `Ok.`, first
/// observation, then response/observation pairs, recorded with the same `options`) by replaying
/// its actions, and plays on for at most `options.max_rounds` more responses. The returned
/// episode holds the whole conversation; its `steps` count the recorded responses too.
///
/// Every replayed observation must equal the recorded one
/// ([`EnvError::ReplayDiverged`] otherwise), so the continuation really starts where the
/// recording left off.
pub fn continue_from<E, F>(
    env: &mut dyn Environment,
    task: TaskId,
    recorded: &[Message],
    options: RolloutOptions,
    respond: F,
) -> Result<Episode, E>
where
    E: From<EnvError>,
    F: FnMut(&[Message]) -> Result<String, E>,
{
    let first = options.clean(env.reset(task)?);
    let mut episode = Episode::start(env, task, &first, options.clean_observations);
    let start = episode.messages.len();
    let name = env.name();
    let diverged = |response: usize| EnvError::ReplayDiverged {
        env: name,
        task: task.0,
        response,
    };
    let same_start = recorded.len() >= start
        && recorded[..start]
            .iter()
            .zip(&episode.messages)
            .all(|(recorded, replayed)| {
                recorded.role == replayed.role
                    && recorded.trains() == replayed.trains()
                    && env.same_observation(&recorded.content, &replayed.content)
            });
    if !same_start {
        return Err(diverged(0).into());
    }
    for pair in recorded[start..].chunks(2) {
        let [response, observation] = pair else {
            return Err(diverged(episode.steps + 1).into());
        };
        episode.steps += 1;
        let action = env.extract_action(&response.content);
        let expected =
            if action == REVISION_ACTION && options.revision_turns == RevisionTurns::Acknowledge {
                REVISION_ACK.to_owned()
            } else {
                let step = env.step(&action)?;
                episode.reward = step.reward;
                episode.done = step.done;
                episode.disaster = step.disaster;
                options.clean(step.observation)
            };
        if !env.same_observation(&expected, &observation.content) {
            return Err(diverged(episode.steps).into());
        }
        episode.messages.push(response.clone());
        episode.messages.push(observation.clone());
    }
    let limit = RolloutOptions {
        max_rounds: episode.steps + options.max_rounds,
        ..options
    };
    play_on(env, episode, limit, respond)
}

impl RolloutOptions {
    fn clean(&self, text: String) -> String {
        if self.clean_observations {
            clean_observation(&text)
        } else {
            text
        }
    }
}

/// Asks for responses and steps the environment until the episode ends or has
/// `options.max_rounds` responses.
fn play_on<E, F>(
    env: &mut dyn Environment,
    mut episode: Episode,
    options: RolloutOptions,
    mut respond: F,
) -> Result<Episode, E>
where
    E: From<EnvError>,
    F: FnMut(&[Message]) -> Result<String, E>,
{
    while episode.steps < options.max_rounds && !episode.done {
        let response = respond(&episode.messages)?;
        let action = env.extract_action(&response);
        episode.messages.push(Message::assistant(response, true));
        episode.steps += 1;
        if action == REVISION_ACTION && options.revision_turns == RevisionTurns::Acknowledge {
            episode.messages.push(Message::user(REVISION_ACK));
            continue;
        }
        let step = env.step(&action)?;
        episode
            .messages
            .push(Message::user(options.clean(step.observation)));
        episode.reward = step.reward;
        episode.done = step.done;
        episode.disaster = step.disaster;
    }
    Ok(episode)
}

// The episodes played here are TextCraft's, from its test fixtures.
#[cfg(all(test, feature = "textcraft"))]
mod tests {
    use super::*;
    use crate::textcraft::tests::fixture_env;

    #[test]
    fn a_continued_episode_starts_where_the_recording_stopped() {
        let script = [
            "Action: inventory",
            "Thought: hm.\nAction: wait",
            "Action: inventory",
        ];
        let mut env = fixture_env();
        let mut turn = 0;
        let options = RolloutOptions {
            max_rounds: 3,
            ..RolloutOptions::default()
        };
        let full = rollout::<EnvError, _>(&mut env, TaskId(0), options, |_| {
            turn += 1;
            Ok(script[turn - 1].to_owned())
        })
        .unwrap();
        // Cut after two responses, continue with the third: the same episode comes out.
        let cut = &full.messages[..3 + 2 * 2];
        let one_more = RolloutOptions {
            max_rounds: 1,
            ..options
        };
        let continued = continue_from::<EnvError, _>(&mut env, TaskId(0), cut, one_more, |chat| {
            assert_eq!(chat, cut);
            Ok(script[2].to_owned())
        })
        .unwrap();
        assert_eq!(continued, full);
        // A recording from another task does not replay.
        let mut tampered = cut.to_vec();
        tampered[4].content.push('!');
        let err = continue_from::<EnvError, _>(&mut env, TaskId(0), &tampered, one_more, |_| {
            Ok(String::new())
        })
        .unwrap_err();
        assert!(
            matches!(err, EnvError::ReplayDiverged { response: 1, .. }),
            "{err}"
        );
        let other_task =
            continue_from::<EnvError, _>(&mut env, TaskId(1), cut, one_more, |_| Ok(String::new()));
        assert!(matches!(
            other_task,
            Err(EnvError::ReplayDiverged { response: 0, .. })
        ));
    }

    #[test]
    fn revision_turns_are_acknowledged_unless_sent() {
        let script = ["Thought: oops.\nAction: wait", "Action: inventory"];
        for (mode, second_observation) in [
            (RevisionTurns::Acknowledge, "ok."),
            (RevisionTurns::SendToEnvironment, "Could not execute wait"),
        ] {
            let mut env = fixture_env();
            let mut turn = 0;
            let options = RolloutOptions {
                max_rounds: 2,
                revision_turns: mode,
                ..RolloutOptions::default()
            };
            let episode = rollout::<EnvError, _>(&mut env, TaskId(0), options, |_| {
                turn += 1;
                Ok(script[turn - 1].to_owned())
            })
            .unwrap();
            assert_eq!(episode.steps, 2);
            assert_eq!(episode.messages[4].content, second_observation);
            assert!(episode.messages[6].content.starts_with("Inventory:"));
        }
    }
}
