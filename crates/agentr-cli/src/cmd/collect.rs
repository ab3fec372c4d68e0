//! `agentr collect`: grow search trees for many tasks, one JSON file per task (see
//! [`agentr_cli::pipeline::collect`]).

use std::path::PathBuf;

use agentr_cli::pipeline::collect::{CollectJob, PolicySpec, collect};
use agentr_envs::TaskSpec;
use agentr_mcts::{Restore, SearchConfig};
use anyhow::Result;

use crate::envs::{EnvName, EnvOptions};
use crate::terminal::Terminal;

/// Arguments of `agentr collect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment.
    #[arg(long)]
    pub(crate) env: EnvName,
    /// The policy: noisy-expert:<epsilon>, model:DIR, or openai:MODEL@BASE_URL (an
    /// OpenAI-compatible server; API key from $OPENAI_API_KEY).
    #[arg(long)]
    pub(crate) policy: PolicySpec,
    /// Tasks: train, test, all, train[:50], 0..50, 3,7,9 (comma-separated parts combine).
    #[arg(long)]
    pub(crate) tasks: TaskSpec,
    /// Output folder; one <task>.json per task. Tasks already there are skipped.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Parallel workers, each with its own environment (at least 1).
    #[arg(long, default_value_t = 2, value_parser = super::at_least_one)]
    pub(crate) workers: usize,
    /// Passes from the root per task.
    #[arg(long, default_value_t = 8)]
    pub(crate) iterations: usize,
    /// Responses sampled per expansion.
    #[arg(long, default_value_t = 4)]
    pub(crate) candidates: usize,
    /// Most actions on a branch.
    #[arg(long, default_value_t = 20)]
    pub(crate) depth_limit: usize,
    /// UCT exploration constant.
    #[arg(long, default_value_t = 0.25)]
    pub(crate) uct_c: f64,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) temperature: f64,
    /// Search seed (combined with each task id).
    #[arg(long, default_value_t = 0)]
    pub(crate) search_seed: u64,
    /// Replace newlines and tabs in observations by spaces, as the reference did for its
    /// training data (by default observations stay as the environment wrote them, as `gold`
    /// and `eval` keep them).
    #[arg(long)]
    pub(crate) clean_observations: bool,
    /// Always restore states by reset + replay, even where snapshots exist.
    #[arg(long)]
    pub(crate) replay_restore: bool,
    #[command(flatten)]
    pub(crate) env_options: EnvOptions,
    #[command(flatten)]
    pub(crate) device: crate::device::DeviceArg,
    #[command(flatten)]
    pub(crate) weights: crate::device::WeightsArg,
}

pub fn run(args: Args) -> Result<()> {
    let job = CollectJob {
        env: args.env,
        env_options: args.env_options,
        policy: args.policy,
        tasks: args.tasks,
        out: args.out,
        workers: args.workers,
        search: SearchConfig {
            iterations: args.iterations,
            candidates: args.candidates,
            depth_limit: args.depth_limit,
            uct_c: args.uct_c,
            temperature: args.temperature,
            seed: args.search_seed,
            clean_observations: args.clean_observations,
            restore: if args.replay_restore {
                Restore::Replay
            } else {
                Restore::Auto
            },
        },
        runtime: crate::device::runtime(args.device, args.weights),
    };
    let summary = collect(&job, &Terminal)?;
    eprintln!("{}", summary.describe(&job.out));
    summary.all_searched()
}
