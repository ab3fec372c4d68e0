//! `agentr self-train`: the Agent-R loop in one run directory, or an experiment of several
//! arms over several seeds (see [`agentr_cli::pipeline::self_train`] and
//! [`agentr_cli::pipeline::experiment`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use agentr_cli::pipeline::experiment::experiment;
use agentr_cli::pipeline::self_train::{
    Arm, Experiment, ExperimentArm, JudgeChoice, Overrides, Preset, RunConfig, execute,
};
use anyhow::{Context, Result};
use serde_json::Value;

use super::compare::print_comparisons;
use crate::envs::EnvName;
use crate::terminal::Terminal;

/// Arguments of `agentr self-train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directory; an existing one is resumed (its saved settings must match).
    #[arg(long, value_name = "DIR", default_value = "runs/quick")]
    out: PathBuf,
    /// Settings preset.
    #[arg(long, default_value = "quick")]
    preset: Preset,
    /// What the iterations train on.
    #[arg(long, default_value = "agent-r")]
    mode: Arm,
    /// Judge of the agent-r arm.
    #[arg(long, default_value = "env-feedback")]
    judge: JudgeChoice,
    /// Environments (one model across them).
    #[arg(long, value_delimiter = ',', default_value = "textcraft")]
    envs: Vec<EnvName>,
    /// Self-training iterations (default: the preset's).
    #[arg(long)]
    iterations: Option<usize>,
    /// Start from this model folder instead of behaviour cloning (for example another run's
    /// `bc/model`, so several arms share one warm start).
    #[arg(long, value_name = "DIR")]
    start_model: Option<PathBuf>,
    /// The base model (default: the preset's): a preset trained from scratch (tiny-2l, ...),
    /// or a pretrained model: smollm2-135m, a model folder, a .gguf file or org/name.
    #[arg(long, value_name = "MODEL")]
    base: Option<String>,
    /// Expert episodes of the warm start: goals of the behaviour-cloning pool (default: the
    /// preset's; 0 starts from the base model itself, as the paper does).
    #[arg(long, value_name = "N")]
    warm_start_goals: Option<usize>,
    /// Seed of initial weights, data order, search and sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run an experiment: these arms, each over every seed of --seeds, sharing each seed's warm
    /// start and iteration-1 trees (default for the smol preset: all five; with another preset,
    /// giving arms makes the run an experiment).
    #[arg(long, value_delimiter = ',', value_name = "ARMS")]
    arms: Vec<ExperimentArm>,
    /// The experiment's seeds [default: 0,1,2].
    #[arg(long, value_delimiter = ',', value_name = "SEEDS")]
    seeds: Vec<u64>,
    /// Parallel workers for search and evaluation [default: 2; 1 with 8-bit generation
    /// weights (the smol preset), whose kernels use every core for one episode: 82 s against
    /// 92 s with 2 workers for 12 TextCraft goals on 2 cores].
    #[arg(long, value_parser = super::at_least_one)]
    workers: Option<usize>,
    /// General chat data (JSONL samples) mixed into every iteration's training, as the paper
    /// mixes ShareGPT data.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    general: Vec<PathBuf>,
    /// Share of self-play samples in an iteration's training when general data is mixed in
    /// (the paper's eta; default: the preset's, 0.2 for paper and 0.5 for quick).
    #[arg(long)]
    eta: Option<f64>,
    /// Take every setting from this JSON file (the `config.json` layout of a run directory)
    /// instead of the preset and the options above (with --arms: the settings every arm's run
    /// shares).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    device: crate::device::DeviceArg,
}

pub fn run(args: Args) -> Result<()> {
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a run configuration", path.display()))?
        }
        None => RunConfig::preset(args.preset, &overrides(&args)),
    };
    let workers = args
        .workers
        .unwrap_or_else(|| config.default_workers())
        .max(1);
    let started = Instant::now();
    // An experiment: arms were named, or the smol preset (whose point is its arms) was asked for.
    if !args.arms.is_empty() || (args.config.is_none() && args.preset == Preset::Smol) {
        let plan = Experiment::new(&args.arms, &args.seeds, config);
        let report = experiment(&args.out, &plan, workers, args.device.device, &Terminal)?;
        print_report(&report);
        eprintln!(
            "experiment finished in {:.0}s (this invocation); results in {}",
            started.elapsed().as_secs_f64(),
            args.out.join("results.json").display()
        );
        return Ok(());
    }
    let summary = execute(
        &args.out,
        config,
        workers,
        args.device.device,
        false,
        &Terminal,
    )?;
    print_table(&summary);
    eprintln!(
        "run finished in {:.0}s (this invocation); results in {}",
        started.elapsed().as_secs_f64(),
        args.out.join("results.json").display()
    );
    Ok(())
}

/// What the command line sets on top of the preset.
fn overrides(args: &Args) -> Overrides {
    Overrides {
        mode: args.mode,
        judge: args.judge,
        envs: args.envs.clone(),
        seed: args.seed,
        iterations: args.iterations,
        start_model: args.start_model.clone(),
        base: args.base.clone(),
        warm_start_goals: args.warm_start_goals,
        general: args.general.clone(),
        eta: args.eta,
    }
}

fn print_table(summary: &serde_json::Value) {
    eprintln!(
        "{:<18} {:<10} {:>9} {:>8} {:>7} {:>9} {:>10}  repeats/episode (len 1, 2, 3)",
        "stage", "env", "success%", "reward", "steps", "invalid%", "revisions"
    );
    for row in summary["evaluations"].as_array().into_iter().flatten() {
        let f = |name: &str| row[name].as_f64().unwrap_or(f64::NAN);
        let repeats: Vec<String> = row["repeats_per_episode"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| format!("{:.2}", v.as_f64().unwrap_or(f64::NAN)))
            .collect();
        eprintln!(
            "{:<18} {:<10} {:>9.1} {:>8.1} {:>7.1} {:>9.1} {:>10.2}  {}",
            row["stage"].as_str().unwrap_or_default(),
            row["env"].as_str().unwrap_or_default(),
            f("success_rate_x100"),
            f("average_reward_x100"),
            f("mean_steps"),
            100.0 * f("invalid_action_rate"),
            f("revision_turns_per_episode"),
            repeats.join(" / ")
        );
    }
    print_comparisons(&summary["comparisons"]);
}

fn print_report(report: &Value) {
    // Success per arm and test over the seeds.
    let mut table: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
    let mut order: Vec<(String, String, String)> = Vec::new();
    for row in report["rows"].as_array().into_iter().flatten() {
        let key = (
            row["arm"].as_str().unwrap_or_default().to_owned(),
            row["test"].as_str().unwrap_or_default().to_owned(),
            row["env"].as_str().unwrap_or_default().to_owned(),
        );
        if !order.contains(&key) {
            order.push(key.clone());
        }
        let success = row["metrics"]["success_rate_x100"]
            .as_f64()
            .unwrap_or(f64::NAN);
        table.entry(key).or_default().push(success);
    }
    eprintln!(
        "{:<28} {:<11} {:<10} {:>8}  per seed",
        "arm", "test", "env", "success%"
    );
    for key in &order {
        let values = &table[key];
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        let each: Vec<String> = values.iter().map(|v| format!("{v:.1}")).collect();
        eprintln!(
            "{:<28} {:<11} {:<10} {:>8.1}  {}",
            key.0,
            key.1,
            key.2,
            mean,
            each.join(" / ")
        );
    }
    print_comparisons(&report["comparisons"]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_overrides_the_preset() {
        let args: Args = super::super::parse_flags(
            "self-train",
            &[
                "--preset",
                "smol",
                "--base",
                "org/model",
                "--warm-start-goals",
                "0",
                "--iterations",
                "3",
                "--mode",
                "good-only",
                "--seed",
                "4",
                "--eta",
                "0.3",
            ],
        )
        .unwrap();
        let config = RunConfig::preset(args.preset, &overrides(&args));
        assert_eq!(config.preset, Preset::Smol);
        assert_eq!(
            (config.bc.model.as_str(), config.bc.tasks),
            ("org/model", 0)
        );
        assert_eq!(
            (config.iterations, config.mode, config.seed),
            (3, Arm::GoodOnly, 4)
        );
        assert_eq!((config.judge, config.train.eta), (None, 0.3));
        assert_eq!(
            config.default_workers(),
            1,
            "int8 weights decode on every core"
        );
    }
}
