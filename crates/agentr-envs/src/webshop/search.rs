//! Product search: BM25 (tantivy) over the fields the original engine indexed: title,
//! description, first bullet point and option values.
//!
//! Text is analysed as the original's Lucene index (pyserini's default English analyser) did:
//! split into alphanumeric words, lowercased, Lucene's 33 English stop words removed, words
//! stemmed. Two differences remain: the stemmer is Snowball's English (Porter2) rather than
//! Lucene's Porter, and BM25 uses tantivy's k1 = 1.2, b = 0.75 rather than pyserini's
//! k1 = 0.9, b = 0.4 (tantivy fixes them). Dropping stop words also keeps searches for whole
//! instructions fast: `a`, `for` and `with` occur in nearly every product.
//!
//! An index is built once per catalogue and kept on disk under a folder named by the
//! catalogue's digest, so a changed catalogue never reads a stale index; it is written into a
//! staging folder and renamed into place, so a killed build leaves nothing half-made behind.
//! Results are the top [`RESULT_LIMIT`] by score, equal scores in catalogue order.

use std::path::{Path, PathBuf};

use tantivy::collector::TopDocs;
use tantivy::columnar::Column;
use tantivy::query::QueryParser;
use tantivy::schema::{
    FAST, Field, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument};

use super::catalogue::{Catalogue, Product};
use crate::EnvError;

/// How many results a search returns (the original showed the top 50, 10 per page).
pub const RESULT_LIMIT: usize = 50;
/// Memory the index writer may use before it writes a segment; large enough that a 100k
/// product catalogue fits in one.
const WRITER_HEAP: usize = 256 << 20;
/// Written last into a finished index folder.
const MARKER: &str = ".complete";
/// The name the analyser is registered under; part of the cache folder's name, so an index
/// written with another analysis is never read (bump it when [`analyzer`] changes).
const ANALYZER: &str = "webshop-en1";
/// Lucene's English stop words (`EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`).
const STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// Words of at most 40 bytes, lowercased, stop words removed, stemmed.
fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(STOP_WORDS.map(str::to_owned)))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The text a product is found by.
pub fn searchable_text(product: &Product) -> String {
    let mut text = format!("{} {}", product.name, product.description);
    if let Some(first) = product.bullets.first() {
        text.push(' ');
        text.push_str(first);
    }
    for (_, values) in &product.options {
        for value in values {
            text.push(' ');
            text.push_str(value);
        }
    }
    text.to_lowercase()
}

/// A searchable index of one catalogue.
pub struct SearchIndex {
    /// The index is never written after it is opened, so one searcher serves every search.
    searcher: Searcher,
    /// Per segment, the column of catalogue positions (opened once, not per hit).
    positions: Vec<Column<u64>>,
    parser: QueryParser,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("documents", &self.searcher.num_docs())
            .finish()
    }
}

fn schema() -> (Schema, Field, Field) {
    let mut builder = Schema::builder();
    let id = builder.add_u64_field("id", FAST | STORED);
    // Frequencies without positions: searches are bags of words, never phrases.
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(ANALYZER)
        .set_index_option(IndexRecordOption::WithFreqs);
    let text = builder.add_text_field(
        "text",
        TextOptions::default().set_indexing_options(indexing),
    );
    (builder.build(), id, text)
}

/// `index` with the analyser registered (an index stores only the analyser's name).
fn with_analyzer(index: Index) -> Index {
    index.tokenizers().register(ANALYZER, analyzer());
    index
}

fn search_error(what: &str, e: impl std::fmt::Display) -> EnvError {
    EnvError::Setup {
        what: "WebShop search index",
        message: format!("{what}: {e}"),
    }
}

impl SearchIndex {
    /// An index in memory (tests, small catalogues).
    pub fn in_memory(catalogue: &Catalogue) -> Result<Self, EnvError> {
        let (schema, id, text) = schema();
        let index = with_analyzer(Index::create_in_ram(schema));
        fill(&index, catalogue, id, text)?;
        Self::over(index, text)
    }

    /// The index of `catalogue` under `cache`, built there first if it is not yet.
    pub fn cached(catalogue: &Catalogue, cache: &Path) -> Result<Self, EnvError> {
        let folder = index_folder(catalogue, cache);
        if !folder.join(MARKER).is_file() {
            build_in(catalogue, &folder)?;
        }
        let index = Index::open_in_dir(&folder)
            .map(with_analyzer)
            .map_err(|e| search_error(&format!("opening {}", folder.display()), e))?;
        let (_, _, text) = schema();
        let text = index.schema().get_field("text").unwrap_or(text);
        Self::over(index, text)
    }

    fn over(index: Index, text: Field) -> Result<Self, EnvError> {
        let reader: IndexReader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| search_error("opening a reader", e))?;
        let searcher = reader.searcher();
        let positions = searcher
            .segment_readers()
            .iter()
            .map(|segment| segment.fast_fields().u64("id"))
            .collect::<Result<_, _>>()
            .map_err(|e| search_error("reading ids", e))?;
        let parser = QueryParser::for_index(&index, vec![text]);
        Ok(SearchIndex {
            searcher,
            positions,
            parser,
        })
    }

    /// Catalogue positions of the best matches for `keywords`, best first (at most
    /// [`RESULT_LIMIT`]). Keywords are free text: anything the query syntax would reject is
    /// read as plain words.
    pub fn search(&self, keywords: &str) -> Result<Vec<usize>, EnvError> {
        let words: String = keywords
            .to_lowercase()
            .chars()
            .map(|c| if c.is_alphanumeric() { c } else { ' ' })
            .collect();
        let (query, _) = self.parser.parse_query_lenient(&words);
        // Nothing left to match (no words, or only stop words): no results, as in Lucene (an
        // empty query would otherwise match every product).
        let mut has_terms = false;
        query.query_terms(&mut |_, _| has_terms = true);
        if !has_terms {
            return Ok(Vec::new());
        }
        let top = self
            .searcher
            .search(&query, &TopDocs::with_limit(RESULT_LIMIT).order_by_score())
            .map_err(|e| search_error("searching", e))?;
        let mut scored = Vec::with_capacity(top.len());
        for (score, address) in top {
            if let Some(id) = self.positions[address.segment_ord as usize].first(address.doc_id) {
                scored.push((score, id as usize));
            }
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(scored.into_iter().map(|(_, id)| id).collect())
    }
}

/// Where the index of `catalogue` lives under `cache`.
pub fn index_folder(catalogue: &Catalogue, cache: &Path) -> PathBuf {
    cache.join(format!("index-{ANALYZER}-{}", &catalogue.digest()[..16]))
}

fn fill(index: &Index, catalogue: &Catalogue, id: Field, text: Field) -> Result<(), EnvError> {
    // One thread: documents keep catalogue order inside the segment.
    let mut writer: IndexWriter<TantivyDocument> = index
        .writer_with_num_threads(1, WRITER_HEAP)
        .map_err(|e| search_error("creating a writer", e))?;
    for (position, product) in catalogue.products.iter().enumerate() {
        let mut document = TantivyDocument::default();
        document.add_u64(id, position as u64);
        document.add_text(text, searchable_text(product));
        writer
            .add_document(document)
            .map_err(|e| search_error("adding a product", e))?;
    }
    writer.commit().map_err(|e| search_error("committing", e))?;
    writer
        .wait_merging_threads()
        .map_err(|e| search_error("merging", e))?;
    Ok(())
}

fn build_in(catalogue: &Catalogue, folder: &Path) -> Result<(), EnvError> {
    let staging = folder.with_extension(format!("staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| EnvError::io(&staging, e))?;
    let (schema, id, text) = schema();
    let index = Index::create_in_dir(&staging, schema)
        .map(with_analyzer)
        .map_err(|e| search_error(&format!("creating {}", staging.display()), e))?;
    fill(&index, catalogue, id, text)?;
    drop(index);
    std::fs::write(staging.join(MARKER), catalogue.digest())
        .map_err(|e| EnvError::io(&staging, e))?;
    if folder.exists() {
        std::fs::remove_dir_all(folder).map_err(|e| EnvError::io(folder, e))?;
    }
    std::fs::rename(&staging, folder).map_err(|e| EnvError::io(folder, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(asin: &str, name: &str, description: &str, options: &[&str]) -> Product {
        Product {
            asin: asin.into(),
            name: name.into(),
            category: "fashion".into(),
            query: String::new(),
            product_category: String::new(),
            description: description.into(),
            bullets: vec!["first bullet".into(), "secret second bullet".into()],
            price: 10.0,
            price_text: "$10.00".into(),
            options: vec![(
                "color".into(),
                options.iter().map(|o| o.to_string()).collect(),
            )],
            attributes: Vec::new(),
            instruction: None,
        }
    }

    fn catalogue() -> Catalogue {
        Catalogue {
            products: vec![
                product(
                    "A",
                    "Red Running Shoes",
                    "light shoes for running",
                    &["red"],
                ),
                product("B", "Blue Hoodie", "a warm cotton hoodie", &["navy blue"]),
                product(
                    "C",
                    "Trail Running Shoes",
                    "grippy soles",
                    &["olive | green"],
                ),
                product("D", "Desk Lamp", "bright lamp", &[]),
            ],
        }
    }

    #[test]
    fn finds_by_title_description_first_bullet_and_options() {
        let index = SearchIndex::in_memory(&catalogue()).unwrap();
        let hits = index.search("running shoes").unwrap();
        assert_eq!(hits.len(), 2);
        assert!(hits.contains(&0) && hits.contains(&2));
        assert_eq!(index.search("cotton").unwrap(), vec![1]);
        assert_eq!(index.search("OLIVE").unwrap(), vec![2]);
        // Every product has the same first bullet: all match.
        let mut all = index.search("first bullet").unwrap();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3]);
        // The second bullet is not indexed.
        assert!(index.search("secret").unwrap().is_empty());
        // Stemmed and without stop words, as the original's Lucene analyser.
        let mut shoes = index.search("the shoe that runs").unwrap();
        shoes.sort_unstable();
        assert_eq!(shoes, vec![0, 2]);
        assert!(index.search("with and the").unwrap().is_empty());
        // Query syntax is read as words, never an error.
        assert_eq!(index.search("hoodie AND (").unwrap(), vec![1]);
        assert!(index.search("  ").unwrap().is_empty());
    }

    #[test]
    fn rebuilt_indexes_rank_identically() {
        // Two disk builds in separate caches and one in memory, over a synthetic catalogue
        // large enough for many score ties: the same ranked ids for every query.
        let catalogue = crate::webshop::synthetic::generate(3000, 7);
        let root = std::env::temp_dir().join(format!("agentr-index-det-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let builds = [
            SearchIndex::cached(&catalogue, &root.join("a")).unwrap(),
            SearchIndex::cached(&catalogue, &root.join("b")).unwrap(),
            SearchIndex::in_memory(&catalogue).unwrap(),
        ];
        let queries = catalogue
            .products
            .iter()
            .step_by(37)
            .flat_map(|p| [p.name.clone(), p.query.clone(), p.attributes.join(" ")]);
        let mut compared = 0;
        for query in queries {
            let first = builds[0].search(&query).unwrap();
            assert!(!first.is_empty(), "{query}");
            for other in &builds[1..] {
                assert_eq!(other.search(&query).unwrap(), first, "{query}");
            }
            compared += 1;
        }
        assert!(compared > 200);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn at_most_fifty_results() {
        let products = (0..120)
            .map(|i| product(&format!("P{i}"), "same shoes", "same", &[]))
            .collect();
        let index = SearchIndex::in_memory(&Catalogue { products }).unwrap();
        let hits = index.search("shoes").unwrap();
        assert_eq!(hits.len(), RESULT_LIMIT);
        assert!(hits.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_disk_cache_is_built_once_and_keyed_by_the_catalogue() {
        let cache =
            std::env::temp_dir().join(format!("agentr-webshop-index-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache);
        let first = SearchIndex::cached(&catalogue(), &cache).unwrap();
        let folder = index_folder(&catalogue(), &cache);
        assert!(folder.join(MARKER).is_file());
        let stamp = std::fs::metadata(folder.join(MARKER))
            .unwrap()
            .modified()
            .unwrap();
        let again = SearchIndex::cached(&catalogue(), &cache).unwrap();
        assert_eq!(
            std::fs::metadata(folder.join(MARKER))
                .unwrap()
                .modified()
                .unwrap(),
            stamp
        );
        assert_eq!(
            first.search("shoes").unwrap(),
            again.search("shoes").unwrap()
        );
        let mut changed = catalogue();
        changed.products[3].name = "Desk Lamp Shoes".into();
        assert_ne!(index_folder(&changed, &cache), folder);
        let other = SearchIndex::cached(&changed, &cache).unwrap();
        assert_eq!(other.search("shoes").unwrap().len(), 3);
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
