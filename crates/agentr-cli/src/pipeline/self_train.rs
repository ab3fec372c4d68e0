//! The Agent-R loop in one resumable run directory.
//!
//! Stages, each recorded in `manifest.json` when it finishes:
//!
//! 1. `bc/gold`, `bc/train`, `bc/eval`, `bc/reflection`: behaviour cloning on expert episodes
//!    of a slice of the behaviour-cloning pool (skipped with a start model), then its test
//!    score (iteration 0) and the self-reflection test on its own failed test episodes;
//! 2. for each iteration i: `iter-i/collect` (MCTS with the current model as policy on a fresh
//!    slice of the self-play pool), `iter-i/revise` (samples for the arm), `iter-i/train`
//!    (continue from the current model, with the expert episodes mixed in when `expert_eta`
//!    says so), `iter-i/eval`, `iter-i/reflection` (the same failed episodes as iteration 0).
//!
//! The training goals are split once, with a fixed seed, into the two pools, so no run trains
//! its warm start on the goals it later searches, unless `search.cloned_goals` asks for it (the
//! quick preset, whose minutes-old model acts only on goals it was cloned on). A stopped run
//! resumes at its first unfinished stage; inside a stage, finished trees and training
//! checkpoints are kept. A training stage records its model's SHA-256, so a run directory can
//! be kept without its model folders (an experiment committed to a repository): a model that
//! a later stage still needs is trained again, and must come out with the recorded digest.
//!
//! [`experiment`](super::experiment) runs several arms over several seeds with these runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use agentr_envs::rng::Rng;
use agentr_envs::{TaskId, TaskSpec};
use agentr_mcts::{Restore, SearchConfig};
use agentr_revise::{Mode, PairCondition, ReviseConfig, Thresholds, alpha_for_iteration};
use agentr_train::{DeviceChoice, LoraConfig};
use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::Runtime;
use super::collect::{CollectJob, PolicySpec, collect};
use super::compare::compare_folders;
use super::eval::{Episodes, EvalJob, ModelSpec, evaluate, model_digest};
use super::files::create_parent;
use super::gold::{GoldJob, gold};
use super::revise::{JudgeSpec, ReviseJob, revise};
use super::train::{TrainJob, train};
use crate::envs::{EnvName, EnvOptions};
use crate::report::Reporter;

/// Seed of the one split of the training goals into the behaviour-cloning and self-play pools.
const POOL_SPLIT_SEED: u64 = 0x5eed_9001;

/// What the self-training iterations train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Arm {
    /// Revision trajectories spliced at the judge's first bad step, plus good trajectories.
    AgentR,
    /// Revision trajectories spliced at the end of the bad branch, plus good trajectories.
    DirectRevision,
    /// Good trajectories only (rejection-sampling fine-tuning).
    GoodOnly,
    /// No iterations: the behaviour-cloning warm start alone.
    BcOnly,
}

impl Arm {
    fn revise_mode(self) -> Option<Mode> {
        match self {
            Arm::AgentR => Some(Mode::AgentR),
            Arm::DirectRevision => Some(Mode::Direct),
            Arm::GoodOnly => Some(Mode::GoodOnly),
            Arm::BcOnly => None,
        }
    }
}

/// Which judge finds the first bad step in the agent-r arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum JudgeChoice {
    /// Model-free: a step is bad when the environment rejected it or it made no progress.
    EnvFeedback,
    /// The current model, prompted as a verifier (the paper's setting; needs a model that
    /// can follow the verifier prompt).
    Model,
}

/// Settings presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// TextCraft, tiny-2l from scratch, a scaled-down protocol for two CPU cores.
    Quick,
    /// The experiment: TextCraft from SmolLM2-135M-Instruct (a short LoRA format warm start,
    /// then LoRA iterations), every arm over three seeds with shared warm starts and trees.
    Smol,
    /// The paper's search and training settings on all test tasks (many hours on a CPU).
    Paper,
}

/// An arm of an experiment (`--arms`): what the iterations train on, and with which judge.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum ExperimentArm {
    /// The warm start alone (no iteration): every other arm's baseline.
    Base,
    /// Agent-R with the model as its own judge (the paper's model-guided revision).
    AgentR,
    /// Agent-R with the model-free environment-feedback judge.
    AgentREnvFeedback,
    /// Revision trajectories spliced at the end of the bad branch.
    DirectRevision,
    /// Good trajectories only.
    GoodOnly,
}

impl ExperimentArm {
    /// Every arm, in the order an experiment runs them (the first arm with iterations
    /// searches the trees of iteration 1 that the others reuse).
    pub const ALL: [ExperimentArm; 5] = [
        ExperimentArm::Base,
        ExperimentArm::AgentR,
        ExperimentArm::AgentREnvFeedback,
        ExperimentArm::DirectRevision,
        ExperimentArm::GoodOnly,
    ];

    /// The folder and report name.
    pub fn name(self) -> &'static str {
        match self {
            ExperimentArm::Base => "base",
            ExperimentArm::AgentR => "agent-r",
            ExperimentArm::AgentREnvFeedback => "agent-r-env-feedback",
            ExperimentArm::DirectRevision => "direct-revision",
            ExperimentArm::GoodOnly => "good-only",
        }
    }

    fn mode_and_judge(self) -> (Arm, Option<JudgeChoice>) {
        match self {
            ExperimentArm::Base => (Arm::BcOnly, None),
            ExperimentArm::AgentR => (Arm::AgentR, Some(JudgeChoice::Model)),
            ExperimentArm::AgentREnvFeedback => (Arm::AgentR, Some(JudgeChoice::EnvFeedback)),
            ExperimentArm::DirectRevision => (Arm::DirectRevision, None),
            ExperimentArm::GoodOnly => (Arm::GoodOnly, None),
        }
    }
}

/// What a caller sets on top of a preset ([`RunConfig::preset`]); `Default` leaves the
/// preset as it is, with the agent-r arm, the env-feedback judge and TextCraft.
#[derive(Debug, Clone, PartialEq)]
pub struct Overrides {
    /// What the iterations train on.
    pub mode: Arm,
    /// Judge of the agent-r arm.
    pub judge: JudgeChoice,
    /// Environments (one model across them).
    pub envs: Vec<EnvName>,
    /// Seed of initial weights, data order, search and sampling.
    pub seed: u64,
    /// Self-training iterations (`None`: the preset's).
    pub iterations: Option<usize>,
    /// Start from this model folder instead of behaviour cloning.
    pub start_model: Option<PathBuf>,
    /// The base model (`None`: the preset's).
    pub base: Option<String>,
    /// Expert episodes of the warm start, in goals (`None`: the preset's; 0: no warm start).
    pub warm_start_goals: Option<usize>,
    /// General chat data mixed into every iteration's training.
    pub general: Vec<PathBuf>,
    /// Share of self-play samples when general data is mixed in (`None`: the preset's).
    pub eta: Option<f64>,
}

impl Default for Overrides {
    fn default() -> Self {
        Overrides {
            mode: Arm::AgentR,
            judge: JudgeChoice::EnvFeedback,
            envs: vec![EnvName::Textcraft],
            seed: 0,
            iterations: None,
            start_model: None,
            base: None,
            warm_start_goals: None,
            general: Vec::new(),
            eta: None,
        }
    }
}

/// Behaviour-cloning warm start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BcSettings {
    /// Goals taken from the behaviour-cloning pool.
    pub tasks: usize,
    /// TextCraft command-list seeds: each goal is played once per seed (more varied text).
    pub textcraft_seeds: Vec<u64>,
    /// TextCraft: each goal is also played in this many renamed worlds per command-list seed
    /// (`gold --shuffle-words 1..=n`: the same recipes under permuted names), so the cloned
    /// model has to read ingredients from the command list instead of remembering them.
    pub renamed_worlds: u64,
    /// Also train on the observations (`agentr train --observation-loss`): a model trained
    /// from scratch learns to read names from its prompt much sooner with it.
    pub observation_loss: bool,
    /// The base: a preset trained from scratch, or a pretrained model (smollm2-135m, a model
    /// folder, a .gguf file, org/name). With `tasks` 0 a pretrained base is the start model.
    pub model: String,
    /// Training passes.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
}

/// Search of each iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSettings {
    /// Self-play goals searched per iteration (a fresh slice of the pool each time).
    pub tasks_per_iteration: usize,
    /// Search the goals the warm start was cloned on instead of the self-play pool. A model
    /// trained from scratch for minutes acts only on goals it was cloned on (it solved 0 of
    /// 20 unseen self-play goals greedily and in its searches, RESULTS.md), so without this
    /// its trees hold no success to revise towards; the evaluation goals stay unseen.
    pub cloned_goals: bool,
    /// Only the self-play goals this task selection holds are searched (the warm start's pool
    /// is unchanged). The smol preset's warm start solves no unseen goal deeper than one
    /// crafting step, so a search of the whole pool finds a success in 2 of 20 trees and
    /// leaves almost nothing to revise towards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goals: Option<String>,
    /// Passes from the root per task.
    pub passes: usize,
    /// Responses sampled per expansion.
    pub candidates: usize,
    /// Most actions on a branch.
    pub depth_limit: usize,
    /// Sampling temperature.
    pub temperature: f64,
}

/// Training of each iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationTraining {
    /// Epochs of iteration 1, 2, ... (the last repeats).
    pub epochs: Vec<usize>,
    /// Optimizer steps of every iteration instead of `epochs`: each arm of an experiment gets
    /// the same training budget, however many samples its rule keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Peak learning rate.
    pub lr: f64,
    /// Beta of the pairing rule (alpha follows the iteration: 0.5, 0.7, 1.0).
    pub beta: f64,
    /// Revision pairs kept per tree.
    pub max_pairs_per_tree: Option<usize>,
    /// Judge samples per label and tree when the judge is the model (it learns to judge from
    /// the trees' statistics; 0 leaves the model to judge untaught).
    pub judge_samples_per_label: usize,
    /// Also train on the observations, as the warm start may have been.
    pub observation_loss: bool,
    /// General data files mixed into every iteration (`--general`).
    pub general: Vec<PathBuf>,
    /// Steps per label and tree on which the agent-r arm's judge is asked for its verdict and
    /// compared with the tree's label (the judge's agreement, recorded per iteration).
    #[serde(default)]
    pub agreement_steps: usize,
    /// How the model judge gives its verdict (written and parsed, or scored).
    #[serde(default)]
    pub judge_answer: agentr_train::JudgeAnswer,
    /// A scored judge calls a step Bad above this probability of Bad (0.5: the likelier
    /// label).
    #[serde(default = "even_odds")]
    pub judge_bad_above: f64,
    /// Also mix in the expert episodes of the behaviour-cloning slice as general data. A model
    /// trained from scratch has no general chat data, and without a mix one iteration on a
    /// hundred samples overwrote what cloning had taught it.
    pub mix_expert_episodes: bool,
    /// Share of self-play samples when general data is mixed in (the paper's eta).
    pub eta: f64,
}

/// The scored judge's default threshold: the likelier label.
fn even_odds() -> f64 {
    0.5
}

/// Evaluation after each stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    /// Tasks (a task selection: `test`, `test[:30]`, ...).
    pub tasks: String,
    /// Most rounds per episode.
    pub max_rounds: usize,
    /// Most new tokens per response.
    pub max_tokens: usize,
    /// The self-reflection test after every evaluation: the warm start's failed test episodes
    /// (from `bc/eval`), cut at a seeded step and continued by the model for at most this many
    /// rounds; 0 skips it.
    pub reflection_rounds: usize,
    /// The self-reflection test continues only the first this many failed episodes (in task
    /// order); `None`: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflection_episodes: Option<usize>,
}

/// LoRA instead of full fine-tuning, for the warm start and every iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraSettings {
    /// Rank of the adapters.
    pub rank: usize,
    /// Their update is scaled by alpha / rank.
    pub alpha: f64,
    /// Projections that get adapters (q, k, v, o, gate, up, down).
    pub targets: Vec<String>,
}

/// Every setting of a run, resolved and saved as `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The preset the rest was resolved from.
    pub preset: Preset,
    /// The arm.
    pub mode: Arm,
    /// The judge (agent-r arm only).
    pub judge: Option<JudgeChoice>,
    /// Environments.
    pub envs: Vec<String>,
    /// Seed of weights, data order, search and sampling.
    pub seed: u64,
    /// Model to start from instead of behaviour cloning.
    pub start_model: Option<PathBuf>,
    /// A run directory whose start model this run shares: its `bc/eval` and `bc/reflection`
    /// are taken over instead of evaluated again (an experiment's arms share one warm start).
    #[serde(default)]
    pub shared_start: Option<PathBuf>,
    /// Iteration 1's trees come from this folder (one subfolder per environment) instead of a
    /// search: an experiment's arms start from one model with one seed, so they would grow
    /// the same trees; one arm searches and the others reuse its trees.
    #[serde(default)]
    pub shared_trees: Option<PathBuf>,
    /// LoRA settings of every training stage; `None`: full fine-tuning.
    #[serde(default)]
    pub lora: Option<LoraSettings>,
    /// Training goals the two pools are drawn from (a task selection; test goals in it are
    /// ignored). `None`: the environment's whole training split.
    pub goals: Option<String>,
    /// Warm start.
    pub bc: BcSettings,
    /// Self-training iterations.
    pub iterations: usize,
    /// Search per iteration.
    pub search: SearchSettings,
    /// Training per iteration.
    pub train: IterationTraining,
    /// Evaluation.
    pub eval: EvalSettings,
    /// Padded tokens per training micro-batch.
    pub batch_tokens: usize,
    /// Weights of search, judging and evaluation (training is always f32).
    #[serde(default)]
    pub generation_weights: agentr_train::GenerationWeights,
}

impl RunConfig {
    /// Parallel workers for search and evaluation when none are asked for: 2, or 1 with
    /// 8-bit generation weights, whose kernels use every core for one episode.
    pub fn default_workers(&self) -> usize {
        match self.generation_weights {
            agentr_train::GenerationWeights::Int8 => 1,
            agentr_train::GenerationWeights::F32 => 2,
        }
    }

    /// The settings of `preset` with what `overrides` sets on top.
    pub fn preset(preset: Preset, overrides: &Overrides) -> Self {
        let mut config = match preset {
            Preset::Quick => Self::quick(overrides),
            Preset::Smol => Self::smol(overrides),
            Preset::Paper => Self::paper(overrides),
        };
        config.preset = preset;
        if let Some(base) = &overrides.base {
            config.bc.model = base.clone();
        }
        if let Some(goals) = overrides.warm_start_goals {
            config.bc.tasks = goals;
        }
        if config.mode == Arm::BcOnly {
            config.iterations = 0;
        }
        config
    }

    /// The settings every preset shares, with the overrides.
    fn common(overrides: &Overrides) -> Self {
        let mode = overrides.mode;
        RunConfig {
            preset: Preset::Paper,
            mode,
            judge: (mode == Arm::AgentR).then_some(overrides.judge),
            envs: overrides.envs.iter().map(|e| e.name().to_owned()).collect(),
            seed: overrides.seed,
            start_model: overrides.start_model.clone(),
            shared_start: None,
            shared_trees: None,
            lora: None,
            goals: None,
            // The paper preset clones the whole behaviour-cloning pool (half the training
            // goals) with four command-list seeds.
            bc: BcSettings {
                tasks: 222,
                textcraft_seeds: vec![42, 1, 2, 3],
                renamed_worlds: 0,
                observation_loss: false,
                model: "tiny-s".into(),
                epochs: 2,
                lr: 2e-3,
            },
            iterations: overrides.iterations.unwrap_or(3),
            // Three iterations of 74 use the 222 goals of the self-play pool once each.
            search: SearchSettings {
                tasks_per_iteration: 74,
                cloned_goals: false,
                goals: None,
                passes: 8,
                candidates: 4,
                depth_limit: 20,
                temperature: 1.0,
            },
            train: IterationTraining {
                epochs: vec![3, 1],
                lr: 1e-3,
                beta: 0.2,
                max_pairs_per_tree: Some(10),
                judge_samples_per_label: 2,
                agreement_steps: 2,
                judge_answer: agentr_train::JudgeAnswer::Written,
                judge_bad_above: even_odds(),
                steps: None,
                observation_loss: false,
                general: overrides.general.clone(),
                mix_expert_episodes: false,
                eta: overrides.eta.unwrap_or(0.2),
            },
            eval: EvalSettings {
                tasks: "test".into(),
                max_rounds: 100,
                max_tokens: 96,
                reflection_rounds: 50,
                reflection_episodes: None,
            },
            batch_tokens: 2048,
            generation_weights: agentr_train::GenerationWeights::F32,
        }
    }

    fn paper(overrides: &Overrides) -> Self {
        Self::common(overrides)
    }

    fn quick(overrides: &Overrides) -> Self {
        let common = Self::common(overrides);
        RunConfig {
            // TextCraft's depth-1 training goals (ids 0-139 are the depth-1 block, the test
            // split takes 0-30), which a model cloned for a few minutes can learn.
            goals: Some("31..140".to_owned()),
            bc: BcSettings {
                tasks: 54,
                // Renamed worlds, loss on the observations, two layers and 1e-3 are the
                // settings under which a model trained from scratch first read names from its
                // prompt (RESULTS.md). In the ten minutes the preset can spend they give a warm
                // start that solves a few unseen test goals and recalls the goals it was cloned
                // on, not one that reads every prompt.
                renamed_worlds: 4,
                observation_loss: true,
                model: "tiny-2l".into(),
                epochs: 5,
                lr: 1e-3,
                ..common.bc
            },
            iterations: overrides.iterations.unwrap_or(1),
            search: SearchSettings {
                tasks_per_iteration: 20,
                // A model trained from scratch for minutes acts only on goals it was cloned on.
                cloned_goals: true,
                goals: None,
                passes: 4,
                depth_limit: 10,
                // A weak model sampled at temperature 1 almost never reaches a goal (20 trees,
                // no success, in the first calibration run).
                temperature: 0.7,
                ..common.search
            },
            train: IterationTraining {
                observation_loss: true,
                // The paper mixes general chat data (eta 0.2), which a model trained from
                // scratch does not have; quick mixes its expert episodes instead, half and half.
                mix_expert_episodes: true,
                eta: overrides.eta.unwrap_or(0.5),
                ..common.train
            },
            eval: EvalSettings {
                // The 31 depth-1 test goals.
                tasks: "test[:31]".into(),
                max_rounds: 20,
                // The paper continues for 50 rounds; quick keeps its evaluation's 20.
                reflection_rounds: 20,
                ..common.eval
            },
            // About one episode per optimizer step: more steps for the same tokens.
            batch_tokens: 512,
            ..common
        }
    }

    /// SmolLM2-135M-Instruct on TextCraft (issue 19's experiment). The model reads its prompt
    /// but does not write the action format zero-shot (0/31, every action invalid), so a short
    /// LoRA warm start on expert episodes of a separate pool teaches the format (one epoch on
    /// 108 episodes gave 14/31 on the depth-1 test goals); from there the iterations search
    /// with the model, let it judge its own branches, and fine-tune with LoRA.
    fn smol(overrides: &Overrides) -> Self {
        let common = Self::common(overrides);
        RunConfig {
            lora: Some(LoraSettings {
                rank: 16,
                alpha: 32.0,
                targets: agentr_train::LoraConfig::with_rank(16).targets,
            }),
            bc: BcSettings {
                tasks: 54,
                textcraft_seeds: vec![42, 1],
                model: crate::models::SMOLLM2.into(),
                epochs: 1,
                lr: 5e-4,
                ..common.bc
            },
            iterations: overrides.iterations.unwrap_or(1),
            search: SearchSettings {
                tasks_per_iteration: 20,
                passes: 4,
                depth_limit: 12,
                // The depth-1 block of TextCraft's goals (ids 0-139): the warm start solves
                // 13 of 100 test goals, none deeper than one crafting step, and its first
                // search of the whole pool found a success in 2 of 20 trees (both depth 1).
                goals: Some("0..140".into()),
                ..common.search
            },
            train: IterationTraining {
                epochs: vec![2, 1],
                lr: 3e-4,
                // A pretrained model judges untaught, as in the paper; SmolLM2-135M does not
                // write the verifier's label line (its answers echo the task; agentr-revise's
                // golden test), so its verdict is read from its next-token preference.
                judge_samples_per_label: 0,
                judge_answer: agentr_train::JudgeAnswer::Scored,
                // The warm-started model's P(Bad) after `Judgment:` was 0.011-0.055 on the
                // seed-0 calibration trees (training goals): mean 0.031 on steps the
                // environment rejected, 0.021 on accepted ones, so at 0.5 it called every
                // step Good. The threshold is the midpoint of the two means.
                judge_bad_above: 0.026,
                // One budget for every arm (about 9 minutes of LoRA steps at 2,048 tokens),
                // whatever number of samples its rule keeps.
                steps: Some(40),
                ..common.train
            },
            eval: EvalSettings {
                // The 31 depth-1 test goals. Seed 0's warm start solved 13 of them and none of
                // the 69 deeper ones, whose 15-round failures took 78% of the 100-goal
                // evaluation's steps (1,035 of 1,335): measuring those zeros for every arm
                // would put one arm and seed past an hour.
                tasks: "test[:31]".into(),
                max_rounds: 15,
                max_tokens: 64,
                // Every failed episode of the warm start (at most 40), 10 rounds each.
                reflection_rounds: 10,
                reflection_episodes: Some(40),
            },
            // Twice the decoding speed of f32 on the CPU (BENCHMARKS.md).
            generation_weights: agentr_train::GenerationWeights::Int8,
            ..common
        }
    }
}

/// A finished stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FinishedStage {
    stage: String,
    seconds: f64,
    /// A training stage's model, as `agentr eval` records it (`model_sha256`): a model
    /// trained again because its weights were not kept is checked against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model_sha256: Option<String>,
}

/// `manifest.json`: the stages finished so far, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Manifest {
    finished: Vec<FinishedStage>,
}

impl Manifest {
    fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Ok(Manifest::default());
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a manifest", path.display()))
    }

    fn is_done(&self, stage: &str) -> bool {
        self.finished.iter().any(|s| s.stage == stage)
    }

    fn record(
        &mut self,
        path: &Path,
        stage: &str,
        seconds: f64,
        model_sha256: Option<String>,
    ) -> Result<()> {
        self.finished.push(FinishedStage {
            stage: stage.to_owned(),
            seconds,
            model_sha256,
        });
        write_json(path, self)
    }

    /// The model digest `stage` recorded when it finished, if any.
    fn model_sha256(&self, stage: &str) -> Option<&str> {
        self.finished
            .iter()
            .find(|s| s.stage == stage)
            .and_then(|s| s.model_sha256.as_deref())
    }
}

/// The stage a run with `config` finishes with: its last self-reflection test.
fn last_stage(config: &RunConfig) -> String {
    match config.iterations {
        0 => "bc/reflection".to_owned(),
        n => format!("iter-{n}/reflection"),
    }
}

/// Whether the run with `config` in `dir` has finished every stage.
pub fn finished(dir: &Path, config: &RunConfig) -> Result<bool> {
    Ok(Manifest::load(&dir.join("manifest.json"))?.is_done(&last_stage(config)))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)?;
    agentr_envs::atomic::write(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

/// The run: its directory, settings and progress.
struct Run<'a> {
    dir: PathBuf,
    config: RunConfig,
    manifest: Manifest,
    workers: usize,
    /// Not a setting of the run: a run may be resumed on another device.
    device: DeviceChoice,
    /// Whether a finished training stage whose model folder is gone trains it again: while
    /// a stage of this run or of another (an experiment's arms start from its base arm's
    /// warm start) still has to read the model.
    models_needed: bool,
    reporter: &'a dyn Reporter,
}

impl Run<'_> {
    fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// Where the stages' models run and which weights they generate with.
    fn runtime(&self) -> Runtime {
        Runtime {
            device: self.device,
            weights: self.config.generation_weights,
        }
    }

    /// Runs `work` unless `stage` is already finished; records it when it succeeds.
    fn stage(&mut self, stage: &str, work: impl FnOnce(&Self) -> Result<()>) -> Result<()> {
        if self.manifest.is_done(stage) {
            self.reporter.line(&format!("[{stage}] done earlier"));
            return Ok(());
        }
        let seconds = self.timed(stage, work)?;
        let manifest_path = self.path("manifest.json");
        self.manifest.record(&manifest_path, stage, seconds, None)
    }

    /// Runs the training `stage`, which writes the model folder `model`, unless it finished
    /// earlier; records it with the model's digest when it succeeds.
    ///
    /// A run directory can be kept without its weights (an experiment committed to a
    /// repository, say, whose model folders are gigabytes). Such a finished stage trains its
    /// model again when a later stage still needs it, and the weights must come out as the
    /// ones recorded: training is deterministic for the same code on the same machine, and
    /// with other weights the later stages already done would not follow from them.
    fn model_stage(
        &mut self,
        stage: &str,
        model: &Path,
        work: impl FnOnce(&Self) -> Result<()>,
    ) -> Result<()> {
        let manifest_path = self.path("manifest.json");
        if !self.manifest.is_done(stage) {
            let seconds = self.timed(stage, work)?;
            let digest = model_digest(model)?;
            return self
                .manifest
                .record(&manifest_path, stage, seconds, Some(digest));
        }
        if model.join("model.safetensors").exists() {
            self.reporter.line(&format!("[{stage}] done earlier"));
            return Ok(());
        }
        if !self.models_needed {
            self.reporter.line(&format!(
                "[{stage}] done earlier; its model {} is not here, and no unfinished stage \
                 needs it",
                model.display()
            ));
            return Ok(());
        }
        self.reporter.line(&format!(
            "[{stage}] done earlier, but its model {} is not here: training it again",
            model.display()
        ));
        self.timed(stage, work)?;
        let digest = model_digest(model)?;
        match self.manifest.model_sha256(stage) {
            Some(recorded) if recorded == digest => self.reporter.line(&format!(
                "[{stage}] the model trained again is the one recorded (SHA-256 {digest})"
            )),
            Some(recorded) => bail!(
                "stage {stage}: the model trained again in {} differs from the one the run \
                 recorded (SHA-256 {digest}, recorded {recorded}), so the stages done with it \
                 would not follow from it; this build or machine does not reproduce the run's \
                 training (another agentr version, thread count or CPU?): continue it where it \
                 was made, or start it again in a new directory",
                model.display()
            ),
            None => self.reporter.line(&format!(
                "[{stage}] trained again; the run recorded no digest for it, so it cannot be \
                 checked against the first training"
            )),
        }
        Ok(())
    }

    /// Runs `work` as `stage`, saying when it starts and how long it took (seconds).
    fn timed(&self, stage: &str, work: impl FnOnce(&Self) -> Result<()>) -> Result<f64> {
        self.reporter.line(&format!("[{stage}] ..."));
        let started = Instant::now();
        work(self).with_context(|| format!("stage {stage}"))?;
        let seconds = started.elapsed().as_secs_f64();
        self.reporter
            .line(&format!("[{stage}] finished in {seconds:.0}s"));
        Ok(seconds)
    }
}

/// The behaviour-cloning and self-play pools of `env`'s training goals.
/// With `goals`, only the training goals it selects (never a test goal) enter the pools.
fn pools(env: EnvName, goals: Option<&str>) -> Result<(Vec<u64>, Vec<u64>)> {
    let instance = env.build(&EnvOptions::default_for(env))?;
    let train = instance.task_ids(agentr_envs::Split::Train);
    let chosen: Vec<TaskId> = match goals {
        Some(text) => {
            let spec: TaskSpec = text.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            spec.resolve(instance.as_ref())?
                .into_iter()
                .filter(|id| train.contains(id))
                .collect()
        }
        None => train,
    };
    if chosen.len() < 2 {
        bail!(
            "{}: the goals `{}` hold {} training goals; the two pools need at least 2",
            env.name(),
            goals.unwrap_or("train"),
            chosen.len()
        );
    }
    let mut ids: Vec<u64> = chosen.into_iter().map(|t| t.0).collect();
    Rng::new(POOL_SPLIT_SEED).shuffle(&mut ids);
    let self_play = ids.split_off(ids.len() / 2);
    Ok((ids, self_play))
}

/// The goals the iterations search, a slice per iteration: the self-play pool, or with
/// `search.cloned_goals` the behaviour-cloning slice, narrowed to `search.goals`.
fn self_play_pool(env: EnvName, config: &RunConfig) -> Result<Vec<u64>> {
    let (cloning, searching) = pools(env, config.goals.as_deref())?;
    let pool = match config.search.cloned_goals {
        true => slice_of(&cloning, 0, config.bc.tasks),
        false => searching,
    };
    let Some(text) = &config.search.goals else {
        return Ok(pool);
    };
    let spec: TaskSpec = text.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let instance = env.build(&EnvOptions::default_for(env))?;
    let selected: Vec<u64> = spec
        .resolve(instance.as_ref())?
        .into_iter()
        .map(|t| t.0)
        .collect();
    let narrowed: Vec<u64> = pool
        .into_iter()
        .filter(|id| selected.contains(id))
        .collect();
    if narrowed.is_empty() {
        bail!(
            "{}: no self-play goal is in search.goals `{text}`",
            env.name()
        );
    }
    Ok(narrowed)
}

/// `count` ids of `pool` starting at `start`, wrapping around.
fn slice_of(pool: &[u64], start: usize, count: usize) -> Vec<u64> {
    if pool.is_empty() {
        return Vec::new();
    }
    (0..count.min(pool.len()))
        .map(|i| pool[(start + i) % pool.len()])
        .collect()
}

fn task_spec(ids: &[u64]) -> Result<TaskSpec> {
    let text: Vec<String> = ids.iter().map(u64::to_string).collect();
    text.join(",")
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))
}

/// Training epochs of iteration `iteration` (1-based); the schedule's last entry repeats.
fn epochs_of(config: &RunConfig, iteration: usize) -> usize {
    let epochs = &config.train.epochs;
    epochs
        .get(iteration - 1)
        .or(epochs.last())
        .copied()
        .unwrap_or(1)
}

/// An experiment's settings (`--arms`, or the smol preset): the arms, the seeds, and the run
/// settings every arm shares (its `mode`, `judge` and `seed` are set per arm and seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// The arms, in the order they run.
    pub arms: Vec<ExperimentArm>,
    /// The seeds; each has its own warm start and trees.
    pub seeds: Vec<u64>,
    /// Iterations of the agent-r arm (the others run the template's): the paper reports the
    /// second iteration of Agent-R alone.
    pub agent_r_iterations: usize,
    /// The settings of every run.
    pub template: RunConfig,
}

impl Experiment {
    /// An experiment of `arms` (the base arm added first when missing, each arm once) over
    /// `seeds` (each once, in the order given; none: 0, 1, 2), every run with `template`'s
    /// settings; agent-r runs at least two iterations.
    pub fn new(arms: &[ExperimentArm], seeds: &[u64], template: RunConfig) -> Self {
        let mut arms = match arms.is_empty() {
            true => ExperimentArm::ALL.to_vec(),
            false => arms.to_vec(),
        };
        arms.sort();
        arms.dedup();
        // Comparisons need the warm start's evaluation, which the base arm makes.
        if arms.first() != Some(&ExperimentArm::Base) {
            arms.insert(0, ExperimentArm::Base);
        }
        let mut unique: Vec<u64> = Vec::new();
        for &seed in seeds {
            // In the order given, each once (a repeated seed would count its pairs twice).
            if !unique.contains(&seed) {
                unique.push(seed);
            }
        }
        if unique.is_empty() {
            unique = vec![0, 1, 2];
        }
        Experiment {
            arms,
            seeds: unique,
            agent_r_iterations: template.iterations.max(2),
            template,
        }
    }

    /// The run directory of `arm` with `seed`, relative to the experiment's.
    pub fn run_dir(arm: ExperimentArm, seed: u64) -> String {
        format!("seed-{seed}/{}", arm.name())
    }

    /// The settings of `arm`'s run with `seed`, the experiment in `dir`.
    pub fn run_config(&self, dir: &Path, arm: ExperimentArm, seed: u64) -> RunConfig {
        let (mode, judge) = arm.mode_and_judge();
        let mut config = RunConfig {
            mode,
            judge,
            seed,
            ..self.template.clone()
        };
        config.iterations = match arm {
            ExperimentArm::Base => 0,
            ExperimentArm::AgentR => self.agent_r_iterations,
            _ => self.template.iterations,
        };
        if arm == ExperimentArm::Base {
            return config;
        }
        let base = dir.join(Self::run_dir(ExperimentArm::Base, seed));
        config.start_model = Some(match config.bc.tasks {
            0 => PathBuf::from(&config.bc.model),
            _ => base.join("bc/model"),
        });
        config.shared_start = Some(base);
        // The first arm with iterations searches; the others take its trees of iteration 1.
        let searcher = self.arms.iter().find(|&&a| a != ExperimentArm::Base);
        if let Some(&searcher) = searcher.filter(|&&a| a != arm) {
            config.shared_trees =
                Some(dir.join(Self::run_dir(searcher, seed)).join("iter-1/trees"));
        }
        config
    }
}

/// Runs (or resumes) the single run `config` in `dir`, and returns its results (also written
/// to `dir/results.json`). `needed_elsewhere` says that another run starts from this one's
/// models, so that a finished training stage whose model is gone trains it again even when
/// this run has nothing left to do.
pub fn execute(
    dir: &Path,
    config: RunConfig,
    workers: usize,
    device: DeviceChoice,
    needed_elsewhere: bool,
    reporter: &dyn Reporter,
) -> Result<serde_json::Value> {
    let envs: Vec<EnvName> = config
        .envs
        .iter()
        .map(|name| EnvName::from_str(name, true).map_err(|e| anyhow::anyhow!(e)))
        .collect::<Result<_>>()?;
    if envs.is_empty() {
        bail!("the run names no environment");
    }
    if config.start_model.is_none()
        && config.bc.tasks == 0
        && agentr_train::ModelConfig::preset(&config.bc.model, 0).is_some()
    {
        bail!(
            "the base `{}` is a model trained from scratch, so it needs a warm start \
             (a number of warm-start goals above 0)",
            config.bc.model
        );
    }
    create_dir(dir)?;
    let config_path = dir.join("config.json");
    if config_path.exists() {
        let text = std::fs::read_to_string(&config_path)?;
        let saved: RunConfig = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a run configuration", config_path.display()))?;
        if saved != config {
            bail!(
                "{} holds a run with other settings; resume it with the same options or choose another --out\nsaved:    {}\nrequested: {}",
                dir.display(),
                serde_json::to_string(&saved)?,
                serde_json::to_string(&config)?
            );
        }
        reporter.line(&format!("resuming the run in {}", dir.display()));
    } else {
        write_json(&config_path, &config)?;
    }
    let manifest = Manifest::load(&dir.join("manifest.json"))?;
    let models_needed = needed_elsewhere || !manifest.is_done(&last_stage(&config));
    let mut run = Run {
        dir: dir.to_owned(),
        config,
        manifest,
        workers,
        device,
        models_needed,
        reporter,
    };
    // Expert episodes: the warm start's data, and part of the iterations' general data when
    // `mix_expert_episodes` says so (written here also for a run that starts from another
    // model).
    let mixed = run.config.train.mix_expert_episodes && run.config.iterations > 0;
    let warm = run.config.start_model.is_none() && run.config.bc.tasks > 0;
    let expert = match warm || mixed {
        true => expert_episodes(&mut run, &envs)?,
        false => Vec::new(),
    };
    let mut model = match (run.config.start_model.clone(), warm) {
        (Some(dir), _) => dir,
        (None, true) => warm_start(&mut run, expert.clone())?,
        // No warm start: the pretrained base itself.
        (None, false) => PathBuf::from(&run.config.bc.model),
    };
    match run.config.shared_start.clone() {
        Some(shared) => {
            for stage in ["bc/eval", "bc/reflection"] {
                run.stage(stage, |run| {
                    copy_dir(&shared.join(stage), &run.path(stage))
                        .with_context(|| format!("taking over {stage} from {}", shared.display()))
                })?;
            }
        }
        None => {
            run.stage("bc/eval", |run| {
                evaluate_stage(run, &envs, &model, "bc/eval")
            })?;
            run.stage("bc/reflection", |run| {
                reflect(run, &envs, &model, "bc/reflection")
            })?;
        }
    }
    let mut self_play = BTreeMap::new();
    for &env in &envs {
        self_play.insert(env.name(), self_play_pool(env, &run.config)?);
    }
    for iteration in 1..=run.config.iterations {
        let dir = format!("iter-{iteration}");
        create_dir(&run.path(&dir))?;
        let trees = |env: EnvName| format!("{dir}/trees/{}", env.name());
        for &env in &envs {
            let pool = &self_play[env.name()];
            let per = run.config.search.tasks_per_iteration;
            let ids = slice_of(pool, (iteration - 1) * per, per);
            let policy = model.clone();
            run.stage(&format!("{}/collect", trees(env)), |run| {
                let search = &run.config.search;
                if let (1, Some(shared)) = (iteration, &run.config.shared_trees) {
                    let from = shared.join(env.name());
                    return copy_dir(&from, &run.path(&trees(env)))
                        .with_context(|| format!("taking over the trees of {}", from.display()));
                }
                let job = CollectJob {
                    env,
                    env_options: EnvOptions::default_for(env),
                    policy: PolicySpec::Model(policy),
                    tasks: task_spec(&ids)?,
                    out: run.path(&trees(env)),
                    workers: run.workers,
                    search: SearchConfig {
                        iterations: search.passes,
                        candidates: search.candidates,
                        depth_limit: search.depth_limit,
                        uct_c: 0.25,
                        temperature: search.temperature,
                        seed: run.config.seed,
                        // Raw observations everywhere in a run: the model is trained, searched
                        // and evaluated on the same text.
                        clean_observations: false,
                        restore: Restore::Auto,
                    },
                    runtime: run.runtime(),
                };
                let summary = collect(&job, run.reporter)?;
                run.reporter.line(&summary.describe(&job.out));
                summary.all_searched()
            })?;
        }
        let samples: Vec<PathBuf> = envs
            .iter()
            .map(|env| run.path(&format!("{dir}/samples-{}.jsonl", env.name())))
            .collect();
        for (&env, out) in envs.iter().zip(&samples) {
            let judge_model = model.clone();
            run.stage(&format!("{dir}/revise/{}", env.name()), |run| {
                let mode = run
                    .config
                    .mode
                    .revise_mode()
                    .context("bc-only has no iterations")?;
                let job = ReviseJob {
                    trees: run.path(&trees(env)),
                    out: out.clone(),
                    config: ReviseConfig {
                        mode,
                        thresholds: Thresholds {
                            alpha: alpha_for_iteration(iteration),
                            beta: run.config.train.beta,
                            condition: PairCondition::Paper,
                        },
                        max_pairs_per_tree: run.config.train.max_pairs_per_tree,
                        seed: run.config.seed,
                        good_samples: true,
                    },
                    judge: match run.config.judge {
                        Some(JudgeChoice::Model) => Some(JudgeSpec::Model(judge_model.clone())),
                        Some(JudgeChoice::EnvFeedback) => Some(JudgeSpec::EnvFeedback),
                        None => None,
                    },
                    judge_answer: run.config.train.judge_answer,
                    bad_above: run.config.train.judge_bad_above,
                    signals: None,
                    judge_samples: match run.config.judge {
                        Some(JudgeChoice::Model) => run.config.train.judge_samples_per_label,
                        _ => 0,
                    },
                    // On trees the judge has not been trained on: this iteration's.
                    agreement_steps: run.config.train.agreement_steps,
                    // The policy's tokenizer: the statistics then say how long the samples
                    // this iteration trains on are.
                    tokenizer: Some(judge_model.clone()),
                    runtime: run.runtime(),
                };
                let summary = revise(&job, run.reporter)?;
                for line in summary.describe(&job.out) {
                    run.reporter.line(&line);
                }
                Ok(())
            })?;
        }
        let next = run.path(&format!("{dir}/model"));
        let previous = model.clone();
        let usable: Vec<PathBuf> = samples.iter().filter(|p| has_samples(p)).cloned().collect();
        if usable.is_empty() {
            // Nothing to learn from: the iteration keeps its model, and says so.
            run.reporter.line(&format!(
                "[{dir}/train] no tree reached a reward, so there are no training samples; \
                 the model stays {}",
                model.display()
            ));
        } else {
            run.model_stage(&format!("{dir}/train"), &next, |run| {
                let epochs = epochs_of(&run.config, iteration);
                let job =
                    iteration_train_job(run, usable, &previous, &next, epochs, expert.clone());
                train_and_describe(run, &job)
            })?;
            model = next;
        }
        let stage = format!("{dir}/eval");
        run.stage(&stage, |run| evaluate_stage(run, &envs, &model, &stage))?;
        let stage = format!("{dir}/reflection");
        run.stage(&stage, |run| reflect(run, &envs, &model, &stage))?;
    }
    let summary = summarise(&run, &envs)?;
    write_json(&run.path("results.json"), &summary)?;
    Ok(summary)
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Copies the files of `from` into `to` (created), recursively; a file is written atomically,
/// so a stopped copy is finished by running it again.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    create_dir(to)?;
    let entries = std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))?;
    for entry in entries {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            let bytes = std::fs::read(entry.path())
                .with_context(|| format!("reading {}", entry.path().display()))?;
            agentr_envs::atomic::write(&target, &bytes)
                .with_context(|| format!("writing {}", target.display()))?;
        }
    }
    Ok(())
}

fn has_samples(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

/// The warm start: a model trained on the expert episodes `files`.
fn warm_start(run: &mut Run, files: Vec<PathBuf>) -> Result<PathBuf> {
    let out = run.path("bc/model");
    let bc = run.config.bc.clone();
    run.model_stage("bc/train", &out, |run| {
        let job = TrainJob {
            observation_loss: bc.observation_loss,
            ..train_job(run, files, bc.model.clone(), &out, bc.epochs, bc.lr)
        };
        train_and_describe(run, &job)
    })?;
    Ok(out)
}

/// The expert episodes of the behaviour-cloning slice (one file per environment, command-list
/// seed and world), written by the `bc/gold/...` stages.
fn expert_episodes(run: &mut Run, envs: &[EnvName]) -> Result<Vec<PathBuf>> {
    create_dir(&run.path("bc"))?;
    let mut files = Vec::new();
    for &env in envs {
        let (bc_pool, _) = pools(env, run.config.goals.as_deref())?;
        let tasks = task_spec(&slice_of(&bc_pool, 0, run.config.bc.tasks))?;
        for (label, env_options) in expert_variants(&run.config, env) {
            let out = run.path(&format!("bc/gold-{}-{label}.jsonl", env.name()));
            run.stage(&format!("bc/gold/{}/{label}", env.name()), |_| {
                let job = GoldJob {
                    env,
                    env_options: env_options.clone(),
                    tasks: tasks.clone(),
                    max_rounds: 100,
                    include_failures: false,
                    clean_observations: false,
                };
                create_parent(&out)?;
                let file = std::fs::File::create(&out)
                    .with_context(|| format!("creating {}", out.display()))?;
                let summary = gold(&job, &mut std::io::BufWriter::new(file), run.reporter)?;
                for line in summary.describe(&job, Some(&out)) {
                    run.reporter.line(&line);
                }
                Ok(())
            })?;
            files.push(out);
        }
    }
    Ok(files)
}

/// The worlds the expert plays each behaviour-cloning goal in, with their file labels:
/// TextCraft's command-list seeds, each with the real names and `renamed_worlds` renamed
/// ones; one world for ScienceWorld and WebShop (no seed, no renaming).
fn expert_variants(config: &RunConfig, env: EnvName) -> Vec<(String, EnvOptions)> {
    match env {
        EnvName::Textcraft => {
            let mut variants = Vec::new();
            for &seed in &config.bc.textcraft_seeds {
                // World 0 has the real names.
                for world in 0..=config.bc.renamed_worlds {
                    let (label, shuffle_words) = match world {
                        0 => (format!("seed{seed}"), None),
                        _ => (format!("seed{seed}-words{world}"), Some(world)),
                    };
                    let options = EnvOptions {
                        seed,
                        shuffle_words,
                        ..EnvOptions::default_for(env)
                    };
                    variants.push((label, options));
                }
            }
            variants
        }
        EnvName::Sciworld | EnvName::Webshop => {
            vec![("gold".to_owned(), EnvOptions::default_for(env))]
        }
    }
}

/// The training of a stage: `model` (a preset or a model folder) trained on `samples` into
/// `out`, resuming a stopped stage from its checkpoint.
fn train_job(
    run: &Run,
    samples: Vec<PathBuf>,
    model: String,
    out: &Path,
    epochs: usize,
    lr: f64,
) -> TrainJob {
    TrainJob {
        samples,
        model,
        out: out.to_owned(),
        epochs,
        steps: None,
        recompute: false,
        lr,
        batch_tokens: run.config.batch_tokens,
        accumulation: 1,
        max_seq_len: 2048,
        warmup_ratio: 0.03,
        weight_decay: 0.0,
        general: Vec::new(),
        eta: 0.2,
        seed: run.config.seed,
        vocab_size: 2048,
        // A LoRA checkpoint holds only the adapters and their moments (tens of MB for
        // SmolLM2), and a pretrained model's steps are slow: a stopped stage loses at most 10.
        checkpoint_every: if run.config.lora.is_some() { 10 } else { 100 },
        resume: true,
        observation_loss: false,
        lora: run.config.lora.as_ref().map(|lora| LoraConfig {
            rank: lora.rank,
            alpha: lora.alpha,
            targets: lora.targets.clone(),
        }),
        device: run.device,
    }
}

/// Trains `job` and says how it went.
fn train_and_describe(run: &Run, job: &TrainJob) -> Result<()> {
    let summary = train(job, run.reporter)?;
    run.reporter.line(&summary.describe(&job.out));
    Ok(())
}

/// The training of an iteration: `previous` continued on the iteration's `samples`, with the
/// general data and (when the settings ask for it) the `expert` episodes mixed in at eta.
fn iteration_train_job(
    run: &Run,
    samples: Vec<PathBuf>,
    previous: &Path,
    next: &Path,
    epochs: usize,
    expert: Vec<PathBuf>,
) -> TrainJob {
    let settings = &run.config.train;
    let previous = previous.to_string_lossy().into_owned();
    TrainJob {
        general: match settings.mix_expert_episodes {
            true => settings.general.iter().cloned().chain(expert).collect(),
            false => settings.general.clone(),
        },
        eta: settings.eta,
        observation_loss: settings.observation_loss,
        steps: settings.steps,
        ..train_job(run, samples, previous, next, epochs, settings.lr)
    }
}

/// The evaluation stage: fresh greedy episodes on the test goals.
fn evaluate_stage(run: &Run, envs: &[EnvName], model: &Path, stage: &str) -> Result<()> {
    for &env in envs {
        evaluate_and_describe(run, &eval_job(run, env, model, stage)?)?;
    }
    Ok(())
}

/// The self-reflection stage: the model continues the warm start's failed test episodes
/// from a seeded cut (nothing to do when `reflection_rounds` is 0).
fn reflect(run: &Run, envs: &[EnvName], model: &Path, stage: &str) -> Result<()> {
    if run.config.eval.reflection_rounds == 0 {
        return Ok(());
    }
    for &env in envs {
        let job = EvalJob {
            episodes: Episodes::Reflection {
                from: run.path(&format!("bc/eval/{}/episodes.jsonl", env.name())),
                cut_seed: run.config.seed,
                continue_rounds: run.config.eval.reflection_rounds,
                first: run.config.eval.reflection_episodes,
            },
            ..eval_job(run, env, model, stage)?
        };
        evaluate_and_describe(run, &job)?;
    }
    Ok(())
}

/// The evaluation of `model` on `env`'s test goals for `stage`: fresh greedy episodes.
fn eval_job(run: &Run, env: EnvName, model: &Path, stage: &str) -> Result<EvalJob> {
    let settings = &run.config.eval;
    Ok(EvalJob {
        env,
        env_options: EnvOptions::default_for(env),
        model: ModelSpec::Dir(model.to_owned()),
        episodes: Episodes::Fresh(
            settings
                .tasks
                .parse()
                .map_err(|e: String| anyhow::anyhow!(e))?,
        ),
        max_rounds: settings.max_rounds,
        temperature: 0.0,
        sampling_seed: run.config.seed,
        max_tokens: settings.max_tokens,
        workers: run.workers,
        send_revision_turns: false,
        clean_observations: false,
        out: run.path(&format!("{stage}/{}", env.name())),
        baseline: None,
        runtime: run.runtime(),
    })
}

/// Evaluates `job` and says how it went.
fn evaluate_and_describe(run: &Run, job: &EvalJob) -> Result<()> {
    let summary = evaluate(job, run.reporter)?;
    for line in summary.describe(None) {
        run.reporter.line(&line);
    }
    Ok(())
}

/// One evaluation's headline numbers.
#[derive(Debug, Clone, Serialize)]
struct Row {
    stage: String,
    env: String,
    success_rate_x100: f64,
    average_reward_x100: f64,
    mean_steps: f64,
    invalid_action_rate: f64,
    revision_turns_per_episode: f64,
    repeats_per_episode: Vec<f64>,
}

fn summarise(run: &Run, envs: &[EnvName]) -> Result<serde_json::Value> {
    let tests: &[&str] = match run.config.eval.reflection_rounds {
        0 => &["eval"],
        _ => &["eval", "reflection"],
    };
    let stages: Vec<String> = std::iter::once("bc".to_owned())
        .chain((1..=run.config.iterations).map(|i| format!("iter-{i}")))
        .flat_map(|dir| tests.iter().map(move |test| format!("{dir}/{test}")))
        .collect();
    let mut rows = Vec::new();
    for stage in &stages {
        for env in envs {
            let path = run.path(&format!("{stage}/{}/summary.json", env.name()));
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let summary: serde_json::Value = serde_json::from_str(&text)?;
            let metric = |name: &str| summary["metrics"][name].as_f64().unwrap_or(f64::NAN);
            // `mean_repeats` maps run lengths "1", "2", ... to repeats per episode.
            let mut repeats: Vec<(usize, f64)> = summary["metrics"]["loops"]["mean_repeats"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_f64()?)))
                        .collect()
                })
                .unwrap_or_default();
            repeats.sort_by_key(|&(len, _)| len);
            let repeats = repeats.into_iter().map(|(_, v)| v).collect();
            rows.push(Row {
                stage: stage.clone(),
                env: env.name().to_owned(),
                success_rate_x100: metric("success_rate_x100"),
                average_reward_x100: metric("average_reward_x100"),
                mean_steps: metric("mean_steps"),
                invalid_action_rate: metric("invalid_action_rate"),
                revision_turns_per_episode: metric("revision_turns_per_episode"),
                repeats_per_episode: repeats,
            });
        }
    }
    // Every later evaluation against the start model's on the same tasks, by pairs.
    let mut comparisons = Vec::new();
    for stage in stages.iter().filter(|s| !s.starts_with("bc/")) {
        let test = stage.rsplit('/').next().unwrap_or_default();
        for env in envs {
            let baseline = run.path(&format!("bc/{test}/{}", env.name()));
            let candidate = run.path(&format!("{stage}/{}", env.name()));
            let paired = compare_folders(&[baseline], &[candidate])?;
            comparisons.push(serde_json::json!({
                "candidate": stage,
                "baseline": format!("bc/{test}"),
                "env": env.name(),
                "paired": paired,
            }));
        }
    }
    // What each iteration's revision step did: pairs, the judge's labels and agreement with
    // the trees, and the pairs that fell back to direct revision.
    let mut revisions = Vec::new();
    for iteration in 1..=run.config.iterations {
        for env in envs {
            let path = run.path(&format!(
                "iter-{iteration}/samples-{}.stats.json",
                env.name()
            ));
            if let Ok(text) = std::fs::read_to_string(&path) {
                let stats: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("reading {}", path.display()))?;
                revisions.push(serde_json::json!({
                    "iteration": iteration,
                    "env": env.name(),
                    "judge": stats["judge"],
                    "stats": stats["stats"],
                    "judge_agreement": stats["judge_agreement"],
                }));
            }
        }
    }
    Ok(serde_json::json!({
        "config": run.config,
        "stages": run.manifest.finished,
        "evaluations": rows,
        "comparisons": comparisons,
        "revisions": revisions,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_wrap_and_respect_the_pool() {
        let pool = [5, 6, 7];
        assert_eq!(slice_of(&pool, 0, 2), vec![5, 6]);
        assert_eq!(slice_of(&pool, 2, 2), vec![7, 5]);
        assert_eq!(slice_of(&pool, 1, 10), vec![6, 7, 5]);
        assert!(slice_of(&[], 0, 3).is_empty());
        assert_eq!(task_spec(&[3, 9]).unwrap().to_string(), "3,9");
    }

    #[test]
    fn epochs_follow_the_schedule_and_repeat_the_last() {
        let overrides = Overrides {
            iterations: Some(3),
            ..Overrides::default()
        };
        let config = RunConfig::preset(Preset::Quick, &overrides);
        assert_eq!(
            (1..=3).map(|i| epochs_of(&config, i)).collect::<Vec<_>>(),
            vec![3, 1, 1]
        );
        let bc_only = RunConfig::preset(
            Preset::Quick,
            &Overrides {
                mode: Arm::BcOnly,
                ..overrides
            },
        );
        assert_eq!(bc_only.iterations, 0);
        assert_eq!(bc_only.judge, None);
    }

    fn quick_config() -> RunConfig {
        RunConfig::preset(Preset::Quick, &Overrides::default())
    }

    #[test]
    fn searching_cloned_goals_reuses_the_cloning_slice_and_nothing_else() {
        let mut config = quick_config();
        config.bc.tasks = 10;
        config.search.cloned_goals = true;
        let (cloning, searching) = pools(EnvName::Textcraft, config.goals.as_deref()).unwrap();
        assert_eq!(
            self_play_pool(EnvName::Textcraft, &config).unwrap(),
            cloning[..10]
        );
        config.search.cloned_goals = false;
        let apart = self_play_pool(EnvName::Textcraft, &config).unwrap();
        assert_eq!(apart, searching);
        assert!(apart.iter().all(|id| !cloning.contains(id)));
    }

    #[test]
    fn search_goals_narrow_the_self_play_pool_and_keep_its_order() {
        let mut config = quick_config();
        config.search.cloned_goals = false;
        let whole = self_play_pool(EnvName::Textcraft, &config).unwrap();
        config.search.goals = Some("0..140".into());
        let narrowed = self_play_pool(EnvName::Textcraft, &config).unwrap();
        let expected: Vec<u64> = whole.iter().copied().filter(|&id| id < 140).collect();
        assert_eq!(narrowed, expected);
        config.search.goals = Some("test".into());
        let err = self_play_pool(EnvName::Textcraft, &config).unwrap_err();
        assert!(err.to_string().contains("no self-play goal"), "{err}");
    }

    #[test]
    fn the_smol_preset_searches_two_iterations_of_unseen_depth_1_goals() {
        let config = RunConfig::preset(Preset::Smol, &Overrides::default());
        let pool = self_play_pool(EnvName::Textcraft, &config).unwrap();
        let (cloning, _) = pools(EnvName::Textcraft, config.goals.as_deref()).unwrap();
        assert!(
            pool.len() >= 2 * config.search.tasks_per_iteration,
            "{}",
            pool.len()
        );
        assert!(pool.iter().all(|id| *id < 140 && !cloning.contains(id)));
    }

    #[test]
    fn the_smol_preset_fine_tunes_smollm2_with_lora_and_an_experiment_shares_starts_and_trees() {
        let config = RunConfig::preset(Preset::Smol, &Overrides::default());
        assert_eq!(config.bc.model, crate::models::SMOLLM2);
        assert_eq!(config.lora.as_ref().map(|l| l.rank), Some(16));
        assert_eq!(config.train.judge_samples_per_label, 0);
        assert_eq!(config.train.judge_answer, agentr_train::JudgeAnswer::Scored);
        // --base and --warm-start-goals override the preset.
        let bare = RunConfig::preset(
            Preset::Smol,
            &Overrides {
                base: Some("org/model".into()),
                warm_start_goals: Some(0),
                ..Overrides::default()
            },
        );
        assert_eq!((bare.bc.model.as_str(), bare.bc.tasks), ("org/model", 0));

        let experiment = Experiment::new(
            &[ExperimentArm::GoodOnly, ExperimentArm::AgentR],
            &[],
            config.clone(),
        );
        assert_eq!(
            experiment.arms,
            [
                ExperimentArm::Base,
                ExperimentArm::AgentR,
                ExperimentArm::GoodOnly
            ]
        );
        assert_eq!(experiment.seeds, [0, 1, 2]);
        // Regression: seeds given twice, not next to each other, ran and counted twice.
        let repeated = Experiment::new(&[], &[2, 0, 2, 1, 0], config.clone());
        assert_eq!(repeated.seeds, [2, 0, 1]);
        let dir = Path::new("exp");
        let base = experiment.run_config(dir, ExperimentArm::Base, 1);
        assert_eq!((base.mode, base.iterations, base.seed), (Arm::BcOnly, 0, 1));
        assert!(base.start_model.is_none() && base.shared_trees.is_none());
        let agent_r = experiment.run_config(dir, ExperimentArm::AgentR, 1);
        assert_eq!(agent_r.judge, Some(JudgeChoice::Model));
        assert_eq!(agent_r.iterations, 2);
        assert_eq!(agent_r.start_model, Some(dir.join("seed-1/base/bc/model")));
        assert_eq!(agent_r.shared_start, Some(dir.join("seed-1/base")));
        assert_eq!(agent_r.shared_trees, None, "the first arm searches");
        let good = experiment.run_config(dir, ExperimentArm::GoodOnly, 1);
        assert_eq!((good.mode, good.iterations), (Arm::GoodOnly, 1));
        assert_eq!(
            good.shared_trees,
            Some(dir.join("seed-1/agent-r/iter-1/trees"))
        );
        // Without a warm start every arm starts from the base model itself.
        let mut bare_experiment = experiment.clone();
        bare_experiment.template.bc.tasks = 0;
        let good = bare_experiment.run_config(dir, ExperimentArm::GoodOnly, 0);
        assert_eq!(
            good.start_model,
            Some(PathBuf::from(crate::models::SMOLLM2))
        );
    }

    /// Iteration 2 fine-tunes iteration 1's model: its merged weights are iteration 1's plus
    /// its own adapter, not the base's plus anything.
    #[test]
    fn lora_iterations_continue_from_the_previous_iterations_model() {
        use agentr_train::{Llama, ModelAgent};
        use candle_core::{Device, Tensor};

        let dir =
            std::env::temp_dir().join(format!("agentr-lora-iterations-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        create_dir(&dir).unwrap();
        let samples = crate::pipeline::train::tests::write_toy_samples(&dir, 6);
        let mut config = quick_config();
        config.lora = Some(LoraSettings {
            rank: 2,
            alpha: 4.0,
            targets: vec!["q".into(), "v".into(), "down".into()],
        });
        config.batch_tokens = 4096;
        let run = Run {
            dir: dir.clone(),
            config,
            manifest: Manifest::default(),
            workers: 1,
            device: Default::default(),
            models_needed: true,
            reporter: &crate::report::Quiet,
        };
        // The warm start: a small preset, then two LoRA iterations on top of each other.
        let warm = dir.join("bc/model");
        let job = TrainJob {
            vocab_size: 300,
            ..train_job(
                &run,
                vec![samples.clone()],
                "tiny-xs".into(),
                &warm,
                1,
                1e-2,
            )
        };
        train(&job, run.reporter).unwrap();
        let first = dir.join("iter-1/model");
        let second = dir.join("iter-2/model");
        for (previous, next) in [(&warm, &first), (&first, &second)] {
            let job = iteration_train_job(&run, vec![samples.clone()], previous, next, 2, vec![]);
            assert_eq!(job.lora.as_ref().map(|lora| lora.rank), Some(2));
            train(&TrainJob { lr: 1e-2, ..job }, run.reporter).unwrap();
            assert!(next.join("adapter/adapter_model.safetensors").exists());
        }
        let logits = |model: &Llama| -> Vec<f32> {
            let ids = Tensor::new(&[[1u32, 5, 9, 17, 33]], &Device::Cpu).unwrap();
            model
                .forward(&ids, None)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let load = |path: &Path| ModelAgent::load(path, &Device::Cpu).unwrap().model;
        let trained = logits(&load(&second));
        // Iteration 1's model with iteration 2's adapter merged gives iteration 2's model.
        let mut rebuilt = load(&first);
        rebuilt.load_adapter(&second.join("adapter")).unwrap();
        rebuilt.merge_lora().unwrap();
        let rebuilt = logits(&rebuilt);
        let largest = trained
            .iter()
            .zip(&rebuilt)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(largest < 1e-4, "{largest}");
        // ... and both iterations changed the model.
        assert_ne!(logits(&load(&first)), logits(&load(&warm)));
        assert_ne!(logits(&load(&first)), trained);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn iterations_mix_in_general_data_and_expert_episodes_only_when_asked() {
        let mut run = Run {
            dir: "run".into(),
            config: quick_config(),
            manifest: Manifest::default(),
            workers: 1,
            device: Default::default(),
            models_needed: true,
            reporter: &crate::report::Quiet,
        };
        let expert = vec![PathBuf::from("bc/gold.jsonl")];
        let args = |run: &Run| {
            iteration_train_job(
                run,
                vec!["samples.jsonl".into()],
                Path::new("bc/model"),
                Path::new("iter-1/model"),
                3,
                expert.clone(),
            )
        };
        run.config.train.mix_expert_episodes = true;
        run.config.train.observation_loss = true;
        run.config.train.general = vec!["chat.jsonl".into()];
        let mixed = args(&run);
        let both = vec![PathBuf::from("chat.jsonl"), expert[0].clone()];
        assert_eq!((mixed.general, mixed.eta), (both, 0.5));
        assert!(mixed.observation_loss);
        assert_eq!(mixed.model, "bc/model");
        assert_eq!(mixed.epochs, 3);
        run.config.train.mix_expert_episodes = false;
        run.config.train.observation_loss = false;
        let chat_only = args(&run);
        assert_eq!(chat_only.general, [PathBuf::from("chat.jsonl")]);
        run.config.train.general.clear();
        let alone = args(&run);
        assert!(alone.general.is_empty());
        assert!(!alone.observation_loss);
    }
}
