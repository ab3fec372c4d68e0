//! Experts: policies that need no model, used for gold trajectories (behaviour cloning) and,
//! wrapped with seeded noise, to grow search trees with both failures and successes.

use crate::EnvError;
use crate::chat::Message;

/// A model-free player that answers a conversation with its next response.
///
/// The conversation has the layout of [`crate::chat::conversation_start`] followed by
/// alternating assistant responses and observations. Experts re-read the state from the
/// conversation each time, so they can take over an episode that someone else started.
pub trait Expert: Send + Sync {
    /// The next `Thought: ...\nAction: ...` response.
    fn respond(&self, conversation: &[Message]) -> Result<String, EnvError>;
}
