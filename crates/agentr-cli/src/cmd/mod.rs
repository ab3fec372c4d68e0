//! One module per subcommand.

pub mod collect;
pub mod compare;
pub mod eval;
pub mod experiment;
pub mod generate;
pub mod gold;
pub mod play;
pub mod replay;
pub mod revise;
pub mod self_train;
pub mod serve;
pub mod serve_model;
pub mod setup;
pub mod train;

/// Creates the folder an output file goes into, as the commands whose `--out` is a folder
/// create that folder: every command creates what its `--out` needs.
pub(crate) fn create_parent(path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", parent.display()))?;
    }
    Ok(())
}

/// Removes what a killed run of a command left in its output folder `dir`: the temporary
/// files of unfinished atomic writes (`agentr_envs::atomic::remove_stale`), and says so.
pub(crate) fn remove_stale_temporaries(dir: &std::path::Path) -> anyhow::Result<()> {
    let removed = agentr_envs::atomic::remove_stale(dir)
        .map_err(|e| anyhow::anyhow!("cleaning up {}: {e}", dir.display()))?;
    if !removed.is_empty() {
        let names: Vec<String> = removed
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        eprintln!(
            "removed {} temporary file(s) a killed run left in {}: {}",
            removed.len(),
            dir.display(),
            names.join(", ")
        );
    }
    Ok(())
}

/// Reads a count that must be at least 1 (`--workers`).
pub(crate) fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_start_at_one() {
        assert_eq!(super::at_least_one("2"), Ok(2));
        assert!(super::at_least_one("0").unwrap_err().contains("at least 1"));
        assert!(super::at_least_one("-1").is_err());
        assert!(super::at_least_one("two").is_err());
    }
}
