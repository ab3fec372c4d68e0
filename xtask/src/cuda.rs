//! `cargo xtask check-cuda`: type-checks agentr-train with the `cuda` feature on a machine that
//! has neither a GPU nor a system CUDA toolkit.
//!
//! candle's CUDA build runs `nvcc` in build scripts (kernels to PTX, plus a few static
//! kernels), so even `cargo check` needs a toolkit. NVIDIA publishes the CUDA 13 toolkit as
//! PyPI wheels that all unpack into one `nvidia/cu13/` tree laid out like a toolkit (`bin/nvcc`,
//! `nvvm/`, `include/`, `lib/`), so installing the pinned wheels with `pip install --target`
//! gives a usable `CUDA_HOME`. The wheels are checked against pinned SHA-256 digests and the
//! toolkit is kept under `$AGENTR_HOME/cuda/`, as is the check's own target folder, so a second
//! run neither downloads nor recompiles.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The toolkit's wheels, pinned, with the SHA-256 of the manylinux x86_64 wheel pip picks.
/// CUDA 13.0, the oldest 13.x: candle loads its kernels as PTX, which the driver compiles at
/// run time, and a driver only reads PTX from toolkits no newer than itself (R580 = 13.0).
const WHEELS: &[(&str, &str)] = &[
    (
        "nvidia-cuda-nvcc==13.0.88",
        "56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03",
    ),
    (
        "nvidia-cuda-crt==13.0.88",
        "2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4",
    ),
    (
        "nvidia-nvvm==13.0.88",
        "c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0",
    ),
    (
        "nvidia-cuda-runtime==13.0.96",
        "7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548",
    ),
    (
        "nvidia-cuda-nvrtc==13.0.88",
        "ad9b6d2ead2435f11cbb6868809d2adeeee302e9bb94bcf0539c7a40d80e8575",
    ),
    (
        "nvidia-cuda-cccl==13.0.85",
        "e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649",
    ),
    (
        "nvidia-cublas==13.0.2.14",
        "0cf238ffdbe46c00cb9aa98e7bca745c223a5ca5a53e686ac8b3e5a08fe80d6c",
    ),
    (
        "nvidia-curand==10.4.0.35",
        "1aee33a5da6e1db083fe2b90082def8915f30f3248d5896bcec36a579d941bfc",
    ),
];

/// The compute capability the kernels are built for (H100 / H200). candle's build scripts
/// would otherwise ask `nvidia-smi`, which a machine without a GPU does not have.
const COMPUTE_CAP: &str = "90";

/// Written last into a finished toolkit folder.
const MARKER: &str = ".installed";

/// Installs the toolkit if needed, then runs
/// `cargo check -p agentr-train --all-targets --features cuda`
/// (plus `extra` arguments) against it.
pub fn check_cuda(root: &Path, extra: &[String]) -> Result<()> {
    let cache = agentr_home().join("cuda");
    let toolkit = install_toolkit(&cache)?;
    let cuda_home = toolkit.join("nvidia").join("cu13");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![cuda_home.join("bin")];
    paths.extend(std::env::split_paths(&path));
    let library_path = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
    let mut libraries = vec![cuda_home.join("lib")];
    libraries.extend(std::env::split_paths(&library_path));
    eprintln!("check-cuda: CUDA_HOME={}", cuda_home.display());
    crate::run(
        crate::cargo(root)
            .args([
                "check",
                "-p",
                "agentr-train",
                "--all-targets",
                "--features",
                "cuda",
            ])
            .args(extra)
            .env("CUDA_HOME", &cuda_home)
            .env("CUDA_PATH", &cuda_home)
            .env("CUDA_ROOT", &cuda_home)
            .env("CUDA_COMPUTE_CAP", COMPUTE_CAP)
            .env("PATH", std::env::join_paths(paths)?)
            .env("LD_LIBRARY_PATH", std::env::join_paths(libraries)?)
            // Its own target folder: the CUDA build differs from the CPU one in every crate
            // that forwards the feature, and keeping it in the cache makes reruns quick.
            .env("CARGO_TARGET_DIR", cache.join("target")),
    )
}

/// The asset folder, as the `agentr` binary chooses it (`agentr_envs::assets::agentr_home`):
/// `$AGENTR_HOME`, else `$HOME/.cache/agentr`, else `./.agentr`. Repeated rather than
/// imported: depending on agentr-envs would compile it and its search engine into xtask, once
/// more with xtask's own feature set, before every `cargo xtask` command.
fn agentr_home() -> PathBuf {
    if let Some(home) = std::env::var_os("AGENTR_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home);
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("agentr"),
        None => PathBuf::from(".agentr"),
    }
}

/// pip's requirements file for [`WHEELS`], one `name==version --hash=sha256:...` per line.
fn requirements() -> String {
    WHEELS
        .iter()
        .map(|(requirement, sha256)| format!("{requirement} --hash=sha256:{sha256}\n"))
        .collect()
}

/// The folder of this pin set under `cache` (a changed pin set installs beside the old one).
fn toolkit_folder(cache: &Path) -> PathBuf {
    // FNV-1a: only needs to tell pin sets apart.
    let digest = requirements()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    cache.join(format!("toolkit-{digest:016x}"))
}

/// Installs the pinned wheels into the toolkit folder unless a finished install is there
/// (staging folder, marker, rename: a killed install is never taken for a finished one).
fn install_toolkit(cache: &Path) -> Result<PathBuf> {
    let folder = toolkit_folder(cache);
    if folder.join(MARKER).is_file() {
        return Ok(folder);
    }
    let staging = folder.with_extension("staging");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("removing {}", staging.display()))?;
    }
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let requirements_file = staging.join("requirements.txt");
    std::fs::write(&requirements_file, requirements())
        .with_context(|| format!("writing {}", requirements_file.display()))?;
    eprintln!(
        "check-cuda: installing the CUDA 13.0 toolkit wheels (about 680 MB) into {}",
        folder.display()
    );
    let python = std::env::var("AGENTR_PYTHON").unwrap_or_else(|_| "python3".into());
    crate::run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--require-hashes",
                "--disable-pip-version-check",
                "--quiet",
                "--target",
            ])
            .arg(&staging)
            .arg("-r")
            .arg(&requirements_file),
    )?;
    let nvcc = staging.join("nvidia").join("cu13").join("bin").join("nvcc");
    if !nvcc.is_file() {
        bail!(
            "the wheels installed, but {} is missing: the wheels' layout changed",
            nvcc.display()
        );
    }
    std::fs::write(staging.join(MARKER), requirements())?;
    if folder.exists() {
        std::fs::remove_dir_all(&folder)?;
    }
    std::fs::rename(&staging, &folder)
        .with_context(|| format!("moving {} into place", staging.display()))?;
    Ok(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wheel_is_pinned_with_a_digest() {
        for (requirement, sha256) in WHEELS {
            assert!(requirement.contains("=="), "{requirement}");
            assert_eq!(sha256.len(), 64, "{requirement}");
            assert!(
                sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                "{requirement}"
            );
        }
        assert_eq!(requirements().lines().count(), WHEELS.len());
    }

    #[test]
    fn the_folder_is_named_by_the_pin_set() {
        let folder = toolkit_folder(Path::new("/cache"));
        assert!(folder.starts_with("/cache"));
        assert_eq!(folder, toolkit_folder(Path::new("/cache")));
        let name = folder.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("toolkit-") && name.len() == "toolkit-".len() + 16);
    }
}
