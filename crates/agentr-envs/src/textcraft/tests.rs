//! Unit tests on a small hand-written recipe set that exercises every loading rule.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::chat::{Message, conversation_start};
use crate::expert::Expert;

/// (file name, JSON). Loaded in this order, which is also file-name order.
const FIXTURE: &[(&str, &str)] = &[
    // Shapeless with a tag input whose members have no recipe: `oak_logs` becomes an item.
    (
        "birch_planks.json",
        r#"{"type":"minecraft:crafting_shapeless","group":"planks","ingredients":[{"tag":"minecraft:birch_logs"}],"result":{"item":"minecraft:birch_planks","count":4}}"#,
    ),
    // Shaped with a repeated tag key, group different from the output (a real tag).
    (
        "bowl.json",
        r####"{"type":"minecraft:crafting_shaped","pattern":["# #"," # "],"key":{"#":{"tag":"minecraft:planks"}},"result":{"item":"minecraft:bowl","count":4}}"####,
    ),
    // Shapeless with repeats that merge into one ingredient.
    (
        "book.json",
        r#"{"type":"minecraft:crafting_shapeless","ingredients":[{"item":"minecraft:paper"},{"item":"minecraft:paper"},{"item":"minecraft:leather"},{"item":"minecraft:paper"}],"result":{"item":"minecraft:book"}}"#,
    ),
    // Missing count means 1.
    (
        "crafting_table.json",
        r####"{"type":"minecraft:crafting_shaped","pattern":["##","##"],"key":{"#":{"tag":"minecraft:planks"}},"result":{"item":"minecraft:crafting_table"}}"####,
    ),
    // A list-valued key: the first alternative is used.
    (
        "furnace.json",
        r####"{"type":"minecraft:crafting_shaped","pattern":["###","# #","###"],"key":{"#":[{"item":"minecraft:cobblestone"},{"item":"minecraft:blackstone"}]},"result":{"item":"minecraft:furnace"}}"####,
    ),
    // A non-crafting recipe type is ignored entirely.
    (
        "glass.json",
        r#"{"type":"minecraft:smelting","ingredient":{"item":"minecraft:sand"},"result":"minecraft:glass"}"#,
    ),
    (
        "iron_block.json",
        r####"{"type":"minecraft:crafting_shaped","pattern":["###","###","###"],"key":{"#":{"item":"minecraft:iron_ingot"}},"result":{"item":"minecraft:iron_block"}}"####,
    ),
    // A single `_block` input: dropped, so iron ingots stay gettable.
    (
        "iron_ingot_from_iron_block.json",
        r#"{"type":"minecraft:crafting_shapeless","ingredients":[{"item":"minecraft:iron_block"}],"result":{"item":"minecraft:iron_ingot","count":9}}"#,
    ),
    (
        "iron_nugget.json",
        r#"{"type":"minecraft:crafting_shapeless","ingredients":[{"item":"minecraft:iron_ingot"}],"result":{"item":"minecraft:iron_nugget","count":9}}"#,
    ),
    (
        "mushroom_stew.json",
        r#"{"type":"minecraft:crafting_shapeless","ingredients":[{"item":"minecraft:brown_mushroom"},{"item":"minecraft:red_mushroom"},{"item":"minecraft:bowl"}],"result":{"item":"minecraft:mushroom_stew"}}"#,
    ),
    (
        "oak_planks.json",
        r#"{"type":"minecraft:crafting_shapeless","group":"planks","ingredients":[{"tag":"minecraft:oak_logs"}],"result":{"item":"minecraft:oak_planks","count":4}}"#,
    ),
    (
        "stick.json",
        r####"{"type":"minecraft:crafting_shaped","group":"sticks","pattern":["#","#"],"key":{"#":{"tag":"minecraft:planks"}},"result":{"item":"minecraft:stick","count":4}}"####,
    ),
    (
        "white_bed.json",
        r####"{"type":"minecraft:crafting_shaped","group":"bed","pattern":["###","XXX"],"key":{"#":{"tag":"minecraft:wool"},"X":{"tag":"minecraft:planks"}},"result":{"item":"minecraft:white_bed"}}"####,
    ),
    (
        "white_wool.json",
        r####"{"type":"minecraft:crafting_shaped","group":"wool","pattern":["##","##"],"key":{"#":{"item":"minecraft:string"}},"result":{"item":"minecraft:white_wool"}}"####,
    ),
    // Cycle guard: iron_nugget already depends on iron_ingot, so ingot-from-nuggets is dropped.
    (
        "zz_iron_ingot_from_nuggets.json",
        r####"{"type":"minecraft:crafting_shaped","pattern":["###","###","###"],"key":{"#":{"item":"minecraft:iron_nugget"}},"result":{"item":"minecraft:iron_ingot"}}"####,
    ),
];

fn book() -> Arc<RecipeBook> {
    Arc::new(
        RecipeBook::from_sources(FIXTURE.iter().map(|(name, text)| (Path::new(*name), *text)))
            .unwrap(),
    )
}

fn env() -> TextCraft {
    TextCraft::new(book())
}

/// A TextCraft environment over the hand-written fixture, for other modules' tests.
pub(crate) fn fixture_env() -> TextCraft {
    env()
}

fn name(book: &RecipeBook, id: &str) -> NameId {
    book.lookup(&format!("minecraft:{id}"))
        .unwrap_or_else(|| panic!("{id} is not interned"))
}

/// Resets to the task whose goal is `goal`.
fn reset_to(env: &mut TextCraft, goal: &str) -> String {
    let book = Arc::clone(env.book());
    let target = name(&book, goal);
    let task = book
        .goals()
        .iter()
        .position(|(item, _)| *item == target)
        .unwrap_or_else(|| panic!("{goal} is not a goal"));
    env.reset(TaskId(task as u64)).unwrap()
}

fn observe(env: &mut TextCraft, action: &str) -> String {
    env.step(action).unwrap().observation
}

#[test]
fn loading_rules() {
    let book = book();
    let tags: Vec<&str> = ["planks", "sticks", "wool", "bed"].to_vec();
    for tag in &tags {
        assert!(book.is_tag(name(&book, tag)), "{tag} should be a tag");
    }
    assert_eq!(book.tag_count(), tags.len());
    // Tags without craftable members became items; the smelting output never appears.
    for item in [
        "oak_logs",
        "birch_logs",
        "iron_ingot",
        "paper",
        "cobblestone",
    ] {
        let id = name(&book, item);
        assert!(book.is_item(id) && !book.is_tag(id), "{item}");
    }
    assert!(book.lookup("minecraft:glass").is_none());
    assert!(book.lookup("minecraft:blackstone").is_none());
    // 12 craftable outputs; 21 item ids in all.
    assert_eq!(book.goals().len(), 12);
    assert_eq!(book.item_count(), 21);
    // The block rule and the cycle guard leave iron ingots without a recipe.
    assert!(!book.is_craftable(name(&book, "iron_ingot")));
    assert!(book.is_craftable(name(&book, "iron_nugget")));
}

#[test]
fn ingredient_counts_and_command_lines() {
    let book = book();
    let line = |item: &str| {
        book.command(book.item_recipes(name(&book, item))[0])
            .to_owned()
    };
    assert_eq!(line("book"), "craft 1 book using 3 paper, 1 leather");
    assert_eq!(line("bowl"), "craft 4 bowl using 3 planks");
    assert_eq!(line("furnace"), "craft 1 furnace using 8 cobblestone");
    assert_eq!(
        line("white_bed"),
        "craft 1 white bed using 3 wool, 3 planks"
    );
    assert_eq!(line("oak_planks"), "craft 4 oak planks using 1 oak logs");
}

#[test]
fn goals_are_sorted_by_depth_stably() {
    let book = book();
    let goals: Vec<(String, u32)> = book
        .goals()
        .iter()
        .map(|(item, depth)| (book.display(*item), *depth))
        .collect();
    let expected = [
        ("birch planks", 1),
        ("book", 1),
        ("furnace", 1),
        ("iron block", 1),
        ("iron nugget", 1),
        ("oak planks", 1),
        ("white wool", 1),
        ("bowl", 2),
        ("crafting table", 2),
        ("stick", 2),
        ("white bed", 2),
        ("mushroom stew", 3),
    ];
    let expected: Vec<(String, u32)> = expected.iter().map(|(n, d)| (n.to_string(), *d)).collect();
    assert_eq!(goals, expected);
}

#[test]
fn command_list_holds_the_recipe_tree_and_is_a_pure_function() {
    let book = book();
    let stew = TaskId(11);
    let commands = book.task_commands(stew, 42);
    assert_eq!(book.display(commands.goal), "mushroom stew");
    for needed in [
        "craft 1 mushroom stew using 1 brown mushroom, 1 red mushroom, 1 bowl",
        "craft 4 bowl using 3 planks",
        "craft 4 oak planks using 1 oak logs",
        "craft 4 birch planks using 1 birch logs",
    ] {
        assert!(commands.commands.iter().any(|c| c == needed), "{needed}");
    }
    // Distractors share an ingredient with the tree (planks here) and are not in it.
    assert!(
        commands
            .commands
            .iter()
            .any(|c| c == "craft 4 stick using 2 planks")
    );
    assert!(!commands.commands.iter().any(|c| c.contains("furnace")));
    let mut sorted = commands.commands.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), commands.commands.len(), "no repeated lines");
    assert_eq!(book.task_commands(stew, 42), commands);
    // Same goal under task id + 12, but its own shuffle.
    assert_eq!(book.task_commands(TaskId(23), 42).goal, commands.goal);
    let orders: std::collections::HashSet<Vec<String>> = (0..8)
        .map(|seed| book.task_commands(stew, seed).commands)
        .collect();
    assert!(orders.len() > 1, "the seed changes the order");
}

#[test]
fn first_observation_layout() {
    let mut env = env();
    let first = reset_to(&mut env, "furnace");
    let (head, goal) = first.split_once("\n\n").unwrap();
    assert!(head.starts_with("Crafting commands:\ncraft "));
    assert_eq!(goal, "Goal: craft furnace.");
}

#[test]
fn every_observation_string() {
    let mut env = env();
    reset_to(&mut env, "stick");
    let cases = [
        ("inventory", "Inventory: You are not carrying anything."),
        (
            "inventory please",
            "Inventory: You are not carrying anything.",
        ),
        ("get 2 oak logs", "Got 2 oak logs"),
        ("get 007 oak_logs", "Got 7 oak_logs"),
        ("inventory", "Inventory: [oak logs] (9) "),
        ("get 1 stick", "Could not find stick"),
        ("get 1 planks", "Could not find planks"),
        ("get 1 diamond", "Could not find diamond"),
        ("get 1 glass", "Could not find glass"),
        ("get x oak logs", "Could not execute get x oak logs"),
        ("get 1", "Could not execute get 1"),
        ("dance", "Could not execute dance"),
        ("craft 4 stick", "Could not execute craft 4 stick"),
        (
            "craft 4 stick using two planks",
            "Wrong item format: two planks",
        ),
        ("craft 4 stick using 2 planks,", "Wrong item format: "),
        (
            "craft 4 stick using 2 planks",
            "Could not find enough items to craft minecraft:stick",
        ),
        (
            "craft 4 oak planks using 1 oak logs",
            "Crafted 4 minecraft:oak_planks",
        ),
        (
            "craft 4 stick using 3 oak planks",
            "Could not find a valid recipe for minecraft:stick",
        ),
        (
            "craft 4 planks using 1 oak logs",
            "Could not find a valid recipe for minecraft:planks",
        ),
        (
            "craft 4 planks using 9 oak logs",
            "Could not find enough items to craft None",
        ),
        (
            "craft 99 oak planks using 1 oak logs, 1 oak planks",
            "Could not find a valid recipe for minecraft:oak_planks",
        ),
        ("inventory", "Inventory: [oak logs] (8) [oak planks] (4) "),
    ];
    for (action, expected) in cases {
        let step = env.step(action).unwrap();
        assert_eq!(step.observation, expected, "action {action:?}");
        assert!(!step.done && step.reward == 0.0, "{action}");
    }
    // The count written for the output is ignored; the recipe's own count is added.
    let step = env.step("craft 1 stick using 2 oak planks").unwrap();
    assert_eq!(step.observation, "Crafted 4 minecraft:stick");
    assert!(step.done);
    assert_eq!(step.reward, 1.0);
    assert_eq!(
        observe(&mut env, "inventory"),
        "Inventory: [oak logs] (8) [oak planks] (2) [stick] (4) "
    );
}

#[test]
fn exhausted_items_leave_the_inventory_and_zero_gets_stay() {
    let mut env = env();
    reset_to(&mut env, "crafting_table");
    assert_eq!(observe(&mut env, "get 0 string"), "Got 0 string");
    assert_eq!(observe(&mut env, "get 1 birch logs"), "Got 1 birch logs");
    observe(&mut env, "craft 4 birch planks using 1 birch logs");
    assert_eq!(
        observe(&mut env, "inventory"),
        "Inventory: [string] (0) [birch planks] (4) "
    );
    let step = env
        .step("craft 1 crafting table using 4 birch planks")
        .unwrap();
    assert!(step.done);
    assert_eq!(
        observe(&mut env, "inventory"),
        "Inventory: [string] (0) [crafting table] (1) "
    );
}

#[test]
fn actions_read_only_the_first_line_and_clamp_huge_counts() {
    let mut env = env();
    reset_to(&mut env, "book");
    assert_eq!(observe(&mut env, "get 3 paper\nget 9 paper"), "Got 3 paper");
    assert_eq!(
        observe(&mut env, "get 99999999999999999999999 leather"),
        format!("Got {} leather", i64::MAX)
    );
    let step = env
        .step("craft 1 book using 3 paper, 1 leather\nextra")
        .unwrap();
    assert!(step.done);
    assert_eq!(
        observe(&mut env, "inventory\nfoo"),
        format!("Inventory: [leather] ({}) [book] (1) ", i64::MAX - 1)
    );
}

#[test]
fn step_before_reset_is_an_error() {
    let mut env = env();
    assert!(matches!(
        env.step("inventory"),
        Err(EnvError::NotReset { env: "textcraft" })
    ));
}

#[test]
fn snapshot_restores_the_episode_state() {
    let mut env = env();
    reset_to(&mut env, "bowl");
    observe(&mut env, "get 1 oak logs");
    let snapshot = env.snapshot().unwrap();
    observe(&mut env, "craft 4 oak planks using 1 oak logs");
    env.restore(&snapshot).unwrap();
    assert_eq!(observe(&mut env, "inventory"), "Inventory: [oak logs] (1) ");
    let foreign = crate::Snapshot::new("sciworld", 0u8);
    assert!(env.restore(&foreign).is_err());
}

/// Plays every goal of `env`'s book with the expert and asserts it reaches each one; `world`
/// names the book in failures.
fn assert_expert_solves_every_goal(env: &mut TextCraft, world: &str) {
    let goals = env.book().goals().len() as u64;
    for task in 0..goals {
        let episode = crate::episode::rollout::<EnvError, _>(
            env,
            TaskId(task),
            crate::episode::RolloutOptions::default(),
            |conversation| TextCraftExpert.respond(conversation),
        )
        .unwrap();
        assert_eq!(
            episode.reward, 1.0,
            "{world}, task {task}: {:#?}",
            episode.messages
        );
    }
}

#[test]
fn expert_solves_every_fixture_goal() {
    assert_expert_solves_every_goal(&mut env(), "fixture");
}

#[test]
fn shuffled_words_rename_the_world_but_keep_its_recipes() {
    let original = book();
    let mut renamed_any = false;
    for seed in 0..8 {
        let renamed = original.with_shuffled_words(seed);
        assert_eq!(renamed.goals(), original.goals(), "seed {seed}");
        assert_eq!(renamed.recipes(), original.recipes(), "seed {seed}");
        let mut ids = HashSet::new();
        for (k, _) in original.goals() {
            assert!(
                ids.insert(renamed.id(*k).to_owned()),
                "seed {seed}: two goals share a name"
            );
            assert_eq!(renamed.lookup(renamed.id(*k)), Some(*k));
            renamed_any |= renamed.id(*k) != original.id(*k);
        }
        // A generic ingredient and its kinds still share their last word.
        let planks = name(&original, "planks");
        let oak = name(&original, "oak_planks");
        let kind_suffix = format!(" {}", renamed.display(planks));
        assert!(renamed.display(oak).ends_with(&kind_suffix), "seed {seed}");
        for index in 0..renamed.recipes().len() {
            let line = renamed.command(index);
            assert!(line.contains(&renamed.display(renamed.recipe(index).output)));
        }
        assert_expert_solves_every_goal(
            &mut TextCraft::new(Arc::new(renamed)),
            &format!("renamed world {seed}"),
        );
    }
    assert!(renamed_any, "no seed renamed anything");
}

#[test]
fn expert_recovers_after_a_mistake() {
    let mut env = env();
    let first = reset_to(&mut env, "white_bed");
    let mut conversation = conversation_start(INSTRUCTION, &first);
    // A wrong move: planks of the wrong kind, then carry on with the expert.
    for response in [
        "Action: get 2 birch logs",
        "Action: craft 4 birch planks using 1 birch logs",
    ] {
        let step = env.step(&env.extract_action(response)).unwrap();
        conversation.push(Message::assistant(response, true));
        conversation.push(Message::user(step.observation));
    }
    for _ in 0..30 {
        let response = TextCraftExpert.respond(&conversation).unwrap();
        let step = env.step(&env.extract_action(&response)).unwrap();
        conversation.push(Message::assistant(response, true));
        conversation.push(Message::user(step.observation));
        if step.done {
            return;
        }
    }
    panic!("no success: {conversation:#?}");
}

#[test]
fn bad_files_name_the_file() {
    let cases = [
        ("{", "invalid JSON"),
        (r#"{"result":"x"}"#, "missing string field `type`"),
        (
            r#"{"type":"minecraft:crafting_shapeless","ingredients":[{"nope":1}],"result":"minecraft:x"}"#,
            "neither an item nor a tag",
        ),
        (
            r#"{"type":"minecraft:crafting_shapeless","ingredients":[],"result":"minecraft:x"}"#,
            "without ingredients",
        ),
        (
            r#"{"type":"minecraft:crafting_shaped","key":{},"result":"minecraft:x"}"#,
            "pattern",
        ),
    ];
    for (text, needle) in cases {
        let err = RecipeBook::from_sources([(Path::new("broken.json"), text)]).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("broken.json: ") && message.contains(needle),
            "{message}"
        );
    }
    let err = RecipeBook::from_sources([(
        Path::new("smelt.json"),
        r#"{"type":"minecraft:smelting","result":"minecraft:x"}"#,
    )])
    .unwrap_err();
    assert!(err.to_string().contains("no crafting recipe"), "{err}");
}

#[test]
fn missing_directory_says_how_to_get_the_recipes() {
    let err = TextCraft::from_dir(Path::new("/nonexistent/recipes")).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("agentr setup") && message.contains("--recipes"),
        "{message}"
    );
}

#[test]
fn splits_partition_the_goals() {
    let env = TextCraft::new(book());
    assert_eq!(env.task_ids(crate::Split::All).len(), 12);
    assert_eq!(TextCraft::test_ids().len(), 100);
    assert_eq!(TextCraft::test_ids()[0], TaskId(0));
}
