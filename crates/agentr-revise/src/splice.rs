//! Building revision and good-trajectory samples from tree paths.

use std::path::Path;

use agentr_envs::chat::{CLEAN_OBSERVATIONS, conversation_start};
use agentr_envs::{Message, Sample};
use agentr_mcts::{NodeId, Tree};

use crate::ReviseError;
use crate::pairs::lowest_common_ancestor;

pub use agentr_envs::chat::{REVISION_ACK, REVISION_ACTION};

/// The default revision signals: short first-person notes that the current approach has gone
/// wrong (own wording; `--signals FILE` loads another set, one per line).
pub const DEFAULT_SIGNALS: [&str; 10] = [
    "Something is off: my recent steps are not getting me closer to the goal, so I will change course.",
    "Looking back, I took a wrong turn a moment ago. Let me drop that line and try another way.",
    "That did not work as I expected. I should stop repeating the mistake and rethink my plan.",
    "I realise the path I chose is a dead end. I will go back to what I know works and continue from there.",
    "My last actions were a mistake. Time to correct myself and pick a better next step.",
    "This approach is failing. I need to reconsider what the task really asks for and act on that.",
    "I went astray. Let me reorient toward the goal and proceed more carefully.",
    "The results show my plan was flawed. I will revise it before taking another step.",
    "I made an error in judgement earlier. Let me fix it and move on in a different direction.",
    "Wait, this is not right. I should abandon this attempt and take a more sensible route.",
];

/// A set of revision signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signals(Vec<String>);

impl Default for Signals {
    fn default() -> Self {
        Signals(DEFAULT_SIGNALS.iter().map(|s| (*s).to_owned()).collect())
    }
}

impl Signals {
    /// Signals from a file: one per non-empty line.
    pub fn load(path: &Path) -> Result<Self, ReviseError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReviseError::Io {
            path: path.to_owned(),
            source,
        })?;
        let signals: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        if signals.is_empty() {
            return Err(ReviseError::BadFile {
                path: path.to_owned(),
                message: "no revision signals (one per non-empty line expected)".into(),
            });
        }
        Ok(Signals(signals))
    }

    /// The signals, in order.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// The revision turn for signal `index` (modulo the count).
    pub fn turn(&self, index: usize) -> String {
        format!(
            "Thought: {}\nAction: {REVISION_ACTION}",
            self.0[index % self.0.len()]
        )
    }
}

/// The messages of the steps along `nodes` (each a response and its observation), with `loss`
/// on the responses.
fn steps(tree: &Tree, nodes: &[NodeId], loss: bool) -> Vec<Message> {
    nodes
        .iter()
        .flat_map(|&id| {
            let node = &tree.nodes[id];
            [
                Message::assistant(node.response.clone(), loss),
                Message::user(node.observation.clone()),
            ]
        })
        .collect()
}

/// Where a revision sample's parts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Splice {
    /// The good leaf.
    pub good: NodeId,
    /// The bad leaf.
    pub bad: NodeId,
    /// The transition point: the last bad step kept, on the bad leaf's path below the
    /// branches' lowest common ancestor.
    pub t_prime: NodeId,
}

/// The revision trajectory: instruction and first observation, the shared prefix (root to the
/// lowest common ancestor), the bad steps after it up to and including `t_prime` (no loss), the
/// revision turn `Thought: <signal>\nAction: wait` (loss), the user's `ok.`, then the good
/// branch's steps after the common ancestor (loss).
pub fn revision_messages(tree: &Tree, splice: Splice, revision_turn: &str) -> Vec<Message> {
    let common = lowest_common_ancestor(tree, splice.good, splice.bad);
    let good_path = tree.path_to_root(splice.good);
    let bad_path = tree.path_to_root(splice.t_prime);
    let shared = tree.nodes[common].depth + 1; // root..=common
    let mut messages = conversation_start(&tree.instruction, &tree.root().observation);
    messages.extend(steps(tree, &good_path[1..shared], false));
    messages.extend(steps(tree, &bad_path[shared..], false));
    messages.push(Message::assistant(revision_turn, true));
    messages.push(Message::user(REVISION_ACK));
    messages.extend(steps(tree, &good_path[shared..], true));
    messages
}

/// A good trajectory: the whole path to `leaf` with loss on every response.
pub fn good_messages(tree: &Tree, leaf: NodeId) -> Vec<Message> {
    let path = tree.path_to_root(leaf);
    let mut messages = conversation_start(&tree.instruction, &tree.root().observation);
    messages.extend(steps(tree, &path[1..], true));
    messages
}

/// A sample of `tree` from messages and metadata given as a JSON object, which gains whether
/// the tree's observations were cleaned ([`CLEAN_OBSERVATIONS`]).
pub(crate) fn sample(tree: &Tree, messages: Vec<Message>, meta: serde_json::Value) -> Sample {
    let mut meta = match meta {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    meta.insert(
        CLEAN_OBSERVATIONS.to_owned(),
        tree.config.clean_observations.into(),
    );
    Sample { messages, meta }
}
