//! Goals: what the agent is asked to buy, made from the catalogue's instructions by the
//! original engine's synthetic-goal rules.
//!
//! For every product with an instruction (catalogue order), one goal per combination of its
//! option values (option names sorted, values in data order). A product under $990 gets a
//! price bound: two of the next four multiples of $10 above its price are drawn and the larger
//! is the bound; a dearer product has none. The goal text is the instruction, then
//! ` with <name>: <value>, and <name>: <value>` when there are options, then `, and price lower
//! than <bound> dollars`. The whole list is shuffled once with a fixed seed; a task id indexes
//! it.

use super::catalogue::{Catalogue, Product};
use crate::rng::Rng;

/// The price bound of a goal without one.
pub const NO_PRICE_LIMIT: f64 = 1_000_000.0;

/// Seed of the price draws and of the shuffle (any fixed value: the original's goal order
/// came from Python's global generator and cannot be reproduced).
pub const DEFAULT_GOAL_SEED: u64 = 233;

/// One shopping goal.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    /// The product the goal was written for.
    pub asin: String,
    /// Its category.
    pub category: String,
    /// Its search query.
    pub query: String,
    /// Its title.
    pub name: String,
    /// Its breadcrumb.
    pub product_category: String,
    /// What the agent reads.
    pub instruction_text: String,
    /// The attributes the instruction asks for.
    pub attributes: Vec<String>,
    /// The most the agent may pay ([`NO_PRICE_LIMIT`] for none).
    pub price_upper: f64,
    /// The option values asked for, by option name (names sorted).
    pub goal_options: Vec<(String, String)>,
}

/// The price bound of a product of `price` drawn from `rng`, with its text.
fn price_bound(price: f64, rng: &mut Rng) -> (f64, String) {
    let next: Vec<f64> = (1..100)
        .map(|i| 10.0 * f64::from(i))
        .filter(|&bound| bound > price)
        .take(4)
        .collect();
    if next.len() < 2 {
        return (NO_PRICE_LIMIT, String::new());
    }
    let first = rng.index(next.len());
    let mut second = rng.index(next.len() - 1);
    if second >= first {
        second += 1;
    }
    let bound = next[first].max(next[second]);
    (bound, format!(", and price lower than {bound:.2} dollars"))
}

/// Every combination of one value per option, options in `names` order.
fn combinations(options: &[(&String, &Vec<String>)]) -> Vec<Vec<(String, String)>> {
    let mut all: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (name, values) in options {
        all = all
            .into_iter()
            .flat_map(|partial| {
                values.iter().map(move |value| {
                    let mut next = partial.clone();
                    next.push(((*name).clone(), value.clone()));
                    next
                })
            })
            .collect();
    }
    all
}

fn product_goals(product: &Product, index: usize, seed: u64) -> Vec<Goal> {
    let Some(instruction) = &product.instruction else {
        return Vec::new();
    };
    let mut rng = Rng::from_parts(&[seed, index as u64]);
    let (price_upper, price_text) = price_bound(product.price, &mut rng);
    let mut options: Vec<(&String, &Vec<String>)> = product
        .options
        .iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(name, values)| (name, values))
        .collect();
    options.sort_by(|a, b| a.0.cmp(b.0));
    combinations(&options)
        .into_iter()
        .map(|goal_options| {
            let option_text = goal_options
                .iter()
                .map(|(name, value)| format!("{name}: {value}"))
                .collect::<Vec<_>>()
                .join(", and ");
            let option_text = if option_text.is_empty() {
                option_text
            } else {
                format!(" with {option_text}")
            };
            Goal {
                asin: product.asin.clone(),
                category: product.category.clone(),
                query: product.query.clone(),
                name: product.name.clone(),
                product_category: product.product_category.clone(),
                instruction_text: format!("{}{option_text}{price_text}", instruction.text),
                attributes: instruction.attributes.clone(),
                price_upper,
                goal_options,
            }
        })
        .collect()
}

/// The goal list of `catalogue` (task id = index), shuffled with `seed`.
pub fn synthetic_goals(catalogue: &Catalogue, seed: u64) -> Vec<Goal> {
    let mut goals: Vec<Goal> = catalogue
        .products
        .iter()
        .enumerate()
        .flat_map(|(index, product)| product_goals(product, index, seed))
        .collect();
    Rng::from_parts(&[seed, u64::MAX]).shuffle(&mut goals);
    goals
}

/// A held-out test split of `goals`: `count` goals, each of a different product, taken in
/// goal order; the training ids are the goals of every other product (so no product has goals
/// on both sides). Returns (train, test) ids, each ascending.
pub fn split_by_product(goals: &[Goal], count: usize) -> (Vec<u64>, Vec<u64>) {
    let mut held_out = std::collections::HashSet::new();
    let mut test = Vec::new();
    for (id, goal) in goals.iter().enumerate() {
        if test.len() == count {
            break;
        }
        if held_out.insert(goal.asin.as_str()) {
            test.push(id as u64);
        }
    }
    let train = goals
        .iter()
        .enumerate()
        .filter(|(_, goal)| !held_out.contains(goal.asin.as_str()))
        .map(|(id, _)| id as u64)
        .collect();
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webshop::catalogue::Instruction;

    fn product(
        asin: &str,
        price: f64,
        options: &[(&str, &[&str])],
        with_instruction: bool,
    ) -> Product {
        Product {
            asin: asin.into(),
            name: format!("Product {asin}"),
            category: "fashion".into(),
            query: "shoes".into(),
            product_category: "Clothing › Shoes".into(),
            description: String::new(),
            bullets: Vec::new(),
            price,
            price_text: format!("${price:.2}"),
            options: options
                .iter()
                .map(|(name, values)| {
                    (
                        name.to_string(),
                        values.iter().map(|v| v.to_string()).collect(),
                    )
                })
                .collect(),
            attributes: vec!["machine wash".into(), "rubber sole".into()],
            instruction: with_instruction.then(|| Instruction {
                text: "i want rubber sole shoes".into(),
                attributes: vec!["rubber sole".into()],
            }),
        }
    }

    #[test]
    fn one_goal_per_option_combination_with_sorted_names() {
        let catalogue = Catalogue {
            products: vec![
                product(
                    "A",
                    24.5,
                    &[("size", &["7", "8"]), ("color", &["black", "red | white"])],
                    true,
                ),
                product("B", 5.0, &[], false),
                product("C", 995.0, &[], true),
            ],
        };
        let goals = synthetic_goals(&catalogue, 1);
        assert_eq!(goals.len(), 5);
        let mut of_a: Vec<&Goal> = goals.iter().filter(|g| g.asin == "A").collect();
        of_a.sort_by(|a, b| a.instruction_text.cmp(&b.instruction_text));
        let bound = of_a[0].price_upper;
        // Two of 30, 40, 50, 60; the larger is the bound.
        assert!([40.0, 50.0, 60.0].contains(&bound), "{bound}");
        assert_eq!(
            of_a[0].instruction_text,
            format!(
                "i want rubber sole shoes with color: black, and size: 7, and price lower than {bound:.2} dollars"
            )
        );
        assert_eq!(
            of_a[3].goal_options,
            vec![
                ("color".to_owned(), "red | white".to_owned()),
                ("size".to_owned(), "8".to_owned())
            ]
        );
        assert!(
            of_a.iter()
                .all(|g| g.price_upper == bound && g.attributes == ["rubber sole"])
        );
        let c = goals.iter().find(|g| g.asin == "C").unwrap();
        assert_eq!(c.price_upper, NO_PRICE_LIMIT);
        assert_eq!(c.instruction_text, "i want rubber sole shoes");
        assert_eq!(synthetic_goals(&catalogue, 1), goals);
    }

    #[test]
    fn price_bounds_are_two_of_the_next_four_tens() {
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let (bound, text) = price_bound(12.0, &mut rng);
            assert!([30.0, 40.0, 50.0].contains(&bound), "{bound}");
            assert_eq!(text, format!(", and price lower than {bound:.2} dollars"));
            // 985 has one multiple of ten above it below 1000: no bound.
            assert_eq!(price_bound(985.0, &mut rng).0, NO_PRICE_LIMIT);
            let (near, _) = price_bound(975.0, &mut rng);
            assert_eq!(near, 990.0);
        }
    }

    #[test]
    fn test_goals_come_from_products_without_training_goals() {
        let products = (0..30)
            .map(|i| {
                product(
                    &format!("P{i}"),
                    10.0 + i as f64,
                    &[("size", &["s", "m", "l"])],
                    true,
                )
            })
            .collect();
        let goals = synthetic_goals(&Catalogue { products }, 3);
        let (train, test) = split_by_product(&goals, 10);
        assert_eq!(test.len(), 10);
        assert_eq!(train.len(), goals.len() - 30);
        let asins = |ids: &[u64]| -> std::collections::HashSet<String> {
            ids.iter()
                .map(|&i| goals[i as usize].asin.clone())
                .collect()
        };
        assert!(asins(&train).is_disjoint(&asins(&test)));
        assert_eq!(asins(&test).len(), 10);
    }
}
