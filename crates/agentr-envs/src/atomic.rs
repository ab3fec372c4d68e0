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

/// Removes the temporary files that writers of this module left in `dir` when their process
/// was killed: files named `<name>.tmp-<pid>-<random>` whose process no longer runs. Returns
/// the removed paths. Files of this process and of running ones stay, as does everything else;
/// where the running processes cannot be listed (no `/proc`), nothing is removed.
pub fn remove_stale(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut removed = Vec::new();
    let proc = Path::new("/proc");
    if !proc.is_dir() {
        return Ok(removed);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(pid) = writer_pid(&entry.file_name().to_string_lossy()) else {
            continue;
        };
        if pid != std::process::id() && !proc.join(pid.to_string()).exists() {
            std::fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// The writing process of a temporary file name `<name>.tmp-<pid>-<random>`.
fn writer_pid(file_name: &str) -> Option<u32> {
    let (_, rest) = file_name.rsplit_once(".tmp-")?;
    let (pid, random) = rest.split_once('-')?;
    (!random.is_empty() && !random.contains(['/', '.']))
        .then(|| pid.parse().ok())
        .flatten()
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

    /// Only files a killed writer left are removed: not this process's, not a running one's,
    /// not other files.
    #[test]
    fn stale_temporaries_of_dead_writers_go() {
        let dir = fresh_dir("stale");
        let dead = format!("7.json.tmp-{}-a1B2c3", u32::MAX);
        let own = format!("8.json.tmp-{}-x", std::process::id());
        // Process 1 (init) runs as long as the machine does.
        let running = "9.json.tmp-1-y";
        for name in [
            dead.as_str(),
            own.as_str(),
            running,
            "10.json",
            "notes.tmp-x",
        ] {
            std::fs::write(dir.join(name), b"partial").unwrap();
        }
        let removed = super::remove_stale(&dir).unwrap();
        if std::path::Path::new("/proc").is_dir() {
            assert_eq!(removed, [dir.join(&dead)]);
        } else {
            assert!(removed.is_empty());
        }
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 4 + usize::from(removed.is_empty()));
        assert!(left.contains(&own) && left.iter().any(|n| n == running));
        assert!(
            super::remove_stale(&dir.join("missing"))
                .unwrap()
                .is_empty()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest::proptest! {
        #[test]
        fn reading_temporary_names_never_panics(name in ".{0,40}") {
            let _ = super::writer_pid(&name);
        }
    }
}
