//! Judging single steps of a branch: the [`Judge`] trait, its prompt and label parser, and the
//! model-free judges.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use agentr_envs::{Message, TaskId};
use serde::{Deserialize, Serialize};

use crate::ReviseError;

/// A judge's verdict on one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// The step moves the agent toward the goal.
    Good,
    /// The step is a mistake.
    Bad,
    /// The judge cannot tell (also the reading of an unparseable answer).
    Uncertain,
}

impl Label {
    /// `good`, `bad` or `uncertain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Good => "good",
            Label::Bad => "bad",
            Label::Uncertain => "uncertain",
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A judge's answer: the label, its reasons, and whether the label was actually read from the
/// answer (`false` means an unparseable answer counted as uncertain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judgement {
    /// The verdict.
    pub label: Label,
    /// The judge's reasoning (for model judges: the text before the label line).
    pub rationale: String,
    /// Whether a label line was found.
    pub parsed: bool,
}

/// One step of a branch as the judge sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepView<'a> {
    /// The agent's full response.
    pub response: &'a str,
    /// The action the environment executed.
    pub action: &'a str,
    /// The environment's answer.
    pub observation: &'a str,
}

/// Everything a judge gets to decide on one step.
#[derive(Debug, Clone)]
pub struct JudgeRequest<'a> {
    /// The environment's name.
    pub env: &'a str,
    /// The task.
    pub task: TaskId,
    /// The step's node as child positions from the root (for scripted judges and messages).
    pub node: &'a [usize],
    /// The task as the agent first saw it (the first observation).
    pub task_description: &'a str,
    /// The steps before the one judged, from the first.
    pub history: Vec<StepView<'a>>,
    /// The step judged.
    pub step: StepView<'a>,
    /// Whether the environment refused the judged step's action (its
    /// [`agentr_envs::Environment::is_rejection`]): the environment-feedback judge's evidence.
    /// The verifier prompt shows the observation, not this flag.
    pub rejected: bool,
}

impl JudgeRequest<'_> {
    /// The observation the judged step's action answered: the last step's, or the first.
    pub fn previous_observation(&self) -> &str {
        self.history
            .last()
            .map_or(self.task_description, |step| step.observation)
    }
}

/// Labels single steps. Implementations: model judges (prompted with [`judge_prompt`], read
/// with [`parse_judgement`]), and the model-free [`EnvFeedbackJudge`] and [`ScriptedJudge`].
pub trait Judge: Send + Sync {
    /// The judge's own error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A short name recorded in every sample's metadata, e.g. `env-feedback`.
    fn name(&self) -> String;

    /// Labels `request.step`.
    fn judge(&self, request: &JudgeRequest<'_>) -> Result<Judgement, Self::Error>;
}

/// The verifier prompt for model judges (own wording): the task, the history, the step, and the
/// instruction to reason first and end with a `Judgment: <label>` line.
pub fn judge_prompt(request: &JudgeRequest<'_>) -> Vec<Message> {
    let mut text = format!(
        "You are checking the work of an agent acting in the {} environment. Review one of its \
         steps.\n\nThe task as the agent saw it:\n{}\n\n",
        request.env, request.task_description
    );
    if request.history.is_empty() {
        text.push_str("Earlier steps: none, this is the agent's first step.\n\n");
    } else {
        text.push_str("Earlier steps:\n");
        for (index, step) in request.history.iter().enumerate() {
            text.push_str(&format!(
                "{}. Action: {}\n   Result: {}\n",
                index + 1,
                step.action,
                step.observation
            ));
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "The step to review (step {}):\nAgent's reply: {}\nResult: {}\n\n",
        request.history.len() + 1,
        request.step.response,
        request.step.observation
    ));
    text.push_str(
        "Call the step Bad if it is a mistake: the environment rejected it, it wasted a turn, or \
         it moved away from the goal. Call it Good if it is a sensible move toward the goal. \
         Call it Uncertain if you cannot tell. Give your reasons in a few sentences, then end \
         with exactly one line:\nJudgment: Good, Bad or Uncertain",
    );
    vec![Message::user(text)]
}

/// Reads a model judge's answer: the last `Judgment:` (or `Judgement:`) line, any case, with
/// the label word after it. Anything else is `Uncertain` with `parsed: false`. Never panics.
///
/// ```
/// use agentr_revise::{parse_judgement, Label};
/// let answer = "The craft failed, so judgment: good is wrong here.\nJUDGEMENT: **Bad**";
/// let judgement = parse_judgement(answer);
/// assert_eq!(judgement.label, Label::Bad);
/// assert!(judgement.parsed);
/// assert_eq!(parse_judgement("no idea").label, Label::Uncertain);
/// ```
pub fn parse_judgement(answer: &str) -> Judgement {
    // ASCII lowercasing keeps byte offsets, so positions map back onto `answer`.
    let lower = answer.to_ascii_lowercase();
    let mut found: Option<(usize, Label)> = None;
    for marker in ["judgment", "judgement"] {
        for (at, _) in lower.match_indices(marker) {
            let rest = &lower[at + marker.len()..];
            let rest = rest.trim_start_matches(|c: char| {
                c.is_whitespace() || matches!(c, ':' | '*' | '-' | '=' | '"' | '\'' | '`')
            });
            let label = [
                ("good", Label::Good),
                ("bad", Label::Bad),
                ("uncertain", Label::Uncertain),
            ]
            .into_iter()
            .find(|(word, _)| {
                rest.starts_with(word)
                    && !rest[word.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_alphanumeric())
            });
            if let Some((_, label)) = label
                && found.is_none_or(|(previous, _)| at > previous)
            {
                found = Some((at, label));
            }
        }
    }
    match found {
        Some((at, label)) => {
            let line_start = answer[..at].rfind('\n').map_or(0, |i| i + 1);
            let label_line_prefix = answer[line_start..at]
                .trim_matches(|c: char| c.is_whitespace() || matches!(c, '*' | '#' | '-' | '>'));
            let rationale = if label_line_prefix.is_empty() {
                answer[..line_start].trim()
            } else {
                answer[..at].trim()
            };
            Judgement {
                label,
                rationale: rationale.to_owned(),
                parsed: true,
            }
        }
        None => Judgement {
            label: Label::Uncertain,
            rationale: answer.trim().to_owned(),
            parsed: false,
        },
    }
}

/// Never fails: the error type of the model-free judges.
#[derive(Debug, thiserror::Error)]
#[error("unreachable")]
pub enum NoError {}

/// Marks a step Bad when the environment rejected the action ([`JudgeRequest::rejected`]:
/// TextCraft's `Could not ...`, ScienceWorld's `No known action matches that input.`, ...) or
/// when it repeats the previous step's action with the same result (no progress); Good
/// otherwise.
///
/// A baseline for the model-guided judge, and the judge to use before any model exists.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvFeedbackJudge;

impl Judge for EnvFeedbackJudge {
    type Error = NoError;

    fn name(&self) -> String {
        "env-feedback".to_owned()
    }

    fn judge(&self, request: &JudgeRequest<'_>) -> Result<Judgement, NoError> {
        let step = request.step;
        let (label, rationale) =
            if request.rejected {
                (
                    Label::Bad,
                    format!("The environment rejected the action: {}", step.observation),
                )
            } else if request.history.last().is_some_and(|prev| {
                prev.action == step.action && prev.observation == step.observation
            }) {
                (
                    Label::Bad,
                    "The step repeats the previous action with the same result: no progress."
                        .to_owned(),
                )
            } else {
                (
                    Label::Good,
                    "The environment accepted the action.".to_owned(),
                )
            };
        Ok(Judgement {
            label,
            rationale,
            parsed: true,
        })
    }
}

/// Why a judge script does not parse ([`ScriptedJudge::from_json`]).
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The text is not JSON of the script's shape.
    #[error("not a judge script: {0}")]
    NotAScript(#[source] serde_json::Error),
    /// Two lines label the same step.
    #[error("task {task} node {node:?} is labelled twice")]
    LabelledTwice {
        /// The step's task.
        task: TaskId,
        /// The step as child positions from the root.
        node: Vec<usize>,
    },
}

/// Labels read from a file, for tests and hand-made experiments.
///
/// ```json
/// { "default": "good",
///   "labels": [ { "task": 3, "node": [0, 2], "label": "bad", "rationale": "wrong item" } ] }
/// ```
///
/// `node` is the step's path as child positions from the root. Steps not listed get
/// `default` (`uncertain` when omitted).
#[derive(Debug, Clone)]
pub struct ScriptedJudge {
    default: Label,
    labels: HashMap<(TaskId, Vec<usize>), (Label, String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptFile {
    #[serde(default = "uncertain")]
    default: Label,
    labels: Vec<ScriptLine>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptLine {
    task: TaskId,
    node: Vec<usize>,
    label: Label,
    #[serde(default)]
    rationale: String,
}

fn uncertain() -> Label {
    Label::Uncertain
}

impl ScriptedJudge {
    /// Reads a script file.
    pub fn load(path: &Path) -> Result<Self, ReviseError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReviseError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text).map_err(|e| ReviseError::BadFile {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Parses a script.
    pub fn from_json(text: &str) -> Result<Self, ScriptError> {
        let file: ScriptFile = serde_json::from_str(text).map_err(ScriptError::NotAScript)?;
        let mut labels = HashMap::new();
        for line in file.labels {
            let key = (line.task, line.node);
            if labels.contains_key(&key) {
                return Err(ScriptError::LabelledTwice {
                    task: key.0,
                    node: key.1,
                });
            }
            labels.insert(key, (line.label, line.rationale));
        }
        Ok(ScriptedJudge {
            default: file.default,
            labels,
        })
    }
}

impl Judge for ScriptedJudge {
    type Error = NoError;

    fn name(&self) -> String {
        "scripted".to_owned()
    }

    fn judge(&self, request: &JudgeRequest<'_>) -> Result<Judgement, NoError> {
        let (label, rationale) = self
            .labels
            .get(&(request.task, request.node.to_vec()))
            .cloned()
            .unwrap_or_else(|| (self.default, "not in the script".to_owned()));
        Ok(Judgement {
            label,
            rationale,
            parsed: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert, proptest};

    #[test]
    fn label_lines_parse() {
        let cases = [
            ("Reasoning.\nJudgment: Good", Label::Good, "Reasoning."),
            ("judgement:bad", Label::Bad, ""),
            (
                "Because.\n**Judgment:** Uncertain.",
                Label::Uncertain,
                "Because.",
            ),
            (
                "Judgment: Good at first, but\nJudgment: Bad",
                Label::Bad,
                "Judgment: Good at first, but",
            ),
            ("Judgment - \"BAD\"", Label::Bad, ""),
            ("It was bad. Judgment: Bad", Label::Bad, "It was bad."),
        ];
        for (text, label, rationale) in cases {
            let judgement = parse_judgement(text);
            assert_eq!(judgement.label, label, "{text:?}");
            assert!(judgement.parsed);
            assert_eq!(judgement.rationale, rationale, "{text:?}");
        }
        for text in [
            "",
            "Judgment:",
            "Judgment: badly done",
            "Judgment: maybe",
            "good bad",
        ] {
            let judgement = parse_judgement(text);
            assert_eq!(judgement.label, Label::Uncertain, "{text:?}");
            assert!(!judgement.parsed, "{text:?}");
        }
    }

    fn request<'a>(
        env: &'a str,
        history: Vec<StepView<'a>>,
        step: StepView<'a>,
    ) -> JudgeRequest<'a> {
        JudgeRequest {
            env,
            task: TaskId(1),
            node: &[0, 1],
            task_description: "Goal: craft stick.",
            history,
            step,
            rejected: false,
        }
    }

    fn view<'a>(action: &'a str, observation: &'a str) -> StepView<'a> {
        StepView {
            response: action,
            action,
            observation,
        }
    }

    /// Bad for a rejected step (whatever the environment's rule found) or a repeat with the
    /// same result, Good otherwise. Each environment's rule is tested in agentr-envs.
    #[test]
    fn env_feedback_rules() {
        let judge = EnvFeedbackJudge;
        let label = |history, step, rejected| {
            let mut request = request("textcraft", history, step);
            request.rejected = rejected;
            judge.judge(&request).unwrap().label
        };
        let rejected = view("get 1 stick", "Could not find stick");
        assert_eq!(label(vec![], rejected, true), Label::Bad);
        let accepted = view("get 1 oak logs", "Got 1 oak logs");
        assert_eq!(label(vec![], accepted, false), Label::Good);
        // The flag decides, not the text.
        assert_eq!(label(vec![], rejected, false), Label::Good);
        assert_eq!(label(vec![], accepted, true), Label::Bad);
        let inv = view("inventory", "Inventory: [stick] (1) ");
        assert_eq!(label(vec![inv], inv, false), Label::Bad);
        let other = view("inventory", "Inventory: [stick] (2) ");
        assert_eq!(label(vec![inv], other, false), Label::Good);
    }

    #[test]
    fn scripted_judge_reads_its_file() {
        let judge = ScriptedJudge::from_json(
            r#"{"default": "good", "labels": [{"task": 1, "node": [0, 1], "label": "bad", "rationale": "r"}]}"#,
        )
        .unwrap();
        let step = view("a", "o");
        assert_eq!(
            judge.judge(&request("x", vec![], step)).unwrap().label,
            Label::Bad
        );
        let mut other = request("x", vec![], step);
        other.node = &[0];
        assert_eq!(judge.judge(&other).unwrap().label, Label::Good);
        assert!(ScriptedJudge::from_json(r#"{"labels": [], "extra": 1}"#).is_err());
        let twice = r#"{"labels": [{"task": 1, "node": [], "label": "bad"}, {"task": 1, "node": [], "label": "good"}]}"#;
        assert!(matches!(
            ScriptedJudge::from_json(twice),
            Err(ScriptError::LabelledTwice { task: TaskId(1), ref node }) if node.is_empty()
        ));
    }

    #[test]
    fn prompt_holds_the_task_history_and_step() {
        let history = vec![view("get 1 oak logs", "Got 1 oak logs")];
        let step = view(
            "craft 4 stick using 2 planks",
            "Could not find enough items",
        );
        let messages = judge_prompt(&request("textcraft", history, step));
        assert_eq!(messages.len(), 1);
        let text = &messages[0].content;
        for needle in [
            "textcraft",
            "Goal: craft stick.",
            "1. Action: get 1 oak logs",
            "(step 2)",
            "Could not find enough items",
            "Judgment: Good, Bad or Uncertain",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    proptest! {
        #[test]
        fn parser_never_panics(answer in any::<String>()) {
            let judgement = parse_judgement(&answer);
            prop_assert!(judgement.parsed || judgement.label == Label::Uncertain);
        }

        #[test]
        fn a_final_label_line_always_wins(prefix in any::<String>(), pick in 0usize..3) {
            let (word, label) = [("Good", Label::Good), ("bad", Label::Bad), ("UNCERTAIN", Label::Uncertain)][pick];
            let judgement = parse_judgement(&format!("{prefix}\nJudgment: {word}"));
            prop_assert!(judgement.parsed && judgement.label == label);
        }
    }
}
