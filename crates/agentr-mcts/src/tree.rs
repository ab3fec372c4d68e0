//! Search trees: an arena of nodes, their JSON form and the helpers downstream code uses.

use std::fs;
use std::path::Path;

use agentr_envs::chat::conversation_start;
use agentr_envs::{Message, TaskId};
use serde::{Deserialize, Serialize};

use crate::{InvalidTree, SearchConfig, SearchError};

/// The `format` field of every tree file.
pub const FORMAT: &str = "agentr-tree";
/// The schema version this crate reads and writes.
pub const VERSION: u32 = 1;

/// Index of a node in [`Tree::nodes`]; the root is 0.
pub type NodeId = usize;

/// Tolerance for comparing sums of backed-up rewards.
const EPS: f64 = 1e-9;

/// One state of the search: the response that led here and what the environment answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// The parent node; `None` only for the root.
    pub parent: Option<NodeId>,
    /// Children in creation order.
    pub children: Vec<NodeId>,
    /// The policy's response (empty for the root).
    pub response: String,
    /// The action the environment executed, extracted from `response` (empty for the root).
    pub action: String,
    /// The environment's answer (for the root: the first observation), cleaned when the
    /// config says so.
    pub observation: String,
    /// The step's reward in `[0, 1]` (0 for the root).
    pub reward: f64,
    /// How many terminal nodes at or below this one have been backed up.
    pub visits: u32,
    /// Sum of the rewards backed up through this node.
    pub value: f64,
    /// Actions from the root.
    pub depth: usize,
    /// No further expansion: done, at the depth limit, a disaster, or all children terminal.
    pub terminal: bool,
    /// The environment ended the episode here.
    pub done: bool,
    /// The episode ended in a fatal mistake (reward clamped to 0).
    pub disaster: bool,
}

impl Node {
    /// Mean backed-up reward (`Q`); 0 for an unvisited node.
    pub fn mean_value(&self) -> f64 {
        if self.visits == 0 {
            0.0
        } else {
            self.value / f64::from(self.visits)
        }
    }
}

/// The search tree of one task.
///
/// JSON layout (`format` `"agentr-tree"`, `version` 1):
///
/// ```json
/// {
///   "format": "agentr-tree", "version": 1,
///   "env": "textcraft", "task": 12,
///   "instruction": "<the environment's instruction prompt>",
///   "config": { "iterations": 8, "candidates": 4, "depth_limit": 20, "uct_c": 0.25,
///               "temperature": 1.0, "seed": 0, "clean_observations": false, "restore": "auto" },
///   "nodes": [
///     { "parent": null, "children": [1, 2], "response": "", "action": "",
///       "observation": "<first observation>", "reward": 0.0, "visits": 2, "value": 1.0,
///       "depth": 0, "terminal": false, "done": false, "disaster": false },
///     { "parent": 0, "children": [], "response": "Thought: ...\nAction: ...", "action": "...",
///       "observation": "...", "reward": 1.0, "visits": 1, "value": 1.0,
///       "depth": 1, "terminal": true, "done": true, "disaster": false },
///     ...
///   ]
/// }
/// ```
///
/// Invariants, checked by [`Tree::validate`] and therefore by [`Tree::load`]: node 0 is the
/// root at depth 0; every other node's parent comes before it, lists it as a child, and is one
/// level up; depths stay within the depth limit; sibling responses differ; rewards lie in
/// `[0, 1]`; a terminal leaf has one visit worth its reward, an unexpanded leaf none, and an
/// inner node's visits and value are the sums of its children's; done, disaster and
/// depth-limit nodes are terminal leaves, and a node whose children are all terminal is
/// terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// The environment's name.
    pub env: String,
    /// The task searched.
    pub task: TaskId,
    /// The environment's instruction prompt (the first user turn of every conversation).
    pub instruction: String,
    /// The settings the tree was grown with.
    pub config: SearchConfig,
    /// The policy that grew it, as it describes itself
    /// ([`Policy::describe`](crate::Policy::describe)); absent when it gives no description
    /// (and in trees written before descriptions were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// All nodes; `nodes[0]` is the root.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// A tree holding only the root.
    pub fn new(
        env: &str,
        task: TaskId,
        instruction: &str,
        first_observation: String,
        config: SearchConfig,
    ) -> Self {
        Tree {
            format: FORMAT.to_owned(),
            version: VERSION,
            env: env.to_owned(),
            task,
            instruction: instruction.to_owned(),
            config,
            policy: None,
            nodes: vec![Node {
                parent: None,
                children: Vec::new(),
                response: String::new(),
                action: String::new(),
                observation: first_observation,
                reward: 0.0,
                visits: 0,
                value: 0.0,
                depth: 0,
                terminal: false,
                done: false,
                disaster: false,
            }],
        }
    }

    /// The root node.
    pub fn root(&self) -> &Node {
        &self.nodes[0]
    }

    /// Node ids from the root to `id`, both included.
    pub fn path_to_root(&self, id: NodeId) -> Vec<NodeId> {
        let mut path = vec![id];
        let mut current = id;
        while let Some(parent) = self.nodes[current].parent {
            path.push(parent);
            current = parent;
        }
        path.reverse();
        path
    }

    /// The position of each node among its siblings along the way to `id`, e.g. `[0, 2, 1]`
    /// (empty for the root): a stable name for a node in messages.
    pub fn child_positions(&self, id: NodeId) -> Vec<usize> {
        let path = self.path_to_root(id);
        path.windows(2)
            .map(|pair| {
                self.nodes[pair[0]]
                    .children
                    .iter()
                    .position(|&c| c == pair[1])
                    .unwrap_or(usize::MAX)
            })
            .collect()
    }

    /// Actions from the root to `id`.
    pub fn actions(&self, id: NodeId) -> Vec<String> {
        self.path_to_root(id)
            .into_iter()
            .skip(1)
            .map(|n| self.nodes[n].action.clone())
            .collect()
    }

    /// The conversation at `id`: instruction, `Ok.`, first observation, then the responses
    /// and observations along the path. Responses carry `loss: true`.
    pub fn conversation(&self, id: NodeId) -> Vec<Message> {
        let path = self.path_to_root(id);
        let mut messages = conversation_start(&self.instruction, &self.root().observation);
        for &node in &path[1..] {
            let node = &self.nodes[node];
            messages.push(Message::assistant(node.response.clone(), true));
            messages.push(Message::user(node.observation.clone()));
        }
        messages
    }

    /// Terminal nodes without children: the ends of searched branches.
    pub fn leaves(&self) -> Vec<NodeId> {
        (0..self.nodes.len())
            .filter(|&id| self.nodes[id].terminal && self.nodes[id].children.is_empty())
            .collect()
    }

    /// A leaf's reward as Agent-R defines it: value / visits.
    pub fn leaf_reward(&self, id: NodeId) -> f64 {
        self.nodes[id].mean_value()
    }

    /// The leaf with the highest reward (lowest id among equals).
    pub fn best_leaf(&self) -> Option<NodeId> {
        self.leaves().into_iter().reduce(|best, id| {
            if self.leaf_reward(id) > self.leaf_reward(best) {
                id
            } else {
                best
            }
        })
    }

    /// The leaf with the lowest reward (lowest id among equals).
    pub fn worst_leaf(&self) -> Option<NodeId> {
        self.leaves().into_iter().reduce(|worst, id| {
            if self.leaf_reward(id) < self.leaf_reward(worst) {
                id
            } else {
                worst
            }
        })
    }

    /// Whether some leaf reached full reward.
    pub fn has_success(&self) -> bool {
        self.leaves()
            .into_iter()
            .any(|id| self.leaf_reward(id) >= 1.0)
    }

    /// Checks every invariant listed on [`Tree`]; the error names the node that breaks one.
    pub fn validate(&self) -> Result<(), InvalidTree> {
        let whole = |problem: String| InvalidTree {
            node: None,
            problem,
        };
        if self.format != FORMAT {
            return Err(whole(format!(
                "format is {:?}, expected {FORMAT:?}",
                self.format
            )));
        }
        if self.version != VERSION {
            return Err(whole(format!(
                "version {} is not supported (expected {VERSION})",
                self.version
            )));
        }
        self.config
            .validate()
            .map_err(|e| whole(format!("config: {e}")))?;
        let root = self
            .nodes
            .first()
            .ok_or_else(|| whole("the tree has no nodes".into()))?;
        if root.parent.is_some() || root.depth != 0 {
            return Err(whole("node 0 must be the root: no parent, depth 0".into()));
        }
        for (id, node) in self.nodes.iter().enumerate() {
            self.validate_node(id, node)
                .map_err(|problem| InvalidTree {
                    node: Some(id),
                    problem,
                })?;
        }
        Ok(())
    }

    fn validate_node(&self, id: NodeId, node: &Node) -> Result<(), String> {
        let finite_unit = |x: f64| x.is_finite() && (0.0..=1.0).contains(&x);
        if !finite_unit(node.reward) {
            return Err(format!("reward {} is outside [0, 1]", node.reward));
        }
        if !(node.value.is_finite()
            && node.value >= -EPS
            && node.value <= f64::from(node.visits) + EPS)
        {
            return Err(format!(
                "value {} is outside [0, visits = {}]",
                node.value, node.visits
            ));
        }
        if node.depth > self.config.depth_limit {
            return Err(format!(
                "depth {} exceeds the depth limit {}",
                node.depth, self.config.depth_limit
            ));
        }
        if let Some(parent) = node.parent {
            if parent >= id {
                return Err(format!("parent {parent} does not come before the node"));
            }
            let parent_node = &self.nodes[parent];
            if !parent_node.children.contains(&id) {
                return Err(format!("parent {parent} does not list it as a child"));
            }
            if node.depth != parent_node.depth + 1 {
                return Err(format!(
                    "depth {} is not one more than its parent's {}",
                    node.depth, parent_node.depth
                ));
            }
        } else if id != 0 {
            return Err("only the root may lack a parent".into());
        }
        let mut responses = std::collections::HashSet::new();
        for &child in &node.children {
            let child_node = self
                .nodes
                .get(child)
                .ok_or_else(|| format!("child {child} does not exist"))?;
            if child_node.parent != Some(id) {
                return Err(format!("child {child} names another parent"));
            }
            if !responses.insert(child_node.response.as_str()) {
                return Err(format!(
                    "children repeat the response {:?}",
                    child_node.response
                ));
            }
        }
        let ends_here = node.done || node.disaster || node.depth == self.config.depth_limit;
        if node.children.is_empty() {
            let expected = if node.terminal {
                (1, node.reward)
            } else {
                (0, 0.0)
            };
            if node.visits != expected.0 || (node.value - expected.1).abs() > EPS {
                return Err(format!(
                    "a {} leaf must have visits {} and value {}, has {} and {}",
                    if node.terminal { "terminal" } else { "open" },
                    expected.0,
                    expected.1,
                    node.visits,
                    node.value
                ));
            }
            if ends_here && !node.terminal {
                return Err("a done, disaster or depth-limit node must be terminal".into());
            }
            if node.disaster && node.reward != 0.0 {
                return Err("a disaster must have reward 0".into());
            }
        } else {
            if ends_here {
                return Err("a done, disaster or depth-limit node cannot have children".into());
            }
            let visits: u64 = node
                .children
                .iter()
                .map(|&c| u64::from(self.nodes[c].visits))
                .sum();
            let value: f64 = node.children.iter().map(|&c| self.nodes[c].value).sum();
            if u64::from(node.visits) != visits || (node.value - value).abs() > 1e-6 {
                return Err(format!(
                    "visits {} and value {} are not the sums of its children's ({visits}, {value})",
                    node.visits, node.value
                ));
            }
            let all_terminal = node.children.iter().all(|&c| self.nodes[c].terminal);
            if all_terminal && !node.terminal {
                return Err("all children are terminal but the node is not".into());
            }
        }
        Ok(())
    }

    /// Reads and validates a tree file.
    pub fn load(path: &Path) -> Result<Self, SearchError> {
        let bad = |message: String| SearchError::BadTree {
            path: path.to_owned(),
            message,
        };
        let text = fs::read_to_string(path).map_err(|source| SearchError::Io {
            path: path.to_owned(),
            source,
        })?;
        let tree: Tree =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a tree file: {e}")))?;
        tree.validate().map_err(|e| bad(e.to_string()))?;
        Ok(tree)
    }

    /// Writes the tree as JSON atomically (temporary file + rename), so a crash never leaves a
    /// half-written tree under the final name.
    pub fn save(&self, path: &Path) -> Result<(), SearchError> {
        let io = |source| SearchError::Io {
            path: path.to_owned(),
            source,
        };
        let json = serde_json::to_vec(self).map_err(|e| io(std::io::Error::other(e)))?;
        agentr_envs::atomic::write(path, &json).map_err(io)
    }
}
