//! `agentr collect`: grow search trees for many tasks, one JSON file per task.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Instant;

use agentr_envs::{NoisyExpert, TaskSpec};
use agentr_mcts::collect::{TaskOutcome, TaskReport, collect};
use agentr_mcts::{Policy, Restore, SearchConfig, SearchError};
use agentr_train::ModelAgent;
use anyhow::{Context, Result, bail};

use crate::envs::{EnvName, EnvOptions};
use crate::progress::Progress;
use crate::remote::OpenAiSpec;

/// Which policy proposes responses.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicySpec {
    /// `noisy-expert:<epsilon>`: the environment's expert with seeded mistakes.
    NoisyExpert(f64),
    /// `model:DIR`: a model trained with `agentr train` (or a .gguf file, smollm2-135m, or a
    /// Hugging Face model id org/name[@revision]).
    Model(PathBuf),
    /// `openai:MODEL@BASE_URL`: a model on an OpenAI-compatible server.
    OpenAi(OpenAiSpec),
}

impl FromStr for PolicySpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("model", dir)) if !dir.is_empty() => Ok(PolicySpec::Model(PathBuf::from(dir))),
            Some(("openai", rest)) => OpenAiSpec::parse(rest).map(PolicySpec::OpenAi),
            Some(("noisy-expert", eps)) => match eps.parse::<f64>() {
                Ok(eps) if (0.0..=1.0).contains(&eps) => Ok(PolicySpec::NoisyExpert(eps)),
                _ => Err(format!(
                    "`{s}`: the mistake probability must be a number in [0, 1]"
                )),
            },
            _ if s == "noisy-expert" => {
                Err("give the mistake probability: noisy-expert:0.3".into())
            }
            _ => Err(format!(
                "unknown policy `{s}` (available: noisy-expert:<epsilon>, model:DIR, \
                 openai:MODEL@BASE_URL)"
            )),
        }
    }
}

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
    let config = SearchConfig {
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
    };
    if let Err(message) = config.validate() {
        bail!("invalid search settings: {message}");
    }
    let factory = args.env.factory(&args.env_options)?;
    let tasks = args.tasks.resolve(factory().as_ref())?;
    if tasks.is_empty() {
        bail!("the task selection `{}` is empty", args.tasks);
    }
    match &args.policy {
        PolicySpec::NoisyExpert(eps) => {
            let policy = NoisyExpert::new(args.env.expert(&args.env_options)?, *eps);
            run_with(&args, &config, &tasks, &factory, &policy)
        }
        PolicySpec::Model(dir) => {
            let mut policy =
                ModelAgent::load(&crate::models::model_path(dir)?, &args.device.open()?)
                    .with_context(|| format!("loading the policy model from {}", dir.display()))?;
            args.weights.apply(&mut policy)?;
            run_with(&args, &config, &tasks, &factory, &policy)
        }
        PolicySpec::OpenAi(spec) => {
            let policy = spec.client(None)?;
            run_with(&args, &config, &tasks, &factory, &policy)
        }
    }
}

fn run_with<P: Policy>(
    args: &Args,
    config: &SearchConfig,
    tasks: &[agentr_envs::TaskId],
    factory: &crate::envs::EnvFactory,
    policy: &P,
) -> Result<()> {
    let progress = Progress::new("collect", "tasks", tasks.len() as u64);
    let tally = Mutex::new(Tally::default());
    let on_done = |report: TaskReport| {
        let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
        match report.outcome {
            TaskOutcome::Skipped => tally.skipped += 1,
            TaskOutcome::Searched {
                success,
                nodes,
                replaced,
            } => {
                if let Some(reason) = replaced {
                    progress.println(&format!(
                        "task {}: searched again, its file was not a valid tree ({reason})",
                        report.task
                    ));
                }
                tally.searched += 1;
                tally.successes += usize::from(success);
                tally.nodes += nodes;
            }
            TaskOutcome::Failed(err) => {
                progress.println(&format!("task {} failed: {err}", report.task));
                tally.failed.push(report.task.0);
            }
        }
        progress.set_message(format!(
            "{} with a success, {} skipped, {} failed",
            tally.successes,
            tally.skipped,
            tally.failed.len()
        ));
        progress.inc(1);
    };
    super::remove_stale_temporaries(&args.out)?;
    let started = Instant::now();
    collect(
        tasks,
        &args.out,
        args.workers,
        config,
        policy,
        || Ok::<_, SearchError>(factory()),
        &on_done,
    )
    .with_context(|| format!("collecting into {}", args.out.display()))?;
    progress.finish();
    let tally = tally.into_inner().unwrap_or_else(|p| p.into_inner());
    eprintln!(
        "searched {} tasks in {:.1}s ({} with a successful leaf, {} nodes), skipped {} already done, {} failed; trees in {}",
        tally.searched,
        started.elapsed().as_secs_f64(),
        tally.successes,
        tally.nodes,
        tally.skipped,
        tally.failed.len(),
        args.out.display()
    );
    if !tally.failed.is_empty() {
        bail!("{} tasks failed: {:?}", tally.failed.len(), tally.failed);
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Tally {
    searched: usize,
    skipped: usize,
    successes: usize,
    nodes: usize,
    failed: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_specs_parse() {
        assert_eq!(
            "noisy-expert:0.3".parse::<PolicySpec>(),
            Ok(PolicySpec::NoisyExpert(0.3))
        );
        assert_eq!(
            "model:runs/a".parse::<PolicySpec>(),
            Ok(PolicySpec::Model("runs/a".into()))
        );
        assert_eq!(
            "openai:qwen@http://localhost:8000/v1".parse::<PolicySpec>(),
            Ok(PolicySpec::OpenAi(OpenAiSpec {
                model: "qwen".into(),
                base_url: "http://localhost:8000/v1".into()
            }))
        );
        for bad in [
            "noisy-expert",
            "noisy-expert:2",
            "noisy-expert:x",
            "model",
            "model:",
            "openai:",
            "openai:qwen",
            "openai:http://localhost:8000/v1",
        ] {
            assert!(bad.parse::<PolicySpec>().is_err(), "{bad}");
        }
    }
}
