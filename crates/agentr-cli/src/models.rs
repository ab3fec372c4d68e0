//! Model names `--model` (and `model:` policies and judges) accept besides model folders.

use std::path::{Path, PathBuf};

use agentr_envs::assets;
use agentr_train::gguf;
use anyhow::{Context, Result};

/// SmolLM2-135M-Instruct, from the GGUF that set-up fetches.
pub const SMOLLM2: &str = "smollm2-135m";

/// What to load for the model argument `arg`: for [`SMOLLM2`], the set-up GGUF (fetched on
/// first use); for a Hugging Face model id (`org/name` or `org/name@revision`) that is not an
/// existing path, its snapshot in the hub cache ([`agentr_train::hf::resolve`]: downloaded
/// with the `hub` feature unless `HF_HUB_OFFLINE=1`); anything else as given (a model folder
/// or a `.gguf` file).
pub fn model_path(arg: &Path) -> Result<PathBuf> {
    model_path_with(arg, &|spec| Ok(agentr_train::hf::resolve(spec)?))
}

/// [`model_path`] with `hub` resolving model ids, so tests need no cache of their own.
fn model_path_with(arg: &Path, hub: &dyn Fn(&str) -> Result<PathBuf>) -> Result<PathBuf> {
    if arg == Path::new(SMOLLM2) {
        crate::envs::ensure_installed(&gguf::SMOLLM2_GGUF)?;
        return Ok(gguf::smollm2_gguf_path(&assets::agentr_home()));
    }
    if let Some(spec) = hub_id(arg) {
        return hub(spec).with_context(|| {
            format!(
                "`{spec}` is not an existing path, and as a Hugging Face model id it could not \
                 be resolved"
            )
        });
    }
    Ok(arg.to_owned())
}

/// `arg` as a Hugging Face model id: not an existing path, one `/` before any `@revision`,
/// no leading `.` or `/`, and not a `.gguf` file name.
pub(crate) fn hub_id(arg: &Path) -> Option<&str> {
    let spec = arg.to_str()?;
    let plausible = !arg.exists()
        && !spec.starts_with(['.', '/'])
        && !spec.ends_with(".gguf")
        && agentr_train::hf::is_repo_id(spec);
    plausible.then_some(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver that must not be reached.
    fn no_hub(spec: &str) -> Result<PathBuf> {
        panic!("{spec} was looked up in the hub cache")
    }

    #[test]
    fn other_arguments_are_paths() {
        for arg in [
            "runs/bc/model",
            "./runs/bc",
            "/abs/runs/bc",
            "x/model.gguf",
            "model.gguf",
            "tiny",
            // Existing folders win over model ids.
            "src/cmd",
        ] {
            assert_eq!(
                model_path_with(Path::new(arg), &no_hub).unwrap(),
                PathBuf::from(arg),
                "{arg}"
            );
        }
    }

    #[test]
    fn model_ids_resolve_through_the_hub_cache() {
        let hub = |spec: &str| Ok(PathBuf::from("/cache").join(spec.replace('/', "--")));
        for (arg, expected) in [
            (
                "Qwen/Qwen2.5-0.5B-Instruct",
                "/cache/Qwen--Qwen2.5-0.5B-Instruct",
            ),
            (
                "meta-llama/Llama-3.2-1B@v1",
                "/cache/meta-llama--Llama-3.2-1B@v1",
            ),
            ("runs/missing", "/cache/runs--missing"),
        ] {
            assert_eq!(
                model_path_with(Path::new(arg), &hub).unwrap(),
                PathBuf::from(expected),
                "{arg}"
            );
        }
        let failing = |_: &str| -> Result<PathBuf> { anyhow::bail!("not in the cache") };
        let err = model_path_with(Path::new("org/name"), &failing).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("`org/name`"), "{message}");
        assert!(message.contains("not in the cache"), "{message}");
    }

    #[test]
    fn model_ids_in_an_offline_cache() {
        let dir = std::env::temp_dir().join(format!("agentr-cli-hub-{}", std::process::id()));
        let snapshot = dir.join("models--org--name/snapshots/abc");
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::create_dir_all(dir.join("models--org--name/refs")).unwrap();
        std::fs::write(dir.join("models--org--name/refs/main"), "abc").unwrap();
        for file in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::write(snapshot.join(file), "{}").unwrap();
        }
        let cache = agentr_train::hf::HubCache::new(&dir, true);
        let hub = |spec: &str| Ok(cache.resolve(spec)?);
        assert_eq!(
            model_path_with(Path::new("org/name"), &hub).unwrap(),
            snapshot
        );
        let err = model_path_with(Path::new("org/other"), &hub).unwrap_err();
        assert!(format!("{err:#}").contains("HF_HUB_OFFLINE"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
