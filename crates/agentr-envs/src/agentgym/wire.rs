//! The JSON shapes of AgentGym's environment servers, one type per request or answer, shared
//! by this crate's client and `agentr serve` so that the two cannot drift apart.
//!
//! Field names and nesting are AgentGym's. TextCraft and ScienceWorld name the environment
//! `id`; WebShop names it `env_idx`, creates with a bare integer and resets to
//! `[observation, null]`. Every server answers a refused call (unknown id, closed environment,
//! unknown task, ...) with HTTP 200 and [`ErrorReply`].

use serde::{Deserialize, Serialize};

/// `{"error": message}`: AgentGym's answer to a call it refuses, sent with HTTP 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong, in the server's words.
    pub error: String,
}

/// TextCraft `POST /create`. A custom command list or goal replaces the task's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TextCraftCreate {
    /// Crafting commands, one per line.
    pub commands: Option<String>,
    /// The goal item.
    pub goal: Option<String>,
}

/// TextCraft's answer to `/create` and `/reset`: the new episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextCraftEpisode {
    /// The environment's id.
    pub id: u64,
    /// The first observation (command list and goal).
    pub observation: String,
    /// Always false.
    pub done: bool,
    /// Always 0.
    #[serde(serialize_with = "whole_number")]
    pub reward: f64,
}

/// TextCraft's answer to `/step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextCraftStep {
    /// What the action did.
    pub observation: String,
    /// 1 once the goal is crafted, else 0.
    #[serde(serialize_with = "whole_number")]
    pub reward: f64,
    /// Whether the goal is crafted.
    pub done: bool,
}

/// TextCraft's `GET /detail`: the episode as the server last saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextCraftDetail {
    /// The last observation.
    pub observation: String,
    /// Whether the episode ended.
    pub done: bool,
    /// The last reward.
    #[serde(serialize_with = "whole_number")]
    pub reward: f64,
    /// Whether the environment was closed (never true in an answer: closed ids are refused).
    pub deleted: bool,
}

/// `POST /step` of TextCraft and ScienceWorld.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRequest {
    /// The environment's id.
    pub id: u64,
    /// The action text.
    pub action: String,
}

/// `POST /reset` of TextCraft and ScienceWorld.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResetRequest {
    /// The environment's id.
    pub id: u64,
    /// The task id.
    pub data_idx: u64,
}

/// `POST /close` of TextCraft and ScienceWorld.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloseRequest {
    /// The environment's id.
    pub id: u64,
}

/// The answer to `/close` (all three servers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Closed {
    /// Whether an environment was closed.
    pub closed: bool,
}

/// ScienceWorld's answer to `/create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SciWorldCreated {
    /// The environment's id.
    pub id: u64,
}

/// ScienceWorld's answer to `/reset`: the game, its task description and what `look around`
/// showed (clients open the conversation with `task_description + "\n" + observation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SciWorldReset {
    /// The simulator's task name, e.g. `boil`.
    pub task_name: String,
    /// The variation of the task.
    pub var_num: u32,
    /// The task as the simulator states it.
    pub task_description: String,
    /// What `look around` printed.
    pub observation: String,
    /// Score change of the look (0).
    pub reward: i64,
    /// Score after the look (0).
    pub score: i64,
    /// Always false.
    pub deleted: bool,
    /// Always false.
    pub done: bool,
}

/// ScienceWorld's answer to `/step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SciWorldStep {
    /// What the action did.
    pub observation: String,
    /// The change of score this step.
    pub reward: i64,
    /// The score so far, 0 to 100; negative after a fatal mistake.
    pub score: i64,
    /// Whether the episode ended (completed or failed).
    pub done: bool,
}

/// ScienceWorld's `GET /detail`: everything the last reset and step said.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SciWorldDetail {
    /// Whether the environment was closed (never true in an answer).
    pub deleted: bool,
    /// Whether the episode ended.
    pub done: bool,
    /// The task name, once reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_name: Option<String>,
    /// The variation, once reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub var_num: Option<u32>,
    /// The task description, once reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_description: Option<String>,
    /// The last observation, once reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<String>,
    /// The last score change, once reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<i64>,
    /// The score, once reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<i64>,
}

/// ScienceWorld's `GET /action_hint`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SciWorldActionHint {
    /// The simulator's action templates (`open OBJ`, ...).
    pub possible_actions: Vec<String>,
    /// The objects the agent can refer to.
    pub possible_objects: Vec<String>,
}

/// ScienceWorld's `GET /goals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SciWorldGoals {
    /// The simulator's goal progress text.
    pub goals: String,
}

/// WebShop `POST /step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebShopStepRequest {
    /// The environment's id.
    pub env_idx: u64,
    /// The action text.
    pub action: String,
}

/// WebShop `POST /reset`: `session_id` is the task id (a random goal when absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebShopResetRequest {
    /// The environment's id.
    pub env_idx: u64,
    /// The task id.
    pub session_id: Option<u64>,
}

/// WebShop `POST /close`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebShopCloseRequest {
    /// The environment's id.
    pub env_idx: u64,
}

/// WebShop's answer to `/reset`: `[observation, null]`.
pub type WebShopReset = (String, Option<()>);

/// WebShop's answer to `/step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebShopStep {
    /// The page after the action.
    pub state: String,
    /// The purchase reward once bought, else 0.
    pub reward: f64,
    /// Whether the product was bought.
    pub done: bool,
    /// Always null.
    pub info: Option<()>,
}

/// WebShop's `GET /available_actions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvailableActions {
    /// Whether the page has a search bar (the search page).
    pub has_search_bar: bool,
    /// The page's clickables, lowercase (`["search"]` on the search page).
    pub clickables: Vec<String>,
}

/// AgentGym's TextCraft server answers its rewards as Python integers (`"reward": 1`); a
/// reward that is a whole number is written the same way (and still reads back as a float).
fn whole_number<S: serde::Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    // 2^53: every integer up to it is exact in f64.
    if value.fract() == 0.0 && value.abs() <= 9_007_199_254_740_992.0 {
        serializer.serialize_i64(*value as i64)
    } else {
        serializer.serialize_f64(*value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn json_of(value: &impl Serialize) -> Value {
        serde_json::to_value(value).unwrap()
    }

    /// TextCraft's rewards are written as AgentGym's server writes them (`1`, not `1.0`), and
    /// read back as floats.
    #[test]
    fn textcraft_rewards_are_whole_numbers_on_the_wire() {
        let step = TextCraftStep {
            observation: "Crafted 1 minecraft:stick".into(),
            reward: 1.0,
            done: true,
        };
        let text = serde_json::to_string(&step).unwrap();
        assert!(text.contains(r#""reward":1,"#), "{text}");
        assert_eq!(serde_json::from_str::<TextCraftStep>(&text).unwrap(), step);
        let detail = TextCraftDetail {
            observation: "o".into(),
            done: false,
            reward: 0.0,
            deleted: false,
        };
        let text = serde_json::to_string(&detail).unwrap();
        assert!(text.contains(r#""reward":0,"#), "{text}");
        // A reward that is not a whole number stays a float.
        let half = TextCraftStep {
            reward: 0.5,
            ..step
        };
        assert!(
            serde_json::to_string(&half)
                .unwrap()
                .contains(r#""reward":0.5"#)
        );
    }

    #[test]
    fn shapes_are_agentgyms() {
        let cases: Vec<(Value, Value)> = vec![
            (
                json_of(&TextCraftEpisode {
                    id: 3,
                    observation: "o".into(),
                    done: false,
                    reward: 0.0,
                }),
                json!({"id": 3, "observation": "o", "done": false, "reward": 0}),
            ),
            (
                json_of(&SciWorldStep {
                    observation: "o".into(),
                    reward: 25,
                    score: 50,
                    done: false,
                }),
                json!({"observation": "o", "reward": 25, "score": 50, "done": false}),
            ),
            (
                json_of(&SciWorldDetail::default()),
                json!({"deleted": false, "done": false}),
            ),
            (
                json_of(&("page".to_owned(), None::<()>)),
                json!(["page", null]),
            ),
            (
                json_of(&WebShopStep {
                    state: "s".into(),
                    reward: 0.5,
                    done: true,
                    info: None,
                }),
                json!({"state": "s", "reward": 0.5, "done": true, "info": null}),
            ),
            (
                json_of(&WebShopResetRequest {
                    env_idx: 7,
                    session_id: None,
                }),
                json!({"env_idx": 7, "session_id": null}),
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        // The Python servers' integer rewards read as floats.
        let step: TextCraftStep =
            serde_json::from_value(json!({"observation": "x", "reward": 1, "done": true})).unwrap();
        assert_eq!(step.reward, 1.0);
        let reset: WebShopReset = serde_json::from_value(json!(["page", null])).unwrap();
        assert_eq!(reset.0, "page");
    }
}
