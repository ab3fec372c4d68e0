//! Turning a model response (`Thought: ...\nAction: ...`) into the action text an environment
//! executes. Every function here is total: any input string gives an output, never a panic.

/// The marker that introduces the action in a ReAct-style response.
pub const ACTION_MARKER: &str = "Action:";

/// The text after the last `Action:` marker, trimmed; the whole response (trimmed) when the
/// marker is missing. This is the AgentGym clients' rule shared by all environments.
pub fn after_last_action(response: &str) -> &str {
    match response.rfind(ACTION_MARKER) {
        Some(at) => response[at + ACTION_MARKER.len()..].trim(),
        None => response.trim(),
    }
}

/// TextCraft's extraction, as AgentGym's TextCraft client does it: drop anything from the first
/// `Instruction:` on, take the text after the last `Action:`, keep only ASCII letters, digits,
/// commas and spaces, then collapse runs of spaces.
///
/// ```
/// use agentr_envs::action::textcraft_action;
/// let response = "Thought: I need sticks.\nAction: craft 4 stick using 2 oak_planks!";
/// assert_eq!(textcraft_action(response), "craft 4 stick using 2 oakplanks");
/// ```
pub fn textcraft_action(response: &str) -> String {
    let before_instruction = response.split("Instruction:").next().unwrap_or_default();
    let tail = match before_instruction.rfind(ACTION_MARKER) {
        Some(at) => &before_instruction[at + ACTION_MARKER.len()..],
        None => before_instruction,
    };
    let kept: String = tail
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == ',' || *c == ' ')
        .collect();
    kept.split(' ')
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn takes_the_last_marker() {
        assert_eq!(
            after_last_action("Action: a\nThought: no\nAction:  b c \n"),
            "b c"
        );
        assert_eq!(after_last_action("  just text "), "just text");
        assert_eq!(after_last_action("Action:"), "");
    }

    #[test]
    fn textcraft_cases() {
        let cases = [
            ("Thought: x\nAction: get 2 oak log", "get 2 oak log"),
            ("Action:\n  inventory  ", "inventory"),
            ("get 1 stick", "get 1 stick"),
            (
                "Action: get 1 stick\nInstruction: Action: inventory",
                "get 1 stick",
            ),
            (
                "Action: craft 1 a using 1 b,  2 c.",
                "craft 1 a using 1 b, 2 c",
            ),
            ("Action: get 1 café", "get 1 caf"),
            ("Action: craft\n4 stick", "craft4 stick"),
            ("", ""),
        ];
        for (response, want) in cases {
            assert_eq!(textcraft_action(response), want, "response {response:?}");
        }
    }

    proptest! {
        #[test]
        fn extraction_never_panics_and_textcraft_output_is_clean(response in any::<String>()) {
            let generic = after_last_action(&response);
            prop_assert!(response.contains(generic));
            let action = textcraft_action(&response);
            prop_assert!(action.chars().all(|c| c.is_ascii_alphanumeric() || c == ',' || c == ' '));
            prop_assert!(!action.starts_with(' ') && !action.ends_with(' ') && !action.contains("  "));
        }

        #[test]
        fn textcraft_keeps_clean_actions_verbatim(
            words in proptest::collection::vec("[a-z0-9,]{1,8}", 1..6),
            thought in "[a-zA-Z .]{0,30}",
        ) {
            let action = words.join(" ");
            let response = format!("Thought: {thought}\nAction: {action}");
            prop_assert_eq!(textcraft_action(&response), action);
        }
    }
}
