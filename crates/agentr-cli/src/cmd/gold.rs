//! `agentr gold ENV --tasks T`: expert episodes as JSONL chat samples.

use std::io::Write;
use std::path::PathBuf;

use agentr_envs::episode::{RolloutOptions, rollout};
use agentr_envs::{EnvError, TaskSpec};
use anyhow::{Context, Result};

use crate::envs::{EnvName, EnvOptions};
use crate::progress::Progress;

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

/// A task selection as written, or its length when it is a long list of ids.
fn short_selection(text: &str) -> String {
    if text.len() <= 60 {
        return text.to_owned();
    }
    format!("{} ids", text.split(',').count())
}

pub fn run(args: Args) -> Result<()> {
    let mut env = args.env.build(&args.env_options)?;
    let expert = args.env.expert(&args.env_options)?;
    let tasks = args.tasks.resolve(env.as_ref())?;
    let options = RolloutOptions {
        max_rounds: args.max_rounds,
        clean_observations: args.clean_observations,
        ..RolloutOptions::default()
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
    let progress = Progress::new("gold", "tasks", tasks.len() as u64);
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
    progress.finish();
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
        "{} expert, tasks {}: solved {solved}/{total} ({rate:.1}%), mean {mean_steps:.2} steps, max {max_steps}; {written} episodes written{}",
        args.env.name(),
        short_selection(&args.tasks.to_string()),
        args.out
            .as_ref()
            .map(|p| format!(" to {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_id_lists_are_summarised() {
        assert_eq!(short_selection("train[:50],7"), "train[:50],7");
        let ids: Vec<String> = (100..140).map(|i| i.to_string()).collect();
        assert_eq!(short_selection(&ids.join(",")), "40 ids");
    }
}
