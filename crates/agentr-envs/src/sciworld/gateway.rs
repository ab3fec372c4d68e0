//! One ScienceWorld JVM and the project's own client for the py4j text protocol it speaks.
//!
//! The JVM runs `py4j.GatewayServer --die-on-broken-pipe 0`: it listens on a free port that
//! the kernel picks (so two JVMs can never clash) and prints it as its first line; it exits
//! when its stdin closes, which happens when this process dies, however it dies. Its stdout
//! and stderr are read by two threads for as long as it runs: a JVM whose pipe fills up
//! blocks inside the call that printed, which looks like a hang. The last lines of both are
//! kept for error messages.
//!
//! Protocol (UTF-8, one field per line, each command ends with `e`): `i\n<class>\ne\n`
//! constructs an object, `c\n<object>\n<method>\n<args>\ne\n` calls a method, `m\nd\n<object>\ne\n`
//! releases a reference. Every answer is one line: `!y` then a type letter and the value,
//! or `!x` and a Java exception.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::EnvError;

/// Lines of the JVM's output kept for error messages.
const KEPT_LINES: usize = 20;
/// The simulator's entry point.
const INTERFACE_CLASS: &str = "scienceworld.runtime.pythonapi.PythonInterface";

/// How to start a JVM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JvmOptions {
    /// The `java` executable.
    pub java: PathBuf,
    /// `scienceworld.jar`.
    pub jar: PathBuf,
    /// Maximum heap (`-Xmx`), in MiB.
    pub heap_mib: u32,
    /// How long the JVM may take to start and answer its first call.
    pub startup_timeout: Duration,
    /// How long one call may take before the JVM counts as hung.
    pub call_timeout: Duration,
}

/// Why a call to the JVM failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The JVM could not be started or did not come up.
    #[error("could not start the JVM: {0}")]
    Start(String),
    /// The JVM closed the connection (it died or was killed).
    #[error("the JVM died: {0}")]
    Died(String),
    /// The JVM did not answer within the call timeout.
    #[error("the JVM did not answer within {0:?}")]
    Hung(Duration),
    /// The method threw; the simulator is still usable.
    #[error("Java exception: {0}")]
    Java(String),
    /// An answer that is not the py4j protocol (or not the type asked for).
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl GatewayError {
    /// Whether the JVM can still be used after this error.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, GatewayError::Java(_))
    }
}

/// An argument of a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg<'a> {
    /// A Java `String`.
    Str(&'a str),
    /// A Java `int`.
    Int(i64),
    /// A Java `boolean`.
    Bool(bool),
}

/// What a call returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `void` or `null`.
    Void,
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Double(f64),
    /// A boolean.
    Bool(bool),
    /// A reference to a Java object (lists included), by py4j object id.
    Ref(String),
}

/// Escapes a string argument as py4j expects (backslash, newline and carriage return).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape`]; a backslash before any other character is kept as it is.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Parses one answer line (without its newline).
pub fn parse_answer(line: &str) -> Result<Value, GatewayError> {
    if let Some(error) = line.strip_prefix("!x") {
        let message = error.strip_prefix('s').unwrap_or(error);
        let first = unescape(message);
        let first = first.lines().next().unwrap_or_default().to_owned();
        return Err(GatewayError::Java(first));
    }
    let Some(value) = line.strip_prefix("!y") else {
        return Err(GatewayError::Protocol(format!(
            "unexpected answer {line:?}"
        )));
    };
    let mut chars = value.chars();
    let kind = chars.next();
    let rest = chars.as_str();
    let bad = || GatewayError::Protocol(format!("unreadable value {line:?}"));
    match kind {
        Some('v') | Some('n') => Ok(Value::Void),
        Some('s') => Ok(Value::Str(unescape(rest))),
        Some('i') | Some('L') => rest.parse().map(Value::Int).map_err(|_| bad()),
        Some('d') => rest.parse().map(Value::Double).map_err(|_| bad()),
        Some('b') => match rest {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(bad()),
        },
        Some('r') | Some('l') | Some('a') | Some('h') | Some('u') | Some('m')
            if !rest.is_empty() =>
        {
            Ok(Value::Ref(rest.to_owned()))
        }
        _ => Err(bad()),
    }
}

/// The last lines a JVM printed.
type Tail = Arc<Mutex<VecDeque<String>>>;

/// A running ScienceWorld JVM with one `PythonInterface` object. Dropping it kills the JVM.
pub struct Gateway {
    child: Child,
    /// Held open only: the JVM exits when it closes.
    _stdin: ChildStdin,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    interface: String,
    output: Tail,
    call_timeout: Duration,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("pid", &self.child.id())
            .field("interface", &self.interface)
            .finish()
    }
}

fn drain(
    stream: impl std::io::Read + Send + 'static,
    tail: Tail,
    port: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        let mut port = port;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(sender) = port.take() {
                let _ = sender.send(line.clone());
            }
            let mut kept = tail.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() == KEPT_LINES {
                kept.pop_front();
            }
            kept.push_back(line);
        }
    });
}

impl Gateway {
    /// Starts a JVM and constructs the simulator's interface object.
    pub fn start(options: &JvmOptions) -> Result<Self, GatewayError> {
        // Absolute, since the JVM runs in the jar's folder.
        let jar = std::path::absolute(&options.jar)
            .map_err(|e| GatewayError::Start(format!("{}: {e}", options.jar.display())))?;
        let mut child = Command::new(&options.java)
            .arg(format!("-Xmx{}m", options.heap_mib))
            // One collector thread: a worker per core is the parallelism, not the GC.
            .arg("-XX:+UseSerialGC")
            .arg("-cp")
            .arg(&jar)
            .args(["py4j.GatewayServer", "--die-on-broken-pipe", "0"])
            // The simulator writes files (object_type_ids.tsv) into its working directory:
            // keep them beside the jar, as the Python package does, not wherever agentr runs.
            .current_dir(
                jar.parent()
                    .filter(|p| p.is_dir())
                    .unwrap_or(Path::new(".")),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| GatewayError::Start(format!("running {}: {e}", options.java.display())))?;
        let output: Tail = Arc::default();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(GatewayError::Start("the JVM's pipes are missing".into()));
        };
        let (port_sender, port_receiver) = mpsc::channel();
        drain(stdout, Arc::clone(&output), Some(port_sender));
        drain(stderr, Arc::clone(&output), None);
        let fail = |child: &mut Child, message: String| {
            let _ = child.kill();
            let _ = child.wait();
            GatewayError::Start(message)
        };
        let port = match port_receiver.recv_timeout(options.startup_timeout) {
            Ok(line) => match line.trim().parse::<u16>() {
                Ok(port) => port,
                Err(_) => {
                    return Err(fail(
                        &mut child,
                        format!("expected a port number as the first line, got {line:?}"),
                    ));
                }
            },
            Err(_) => {
                // Give the stderr thread a moment to collect why the JVM exited.
                std::thread::sleep(Duration::from_millis(200));
                let said = tail_text(&output);
                return Err(fail(
                    &mut child,
                    format!(
                        "no port announced within {:?}{said}",
                        options.startup_timeout
                    ),
                ));
            }
        };
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = match TcpStream::connect_timeout(&address, options.startup_timeout) {
            Ok(stream) => stream,
            Err(e) => return Err(fail(&mut child, format!("connecting to {address}: {e}"))),
        };
        let configure = |stream: &TcpStream| -> std::io::Result<TcpStream> {
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(options.startup_timeout))?;
            stream.try_clone()
        };
        let writer = match configure(&stream) {
            Ok(writer) => writer,
            Err(e) => return Err(fail(&mut child, format!("configuring the socket: {e}"))),
        };
        let mut gateway = Gateway {
            child,
            _stdin: stdin,
            reader: BufReader::new(stream),
            writer,
            interface: String::new(),
            output,
            call_timeout: options.call_timeout,
        };
        match gateway.exchange(&format!("i\n{INTERFACE_CLASS}\ne\n"))? {
            Value::Ref(id) => gateway.interface = id,
            other => {
                return Err(GatewayError::Protocol(format!(
                    "constructing {INTERFACE_CLASS} returned {other:?}"
                )));
            }
        }
        gateway
            .writer
            .set_read_timeout(Some(options.call_timeout))
            .map_err(|e| GatewayError::Start(format!("configuring the socket: {e}")))?;
        Ok(gateway)
    }

    /// Sets how long each following call may take (loads legitimately take longer than
    /// steps: a cold JVM generating a gold path needs seconds).
    pub fn set_call_timeout(&mut self, timeout: Duration) -> Result<(), GatewayError> {
        self.writer
            .set_read_timeout(Some(timeout))
            .map_err(|e| GatewayError::Died(format!("configuring the socket: {e}")))?;
        self.call_timeout = timeout;
        Ok(())
    }

    /// The JVM's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Calls a method of the simulator's interface object.
    pub fn call(&mut self, method: &str, args: &[Arg<'_>]) -> Result<Value, GatewayError> {
        let object = self.interface.clone();
        self.call_on(&object, method, args)
    }

    /// Calls a method of any object this gateway holds.
    pub fn call_on(
        &mut self,
        object: &str,
        method: &str,
        args: &[Arg<'_>],
    ) -> Result<Value, GatewayError> {
        let mut command = format!("c\n{object}\n{method}\n");
        for arg in args {
            match arg {
                Arg::Str(s) => {
                    command.push('s');
                    command.push_str(&escape(s));
                }
                Arg::Int(i) => command.push_str(&format!("i{i}")),
                Arg::Bool(b) => command.push_str(if *b { "btrue" } else { "bfalse" }),
            }
            command.push('\n');
        }
        command.push_str("e\n");
        self.exchange(&command)
    }

    /// A string method's result.
    pub fn call_str(&mut self, method: &str, args: &[Arg<'_>]) -> Result<String, GatewayError> {
        match self.call(method, args)? {
            Value::Str(s) => Ok(s),
            Value::Void => Ok(String::new()),
            other => Err(GatewayError::Protocol(format!(
                "{method} returned {other:?}, not a string"
            ))),
        }
    }

    /// The strings of a method that returns a `java.util.List<String>`.
    pub fn call_strings(
        &mut self,
        method: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<String>, GatewayError> {
        let list = match self.call(method, args)? {
            Value::Ref(id) => id,
            other => {
                return Err(GatewayError::Protocol(format!(
                    "{method} returned {other:?}, not a list"
                )));
            }
        };
        let len = match self.call_on(&list, "size", &[])? {
            Value::Int(n) => usize::try_from(n).unwrap_or(0),
            other => return Err(GatewayError::Protocol(format!("size returned {other:?}"))),
        };
        let items = (0..len)
            .map(
                |i| match self.call_on(&list, "get", &[Arg::Int(i as i64)])? {
                    Value::Str(s) => Ok(s),
                    other => Err(GatewayError::Protocol(format!(
                        "{method}[{i}] is {other:?}, not a string"
                    ))),
                },
            )
            .collect::<Result<Vec<_>, _>>()?;
        // The JVM keeps every object it hands out until told otherwise.
        self.exchange(&format!("m\nd\n{list}\ne\n"))?;
        Ok(items)
    }

    fn exchange(&mut self, command: &str) -> Result<Value, GatewayError> {
        let io_error = |gateway: &Self, e: std::io::Error| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                GatewayError::Hung(gateway.call_timeout)
            }
            _ => GatewayError::Died(format!("{e}{}", tail_text(&gateway.output))),
        };
        if let Err(e) = self.writer.write_all(command.as_bytes()) {
            return Err(io_error(self, e));
        }
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(GatewayError::Died(format!(
                "connection closed{}",
                tail_text(&self.output)
            ))),
            Ok(_) => parse_answer(line.trim_end_matches(['\n', '\r'])),
            Err(e) => Err(io_error(self, e)),
        }
    }
}

fn tail_text(output: &Tail) -> String {
    let kept = output.lock().unwrap_or_else(|p| p.into_inner());
    if kept.is_empty() {
        String::new()
    } else {
        format!(
            "; the JVM's last output: {}",
            kept.iter().cloned().collect::<Vec<_>>().join(" | ")
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The major version of a `java -version` banner (`1.8.0_x` counts as 8).
pub fn java_major_version(banner: &str) -> Option<u32> {
    let quoted = banner.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '-', '+', '_']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

/// Checks that `java` runs and is version 11 or newer, and returns its major version.
///
/// # Errors
///
/// [`EnvError::MissingAssets`] naming `java`, with what failed and how to install Java.
pub fn check_java(java: &Path) -> Result<u32, EnvError> {
    let missing = |problem: String| EnvError::MissingAssets {
        what: "a Java 11+ runtime",
        path: java.to_owned(),
        hint: format!(
            "{problem}; install one (Debian: apt-get install openjdk-17-jre-headless) or pass \
             --java FILE"
        ),
    };
    let output = Command::new(java)
        .arg("-version")
        .output()
        .map_err(|e| missing(format!("could not run {}: {e}", java.display())))?;
    let banner = String::from_utf8_lossy(&output.stderr);
    let version = java_major_version(&banner)
        .ok_or_else(|| missing(format!("could not read the version from {banner:?}")))?;
    if version < 11 {
        return Err(missing(format!(
            "{} is Java {version}; ScienceWorld needs Java 11 or newer",
            java.display()
        )));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn answers_parse() {
        assert_eq!(parse_answer("!yro0").unwrap(), Value::Ref("o0".into()));
        assert_eq!(parse_answer("!ylo12").unwrap(), Value::Ref("o12".into()));
        assert_eq!(parse_answer("!yi30").unwrap(), Value::Int(30));
        assert_eq!(parse_answer("!yd0.25").unwrap(), Value::Double(0.25));
        assert_eq!(parse_answer("!ybfalse").unwrap(), Value::Bool(false));
        assert_eq!(parse_answer("!yv").unwrap(), Value::Void);
        assert_eq!(parse_answer("!yn").unwrap(), Value::Void);
        assert_eq!(
            parse_answer("!ysa\\nb\\\\n").unwrap(),
            Value::Str("a\nb\\n".into())
        );
        assert_eq!(
            parse_answer("!xspy4j.Py4JException: Method x([]) does not exist\\n\tat py4j")
                .unwrap_err(),
            GatewayError::Java("py4j.Py4JException: Method x([]) does not exist".into())
        );
        assert!(matches!(
            parse_answer("hello"),
            Err(GatewayError::Protocol(_))
        ));
        assert!(matches!(
            parse_answer("!yi3x"),
            Err(GatewayError::Protocol(_))
        ));
        assert!(matches!(
            parse_answer("!yr"),
            Err(GatewayError::Protocol(_))
        ));
    }

    #[test]
    fn java_versions_are_read() {
        assert_eq!(
            java_major_version("openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime"),
            Some(17)
        );
        assert_eq!(java_major_version("java version \"1.8.0_392\""), Some(8));
        assert_eq!(
            java_major_version("openjdk version \"21\" 2023-09-19"),
            Some(21)
        );
        assert_eq!(java_major_version("no quotes"), None);
    }

    #[test]
    fn a_missing_java_is_a_start_error() {
        let options = JvmOptions {
            java: PathBuf::from("/nonexistent/java"),
            jar: PathBuf::from("/nonexistent.jar"),
            heap_mib: 64,
            startup_timeout: Duration::from_secs(1),
            call_timeout: Duration::from_secs(1),
        };
        assert!(matches!(
            Gateway::start(&options),
            Err(GatewayError::Start(_))
        ));
        assert!(check_java(Path::new("/nonexistent/java")).is_err());
    }

    proptest! {
        #[test]
        fn escaping_round_trips(text in any::<String>()) {
            let escaped = escape(&text);
            prop_assert!(!escaped.contains('\n') && !escaped.contains('\r'));
            prop_assert_eq!(unescape(&escaped), text);
        }

        #[test]
        fn any_answer_line_parses_or_errs_without_panicking(line in any::<String>()) {
            let _ = parse_answer(&line);
            let _ = unescape(&line);
        }
    }
}
