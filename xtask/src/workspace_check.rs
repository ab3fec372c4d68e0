//! `cargo xtask check-workspace`: the workspace invariants that a tool can check, so that a
//! change breaking one fails loudly instead of waiting for a reviewer (or crates.io) to notice.
//!
//! * Layering: the libraries form the stack [`LAYERS`]; a crate depends only on crates below
//!   it. Normal, build *and* dev-dependencies are checked: none points upward today, and a
//!   lower crate whose tests depended on a higher one would link two copies of itself into its
//!   unit tests (its own, and the one the higher crate depends on), whose types do not unify.
//!   The tools ([`TOOLS`], i.e. xtask) depend on no agentr crate.
//! * MSRV: a published crate's `rust-version` is at least that of every package its users
//!   compile, i.e. every package reachable from it through normal and build dependencies
//!   (build scripts and proc macros are compiled by the user's toolchain too; dev-dependencies
//!   are not). The resolve is read with `--all-features`: an optional feature's dependencies
//!   must build with the declared Rust too. A declared `rust-version` can be too low (candle-core
//!   declares none and needs 1.94), so CI also builds the workspace with that toolchain
//!   (`.ci/run`, "minimum Rust version").
//! * Crate boundaries: no file of `crates/<name>/` reads outside that folder, because a crate is
//!   built and tested from its own folder once published (named `<name>-<version>`, beside
//!   nothing else). See [`escaping_paths`] for what is recognised.
//! * crates.io keywords: a published crate's keywords follow crates.io's rules, which refuse
//!   the upload otherwise ([`keyword_problems`]).
//!
//! Everything but [`check_workspace`] is a pure function over parsed `cargo metadata` or over
//! source text, so the checks are unit-tested on small fixtures.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The library crates, lowest first: each may depend only on those before it.
pub const LAYERS: [&str; 5] = [
    "agentr-envs",
    "agentr-mcts",
    "agentr-revise",
    "agentr-train",
    "agentr-cli",
];

/// Workspace members outside the stack, which depend on no agentr crate. xtask repeats the
/// little it needs (see `cuda::agentr_home`): depending on agentr-envs would compile it and its
/// search engine before every `cargo xtask` command.
pub const TOOLS: [&str; 1] = ["xtask"];

/// The parts of `cargo metadata --format-version 1` the checks read.
#[derive(Debug, Deserialize)]
pub struct Metadata {
    /// Every package of the resolve, workspace members included.
    pub packages: Vec<Package>,
    /// Package ids of the workspace members.
    pub workspace_members: Vec<String>,
    /// The dependency graph (absent with `--no-deps`).
    pub resolve: Option<Resolve>,
}

/// A package of `cargo metadata`.
#[derive(Debug, Deserialize)]
pub struct Package {
    /// Package id, as in `workspace_members` and the resolve.
    pub id: String,
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// `rust-version`, when declared.
    pub rust_version: Option<String>,
    /// Registries it may be published to: `None` for any, empty for `publish = false`.
    pub publish: Option<Vec<String>>,
    /// crates.io keywords.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Declared dependencies (optional ones included, whatever the features).
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
}

/// A declared dependency of a package.
#[derive(Debug, Deserialize)]
pub struct Dependency {
    /// The depended-on package's name (not its `rename`).
    pub name: String,
    /// `None` for a normal dependency, else `"dev"` or `"build"`.
    pub kind: Option<String>,
}

/// The resolved dependency graph.
#[derive(Debug, Deserialize)]
pub struct Resolve {
    /// One node per package.
    pub nodes: Vec<Node>,
}

/// A package of the resolve and its resolved dependencies.
#[derive(Debug, Deserialize)]
pub struct Node {
    /// Package id.
    pub id: String,
    /// Resolved dependencies.
    pub deps: Vec<NodeDep>,
}

/// A resolved dependency edge.
#[derive(Debug, Deserialize)]
pub struct NodeDep {
    /// The depended-on package's id.
    pub pkg: String,
    /// The kinds of the edge (one per kind and target platform).
    pub dep_kinds: Vec<DepKind>,
}

/// One kind of a resolved edge.
#[derive(Debug, Deserialize)]
pub struct DepKind {
    /// `None` for normal, else `"dev"` or `"build"`.
    pub kind: Option<String>,
}

impl Metadata {
    /// The workspace members, in `cargo metadata`'s order.
    fn members(&self) -> impl Iterator<Item = &Package> {
        self.packages
            .iter()
            .filter(|p| self.workspace_members.contains(&p.id))
    }

    /// The members `cargo publish` may upload, lowest layer first (so that a problem found
    /// through several crates is told about the lowest one).
    fn published_members(&self) -> Vec<&Package> {
        let mut published: Vec<&Package> = self.members().filter(|p| p.is_published()).collect();
        published.sort_by_key(|p| layer(&p.name).unwrap_or(LAYERS.len()));
        published
    }
}

impl Package {
    /// Whether `cargo publish` may upload it (`publish = false` reads as an empty list).
    fn is_published(&self) -> bool {
        self.publish
            .as_ref()
            .is_none_or(|registries| !registries.is_empty())
    }
}

/// How a dependency kind is named in messages.
fn kind_name(kind: Option<&str>) -> &str {
    kind.unwrap_or("normal")
}

/// The layer of a crate, if it is in the stack.
fn layer(name: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == name)
}

/// Every workspace member outside [`LAYERS`] and [`TOOLS`], and every dependency between
/// workspace members that does not point down the stack, named as `from -> to (kind)`.
pub fn layering_violations(metadata: &Metadata) -> Vec<String> {
    let members: Vec<&Package> = metadata.members().collect();
    let mut violations = Vec::new();
    for package in &members {
        let from = package.name.as_str();
        if layer(from).is_none() && !TOOLS.contains(&from) {
            violations.push(format!(
                "`{from}` is in no layer: add it to LAYERS or TOOLS in xtask/src/workspace_check.rs"
            ));
        }
        for dependency in &package.dependencies {
            let to = dependency.name.as_str();
            // A crate may dev-depend on itself (to turn features on in its tests).
            if to == from || !members.iter().any(|m| m.name == to) {
                continue;
            }
            let why = match (layer(from), layer(to)) {
                (Some(from_layer), Some(to_layer)) if to_layer < from_layer => continue,
                (Some(_), Some(_)) => format!("`{to}` is not below `{from}` in the stack"),
                (None, _) => format!("`{from}` is a tool, which depends on no agentr crate"),
                (Some(_), None) => format!("`{to}` is not a library of the stack"),
            };
            violations.push(format!(
                "`{from}` -> `{to}` ({}): {why}",
                kind_name(dependency.kind.as_deref())
            ));
        }
    }
    violations
}

/// A `rust-version` as `[major, minor, patch]`; cargo lets minor and patch be left out, and
/// they count as 0.
pub fn parse_rust_version(text: &str) -> Result<[u64; 3]> {
    let mut version = [0; 3];
    let mut parts = text.split('.');
    for (slot, part) in version.iter_mut().zip(parts.by_ref()) {
        *slot = part
            .parse()
            .with_context(|| format!("reading rust-version `{text}`"))?;
    }
    if parts.next().is_some() {
        bail!("reading rust-version `{text}`: more than three parts");
    }
    Ok(version)
}

/// Every package, reachable from a published workspace member through normal and build
/// dependencies in the resolve, whose `rust-version` is above that member's, with a shortest
/// path to it. A package is named once, for the lowest member reaching it.
pub fn msrv_violations(metadata: &Metadata) -> Result<Vec<String>> {
    let resolve = metadata
        .resolve
        .as_ref()
        .context("cargo metadata gave no resolve")?;
    let packages: HashMap<&str, &Package> = metadata
        .packages
        .iter()
        .map(|p| (p.id.as_str(), p))
        .collect();
    let nodes: HashMap<&str, &Node> = resolve.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut reported = HashSet::new();
    let mut violations = Vec::new();
    for member in metadata.published_members() {
        let Some(declared) = &member.rust_version else {
            violations.push(format!(
                "`{}` is published but declares no rust-version",
                member.name
            ));
            continue;
        };
        let msrv = parse_rust_version(declared)?;
        // Breadth first, so that the path shown is a shortest one.
        let mut parents: HashMap<&str, &str> = HashMap::new();
        let mut queue = VecDeque::from([member.id.as_str()]);
        while let Some(id) = queue.pop_front() {
            let node = nodes
                .get(id)
                .with_context(|| format!("`{id}` is missing from the resolve"))?;
            for dep in &node.deps {
                let compiled = dep
                    .dep_kinds
                    .iter()
                    .any(|k| k.kind.as_deref() != Some("dev"));
                let to = dep.pkg.as_str();
                if !compiled || to == member.id || parents.contains_key(to) {
                    continue;
                }
                parents.insert(to, id);
                queue.push_back(to);
                let package = packages
                    .get(to)
                    .with_context(|| format!("`{to}` is missing from the packages"))?;
                let Some(required) = &package.rust_version else {
                    continue;
                };
                if parse_rust_version(required)? > msrv && reported.insert(to) {
                    let mut path = vec![package.name.as_str()];
                    let mut at = to;
                    while let Some(&parent) = parents.get(at) {
                        path.push(packages.get(parent).map_or(parent, |p| p.name.as_str()));
                        at = parent;
                    }
                    path.reverse();
                    violations.push(format!(
                        "{} {} requires Rust {required}, above {}'s rust-version {declared} ({})",
                        package.name,
                        package.version,
                        member.name,
                        path.join(" -> ")
                    ));
                }
            }
        }
    }
    Ok(violations)
}

/// What crates.io refuses in a keyword list (empty when it accepts it): more than 5 keywords,
/// or a keyword that is empty, longer than 20 characters, or not of ASCII letters, digits,
/// `-`, `_` and `+` starting with a letter (`reinforcement-learning`, 22, was one).
pub fn keyword_problems<S: AsRef<str>>(keywords: &[S]) -> Vec<String> {
    let mut problems = Vec::new();
    if keywords.len() > 5 {
        problems.push(format!(
            "crates.io takes at most 5 keywords, not {}",
            keywords.len()
        ));
    }
    for keyword in keywords.iter().map(AsRef::as_ref) {
        let mut chars = keyword.chars();
        let why = if keyword.is_empty() || keyword.len() > 20 {
            "it must have 1 to 20 characters"
        } else if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
            "it must start with an ASCII letter"
        } else if !chars.all(|c| c.is_ascii_alphanumeric() || "-_+".contains(c)) {
            "it may hold only ASCII letters, digits, `-`, `_` and `+`"
        } else {
            continue;
        };
        problems.push(format!("crates.io refuses the keyword `{keyword}`: {why}"));
    }
    problems
}

/// [`keyword_problems`] of the published workspace members, each followed by the crates it
/// concerns (they usually inherit one list from the workspace).
pub fn keyword_violations(metadata: &Metadata) -> Vec<String> {
    let mut problems: Vec<(String, Vec<&str>)> = Vec::new();
    for package in metadata.published_members() {
        for problem in keyword_problems(&package.keywords) {
            match problems.iter_mut().find(|(p, _)| *p == problem) {
                Some((_, crates)) => crates.push(&package.name),
                None => problems.push((problem, vec![&package.name])),
            }
        }
    }
    problems
        .into_iter()
        .map(|(problem, crates)| format!("{problem} ({})", crates.join(", ")))
        .collect()
}

/// What a path literal is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The folder of the file (`include_str!`, `include_bytes!`, `include!`).
    File,
    /// The crate root (a literal in the same statement as `CARGO_MANIFEST_DIR`).
    CrateRoot,
}

/// A path literal in a crate's source that leads outside the crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escape {
    /// 1-based line of the literal.
    pub line: usize,
    /// The literal's contents, escapes as written.
    pub literal: String,
    /// What it is relative to.
    pub anchor: Anchor,
}

/// The macros that read a file relative to the file that calls them.
const INCLUDE_MACROS: [&str; 3] = ["include_str", "include_bytes", "include"];

/// The path literals of `source` (the file at `file`, relative to its crate root) that leave
/// the crate. A heuristic, without a Rust parser:
///
/// * A string literal that is the first argument of `include_str!`, `include_bytes!` or
///   `include!` is resolved from the file's folder; an absolute one always leaves.
/// * Any other string literal counts when it looks like a relative path that climbs: no
///   whitespace, a `/` or `\`, and a `..` component. It is resolved from the crate root, but
///   only when its statement (between the nearest `;`, `{` or `}` around it) names
///   `CARGO_MANIFEST_DIR`, as in `Path::new(env!("CARGO_MANIFEST_DIR")).join("../x")` or
///   `concat!(env!("CARGO_MANIFEST_DIR"), "/../x")`. Without that anchor a `..` path is
///   usually relative to something else: agentr-train's tests make `../../blobs` symlinks
///   inside a Hugging Face cache. A root kept in a variable and joined in a later statement
///   is missed.
/// * A path leaves the crate when any step goes above the crate root, even to come back:
///   `../<name>/x` breaks once the published crate's folder is named `<name>-<version>`.
///
/// Comments, char literals and lifetimes are skipped, so a quote in them starts no string.
pub fn escaping_paths(file: &Path, source: &str) -> Vec<Escape> {
    let (literals, code) = lex(source);
    let folder = file.parent().unwrap_or(Path::new(""));
    let mut escapes = Vec::new();
    for literal in literals {
        let anchor = if is_include_argument(&code, literal.start) {
            if Path::new(literal.text).is_absolute()
                || climbs_out(folder.components().count(), literal.text)
            {
                Anchor::File
            } else {
                continue;
            }
        } else if is_climbing_path(literal.text)
            && statement(source, &code, literal.start, literal.end).contains("CARGO_MANIFEST_DIR")
            && climbs_out(0, literal.text)
        {
            Anchor::CrateRoot
        } else {
            continue;
        };
        escapes.push(Escape {
            line: source[..literal.start].matches('\n').count() + 1,
            literal: literal.text.to_owned(),
            anchor,
        });
    }
    escapes
}

/// Whether `path`, followed from a folder `depth` levels below the crate root, goes above
/// the root at some step (separators `/` and `\`; empty and `.` components stay put).
fn climbs_out(mut depth: usize, path: &str) -> bool {
    for part in path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." if depth == 0 => return true,
            ".." => depth -= 1,
            _ => depth += 1,
        }
    }
    false
}

/// Whether a literal looks like a path with a `..` component (see [`escaping_paths`]).
fn is_climbing_path(text: &str) -> bool {
    !text.contains(char::is_whitespace)
        && text.contains(['/', '\\'])
        && text.split(['/', '\\']).any(|part| part == "..")
}

/// Whether the literal at `start` directly follows `include_str!(` (or another include
/// macro) in `code`, whitespace allowed.
fn is_include_argument(code: &[u8], start: usize) -> bool {
    let before = code[..start].trim_ascii_end();
    let Some(before) = before.strip_suffix(b"(") else {
        return false;
    };
    let Some(before) = before.trim_ascii_end().strip_suffix(b"!") else {
        return false;
    };
    let before = before.trim_ascii_end();
    let name_start = before
        .iter()
        .rposition(|b| !is_ident_byte(*b))
        .map_or(0, |i| i + 1);
    INCLUDE_MACROS
        .iter()
        .any(|m| m.as_bytes() == &before[name_start..])
}

/// The source text of the statement around `start..end`: from after the nearest `;`, `{` or
/// `}` of `code` before it to the nearest one after it.
fn statement<'a>(source: &'a str, code: &[u8], start: usize, end: usize) -> &'a str {
    let is_boundary = |b: &u8| matches!(b, b';' | b'{' | b'}');
    let from = code[..start]
        .iter()
        .rposition(is_boundary)
        .map_or(0, |i| i + 1);
    let to = code[end..]
        .iter()
        .position(is_boundary)
        .map_or(code.len(), |i| end + i);
    &source[from..to]
}

/// A string literal of Rust source.
struct Literal<'a> {
    /// Byte offset of its first byte (a prefix such as `r#` or `b` excluded).
    start: usize,
    /// Byte offset just past its closing delimiter.
    end: usize,
    /// Its contents between the delimiters, escapes as written.
    text: &'a str,
}

/// Whether a byte can be part of an identifier.
fn is_ident_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The string literals of `source`, and its bytes with comments and literals blanked out
/// (newlines and offsets kept), in which `;`, braces and macro names are real code.
fn lex(source: &str) -> (Vec<Literal<'_>>, Vec<u8>) {
    let bytes = source.as_bytes();
    let mut code = bytes.to_vec();
    let mut literals = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let end = match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => find(bytes, i, b"\n").unwrap_or(bytes.len()),
            b'/' if bytes.get(i + 1) == Some(&b'*') => block_comment_end(bytes, i),
            b'"' => {
                let (close, end) = string_end(bytes, i + 1);
                literals.push(Literal {
                    start: i,
                    end,
                    text: &source[i + 1..close],
                });
                end
            }
            b'r' => {
                let Some(hashes) = raw_string_hashes(bytes, i) else {
                    i += 1;
                    continue;
                };
                let open = i + 1 + hashes;
                let mut closing = vec![b'"'];
                closing.resize(1 + hashes, b'#');
                let close = find(bytes, open + 1, &closing).unwrap_or(bytes.len());
                let end = (close + closing.len()).min(bytes.len());
                literals.push(Literal {
                    start: open,
                    end,
                    text: &source[open + 1..close],
                });
                end
            }
            b'\'' => match char_literal_end(source, i) {
                Some(end) => end,
                // A lifetime or a label: code.
                None => {
                    i += 1;
                    continue;
                }
            },
            _ => {
                i += 1;
                continue;
            }
        };
        for byte in &mut code[i..end] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
        i = end;
    }
    (literals, code)
}

/// The first offset at or after `from` where `needle` starts.
fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| from + i)
}

/// The end of the (possibly nested) block comment starting at `start`.
fn block_comment_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i + 1 < bytes.len() {
        match &bytes[i..i + 2] {
            b"/*" => depth += 1,
            b"*/" => depth -= 1,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
        if depth == 0 {
            return i;
        }
    }
    bytes.len()
}

/// The offsets of the closing `"` of a string whose contents start at `from`, and just past
/// it (both the end of the source when it is unterminated).
fn string_end(bytes: &[u8], from: usize) -> (usize, usize) {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return (i, i + 1),
            _ => i += 1,
        }
    }
    (bytes.len(), bytes.len())
}

/// The number of `#` of a raw string starting with the `r` at `i` (`r"`, `r#"`, also after a
/// `b` or `c` prefix), or `None` when that `r` ends an identifier or starts a raw one
/// (`r#type`).
fn raw_string_hashes(bytes: &[u8], i: usize) -> Option<usize> {
    let standalone = |at: usize| at == 0 || !is_ident_byte(bytes[at - 1]);
    let prefixed = i >= 1 && matches!(bytes[i - 1], b'b' | b'c') && standalone(i - 1);
    if !standalone(i) && !prefixed {
        return None;
    }
    let hashes = bytes[i + 1..].iter().take_while(|b| **b == b'#').count();
    (bytes.get(i + 1 + hashes) == Some(&b'"')).then_some(hashes)
}

/// The end of the char literal starting with the `'` at `i` (`'x'`, `'\n'`, `'\u{..}'`), or
/// `None` for a lifetime or label.
fn char_literal_end(source: &str, i: usize) -> Option<usize> {
    let bytes = source.as_bytes();
    if bytes.get(i + 1) == Some(&b'\\') {
        return find(bytes, i + 3, b"'").map(|at| at + 1);
    }
    let width = source[i + 1..].chars().next()?.len_utf8();
    (bytes.get(i + 1 + width) == Some(&b'\'')).then_some(i + 2 + width)
}

/// The `.rs` files under `folder`, sorted, skipping `target` and hidden folders.
fn rust_files(folder: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![folder.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    pending.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// [`escaping_paths`] of every `.rs` file of every crate under `root/crates/`, named as
/// `crates/<name>/<file>:<line>`.
fn boundary_violations(root: &Path) -> Result<Vec<String>> {
    let crates = root.join("crates");
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&crates)
        .with_context(|| format!("listing {}", crates.display()))?
        .map(|entry| Ok(entry?.path()))
        .collect::<Result<_>>()?;
    folders.retain(|folder| folder.join("Cargo.toml").is_file());
    folders.sort();
    let mut violations = Vec::new();
    for folder in folders {
        let crate_dir = folder.strip_prefix(root).unwrap_or(&folder).to_owned();
        for file in rust_files(&folder)? {
            let source = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let in_crate = file.strip_prefix(&folder).unwrap_or(&file);
            for escape in escaping_paths(in_crate, &source) {
                let from = match escape.anchor {
                    Anchor::File => "from the file's folder",
                    Anchor::CrateRoot => "from the crate root",
                };
                violations.push(format!(
                    "{}:{}: \"{}\" ({from}) leads outside {}",
                    crate_dir.join(in_crate).display(),
                    escape.line,
                    escape.literal,
                    crate_dir.display()
                ));
            }
        }
    }
    Ok(violations)
}

/// One check of the report: what it checks and what violates it.
#[derive(Debug)]
pub struct Outcome {
    /// What is checked.
    pub title: String,
    /// Each violation, named.
    pub violations: Vec<String>,
}

/// The report: each check, `ok` or its violations, then the total.
pub fn render(outcomes: &[Outcome]) -> String {
    let mut text = String::new();
    for Outcome { title, violations } in outcomes {
        match violations.len() {
            0 => text += &format!("{title}: ok\n"),
            n => text += &format!("{title}: {n} violation(s)\n"),
        }
        for violation in violations {
            text += &format!("  - {violation}\n");
        }
    }
    match outcomes.iter().map(|o| o.violations.len()).sum::<usize>() {
        0 => text += "check-workspace: every invariant holds\n",
        n => text += &format!("check-workspace: {n} violation(s)\n"),
    }
    text
}

/// `cargo xtask check-workspace`: reads `cargo metadata` and the crates' sources, prints the
/// report and fails when anything is violated.
pub fn check_workspace(root: &Path) -> Result<()> {
    let mut command = crate::cargo(root);
    command
        .args(["metadata", "--format-version", "1", "--all-features"])
        .stderr(Stdio::inherit());
    let output = command
        .output()
        .with_context(|| format!("starting {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} failed with {}", output.status);
    }
    let metadata: Metadata =
        serde_json::from_slice(&output.stdout).context("reading cargo metadata's output")?;
    let outcomes = [
        Outcome {
            title: format!(
                "layering ({}; normal, build and dev-dependencies)",
                LAYERS.join(" < ")
            ),
            violations: layering_violations(&metadata),
        },
        Outcome {
            title: "MSRV (rust-version >= every normal or build dependency's, all features)"
                .to_owned(),
            violations: msrv_violations(&metadata)?,
        },
        Outcome {
            title: "crate boundaries (no file of crates/<name>/ reads outside it)".to_owned(),
            violations: boundary_violations(root)?,
        },
        Outcome {
            title: "crates.io keywords".to_owned(),
            violations: keyword_violations(&metadata),
        },
    ];
    let report = render(&outcomes);
    print!("{report}");
    if outcomes.iter().any(|o| !o.violations.is_empty()) {
        bail!("the workspace violates its invariants (see above)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The id of a fixture package.
    fn id(name: &str) -> String {
        format!("path+file:///ws/{name}#0.1.0")
    }

    /// A workspace member as `cargo metadata` shows it, with its declared `(name, kind)`
    /// dependencies; xtask is not published, as in the real workspace.
    fn member(name: &str, dependencies: &[(&str, Option<&str>)]) -> Value {
        json!({
            "id": id(name), "name": name, "version": "0.1.0", "rust_version": "1.89",
            "publish": if name == "xtask" { json!([]) } else { Value::Null },
            "keywords": ["llm", "agents"],
            "dependencies": dependencies.iter()
                .map(|(name, kind)| json!({"name": name, "kind": kind, "req": "^0.1"}))
                .collect::<Vec<_>>(),
        })
    }

    /// Metadata of `members` (all workspace members) with an empty resolve.
    fn workspace(members: Vec<Value>) -> Metadata {
        let ids: Vec<&Value> = members.iter().map(|m| &m["id"]).collect();
        serde_json::from_value(json!({
            "packages": members, "workspace_members": ids, "resolve": {"nodes": []},
        }))
        .unwrap()
    }

    #[test]
    fn layering_allows_only_edges_down_the_stack() {
        // (from, to, kind, the violation expected)
        let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
            ("agentr-mcts", "agentr-envs", None, None),
            ("agentr-cli", "agentr-train", Some("build"), None),
            ("agentr-revise", "agentr-envs", Some("dev"), None),
            // Its own tests with more features.
            ("agentr-mcts", "agentr-mcts", Some("dev"), None),
            // Not a workspace member.
            ("agentr-envs", "serde", None, None),
            (
                "agentr-envs",
                "agentr-mcts",
                None,
                Some(
                    "`agentr-envs` -> `agentr-mcts` (normal): `agentr-mcts` is not below `agentr-envs` in the stack",
                ),
            ),
            (
                "agentr-train",
                "agentr-cli",
                Some("build"),
                Some(
                    "`agentr-train` -> `agentr-cli` (build): `agentr-cli` is not below `agentr-train` in the stack",
                ),
            ),
            (
                "agentr-envs",
                "agentr-cli",
                Some("dev"),
                Some(
                    "`agentr-envs` -> `agentr-cli` (dev): `agentr-cli` is not below `agentr-envs` in the stack",
                ),
            ),
            (
                "xtask",
                "agentr-envs",
                None,
                Some(
                    "`xtask` -> `agentr-envs` (normal): `xtask` is a tool, which depends on no agentr crate",
                ),
            ),
            (
                "agentr-cli",
                "xtask",
                Some("dev"),
                Some("`agentr-cli` -> `xtask` (dev): `xtask` is not a library of the stack"),
            ),
        ];
        for (from, to, kind, expected) in cases {
            let members = LAYERS
                .iter()
                .chain(&TOOLS)
                .map(|name| match name == from {
                    true => member(name, &[(to, *kind)]),
                    false => member(name, &[]),
                })
                .collect();
            let violations = layering_violations(&workspace(members));
            let expected: Vec<String> = expected.iter().map(|e| e.to_string()).collect();
            assert_eq!(violations, expected, "{from} -> {to}");
        }
    }

    #[test]
    fn layering_names_a_member_in_no_layer() {
        let members = vec![
            member("agentr-envs", &[]),
            member("agentr-extra", &[("agentr-envs", None)]),
        ];
        assert_eq!(
            layering_violations(&workspace(members)),
            [
                "`agentr-extra` is in no layer: add it to LAYERS or TOOLS in xtask/src/workspace_check.rs",
                "`agentr-extra` -> `agentr-envs` (normal): `agentr-extra` is a tool, which depends on no agentr crate",
            ]
        );
    }

    #[test]
    fn reads_rust_versions_as_numbers() {
        let cases = [
            ("1.89", Some([1, 89, 0])),
            ("1.89.1", Some([1, 89, 1])),
            ("1", Some([1, 0, 0])),
            ("1.x", None),
            ("", None),
            ("1.2.3.4", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_rust_version(text).ok(), expected, "{text}");
        }
        // 1.9 is older than 1.89, which a comparison of text would get wrong.
        assert!(parse_rust_version("1.9").unwrap() < parse_rust_version("1.89").unwrap());
    }

    /// A published crate at Rust 1.89 whose dependencies are laid out as `cargo metadata`
    /// writes them (fields the checks ignore included): serde (normal) builds `proc` (build
    /// dependency, Rust 1.90); `newer` (Rust 1.95) is only a dev-dependency; `plain` declares
    /// no rust-version; xtask, unpublished, uses `clap` (Rust 1.99).
    const MSRV_FIXTURE: &str = r#"{
      "packages": [
        {"id": "path+file:///ws/crates/agentr-envs#0.1.0", "name": "agentr-envs",
         "version": "0.1.0", "rust_version": "1.89", "publish": null, "source": null,
         "keywords": ["llm"], "dependencies": [
           {"name": "serde", "kind": null, "req": "^1", "optional": false},
           {"name": "newer", "kind": "dev", "req": "^1", "optional": false},
           {"name": "plain", "kind": null, "req": "^1", "optional": true}]},
        {"id": "registry+https://github.com/rust-lang/crates.io-index#serde@1.0.0",
         "name": "serde", "version": "1.0.0", "rust_version": "1.61", "publish": null},
        {"id": "registry+https://github.com/rust-lang/crates.io-index#proc@2.0.0",
         "name": "proc", "version": "2.0.0", "rust_version": "1.90", "publish": null},
        {"id": "registry+https://github.com/rust-lang/crates.io-index#newer@1.0.0",
         "name": "newer", "version": "1.0.0", "rust_version": "1.95", "publish": null},
        {"id": "registry+https://github.com/rust-lang/crates.io-index#plain@1.0.0",
         "name": "plain", "version": "1.0.0", "rust_version": null, "publish": null},
        {"id": "path+file:///ws/xtask#0.1.0", "name": "xtask", "version": "0.1.0",
         "rust_version": "1.89", "publish": []},
        {"id": "registry+https://github.com/rust-lang/crates.io-index#clap@4.0.0",
         "name": "clap", "version": "4.0.0", "rust_version": "1.99", "publish": null}
      ],
      "workspace_members": ["path+file:///ws/crates/agentr-envs#0.1.0",
                            "path+file:///ws/xtask#0.1.0"],
      "resolve": {"root": null, "nodes": [
        {"id": "path+file:///ws/crates/agentr-envs#0.1.0", "features": [], "deps": [
          {"name": "serde", "pkg": "registry+https://github.com/rust-lang/crates.io-index#serde@1.0.0",
           "dep_kinds": [{"kind": null, "target": null}]},
          {"name": "newer", "pkg": "registry+https://github.com/rust-lang/crates.io-index#newer@1.0.0",
           "dep_kinds": [{"kind": "dev", "target": null}]},
          {"name": "plain", "pkg": "registry+https://github.com/rust-lang/crates.io-index#plain@1.0.0",
           "dep_kinds": [{"kind": null, "target": "cfg(unix)"}]}]},
        {"id": "registry+https://github.com/rust-lang/crates.io-index#serde@1.0.0", "deps": [
          {"name": "proc", "pkg": "registry+https://github.com/rust-lang/crates.io-index#proc@2.0.0",
           "dep_kinds": [{"kind": "build", "target": null}]}]},
        {"id": "registry+https://github.com/rust-lang/crates.io-index#proc@2.0.0", "deps": []},
        {"id": "registry+https://github.com/rust-lang/crates.io-index#newer@1.0.0", "deps": []},
        {"id": "registry+https://github.com/rust-lang/crates.io-index#plain@1.0.0", "deps": []},
        {"id": "path+file:///ws/xtask#0.1.0", "deps": [
          {"name": "clap", "pkg": "registry+https://github.com/rust-lang/crates.io-index#clap@4.0.0",
           "dep_kinds": [{"kind": null, "target": null}]}]},
        {"id": "registry+https://github.com/rust-lang/crates.io-index#clap@4.0.0", "deps": []}
      ]}
    }"#;

    #[test]
    fn msrv_names_the_dependency_that_requires_more_and_the_way_to_it() {
        let metadata: Metadata = serde_json::from_str(MSRV_FIXTURE).unwrap();
        assert_eq!(
            msrv_violations(&metadata).unwrap(),
            [
                "proc 2.0.0 requires Rust 1.90, above agentr-envs's rust-version 1.89 \
              (agentr-envs -> serde -> proc)"
            ]
        );
    }

    #[test]
    fn msrv_follows_normal_and_build_edges_only() {
        // (kind of the edge to the dependency, its rust-version, a violation expected)
        let cases = [
            (None, Some("1.89"), false),
            (None, Some("1.89.1"), true),
            (None, Some("1.9"), false),
            (None, None, false),
            (Some("build"), Some("1.90"), true),
            (Some("dev"), Some("1.95"), false),
        ];
        for (kind, rust_version, expected) in cases {
            let mut crate_json = member("agentr-envs", &[]);
            crate_json["rust_version"] = json!("1.89");
            let metadata: Metadata = serde_json::from_value(json!({
                "packages": [crate_json, {"id": "dep", "name": "dep", "version": "1.0.0",
                                          "rust_version": rust_version}],
                "workspace_members": [id("agentr-envs")],
                "resolve": {"nodes": [
                    {"id": id("agentr-envs"),
                     "deps": [{"pkg": "dep", "dep_kinds": [{"kind": kind}]}]},
                    {"id": "dep", "deps": []}]},
            }))
            .unwrap();
            let violations = msrv_violations(&metadata).unwrap();
            assert_eq!(
                violations.len(),
                usize::from(expected),
                "{kind:?} {rust_version:?}: {violations:?}"
            );
        }
    }

    #[test]
    fn msrv_needs_a_rust_version_on_published_crates() {
        let mut crate_json = member("agentr-envs", &[]);
        crate_json["rust_version"] = Value::Null;
        let mut metadata = workspace(vec![crate_json]);
        metadata.resolve = Some(Resolve {
            nodes: vec![Node {
                id: id("agentr-envs"),
                deps: Vec::new(),
            }],
        });
        assert_eq!(
            msrv_violations(&metadata).unwrap(),
            ["`agentr-envs` is published but declares no rust-version"]
        );
    }

    #[test]
    fn keywords_follow_the_crates_io_rules() {
        // (keywords, the problems expected)
        let cases: &[(&[&str], &[&str])] = &[
            (&["llm", "agents", "mcts", "reinforcement", "agent-r"], &[]),
            (&["c++", "a_b", "x1"], &[]),
            (
                &["a", "b", "c", "d", "e", "f"],
                &["crates.io takes at most 5 keywords, not 6"],
            ),
            (
                &["reinforcement-learning"],
                &[
                    "crates.io refuses the keyword `reinforcement-learning`: it must have 1 to 20 characters",
                ],
            ),
            (
                &[""],
                &["crates.io refuses the keyword ``: it must have 1 to 20 characters"],
            ),
            (
                &["3d"],
                &["crates.io refuses the keyword `3d`: it must start with an ASCII letter"],
            ),
            (
                &["rl agents"],
                &[
                    "crates.io refuses the keyword `rl agents`: it may hold only ASCII letters, digits, `-`, `_` and `+`",
                ],
            ),
        ];
        for (keywords, expected) in cases {
            assert_eq!(keyword_problems(keywords), *expected, "{keywords:?}");
        }
    }

    #[test]
    fn keyword_problems_are_named_once_with_every_crate() {
        let mut members: Vec<Value> = LAYERS[..2].iter().map(|n| member(n, &[])).collect();
        members.push(member("xtask", &[]));
        for package in &mut members {
            package["keywords"] = json!(["reinforcement-learning"]);
        }
        assert_eq!(
            keyword_violations(&workspace(members)),
            [
                "crates.io refuses the keyword `reinforcement-learning`: it must have 1 to 20 \
              characters (agentr-envs, agentr-mcts)"
            ]
        );
    }

    /// Cheap and deterministic (the manifest is compiled in), so `cargo xtask test` keeps
    /// checking the real keywords; `check-workspace` reads them from `cargo metadata`.
    #[test]
    fn crates_io_accepts_the_workspace_keywords() {
        let manifest = include_str!("../../Cargo.toml");
        let line = manifest
            .lines()
            .find(|line| line.starts_with("keywords = ["))
            .expect("the workspace manifest lists keywords");
        let keywords: Vec<&str> = line["keywords = [".len()..line.len() - 1]
            .split(',')
            .map(|k| k.trim().trim_matches('"'))
            .collect();
        assert_eq!(keyword_problems(&keywords), Vec::<String>::new());
    }

    #[test]
    fn finds_paths_that_lead_outside_the_crate() {
        use Anchor::{CrateRoot, File};
        /// The escapes expected, as (line, literal, anchor).
        type Expected = &'static [(usize, &'static str, Anchor)];
        // (file in its crate, source, the escapes expected)
        let cases: &[(&str, &str, Expected)] = &[
            // Test data read from the folder beside the workspace.
            (
                "tests/cli.rs",
                "let path = Path::new(env!(\"CARGO_MANIFEST_DIR\"))\n    \
                 .join(\"../../../shared/data/x.json\");",
                &[(2, "../../../shared/data/x.json", CrateRoot)],
            ),
            // Another crate's data file.
            (
                "tests/cli.rs",
                "let ids = include_str!(\"../../agentr-envs/data/x.txt\");",
                &[(1, "../../agentr-envs/data/x.txt", File)],
            ),
            // Out and back in is still out: the published folder is `agentr-cli-0.1.0`.
            (
                "src/lib.rs",
                "let p = Path::new(env!(\"CARGO_MANIFEST_DIR\")).join(\"../agentr-cli/data\");",
                &[(1, "../agentr-cli/data", CrateRoot)],
            ),
            (
                "src/lib.rs",
                "const X: &str = include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/../x\"));",
                &[(1, "/../x", CrateRoot)],
            ),
            (
                "src/lib.rs",
                "let p = Path::new(env!(\"CARGO_MANIFEST_DIR\")).join(r#\"../x\"#);",
                &[(1, "../x", CrateRoot)],
            ),
            (
                "build.rs",
                "let b = include_bytes!(\n    \"/etc/hosts\"\n);",
                &[(2, "/etc/hosts", File)],
            ),
            // A quote in a char literal, lifetimes and a comment start no string.
            (
                "src/lib.rs",
                "let q = '\"'; // \"../../x\"\nfn f<'a>(x: &'a str) -> &'a str { include_str!(\"../../x\") }",
                &[(2, "../../x", File)],
            ),
            // Paths that stay inside.
            ("src/lib.rs", "#[doc = include_str!(\"../README.md\")]", &[]),
            (
                "src/sciworld/mod.rs",
                "const IDS: &str = include_str!(\"../../data/x.txt\");",
                &[],
            ),
            (
                "src/lib.rs",
                "let p = Path::new(env!(\"CARGO_MANIFEST_DIR\")).join(\"data/../data/x.json\");",
                &[],
            ),
            // Not anchored to the crate root: a symlink target inside a cache folder.
            (
                "tests/hf.rs",
                "let relative = Path::new(\"../../blobs\").join(name);",
                &[],
            ),
            // Not paths: text with spaces, a lone `..`, and a comment.
            (
                "src/lib.rs",
                "let m = format!(\"{} is not ../x here\", env!(\"CARGO_MANIFEST_DIR\"));\n\
                 if name == \"..\" { bail!(\"bad\") }\n\
                 /* env!(\"CARGO_MANIFEST_DIR\") \"../x\" */",
                &[],
            ),
        ];
        for (file, source, expected) in cases {
            let escapes = escaping_paths(Path::new(file), source);
            let found: Vec<(usize, &str, Anchor)> = escapes
                .iter()
                .map(|e| (e.line, e.literal.as_str(), e.anchor))
                .collect();
            assert_eq!(found, *expected, "{file}:\n{source}");
        }
    }

    #[test]
    fn the_report_names_every_violation() {
        let outcomes = [
            Outcome {
                title: "layering".to_owned(),
                violations: Vec::new(),
            },
            Outcome {
                title: "keywords".to_owned(),
                violations: vec!["a".to_owned(), "b".to_owned()],
            },
        ];
        assert_eq!(
            render(&outcomes),
            "layering: ok\nkeywords: 2 violation(s)\n  - a\n  - b\ncheck-workspace: 2 violation(s)\n"
        );
        assert_eq!(
            render(&outcomes[..1]),
            "layering: ok\ncheck-workspace: every invariant holds\n"
        );
    }
}
