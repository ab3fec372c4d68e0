//! Choosing (good, bad) leaf pairs from a search tree.

use agentr_envs::rng::Rng;
use agentr_mcts::{NodeId, Tree};
use serde::{Deserialize, Serialize};

/// Which reward test makes a (good, bad) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairCondition {
    /// The paper's: `r_bad < beta < r_good` and `r_good > alpha` (`>=` when alpha is 1).
    #[default]
    Paper,
    /// The reference code's: `r_good - r_bad > beta` and `r_good > alpha` (`>=` when alpha is 1).
    Gap,
}

/// The paper's alpha for self-training iteration `iteration` (1-based): 0.5, 0.7, then 1.0.
pub fn alpha_for_iteration(iteration: usize) -> f64 {
    match iteration {
        0 | 1 => 0.5,
        2 => 0.7,
        _ => 1.0,
    }
}

/// The thresholds of pairing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// A good leaf must beat this reward.
    pub alpha: f64,
    /// The reward that separates good from bad.
    pub beta: f64,
    /// Which test to apply.
    pub condition: PairCondition,
}

impl Thresholds {
    /// Whether `reward` counts as a good trajectory: above alpha, or at least alpha when alpha
    /// is 1 (nothing is above 1).
    pub fn is_good(&self, reward: f64) -> bool {
        if self.alpha >= 1.0 {
            reward >= self.alpha
        } else {
            reward > self.alpha
        }
    }

    /// Whether (`r_good`, `r_bad`) makes a pair.
    pub fn pairs(&self, r_good: f64, r_bad: f64) -> bool {
        self.is_good(r_good)
            && match self.condition {
                PairCondition::Paper => r_bad < self.beta && self.beta < r_good,
                PairCondition::Gap => r_good - r_bad > self.beta,
            }
    }
}

/// A good and a bad leaf of the same tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// The successful leaf.
    pub good: NodeId,
    /// The failed leaf.
    pub bad: NodeId,
}

/// The pairs of one tree after shuffling and capping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TreePairs {
    /// Kept pairs, in shuffled order.
    pub pairs: Vec<Pair>,
    /// Pairs that qualified but were dropped by the per-tree cap.
    pub dropped: usize,
}

/// Every qualifying pair of `tree`, shuffled with `(seed, task)`, at most `cap` kept.
/// A tree without any reward (root value 0) gives nothing.
pub fn find_pairs(
    tree: &Tree,
    thresholds: &Thresholds,
    seed: u64,
    cap: Option<usize>,
) -> TreePairs {
    if tree.root().value <= 0.0 {
        return TreePairs::default();
    }
    let leaves: Vec<(NodeId, f64)> = tree
        .leaves()
        .into_iter()
        .map(|id| (id, tree.leaf_reward(id)))
        .collect();
    let mut pairs: Vec<Pair> = Vec::new();
    for &(good, r_good) in &leaves {
        for &(bad, r_bad) in &leaves {
            if good != bad && thresholds.pairs(r_good, r_bad) {
                pairs.push(Pair { good, bad });
            }
        }
    }
    Rng::from_parts(&[seed, tree.task.0]).shuffle(&mut pairs);
    let keep = cap.unwrap_or(usize::MAX).min(pairs.len());
    let dropped = pairs.len() - keep;
    pairs.truncate(keep);
    TreePairs { pairs, dropped }
}

/// The deepest node that both `a` and `b` descend from (or are).
pub fn lowest_common_ancestor(tree: &Tree, a: NodeId, b: NodeId) -> NodeId {
    let path_a = tree.path_to_root(a);
    let path_b = tree.path_to_root(b);
    path_a
        .iter()
        .zip(&path_b)
        .take_while(|(x, y)| x == y)
        .last()
        .map_or(0, |(x, _)| *x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_and_gap_conditions() {
        let paper = Thresholds {
            alpha: 0.5,
            beta: 0.2,
            condition: PairCondition::Paper,
        };
        assert!(paper.pairs(1.0, 0.0));
        assert!(paper.pairs(0.6, 0.1));
        assert!(!paper.pairs(0.5, 0.0), "r_good must exceed alpha");
        assert!(!paper.pairs(1.0, 0.2), "r_bad must be below beta");
        let gap = Thresholds {
            condition: PairCondition::Gap,
            ..paper
        };
        assert!(gap.pairs(1.0, 0.5));
        assert!(!gap.pairs(0.6, 0.5));
        let strict = Thresholds {
            alpha: 1.0,
            ..paper
        };
        assert!(strict.pairs(1.0, 0.0), "alpha = 1 means r_good >= 1");
        assert!(!strict.pairs(0.99, 0.0));
        assert_eq!([1, 2, 3, 4].map(alpha_for_iteration), [0.5, 0.7, 1.0, 1.0]);
    }
}
