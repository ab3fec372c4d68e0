//! A model plays an environment's tasks (or continues failed episodes, the self-reflection
//! test): success, reward, steps, invalid actions and loop statistics, with the protocol
//! recorded next to every number.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use agentr_envs::chat::REVISION_ACTION;
use agentr_envs::episode::{Episode, RevisionTurns, RolloutOptions, continue_from, rollout};
use agentr_envs::metrics::LoopStats;
use agentr_envs::metrics::paired::Comparison;
use agentr_envs::rng::Rng;
use agentr_envs::{Message, Role, TaskId, TaskSpec};
use agentr_train::openai::ChatClient;
use agentr_train::{ModelAgent, TrainError};
use anyhow::{Context, Result, bail};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::Runtime;
use super::compare::compare_folders;
use super::files::remove_stale_temporaries;
use crate::envs::{EnvName, EnvOptions};
use crate::remote::OpenAiSpec;
use crate::report::Reporter;
use crate::samples::read_samples;

/// Which episodes an evaluation plays.
#[derive(Debug, Clone, PartialEq)]
pub enum Episodes {
    /// Fresh episodes of these tasks.
    Fresh(TaskSpec),
    /// The self-reflection test: the failed episodes of `from` (an earlier evaluation's
    /// `episodes.jsonl`), each cut after a seeded random number of responses and continued
    /// for at most `continue_rounds` rounds; only the `first` ones in task order when given.
    Reflection {
        /// The episodes file.
        from: PathBuf,
        /// Seed of the cut points.
        cut_seed: u64,
        /// Most new rounds after the cut.
        continue_rounds: usize,
        /// Continue only this many episodes.
        first: Option<usize>,
    },
}

/// What to evaluate, and how.
#[derive(Debug, Clone)]
pub struct EvalJob {
    /// The environment.
    pub env: EnvName,
    /// Its options (data, seed, server).
    pub env_options: EnvOptions,
    /// The evaluated model.
    pub model: ModelSpec,
    /// The episodes.
    pub episodes: Episodes,
    /// Most rounds per fresh episode.
    pub max_rounds: usize,
    /// Sampling temperature; 0 is greedy.
    pub temperature: f64,
    /// Sampling seed (combined with the task and round).
    pub sampling_seed: u64,
    /// Most new tokens per response.
    pub max_tokens: usize,
    /// Episodes played at once (the model is shared).
    pub workers: usize,
    /// Send revision turns to the environment instead of answering them `ok.`.
    pub send_revision_turns: bool,
    /// Replace newlines and tabs in observations by spaces.
    pub clean_observations: bool,
    /// Output folder: `episodes.jsonl` and `summary.json`.
    pub out: PathBuf,
    /// An earlier evaluation of the same tasks to compare with by pairs.
    pub baseline: Option<PathBuf>,
    /// Where a local model runs.
    pub runtime: Runtime,
}

/// The headline numbers of an evaluation (`summary.json` holds them with the protocol).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSummary {
    /// The environment's name.
    pub env: &'static str,
    /// The tasks, as given, or which episodes were continued.
    pub selection: String,
    /// Episodes played.
    pub episodes: usize,
    /// Most rounds per episode (after the cut in the self-reflection test).
    pub rounds: usize,
    /// `greedy` or `temperature T`.
    pub decoding: String,
    /// Episodes that reached reward 1.
    pub successes: usize,
    /// Success rate in percent.
    pub success_rate_x100: f64,
    /// Mean final reward in percent.
    pub average_reward_x100: f64,
    /// Mean responses per episode (after the cut).
    pub mean_steps: f64,
    /// Share of actions the environment rejected.
    pub invalid_action_rate: f64,
    /// Revision turns per episode.
    pub revision_turns_per_episode: f64,
    /// The paired comparison with the baseline, when one was given.
    pub comparison: Option<Comparison>,
}

/// The evaluated model: a folder, or a model on an OpenAI-compatible server.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    /// A model folder from `agentr train`.
    Dir(PathBuf),
    /// `openai:MODEL@BASE_URL`.
    OpenAi(OpenAiSpec),
}

impl FromStr for ModelSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("openai:") {
            Some(rest) => OpenAiSpec::parse(rest).map(ModelSpec::OpenAi),
            None => Ok(ModelSpec::Dir(PathBuf::from(s))),
        }
    }
}

impl std::fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSpec::Dir(dir) => write!(f, "{}", dir.display()),
            ModelSpec::OpenAi(spec) => write!(f, "{spec}"),
        }
    }
}

/// What answers during evaluation.
enum Responder {
    Local(Box<ModelAgent>),
    Remote(Box<ChatClient>),
}

/// SHA-256 of a model's weights: the file itself for a `.gguf`, else the folder's
/// `config.json` and every `*.safetensors` file (shards included) by name order, streamed.
pub(super) fn model_digest(path: &Path) -> Result<String> {
    let mut files = Vec::new();
    if path.is_file() {
        files.push(path.to_owned());
    } else {
        let entries =
            std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?;
        for entry in entries {
            let file = entry?.path();
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name == "config.json" || name.ends_with(".safetensors") {
                files.push(file);
            }
        }
        files.sort();
    }
    let mut hasher = Sha256::new();
    for file in &files {
        let mut reader =
            std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
        std::io::copy(&mut reader, &mut hasher)
            .with_context(|| format!("reading {}", file.display()))?;
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Error type of one episode: the model's or the environment's.
#[derive(Debug)]
enum EpisodeError {
    Env(agentr_envs::EnvError),
    Model(TrainError),
}

impl From<agentr_envs::EnvError> for EpisodeError {
    fn from(e: agentr_envs::EnvError) -> Self {
        EpisodeError::Env(e)
    }
}

impl std::fmt::Display for EpisodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EpisodeError::Env(e) => write!(f, "environment: {e}"),
            EpisodeError::Model(e) => write!(f, "model: {e}"),
        }
    }
}

/// One episode to play: a fresh task, or a recorded conversation to continue.
struct Job {
    task: TaskId,
    /// The recorded conversation up to the cut, and the number of responses kept.
    prefix: Option<(Vec<Message>, usize)>,
}

/// How the metrics count an evaluation's responses.
#[derive(Debug, Default, PartialEq)]
struct ActionCounts {
    /// Responses whose action reached the environment.
    actions: usize,
    /// Of those, the ones the environment rejected.
    rejected: usize,
    /// Revision turns answered `ok.` instead of reaching the environment: neither valid nor
    /// invalid actions, so a model that learns to revise is not credited with fewer invalid
    /// actions for the turns themselves.
    revisions: usize,
}

impl ActionCounts {
    /// Counts the (response, observation) pairs of `turns` and returns the actions that reached
    /// the environment, in order, for the loop statistics (an acknowledged revision turn
    /// between two equal actions must not hide the repeat).
    fn add(
        &mut self,
        turns: &[Message],
        revision_turns_sent: bool,
        extract_action: impl Fn(&str) -> String,
        first_observation: &str,
        is_rejection: impl Fn(&str, &str) -> bool,
    ) -> Vec<String> {
        let mut actions = Vec::new();
        // The environment's last answer (acknowledged revision turns never reach it).
        let mut previous = first_observation;
        for pair in turns.chunks(2) {
            if let [response, observation] = pair {
                if response.role != Role::Assistant {
                    continue;
                }
                let action = extract_action(&response.content);
                if action == REVISION_ACTION && !revision_turns_sent {
                    self.revisions += 1;
                } else {
                    self.actions += 1;
                    self.rejected += usize::from(is_rejection(previous, &observation.content));
                    previous = &observation.content;
                    actions.push(action);
                }
            }
        }
        actions
    }

    fn invalid_rate(&self) -> f64 {
        match self.actions {
            0 => 0.0,
            n => self.rejected as f64 / n as f64,
        }
    }
}

/// The self-reflection jobs: every failed episode of `path` (for `env`), cut after a number
/// of responses drawn uniformly from 1 to its length (to its length - 1 when the environment
/// had ended it), seeded by `seed` and the task.
fn reflection_jobs(path: &Path, env: &str, seed: u64) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    for sample in read_samples(path)? {
        if sample.meta.get("env").and_then(|v| v.as_str()) != Some(env) {
            continue;
        }
        let reward = sample.meta.get("reward").and_then(|v| v.as_f64());
        let task = sample.meta.get("task").and_then(|v| v.as_u64());
        let (Some(reward), Some(task)) = (reward, task) else {
            bail!(
                "{}: an episode without meta.reward or meta.task",
                path.display()
            );
        };
        if reward >= 1.0 {
            continue;
        }
        let responses = sample.messages.len().saturating_sub(3) / 2;
        let ended = sample.meta.get("done").and_then(|v| v.as_bool()) == Some(true);
        let choices = if ended {
            responses.saturating_sub(1)
        } else {
            responses
        };
        if choices == 0 {
            continue;
        }
        let cut = 1 + Rng::from_parts(&[seed, task]).index(choices);
        let prefix = sample.messages[..3 + 2 * cut].to_vec();
        jobs.push(Job {
            task: TaskId(task),
            prefix: Some((prefix, cut)),
        });
    }
    Ok(jobs)
}

impl EvalSummary {
    /// The headline numbers in words, and the comparison with `baseline` when there is one.
    pub fn describe(&self, baseline: Option<&Path>) -> Vec<String> {
        let mut lines = vec![format!(
            "{}, {} tasks ({}), max {} rounds, {}: success {}/{} ({:.1}%), average reward x100 \
             {:.1}, mean steps {:.1}, invalid actions {:.1}%, revision turns per episode {:.2}",
            self.env,
            self.episodes,
            self.selection,
            self.rounds,
            self.decoding,
            self.successes,
            self.episodes,
            self.success_rate_x100,
            self.average_reward_x100,
            self.mean_steps,
            100.0 * self.invalid_action_rate,
            self.revision_turns_per_episode,
        )];
        if let (Some(baseline), Some(comparison)) = (baseline, &self.comparison) {
            lines.push(format!(
                "against {}: {}",
                baseline.display(),
                super::compare::describe(comparison)
            ));
        }
        lines
    }
}

/// Plays `job`'s episodes, writes `episodes.jsonl` and `summary.json` into `job.out`, and
/// returns the headline numbers. Episodes that fail (the model's or the environment's error)
/// are reported one line each, then the evaluation fails.
pub fn evaluate(job: &EvalJob, reporter: &dyn Reporter) -> Result<EvalSummary> {
    let continue_rounds = match &job.episodes {
        Episodes::Reflection {
            continue_rounds, ..
        } => *continue_rounds,
        Episodes::Fresh(_) => 0,
    };
    let factory = job.env.factory(&job.env_options)?;
    let jobs: Vec<Job> = match &job.episodes {
        Episodes::Reflection {
            from,
            cut_seed,
            first,
            ..
        } => {
            let mut jobs = reflection_jobs(from, job.env.name(), *cut_seed)?;
            jobs.sort_by_key(|job| job.task.0);
            jobs.truncate(first.unwrap_or(usize::MAX));
            jobs
        }
        Episodes::Fresh(tasks) => tasks
            .resolve(factory().as_ref())?
            .into_iter()
            .map(|task| Job { task, prefix: None })
            .collect(),
    };
    if jobs.is_empty() {
        match &job.episodes {
            Episodes::Reflection { from, .. } => bail!(
                "{} holds no failed {} episode to continue",
                from.display(),
                job.env.name()
            ),
            Episodes::Fresh(tasks) => bail!("the task selection `{tasks}` is empty"),
        }
    }
    let tasks: Vec<TaskId> = jobs.iter().map(|j| j.task).collect();
    let (responder, model_digest) = match &job.model {
        ModelSpec::Dir(dir) => {
            let mut agent = job.runtime.load(dir)?;
            agent.generation.max_new_tokens = job.max_tokens;
            let digest = model_digest(&agent.source)?;
            (Responder::Local(Box::new(agent)), Some(digest))
        }
        ModelSpec::OpenAi(spec) => (
            Responder::Remote(Box::new(spec.client(Some(job.max_tokens))?)),
            None,
        ),
    };
    std::fs::create_dir_all(&job.out).with_context(|| format!("creating {}", job.out.display()))?;
    remove_stale_temporaries(&job.out, reporter)?;
    let options = RolloutOptions {
        max_rounds: job.max_rounds,
        clean_observations: job.clean_observations,
        revision_turns: if job.send_revision_turns {
            RevisionTurns::SendToEnvironment
        } else {
            RevisionTurns::Acknowledge
        },
    };

    let progress = reporter.progress("eval", "episodes", tasks.len() as u64);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Episode, String>>>> =
        Mutex::new((0..tasks.len()).map(|_| None).collect());
    let solved = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..job.workers.clamp(1, tasks.len()) {
            scope.spawn(|| {
                let mut env = factory();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(episode_job) = jobs.get(index) else {
                        break;
                    };
                    let task = episode_job.task;
                    let mut round = 0u64;
                    let respond = |chat: &[Message]| {
                        round += 1;
                        let seed =
                            agentr_envs::rng::Rng::from_parts(&[job.sampling_seed, task.0, round])
                                .next_u64();
                        match &responder {
                            Responder::Local(agent) => {
                                agent.respond(chat, 1, job.temperature, seed)
                            }
                            Responder::Remote(client) => {
                                client.sample_chat(chat, 1, job.temperature, job.max_tokens, seed)
                            }
                        }
                        .map_err(EpisodeError::Model)?
                        .pop()
                        .ok_or_else(|| {
                            EpisodeError::Model(TrainError::Config("no response".into()))
                        })
                    };
                    let episode = match &episode_job.prefix {
                        None => rollout::<EpisodeError, _>(env.as_mut(), task, options, respond),
                        Some((prefix, _)) => {
                            let more = RolloutOptions {
                                max_rounds: continue_rounds,
                                ..options
                            };
                            continue_from(env.as_mut(), task, prefix, more, respond)
                        }
                    }
                    .map_err(|e| e.to_string());
                    if episode.as_ref().is_ok_and(|e| e.reward >= 1.0) {
                        solved.fetch_add(1, Ordering::Relaxed);
                    }
                    results.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(episode);
                    progress.set_message(format!("{} solved", solved.load(Ordering::Relaxed)));
                    progress.inc(1);
                }
            });
        }
    });
    progress.finish();
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());

    let env_name = job.env.name();
    let reader = factory();
    let mut episodes_file = std::io::BufWriter::new(
        std::fs::File::create(job.out.join("episodes.jsonl")).context("creating episodes.jsonl")?,
    );
    let mut rewards = Vec::new();
    let mut steps = Vec::new();
    let mut actions_per_episode = Vec::new();
    let mut counts = ActionCounts::default();
    let mut failures = Vec::new();
    for ((task, episode_job), result) in tasks.iter().zip(&jobs).zip(results) {
        match result {
            Some(Ok(episode)) => {
                // In the self-reflection test only the responses after the cut are the
                // evaluated model's; the metrics count those.
                let cut = episode_job.prefix.as_ref().map_or(0, |(_, cut)| *cut);
                let mut sample = episode.to_sample();
                sample
                    .meta
                    .insert("model".into(), json!(job.model.to_string()));
                if episode_job.prefix.is_some() {
                    sample.meta.insert("cut".into(), json!(cut));
                }
                serde_json::to_writer(&mut episodes_file, &sample)?;
                episodes_file.write_all(b"\n")?;
                rewards.push(episode.reward);
                steps.push((episode.steps - cut) as f64);
                let turns = &episode.messages[3 + 2 * cut..];
                let episode_actions = counts.add(
                    turns,
                    job.send_revision_turns,
                    |response| reader.extract_action(response),
                    &episode.messages[2 + 2 * cut].content,
                    |previous, observation| reader.is_rejection(previous, observation),
                );
                actions_per_episode.push(episode_actions);
            }
            Some(Err(message)) => failures.push(format!("task {task}: {message}")),
            None => failures.push(format!("task {task}: not run")),
        }
    }
    episodes_file.flush()?;
    if !failures.is_empty() {
        for failure in &failures {
            reporter.line(failure);
        }
        bail!("{} episodes failed; see above", failures.len());
    }
    let n = rewards.len().max(1) as f64;
    let mean = |values: &[f64]| values.iter().sum::<f64>() / n;
    let successes = rewards.iter().filter(|&&r| r >= 1.0).count();
    let selection = match &job.episodes {
        Episodes::Reflection { from, .. } => format!("the failed episodes of {}", from.display()),
        Episodes::Fresh(tasks) => tasks.to_string(),
    };
    let decoding = if job.temperature <= 0.0 {
        "greedy".to_owned()
    } else {
        format!("temperature {}", job.temperature)
    };
    let mut summary = json!({
        "protocol": {
            "env": env_name,
            "tasks": selection,
            "task_count": tasks.len(),
            "max_rounds": job.max_rounds,
            "decoding": decoding,
            "sampling_seed": job.sampling_seed,
            "textcraft_seed": (env_name == "textcraft").then_some(job.env_options.seed),
            "max_tokens": job.max_tokens,
            "revision_turns": if job.send_revision_turns { "sent to the environment" } else { "answered ok." },
            "self_reflection": match &job.episodes {
                Episodes::Reflection { from, cut_seed, continue_rounds, first } => Some(json!({
                    "failed_episodes_of": from,
                    "cut": "after 1..=n responses, uniform, seeded by cut_seed and task",
                    "cut_seed": cut_seed,
                    "continue_rounds": continue_rounds,
                    "episodes": first.map_or(json!("all"), |n| json!(format!("the first {n} in task order"))),
                })),
                Episodes::Fresh(_) => None,
            },
            "model": job.model.to_string(),
            "model_sha256": model_digest,
            "weights": matches!(job.model, ModelSpec::Dir(_)).then_some(job.runtime.weights),
        },
        "metrics": {
            "average_reward_x100": 100.0 * mean(&rewards),
            "success_rate_x100": 100.0 * successes as f64 / n,
            "successes": successes,
            "mean_steps": mean(&steps),
            "invalid_action_rate": counts.invalid_rate(),
            "revision_turns_per_episode": counts.revisions as f64 / n,
            "loops": LoopStats::of(&actions_per_episode, 3),
        },
    });
    let comparison = match &job.baseline {
        Some(baseline) => {
            let comparison = compare_folders(
                std::slice::from_ref(baseline),
                std::slice::from_ref(&job.out),
            )?;
            summary["comparison"] = json!({"baseline": baseline, "paired": comparison});
            Some(comparison)
        }
        None => None,
    };
    std::fs::write(
        job.out.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )
    .context("writing summary.json")?;
    Ok(EvalSummary {
        env: env_name,
        selection,
        episodes: tasks.len(),
        rounds: match &job.episodes {
            Episodes::Reflection { .. } => continue_rounds,
            Episodes::Fresh(_) => job.max_rounds,
        },
        decoding,
        successes,
        success_rate_x100: 100.0 * successes as f64 / n,
        average_reward_x100: 100.0 * mean(&rewards),
        mean_steps: mean(&steps),
        invalid_action_rate: counts.invalid_rate(),
        revision_turns_per_episode: counts.revisions as f64 / n,
        comparison,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Quiet;
    use agentr_envs::assets;

    #[test]
    fn a_model_is_evaluated_and_compared_with_an_earlier_evaluation() {
        if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
            return;
        }
        let dir = std::env::temp_dir().join(format!("agentr-lib-eval-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let texts = [
            "Action: get 1 oak logs",
            "Goal: craft stick.",
            "Crafting commands:",
        ];
        let tokenizer = agentr_train::ChatTokenizer::train(texts.iter(), 300).unwrap();
        let config = agentr_train::ModelConfig::preset("tiny-xs", tokenizer.vocab_size()).unwrap();
        let model = agentr_train::Llama::new(config, &candle_core::Device::Cpu, 0).unwrap();
        ModelAgent::new(model, tokenizer, &dir)
            .save(&dir.join("model"))
            .unwrap();
        let job = EvalJob {
            env: EnvName::Textcraft,
            env_options: EnvOptions::default_for(EnvName::Textcraft),
            model: ModelSpec::Dir(dir.join("model")),
            episodes: Episodes::Fresh("test[:2]".parse().unwrap()),
            max_rounds: 2,
            temperature: 0.0,
            sampling_seed: 0,
            max_tokens: 8,
            workers: 2,
            send_revision_turns: false,
            clean_observations: false,
            out: dir.join("first"),
            baseline: None,
            runtime: Runtime::default(),
        };
        let first = evaluate(&job, &Quiet).unwrap();
        assert_eq!((first.episodes, first.rounds), (2, 2));
        assert_eq!(first.decoding, "greedy");
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("first/summary.json")).unwrap())
                .unwrap();
        assert_eq!(written["metrics"]["successes"], first.successes);
        // Greedy decoding of the same model plays the same episodes: no difference.
        let again = EvalJob {
            out: dir.join("again"),
            baseline: Some(dir.join("first")),
            ..job.clone()
        };
        let second = evaluate(&again, &Quiet).unwrap();
        let comparison = second.comparison.unwrap();
        assert_eq!(comparison.pairs, 2);
        assert_eq!(comparison.baseline_rate, comparison.candidate_rate);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn turns(pairs: &[(&str, &str)]) -> Vec<Message> {
        pairs
            .iter()
            .flat_map(|(response, observation)| {
                [
                    Message::assistant(*response, true),
                    Message::user(*observation),
                ]
            })
            .collect()
    }

    fn count(pairs: &[(&str, &str)], sent: bool) -> (ActionCounts, Vec<String>) {
        let mut counts = ActionCounts::default();
        let actions = counts.add(
            &turns(pairs),
            sent,
            |response| response.rsplit("Action: ").next().unwrap_or("").to_owned(),
            "Goal: craft y.",
            |_, observation| observation.starts_with("Could not"),
        );
        (counts, actions)
    }

    #[test]
    fn acknowledged_revision_turns_are_not_actions() {
        let pairs = [
            ("Action: craft 1 x", "Could not find x"),
            ("Thought: that was wrong.\nAction: wait", "ok."),
            ("Action: get 1 y", "Got 1 y"),
        ];
        let (counts, actions) = count(&pairs, false);
        assert_eq!(
            counts,
            ActionCounts {
                actions: 2,
                rejected: 1,
                revisions: 1
            }
        );
        assert_eq!(counts.invalid_rate(), 0.5);
        assert_eq!(actions, ["craft 1 x", "get 1 y"]);
        // Sent to the environment (the reference behaviour), the turn is an action like any other.
        let pairs = [("Action: wait", "Could not execute wait")];
        let (counts, _) = count(&pairs, true);
        assert_eq!(
            (counts.actions, counts.rejected, counts.revisions),
            (1, 1, 0)
        );
    }

    #[test]
    fn unchanged_pages_compare_with_the_last_environment_answer() {
        // WebShop's rule: a no-op repeats the page. An acknowledged revision turn in between
        // must not hide the second no-op.
        let pairs = [
            ("Action: click[x]", "Search"),
            ("Thought: that was wrong.\nAction: wait", "ok."),
            ("Action: click[y]", "Search"),
            ("Action: search[shoes]", "Results"),
        ];
        let mut counts = ActionCounts::default();
        counts.add(
            &turns(&pairs),
            false,
            |response| response.rsplit("Action: ").next().unwrap_or("").to_owned(),
            "Search",
            agentr_envs::webshop::is_rejection,
        );
        assert_eq!(
            (counts.actions, counts.rejected, counts.revisions),
            (3, 2, 1)
        );
    }
}
