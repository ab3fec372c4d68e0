//! WebShop: a simulated online shop where the agent searches, opens products, picks options and
//! buys, rewarded by how well the bought product matches an instruction.
//!
//! Behaves like the original WebShop engine over any catalogue in its JSON schema
//! ([`loader`]), and ships a seeded synthetic catalogue ([`synthetic`]) so it runs without
//! the real product data, which cannot be downloaded here.

pub mod catalogue;
pub mod goals;
pub mod loader;
pub mod oracle;
pub mod reward;
pub mod search;
pub mod shop;
pub mod synthetic;

pub use catalogue::{Catalogue, Instruction, Product};
pub use goals::{Goal, synthetic_goals};
pub use oracle::WebShopOracle;
pub use shop::{INSTRUCTION, SEP, ShopData, WebShop};

/// The environment's name, as used on the command line and in sample metadata.
pub const NAME: &str = "webshop";

/// WebShop's [`crate::Environment::is_rejection`]: the shop says nothing about an action it
/// cannot carry out and shows the same page again, so an unchanged observation counts (as do
/// the few valid actions that change nothing, such as selecting an option already selected:
/// turns wasted all the same).
pub fn is_rejection(previous: &str, observation: &str) -> bool {
    observation == previous
}
