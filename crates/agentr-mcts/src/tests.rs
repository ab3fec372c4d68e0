//! Property and failure-injection tests of the search on the toy environment.

use std::sync::atomic::AtomicUsize;

use agentr_envs::TaskId;
use proptest::prelude::{ProptestConfig, any, prop_assert, prop_assert_eq, proptest};

use crate::testing::{FailingPolicy, RandomPolicy, Toy};
use crate::{Restore, SearchConfig, SearchError, Tree, search};

fn config(iterations: usize, candidates: usize, depth_limit: usize, seed: u64) -> SearchConfig {
    SearchConfig {
        iterations,
        candidates,
        depth_limit,
        seed,
        ..SearchConfig::default()
    }
}

fn grow(toy: &mut Toy, vocabulary: u64, task: u64, config: &SearchConfig) -> Tree {
    search(toy, &RandomPolicy { vocabulary }, TaskId(task), config).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn trees_keep_every_invariant(
        branching in 1u8..5,
        extra_vocabulary in 0u64..3,
        max_len in 1usize..12,
        salt in any::<u64>(),
        iterations in 0usize..10,
        candidates in 1usize..6,
        depth_limit in 1usize..10,
        seed in any::<u64>(),
        task in 0u64..5,
        snapshots in any::<bool>(),
    ) {
        let config = config(iterations, candidates, depth_limit, seed);
        let mut toy = Toy::new(branching, max_len, salt, snapshots);
        let tree = grow(&mut toy, u64::from(branching) + extra_vocabulary, task, &config);
        prop_assert_eq!(tree.validate(), Ok(()));
        // Spelled out, the bookkeeping the validator enforces.
        for node in &tree.nodes {
            prop_assert!(node.value >= 0.0 && node.value <= f64::from(node.visits) + 1e-9);
            prop_assert!(node.depth <= depth_limit);
            let mut responses: Vec<&str> = node.children.iter().map(|&c| tree.nodes[c].response.as_str()).collect();
            responses.sort_unstable();
            let count = responses.len();
            responses.dedup();
            prop_assert_eq!(responses.len(), count);
            if node.done || node.disaster || node.depth == depth_limit {
                prop_assert!(node.terminal && node.children.is_empty());
            }
            if node.disaster {
                prop_assert_eq!(node.reward, 0.0);
            }
        }
        // Every pass backs up at least... nothing if it only meets open nodes; but the root's
        // visits never exceed the number of terminal leaves.
        prop_assert_eq!(tree.root().visits as usize, tree.leaves().len());
        // At most one expansion per level per pass.
        prop_assert!(tree.nodes.len() <= 1 + iterations * depth_limit * candidates);
    }

    #[test]
    fn same_seed_same_tree_and_snapshots_equal_replay(
        branching in 1u8..4,
        salt in any::<u64>(),
        seed in any::<u64>(),
        task in 0u64..5,
    ) {
        let config = config(6, 3, 6, seed);
        let with_snapshots = grow(&mut Toy::new(branching, 8, salt, true), 4, task, &config);
        let again = grow(&mut Toy::new(branching, 8, salt, true), 4, task, &config);
        prop_assert_eq!(&with_snapshots, &again);
        let replayed = grow(&mut Toy::new(branching, 8, salt, false), 4, task, &config);
        prop_assert_eq!(&with_snapshots, &replayed);
        let forced = SearchConfig { restore: Restore::Replay, ..config };
        let mut forced_tree = grow(&mut Toy::new(branching, 8, salt, true), 4, task, &forced);
        forced_tree.config.restore = Restore::Auto;
        prop_assert_eq!(&with_snapshots, &forced_tree);
    }

    #[test]
    fn json_round_trip(salt in any::<u64>(), seed in any::<u64>()) {
        let tree = grow(&mut Toy::new(3, 6, salt, true), 4, 1, &config(5, 3, 6, seed));
        let text = serde_json::to_string(&tree).unwrap();
        let back: Tree = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &tree);
        prop_assert_eq!(back.validate(), Ok(()));
    }
}

#[test]
fn search_stops_once_the_root_is_terminal() {
    // One action, one step to the end: the root's only child is terminal after pass one.
    let mut toy = Toy::new(1, 1, 7, true);
    let tree = grow(&mut toy, 1, 0, &config(8, 4, 5, 1));
    assert!(tree.root().terminal);
    assert_eq!(tree.nodes.len(), 2, "duplicates merge into one child");
    assert_eq!(tree.root().visits, 1);
}

#[test]
fn depth_limit_is_a_real_limit() {
    let mut toy = Toy::new(2, 1000, 3, true);
    // Salt chosen freely: the toy may still end early by its hash; the limit must hold.
    let tree = grow(&mut toy, 2, 0, &config(20, 2, 3, 9));
    let deepest = tree.nodes.iter().map(|n| n.depth).max().unwrap();
    assert!(deepest <= 3);
    assert!(
        tree.nodes
            .iter()
            .filter(|n| n.depth == 3)
            .all(|n| n.terminal)
    );
}

#[test]
fn observations_are_cleaned_only_when_asked() {
    let mut toy = Toy::new(2, 3, 1, true);
    let clean_config = SearchConfig {
        clean_observations: true,
        ..config(2, 2, 3, 0)
    };
    let cleaned = grow(&mut toy, 2, 0, &clean_config);
    assert_eq!(cleaned.root().observation, "start of task 0 ");
    assert!(cleaned.nodes.iter().all(|n| !n.observation.contains('\n')));
    // Raw is the default.
    let raw = grow(&mut toy, 2, 0, &config(2, 2, 3, 0));
    assert_eq!(raw.root().observation, "start\tof task 0\n");
    assert_eq!(raw.conversation(0)[2].content, "start\tof task 0\n");
}

#[test]
fn policy_errors_name_the_task_and_node() {
    let policy = FailingPolicy {
        inner: RandomPolicy { vocabulary: 3 },
        fail_on: 3,
        calls: AtomicUsize::new(0),
    };
    let mut toy = Toy::new(3, 50, 5, true);
    toy.end_one_in = 1_000_000;
    let err = search(&mut toy, &policy, TaskId(4), &config(8, 2, 20, 2)).unwrap_err();
    match &err {
        SearchError::Policy { task, node, .. } => {
            assert_eq!(*task, TaskId(4));
            assert_eq!(
                node.len(),
                2,
                "the third expansion is two levels down: {err}"
            );
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().starts_with("task 4, node root/"), "{err}");
}

#[test]
fn environment_errors_name_the_task_and_node() {
    let mut toy = Toy::new(3, 50, 5, false);
    toy.end_one_in = 1_000_000;
    toy.fail_at_step = Some(4);
    let err = search(
        &mut toy,
        &RandomPolicy { vocabulary: 3 },
        TaskId(2),
        &config(8, 2, 20, 2),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            SearchError::Env {
                task: TaskId(2),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn bad_config_is_rejected() {
    let mut toy = Toy::new(2, 3, 1, true);
    let bad = SearchConfig {
        candidates: 0,
        ..SearchConfig::default()
    };
    let err = search(&mut toy, &RandomPolicy { vocabulary: 2 }, TaskId(0), &bad).unwrap_err();
    assert!(err.to_string().contains("candidates"), "{err}");
}

#[test]
fn helpers_follow_the_tree() {
    let tree = grow(&mut Toy::new(3, 6, 11, true), 3, 0, &config(8, 3, 6, 4));
    let leaves = tree.leaves();
    assert!(!leaves.is_empty());
    for &leaf in &leaves {
        let path = tree.path_to_root(leaf);
        assert_eq!(path[0], 0);
        assert_eq!(*path.last().unwrap(), leaf);
        assert_eq!(path.len(), tree.nodes[leaf].depth + 1);
        assert_eq!(tree.actions(leaf).len(), tree.nodes[leaf].depth);
        assert_eq!(
            tree.conversation(leaf).len(),
            3 + 2 * tree.nodes[leaf].depth
        );
        assert_eq!(tree.child_positions(leaf).len(), tree.nodes[leaf].depth);
    }
    let best = tree.best_leaf().unwrap();
    let worst = tree.worst_leaf().unwrap();
    assert!(
        leaves
            .iter()
            .all(|&l| tree.leaf_reward(l) <= tree.leaf_reward(best))
    );
    assert!(
        leaves
            .iter()
            .all(|&l| tree.leaf_reward(l) >= tree.leaf_reward(worst))
    );
    assert_eq!(tree.has_success(), tree.leaf_reward(best) >= 1.0);
}

mod collection {
    use std::path::PathBuf;
    use std::sync::Mutex;

    use super::*;
    use crate::collect::{TaskOutcome, TaskReport, collect, tree_path};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("agentr-mcts-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn run(
        dir: &std::path::Path,
        workers: usize,
        policy: &dyn crate::Policy<Error = crate::testing::GaveUp>,
    ) -> Vec<(u64, String)> {
        run_with(dir, workers, &config(5, 3, 8, 77), policy).unwrap()
    }

    /// Collects tasks 0..9 of a toy game; each task's outcome as a word (`replaced` for a
    /// search that replaced an unreadable file).
    fn run_with(
        dir: &std::path::Path,
        workers: usize,
        config: &SearchConfig,
        policy: &dyn crate::Policy<Error = crate::testing::GaveUp>,
    ) -> Result<Vec<(u64, String)>, SearchError> {
        let tasks: Vec<TaskId> = (0..9).map(TaskId).collect();
        let reports = Mutex::new(Vec::new());
        let on_done = |report: TaskReport| {
            let label = match report.outcome {
                TaskOutcome::Skipped => "skipped".to_owned(),
                TaskOutcome::Searched { replaced: None, .. } => "searched".to_owned(),
                TaskOutcome::Searched {
                    replaced: Some(_), ..
                } => "replaced".to_owned(),
                TaskOutcome::Failed(err) => format!("failed: {err}"),
            };
            reports.lock().unwrap().push((report.task.0, label));
        };
        collect(
            &tasks,
            dir,
            workers,
            config,
            policy,
            || Ok(Box::new(Toy::new(3, 8, 5, true))),
            &on_done,
        )?;
        let mut reports = reports.into_inner().unwrap();
        reports.sort();
        Ok(reports)
    }

    /// A resumed run trusts only what checks out: a file that is not a valid tree is searched
    /// again (the same tree as before), and a valid tree of other settings or another policy
    /// stops the run before any search, naming the file and the difference.
    #[test]
    fn resuming_checks_the_trees_it_skips() {
        let dir = temp_dir("resume-checks");
        let policy = RandomPolicy { vocabulary: 4 };
        run(&dir, 2, &policy);
        let third = tree_path(&dir, TaskId(3));
        let original = std::fs::read(&third).unwrap();
        std::fs::write(&third, &original[..original.len() / 2]).unwrap();
        let reports = run(&dir, 2, &policy);
        let labels: Vec<&str> = reports.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels[3], "replaced", "{reports:?}");
        assert!(
            labels
                .iter()
                .enumerate()
                .all(|(i, l)| i == 3 || *l == "skipped")
        );
        assert_eq!(std::fs::read(&third).unwrap(), original);

        let deeper = config(6, 3, 8, 77);
        let err = run_with(&dir, 2, &deeper, &policy).unwrap_err();
        assert!(matches!(err, SearchError::OtherSettings { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("iterations: 5 in the file, 6 in this run"),
            "{message}"
        );
        assert!(
            message.contains(".json: made with other settings"),
            "{message}"
        );

        let named = crate::Named {
            name: "random:4".to_owned(),
            policy,
        };
        let err = run_with(&dir, 2, &config(5, 3, 8, 77), &named).unwrap_err();
        assert!(
            err.to_string()
                .contains("policy: (not described) in the file, random:4 in this run"),
            "{err}"
        );
        // Nothing was searched or written by the refused runs.
        assert_eq!(std::fs::read(&third).unwrap(), original);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn results_do_not_depend_on_the_number_of_workers_and_restarts_skip_done_tasks() {
        let policy = RandomPolicy { vocabulary: 4 };
        let (one, three) = (temp_dir("w1"), temp_dir("w3"));
        assert!(run(&one, 1, &policy).iter().all(|(_, l)| l == "searched"));
        assert!(run(&three, 3, &policy).iter().all(|(_, l)| l == "searched"));
        for task in 0..9 {
            let a = std::fs::read(tree_path(&one, TaskId(task))).unwrap();
            let b = std::fs::read(tree_path(&three, TaskId(task))).unwrap();
            assert_eq!(a, b, "task {task}");
            Tree::load(&tree_path(&one, TaskId(task))).unwrap();
        }
        // A second run finds every tree and searches nothing.
        assert!(run(&three, 2, &policy).iter().all(|(_, l)| l == "skipped"));
        // Only final files remain: no temporary files from the atomic writes.
        let names: Vec<String> = std::fs::read_dir(&three)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| n.ends_with(".json")), "{names:?}");
        std::fs::remove_dir_all(&one).unwrap();
        std::fs::remove_dir_all(&three).unwrap();
    }

    #[test]
    fn a_failing_task_does_not_touch_the_others() {
        let dir = temp_dir("failing");
        let clean = temp_dir("clean");
        let policy = FailingPolicy {
            inner: RandomPolicy { vocabulary: 4 },
            fail_on: 2,
            calls: AtomicUsize::new(0),
        };
        let reports = run(&dir, 1, &policy);
        let failed: Vec<u64> = reports
            .iter()
            .filter(|(_, l)| l.starts_with("failed"))
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(failed.len(), 1, "{reports:?}");
        assert!(!tree_path(&dir, TaskId(failed[0])).exists());
        run(&clean, 1, &RandomPolicy { vocabulary: 4 });
        for (task, label) in &reports {
            if label == "searched" {
                let a = std::fs::read(tree_path(&dir, TaskId(*task))).unwrap();
                let b = std::fs::read(tree_path(&clean, TaskId(*task))).unwrap();
                assert_eq!(a, b, "task {task} must be unaffected");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&clean).unwrap();
    }

    #[test]
    fn an_environment_that_cannot_start_is_an_error() {
        let dir = temp_dir("noenv");
        let err = collect(
            &[TaskId(0)],
            &dir,
            2,
            &SearchConfig::default(),
            &RandomPolicy { vocabulary: 2 },
            || {
                Err(SearchError::Env {
                    task: TaskId(0),
                    node: Vec::new(),
                    source: agentr_envs::EnvError::NotReset {
                        env: "no environment today",
                    },
                })
            },
            &|_| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("no environment today"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn loading_names_the_file_and_the_problem() {
        let dir = temp_dir("load");
        std::fs::create_dir_all(&dir).unwrap();
        let tree = grow(&mut Toy::new(3, 6, 2, true), 3, 0, &config(6, 3, 6, 1));
        let good = dir.join("good.json");
        tree.save(&good).unwrap();
        assert_eq!(Tree::load(&good).unwrap(), tree);

        let mut tampered = tree.clone();
        let leaf = tampered.leaves()[0];
        tampered.nodes[leaf].visits = 5;
        let mut duplicate = tree.clone();
        let root_children = duplicate.nodes[0].children.clone();
        if root_children.len() >= 2 {
            let response = duplicate.nodes[root_children[0]].response.clone();
            duplicate.nodes[root_children[1]].response = response;
        }
        let cases: Vec<(String, &str)> = vec![
            ("{not json".into(), "not a tree file"),
            (
                serde_json::to_string(&tampered).unwrap(),
                "are not the sums of its children's",
            ),
            (
                serde_json::to_string(&tree).unwrap().replacen(
                    "\"format\"",
                    "\"surprise\":1,\"format\"",
                    1,
                ),
                "unknown field `surprise`",
            ),
            (
                serde_json::to_string(&tree)
                    .unwrap()
                    .replacen("\"version\":1", "\"version\":9", 1),
                "version 9 is not supported",
            ),
        ];
        for (index, (text, needle)) in cases.iter().enumerate() {
            let path = dir.join(format!("bad{index}.json"));
            std::fs::write(&path, text).unwrap();
            let message = Tree::load(&path).unwrap_err().to_string();
            assert!(
                message.starts_with(&path.display().to_string()) && message.contains(needle),
                "{message}"
            );
        }
        if root_children.len() >= 2 {
            assert!(
                duplicate
                    .validate()
                    .unwrap_err()
                    .problem
                    .contains("repeat the response")
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
