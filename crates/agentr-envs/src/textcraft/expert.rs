//! A planner that plays TextCraft from the conversation alone: it reads the command list and
//! goal from the first observation, rebuilds the inventory from what the environment answered
//! so far, and answers with the next step of a fresh plan. Because it re-plans from the
//! current state every turn, it also continues sensibly after someone else's mistakes.

use std::collections::{HashMap, HashSet};

use crate::EnvError;
use crate::action::textcraft_action;
use crate::chat::{Message, Role};
use crate::expert::Expert;
use crate::rng::Rng;

use super::NAME;

/// The TextCraft expert. Stateless; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextCraftExpert;

/// A command line of the observation: `craft <count> <output> using <c> <in>, ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Items one craft produces.
    pub count: i64,
    /// The output's display name.
    pub output: String,
    /// `(count, display name)` of each ingredient, as listed.
    pub inputs: Vec<(i64, String)>,
}

/// What the first observation of a task says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    /// The command list in display order.
    pub commands: Vec<Command>,
    /// The goal's display name.
    pub goal: String,
}

impl TaskView {
    /// Reads `Crafting commands:\n...\n\nGoal: craft <goal>.`.
    pub fn parse(observation: &str) -> Result<Self, EnvError> {
        let unreadable = |message: &str| EnvError::UnreadableObservation {
            env: NAME,
            message: message.to_owned(),
        };
        let body = observation
            .split_once("Crafting commands:")
            .map(|(_, rest)| rest)
            .ok_or_else(|| unreadable("no `Crafting commands:` section"))?;
        let (listing, goal_part) = body
            .rsplit_once("Goal: craft ")
            .ok_or_else(|| unreadable("no `Goal: craft ...` line"))?;
        let goal = goal_part.trim().trim_end_matches('.').trim().to_owned();
        // One command per line, or all on one line when newlines were cleaned to spaces: item
        // names never contain the word `craft` followed by a space, so that word starts a
        // command either way.
        let flat = format!(" {}", listing.replace(['\n', '\t'], " "));
        let commands = flat
            .split(" craft ")
            .map(str::trim)
            .filter(|chunk| !chunk.is_empty())
            .map(|chunk| {
                let line = format!("craft {chunk}");
                parse_command(&line).ok_or_else(|| unreadable(&line))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TaskView { commands, goal })
    }
}

fn parse_command(line: &str) -> Option<Command> {
    let rest = line.strip_prefix("craft ")?;
    let (output, inputs) = rest.rsplit_once(" using ")?;
    let (count, output) = split_count(output)?;
    let inputs = inputs
        .split(',')
        .map(|chunk| split_count(chunk.trim()).map(|(c, name)| (c, name.to_owned())))
        .collect::<Option<Vec<_>>>()?;
    Some(Command {
        count,
        output: output.to_owned(),
        inputs,
    })
}

fn split_count(text: &str) -> Option<(i64, &str)> {
    let (count, name) = text.split_once(' ')?;
    Some((count.parse().ok()?, name.trim()))
}

/// Items are identified the way the environment does: spaces and underscores are the same.
fn key(name: &str) -> String {
    name.trim()
        .trim_start_matches("minecraft:")
        .replace(' ', "_")
}

/// What the conversation after the first observation says about the episode so far.
#[derive(Debug, Default)]
struct Progress {
    inventory: HashMap<String, i64>,
    /// `(output, ingredient)` pairs of crafts the environment rejected as matching no recipe:
    /// a kind that does not count as the generic ingredient it stood in for.
    rejected: HashSet<(String, String)>,
    /// Whether the latest action was such a rejected craft.
    just_rejected: bool,
}

fn read_progress(turns: &[Message]) -> Progress {
    let mut progress = Progress::default();
    let inventory = &mut progress.inventory;
    for pair in turns.windows(2) {
        let (response, observation) = (&pair[0], &pair[1]);
        if response.role != Role::Assistant || observation.role != Role::User {
            continue;
        }
        let observation = observation.content.as_str();
        progress.just_rejected = false;
        if let Some(rest) = observation.strip_prefix("Got ") {
            if let Some((count, name)) = split_count(rest) {
                let entry = inventory.entry(key(name)).or_default();
                *entry = entry.saturating_add(count);
            }
        } else if let Some(rest) = observation.strip_prefix("Crafted ") {
            let action = textcraft_action(&response.content);
            if let (Some((count, name)), Some(command)) =
                (split_count(rest), parse_command(&action))
            {
                for (used, input) in &command.inputs {
                    let entry = inventory.entry(key(input)).or_default();
                    *entry = entry.saturating_sub(*used);
                    if *entry == 0 {
                        inventory.remove(&key(input));
                    }
                }
                let entry = inventory.entry(key(name)).or_default();
                *entry = entry.saturating_add(count);
            }
        } else if let Some(listing) = observation.strip_prefix("Inventory: ") {
            *inventory = parse_inventory(listing);
        } else if observation.starts_with("Could not find a valid recipe for")
            && let Some(command) = parse_command(&textcraft_action(&response.content))
        {
            let output = key(&command.output);
            for (_, input) in &command.inputs {
                progress.rejected.insert((output.clone(), key(input)));
            }
            progress.just_rejected = true;
        }
    }
    progress
}

/// `[oak log] (1) [stick] (8) ` -> counts.
fn parse_inventory(listing: &str) -> HashMap<String, i64> {
    listing
        .split('[')
        .skip(1)
        .filter_map(|entry| {
            let (name, rest) = entry.split_once("] (")?;
            let (count, _) = rest.split_once(')')?;
            Some((key(name), count.trim().parse().ok()?))
        })
        .collect()
}

/// One planned action and why.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Planned {
    Get {
        amount: i64,
        item: String,
        purpose: String,
    },
    Craft {
        command: String,
        output: String,
        purpose: Option<String>,
    },
}

impl Planned {
    fn response(&self) -> String {
        match self {
            Planned::Get {
                amount,
                item,
                purpose,
            } => format!(
                "Thought: No command crafts {item}, so it is a base material. I need {amount} \
                 of it for {purpose}.\nAction: get {amount} {item}"
            ),
            Planned::Craft {
                command,
                output,
                purpose: Some(purpose),
            } => format!(
                "Thought: I have the ingredients for {output}, which I need for {purpose}.\n\
                 Action: {command}"
            ),
            Planned::Craft {
                command,
                output,
                purpose: None,
            } => format!(
                "Thought: I have everything the goal needs, so I craft {output}.\nAction: {command}"
            ),
        }
    }
}

/// Bounds that keep planning finite on any observation text.
const MAX_COUNT: i64 = 1_000_000;
const MAX_PLAN: usize = 10_000;
const MAX_DEPTH: usize = 64;

struct Planner<'a> {
    view: &'a TaskView,
    /// Output key -> indices of the commands that craft it.
    producers: HashMap<String, Vec<usize>>,
    inventory: HashMap<String, i64>,
    rejected: HashSet<(String, String)>,
    /// Items being crafted further up the current plan: choices below must not need them.
    path: HashSet<String>,
    plan: Vec<Planned>,
}

/// Crafts needed for `amount` items at `per_craft` each; `None` for counts outside
/// `1..=MAX_COUNT`.
fn batches(amount: i64, per_craft: i64) -> Option<i64> {
    let sane = |count: i64| (1..=MAX_COUNT).contains(&count);
    (sane(amount) && sane(per_craft))
        .then(|| amount / per_craft + i64::from(amount % per_craft != 0))
}

fn no_plan(message: String) -> EnvError {
    EnvError::NoPlan { env: NAME, message }
}

impl<'a> Planner<'a> {
    fn new(view: &'a TaskView, progress: Progress) -> Self {
        let mut producers: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, command) in view.commands.iter().enumerate() {
            producers
                .entry(key(&command.output))
                .or_default()
                .push(index);
        }
        Planner {
            view,
            producers,
            inventory: progress.inventory,
            rejected: progress.rejected,
            path: HashSet::new(),
            plan: Vec::new(),
        }
    }

    /// Kinds that can stand in for a generic ingredient of `user` (`oak planks` for
    /// `planks`): outputs named `<kind> <generic>` that the environment has not rejected for
    /// `user`. Empty for ordinary items. Whether a kind can be made at all is up to the caller.
    fn members(&self, generic: &str, user: &str) -> Vec<String> {
        let generic_key = key(generic);
        if self.producers.contains_key(&generic_key) {
            return Vec::new();
        }
        let suffix = format!("_{generic_key}");
        let user_key = key(user);
        let mut seen = HashSet::new();
        self.view
            .commands
            .iter()
            .map(|command| key(&command.output))
            .filter(|output| output.ends_with(&suffix) && seen.insert(output.clone()))
            .filter(|output| !self.rejected.contains(&(user_key.clone(), output.clone())))
            .collect()
    }

    /// The kinds of a generic ingredient with what it costs to make `amount` of each, given the
    /// items already on the path (the generic itself counts as on the path: a kind made from
    /// its own generic ingredient is no way out).
    fn member_costs(
        &self,
        generic: &str,
        amount: i64,
        user: &str,
        visiting: &mut HashSet<String>,
    ) -> Vec<(usize, String)> {
        let generic_key = key(generic);
        let members = self.members(generic, user);
        if members.is_empty() || !visiting.insert(generic_key.clone()) {
            return Vec::new();
        }
        let costs = members
            .into_iter()
            .filter_map(|member| Some((self.cost(&member, amount, visiting)?, member)))
            .collect();
        visiting.remove(&generic_key);
        costs
    }

    /// Number of actions to hold `amount` of `item` starting from nothing (a get counts
    /// 1 whatever the amount); `None` when making it needs an item on the current path.
    fn cost(&self, item: &str, amount: i64, visiting: &mut HashSet<String>) -> Option<usize> {
        let item_key = key(item);
        if visiting.contains(&item_key) {
            return None;
        }
        let commands = self.producers.get(&item_key)?;
        visiting.insert(item_key.clone());
        let best = commands
            .iter()
            .filter_map(|&index| self.command_cost(index, amount, visiting))
            .min();
        visiting.remove(&item_key);
        best
    }

    /// Cost of one ingredient: crafting it, the cheapest kind of a generic ingredient, or a get.
    /// Never `None` for an ingredient that is not crafted itself.
    fn ingredient_cost(
        &self,
        name: &str,
        amount: i64,
        user: &str,
        visiting: &mut HashSet<String>,
    ) -> Option<usize> {
        let name_key = key(name);
        if self.producers.contains_key(&name_key) {
            return self.cost(name, amount, visiting);
        }
        if visiting.contains(&name_key) {
            // A generic ingredient already being resolved further up: no way out through it.
            return None;
        }
        // A name that merely looks generic (`cobblestone` next to `mossy cobblestone`) but
        // has no kind that can be made without it is a base material.
        let cheapest_kind = self
            .member_costs(name, amount, user, visiting)
            .into_iter()
            .map(|(cost, _)| cost)
            .min();
        Some(cheapest_kind.unwrap_or(1))
    }

    fn command_cost(
        &self,
        index: usize,
        amount: i64,
        visiting: &mut HashSet<String>,
    ) -> Option<usize> {
        let command = &self.view.commands[index];
        let batches = batches(amount, command.count)?;
        let mut total = usize::try_from(batches).ok()?;
        for (count, input) in &command.inputs {
            let needed = count.checked_mul(batches)?;
            let cost = self.ingredient_cost(input, needed, &command.output, visiting)?;
            total = total.saturating_add(cost);
        }
        Some(total)
    }

    /// The cheapest command for `amount` of `item` (first listed among equals).
    fn best_command(&self, item: &str, amount: i64) -> Option<usize> {
        let item_key = key(item);
        let mut visiting = self.path.clone();
        visiting.insert(item_key.clone());
        self.producers
            .get(&item_key)?
            .iter()
            .filter_map(|&index| Some((self.command_cost(index, amount, &mut visiting)?, index)))
            .min()
            .map(|(_, index)| index)
    }

    /// The concrete item to write for an ingredient of `user`: itself, or for a generic one
    /// the kind already held in the largest sufficient amount, else the cheapest kind to make.
    fn concrete(&self, name: &str, needed: i64, user: &str) -> String {
        let held = |m: &String| self.inventory.get(m).copied().unwrap_or(0);
        let mut visiting = self.path.clone();
        visiting.insert(key(user));
        let members = self.member_costs(name, needed, user, &mut visiting);
        let choice = members
            .iter()
            .filter(|(_, m)| held(m) >= needed)
            .max_by_key(|(_, m)| held(m))
            .or_else(|| members.iter().min());
        match choice {
            Some((_, member)) => member.replace('_', " "),
            None => name.to_owned(),
        }
    }

    /// Plans to hold `amount` of `item` and reserves them for `purpose`.
    fn acquire(
        &mut self,
        item: &str,
        amount: i64,
        purpose: &str,
        depth: usize,
    ) -> Result<(), EnvError> {
        let item_key = key(item);
        let have = self.inventory.get(&item_key).copied().unwrap_or(0).max(0);
        if have >= amount {
            *self.inventory.entry(item_key).or_default() -= amount;
            return Ok(());
        }
        let missing = amount - have;
        self.inventory.insert(item_key.clone(), 0);
        if self.producers.contains_key(&item_key) {
            let made = self.craft(item, missing, Some(purpose), depth)?;
            *self.inventory.entry(item_key).or_default() += made - missing;
        } else {
            self.push(Planned::Get {
                amount: missing,
                item: item.to_owned(),
                purpose: purpose.to_owned(),
            })?;
        }
        Ok(())
    }

    fn push(&mut self, step: Planned) -> Result<(), EnvError> {
        if self.plan.len() >= MAX_PLAN {
            return Err(no_plan(format!("the plan exceeds {MAX_PLAN} actions")));
        }
        self.plan.push(step);
        Ok(())
    }

    /// Plans enough crafts of `item` to make at least `amount`; returns how many it makes.
    fn craft(
        &mut self,
        item: &str,
        amount: i64,
        purpose: Option<&str>,
        depth: usize,
    ) -> Result<i64, EnvError> {
        if depth > MAX_DEPTH {
            return Err(no_plan(format!("the recipe chain for {item} is too deep")));
        }
        let index = self
            .best_command(item, amount)
            .ok_or_else(|| no_plan(format!("no usable command crafts {item}")))?;
        let command = self.view.commands[index].clone();
        let batches = batches(amount, command.count)
            .filter(|_| {
                command
                    .inputs
                    .iter()
                    .all(|(c, _)| (1..=MAX_COUNT).contains(c))
            })
            .ok_or_else(|| {
                no_plan(format!(
                    "unusable counts in `craft {} {}`",
                    command.count, command.output
                ))
            })?;
        let mut written = Vec::with_capacity(command.inputs.len());
        let item_key = key(item);
        let newly_on_path = self.path.insert(item_key.clone());
        let mut acquired = Ok(());
        for (count, input) in &command.inputs {
            let concrete = self.concrete(input, count * batches, &command.output);
            acquired = self.acquire(&concrete, count * batches, item, depth + 1);
            if acquired.is_err() {
                break;
            }
            written.push(format!("{count} {concrete}"));
        }
        if newly_on_path {
            self.path.remove(&item_key);
        }
        acquired?;
        let line = format!(
            "craft {} {} using {}",
            command.count,
            command.output,
            written.join(", ")
        );
        for _ in 0..batches {
            self.push(Planned::Craft {
                command: line.clone(),
                output: command.output.clone(),
                purpose: purpose.map(str::to_owned),
            })?;
        }
        Ok(batches * command.count)
    }
}

impl TextCraftExpert {
    /// The whole remaining plan from the state the conversation describes, as responses.
    pub fn plan(&self, conversation: &[Message]) -> Result<Vec<String>, EnvError> {
        let view = task_view(conversation)?;
        let start = conversation
            .iter()
            .position(|m| m.role == Role::User && m.content.contains("Crafting commands:"))
            .unwrap_or_default();
        let progress = read_progress(&conversation[start..]);
        let just_rejected = progress.just_rejected;
        let mut planner = Planner::new(&view, progress);
        let goal = view.goal.clone();
        planner.craft(&goal, 1, None, 0)?;
        let mut responses: Vec<String> = planner.plan.iter().map(Planned::response).collect();
        if just_rejected && let Some(first) = responses.first_mut() {
            *first = first.replacen(
                "Thought: ",
                "Thought: That craft was rejected, so one of the kinds I used does not \
                     count for that recipe; I will use another kind. ",
                1,
            );
        }
        Ok(responses)
    }
}

impl Expert for TextCraftExpert {
    fn respond(&self, conversation: &[Message]) -> Result<String, EnvError> {
        self.plan(conversation)?
            .into_iter()
            .next()
            .ok_or_else(|| no_plan("empty plan".into()))
    }

    fn mistake(&self, conversation: &[Message], rng: &mut Rng) -> Result<String, EnvError> {
        let view = task_view(conversation)?;
        let outputs: Vec<&str> = view.commands.iter().map(|c| c.output.as_str()).collect();
        let ingredients: Vec<&str> = view
            .commands
            .iter()
            .flat_map(|c| c.inputs.iter().map(|(_, name)| name.as_str()))
            .collect();
        let next = self.respond(conversation).ok();
        let kinds = [
            !outputs.is_empty(),
            !view.commands.is_empty(),
            !ingredients.is_empty(),
            next.as_deref()
                .is_some_and(|r| r.bytes().any(|b| b.is_ascii_digit())),
            true,
        ];
        let available: Vec<usize> = (0..kinds.len()).filter(|&k| kinds[k]).collect();
        let response = match available[rng.index(available.len())] {
            // Taking an item that only a command can make.
            0 => {
                let item = outputs[rng.index(outputs.len())];
                format!("Thought: I need {item}, so I will get it.\nAction: get 1 {item}")
            }
            // Running some listed command, needed or not, without checking the ingredients.
            1 => {
                let command = &view.commands[rng.index(view.commands.len())];
                let inputs: Vec<String> = command
                    .inputs
                    .iter()
                    .map(|(count, name)| format!("{count} {name}"))
                    .collect();
                format!(
                    "Thought: This command looks useful, so I run it.\nAction: craft {} {} using {}",
                    command.count,
                    command.output,
                    inputs.join(", ")
                )
            }
            // Gathering an ingredient that may not be needed (or cannot be taken).
            2 => {
                let item = ingredients[rng.index(ingredients.len())];
                let amount = 1 + rng.below(4);
                format!("Thought: I should gather some {item} first.\nAction: get {amount} {item}")
            }
            // The right step with a wrong number in it.
            3 => miscount(next.as_deref().unwrap_or_default(), rng),
            _ => "Thought: Let me check what I am holding.\nAction: inventory".to_owned(),
        };
        Ok(response)
    }
}

/// The task view from the first TextCraft observation of a conversation.
fn task_view(conversation: &[Message]) -> Result<TaskView, EnvError> {
    conversation
        .iter()
        .find(|m| m.role == Role::User && m.content.contains("Crafting commands:"))
        .ok_or_else(|| EnvError::UnreadableObservation {
            env: NAME,
            message: "the conversation has no TextCraft task observation".into(),
        })
        .and_then(|m| TaskView::parse(&m.content))
}

/// Changes one number in the action part of `response` (never to the same value or to 0).
fn miscount(response: &str, rng: &mut Rng) -> String {
    let at = response.rfind("Action:").map_or(0, |i| i + "Action:".len());
    let (thought, action) = response.split_at(at);
    let words: Vec<&str> = action.split(' ').collect();
    let numbers: Vec<usize> = (0..words.len())
        .filter(|&i| words[i].parse::<u64>().is_ok())
        .collect();
    let Some(&pick) = numbers.get(rng.index(numbers.len())) else {
        return response.to_owned();
    };
    let old = words[pick].parse::<u64>().unwrap_or(1).min(1 << 40);
    let new = match rng.below(3) {
        0 if old > 1 => old - 1,
        1 => old * 2,
        _ => old + 1,
    };
    let changed: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i == pick {
                new.to_string()
            } else {
                (*w).to_owned()
            }
        })
        .collect();
    format!("{thought}{}", changed.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, proptest};

    #[test]
    fn parses_the_observation() {
        let view = TaskView::parse(
            "Crafting commands:\ncraft 4 oak planks using 1 oak logs\ncraft 1 crafting table using 4 planks\n\nGoal: craft crafting table.",
        )
        .unwrap();
        assert_eq!(view.goal, "crafting table");
        assert_eq!(
            view.commands[1],
            Command {
                count: 1,
                output: "crafting table".into(),
                inputs: vec![(4, "planks".into())]
            }
        );
    }

    #[test]
    fn parses_a_cleaned_observation_too() {
        let raw = "Crafting commands:\ncraft 4 oak planks using 1 oak logs\ncraft 1 crafting table using 4 planks\n\nGoal: craft crafting table.";
        let cleaned = crate::chat::clean_observation(raw);
        assert_eq!(
            TaskView::parse(&cleaned).unwrap(),
            TaskView::parse(raw).unwrap()
        );
    }

    #[test]
    fn inventory_listing_parses() {
        let inv = parse_inventory("[oak log] (1) [stick] (8) ");
        assert_eq!(inv.get("oak_log"), Some(&1));
        assert_eq!(inv.get("stick"), Some(&8));
        assert!(parse_inventory("You are not carrying anything.").is_empty());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(text in any::<String>()) {
            let _ = TaskView::parse(&text);
            let _ = parse_inventory(&text);
            let _ = parse_command(&text);
            let conversation = vec![
                Message::user("Crafting commands:\n".to_owned() + &text),
                Message::assistant(text.clone(), true),
                Message::user(text.clone()),
            ];
            let _ = TextCraftExpert.respond(&conversation);
            let _ = TextCraftExpert.mistake(&conversation, &mut Rng::new(3));
            let _ = miscount(&text, &mut Rng::new(5));
        }
    }
}
