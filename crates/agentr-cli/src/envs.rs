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
}

impl EnvName {
    /// Builds the environment.
    pub fn build(self, options: &EnvOptions) -> Result<Box<dyn Environment>> {
        match self {
            EnvName::Textcraft => {
                let dir = options
                    .recipes
                    .clone()
                    .unwrap_or_else(|| assets::textcraft_recipes_dir(&assets::agentr_home()));
                let env = TextCraft::from_dir(&dir)
                    .with_context(|| format!("loading TextCraft recipes from {}", dir.display()))?;
                Ok(Box::new(env.with_seed(options.seed)))
            }
        }
    }

    /// The environment's model-free expert.
    pub fn expert(self) -> Box<dyn Expert> {
        match self {
            EnvName::Textcraft => Box::new(TextCraftExpert),
        }
    }
}

impl EnvName {
    /// The name used in files and metadata.
    pub fn name(self) -> &'static str {
        match self {
            EnvName::Textcraft => textcraft::NAME,
        }
    }
}
