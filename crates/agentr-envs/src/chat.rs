//! Chat vocabulary shared by every crate: messages with per-message loss flags and the
//! JSONL sample format (`{"messages": [...], "meta": {...}}`, OpenAI message layout).

use serde::{Deserialize, Serialize};

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A system prompt (not used by the environments' own conversations).
    System,
    /// The environment side: instruction prompt and observations.
    User,
    /// The agent: `Thought: ...` / `Action: ...` responses.
    Assistant,
}

/// One chat message.
///
/// `loss` follows the convention of common SFT stacks: `Some(true)` trains on the message,
/// `Some(false)` excludes it, `None` (omitted in JSON) leaves the choice to the trainer's
/// default, which in this project means "train on assistant messages only".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The speaker.
    pub role: Role,
    /// The text.
    pub content: String,
    /// Whether a trainer should put loss on this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<bool>,
}

impl Message {
    /// A user message without a loss flag.
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
            loss: None,
        }
    }

    /// An assistant message with an explicit loss flag.
    pub fn assistant(content: impl Into<String>, loss: bool) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
            loss: Some(loss),
        }
    }

    /// Whether a trainer puts loss on this message (explicit flag, else assistant messages only).
    pub fn trains(&self) -> bool {
        self.loss.unwrap_or(self.role == Role::Assistant)
    }
}

/// The assistant's fixed acknowledgement after the instruction prompt.
pub const ACKNOWLEDGEMENT: &str = "Ok.";

/// The action of Agent-R's revision turn (`Thought: <revision signal>\nAction: wait`).
pub const REVISION_ACTION: &str = "wait";

/// What the agent is told after a revision turn, instead of an environment observation.
pub const REVISION_ACK: &str = "ok.";

/// The opening of every episode's conversation: the instruction prompt as a user turn, the
/// assistant's `Ok.` (never trained), then the first observation.
pub fn conversation_start(instruction: &str, first_observation: &str) -> Vec<Message> {
    vec![
        Message::user(instruction),
        Message::assistant(ACKNOWLEDGEMENT, false),
        Message::user(first_observation),
    ]
}

/// Observation cleaning as the Agent-R reference did for trees and training data:
/// newlines and tabs become spaces. Everything else is left alone.
pub fn clean_observation(observation: &str) -> String {
    observation.replace(['\n', '\t'], " ")
}

/// The key of [`Sample::meta`] that records whether the sample's observations went through
/// [`clean_observation`]. Episodes and revision samples set it; [`ObservationStyles`] counts it.
pub const CLEAN_OBSERVATIONS: &str = "clean_observations";

/// How many samples carry cleaned observations and how many raw ones, by their
/// [`CLEAN_OBSERVATIONS`] key (samples without it are not counted). A model trained on one
/// style and run on the other sees text unlike its training data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObservationStyles {
    /// Samples whose observations were cleaned.
    pub cleaned: usize,
    /// Samples whose observations are the environment's text.
    pub raw: usize,
}

impl ObservationStyles {
    /// Counts `samples`.
    pub fn of<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Self {
        let mut styles = ObservationStyles::default();
        for sample in samples {
            match sample
                .meta
                .get(CLEAN_OBSERVATIONS)
                .and_then(|v| v.as_bool())
            {
                Some(true) => styles.cleaned += 1,
                Some(false) => styles.raw += 1,
                None => {}
            }
        }
        styles
    }

    /// A warning when both styles occur, naming the counts and `what` holds them.
    pub fn mix_warning(&self, what: &str) -> Option<String> {
        (self.cleaned > 0 && self.raw > 0).then(|| {
            format!(
                "warning: {what} mix {} sample(s) with cleaned observations (newlines and tabs \
                 replaced by spaces) and {} with the environment's raw text; a model trained on \
                 one style sees the other as unfamiliar text. Use one style throughout (raw by \
                 default; --clean-observations on gold, collect and eval).",
                self.cleaned, self.raw
            )
        })
    }
}

/// One training or evaluation record: a conversation plus free-form metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The conversation, in order.
    pub messages: Vec<Message>,
    /// Metadata such as `env`, `task`, `reward`, `steps`, `kind`.
    #[serde(default)]
    pub meta: serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_json_omits_missing_loss_and_uses_lowercase_roles() {
        let user = serde_json::to_string(&Message::user("hi")).unwrap();
        assert_eq!(user, r#"{"role":"user","content":"hi"}"#);
        let assistant = serde_json::to_string(&Message::assistant("Ok.", false)).unwrap();
        assert_eq!(
            assistant,
            r#"{"role":"assistant","content":"Ok.","loss":false}"#
        );
    }

    #[test]
    fn observation_styles_count_the_marked_samples_and_warn_on_a_mix() {
        let marked = |clean: Option<bool>| Sample {
            messages: Vec::new(),
            meta: clean
                .map(|c| serde_json::Map::from_iter([(CLEAN_OBSERVATIONS.to_owned(), c.into())]))
                .unwrap_or_default(),
        };
        let samples = [
            marked(Some(true)),
            marked(None),
            marked(Some(false)),
            marked(Some(false)),
        ];
        let styles = ObservationStyles::of(&samples);
        assert_eq!(styles, ObservationStyles { cleaned: 1, raw: 2 });
        let warning = styles.mix_warning("the samples").unwrap();
        assert!(
            warning.contains("the samples mix 1 sample(s) with cleaned observations"),
            "{warning}"
        );
        assert!(
            warning.contains("and 2 with the environment's raw text"),
            "{warning}"
        );
        assert_eq!(ObservationStyles::of(&samples[1..]).mix_warning("x"), None);
        assert_eq!(ObservationStyles::of(&samples[..2]).mix_warning("x"), None);
    }

    #[test]
    fn default_loss_is_assistant_only() {
        let mut m = Message::user("x");
        assert!(!m.trains());
        m.role = Role::Assistant;
        m.loss = None;
        assert!(m.trains());
        m.loss = Some(false);
        assert!(!m.trains());
    }

    #[test]
    fn cleaning_replaces_newlines_and_tabs_only() {
        assert_eq!(clean_observation("a\nb\tc\r d"), "a b c\r d");
    }

    #[test]
    fn sample_round_trips() {
        let mut meta = serde_json::Map::new();
        meta.insert("env".into(), "textcraft".into());
        let sample = Sample {
            messages: conversation_start("rules", "obs"),
            meta,
        };
        let text = serde_json::to_string(&sample).unwrap();
        let back: Sample = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sample);
    }
}
