//! `agentr play ENV --task N`: a person plays in the terminal.

use std::io::{BufRead, Write};

use agentr_envs::TaskId;
use anyhow::Result;

use crate::envs::{EnvName, EnvOptions};

/// Arguments of `agentr play`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment.
    env: EnvName,
    /// The task id.
    #[arg(long, default_value_t = 0)]
    task: u64,
    /// Do not print the instruction prompt first.
    #[arg(long)]
    no_instruction: bool,
    #[command(flatten)]
    env_options: EnvOptions,
}

const HELP: &str = "Type an action and press Enter. `:inv` shows your inventory without \
spending a step, `:help` repeats this, `:quit` (or Ctrl-D) ends the game.";

pub fn run(args: Args) -> Result<()> {
    let mut env = args.env.build(&args.env_options)?;
    let first = env.reset(TaskId(args.task))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !args.no_instruction {
        writeln!(out, "{}\n", env.instruction())?;
    }
    writeln!(out, "{HELP}\n\n{first}")?;
    let mut steps = 0usize;
    let mut reward = 0.0;
    let mut lines = std::io::stdin().lock().lines();
    loop {
        write!(out, "\n[{steps} steps, reward {reward}]> ")?;
        out.flush()?;
        let Some(line) = lines.next() else {
            writeln!(out)?;
            break;
        };
        let line = line?;
        let input = line.trim();
        match input {
            "" => continue,
            ":quit" | ":q" => break,
            ":help" => {
                writeln!(out, "{HELP}")?;
                continue;
            }
            ":inv" => {
                let text = env
                    .inventory_text()
                    .unwrap_or_else(|| "This environment has no inventory view.".into());
                writeln!(out, "{text}")?;
                continue;
            }
            _ => {}
        }
        let step = env.step(input)?;
        steps += 1;
        reward = step.reward;
        writeln!(out, "{}", step.observation)?;
        if step.done {
            let verdict = if step.disaster {
                "The episode ended in a fatal mistake."
            } else if step.reward >= 1.0 {
                "Goal reached!"
            } else {
                "The episode is over."
            };
            writeln!(
                out,
                "\n{verdict} Reward {} after {steps} steps.",
                step.reward
            )?;
            break;
        }
    }
    Ok(())
}
