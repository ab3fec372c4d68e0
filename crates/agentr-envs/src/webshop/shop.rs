//! The WebShop environment: pages, clickables, the simple-text observation and the reward at
//! `buy now`.
//!
//! Pages: search, results (10 per page of the top 50 hits), item, the item's Description /
//! Features / Reviews sub-pages, and the done page after buying. Actions are
//! `search[keywords]` (valid on every page) and `click[<clickable>]`, where the clickable must be
//! one of the page's, compared in lowercase:
//!
//! * results: `back to search`, `< prev` (after page 1), `next >` (before the last page),
//!   the product ids shown;
//! * item: `back to search`, `< prev` (to the results), `description`, `features`, `reviews`,
//!   `buy now`, and the option values (clicking one selects it for its option);
//! * sub-pages: `back to search`, `< prev` (to the item).
//!
//! Anything else changes nothing: the observation is the current page again, with reward 0.
//! Observations are the page's visible texts joined by ` [SEP] `. Only the step that buys
//! ends the episode with a reward; as in the original, steps after it answer reward 0 and
//! not done (the done page has no clickables; a search still opens its results).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use super::catalogue::{Catalogue, Product};
use super::goals::{DEFAULT_GOAL_SEED, Goal, split_by_product, synthetic_goals};
use super::reward::{Wanted, reward};
use super::search::SearchIndex;
use super::{NAME, loader, synthetic};
use crate::EnvError;
use crate::env::{Environment, Snapshot, Split, Step, TaskId};

/// Results per page.
pub const PAGE_SIZE: usize = 10;
/// Test goals of a synthetic catalogue (each from a different product).
pub const SYNTHETIC_TEST_GOALS: usize = 200;
/// The separator of the simple-text observation.
pub const SEP: &str = " [SEP] ";

/// The instruction prompt (own wording) that opens every WebShop conversation.
pub const INSTRUCTION: &str = "You are shopping on WebShop, a simulated online store. Every \
observation shows the current page's texts separated by [SEP]; the first one includes your \
instruction, which describes the product to buy, its options and the most you may pay.

Two kinds of action exist:
- search[keywords]: search the store for keywords (possible on every page)
- click[text]: click one of the clickable texts of the current page: a product id in the \
results, Next > or < Prev, Back to Search, an option value on a product page (to select \
it), Description, Features or Reviews (to read more), or Buy Now (to buy the product with \
the selected options, which ends the task)

Answer with a short reasoning line and one action, in this form:
Thought: <your reasoning>
Action: <one action>";

/// Everything environments of one shop share: catalogue, goals, index and splits.
#[derive(Debug)]
pub struct ShopData {
    catalogue: Catalogue,
    goals: Vec<Goal>,
    /// Goal indices sorted by instruction text (ties by index), built on the oracle's first
    /// lookup: a linear scan cost milliseconds per episode over 642k goals at 100k products,
    /// and only the oracle needs the order.
    goals_by_instruction: OnceLock<Vec<u32>>,
    index: SearchIndex,
    positions: HashMap<String, usize>,
    train: Vec<TaskId>,
    test: Vec<TaskId>,
    synthetic: bool,
}

impl ShopData {
    /// A synthetic shop of `products` products (`synthetic::generate`), its index in
    /// `cache` (built there once) or in memory; the test split is [`SYNTHETIC_TEST_GOALS`]
    /// goals of distinct products, the training split every goal of the other products.
    pub fn synthetic(products: usize, seed: u64, cache: Option<&Path>) -> Result<Self, EnvError> {
        Self::from_catalogue(synthetic::generate(products, seed), cache)
    }

    /// A shop over any catalogue, with the synthetic split rule (see [`ShopData::synthetic`]).
    pub fn from_catalogue(catalogue: Catalogue, cache: Option<&Path>) -> Result<Self, EnvError> {
        let goals = synthetic_goals(&catalogue, DEFAULT_GOAL_SEED);
        let (train, test) = split_by_product(&goals, SYNTHETIC_TEST_GOALS);
        let to_ids = |ids: Vec<u64>| ids.into_iter().map(TaskId).collect();
        Self::assemble(catalogue, goals, to_ids(train), to_ids(test), cache, true)
    }

    /// The real WebShop data in `dir` (`items_shuffle*.json`, `items_ins_v2*.json`), with
    /// AgentGym's test and training ids. Goal order comes from agentr's fixed shuffle, not
    /// the original's Python generator, so the goal behind an id differs from AgentGym's.
    pub fn real(dir: &Path, cache: Option<&Path>) -> Result<Self, EnvError> {
        let (products, attributes) = loader::find_files(dir)?;
        let catalogue = loader::load(&products, &attributes)?;
        let goals = synthetic_goals(&catalogue, DEFAULT_GOAL_SEED);
        let in_range = |ids: &[TaskId]| {
            ids.iter()
                .copied()
                .filter(|id| (id.0 as usize) < goals.len())
                .collect::<Vec<_>>()
        };
        let (train, test) = (
            in_range(crate::splits::webshop_train()),
            in_range(crate::splits::webshop_test()),
        );
        Self::assemble(catalogue, goals, train, test, cache, false)
    }

    fn assemble(
        catalogue: Catalogue,
        goals: Vec<Goal>,
        train: Vec<TaskId>,
        test: Vec<TaskId>,
        cache: Option<&Path>,
        synthetic: bool,
    ) -> Result<Self, EnvError> {
        if goals.is_empty() {
            return Err(EnvError::Setup {
                what: "WebShop goals",
                message: "no product of the catalogue has an instruction, so there is no goal"
                    .into(),
            });
        }
        let index = match cache {
            Some(cache) => SearchIndex::cached(&catalogue, cache)?,
            None => SearchIndex::in_memory(&catalogue)?,
        };
        let positions = catalogue
            .products
            .iter()
            .enumerate()
            .map(|(i, p)| (p.asin.to_lowercase(), i))
            .collect();
        Ok(ShopData {
            catalogue,
            goals,
            goals_by_instruction: OnceLock::new(),
            index,
            positions,
            train,
            test,
            synthetic,
        })
    }

    /// The catalogue.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The product with this id (case-insensitive), found through the id map.
    pub fn product(&self, asin: &str) -> Option<&Product> {
        self.positions
            .get(&asin.to_lowercase())
            .map(|&i| &self.catalogue.products[i])
    }

    /// The goals; a task id indexes them.
    pub fn goals(&self) -> &[Goal] {
        &self.goals
    }

    /// The search index.
    pub fn index(&self) -> &SearchIndex {
        &self.index
    }

    /// Whether the catalogue is the synthetic one.
    pub fn is_synthetic(&self) -> bool {
        self.synthetic
    }

    /// The goal with this instruction text, if any (the first of equals).
    pub fn goal_by_instruction(&self, text: &str) -> Option<&Goal> {
        let order = self.goals_by_instruction.get_or_init(|| {
            let mut order: Vec<u32> = (0..self.goals.len() as u32).collect();
            order.sort_unstable_by(|&a, &b| {
                let (x, y) = (&self.goals[a as usize], &self.goals[b as usize]);
                x.instruction_text.cmp(&y.instruction_text).then(a.cmp(&b))
            });
            order
        });
        let first =
            order.partition_point(|&i| self.goals[i as usize].instruction_text.as_str() < text);
        let goal = &self.goals[*order.get(first)? as usize];
        (goal.instruction_text == text).then_some(goal)
    }
}

/// Which of an item's sub-pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detail {
    Description,
    Features,
    Reviews,
}

/// A results page: the hits of a search and which page of them.
#[derive(Debug, Clone, PartialEq)]
struct Results {
    keywords: String,
    hits: Arc<Vec<usize>>,
    page: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Page {
    Search,
    Results(Results),
    /// `from`: the results page the item was opened from (`< prev` returns there).
    Item {
        product: usize,
        from: Results,
    },
    Detail {
        product: usize,
        from: Results,
        detail: Detail,
    },
    Done {
        product: usize,
        reward: f64,
    },
}

/// One episode's state; cloning it is the snapshot.
#[derive(Debug, Clone, PartialEq)]
struct Session {
    goal: usize,
    page: Page,
    /// Selected option values by option name, in selection order.
    chosen: Vec<(String, String)>,
}

/// The WebShop environment. Cloning is cheap: the shop is shared.
#[derive(Debug, Clone)]
pub struct WebShop {
    data: Arc<ShopData>,
    session: Option<Session>,
}

impl WebShop {
    /// An environment over a loaded shop.
    pub fn new(data: Arc<ShopData>) -> Self {
        WebShop {
            data,
            session: None,
        }
    }

    /// The shared shop.
    pub fn data(&self) -> &Arc<ShopData> {
        &self.data
    }

    fn goal(&self, session: &Session) -> &Goal {
        &self.data.goals[session.goal]
    }

    fn observation(&self, session: &Session) -> String {
        let instruction = &self.goal(session).instruction_text;
        let head = |rest: Vec<String>| {
            let mut parts = vec![
                "Instruction:".to_owned(),
                instruction.clone(),
                "Back to Search".to_owned(),
            ];
            parts.extend(rest);
            parts.join(SEP)
        };
        let products = &self.data.catalogue.products;
        match &session.page {
            Page::Search => ["WebShop", "Instruction:", instruction, "Search"].join(SEP),
            Page::Results(results) => {
                let mut parts = vec![format!(
                    "Page {} (Total results: {})",
                    results.page + 1,
                    results.hits.len()
                )];
                if results.page > 0 {
                    parts.push("< Prev".into());
                }
                if (results.page + 1) * PAGE_SIZE < results.hits.len() {
                    parts.push("Next >".into());
                }
                for &hit in shown(results) {
                    let product = &products[hit];
                    parts.extend([
                        product.asin.clone(),
                        product.name.clone(),
                        product.price_text.clone(),
                    ]);
                }
                head(parts)
            }
            Page::Item { product, .. } => {
                let product = &products[*product];
                let mut parts = vec!["< Prev".to_owned()];
                for (name, values) in &product.options {
                    parts.push(name.clone());
                    parts.extend(values.iter().cloned());
                }
                parts.extend([
                    product.name.clone(),
                    format!("Price: {}", product.price_text),
                    "Rating: N.A.".into(),
                    "Description".into(),
                    "Features".into(),
                    "Reviews".into(),
                    "Buy Now".into(),
                ]);
                head(parts)
            }
            Page::Detail {
                product, detail, ..
            } => {
                let product = &products[*product];
                let mut parts = vec!["< Prev".to_owned()];
                match detail {
                    Detail::Description => parts.push(product.description.clone()),
                    Detail::Features => parts.extend(product.bullets.iter().cloned()),
                    Detail::Reviews => {}
                }
                head(parts)
            }
            Page::Done { product, reward } => [
                "Thank you for shopping with us!".to_owned(),
                "Purchased".into(),
                products[*product].asin.clone(),
                "Your score (min 0.0, max 1.0)".into(),
                format!("{reward:.2}"),
            ]
            .join(SEP),
        }
    }

    /// The clickables of the current page, lowercase.
    pub fn clickables(&self) -> Vec<String> {
        self.session
            .as_ref()
            .map_or_else(Vec::new, |session| self.clickables_of(session))
    }

    /// The clickables of `session`'s page, lowercase.
    fn clickables_of(&self, session: &Session) -> Vec<String> {
        let products = &self.data.catalogue.products;
        let back = "back to search".to_owned();
        match &session.page {
            Page::Search | Page::Done { .. } => Vec::new(),
            Page::Results(results) => {
                let mut clickables = vec![back];
                if results.page > 0 {
                    clickables.push("< prev".into());
                }
                if (results.page + 1) * PAGE_SIZE < results.hits.len() {
                    clickables.push("next >".into());
                }
                clickables.extend(
                    shown(results)
                        .iter()
                        .map(|&h| products[h].asin.to_lowercase()),
                );
                clickables
            }
            Page::Item { product, .. } => {
                let mut clickables: Vec<String> = [
                    back.as_str(),
                    "< prev",
                    "description",
                    "features",
                    "reviews",
                    "buy now",
                ]
                .map(String::from)
                .to_vec();
                clickables.extend(
                    products[*product]
                        .options
                        .iter()
                        .flat_map(|(_, values)| values.iter().map(|v| v.to_lowercase())),
                );
                clickables
            }
            Page::Detail { .. } => vec![back, "< prev".into()],
        }
    }

    /// Applies `action` to `session`; returns whether it did anything.
    fn apply(&self, session: &mut Session, action: &str) -> Result<bool, EnvError> {
        let action = action.trim();
        if let Some(keywords) = bracketed(action, "search") {
            let hits = self.data.index.search(keywords)?;
            session.page = Page::Results(Results {
                keywords: keywords.to_owned(),
                hits: Arc::new(hits),
                page: 0,
            });
            return Ok(true);
        }
        let Some(target) = bracketed(action, "click") else {
            return Ok(false);
        };
        let target = target.trim().to_lowercase();
        if !self.clickables_of(session).contains(&target) {
            return Ok(false);
        }
        let page = session.page.clone();
        session.page = match (page, target.as_str()) {
            (_, "back to search") => Page::Search,
            (Page::Results(mut results), "< prev") => {
                results.page -= 1;
                Page::Results(results)
            }
            (Page::Results(mut results), "next >") => {
                results.page += 1;
                Page::Results(results)
            }
            (Page::Results(results), asin) => match self.data.positions.get(asin) {
                Some(&product) => {
                    session.chosen.clear();
                    Page::Item {
                        product,
                        from: results,
                    }
                }
                None => return Ok(false),
            },
            (Page::Item { from, .. }, "< prev") => Page::Results(from),
            (Page::Item { product, from }, "description" | "features" | "reviews") => {
                let detail = match target.as_str() {
                    "description" => Detail::Description,
                    "features" => Detail::Features,
                    _ => Detail::Reviews,
                };
                Page::Detail {
                    product,
                    from,
                    detail,
                }
            }
            (Page::Item { product, .. }, "buy now") => {
                let reward = self.purchase_reward(session, product);
                Page::Done { product, reward }
            }
            (Page::Item { product, from }, value) => {
                let option = self.data.catalogue.products[product]
                    .options
                    .iter()
                    .find(|(_, values)| values.iter().any(|v| v.to_lowercase() == value));
                if let Some((name, values)) = option {
                    let value = values
                        .iter()
                        .find(|v| v.to_lowercase() == value)
                        .cloned()
                        .unwrap_or_default();
                    session.chosen.retain(|(n, _)| n != name);
                    session.chosen.push((name.clone(), value));
                }
                Page::Item { product, from }
            }
            (Page::Detail { product, from, .. }, "< prev") => Page::Item { product, from },
            (page, _) => page,
        };
        Ok(true)
    }

    fn purchase_reward(&self, session: &Session, product: usize) -> f64 {
        let goal = self.goal(session);
        let wanted_values: Vec<String> = goal.goal_options.iter().map(|(_, v)| v.clone()).collect();
        let chosen: Vec<String> = session.chosen.iter().map(|(_, v)| v.clone()).collect();
        let wanted = Wanted {
            query: &goal.query,
            product_category: &goal.product_category,
            name: &goal.name,
            attributes: &goal.attributes,
            option_values: &wanted_values,
            price_upper: goal.price_upper,
        };
        reward(&self.data.catalogue.products[product], &chosen, &wanted).total
    }
}

/// The hits shown on a results page.
fn shown(results: &Results) -> &[usize] {
    let start = (results.page * PAGE_SIZE).min(results.hits.len());
    let end = (start + PAGE_SIZE).min(results.hits.len());
    &results.hits[start..end]
}

/// `inner` of `verb[inner]` (the verb in any case), or `None`.
fn bracketed<'a>(action: &'a str, verb: &str) -> Option<&'a str> {
    let open = action.find('[')?;
    if !action[..open].trim().eq_ignore_ascii_case(verb) {
        return None;
    }
    let close = action.rfind(']')?;
    (close > open).then(|| &action[open + 1..close])
}

impl Environment for WebShop {
    fn name(&self) -> &'static str {
        NAME
    }

    fn is_rejection(&self, previous: &str, observation: &str) -> bool {
        super::is_rejection(previous, observation)
    }

    fn instruction(&self) -> &str {
        INSTRUCTION
    }

    fn reset(&mut self, task: TaskId) -> Result<String, EnvError> {
        let count = self.data.goals.len() as u64;
        if task.0 >= count {
            return Err(EnvError::UnknownTask {
                env: NAME,
                task: task.0,
                count,
            });
        }
        let session = Session {
            goal: task.0 as usize,
            page: Page::Search,
            chosen: Vec::new(),
        };
        let first = self.observation(&session);
        self.session = Some(session);
        Ok(first)
    }

    fn step(&mut self, action: &str) -> Result<Step, EnvError> {
        let Some(mut session) = self.session.clone() else {
            return Err(EnvError::NotReset { env: NAME });
        };
        // The original reports a reward and the end only on the step that buys: after it,
        // the done page has no clickables (a click changes nothing, reward 0, not done) and a
        // search opens its results, as on any page.
        let bought_before = matches!(session.page, Page::Done { .. });
        self.apply(&mut session, action)?;
        let observation = self.observation(&session);
        let (reward, done) = match session.page {
            Page::Done { reward, .. } if !bought_before => (reward, true),
            _ => (0.0, false),
        };
        self.session = Some(session);
        Ok(Step {
            observation,
            reward,
            done,
            disaster: false,
        })
    }

    fn task_ids(&self, split: Split) -> Vec<TaskId> {
        match split {
            Split::Train => self.data.train.clone(),
            Split::Test => self.data.test.clone(),
            Split::All => (0..self.data.goals.len() as u64).map(TaskId).collect(),
        }
    }

    fn snapshot(&self) -> Option<Snapshot> {
        self.session
            .clone()
            .map(|session| Snapshot::new(NAME, session))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), EnvError> {
        self.session = Some(snapshot.state::<Session>(NAME)?.clone());
        Ok(())
    }
}

#[cfg(test)]
#[path = "shop_tests.rs"]
mod tests;
