//! AgentGym's task id lists, bundled as data so that every environment adapter (native or
//! behind AgentGym's servers) evaluates on the same goals as the reference.
//!
//! Always compiled, whatever the features: the lists are small, and both the native
//! environments and the AgentGym client read them.

use std::sync::OnceLock;

use crate::env::TaskId;

const TEXTCRAFT_TEST: &str = include_str!("../data/textcraft_test.txt");
const SCIWORLD_TEST: &str = include_str!("../data/sciworld_test.txt");
const WEBSHOP_TEST: &str = include_str!("../data/webshop_test.txt");
const WEBSHOP_TRAIN: &str = include_str!("../data/webshop_train.txt");

/// TextCraft's 100 test goals (AgentGym's list; the other goals are for training).
pub fn textcraft_test() -> &'static [TaskId] {
    static IDS: OnceLock<Vec<TaskId>> = OnceLock::new();
    parsed_once(&IDS, TEXTCRAFT_TEST)
}

/// ScienceWorld's 200 test games, in AgentGym's order.
pub fn sciworld_test() -> &'static [TaskId] {
    static IDS: OnceLock<Vec<TaskId>> = OnceLock::new();
    parsed_once(&IDS, SCIWORLD_TEST)
}

/// WebShop's 200 test goals, in AgentGym's order (goal indices over the real 1,000-product
/// data).
pub fn webshop_test() -> &'static [TaskId] {
    static IDS: OnceLock<Vec<TaskId>> = OnceLock::new();
    parsed_once(&IDS, WEBSHOP_TEST)
}

/// WebShop's 3,930 training goals, in AgentGym's order.
pub fn webshop_train() -> &'static [TaskId] {
    static IDS: OnceLock<Vec<TaskId>> = OnceLock::new();
    parsed_once(&IDS, WEBSHOP_TRAIN)
}

/// The ids of `text` (one per line; blank lines skipped), parsed at the first call.
fn parsed_once(cell: &'static OnceLock<Vec<TaskId>>, text: &str) -> &'static [TaskId] {
    cell.get_or_init(|| {
        text.lines()
            .filter_map(|line| line.trim().parse().ok())
            .map(TaskId)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 64-bit FNV-1a: a fingerprint that needs no dependency and never changes.
    fn fingerprint(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    /// What AgentGym's copy of a list looks like.
    struct Expected {
        name: &'static str,
        text: &'static str,
        ids: &'static [TaskId],
        len: usize,
        first_and_last: (u64, u64),
        fingerprint: u64,
    }

    /// The bundled lists are byte for byte AgentGym's (fingerprints taken from its files when
    /// they were copied in), and every line is an id.
    #[test]
    fn the_lists_are_agentgyms() {
        let cases = [
            Expected {
                name: "textcraft_test",
                text: TEXTCRAFT_TEST,
                ids: textcraft_test(),
                len: 100,
                first_and_last: (0, 535),
                fingerprint: 0xe0c7_f970_35f9_08d4,
            },
            Expected {
                name: "sciworld_test",
                text: SCIWORLD_TEST,
                ids: sciworld_test(),
                len: 200,
                first_and_last: (3491, 1058),
                fingerprint: 0x25cc_cafd_6008_0fec,
            },
            Expected {
                name: "webshop_test",
                text: WEBSHOP_TEST,
                ids: webshop_test(),
                len: 200,
                first_and_last: (5238, 6894),
                fingerprint: 0x1157_a72e_087e_2e87,
            },
            Expected {
                name: "webshop_train",
                text: WEBSHOP_TRAIN,
                ids: webshop_train(),
                len: 3930,
                first_and_last: (0, 6909),
                fingerprint: 0x7025_d2c6_5e79_f510,
            },
        ];
        for case in cases {
            let name = case.name;
            assert_eq!(
                fingerprint(case.text.as_bytes()),
                case.fingerprint,
                "{name}"
            );
            assert_eq!(case.ids.len(), case.len, "{name}");
            let lines = case.text.lines().filter(|l| !l.trim().is_empty()).count();
            assert_eq!(lines, case.len, "{name}");
            let ends = (case.ids[0].0, case.ids[case.len - 1].0);
            assert_eq!(ends, case.first_and_last, "{name}");
        }
    }

    #[test]
    fn the_webshop_splits_are_disjoint() {
        let test: std::collections::HashSet<_> = webshop_test().iter().collect();
        assert!(webshop_train().iter().all(|id| !test.contains(id)));
    }
}
