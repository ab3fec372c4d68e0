//! What the server tests share: a running `agentr` server on a free loopback port, and raw
//! HTTP/1.1 exchanges with it (to send what no well-behaved client would).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs `agentr ARGS` to the end, without standard input.
pub fn agentr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentr"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("agentr runs")
}

/// Bytes as text, invalid UTF-8 replaced.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A path in the temporary folder unique to this test binary (`CARGO_CRATE_NAME` is the test
/// file's name) and process.
pub fn temp_path(name: &str) -> PathBuf {
    let binary = env!("CARGO_CRATE_NAME");
    std::env::temp_dir().join(format!("agentr-{binary}-{name}-{}", std::process::id()))
}

/// An `agentr` server process, killed on drop.
pub struct Served {
    child: Child,
    /// `host:port` it listens on.
    pub addr: String,
    /// What it has written to stderr after its `listening on` line.
    log: Arc<Mutex<String>>,
}

impl Served {
    /// Runs `agentr ARGS` (which must include `--port 0`) and waits for its
    /// `listening on http://HOST:PORT` line.
    pub fn start(args: &[&str]) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_agentr"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut seen = String::new();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = line.strip_prefix("listening on http://") {
                        break addr.to_owned();
                    }
                    seen.push_str(&line);
                    seen.push('\n');
                }
                _ => panic!(
                    "`agentr {}` ended before listening:\n{seen}",
                    args.join(" ")
                ),
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Served { child, addr, log }
    }

    /// What the server has logged so far (after its `listening on` line).
    #[allow(dead_code)] // Only some test binaries read the log.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One exchange on a fresh connection to `addr`: writes `request` (a server may answer, and
/// close, before reading all of an oversized body), reads one response; returns the status,
/// the lower-cased head and the body (`content-length` bytes, none without it).
pub fn exchange(addr: &str, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("the server accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("a read timeout");
    let _ = stream.write_all(request);
    read_response(&mut stream)
}

/// Reads one response from `stream`: status, lower-cased head, body.
pub fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("a response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head[9..12].parse().expect("a status code");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("a length"));
    let mut body = vec![0; length];
    stream.read_exact(&mut body).expect("the body");
    (status, head, body)
}

/// A `POST` of the JSON `body` to `path` that closes the connection after the answer.
pub fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A `GET` of `target` that closes the connection after the answer.
pub fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").into_bytes()
}
