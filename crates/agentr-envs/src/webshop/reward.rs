//! The purchase reward: how well a bought product (with the options picked for it) fits
//! what the instruction asked for.
//!
//! The score mirrors the original WebShop engine. Three kinds of evidence are counted:
//!
//! * **attributes** – each wanted attribute phrase counts if one of the product's attribute
//!   phrases is a close fuzzy match ([`token_set_ratio`] above [`MATCH_THRESHOLD`]), or, failing
//!   that, if the phrase occurs verbatim (case-insensitively) in the title, a bullet point or
//!   the description;
//! * **options** – each wanted option value counts if one of the chosen option values is a
//!   close fuzzy match;
//! * **price** – one more point if the price is within the budget.
//!
//! The points are divided by the number that could be earned (wanted attributes + wanted
//! options + 1), and the fraction is scaled by a *type factor* `r_type` in `{0, 0.1, 0.5, 1}`
//! that punishes buying the wrong kind of thing. `r_type` looks at whether the product was
//! scraped for the same search query, whether its category breadcrumb shares at least two
//! levels with the wanted one, and what fraction of the wanted title's nouns also appear in
//! the bought product's title (the *title score*).
//!
//! # Title nouns
//!
//! The original engine finds nouns with spaCy's part-of-speech tagger (tokens tagged `NOUN` or
//! `PROPN`). No tagger is available here, so [`title_nouns`] uses a fixed heuristic instead:
//! it lowercases the title, splits it on every non-alphanumeric character, and keeps each
//! distinct token except
//!
//! * tokens made only of digits (`2`, `100`) and one-character tokens (the `s` of `women's`,
//!   the `t` of `t-shirt`), which a tagger would call numerals or particles;
//! * the words of [`TITLE_STOP_WORDS`]: function words (articles, prepositions, conjunctions,
//!   pronouns), the marketing adjectives that pad product titles (`premium`, `soft`, …),
//!   size and unit words (`xl`, `oz`, `pack`, …) and basic colour names.
//!
//! Everything else counts as a noun. Compared with a tagger this is context-blind: it keeps
//! verbs and unlisted adjectives (`running`, `stainless`), and it drops listed words even
//! where they act as nouns (`orange` the fruit, `pack` a backpack). Both errors tend to be
//! symmetric between the two titles compared, so the title score stays a fair measure of
//! "same kind of product", though individual values can differ from the original's.

use super::catalogue::Product;

/// A fuzzy match counts when [`token_set_ratio`] is strictly above this.
pub const MATCH_THRESHOLD: u32 = 85;

/// Words [`title_nouns`] never counts as nouns: function words, padding adjectives, size and
/// unit words, and colour names (see the module documentation).
pub const TITLE_STOP_WORDS: &[&str] = &[
    // Function words: articles, prepositions, conjunctions, pronouns, negations.
    "a",
    "all",
    "an",
    "and",
    "are",
    "as",
    "at",
    "be",
    "by",
    "for",
    "from",
    "in",
    "into",
    "is",
    "it",
    "its",
    "my",
    "no",
    "not",
    "of",
    "on",
    "or",
    "our",
    "over",
    "per",
    "the",
    "this",
    "to",
    "up",
    "vs",
    "with",
    "without",
    "you",
    "your",
    // Adjectives that pad product titles.
    "adjustable",
    "best",
    "big",
    "casual",
    "classic",
    "compatible",
    "cute",
    "durable",
    "easy",
    "extra",
    "free",
    "high",
    "large",
    "lightweight",
    "medium",
    "mini",
    "natural",
    "new",
    "organic",
    "perfect",
    "portable",
    "premium",
    "professional",
    "quality",
    "small",
    "soft",
    "super",
    "ultra",
    "waterproof",
    // Sizes, units and counts.
    "count",
    "cm",
    "fl",
    "inch",
    "inches",
    "lb",
    "lbs",
    "ml",
    "mm",
    "oz",
    "pack",
    "pcs",
    "xl",
    "xs",
    "xxl",
    "xxxl",
    // Colours.
    "beige",
    "black",
    "blue",
    "brown",
    "gray",
    "green",
    "grey",
    "navy",
    "orange",
    "pink",
    "purple",
    "red",
    "white",
    "yellow",
];

/// The goal's side of the comparison, borrowed from wherever the goal is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wanted<'a> {
    /// The search query the goal product was scraped for.
    pub query: &'a str,
    /// The goal product's category breadcrumb, levels joined by `›`.
    pub product_category: &'a str,
    /// The goal product's title.
    pub name: &'a str,
    /// The attribute phrases the instruction asks for.
    pub attributes: &'a [String],
    /// The option values the instruction asks for.
    pub option_values: &'a [String],
    /// The budget: the price must be at most this.
    pub price_upper: f64,
}

/// The reward and the pieces it was computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardBreakdown {
    /// How many wanted attributes the product has.
    pub attribute_matches: usize,
    /// How many wanted option values were chosen.
    pub option_matches: usize,
    /// Whether the price is within the budget.
    pub price_ok: bool,
    /// The type factor: 1.0, 0.5, 0.1 or 0.0.
    pub r_type: f64,
    /// The fraction of the wanted title's nouns found in the bought title (0.2 when the wanted
    /// title has none).
    pub title_score: f64,
    /// Whether the product was scraped for the wanted query.
    pub query_match: bool,
    /// Whether the category breadcrumbs share at least two levels.
    pub category_match: bool,
    /// The reward, in `[0, 1]`.
    pub total: f64,
}

/// Lowercases, turns every non-alphanumeric character into a separator, and returns the
/// distinct tokens sorted.
fn token_set(text: &str) -> Vec<String> {
    let mut cleaned = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_alphanumeric() {
            cleaned.extend(c.to_lowercase());
        } else {
            cleaned.push(' ');
        }
    }
    let mut tokens: Vec<String> = cleaned.split_whitespace().map(str::to_owned).collect();
    tokens.sort_unstable();
    tokens.dedup();
    tokens
}

/// The length of the longest common subsequence of two char sequences.
fn lcs_len(x: &[char], y: &[char]) -> usize {
    let (long, short) = if x.len() >= y.len() { (x, y) } else { (y, x) };
    let mut row = vec![0usize; short.len() + 1];
    for &a in long {
        let mut diagonal = 0;
        for (j, &b) in short.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if a == b {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    row[short.len()]
}

/// The normalised indel similarity of two strings, over chars, rounded half away from zero:
/// `100 * (|x| + |y| - indel(x, y)) / (|x| + |y|)` with `indel = |x| + |y| - 2 * LCS(x, y)`,
/// i.e. `200 * LCS / (|x| + |y|)`. Two empty strings are identical (100).
fn ratio(x: &str, y: &str) -> u32 {
    let x: Vec<char> = x.chars().collect();
    let y: Vec<char> = y.chars().collect();
    let total = x.len() + y.len();
    if total == 0 {
        return 100;
    }
    let lcs = lcs_len(&x, &y);
    // round(200 * lcs / total) = floor((400 * lcs + total) / (2 * total)), exact in integers.
    let rounded = (400 * lcs + total) / (2 * total);
    u32::try_from(rounded).unwrap_or(100).min(100)
}

/// Joins two space-separated parts with one space, leaving out an empty one.
fn join_parts(first: &str, second: &str) -> String {
    match (first.is_empty(), second.is_empty()) {
        (true, _) => second.to_owned(),
        (_, true) => first.to_owned(),
        _ => format!("{first} {second}"),
    }
}

/// Fuzzy token-set similarity of two strings, 0 to 100.
///
/// Both strings are lowercased, every non-alphanumeric character becomes a space, and each is
/// split into a set of tokens. With `I` the sorted common tokens, and `D1`, `D2` the sorted
/// tokens only in `a`, only in `b` (each joined by single spaces), let `S1 = I + " " + D1` and
/// `S2 = I + " " + D2` (without the space when a part is empty). The result is the highest of
/// `ratio(I, S1)`, `ratio(I, S2)` and `ratio(S1, S2)`, where `ratio` is the normalised
/// insert/delete similarity `200 * LCS / (len + len)` over chars, rounded half away from zero.
///
/// So word order and repeated words do not matter, and when every token of one string occurs
/// in the other the result is 100. It is 0 when either string has no alphanumeric character.
pub fn token_set_ratio(a: &str, b: &str) -> u32 {
    let tokens_a = token_set(a);
    let tokens_b = token_set(b);
    if tokens_a.is_empty() || tokens_b.is_empty() {
        return 0;
    }
    let common: Vec<&str> = tokens_a
        .iter()
        .filter(|t| tokens_b.binary_search(t).is_ok())
        .map(String::as_str)
        .collect();
    let only_a: Vec<&str> = tokens_a
        .iter()
        .filter(|t| tokens_b.binary_search(t).is_err())
        .map(String::as_str)
        .collect();
    let only_b: Vec<&str> = tokens_b
        .iter()
        .filter(|t| tokens_a.binary_search(t).is_err())
        .map(String::as_str)
        .collect();
    let intersection = common.join(" ");
    let s1 = join_parts(&intersection, &only_a.join(" "));
    let s2 = join_parts(&intersection, &only_b.join(" "));
    ratio(&intersection, &s1)
        .max(ratio(&intersection, &s2))
        .max(ratio(&s1, &s2))
}

/// The distinct "nouns" of a title, sorted, by the heuristic in the module documentation:
/// lowercase, split on non-alphanumeric characters, drop all-digit and one-character tokens and
/// the words of [`TITLE_STOP_WORDS`].
pub fn title_nouns(title: &str) -> Vec<String> {
    token_set(title)
        .into_iter()
        .filter(|t| {
            t.chars().nth(1).is_some()
                && !t.chars().all(char::is_numeric)
                && !TITLE_STOP_WORDS.contains(&t.as_str())
        })
        .collect()
}

/// The trimmed levels of a `›`-separated category breadcrumb, sorted and distinct.
fn category_levels(breadcrumb: &str) -> Vec<&str> {
    let mut levels: Vec<&str> = breadcrumb.split('›').map(str::trim).collect();
    levels.sort_unstable();
    levels.dedup();
    levels
}

/// The fraction of `wanted`'s title nouns that `bought`'s title has; 0.2 when `wanted` has none.
fn title_score(bought: &str, wanted: &str) -> f64 {
    let wanted_nouns = title_nouns(wanted);
    if wanted_nouns.is_empty() {
        return 0.2;
    }
    let bought_nouns = title_nouns(bought);
    let shared = wanted_nouns
        .iter()
        .filter(|n| bought_nouns.binary_search(n).is_ok())
        .count();
    shared as f64 / wanted_nouns.len() as f64
}

/// Scores buying `product` with `chosen_options` (the option values selected before buying)
/// against `wanted`; see the module documentation for the rule.
pub fn reward(product: &Product, chosen_options: &[String], wanted: &Wanted) -> RewardBreakdown {
    let title = product.name.to_lowercase();
    let bullets: Vec<String> = product.bullets.iter().map(|b| b.to_lowercase()).collect();
    let description = product.description.to_lowercase();

    let attribute_matches = wanted
        .attributes
        .iter()
        .filter(|goal_attribute| {
            product
                .attributes
                .iter()
                .any(|p| token_set_ratio(p, goal_attribute) > MATCH_THRESHOLD)
                || {
                    let needle = goal_attribute.to_lowercase();
                    title.contains(&needle)
                        || bullets.iter().any(|b| b.contains(&needle))
                        || description.contains(&needle)
                }
        })
        .count();

    let option_matches = wanted
        .option_values
        .iter()
        .filter(|goal_value| {
            chosen_options
                .iter()
                .any(|p| token_set_ratio(p, goal_value) > MATCH_THRESHOLD)
        })
        .count();

    let price_ok = product.price <= wanted.price_upper;

    let query_match = product.query == wanted.query;
    let bought_levels = category_levels(&product.product_category);
    let wanted_levels = category_levels(wanted.product_category);
    let shared_levels = bought_levels
        .iter()
        .filter(|level| wanted_levels.binary_search(level).is_ok())
        .count();
    let category_match = shared_levels >= 2;
    let title_score = title_score(&product.name, wanted.name);

    let mut r_type = 1.0;
    if !(query_match || category_match || title_score > 0.2) {
        r_type = 0.5;
    }
    if title_score < 0.1 {
        r_type = 0.1;
    }
    if title_score <= 0.0 {
        r_type = 0.0;
    }

    let earned = attribute_matches + option_matches + usize::from(price_ok);
    let possible = wanted.attributes.len() + wanted.option_values.len() + 1;
    let total = earned as f64 / possible as f64 * r_type;

    RewardBreakdown {
        attribute_matches,
        option_matches,
        price_ok,
        r_type,
        title_score,
        query_match,
        category_match,
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn product(name: &str, query: &str, category: &str, price: f64) -> Product {
        Product {
            asin: "B000TEST".to_owned(),
            name: name.to_owned(),
            category: "beauty".to_owned(),
            query: query.to_owned(),
            product_category: category.to_owned(),
            description: String::new(),
            bullets: Vec::new(),
            price,
            price_text: format!("${price:.2}"),
            options: vec![("size".to_owned(), strings(&["small", "large"]))],
            attributes: Vec::new(),
            instruction: None,
        }
    }

    const CATEGORY: &str = "Beauty & Personal Care › Skin Care › Body › Scrubs";

    #[test]
    fn ratio_rounds_half_away_from_zero() {
        // LCS("a", "abcdefghijklmno") = 1, lengths 1 + 15 = 16: 200 * 1 / 16 = 12.5 -> 13.
        assert_eq!(ratio("a", "abcdefghijklmno"), 13);
        assert_eq!(ratio("", ""), 100);
        assert_eq!(ratio("", "abc"), 0);
        assert_eq!(ratio("abc", "abc"), 100);
    }

    #[test]
    fn token_set_ratio_known_values() {
        // Same token set {a, bear, fuzzy, was, wuzzy}: D1 = D2 = "", S1 = S2 = I -> 100.
        assert_eq!(
            token_set_ratio("fuzzy wuzzy was a bear", "wuzzy fuzzy was a bear"),
            100
        );
        // Duplicates vanish: both sets are {a, bear, fuzzy, was} -> 100.
        assert_eq!(
            token_set_ratio("fuzzy was a bear", "fuzzy fuzzy was a bear"),
            100
        );
        // I = "new york" (8), S1 = "new york mets" (13), S2 = "new york yankees" (16).
        // ratio(I, S1) = 200 * 8 / 21 = 76.19 -> 76.
        // ratio(I, S2) = 200 * 8 / 24 = 66.67 -> 67.
        // ratio(S1, S2): LCS = "new york " (9) + LCS("mets", "yankees") = "es" (2) = 11,
        //   200 * 11 / 29 = 75.86 -> 76. Maximum 76.
        assert_eq!(token_set_ratio("new york mets", "new york yankees"), 76);
        // Empty after preprocessing -> 0.
        assert_eq!(token_set_ratio("", "x"), 0);
        assert_eq!(token_set_ratio("!!! ---", "x"), 0);
        // No common token: I = "", S1 = "apple", S2 = "apples"; ratio(I, _) = 0,
        // ratio(S1, S2): LCS 5, 200 * 5 / 11 = 90.91 -> 91.
        assert_eq!(token_set_ratio("apple", "apples"), 91);
        // I = "shirt" (5), S1 = "shirt red" (9), S2 = "shirt blue" (10).
        // ratio(I, S1) = 200 * 5 / 14 = 71.43 -> 71; ratio(I, S2) = 200 * 5 / 15 = 66.67 -> 67;
        // ratio(S1, S2): LCS "shirt " (6) + "e" (1) = 7, 200 * 7 / 19 = 73.68 -> 74. Max 74.
        assert_eq!(token_set_ratio("red shirt", "blue shirt"), 74);
        // "small" vs "large": I = "", LCS = 1 ("a" or "l"), 200 * 1 / 10 = 20.
        assert_eq!(token_set_ratio("small", "large"), 20);
        // Case and punctuation are ignored; subset of tokens -> 100 (ratio(I, S2) with S2 = I).
        assert_eq!(token_set_ratio("Tea-Tree OIL", "tea tree"), 100);
    }

    #[test]
    fn token_set_ratio_is_symmetric_and_identity_is_100() {
        let pairs = [
            ("new york mets", "new york yankees"),
            ("red shirt", "blue shirt"),
            ("machine washable", "hand wash only"),
        ];
        for (a, b) in pairs {
            assert_eq!(token_set_ratio(a, b), token_set_ratio(b, a));
            assert_eq!(token_set_ratio(a, a), 100);
        }
    }

    #[test]
    fn title_nouns_heuristic() {
        // women, s, classic, cotton, t, shirt, black, 2, pack:
        // "s", "t" (one char), "2" (digits), classic / black / pack (stop words) go.
        assert_eq!(
            title_nouns("Women's Classic Cotton T-Shirt, Black, 2 Pack"),
            strings(&["cotton", "shirt", "women"])
        );
        assert!(title_nouns("The Best of All, 100 XL").is_empty());
    }

    fn perfect_wanted<'a>(attributes: &'a [String], options: &'a [String]) -> Wanted<'a> {
        Wanted {
            query: "body scrub",
            product_category: CATEGORY,
            name: "Tea Tree Body Scrub",
            attributes,
            option_values: options,
            price_upper: 20.0,
        }
    }

    fn scrub() -> Product {
        let mut p = product("Tea Tree Body Scrub", "body scrub", CATEGORY, 12.0);
        p.attributes = strings(&["tea tree", "natural ingredients"]);
        p
    }

    #[test]
    fn perfect_purchase_scores_one() {
        let attributes = strings(&["tea tree", "natural ingredients"]);
        let options = strings(&["large"]);
        let wanted = perfect_wanted(&attributes, &options);
        let got = reward(&scrub(), &strings(&["large"]), &wanted);
        // (2 + 1 + 1) / (2 + 1 + 1) * 1.0 = 1.0.
        assert_eq!(got.attribute_matches, 2);
        assert_eq!(got.option_matches, 1);
        assert!(got.price_ok && got.query_match && got.category_match);
        assert!((got.title_score - 1.0).abs() < 1e-12);
        assert!((got.r_type - 1.0).abs() < 1e-12);
        assert!((got.total - 1.0).abs() < 1e-12);
    }

    #[test]
    fn wrong_price_loses_one_point() {
        let attributes = strings(&["tea tree", "natural ingredients"]);
        let options = strings(&["large"]);
        let wanted = perfect_wanted(&attributes, &options);
        let mut p = scrub();
        p.price = 30.0;
        let got = reward(&p, &strings(&["large"]), &wanted);
        // (2 + 1 + 0) / 4 = 0.75.
        assert!(!got.price_ok);
        assert!((got.total - 0.75).abs() < 1e-12);
        // Exactly at the budget is fine.
        p.price = 20.0;
        assert!(reward(&p, &strings(&["large"]), &wanted).price_ok);
    }

    #[test]
    fn attribute_found_in_a_bullet() {
        let attributes = strings(&["tea tree", "paraben free", "long lasting"]);
        let options = strings(&["large"]);
        let wanted = perfect_wanted(&attributes, &options);
        let mut p = scrub();
        p.attributes = strings(&["tea tree oil"]);
        p.bullets = strings(&["Gentle exfoliation", "PARABEN FREE formula"]);
        let got = reward(&p, &strings(&["large"]), &wanted);
        // "tea tree" vs "tea tree oil": every token shared -> 100 > 85, matched.
        // "paraben free": no close attribute, but a substring of the second bullet, matched.
        // "long lasting": nowhere. (2 + 1 + 1) / (3 + 1 + 1) = 0.8.
        assert_eq!(got.attribute_matches, 2);
        assert!((got.total - 0.8).abs() < 1e-12);
    }

    #[test]
    fn option_mismatch_loses_one_point() {
        let attributes = strings(&["tea tree", "natural ingredients"]);
        let options = strings(&["large"]);
        let wanted = perfect_wanted(&attributes, &options);
        // token_set_ratio("small", "large") = 20, not above 85.
        let got = reward(&scrub(), &strings(&["small"]), &wanted);
        assert_eq!(got.option_matches, 0);
        // (2 + 0 + 1) / 4 = 0.75.
        assert!((got.total - 0.75).abs() < 1e-12);
    }

    fn wanted_title<'a>(name: &'a str, category: &'a str) -> Wanted<'a> {
        Wanted {
            query: "some query",
            product_category: category,
            name,
            attributes: &[],
            option_values: &[],
            price_upper: 100.0,
        }
    }

    #[test]
    fn r_type_half_when_nothing_but_a_weak_title_overlap() {
        // Wanted nouns {alpha, bravo, charlie, delta, echo}; bought shares "alpha": 1/5 = 0.2,
        // not above 0.2; query differs; categories share only "Home" -> r_type 0.5.
        let wanted = wanted_title("alpha bravo charlie delta echo", "Home › Kitchen");
        let p = product("alpha widget", "other query", "Home › Garden", 10.0);
        let got = reward(&p, &[], &wanted);
        assert!((got.title_score - 0.2).abs() < 1e-12);
        assert!(!got.query_match && !got.category_match);
        assert!((got.r_type - 0.5).abs() < 1e-12);
        // Price point only: 1 / 1 * 0.5.
        assert!((got.total - 0.5).abs() < 1e-12);

        // A category sharing two levels (spacing around › ignored) restores 1.0.
        let p = product("alpha widget", "other query", "Home›Kitchen › Knives", 10.0);
        let got = reward(&p, &[], &wanted);
        assert!(got.category_match);
        assert!((got.r_type - 1.0).abs() < 1e-12);
    }

    #[test]
    fn r_type_tenth_when_title_overlap_is_tiny() {
        // 11 wanted nouns, 1 shared: 1/11 = 0.0909 < 0.1 -> 0.1, even with the query matching.
        let wanted = wanted_title(
            "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo",
            "Home › Kitchen",
        );
        let p = product("kilo widget", "some query", "Home › Kitchen", 10.0);
        let got = reward(&p, &[], &wanted);
        assert!(got.query_match && got.category_match);
        assert!((got.r_type - 0.1).abs() < 1e-12);
        assert!((got.total - 0.1).abs() < 1e-12);
    }

    #[test]
    fn r_type_zero_when_no_title_noun_is_shared() {
        let wanted = wanted_title("Tea Tree Body Scrub", CATEGORY);
        let p = product(
            "Wireless Bluetooth Headphones",
            "some query",
            CATEGORY,
            10.0,
        );
        let got = reward(&p, &[], &wanted);
        assert!(got.title_score.abs() < 1e-12);
        assert!(got.r_type.abs() < 1e-12);
        assert!(got.total.abs() < 1e-12);
    }

    #[test]
    fn wanted_title_without_nouns_scores_point_two() {
        // "New Black XL" has no nouns -> title score 0.2: 1.0 with a query match, else 0.5.
        let wanted = wanted_title("New Black XL", "A › B");
        let got = reward(&product("anything", "some query", "C", 1.0), &[], &wanted);
        assert!((got.title_score - 0.2).abs() < 1e-12);
        assert!((got.r_type - 1.0).abs() < 1e-12);
        let got = reward(&product("anything", "other", "C", 1.0), &[], &wanted);
        assert!((got.r_type - 0.5).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn token_set_ratio_bounded_and_symmetric(a in "\\PC{0,30}", b in "\\PC{0,30}") {
            let forward = token_set_ratio(&a, &b);
            prop_assert!(forward <= 100);
            prop_assert_eq!(forward, token_set_ratio(&b, &a));
        }

        #[test]
        fn token_set_ratio_ascii_words(a in "[a-z ,.-]{0,30}", b in "[a-z ,.-]{0,30}") {
            prop_assert_eq!(token_set_ratio(&a, &b), token_set_ratio(&b, &a));
        }

        #[test]
        fn token_set_ratio_self_is_100(s in "\\PC{0,30}") {
            let expected = if s.chars().any(char::is_alphanumeric) { 100 } else { 0 };
            prop_assert_eq!(token_set_ratio(&s, &s), expected);
        }

        #[test]
        fn reward_stays_in_unit_interval(
            name in "\\PC{0,20}",
            wanted_name in "[a-z ]{0,20}",
            query in "[a-c]{0,2}",
            wanted_query in "[a-c]{0,2}",
            category in "[a-c› ]{0,8}",
            wanted_category in "[a-c› ]{0,8}",
            bullets in proptest::collection::vec("\\PC{0,15}", 0..3),
            description in "\\PC{0,20}",
            attributes in proptest::collection::vec("[a-z ]{0,10}", 0..4),
            wanted_attributes in proptest::collection::vec("\\PC{0,10}", 0..4),
            chosen in proptest::collection::vec("[a-z ]{0,8}", 0..3),
            wanted_options in proptest::collection::vec("\\PC{0,8}", 0..3),
            price in -1.0e6f64..1.0e6,
            price_upper in -1.0e6f64..1.0e6,
        ) {
            let mut p = product(&name, &query, &category, price);
            p.bullets = bullets;
            p.description = description;
            p.attributes = attributes;
            let wanted = Wanted {
                query: &wanted_query,
                product_category: &wanted_category,
                name: &wanted_name,
                attributes: &wanted_attributes,
                option_values: &wanted_options,
                price_upper,
            };
            let got = reward(&p, &chosen, &wanted);
            prop_assert!((0.0..=1.0).contains(&got.total));
            prop_assert!((0.0..=1.0).contains(&got.title_score));
            prop_assert!(got.attribute_matches <= wanted_attributes.len());
            prop_assert!(got.option_matches <= wanted_options.len());
        }
    }
}
