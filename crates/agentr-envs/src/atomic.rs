//! Atomic file writes: a temporary file in the same folder, then a rename, so readers and
//! crashed runs never see a half-written file under the final name.

use std::path::Path;

/// Writes `bytes` to `path` atomically (on the same file system, which the sibling temporary
/// file guarantees).
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, |tmp| std::fs::write(tmp, bytes))
}

/// Lets `fill` create the file at a temporary sibling path, then renames it to `path`; for
/// writers that want a path of their own (safetensors, streamed JSONL). The temporary file is
/// removed when `fill` or the rename fails.
pub fn write_with(
    path: &Path,
    fill: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    fill(&tmp)
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("agentr-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
}
