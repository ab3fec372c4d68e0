//! What every stage does with its output folder.

use std::path::Path;

use anyhow::Result;

use crate::report::Reporter;

/// Creates the folder an output file goes into, as the stages whose output is a folder create
/// that folder: every stage creates what its output needs.
pub fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", parent.display()))?;
    }
    Ok(())
}

/// Removes what a killed run left in the output folder `dir`: the temporary files of
/// unfinished atomic writes (`agentr_envs::atomic::remove_stale`), and says so.
pub fn remove_stale_temporaries(dir: &Path, reporter: &dyn Reporter) -> Result<()> {
    let removed = agentr_envs::atomic::remove_stale(dir)
        .map_err(|e| anyhow::anyhow!("cleaning up {}: {e}", dir.display()))?;
    if !removed.is_empty() {
        let names: Vec<String> = removed
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        reporter.line(&format!(
            "removed {} temporary file(s) a killed run left in {}: {}",
            removed.len(),
            dir.display(),
            names.join(", ")
        ));
    }
    Ok(())
}
