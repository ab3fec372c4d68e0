//! `agentr eval`: a model plays the test tasks; success, reward, steps, invalid actions and
//! loop statistics, with the protocol recorded next to every number (see
//! [`agentr_cli::pipeline::eval`]).

use std::path::PathBuf;

use agentr_cli::pipeline::eval::{Episodes, EvalJob, ModelSpec, evaluate};
use agentr_envs::TaskSpec;
use anyhow::Result;

use crate::envs::{EnvName, EnvOptions};
use crate::terminal::Terminal;

/// Arguments of `agentr eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment.
    #[arg(long)]
    pub(crate) env: EnvName,
    /// Model folder from `agentr train`, a .gguf file, smollm2-135m, a Hugging Face model id
    /// org/name[@revision] (from the hub cache), or
    /// openai:MODEL@BASE_URL (an OpenAI-compatible server; API key from $OPENAI_API_KEY).
    #[arg(long, value_name = "DIR")]
    pub(crate) model: ModelSpec,
    /// Tasks to play (default: the environment's test ids).
    #[arg(long, default_value = "test")]
    pub(crate) tasks: TaskSpec,
    /// Most rounds per episode (AgentGym's evaluation used 100).
    #[arg(long, default_value_t = 100)]
    pub(crate) max_rounds: usize,
    /// Sampling temperature; 0 (the default) is greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) temperature: f64,
    /// Sampling seed (combined with the task id and round).
    #[arg(long, default_value_t = 0)]
    pub(crate) sampling_seed: u64,
    /// Most new tokens per response.
    #[arg(long, default_value_t = 128)]
    pub(crate) max_tokens: usize,
    /// Parallel workers (each with its own environment; the model is shared; at least 1).
    #[arg(long, default_value_t = 1, value_parser = super::at_least_one)]
    pub(crate) workers: usize,
    /// Send revision turns (`Action: wait`) to the environment, as the reference did, instead
    /// of answering them `ok.`.
    #[arg(long)]
    pub(crate) send_revision_turns: bool,
    /// Replace newlines and tabs in observations by spaces, for a model trained on cleaned
    /// observations (`gold`, `collect --clean-observations`); by default the model sees the
    /// environment's text.
    #[arg(long)]
    pub(crate) clean_observations: bool,
    /// The self-reflection test: instead of fresh episodes, take the failed episodes of this
    /// file (a base model's `episodes.jsonl`), cut each after a seeded random number of
    /// responses, and let the evaluated model continue for at most --continue-rounds rounds.
    #[arg(long, value_name = "FILE")]
    pub(crate) reflection_from: Option<PathBuf>,
    /// Seed of the cut points of the self-reflection test.
    #[arg(long, default_value_t = 0)]
    pub(crate) cut_seed: u64,
    /// Most new rounds after the cut in the self-reflection test.
    #[arg(long, default_value_t = 50)]
    pub(crate) continue_rounds: usize,
    /// Continue only the first N failed episodes (in task order) in the self-reflection test.
    #[arg(long, value_name = "N", requires = "reflection_from")]
    pub(crate) reflection_episodes: Option<usize>,
    /// Output folder: episodes.jsonl and summary.json.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Compare with this earlier evaluation of the same tasks (another model's output
    /// folder) by pairs: the success difference with a 95% bootstrap interval and an exact
    /// McNemar p-value, printed and recorded in summary.json.
    #[arg(long, value_name = "DIR")]
    pub(crate) baseline: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) env_options: EnvOptions,
    #[command(flatten)]
    pub(crate) device: crate::device::DeviceArg,
    #[command(flatten)]
    pub(crate) weights: crate::device::WeightsArg,
}

pub fn run(args: Args) -> Result<()> {
    let job = EvalJob {
        env: args.env,
        env_options: args.env_options,
        model: args.model,
        episodes: match args.reflection_from {
            Some(from) => Episodes::Reflection {
                from,
                cut_seed: args.cut_seed,
                continue_rounds: args.continue_rounds,
                first: args.reflection_episodes,
            },
            None => Episodes::Fresh(args.tasks),
        },
        max_rounds: args.max_rounds,
        temperature: args.temperature,
        sampling_seed: args.sampling_seed,
        max_tokens: args.max_tokens,
        workers: args.workers,
        send_revision_turns: args.send_revision_turns,
        clean_observations: args.clean_observations,
        out: args.out,
        baseline: args.baseline,
        runtime: crate::device::runtime(args.device, args.weights),
    };
    let summary = evaluate(&job, &Terminal)?;
    for line in summary.describe(job.baseline.as_deref()) {
        eprintln!("{line}");
    }
    Ok(())
}
