//! The oracle: an expert that knows which product each goal was written for. It searches for
//! the product's title, pages through the results until it sees the product, opens it,
//! selects the goal's option values and buys: reward 1.0 whenever the goal's own product
//! satisfies it (always, by construction of the goals, unless search cannot find it).

use std::sync::Arc;

use super::SEP;
use super::shop::ShopData;
use crate::EnvError;
use crate::action::after_last_action;
use crate::chat::{Message, Role};
use crate::expert::Expert;
use crate::rng::Rng;
use crate::webshop::{Goal, NAME};

/// The WebShop oracle over one shop (the goals must be those of the environment played).
#[derive(Debug, Clone)]
pub struct WebShopOracle {
    data: Arc<ShopData>,
}

/// What the oracle reads from the conversation.
struct View<'a> {
    goal: &'a Goal,
    /// The last observation's parts.
    page: Vec<&'a str>,
    /// Option values clicked since the target's page was last opened from the results.
    clicked: Vec<String>,
}

fn response(thought: &str, action: &str) -> String {
    format!("Thought: {thought}\nAction: {action}")
}

impl WebShopOracle {
    /// The oracle for the shop `data`.
    pub fn new(data: Arc<ShopData>) -> Self {
        WebShopOracle { data }
    }

    /// The search for the goal product's title and description.
    fn described_search(&self, goal: &Goal) -> String {
        let description = self
            .data
            .product(&goal.asin)
            .map_or("", |product| product.description.as_str());
        let words = format!("{} {description}", goal.name)
            .to_lowercase()
            .replace(['[', ']'], " ");
        format!("search[{}]", words.trim())
    }

    fn view<'a>(&'a self, conversation: &'a [Message]) -> Result<View<'a>, EnvError> {
        let unreadable = |message: &str| EnvError::UnreadableObservation {
            env: NAME,
            message: message.to_owned(),
        };
        let first = conversation
            .get(2)
            .filter(|m| m.role == Role::User)
            .ok_or_else(|| unreadable("no first observation"))?;
        let parts: Vec<&str> = first.content.split(SEP).collect();
        let instruction = parts
            .iter()
            .position(|p| *p == "Instruction:")
            .and_then(|i| parts.get(i + 1))
            .ok_or_else(|| unreadable("the first observation has no instruction"))?;
        let goal = self
            .data
            .goal_by_instruction(instruction)
            .ok_or_else(|| EnvError::NoPlan {
                env: NAME,
                message: "the instruction is none of this shop's goals".into(),
            })?;
        let last = conversation
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .ok_or_else(|| unreadable("no observation"))?;
        let mut clicked = Vec::new();
        for message in conversation.iter().skip(3) {
            if message.role != Role::Assistant {
                continue;
            }
            let action = after_last_action(&message.content).trim().to_lowercase();
            let Some(target) = action
                .strip_prefix("click[")
                .and_then(|rest| rest.strip_suffix(']'))
            else {
                continue;
            };
            if target == goal.asin.to_lowercase() {
                clicked.clear();
            } else if goal
                .goal_options
                .iter()
                .any(|(_, value)| value.to_lowercase() == target)
            {
                clicked.push(target.to_owned());
            }
        }
        Ok(View {
            goal,
            page: last.content.split(SEP).collect(),
            clicked,
        })
    }
}

impl Expert for WebShopOracle {
    fn respond(&self, conversation: &[Message]) -> Result<String, EnvError> {
        let view = self.view(conversation)?;
        let goal = view.goal;
        let page = &view.page;
        if page.first() == Some(&"WebShop") {
            return Ok(response(
                "I will search for the product the instruction describes.",
                &format!("search[{}]", goal.name.to_lowercase()),
            ));
        }
        // A page the oracle does not recognise (the done page): nothing sensible to do.
        let on_item = page.contains(&"Buy Now");
        let is_results = page
            .iter()
            .any(|p| p.starts_with("Page ") && p.contains("(Total results:"));
        if on_item && page.contains(&goal.name.as_str()) {
            if let Some((_, value)) = goal
                .goal_options
                .iter()
                .find(|(_, value)| !view.clicked.contains(&value.to_lowercase()))
            {
                return Ok(response(
                    &format!("The instruction asks for {value}, so I select it."),
                    &format!("click[{value}]"),
                ));
            }
            return Ok(response(
                "This product matches the instruction and the options are selected.",
                "click[Buy Now]",
            ));
        }
        // Another product's page, or one of its sub-pages: back.
        if on_item || (!is_results && page.contains(&"< Prev")) {
            return Ok(response(
                "This is not the page I need; back.",
                "click[< Prev]",
            ));
        }
        if is_results {
            if page.contains(&goal.asin.as_str()) {
                return Ok(response(
                    &format!("{} looks like what the instruction describes.", goal.asin),
                    &format!("click[{}]", goal.asin),
                ));
            }
            if page.contains(&"Next >") {
                return Ok(response(
                    "The product is not on this page; next.",
                    "click[Next >]",
                ));
            }
        }
        // Results without the product: after a broader search (a mistake, say) search for its
        // title; after the title search (in a large catalogue many products share a title)
        // search for its title and description, whose rarer words single it out.
        let title_search = format!("search[{}]", goal.name.to_lowercase());
        let last_search = conversation
            .iter()
            .rev()
            .filter(|m| m.role == Role::Assistant)
            .map(|m| after_last_action(&m.content).trim().to_lowercase())
            .find(|action| action.starts_with("search["));
        if is_results && last_search.as_deref() != Some(title_search.as_str()) {
            let described_search = self.described_search(goal);
            if last_search.as_deref() != Some(described_search.as_str()) {
                return Ok(response(
                    "The product is not among these results; I search for it by name.",
                    &title_search,
                ));
            }
        } else if is_results {
            return Ok(response(
                "Several products share that name; I add what its description says.",
                &self.described_search(goal),
            ));
        }
        Err(EnvError::NoPlan {
            env: NAME,
            message: format!(
                "search does not find {} for its title or description",
                goal.asin
            ),
        })
    }

    fn mistake(&self, conversation: &[Message], rng: &mut Rng) -> Result<String, EnvError> {
        let view = self.view(conversation)?;
        let goal = view.goal;
        let page = &view.page;
        // Another product id on a results page.
        let others: Vec<&str> = page
            .iter()
            .copied()
            .filter(|p| *p != goal.asin && self.data.product(p).is_some())
            .collect();
        if !others.is_empty() && rng.unit_f64() < 0.7 {
            let asin = others[rng.index(others.len())];
            return Ok(response(
                &format!("{asin} seems close enough."),
                &format!("click[{asin}]"),
            ));
        }
        if page.contains(&"Buy Now") && rng.unit_f64() < 0.5 {
            return Ok(response("This will do; I buy it now.", "click[Buy Now]"));
        }
        let words: Vec<&str> = goal.query.split_whitespace().collect();
        let keyword = words
            .get(rng.index(words.len().max(1)))
            .copied()
            .unwrap_or("product");
        Ok(response(
            "Let me search more broadly.",
            &format!("search[{keyword}]"),
        ))
    }
}
