//! Snapping free-form actions onto the simulator's valid action-object combinations.

/// The action strings of `getValidActionObjectCombinationsJSON`'s answer
/// (`{"validActions": [{"action": ..., ...}, ...]}`).
pub(crate) fn parse_valid_actions(json: &str) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Listing {
        #[serde(rename = "validActions")]
        valid_actions: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        action: String,
    }
    let listing: Listing = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(listing
        .valid_actions
        .into_iter()
        .map(|entry| entry.action)
        .collect())
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_lowercase).collect()
}

/// Dice similarity of two word multisets: twice the shared words over the total.
fn similarity(a: &[String], b: &[String]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let mut rest: Vec<&String> = b.iter().collect();
    let mut shared = 0usize;
    for word in a {
        if let Some(at) = rest.iter().position(|w| *w == word) {
            rest.swap_remove(at);
            shared += 1;
        }
    }
    2.0 * shared as f64 / (a.len() + b.len()) as f64
}

/// The valid action most similar to `action` by shared words (the first of equals), or `None`
/// when none shares a word with it. An action that is valid as written (ignoring case and
/// spacing) is its own snap.
pub fn snap_action<'a>(action: &str, valid: &'a [String]) -> Option<&'a str> {
    let wanted = words(action);
    let mut best: Option<(&'a str, f64)> = None;
    for candidate in valid {
        let score = similarity(&wanted, &words(candidate));
        if best.is_none_or(|(_, top)| score > top) {
            best = Some((candidate, score));
        }
        if score >= 1.0 {
            break;
        }
    }
    best.filter(|(_, score)| *score > 0.0).map(|(a, _)| a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn valid() -> Vec<String> {
        [
            "open door to kitchen",
            "go to kitchen",
            "pick up metal pot",
            "look around",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn snaps_to_the_closest_valid_action() {
        let valid = valid();
        assert_eq!(snap_action("go to kitchen", &valid), Some("go to kitchen"));
        assert_eq!(
            snap_action("Go  to the kitchen", &valid),
            Some("go to kitchen")
        );
        assert_eq!(
            snap_action("pick up pot", &valid),
            Some("pick up metal pot")
        );
        assert_eq!(snap_action("xyzzy", &valid), None);
        assert_eq!(snap_action("look", &[]), None);
    }

    #[test]
    fn valid_action_listings_parse() {
        let json = r#"{"validActions": [{ "action":"open door", "template_id":0, "obj_ids":[1], "type_ids":[2] },{ "action":"look around", "template_id":1, "obj_ids":[], "type_ids":[] }]}"#;
        assert_eq!(
            parse_valid_actions(json).unwrap(),
            vec!["open door".to_owned(), "look around".to_owned()]
        );
        assert!(parse_valid_actions("[]").is_err());
    }

    proptest! {
        #[test]
        fn a_snap_is_valid_and_a_valid_action_snaps_to_itself(
            action in any::<String>(),
            valid in proptest::collection::vec("[a-z]{1,6}( [a-z]{1,6}){0,3}", 0..8),
            pick in any::<proptest::sample::Index>(),
        ) {
            if let Some(snapped) = snap_action(&action, &valid) {
                prop_assert!(valid.iter().any(|v| v == snapped));
            }
            if !valid.is_empty() {
                let chosen = &valid[pick.index(valid.len())];
                let snapped = snap_action(chosen, &valid).unwrap();
                let sorted = |t: &str| { let mut w = words(t); w.sort(); w };
                prop_assert_eq!(sorted(snapped), sorted(chosen));
            }
            let _ = parse_valid_actions(&action);
        }
    }
}
