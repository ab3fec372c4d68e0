//! Search settings.

use serde::{Deserialize, Serialize};

use crate::InvalidConfig;

/// How the search puts the environment back into a node's state before expanding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restore {
    /// Fork a snapshot when the environment supports it, else reset + replay.
    #[default]
    Auto,
    /// Always reset and replay the path's actions (the reference's method).
    Replay,
}

/// The settings of one search; saved with every tree.
///
/// Defaults are the Agent-R settings: 8 passes, 4 candidates per expansion, a real depth limit
/// of 20 actions, UCT constant 0.25, temperature 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Passes from the root (the reference's `iterations`).
    pub iterations: usize,
    /// Responses sampled per expansion (`N_GEN`).
    pub candidates: usize,
    /// A node at this many actions from the root is terminal.
    pub depth_limit: usize,
    /// Exploration constant `c` of UCT.
    pub uct_c: f64,
    /// Sampling temperature handed to the policy.
    pub temperature: f64,
    /// Seed of tie-breaks and of the policy's sampling (combined with the task id).
    pub seed: u64,
    /// Replace newlines and tabs in observations by spaces before the policy sees them and
    /// before they are stored (the reference did this). Off by default: the raw text is what
    /// an agent sees when it acts.
    pub clean_observations: bool,
    /// How node states are restored.
    pub restore: Restore,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            iterations: 8,
            candidates: 4,
            depth_limit: 20,
            uct_c: 0.25,
            temperature: 1.0,
            seed: 0,
            clean_observations: false,
            restore: Restore::Auto,
        }
    }
}

impl SearchConfig {
    /// Checks the settings; the error names the offending field.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let invalid = |field, problem: String| Err(InvalidConfig { field, problem });
        if self.candidates == 0 {
            return invalid("candidates", "must be at least 1".into());
        }
        if self.depth_limit == 0 {
            return invalid("depth_limit", "must be at least 1".into());
        }
        if !(self.uct_c.is_finite() && self.uct_c >= 0.0) {
            return invalid(
                "uct_c",
                format!("must be finite and >= 0, got {}", self.uct_c),
            );
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return invalid(
                "temperature",
                format!("must be finite and >= 0, got {}", self.temperature),
            );
        }
        Ok(())
    }
}
