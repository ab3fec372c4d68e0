//! The product model every part of WebShop shares.

/// One product, as the original engine holds it after loading.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// The product id (Amazon's ASIN in the real data), shown in search results.
    pub asin: String,
    /// The title.
    pub name: String,
    /// One of WebShop's five categories: `fashion`, `makeup`, `electronics`, `furniture`,
    /// `food` (`beauty`, `garden` and others occur in the real data).
    pub category: String,
    /// The search query the product was scraped for.
    pub query: String,
    /// The breadcrumb, levels joined by ` › `.
    pub product_category: String,
    /// The full description (the item page's Description sub-page).
    pub description: String,
    /// The bullet points (the Features sub-page), in order.
    pub bullets: Vec<String>,
    /// The price the engine uses: the listed price, or for a range one value drawn in it
    /// once with a fixed seed; 100.0 when the data lists none.
    pub price: f64,
    /// The price as the item page shows it (`$12.99`, or `$10.00 to $20.00` for a range).
    pub price_text: String,
    /// Option names (lowercase) with their values (lowercase, `/` written ` | `), in the
    /// order the data lists them (the item page shows them in this order).
    pub options: Vec<(String, Vec<String>)>,
    /// Attribute phrases (from the attributes file).
    pub attributes: Vec<String>,
    /// The instruction written for this product, if any (only those products give goals).
    pub instruction: Option<Instruction>,
}

/// A human-written instruction for a product, with the attributes it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// The instruction text, e.g. `Find me scrubs & body treatments with tea tree`.
    pub text: String,
    /// The attributes the instruction asks for (a subset of the product's).
    pub attributes: Vec<String>,
}

/// A whole catalogue: products in a fixed order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Catalogue {
    /// The products; their order fixes goal order and search tie-breaks.
    pub products: Vec<Product>,
}

impl Catalogue {
    /// The product with this id.
    pub fn by_asin(&self, asin: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.asin == asin)
    }

    /// A digest of everything search and goals depend on, hex (keys the on-disk index cache).
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for product in &self.products {
            for field in [
                &product.asin,
                &product.name,
                &product.category,
                &product.query,
                &product.product_category,
                &product.description,
            ] {
                hasher.update(field.as_bytes());
                hasher.update([0]);
            }
            for bullet in &product.bullets {
                hasher.update(bullet.as_bytes());
                hasher.update([1]);
            }
            hasher.update(product.price.to_le_bytes());
            for (name, values) in &product.options {
                hasher.update(name.as_bytes());
                hasher.update([2]);
                for value in values {
                    hasher.update(value.as_bytes());
                    hasher.update([3]);
                }
            }
            for attribute in &product.attributes {
                hasher.update(attribute.as_bytes());
                hasher.update([4]);
            }
            if let Some(instruction) = &product.instruction {
                hasher.update(instruction.text.as_bytes());
                for attribute in &instruction.attributes {
                    hasher.update(attribute.as_bytes());
                    hasher.update([5]);
                }
            }
            hasher.update([6]);
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
