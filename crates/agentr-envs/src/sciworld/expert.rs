//! The gold-path expert: the simulator's own solution of each game, replayed.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use crate::EnvError;
use crate::action::after_last_action;
use crate::chat::{Message, REVISION_ACK, Role};
use crate::expert::Expert;
use crate::rng::Rng;

use super::NAME;

/// Gold action sequences by the first observation of their game, and the task ids whose
/// gold path is known, filled by the environments at reset while an expert exists. The first
/// observation is how an expert, which only sees the conversation, knows the game: the task
/// description and the starting room tell the variations apart.
#[derive(Default)]
struct GoldBook {
    by_first_observation: HashMap<String, Vec<String>>,
    tasks: HashSet<u64>,
}

fn gold_book() -> std::sync::MutexGuard<'static, GoldBook> {
    static BOOK: OnceLock<Mutex<GoldBook>> = OnceLock::new();
    BOOK.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// A first observation's key: its words, sorted. Conversations whose observations were
/// cleaned (newlines and tabs to spaces) and loads that list the room's objects in another
/// order still find their game.
fn book_key(first_observation: &str) -> String {
    let mut words: Vec<&str> = first_observation
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    words.sort_unstable();
    words.join(" ")
}

pub(super) fn record_gold(task: u64, first_observation: &str, gold: Vec<String>) {
    let mut book = gold_book();
    book.tasks.insert(task);
    book.by_first_observation
        .insert(book_key(first_observation), gold);
}

/// Whether `task`'s gold path is already known (its game need not generate it again).
pub(super) fn knows_gold(task: u64) -> bool {
    gold_book().tasks.contains(&task)
}

/// Plays the simulator's gold action sequence of the game.
///
/// Creating one makes every [`super::SciWorld`] of the process load games with their gold
/// path from then on (slower loads), and the expert can answer for any game reset after
/// that. It follows the gold sequence through the episode's actions so far, skipping actions
/// that are not the next gold action (a mistake that changed nothing, such as an invalid
/// action, does not derail it; one that changed the world may make the rest fail, which is
/// what a search tree should see).
#[derive(Debug, Clone, Copy)]
pub struct SciWorldExpert;

impl SciWorldExpert {
    /// The expert; see the type's documentation for what creating it switches on.
    pub fn new() -> Self {
        super::record_gold_paths();
        SciWorldExpert
    }

    /// The game's gold sequence and how many of its actions the episode has taken.
    fn progress(conversation: &[Message]) -> Result<(Vec<String>, usize), EnvError> {
        let no_plan = |message: &str| EnvError::NoPlan {
            env: NAME,
            message: message.to_owned(),
        };
        let first = conversation
            .get(2)
            .filter(|m| m.role == Role::User)
            .ok_or_else(|| no_plan("the conversation has no first observation"))?;
        let gold = gold_book()
            .by_first_observation
            .get(&book_key(&first.content))
            .cloned()
            .ok_or_else(|| {
                no_plan(
                    "no gold path was recorded for this game (it must be reset after the expert is created)",
                )
            })?;
        let mut next = 0;
        for (index, message) in conversation.iter().enumerate().skip(3) {
            if message.role != Role::Assistant {
                continue;
            }
            let revision = conversation
                .get(index + 1)
                .is_some_and(|reply| reply.content == REVISION_ACK);
            if revision {
                continue;
            }
            let action = after_last_action(&message.content).trim();
            if gold.get(next).is_some_and(|g| g == action) {
                next += 1;
            }
        }
        Ok((gold, next))
    }
}

impl Default for SciWorldExpert {
    fn default() -> Self {
        SciWorldExpert::new()
    }
}

fn response(thought: &str, action: &str) -> String {
    format!("Thought: {thought}\nAction: {action}")
}

impl Expert for SciWorldExpert {
    fn respond(&self, conversation: &[Message]) -> Result<String, EnvError> {
        let (gold, next) = Self::progress(conversation)?;
        let Some(action) = gold.get(next) else {
            // Earlier mistakes changed the world so that the whole gold path did not finish
            // the task; the expert knows nothing better than to look again.
            return Ok(response(
                "I have taken every step I planned, yet the task is not done. Let me look again.",
                "look around",
            ));
        };
        let thought = if action.chars().all(|c| c.is_ascii_digit()) {
            "The simulator asks which action I meant; this is the number of the right one."
                .to_owned()
        } else if next == 0 {
            format!("To start on the task, I should {action}.")
        } else {
            format!("The next step towards the task is to {action}.")
        };
        Ok(response(&thought, action))
    }

    fn mistake(&self, conversation: &[Message], rng: &mut Rng) -> Result<String, EnvError> {
        let (gold, next) = Self::progress(conversation)?;
        let upcoming = gold.get(next);
        let others: Vec<&String> = gold
            .iter()
            .enumerate()
            .filter(|&(i, a)| i != next && Some(a) != upcoming)
            .map(|(_, a)| a)
            .collect();
        let truncatable = upcoming.filter(|a| a.split_whitespace().count() >= 3);
        let mut kinds = vec![0];
        if !others.is_empty() {
            kinds.push(1);
        }
        if truncatable.is_some() {
            kinds.push(2);
        }
        Ok(match (kinds[rng.index(kinds.len())], truncatable) {
            // Some step of the solution, out of order.
            (1, _) => {
                let action = others[rng.index(others.len())];
                response(&format!("I think I should {action} now."), action)
            }
            // The right verb with the object cut short: unknown or ambiguous to the parser.
            (2, Some(action)) => {
                let mut words: Vec<&str> = action.split_whitespace().collect();
                words.pop();
                let action = words.join(" ");
                response(&format!("I will {action}."), &action)
            }
            // A step that does not advance the task.
            _ => {
                let action = ["look around", "inventory", "wait1"][rng.index(3)];
                response("Let me check the situation first.", action)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{REVISION_ACTION, conversation_start};

    fn conversation(first: &str, actions: &[&str]) -> Vec<Message> {
        let mut messages = conversation_start("instruction", first);
        for action in actions {
            messages.push(Message::assistant(response("t", action), true));
            messages.push(Message::user("observation"));
        }
        messages
    }

    #[test]
    fn follows_the_gold_path_past_mistakes_and_revision_turns() {
        let first = "Your task is to test the expert.\nThis room is called the lab.";
        record_gold(
            u64::MAX,
            first,
            ["open door", "go to kitchen", "0"]
                .map(String::from)
                .to_vec(),
        );
        let expert = SciWorldExpert;
        let action = |c: &[Message]| {
            after_last_action(&expert.respond(c).unwrap())
                .trim()
                .to_owned()
        };
        assert_eq!(action(&conversation(first, &[])), "open door");
        // Cleaned observations (tabs and newlines to spaces) find the same game.
        assert_eq!(
            action(&conversation(&first.replace('\n', " "), &["open door"])),
            "go to kitchen"
        );
        assert_eq!(
            action(&conversation(first, &["open door", "xyzzy"])),
            "go to kitchen"
        );
        let mut revised = conversation(first, &["open door"]);
        revised.push(Message::assistant(
            response("go to kitchen", REVISION_ACTION),
            true,
        ));
        revised.push(Message::user(REVISION_ACK));
        assert_eq!(action(&revised), "go to kitchen");
        assert_eq!(
            action(&conversation(first, &["open door", "go to kitchen"])),
            "0"
        );
        // Past the end of the gold path (it did not finish the task): look again.
        assert_eq!(
            action(&conversation(first, &["open door", "go to kitchen", "0"])),
            "look around"
        );
        assert!(matches!(
            expert.respond(&conversation("an unknown game", &[])),
            Err(EnvError::NoPlan { .. })
        ));
    }

    #[test]
    fn mistakes_are_never_the_next_gold_action() {
        let first = "Your task is to test mistakes.\nThis room is called the hall.";
        record_gold(
            u64::MAX - 1,
            first,
            ["open door to kitchen", "go to kitchen", "pick up metal pot"]
                .map(String::from)
                .to_vec(),
        );
        let expert = SciWorldExpert;
        for seed in 0..200 {
            let c = conversation(first, &["open door to kitchen"]);
            let wrong = expert.mistake(&c, &mut Rng::new(seed)).unwrap();
            assert_ne!(
                after_last_action(&wrong).trim(),
                "go to kitchen",
                "seed {seed}"
            );
        }
    }
}
