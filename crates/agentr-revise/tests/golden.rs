//! Golden tests: hand-built trees in `tests/fixtures` and the exact JSONL they must produce.
//! Set `AGENTR_BLESS=1` to rewrite the expected files after an intended change (then review
//! the diff).

use std::path::{Path, PathBuf};

use agentr_envs::textcraft;
use agentr_mcts::Tree;
use agentr_revise::{
    EnvFeedbackJudge, Judge, Label, Mode, PairCondition, ReviseConfig, ScriptedJudge, Signals,
    Stats, Thresholds, parse_judgement, revise_tree,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn trees() -> Vec<Tree> {
    ["no_success.json", "sticks.json"]
        .iter()
        .map(|name| Tree::load(&fixtures().join(name)).expect("fixture tree is valid"))
        .collect()
}

fn config(mode: Mode) -> ReviseConfig {
    ReviseConfig {
        mode,
        thresholds: Thresholds {
            alpha: 0.5,
            beta: 0.2,
            condition: PairCondition::Paper,
        },
        max_pairs_per_tree: None,
        seed: 0,
        good_samples: true,
    }
}

fn render<J: Judge>(mode: Mode, judge: &J) -> (String, Stats) {
    let mut out = String::new();
    let mut total = Stats::default();
    for tree in trees() {
        let (samples, stats) = revise_tree(
            &tree,
            &config(mode),
            &Signals::default(),
            textcraft::is_rejection,
            judge,
        )
        .unwrap();
        for sample in samples {
            out.push_str(&serde_json::to_string(&sample).unwrap());
            out.push('\n');
        }
        total.merge(&stats);
    }
    (out, total)
}

fn check(name: &str, actual: &str) {
    let path = fixtures().join(name);
    if std::env::var_os("AGENTR_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        actual,
        expected,
        "{} differs (AGENTR_BLESS=1 rewrites it)",
        path.display()
    );
}

#[test]
fn agent_r_with_a_scripted_judge() {
    let judge = ScriptedJudge::load(&fixtures().join("sticks.judge.json")).unwrap();
    let (jsonl, stats) = render(Mode::AgentR, &judge);
    check("sticks.agent-r.expected.jsonl", &jsonl);
    assert_eq!(stats.trees, 2);
    assert_eq!(stats.trees_without_success, 1);
    assert_eq!(stats.pairs, 2);
    assert_eq!(stats.samples["revision"], 2);
    assert_eq!(stats.samples["good"], 1);
    // Node [0] is judged once and found bad; on the other pair [1,1] is good, [1,1,0] bad.
    assert_eq!(stats.judge_labels["bad"], 2);
    assert_eq!(stats.judge_labels["good"], 1);
    assert_eq!(stats.fallbacks_to_direct, 0);
}

#[test]
fn direct_revision() {
    let (jsonl, stats) = render(Mode::Direct, &EnvFeedbackJudge);
    check("sticks.direct.expected.jsonl", &jsonl);
    assert!(
        stats.judge_labels.is_empty(),
        "direct mode never asks the judge"
    );
    assert_eq!(stats.t_prime_depth.keys().copied().collect::<Vec<_>>(), [3]);
}

#[test]
fn env_feedback_judge_finds_the_rejected_steps() {
    let (jsonl, stats) = render(Mode::AgentR, &EnvFeedbackJudge);
    check("sticks.env-feedback.expected.jsonl", &jsonl);
    assert_eq!(stats.fallbacks_to_direct, 0);
}

/// Real answers of SmolLM2-135M-Instruct to the verifier prompt (greedy, 192 tokens, recorded
/// with `agentr generate`), before and after the smol preset's format warm start, with the
/// label and parse state each must read as. Neither model writes a label line (they echo the
/// task's command list, or answer with an action), so every answer is unparsed and uncertain:
/// the reason the smol preset scores its judge (`JudgeAnswer::Scored`) instead of parsing it.
#[test]
fn smollm2s_verifier_answers_parse_as_recorded() {
    let text = std::fs::read_to_string(fixtures().join("smollm2_judge_answers.jsonl")).unwrap();
    let mut count = 0;
    for (line, record) in text.lines().enumerate() {
        let record: serde_json::Value = serde_json::from_str(record).unwrap();
        let answer = record["answer"].as_str().unwrap();
        let judgement = parse_judgement(answer);
        let expected = match record["label"].as_str().unwrap() {
            "good" => Label::Good,
            "bad" => Label::Bad,
            _ => Label::Uncertain,
        };
        assert_eq!(judgement.label, expected, "line {}", line + 1);
        assert_eq!(
            judgement.parsed,
            record["parsed"].as_bool().unwrap(),
            "line {}",
            line + 1
        );
        if !judgement.parsed {
            assert_eq!(judgement.rationale, answer.trim(), "line {}", line + 1);
        }
        count += 1;
    }
    assert!(count >= 16, "{count} answers");
}
