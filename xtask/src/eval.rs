//! `cargo xtask eval`: evaluates model folders with `agentr eval` on each environment, reads
//! the score per iteration of self-training runs, and writes a report with plots to
//! `reports/<name>/`.
//!
//! Each evaluation's own files (`episodes.jsonl`, `summary.json`) go to
//! `reports/<name>/<env>/<model>/`. An environment that agentr cannot evaluate is reported as
//! not available, with agentr's error line and a set-up hint, and the other environments go
//! on. The paper's numbers are shown next to ours only where the recorded protocol is the
//! paper's; otherwise the report says why they are not comparable.
//!
//! With two or more models, every model evaluated on an environment is compared with the
//! first one evaluated there (the baseline) by pairs, on the same tasks: xtask runs
//! `agentr compare --baseline BASE --candidate MODEL --json` and shows, beside each model, the
//! success difference in points with its 95% bootstrap interval over tasks, the discordant
//! tasks (solved by only one of the two), McNemar's exact p-value and the verdict: *beyond
//! noise* when the interval excludes 0 and p < 0.05, else *within noise*. A comparison agentr
//! refuses (for example, two evaluations of different tasks) is reported with agentr's error
//! line; the rest of the report goes on. The same holds for the self-reflection test.
//!
//! `--run` reads a self-training run's `results.json` (the score per iteration, the paired
//! comparisons of each iteration with the warm start, and per iteration the judge's fallbacks
//! to direct revision and its agreement with the trees' labels) or an experiment's (the score
//! per arm and seed, and the paired comparisons of the arms). Older `results.json` files
//! without comparisons are read too.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::svg;

/// The environments the report knows (the paper's three), in the default order.
const KNOWN_ENVS: [&str; 3] = ["textcraft", "sciworld", "webshop"];

/// Rounds per episode of the paper's evaluation.
const PAPER_MAX_ROUNDS: u64 = 100;

/// Rounds after the cut in the paper's self-reflection test.
const PAPER_CONTINUE_ROUNDS: u64 = 50;

/// The paper's Table 2 (Llama-3.1-8B and GPT-4o): method, then the scores on WebShop,
/// SciWorld and TextCraft.
const PAPER_TABLE2: [(&str, [f64; 3]); 5] = [
    ("Llama-3.1-8B (vanilla)", [19.65, 14.36, 26.00]),
    ("+ ETO", [52.80, 67.55, 75.00]),
    ("+ Direct-Revision", [54.44, 66.65, 66.00]),
    ("+ Agent-R", [63.91, 70.23, 78.00]),
    ("GPT-4o", [25.48, 46.91, 64.00]),
];

/// The paper's self-reflection test (Table 3): Agent-R after iteration 3 scores about this on
/// each environment.
const PAPER_REFLECTION_SCORE: f64 = 48.0;

/// Lines of agentr's stderr kept to find its error line.
const KEPT_LINES: usize = 200;

/// A model to evaluate: its display name and folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelArg {
    /// Display name; also the folder name of its evaluations.
    pub name: String,
    /// The model folder as given on the command line.
    pub dir: PathBuf,
}

/// The options of one `cargo xtask eval` (its command line; each field's doc is its help).
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(group(
    clap::ArgGroup::new("inputs")
        .required(true)
        .multiple(true)
        .args(["models", "runs"])
))]
pub struct Options {
    /// a model folder from `agentr train`, shown as NAME (repeatable)
    #[arg(long = "model", value_name = "NAME=DIR", value_parser = parse_model)]
    pub models: Vec<ModelArg>,
    /// an `agentr self-train` run or experiment directory; its
    /// results.json gives the score per iteration (or per arm and seed)
    /// and its paired comparisons (repeatable; read, not evaluated again)
    #[arg(long = "run", value_name = "RUN_DIR", value_parser = parse_path)]
    #[arg(verbatim_doc_comment)]
    pub runs: Vec<PathBuf>,
    /// report name: the folder under reports/
    #[arg(long, value_name = "REPORT", default_value = "eval", value_parser = parse_report_name)]
    pub name: String,
    /// comma-separated environments
    // `std::vec::Vec`, spelled out, makes clap take one value parsed into a list rather than a
    // repeatable option.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "textcraft,sciworld,webshop",
        value_parser = parse_envs
    )]
    pub envs: std::vec::Vec<String>,
    /// task selection passed to agentr
    #[arg(long, value_name = "SPEC", default_value = "test", value_parser = parse_tasks)]
    pub tasks: String,
    /// most rounds per episode
    #[arg(long, value_name = "N", default_value_t = PAPER_MAX_ROUNDS, value_parser = parse_positive)]
    pub max_rounds: u64,
    /// parallel episodes of one evaluation
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = parse_positive)]
    pub workers: u64,
    /// the self-reflection test: continue the failed episodes of FILE
    /// (a base model's episodes.jsonl) instead of playing fresh episodes
    #[arg(long, value_name = "FILE", value_parser = parse_path)]
    #[arg(verbatim_doc_comment)]
    pub reflection_from: Option<PathBuf>,
}

impl Options {
    /// What clap cannot check value by value: model names are folder names, so two models
    /// may not share one.
    pub fn check(&self) -> Result<()> {
        for (i, model) in self.models.iter().enumerate() {
            if self.models[..i].iter().any(|m| m.name == model.name) {
                bail!("two models are named `{}`", model.name);
            }
        }
        Ok(())
    }
}

/// Checks that `text` can name a folder: not empty, no path separator, not `.` or `..`.
fn check_folder_name(what: &str, text: &str) -> Result<()> {
    if text.is_empty() {
        bail!("the {what} is empty");
    }
    if text.contains(['/', '\\']) || text == "." || text == ".." {
        bail!("the {what} `{text}` must not contain `/` or `\\` or be `.` or `..`");
    }
    Ok(())
}

/// Parses `NAME=DIR` (split at the first `=`).
pub fn parse_model(text: &str) -> Result<ModelArg> {
    let Some((name, dir)) = text.split_once('=') else {
        bail!("expected NAME=DIR");
    };
    check_folder_name("model name", name)?;
    if dir.is_empty() {
        bail!("the model folder is empty");
    }
    Ok(ModelArg {
        name: name.to_owned(),
        dir: PathBuf::from(dir),
    })
}

/// Parses a report name, which names a folder under `reports/`.
fn parse_report_name(text: &str) -> Result<String> {
    check_folder_name("report name", text)?;
    Ok(text.to_owned())
}

/// Parses a path that must not be empty.
fn parse_path(text: &str) -> Result<PathBuf> {
    if text.is_empty() {
        bail!("the path is empty");
    }
    Ok(PathBuf::from(text))
}

/// Parses a task selection, which must not be blank (agentr reads it).
fn parse_tasks(text: &str) -> Result<String> {
    if text.trim().is_empty() {
        bail!("the task selection is empty");
    }
    Ok(text.to_owned())
}

/// Parses a comma-separated list of known environments.
fn parse_envs(text: &str) -> Result<Vec<String>> {
    let mut envs: Vec<String> = Vec::new();
    for env in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if !KNOWN_ENVS.contains(&env) {
            bail!(
                "unknown environment `{env}` (known: {})",
                KNOWN_ENVS.join(", ")
            );
        }
        if envs.iter().any(|e| e == env) {
            bail!("environment `{env}` is listed twice");
        }
        envs.push(env.to_owned());
    }
    if envs.is_empty() {
        bail!("no environment is listed");
    }
    Ok(envs)
}

/// Parses a positive whole number.
fn parse_positive(text: &str) -> Result<u64> {
    match text.parse::<u64>() {
        Ok(0) => bail!("must be at least 1"),
        Ok(n) => Ok(n),
        Err(_) => bail!("expected a whole number"),
    }
}

/// The protocol agentr recorded for one evaluation (`summary.json`'s `protocol`); fields it
/// did not record are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Protocol {
    /// Environment name.
    pub env: Option<String>,
    /// Task selection (`test`, `test[:30]`, or the self-reflection test's source).
    pub tasks: Option<String>,
    /// Number of episodes played.
    pub task_count: Option<u64>,
    /// Most rounds per fresh episode.
    pub max_rounds: Option<u64>,
    /// `greedy` or the sampling temperature.
    pub decoding: Option<String>,
    /// Sampling seed.
    pub sampling_seed: Option<u64>,
    /// Most new tokens per response.
    pub max_tokens: Option<u64>,
    /// How revision turns were handled.
    pub revision_turns: Option<String>,
    /// Whether this was the self-reflection test.
    pub self_reflection: bool,
    /// Self-reflection test: the base episodes continued.
    pub failed_episodes_of: Option<String>,
    /// Self-reflection test: the seed of the cut points.
    pub cut_seed: Option<u64>,
    /// Self-reflection test: most rounds after the cut.
    pub continue_rounds: Option<u64>,
    /// The evaluated model folder.
    pub model: Option<String>,
    /// SHA-256 of the model's weights.
    pub model_sha256: Option<String>,
}

/// A string field of a JSON object, or a number or boolean written as text.
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Protocol {
    /// Reads `summary.json`'s `protocol` object, tolerating missing fields.
    pub fn from_json(protocol: &Value) -> Self {
        let reflection = &protocol["self_reflection"];
        Protocol {
            env: text_of(&protocol["env"]),
            tasks: text_of(&protocol["tasks"]),
            task_count: protocol["task_count"].as_u64(),
            max_rounds: protocol["max_rounds"].as_u64(),
            decoding: text_of(&protocol["decoding"]),
            sampling_seed: protocol["sampling_seed"].as_u64(),
            max_tokens: protocol["max_tokens"].as_u64(),
            revision_turns: text_of(&protocol["revision_turns"]),
            self_reflection: !(reflection.is_null() || reflection.as_bool() == Some(false)),
            failed_episodes_of: text_of(&reflection["failed_episodes_of"]),
            cut_seed: reflection["cut_seed"].as_u64(),
            continue_rounds: reflection["continue_rounds"].as_u64(),
            model: text_of(&protocol["model"]),
            model_sha256: text_of(&protocol["model_sha256"]),
        }
    }
}

/// The metrics agentr recorded for one evaluation (`summary.json`'s `metrics`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Share of episodes solved, x100.
    pub success_rate_x100: Option<f64>,
    /// Mean final reward, x100.
    pub average_reward_x100: Option<f64>,
    /// Episodes solved.
    pub successes: Option<u64>,
    /// Mean steps per episode.
    pub mean_steps: Option<f64>,
    /// Share of actions the environment rejected (0..1).
    pub invalid_action_rate: Option<f64>,
    /// Mean back-to-back repeats per episode for action runs of length 1, 2 and 3.
    pub mean_repeats: [Option<f64>; 3],
    /// Share of episodes with at least one back-to-back repeat, for run lengths 1, 2 and 3.
    pub episodes_with_repeats: [Option<f64>; 3],
}

impl Metrics {
    /// Reads `summary.json`'s `metrics` object, tolerating missing fields.
    pub fn from_json(metrics: &Value) -> Self {
        let by_length = |map: &Value| [1, 2, 3].map(|len| map[len.to_string()].as_f64());
        Metrics {
            success_rate_x100: metrics["success_rate_x100"].as_f64(),
            average_reward_x100: metrics["average_reward_x100"].as_f64(),
            successes: metrics["successes"].as_u64(),
            mean_steps: metrics["mean_steps"].as_f64(),
            invalid_action_rate: metrics["invalid_action_rate"].as_f64(),
            mean_repeats: by_length(&metrics["loops"]["mean_repeats"]),
            episodes_with_repeats: by_length(&metrics["loops"]["episodes_with_repeats"]),
        }
    }
}

/// The paper's headline metric of `env`: success rate for TextCraft, average final reward for
/// SciWorld and WebShop (both x100).
pub fn headline_key(env: &str) -> &'static str {
    if env == "textcraft" {
        "success_rate_x100"
    } else {
        "average_reward_x100"
    }
}

/// The headline metric of `env` in words.
fn headline_label(env: &str) -> &'static str {
    if env == "textcraft" {
        "success rate x100"
    } else {
        "average final reward x100"
    }
}

/// The headline score of an evaluation on `env` (see [`headline_key`]).
pub fn headline(
    env: &str,
    success_rate_x100: Option<f64>,
    reward_x100: Option<f64>,
) -> Option<f64> {
    if headline_key(env) == "success_rate_x100" {
        success_rate_x100
    } else {
        reward_x100
    }
}

/// Number of test tasks of `env` in the paper's evaluation.
pub fn paper_test_count(env: &str) -> u64 {
    if env == "textcraft" { 100 } else { 200 }
}

/// Column of `env` in [`PAPER_TABLE2`].
fn paper_column(env: &str) -> Option<usize> {
    match env {
        "webshop" => Some(0),
        "sciworld" => Some(1),
        "textcraft" => Some(2),
        _ => None,
    }
}

/// How a fresh-episode evaluation on `env` differs from the paper's Table 2 protocol (all
/// test tasks, 100 rounds, no self-reflection); empty when it does not.
pub fn table2_differences(env: &str, protocol: &Protocol) -> Vec<String> {
    let mut differences = Vec::new();
    let full = paper_test_count(env);
    if protocol.env.as_deref().is_some_and(|e| e != env) {
        differences.push(format!(
            "recorded for environment `{}`",
            protocol.env.as_deref().unwrap_or_default()
        ));
    }
    if protocol.self_reflection {
        differences.push("continued failed episodes instead of fresh ones".to_owned());
    }
    match (protocol.tasks.as_deref(), protocol.task_count) {
        (None, _) => differences.push("task selection not recorded".to_owned()),
        (_, None) => differences.push("task count not recorded".to_owned()),
        (Some("test"), Some(n)) if n == full => {}
        (Some("test"), Some(n)) => differences.push(format!("{n} of {full} test tasks")),
        (Some(tasks), Some(n)) => differences.push(format!(
            "{n} tasks (`{tasks}`) instead of the {full} test tasks"
        )),
    }
    match protocol.max_rounds {
        None => differences.push("max rounds not recorded".to_owned()),
        Some(rounds) if rounds == PAPER_MAX_ROUNDS => {}
        Some(rounds) => differences.push(format!("{rounds} rounds instead of {PAPER_MAX_ROUNDS}")),
    }
    differences
}

/// How a self-reflection test on `env` differs from the paper's (Table 3: the failed
/// episodes of a base model's run on all test tasks, continued for 50 rounds); empty when it
/// does not. `base` is the protocol of the base model's run, when known.
pub fn reflection_differences(
    env: &str,
    protocol: &Protocol,
    base: Option<&Protocol>,
) -> Vec<String> {
    let mut differences = Vec::new();
    if !protocol.self_reflection {
        differences.push("not a self-reflection test".to_owned());
    }
    match protocol.continue_rounds {
        None => differences.push("continue rounds not recorded".to_owned()),
        Some(rounds) if rounds == PAPER_CONTINUE_ROUNDS => {}
        Some(rounds) => differences.push(format!(
            "{rounds} continue rounds instead of {PAPER_CONTINUE_ROUNDS}"
        )),
    }
    match base {
        None => differences.push(
            "the base episodes' protocol is unknown (no summary.json next to them)".to_owned(),
        ),
        Some(base) => differences.extend(
            table2_differences(env, base)
                .into_iter()
                .map(|d| format!("base episodes: {d}")),
        ),
    }
    differences
}

/// A reference number of the paper.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaperNumber {
    /// The paper's method (model and training).
    pub method: String,
    /// Its headline score.
    pub score: f64,
}

/// Whether the paper's numbers apply to an environment's evaluations, and which they are.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaperComparison {
    /// The paper's table the numbers come from.
    pub reference: String,
    /// True only when every evaluation of the environment followed the paper's protocol.
    pub comparable: bool,
    /// How the protocol differs (empty when comparable).
    pub differences: Vec<String>,
    /// The paper's numbers; empty unless comparable.
    pub numbers: Vec<PaperNumber>,
}

/// The paper comparison for the evaluations of `env` with these protocols: comparable only
/// when none of them differs from the paper's protocol.
pub fn compare_with_paper(
    env: &str,
    protocols: &[&Protocol],
    reflection: bool,
    base: Option<&Protocol>,
) -> PaperComparison {
    let mut differences: Vec<String> = Vec::new();
    for protocol in protocols {
        let found = if reflection {
            reflection_differences(env, protocol, base)
        } else {
            table2_differences(env, protocol)
        };
        for difference in found {
            if !differences.contains(&difference) {
                differences.push(difference);
            }
        }
    }
    if protocols.is_empty() {
        differences.push("no evaluation".to_owned());
    }
    let comparable = differences.is_empty();
    let numbers = match (comparable, reflection, paper_column(env)) {
        (false, _, _) | (_, _, None) => Vec::new(),
        (true, true, Some(_)) => vec![PaperNumber {
            method: "Llama-3.1-8B + Agent-R, iteration 3 (about)".to_owned(),
            score: PAPER_REFLECTION_SCORE,
        }],
        (true, false, Some(column)) => PAPER_TABLE2
            .iter()
            .map(|(method, scores)| PaperNumber {
                method: (*method).to_owned(),
                score: scores[column],
            })
            .collect(),
    };
    PaperComparison {
        reference: if reflection {
            "Agent-R paper, Table 3, self-reflection test".to_owned()
        } else {
            "Agent-R paper, Table 2".to_owned()
        },
        comparable,
        differences,
        numbers,
    }
}

/// A paired comparison of two evaluations of the same tasks, as `agentr compare --json`
/// prints it and `results.json` files record it (agentr's `Comparison`, read here without
/// depending on agentr).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// Seeds compared.
    pub seeds: Option<u64>,
    /// Pairs over all seeds (tasks x seeds).
    pub pairs: Option<u64>,
    /// The baseline's success rate over all pairs, as a share.
    pub baseline_rate: Option<f64>,
    /// The candidate's success rate over all pairs, as a share.
    pub candidate_rate: Option<f64>,
    /// Candidate's success rate minus the baseline's, as a share.
    pub difference: f64,
    /// 95% bootstrap interval of the difference (over tasks, and seeds where there are several).
    pub interval: (f64, f64),
    /// Pairs only the candidate solved.
    pub only_candidate: u64,
    /// Pairs only the baseline solved.
    pub only_baseline: u64,
    /// Two-sided exact McNemar p-value.
    pub mcnemar_p: f64,
    /// Bootstrap resamples drawn.
    pub bootstrap_draws: Option<u64>,
    /// Seed of the bootstrap.
    pub bootstrap_seed: Option<u64>,
}

impl Paired {
    /// Whether the difference is beyond noise: the interval excludes 0 and p < 0.05.
    pub fn beyond_noise(&self) -> bool {
        let excludes_zero = self.interval.0 > 0.0 || self.interval.1 < 0.0;
        excludes_zero && self.mcnemar_p < 0.05
    }

    /// The difference in points with its interval, e.g. `+12.0 points [+3.0, +21.0]`.
    fn difference_text(&self) -> String {
        format!(
            "{:+.1} points [{:+.1}, {:+.1}]",
            100.0 * self.difference,
            100.0 * self.interval.0,
            100.0 * self.interval.1
        )
    }

    /// The pairs and seeds, e.g. `300 (3 seeds)`.
    fn pairs_text(&self) -> String {
        let pairs = self.pairs.map_or_else(|| "?".to_owned(), |n| n.to_string());
        match self.seeds {
            Some(1) => format!("{pairs} (1 seed)"),
            Some(seeds) => format!("{pairs} ({seeds} seeds)"),
            None => pairs,
        }
    }

    /// One line for reports, e.g. `+12.0 points [+3.0, +21.0], 14 vs 2 discordant, McNemar
    /// p = 0.0042` (as agentr writes it).
    pub fn summary_line(&self) -> String {
        format!(
            "{}, {} vs {} discordant, McNemar {}",
            self.difference_text(),
            self.only_candidate,
            self.only_baseline,
            p_text(self.mcnemar_p)
        )
    }
}

/// A p-value with two significant digits, without its name: `0.031`, or `< 0.0001`.
fn p_cell(p: f64) -> String {
    match p {
        p if p.is_nan() => "–".to_owned(),
        p if p < 1e-4 => "< 0.0001".to_owned(),
        p if p >= 0.1 => format!("{p:.2}"),
        p if p >= 0.01 => format!("{p:.3}"),
        p => format!("{p:.4}"),
    }
}

/// A p-value as agentr writes it: `p = 0.031`, or `p < 0.0001`.
fn p_text(p: f64) -> String {
    let value = p_cell(p);
    match value.starts_with('<') {
        true => format!("p {value}"),
        false => format!("p = {value}"),
    }
}

/// A candidate compared with a baseline by pairs on one test and environment: the
/// comparison, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedComparison {
    /// The candidate: a model name, a stage (`iter-1/eval`) or an experiment's arm.
    pub candidate: String,
    /// The baseline, named the same way.
    pub baseline: String,
    /// `eval` (fresh episodes) or `reflection` (the self-reflection test).
    pub test: String,
    /// Environment.
    pub env: String,
    /// The comparison (`None` when there is none; see `error`).
    pub paired: Option<Paired>,
    /// Whether the difference is beyond noise (`None` without a comparison).
    pub beyond_noise: Option<bool>,
    /// Why there is no comparison: agentr's error line, or an unreadable record.
    pub error: Option<String>,
}

impl PairedComparison {
    /// A comparison that was made.
    fn made(candidate: &str, baseline: &str, test: &str, env: &str, paired: Paired) -> Self {
        PairedComparison {
            candidate: candidate.to_owned(),
            baseline: baseline.to_owned(),
            test: test.to_owned(),
            env: env.to_owned(),
            beyond_noise: Some(paired.beyond_noise()),
            paired: Some(paired),
            error: None,
        }
    }

    /// A comparison that could not be made, and why.
    fn failed(candidate: &str, baseline: &str, test: &str, env: &str, error: String) -> Self {
        PairedComparison {
            candidate: candidate.to_owned(),
            baseline: baseline.to_owned(),
            test: test.to_owned(),
            env: env.to_owned(),
            paired: None,
            beyond_noise: None,
            error: Some(error),
        }
    }

    /// `beyond noise`, `within noise` or `not compared`.
    pub fn verdict(&self) -> &'static str {
        match self.beyond_noise {
            Some(true) => "beyond noise",
            Some(false) => "within noise",
            None => "not compared",
        }
    }

    /// The comparison in one line (plain text, for the terminal).
    pub fn summary_line(&self) -> String {
        match (&self.paired, &self.error) {
            (Some(paired), _) => format!("{}; {}", paired.summary_line(), self.verdict()),
            (None, error) => format!(
                "not compared: {}",
                error.as_deref().unwrap_or("no comparison")
            ),
        }
    }

    /// The comparison in one Markdown table cell, the verdict in bold when beyond noise.
    fn markdown_cell(&self) -> String {
        match (&self.paired, &self.error) {
            (Some(paired), _) => {
                let verdict = match self.beyond_noise {
                    Some(true) => format!("**{}**", self.verdict()),
                    _ => self.verdict().to_owned(),
                };
                format!("{}; {verdict}", md_cell(&paired.summary_line()))
            }
            (None, error) => format!(
                "not compared: {}",
                md_code(error.as_deref().unwrap_or("no comparison"))
            ),
        }
    }
}

/// Reads what `agentr compare --json` printed: the comparison, or agentr's error line when it
/// failed.
pub fn comparison_from_output(
    success: bool,
    status: &str,
    stdout: &str,
    stderr: &str,
) -> Result<Paired, String> {
    if !success {
        let lines: Vec<String> = stderr.lines().map(str::to_owned).collect();
        return Err(error_line(&lines)
            .unwrap_or_else(|| format!("agentr compare exited with {status} and no message")));
    }
    serde_json::from_str(stdout.trim())
        .map_err(|e| format!("agentr compare printed no readable comparison: {e}"))
}

/// Runs `command` (the agentr binary) as `compare --baseline BASELINE --candidate CANDIDATE
/// --json` and reads its comparison, or its error line.
fn run_compare(mut command: Command, baseline: &Path, candidate: &Path) -> Result<Paired, String> {
    command
        .arg("compare")
        .arg("--baseline")
        .arg(baseline)
        .arg("--candidate")
        .arg(candidate)
        .arg("--json")
        .stdin(Stdio::null());
    match command.output() {
        Err(e) => Err(format!("could not start agentr compare: {e}")),
        Ok(output) => comparison_from_output(
            output.status.success(),
            &output.status.to_string(),
            &String::from_utf8_lossy(&output.stdout),
            &String::from_utf8_lossy(&output.stderr),
        ),
    }
}

/// Compares every evaluation of `results` after the first with the first (the baseline), by
/// pairs, on `test` and `env`: `compare(baseline, candidate)` gets their evaluation folders
/// (`ModelResult::out`) and returns the comparison or an error line, which is recorded.
pub fn compare_models(
    env: &str,
    test: &str,
    results: &[ModelResult],
    mut compare: impl FnMut(&str, &str) -> Result<Paired, String>,
) -> Vec<PairedComparison> {
    let Some((baseline, candidates)) = results.split_first() else {
        return Vec::new();
    };
    candidates
        .iter()
        .map(|candidate| match compare(&baseline.out, &candidate.out) {
            Ok(paired) => {
                PairedComparison::made(&candidate.model, &baseline.model, test, env, paired)
            }
            Err(error) => {
                PairedComparison::failed(&candidate.model, &baseline.model, test, env, error)
            }
        })
        .collect()
}

/// Reads one entry of a `results.json`'s `comparisons`: a run's (`candidate` and `baseline`
/// are stages such as `iter-1/eval`, the test is the stage's last part) or an experiment's
/// (arms, with `test` and `beyond_noise`).
pub fn parse_comparison(entry: &Value) -> PairedComparison {
    let candidate = text_of(&entry["candidate"]).unwrap_or_default();
    let baseline = text_of(&entry["baseline"]).unwrap_or_default();
    let env = text_of(&entry["env"]).unwrap_or_default();
    let test = text_of(&entry["test"])
        .or_else(|| candidate.rsplit_once('/').map(|(_, test)| test.to_owned()))
        .unwrap_or_default();
    match Paired::deserialize(&entry["paired"]) {
        Ok(paired) => {
            let mut comparison = PairedComparison::made(&candidate, &baseline, &test, &env, paired);
            if let Some(beyond) = entry["beyond_noise"].as_bool() {
                comparison.beyond_noise = Some(beyond);
            }
            comparison
        }
        Err(e) => PairedComparison::failed(
            &candidate,
            &baseline,
            &test,
            &env,
            format!("results.json holds no readable paired comparison: {e}"),
        ),
    }
}

/// One evaluation stage of a self-training run (a row of `results.json`'s `evaluations`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunEvaluation {
    /// Stage name (`bc/eval`, `iter-1/eval`, ...).
    pub stage: String,
    /// Iteration: 0 for `bc/eval`, K for `iter-K/eval`, `None` for other stage names.
    pub iteration: Option<u64>,
    /// Environment.
    pub env: String,
    /// Headline score.
    pub score: Option<f64>,
    /// Share of episodes solved, x100.
    pub success_rate_x100: Option<f64>,
    /// Mean final reward, x100.
    pub average_reward_x100: Option<f64>,
    /// Mean steps per episode.
    pub mean_steps: Option<f64>,
    /// Share of actions the environment rejected (0..1).
    pub invalid_action_rate: Option<f64>,
    /// Mean back-to-back repeats per episode, by run length 1, 2, ...
    pub repeats_per_episode: Vec<Option<f64>>,
}

/// A finished stage of a run and its wall time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageTime {
    /// Stage name.
    pub stage: String,
    /// Wall time in seconds.
    pub seconds: Option<f64>,
}

/// One arm's evaluation in one seed of an experiment (a row of its `results.json`'s `rows`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmRow {
    /// The arm (`base`, `agent-r`, `agent-r (iteration 3)`, ...).
    pub arm: String,
    /// The seed.
    pub seed: Option<u64>,
    /// `eval` or `reflection`.
    pub test: String,
    /// Environment.
    pub env: String,
    /// Headline score.
    pub score: Option<f64>,
    /// Share of episodes solved, x100.
    pub success_rate_x100: Option<f64>,
    /// Mean final reward, x100.
    pub average_reward_x100: Option<f64>,
}

/// How often the judge agreed with the trees' label of the steps the trees label so.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelAgreement {
    /// The trees' label (`bad`, `good`, `uncertain`).
    pub label: String,
    /// Steps with that label the judge was asked about.
    pub steps: u64,
    /// Of those, the steps the judge labelled the same.
    pub agreed: u64,
}

/// What one iteration's revision step did on one environment (a row of a run's
/// `results.json`'s `revisions`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Revision {
    /// The iteration.
    pub iteration: Option<u64>,
    /// Environment.
    pub env: String,
    /// The judge (agent-r mode only).
    pub judge: Option<String>,
    /// Pairs revised.
    pub pairs: Option<u64>,
    /// Pairs where the judge found no bad step, so the revision fell back to direct revision.
    pub fallbacks_to_direct: Option<u64>,
    /// The judge's agreement with the trees, per label; empty when not measured.
    pub agreement: Vec<LabelAgreement>,
    /// Judge answers without a readable label in the agreement measure.
    pub agreement_unparsed: Option<u64>,
}

impl Revision {
    /// Reads one entry of `revisions` (`judge`, `stats` and `judge_agreement`).
    fn from_json(entry: &Value) -> Self {
        let mut agreement = Vec::new();
        if let Some(confusion) = entry["judge_agreement"]["confusion"].as_object() {
            let mut labels: Vec<&str> = ["bad", "good", "uncertain"]
                .into_iter()
                .filter(|l| confusion.contains_key(*l))
                .collect();
            labels.extend(
                confusion
                    .keys()
                    .map(String::as_str)
                    .filter(|l| !["bad", "good", "uncertain"].contains(l)),
            );
            for label in labels {
                let row = &confusion[label];
                let steps = row
                    .as_object()
                    .map_or(0, |r| r.values().filter_map(Value::as_u64).sum());
                agreement.push(LabelAgreement {
                    label: label.to_owned(),
                    steps,
                    agreed: row[label].as_u64().unwrap_or(0),
                });
            }
        }
        Revision {
            iteration: entry["iteration"].as_u64(),
            env: text_of(&entry["env"]).unwrap_or_default(),
            judge: text_of(&entry["judge"]),
            pairs: entry["stats"]["pairs"].as_u64(),
            fallbacks_to_direct: entry["stats"]["fallbacks_to_direct"].as_u64(),
            agreement,
            agreement_unparsed: entry["judge_agreement"]["unparsed"].as_u64(),
        }
    }
}

/// What a `results.json` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// One `agentr self-train` run: evaluations per iteration.
    Run,
    /// An experiment: several arms over several seeds.
    Experiment,
}

/// A self-training run or experiment as read from its `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// Display name: the run directory's name.
    pub name: String,
    /// The run directory as given.
    pub dir: PathBuf,
    /// A single run or an experiment.
    pub kind: RunKind,
    /// `config.mode` (the training arm), when recorded.
    pub mode: Option<String>,
    /// The evaluation stages, in file order (single runs).
    pub evaluations: Vec<RunEvaluation>,
    /// The finished stages with their wall times (single runs).
    pub stages: Vec<StageTime>,
    /// The experiment's arms, in order (experiments).
    pub arms: Vec<String>,
    /// The experiment's seeds (experiments).
    pub seeds: Vec<u64>,
    /// Every arm's evaluations per seed, test and environment (experiments).
    pub rows: Vec<ArmRow>,
    /// The paired comparisons recorded (empty in older `results.json` files).
    pub comparisons: Vec<PairedComparison>,
    /// What each iteration's revision step did (single runs that record it).
    pub revisions: Vec<Revision>,
}

impl RunReport {
    /// The run's name with its mode, as in legends.
    fn label(&self) -> String {
        match (&self.mode, self.kind) {
            (Some(mode), _) => format!("{} ({mode})", self.name),
            (None, RunKind::Experiment) => format!("{} (experiment)", self.name),
            (None, RunKind::Run) => self.name.clone(),
        }
    }

    /// The run's environments, in order of first appearance.
    fn envs(&self) -> Vec<&str> {
        let mut envs: Vec<&str> = Vec::new();
        for evaluation in &self.evaluations {
            if !envs.contains(&evaluation.env.as_str()) {
                envs.push(&evaluation.env);
            }
        }
        envs
    }
}

/// The iteration of an evaluation stage: `bc/eval` is 0, `iter-K/eval` is K.
pub fn iteration_of(stage: &str) -> Option<u64> {
    if stage == "bc/eval" {
        return Some(0);
    }
    stage
        .strip_prefix("iter-")?
        .strip_suffix("/eval")?
        .parse()
        .ok()
}

/// The entries of a `results.json` list (none when it is missing).
fn entries<'a>(results: &'a Value, key: &str) -> &'a [Value] {
    results[key].as_array().map_or(&[], Vec::as_slice)
}

/// Reads a run or an experiment from the contents of its `results.json`: a run's has
/// `evaluations`, an experiment's `rows` (and `experiment`). `comparisons` and `revisions`
/// are read when present.
pub fn parse_results(name: &str, dir: &Path, results: &Value) -> Result<RunReport> {
    let comparisons = entries(results, "comparisons")
        .iter()
        .map(parse_comparison)
        .collect();
    let Some(evaluations) = results["evaluations"].as_array() else {
        if results["rows"].is_array() || results["experiment"].is_object() {
            return Ok(parse_experiment(name, dir, results, comparisons));
        }
        bail!(
            "{}: results.json has neither an `evaluations` list (a self-training run) nor \
             `rows` (an experiment)",
            dir.display()
        );
    };
    let evaluations = evaluations
        .iter()
        .map(|row| {
            let stage = text_of(&row["stage"]).unwrap_or_default();
            let env = text_of(&row["env"]).unwrap_or_default();
            let success = row["success_rate_x100"].as_f64();
            let reward = row["average_reward_x100"].as_f64();
            RunEvaluation {
                iteration: iteration_of(&stage),
                score: headline(&env, success, reward),
                stage,
                env,
                success_rate_x100: success,
                average_reward_x100: reward,
                mean_steps: row["mean_steps"].as_f64(),
                invalid_action_rate: row["invalid_action_rate"].as_f64(),
                repeats_per_episode: row["repeats_per_episode"]
                    .as_array()
                    .map(|values| values.iter().map(Value::as_f64).collect())
                    .unwrap_or_default(),
            }
        })
        .collect();
    let stages = results["stages"]
        .as_array()
        .map(|stages| {
            stages
                .iter()
                .map(|s| StageTime {
                    stage: text_of(&s["stage"]).unwrap_or_default(),
                    seconds: s["seconds"].as_f64(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(RunReport {
        name: name.to_owned(),
        dir: dir.to_owned(),
        kind: RunKind::Run,
        mode: text_of(&results["config"]["mode"]),
        evaluations,
        stages,
        arms: Vec::new(),
        seeds: Vec::new(),
        rows: Vec::new(),
        comparisons,
        revisions: entries(results, "revisions")
            .iter()
            .map(Revision::from_json)
            .collect(),
    })
}

/// Reads an experiment's `results.json` (`experiment`, `rows`, `comparisons`).
fn parse_experiment(
    name: &str,
    dir: &Path,
    results: &Value,
    comparisons: Vec<PairedComparison>,
) -> RunReport {
    let experiment = &results["experiment"];
    let rows = entries(results, "rows")
        .iter()
        .map(|row| {
            let env = text_of(&row["env"]).unwrap_or_default();
            let success = row["metrics"]["success_rate_x100"].as_f64();
            let reward = row["metrics"]["average_reward_x100"].as_f64();
            ArmRow {
                arm: text_of(&row["arm"]).unwrap_or_default(),
                seed: row["seed"].as_u64(),
                test: text_of(&row["test"]).unwrap_or_default(),
                score: headline(&env, success, reward),
                env,
                success_rate_x100: success,
                average_reward_x100: reward,
            }
        })
        .collect();
    RunReport {
        name: name.to_owned(),
        dir: dir.to_owned(),
        kind: RunKind::Experiment,
        mode: None,
        evaluations: Vec::new(),
        stages: Vec::new(),
        arms: entries(experiment, "arms")
            .iter()
            .filter_map(text_of)
            .collect(),
        seeds: entries(experiment, "seeds")
            .iter()
            .filter_map(Value::as_u64)
            .collect(),
        rows,
        comparisons,
        revisions: Vec::new(),
    }
}

/// Reads `dir/results.json`.
fn read_run(dir: &Path) -> Result<RunReport> {
    let path = dir.join("results.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (is the self-training run finished?)",
            path.display()
        )
    })?;
    let results: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    parse_results(&name, dir, &results)
}

/// One successful evaluation of a model on an environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelResult {
    /// Model display name.
    pub model: String,
    /// Model folder as given.
    pub dir: PathBuf,
    /// The evaluation's folder (episodes.jsonl, summary.json), relative to the report.
    pub out: String,
    /// Headline score.
    pub score: Option<f64>,
    /// All metrics.
    pub metrics: Metrics,
    /// The recorded protocol.
    pub protocol: Protocol,
}

/// A failed evaluation: agentr's error and what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// Model display name.
    pub model: String,
    /// agentr's error line.
    pub reason: String,
    /// What may fix it.
    pub hint: String,
}

/// Everything about one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvReport {
    /// Environment name.
    pub env: String,
    /// Whether at least one model was evaluated on it.
    pub available: bool,
    /// The headline metric's key in the metrics.
    pub headline: String,
    /// Successful evaluations, in model order.
    pub results: Vec<ModelResult>,
    /// Failed evaluations (when agentr rejected the environment, only the first model's).
    pub failures: Vec<Failure>,
    /// Every result after the first compared with the first by pairs (`agentr compare`).
    pub comparisons: Vec<PairedComparison>,
    /// The paper's numbers or why they do not apply (absent without results).
    pub paper: Option<PaperComparison>,
}

/// The evaluation settings passed to agentr.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// Environments asked for.
    pub envs: Vec<String>,
    /// Task selection.
    pub tasks: String,
    /// Most rounds per episode.
    pub max_rounds: u64,
    /// Parallel episodes.
    pub workers: u64,
    /// Base episodes of the self-reflection test, when it is the test.
    pub reflection_from: Option<PathBuf>,
}

/// The whole report, as written to `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Report name.
    pub name: String,
    /// When it was made (UTC).
    pub created: String,
    /// The command that made it.
    pub command: String,
    /// True for the self-reflection test.
    pub self_reflection_test: bool,
    /// Settings passed to agentr.
    pub settings: Settings,
    /// Models evaluated.
    pub models: Vec<ModelArg>,
    /// One entry per environment asked for.
    pub envs: Vec<EnvReport>,
    /// Self-training runs read.
    pub runs: Vec<RunReport>,
    /// Plot files written next to the report.
    pub plots: Vec<String>,
}

/// How one agentr process ended, with the last lines of its stderr.
#[derive(Debug)]
struct Finished {
    success: bool,
    status: String,
    tail: Vec<String>,
}

/// Runs `command` with its stderr copied line by line to ours and its last lines kept.
fn run_streaming(command: &mut Command) -> Result<Finished> {
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let mut tail: VecDeque<String> = VecDeque::with_capacity(KEPT_LINES);
    if let Some(stderr) = child.stderr.take() {
        let mut reader = BufReader::new(stderr);
        let mut ours = std::io::stderr();
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    // The terminal going away must not stop the evaluation.
                    let _ = ours.write_all(&line);
                    if tail.len() == KEPT_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(
                        String::from_utf8_lossy(&line)
                            .trim_end_matches(['\n', '\r'])
                            .to_owned(),
                    );
                }
                Err(e) => {
                    tail.push_back(format!("(xtask could not read agentr's stderr: {e})"));
                    break;
                }
            }
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {command:?}"))?;
    Ok(Finished {
        success: status.success(),
        status: status.to_string(),
        tail: tail.into(),
    })
}

/// The first error line of a program's stderr (`error: ...` from clap, `Error: ...` from
/// anyhow, with anyhow's innermost cause appended), or its last non-empty line.
pub fn error_line(lines: &[String]) -> Option<String> {
    let lines: Vec<&str> = lines.iter().map(|l| l.trim()).collect();
    let is_error = |line: &&str| {
        let lower = line.to_ascii_lowercase();
        lower.starts_with("error:") || lower.starts_with("error ")
    };
    let Some(first) = lines.iter().position(is_error) else {
        return lines
            .iter()
            .rev()
            .find(|l| !l.is_empty())
            .map(|l| l.to_string());
    };
    let mut text = lines[first].to_owned();
    let after = &lines[first + 1..];
    if let Some(caused) = after.iter().position(|l| *l == "Caused by:") {
        let innermost = after[caused + 1..]
            .iter()
            .take_while(|l| !l.is_empty())
            .last();
        if let Some(cause) = innermost {
            // anyhow numbers the causes (`1: ...`) when there are several.
            let cause = match cause.split_once(": ") {
                Some((index, rest)) if index.bytes().all(|b| b.is_ascii_digit()) => rest,
                _ => cause,
            };
            let _ = write!(text, " (cause: {cause})");
        }
    }
    Some(text)
}

/// Whether agentr's error says it does not know the environment (clap's `invalid value` for
/// `--env`).
pub fn env_rejected(error: &str) -> bool {
    error.contains("invalid value") && error.contains("--env")
}

/// What may fix a failed evaluation on `env`.
pub fn setup_hint(env: &str, error: &str) -> String {
    let lower = error.to_ascii_lowercase();
    let about_assets = ["recipe", "set up", "setting up", "asset"]
        .iter()
        .any(|word| lower.contains(word));
    match (env_rejected(error), env) {
        (true, _) => format!("this version of agentr does not know the environment `{env}`"),
        (false, "textcraft") if about_assets => {
            "run `cargo xtask setup` (fetches the TextCraft recipes)".to_owned()
        }
        (false, "textcraft") => "agentr accepted the environment but failed (see the error); \
             if the TextCraft recipes are missing, `cargo xtask setup` fetches them"
            .to_owned(),
        (false, "sciworld") if about_assets || lower.contains("java") => {
            "run `cargo xtask setup` (fetches scienceworld.jar) and install Java 11+ \
             (Debian: apt-get install openjdk-17-jre-headless)"
                .to_owned()
        }
        (false, _) => "agentr accepted the environment but failed; see the error".to_owned(),
    }
}

/// Reads an evaluation's `summary.json`.
fn read_summary(path: &Path) -> Result<(Protocol, Metrics)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let summary: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok((
        Protocol::from_json(&summary["protocol"]),
        Metrics::from_json(&summary["metrics"]),
    ))
}

/// Removes a file if it is there.
fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Quotes a command-line argument for a POSIX shell when it needs it.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=:,@%+".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Converts days since 1970-01-01 to a (year, month, day) of the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// `YYYY-MM-DD HH:MM UTC` for seconds since the Unix epoch.
fn utc_text(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let (year, month, day) = civil_from_days(days);
    let in_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        in_day / 3600,
        in_day % 3600 / 60
    )
}

/// A number with `decimals` decimals, or `–` when missing.
fn cell(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "–".to_owned(),
    }
}

/// Text for a Markdown table cell (`|` and line breaks would end the cell).
fn md_cell(text: &str) -> String {
    text.replace('|', r"\|").replace(['\n', '\r'], " ")
}

/// A relative path as a Markdown link target: bytes other than unreserved URL characters and
/// `/` are percent-encoded (spaces in model names would otherwise end the link).
fn md_link(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Text for inline code in Markdown.
fn md_code(text: &str) -> String {
    if text.contains('`') {
        format!("`` {} ``", md_cell(text))
    } else {
        format!("`{}`", md_cell(text))
    }
}

/// A wall time for people: `42 s`, `5 min 12 s`, `2 h 03 min`.
fn duration_text(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "–".to_owned();
    }
    let whole = seconds.round() as u64;
    match whole {
        0..=59 => format!("{whole} s"),
        60..=3599 => format!("{} min {:02} s", whole / 60, whole % 60),
        _ => format!("{} h {:02} min", whole / 3600, whole % 3600 / 60),
    }
}

/// The protocol of an evaluation in one line.
fn protocol_line(protocol: &Protocol) -> String {
    let unknown = || "?".to_owned();
    let mut parts = Vec::new();
    if protocol.self_reflection {
        parts.push(format!(
            "self-reflection test: the failed episodes of {} ({} episodes, cut seed {})",
            md_code(protocol.failed_episodes_of.as_deref().unwrap_or("?")),
            protocol.task_count.map_or_else(unknown, |n| n.to_string()),
            protocol.cut_seed.map_or_else(unknown, |n| n.to_string()),
        ));
        parts.push(format!(
            "at most {} rounds after the cut",
            protocol
                .continue_rounds
                .map_or_else(unknown, |n| n.to_string())
        ));
    } else {
        parts.push(format!(
            "tasks {} ({} tasks)",
            md_code(protocol.tasks.as_deref().unwrap_or("?")),
            protocol.task_count.map_or_else(unknown, |n| n.to_string())
        ));
        parts.push(format!(
            "at most {} rounds",
            protocol.max_rounds.map_or_else(unknown, |n| n.to_string())
        ));
    }
    parts.push(format!(
        "{} decoding",
        protocol.decoding.as_deref().unwrap_or("unrecorded")
    ));
    parts.push(format!(
        "revision turns: {}",
        protocol.revision_turns.as_deref().unwrap_or("unrecorded")
    ));
    if let Some(tokens) = protocol.max_tokens {
        parts.push(format!("at most {tokens} new tokens per response"));
    }
    parts.join("; ")
}

/// Writes one environment's section of report.md.
fn write_env_section(md: &mut String, env: &EnvReport, reflection: bool) {
    let _ = writeln!(md, "## {}\n", env.env);
    if !env.available {
        let _ = writeln!(md, "Not available; see [below](#not-available).\n");
        return;
    }
    let _ = writeln!(
        md,
        "Score: {} (the paper's metric for this environment).\n",
        headline_label(&env.env)
    );
    let baseline = env.comparisons.first().map(|c| c.baseline.as_str());
    md.push_str("| model | score |");
    if let Some(baseline) = baseline {
        let _ = write!(md, " paired vs {} |", md_cell(baseline));
    }
    md.push_str(
        " success % | avg reward x100 | mean steps | invalid actions % \
         | repeats/episode (run length 1 / 2 / 3) | model folder | sha256 |\n| --- | ---: |",
    );
    if baseline.is_some() {
        md.push_str(" --- |");
    }
    md.push_str(" ---: | ---: | ---: | ---: | --- | --- | --- |\n");
    for result in &env.results {
        let m = &result.metrics;
        let mut success = cell(m.success_rate_x100, 1);
        if let (Some(n), Some(total)) = (m.successes, result.protocol.task_count) {
            let _ = write!(success, " ({n}/{total})");
        }
        let repeats: Vec<String> = m.mean_repeats.iter().map(|r| cell(*r, 2)).collect();
        let sha = result.protocol.model_sha256.as_deref().map_or_else(
            || "–".to_owned(),
            |s| md_code(&s.chars().take(12).collect::<String>()),
        );
        let paired = match baseline {
            None => String::new(),
            Some(baseline) if baseline == result.model => " baseline |".to_owned(),
            Some(_) => env
                .comparisons
                .iter()
                .find(|c| c.candidate == result.model)
                .map_or_else(
                    || " – |".to_owned(),
                    |c| format!(" {} |", c.markdown_cell()),
                ),
        };
        let _ = writeln!(
            md,
            "| {} | **{}** |{paired} {success} | {} | {} | {} | {} | {} | {sha} |",
            md_cell(&result.model),
            cell(result.score, 1),
            cell(m.average_reward_x100, 1),
            cell(m.mean_steps, 1),
            cell(m.invalid_action_rate.map(|r| 100.0 * r), 1),
            repeats.join(" / "),
            md_code(&result.dir.display().to_string()),
        );
    }
    md.push('\n');
    if let Some(baseline) = baseline {
        let _ = writeln!(
            md,
            "Paired comparison with {} on the same tasks (success: reward 1): the success \
             difference in points with its 95% bootstrap interval over tasks, the discordant \
             tasks (solved only by the model vs only by {}), and McNemar's exact p-value; \
             *beyond noise* when the interval excludes 0 and p < 0.05, else *within noise* \
             (`agentr compare`).\n",
            md_cell(baseline),
            md_cell(baseline)
        );
    }
    let mut lines: Vec<String> = env
        .results
        .iter()
        .map(|r| protocol_line(&r.protocol))
        .collect();
    lines.dedup();
    for line in lines {
        let _ = writeln!(md, "Protocol: {line}.\n");
    }
    for result in &env.results {
        let _ = writeln!(
            md,
            "- episodes of {}: [{}/episodes.jsonl]({}/episodes.jsonl)",
            md_cell(&result.model),
            md_cell(&result.out),
            md_link(&result.out)
        );
    }
    md.push('\n');
    if let Some(paper) = &env.paper {
        if paper.comparable {
            let _ = writeln!(
                md,
                "Same protocol as the {} ({} test tasks{}). The paper's models are far larger \
                 than ours; the protocol, not the model, is what matches.\n",
                paper.reference,
                paper_test_count(&env.env),
                if reflection {
                    format!(", {PAPER_CONTINUE_ROUNDS} rounds after the cut")
                } else {
                    format!(", {PAPER_MAX_ROUNDS} rounds")
                }
            );
            md.push_str("| paper | score |\n| --- | ---: |\n");
            for number in &paper.numbers {
                let _ = writeln!(md, "| {} | {:.2} |", md_cell(&number.method), number.score);
            }
            md.push('\n');
        } else {
            let _ = writeln!(
                md,
                "Not comparable with the paper's numbers ({}): protocol differs: {}.\n",
                paper.reference,
                paper.differences.join(", ")
            );
        }
    }
    for failure in &env.failures {
        let _ = writeln!(
            md,
            "Evaluation of {} failed: {} ({}).\n",
            md_cell(&failure.model),
            md_code(&failure.reason),
            failure.hint
        );
    }
}

/// Writes a table of paired comparisons.
fn write_comparison_table(md: &mut String, comparisons: &[PairedComparison]) {
    md.push_str(
        "| candidate | baseline | test | env | pairs | difference [95% interval] \
         | discordant (candidate vs baseline) | McNemar p | verdict |\n\
         | --- | --- | --- | --- | ---: | --- | ---: | ---: | --- |\n",
    );
    for comparison in comparisons {
        let dash = || "–".to_owned();
        let (pairs, difference, discordant, p) = match (&comparison.paired, &comparison.error) {
            (Some(paired), _) => (
                paired.pairs_text(),
                paired.difference_text(),
                format!("{} vs {}", paired.only_candidate, paired.only_baseline),
                p_cell(paired.mcnemar_p),
            ),
            (None, error) => (
                dash(),
                format!(
                    "not compared: {}",
                    md_code(error.as_deref().unwrap_or("no comparison"))
                ),
                dash(),
                dash(),
            ),
        };
        let verdict = match comparison.beyond_noise {
            Some(true) => format!("**{}**", comparison.verdict()),
            _ => comparison.verdict().to_owned(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {pairs} | {difference} | {discordant} | {} | {verdict} |",
            md_cell(&comparison.candidate),
            md_cell(&comparison.baseline),
            md_cell(&comparison.test),
            md_cell(&comparison.env),
            md_cell(&p),
        );
    }
    md.push('\n');
}

/// The judge's agreement with the trees in one cell: per label, then overall.
fn agreement_text(agreement: &[LabelAgreement], unparsed: Option<u64>) -> String {
    if agreement.is_empty() {
        return "not measured".to_owned();
    }
    let parts: Vec<String> = agreement
        .iter()
        .map(|a| format!("{} {}/{}", a.label, a.agreed, a.steps))
        .collect();
    let agreed: u64 = agreement.iter().map(|a| a.agreed).sum();
    let steps: u64 = agreement.iter().map(|a| a.steps).sum();
    let mut text = format!("{}; overall {agreed}/{steps}", parts.join(", "));
    if steps > 0 {
        let _ = write!(text, " ({:.0}%)", 100.0 * agreed as f64 / steps as f64);
    }
    if let Some(unparsed) = unparsed.filter(|n| *n > 0) {
        let _ = write!(text, ", {unparsed} unparsed");
    }
    text
}

/// Writes a run's revision statistics per iteration.
fn write_revision_table(md: &mut String, revisions: &[Revision]) {
    md.push_str(
        "Revision step per iteration: pairs revised, the pairs where the judge found no bad \
         step and the revision fell back to direct revision, and how often the judge agreed \
         with the trees' labels (agreed/asked).\n\n\
         | iteration | env | judge | pairs | fallbacks to direct revision \
         | judge agreement with the trees |\n\
         | ---: | --- | --- | ---: | ---: | --- |\n",
    );
    for revision in revisions {
        let fallbacks = match (revision.fallbacks_to_direct, revision.pairs) {
            (Some(f), Some(pairs)) if pairs > 0 => {
                format!("{f} ({:.1}% of pairs)", 100.0 * f as f64 / pairs as f64)
            }
            (Some(f), _) => f.to_string(),
            (None, _) => "–".to_owned(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {fallbacks} | {} |",
            revision
                .iteration
                .map_or_else(|| "–".to_owned(), |i| i.to_string()),
            md_cell(&revision.env),
            revision
                .judge
                .as_deref()
                .map_or_else(|| "–".to_owned(), md_code),
            revision
                .pairs
                .map_or_else(|| "–".to_owned(), |p| p.to_string()),
            md_cell(&agreement_text(
                &revision.agreement,
                revision.agreement_unparsed
            )),
        );
    }
    md.push('\n');
}

/// Writes an experiment's scores per arm, test and environment over its seeds.
fn write_arm_table(md: &mut String, run: &RunReport) {
    if run.rows.is_empty() {
        md.push_str("No evaluation recorded.\n\n");
        return;
    }
    md.push_str(
        "| arm | test | env | mean score | per seed (seed: score) |\n\
         | --- | --- | --- | ---: | --- |\n",
    );
    let mut keys: Vec<(&str, &str, &str)> = Vec::new();
    for row in &run.rows {
        let key = (row.arm.as_str(), row.test.as_str(), row.env.as_str());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for (arm, test, env) in keys {
        let rows: Vec<&ArmRow> = run
            .rows
            .iter()
            .filter(|r| r.arm == arm && r.test == test && r.env == env)
            .collect();
        let scores: Vec<f64> = rows.iter().filter_map(|r| r.score).collect();
        let mean = (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64);
        let per_seed: Vec<String> = rows
            .iter()
            .map(|r| {
                let seed = r.seed.map_or_else(|| "?".to_owned(), |s| s.to_string());
                format!("{seed}: {}", cell(r.score, 1))
            })
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            md_cell(arm),
            md_cell(test),
            md_cell(env),
            cell(mean, 1),
            per_seed.join(" / ")
        );
    }
    md.push('\n');
}

/// Writes a single run's scores per iteration.
fn write_iteration_table(md: &mut String, run: &RunReport) {
    let envs = run.envs();
    if run.evaluations.is_empty() {
        md.push_str("No evaluation recorded.\n\n");
        return;
    }
    md.push_str("| iteration | stage |");
    for env in &envs {
        let _ = write!(md, " {env} score |");
    }
    md.push_str(" mean steps | invalid actions % |\n| ---: | --- |");
    for _ in &envs {
        md.push_str(" ---: |");
    }
    md.push_str(" ---: | ---: |\n");
    let mut stages: Vec<&str> = Vec::new();
    for evaluation in &run.evaluations {
        if !stages.contains(&evaluation.stage.as_str()) {
            stages.push(&evaluation.stage);
        }
    }
    for stage in stages {
        let rows: Vec<&RunEvaluation> = run
            .evaluations
            .iter()
            .filter(|e| e.stage == stage)
            .collect();
        let iteration = rows
            .first()
            .and_then(|r| r.iteration)
            .map_or_else(|| "–".to_owned(), |i| i.to_string());
        let _ = write!(md, "| {iteration} | {} |", md_code(stage));
        for env in &envs {
            let score = rows.iter().find(|r| r.env == *env).and_then(|r| r.score);
            let _ = write!(md, " {} |", cell(score, 1));
        }
        let joined = |f: fn(&RunEvaluation) -> Option<f64>, scale: f64| {
            rows.iter()
                .map(|r| cell(f(r).map(|v| v * scale), 1))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let _ = writeln!(
            md,
            " {} | {} |",
            joined(|r| r.mean_steps, 1.0),
            joined(|r| r.invalid_action_rate, 100.0)
        );
    }
    md.push('\n');
    if envs.len() > 1 {
        let _ = writeln!(
            md,
            "Mean steps and invalid actions are per environment, in the order {}.\n",
            envs.join(", ")
        );
    }
}

/// Writes one run's or experiment's section of report.md.
fn write_run_section(md: &mut String, run: &RunReport) {
    let what = match run.kind {
        RunKind::Run => "Run directory",
        RunKind::Experiment => "Experiment directory",
    };
    let _ = writeln!(
        md,
        "### {}\n\n{what} {}.\n",
        md_cell(&run.label()),
        md_code(&run.dir.display().to_string())
    );
    match run.kind {
        RunKind::Run => write_iteration_table(md, run),
        RunKind::Experiment => {
            if !run.arms.is_empty() || !run.seeds.is_empty() {
                let seeds: Vec<String> = run.seeds.iter().map(u64::to_string).collect();
                let _ = writeln!(
                    md,
                    "Arms: {}; seeds: {}.\n",
                    md_cell(&run.arms.join(", ")),
                    seeds.join(", ")
                );
            }
            write_arm_table(md, run);
        }
    }
    if !run.revisions.is_empty() {
        write_revision_table(md, &run.revisions);
    }
    if !run.comparisons.is_empty() {
        md.push_str("Paired comparisons recorded by the run:\n\n");
        write_comparison_table(md, &run.comparisons);
    }
    if !run.stages.is_empty() {
        md.push_str("| stage | wall time |\n| --- | ---: |\n");
        for stage in &run.stages {
            let _ = writeln!(
                md,
                "| {} | {} |",
                md_code(&stage.stage),
                stage.seconds.map_or_else(|| "–".to_owned(), duration_text)
            );
        }
        let total: f64 = run.stages.iter().filter_map(|s| s.seconds).sum();
        let _ = writeln!(md, "| total | {} |\n", duration_text(total));
    }
}

/// The whole report.md.
pub fn render_markdown(report: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Evaluation report `{}`\n", md_cell(&report.name));
    let _ = writeln!(
        md,
        "Made {} by:\n\n```sh\n{}\n```\n",
        report.created, report.command
    );
    if report.self_reflection_test {
        let _ = writeln!(
            md,
            "This is the **self-reflection test**: each model continues the failed episodes of {} \
             from a seeded cut point, instead of playing fresh episodes.\n",
            md_code(
                &report
                    .settings
                    .reflection_from
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
        );
    }
    if !report.models.is_empty() {
        for env in &report.envs {
            write_env_section(&mut md, env, report.self_reflection_test);
        }
        let missing: Vec<&EnvReport> = report.envs.iter().filter(|e| !e.available).collect();
        if !missing.is_empty() {
            md.push_str("## Not available\n\n");
            for env in missing {
                match env.failures.first() {
                    Some(failure) => {
                        let _ = writeln!(
                            md,
                            "- **{}**: {}; {}.",
                            env.env,
                            md_code(&failure.reason),
                            failure.hint
                        );
                    }
                    None => {
                        let _ = writeln!(md, "- **{}**: not evaluated.", env.env);
                    }
                }
            }
            md.push('\n');
        }
    }
    if !report.runs.is_empty() {
        md.push_str(
            "## Self-training runs\n\nRead from each run's results.json: scores per iteration \
             (iteration 0 is the behaviour-cloning warm start) for a run, per arm and seed for \
             an experiment (score: success rate x100 on TextCraft, average final reward x100 \
             elsewhere). Paired comparisons are on the same tasks (success: reward 1): the \
             success difference in points with its 95% bootstrap interval over tasks (and \
             seeds where there are several), the discordant pairs (solved only by the \
             candidate vs only by the baseline), and McNemar's exact p-value; *beyond noise* \
             when the interval excludes 0 and p < 0.05, else *within noise*.\n\n",
        );
        for run in &report.runs {
            write_run_section(&mut md, run);
        }
    }
    if !report.plots.is_empty() {
        md.push_str("## Plots\n\n");
        for plot in &report.plots {
            let _ = writeln!(md, "![{plot}]({plot})\n");
        }
    }
    md
}

/// The plots of a report: file name and SVG text.
pub fn plots(report: &Report) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let evaluated: Vec<&EnvReport> = report.envs.iter().filter(|e| e.available).collect();
    if !evaluated.is_empty() {
        let scores = svg::BarChart {
            title: if report.self_reflection_test {
                "Self-reflection test: score per environment".to_owned()
            } else {
                "Score per environment".to_owned()
            },
            y_label: "score (TextCraft: success x100; others: reward x100)".to_owned(),
            categories: evaluated.iter().map(|e| e.env.clone()).collect(),
            // Models without any result would only add an empty legend entry.
            series: report
                .models
                .iter()
                .filter(|model| {
                    evaluated
                        .iter()
                        .any(|env| env.results.iter().any(|r| r.model == model.name))
                })
                .map(|model| svg::BarSeries {
                    name: model.name.clone(),
                    values: evaluated
                        .iter()
                        .map(|env| {
                            env.results
                                .iter()
                                .find(|r| r.model == model.name)
                                .and_then(|r| r.score)
                        })
                        .collect(),
                })
                .collect(),
            y_max: Some(100.0),
        };
        out.push(("scores.svg".to_owned(), svg::bar_chart(&scores)));
        let loops: Vec<svg::BarChart> = evaluated
            .iter()
            .map(|env| svg::BarChart {
                title: format!("{}: back-to-back repeated actions", env.env),
                y_label: "mean repeats per episode".to_owned(),
                categories: env.results.iter().map(|r| r.model.clone()).collect(),
                series: (0..3)
                    .map(|len| svg::BarSeries {
                        name: format!("run length {}", len + 1),
                        values: env
                            .results
                            .iter()
                            .map(|r| r.metrics.mean_repeats[len])
                            .collect(),
                    })
                    .collect(),
                y_max: None,
            })
            .collect();
        out.push(("loops.svg".to_owned(), svg::stacked_bar_charts(&loops)));
    }
    // Experiments record no iterations; a chart of none would be empty.
    let mut series = Vec::new();
    for run in &report.runs {
        let envs = run.envs();
        for env in &envs {
            let name = if envs.len() > 1 {
                format!("{} {env}", run.label())
            } else {
                run.label()
            };
            let points = run
                .evaluations
                .iter()
                .filter(|e| e.env == *env)
                .filter_map(|e| Some((e.iteration? as f64, e.score?)))
                .collect();
            series.push(svg::LineSeries { name, points });
        }
    }
    if !series.is_empty() {
        let chart = svg::LineChart {
            title: "Score per self-training iteration".to_owned(),
            x_label: "iteration (0 = behaviour cloning)".to_owned(),
            y_label: "score".to_owned(),
            series,
            y_max: Some(100.0),
        };
        out.push(("iterations.svg".to_owned(), svg::line_chart(&chart)));
    }
    out
}

/// The protocol of the base model's run whose episodes the self-reflection test continues:
/// the `summary.json` next to the episodes file, when there is one.
fn base_protocol(episodes: &Path) -> Option<Protocol> {
    let summary = episodes.parent()?.join("summary.json");
    read_summary(&summary).ok().map(|(protocol, _)| protocol)
}

/// Evaluates every model on `env` and collects the results and failures.
fn evaluate_env(
    agentr: &Path,
    options: &Options,
    report_dir: &Path,
    env: &str,
    reflection_from: Option<&Path>,
) -> Result<(Vec<ModelResult>, Vec<Failure>)> {
    let (mut results, mut failures) = (Vec::new(), Vec::new());
    for model in &options.models {
        let out = report_dir.join(env).join(&model.name);
        remove_stale(&out.join("summary.json"))?;
        let dir = std::path::absolute(&model.dir)
            .with_context(|| format!("resolving {}", model.dir.display()))?;
        eprintln!("\n== {env}: {} ({})", model.name, model.dir.display());
        let mut command = Command::new(agentr);
        command
            .args(["eval", "--env", env, "--model"])
            .arg(&dir)
            .args(["--tasks", &options.tasks])
            .args(["--max-rounds", &options.max_rounds.to_string()])
            .args(["--workers", &options.workers.to_string()])
            .arg("--out")
            .arg(&out);
        if let Some(file) = reflection_from {
            command.arg("--reflection-from").arg(file);
        }
        let finished = run_streaming(&mut command)?;
        let relative = format!("{env}/{}", model.name);
        let failure = if finished.success {
            match read_summary(&out.join("summary.json")) {
                Ok((protocol, metrics)) => {
                    results.push(ModelResult {
                        model: model.name.clone(),
                        dir: model.dir.clone(),
                        out: relative,
                        score: headline(
                            env,
                            metrics.success_rate_x100,
                            metrics.average_reward_x100,
                        ),
                        metrics,
                        protocol,
                    });
                    None
                }
                Err(e) => Some(format!(
                    "agentr finished but its summary is unreadable: {e:#}"
                )),
            }
        } else {
            Some(error_line(&finished.tail).unwrap_or_else(|| {
                format!("agentr exited with {} and no message", finished.status)
            }))
        };
        if let Some(reason) = failure {
            let hint = setup_hint(env, &reason);
            eprintln!(
                "xtask eval: {env} with {}: not available: {reason}\n  hint: {hint}",
                model.name
            );
            let rejected = env_rejected(&reason);
            failures.push(Failure {
                model: model.name.clone(),
                reason,
                hint,
            });
            if rejected {
                // agentr does not know the environment; the other models would fail alike.
                break;
            }
        }
    }
    Ok((results, failures))
}

/// Path of the release `agentr` binary (honouring `CARGO_TARGET_DIR`).
fn agentr_binary(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| root.join(dir))
        .unwrap_or_else(|| root.join("target"));
    target
        .join("release")
        .join(format!("agentr{}", std::env::consts::EXE_SUFFIX))
}

/// `cargo xtask eval`: runs the evaluations `options` ask for and writes the report, which
/// records `argv` (the arguments after `cargo xtask`) as its command.
pub fn eval(root: &Path, options: &Options, argv: &[String]) -> Result<()> {
    options.check()?;
    let runs = options
        .runs
        .iter()
        .map(|dir| read_run(dir))
        .collect::<Result<Vec<_>>>()?;
    let reflection_from = match &options.reflection_from {
        Some(file) => Some(
            std::path::absolute(file).with_context(|| format!("resolving {}", file.display()))?,
        ),
        None => None,
    };
    let report_dir = root.join("reports").join(&options.name);
    std::fs::create_dir_all(&report_dir)
        .with_context(|| format!("creating {}", report_dir.display()))?;

    let mut envs = Vec::new();
    if !options.models.is_empty() {
        crate::run(crate::cargo(root).args(["build", "--release", "-p", "agentr-cli"]))?;
        let agentr = agentr_binary(root);
        let base = reflection_from.as_deref().and_then(base_protocol);
        for env in &options.envs {
            let (results, failures) = evaluate_env(
                &agentr,
                options,
                &report_dir,
                env,
                reflection_from.as_deref(),
            )?;
            let paper = (!results.is_empty()).then(|| {
                let protocols: Vec<&Protocol> = results.iter().map(|r| &r.protocol).collect();
                compare_with_paper(env, &protocols, reflection_from.is_some(), base.as_ref())
            });
            let test = match reflection_from {
                Some(_) => "reflection",
                None => "eval",
            };
            let comparisons = compare_models(env, test, &results, |baseline, candidate| {
                let compared = run_compare(
                    Command::new(&agentr),
                    &report_dir.join(baseline),
                    &report_dir.join(candidate),
                );
                if let Err(error) = &compared {
                    eprintln!(
                        "xtask eval: {env}: {candidate} not compared with {baseline}: {error}"
                    );
                }
                compared
            });
            envs.push(EnvReport {
                env: env.clone(),
                available: !results.is_empty(),
                headline: headline_key(env).to_owned(),
                results,
                failures,
                comparisons,
                paper,
            });
        }
    }

    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| utc_text(d.as_secs()))
        .unwrap_or_else(|_| "(unknown time)".to_owned());
    let command = std::iter::once("cargo xtask".to_owned())
        .chain(argv.iter().map(|a| shell_quote(a)))
        .collect::<Vec<_>>()
        .join(" ");
    let mut report = Report {
        name: options.name.clone(),
        created,
        command,
        self_reflection_test: options.reflection_from.is_some(),
        settings: Settings {
            envs: options.envs.clone(),
            tasks: options.tasks.clone(),
            max_rounds: options.max_rounds,
            workers: options.workers,
            reflection_from: options.reflection_from.clone(),
        },
        models: options.models.clone(),
        envs,
        runs,
        plots: Vec::new(),
    };
    let plots = plots(&report);
    for file in ["scores.svg", "loops.svg", "iterations.svg"] {
        remove_stale(&report_dir.join(file))?;
    }
    for (file, text) in &plots {
        let path = report_dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    report.plots = plots.into_iter().map(|(file, _)| file).collect();
    let json_path = report_dir.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md_path = report_dir.join("report.md");
    std::fs::write(&md_path, render_markdown(&report))
        .with_context(|| format!("writing {}", md_path.display()))?;

    eprintln!();
    for env in &report.envs {
        for result in &env.results {
            eprintln!(
                "{:<10} {:<20} score {}",
                env.env,
                result.model,
                cell(result.score, 1)
            );
        }
        for comparison in &env.comparisons {
            eprintln!(
                "{:<10} {} vs {}: {}",
                env.env,
                comparison.candidate,
                comparison.baseline,
                comparison.summary_line()
            );
        }
        if !env.available {
            let reason = env.failures.first().map_or("not evaluated", |f| &f.reason);
            eprintln!("{:<10} not available: {reason}", env.env);
        }
    }
    eprintln!("report: {}", md_path.display());
    let successes: usize = report.envs.iter().map(|e| e.results.len()).sum();
    if !options.models.is_empty() && successes == 0 {
        bail!(
            "no evaluation succeeded; see the notices above and {}",
            md_path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    /// Parses `cargo xtask eval ARGS` as `main` does: clap, then [`Options::check`].
    fn parse_args(args: &[&str]) -> Result<Options> {
        let argv = ["cargo xtask", "eval"]
            .into_iter()
            .chain(args.iter().copied());
        match <crate::Cli as clap::Parser>::try_parse_from(argv)?.task {
            Some(crate::Task::Eval(options)) => options.check().map(|()| options),
            other => bail!("parsed as {other:?}"),
        }
    }

    fn full_protocol(env: &str) -> Value {
        json!({
            "env": env, "tasks": "test", "task_count": paper_test_count(env), "max_rounds": 100,
            "decoding": "greedy", "sampling_seed": 0, "textcraft_seed": 42, "max_tokens": 128,
            "revision_turns": "answered ok.", "self_reflection": null,
            "model": "runs/x/model", "model_sha256": "ab12cd34ef56ab12"
        })
    }

    fn with(mut base: Value, field: &str, value: Value) -> Value {
        base[field] = value;
        base
    }

    #[test]
    fn parses_model_arguments() {
        let model = parse_model("bc=runs/a/model").unwrap();
        assert_eq!(model.name, "bc");
        assert_eq!(model.dir, PathBuf::from("runs/a/model"));
        // Only the first `=` separates.
        assert_eq!(
            parse_model("x=dir=with=eq").unwrap().dir,
            PathBuf::from("dir=with=eq")
        );
        for bad in [
            "no-equals",
            "=dir",
            "name=",
            "=",
            "a/b=dir",
            "..=dir",
            ".=dir",
        ] {
            assert!(parse_model(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn parses_arguments_with_defaults() {
        let options = parse_args(&["--model", "bc=m1", "--model=ar=m2"]).unwrap();
        assert_eq!(options.models.len(), 2);
        assert_eq!(options.models[1].name, "ar");
        assert_eq!(options.name, "eval");
        // The default list, written out for clap, is every known environment.
        assert_eq!(options.envs, KNOWN_ENVS);
        assert_eq!(options.tasks, "test");
        assert_eq!((options.max_rounds, options.workers), (100, 2));
        assert_eq!(options.reflection_from, None);

        let options = parse_args(&[
            "--run",
            "runs/a",
            "--name",
            "r1",
            "--envs",
            "webshop, textcraft",
            "--tasks",
            "test[:20]",
            "--max-rounds",
            "30",
            "--workers=4",
            "--reflection-from",
            "e.jsonl",
        ])
        .unwrap();
        assert!(options.models.is_empty());
        assert_eq!(options.runs, [PathBuf::from("runs/a")]);
        assert_eq!(options.name, "r1");
        assert_eq!(options.envs, ["webshop", "textcraft"]);
        assert_eq!(options.tasks, "test[:20]");
        assert_eq!((options.max_rounds, options.workers), (30, 4));
        assert_eq!(options.reflection_from, Some(PathBuf::from("e.jsonl")));
    }

    #[test]
    fn rejects_bad_arguments() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "required arguments were not provided"),
            (&["--name", "x"], "required arguments were not provided"),
            (&["--model"], "a value is required for '--model <NAME=DIR>'"),
            (&["--model", "--run", "r"], "a value is required"),
            (&["--model", "bc"], "expected NAME=DIR"),
            (&["--model", "a=x", "--model", "a=y"], "two models"),
            (
                &["--model", "a=x", "--bogus", "1"],
                "unexpected argument '--bogus'",
            ),
            (&["--model", "a=x", "stray"], "unexpected argument 'stray'"),
            (
                &["--model", "a=x", "--envs", "alfworld"],
                "unknown environment",
            ),
            (&["--model", "a=x", "--envs", "webshop,webshop"], "twice"),
            (&["--model", "a=x", "--envs", ","], "no environment"),
            (&["--model", "a=x", "--max-rounds", "0"], "at least 1"),
            (&["--model", "a=x", "--workers", "two"], "whole number"),
            (&["--model", "a=x", "--name", "a/b"], "report name"),
            (&["--model", "a=x", "--name", ""], "empty"),
            (
                &["--model", "a=x", "--name", "a", "--name", "b"],
                "cannot be used multiple times",
            ),
            (&["--model", "a=x", "--tasks", " "], "empty"),
            (&["--run", ""], "path is empty"),
            (&["--model", "a=x", "--reflection-from="], "path is empty"),
        ];
        for (args, expected) in cases {
            let error = format!("{:#}", parse_args(args).unwrap_err());
            assert!(
                error.contains(expected),
                "{args:?}: `{error}` lacks `{expected}`"
            );
        }
    }

    #[test]
    fn headline_is_success_for_textcraft_and_reward_elsewhere() {
        assert_eq!(headline("textcraft", Some(12.0), Some(30.0)), Some(12.0));
        assert_eq!(headline("sciworld", Some(12.0), Some(30.0)), Some(30.0));
        assert_eq!(headline("webshop", Some(12.0), Some(30.0)), Some(30.0));
        assert_eq!(headline("webshop", Some(12.0), None), None);
        assert_eq!(headline_key("textcraft"), "success_rate_x100");
        assert_eq!(headline_key("webshop"), "average_reward_x100");
    }

    #[test]
    fn reads_summary_fields_and_tolerates_missing_ones() {
        let protocol = Protocol::from_json(&full_protocol("textcraft"));
        assert_eq!(protocol.tasks.as_deref(), Some("test"));
        assert_eq!(protocol.task_count, Some(100));
        assert!(!protocol.self_reflection);
        let metrics = Metrics::from_json(&json!({
            "average_reward_x100": 12.0, "success_rate_x100": 12.0, "successes": 12,
            "mean_steps": 30.5, "invalid_action_rate": 0.41,
            "loops": {"mean_repeats": {"1": 3.2, "2": 1.1, "3": 0.4},
                      "episodes_with_repeats": {"1": 0.8, "2": 0.5}}
        }));
        assert_eq!(metrics.successes, Some(12));
        assert_eq!(metrics.mean_repeats, [Some(3.2), Some(1.1), Some(0.4)]);
        assert_eq!(metrics.episodes_with_repeats, [Some(0.8), Some(0.5), None]);
        assert_eq!(Metrics::from_json(&json!(null)), Metrics::default());
        assert_eq!(Protocol::from_json(&json!({})), Protocol::default());
    }

    #[test]
    fn only_the_papers_protocol_is_comparable() {
        for env in KNOWN_ENVS {
            let matching = Protocol::from_json(&full_protocol(env));
            assert!(table2_differences(env, &matching).is_empty(), "{env}");
            let comparison = compare_with_paper(env, &[&matching], false, None);
            assert!(comparison.comparable);
            assert_eq!(comparison.numbers.len(), 5);
        }
        let textcraft = compare_with_paper(
            "textcraft",
            &[&Protocol::from_json(&full_protocol("textcraft"))],
            false,
            None,
        );
        assert_eq!(textcraft.numbers[3].score, 78.0);
        let webshop = compare_with_paper(
            "webshop",
            &[&Protocol::from_json(&full_protocol("webshop"))],
            false,
            None,
        );
        assert_eq!(webshop.numbers[0].score, 19.65);

        let base = full_protocol("textcraft");
        let cases: Vec<(Value, &str)> = vec![
            (
                with(
                    with(base.clone(), "task_count", json!(20)),
                    "max_rounds",
                    json!(30),
                ),
                "20 of 100 test tasks, 30 rounds instead of 100",
            ),
            (
                with(
                    with(base.clone(), "tasks", json!("test[:20]")),
                    "task_count",
                    json!(20),
                ),
                "20 tasks (`test[:20]`) instead of the 100 test tasks",
            ),
            (
                with(base.clone(), "tasks", json!("0..100")),
                "instead of the 100 test tasks",
            ),
            (
                with(base.clone(), "max_rounds", json!(50)),
                "50 rounds instead of 100",
            ),
            (
                with(base.clone(), "max_rounds", Value::Null),
                "max rounds not recorded",
            ),
            (
                with(base.clone(), "task_count", Value::Null),
                "task count not recorded",
            ),
            (
                with(
                    base.clone(),
                    "self_reflection",
                    json!({"continue_rounds": 50}),
                ),
                "continued failed episodes",
            ),
            (
                with(base.clone(), "env", json!("webshop")),
                "recorded for environment",
            ),
            (json!({}), "task selection not recorded"),
        ];
        for (protocol, expected) in cases {
            let protocol = Protocol::from_json(&protocol);
            let comparison = compare_with_paper("textcraft", &[&protocol], false, None);
            assert!(!comparison.comparable, "{protocol:?}");
            assert!(comparison.numbers.is_empty());
            let text = comparison.differences.join(", ");
            assert!(text.contains(expected), "`{text}` lacks `{expected}`");
        }
        // 100 test tasks are all of TextCraft's but not of WebShop's.
        let webshop_100 =
            Protocol::from_json(&with(full_protocol("webshop"), "task_count", json!(100)));
        assert_eq!(
            table2_differences("webshop", &webshop_100),
            ["100 of 200 test tasks"]
        );
        // One differing evaluation makes the environment not comparable.
        let good = Protocol::from_json(&full_protocol("textcraft"));
        let short = Protocol::from_json(&with(full_protocol("textcraft"), "max_rounds", json!(20)));
        assert!(!compare_with_paper("textcraft", &[&good, &short], false, None).comparable);
        assert!(!compare_with_paper("textcraft", &[], false, None).comparable);
    }

    #[test]
    fn the_self_reflection_test_is_comparable_only_with_the_papers_protocol() {
        let reflection = |rounds: u64| {
            Protocol::from_json(&with(
                with(
                    full_protocol("textcraft"),
                    "tasks",
                    json!("the failed episodes of e.jsonl"),
                ),
                "self_reflection",
                json!({"failed_episodes_of": "e.jsonl", "cut_seed": 0, "continue_rounds": rounds}),
            ))
        };
        let base = Protocol::from_json(&full_protocol("textcraft"));
        let ok = compare_with_paper("textcraft", &[&reflection(50)], true, Some(&base));
        assert!(ok.comparable, "{:?}", ok.differences);
        assert_eq!(ok.numbers[0].score, 48.0);
        assert!(ok.reference.contains("Table 3"));

        let unknown_base = compare_with_paper("textcraft", &[&reflection(50)], true, None);
        assert!(!unknown_base.comparable);
        assert!(unknown_base.differences[0].contains("unknown"));
        let short = reflection_differences("textcraft", &reflection(20), Some(&base));
        assert_eq!(short, ["20 continue rounds instead of 50"]);
        let partial_base =
            Protocol::from_json(&with(full_protocol("textcraft"), "task_count", json!(30)));
        assert_eq!(
            reflection_differences("textcraft", &reflection(50), Some(&partial_base)),
            ["base episodes: 30 of 100 test tasks"]
        );
        let fresh = Protocol::from_json(&full_protocol("textcraft"));
        assert!(!reflection_differences("textcraft", &fresh, Some(&base)).is_empty());
    }

    #[test]
    fn reads_a_runs_results() {
        let results = json!({
            "config": {"mode": "agent-r", "iterations": 2},
            "stages": [{"stage": "bc/train", "seconds": 123.0}, {"stage": "bc/eval", "seconds": 5.5}],
            "evaluations": [
                {"stage": "bc/eval", "env": "textcraft", "success_rate_x100": 10.0,
                 "average_reward_x100": 11.0, "mean_steps": 12.0, "invalid_action_rate": 0.3,
                 "repeats_per_episode": [3.0, 1.0, 0.5]},
                {"stage": "iter-1/eval", "env": "textcraft", "success_rate_x100": 20.0,
                 "average_reward_x100": null, "repeats_per_episode": []},
                {"stage": "iter-12/eval", "env": "webshop", "success_rate_x100": 1.0,
                 "average_reward_x100": 40.0},
                {"stage": "odd", "env": "textcraft"}
            ]
        });
        let run = parse_results("run-a", Path::new("runs/run-a"), &results).unwrap();
        assert_eq!(run.mode.as_deref(), Some("agent-r"));
        assert_eq!(run.label(), "run-a (agent-r)");
        assert_eq!(run.stages.len(), 2);
        assert_eq!(run.stages[0].seconds, Some(123.0));
        let iterations: Vec<Option<u64>> = run.evaluations.iter().map(|e| e.iteration).collect();
        assert_eq!(iterations, [Some(0), Some(1), Some(12), None]);
        let scores: Vec<Option<f64>> = run.evaluations.iter().map(|e| e.score).collect();
        assert_eq!(scores, [Some(10.0), Some(20.0), Some(40.0), None]);
        assert_eq!(
            run.evaluations[0].repeats_per_episode,
            [Some(3.0), Some(1.0), Some(0.5)]
        );
        assert_eq!(run.envs(), ["textcraft", "webshop"]);

        // An older results.json: no comparisons, no revisions.
        assert_eq!(run.kind, RunKind::Run);
        assert!(run.comparisons.is_empty() && run.revisions.is_empty() && run.rows.is_empty());
        let md = render_markdown(&Report {
            runs: vec![run],
            ..sample_report(full_protocol("textcraft"))
        });
        assert!(md.contains("| 12 | `iter-12/eval` |"), "{md}");
        assert!(!md.contains("Paired comparisons recorded"), "{md}");
        assert!(!md.contains("Revision step per iteration"), "{md}");

        let bare = parse_results("b", Path::new("b"), &json!({"evaluations": []})).unwrap();
        assert_eq!(bare.mode, None);
        assert_eq!(bare.label(), "b");
        assert!(parse_results("c", Path::new("c"), &json!({"config": {}})).is_err());

        assert_eq!(iteration_of("bc/eval"), Some(0));
        assert_eq!(iteration_of("iter-3/eval"), Some(3));
        assert_eq!(iteration_of("iter-3/train"), None);
        assert_eq!(iteration_of("iter-x/eval"), None);
    }

    #[test]
    fn finds_agentrs_error_line() {
        let clap = strings(&[
            "error: invalid value 'sciworld' for '--env <ENV>'",
            "  [possible values: textcraft]",
            "",
            "For more information, try '--help'.",
        ]);
        let line = error_line(&clap).unwrap();
        assert_eq!(line, "error: invalid value 'sciworld' for '--env <ENV>'");
        assert!(env_rejected(&line));
        assert!(setup_hint("webshop", &line).contains("does not know the environment `webshop`"));
        let no_java = "Error: a Java 11+ runtime not found at java: could not run java";
        assert!(setup_hint("sciworld", no_java).contains("install Java 11+"));

        let anyhow = strings(&[
            "TextCraft recipes are not set up yet; fetching ...",
            "Error: loading TextCraft recipes from /x",
            "",
            "Caused by:",
            "    0: reading /x",
            "    1: No such file or directory (os error 2)",
        ]);
        let line = error_line(&anyhow).unwrap();
        assert_eq!(
            line,
            "Error: loading TextCraft recipes from /x (cause: No such file or directory (os error 2))"
        );
        assert!(!env_rejected(&line));
        assert_eq!(
            setup_hint("textcraft", &line),
            "run `cargo xtask setup` (fetches the TextCraft recipes)"
        );
        let model = "Error: loading runs/x (cause: runs/x/tokenizer.json: No such file)";
        assert!(setup_hint("textcraft", model).contains("accepted"));
        assert!(setup_hint("textcraft", model).contains("cargo xtask setup"));
        assert!(setup_hint("sciworld", model).contains("accepted"));

        let single_cause = strings(&["Error: a", "", "Caused by:", "    b"]);
        assert_eq!(error_line(&single_cause).unwrap(), "Error: a (cause: b)");
        let no_error = strings(&["thread 'main' panicked at x", "note: backtrace", ""]);
        assert_eq!(error_line(&no_error).unwrap(), "note: backtrace");
        assert_eq!(error_line(&[]), None);
    }

    #[cfg(unix)]
    #[test]
    fn streams_and_keeps_a_failing_programs_stderr() {
        let finished = run_streaming(
            Command::new("sh").args(["-c", "echo progress >&2; echo 'error: broken' >&2; exit 2"]),
        )
        .unwrap();
        assert!(!finished.success);
        assert_eq!(finished.tail, ["progress", "error: broken"]);
        assert_eq!(error_line(&finished.tail).unwrap(), "error: broken");
    }

    #[test]
    fn formats_dates_durations_and_quotes() {
        assert_eq!(utc_text(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_text(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_text(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(duration_text(42.2), "42 s");
        assert_eq!(duration_text(312.0), "5 min 12 s");
        assert_eq!(duration_text(7380.0), "2 h 03 min");
        assert_eq!(shell_quote("--model"), "--model");
        assert_eq!(shell_quote("test[:20]"), "'test[:20]'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(md_cell("a|b"), r"a\|b");
    }

    /// A report with one evaluated environment, one unavailable one and a run.
    fn sample_report(protocol: Value) -> Report {
        let protocol = Protocol::from_json(&protocol);
        let result = ModelResult {
            model: "bc <1>".into(),
            dir: PathBuf::from("runs/x/model"),
            out: "textcraft/bc <1>".into(),
            score: Some(12.0),
            metrics: Metrics {
                success_rate_x100: Some(12.0),
                successes: Some(12),
                mean_repeats: [Some(3.2), Some(1.1), None],
                ..Metrics::default()
            },
            protocol: protocol.clone(),
        };
        let run = parse_results(
            "run-a",
            Path::new("runs/run-a"),
            &json!({"config": {"mode": "good-only"},
                    "stages": [{"stage": "bc/train", "seconds": 61.0}],
                    "evaluations": [{"stage": "bc/eval", "env": "textcraft", "success_rate_x100": 5.0},
                                    {"stage": "iter-1/eval", "env": "textcraft", "success_rate_x100": 9.0}]}),
        )
        .unwrap();
        Report {
            name: "demo".into(),
            created: "2026-01-01 00:00 UTC".into(),
            command: "cargo xtask eval --model 'bc <1>=runs/x/model'".into(),
            self_reflection_test: false,
            settings: Settings {
                envs: strings(&["textcraft", "sciworld"]),
                tasks: "test".into(),
                max_rounds: 100,
                workers: 2,
                reflection_from: None,
            },
            models: vec![ModelArg {
                name: "bc <1>".into(),
                dir: PathBuf::from("runs/x/model"),
            }],
            envs: vec![
                EnvReport {
                    env: "textcraft".into(),
                    available: true,
                    headline: headline_key("textcraft").into(),
                    paper: Some(compare_with_paper("textcraft", &[&protocol], false, None)),
                    results: vec![result],
                    failures: Vec::new(),
                    comparisons: Vec::new(),
                },
                EnvReport {
                    env: "sciworld".into(),
                    available: false,
                    headline: headline_key("sciworld").into(),
                    results: Vec::new(),
                    failures: vec![Failure {
                        model: "bc <1>".into(),
                        reason: "error: invalid value 'sciworld' for '--env <ENV>'".into(),
                        hint: setup_hint("sciworld", "invalid value --env"),
                    }],
                    comparisons: Vec::new(),
                    paper: None,
                },
            ],
            runs: vec![run],
            plots: vec!["scores.svg".into()],
        }
    }

    #[test]
    fn the_report_shows_paper_numbers_only_when_comparable() {
        let comparable = render_markdown(&sample_report(full_protocol("textcraft")));
        assert!(comparable.contains("| + Agent-R | 78.00 |"), "{comparable}");
        assert!(comparable.contains("Same protocol"));
        assert!(comparable.contains("## Not available"));
        assert!(comparable.contains("does not know the environment `sciworld`"));
        assert!(comparable.contains("ab12cd34ef56`"));
        assert!(comparable.contains("| 12.0 (12/100) |"));
        assert!(comparable.contains("3.20 / 1.10 / –"));
        assert!(comparable.contains("### run-a (good-only)"));
        assert!(comparable.contains("| 1 | `iter-1/eval` | 9.0 |"));
        assert!(comparable.contains("| `bc/train` | 1 min 01 s |"));
        assert!(comparable.contains("![scores.svg](scores.svg)"));

        let short = with(
            with(full_protocol("textcraft"), "task_count", json!(20)),
            "max_rounds",
            json!(30),
        );
        let differing = render_markdown(&sample_report(short));
        assert!(!differing.contains("78.00"), "{differing}");
        assert!(!differing.contains("Same protocol"));
        assert!(differing.contains(
            "Not comparable with the paper's numbers (Agent-R paper, Table 2): \
             protocol differs: 20 of 100 test tasks, 30 rounds instead of 100."
        ));
        assert!(differing.contains("(textcraft/bc%20%3C1%3E/episodes.jsonl)"));
    }

    #[test]
    fn plots_cover_evaluated_environments_models_and_runs() {
        let report = sample_report(full_protocol("textcraft"));
        let plots = plots(&report);
        let names: Vec<&str> = plots.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["scores.svg", "loops.svg", "iterations.svg"]);
        let (_, scores) = &plots[0];
        assert_eq!(scores.matches(r#"<rect class="bar""#).count(), 1);
        assert!(scores.contains("bc &lt;1&gt;"));
        assert!(!scores.contains("sciworld"));
        let (_, loops) = &plots[1];
        assert_eq!(loops.matches(r#"<rect class="bar""#).count(), 2);
        let (_, iterations) = &plots[2];
        assert!(iterations.contains("run-a (good-only)"));
        assert_eq!(iterations.matches(r#"<circle class="point""#).count(), 2);
        for (_, svg) in &plots {
            assert!(!svg.contains("NaN"));
        }
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["envs"][1]["available"], json!(false));
        assert_eq!(json["runs"][0]["mode"], json!("good-only"));
    }

    /// A paired comparison as agentr prints it.
    fn paired_json(difference: f64, interval: [f64; 2], discordant: [u64; 2], p: f64) -> Value {
        json!({
            "seeds": 1, "pairs": 100, "baseline_rate": 0.2, "candidate_rate": 0.2 + difference,
            "difference": difference, "interval": interval, "only_candidate": discordant[0],
            "only_baseline": discordant[1], "mcnemar_p": p, "bootstrap_draws": 10000,
            "bootstrap_seed": 1_592_635_399_u64
        })
    }

    fn paired(difference: f64, interval: [f64; 2], discordant: [u64; 2], p: f64) -> Paired {
        Paired::deserialize(&paired_json(difference, interval, discordant, p)).unwrap()
    }

    #[test]
    fn beyond_noise_needs_an_interval_without_zero_and_a_small_p() {
        // (difference, interval, p, beyond noise, the report's line)
        let cases = [
            (
                0.15,
                [0.06, 0.24],
                0.0015,
                true,
                "+15.0 points [+6.0, +24.0], 18 vs 3 discordant, McNemar p = 0.0015",
            ),
            (
                -0.12,
                [-0.2, -0.04],
                0.00001,
                true,
                "-12.0 points [-20.0, -4.0], 18 vs 3 discordant, McNemar p < 0.0001",
            ),
            (
                0.05,
                [0.01, 0.1],
                0.07,
                false,
                "+5.0 points [+1.0, +10.0], 18 vs 3 discordant, McNemar p = 0.070",
            ),
            (
                0.05,
                [0.0, 0.1],
                0.01,
                false,
                "+5.0 points [+0.0, +10.0], 18 vs 3 discordant, McNemar p = 0.010",
            ),
            (
                0.02,
                [-0.04, 0.08],
                0.69,
                false,
                "+2.0 points [-4.0, +8.0], 18 vs 3 discordant, McNemar p = 0.69",
            ),
        ];
        for (difference, interval, p, beyond, line) in cases {
            let paired = paired(difference, interval, [18, 3], p);
            assert_eq!(paired.beyond_noise(), beyond, "{line}");
            assert_eq!(paired.summary_line(), line);
        }
        // agentr's fields all come through, and the JSON goes back out the same.
        let json = paired_json(0.15, [0.06, 0.24], [18, 3], 0.0015);
        let read = paired(0.15, [0.06, 0.24], [18, 3], 0.0015);
        assert_eq!((read.seeds, read.pairs), (Some(1), Some(100)));
        assert_eq!(read.pairs_text(), "100 (1 seed)");
        assert_eq!(serde_json::to_value(&read).unwrap(), json);
    }

    #[test]
    fn reads_agentr_compares_output_or_its_error() {
        let json = paired_json(0.15, [0.06, 0.24], [18, 3], 0.0015).to_string();
        let different = "Error: reports/x/textcraft/bc and reports/x/textcraft/ar evaluated \
                         different tasks (only the first: [7]; only the second: []); a paired \
                         comparison needs the same tasks";
        // (success, stdout, stderr, the comparison's difference or the error's start)
        let cases: [(bool, &str, &str, Result<f64, &str>); 5] = [
            (true, json.as_str(), "", Ok(0.15)),
            (true, &format!("\n{json}\n"), "progress\n", Ok(0.15)),
            (
                false,
                "",
                different,
                Err("Error: reports/x/textcraft/bc and"),
            ),
            (
                false,
                "",
                "",
                Err("agentr compare exited with exit status: 1"),
            ),
            (
                true,
                "success 20.0% -> 35.0%",
                "",
                Err("agentr compare printed no readable"),
            ),
        ];
        for (success, stdout, stderr, expected) in cases {
            let read = comparison_from_output(success, "exit status: 1", stdout, stderr);
            match (read, expected) {
                (Ok(paired), Ok(difference)) => assert_eq!(paired.difference, difference),
                (Err(error), Err(start)) => assert!(error.starts_with(start), "{error}"),
                (read, expected) => panic!("{stdout:?}/{stderr:?}: {read:?}, not {expected:?}"),
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn runs_agentr_compare_with_both_folders() {
        // A stand-in for agentr that checks its arguments and refuses a folder named `fail`.
        let script = format!(
            r#"[ "$1 $2 $4 $6" = "compare --baseline --candidate --json" ] || {{ echo "error: $*" >&2; exit 2; }}
case "$5" in */fail) echo "Error: $3 and $5 evaluated different tasks" >&2; exit 1;; esac
echo '{}'"#,
            paired_json(0.15, [0.06, 0.24], [18, 3], 0.0015)
        );
        let fake = || {
            let mut command = Command::new("sh");
            command.args(["-c", &script, "agentr"]);
            command
        };
        let compared = run_compare(fake(), Path::new("r/bc"), Path::new("r/ar")).unwrap();
        assert_eq!((compared.only_candidate, compared.only_baseline), (18, 3));
        let error = run_compare(fake(), Path::new("r/bc"), Path::new("r/fail")).unwrap_err();
        assert_eq!(error, "Error: r/bc and r/fail evaluated different tasks");
        let missing = Command::new("/nonexistent/agentr");
        let error = run_compare(missing, Path::new("a"), Path::new("b")).unwrap_err();
        assert!(
            error.starts_with("could not start agentr compare"),
            "{error}"
        );
    }

    fn model_result(model: &str, score: f64) -> ModelResult {
        ModelResult {
            model: model.into(),
            dir: PathBuf::from(format!("runs/{model}/model")),
            out: format!("textcraft/{model}"),
            score: Some(score),
            metrics: Metrics {
                success_rate_x100: Some(score),
                ..Metrics::default()
            },
            protocol: Protocol::from_json(&full_protocol("textcraft")),
        }
    }

    #[test]
    fn models_are_compared_with_the_first_and_failures_are_recorded() {
        let results = [
            model_result("bc", 20.0),
            model_result("ar", 35.0),
            model_result("dr", 22.0),
            model_result("gd", 30.0),
        ];
        let mut asked = Vec::new();
        let comparisons = compare_models("textcraft", "eval", &results, |baseline, candidate| {
            asked.push(format!("{baseline} -> {candidate}"));
            match candidate {
                "textcraft/ar" => Ok(paired(0.15, [0.06, 0.24], [18, 3], 0.0015)),
                "textcraft/gd" => Ok(paired(0.1, [-0.01, 0.2], [14, 4], 0.03)),
                _ => Err("Error: textcraft/bc and textcraft/dr evaluated different tasks".into()),
            }
        });
        assert_eq!(
            asked,
            [
                "textcraft/bc -> textcraft/ar",
                "textcraft/bc -> textcraft/dr",
                "textcraft/bc -> textcraft/gd"
            ]
        );
        let summary: Vec<(&str, &str, &str, Option<bool>)> = comparisons
            .iter()
            .map(|c| {
                let verdict = c.verdict();
                (
                    c.candidate.as_str(),
                    c.baseline.as_str(),
                    verdict,
                    c.beyond_noise,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("ar", "bc", "beyond noise", Some(true)),
                ("dr", "bc", "not compared", None),
                ("gd", "bc", "within noise", Some(false)),
            ]
        );
        assert!(
            comparisons
                .iter()
                .all(|c| c.test == "eval" && c.env == "textcraft")
        );
        assert_eq!(
            comparisons[1].summary_line(),
            "not compared: Error: textcraft/bc and textcraft/dr evaluated different tasks"
        );

        let mut report = sample_report(full_protocol("textcraft"));
        report.envs[0].results = results.to_vec();
        report.envs[0].comparisons = comparisons;
        let md = render_markdown(&report);
        assert!(
            md.contains("| model | score | paired vs bc | success % |"),
            "{md}"
        );
        assert!(md.contains("| --- | ---: | --- | ---: |"), "{md}");
        assert!(md.contains("| bc | **20.0** | baseline | 20.0 |"), "{md}");
        assert!(
            md.contains(
                "| ar | **35.0** | +15.0 points [+6.0, +24.0], 18 vs 3 discordant, McNemar \
                 p = 0.0015; **beyond noise** | 35.0 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| dr | **22.0** | not compared: `Error: textcraft/bc and textcraft/dr \
                 evaluated different tasks` | 22.0 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| gd | **30.0** | +10.0 points [-1.0, +20.0], 14 vs 4 discordant, McNemar \
                 p = 0.030; within noise | 30.0 |"
            ),
            "{md}"
        );
        assert!(md.contains("Paired comparison with bc on the same tasks"));
        let json = serde_json::to_value(&report).unwrap();
        let recorded = &json["envs"][0]["comparisons"];
        assert_eq!(recorded[0]["paired"]["only_candidate"], json!(18));
        assert_eq!(recorded[0]["paired"]["interval"], json!([0.06, 0.24]));
        assert_eq!(recorded[0]["beyond_noise"], json!(true));
        assert_eq!(recorded[1]["paired"], Value::Null);
        assert_eq!(
            recorded[1]["error"],
            json!("Error: textcraft/bc and textcraft/dr evaluated different tasks")
        );
        assert_eq!(recorded[2]["beyond_noise"], json!(false));

        // One model: nothing to compare, and no comparison column.
        let single = compare_models("textcraft", "eval", &results[..1], |_, _| {
            panic!("nothing to compare")
        });
        assert!(single.is_empty());
        let md = render_markdown(&sample_report(full_protocol("textcraft")));
        assert!(md.contains("| model | score | success % |"), "{md}");
        assert!(!md.contains("paired vs"), "{md}");
    }

    /// A single run's results.json with paired comparisons and revision statistics.
    fn run_results_with_comparisons() -> Value {
        json!({
            "config": {"mode": "agent-r", "iterations": 2},
            "stages": [{"stage": "bc/train", "seconds": 60.0}],
            "evaluations": [
                {"stage": "bc/eval", "env": "textcraft", "success_rate_x100": 20.0},
                {"stage": "bc/reflection", "env": "textcraft", "success_rate_x100": 10.0},
                {"stage": "iter-1/eval", "env": "textcraft", "success_rate_x100": 35.0},
                {"stage": "iter-1/reflection", "env": "textcraft", "success_rate_x100": 12.0}
            ],
            "comparisons": [
                {"candidate": "iter-1/eval", "baseline": "bc/eval", "env": "textcraft",
                 "paired": paired_json(0.15, [0.06, 0.24], [18, 3], 0.0015)},
                {"candidate": "iter-1/reflection", "baseline": "bc/reflection",
                 "env": "textcraft", "paired": paired_json(0.02, [-0.04, 0.08], [4, 2], 0.69)},
                {"candidate": "iter-2/eval", "baseline": "bc/eval", "env": "textcraft",
                 "paired": {"difference": "large"}}
            ],
            "revisions": [
                {"iteration": 1, "env": "textcraft", "judge": "model",
                 "stats": {"trees": 10, "pairs": 40, "fallbacks_to_direct": 6,
                           "judge_labels": {"bad": 30, "good": 10}},
                 "judge_agreement": {
                     "confusion": {"good": {"good": 9, "uncertain": 1},
                                   "bad": {"bad": 8, "good": 2},
                                   "uncertain": {"uncertain": 2, "bad": 3}},
                     "unparsed": 1}},
                {"iteration": 2, "env": "textcraft", "judge": null,
                 "stats": {"pairs": 0, "fallbacks_to_direct": 0}, "judge_agreement": null}
            ]
        })
    }

    #[test]
    fn reads_and_shows_a_runs_comparisons_and_revisions() {
        let results = run_results_with_comparisons();
        let run = parse_results("run-c", Path::new("runs/run-c"), &results).unwrap();
        assert_eq!(run.kind, RunKind::Run);
        assert_eq!(run.evaluations.len(), 4);
        // (candidate, baseline, test, verdict)
        let expected = [
            ("iter-1/eval", "bc/eval", "eval", "beyond noise"),
            (
                "iter-1/reflection",
                "bc/reflection",
                "reflection",
                "within noise",
            ),
            ("iter-2/eval", "bc/eval", "eval", "not compared"),
        ];
        let read: Vec<(&str, &str, &str, &str)> = run
            .comparisons
            .iter()
            .map(|c| {
                (
                    c.candidate.as_str(),
                    c.baseline.as_str(),
                    c.test.as_str(),
                    c.verdict(),
                )
            })
            .collect();
        assert_eq!(read, expected);
        assert!(
            run.comparisons[2]
                .error
                .as_deref()
                .unwrap()
                .contains("no readable")
        );

        let first = &run.revisions[0];
        assert_eq!(
            (first.iteration, first.pairs, first.fallbacks_to_direct),
            (Some(1), Some(40), Some(6))
        );
        assert_eq!(first.judge.as_deref(), Some("model"));
        let agreement: Vec<(&str, u64, u64)> = first
            .agreement
            .iter()
            .map(|a| (a.label.as_str(), a.agreed, a.steps))
            .collect();
        assert_eq!(
            agreement,
            [("bad", 8, 10), ("good", 9, 10), ("uncertain", 2, 5)]
        );
        assert_eq!(first.agreement_unparsed, Some(1));
        assert!(run.revisions[1].agreement.is_empty());

        let md = render_markdown(&Report {
            runs: vec![run],
            ..sample_report(full_protocol("textcraft"))
        });
        let lines = [
            "| candidate | baseline | test | env | pairs | difference [95% interval] \
             | discordant (candidate vs baseline) | McNemar p | verdict |",
            "| iter-1/eval | bc/eval | eval | textcraft | 100 (1 seed) | \
             +15.0 points [+6.0, +24.0] | 18 vs 3 | 0.0015 | **beyond noise** |",
            "| iter-1/reflection | bc/reflection | reflection | textcraft | 100 (1 seed) | \
             +2.0 points [-4.0, +8.0] | 4 vs 2 | 0.69 | within noise |",
            "| iter-2/eval | bc/eval | eval | textcraft | – | not compared: \
             `results.json holds no readable paired comparison",
            "| 1 | textcraft | `model` | 40 | 6 (15.0% of pairs) | bad 8/10, good 9/10, \
             uncertain 2/5; overall 19/25 (76%), 1 unparsed |",
            "| 2 | textcraft | – | 0 | 0 | not measured |",
            "| 1 | `iter-1/eval` | 35.0 |",
        ];
        for line in lines {
            assert!(md.contains(line), "{md}\nlacks\n{line}");
        }
        assert!(!md.contains("**within noise**"));
    }

    #[test]
    fn reads_and_shows_an_experiments_results() {
        let row = |arm: &str, seed: u64, test: &str, env: &str, success: f64, reward: f64| {
            json!({"arm": arm, "seed": seed, "test": test, "env": env,
                   "metrics": {"stage": "x", "env": env, "success_rate_x100": success,
                               "average_reward_x100": reward}})
        };
        let mut eval_2_seeds = paired_json(0.11, [0.05, 0.17], [25, 3], 0.00002);
        eval_2_seeds["seeds"] = json!(2);
        eval_2_seeds["pairs"] = json!(200);
        let results = json!({
            "experiment": {"arms": ["base", "agent-r"], "seeds": [0, 1], "agent_r_iterations": 1,
                           "template": {"mode": "agent-r", "envs": ["textcraft", "webshop"]}},
            "rows": [
                row("base", 0, "eval", "textcraft", 20.0, 25.0),
                row("base", 1, "eval", "textcraft", 22.0, 27.0),
                row("agent-r", 0, "eval", "textcraft", 30.0, 35.0),
                row("agent-r", 1, "eval", "textcraft", 34.0, 36.0),
                row("agent-r", 0, "reflection", "textcraft", 12.0, 12.0),
                row("base", 0, "eval", "webshop", 5.0, 40.0)
            ],
            "comparisons": [
                {"candidate": "agent-r", "baseline": "base", "test": "eval", "env": "textcraft",
                 "paired": eval_2_seeds, "beyond_noise": true},
                {"candidate": "agent-r", "baseline": "base", "test": "reflection",
                 "env": "textcraft", "paired": paired_json(0.01, [-0.03, 0.05], [5, 3], 0.73),
                 "beyond_noise": false}
            ]
        });
        let experiment = parse_results("exp", Path::new("runs/exp"), &results).unwrap();
        assert_eq!(experiment.kind, RunKind::Experiment);
        assert_eq!(experiment.label(), "exp (experiment)");
        assert_eq!(experiment.arms, ["base", "agent-r"]);
        assert_eq!(experiment.seeds, [0, 1]);
        assert!(experiment.evaluations.is_empty() && experiment.revisions.is_empty());
        let scores: Vec<Option<f64>> = experiment.rows.iter().map(|r| r.score).collect();
        // TextCraft's score is the success rate, WebShop's the reward.
        assert_eq!(
            scores,
            [
                Some(20.0),
                Some(22.0),
                Some(30.0),
                Some(34.0),
                Some(12.0),
                Some(40.0)
            ]
        );
        let verdicts: Vec<(&str, Option<bool>)> = experiment
            .comparisons
            .iter()
            .map(|c| (c.test.as_str(), c.beyond_noise))
            .collect();
        assert_eq!(
            verdicts,
            [("eval", Some(true)), ("reflection", Some(false))]
        );

        let mut report = sample_report(full_protocol("textcraft"));
        report.runs = vec![experiment];
        let md = render_markdown(&report);
        let lines = [
            "### exp (experiment)",
            "Experiment directory `runs/exp`.",
            "Arms: base, agent-r; seeds: 0, 1.",
            "| base | eval | textcraft | 21.0 | 0: 20.0 / 1: 22.0 |",
            "| agent-r | eval | textcraft | 32.0 | 0: 30.0 / 1: 34.0 |",
            "| agent-r | reflection | textcraft | 12.0 | 0: 12.0 |",
            "| base | eval | webshop | 40.0 | 0: 40.0 |",
            "| agent-r | base | eval | textcraft | 200 (2 seeds) | +11.0 points [+5.0, +17.0] \
             | 25 vs 3 | < 0.0001 | **beyond noise** |",
            "| agent-r | base | reflection | textcraft | 100 (1 seed) | +1.0 points \
             [-3.0, +5.0] | 5 vs 3 | 0.73 | within noise |",
        ];
        for line in lines {
            assert!(md.contains(line), "{md}\nlacks\n{line}");
        }
        // An experiment has no iterations to plot.
        let names: Vec<String> = plots(&report).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["scores.svg", "loops.svg"]);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["runs"][0]["kind"], json!("experiment"));
        assert_eq!(
            json["runs"][0]["comparisons"][0]["paired"]["seeds"],
            json!(2)
        );

        // An experiment's results.json without comparisons (or rows) is read too.
        let bare = json!({"experiment": {"arms": ["base"], "seeds": [0]}});
        let bare = parse_results("e", Path::new("e"), &bare).unwrap();
        assert!(bare.rows.is_empty() && bare.comparisons.is_empty());
        let md = render_markdown(&Report {
            runs: vec![bare],
            ..sample_report(full_protocol("textcraft"))
        });
        assert!(md.contains("### e (experiment)\n\nExperiment directory `e`.\n\nArms: base; seeds: 0.\n\nNo evaluation recorded."), "{md}");
    }
}
