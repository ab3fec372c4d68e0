//! A kit for property tests of judges and of code built on revision (feature `test-util`):
//! random trees with every invariant of a searched tree and TextCraft-like rejections, their
//! rule for refused actions, a proptest strategy over them, and a judge whose labels are
//! known in advance.
//!
//! The crate's own property tests use exactly this kit; the crate README shows a property
//! test of your own [`Judge`] written with it. [`ScriptedJudge`](crate::ScriptedJudge) reads
//! labels from a file instead.

use std::sync::Mutex;

use agentr_envs::TaskId;
use agentr_envs::rng::Rng;
use agentr_mcts::{Node, SearchConfig, Tree};
use proptest::prelude::{Strategy, any};

use crate::judge::{Judge, JudgeRequest, Judgement, Label, NoError};

/// A random tree with every invariant of `agentr_mcts::Tree` (it passes `Tree::validate`):
/// random branching (1 to `branching` children), terminal leaves with rewards from
/// {0, 0.1, 0.5, 1}, some disasters and some open leaves. Its environment is TextCraft's name,
/// and about one step in five gets TextCraft's refusal (`Could not find ...`, a rejection by
/// [`is_rejection`]), so branches that succeed after a rejected step occur.
pub fn random_tree(seed: u64, depth_limit: usize, branching: u64) -> Tree {
    let mut rng = Rng::new(seed);
    let config = SearchConfig {
        depth_limit,
        ..SearchConfig::default()
    };
    let mut tree = Tree::new(
        "textcraft",
        TaskId(seed % 7),
        "Play.",
        "start".into(),
        config,
    );
    let mut frontier = vec![0];
    while let Some(parent) = frontier.pop() {
        let children = 1 + rng.below(branching);
        for k in 0..children {
            let id = tree.nodes.len();
            let depth = tree.nodes[parent].depth + 1;
            let ends = depth >= depth_limit || rng.below(3) == 0;
            let disaster = ends && rng.below(6) == 0;
            let reward = if disaster {
                0.0
            } else if ends {
                [0.0, 0.1, 0.5, 1.0][rng.index(4)]
            } else {
                0.0
            };
            let open_leaf = !ends && rng.below(5) == 0;
            tree.nodes.push(Node {
                parent: Some(parent),
                children: Vec::new(),
                response: format!("Thought: step {id}\nAction: a{k}"),
                action: format!("a{k}"),
                observation: match rng.below(5) {
                    0 => format!("Could not find a{k}"),
                    _ => format!("obs {id}"),
                },
                reward,
                visits: 0,
                value: 0.0,
                depth,
                terminal: ends,
                done: ends && depth < depth_limit && !disaster,
                disaster,
            });
            tree.nodes[parent].children.push(id);
            if !ends && !open_leaf {
                frontier.push(id);
            }
        }
    }
    // Back up terminal leaves, then mark nodes whose children are all terminal.
    for id in 0..tree.nodes.len() {
        if tree.nodes[id].terminal && tree.nodes[id].children.is_empty() {
            let reward = tree.nodes[id].reward;
            let mut current = Some(id);
            while let Some(n) = current {
                tree.nodes[n].visits += 1;
                tree.nodes[n].value += reward;
                current = tree.nodes[n].parent;
            }
        }
    }
    for id in (0..tree.nodes.len()).rev() {
        let children = &tree.nodes[id].children;
        if !children.is_empty() && children.iter().all(|&c| tree.nodes[c].terminal) {
            tree.nodes[id].terminal = true;
        }
    }
    tree
}

/// The random trees' rule for refused actions (TextCraft's `Could not ...`).
pub fn is_rejection(_previous: &str, observation: &str) -> bool {
    observation.starts_with("Could not")
}

/// Random trees of depth limits 1-6 and 1-3 children per node, any seed.
pub fn trees() -> impl Strategy<Value = Tree> {
    (any::<u64>(), 1usize..7, 1u64..4)
        .prop_map(|(seed, depth_limit, branching)| random_tree(seed, depth_limit, branching))
}

/// A judge whose labels are known in advance: each step's label is a hash of (salt, the
/// step's child positions from the root), so a test can tell which step of a branch is its
/// first error ([`SeededJudge::label`]). Records every call, in order.
#[derive(Debug)]
pub struct SeededJudge {
    salt: u64,
    calls: Mutex<Vec<Vec<usize>>>,
}

impl SeededJudge {
    /// A judge whose labels `salt` picks.
    pub fn new(salt: u64) -> Self {
        SeededJudge {
            salt,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// The label this judge gives the step at `node` (child positions from the root).
    pub fn label(&self, node: &[usize]) -> Label {
        let mut parts = vec![self.salt];
        parts.extend(node.iter().map(|&p| p as u64));
        [Label::Good, Label::Bad, Label::Uncertain][Rng::from_parts(&parts).index(3)]
    }

    /// The steps judged so far (child positions), in call order.
    pub fn calls(&self) -> Vec<Vec<usize>> {
        self.calls
            .lock()
            .map(|calls| calls.clone())
            .unwrap_or_default()
    }
}

impl Judge for SeededJudge {
    type Error = NoError;

    fn name(&self) -> String {
        format!("seeded:{}", self.salt)
    }

    fn judge(&self, request: &JudgeRequest<'_>) -> Result<Judgement, NoError> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(request.node.to_vec());
        }
        Ok(Judgement {
            label: self.label(request.node),
            rationale: String::new(),
            parsed: true,
        })
    }
}
