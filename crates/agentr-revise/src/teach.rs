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
//! it cannot see.

use agentr_envs::metrics::is_rejection;
use agentr_envs::rng::Rng;
use agentr_envs::{Message, Sample};
use agentr_mcts::{NodeId, Tree};
use serde_json::json;

use crate::judge::{Label, judge_prompt};
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

/// The answer a judge should give for a step labelled `label` whose result was `observation`.
fn answer(env: &str, label: Label, observation: &str) -> String {
    let rejected = is_rejection(env, observation);
    let reasons = match (label, rejected) {
        (Label::Bad, true) => {
            "The environment did not carry out this action, so the step wasted a turn. A \
             different action at this point would have made progress."
        }
        (Label::Bad, false) => {
            "The action was carried out, but it does not lead toward the goal; a different \
             action at this point would."
        }
        (Label::Good, _) => "The action was carried out and moves the agent toward the goal.",
        (Label::Uncertain, true) => {
            "The environment did not carry out this action, but it is not clear that another \
             action would have done better here."
        }
        (Label::Uncertain, false) => {
            "The action was carried out; from here it is not clear whether it helps reach the \
             goal."
        }
    };
    format!("{reasons}\nJudgment: {}", label.as_str())
}

/// At most `per_label` judge samples of each label from `tree`, chosen at random (seeded by
/// `seed` and the task) among the visited steps. Each is the verifier prompt without loss and
/// the templated answer with loss; `meta` records the label and the tree's evidence.
pub fn judge_samples(
    tree: &Tree,
    thresholds: &Thresholds,
    per_label: usize,
    seed: u64,
) -> Vec<Sample> {
    let mut rng = Rng::from_parts(&[seed, tree.task.0, JUDGE_STREAM]);
    let mut samples = Vec::new();
    for wanted in [Label::Bad, Label::Good, Label::Uncertain] {
        let mut ids: Vec<NodeId> = (0..tree.nodes.len())
            .filter(|&id| tree_label(tree, id, thresholds) == Some(wanted))
            .collect();
        rng.shuffle(&mut ids);
        for id in ids.into_iter().take(per_label) {
            let positions = tree.child_positions(id);
            let request = step_request(tree, id, &positions);
            let node = &tree.nodes[id];
            let mut messages = judge_prompt(&request);
            messages.push(Message::assistant(
                answer(&tree.env, wanted, &node.observation),
                true,
            ));
            samples.push(sample(
                messages,
                json!({
                    "env": tree.env,
                    "task": tree.task,
                    "kind": "judge",
                    "label": wanted,
                    "node": positions,
                    "mean_reward": node.mean_value(),
                    "visits": node.visits,
                }),
            ));
        }
    }
    samples
}
