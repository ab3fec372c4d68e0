//! An experiment: several arms over several seeds, in one resumable directory (what
//! `agentr self-train --preset smol` or `--arms ...` runs).
//!
//! ```text
//! DIR/experiment.json             the arms, seeds and shared run settings
//! DIR/seed-S/base/                the warm start (or the pretrained base) and its evaluations
//! DIR/seed-S/<arm>/               a `self-train` run from seed S's start model; the first arm
//!                                 with iterations searches iteration 1, the others reuse its trees
//! DIR/results.json                every arm and seed, and the paired comparisons
//! ```
//!
//! Arms run seed by seed, so the first seed's comparison is complete first. A stopped
//! experiment resumes at its first unfinished stage (each run keeps its own manifest). Kept
//! without its model folders, it trains again only the models an unfinished stage reads: a
//! seed's warm start while one of its arms is unfinished, an arm's models while it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use agentr_train::DeviceChoice;

use super::compare::compare_folders;
use super::self_train::{Experiment, ExperimentArm, execute, finished};
use crate::report::Reporter;

/// The comparisons an experiment reports: (candidate, baseline), the paper's orderings first.
const ORDERINGS: [(ExperimentArm, ExperimentArm); 7] = [
    (ExperimentArm::AgentR, ExperimentArm::DirectRevision),
    (ExperimentArm::DirectRevision, ExperimentArm::GoodOnly),
    (ExperimentArm::GoodOnly, ExperimentArm::Base),
    (ExperimentArm::AgentR, ExperimentArm::Base),
    (ExperimentArm::DirectRevision, ExperimentArm::Base),
    (ExperimentArm::AgentREnvFeedback, ExperimentArm::Base),
    (ExperimentArm::AgentR, ExperimentArm::AgentREnvFeedback),
];

/// Runs or resumes `experiment` in `dir` (each run with `workers` workers on `device`), and
/// returns its report (also written to `dir/results.json`): every arm and seed, and the paired
/// comparisons.
pub fn experiment(
    dir: &Path,
    experiment: &Experiment,
    workers: usize,
    device: DeviceChoice,
    reporter: &dyn Reporter,
) -> Result<Value> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let saved_path = dir.join("experiment.json");
    if saved_path.exists() {
        let text = std::fs::read_to_string(&saved_path)
            .with_context(|| format!("reading {}", saved_path.display()))?;
        let saved: Experiment = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an experiment", saved_path.display()))?;
        if &saved != experiment {
            bail!(
                "{} holds an experiment with other settings; resume it with the same options or \
                 choose another --out\nsaved:     {}\nrequested: {}",
                dir.display(),
                serde_json::to_string(&saved)?,
                serde_json::to_string(experiment)?
            );
        }
        reporter.line(&format!("resuming the experiment in {}", dir.display()));
    } else {
        let bytes = serde_json::to_vec_pretty(experiment)?;
        agentr_envs::atomic::write(&saved_path, &bytes)
            .with_context(|| format!("writing {}", saved_path.display()))?;
    }
    let arms: Vec<&str> = experiment.arms.iter().map(|a| a.name()).collect();
    reporter.line(&format!(
        "experiment in {}: arms {}, seeds {:?}",
        dir.display(),
        arms.join(", "),
        experiment.seeds
    ));
    let mut results = BTreeMap::new();
    for &seed in &experiment.seeds {
        // The other arms start from the base arm's warm start: while one of them is
        // unfinished, a warm start whose weights were not kept is trained again.
        let mut start_needed = false;
        for &arm in experiment
            .arms
            .iter()
            .filter(|&&a| a != ExperimentArm::Base)
        {
            let run = dir.join(Experiment::run_dir(arm, seed));
            start_needed |= !finished(&run, &experiment.run_config(dir, arm, seed))?;
        }
        for &arm in &experiment.arms {
            let relative = Experiment::run_dir(arm, seed);
            reporter.line(&format!("== {relative}"));
            let config = experiment.run_config(dir, arm, seed);
            let needed_elsewhere = arm == ExperimentArm::Base && start_needed;
            let summary = execute(
                &dir.join(&relative),
                config,
                workers,
                device,
                needed_elsewhere,
                reporter,
            )?;
            results.insert((arm, seed), summary);
        }
    }
    let report = summarise(dir, experiment, &results)?;
    let path = dir.join("results.json");
    agentr_envs::atomic::write(&path, &serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(report)
}

/// One arm at one iteration, as the report names it.
#[derive(Debug, Clone)]
struct Entry {
    /// `agent-r`, or `agent-r (iteration 2)` beyond the first.
    label: String,
    arm: ExperimentArm,
    iteration: usize,
}

impl Entry {
    fn first(arm: ExperimentArm) -> Self {
        Entry {
            label: arm.name().to_owned(),
            arm,
            iteration: 1,
        }
    }

    /// The stage folder of its evaluations: the start model's (`bc`) for the base, else the
    /// iteration's.
    fn stage(&self) -> String {
        match self.arm {
            ExperimentArm::Base => "bc".to_owned(),
            _ => format!("iter-{}", self.iteration),
        }
    }

    /// Its evaluation folder of `test` on `env` with `seed`, the experiment in `dir`.
    fn folder(&self, dir: &Path, seed: u64, test: &str, env: &str) -> PathBuf {
        dir.join(Experiment::run_dir(self.arm, seed))
            .join(format!("{}/{test}/{env}", self.stage()))
    }
}

/// Success rates and metrics of every arm and seed, and the paired comparisons.
fn summarise(
    dir: &Path,
    experiment: &Experiment,
    results: &BTreeMap<(ExperimentArm, u64), Value>,
) -> Result<Value> {
    let tests: &[&str] = match experiment.template.eval.reflection_rounds {
        0 => &["eval"],
        _ => &["eval", "reflection"],
    };
    // Every arm at iteration 1, and agent-r at its last.
    let mut entries: Vec<Entry> = experiment.arms.iter().map(|&a| Entry::first(a)).collect();
    let mut pairs: Vec<(Entry, Entry)> = ORDERINGS
        .iter()
        .filter(|(a, b)| experiment.arms.contains(a) && experiment.arms.contains(b))
        .map(|&(a, b)| (Entry::first(a), Entry::first(b)))
        .collect();
    if experiment.arms.contains(&ExperimentArm::AgentR) && experiment.agent_r_iterations > 1 {
        let last = experiment.agent_r_iterations;
        let later = Entry {
            label: format!("agent-r (iteration {last})"),
            arm: ExperimentArm::AgentR,
            iteration: last,
        };
        for baseline in [ExperimentArm::AgentR, ExperimentArm::Base] {
            pairs.push((later.clone(), Entry::first(baseline)));
        }
        entries.push(later);
    }
    let mut rows = Vec::new();
    for entry in &entries {
        let prefix = format!("{}/", entry.stage());
        for &seed in &experiment.seeds {
            let evaluations = results
                .get(&(entry.arm, seed))
                .and_then(|r| r["evaluations"].as_array())
                .into_iter()
                .flatten();
            for evaluation in evaluations {
                let Some(name) = evaluation["stage"].as_str() else {
                    continue;
                };
                if let Some(test) = name.strip_prefix(&prefix) {
                    rows.push(json!({
                        "arm": entry.label,
                        "seed": seed,
                        "test": test,
                        "env": evaluation["env"],
                        "metrics": evaluation,
                    }));
                }
            }
        }
    }
    let mut comparisons = Vec::new();
    for (candidate, baseline) in &pairs {
        for test in tests {
            for env in &experiment.template.envs {
                let folders = |entry: &Entry| -> Vec<PathBuf> {
                    experiment
                        .seeds
                        .iter()
                        .map(|&seed| entry.folder(dir, seed, test, env))
                        .collect()
                };
                let paired = compare_folders(&folders(baseline), &folders(candidate))?;
                comparisons.push(json!({
                    "candidate": candidate.label,
                    "baseline": baseline.label,
                    "test": test,
                    "env": env,
                    "paired": paired,
                    "beyond_noise": paired.significant(),
                }));
            }
        }
    }
    Ok(json!({
        "experiment": experiment,
        "rows": rows,
        "comparisons": comparisons,
    }))
}
