//! `agentr gold ENV --tasks T`: expert episodes as JSONL chat samples.

use std::io::Write;
use std::path::PathBuf;

use agentr_cli::pipeline::gold::{GoldJob, gold};
use agentr_envs::TaskSpec;
use anyhow::{Context, Result};

use crate::envs::{EnvName, EnvOptions};
use crate::terminal::Terminal;

/// Arguments of `agentr gold`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment.
    pub(crate) env: EnvName,
    /// Tasks to play: test, train, all, train[:50], 0..50, 3,7,9 (`--split` is an alias).
    #[arg(long, alias = "split", default_value = "test")]
    pub(crate) tasks: TaskSpec,
    /// Output JSONL file (default: standard output).
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Most responses per episode.
    #[arg(long, default_value_t = 100)]
    pub(crate) max_rounds: usize,
    /// Also write episodes that did not reach the goal.
    #[arg(long)]
    pub(crate) include_failures: bool,
    /// Replace newlines and tabs in observations by spaces (as the Agent-R reference did).
    #[arg(long)]
    pub(crate) clean_observations: bool,
    #[command(flatten)]
    pub(crate) env_options: EnvOptions,
}

pub fn run(args: Args) -> Result<()> {
    let job = GoldJob {
        env: args.env,
        env_options: args.env_options,
        tasks: args.tasks,
        max_rounds: args.max_rounds,
        include_failures: args.include_failures,
        clean_observations: args.clean_observations,
    };
    let mut sink: Box<dyn Write> = match &args.out {
        Some(path) => {
            super::create_parent(path)?;
            Box::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            ))
        }
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let summary = gold(&job, &mut sink, &Terminal)?;
    for line in summary.describe(&job, args.out.as_deref()) {
        eprintln!("{line}");
    }
    Ok(())
}
