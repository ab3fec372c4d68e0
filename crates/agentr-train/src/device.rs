//! Choosing where models run: `cpu`, `cuda:N`, or `auto` (the first GPU when this build has
//! CUDA support and a GPU answers, else the CPU).

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device};

use crate::TrainError;

/// A device as a user names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The first CUDA GPU if this build has the `cuda` feature and one is usable, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The CUDA GPU with this ordinal (needs the `cuda` feature).
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = TrainError;

    /// Reads `auto`, `cpu`, `cuda` (GPU 0) or `cuda:N`.
    fn from_str(text: &str) -> Result<Self, TrainError> {
        match text.trim() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|ordinal| ordinal.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| {
                    TrainError::Config(format!(
                        "unknown device `{other}` (expected auto, cpu, cuda or cuda:N)"
                    ))
                }),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

impl DeviceChoice {
    /// The device. `cuda:N` fails when this build lacks the `cuda` feature or the GPU cannot
    /// be opened; `auto` falls back to the CPU in both cases.
    pub fn open(self) -> Result<Device, TrainError> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto if cfg!(feature = "cuda") => {
                Ok(Device::new_cuda(0).unwrap_or(Device::Cpu))
            }
            DeviceChoice::Auto => Ok(Device::Cpu),
            DeviceChoice::Cuda(_) if !cfg!(feature = "cuda") => Err(TrainError::Config(format!(
                "device `{self}` needs a build with CUDA support (`--features cuda`)"
            ))),
            DeviceChoice::Cuda(ordinal) => Ok(Device::new_cuda(ordinal)?),
        }
    }
}

/// The dtype models are loaded in for generation on `device`: bf16 on a GPU (half the memory
/// and its tensor cores), f32 on the CPU (where this crate's fused kernels are f32 and bf16
/// matrix products are slower, not faster).
pub fn inference_dtype(device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_round_trip() {
        for (text, choice) in [
            ("auto", DeviceChoice::Auto),
            ("cpu", DeviceChoice::Cpu),
            ("cuda:0", DeviceChoice::Cuda(0)),
            ("cuda:3", DeviceChoice::Cuda(3)),
        ] {
            assert_eq!(text.parse::<DeviceChoice>().unwrap(), choice);
            assert_eq!(choice.to_string(), text);
        }
        assert_eq!(
            "cuda".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(0)
        );
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            assert!(bad.parse::<DeviceChoice>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cpu_always_opens() {
        assert!(DeviceChoice::Cpu.open().unwrap().is_cpu());
        if !cfg!(feature = "cuda") {
            assert!(DeviceChoice::Auto.open().unwrap().is_cpu());
            let message = DeviceChoice::Cuda(0).open().unwrap_err().to_string();
            assert!(message.contains("--features cuda"), "{message}");
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in any::<String>()) {
            let _ = text.parse::<DeviceChoice>();
        }
    }
}
