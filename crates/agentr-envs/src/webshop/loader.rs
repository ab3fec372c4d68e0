//! Reading the original WebShop data files into a [`Catalogue`].
//!
//! WebShop ships its catalogue as two JSON files, and this module reads both:
//!
//! * **Products** (`items_shuffle*.json`): an array of objects, one per product. Only `asin` is
//!   required; the loader reads `name` (the title), `category`, `query`, `product_category`
//!   (the breadcrumb, levels joined by ` › `), `full_description` (a string or null),
//!   `small_description` (the bullet points: an array of strings, one string, or null),
//!   `pricing` (a string such as `$12.99`, `$10.00 - $20.00` or `$10.00$20.00`; null, empty or
//!   absent for no price; an array of such strings counts as its first one) and
//!   `customization_options` (an object from option name to an array of
//!   `{"value": ..., "image": ...}`; null or `{}` for none). Every other field (images,
//!   reviews, ratings, ...) is skipped.
//! * **Attributes** (`items_ins_v2*.json`): an object from asin to
//!   `{"attributes": [...], "instruction": "...", "instruction_attributes": [...]}`, the last two
//!   optional.
//!
//! The loader follows the original engine's rules:
//!
//! * Entries without an asin are dropped, and so is every later entry whose asin was already
//!   seen; the catalogue keeps the data's order otherwise.
//! * The price comes from the numbers after each `$` of the pricing string (each piece keeps
//!   only its digits and dots; a piece that is still not a number is passed over). With no
//!   number the price is 100.0, shown as `$100.0`. With one, the price is that number, shown as
//!   the pricing string (trimmed). With two or more, the product has a price range: the first two
//!   numbers bound it, the price used is drawn uniformly inside it once, from a generator seeded
//!   by the loader's seed ([`DEFAULT_PRICE_SEED`] unless given) and the entry's position in the
//!   array, and it is shown as `$a to $b` with two decimals.
//! * Option names are lowercased; option values are trimmed, have `/` written as ` | ` and are
//!   lowercased. Empty values are dropped and options left without values are left out;
//!   otherwise the data's order is kept.
//! * `name`, `category` and `query` are trimmed; bullet points are trimmed and empty ones
//!   dropped; a missing or null text field reads as `""`.
//! * A product's attributes are the attributes file's list for its asin (none if the file
//!   has no entry for it). It gets an [`Instruction`] only when its entry has both an
//!   instruction text and a non-empty `instruction_attributes` list. Entries for asins the
//!   catalogue lacks are ignored.
//!
//! A file that does not have this shape (the top level not an array or object, an asin that is
//! not a string, a field of the wrong type) is an error naming the offending entry, never a
//! panic. Products are counted from 0 in the array in these messages.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::catalogue::{Catalogue, Instruction, Product};
use crate::error::EnvError;
use crate::rng::Rng;

/// The seed [`load`] draws range prices with. Changing it changes the price of every product
/// with a price range, and with it goals and rewards.
pub const DEFAULT_PRICE_SEED: u64 = 233;

/// The products file's name starts with this (and ends with `.json`).
const PRODUCTS_PREFIX: &str = "items_shuffle";
/// The attributes file's name starts with this (and ends with `.json`).
const ATTRIBUTES_PREFIX: &str = "items_ins_v2";
/// Products files up to this size are read into memory whole (parsing from memory is
/// several times faster than from a stream); larger ones are streamed.
const IN_MEMORY_LIMIT: u64 = 1 << 30;
/// What [`EnvError::MissingAssets`] says is missing.
const WHAT: &str = "WebShop product data";

/// Reads a catalogue from the products and attributes files, drawing range prices with
/// [`DEFAULT_PRICE_SEED`].
///
/// # Errors
///
/// [`EnvError::MissingAssets`] if a file does not exist, [`EnvError::Io`] if it cannot be
/// read, [`EnvError::BadData`] if it does not have the WebShop schema.
pub fn load(products: &Path, attributes: &Path) -> Result<Catalogue, EnvError> {
    load_with_seed(products, attributes, DEFAULT_PRICE_SEED)
}

/// Reads a catalogue from the products and attributes files, drawing range prices with `seed`.
///
/// A products file larger than 1 GiB is streamed (more slowly), so that memory holds the
/// catalogue but never the whole file.
///
/// # Errors
///
/// As [`load`].
pub fn load_with_seed(
    products: &Path,
    attributes: &Path,
    seed: u64,
) -> Result<Catalogue, EnvError> {
    let mut list = read_products(products, seed, IN_MEMORY_LIMIT)?;
    let text = std::fs::read_to_string(attributes).map_err(|e| open_error(attributes, e))?;
    apply_attributes(&mut list, &text)
        .map_err(|message| EnvError::bad_data(attributes, message))?;
    Ok(Catalogue { products: list })
}

/// Sets each product's attributes and instruction from the text of an attributes file
/// (`items_ins_v2*.json`), replacing what the products had: a product the file has no entry
/// for ends up with no attributes and no instruction.
///
/// # Errors
///
/// A message saying what is wrong and where, if the text is not JSON of the attributes schema;
/// the products are then left unchanged.
pub(crate) fn apply_attributes(products: &mut [Product], text: &str) -> Result<(), String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("attributes file is not valid JSON: {e}"))?;
    let Value::Object(entries) = value else {
        return Err(format!(
            "attributes file: the top level is {}, expected an object mapping asins to entries",
            kind(&value)
        ));
    };
    let mut parsed: HashMap<String, (Vec<String>, Option<Instruction>)> =
        HashMap::with_capacity(entries.len());
    for (asin, entry) in entries {
        let parsed_entry = attribute_entry(&entry).map_err(|m| format!("asin {asin}: {m}"))?;
        parsed.insert(asin, parsed_entry);
    }
    for product in products {
        match parsed.get(&product.asin) {
            Some((attributes, instruction)) => {
                product.attributes.clone_from(attributes);
                product.instruction.clone_from(instruction);
            }
            None => {
                product.attributes.clear();
                product.instruction = None;
            }
        }
    }
    Ok(())
}

/// Finds the products file (`items_shuffle*.json`) and the attributes file
/// (`items_ins_v2*.json`) in a data folder, in that order. When several names fit, the
/// lexicographically first is taken.
///
/// # Errors
///
/// [`EnvError::MissingAssets`] if the folder does not exist or lacks one of the files,
/// [`EnvError::Io`] if it cannot be listed.
pub fn find_files(dir: &Path) -> Result<(PathBuf, PathBuf), EnvError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(missing(dir, "the folder does not exist"));
        }
        Err(e) => return Err(EnvError::io(dir, e)),
    };
    let mut products: Option<String> = None;
    let mut attributes: Option<String> = None;
    for entry in entries {
        let entry = entry.map_err(|e| EnvError::io(dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.ends_with(".json") || !entry.path().is_file() {
            continue;
        }
        let slot = if name.starts_with(PRODUCTS_PREFIX) {
            &mut products
        } else if name.starts_with(ATTRIBUTES_PREFIX) {
            &mut attributes
        } else {
            continue;
        };
        if slot.as_ref().is_none_or(|current| name < *current) {
            *slot = Some(name);
        }
    }
    match (products, attributes) {
        (Some(products), Some(attributes)) => Ok((dir.join(products), dir.join(attributes))),
        (None, Some(_)) => Err(missing(dir, "there is no products file")),
        (Some(_), None) => Err(missing(dir, "there is no attributes file")),
        (None, None) => Err(missing(
            dir,
            "there are neither products nor attributes files",
        )),
    }
}

/// Reads a products file: whole into memory when it has at most `in_memory_limit` bytes,
/// streamed otherwise.
fn read_products(
    products: &Path,
    seed: u64,
    in_memory_limit: u64,
) -> Result<Vec<Product>, EnvError> {
    let mut file = File::open(products).map_err(|e| open_error(products, e))?;
    let size = file
        .metadata()
        .map_err(|e| EnvError::io(products, e))?
        .len();
    let parsed = if size <= in_memory_limit {
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.read_to_end(&mut bytes)
            .map_err(|e| EnvError::io(products, e))?;
        products_from(serde_json::Deserializer::from_slice(&bytes), seed)
    } else {
        let reader = BufReader::with_capacity(1 << 20, file);
        products_from(serde_json::Deserializer::from_reader(reader), seed)
    };
    parsed.map_err(|e| {
        if e.is_io() {
            EnvError::io(products, e.into())
        } else {
            EnvError::bad_data(products, e.to_string())
        }
    })
}

/// The error for a data folder that lacks a file; `problem` says which.
fn missing(dir: &Path, problem: &str) -> EnvError {
    EnvError::MissingAssets {
        what: WHAT,
        path: dir.to_path_buf(),
        hint: format!(
            "{problem}; the folder needs the original WebShop files {PRODUCTS_PREFIX}*.json \
             (products, e.g. {PRODUCTS_PREFIX}_1000.json) and {ATTRIBUTES_PREFIX}*.json \
             (attributes, e.g. {ATTRIBUTES_PREFIX}_1000.json)"
        ),
    }
}

/// The error for a data file that cannot be opened or read.
fn open_error(path: &Path, error: std::io::Error) -> EnvError {
    if error.kind() == ErrorKind::NotFound {
        EnvError::MissingAssets {
            what: WHAT,
            path: path.to_path_buf(),
            hint: format!(
                "give the original WebShop files {PRODUCTS_PREFIX}*.json (products) and \
                 {ATTRIBUTES_PREFIX}*.json (attributes)"
            ),
        }
    } else {
        EnvError::io(path, error)
    }
}

/// Reads a whole products document from a JSON deserializer (text or a stream).
fn products_from<'de, R: serde_json::de::Read<'de>>(
    mut deserializer: serde_json::Deserializer<R>,
    seed: u64,
) -> serde_json::Result<Vec<Product>> {
    let products = deserializer.deserialize_seq(ProductsVisitor { seed })?;
    deserializer.end()?;
    Ok(products)
}

/// Builds the product list one array element at a time, so that no element's skipped fields
/// (images, reviews, ...) outlive it.
struct ProductsVisitor {
    seed: u64,
}

impl<'de> Visitor<'de> for ProductsVisitor {
    type Value = Vec<Product>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of products (the top level of a WebShop products file)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut products = Vec::new();
        let mut seen = HashSet::new();
        let mut index = 0usize;
        while let Some(entry) = seq.next_element::<RawEntry>()? {
            let position = index;
            index += 1;
            let fields = match entry {
                RawEntry::Object(fields) => *fields,
                RawEntry::Other(found) => {
                    return Err(de::Error::custom(format!(
                        "product {position}: expected an object, found {found}"
                    )));
                }
            };
            let asin = match fields.asin {
                None => continue,
                Some(Value::String(asin)) if asin.is_empty() => continue,
                Some(Value::String(asin)) => asin,
                Some(other) => {
                    return Err(de::Error::custom(format!(
                        "product {position}: asin is {}, expected a string",
                        kind(&other)
                    )));
                }
            };
            if seen.contains(&asin) {
                continue;
            }
            let product =
                build_product(asin, fields.rest, position, self.seed).map_err(de::Error::custom)?;
            seen.insert(product.asin.clone());
            products.push(product);
        }
        Ok(products)
    }
}

/// One element of the products array: an object's fields of interest, or the kind of
/// non-object value found there.
enum RawEntry {
    Object(Box<RawFields>),
    Other(&'static str),
}

/// The fields the loader reads; `None` when absent or null.
#[derive(Default)]
struct RawFields {
    asin: Option<Value>,
    rest: RawRest,
}

/// The fields other than the asin.
#[derive(Default)]
struct RawRest {
    name: Option<Value>,
    category: Option<Value>,
    query: Option<Value>,
    product_category: Option<Value>,
    full_description: Option<Value>,
    small_description: Option<Value>,
    pricing: Option<Value>,
    customization_options: Option<Value>,
}

/// The keys of a product object; everything else is skipped unread.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Key {
    Asin,
    Name,
    Category,
    Query,
    ProductCategory,
    FullDescription,
    SmallDescription,
    Pricing,
    CustomizationOptions,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for RawEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EntryVisitor)
    }
}

/// Accepts any JSON value, keeping the interesting fields of an object and only the kind of
/// anything else (so a wrong element gets a message naming its position).
struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = RawEntry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a product object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Box::<RawFields>::default();
        while let Some(key) = map.next_key::<Key>()? {
            let rest = &mut fields.rest;
            let slot = match key {
                Key::Asin => &mut fields.asin,
                Key::Name => &mut rest.name,
                Key::Category => &mut rest.category,
                Key::Query => &mut rest.query,
                Key::ProductCategory => &mut rest.product_category,
                Key::FullDescription => &mut rest.full_description,
                Key::SmallDescription => &mut rest.small_description,
                Key::Pricing => &mut rest.pricing,
                Key::CustomizationOptions => &mut rest.customization_options,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<Option<Value>>()?;
        }
        Ok(RawEntry::Object(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RawEntry::Other("an array"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(RawEntry::Other("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(RawEntry::Other("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(RawEntry::Other("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(RawEntry::Other("a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(RawEntry::Other("a string"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RawEntry::Other("null"))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RawEntry::Other("null"))
    }
}

/// How a JSON value is named in error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Turns one product's raw fields into a product; `position` is its index in the array.
fn build_product(
    asin: String,
    raw: RawRest,
    position: usize,
    seed: u64,
) -> Result<Product, String> {
    let mut product = Product {
        asin,
        name: String::new(),
        category: String::new(),
        query: String::new(),
        product_category: String::new(),
        description: String::new(),
        bullets: Vec::new(),
        price: 0.0,
        price_text: String::new(),
        options: Vec::new(),
        attributes: Vec::new(),
        instruction: None,
    };
    fill_product(&mut product, raw, position, seed)
        .map_err(|message| format!("product {position} (asin {}): {message}", product.asin))?;
    Ok(product)
}

/// Sets every field of `product` read from the products file.
fn fill_product(
    product: &mut Product,
    raw: RawRest,
    position: usize,
    seed: u64,
) -> Result<(), String> {
    product.name = text_field("name", raw.name)?.trim().to_string();
    product.category = text_field("category", raw.category)?.trim().to_string();
    product.query = text_field("query", raw.query)?.trim().to_string();
    product.product_category = text_field("product_category", raw.product_category)?;
    product.description = text_field("full_description", raw.full_description)?;
    product.bullets = bullets(raw.small_description)?;
    (product.price, product.price_text) = price(raw.pricing, seed, position)?;
    product.options = options(raw.customization_options)?;
    Ok(())
}

/// A text field: a string, or `""` when absent or null.
fn text_field(field: &str, value: Option<Value>) -> Result<String, String> {
    match value {
        None => Ok(String::new()),
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(format!("{field} is {}, expected a string", kind(&other))),
    }
}

/// The bullet points: each string trimmed, empty ones dropped.
fn bullets(value: Option<Value>) -> Result<Vec<String>, String> {
    let items = match value {
        None => return Ok(Vec::new()),
        Some(Value::String(text)) => vec![Value::String(text)],
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(format!(
                "small_description is {}, expected an array of strings or a string",
                kind(&other)
            ));
        }
    };
    let mut bullets = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::Null => {}
            Value::String(text) => {
                let text = text.trim();
                if !text.is_empty() {
                    bullets.push(text.to_string());
                }
            }
            other => {
                return Err(format!(
                    "small_description[{i}] is {}, expected a string",
                    kind(&other)
                ));
            }
        }
    }
    Ok(bullets)
}

/// The price used and the price shown, from the `pricing` field.
fn price(value: Option<Value>, seed: u64, position: usize) -> Result<(f64, String), String> {
    let text = match value {
        None => None,
        Some(Value::String(text)) => Some(text),
        Some(Value::Array(items)) => match items.into_iter().next() {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text),
            Some(other) => {
                return Err(format!("pricing[0] is {}, expected a string", kind(&other)));
            }
        },
        Some(other) => return Err(format!("pricing is {}, expected a string", kind(&other))),
    };
    let text = text.unwrap_or_default();
    let numbers = price_numbers(&text);
    Ok(match numbers.as_slice() {
        [] => (100.0, "$100.0".to_string()),
        [single] => (*single, text.trim().to_string()),
        [low, high, ..] => {
            let unit = Rng::from_parts(&[seed, position as u64]).unit_f64();
            let drawn = low + (high - low) * unit;
            let price = drawn.clamp(low.min(*high), low.max(*high));
            (price, format!("${low:.2} to ${high:.2}"))
        }
    })
}

/// The numbers after each `$`: every character but digits and dots removed, pieces that are
/// still not a finite number passed over.
fn price_numbers(text: &str) -> Vec<f64> {
    text.split('$')
        .skip(1)
        .filter_map(|piece| {
            let digits: String = piece
                .chars()
                .filter(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            digits.parse::<f64>().ok().filter(|n| n.is_finite())
        })
        .collect()
}

/// The options, from the `customization_options` field.
fn options(value: Option<Value>) -> Result<Vec<(String, Vec<String>)>, String> {
    let map = match value {
        None => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(format!(
                "customization_options is {}, expected an object",
                kind(&other)
            ));
        }
    };
    let mut options: Vec<(String, Vec<String>)> = Vec::with_capacity(map.len());
    for (raw_name, contents) in map {
        let contents = match contents {
            Value::Null => continue,
            Value::Array(contents) => contents,
            other => {
                return Err(format!(
                    "customization_options[{raw_name:?}] is {}, expected an array",
                    kind(&other)
                ));
            }
        };
        let mut values = Vec::with_capacity(contents.len());
        for (i, content) in contents.into_iter().enumerate() {
            let where_ = || format!("customization_options[{raw_name:?}][{i}]");
            let value = match content {
                Value::Null => continue,
                Value::Object(mut content) => content.remove("value"),
                other => {
                    return Err(format!(
                        "{} is {}, expected an object with a \"value\"",
                        where_(),
                        kind(&other)
                    ));
                }
            };
            match value {
                None | Some(Value::Null) => {}
                Some(Value::String(text)) => {
                    let text = text.trim().replace('/', " | ").to_lowercase();
                    if !text.is_empty() {
                        values.push(text);
                    }
                }
                Some(other) => {
                    return Err(format!(
                        "{}.value is {}, expected a string",
                        where_(),
                        kind(&other)
                    ));
                }
            }
        }
        if values.is_empty() {
            continue;
        }
        let name = raw_name.to_lowercase();
        // Two names equal once lowercased: like a dictionary, keep the first place and the
        // last values.
        match options.iter_mut().find(|(existing, _)| *existing == name) {
            Some((_, existing)) => *existing = values,
            None => options.push((name, values)),
        }
    }
    Ok(options)
}

/// One entry of the attributes file: the attributes and the instruction, if usable.
fn attribute_entry(entry: &Value) -> Result<(Vec<String>, Option<Instruction>), String> {
    let Value::Object(entry) = entry else {
        return Err(format!("the entry is {}, expected an object", kind(entry)));
    };
    let attributes = string_list(entry.get("attributes"), "attributes")?;
    let instruction_attributes = string_list(
        entry.get("instruction_attributes"),
        "instruction_attributes",
    )?;
    let text = match entry.get("instruction") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text),
        Some(other) => {
            return Err(format!("instruction is {}, expected a string", kind(other)));
        }
    };
    let instruction = match text {
        Some(text) if !text.trim().is_empty() && !instruction_attributes.is_empty() => {
            Some(Instruction {
                text: text.clone(),
                attributes: instruction_attributes,
            })
        }
        _ => None,
    };
    Ok((attributes, instruction))
}

/// A list of strings; empty when absent or null.
fn string_list(value: Option<&Value>, field: &str) -> Result<Vec<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(text) => Ok(text.clone()),
                other => Err(format!(
                    "{field}[{i}] is {}, expected a string",
                    kind(other)
                )),
            })
            .collect(),
        Some(other) => Err(format!(
            "{field} is {}, expected an array of strings",
            kind(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, proptest};

    /// The products of a products file's text (`items_shuffle*.json`), in the data's order,
    /// without attributes; range prices drawn with `seed`.
    fn parse_products(text: &str, seed: u64) -> Result<Vec<Product>, String> {
        products_from(serde_json::Deserializer::from_str(text), seed).map_err(|e| e.to_string())
    }

    const PRODUCTS: &str = r#"[
      {
        "asin": "A1",
        "name": "  Red Shirt ",
        "category": " fashion",
        "query": "shirts ",
        "product_category": "Clothing › Men › Shirts",
        "full_description": "A shirt.",
        "small_description": ["  soft  ", "", "cotton"],
        "pricing": "  $12.99 ",
        "customization_options": {
          "Color": [
            {"value": " Navy/White ", "image": "https://example.com/a.jpg"},
            {"value": "Red", "image": null}
          ],
          "Size": [],
          "Fit Type": null
        },
        "images": ["x.jpg"],
        "Reviews": [{"score": 5}],
        "average_rating": 4.5
      },
      {
        "asin": "B2",
        "name": "Lamp",
        "category": "furniture",
        "query": "lamps",
        "full_description": null,
        "small_description": " One bullet ",
        "pricing": "$10.00 - $20.00",
        "customization_options": {}
      },
      {"name": "no asin", "pricing": "$1.00"},
      {"asin": "C3", "small_description": null, "customization_options": null},
      {"asin": "A1", "name": "duplicate", "pricing": 5},
      {"asin": "D4", "pricing": ["$5.50$7.25", "$1.00"]}
    ]"#;

    fn parsed() -> Vec<Product> {
        parse_products(PRODUCTS, DEFAULT_PRICE_SEED).unwrap()
    }

    fn bare(asin: &str) -> Product {
        Product {
            asin: asin.to_string(),
            name: String::new(),
            category: String::new(),
            query: String::new(),
            product_category: String::new(),
            description: String::new(),
            bullets: Vec::new(),
            price: 100.0,
            price_text: "$100.0".to_string(),
            options: Vec::new(),
            attributes: Vec::new(),
            instruction: None,
        }
    }

    #[test]
    fn products_follow_the_engine_rules() {
        let products = parsed();
        let asins: Vec<&str> = products.iter().map(|p| p.asin.as_str()).collect();
        assert_eq!(asins, ["A1", "B2", "C3", "D4"]);

        assert_eq!(
            products[0],
            Product {
                name: "Red Shirt".into(),
                category: "fashion".into(),
                query: "shirts".into(),
                product_category: "Clothing › Men › Shirts".into(),
                description: "A shirt.".into(),
                bullets: vec!["soft".into(), "cotton".into()],
                price: 12.99,
                price_text: "$12.99".into(),
                options: vec![("color".into(), vec!["navy | white".into(), "red".into()])],
                ..bare("A1")
            }
        );

        let lamp = &products[1];
        assert_eq!(lamp.name, "Lamp");
        assert_eq!(lamp.category, "furniture");
        assert_eq!(lamp.description, "");
        assert_eq!(lamp.bullets, ["One bullet"]);
        assert_eq!(lamp.price_text, "$10.00 to $20.00");
        assert!((10.0..=20.0).contains(&lamp.price), "{}", lamp.price);
        assert!(lamp.options.is_empty());

        assert_eq!(products[2], bare("C3"));

        let d4 = &products[3];
        assert_eq!(d4.price_text, "$5.50 to $7.25");
        assert!((5.5..=7.25).contains(&d4.price), "{}", d4.price);
    }

    #[test]
    fn range_prices_depend_only_on_the_seed() {
        let first = parsed();
        let again = parsed();
        assert_eq!(first, again);
        let other = parse_products(PRODUCTS, DEFAULT_PRICE_SEED + 1).unwrap();
        assert_ne!(first[1].price, other[1].price);
        assert_ne!(first[3].price, other[3].price);
        // Fixed prices do not move with the seed.
        assert_eq!(first[0], other[0]);
        assert_eq!(first[2], other[2]);
        for seed in 0..200 {
            let products = parse_products(PRODUCTS, seed).unwrap();
            assert!((10.0..=20.0).contains(&products[1].price));
            assert!((5.5..=7.25).contains(&products[3].price));
        }
    }

    #[test]
    fn price_strings() {
        assert_eq!(price_numbers("$1,299.99"), [1299.99]);
        assert_eq!(price_numbers("$10.00$20.00"), [10.0, 20.0]);
        assert_eq!(price_numbers("12.99"), Vec::<f64>::new());
        assert_eq!(price_numbers("$ - $3"), [3.0]);
        let none = (100.0, "$100.0".to_string());
        assert_eq!(
            price(Some(Value::String(String::new())), 1, 0),
            Ok(none.clone())
        );
        assert_eq!(price(Some(Value::Array(Vec::new())), 1, 0), Ok(none));
        // A reversed range still draws between its bounds.
        let (drawn, text) = price(Some(Value::String("$20$10".into())), 1, 0).unwrap();
        assert!((10.0..=20.0).contains(&drawn));
        assert_eq!(text, "$20.00 to $10.00");
    }

    #[test]
    fn attributes_and_instructions() {
        let mut products = parsed();
        products[3].attributes = vec!["stale".into()];
        let attributes = r#"{
          "A1": {"attributes": ["cotton", "machine wash"],
                 "instruction": "Find me a cotton shirt", "instruction_attributes": ["cotton"]},
          "B2": {"attributes": ["led"], "instruction": "Find me a lamp",
                 "instruction_attributes": []},
          "C3": {"attributes": ["x"], "instruction_attributes": ["x"]},
          "ZZ": {"attributes": ["unknown asin"], "instruction": "ignored",
                 "instruction_attributes": ["y"]}
        }"#;
        apply_attributes(&mut products, attributes).unwrap();
        assert_eq!(products[0].attributes, ["cotton", "machine wash"]);
        assert_eq!(
            products[0].instruction,
            Some(Instruction {
                text: "Find me a cotton shirt".into(),
                attributes: vec!["cotton".into()],
            })
        );
        assert_eq!(products[1].attributes, ["led"]);
        assert_eq!(products[1].instruction, None);
        assert_eq!(products[2].attributes, ["x"]);
        assert_eq!(products[2].instruction, None);
        assert!(products[3].attributes.is_empty());
        assert_eq!(products[3].instruction, None);
    }

    fn products_error(text: &str) -> String {
        parse_products(text, 0).unwrap_err()
    }

    fn attributes_error(text: &str) -> String {
        let mut products = parsed();
        let before = products.clone();
        let error = apply_attributes(&mut products, text).unwrap_err();
        assert_eq!(products, before, "a failed apply changes nothing");
        error
    }

    #[test]
    fn schema_errors_say_what_and_where() {
        let cases = [
            (r#"{"asin": "A"}"#, "expected a JSON array of products"),
            (
                r#"[{"asin": "A"}, 3]"#,
                "product 1: expected an object, found a number",
            ),
            (
                r#"[{"asin": 7}]"#,
                "product 0: asin is a number, expected a string",
            ),
            (
                r#"[{"asin": "A"}, {"asin": "B07X", "pricing": 3}]"#,
                "product 1 (asin B07X): pricing is a number, expected a string",
            ),
            (
                r#"[{"asin": "A", "name": ["x"]}]"#,
                "product 0 (asin A): name is an array, expected a string",
            ),
            (
                r#"[{"asin": "A", "small_description": ["x", 1]}]"#,
                "product 0 (asin A): small_description[1] is a number, expected a string",
            ),
            (
                r#"[{"asin": "A", "customization_options": []}]"#,
                "product 0 (asin A): customization_options is an array, expected an object",
            ),
            (
                r#"[{"asin": "A", "customization_options": {"size": [{"value": 9}]}}]"#,
                r#"product 0 (asin A): customization_options["size"][0].value is a number"#,
            ),
            (r#"[{"asin": "A"}"#, "EOF"),
            (r#"[{"asin": "A"}] x"#, "trailing characters"),
        ];
        for (text, expected) in cases {
            let error = products_error(text);
            assert!(error.contains(expected), "{text}: {error}");
        }

        let cases = [
            ("[]", "the top level is an array, expected an object"),
            ("{", "not valid JSON"),
            (
                r#"{"A1": 3}"#,
                "asin A1: the entry is a number, expected an object",
            ),
            (
                r#"{"A1": {"attributes": ["a", null]}}"#,
                "asin A1: attributes[1] is null, expected a string",
            ),
            (
                r#"{"A1": {"attributes": "a"}}"#,
                "asin A1: attributes is a string, expected an array of strings",
            ),
            (
                r#"{"A1": {"instruction": 1, "instruction_attributes": ["a"]}}"#,
                "asin A1: instruction is a number, expected a string",
            ),
        ];
        for (text, expected) in cases {
            let error = attributes_error(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn the_real_attributes_file_applies() {
        // The original's attributes file (from AgentGym's copy of WebShop), kept as a fixture.
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/webshop/items_ins_v2_1000.json");
        let text = std::fs::read_to_string(&path).expect("the WebShop attributes fixture");
        let Value::Object(entries) = serde_json::from_str::<Value>(&text).unwrap() else {
            panic!("not an object");
        };
        assert_eq!(entries.len(), 1000);

        let asins: Vec<&String> = entries.keys().take(5).collect();
        assert_eq!(asins[1], "B07DJJXGB5");
        let json = Value::Array(
            asins
                .iter()
                .map(|asin| serde_json::json!({"asin": asin, "name": format!("item {asin}")}))
                .collect(),
        );
        let mut products = parse_products(&json.to_string(), DEFAULT_PRICE_SEED).unwrap();
        assert_eq!(products.len(), 5);
        apply_attributes(&mut products, &text).unwrap();

        let tea = &products[1];
        assert_eq!(tea.asin, "B07DJJXGB5");
        assert_eq!(
            tea.attributes,
            ["tea tree", "essential oils", "natural ingredients"]
        );
        assert_eq!(
            tea.instruction,
            Some(Instruction {
                text: "Find me scrubs & body treatments with tea tree, natural ingredients".into(),
                attributes: vec!["tea tree".into(), "natural ingredients".into()],
            })
        );
        // The first entry has no instruction.
        assert_eq!(products[0].instruction, None);
    }

    /// A fresh empty folder under the system temporary folder.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "agentr-webshop-loader-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn files_are_found_and_loaded() {
        let dir = temp_dir("load");
        let missing_both = find_files(&dir).unwrap_err();
        match &missing_both {
            EnvError::MissingAssets { what, path, hint } => {
                assert_eq!(*what, "WebShop product data");
                assert_eq!(path, &dir);
                assert!(hint.contains("items_shuffle*.json"), "{hint}");
                assert!(hint.contains("items_ins_v2*.json"), "{hint}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            find_files(&dir.join("absent")),
            Err(EnvError::MissingAssets { .. })
        ));

        std::fs::write(dir.join("items_shuffle_1000.json"), PRODUCTS).unwrap();
        std::fs::write(dir.join("items_shuffle_2000.json"), "not read").unwrap();
        std::fs::write(dir.join("items_shuffle_x.txt"), "not json").unwrap();
        std::fs::write(dir.join("items_human_ins.json"), "{}").unwrap();
        assert!(matches!(
            find_files(&dir),
            Err(EnvError::MissingAssets { .. })
        ));
        std::fs::write(
            dir.join("items_ins_v2_1000.json"),
            r#"{"B2": {"attributes": ["led"]}}"#,
        )
        .unwrap();
        std::fs::write(dir.join("items_ins_v2_z.json"), "not read").unwrap();

        let (products, attributes) = find_files(&dir).unwrap();
        assert_eq!(products, dir.join("items_shuffle_1000.json"));
        assert_eq!(attributes, dir.join("items_ins_v2_1000.json"));

        let streamed = read_products(&products, DEFAULT_PRICE_SEED, 0).unwrap();
        assert_eq!(streamed, parsed());
        match read_products(&dir.join("items_shuffle_2000.json"), 0, 0).unwrap_err() {
            EnvError::BadData { message, .. } => assert!(message.contains("expected")),
            other => panic!("{other:?}"),
        }
        let catalogue = load(&products, &attributes).unwrap();
        let mut expected = parsed();
        expected[1].attributes = vec!["led".into()];
        assert_eq!(catalogue.products, expected);
        let reseeded = load_with_seed(&products, &attributes, 5).unwrap();
        assert_eq!(
            reseeded.products,
            parse_products(PRODUCTS, 5)
                .map(|mut p| {
                    p[1].attributes = vec!["led".into()];
                    p
                })
                .unwrap()
        );

        match load(&dir.join("items_shuffle_2000.json"), &attributes).unwrap_err() {
            EnvError::BadData { path, message } => {
                assert_eq!(path, dir.join("items_shuffle_2000.json"));
                assert!(message.contains("expected"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match load(&products, &dir.join("items_ins_v2_z.json")).unwrap_err() {
            EnvError::BadData { path, .. } => assert_eq!(path, dir.join("items_ins_v2_z.json")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            load(&dir.join("items_shuffle_none.json"), &attributes),
            Err(EnvError::MissingAssets { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>(), seed in any::<u64>()) {
            let _ = parse_products(&text, seed);
            let mut products = vec![bare("A1")];
            let _ = apply_attributes(&mut products, &text);
        }

        #[test]
        fn json_like_text_never_panics(
            text in r#"[\[\]{}",:$. 0-9a-z/]{0,60}"#,
            seed in any::<u64>(),
        ) {
            let _ = parse_products(&text, seed);
            let wrapped = format!(r#"[{{"asin": "A", "pricing": "{text}"}}]"#);
            let _ = parse_products(&wrapped, seed);
            let options = format!(
                r#"[{{"asin": "A", "customization_options": {{"c": [{{"value": {text}}}]}}}}]"#
            );
            let _ = parse_products(&options, seed);
            let mut products = vec![bare("A")];
            let _ = apply_attributes(&mut products, &text);
        }
    }
}
