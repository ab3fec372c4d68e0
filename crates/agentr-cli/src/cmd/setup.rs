//! `agentr setup`: fetch every asset into the asset directory.

use std::path::PathBuf;

use agentr_envs::assets;
use anyhow::{Context, Result};

/// Arguments of `agentr setup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Asset directory (default: $AGENTR_HOME, else ~/.cache/agentr).
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Python interpreter used to run `pip download` (default: $AGENTR_PYTHON, else python3).
    #[arg(long)]
    python: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    let home = args.home.unwrap_or_else(assets::agentr_home);
    let python = args
        .python
        .or_else(|| std::env::var("AGENTR_PYTHON").ok())
        .unwrap_or_else(|| "python3".to_owned());
    for asset in assets::ALL
        .iter()
        .chain([&agentr_train::gguf::SMOLLM2_GGUF])
    {
        eprint!("{} ({}) ... ", asset.name, asset.requirement);
        let installed = asset
            .install(&home, &python)
            .with_context(|| format!("setting up {}", asset.name))?;
        if installed.already_present {
            eprintln!("already in {}", installed.path.display());
        } else {
            eprintln!("{} files in {}", installed.files, installed.path.display());
        }
    }
    Ok(())
}
