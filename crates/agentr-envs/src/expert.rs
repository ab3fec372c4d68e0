//! Experts: policies that need no model, used for gold trajectories (behaviour cloning) and,
//! wrapped with seeded noise, to grow search trees with both failures and successes.

use crate::EnvError;
use crate::chat::Message;
use crate::rng::Rng;

/// A model-free player that answers a conversation with its next response.
///
/// The conversation has the layout of [`crate::chat::conversation_start`] followed by
/// alternating assistant responses and observations. Experts re-read the state from the
/// conversation each time, so they can take over an episode that someone else started.
pub trait Expert: Send + Sync {
    /// The next `Thought: ...\nAction: ...` response.
    fn respond(&self, conversation: &[Message]) -> Result<String, EnvError>;

    /// A plausible wrong response for the same state: the kind of mistake an agent makes
    /// (an item that cannot be taken, a wrong count, a needless step), drawn from `rng`.
    fn mistake(&self, conversation: &[Message], rng: &mut Rng) -> Result<String, EnvError>;
}

impl<E: Expert + ?Sized> Expert for Box<E> {
    fn respond(&self, conversation: &[Message]) -> Result<String, EnvError> {
        (**self).respond(conversation)
    }

    fn mistake(&self, conversation: &[Message], rng: &mut Rng) -> Result<String, EnvError> {
        (**self).mistake(conversation, rng)
    }
}

/// An expert that makes a seeded mistake with probability `epsilon` at every step.
///
/// Search trees grown with it hold successful and failed branches for the same task without
/// any model, which is what the revision pipeline needs to be exercised end to end.
#[derive(Debug, Clone)]
pub struct NoisyExpert<E> {
    /// The underlying expert.
    pub expert: E,
    /// Probability of a mistake per step, in `[0, 1]`.
    pub epsilon: f64,
}

impl<E: Expert> NoisyExpert<E> {
    /// Wraps `expert`; `epsilon` is clamped to `[0, 1]` (NaN counts as 0).
    pub fn new(expert: E, epsilon: f64) -> Self {
        let epsilon = if epsilon.is_nan() {
            0.0
        } else {
            epsilon.clamp(0.0, 1.0)
        };
        NoisyExpert { expert, epsilon }
    }

    /// The expert's response, or with probability `epsilon` a mistake.
    pub fn respond(&self, conversation: &[Message], rng: &mut Rng) -> Result<String, EnvError> {
        if rng.unit_f64() < self.epsilon {
            self.expert.mistake(conversation, rng)
        } else {
            self.expert.respond(conversation)
        }
    }

    /// `n` independent draws of [`NoisyExpert::respond`], draw `i` seeded by `(seed, i)`. The
    /// expert's own response is computed once and shared by the draws that follow it.
    pub fn sample(
        &self,
        conversation: &[Message],
        n: usize,
        seed: u64,
    ) -> Result<Vec<String>, EnvError> {
        let mut expert_response: Option<String> = None;
        (0..n as u64)
            .map(|i| {
                let mut rng = Rng::from_parts(&[seed, i]);
                if rng.unit_f64() < self.epsilon {
                    return self.expert.mistake(conversation, &mut rng);
                }
                match &expert_response {
                    Some(response) => Ok(response.clone()),
                    None => {
                        let response = self.expert.respond(conversation)?;
                        expert_response = Some(response.clone());
                        Ok(response)
                    }
                }
            })
            .collect()
    }
}
