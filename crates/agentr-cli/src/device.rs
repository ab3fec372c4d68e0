//! `--device`, shared by the commands that run a model.

use agentr_train::DeviceChoice;
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
