//! ScienceWorld: elementary-school science tasks in a text world, run by the real simulator
//! (`scienceworld.jar` from the PyPI wheel `scienceworld==1.2.3`) in a JVM per environment.
//!
//! * Task ids are AgentGym's: the 4,639 (task, variation) games of the 23 tasks AgentGym
//!   serves, in the simulator's task-number order (`1-1` boil, `1-2` melt, ...), every variation
//!   of a task in turn; the test split is AgentGym's 200 ids. The training split is, for each
//!   of the 23 tasks, the variations the simulator itself assigns to training (the first
//!   half; its dev and test variations are left out), minus any test id.
//! * Reset loads the game and looks around; the first observation is the task description, a
//!   newline and what `look around` printed. Reward is the simulator's score / 100 with
//!   partial credit, the score rounded as the Python package rounds it (halves to even); a
//!   negative score (a fatal mistake such as focusing on the wrong object) ends the episode
//!   as a disaster with reward 0. As in the package, an episode also ends once the
//!   simulator's move count passes [`STEP_LIMIT`] (100).
//! * Search restores by reset + replay (the JVM's state cannot be copied). Replays are
//!   deterministic for most games; simulator 1.2.3 is known not to reproduce some heat-related
//!   games exactly after a reload, so a replayed observation can differ there. The package
//!   itself lists objects in another order after a second load in the same JVM: task 4170
//!   (`chemistry-mix-paint-secondary-color`, variation 2), its 35 gold actions played after
//!   three loads in one Python process, differed at the `look around` of gold steps 29 and
//!   33 (the desk's tin cups, yellow before red) on the second and third loads, while a fresh
//!   JVM gave the first load's text exactly. agentr's JVM has loaded a game before it plays
//!   one, so its listings can be in the later order; `listing_insensitive` compares them.
//! * A JVM that dies or stops answering gives [`EnvError::SimulatorFailed`] within the call
//!   timeout; the episode is lost, and the next reset starts a fresh JVM.
//!
//! ```no_run
//! use agentr_envs::{Environment, TaskId, sciworld::SciWorld};
//! let mut env = SciWorld::from_default_assets()?;
//! println!("{}", env.reset(TaskId(0))?);
//! let step = env.step("look around")?;
//! println!("{} (reward {})", step.observation, step.reward);
//! # Ok::<(), agentr_envs::EnvError>(())
//! ```

mod expert;
pub mod gateway;
mod snap;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use expert::SciWorldExpert;
pub use snap::snap_action;

use crate::env::{Environment, Split, Step, TaskId};
use crate::{EnvError, assets};
use gateway::{Arg, Gateway, GatewayError, JvmOptions, Value};

/// The environment's name, as used on the command line and in sample metadata.
pub const NAME: &str = "sciworld";

/// The instruction prompt (own wording) that opens every ScienceWorld conversation.
pub const INSTRUCTION: &str = "You are an agent in ScienceWorld, a text simulation of a \
house and its surroundings where you carry out elementary science tasks. Each observation \
tells you what happened; the first one states your task.

Useful actions (OBJ and LOC are names from the observations):
- look around / look at OBJ / look in OBJ / read OBJ / inventory / task
- go to LOC / open OBJ / close OBJ
- pick up OBJ / put down OBJ / move OBJ to OBJ / pour OBJ into OBJ / dunk OBJ into OBJ / mix OBJ
- activate OBJ / deactivate OBJ / use OBJ on OBJ / connect OBJ to OBJ / disconnect OBJ
- eat OBJ / flush OBJ / focus on OBJ / wait / wait1
Focusing on an object tells the simulator it is the one your task is about: focusing on the \
wrong one ends the task as a failure. When the simulator asks which of several numbered \
actions you meant, answer with the number alone.

Answer with a short reasoning line and one action, in this form:
Thought: <your reasoning>
Action: <one action>";

/// What the simulator answers to an action it cannot parse.
pub const INVALID_ACTION: &str = "No known action matches that input.";

/// How to get the simulator, for error messages.
pub const SETUP_HINT: &str = "run `agentr setup` (or `cargo xtask setup`) to fetch it from the \
PyPI wheel scienceworld==1.2.3, or pass --jar FILE";

/// One task of the simulator as AgentGym serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Game {
    /// The simulator's task number, e.g. `1-1`.
    pub id: &'static str,
    /// The simulator's task name, e.g. `boil`.
    pub name: &'static str,
    /// Number of variations (`getTaskMaxVariations`).
    pub variations: u32,
    /// The first this many variations are the simulator's training variations.
    pub train_variations: u32,
}

/// AgentGym's 23 tasks in id order, with the simulator 1.2.3's variation counts and training
/// variations (checked against the JVM by the integration tests). Tasks 5-1, 5-2, 9-1, 9-2,
/// 9-3, 10-1 and 10-2 are the ones AgentGym leaves out.
pub const GAMES: [Game; 23] = [
    game("1-1", "boil", 30, 14),
    game("1-2", "melt", 30, 14),
    game("1-3", "freeze", 30, 14),
    game("1-4", "change-the-state-of-matter-of", 30, 14),
    game("2-1", "use-thermometer", 540, 270),
    game("2-2", "measure-melting-point-known-substance", 436, 218),
    game("2-3", "measure-melting-point-unknown-substance", 300, 150),
    game("3-1", "power-component", 20, 10),
    game(
        "3-2",
        "power-component-renewable-vs-nonrenewable-energy",
        20,
        10,
    ),
    game("3-3", "test-conductivity", 900, 450),
    game("3-4", "test-conductivity-of-unknown-substances", 600, 300),
    game("4-1", "find-living-thing", 300, 150),
    game("4-2", "find-non-living-thing", 300, 150),
    game("4-3", "find-plant", 300, 150),
    game("4-4", "find-animal", 300, 150),
    game("6-1", "chemistry-mix", 32, 16),
    game("6-2", "chemistry-mix-paint-secondary-color", 36, 18),
    game("6-3", "chemistry-mix-paint-tertiary-color", 36, 18),
    game("7-1", "lifespan-longest-lived", 125, 62),
    game("7-2", "lifespan-shortest-lived", 125, 62),
    game("7-3", "lifespan-longest-lived-then-shortest-lived", 125, 62),
    game("8-1", "identify-life-stages-1", 14, 6),
    game("8-2", "identify-life-stages-2", 10, 4),
];

const fn game(id: &'static str, name: &'static str, variations: u32, train: u32) -> Game {
    Game {
        id,
        name,
        variations,
        train_variations: train,
    }
}

/// The number of task ids.
pub fn task_count() -> u64 {
    GAMES.iter().map(|g| u64::from(g.variations)).sum()
}

/// The game and variation of a task id, or `None` past the last id.
pub fn game_of(task: TaskId) -> Option<(&'static Game, u32)> {
    let mut rest = task.0;
    for game in &GAMES {
        let variations = u64::from(game.variations);
        if rest < variations {
            return Some((game, rest as u32));
        }
        rest -= variations;
    }
    None
}

/// ScienceWorld's [`Environment::is_rejection`]: the parser's `No known action matches that
/// input.`
pub fn is_rejection(_previous: &str, observation: &str) -> bool {
    observation.starts_with("No known action matches that input")
}

/// AgentGym's test ids, in its order.
pub fn test_ids() -> Vec<TaskId> {
    crate::splits::sciworld_test().to_vec()
}

/// The training ids: every game's training variations, minus the test ids.
pub fn train_ids() -> Vec<TaskId> {
    let test: std::collections::HashSet<TaskId> = test_ids().into_iter().collect();
    let mut ids = Vec::new();
    let mut first = 0u64;
    for game in &GAMES {
        ids.extend(
            (first..first + u64::from(game.train_variations))
                .map(TaskId)
                .filter(|id| !test.contains(id)),
        );
        first += u64::from(game.variations);
    }
    ids
}

/// Settings of a ScienceWorld environment.
#[derive(Debug, Clone, PartialEq)]
pub struct SciWorldConfig {
    /// How each JVM is started.
    pub jvm: JvmOptions,
    /// Replace an action the simulator would not understand by the most similar valid
    /// action-object combination (as the Agent-R reference did). Off by default: it changes
    /// what the agent's actions mean and costs a call listing every valid action.
    pub snap_actions: bool,
}

impl SciWorldConfig {
    /// The defaults for `jar`: `java` from `PATH`, 1 GiB heap, 60 s to start, 30 s per call.
    pub fn new(jar: impl Into<PathBuf>) -> Self {
        SciWorldConfig {
            jvm: JvmOptions {
                java: PathBuf::from("java"),
                jar: jar.into(),
                heap_mib: 1024,
                startup_timeout: Duration::from_secs(60),
                call_timeout: Duration::from_secs(30),
            },
            snap_actions: false,
        }
    }
}

/// Whether environments load games with their gold path: set once a [`SciWorldExpert`]
/// exists, since the expert reads the gold actions the environments record (generating
/// them makes a load ten to twenty times slower).
static RECORD_GOLD: AtomicBool = AtomicBool::new(false);

/// The ScienceWorld environment: one JVM, started at the first reset.
#[derive(Debug)]
pub struct SciWorld {
    config: Arc<SciWorldConfig>,
    gateway: Option<Gateway>,
    /// The task of the running episode.
    episode: Option<TaskId>,
    /// Why the last episode ended without a reset: the simulator failed. Steps say so until
    /// the next reset.
    lost: Option<String>,
    /// The simulator's score after the last step (0 after a reset).
    score: i64,
}

impl Clone for SciWorld {
    /// A new environment with the same settings and its own JVM (started at its first reset).
    fn clone(&self) -> Self {
        SciWorld::new(SciWorldConfig::clone(&self.config))
    }
}

impl SciWorld {
    /// An environment with these settings; the JVM starts at the first reset.
    pub fn new(config: SciWorldConfig) -> Self {
        SciWorld {
            config: Arc::new(config),
            gateway: None,
            episode: None,
            lost: None,
            score: 0,
        }
    }

    /// An environment on the jar installed by `agentr setup`, after checking that it and a
    /// Java 11+ runtime are there.
    pub fn from_default_assets() -> Result<Self, EnvError> {
        let config = SciWorldConfig::new(default_jar(&assets::agentr_home()));
        check_setup(&config)?;
        Ok(SciWorld::new(config))
    }

    /// The settings.
    pub fn config(&self) -> &SciWorldConfig {
        &self.config
    }

    /// The running JVM's process id, if one is running.
    pub fn jvm_pid(&self) -> Option<u32> {
        self.gateway.as_ref().map(Gateway::pid)
    }

    /// The simulator's score after the last step, -100 to 100 (0 after a reset): what
    /// AgentGym's server reports, where [`Step::reward`] is its normalised form.
    pub fn score(&self) -> i64 {
        self.score
    }

    /// The task description of the running episode (the simulator's own text).
    pub fn task_description(&mut self) -> Result<String, EnvError> {
        self.require_episode()?;
        self.gateway_call(|g| g.call_str("getTaskDescription", &[]))
    }

    /// The simulator's action templates and the objects the agent can refer to now
    /// (AgentGym's `/action_hint`).
    pub fn action_hint(&mut self) -> Result<(Vec<String>, Vec<String>), EnvError> {
        self.require_episode()?;
        self.gateway_call(|g| {
            Ok((
                g.call_strings("getPossibleActions", &[])?,
                g.call_strings("getPossibleObjects", &[])?,
            ))
        })
    }

    /// The simulator's account of the task's goals and which are met (AgentGym's `/goals`).
    pub fn goal_progress(&mut self) -> Result<String, EnvError> {
        self.require_episode()?;
        self.gateway_call(|g| g.call_str("getGoalProgressStr", &[]))
    }

    fn require_episode(&self) -> Result<(), EnvError> {
        match (self.episode, &self.lost) {
            (Some(_), _) => Ok(()),
            (None, Some(failure)) => Err(EnvError::SimulatorFailed {
                env: NAME,
                message: format!(
                    "the episode ended when the simulator failed ({failure}); reset to start \
                     a fresh simulator"
                ),
            }),
            (None, None) => Err(EnvError::NotReset { env: NAME }),
        }
    }

    /// The gold action sequence of `task` (loads the game with its gold path; the current
    /// episode ends).
    pub fn gold_actions(&mut self, task: TaskId) -> Result<Vec<String>, EnvError> {
        self.episode = None;
        self.lost = None;
        let (game, variation) = known_game(task)?;
        self.load(game, variation, true)?;
        self.gateway_call(|g| g.call_strings("getGoldActionSequence", &[]))
    }

    /// The simulator's task names and variation counts, and the training variations of each
    /// (for checking [`GAMES`] against the jar).
    pub fn simulator_games(&mut self) -> Result<Vec<(String, u32, Vec<u32>)>, EnvError> {
        self.episode = None;
        self.lost = None;
        let names = self.gateway_call(|g| g.call_strings("getTaskNames", &[]))?;
        names
            .into_iter()
            .map(|name| {
                let variations = match self
                    .gateway_call(|g| g.call("getTaskMaxVariations", &[Arg::Str(&name)]))?
                {
                    Value::Int(n) => u32::try_from(n).unwrap_or(0),
                    other => return Err(protocol(format!("variation count {other:?}"))),
                };
                self.gateway_call(|g| {
                    g.call(
                        "load",
                        &[Arg::Str(&name), Arg::Int(0), Arg::Str(""), Arg::Bool(false)],
                    )
                })?;
                let train = self.gateway_call(|g| {
                    let list = match g.call("getVariationsTrain", &[])? {
                        Value::Ref(id) => id,
                        other => {
                            return Err(GatewayError::Protocol(format!("{other:?}")));
                        }
                    };
                    let text = match g.call_on(&list, "toString", &[])? {
                        Value::Str(s) => s,
                        other => return Err(GatewayError::Protocol(format!("{other:?}"))),
                    };
                    Ok(text)
                })?;
                let train = train
                    .trim_matches(['[', ']'])
                    .split(',')
                    .filter_map(|v| v.trim().parse().ok())
                    .collect();
                Ok((name, variations, train))
            })
            .collect()
    }

    /// Loads a game. A load may take as long as a JVM start (the startup timeout): a cold
    /// JVM generating a gold path needs seconds, where a step takes milliseconds.
    fn load(&mut self, game: &Game, variation: u32, gold: bool) -> Result<(), EnvError> {
        let (slow, fast) = (
            self.config.jvm.startup_timeout,
            self.config.jvm.call_timeout,
        );
        let error = self.gateway_call(|g| {
            g.set_call_timeout(slow)?;
            let answer = g.call_str(
                "load",
                &[
                    Arg::Str(game.name),
                    Arg::Int(i64::from(variation)),
                    Arg::Str(""),
                    Arg::Bool(gold),
                ],
            )?;
            g.set_call_timeout(fast)?;
            Ok(answer)
        })?;
        if error.is_empty() {
            Ok(())
        } else {
            Err(EnvError::SimulatorFailed {
                env: NAME,
                message: format!("loading {} variation {variation}: {error}", game.name),
            })
        }
    }

    /// Runs `f` on the JVM, starting one if none runs. A fatal failure drops the JVM (and
    /// kills it), so the next call starts afresh.
    fn gateway_call<T>(
        &mut self,
        f: impl FnOnce(&mut Gateway) -> Result<T, GatewayError>,
    ) -> Result<T, EnvError> {
        if self.gateway.is_none() {
            let gateway = Gateway::start(&self.config.jvm).map_err(simulator_failed)?;
            self.gateway = Some(gateway);
        }
        let Some(gateway) = self.gateway.as_mut() else {
            unreachable!("started above")
        };
        match f(gateway) {
            Ok(value) => Ok(value),
            Err(e) => {
                if e.is_fatal() {
                    self.gateway = None;
                    self.episode = None;
                    self.lost = Some(e.to_string());
                }
                Err(simulator_failed(e))
            }
        }
    }

    /// The score after a step and whether the episode ended: the simulator says so, or the
    /// moves made passed the Python package's step limit.
    fn read_score(&mut self) -> Result<(i64, bool), EnvError> {
        self.gateway_call(|g| {
            let score = match g.call("getScore", &[])? {
                Value::Double(s) => percent_of(s),
                other => return Err(GatewayError::Protocol(format!("score {other:?}"))),
            };
            let completed = match g.call("getCompleted", &[])? {
                Value::Bool(b) => b,
                other => return Err(GatewayError::Protocol(format!("completed {other:?}"))),
            };
            let moves = match g.call("getNumMoves", &[])? {
                Value::Int(n) => n,
                other => return Err(GatewayError::Protocol(format!("moves {other:?}"))),
            };
            Ok((score, completed || moves > STEP_LIMIT))
        })
    }

    fn valid_actions(&mut self) -> Result<Vec<String>, EnvError> {
        let json =
            self.gateway_call(|g| g.call_str("getValidActionObjectCombinationsJSON", &[]))?;
        snap::parse_valid_actions(&json).map_err(|message| EnvError::SimulatorFailed {
            env: NAME,
            message: format!("unreadable list of valid actions: {message}"),
        })
    }
}

fn simulator_failed(e: GatewayError) -> EnvError {
    EnvError::SimulatorFailed {
        env: NAME,
        message: e.to_string(),
    }
}

fn protocol(message: String) -> EnvError {
    simulator_failed(GatewayError::Protocol(message))
}

fn known_game(task: TaskId) -> Result<(&'static Game, u32), EnvError> {
    game_of(task).ok_or(EnvError::UnknownTask {
        env: NAME,
        task: task.0,
        count: task_count(),
    })
}

/// Where `agentr setup` puts the jar under `home`.
pub fn default_jar(home: &Path) -> PathBuf {
    assets::SCIWORLD_JAR.path(home).join("scienceworld.jar")
}

/// Checks that the jar exists and that `java` is version 11 or newer.
pub fn check_setup(config: &SciWorldConfig) -> Result<(), EnvError> {
    if !config.jvm.jar.is_file() {
        return Err(EnvError::MissingAssets {
            what: "the ScienceWorld simulator (scienceworld.jar)",
            path: config.jvm.jar.clone(),
            hint: SETUP_HINT.to_owned(),
        });
    }
    gateway::check_java(&config.jvm.java)?;
    Ok(())
}

/// An observation with the order of its lines, and of the comma-separated items within a
/// line, ignored: the simulator lists a room's objects in an order that can change between
/// loads of the same game.
pub fn listing_insensitive(observation: &str) -> Vec<Vec<&str>> {
    let mut lines: Vec<Vec<&str>> = observation
        .split('\n')
        .map(|line| {
            let mut items: Vec<&str> = line.split(", ").collect();
            items.sort_unstable();
            items
        })
        .collect();
    lines.sort_unstable();
    lines
}

/// Whether two observations are equal up to the order of lines and of comma-separated items
/// ([`listing_insensitive`]): ScienceWorld's [`Environment::same_observation`].
pub fn same_listing(a: &str, b: &str) -> bool {
    a == b || listing_insensitive(a) == listing_insensitive(b)
}

/// A step's observation as the environment reports it: trailing whitespace dropped, except
/// from a request to choose among numbered actions, which is kept verbatim.
pub fn clean_observation(observation: String) -> String {
    if asks_to_choose(&observation) {
        observation
    } else {
        observation.trim_end().to_owned()
    }
}

/// Moves after which the Python package (`ScienceWorldEnv`'s `envStepLimit`, 100 by default,
/// which AgentGym's server keeps) ends an episode: it is over once the simulator's move count
/// passes this (`wait1` counts two moves, `look around` none).
pub const STEP_LIMIT: i64 = 100;

/// The simulator's score in `[0, 1]` (or below 0) as the Python package reports it:
/// `int(round(100 * score))`, whose `round` takes halves to the even neighbour (0.125 -> 12).
pub fn percent_of(score: f64) -> i64 {
    (100.0 * score).round_ties_even() as i64
}

/// The reward and disaster flag of a simulator score: score / 100 with partial credit; a
/// negative score (a fatal mistake) is a disaster with reward 0.
pub fn reward_of_score(score: i64) -> (f64, bool) {
    if score < 0 {
        (0.0, true)
    } else {
        (score.min(100) as f64 / 100.0, false)
    }
}

/// Whether the simulator is waiting for the number of one of several matching actions.
fn asks_to_choose(observation: &str) -> bool {
    observation.starts_with("Ambiguous request")
}

impl Environment for SciWorld {
    fn name(&self) -> &'static str {
        NAME
    }

    fn instruction(&self) -> &str {
        INSTRUCTION
    }

    fn reset(&mut self, task: TaskId) -> Result<String, EnvError> {
        self.episode = None;
        self.lost = None;
        self.score = 0;
        let (game, variation) = known_game(task)?;
        // Generating a gold path makes a load ten to twenty times slower: once per task.
        let record_gold = RECORD_GOLD.load(Ordering::Relaxed) && !expert::knows_gold(task.0);
        self.load(game, variation, record_gold)?;
        let (description, look) = self.gateway_call(|g| {
            Ok((
                g.call_str("getTaskDescription", &[])?,
                g.call_str("step", &[Arg::Str("look around")])?,
            ))
        })?;
        let first = format!("{description}\n{look}");
        if record_gold {
            let gold = self.gateway_call(|g| g.call_strings("getGoldActionSequence", &[]))?;
            expert::record_gold(task.0, &first, gold);
        }
        self.episode = Some(task);
        Ok(first)
    }

    fn step(&mut self, action: &str) -> Result<Step, EnvError> {
        self.require_episode()?;
        let mut action = action.trim().to_owned();
        if self.config.snap_actions && !action.chars().all(|c| c.is_ascii_digit()) {
            let valid = self.valid_actions()?;
            if let Some(snapped) = snap_action(&action, &valid) {
                action = snapped.to_owned();
            }
        }
        let observation = self.gateway_call(|g| g.call_str("step", &[Arg::Str(&action)]))?;
        let (score, completed) = self.read_score()?;
        self.score = score;
        let (reward, disaster) = reward_of_score(score);
        Ok(Step {
            observation: clean_observation(observation),
            reward,
            done: completed || disaster,
            disaster,
        })
    }

    fn same_observation(&self, a: &str, b: &str) -> bool {
        same_listing(a, b)
    }

    fn is_rejection(&self, previous: &str, observation: &str) -> bool {
        is_rejection(previous, observation)
    }

    fn task_ids(&self, split: Split) -> Vec<TaskId> {
        match split {
            Split::Train => train_ids(),
            Split::Test => test_ids(),
            Split::All => (0..task_count()).map(TaskId).collect(),
        }
    }
}

/// Makes every ScienceWorld environment of this process load games with their gold path
/// from now on (what [`SciWorldExpert::new`] does).
pub fn record_gold_paths() {
    RECORD_GOLD.store(true, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_round_halves_to_even_as_python_does() {
        for (score, percent) in [
            (0.125, 12),
            (0.375, 38),
            (0.625, 62),
            (1.0, 100),
            (-1.0, -100),
        ] {
            assert_eq!(percent_of(score), percent, "{score}");
        }
    }

    #[test]
    fn ids_follow_agentgym() {
        assert_eq!(task_count(), 4639);
        assert_eq!(game_of(TaskId(0)).unwrap().0.name, "boil");
        assert_eq!(game_of(TaskId(29)).unwrap(), (&GAMES[0], 29));
        assert_eq!(game_of(TaskId(30)).unwrap(), (&GAMES[1], 0));
        assert_eq!(game_of(TaskId(4638)).unwrap(), (&GAMES[22], 9));
        assert_eq!(game_of(TaskId(4639)), None);
        let test = test_ids();
        assert_eq!(test.len(), 200);
        assert!(test.iter().all(|id| id.0 < 4639));
        let train = train_ids();
        assert!(train.iter().all(|id| !test.contains(id)));
        // Every training id is one of the simulator's training variations.
        assert!(train.iter().all(|&id| {
            let (game, variation) = game_of(id).unwrap();
            variation < game.train_variations
        }));
        assert_eq!(
            train.len() as u32,
            GAMES.iter().map(|g| g.train_variations).sum::<u32>()
                - test
                    .iter()
                    .filter(|&&id| {
                        let (g, v) = game_of(id).unwrap();
                        v < g.train_variations
                    })
                    .count() as u32
        );
    }

    #[test]
    fn observations_compare_without_listing_order() {
        let env = SciWorld::new(SciWorldConfig::new("unused.jar"));
        let a = "In it, you see:\n\ta cup (containing red paint)\n\ta table. On the table is: a jug, a cup.";
        let b = "In it, you see:\n\ta table. On the table is: a jug, a cup.\n\ta cup (containing red paint)";
        assert!(env.same_observation(a, b));
        assert!(env.same_observation("a, b", "b, a"));
        assert!(!env.same_observation(a, "In it, you see:\n\ta cup (containing blue paint)"));
        assert!(!env.same_observation("a\na", "a"));
    }

    proptest::proptest! {
        #[test]
        fn listing_order_never_matters_and_nothing_panics(lines in proptest::collection::vec("[a-c ,]{0,12}", 0..6), seed in 0u64..1000) {
            let env = SciWorld::new(SciWorldConfig::new("unused.jar"));
            let text = lines.join("\n");
            let mut shuffled = lines.clone();
            crate::rng::Rng::new(seed).shuffle(&mut shuffled);
            proptest::prop_assert!(env.same_observation(&text, &shuffled.join("\n")));
        }
    }

    #[test]
    fn a_missing_jar_or_java_is_a_clear_error() {
        let config = SciWorldConfig::new("/nonexistent/scienceworld.jar");
        let err = check_setup(&config).unwrap_err().to_string();
        assert!(
            err.contains("scienceworld.jar") && err.contains("agentr setup"),
            "{err}"
        );
        let mut env = SciWorld::new(config);
        assert!(matches!(
            env.step("look around"),
            Err(EnvError::NotReset { .. })
        ));
        assert!(matches!(
            env.reset(TaskId(99_999)),
            Err(EnvError::UnknownTask { .. })
        ));
        // The jar is missing: starting the JVM fails with a typed error, not a panic.
        assert!(matches!(
            env.reset(TaskId(0)),
            Err(EnvError::SimulatorFailed { .. })
        ));
    }
}
