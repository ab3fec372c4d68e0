//! `agentr gold ENV --split S`: expert episodes as JSONL chat samples.

use std::io::Write;
use std::path::PathBuf;

use agentr_envs::episode::{RolloutOptions, rollout};
use agentr_envs::{EnvError, Split};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::envs::{EnvName, EnvOptions};

/// Arguments of `agentr gold`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment.
    env: EnvName,
    /// Which task ids to play: test, train or all.
    #[arg(long, default_value = "test")]
    split: Split,
    /// Output JSONL file (default: standard output).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Most responses per episode.
    #[arg(long, default_value_t = 100)]
    max_rounds: usize,
    /// Also write episodes that did not reach the goal.
    #[arg(long)]
    include_failures: bool,
    /// Replace newlines and tabs in observations by spaces (as the Agent-R reference did).
    #[arg(long)]
    clean_observations: bool,
    #[command(flatten)]
    env_options: EnvOptions,
}

pub fn run(args: Args) -> Result<()> {
    let mut env = args.env.build(&args.env_options)?;
    let expert = args.env.expert();
    let tasks = env.task_ids(args.split);
    let options = RolloutOptions {
        max_rounds: args.max_rounds,
        clean_observations: args.clean_observations,
        ..RolloutOptions::default()
    };
    let mut sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let progress = ProgressBar::new(tasks.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tasks, {msg} [{elapsed}<{eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut solved, mut written, mut steps_of_solved, mut max_steps) =
        (0usize, 0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for &task in &tasks {
        let episode = match rollout::<EnvError, _>(env.as_mut(), task, options, |conversation| {
            expert.respond(conversation)
        }) {
            Ok(episode) => episode,
            // An expert that cannot plan fails this task only; the run goes on.
            Err(err @ (EnvError::NoPlan { .. } | EnvError::UnreadableObservation { .. })) => {
                failures.push(format!("task {task}: {err}"));
                progress.inc(1);
                continue;
            }
            Err(err) => return Err(err).with_context(|| format!("task {task}")),
        };
        let success = episode.reward >= 1.0;
        if success {
            solved += 1;
            steps_of_solved += episode.steps;
            max_steps = max_steps.max(episode.steps);
        } else {
            failures.push(format!(
                "task {task}: reward {} after {} steps",
                episode.reward, episode.steps
            ));
        }
        if success || args.include_failures {
            serde_json::to_writer(&mut sink, &episode.to_sample())?;
            sink.write_all(b"\n")?;
            written += 1;
        }
        progress.set_message(format!("{solved} solved"));
        progress.inc(1);
    }
    sink.flush()?;
    progress.finish_and_clear();
    for failure in &failures {
        eprintln!("not solved: {failure}");
    }
    let total = tasks.len();
    let rate = if total == 0 {
        0.0
    } else {
        100.0 * solved as f64 / total as f64
    };
    let mean_steps = if solved == 0 {
        0.0
    } else {
        steps_of_solved as f64 / solved as f64
    };
    eprintln!(
        "{} expert, split {}: solved {solved}/{total} ({rate:.1}%), mean {mean_steps:.2} steps, max {max_steps}; {written} episodes written{}",
        args.env.name(),
        args.split,
        args.out
            .as_ref()
            .map(|p| format!(" to {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}
