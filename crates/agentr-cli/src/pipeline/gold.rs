//! The expert's episodes as JSONL chat samples, with its success rate.

use std::io::Write;
use std::path::Path;

use agentr_envs::episode::{RolloutOptions, rollout};
use agentr_envs::{EnvError, TaskSpec};
use anyhow::{Context, Result};

use crate::envs::{EnvName, EnvOptions};
use crate::report::Reporter;

/// What to play.
#[derive(Debug, Clone)]
pub struct GoldJob {
    /// The environment.
    pub env: EnvName,
    /// Its options (data, server).
    pub env_options: EnvOptions,
    /// The tasks.
    pub tasks: TaskSpec,
    /// Most responses per episode.
    pub max_rounds: usize,
    /// Also write the episodes that did not reach the goal.
    pub include_failures: bool,
    /// Replace newlines and tabs in observations by spaces.
    pub clean_observations: bool,
}

/// How the expert did.
#[derive(Debug, Clone, PartialEq)]
pub struct GoldSummary {
    /// Tasks played.
    pub tasks: usize,
    /// Tasks whose episode reached reward 1.
    pub solved: usize,
    /// Mean steps of the solved episodes (0 without any).
    pub mean_steps: f64,
    /// Most steps of a solved episode.
    pub max_steps: usize,
    /// Episodes written.
    pub written: usize,
    /// One line per task not solved, with why.
    pub failures: Vec<String>,
}

impl GoldSummary {
    /// The summary in words: a `not solved: ...` line per failure, then the totals
    /// (`textcraft expert, tasks test: solved 3/3 ...`), naming `out`, where the episodes went,
    /// if they went to a file.
    pub fn describe(&self, job: &GoldJob, out: Option<&Path>) -> Vec<String> {
        let mut lines: Vec<String> = self
            .failures
            .iter()
            .map(|failure| format!("not solved: {failure}"))
            .collect();
        lines.push(format!(
            "{} expert, tasks {}: solved {}/{} ({:.1}%), mean {:.2} steps, max {}; {} episodes \
             written{}",
            job.env.name(),
            short_selection(&job.tasks.to_string()),
            self.solved,
            self.tasks,
            self.success_rate(),
            self.mean_steps,
            self.max_steps,
            self.written,
            out.map(|p| format!(" to {}", p.display()))
                .unwrap_or_default()
        ));
        lines
    }

    /// Solved tasks in percent (0 without tasks).
    pub fn success_rate(&self) -> f64 {
        if self.tasks == 0 {
            0.0
        } else {
            100.0 * self.solved as f64 / self.tasks as f64
        }
    }
}

/// A task selection as written, or its length when it is a long list of ids.
fn short_selection(text: &str) -> String {
    if text.len() <= 60 {
        return text.to_owned();
    }
    format!("{} ids", text.split(',').count())
}

/// Plays the expert on every task of `job`, writing each solved episode (and with
/// `include_failures` the others) to `out` as a JSON line. A task the expert cannot plan for
/// is a failure of that task only; other errors end the run.
pub fn gold(job: &GoldJob, out: &mut dyn Write, reporter: &dyn Reporter) -> Result<GoldSummary> {
    let mut env = job.env.build(&job.env_options)?;
    let expert = job.env.expert(&job.env_options)?;
    let tasks = job.tasks.resolve(env.as_ref())?;
    let options = RolloutOptions {
        max_rounds: job.max_rounds,
        clean_observations: job.clean_observations,
        ..RolloutOptions::default()
    };
    let progress = reporter.progress("gold", "tasks", tasks.len() as u64);
    let mut summary = GoldSummary {
        tasks: tasks.len(),
        solved: 0,
        mean_steps: 0.0,
        max_steps: 0,
        written: 0,
        failures: Vec::new(),
    };
    let mut steps_of_solved = 0;
    for &task in &tasks {
        let episode = match rollout::<EnvError, _>(env.as_mut(), task, options, |conversation| {
            expert.respond(conversation)
        }) {
            Ok(episode) => episode,
            // An expert that cannot plan fails this task only; the run goes on.
            Err(err @ (EnvError::NoPlan { .. } | EnvError::UnreadableObservation { .. })) => {
                summary.failures.push(format!("task {task}: {err}"));
                progress.inc(1);
                continue;
            }
            Err(err) => return Err(err).with_context(|| format!("task {task}")),
        };
        let success = episode.reward >= 1.0;
        if success {
            summary.solved += 1;
            steps_of_solved += episode.steps;
            summary.max_steps = summary.max_steps.max(episode.steps);
        } else {
            summary.failures.push(format!(
                "task {task}: reward {} after {} steps",
                episode.reward, episode.steps
            ));
        }
        if success || job.include_failures {
            serde_json::to_writer(&mut *out, &episode.to_sample())?;
            out.write_all(b"\n")?;
            summary.written += 1;
        }
        progress.set_message(format!("{} solved", summary.solved));
        progress.inc(1);
    }
    out.flush()?;
    progress.finish();
    if summary.solved > 0 {
        summary.mean_steps = steps_of_solved as f64 / summary.solved as f64;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Quiet;
    use agentr_envs::assets;

    #[test]
    fn long_id_lists_are_summarised() {
        assert_eq!(short_selection("train[:50],7"), "train[:50],7");
        let ids: Vec<String> = (100..140).map(|i| i.to_string()).collect();
        assert_eq!(short_selection(&ids.join(",")), "40 ids");
    }

    #[test]
    fn the_expert_solves_textcraft_goals_and_writes_their_episodes() {
        if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
            return;
        }
        let job = GoldJob {
            env: EnvName::Textcraft,
            env_options: EnvOptions::default_for(EnvName::Textcraft),
            tasks: "train[:3]".parse().unwrap(),
            max_rounds: 40,
            include_failures: false,
            clean_observations: false,
        };
        let mut out = Vec::new();
        let summary = gold(&job, &mut out, &Quiet).unwrap();
        assert_eq!((summary.tasks, summary.solved, summary.written), (3, 3, 3));
        assert!(summary.failures.is_empty());
        assert!(summary.mean_steps >= 1.0 && summary.max_steps as f64 >= summary.mean_steps);
        let samples: Vec<agentr_envs::Sample> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(samples.len(), 3);
        assert!(samples.iter().all(|s| s.meta["reward"] == 1.0));
    }
}
