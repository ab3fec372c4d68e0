//! Searching many tasks with several workers, one tree file per task.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use agentr_envs::{Environment, TaskId};

use crate::{Policy, SearchConfig, SearchError, Tree, search};

/// Where the tree of `task` is written under `dir`.
pub fn tree_path(dir: &Path, task: TaskId) -> PathBuf {
    dir.join(format!("{task}.json"))
}

/// What happened to one task of a collection run.
#[derive(Debug)]
pub enum TaskOutcome {
    /// A tree file from an earlier run was already there; it was not searched again.
    Skipped,
    /// The task was searched and its tree written.
    Searched {
        /// Whether some leaf reached full reward.
        success: bool,
        /// Number of nodes in the tree.
        nodes: usize,
        /// Why a file already there was searched again and replaced: it did not load as a
        /// valid tree.
        replaced: Option<String>,
    },
    /// The search failed; nothing was written for this task.
    Failed(SearchError),
}

/// One finished task, reported as it completes (from the worker's thread).
#[derive(Debug)]
pub struct TaskReport {
    /// The task.
    pub task: TaskId,
    /// What happened.
    pub outcome: TaskOutcome,
}

/// Searches every task of `tasks` with `workers` threads and writes `dir/<task>.json` for
/// each, atomically and durably. A killed run resumes where it stopped, losing at most the
/// tasks in flight: a task whose file already holds a valid tree grown with the same settings
/// and policy ([`Policy::describe`]) is skipped, one whose file does not load as a valid tree is
/// searched again, and a valid tree of other settings or another policy stops the run before
/// any search ([`SearchError::OtherSettings`]), so one folder never mixes two collections.
///
/// Each worker owns an environment made by `make_env`; the policy is shared. The trees do not
/// depend on the number of workers: every task's search is seeded from the config seed and
/// the task id alone. A failing task is reported through `on_done` and does not stop the
/// others.
pub fn collect<P, F>(
    tasks: &[TaskId],
    dir: &Path,
    workers: usize,
    config: &SearchConfig,
    policy: &P,
    make_env: F,
    on_done: &(dyn Fn(TaskReport) + Sync),
) -> Result<(), SearchError>
where
    P: Policy + ?Sized,
    F: Fn() -> Result<Box<dyn Environment>, SearchError> + Sync,
{
    config.validate()?;
    std::fs::create_dir_all(dir).map_err(|source| SearchError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let policy_name = policy.describe();
    let existing = tasks
        .iter()
        .map(|&task| existing(&tree_path(dir, task), config, policy_name.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<SearchError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1).min(tasks.len().max(1)) {
            scope.spawn(|| {
                let mut env = match make_env() {
                    Ok(env) => env,
                    Err(err) => {
                        let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        slot.get_or_insert(err);
                        return;
                    }
                };
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let (Some(&task), Some(found)) = (tasks.get(index), existing.get(index)) else {
                        break;
                    };
                    let outcome = run_task(env.as_mut(), policy, task, dir, config, found);
                    on_done(TaskReport { task, outcome });
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// What a run's folder already holds for a task.
#[derive(Debug)]
enum Existing {
    /// No file.
    Nothing,
    /// A valid tree of this run's settings and policy.
    Finished,
    /// A file that does not load as a valid tree, and why.
    Unreadable(String),
}

/// Checks the file of a task before the run: a valid tree must have been grown with `config`
/// and the policy described as `policy`.
fn existing(
    path: &Path,
    config: &SearchConfig,
    policy: Option<&str>,
) -> Result<Existing, SearchError> {
    if !path.exists() {
        return Ok(Existing::Nothing);
    }
    let tree = match Tree::load(path) {
        Ok(tree) => tree,
        Err(err) => return Ok(Existing::Unreadable(err.to_string())),
    };
    let mut differences = config_differences(&tree.config, config);
    if tree.policy.as_deref() != policy {
        let show = |name: Option<&str>| name.unwrap_or("(not described)").to_owned();
        differences.push(format!(
            "policy: {} in the file, {} in this run",
            show(tree.policy.as_deref()),
            show(policy)
        ));
    }
    if differences.is_empty() {
        Ok(Existing::Finished)
    } else {
        Err(SearchError::OtherSettings {
            path: path.to_owned(),
            differences,
        })
    }
}

/// The settings that differ, each as `name: <in the file> in the file, <now> in this run`.
fn config_differences(recorded: &SearchConfig, now: &SearchConfig) -> Vec<String> {
    let as_map = |config: &SearchConfig| match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (recorded, now) = (as_map(recorded), as_map(now));
    now.iter()
        .filter(|(key, value)| recorded.get(*key) != Some(*value))
        .map(|(key, value)| {
            let before = recorded
                .get(key)
                .map_or_else(|| "(absent)".to_owned(), ToString::to_string);
            format!("{key}: {before} in the file, {value} in this run")
        })
        .collect()
}

fn run_task<P: Policy + ?Sized>(
    env: &mut dyn Environment,
    policy: &P,
    task: TaskId,
    dir: &Path,
    config: &SearchConfig,
    existing: &Existing,
) -> TaskOutcome {
    let replaced = match existing {
        Existing::Finished => return TaskOutcome::Skipped,
        Existing::Nothing => None,
        Existing::Unreadable(reason) => Some(reason.clone()),
    };
    let path = tree_path(dir, task);
    let tree: Result<Tree, SearchError> =
        search(env, policy, task, config).and_then(|tree| tree.save(&path).map(|()| tree));
    match tree {
        Ok(tree) => TaskOutcome::Searched {
            success: tree.has_success(),
            nodes: tree.nodes.len(),
            replaced,
        },
        Err(err) => TaskOutcome::Failed(err),
    }
}
