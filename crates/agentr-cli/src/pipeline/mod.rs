//! The stages of an Agent-R run as library calls that take typed settings and return typed
//! results; the commands of the binary map their arguments onto these and print.
//!
//! * [`gold`]: the expert's episodes as samples.
//! * [`collect`]: search trees for many tasks.
//! * [`revise`]: trees into revision, good and judge samples.
//! * [`train`]: fine-tuning on samples, fully or with LoRA.
//! * [`eval`]: a model plays tasks; metrics with their protocol.
//! * [`self_train`]: the Agent-R loop in one resumable run directory.
//! * [`experiment`]: several arms over several seeds, compared by pairs.
//! * [`compare`]: paired comparisons of two evaluations (success difference, bootstrap
//!   interval, McNemar p-value) and of their responses.
//! * [`files`]: what every stage does with its output folder.
//!
//! Each call takes a [`Reporter`](crate::report::Reporter) for its progress and lines.

pub mod collect;
pub mod compare;
pub mod eval;
pub mod experiment;
pub mod files;
pub mod gold;
pub mod revise;
pub mod self_train;
pub mod train;

use std::path::Path;

use agentr_train::{DeviceChoice, GenerationWeights, ModelAgent};
use anyhow::{Context, Result};

/// Where and how a stage's model runs. Not a setting of a run's results: it may change
/// between a run and its resumption.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Runtime {
    /// The device (the CPU, a CUDA GPU, or the first usable of those).
    pub device: DeviceChoice,
    /// The weights generation reads (f32, or 8-bit copies on the CPU).
    pub weights: GenerationWeights,
}

impl Runtime {
    /// Loads the model a `--model` argument names ([`crate::models::model_path`]) on this
    /// device, set to generate with these weights. The device is opened before the weights
    /// are read, so an unusable device is the error, not a slow load followed by one.
    pub fn load(&self, model: &Path) -> Result<ModelAgent> {
        let path = crate::models::model_path(model)?;
        let device = self.device.open()?;
        let mut agent = ModelAgent::load(&path, &device)
            .with_context(|| format!("loading the model from {}", path.display()))?;
        agent.use_weights(self.weights)?;
        Ok(agent)
    }
}
