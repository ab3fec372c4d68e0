//! Property tests of pairing and splicing over random trees.

use std::collections::HashSet;

use agentr_envs::{Role, Sample};
use agentr_mcts::{NodeId, Tree};
use proptest::prelude::{ProptestConfig, any, prop_assert, prop_assert_eq, proptest};

use crate::judge::Label;
use crate::pairs::lowest_common_ancestor;
use crate::testing::{SeededJudge, is_rejection, random_tree};
use crate::{
    Mode, PairCondition, ReviseConfig, Signals, Thresholds, judge_agreement, judge_samples,
    parse_judgement, revise_tree, tree_label,
};

fn node_at(tree: &Tree, positions: &[usize]) -> NodeId {
    positions
        .iter()
        .fold(0, |node, &p| tree.nodes[node].children[p])
}

fn positions(value: &serde_json::Value) -> Vec<usize> {
    value
        .as_array()
        .expect("positions")
        .iter()
        .map(|v| v.as_u64().expect("position") as usize)
        .collect()
}

fn config(mode: Mode, alpha: f64, condition: PairCondition, seed: u64) -> ReviseConfig {
    ReviseConfig {
        mode,
        thresholds: Thresholds {
            alpha,
            beta: 0.2,
            condition,
        },
        max_pairs_per_tree: None,
        seed,
        good_samples: true,
    }
}

/// Checks one revision sample against the tree it came from.
fn check_revision(
    tree: &Tree,
    sample: &Sample,
    mode: Mode,
    judge: &SeededJudge,
) -> Result<(), String> {
    let meta = &sample.meta;
    let good = node_at(tree, &positions(&meta["good_leaf"]));
    let bad = node_at(tree, &positions(&meta["bad_leaf"]));
    let t_prime = node_at(tree, &positions(&meta["t_prime_node"]));
    let common = lowest_common_ancestor(tree, good, bad);
    let messages = &sample.messages;
    let ensure = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_owned()) };

    ensure(
        meta["r_good"].as_f64() == Some(tree.leaf_reward(good)),
        "r_good",
    )?;
    ensure(
        meta["r_bad"].as_f64() == Some(tree.leaf_reward(bad)),
        "r_bad",
    )?;
    let bad_path = tree.path_to_root(bad);
    ensure(bad_path.contains(&t_prime), "t' lies on the bad branch")?;
    ensure(
        tree.nodes[t_prime].depth > tree.nodes[common].depth,
        "t' after the divergence",
    )?;
    match mode {
        Mode::Direct => ensure(t_prime == bad, "direct mode puts t' at the bad leaf")?,
        Mode::GoodOnly => return Err("good-only mode made a revision sample".into()),
        Mode::AgentR => {
            let continuation = &bad_path[tree.nodes[common].depth + 1..];
            let first_bad = continuation
                .iter()
                .copied()
                .find(|&n| judge.label(&tree.child_positions(n)) == Label::Bad);
            ensure(
                t_prime == first_bad.unwrap_or(bad),
                "t' is the first step judged bad",
            )?;
            ensure(
                meta["fallback"].as_bool() == Some(first_bad.is_none()),
                "fallback flag",
            )?;
        }
    }

    // Instruction, Ok., first observation.
    ensure(messages.len() >= 5, "length")?;
    ensure(
        messages[1].loss == Some(false) && messages[2].content == tree.root().observation,
        "opening",
    )?;
    let revision_turns: Vec<usize> = (0..messages.len())
        .filter(|&i| {
            messages[i].role == Role::Assistant && messages[i].content.ends_with("\nAction: wait")
        })
        .collect();
    ensure(revision_turns.len() == 1, "exactly one revision turn")?;
    let k = revision_turns[0];
    ensure(messages[k].loss == Some(true), "loss on the revision turn")?;
    ensure(
        messages[k + 1].role == Role::User && messages[k + 1].content == "ok.",
        "ok. after it",
    )?;

    // Before the revision turn: the path root..=t', no loss.
    let before = tree.path_to_root(t_prime);
    ensure(k == 3 + 2 * (before.len() - 1), "prefix length")?;
    for (step, &node) in before[1..].iter().enumerate() {
        let (response, observation) = (&messages[3 + 2 * step], &messages[4 + 2 * step]);
        ensure(
            response.content == tree.nodes[node].response && response.loss == Some(false),
            "prefix response",
        )?;
        ensure(
            observation.content == tree.nodes[node].observation,
            "prefix observation",
        )?;
    }
    // After it: the good path below the common ancestor, with loss.
    let good_path = tree.path_to_root(good);
    let suffix = &good_path[tree.nodes[common].depth + 1..];
    ensure(messages.len() == k + 2 + 2 * suffix.len(), "suffix length")?;
    ensure(
        tree.nodes[suffix[0]].parent == Some(common),
        "suffix starts at a child of the LCA",
    )?;
    for (step, &node) in suffix.iter().enumerate() {
        let response = &messages[k + 2 + 2 * step];
        ensure(
            response.content == tree.nodes[node].response && response.loss == Some(true),
            "suffix response",
        )?;
    }
    let bad_nodes: HashSet<NodeId> = before[tree.nodes[common].depth + 1..]
        .iter()
        .copied()
        .collect();
    ensure(
        suffix.iter().all(|n| !bad_nodes.contains(n)),
        "no bad step reappears after the revision",
    )?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn revision_samples_are_spliced_exactly(
        seed in any::<u64>(),
        depth_limit in 1usize..7,
        branching in 1u64..4,
        alpha_pick in 0usize..3,
        gap in any::<bool>(),
        mode_pick in 0usize..3,
        cap in proptest::option::of(0usize..4),
    ) {
        let tree = random_tree(seed, depth_limit, branching);
        prop_assert_eq!(tree.validate(), Ok(()));
        let mode = [Mode::AgentR, Mode::Direct, Mode::GoodOnly][mode_pick];
        let condition = if gap { PairCondition::Gap } else { PairCondition::Paper };
        let mut config = config(mode, [0.5, 0.7, 1.0][alpha_pick], condition, seed);
        config.max_pairs_per_tree = cap;
        let judge = SeededJudge::new(seed);
        let (samples, stats) = revise_tree(
            &tree,
            &config,
            &Signals::default(),
            is_rejection,
            &judge,
        ).unwrap();

        let mut revisions = 0;
        for sample in &samples {
            match sample.meta["kind"].as_str() {
                Some("revision") => {
                    revisions += 1;
                    if let Err(what) = check_revision(&tree, sample, mode, &judge) {
                        prop_assert!(false, "{}: {}", what, serde_json::to_string(sample).unwrap());
                    }
                }
                Some("good") => {
                    let leaf = node_at(&tree, &positions(&sample.meta["leaf"]));
                    prop_assert!(config.thresholds.is_good(tree.leaf_reward(leaf)));
                    prop_assert!(sample.messages[3..].iter().filter(|m| m.role == Role::Assistant).all(|m| m.loss == Some(true)));
                }
                other => prop_assert!(false, "unknown kind {:?}", other),
            }
            let text = serde_json::to_string(sample).unwrap();
            let back: Sample = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, sample);
        }
        prop_assert_eq!(revisions, stats.pairs);
        if let Some(cap) = cap {
            prop_assert!(stats.pairs <= cap);
        }
        // Every qualifying pair is either used or counted as dropped.
        let leaves = tree.leaves();
        let qualifying = if tree.root().value <= 0.0 { 0 } else {
            leaves.iter().flat_map(|&g| leaves.iter().map(move |&b| (g, b)))
                .filter(|&(g, b)| g != b && config.thresholds.pairs(tree.leaf_reward(g), tree.leaf_reward(b)))
                .count()
        };
        if mode == Mode::GoodOnly {
            prop_assert_eq!(stats.pairs + stats.pairs_dropped_by_cap, 0);
        } else {
            prop_assert_eq!(stats.pairs + stats.pairs_dropped_by_cap, qualifying);
        }
        // Each step is judged at most once per tree; only agent-r mode asks.
        let calls = judge.calls();
        let distinct: HashSet<&Vec<usize>> = calls.iter().collect();
        prop_assert_eq!(distinct.len(), calls.len());
        if mode != Mode::AgentR {
            prop_assert!(calls.is_empty());
        }
    }

    /// Judge samples carry the label the tree's statistics give, parse back to it, respect
    /// the per-label cap, train only the answer, and depend only on the seed; the judge's
    /// agreement is measured on the same steps.
    #[test]
    fn judge_samples_follow_the_tree(
        seed in any::<u64>(),
        depth_limit in 1usize..6,
        branching in 1u64..4,
        per_label in 0usize..4,
    ) {
        let tree = random_tree(seed, depth_limit, branching);
        let thresholds = Thresholds { alpha: 0.5, beta: 0.2, condition: PairCondition::Paper };
        let samples = judge_samples(&tree, &thresholds, per_label, seed, is_rejection);
        prop_assert_eq!(&samples, &judge_samples(&tree, &thresholds, per_label, seed, is_rejection));
        let mut per = std::collections::HashMap::new();
        for sample in &samples {
            let id = node_at(&tree, &positions(&sample.meta["node"]));
            let label = tree_label(&tree, id, &thresholds).unwrap();
            let mean = tree.nodes[id].mean_value();
            let parent = tree.nodes[id].parent.unwrap();
            let sibling_good = tree.nodes[parent].children.iter().any(|&s| {
                s != id && tree.nodes[s].visits > 0 && tree.nodes[s].mean_value() > 0.5
            });
            let expected = if mean > 0.5 {
                Label::Good
            } else if mean < 0.2 && sibling_good {
                Label::Bad
            } else {
                Label::Uncertain
            };
            prop_assert_eq!(label, expected);
            prop_assert_eq!(&sample.meta["tree_label"], &serde_json::json!(label));
            // The prompt calls a rejected step Bad, and the answer never says otherwise.
            let rejected = tree.nodes[id].observation.starts_with("Could not");
            let label = if rejected { Label::Bad } else { label };
            prop_assert_eq!(&sample.meta["label"], &serde_json::json!(label));
            let answer = sample.messages.last().unwrap();
            prop_assert_eq!(
                answer.content.contains("did not carry out"),
                rejected,
                "{}", &answer.content
            );
            prop_assert_eq!(answer.content.contains("was carried out"), !rejected);
            prop_assert_eq!(answer.role, Role::Assistant);
            prop_assert_eq!(answer.loss, Some(true));
            prop_assert!(sample.messages[..sample.messages.len() - 1].iter().all(|m| m.loss != Some(true)));
            let parsed = parse_judgement(&answer.content);
            prop_assert!(parsed.parsed);
            prop_assert_eq!(parsed.label, label);
            *per.entry(label).or_insert(0usize) += 1;
        }
        prop_assert!(per.values().all(|&n| n <= per_label));
        // Every label the tree offers is used up to the cap.
        for label in [Label::Bad, Label::Good, Label::Uncertain] {
            let available = (0..tree.nodes.len())
                .filter(|&id| {
                    let rejected = tree.nodes[id].observation.starts_with("Could not");
                    tree_label(&tree, id, &thresholds)
                        .map(|l| if rejected { Label::Bad } else { l })
                        == Some(label)
                })
                .count();
            prop_assert_eq!(per.get(&label).copied().unwrap_or(0), available.min(per_label));
        }
        // The agreement asks the judge about exactly these steps, once each, and counts its
        // labels against the tree's.
        let judge = SeededJudge::new(seed);
        let agreement = judge_agreement(
            &tree,
            &thresholds,
            per_label,
            seed,
            is_rejection,
            &judge,
        ).unwrap();
        let taught: Vec<(Vec<usize>, Label)> = samples
            .iter()
            .map(|s| (positions(&s.meta["node"]), serde_json::from_value(s.meta["label"].clone()).unwrap()))
            .collect();
        let calls = judge.calls();
        prop_assert_eq!(calls, taught.iter().map(|(node, _)| node.clone()).collect::<Vec<_>>());
        for label in [Label::Bad, Label::Good, Label::Uncertain] {
            let steps: Vec<&Vec<usize>> = taught.iter().filter(|(_, l)| *l == label).map(|(n, _)| n).collect();
            let agreed = steps.iter().filter(|node| judge.label(node) == label).count();
            prop_assert_eq!(agreement.of(label), (steps.len(), agreed));
        }
        prop_assert_eq!(agreement.unparsed, 0);
        let mut twice = agreement.clone();
        twice.merge(&agreement);
        prop_assert_eq!(twice.of(Label::Bad).0, 2 * agreement.of(Label::Bad).0);
    }

    #[test]
    fn the_same_seed_gives_the_same_samples(seed in any::<u64>()) {
        let tree = random_tree(seed, 5, 3);
        let config = config(Mode::AgentR, 0.5, PairCondition::Paper, 11);
        let run = || {
            let judge = SeededJudge::new(3);
            revise_tree(
            &tree,
            &config,
            &Signals::default(),
            is_rejection,
            &judge,
        ).unwrap().0
        };
        prop_assert_eq!(run(), run());
    }
}

#[test]
fn random_trees_exercise_the_splicer() {
    // Guards the generator above: most random trees must yield revision samples, or the
    // properties would hold vacuously.
    let config = config(Mode::AgentR, 0.5, PairCondition::Paper, 0);
    let productive = (0..200u64)
        .filter(|&seed| {
            let judge = SeededJudge::new(seed);
            let (_, stats) = revise_tree(
                &random_tree(seed, 5, 3),
                &config,
                &Signals::default(),
                is_rejection,
                &judge,
            )
            .unwrap();
            stats.pairs > 0 && stats.judge_labels.contains_key("bad")
        })
        .count();
    assert!(
        productive >= 80,
        "only {productive}/200 random trees gave judged revision samples"
    );
}

#[test]
fn random_trees_give_every_judge_label() {
    // Guards the generator for `judge_samples_follow_the_tree`: all three labels must occur,
    // and rejected steps on branches that succeed.
    let thresholds = Thresholds {
        alpha: 0.5,
        beta: 0.2,
        condition: PairCondition::Paper,
    };
    let mut seen = HashSet::new();
    let mut rejected_on_good_branches = 0;
    for seed in 0..200u64 {
        for sample in judge_samples(&random_tree(seed, 5, 3), &thresholds, 2, seed, is_rejection) {
            seen.insert(sample.meta["label"].as_str().unwrap().to_owned());
            // Regression (issue 22): a rejected step whose branch went on to succeed was
            // taught `Judgment: good`; it is taught Bad.
            if sample.meta["tree_label"] == "good" {
                rejected_on_good_branches += usize::from(sample.meta["label"] == "bad");
            }
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(rejected_on_good_branches > 0);
}
