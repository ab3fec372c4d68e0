//! Two agents' evaluations of the same tasks, compared by pairs (success difference, 95%
//! bootstrap interval over tasks and seeds, exact McNemar p-value), and by what they wrote
//! (how many episodes are the same response for response, and where the others part).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agentr_envs::metrics::paired::{Comparison, Outcome, compare};
use agentr_envs::{Role, Sample};
use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::samples::read_samples;

/// Bootstrap resamples of every comparison agentr reports.
pub const BOOTSTRAP_DRAWS: usize = 10_000;

/// Seed of those resamples (fixed, so a report is reproducible from its episodes).
pub const BOOTSTRAP_SEED: u64 = 0x5eed_b007;

/// The episodes of an evaluation folder's `episodes.jsonl` (or of that file given directly)
/// with their success (reward 1), by task.
fn episodes_by_task(path: &Path) -> Result<BTreeMap<u64, (bool, Sample)>> {
    let file = match path.is_dir() {
        true => path.join("episodes.jsonl"),
        false => path.to_owned(),
    };
    let mut episodes = BTreeMap::new();
    for (index, sample) in read_samples(&file)?.into_iter().enumerate() {
        let task = sample.meta.get("task").and_then(|v| v.as_u64());
        let reward = sample.meta.get("reward").and_then(|v| v.as_f64());
        let (Some(task), Some(reward)) = (task, reward) else {
            bail!(
                "{}: episode {} has no meta.task or meta.reward",
                file.display(),
                index + 1
            );
        };
        if episodes.insert(task, (reward >= 1.0, sample)).is_some() {
            bail!(
                "{}: task {task} is evaluated twice; a paired comparison needs one episode per task",
                file.display()
            );
        }
    }
    Ok(episodes)
}

/// Success (reward 1) per task of an evaluation folder's `episodes.jsonl` (or of that file
/// given directly).
pub fn outcomes_by_task(path: &Path) -> Result<BTreeMap<u64, bool>> {
    Ok(episodes_by_task(path)?
        .into_iter()
        .map(|(task, (solved, _))| (task, solved))
        .collect())
}

/// How alike two evaluations of the same tasks wrote their episodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResponseAgreement {
    /// Tasks compared.
    pub tasks: usize,
    /// Episodes with the same responses, in the same order.
    pub identical: usize,
    /// For each other episode, its task and the first response (counted from 1, after the
    /// instruction's `Ok.`) that differs or that only one of the two wrote.
    pub first_differences: Vec<(u64, usize)>,
}

/// The model's responses of an episode, after the instruction's acknowledgement.
fn responses(sample: &Sample) -> Vec<&str> {
    sample
        .messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .skip(1)
        .map(|m| m.content.as_str())
        .collect()
}

/// Compares the responses of two evaluations of the same tasks, episode by episode.
pub fn response_agreement(baseline: &Path, candidate: &Path) -> Result<ResponseAgreement> {
    let before = episodes_by_task(baseline)?;
    let after = episodes_by_task(candidate)?;
    same_tasks(baseline, candidate, &before, &after)?;
    let mut agreement = ResponseAgreement {
        tasks: before.len(),
        identical: 0,
        first_differences: Vec::new(),
    };
    for (task, (_, episode)) in &before {
        let (ours, theirs) = (responses(episode), responses(&after[task].1));
        let same = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
        if same == ours.len() && same == theirs.len() {
            agreement.identical += 1;
        } else {
            agreement.first_differences.push((*task, same + 1));
        }
    }
    Ok(agreement)
}

/// The agreement in words: identical episodes, and where the others first differ.
pub fn describe_agreement(agreement: &ResponseAgreement) -> String {
    let mut text = format!(
        "responses identical in {} of {} episodes",
        agreement.identical, agreement.tasks
    );
    let mut at: Vec<usize> = agreement
        .first_differences
        .iter()
        .map(|&(_, k)| k)
        .collect();
    if !at.is_empty() {
        at.sort_unstable();
        text.push_str(&format!(
            "; the other {} first differ at response {} to {} (median {})",
            at.len(),
            at[0],
            at[at.len() - 1],
            at[at.len() / 2]
        ));
    }
    text
}

/// An error naming the tasks only one of two evaluations has, if any.
fn same_tasks<A, B>(
    baseline: &Path,
    candidate: &Path,
    before: &BTreeMap<u64, A>,
    after: &BTreeMap<u64, B>,
) -> Result<()> {
    fn only_in<A, B>(a: &BTreeMap<u64, A>, b: &BTreeMap<u64, B>) -> Vec<String> {
        a.keys()
            .filter(|t| !b.contains_key(t))
            .take(5)
            .map(u64::to_string)
            .collect()
    }
    let (missing, extra) = (only_in(before, after), only_in(after, before));
    if !missing.is_empty() || !extra.is_empty() {
        bail!(
            "{} and {} evaluated different tasks (only the first: [{}]; only the second: [{}]); \
             a paired comparison needs the same tasks",
            baseline.display(),
            candidate.display(),
            missing.join(", "),
            extra.join(", ")
        );
    }
    Ok(())
}

/// The pairs of two evaluations of the same tasks; an error names the tasks only one has.
pub fn pair(baseline: &Path, candidate: &Path) -> Result<Vec<Outcome>> {
    let before = outcomes_by_task(baseline)?;
    let after = outcomes_by_task(candidate)?;
    same_tasks(baseline, candidate, &before, &after)?;
    Ok(before
        .iter()
        .map(|(task, &baseline)| Outcome {
            baseline,
            candidate: after[task],
        })
        .collect())
}

/// Compares the candidate's evaluations with the baseline's, seed by seed in the given order.
pub fn compare_folders(baseline: &[PathBuf], candidate: &[PathBuf]) -> Result<Comparison> {
    if baseline.len() != candidate.len() {
        bail!(
            "{} baseline evaluations but {} candidate ones; give one of each per seed",
            baseline.len(),
            candidate.len()
        );
    }
    let seeds = baseline
        .iter()
        .zip(candidate)
        .map(|(b, c)| pair(b, c))
        .collect::<Result<Vec<_>>>()?;
    compare(&seeds, BOOTSTRAP_DRAWS, BOOTSTRAP_SEED).context("the evaluations hold no episode")
}

/// The comparison in words: the rates, the difference with its interval and p-value, and
/// whether it is beyond noise.
pub fn describe(comparison: &Comparison) -> String {
    let verdict = match comparison.significant() {
        true => "beyond noise (the interval excludes 0 and p < 0.05)",
        false => "within noise",
    };
    format!(
        "success {:.1}% -> {:.1}% over {} pairs ({} seed{}): {}; {verdict}",
        100.0 * comparison.baseline_rate,
        100.0 * comparison.candidate_rate,
        comparison.pairs,
        comparison.seeds,
        if comparison.seeds == 1 { "" } else { "s" },
        comparison.summary_line()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Writes `episodes` as `dir/episodes.jsonl`.
    fn write_jsonl(dir: &Path, episodes: impl Iterator<Item = serde_json::Value>) {
        std::fs::create_dir_all(dir).unwrap();
        let lines: Vec<String> = episodes.map(|e| e.to_string()).collect();
        std::fs::write(dir.join("episodes.jsonl"), lines.join("\n")).unwrap();
    }

    fn write_episodes(dir: &Path, rewards: &[(u64, f64)]) {
        write_jsonl(
            dir,
            rewards.iter().map(|(task, reward)| {
                json!({"messages": [], "meta": {"env": "textcraft", "task": task, "reward": reward}})
            }),
        );
    }

    #[test]
    fn evaluations_pair_by_task_and_refuse_other_task_sets() {
        let dir = std::env::temp_dir().join(format!("agentr-compare-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, b, c, d) = (dir.join("a"), dir.join("b"), dir.join("c"), dir.join("d"));
        write_episodes(&a, &[(3, 1.0), (1, 0.0), (2, 0.5)]);
        // Another order, and partial rewards are failures.
        write_episodes(&b, &[(2, 1.0), (3, 1.0), (1, 0.9)]);
        write_episodes(&c, &[(3, 1.0), (4, 0.0)]);
        write_episodes(&d, &[(3, 1.0), (3, 0.0)]);
        let pairs = pair(&a, &b).unwrap();
        let expected = [(false, false), (false, true), (true, true)];
        let expected: Vec<Outcome> = expected
            .iter()
            .map(|&(baseline, candidate)| Outcome {
                baseline,
                candidate,
            })
            .collect();
        assert_eq!(pairs, expected);
        let comparison =
            compare_folders(std::slice::from_ref(&a), std::slice::from_ref(&b)).unwrap();
        assert!((comparison.difference - 1.0 / 3.0).abs() < 1e-12);
        assert!(describe(&comparison).contains("33.3% -> 66.7%"));
        let error = pair(&a, &c).unwrap_err().to_string();
        assert!(error.contains("[1, 2]") && error.contains("[4]"), "{error}");
        let error = pair(&a, &d).unwrap_err().to_string();
        assert!(error.contains("twice"), "{error}");
        let error = compare_folders(&[a.clone(), a], &[b]).unwrap_err();
        assert!(error.to_string().contains("per seed"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn write_responses(dir: &Path, episodes: &[(u64, &[&str])]) {
        write_jsonl(
            dir,
            episodes.iter().map(|(task, responses)| {
                let mut messages = vec![
                    json!({"role": "user", "content": "instruction"}),
                    json!({"role": "assistant", "content": "Ok."}),
                    json!({"role": "user", "content": "goal"}),
                ];
                for response in *responses {
                    messages.push(json!({"role": "assistant", "content": response}));
                    messages.push(json!({"role": "user", "content": "observation"}));
                }
                json!({"messages": messages, "meta": {"task": task, "reward": 0.0}})
            }),
        );
    }

    #[test]
    fn responses_are_compared_episode_by_episode() {
        let dir = std::env::temp_dir().join(format!("agentr-responses-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, b) = (dir.join("a"), dir.join("b"));
        write_responses(
            &a,
            &[(1, &["x", "y"]), (2, &["x", "y"]), (3, &["x"]), (4, &["p"])],
        );
        // Task 2 differs at its second response, task 3 is longer on one side, task 4 at
        // its first.
        write_responses(
            &b,
            &[
                (4, &["q"]),
                (3, &["x", "z"]),
                (2, &["x", "w"]),
                (1, &["x", "y"]),
            ],
        );
        let agreement = response_agreement(&a, &b).unwrap();
        assert_eq!(
            agreement,
            ResponseAgreement {
                tasks: 4,
                identical: 1,
                first_differences: vec![(2, 2), (3, 2), (4, 1)],
            }
        );
        assert_eq!(
            describe_agreement(&agreement),
            "responses identical in 1 of 4 episodes; the other 3 first differ at response 1 \
             to 2 (median 2)"
        );
        let c = dir.join("c");
        write_responses(&c, &[(1, &["x"]), (9, &["x"])]);
        let error = response_agreement(&a, &c).unwrap_err().to_string();
        assert!(error.contains("different tasks"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
