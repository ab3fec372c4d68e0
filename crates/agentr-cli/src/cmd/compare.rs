//! `agentr compare`: two agents' evaluations on the same tasks, compared by pairs (success
//! difference, 95% bootstrap interval over tasks and seeds, exact McNemar p-value), and with
//! `--responses` by what they wrote (see [`agentr_cli::pipeline::compare`]).

use std::path::PathBuf;

use agentr_cli::pipeline::compare::{
    compare_folders, describe, describe_agreement, response_agreement,
};
use agentr_envs::metrics::paired::Comparison;
use anyhow::Result;

/// Arguments of `agentr compare`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The baseline's evaluation folders (from `agentr eval --out`), one per seed.
    #[arg(long, value_name = "DIR", num_args = 1.., required = true)]
    baseline: Vec<PathBuf>,
    /// The candidate's evaluation folders, one per seed, in the same seed order.
    #[arg(long, value_name = "DIR", num_args = 1.., required = true)]
    candidate: Vec<PathBuf>,
    /// Print the comparison as JSON instead of a sentence.
    #[arg(long)]
    json: bool,
    /// Also compare the responses, episode by episode: how many are identical, and at which
    /// response the others first differ (two decodings of one model, for example f32 and
    /// int8 weights). With --json the output is then `{"paired": ..., "responses": ...}`.
    #[arg(long)]
    responses: bool,
}

pub fn run(args: Args) -> Result<()> {
    let comparison = compare_folders(&args.baseline, &args.candidate)?;
    let agreements = match args.responses {
        true => args
            .baseline
            .iter()
            .zip(&args.candidate)
            .map(|(b, c)| response_agreement(b, c))
            .collect::<Result<Vec<_>>>()?,
        false => Vec::new(),
    };
    match (args.json, args.responses) {
        (true, false) => println!("{}", serde_json::to_string_pretty(&comparison)?),
        (true, true) => println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"paired": comparison, "responses": agreements})
            )?
        ),
        (false, _) => {
            println!("{}", describe(&comparison));
            for agreement in &agreements {
                println!("{}", describe_agreement(agreement));
            }
        }
    }
    Ok(())
}

/// Prints a results file's `comparisons` (entries with `candidate`, `baseline`, `env`, an
/// optional `test`, and the `paired` comparison), one line each.
pub fn print_comparisons(comparisons: &serde_json::Value) {
    for comparison in comparisons.as_array().into_iter().flatten() {
        let Ok(paired) = serde_json::from_value::<Comparison>(comparison["paired"].clone()) else {
            continue;
        };
        let text = |key: &str| comparison[key].as_str().unwrap_or_default().to_owned();
        let place = match comparison["test"].as_str() {
            Some(test) => format!("{test}, {}", text("env")),
            None => text("env"),
        };
        eprintln!(
            "{} vs {} ({place}): {}",
            text("candidate"),
            text("baseline"),
            describe(&paired)
        );
    }
}
