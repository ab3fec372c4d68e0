//! The library behind the `agentr` command line: what the commands do, callable from Rust
//! without going through argument parsing.
//!
//! The binary (`src/main.rs` and `src/cmd/`) maps command-line arguments onto these types and
//! prints; the work itself lives here, so that a program (or `cargo xtask`) runs the same code
//! the commands run.
//!
//! * [`envs`]: environments by name ([`envs::EnvName`]), with their options, experts and
//!   rejection rules, native or on an AgentGym server.
//! * [`models`]: what a `--model` argument names (a preset, a folder, a GGUF file, a Hugging
//!   Face id) resolved to a path.
//! * [`remote`]: `openai:MODEL@BASE_URL`, an OpenAI-compatible server as policy, judge or
//!   evaluated model.
//! * [`samples`]: reading JSONL sample files.
//! * [`pipeline`]: the stages of an Agent-R run as library calls.
//! * [`report`]: how those calls report progress ([`report::Quiet`] reports nothing).
//!
//! ```
//! use agentr_cli::pipeline::compare::pair;
//! # fn main() -> anyhow::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("agentr-cli-doc-{}", std::process::id()));
//! # for (name, rewards) in [("base", [1.0, 0.0]), ("new", [1.0, 1.0])] {
//! #     std::fs::create_dir_all(dir.join(name))?;
//! #     let lines: Vec<String> = rewards.iter().enumerate().map(|(task, reward)| {
//! #         format!(r#"{{"messages": [], "meta": {{"task": {task}, "reward": {reward}}}}}"#)
//! #     }).collect();
//! #     std::fs::write(dir.join(name).join("episodes.jsonl"), lines.join("\n"))?;
//! # }
//! // Two evaluations of the same tasks (`agentr eval --out`), paired by task.
//! let outcomes = pair(&dir.join("base"), &dir.join("new"))?;
//! assert_eq!(outcomes.len(), 2);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

pub mod envs;
pub mod models;
pub mod pipeline;
pub mod remote;
pub mod report;
pub mod samples;

// The README's library example compiles.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
