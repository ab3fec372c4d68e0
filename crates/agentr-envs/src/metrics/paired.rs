//! Paired comparison of two agents on the same tasks: the success difference with a bootstrap
//! interval, and McNemar's exact test.
//!
//! Two evaluations of the same test goals are not independent samples: most goals are solved by
//! both or by neither, and only the goals where they disagree carry information. So the
//! comparison works on pairs (one per task and seed):
//!
//! * the difference is the candidate's success rate minus the baseline's, over all pairs;
//! * its 95% interval is a percentile bootstrap that resamples seeds, and tasks within each
//!   drawn seed, with replacement (a two-level bootstrap; with one seed it is the ordinary
//!   bootstrap over tasks). It reflects how much the difference depends on which goals and
//!   which seeds happened to be drawn;
//! * the p-value is McNemar's exact test: under the null hypothesis that neither agent is
//!   better, each discordant pair (solved by exactly one of the two) is the candidate's with
//!   probability 1/2, so the count is binomial. Pairs of several seeds are pooled, which treats
//!   the seeds' episodes of one goal as independent trials (they share the goal, so this is a
//!   little optimistic when goals differ much in difficulty; the bootstrap interval, which
//!   resamples seeds and goals, is the more conservative of the two).
//!
//! ```
//! use agentr_envs::metrics::paired::{Outcome, compare};
//!
//! // One seed, five tasks: the candidate solves two goals the baseline failed, and loses none.
//! let seed0 = [(false, true), (false, true), (true, true), (false, false), (true, true)]
//!     .map(|(baseline, candidate)| Outcome { baseline, candidate });
//! let comparison = compare(&[seed0.to_vec()], 2000, 7).unwrap();
//! assert_eq!(comparison.difference, 0.4);
//! assert_eq!((comparison.only_candidate, comparison.only_baseline), (2, 0));
//! assert_eq!(comparison.mcnemar_p, 0.5); // two discordant pairs prove nothing
//! assert!(comparison.interval.0 <= 0.4 && 0.4 <= comparison.interval.1);
//! ```

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Whether the baseline and the candidate solved one task (in one seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The baseline solved it.
    pub baseline: bool,
    /// The candidate solved it.
    pub candidate: bool,
}

impl Outcome {
    /// +1 when only the candidate solved the task, -1 when only the baseline did, else 0.
    fn gain(self) -> i64 {
        i64::from(self.candidate) - i64::from(self.baseline)
    }
}

/// The comparison of a candidate with a baseline over paired outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Seeds compared.
    pub seeds: usize,
    /// Pairs over all seeds (tasks x seeds when every seed has the same tasks).
    pub pairs: usize,
    /// The baseline's success rate over all pairs, as a share.
    pub baseline_rate: f64,
    /// The candidate's success rate over all pairs, as a share.
    pub candidate_rate: f64,
    /// `candidate_rate - baseline_rate`.
    pub difference: f64,
    /// 95% percentile-bootstrap interval of the difference (seeds, then tasks, resampled).
    pub interval: (f64, f64),
    /// Pairs only the candidate solved.
    pub only_candidate: usize,
    /// Pairs only the baseline solved.
    pub only_baseline: usize,
    /// Two-sided exact McNemar p-value (1 when there is no discordant pair).
    pub mcnemar_p: f64,
    /// Bootstrap resamples drawn.
    pub bootstrap_draws: usize,
    /// Seed of the bootstrap.
    pub bootstrap_seed: u64,
}

impl Comparison {
    /// Whether the interval excludes 0 and the exact test rejects equality at 5%: the
    /// difference is beyond noise by both measures.
    pub fn significant(&self) -> bool {
        let excludes_zero = self.interval.0 > 0.0 || self.interval.1 < 0.0;
        excludes_zero && self.mcnemar_p < 0.05
    }

    /// One line for reports, e.g. `+12.0 points [+3.0, +21.0], 14 vs 2 discordant, McNemar
    /// p = 0.0042`.
    pub fn summary_line(&self) -> String {
        format!(
            "{:+.1} points [{:+.1}, {:+.1}], {} vs {} discordant, McNemar {}",
            100.0 * self.difference,
            100.0 * self.interval.0,
            100.0 * self.interval.1,
            self.only_candidate,
            self.only_baseline,
            p_value_text(self.mcnemar_p)
        )
    }
}

/// A p-value with two significant digits: `p = 0.031`, or `p < 0.0001` below that.
pub fn p_value_text(p: f64) -> String {
    match p {
        p if p < 1e-4 => "p < 0.0001".to_owned(),
        p if p >= 0.1 => format!("p = {p:.2}"),
        p if p >= 0.01 => format!("p = {p:.3}"),
        p => format!("p = {p:.4}"),
    }
}

/// Compares candidate and baseline on `seeds` (each seed's paired outcomes, by task) with
/// `draws` bootstrap resamples seeded by `seed`. `None` when there is no pair at all. Seeds
/// without pairs are left out.
pub fn compare(seeds: &[Vec<Outcome>], draws: usize, seed: u64) -> Option<Comparison> {
    let seeds: Vec<&[Outcome]> = seeds
        .iter()
        .filter(|s| !s.is_empty())
        .map(Vec::as_slice)
        .collect();
    let pairs: usize = seeds.iter().map(|s| s.len()).sum();
    if pairs == 0 {
        return None;
    }
    let all = || seeds.iter().flat_map(|s| s.iter().copied());
    let count = |keep: fn(&Outcome) -> bool| all().filter(keep).count();
    let only_candidate = count(|o| o.candidate && !o.baseline);
    let only_baseline = count(|o| o.baseline && !o.candidate);
    let baseline_rate = count(|o| o.baseline) as f64 / pairs as f64;
    let candidate_rate = count(|o| o.candidate) as f64 / pairs as f64;
    Some(Comparison {
        seeds: seeds.len(),
        pairs,
        baseline_rate,
        candidate_rate,
        difference: (only_candidate as f64 - only_baseline as f64) / pairs as f64,
        interval: bootstrap_interval(&seeds, draws, seed, 0.95),
        only_candidate,
        only_baseline,
        mcnemar_p: mcnemar_exact(only_candidate, only_baseline),
        bootstrap_draws: draws,
        bootstrap_seed: seed,
    })
}

/// The `level` percentile interval of the success difference under the two-level bootstrap
/// (a seed drawn with replacement, then that seed's tasks with replacement). With no draws,
/// the interval is the observed difference alone.
fn bootstrap_interval(seeds: &[&[Outcome]], draws: usize, seed: u64, level: f64) -> (f64, f64) {
    let gains: Vec<Vec<i64>> = seeds
        .iter()
        .map(|s| s.iter().map(|o| o.gain()).collect())
        .collect();
    let observed = {
        let total: i64 = gains.iter().flatten().sum();
        let pairs: usize = gains.iter().map(Vec::len).sum();
        total as f64 / pairs as f64
    };
    if draws == 0 {
        return (observed, observed);
    }
    let mut rng = Rng::from_parts(&[seed, 0xb007]);
    let mut differences: Vec<f64> = (0..draws)
        .map(|_| {
            let (mut total, mut pairs) = (0i64, 0usize);
            for _ in 0..gains.len() {
                let drawn = &gains[rng.index(gains.len())];
                for _ in 0..drawn.len() {
                    total += drawn[rng.index(drawn.len())];
                }
                pairs += drawn.len();
            }
            total as f64 / pairs as f64
        })
        .collect();
    differences.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    (
        quantile(&differences, tail),
        quantile(&differences, 1.0 - tail),
    )
}

/// The `q` quantile of sorted `values`, interpolated linearly between order statistics.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let weight = position - below as f64;
    sorted[below] + (sorted[above] - sorted[below]) * weight
}

/// Two-sided exact McNemar p-value for `b` and `c` discordant pairs: twice the binomial
/// (n = b + c, 1/2) probability of a count as extreme as the smaller one, capped at 1.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let smaller = b.min(c);
    // ln C(n, k) built up term by term; the tail summed in log space (n can be thousands).
    let ln_half_n = n as f64 * 0.5f64.ln();
    let mut ln_choose = 0.0f64;
    let mut terms = Vec::with_capacity(smaller + 1);
    for k in 0..=smaller {
        if k > 0 {
            ln_choose += ((n - k + 1) as f64).ln() - (k as f64).ln();
        }
        terms.push(ln_choose + ln_half_n);
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tail = max.exp() * terms.iter().map(|t| (t - max).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest};

    fn outcomes(pairs: &[(bool, bool)]) -> Vec<Outcome> {
        pairs
            .iter()
            .map(|&(baseline, candidate)| Outcome {
                baseline,
                candidate,
            })
            .collect()
    }

    #[test]
    fn mcnemar_matches_hand_computed_binomial_tails() {
        // n = 5, all one way: 2 * (1/2)^5.
        assert_eq!(mcnemar_exact(0, 5), 0.0625);
        assert_eq!(mcnemar_exact(5, 0), 0.0625);
        // n = 10, 1 vs 9: 2 * (1 + 10) / 1024.
        assert!((mcnemar_exact(1, 9) - 22.0 / 1024.0).abs() < 1e-15);
        // n = 20, 4 vs 16: 2 * (1 + 20 + 190 + 1140 + 4845) / 2^20.
        let expected = 2.0 * 6196.0 / 1_048_576.0;
        assert!((mcnemar_exact(4, 16) - expected).abs() < 1e-15);
        // Balanced: capped at 1.
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(0, 1), 1.0);
        // Thousands of pairs do not underflow to nonsense.
        let p = mcnemar_exact(900, 1100);
        assert!(p > 0.0 && p < 1e-5, "{p}");
        assert_eq!(mcnemar_exact(5000, 5000), 1.0);
    }

    #[test]
    fn the_bootstrap_interval_of_hand_computed_cases() {
        // Every pair gained: every resample has difference 1.
        let all = compare(&[outcomes(&[(false, true); 4])], 500, 1).unwrap();
        assert_eq!((all.difference, all.interval), (1.0, (1.0, 1.0)));
        assert_eq!(all.mcnemar_p, 0.125);
        // One gain and one tie: resampled differences are 0, 1/2 or 1 with chances 1/4, 1/2,
        // 1/4, so the 95% interval spans 0 to 1.
        let half = compare(&[outcomes(&[(false, true), (false, false)])], 4000, 2).unwrap();
        assert_eq!(half.difference, 0.5);
        assert_eq!(half.interval, (0.0, 1.0));
        assert_eq!((half.baseline_rate, half.candidate_rate), (0.0, 0.5));
        // With no draws the interval is the observed difference.
        let none = compare(&[outcomes(&[(true, false), (false, false)])], 0, 2).unwrap();
        assert_eq!(none.interval, (-0.5, -0.5));
    }

    #[test]
    fn seeds_are_pooled_for_the_counts_and_resampled_for_the_interval() {
        // Seed 0 gains on 2 of 4 tasks; seed 1 is a tie everywhere.
        let seed0 = outcomes(&[(false, true), (false, true), (true, true), (false, false)]);
        let seed1 = outcomes(&[(true, true), (false, false), (true, true), (false, false)]);
        let both = compare(&[seed0.clone(), seed1, Vec::new()], 4000, 3).unwrap();
        assert_eq!((both.seeds, both.pairs), (2, 8));
        assert_eq!(both.difference, 0.25);
        assert_eq!((both.only_candidate, both.only_baseline), (2, 0));
        assert_eq!(both.mcnemar_p, 0.5);
        // Resampling the seeds can draw seed 1 twice (difference 0) or seed 0 twice with both
        // gains (difference 0.5 or more), so the interval reaches both.
        assert_eq!(both.interval.0, 0.0);
        assert!(both.interval.1 >= 0.5, "{:?}", both.interval);
        // One seed alone is the ordinary bootstrap over its tasks.
        let one = compare(&[seed0], 4000, 3).unwrap();
        assert_eq!(one.difference, 0.5);
        assert!(!one.significant());
        assert!(compare(&[], 10, 0).is_none());
        assert!(compare(&[Vec::new()], 10, 0).is_none());
    }

    #[test]
    fn a_large_consistent_gain_is_significant() {
        let mut seed = outcomes(&[(false, true); 30]);
        seed.extend(outcomes(&[(true, true); 40]));
        seed.extend(outcomes(&[(false, false); 30]));
        let comparison = compare(&[seed], 2000, 4).unwrap();
        assert!(comparison.significant());
        assert!(comparison.interval.0 > 0.15, "{:?}", comparison.interval);
        assert_eq!(
            comparison.summary_line(),
            format!(
                "+30.0 points [{:+.1}, {:+.1}], 30 vs 0 discordant, McNemar p < 0.0001",
                100.0 * comparison.interval.0,
                100.0 * comparison.interval.1
            )
        );
    }

    #[test]
    fn p_values_are_written_with_two_significant_digits() {
        assert_eq!(p_value_text(1.0), "p = 1.00");
        assert_eq!(p_value_text(0.0634), "p = 0.063");
        assert_eq!(p_value_text(0.0021), "p = 0.0021");
        assert_eq!(p_value_text(0.00001), "p < 0.0001");
    }

    proptest! {
        #[test]
        fn identical_runs_differ_by_nothing(
            seeds in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 1..30), 1..4),
            seed in any::<u64>(),
        ) {
            let same: Vec<Vec<Outcome>> = seeds
                .iter()
                .map(|s| s.iter().map(|&x| Outcome { baseline: x, candidate: x }).collect())
                .collect();
            let comparison = compare(&same, 200, seed).unwrap();
            prop_assert_eq!(comparison.difference, 0.0);
            prop_assert_eq!(comparison.interval, (0.0, 0.0));
            prop_assert_eq!(comparison.mcnemar_p, 1.0);
            prop_assert!(!comparison.significant());
        }

        #[test]
        fn swapping_the_runs_mirrors_the_comparison(
            seeds in proptest::collection::vec(
                proptest::collection::vec((any::<bool>(), any::<bool>()), 0..25), 0..4),
            seed in any::<u64>(),
        ) {
            let forward: Vec<Vec<Outcome>> = seeds.iter().map(|s| outcomes(s)).collect();
            let backward: Vec<Vec<Outcome>> = seeds
                .iter()
                .map(|s| s.iter().map(|&(a, b)| Outcome { baseline: b, candidate: a }).collect())
                .collect();
            match (compare(&forward, 100, seed), compare(&backward, 100, seed)) {
                (Some(f), Some(b)) => {
                    prop_assert_eq!(f.difference, -b.difference);
                    prop_assert_eq!(f.mcnemar_p, b.mcnemar_p);
                    prop_assert!((0.0..=1.0).contains(&f.mcnemar_p));
                    prop_assert!(-1.0 <= f.interval.0 && f.interval.0 <= f.interval.1 && f.interval.1 <= 1.0);
                    // The same resamples, mirrored.
                    prop_assert!((f.interval.0 + b.interval.1).abs() < 1e-12);
                    prop_assert!((f.interval.1 + b.interval.0).abs() < 1e-12);
                }
                (None, None) => prop_assert!(seeds.iter().all(Vec::is_empty)),
                _ => prop_assert!(false, "one direction compared and the other did not"),
            }
        }
    }
}
