//! From one tree to its samples: pairs, transition points, splicing, statistics.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use agentr_envs::rng::Rng;
use agentr_envs::{RejectionRule, Sample};
use agentr_mcts::{NodeId, Tree};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ReviseError;
use crate::judge::{Judge, JudgeRequest, Judgement, Label, StepView};
use crate::pairs::{Thresholds, find_pairs, lowest_common_ancestor};
use crate::splice::{Signals, Splice, good_messages, revision_messages, sample};

/// How the transition point t' of a bad branch is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Model-guided (Agent-R): the first step the judge labels Bad; the whole bad branch when
    /// it labels none Bad.
    #[serde(rename = "agent-r")]
    AgentR,
    /// Direct revision (the baseline): t' is the end of the bad branch. The judge is not asked.
    #[serde(rename = "direct")]
    Direct,
    /// No revision samples at all: only the good trajectories (rejection-sampling fine-tuning,
    /// the paper's ablation). The judge is not asked.
    #[serde(rename = "good-only")]
    GoodOnly,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::AgentR => "agent-r",
            Mode::Direct => "direct",
            Mode::GoodOnly => "good-only",
        })
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "agent-r" => Ok(Mode::AgentR),
            "direct" => Ok(Mode::Direct),
            "good-only" => Ok(Mode::GoodOnly),
            other => Err(format!(
                "unknown mode `{other}` (expected agent-r, direct or good-only)"
            )),
        }
    }
}

/// Settings of the revision step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviseConfig {
    /// How t' is chosen.
    pub mode: Mode,
    /// Pairing thresholds (alpha, beta, condition).
    pub thresholds: Thresholds,
    /// Keep at most this many pairs per tree (after shuffling).
    pub max_pairs_per_tree: Option<usize>,
    /// Seed of the pair shuffle and of the choice of revision signal.
    pub seed: u64,
    /// Also emit the good trajectories (leaves above alpha) as samples.
    pub good_samples: bool,
}

/// Counts that describe a revision run; written next to the samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Trees read.
    pub trees: usize,
    /// Trees skipped because no leaf has any reward.
    pub trees_without_success: usize,
    /// Pairs used.
    pub pairs: usize,
    /// Pairs that qualified but were over the per-tree cap.
    pub pairs_dropped_by_cap: usize,
    /// Samples per kind (`revision`, `good`).
    pub samples: BTreeMap<String, usize>,
    /// Revision samples by the depth (actions from the root) of t'.
    pub t_prime_depth: BTreeMap<usize, usize>,
    /// Revision samples by how many bad steps they keep after the branches diverge.
    pub bad_steps_kept: BTreeMap<usize, usize>,
    /// Judge calls by label (cached verdicts are not counted again).
    pub judge_labels: BTreeMap<String, usize>,
    /// Judge answers without a readable label (counted as uncertain).
    pub judge_unparsed: usize,
    /// Agent-R pairs where the judge found no bad step, so t' fell back to the bad leaf.
    pub fallbacks_to_direct: usize,
}

impl Stats {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        self.trees += other.trees;
        self.trees_without_success += other.trees_without_success;
        self.pairs += other.pairs;
        self.pairs_dropped_by_cap += other.pairs_dropped_by_cap;
        self.judge_unparsed += other.judge_unparsed;
        self.fallbacks_to_direct += other.fallbacks_to_direct;
        let add = |into: &mut BTreeMap<String, usize>, from: &BTreeMap<String, usize>| {
            for (k, v) in from {
                *into.entry(k.clone()).or_default() += v;
            }
        };
        add(&mut self.samples, &other.samples);
        add(&mut self.judge_labels, &other.judge_labels);
        for (k, v) in &other.t_prime_depth {
            *self.t_prime_depth.entry(*k).or_default() += v;
        }
        for (k, v) in &other.bad_steps_kept {
            *self.bad_steps_kept.entry(*k).or_default() += v;
        }
    }
}

/// Random stream for the choice of revision signal (pairs use the plain (seed, task) stream).
const SIGNAL_STREAM: u64 = 3;

/// All samples of one tree, with their statistics.
///
/// Good samples come first (by leaf), then one revision sample per kept pair, in the shuffled
/// pair order. In [`Mode::AgentR`] each step of a bad branch is judged at most once per tree,
/// however many pairs share it. `rejection` is the tree's environment's rule for refused
/// actions (`agentr_envs::textcraft::is_rejection`, ...), which judges get as
/// [`JudgeRequest::rejected`].
pub fn revise_tree<J: Judge + ?Sized>(
    tree: &Tree,
    config: &ReviseConfig,
    signals: &Signals,
    rejection: RejectionRule,
    judge: &J,
) -> Result<(Vec<Sample>, Stats), ReviseError> {
    let mut stats = Stats {
        trees: 1,
        ..Stats::default()
    };
    let mut samples = Vec::new();
    if tree.root().value <= 0.0 {
        stats.trees_without_success = 1;
        return Ok((samples, stats));
    }
    let positions = |id: NodeId| tree.child_positions(id);
    if config.good_samples {
        for leaf in tree.leaves() {
            let reward = tree.leaf_reward(leaf);
            if config.thresholds.is_good(reward) {
                samples.push(sample(
                    tree,
                    good_messages(tree, leaf),
                    json!({
                        "env": tree.env,
                        "task": tree.task,
                        "kind": "good",
                        "reward": reward,
                        "steps": tree.nodes[leaf].depth,
                        "leaf": positions(leaf),
                    }),
                ));
                *stats.samples.entry("good".into()).or_default() += 1;
            }
        }
    }

    if config.mode == Mode::GoodOnly {
        return Ok((samples, stats));
    }
    let found = find_pairs(
        tree,
        &config.thresholds,
        config.seed,
        config.max_pairs_per_tree,
    );
    stats.pairs = found.pairs.len();
    stats.pairs_dropped_by_cap = found.dropped;
    let mut verdicts: HashMap<NodeId, Judgement> = HashMap::new();
    let mut signal_rng = Rng::from_parts(&[config.seed, tree.task.0, SIGNAL_STREAM]);
    for pair in found.pairs {
        let common = lowest_common_ancestor(tree, pair.good, pair.bad);
        let bad_path = tree.path_to_root(pair.bad);
        let continuation = &bad_path[tree.nodes[common].depth + 1..];
        let judged = match config.mode {
            Mode::Direct | Mode::GoodOnly => None,
            Mode::AgentR => first_bad_step(
                tree,
                continuation,
                judge,
                rejection,
                &mut verdicts,
                &mut stats,
            )?,
        };
        let t_prime = judged.unwrap_or(pair.bad);
        let fallback = config.mode == Mode::AgentR && judged.is_none();
        stats.fallbacks_to_direct += usize::from(fallback);
        let signal = signal_rng.index(signals.as_slice().len());
        let splice = Splice {
            good: pair.good,
            bad: pair.bad,
            t_prime,
        };
        let verdict = judged.and_then(|id| verdicts.get(&id));
        let t_prime_depth = tree.nodes[t_prime].depth;
        let bad_steps = t_prime_depth - tree.nodes[common].depth;
        samples.push(sample(
            tree,
            revision_messages(tree, splice, &signals.turn(signal)),
            json!({
                "env": tree.env,
                "task": tree.task,
                "kind": "revision",
                "mode": config.mode,
                "judge": (config.mode == Mode::AgentR).then(|| judge.name()),
                "t_prime": t_prime_depth,
                "t_prime_node": positions(t_prime),
                "divergence": tree.nodes[common].depth,
                "bad_steps": bad_steps,
                "r_good": tree.leaf_reward(pair.good),
                "r_bad": tree.leaf_reward(pair.bad),
                "judge_label": verdict.map(|v| v.label),
                "judge_rationale": verdict.map(|v| v.rationale.clone()),
                "fallback": fallback,
                "signal": signal,
                "good_leaf": positions(pair.good),
                "bad_leaf": positions(pair.bad),
            }),
        ));
        *stats.samples.entry("revision".into()).or_default() += 1;
        *stats.t_prime_depth.entry(t_prime_depth).or_default() += 1;
        *stats.bad_steps_kept.entry(bad_steps).or_default() += 1;
    }
    Ok((samples, stats))
}

/// The judge's view of step `id` of `tree` (`positions` are its child positions); `rejection`
/// is the environment's rule for refused actions.
pub(crate) fn step_request<'a>(
    tree: &'a Tree,
    id: NodeId,
    positions: &'a [usize],
    rejection: RejectionRule,
) -> JudgeRequest<'a> {
    let path = tree.path_to_root(id);
    let view = |n: NodeId| {
        let node = &tree.nodes[n];
        StepView {
            response: &node.response,
            action: &node.action,
            observation: &node.observation,
        }
    };
    let history: Vec<StepView<'a>> = path[1..path.len() - 1].iter().map(|&n| view(n)).collect();
    let step = view(id);
    let previous = history
        .last()
        .map_or(tree.root().observation.as_str(), |s| s.observation);
    JudgeRequest {
        env: &tree.env,
        task: tree.task,
        node: positions,
        task_description: &tree.root().observation,
        rejected: rejection(previous, step.observation),
        history,
        step,
    }
}

/// The first step of `continuation` the judge labels Bad, judging each node at most once.
fn first_bad_step<J: Judge + ?Sized>(
    tree: &Tree,
    continuation: &[NodeId],
    judge: &J,
    rejection: RejectionRule,
    verdicts: &mut HashMap<NodeId, Judgement>,
    stats: &mut Stats,
) -> Result<Option<NodeId>, ReviseError> {
    for &id in continuation {
        if let Entry::Vacant(slot) = verdicts.entry(id) {
            let node_positions = tree.child_positions(id);
            let request = step_request(tree, id, &node_positions, rejection);
            let verdict = judge.judge(&request).map_err(|source| ReviseError::Judge {
                task: tree.task,
                node: node_positions.clone(),
                source: Box::new(source),
            })?;
            *stats
                .judge_labels
                .entry(verdict.label.as_str().into())
                .or_default() += 1;
            stats.judge_unparsed += usize::from(!verdict.parsed);
            slot.insert(verdict);
        }
        if verdicts.get(&id).is_some_and(|v| v.label == Label::Bad) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}
