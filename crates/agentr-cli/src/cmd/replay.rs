//! `agentr replay ENV --task N --actions FILE`: actions in, one JSON object per step out.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use agentr_envs::TaskId;
use anyhow::{Context, Result};
use serde_json::json;

use crate::envs::{EnvName, EnvOptions};

/// Arguments of `agentr replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment.
    env: EnvName,
    /// The task id.
    #[arg(long)]
    task: u64,
    /// File with one action per line (`-` for standard input). Actions are sent verbatim.
    #[arg(long, value_name = "FILE")]
    actions: PathBuf,
    #[command(flatten)]
    env_options: EnvOptions,
}

pub fn run(args: Args) -> Result<()> {
    let mut env = args.env.build(&args.env_options)?;
    let reader: Box<dyn BufRead> = if args.actions.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.actions)
            .with_context(|| format!("opening {}", args.actions.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let first = env.reset(TaskId(args.task))?;
    // Flushed per step: a caller feeding actions through a pipe reads each answer before
    // choosing the next action.
    writeln!(out, "{}", json!({"step": 0, "observation": first}))?;
    out.flush()?;
    for (index, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", args.actions.display()))?;
        let action = line.strip_suffix('\r').unwrap_or(&line);
        let step = env.step(action)?;
        writeln!(
            out,
            "{}",
            json!({
                "step": index + 1,
                "action": action,
                "observation": step.observation,
                "reward": step.reward,
                "done": step.done,
            })
        )?;
        out.flush()?;
    }
    out.flush()?;
    Ok(())
}
