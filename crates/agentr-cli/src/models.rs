//! Model names `--model` (and `model:` policies and judges) accept besides model folders.

use std::path::{Path, PathBuf};

use agentr_envs::assets;
use anyhow::Result;

/// SmolLM2-135M-Instruct, from the GGUF that set-up fetches.
pub const SMOLLM2: &str = "smollm2-135m";

/// What to load for the model argument `arg`: for [`SMOLLM2`], the set-up GGUF (fetched on
/// first use); anything else as given (a model folder or a `.gguf` file).
pub fn model_path(arg: &Path) -> Result<PathBuf> {
    if arg == Path::new(SMOLLM2) {
        crate::envs::ensure_installed(&assets::SMOLLM2_GGUF)?;
        return Ok(assets::smollm2_gguf_path(&assets::agentr_home()));
    }
    Ok(arg.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_arguments_are_paths() {
        assert_eq!(
            model_path(Path::new("runs/bc")).unwrap(),
            PathBuf::from("runs/bc")
        );
        assert_eq!(
            model_path(Path::new("x/model.gguf")).unwrap(),
            PathBuf::from("x/model.gguf")
        );
    }
}
