//! `agentr revise`: search trees in, Agent-R training samples out (see
//! [`agentr_cli::pipeline::revise`]).

use std::path::PathBuf;

use agentr_cli::pipeline::revise::{JudgeSpec, ReviseJob, revise};
use agentr_revise::{Mode, PairCondition, ReviseConfig, Thresholds, alpha_for_iteration};
use agentr_train::JudgeAnswer;
use anyhow::Result;

use crate::terminal::Terminal;

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

pub fn run(args: Args) -> Result<()> {
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
    let job = ReviseJob {
        trees: args.trees,
        out: args.out,
        config,
        judge: args.judge,
        judge_answer: args.judge_answer,
        bad_above: args.bad_above,
        signals: args.signals,
        judge_samples: args.judge_samples,
        agreement_steps: args.agreement_steps,
        tokenizer: args.tokenizer,
        runtime: crate::device::runtime(args.device, args.weights),
    };
    let summary = revise(&job, &Terminal)?;
    for line in summary.describe(&job.out) {
        eprintln!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_answers_parse() {
        assert_eq!(parse_judge_answer("scored"), Ok(JudgeAnswer::Scored));
        assert_eq!(parse_judge_answer("written"), Ok(JudgeAnswer::Written));
        assert!(parse_judge_answer("Scored").is_err());
    }
}
