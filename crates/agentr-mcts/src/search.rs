//! The search loop of Agent-R's phase I.

use std::collections::HashMap;

use agentr_envs::chat::clean_observation;
use agentr_envs::rng::Rng;
use agentr_envs::{EnvError, Environment, Snapshot, TaskId};

use crate::tree::{Node, NodeId, Tree};
use crate::{Policy, Restore, SampleRequest, SearchConfig, SearchError};

/// Separate random streams derived from (seed, task): UCT tie-breaks, and the policy's seeds.
const TIE_BREAK_STREAM: u64 = 1;
const POLICY_STREAM: u64 = 2;

/// Grows the search tree of `task`.
///
/// Each of `config.iterations` passes starts at the root and descends: a node without
/// children is expanded with one batched `policy.sample` call (identical responses become one
/// child), then the pass moves to the child with the highest UCT score
/// `Q + c * sqrt(ln N(parent) / N(child))`, where unvisited children score +infinity, ties
/// break at random from the seeded generator and terminal children are skipped. A child is
/// terminal when the environment is done, at the depth limit, or on a disaster (reward 0);
/// terminal children are backed up when created. A node whose children are all terminal is
/// terminal, and the search ends early once the root is.
///
/// The result depends only on the policy, the environment, `task` and `config` (its seed
/// included), not on how node states are restored or on other tasks.
pub fn search<P: Policy + ?Sized>(
    env: &mut dyn Environment,
    policy: &P,
    task: TaskId,
    config: &SearchConfig,
) -> Result<Tree, SearchError> {
    config.validate()?;
    let mut search = Search::new(env, task, config)?;
    search.tree.policy = policy.describe();
    let mut rng = Rng::from_parts(&[config.seed, task.0, TIE_BREAK_STREAM]);
    for _ in 0..config.iterations {
        if search.tree.nodes[0].terminal {
            break;
        }
        search.pass(policy, &mut rng)?;
    }
    Ok(search.tree)
}

struct Search<'e> {
    env: &'e mut dyn Environment,
    tree: Tree,
    /// Snapshots of open nodes, when the environment supports them and the config allows.
    snapshots: HashMap<NodeId, Snapshot>,
    use_snapshots: bool,
    expansions: u64,
}

impl<'e> Search<'e> {
    fn new(
        env: &'e mut dyn Environment,
        task: TaskId,
        config: &SearchConfig,
    ) -> Result<Self, SearchError> {
        let first = env.reset(task).map_err(|source| SearchError::Env {
            task,
            node: Vec::new(),
            source,
        })?;
        let first = if config.clean_observations {
            clean_observation(&first)
        } else {
            first
        };
        let tree = Tree::new(env.name(), task, env.instruction(), first, config.clone());
        let mut snapshots = HashMap::new();
        let use_snapshots = config.restore == Restore::Auto
            && match env.snapshot() {
                Some(root) => {
                    snapshots.insert(0, root);
                    true
                }
                None => false,
            };
        Ok(Search {
            env,
            tree,
            snapshots,
            use_snapshots,
            expansions: 0,
        })
    }

    fn env_error(&self, node: NodeId, source: EnvError) -> SearchError {
        SearchError::Env {
            task: self.tree.task,
            node: self.tree.child_positions(node),
            source,
        }
    }

    /// One descent from the root.
    fn pass<P: Policy + ?Sized>(&mut self, policy: &P, rng: &mut Rng) -> Result<(), SearchError> {
        let mut node = 0;
        loop {
            if self.tree.nodes[node].children.is_empty() {
                self.expand(node, policy)?;
            }
            match self.select(node, rng) {
                Some(child) => node = child,
                None => {
                    self.mark_terminal_upwards(node);
                    return Ok(());
                }
            }
        }
    }

    /// The non-terminal child with the best UCT score; `None` when all are terminal.
    fn select(&self, node: NodeId, rng: &mut Rng) -> Option<NodeId> {
        let parent_visits = f64::from(self.tree.nodes[node].visits);
        let c = self.tree.config.uct_c;
        let mut best: Vec<NodeId> = Vec::new();
        let mut best_score = f64::NEG_INFINITY;
        for &child in &self.tree.nodes[node].children {
            let child_node = &self.tree.nodes[child];
            if child_node.terminal {
                continue;
            }
            let score = if child_node.visits == 0 {
                f64::INFINITY
            } else {
                let visits = f64::from(child_node.visits);
                // ln(N(parent)) is 0 for a parent visited once, never negative.
                child_node.mean_value() + c * (parent_visits.max(1.0).ln() / visits).sqrt()
            };
            if score > best_score {
                best_score = score;
                best.clear();
                best.push(child);
            } else if score == best_score {
                best.push(child);
            }
        }
        match best.len() {
            0 => None,
            1 => Some(best[0]),
            n => Some(best[rng.index(n)]),
        }
    }

    /// Puts the environment into `node`'s state.
    fn restore(&mut self, node: NodeId) -> Result<(), SearchError> {
        if let Some(snapshot) = self.snapshots.get(&node) {
            return self
                .env
                .restore(snapshot)
                .map_err(|e| self.env_error(node, e));
        }
        let actions = self.tree.actions(node);
        self.env
            .replay(self.tree.task, &actions)
            .map(|_| ())
            .map_err(|e| self.env_error(node, e))
    }

    fn expand<P: Policy + ?Sized>(&mut self, node: NodeId, policy: &P) -> Result<(), SearchError> {
        let config = &self.tree.config;
        let conversation = self.tree.conversation(node);
        let request = SampleRequest {
            conversation: &conversation,
            n: config.candidates,
            temperature: config.temperature,
            seed: Rng::from_parts(&[
                config.seed,
                self.tree.task.0,
                POLICY_STREAM,
                self.expansions,
            ])
            .next_u64(),
        };
        self.expansions += 1;
        let responses = policy
            .sample(&request)
            .map_err(|source| SearchError::Policy {
                task: self.tree.task,
                node: self.tree.child_positions(node),
                source: Box::new(source),
            })?;
        let mut unique: Vec<String> = Vec::with_capacity(responses.len());
        for response in responses {
            if !unique.contains(&response) {
                unique.push(response);
            }
        }
        if unique.is_empty() {
            return Err(SearchError::Policy {
                task: self.tree.task,
                node: self.tree.child_positions(node),
                source: "the policy returned no responses".into(),
            });
        }
        for response in unique {
            self.add_child(node, response)?;
        }
        if self.tree.nodes[node]
            .children
            .iter()
            .all(|&c| self.tree.nodes[c].terminal)
        {
            self.mark_terminal_upwards(node);
        }
        Ok(())
    }

    fn add_child(&mut self, parent: NodeId, response: String) -> Result<(), SearchError> {
        self.restore(parent)?;
        let action = self.env.extract_action(&response);
        let step = self
            .env
            .step(&action)
            .map_err(|e| self.env_error(parent, e))?;
        let id = self.tree.nodes.len();
        let depth = self.tree.nodes[parent].depth + 1;
        let disaster = step.disaster;
        let reward = if disaster {
            0.0
        } else {
            step.reward.clamp(0.0, 1.0)
        };
        let done = step.done || disaster;
        let terminal = done || depth >= self.tree.config.depth_limit;
        let observation = if self.tree.config.clean_observations {
            clean_observation(&step.observation)
        } else {
            step.observation
        };
        self.tree.nodes.push(Node {
            parent: Some(parent),
            children: Vec::new(),
            response,
            action,
            observation,
            reward,
            visits: 0,
            value: 0.0,
            depth,
            terminal,
            done: step.done,
            disaster,
        });
        self.tree.nodes[parent].children.push(id);
        if terminal {
            self.backup(id, reward);
        } else if self.use_snapshots
            && let Some(snapshot) = self.env.snapshot()
        {
            self.snapshots.insert(id, snapshot);
        }
        Ok(())
    }

    /// Adds one visit worth `reward` to `node` and every ancestor.
    fn backup(&mut self, node: NodeId, reward: f64) {
        let mut current = Some(node);
        while let Some(id) = current {
            let n = &mut self.tree.nodes[id];
            n.visits += 1;
            n.value += reward;
            current = n.parent;
        }
    }

    /// Marks `node` terminal, then each ancestor whose children have all become terminal.
    fn mark_terminal_upwards(&mut self, node: NodeId) {
        let mut current = Some(node);
        while let Some(id) = current {
            let all_children_terminal = self.tree.nodes[id]
                .children
                .iter()
                .all(|&c| self.tree.nodes[c].terminal);
            if !all_children_terminal {
                break;
            }
            self.tree.nodes[id].terminal = true;
            self.snapshots.remove(&id);
            current = self.tree.nodes[id].parent;
        }
    }
}
