//! The [`Policy`] trait: whatever proposes responses during search.

use agentr_envs::{EnvError, Expert, Message, NoisyExpert};

/// One batched request for candidate responses.
#[derive(Debug, Clone, Copy)]
pub struct SampleRequest<'a> {
    /// The conversation so far (instruction, `Ok.`, first observation, then
    /// response/observation pairs), ending with an observation.
    pub conversation: &'a [Message],
    /// How many responses to sample.
    pub n: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// Seed for this request's randomness. Derived by the search from its seed, the task and
    /// the node, so results do not depend on scheduling.
    pub seed: u64,
}

/// Proposes responses for a conversation: a language model, a server, or a scripted player.
///
/// Implementations should reuse work shared by the `n` samples (one prefill for a model).
pub trait Policy: Send + Sync {
    /// The policy's own error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Exactly `request.n` responses (duplicates allowed; the search merges them).
    fn sample(&self, request: &SampleRequest<'_>) -> Result<Vec<String>, Self::Error>;

    /// What the policy is, as a user would name it (`noisy-expert:0.3`, `model:DIR`, ...):
    /// recorded in every tree it grows ([`Tree::policy`](crate::Tree::policy)), so that a
    /// resumed collection can tell trees of another policy. `None` (the default) records
    /// nothing; [`Named`] gives any policy a description.
    fn describe(&self) -> Option<String> {
        None
    }
}

impl<P: Policy + ?Sized> Policy for &P {
    type Error = P::Error;
    fn sample(&self, request: &SampleRequest<'_>) -> Result<Vec<String>, Self::Error> {
        (**self).sample(request)
    }
    fn describe(&self) -> Option<String> {
        (**self).describe()
    }
}

/// A policy under a description of the caller's choosing (the command line's policy spec,
/// say).
#[derive(Debug, Clone)]
pub struct Named<P> {
    /// The description recorded in trees.
    pub name: String,
    /// The policy that samples.
    pub policy: P,
}

impl<P: Policy> Policy for Named<P> {
    type Error = P::Error;
    fn sample(&self, request: &SampleRequest<'_>) -> Result<Vec<String>, Self::Error> {
        self.policy.sample(request)
    }
    fn describe(&self) -> Option<String> {
        Some(self.name.clone())
    }
}

/// The noisy expert as a policy: each of the `n` samples independently follows the expert or,
/// with probability epsilon, makes a plausible mistake. Temperature is ignored.
impl<E: Expert> Policy for NoisyExpert<E> {
    type Error = EnvError;

    fn sample(&self, request: &SampleRequest<'_>) -> Result<Vec<String>, EnvError> {
        NoisyExpert::sample(self, request.conversation, request.n, request.seed)
    }

    fn describe(&self) -> Option<String> {
        Some(format!("noisy-expert:{}", self.epsilon))
    }
}
