//! Judge samples: teaching a model to judge steps from what search trees show.
//!
//! A model trained from scratch cannot follow a verifier prompt, so the actor also learns to
//! judge: for steps of searched branches, the verifier prompt of [`judge_prompt`] and an
//! answer whose label comes from the tree's statistics, never from a model:
//!
//! * **Bad**: the mean reward of the rollouts through the step is below beta while a sibling's
//!   is good (above alpha): another action at that point did reach the goal;
//! * **Good**: the mean reward through the step is good;
//! * **Uncertain**: anything else the search visited.
//!
//! The rationale before the label line is a template filled with what the prompt itself shows
//! (whether the environment rejected the action), so the model is not taught to cite rollouts
//! it cannot see. A step the environment rejected is taught **Bad** whatever its tree label,
//! as the verifier prompt's own rule says; the tree's label is kept in the sample's metadata.

use std::collections::BTreeMap;

use agentr_envs::rng::Rng;
use agentr_envs::{Message, RejectionRule, Sample};
use agentr_mcts::{NodeId, Tree};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::judge::{Judge, Label, judge_prompt};
use crate::pairs::Thresholds;
use crate::revise::step_request;
use crate::splice::sample;

/// Random stream of the choice of judged steps.
const JUDGE_STREAM: u64 = 4;

/// The label the tree gives step `id`, or `None` for the root and unvisited nodes.
pub fn tree_label(tree: &Tree, id: NodeId, thresholds: &Thresholds) -> Option<Label> {
    let node = &tree.nodes[id];
    let parent = node.parent?;
    if node.visits == 0 {
        return None;
    }
    let mean = node.mean_value();
    if thresholds.is_good(mean) {
        return Some(Label::Good);
    }
    let sibling_good = tree.nodes[parent].children.iter().any(|&s| {
        s != id && tree.nodes[s].visits > 0 && thresholds.is_good(tree.nodes[s].mean_value())
    });
    if mean < thresholds.beta && sibling_good {
        Some(Label::Bad)
    } else {
        Some(Label::Uncertain)
    }
}

/// The label a judge sample teaches for a step the tree labels `tree_label`: the verifier
/// prompt calls every step the environment rejected Bad, so a rejected step is taught Bad
/// whatever the rollouts through it did (a branch can still succeed after a wasted turn).
fn taught_label(tree_label: Label, rejected: bool) -> Label {
    if rejected { Label::Bad } else { tree_label }
}

/// The answer a judge should give for a step taught `label`; `rejected`: whether the
/// environment refused its action. The rationale says only what the prompt shows.
fn answer(label: Label, rejected: bool) -> String {
    let reasons = match (label, rejected) {
        (_, true) => {
            "The environment did not carry out this action, so the step wasted a turn. A \
             different action at this point would have made progress."
        }
        (Label::Bad, false) => {
            "The action was carried out, but it does not lead toward the goal; a different \
             action at this point would."
        }
        (Label::Good, false) => "The action was carried out and moves the agent toward the goal.",
        (Label::Uncertain, false) => {
            "The action was carried out; from here it is not clear whether it helps reach the \
             goal."
        }
    };
    let label = taught_label(label, rejected);
    format!("{reasons}\nJudgment: {}", label.as_str())
}

/// At most `per_label` steps of each taught label (bad, good, uncertain, in that order),
/// chosen at random among the visited steps, seeded by `seed` and the task.
fn labelled_steps(
    tree: &Tree,
    thresholds: &Thresholds,
    per_label: usize,
    seed: u64,
    rejection: RejectionRule,
) -> Vec<(NodeId, Label)> {
    let mut rng = Rng::from_parts(&[seed, tree.task.0, JUDGE_STREAM]);
    let taught: Vec<Option<Label>> = (0..tree.nodes.len())
        .map(|id| {
            let label = tree_label(tree, id, thresholds)?;
            let positions = tree.child_positions(id);
            Some(taught_label(
                label,
                step_request(tree, id, &positions, rejection).rejected,
            ))
        })
        .collect();
    let mut chosen = Vec::new();
    for wanted in [Label::Bad, Label::Good, Label::Uncertain] {
        let mut ids: Vec<NodeId> = (0..tree.nodes.len())
            .filter(|&id| taught[id] == Some(wanted))
            .collect();
        rng.shuffle(&mut ids);
        chosen.extend(ids.into_iter().take(per_label).map(|id| (id, wanted)));
    }
    chosen
}

/// How a judge's labels compare with the labels trees give the same steps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    /// Tree label -> the judge's label -> steps.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
    /// Answers without a label line (counted as uncertain in `confusion`).
    pub unparsed: usize,
}

impl Agreement {
    /// Adds another tree's counts.
    pub fn merge(&mut self, other: &Agreement) {
        for (truth, row) in &other.confusion {
            let mine = self.confusion.entry(truth.clone()).or_default();
            for (given, count) in row {
                *mine.entry(given.clone()).or_default() += count;
            }
        }
        self.unparsed += other.unparsed;
    }

    /// Steps with tree label `label`, and how many of them the judge labelled the same.
    pub fn of(&self, label: Label) -> (usize, usize) {
        let row = self.confusion.get(label.as_str());
        let total = row.map_or(0, |r| r.values().sum());
        let agreed = row.and_then(|r| r.get(label.as_str())).copied();
        (total, agreed.unwrap_or(0))
    }
}

/// Asks `judge` about at most `per_label` steps of each label of `tree` (the steps
/// [`judge_samples`] would teach with the same seed, so on trees the judge was not trained on
/// this measures what it learned) and counts how often it agrees with the label taught there:
/// the tree's, or Bad where the environment rejected the step.
pub fn judge_agreement<J: Judge + ?Sized>(
    tree: &Tree,
    thresholds: &Thresholds,
    per_label: usize,
    seed: u64,
    rejection: RejectionRule,
    judge: &J,
) -> Result<Agreement, J::Error> {
    let mut agreement = Agreement::default();
    for (id, truth) in labelled_steps(tree, thresholds, per_label, seed, rejection) {
        let positions = tree.child_positions(id);
        let verdict = judge.judge(&step_request(tree, id, &positions, rejection))?;
        agreement.unparsed += usize::from(!verdict.parsed);
        *agreement
            .confusion
            .entry(truth.as_str().to_owned())
            .or_default()
            .entry(verdict.label.as_str().to_owned())
            .or_default() += 1;
    }
    Ok(agreement)
}

/// At most `per_label` judge samples of each label from `tree`, chosen at random (seeded by
/// `seed` and the task) among the visited steps. Each is the verifier prompt without loss and
/// the templated answer with loss; `meta` records the label and the tree's evidence.
/// `rejection` is the trees' environment's rule for refused actions.
pub fn judge_samples(
    tree: &Tree,
    thresholds: &Thresholds,
    per_label: usize,
    seed: u64,
    rejection: RejectionRule,
) -> Vec<Sample> {
    labelled_steps(tree, thresholds, per_label, seed, rejection)
        .into_iter()
        .map(|(id, wanted)| {
            let positions = tree.child_positions(id);
            let request = step_request(tree, id, &positions, rejection);
            let node = &tree.nodes[id];
            let mut messages = judge_prompt(&request);
            messages.push(Message::assistant(answer(wanted, request.rejected), true));
            sample(
                tree,
                messages,
                json!({
                    "env": tree.env,
                    "task": tree.task,
                    "kind": "judge",
                    "label": wanted,
                    "tree_label": tree_label(tree, id, thresholds),
                    "node": positions,
                    "mean_reward": node.mean_value(),
                    "visits": node.visits,
                }),
            )
        })
        .collect()
}
