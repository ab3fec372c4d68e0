//! `--device` and `--weights`, shared by the commands that run a model.

use agentr_train::{DeviceChoice, GenerationWeights, ModelAgent};
use anyhow::Result;
use candle_core::Device;

/// Where a command's model runs.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct DeviceArg {
    /// Where the model runs: auto (the first CUDA GPU when agentr is built with
    /// `--features cuda` and one answers, else the CPU), cpu, cuda or cuda:N. Weights are
    /// bf16 on a GPU (except for full fine-tuning) and f32 on the CPU.
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    pub device: DeviceChoice,
}

impl DeviceArg {
    /// Opens the device (an error for `cuda:N` in a build without CUDA or without that GPU).
    pub fn open(self) -> Result<Device> {
        Ok(self.device.open()?)
    }
}

/// Which weights a command's generation reads.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct WeightsArg {
    /// Weights for generation: f32 (the model's own on the CPU) or int8 (8-bit copies for
    /// the decoding steps, CPU only: about twice as fast, and a greedy choice between nearly
    /// tied tokens may change).
    #[arg(long = "weights", default_value = "f32", value_name = "WEIGHTS")]
    pub weights: GenerationWeights,
}

impl WeightsArg {
    /// Sets `agent` to generate with these weights.
    pub fn apply(self, agent: &mut ModelAgent) -> Result<()> {
        Ok(agent.use_weights(self.weights)?)
    }
}

/// The library's [`Runtime`](agentr_cli::pipeline::Runtime) of a command's `--device` and
/// `--weights`.
pub fn runtime(device: DeviceArg, weights: WeightsArg) -> agentr_cli::pipeline::Runtime {
    agentr_cli::pipeline::Runtime {
        device: device.device,
        weights: weights.weights,
    }
}
