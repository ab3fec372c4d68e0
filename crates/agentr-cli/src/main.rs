//! `agentr`: the command line of the agentr workspace.

mod cmd;
mod envs;
mod samples;

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
    /// Fine-tune a model (tiny-s / tiny-m from scratch, or a model folder) on JSONL samples.
    Train(cmd::train::Args),
    /// Sample from a trained model.
    Generate(cmd::generate::Args),
    /// Evaluate a model on an environment's tasks.
    Eval(cmd::eval::Args),
}

/// candle allocates a buffer per operation; with glibc's default thresholds every large one is
/// an mmap/munmap pair, which doubles CPU training time on these machines. Raising the mmap
/// and trim thresholds keeps freed memory in the heap for reuse.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn raise_malloc_thresholds() {
    const ONE_GIB: libc::c_int = 1 << 30;
    // SAFETY: mallopt only changes allocator tuning; it is called before any other thread
    // exists and its failure (return 0) leaves the defaults in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, ONE_GIB);
        libc::mallopt(libc::M_TRIM_THRESHOLD, ONE_GIB);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn raise_malloc_thresholds() {}

fn main() -> Result<()> {
    raise_malloc_thresholds();
    let cli = Cli::parse();
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
