//! A seeded synthetic WebShop catalogue, built from vocabulary in this file alone.
//!
//! The real WebShop product data cannot be downloaded here, so [`generate`] invents a
//! catalogue in the same shape: products spread evenly over WebShop's five categories
//! (`fashion`, `makeup`, `electronics`, `furniture`, `food`), eight product types per
//! category, each type with its own search query, a three- or four-level breadcrumb, option
//! names with value pools, and the attribute phrases of the category's pool that suit it
//! (see [`attribute_pool`]).
//!
//! Every product gets an id (`S` and nine upper-case letters or digits, unique in the
//! catalogue), a title made of an invented brand, one or two descriptive words, the type and
//! sometimes a feature phrase, a two- or three-sentence description and three to five
//! bullets that mention its attributes, a price (four in five a single price, the rest a range
//! with the engine's price drawn in it once), one or two options with two to five values
//! each, and two to four attributes. About 70% of the products carry an [`Instruction`]: a
//! lower-case request written from the type and one to three of the product's attributes,
//! without a trailing full stop (so goal builders can append option and price clauses).
//!
//! The design makes goals need a real shopping episode: an instruction never names the
//! brand or the id, so the product must be found by searching its description; many products
//! of one type compete with different attributes, options and prices, so the agent has to
//! read the item page, choose the right options and check the price.
//!
//! Determinism: the catalogue is a pure function of `(products, seed)`, and every product
//! depends only on the seed, its position and (for its id, should a draw collide) the ids
//! before it, so `generate(k, seed)` is exactly the first `k` products of
//! `generate(n, seed)` for any `k <= n` (a prefix property). Different seeds give
//! unrelated catalogues. Generation is linear in the number of products (ids stay unique
//! through a hash set of those already issued).

use std::collections::HashSet;

use super::catalogue::{Catalogue, Instruction, Product};
use crate::rng::Rng;

/// The seed of the default synthetic catalogue.
pub const DEFAULT_SEED: u64 = 20_220_704;

/// The number of products in the default synthetic catalogue.
pub const DEFAULT_PRODUCTS: usize = 1000;

/// The five WebShop categories the generator fills: every run of five consecutive products
/// (positions `5b..5b+5`) holds each of them once, in a seeded order.
pub const CATEGORIES: [&str; 5] = ["fashion", "makeup", "electronics", "furniture", "food"];

/// Share of products that carry an instruction.
const INSTRUCTION_SHARE: f64 = 0.7;
/// Share of products whose price is a range rather than a single value.
const RANGE_SHARE: f64 = 0.2;
/// Share of products that list only one option (when the type has two).
const SINGLE_OPTION_SHARE: f64 = 0.3;

/// Stream tags, so the per-product, per-block and id streams never overlap.
const PRODUCT_STREAM: u64 = 0x5052_4F44;
const BLOCK_STREAM: u64 = 0x424C_4F43;
const ASIN_STREAM: u64 = 0x4153_494E;

/// The characters of an id after its leading `S`.
const ASIN_ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// The number of ids of nine characters (36^9).
const ASIN_SPACE: u64 = 101_559_956_668_416;

/// An option name with the values a product of the type may offer.
struct OptionPool {
    name: &'static str,
    values: &'static [&'static str],
}

/// One kind of product inside a category.
struct ProductType {
    /// The search phrase the product was "scraped" for.
    query: &'static str,
    /// The short noun used in prose.
    noun: &'static str,
    /// How `noun` and `query` take articles and verbs.
    number: Number,
    /// The attributes of the category pool that suit this type (at least four).
    attributes: &'static [&'static str],
    /// The breadcrumb, levels joined by ` › `.
    breadcrumb: &'static str,
    /// The option pools, in display order.
    options: &'static [OptionPool],
}

/// The grammatical number of a product noun.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Number {
    /// `a bookshelf ... is`.
    Singular,
    /// `sneakers ... are`.
    Plural,
    /// `granola ... is`, with no article.
    Mass,
}

impl Number {
    /// The verb `to be` agreeing with the noun.
    fn be(self) -> &'static str {
        match self {
            Number::Plural => "are",
            Number::Singular | Number::Mass => "is",
        }
    }

    /// The subject pronoun for the noun.
    fn pronoun(self) -> &'static str {
        match self {
            Number::Plural => "they",
            Number::Singular | Number::Mass => "it",
        }
    }
}

/// Everything the generator knows about one category.
struct CategorySpec {
    name: &'static str,
    /// Price bounds in cents (inclusive).
    price_cents: (u64, u64),
    brands: &'static [&'static str],
    adjectives: &'static [&'static str],
    features: &'static [&'static str],
    attributes: &'static [&'static str],
    /// Description sentences after "It is" / "They are".
    uses: &'static [&'static str],
    /// Bullet endings after "ATTRIBUTE: ".
    bullet_tails: &'static [&'static str],
    /// Bullets that mention no attribute.
    extra_bullets: &'static [&'static str],
    types: &'static [ProductType],
}

// ---------------------------------------------------------------------------------------------
// Shared option value pools.

const APPAREL_COLORS: &[&str] = &[
    "black",
    "white",
    "navy blue",
    "heather grey",
    "olive green",
    "burgundy",
    "black/white",
    "charcoal",
    "sand beige",
    "dusty rose",
    "royal blue",
    "red/black",
];
const APPAREL_SIZES: &[&str] = &[
    "x-small", "small", "medium", "large", "x-large", "xx-large", "3x-large",
];
const MEN_SHOE_SIZES: &[&str] = &[
    "7", "7.5", "8", "8.5", "9", "9.5", "10", "10.5", "11", "12", "13",
];
const WOMEN_SHOE_SIZES: &[&str] = &["5", "5.5", "6", "6.5", "7", "7.5", "8", "8.5", "9", "10"];
const PANT_SIZES: &[&str] = &[
    "30w x 30l",
    "30w x 32l",
    "32w x 30l",
    "32w x 32l",
    "34w x 32l",
    "36w x 32l",
    "38w x 34l",
];
const HAT_SIZES: &[&str] = &[
    "one size",
    "small/medium",
    "large/x-large",
    "youth",
    "adult",
];

const LIP_SHADES: &[&str] = &[
    "ruby red",
    "nude beige",
    "berry",
    "coral",
    "mauve",
    "dusty pink",
    "brick red",
    "plum",
    "rosewood",
];
const FACE_SHADES: &[&str] = &[
    "porcelain",
    "ivory",
    "light beige",
    "natural",
    "warm sand",
    "golden tan",
    "caramel",
    "espresso",
    "deep cocoa",
];
const NAIL_COLORS: &[&str] = &[
    "classic red",
    "ballet pink",
    "navy",
    "glitter silver",
    "mint",
    "lavender",
    "black/gold",
];

const DEVICE_COLORS: &[&str] = &[
    "black",
    "white",
    "space gray",
    "silver",
    "midnight blue",
    "rose gold",
    "red",
    "black/red",
];

const WOOD_FINISHES: &[&str] = &[
    "walnut",
    "rustic brown",
    "white",
    "black",
    "natural oak",
    "espresso",
    "gray/white",
    "teak",
];
const FABRIC_COLORS: &[&str] = &[
    "charcoal gray",
    "navy blue",
    "cream",
    "emerald green",
    "mustard yellow",
    "blush pink",
    "beige/white",
];

// ---------------------------------------------------------------------------------------------
// Fashion.

const FASHION_TYPES: &[ProductType] = &[
    ProductType {
        query: "men's running sneakers",
        noun: "running sneakers",
        number: Number::Plural,
        attributes: &[
            "breathable",
            "lightweight",
            "non slip",
            "machine washable",
            "water resistant",
            "quick drying",
            "moisture wicking",
        ],
        breadcrumb: "Clothing, Shoes & Jewelry › Men › Shoes › Athletic",
        options: &[
            OptionPool {
                name: "color",
                values: APPAREL_COLORS,
            },
            OptionPool {
                name: "size",
                values: MEN_SHOE_SIZES,
            },
        ],
    },
    ProductType {
        query: "women's pullover hoodie",
        noun: "pullover hoodie",
        number: Number::Singular,
        attributes: &[
            "machine washable",
            "relaxed fit",
            "tagless",
            "fade resistant",
            "breathable",
            "lightweight",
            "stretchy",
        ],
        breadcrumb: "Clothing, Shoes & Jewelry › Women › Clothing › Hoodies & Sweatshirts",
        options: &[
            OptionPool {
                name: "color",
                values: APPAREL_COLORS,
            },
            OptionPool {
                name: "size",
                values: APPAREL_SIZES,
            },
        ],
    },
    ProductType {
        query: "women's high waist yoga leggings",
        noun: "yoga leggings",
        number: Number::Plural,
        attributes: &[
            "stretchy",
            "moisture wicking",
            "quick drying",
            "breathable",
            "machine washable",
            "lightweight",
            "tagless",
        ],
        breadcrumb: "Clothing, Shoes & Jewelry › Women › Clothing › Active",
        options: &[
            OptionPool {
                name: "color",
                values: APPAREL_COLORS,
            },
            OptionPool {
                name: "size",
                values: APPAREL_SIZES,
            },
        ],
    },
    ProductType {
        query: "men's slim fit chino pants",
        noun: "chino pants",
        number: Number::Plural,
        attributes: &[
            "wrinkle resistant",
            "stretchy",
            "machine washable",
            "fade resistant",
            "relaxed fit",
            "lightweight",
            "breathable",
        ],
        breadcrumb: "Clothing, Shoes & Jewelry › Men › Clothing › Pants",
        options: &[
            OptionPool {
                name: "color",
                values: APPAREL_COLORS,
            },
            OptionPool {
                name: "size",
                values: PANT_SIZES,
            },
        ],
    },
    ProductType {
        query: "women's ankle rain boots",
        noun: "rain boots",
        number: Number::Plural,
        attributes: &[
            "water resistant",
            "non slip",
            "lightweight",
            "quick drying",
            "fade resistant",
        ],
        breadcrumb: "Clothing, Shoes & Jewelry › Women › Shoes › Boots",
        options: &[
            OptionPool {
                name: "color",
                values: APPAREL_COLORS,
            },
            OptionPool {
                name: "size",
                values: WOMEN_SHOE_SIZES,
            },
        ],
    },
    ProductType {
        query: "men's crew neck t-shirt",
        noun: "crew neck t-shirt",
        number: Number::Singular,
        attributes: &[
            "machine washable",
            "tagless",
            "breathable",
            "relaxed fit",
            "fade resistant",
            "moisture wicking",
            "wrinkle resistant",
        ],
        breadcrumb: "Clothing, Shoes & Jewelry › Men › Clothing › Shirts",
        options: &[
            OptionPool {
                name: "color",
                values: APPAREL_COLORS,
            },
            OptionPool {
                name: "size",
                values: APPAREL_SIZES,
            },
        ],
    },
    ProductType {
        query: "unisex knit beanie hat",
        noun: "knit beanie",
        number: Number::Singular,
        attributes: &[
            "machine washable",
            "stretchy",
            "water resistant",
            "fade resistant",
            "lightweight",
            "breathable",
        ],
        breadcrumb: "Clothing, Shoes & Jewelry › Accessories › Hats & Caps",
        options: &[
            OptionPool {
                name: "color",
                values: APPAREL_COLORS,
            },
            OptionPool {
                name: "size",
                values: HAT_SIZES,
            },
        ],
    },
    ProductType {
        query: "women's wrap midi dress",
        noun: "wrap dress",
        number: Number::Singular,
        attributes: &[
            "wrinkle resistant",
            "machine washable",
            "lightweight",
            "breathable",
            "stretchy",
            "relaxed fit",
            "fade resistant",
        ],
        breadcrumb: "Clothing, Shoes & Jewelry › Women › Clothing › Dresses",
        options: &[
            OptionPool {
                name: "color",
                values: APPAREL_COLORS,
            },
            OptionPool {
                name: "size",
                values: APPAREL_SIZES,
            },
        ],
    },
];

const FASHION: CategorySpec = CategorySpec {
    name: "fashion",
    price_cents: (999, 8999),
    brands: &[
        "Tarvenne",
        "Moxbury",
        "Quellin",
        "Brisko",
        "Varrow",
        "Lumetta",
        "Orrindale",
        "Fennick",
        "Corvane",
        "Sallowby",
    ],
    adjectives: &[
        "Classic",
        "Lightweight",
        "Everyday",
        "Vintage",
        "Athletic",
        "Casual",
        "Cozy",
        "Modern",
        "Essential",
        "Premium",
    ],
    features: &[
        "Breathable Mesh",
        "Soft Cotton Blend",
        "Ribbed Cuffs",
        "Cushioned Insole",
        "Hidden Pocket",
        "Reinforced Seams",
        "Brushed Fleece Lining",
    ],
    attributes: &[
        "machine washable",
        "quick drying",
        "moisture wicking",
        "breathable",
        "stretchy",
        "wrinkle resistant",
        "water resistant",
        "non slip",
        "lightweight",
        "relaxed fit",
        "tagless",
        "fade resistant",
    ],
    uses: &[
        "made for daily wear and weekend trips",
        "cut for an easy, flattering fit",
        "designed to layer well in any season",
        "a dependable pick for workouts and errands",
        "finished with care down to the stitching",
    ],
    bullet_tails: &[
        "stays comfortable from morning to night",
        "holds its shape after many washes",
        "made for everyday wear and travel",
        "pairs easily with the rest of your wardrobe",
        "tested for durability in daily use",
    ],
    extra_bullets: &[
        "Easy care: follow the label for best results",
        "True to size; see the size chart for measurements",
        "Imported",
        "Backed by a 60-day return window",
        "Packed in a recyclable mailer",
    ],
    types: FASHION_TYPES,
};

// ---------------------------------------------------------------------------------------------
// Makeup.

const MAKEUP_TYPES: &[ProductType] = &[
    ProductType {
        query: "long wear liquid lipstick",
        noun: "liquid lipstick",
        number: Number::Singular,
        attributes: &[
            "long lasting",
            "cruelty free",
            "paraben free",
            "vegan",
            "waterproof",
            "smudge proof",
            "highly pigmented",
            "fragrance free",
        ],
        breadcrumb: "Beauty & Personal Care › Makeup › Lips › Lipstick",
        options: &[
            OptionPool {
                name: "color",
                values: LIP_SHADES,
            },
            OptionPool {
                name: "size",
                values: &[
                    "0.1 fl oz",
                    "0.15 fl oz",
                    "0.2 fl oz",
                    "pack of 2",
                    "pack of 3",
                ],
            },
        ],
    },
    ProductType {
        query: "matte foundation for oily skin",
        noun: "liquid foundation",
        number: Number::Singular,
        attributes: &[
            "long lasting",
            "oil free",
            "non comedogenic",
            "fragrance free",
            "dermatologist tested",
            "cruelty free",
            "hypoallergenic",
            "paraben free",
        ],
        breadcrumb: "Beauty & Personal Care › Makeup › Face › Foundation",
        options: &[
            OptionPool {
                name: "shade",
                values: FACE_SHADES,
            },
            OptionPool {
                name: "size",
                values: &[
                    "0.5 fl oz",
                    "1 fl oz",
                    "1.35 fl oz",
                    "2 fl oz",
                    "travel size",
                ],
            },
        ],
    },
    ProductType {
        query: "volumizing mascara",
        noun: "mascara",
        number: Number::Singular,
        attributes: &[
            "waterproof",
            "smudge proof",
            "long lasting",
            "cruelty free",
            "hypoallergenic",
            "dermatologist tested",
            "paraben free",
        ],
        breadcrumb: "Beauty & Personal Care › Makeup › Eyes › Mascara",
        options: &[
            OptionPool {
                name: "color",
                values: &["black", "brown/black", "brown", "navy", "clear"],
            },
            OptionPool {
                name: "size",
                values: &["mini", "0.27 fl oz", "0.35 fl oz", "pack of 2"],
            },
        ],
    },
    ProductType {
        query: "eyeshadow palette",
        noun: "eyeshadow palette",
        number: Number::Singular,
        attributes: &[
            "highly pigmented",
            "long lasting",
            "cruelty free",
            "vegan",
            "paraben free",
            "smudge proof",
        ],
        breadcrumb: "Beauty & Personal Care › Makeup › Eyes › Eyeshadow",
        options: &[
            OptionPool {
                name: "style",
                values: &[
                    "warm neutrals",
                    "cool neutrals",
                    "smoky",
                    "sunset",
                    "rose gold",
                    "jewel tones",
                ],
            },
            OptionPool {
                name: "size",
                values: &["9 shades", "12 shades", "18 shades", "35 shades"],
            },
        ],
    },
    ProductType {
        query: "loose setting powder",
        noun: "setting powder",
        number: Number::Mass,
        attributes: &[
            "oil free",
            "non comedogenic",
            "fragrance free",
            "cruelty free",
            "long lasting",
            "vegan",
            "hypoallergenic",
        ],
        breadcrumb: "Beauty & Personal Care › Makeup › Face › Powder",
        options: &[
            OptionPool {
                name: "shade",
                values: FACE_SHADES,
            },
            OptionPool {
                name: "size",
                values: &["0.35 oz", "0.5 oz", "1 oz", "1 oz (pack of 2)"],
            },
        ],
    },
    ProductType {
        query: "nail polish set",
        noun: "nail polish set",
        number: Number::Singular,
        attributes: &[
            "long lasting",
            "cruelty free",
            "vegan",
            "highly pigmented",
            "smudge proof",
        ],
        breadcrumb: "Beauty & Personal Care › Foot, Hand & Nail Care › Nail Polish",
        options: &[
            OptionPool {
                name: "color",
                values: NAIL_COLORS,
            },
            OptionPool {
                name: "size",
                values: &["0.5 fl oz", "set of 3", "set of 6", "set of 12"],
            },
        ],
    },
    ProductType {
        query: "makeup brush set",
        noun: "makeup brush set",
        number: Number::Singular,
        attributes: &["cruelty free", "vegan", "hypoallergenic", "long lasting"],
        breadcrumb: "Beauty & Personal Care › Tools & Accessories › Makeup Brushes",
        options: &[
            OptionPool {
                name: "color",
                values: &["black", "rose gold", "white/gold", "pink", "marble"],
            },
            OptionPool {
                name: "size",
                values: &["5 pieces", "10 pieces", "14 pieces", "18 pieces"],
            },
        ],
    },
    ProductType {
        query: "tinted lip balm",
        noun: "lip balm",
        number: Number::Singular,
        attributes: &[
            "fragrance free",
            "paraben free",
            "vegan",
            "cruelty free",
            "hypoallergenic",
            "long lasting",
            "dermatologist tested",
        ],
        breadcrumb: "Beauty & Personal Care › Makeup › Lips › Lip Balms",
        options: &[
            OptionPool {
                name: "color",
                values: LIP_SHADES,
            },
            OptionPool {
                name: "size",
                values: &["0.15 oz", "pack of 2", "pack of 4", "pack of 6"],
            },
        ],
    },
];

const MAKEUP: CategorySpec = CategorySpec {
    name: "makeup",
    price_cents: (499, 4999),
    brands: &[
        "Aurelle",
        "Misoria",
        "Calvenne",
        "Petalux",
        "Orchae",
        "Lunavie",
        "Zerelle",
        "Bellamoor",
        "Ciravo",
        "Sunelle",
    ],
    adjectives: &[
        "Velvet",
        "Matte",
        "Satin",
        "Radiant",
        "Luminous",
        "Sheer",
        "Bold",
        "Soft Focus",
        "Weightless",
        "Silky",
    ],
    features: &[
        "Buildable Coverage",
        "With Vitamin E",
        "Precision Applicator",
        "Blendable Formula",
        "Mirror Compact Included",
        "Shea Butter Infused",
    ],
    attributes: &[
        "long lasting",
        "cruelty free",
        "paraben free",
        "vegan",
        "waterproof",
        "smudge proof",
        "fragrance free",
        "hypoallergenic",
        "oil free",
        "dermatologist tested",
        "non comedogenic",
        "highly pigmented",
    ],
    uses: &[
        "made to look fresh from morning meetings to late dinners",
        "easy to apply even in a hurry",
        "a favourite for everyday and special-occasion looks",
        "small enough to carry in any bag",
        "formulated to feel light on the skin",
    ],
    bullet_tails: &[
        "applies smoothly in a single pass",
        "wears comfortably all day",
        "suits a wide range of skin tones",
        "gentle enough for sensitive skin",
        "easy to blend and build",
    ],
    extra_bullets: &[
        "Store in a cool, dry place",
        "For external use only",
        "Comes sealed for hygiene",
        "Made in small batches",
        "Arrives in a giftable box",
    ],
    types: MAKEUP_TYPES,
};

// ---------------------------------------------------------------------------------------------
// Electronics.

const ELECTRONICS_TYPES: &[ProductType] = &[
    ProductType {
        query: "wireless earbuds",
        noun: "earbuds",
        number: Number::Plural,
        attributes: &[
            "noise cancelling",
            "water resistant",
            "long battery life",
            "bluetooth 5.3",
            "usb c",
            "fast charging",
            "compact",
            "wireless",
        ],
        breadcrumb: "Electronics › Headphones, Earbuds & Accessories › Earbud Headphones",
        options: &[
            OptionPool {
                name: "color",
                values: DEVICE_COLORS,
            },
            OptionPool {
                name: "style",
                values: &[
                    "standard",
                    "with wireless charging case",
                    "sport edition",
                    "noise cancelling edition",
                ],
            },
        ],
    },
    ProductType {
        query: "portable bluetooth speaker",
        noun: "bluetooth speaker",
        number: Number::Singular,
        attributes: &[
            "water resistant",
            "long battery life",
            "bluetooth 5.3",
            "shockproof",
            "usb c",
            "compact",
            "wireless",
        ],
        breadcrumb: "Electronics › Portable Audio & Video › Portable Speakers",
        options: &[
            OptionPool {
                name: "color",
                values: DEVICE_COLORS,
            },
            OptionPool {
                name: "style",
                values: &["mini", "standard", "max", "with carry strap"],
            },
        ],
    },
    ProductType {
        query: "usb c wall charger",
        noun: "wall charger",
        number: Number::Singular,
        attributes: &[
            "fast charging",
            "usb c",
            "compact",
            "energy efficient",
            "plug and play",
        ],
        breadcrumb: "Electronics › Computers & Accessories › Chargers & Adapters",
        options: &[
            OptionPool {
                name: "color",
                values: &["white", "black", "space gray", "blue/white"],
            },
            OptionPool {
                name: "style",
                values: &[
                    "20w single port",
                    "30w dual port",
                    "45w dual port",
                    "65w 3-port",
                    "100w 4-port",
                ],
            },
        ],
    },
    ProductType {
        query: "portable external ssd",
        noun: "external ssd",
        number: Number::Singular,
        attributes: &[
            "usb c",
            "shockproof",
            "compact",
            "plug and play",
            "energy efficient",
        ],
        breadcrumb: "Electronics › Computers & Accessories › Data Storage › External Drives",
        options: &[
            OptionPool {
                name: "color",
                values: DEVICE_COLORS,
            },
            OptionPool {
                name: "capacity",
                values: &["250gb", "500gb", "1tb", "2tb", "4tb"],
            },
        ],
    },
    ProductType {
        query: "portable power bank",
        noun: "power bank",
        number: Number::Singular,
        attributes: &[
            "fast charging",
            "usb c",
            "compact",
            "shockproof",
            "energy efficient",
        ],
        breadcrumb: "Electronics › Cell Phones & Accessories › Portable Power Banks",
        options: &[
            OptionPool {
                name: "color",
                values: DEVICE_COLORS,
            },
            OptionPool {
                name: "capacity",
                values: &["5000mah", "10000mah", "20000mah", "26800mah"],
            },
        ],
    },
    ProductType {
        query: "wireless gaming mouse",
        noun: "gaming mouse",
        number: Number::Singular,
        attributes: &[
            "wireless",
            "long battery life",
            "plug and play",
            "usb c",
            "compact",
            "bluetooth 5.3",
        ],
        breadcrumb: "Electronics › Computer Accessories › Mice › Gaming Mice",
        options: &[
            OptionPool {
                name: "color",
                values: DEVICE_COLORS,
            },
            OptionPool {
                name: "style",
                values: &[
                    "wired",
                    "wireless",
                    "wireless/bluetooth",
                    "ergonomic",
                    "ambidextrous",
                ],
            },
        ],
    },
    ProductType {
        query: "fitness smart watch",
        noun: "smart watch",
        number: Number::Singular,
        attributes: &[
            "water resistant",
            "long battery life",
            "bluetooth 5.3",
            "fast charging",
            "shockproof",
            "compact",
        ],
        breadcrumb: "Electronics › Wearable Technology › Smartwatches",
        options: &[
            OptionPool {
                name: "color",
                values: DEVICE_COLORS,
            },
            OptionPool {
                name: "size",
                values: &["40mm", "41mm", "44mm", "45mm"],
            },
        ],
    },
    ProductType {
        query: "4k hdmi cable",
        noun: "hdmi cable",
        number: Number::Singular,
        attributes: &[
            "high definition",
            "plug and play",
            "tangle free",
            "gold plated",
        ],
        breadcrumb: "Electronics › Accessories & Supplies › Audio & Video Accessories › Cables",
        options: &[
            OptionPool {
                name: "size",
                values: &["3 ft", "6 ft", "10 ft", "15 ft", "25 ft"],
            },
            OptionPool {
                name: "style",
                values: &["single", "2 pack", "3 pack", "5 pack"],
            },
        ],
    },
];

const ELECTRONICS: CategorySpec = CategorySpec {
    name: "electronics",
    price_cents: (1499, 29999),
    brands: &[
        "Voltrix", "Kintari", "Zenvolt", "Ampero", "Qubrik", "Noxten", "Helvio", "Trionyx",
        "Sparvik", "Lumeno",
    ],
    adjectives: &[
        "Compact",
        "Ultra Slim",
        "Pro",
        "Rugged",
        "Smart",
        "High Speed",
        "Portable",
        "Next Gen",
        "Dual Mode",
        "Studio",
    ],
    features: &[
        "Built-in Microphone",
        "LED Indicator",
        "Braided Cable",
        "Travel Pouch Included",
        "Low Latency Mode",
        "Auto Sleep",
    ],
    attributes: &[
        "fast charging",
        "noise cancelling",
        "tangle free",
        "gold plated",
        "water resistant",
        "long battery life",
        "bluetooth 5.3",
        "usb c",
        "high definition",
        "compact",
        "shockproof",
        "plug and play",
        "energy efficient",
        "wireless",
    ],
    uses: &[
        "set up in minutes with no extra software",
        "built for commutes, offices and travel",
        "a solid upgrade for a home or work setup",
        "designed to keep up with busy days",
        "made to work with phones, tablets and laptops",
    ],
    bullet_tails: &[
        "pairs in seconds with phones, tablets and laptops",
        "built to handle daily commutes and travel",
        "tested for reliable performance over thousands of cycles",
        "keeps working on the go",
        "runs cool even under heavy use",
    ],
    extra_bullets: &[
        "Includes a quick start guide",
        "Covered by an 18-month limited warranty",
        "Compatible with most modern devices",
        "Ships with a reusable storage box",
        "Firmware updates available from the maker",
    ],
    types: ELECTRONICS_TYPES,
};

// ---------------------------------------------------------------------------------------------
// Furniture.

const FURNITURE_TYPES: &[ProductType] = &[
    ProductType {
        query: "5 tier bookshelf",
        noun: "bookshelf",
        number: Number::Singular,
        attributes: &[
            "easy to assemble",
            "solid wood",
            "space saving",
            "heavy duty",
            "anti tip",
            "sturdy",
            "tool free",
            "scratch resistant",
        ],
        breadcrumb: "Home & Kitchen › Furniture › Home Office Furniture › Bookcases",
        options: &[
            OptionPool {
                name: "color",
                values: WOOD_FINISHES,
            },
            OptionPool {
                name: "size",
                values: &["3 tier", "4 tier", "5 tier", "6 tier"],
            },
        ],
    },
    ProductType {
        query: "tufted accent chair",
        noun: "accent chair",
        number: Number::Singular,
        attributes: &[
            "stain resistant",
            "mid century",
            "sturdy",
            "pet friendly",
            "easy to assemble",
            "solid wood",
        ],
        breadcrumb: "Home & Kitchen › Furniture › Living Room Furniture › Chairs",
        options: &[
            OptionPool {
                name: "color",
                values: FABRIC_COLORS,
            },
            OptionPool {
                name: "size",
                values: &["standard", "oversized", "set of 2", "with ottoman"],
            },
        ],
    },
    ProductType {
        query: "round coffee table",
        noun: "coffee table",
        number: Number::Singular,
        attributes: &[
            "solid wood",
            "scratch resistant",
            "water resistant",
            "mid century",
            "easy to assemble",
            "sturdy",
            "space saving",
        ],
        breadcrumb: "Home & Kitchen › Furniture › Living Room Furniture › Tables",
        options: &[
            OptionPool {
                name: "color",
                values: WOOD_FINISHES,
            },
            OptionPool {
                name: "size",
                values: &["31.5 inch", "36 inch", "40 inch", "47 inch"],
            },
        ],
    },
    ProductType {
        query: "platform bed frame",
        noun: "bed frame",
        number: Number::Singular,
        attributes: &[
            "solid wood",
            "heavy duty",
            "easy to assemble",
            "sturdy",
            "tool free",
            "space saving",
            "mid century",
        ],
        breadcrumb: "Home & Kitchen › Furniture › Bedroom Furniture › Beds & Frames",
        options: &[
            OptionPool {
                name: "color",
                values: WOOD_FINISHES,
            },
            OptionPool {
                name: "size",
                values: &["twin", "full", "queen", "king", "california king"],
            },
        ],
    },
    ProductType {
        query: "ergonomic office chair",
        noun: "office chair",
        number: Number::Singular,
        attributes: &[
            "heavy duty",
            "easy to assemble",
            "stain resistant",
            "sturdy",
            "tool free",
        ],
        breadcrumb: "Home & Kitchen › Furniture › Home Office Furniture › Desk Chairs",
        options: &[
            OptionPool {
                name: "color",
                values: &["black", "gray", "white/gray", "blue", "beige"],
            },
            OptionPool {
                name: "style",
                values: &[
                    "mid back",
                    "high back",
                    "with footrest",
                    "with headrest",
                    "armless",
                ],
            },
        ],
    },
    ProductType {
        query: "bedside nightstand",
        noun: "nightstand",
        number: Number::Singular,
        attributes: &[
            "solid wood",
            "easy to assemble",
            "space saving",
            "scratch resistant",
            "mid century",
            "anti tip",
            "water resistant",
        ],
        breadcrumb: "Home & Kitchen › Furniture › Bedroom Furniture › Nightstands",
        options: &[
            OptionPool {
                name: "color",
                values: WOOD_FINISHES,
            },
            OptionPool {
                name: "size",
                values: &["1 drawer", "2 drawers", "3 drawers", "set of 2"],
            },
        ],
    },
    ProductType {
        query: "tv stand for living room",
        noun: "tv stand",
        number: Number::Singular,
        attributes: &[
            "anti tip",
            "heavy duty",
            "solid wood",
            "easy to assemble",
            "scratch resistant",
            "mid century",
            "sturdy",
        ],
        breadcrumb: "Home & Kitchen › Furniture › Living Room Furniture › TV & Media Furniture",
        options: &[
            OptionPool {
                name: "color",
                values: WOOD_FINISHES,
            },
            OptionPool {
                name: "size",
                values: &[
                    "up to 50 inch tvs",
                    "up to 55 inch tvs",
                    "up to 65 inch tvs",
                    "up to 75 inch tvs",
                ],
            },
        ],
    },
    ProductType {
        query: "storage ottoman bench",
        noun: "storage ottoman",
        number: Number::Singular,
        attributes: &[
            "stain resistant",
            "pet friendly",
            "space saving",
            "sturdy",
            "easy to assemble",
            "water resistant",
        ],
        breadcrumb: "Home & Kitchen › Furniture › Living Room Furniture › Ottomans",
        options: &[
            OptionPool {
                name: "color",
                values: FABRIC_COLORS,
            },
            OptionPool {
                name: "size",
                values: &["small", "medium", "large", "extra long"],
            },
        ],
    },
];

const FURNITURE: CategorySpec = CategorySpec {
    name: "furniture",
    price_cents: (2999, 59999),
    brands: &[
        "Brennvik",
        "Dalmora",
        "Hestwood",
        "Kolvani",
        "Marrowby",
        "Tindale",
        "Ulverstan",
        "Fjorvik",
        "Casmerel",
        "Rookmere",
    ],
    adjectives: &[
        "Modern",
        "Rustic",
        "Farmhouse",
        "Minimalist",
        "Industrial",
        "Scandinavian",
        "Mid-Century",
        "Classic",
        "Contemporary",
        "Compact",
    ],
    features: &[
        "Metal Frame",
        "With Storage Drawers",
        "Adjustable Shelves",
        "Upholstered in Linen",
        "Cable Management",
        "Felt Floor Protectors",
    ],
    attributes: &[
        "easy to assemble",
        "solid wood",
        "space saving",
        "heavy duty",
        "scratch resistant",
        "mid century",
        "stain resistant",
        "anti tip",
        "water resistant",
        "sturdy",
        "pet friendly",
        "tool free",
    ],
    uses: &[
        "sized for apartments as well as family homes",
        "built to anchor a living room or bedroom",
        "made to hold up to years of daily use",
        "easy to move when you rearrange a room",
        "finished to match most home decor",
    ],
    bullet_tails: &[
        "holds up to everyday family use",
        "fits neatly into smaller rooms",
        "arrives with numbered parts and clear instructions",
        "wipes clean with a damp cloth",
        "complements most home decor styles",
    ],
    extra_bullets: &[
        "All hardware included",
        "Check the dimensions before ordering",
        "Ships in one box",
        "Some assembly required",
        "Designed for indoor use",
    ],
    types: FURNITURE_TYPES,
};

// ---------------------------------------------------------------------------------------------
// Food.

const FOOD_TYPES: &[ProductType] = &[
    ProductType {
        query: "protein snack bars",
        noun: "snack bars",
        number: Number::Plural,
        attributes: &[
            "gluten free",
            "non gmo",
            "low sugar",
            "high protein",
            "keto friendly",
            "vegan",
            "dairy free",
            "individually wrapped",
            "kosher",
        ],
        breadcrumb: "Grocery & Gourmet Food › Snacks & Sweets › Snack Bars › Protein Bars",
        options: &[
            OptionPool {
                name: "flavor",
                values: &[
                    "chocolate peanut butter",
                    "cookies & cream",
                    "salted caramel",
                    "almond coconut",
                    "blueberry/vanilla",
                ],
            },
            OptionPool {
                name: "size",
                values: &[
                    "12 count",
                    "24 count",
                    "12 count (pack of 2)",
                    "1.76 ounce (pack of 12)",
                ],
            },
        ],
    },
    ProductType {
        query: "medium roast ground coffee",
        noun: "ground coffee",
        number: Number::Mass,
        attributes: &["organic", "non gmo", "kosher", "vegan", "gluten free"],
        breadcrumb: "Grocery & Gourmet Food › Beverages › Coffee › Ground Coffee",
        options: &[
            OptionPool {
                name: "flavor",
                values: &[
                    "house blend",
                    "french vanilla",
                    "hazelnut",
                    "dark roast",
                    "decaf",
                ],
            },
            OptionPool {
                name: "size",
                values: &["12 ounce", "12 ounce (pack of 2)", "24 ounce", "2 pound"],
            },
        ],
    },
    ProductType {
        query: "green tea bags",
        noun: "green tea bags",
        number: Number::Plural,
        attributes: &[
            "organic",
            "non gmo",
            "caffeine free",
            "kosher",
            "sugar free",
            "vegan",
            "gluten free",
            "individually wrapped",
        ],
        breadcrumb: "Grocery & Gourmet Food › Beverages › Tea › Green Tea",
        options: &[
            OptionPool {
                name: "flavor",
                values: &["jasmine", "mint", "lemon ginger", "matcha", "peach/mango"],
            },
            OptionPool {
                name: "size",
                values: &["20 count", "40 count", "100 count", "20 count (pack of 6)"],
            },
        ],
    },
    ProductType {
        query: "roasted mixed nuts",
        noun: "mixed nuts",
        number: Number::Plural,
        attributes: &[
            "non gmo",
            "low sodium",
            "keto friendly",
            "vegan",
            "kosher",
            "gluten free",
            "high protein",
            "organic",
        ],
        breadcrumb: "Grocery & Gourmet Food › Snacks & Sweets › Nuts & Seeds",
        options: &[
            OptionPool {
                name: "flavor",
                values: &[
                    "lightly salted",
                    "unsalted",
                    "honey roasted",
                    "sea salt & pepper",
                    "smoked",
                ],
            },
            OptionPool {
                name: "size",
                values: &["8 ounce", "16 ounce", "1.5 pound", "2.5 ounce (pack of 12)"],
            },
        ],
    },
    ProductType {
        query: "dark chocolate bar",
        noun: "chocolate bar",
        number: Number::Singular,
        attributes: &[
            "vegan",
            "organic",
            "dairy free",
            "non gmo",
            "kosher",
            "low sugar",
            "keto friendly",
            "gluten free",
        ],
        breadcrumb: "Grocery & Gourmet Food › Snacks & Sweets › Chocolate › Bars",
        options: &[
            OptionPool {
                name: "flavor",
                values: &["72% cacao", "sea salt", "orange", "raspberry", "almond"],
            },
            OptionPool {
                name: "size",
                values: &["3 ounce", "3 ounce (pack of 4)", "3.5 ounce (pack of 12)"],
            },
        ],
    },
    ProductType {
        query: "marinara pasta sauce",
        noun: "pasta sauce",
        number: Number::Mass,
        attributes: &[
            "low sodium",
            "sugar free",
            "organic",
            "non gmo",
            "gluten free",
            "vegan",
            "keto friendly",
            "kosher",
        ],
        breadcrumb: "Grocery & Gourmet Food › Pantry Staples › Sauces › Pasta Sauces",
        options: &[
            OptionPool {
                name: "flavor",
                values: &[
                    "marinara",
                    "tomato basil",
                    "roasted garlic",
                    "arrabbiata",
                    "vodka",
                ],
            },
            OptionPool {
                name: "size",
                values: &[
                    "24 ounce",
                    "24 ounce (pack of 2)",
                    "24 ounce (pack of 6)",
                    "32 ounce",
                ],
            },
        ],
    },
    ProductType {
        query: "crunchy granola cereal",
        noun: "granola",
        number: Number::Mass,
        attributes: &[
            "gluten free",
            "non gmo",
            "low sugar",
            "organic",
            "vegan",
            "kosher",
            "dairy free",
            "high protein",
        ],
        breadcrumb: "Grocery & Gourmet Food › Breakfast Foods › Cereals › Granola",
        options: &[
            OptionPool {
                name: "flavor",
                values: &[
                    "honey almond",
                    "maple pecan",
                    "cinnamon raisin",
                    "dark chocolate",
                    "mixed berry",
                ],
            },
            OptionPool {
                name: "size",
                values: &["11 ounce", "12 ounce (pack of 2)", "16 ounce", "32 ounce"],
            },
        ],
    },
    ProductType {
        query: "beef jerky",
        noun: "beef jerky",
        number: Number::Mass,
        attributes: &[
            "high protein",
            "low sugar",
            "keto friendly",
            "gluten free",
            "low sodium",
            "non gmo",
            "individually wrapped",
        ],
        breadcrumb: "Grocery & Gourmet Food › Snacks & Sweets › Jerky & Dried Meats",
        options: &[
            OptionPool {
                name: "flavor",
                values: &[
                    "original",
                    "teriyaki",
                    "peppered",
                    "sweet & spicy",
                    "hickory smoked",
                ],
            },
            OptionPool {
                name: "size",
                values: &[
                    "2.85 ounce",
                    "3.25 ounce (pack of 4)",
                    "10 ounce",
                    "2.5 ounce (pack of 8)",
                ],
            },
        ],
    },
];

const FOOD: CategorySpec = CategorySpec {
    name: "food",
    price_cents: (399, 5999),
    brands: &[
        "Harvella",
        "Graindale",
        "Pemberdine",
        "Tovarra",
        "Nutmere",
        "Solvana",
        "Brambury",
        "Oastfield",
        "Kelloran",
        "Wyndmoor",
    ],
    adjectives: &[
        "Artisan",
        "Hearty",
        "Crunchy",
        "Small Batch",
        "Gourmet",
        "Wholesome",
        "Rich",
        "Classic",
        "Bold",
        "Farm Fresh",
    ],
    features: &[
        "Resealable Bag",
        "Family Size",
        "Single Serve Packs",
        "Made with Real Fruit",
        "Slow Roasted",
        "Stone Ground",
    ],
    attributes: &[
        "gluten free",
        "non gmo",
        "low sugar",
        "high protein",
        "keto friendly",
        "vegan",
        "organic",
        "kosher",
        "dairy free",
        "low sodium",
        "sugar free",
        "individually wrapped",
        "caffeine free",
    ],
    uses: &[
        "a pantry staple for busy weeks",
        "great for lunch boxes, desks and road trips",
        "made from carefully sourced ingredients",
        "easy to share with the whole family",
        "packed fresh to keep its flavor",
    ],
    bullet_tails: &[
        "tastes great straight from the pack",
        "made with simple, recognisable ingredients",
        "fits easily into a balanced diet",
        "packed to stay fresh for longer",
        "a crowd pleaser at home or at work",
    ],
    extra_bullets: &[
        "Store in a cool, dry place",
        "Produced in a facility that also handles tree nuts",
        "Best before date printed on the pack",
        "Recyclable packaging",
        "Satisfaction guaranteed or your money back",
    ],
    types: FOOD_TYPES,
};

/// The category specifications, in [`CATEGORIES`] order.
const SPECS: [&CategorySpec; 5] = [&FASHION, &MAKEUP, &ELECTRONICS, &FURNITURE, &FOOD];

// ---------------------------------------------------------------------------------------------
// Generation.

/// Generates a catalogue of `products` products from `seed`.
///
/// Pure and deterministic: the same `(products, seed)` always gives the same catalogue, and
/// `generate(k, seed).products` equals the first `k` products of `generate(n, seed)` for every
/// `k <= n`. Categories are balanced: in every run of five consecutive products each category
/// appears once, in a seeded order. Runs in time linear in `products`.
pub fn generate(products: usize, seed: u64) -> Catalogue {
    let mut issued: HashSet<u64> = HashSet::with_capacity(products);
    let mut order = [0usize, 1, 2, 3, 4];
    let mut out = Vec::with_capacity(products);
    for index in 0..products {
        let slot = index % SPECS.len();
        if slot == 0 {
            order = [0, 1, 2, 3, 4];
            let block = (index / SPECS.len()) as u64;
            Rng::from_parts(&[seed, BLOCK_STREAM, block]).shuffle(&mut order);
        }
        let spec = SPECS[order[slot]];
        let asin = fresh_asin(seed, index as u64, &mut issued);
        let mut rng = Rng::from_parts(&[seed, PRODUCT_STREAM, index as u64]);
        out.push(build_product(&mut rng, spec, asin));
    }
    Catalogue { products: out }
}

/// The attribute vocabulary of one synthetic category (every attribute a product of that
/// category can carry), or an empty slice for a category the generator does not know.
pub fn attribute_pool(category: &str) -> &'static [&'static str] {
    SPECS
        .iter()
        .find(|spec| spec.name == category)
        .map_or(&[], |spec| spec.attributes)
}

/// A product id not issued yet: `S` and nine characters of [`ASIN_ALPHABET`].
fn fresh_asin(seed: u64, index: u64, issued: &mut HashSet<u64>) -> String {
    let mut rng = Rng::from_parts(&[seed, ASIN_STREAM, index]);
    let mut code = rng.below(ASIN_SPACE);
    while !issued.insert(code) {
        code = rng.below(ASIN_SPACE);
    }
    let mut digits = [b'0'; 9];
    for digit in digits.iter_mut().rev() {
        *digit = ASIN_ALPHABET[(code % 36) as usize];
        code /= 36;
    }
    let mut asin = String::with_capacity(10);
    asin.push('S');
    asin.extend(digits.iter().map(|&b| char::from(b)));
    asin
}

/// One product of `spec`, every choice drawn from `rng`.
fn build_product(rng: &mut Rng, spec: &CategorySpec, asin: String) -> Product {
    let kind = &spec.types[rng.index(spec.types.len())];
    let brand = spec.brands[rng.index(spec.brands.len())];

    let attribute_count = 2 + rng.index(3);
    let attributes: Vec<&'static str> = rng
        .sample_indices(kind.attributes.len(), attribute_count)
        .into_iter()
        .map(|i| kind.attributes[i])
        .collect();

    let name = title(rng, spec, kind, brand, &attributes);
    let options = options(rng, kind);
    let first_option = options.first().map_or("option", |(name, _)| name.as_str());
    let description = description(rng, spec, kind, brand, &attributes, first_option);
    let bullets = bullets(rng, spec, &attributes);
    let (price, price_text) = price(rng, spec.price_cents);
    let instruction = if rng.unit_f64() < INSTRUCTION_SHARE {
        Some(instruction(rng, kind, &attributes))
    } else {
        None
    };

    Product {
        asin,
        name,
        category: spec.name.to_string(),
        query: kind.query.to_string(),
        product_category: kind.breadcrumb.to_string(),
        description,
        bullets,
        price,
        price_text,
        options,
        attributes: attributes.iter().map(|a| (*a).to_string()).collect(),
        instruction,
    }
}

/// `Brand Adjective [Adjective] Query In Title Case[, Feature]`.
fn title(
    rng: &mut Rng,
    spec: &CategorySpec,
    kind: &ProductType,
    brand: &str,
    attributes: &[&str],
) -> String {
    // Descriptive words the query does not already contain ("Matte Matte Foundation").
    let candidates: Vec<&str> = spec
        .adjectives
        .iter()
        .copied()
        .filter(|adjective| !contains_ignore_case(kind.query, adjective))
        .collect();
    let count = 1 + rng.index(2);
    let mut name = String::from(brand);
    for i in rng.sample_indices(candidates.len(), count) {
        name.push(' ');
        name.push_str(candidates[i]);
    }
    name.push(' ');
    name.push_str(&title_case(kind.query));
    let roll = rng.unit_f64();
    if roll < 0.25 {
        name.push_str(", ");
        name.push_str(spec.features[rng.index(spec.features.len())]);
    } else if roll < 0.45 {
        let attribute = attributes[rng.index(attributes.len())];
        if !contains_ignore_case(kind.query, attribute) {
            name.push_str(", ");
            name.push_str(&title_case(attribute));
        }
    }
    name
}

/// Two or three sentences; the first names one or two attributes, a third names the rest
/// or invites a choice of the product's first option.
fn description(
    rng: &mut Rng,
    spec: &CategorySpec,
    kind: &ProductType,
    brand: &str,
    attributes: &[&str],
    first_option: &str,
) -> String {
    let (this, pronoun) = match kind.number {
        Number::Plural => ("These", "They"),
        Number::Singular | Number::Mass => ("This", "It"),
    };
    let be = kind.number.be();
    let shown = 1 + rng.index(attributes.len().min(2));
    let mut text = format!(
        "{this} {brand} {} {be} {}. {pronoun} {be} {}.",
        kind.noun,
        join_and(&attributes[..shown]),
        spec.uses[rng.index(spec.uses.len())]
    );
    if rng.unit_f64() < 0.6 {
        let rest = &attributes[shown..];
        if rest.is_empty() {
            text.push_str(" Pick the ");
            text.push_str(first_option);
            text.push_str(" that suits you best at checkout.");
        } else {
            text.push_str(" Shoppers also like that ");
            text.push_str(kind.number.pronoun());
            text.push(' ');
            text.push_str(be);
            text.push(' ');
            text.push_str(&join_and(rest));
            text.push('.');
        }
    }
    text
}

/// One bullet per attribute plus general bullets, three to five in all, shuffled.
fn bullets(rng: &mut Rng, spec: &CategorySpec, attributes: &[&str]) -> Vec<String> {
    let least = attributes.len().max(3);
    let total = least + rng.index(5 - least + 1);
    let mut out: Vec<String> = attributes
        .iter()
        .map(|attribute| {
            format!(
                "{}: {}",
                attribute.to_uppercase(),
                spec.bullet_tails[rng.index(spec.bullet_tails.len())]
            )
        })
        .collect();
    for i in rng.sample_indices(spec.extra_bullets.len(), total - attributes.len()) {
        out.push(spec.extra_bullets[i].to_string());
    }
    rng.shuffle(&mut out);
    out
}

/// A price in cents in `bounds`, snapped to `.99` more often than not.
fn draw_cents(rng: &mut Rng, (low, high): (u64, u64)) -> u64 {
    let cents = low + rng.below(high - low + 1);
    let snapped = cents / 100 * 100 + 99;
    if rng.unit_f64() < 0.6 && snapped <= high {
        snapped
    } else {
        cents
    }
}

/// `$12.34` for 1234 cents.
fn dollars(cents: u64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

/// The engine price and the displayed price text.
fn price(rng: &mut Rng, bounds: (u64, u64)) -> (f64, String) {
    let low = draw_cents(rng, bounds);
    if rng.unit_f64() >= RANGE_SHARE {
        return (low as f64 / 100.0, dollars(low));
    }
    // A range: the upper end 10% to 60% above the lower, at least a dollar more.
    let width = ((low as f64) * (0.1 + 0.5 * rng.unit_f64())).round() as u64;
    let high = low + width.max(100);
    let drawn = low + rng.below(high - low + 1);
    (
        drawn as f64 / 100.0,
        format!("{} to {}", dollars(low), dollars(high)),
    )
}

/// One or two option names with two to five distinct values each, in pool order.
fn options(rng: &mut Rng, kind: &ProductType) -> Vec<(String, Vec<String>)> {
    let pools: Vec<&OptionPool> = if kind.options.len() > 1 && rng.unit_f64() < SINGLE_OPTION_SHARE
    {
        vec![&kind.options[rng.index(kind.options.len())]]
    } else {
        kind.options.iter().take(2).collect()
    };
    pools
        .into_iter()
        .map(|pool| {
            let count = 2 + rng.index(4);
            let mut picked = rng.sample_indices(pool.values.len(), count);
            picked.sort_unstable();
            let values = picked
                .into_iter()
                .map(|i| option_value(pool.values[i]))
                .collect();
            (pool.name.to_string(), values)
        })
        .collect()
}

/// The data's convention for option values: lower case, `/` written ` | `.
fn option_value(raw: &str) -> String {
    if raw.chars().any(|c| c == '/' || c.is_uppercase()) {
        raw.to_lowercase().replace('/', " | ")
    } else {
        raw.to_string()
    }
}

/// A request for the product type with one to three of the product's attributes.
fn instruction(rng: &mut Rng, kind: &ProductType, attributes: &[&str]) -> Instruction {
    let count = 1 + rng.index(attributes.len().min(3));
    let mut wanted: Vec<&str> = rng
        .sample_indices(attributes.len(), count)
        .into_iter()
        .map(|i| attributes[i])
        .collect();
    // Keep the product's attribute order, so equal subsets read the same.
    wanted.sort_by_key(|w| attributes.iter().position(|a| a == w));

    let thing = if rng.unit_f64() < 0.6 {
        kind.query
    } else {
        kind.noun
    };
    let be = kind.number.be();
    let all = join_and(&wanted);
    let (first, rest) = match wanted.split_first() {
        Some((first, rest)) => (*first, rest),
        None => ("", &[][..]),
    };
    let rest_clause = if rest.is_empty() {
        String::new()
    } else {
        format!(" that {be} {}", join_and(rest))
    };
    let plain = with_article(thing, kind.number);
    let led = with_article(&format!("{first} {thing}"), kind.number);
    let text = match rng.index(8) {
        0 => format!("i am looking for {plain} that {be} {all}"),
        1 => format!("find me {led}{rest_clause}"),
        2 => format!("i need {led}{rest_clause}"),
        3 => format!("i want to buy {plain} that {be} {all}"),
        4 => {
            let pronoun = kind.number.pronoun();
            format!("can you help me find {plain}? {pronoun} should be {all}")
        }
        5 => {
            if rest.is_empty() {
                format!("i'd like {led}")
            } else {
                format!("i'd like {led}, preferably {}", join_and(rest))
            }
        }
        6 => format!("show me {plain} that {be} {all}"),
        _ => format!("i'm shopping for {led}{rest_clause}"),
    };
    Instruction {
        text,
        attributes: wanted.iter().map(|a| (*a).to_string()).collect(),
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// `phrase` with `a`/`an` in front when singular, unchanged otherwise.
fn with_article(phrase: &str, number: Number) -> String {
    if number != Number::Singular {
        return phrase.to_string();
    }
    let lower = phrase.to_lowercase();
    let vowel_sound = match lower.as_bytes().first() {
        Some(b'a' | b'e' | b'i' | b'o') => true,
        Some(b'u') => !(lower.starts_with("usb") || lower.starts_with("uni")),
        Some(b'8') => true,
        Some(b'1') => lower.starts_with("11") || lower.starts_with("18"),
        _ => false,
    };
    let article = if vowel_sound { "an" } else { "a" };
    format!("{article} {phrase}")
}

/// Whether `haystack` contains `needle`, ignoring ASCII case (no allocation).
fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    !needle.is_empty()
        && haystack
            .as_bytes()
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}

/// Words written in capitals in titles.
const ACRONYMS: &[&str] = &["usb", "hdmi", "ssd", "tv", "4k", "gmo"];

/// Words left in lower case inside titles.
const MINOR_WORDS: &[&str] = &["and", "for", "in", "of", "with", "to"];

/// Upper-cases the first letter of every space-separated word (acronyms entirely, minor
/// words after the first not at all).
fn title_case(phrase: &str) -> String {
    phrase
        .split(' ')
        .enumerate()
        .map(|(position, word)| {
            if ACRONYMS.contains(&word) {
                return word.to_uppercase();
            }
            if position > 0 && MINOR_WORDS.contains(&word) {
                return word.to_string();
            }
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert, proptest};
    use std::collections::HashMap;
    use std::time::Instant;

    fn spec_of(category: &str) -> Option<&'static CategorySpec> {
        SPECS.iter().copied().find(|spec| spec.name == category)
    }

    /// Parses `$12.34` into cents.
    fn parse_cents(text: &str) -> Result<u64, String> {
        let digits = text
            .strip_prefix('$')
            .ok_or_else(|| format!("no dollar sign in {text:?}"))?;
        let (whole, fraction) = digits
            .split_once('.')
            .ok_or_else(|| format!("no cents in {text:?}"))?;
        if fraction.len() != 2 {
            return Err(format!("not two decimals in {text:?}"));
        }
        let whole: u64 = whole.parse().map_err(|e| format!("{text:?}: {e}"))?;
        let fraction: u64 = fraction.parse().map_err(|e| format!("{text:?}: {e}"))?;
        Ok(whole * 100 + fraction)
    }

    /// Every per-product invariant, and id uniqueness over the catalogue.
    fn check(catalogue: &Catalogue) -> Result<(), String> {
        let mut asins = HashSet::new();
        for product in &catalogue.products {
            let id = &product.asin;
            let err = |what: &str| Err(format!("{id}: {what}: {product:?}"));
            if !asins.insert(id.clone()) {
                return err("duplicate asin");
            }
            if id.len() != 10
                || !id.starts_with('S')
                || !id[1..]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            {
                return err("malformed asin");
            }
            let Some(spec) = spec_of(&product.category) else {
                return err("unknown category");
            };
            let Some(kind) = spec.types.iter().find(|t| t.query == product.query) else {
                return err("query of no type in the category");
            };
            if product.product_category != kind.breadcrumb {
                return err("breadcrumb");
            }
            let levels = product.product_category.split(" › ").count();
            if !(3..=4).contains(&levels) {
                return err("breadcrumb depth");
            }
            let brand = product.name.split(' ').next().unwrap_or_default();
            if !spec.brands.contains(&brand) {
                return err("title does not start with a brand");
            }
            let sentences = product.description.matches(". ").count() + 1;
            if !(2..=3).contains(&sentences) || !product.description.ends_with('.') {
                return err("description sentences");
            }
            if !product
                .attributes
                .iter()
                .any(|a| product.description.contains(a.as_str()))
            {
                return err("description mentions no attribute");
            }
            if !(3..=5).contains(&product.bullets.len()) {
                return err("bullet count");
            }
            // Attributes: 2-4 distinct phrases of the category, each with its own bullet.
            let distinct: HashSet<&String> = product.attributes.iter().collect();
            if !(2..=4).contains(&product.attributes.len())
                || distinct.len() != product.attributes.len()
            {
                return err("attribute count");
            }
            for attribute in &product.attributes {
                if !kind.attributes.contains(&attribute.as_str())
                    || !attribute_pool(&product.category).contains(&attribute.as_str())
                {
                    return err("attribute outside the type's pool");
                }
                let heading = format!("{}: ", attribute.to_uppercase());
                if !product.bullets.iter().any(|b| b.starts_with(&heading)) {
                    return err("attribute without a bullet");
                }
            }
            // Price: positive, inside what the page shows.
            if !product.price.is_finite() || product.price <= 0.0 {
                return err("price not positive");
            }
            if let Some((low, high)) = product.price_text.split_once(" to ") {
                let (low, high) = (parse_cents(low)?, parse_cents(high)?);
                let cents = (product.price * 100.0).round() as u64;
                if low >= high || cents < low || cents > high {
                    return err("price outside its range");
                }
            } else {
                let cents = parse_cents(&product.price_text)?;
                if cents as f64 / 100.0 != product.price {
                    return err("price differs from its text");
                }
            }
            // Options: 1-2 distinct names, 2-5 distinct clean values each.
            if !(1..=2).contains(&product.options.len()) {
                return err("option count");
            }
            if product.options.len() == 2 && product.options[0].0 == product.options[1].0 {
                return err("repeated option name");
            }
            for (name, values) in &product.options {
                if name.is_empty() || *name != name.to_lowercase() {
                    return err("option name");
                }
                let distinct: HashSet<&String> = values.iter().collect();
                if !(2..=5).contains(&values.len()) || distinct.len() != values.len() {
                    return err("option value count");
                }
                for value in values {
                    if value.is_empty() || *value != value.to_lowercase() || value.contains('/') {
                        return err("option value not clean");
                    }
                }
            }
            // Instruction: 1-3 of the product's attributes, all named, no brand or id.
            if let Some(instruction) = &product.instruction {
                let text = &instruction.text;
                let distinct: HashSet<&String> = instruction.attributes.iter().collect();
                if !(1..=3).contains(&instruction.attributes.len())
                    || distinct.len() != instruction.attributes.len()
                {
                    return err("instruction attribute count");
                }
                for attribute in &instruction.attributes {
                    if !product.attributes.contains(attribute) {
                        return err("instruction attribute not the product's");
                    }
                    if !text.contains(attribute.as_str()) {
                        return err("instruction text misses an attribute");
                    }
                }
                if text.is_empty() || *text != text.to_lowercase() {
                    return err("instruction text not lower case");
                }
                if text.contains(&brand.to_lowercase()) || text.contains(&id.to_lowercase()) {
                    return err("instruction text names the brand or id");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn vocabulary_is_well_formed() {
        for spec in SPECS {
            assert!((6..=10).contains(&spec.types.len()), "{}", spec.name);
            assert!((8..=15).contains(&spec.attributes.len()), "{}", spec.name);
            assert!(spec.extra_bullets.len() >= 3, "{}", spec.name);
            assert!(spec.price_cents.0 > 0 && spec.price_cents.0 < spec.price_cents.1);
            for brand in spec.brands {
                assert!(!brand.contains(' '), "{brand}");
            }
            for kind in spec.types {
                assert!((3..=4).contains(&kind.breadcrumb.split(" › ").count()));
                assert!(!kind.options.is_empty() && kind.options.len() <= 2);
                assert!(kind.attributes.len() >= 4, "{}", kind.query);
                let distinct: HashSet<&&str> = kind.attributes.iter().collect();
                assert_eq!(distinct.len(), kind.attributes.len(), "{}", kind.query);
                for attribute in kind.attributes {
                    assert!(spec.attributes.contains(attribute), "{attribute}");
                }
                for pool in kind.options {
                    let distinct: HashSet<&&str> = pool.values.iter().collect();
                    assert!(pool.values.len() >= 2, "{}", pool.name);
                    assert_eq!(distinct.len(), pool.values.len(), "{}", pool.name);
                }
            }
        }
        // Brand names never occur inside the words instructions are made of.
        for spec in SPECS {
            for brand in spec.brands {
                let brand = brand.to_lowercase();
                for other in SPECS {
                    for kind in other.types {
                        assert!(!kind.query.contains(&brand) && !kind.noun.contains(&brand));
                    }
                    assert!(other.attributes.iter().all(|a| !a.contains(&brand)));
                }
            }
        }
    }

    #[test]
    fn same_inputs_give_the_same_catalogue() {
        let a = generate(500, 9);
        let b = generate(500, 9);
        assert_eq!(a, b);
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a, generate(500, 10));
        assert_eq!(generate(0, 9).products.len(), 0);
    }

    #[test]
    fn smaller_catalogues_are_prefixes() {
        let long = generate(300, 4);
        let short = generate(123, 4);
        assert_eq!(short.products[..], long.products[..123]);
    }

    #[test]
    fn default_catalogue_is_valid() {
        let catalogue = generate(DEFAULT_PRODUCTS, DEFAULT_SEED);
        assert_eq!(catalogue.products.len(), DEFAULT_PRODUCTS);
        check(&catalogue).unwrap();
    }

    #[test]
    fn ten_thousand_products_are_valid_balanced_and_unique() {
        let n = 10_000;
        let catalogue = generate(n, 1);
        check(&catalogue).unwrap();
        let asins: HashSet<&str> = catalogue.products.iter().map(|p| p.asin.as_str()).collect();
        assert_eq!(asins.len(), n);

        let mut per_category: HashMap<&str, usize> = HashMap::new();
        for product in &catalogue.products {
            *per_category.entry(product.category.as_str()).or_default() += 1;
        }
        assert_eq!(per_category.len(), CATEGORIES.len());
        for category in CATEGORIES {
            assert_eq!(
                per_category.get(category),
                Some(&(n / 5)),
                "{per_category:?}"
            );
        }

        let with_instruction = catalogue
            .products
            .iter()
            .filter(|p| p.instruction.is_some())
            .count();
        let share = with_instruction as f64 / n as f64;
        assert!((0.66..=0.74).contains(&share), "{share}");

        let ranges = catalogue
            .products
            .iter()
            .filter(|p| p.price_text.contains(" to "))
            .count();
        let share = ranges as f64 / n as f64;
        assert!((0.17..=0.23).contains(&share), "{share}");

        // Products of one type compete: every type occurs many times, with varied prices.
        let mut per_query: HashMap<&str, Vec<f64>> = HashMap::new();
        for product in &catalogue.products {
            per_query
                .entry(product.query.as_str())
                .or_default()
                .push(product.price);
        }
        assert_eq!(
            per_query.len(),
            SPECS.iter().map(|s| s.types.len()).sum::<usize>()
        );
        for prices in per_query.values() {
            assert!(prices.len() > 100);
            assert!(prices.iter().any(|&p| p != prices[0]));
        }
        // Some option values went through the `/` convention.
        assert!(catalogue.products.iter().any(|p| {
            p.options
                .iter()
                .any(|(_, values)| values.iter().any(|v| v.contains(" | ")))
        }));
    }

    #[test]
    fn twenty_thousand_products_generate_quickly() {
        let start = Instant::now();
        let catalogue = generate(20_000, DEFAULT_SEED);
        let elapsed = start.elapsed();
        assert_eq!(catalogue.products.len(), 20_000);
        assert!(elapsed.as_secs() < 10, "{elapsed:?}");
    }

    /// About 6 s in a debug build, so opt-in: `cargo test --release -- --ignored`.
    #[test]
    #[ignore = "slow in debug builds"]
    fn hundred_thousand_products_have_unique_ids() {
        let start = Instant::now();
        let catalogue = generate(100_000, DEFAULT_SEED);
        println!("generated 100000 products in {:?}", start.elapsed());
        let asins: HashSet<&str> = catalogue.products.iter().map(|p| p.asin.as_str()).collect();
        assert_eq!(asins.len(), 100_000);
    }

    #[test]
    fn helpers_read_naturally() {
        assert_eq!(join_and(&["a"]), "a");
        assert_eq!(join_and(&["a", "b"]), "a and b");
        assert_eq!(join_and(&["a", "b", "c"]), "a, b and c");
        assert_eq!(
            with_article("oval mirror", Number::Singular),
            "an oval mirror"
        );
        assert_eq!(
            with_article("organic granola", Number::Mass),
            "organic granola"
        );
        assert_eq!(
            with_article("usb c wall charger", Number::Singular),
            "a usb c wall charger"
        );
        assert_eq!(with_article("mixed nuts", Number::Plural), "mixed nuts");
        assert_eq!(
            title_case("men's crew neck t-shirt"),
            "Men's Crew Neck T-shirt"
        );
        assert_eq!(title_case("usb c wall charger"), "USB C Wall Charger");
        assert_eq!(
            title_case("tv stand for living room"),
            "TV Stand for Living Room"
        );
        assert_eq!(title_case("easy to assemble"), "Easy to Assemble");
        assert_eq!(option_value("Black/White"), "black | white");
        assert!(contains_ignore_case(
            "matte foundation for oily skin",
            "Matte"
        ));
        assert!(!contains_ignore_case("matte", "Matte Finish"));
        assert_eq!(dollars(1299), "$12.99");
        assert_eq!(dollars(500), "$5.00");
        assert!(attribute_pool("food").contains(&"gluten free"));
        assert!(attribute_pool("garden").is_empty());
    }

    proptest! {
        #[test]
        fn invariants_hold_for_any_seed(products in 0usize..60, seed in any::<u64>()) {
            let catalogue = generate(products, seed);
            prop_assert!(catalogue.products.len() == products);
            let checked = check(&catalogue);
            prop_assert!(checked.is_ok(), "{:?}", checked);
        }
    }
}
