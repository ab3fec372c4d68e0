//! Task selections written on the command line: `train`, `test[:50]`, `0..50`, `3,7,9`, or
//! several of these joined by commas.

use std::fmt;
use std::str::FromStr;

use crate::EnvError;
use crate::env::{Environment, Split, TaskId};

/// One part of a [`TaskSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// A split, optionally sliced like a Python list: `train[:50]`, `test[10:20]`.
    Split {
        split: Split,
        start: Option<usize>,
        end: Option<usize>,
    },
    /// Ids `start..end` (end excluded).
    Range { start: u64, end: u64 },
    /// One id.
    Id(u64),
}

/// Which tasks to run, resolved against an environment's splits.
///
/// ```
/// use agentr_envs::TaskSpec;
/// let spec: TaskSpec = "train[:2],0..3,7".parse().unwrap();
/// assert_eq!(spec.to_string(), "train[:2],0..3,7");
/// assert!("train[5".parse::<TaskSpec>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    parts: Vec<Part>,
    text: String,
}

impl TaskSpec {
    /// The task ids, in the order written, without repeats.
    ///
    /// # Errors
    ///
    /// [`EnvError::UnknownTask`] for an id or range past the environment's last task (ids
    /// never wrap around: `999999` is not goal `999999 mod 544`).
    pub fn resolve(&self, env: &dyn Environment) -> Result<Vec<TaskId>, EnvError> {
        let count = env
            .task_ids(Split::All)
            .iter()
            .map(|id| id.0 + 1)
            .max()
            .unwrap_or(0);
        let unknown = |task: u64| EnvError::UnknownTask {
            env: env.name(),
            task,
            count,
        };
        let mut ids: Vec<TaskId> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for part in &self.parts {
            let chosen: Vec<TaskId> = match part {
                Part::Split { split, start, end } => {
                    let all = env.task_ids(*split);
                    let end = end.unwrap_or(all.len()).min(all.len());
                    let start = start.unwrap_or(0).min(end);
                    all[start..end].to_vec()
                }
                Part::Range { start, end } if start < end && *end > count => {
                    return Err(unknown((*start).max(count)));
                }
                Part::Range { start, end } => (*start..*end).map(TaskId).collect(),
                Part::Id(id) if *id >= count => return Err(unknown(*id)),
                Part::Id(id) => vec![TaskId(*id)],
            };
            ids.extend(chosen.into_iter().filter(|id| seen.insert(*id)));
        }
        Ok(ids)
    }
}

fn parse_part(text: &str) -> Result<Part, String> {
    let text = text.trim();
    if let Some((start, end)) = text.split_once("..") {
        let parse = |s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| format!("`{text}`: range bounds must be task ids"))
        };
        let (start, end) = (parse(start)?, parse(end)?);
        if end < start {
            return Err(format!("`{text}`: the range ends before it starts"));
        }
        return Ok(Part::Range { start, end });
    }
    if let Ok(id) = text.parse::<u64>() {
        return Ok(Part::Id(id));
    }
    let (name, slice) = match text.split_once('[') {
        Some((name, rest)) => {
            let inner = rest
                .strip_suffix(']')
                .ok_or_else(|| format!("`{text}`: missing `]`"))?;
            (name, Some(inner))
        }
        None => (text, None),
    };
    let split = Split::from_str(name.trim())
        .map_err(|e| format!("`{text}`: {e}, a range like 0..50 or a task id"))?;
    let (start, end) = match slice {
        None => (None, None),
        Some(inner) => {
            let (a, b) = inner
                .split_once(':')
                .ok_or_else(|| format!("`{text}`: slices look like [start:end]"))?;
            let bound = |s: &str| -> Result<Option<usize>, String> {
                let s = s.trim();
                if s.is_empty() {
                    Ok(None)
                } else {
                    s.parse()
                        .map(Some)
                        .map_err(|_| format!("`{text}`: slice bounds must be numbers"))
                }
            };
            (bound(a)?, bound(b)?)
        }
    };
    Ok(Part::Split { split, start, end })
}

impl FromStr for TaskSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(parse_part)
            .collect::<Result<Vec<_>, _>>()?;
        if parts.is_empty() {
            return Err("empty task selection".into());
        }
        Ok(TaskSpec {
            parts,
            text: s.trim().to_owned(),
        })
    }
}

impl fmt::Display for TaskSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EnvError;
    use crate::env::Step;
    use proptest::prelude::{any, proptest};

    struct Ten;
    impl Environment for Ten {
        fn name(&self) -> &'static str {
            "ten"
        }
        fn instruction(&self) -> &str {
            ""
        }
        fn reset(&mut self, _: TaskId) -> Result<String, EnvError> {
            Ok(String::new())
        }
        fn step(&mut self, _: &str) -> Result<Step, EnvError> {
            Err(EnvError::NotReset { env: "ten" })
        }
        fn is_rejection(&self, _: &str, _: &str) -> bool {
            false
        }
        fn task_ids(&self, split: Split) -> Vec<TaskId> {
            let ids = match split {
                Split::Test => vec![1, 3, 5],
                Split::Train => vec![0, 2, 4, 6, 7, 8, 9],
                Split::All => (0..10).collect(),
            };
            ids.into_iter().map(TaskId).collect()
        }
    }

    fn ids(spec: &str) -> Vec<u64> {
        spec.parse::<TaskSpec>()
            .unwrap()
            .resolve(&Ten)
            .unwrap()
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// Ids never wrap around: one past the last task is refused, with the range.
    #[test]
    fn ids_past_the_last_task_are_refused() {
        for (spec, task) in [
            ("10", 10),
            ("999999", 999_999),
            ("5..11", 10),
            ("12..14", 12),
        ] {
            let err = spec.parse::<TaskSpec>().unwrap().resolve(&Ten).unwrap_err();
            assert!(
                matches!(err, EnvError::UnknownTask { env: "ten", task: t, count: 10 } if t == task),
                "{spec}: {err:?}"
            );
            assert!(err.to_string().contains("ids run from 0 to 9"), "{err}");
        }
        assert_eq!(
            ids("9,0..10"),
            (0..10).rev().take(1).chain(0..9).collect::<Vec<_>>()
        );
    }

    #[test]
    fn specs_resolve() {
        assert_eq!(ids("test"), [1, 3, 5]);
        assert_eq!(ids("train[:2]"), [0, 2]);
        assert_eq!(ids("train[5:]"), [8, 9]);
        assert_eq!(ids("train[2:4]"), [4, 6]);
        assert_eq!(ids("train[:100]").len(), 7);
        assert_eq!(ids("0..3"), [0, 1, 2]);
        assert_eq!(ids("7, 3,7 ,test"), [7, 3, 1, 5]);
        assert_eq!(ids("all"), (0..10).collect::<Vec<_>>());
        assert_eq!(ids("20..20"), Vec::<u64>::new());
    }

    #[test]
    fn bad_specs_explain_themselves() {
        for (spec, needle) in [
            ("", "empty"),
            ("dev", "unknown split"),
            ("train[1", "missing `]`"),
            ("train[1]", "[start:end]"),
            ("train[a:]", "numbers"),
            ("5..2", "ends before"),
            ("x..2", "task ids"),
        ] {
            let err = spec.parse::<TaskSpec>().unwrap_err();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in any::<String>()) {
            if let Ok(spec) = text.parse::<TaskSpec>() {
                let _ = spec.resolve(&Ten);
            }
        }
    }
}
