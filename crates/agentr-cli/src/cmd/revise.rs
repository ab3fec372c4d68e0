//! `agentr revise`: search trees in, Agent-R training samples out.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use agentr_envs::ObservationStyles;
use agentr_mcts::Tree;
use agentr_revise::{
    Agreement, EnvFeedbackJudge, Judge, JudgeRequest, Judgement, Label, Mode, NoError,
    PairCondition, ReviseConfig, ScriptedJudge, Signals, Stats, Thresholds, alpha_for_iteration,
    judge_agreement, judge_samples, revise_tree,
};
use agentr_train::openai::ChatClient;
use agentr_train::{ChatTokenizer, JudgeAnswer, ModelAgent, TrainError};
use anyhow::{Context, Result, bail};

use crate::envs::EnvName;
use crate::progress::Progress;
use crate::remote::OpenAiSpec;

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

/// The judges the command line can build.
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

/// Arguments of `agentr revise`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder of tree files written by `agentr collect`.
    #[arg(long, value_name = "DIR")]
    pub(crate) trees: PathBuf,
    /// agent-r (t' = first step the judge calls bad), direct (t' = end of the bad branch) or
    /// good-only (no revision samples, only good trajectories).
    #[arg(long)]
    pub(crate) mode: Mode,
    /// Judge for agent-r mode: env-feedback, scripted:FILE, model:DIR or openai:MODEL@BASE_URL
    /// (an OpenAI-compatible server; API key from $OPENAI_API_KEY).
    #[arg(long)]
    pub(crate) judge: Option<JudgeSpec>,
    /// How a model judge (model:DIR) gives its verdict: written (it reasons and ends with a
    /// `Judgment:` line, which is parsed) or scored (its answer is started with `Judgment:`
    /// and the label it finds likelier next is taken; for models too small to write the line).
    #[arg(long, default_value = "written", value_parser = parse_judge_answer)]
    pub(crate) judge_answer: JudgeAnswer,
    /// A scored judge calls a step Bad when its probability of Bad (over the two labels)
    /// exceeds this; 0.5 takes the likelier label.
    #[arg(long, default_value_t = 0.5, value_name = "P")]
    pub(crate) bad_above: f64,
    /// Self-training iteration; sets alpha to 0.5, 0.7, 1.0 for iterations 1, 2, 3+.
    #[arg(long, default_value_t = 1)]
    pub(crate) iteration: usize,
    /// Override alpha (a good leaf must exceed it; at 1.0 it must reach it).
    #[arg(long)]
    pub(crate) alpha: Option<f64>,
    /// Beta, the reward that separates good from bad.
    #[arg(long, default_value_t = 0.2)]
    pub(crate) beta: f64,
    /// paper (r_bad < beta < r_good) or gap (r_good - r_bad > beta, the reference code's).
    #[arg(long, default_value = "paper")]
    pub(crate) condition: ConditionArg,
    /// Keep at most this many pairs per tree (after a seeded shuffle).
    #[arg(long)]
    pub(crate) max_pairs_per_tree: Option<usize>,
    /// Seed of the pair shuffle and the choice of revision signal.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Revision signals, one per line (default: the built-in ten).
    #[arg(long, value_name = "FILE")]
    pub(crate) signals: Option<PathBuf>,
    /// Also emit up to this many judge samples per label and tree (verifier prompts answered
    /// with labels from the tree's statistics), so the model learns to judge.
    #[arg(long, default_value_t = 0)]
    pub(crate) judge_samples: usize,
    /// Do not emit good trajectories as samples.
    #[arg(long)]
    pub(crate) no_good: bool,
    /// Measure the judge against the trees: ask it about up to this many steps per tree label
    /// and tree (the steps --judge-samples would teach) and report how often it gives the
    /// tree's label (`judge_agreement` in the statistics). Agent-r mode only.
    #[arg(long, default_value_t = 0)]
    pub(crate) agreement_steps: usize,
    /// Report the samples' lengths in tokens of this model's tokenizer (whatever `--model`
    /// takes elsewhere: smollm2-135m, a folder, a GGUF file, a Hub id), chat format included:
    /// a trainer's maximum length must reach the longest, or it cuts samples short.
    #[arg(long, value_name = "MODEL")]
    pub(crate) tokenizer: Option<PathBuf>,
    /// Output JSONL file; statistics go to the same name with `.stats.json`.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
    #[command(flatten)]
    pub(crate) device: crate::device::DeviceArg,
    #[command(flatten)]
    pub(crate) weights: crate::device::WeightsArg,
}

/// `--judge-answer written|scored`.
fn parse_judge_answer(text: &str) -> Result<JudgeAnswer, String> {
    match text {
        "written" => Ok(JudgeAnswer::Written),
        "scored" => Ok(JudgeAnswer::Scored),
        other => Err(format!("`{other}` is neither written nor scored")),
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ConditionArg {
    /// r_bad < beta < r_good (the paper's rule).
    Paper,
    /// r_good - r_bad > beta (the reference code's rule).
    Gap,
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

/// The distribution of sample lengths in tokens: count, median, 90th and 99th percentiles,
/// longest, and how many exceed common maximum lengths.
fn length_summary(mut lengths: Vec<usize>) -> serde_json::Value {
    lengths.sort_unstable();
    let rank = |q: f64| {
        let last = lengths.len().saturating_sub(1);
        lengths.get((q * last as f64).round() as usize).copied()
    };
    let over = |limit: usize| lengths.iter().filter(|&&n| n > limit).count();
    serde_json::json!({
        "samples": lengths.len(),
        "median": rank(0.5),
        "p90": rank(0.9),
        "p99": rank(0.99),
        "longest": lengths.last(),
        "over_512": over(512),
        "over_1024": over(1024),
        "over_2048": over(2048),
    })
}

/// `samples.jsonl` -> `samples.stats.json`.
pub fn stats_path(out: &Path) -> PathBuf {
    out.with_extension("stats.json")
}

pub fn run(args: Args) -> Result<()> {
    let judge = match (&args.judge, args.mode) {
        (None, Mode::AgentR) => {
            bail!(
                "agent-r mode needs --judge (env-feedback, scripted:FILE, model:DIR or \
                 openai:MODEL@BASE_URL)"
            )
        }
        (Some(JudgeSpec::Scripted(path)), _) => CliJudge::Scripted(ScriptedJudge::load(path)?),
        (Some(JudgeSpec::Model(dir)), _) => {
            let mut agent =
                ModelAgent::load(&crate::models::model_path(dir)?, &args.device.open()?)
                    .with_context(|| format!("loading the judge model from {}", dir.display()))?;
            args.weights.apply(&mut agent)?;
            agent.judge_answer = args.judge_answer;
            agent.bad_above = args.bad_above;
            CliJudge::Model(Box::new(agent))
        }
        (Some(JudgeSpec::OpenAi(spec)), _) => CliJudge::OpenAi(Box::new(spec.client(None)?)),
        (_, _) => CliJudge::EnvFeedback(EnvFeedbackJudge),
    };
    let signals = match &args.signals {
        Some(path) => Signals::load(path)?,
        None => Signals::default(),
    };
    let alpha = args
        .alpha
        .unwrap_or_else(|| alpha_for_iteration(args.iteration));
    let config = ReviseConfig {
        mode: args.mode,
        thresholds: Thresholds {
            alpha,
            beta: args.beta,
            condition: match args.condition {
                ConditionArg::Paper => PairCondition::Paper,
                ConditionArg::Gap => PairCondition::Gap,
            },
        },
        max_pairs_per_tree: args.max_pairs_per_tree,
        seed: args.seed,
        good_samples: !args.no_good,
    };
    let files = tree_files(&args.trees)?;
    if files.is_empty() {
        bail!("no tree files (*.json) in {}", args.trees.display());
    }

    let tokenizer = match &args.tokenizer {
        Some(model) => Some(ChatTokenizer::of_model(&crate::models::model_path(model)?)?),
        None => None,
    };
    let mut lengths = Vec::new();
    let mut styles = ObservationStyles::default();
    let progress = Progress::new("revise", "trees", files.len() as u64);
    let mut stats = Stats::default();
    let mut agreement = Agreement::default();
    let measure_agreement = args.mode == Mode::AgentR && args.agreement_steps > 0;
    super::create_parent(&args.out)?;
    if let Some(folder) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        super::remove_stale_temporaries(folder)?;
    }
    agentr_envs::atomic::write_with(&args.out, |tmp| {
        let mut sink = std::io::BufWriter::new(std::fs::File::create(tmp)?);
        for file in &files {
            let tree = Tree::load(file).map_err(std::io::Error::other)?;
            let rejection = EnvName::of_file(&tree.env)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", file.display())))?
                .rejection_rule();
            let (samples, tree_stats) = revise_tree(&tree, &config, &signals, rejection, &judge)
                .map_err(std::io::Error::other)?;
            if measure_agreement {
                let thresholds = &config.thresholds;
                let steps = args.agreement_steps;
                agreement.merge(
                    &judge_agreement(&tree, thresholds, steps, args.seed, rejection, &judge)
                        .map_err(std::io::Error::other)?,
                );
            }
            let judged = judge_samples(
                &tree,
                &config.thresholds,
                args.judge_samples,
                args.seed,
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
    .with_context(|| format!("writing {}", args.out.display()))?;
    progress.finish();

    let tokens = tokenizer.is_some().then(|| length_summary(lengths));
    let summary = serde_json::json!({
        "config": config,
        "judge": (args.mode == Mode::AgentR).then(|| judge.name()),
        "trees_dir": args.trees,
        "stats": stats,
        "judge_agreement": measure_agreement.then_some(&agreement),
        "tokens": tokens,
    });
    let stats_file = stats_path(&args.out);
    std::fs::write(&stats_file, serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("writing {}", stats_file.display()))?;

    eprintln!(
        "{} trees ({} without a success), {} pairs ({} over the cap), samples: {}",
        stats.trees,
        stats.trees_without_success,
        stats.pairs,
        stats.pairs_dropped_by_cap,
        serde_json::to_string(&stats.samples)?
    );
    if args.mode == Mode::AgentR {
        eprintln!(
            "judge {}: labels {}, {} unparsed; {} pairs without a bad step fell back to direct revision",
            judge.name(),
            serde_json::to_string(&stats.judge_labels)?,
            stats.judge_unparsed,
            stats.fallbacks_to_direct
        );
    }
    if measure_agreement {
        let rates: Vec<String> = [Label::Bad, Label::Good, Label::Uncertain]
            .into_iter()
            .map(|label| {
                let (steps, agreed) = agreement.of(label);
                format!("{label} {agreed}/{steps}")
            })
            .collect();
        eprintln!(
            "judge {} agrees with the trees' labels on: {} ({} unparsed answers)",
            judge.name(),
            rates.join(", "),
            agreement.unparsed
        );
    }
    if let Some(tokens) = &tokens {
        eprintln!(
            "sample lengths in tokens: median {}, 90th percentile {}, longest {}; {} of {} over \
             512, {} over 1024 (a trainer's maximum length below the longest cuts samples short)",
            tokens["median"],
            tokens["p90"],
            tokens["longest"],
            tokens["over_512"],
            tokens["samples"],
            tokens["over_1024"]
        );
    }
    if let Some(warning) = styles.mix_warning("the trees") {
        eprintln!("{warning}");
    }
    eprintln!(
        "t' depth histogram {}; samples in {}, statistics in {}",
        serde_json::to_string(&stats.t_prime_depth)?,
        args.out.display(),
        stats_file.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse_judge_answer("scored"), Ok(JudgeAnswer::Scored));
        assert_eq!(parse_judge_answer("written"), Ok(JudgeAnswer::Written));
        assert!(parse_judge_answer("Scored").is_err());
        assert_eq!(
            stats_path(Path::new("x/s.jsonl")),
            Path::new("x/s.stats.json")
        );
    }
}
