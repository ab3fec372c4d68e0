//! Durable atomic file writes: the content goes to a temporary sibling file, which is flushed
//! to disk, renamed over the final name, and the folder flushed too. Readers and crashed runs
//! never see a half-written file under the final name, and once a write returns, the new file
//! survives a power cut.

use std::fs::File;
use std::path::Path;

/// Writes `bytes` to `path` atomically and durably.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, |tmp| std::fs::write(tmp, bytes))
}

/// Lets `fill` write the file at a temporary sibling path (created empty beforehand; `fill` may
/// replace it), then flushes it, renames it to `path` and flushes the folder; for writers that
/// want a path of their own (safetensors, streamed JSONL). The temporary file is removed when
/// `fill`, the flush or the rename fails. Its name starts with `path`'s and holds the writing
/// process's id: `<name>.tmp-<pid>-<random>`.
pub fn write_with(
    path: &Path,
    fill: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut prefix = path.file_name().unwrap_or_default().to_owned();
    prefix.push(format!(".tmp-{}-", std::process::id()));
    // Removed on drop unless persisted, so every early return below cleans up.
    let tmp = tempfile::Builder::new().prefix(&prefix).tempfile_in(dir)?;
    fill(tmp.path())?;
    File::open(tmp.path())?.sync_all()?;
    tmp.persist(path).map_err(|failed| failed.error)?;
    sync_dir(dir)
}

/// Flushes a folder's entries (the rename) to disk. Only Unix can open a folder for that.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    if cfg!(unix) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("agentr-atomic-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = fresh_dir("replace");
        let path = dir.join("a.json");
        super::write(&path, b"one").unwrap();
        super::write(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert!(super::write(&dir.join("missing/b.json"), b"x").is_err());
        let failed = super::write_with(&dir.join("c.json"), |tmp| {
            std::fs::write(tmp, b"partial")?;
            Err(std::io::Error::other("writer failed"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no leftovers");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Writers that remove and recreate their path (as some serialisers do) still land.
    #[test]
    fn a_writer_may_replace_the_temporary_file() {
        let dir = fresh_dir("recreate");
        let path = dir.join("w.bin");
        super::write_with(&path, |tmp| {
            assert!(tmp.is_file(), "the temporary file exists before fill");
            let name = tmp.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name.starts_with(&format!("w.bin.tmp-{}-", std::process::id())),
                "{name}"
            );
            std::fs::remove_file(tmp)?;
            std::fs::write(tmp, b"recreated")
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"recreated");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
