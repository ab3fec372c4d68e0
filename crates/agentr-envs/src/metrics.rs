//! Episode metrics of evaluation: back-to-back repetition of action sequences (loops) and the
//! paired comparison of two agents on the same tasks ([`paired`]). Rejected actions are each
//! environment's own rule ([`crate::Environment::is_rejection`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod paired;

/// For each length `1..=max_len`, how many times a run of that many actions is immediately
/// repeated (`a b a b` counts once for length 2; `a a a` twice for length 1).
pub fn back_to_back_repeats(actions: &[String], max_len: usize) -> BTreeMap<usize, usize> {
    (1..=max_len)
        .map(|len| {
            let count = (0..actions.len().saturating_sub(2 * len - 1))
                .filter(|&i| actions[i..i + len] == actions[i + len..i + 2 * len])
                .count();
            (len, count)
        })
        .collect()
}

/// Repetition statistics over many episodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopStats {
    /// Per run length: mean back-to-back repeats per episode.
    pub mean_repeats: BTreeMap<usize, f64>,
    /// Per run length: share of episodes with at least one repeat.
    pub episodes_with_repeats: BTreeMap<usize, f64>,
}

impl LoopStats {
    /// Statistics of the episodes' action lists, for run lengths `1..=max_len`.
    pub fn of(episodes: &[Vec<String>], max_len: usize) -> Self {
        let mut stats = LoopStats::default();
        let n = episodes.len().max(1) as f64;
        for actions in episodes {
            for (len, count) in back_to_back_repeats(actions, max_len) {
                *stats.mean_repeats.entry(len).or_default() += count as f64 / n;
                if count > 0 {
                    *stats.episodes_with_repeats.entry(len).or_default() += 1.0 / n;
                }
            }
        }
        for len in 1..=max_len {
            stats.episodes_with_repeats.entry(len).or_default();
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, proptest};

    fn actions(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn repeats_are_counted_back_to_back() {
        let counts = back_to_back_repeats(&actions("a a a b c b c d"), 3);
        assert_eq!(counts[&1], 2);
        assert_eq!(counts[&2], 1);
        assert_eq!(counts[&3], 0);
        assert!(back_to_back_repeats(&[], 3).values().all(|&c| c == 0));
        let stats = LoopStats::of(&[actions("a a"), actions("a b")], 2);
        assert_eq!(stats.mean_repeats[&1], 0.5);
        assert_eq!(stats.episodes_with_repeats[&1], 0.5);
        assert_eq!(stats.episodes_with_repeats[&2], 0.0);
    }

    /// Each environment's rule for refused actions, side by side: a message for TextCraft and
    /// ScienceWorld, an unchanged page for WebShop.
    #[test]
    #[cfg(all(feature = "textcraft", feature = "sciworld", feature = "webshop"))]
    fn rejections_by_environment() {
        use crate::{sciworld, textcraft, webshop};
        assert!(textcraft::is_rejection("", "Could not find stick"));
        assert!(textcraft::is_rejection("", "Wrong item format: x"));
        assert!(!textcraft::is_rejection("Got 1 stick", "Got 1 stick"));
        assert!(sciworld::is_rejection(
            "",
            "No known action matches that input."
        ));
        assert!(!sciworld::is_rejection(
            "You see a door.",
            "You see a door."
        ));
        assert!(!webshop::is_rejection("WebShop [SEP] Search", "Could not"));
        assert!(webshop::is_rejection(
            "WebShop [SEP] Search",
            "WebShop [SEP] Search"
        ));
    }

    proptest! {
        #[test]
        fn counting_never_panics(words in proptest::collection::vec("[ab]", 0..12), max_len in 0usize..6) {
            let counts = back_to_back_repeats(&words, max_len);
            prop_assert!(counts.len() == max_len);
        }
    }
}
