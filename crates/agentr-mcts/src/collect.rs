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
/// each, atomically. Tasks whose file already exists are skipped, so a killed run resumes
/// where it stopped, losing at most the tasks in flight.
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
                    let Some(&task) = tasks.get(index) else {
                        break;
                    };
                    let outcome = run_task(env.as_mut(), policy, task, dir, config);
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

fn run_task<P: Policy + ?Sized>(
    env: &mut dyn Environment,
    policy: &P,
    task: TaskId,
    dir: &Path,
    config: &SearchConfig,
) -> TaskOutcome {
    let path = tree_path(dir, task);
    if path.exists() {
        return TaskOutcome::Skipped;
    }
    let tree: Result<Tree, SearchError> =
        search(env, policy, task, config).and_then(|tree| tree.save(&path).map(|()| tree));
    match tree {
        Ok(tree) => TaskOutcome::Searched {
            success: tree.has_success(),
            nodes: tree.nodes.len(),
        },
        Err(err) => TaskOutcome::Failed(err),
    }
}
