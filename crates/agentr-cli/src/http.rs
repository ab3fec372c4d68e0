//! HTTP/1.1 server plumbing for `agentr`'s servers (`serve-model`, and `serve`, the AgentGym
//! environment server): bind, an accept loop with keep-alive connections, a request body
//! limit, OpenAI-style JSON error replies, and graceful shutdown on Ctrl-C / SIGTERM.
//!
//! A [`Handler`] gets each request with its body already read (at most
//! [`ServerOptions::max_body_bytes`]; larger ones are answered 413 without reaching it) and
//! returns a complete response. Slow clients are bounded: a request head or body that takes
//! longer than [`ServerOptions::read_timeout`] ends the connection (a body with 408), and at
//! most [`ServerOptions::max_connections`] connections are open at once (later ones wait in
//! the listen queue until one closes). Work per request beyond the handler is one `Arc` clone and the
//! body buffer; connections are HTTP/1.1 with keep-alive and `TCP_NODELAY`, served by a
//! multi-threaded tokio runtime. CPU-heavy handlers must move their work off the executor
//! (`tokio::task::spawn_blocking`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

/// The response body type: the whole body at once.
pub type Body = Full<Bytes>;

/// Answers requests. One value serves every connection, from several threads.
pub trait Handler: Send + Sync + 'static {
    /// The response to `request`, whose body was read in full.
    fn handle(&self, request: Request<Bytes>) -> impl Future<Output = Response<Body>> + Send;
}

/// Limits of a server.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Larger request bodies are answered `413 Payload Too Large`.
    pub max_body_bytes: usize,
    /// After a shutdown signal, requests in flight get this long to finish.
    pub shutdown_grace: Duration,
    /// Longest wait for a request's head, and for its body.
    pub read_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_body_bytes: 8 << 20,
            shutdown_grace: Duration::from_secs(10),
            read_timeout: Duration::from_secs(DEFAULT_READ_TIMEOUT_SECONDS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

const DEFAULT_READ_TIMEOUT_SECONDS: u64 = 30;
const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// The connection limits every server of `agentr` takes on its command line.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Seconds a client may take to send a request's head, and its body; a slower one is
    /// disconnected (a stalled body gets 408).
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_READ_TIMEOUT_SECONDS)]
    pub read_timeout: u64,
    /// Most connections open at once; more wait until one closes.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = crate::cmd::at_least_one)]
    pub max_connections: usize,
}

impl ServerOptions {
    /// Options with `max_body_bytes`, `shutdown_grace` and the command line's connection
    /// limits.
    pub fn new(
        max_body_bytes: usize,
        shutdown_grace: Duration,
        connections: &ConnectionArgs,
    ) -> Self {
        ServerOptions {
            max_body_bytes,
            shutdown_grace,
            read_timeout: Duration::from_secs(connections.read_timeout.max(1)),
            max_connections: connections.max_connections.max(1),
        }
    }
}

/// Binds `addr`, calls `on_listening` with the bound address (port 0 picks a free port), and
/// serves `handler` until Ctrl-C or SIGTERM. Builds its own tokio runtime.
pub fn run<H: Handler>(
    addr: &str,
    handler: H,
    options: ServerOptions,
    on_listening: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let listener = TcpListener::bind(addr).await?;
        on_listening(listener.local_addr()?);
        serve(listener, Arc::new(handler), options, shutdown_signal()).await
    });
    // Blocking work still running after the grace period is not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serves connections from `listener` until `shutdown` completes, then lets open requests
/// finish for up to [`ServerOptions::shutdown_grace`].
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    // The timer enables hyper's header read timeout: slow or idle clients are dropped.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.read_timeout)
        .keep_alive(true);
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A free connection slot first: past the cap, clients wait in the listen queue.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(error) => {
                    tracing::warn!("accepting a connection failed: {error}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small JSON replies must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let handler = Arc::clone(&handler);
        let service = service_fn(move |request| {
            let handler = Arc::clone(&handler);
            async move { Ok::<_, Infallible>(respond(&*handler, request, options).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that goes away mid-request is its own business.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(options.shutdown_grace) => {}
    }
    Ok(())
}

/// Reads the body within the limit and the read timeout, then asks the handler.
async fn respond<H: Handler>(
    handler: &H,
    request: Request<Incoming>,
    options: ServerOptions,
) -> Response<Body> {
    let limit = options.max_body_bytes;
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return too_large(limit);
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(options.read_timeout, Limited::new(body, limit).collect());
    let (method, path) = (parts.method.clone(), parts.uri.path().to_owned());
    let started = std::time::Instant::now();
    let body = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return too_large(limit);
        }
        Err(_) => return closing(timed_out(options.read_timeout)),
        Ok(Err(error)) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("could not read the request body: {error}"),
                "invalid_request_error",
            );
        }
    };
    let response = handler.handle(Request::from_parts(parts, body)).await;
    tracing::debug!(
        "{method} {path} -> {} in {:.1} ms",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    response
}

/// 413, closing the connection (the rest of the body is not read).
fn too_large(limit: usize) -> Response<Body> {
    closing(error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the request body is larger than {limit} bytes"),
        "invalid_request_error",
    ))
}

/// 408 for a body that did not arrive in time.
fn timed_out(read_timeout: Duration) -> Response<Body> {
    error_response(
        StatusCode::REQUEST_TIMEOUT,
        &format!(
            "the request body did not arrive within {} s",
            read_timeout.as_secs_f64()
        ),
        "invalid_request_error",
    )
}

/// `response`, closing the connection after it.
fn closing(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A JSON response from serialised bytes.
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `value` as a JSON response (500 if it cannot be serialised).
pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => json_bytes(status, body),
        Err(error) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("could not serialise the response: {error}"),
            "server_error",
        ),
    }
}

/// An OpenAI-style error: `{"error": {"message": ..., "type": ...}}`.
pub fn error_response(status: StatusCode, message: &str, kind: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"message": message, "type": kind}});
    json_bytes(status, body.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Echoes the body's length.
    struct Echo;

    impl Handler for Echo {
        async fn handle(&self, request: Request<Bytes>) -> Response<Body> {
            json(
                StatusCode::OK,
                &serde_json::json!({"path": request.uri().path(), "bytes": request.body().len()}),
            )
        }
    }

    /// A raw HTTP/1.1 exchange on an open connection: writes `request`, reads one response
    /// (headers, then `content-length` bytes).
    fn exchange(stream: &mut std::net::TcpStream, request: &[u8]) -> (u16, String, String) {
        stream.write_all(request).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        let status = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        let mut body = vec![0; length];
        stream.read_exact(&mut body).unwrap();
        (status, head, String::from_utf8(body).unwrap())
    }

    /// An [`Echo`] server on a free loopback port with `options`: its runtime, address, the
    /// sender that stops it and its task.
    fn start(
        options: ServerOptions,
    ) -> (
        tokio::runtime::Runtime,
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = runtime.spawn(serve(listener, Arc::new(Echo), options, async {
            let _ = stopped.await;
        }));
        (runtime, addr, stop, server)
    }

    #[test]
    fn keeps_connections_alive_limits_bodies_and_shuts_down() {
        let (runtime, addr, stop, server) = start(ServerOptions {
            max_body_bytes: 1000,
            shutdown_grace: Duration::from_secs(1),
            ..ServerOptions::default()
        });
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        // Three requests on one connection.
        for (path, body) in [
            ("/a", "x".repeat(10)),
            ("/b", String::new()),
            ("/c", "y".repeat(1000)),
        ] {
            let request = format!(
                "POST {path} HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let (status, _, reply) = exchange(&mut stream, request.as_bytes());
            assert_eq!(status, 200);
            let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
            assert_eq!(reply["path"], path);
            assert_eq!(reply["bytes"], body.len());
        }
        // A declared length over the limit: 413 before the body is read, connection closed.
        let (status, head, reply) = exchange(
            &mut stream,
            b"POST /d HTTP/1.1\r\nhost: t\r\ncontent-length: 1001\r\n\r\nzz",
        );
        assert_eq!(status, 413);
        assert!(head.contains("connection: close"), "{head}");
        let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["error"]["type"], "invalid_request_error");
        // A chunked body over the limit.
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let chunk = "z".repeat(600);
        let request = format!(
            "POST /e HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
        );
        assert_eq!(exchange(&mut stream, request.as_bytes()).0, 413);
        stop.send(()).unwrap();
        runtime.block_on(server).unwrap().unwrap();
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    /// Slow and idle clients cannot hold the server: a body that stalls gets 408 within the
    /// read timeout, and with every connection slot taken by idle clients, the next client is
    /// served once the read timeout has dropped one of them.
    #[test]
    fn stalled_and_idle_clients_are_dropped_and_connections_capped() {
        let read_timeout = Duration::from_millis(700);
        let (runtime, addr, stop, server) = start(ServerOptions {
            max_body_bytes: 1000,
            shutdown_grace: Duration::from_secs(1),
            read_timeout,
            max_connections: 2,
        });
        // A body that declares 100 bytes and sends 1.
        let mut stalled = std::net::TcpStream::connect(addr).unwrap();
        let started = std::time::Instant::now();
        let (status, head, _) = exchange(
            &mut stalled,
            b"POST /s HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n{",
        );
        assert_eq!(status, 408);
        assert!(head.contains("connection: close"), "{head}");
        assert!(
            started.elapsed() < read_timeout * 4,
            "{:?}",
            started.elapsed()
        );
        drop(stalled);

        // Two idle clients take both slots; a third one waits until the read timeout frees
        // one, then is served.
        let idle: Vec<std::net::TcpStream> = (0..2)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let started = std::time::Instant::now();
        let mut third = std::net::TcpStream::connect(addr).unwrap();
        let (status, _, _) = exchange(
            &mut third,
            b"POST /t HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n",
        );
        let waited = started.elapsed();
        assert_eq!(status, 200);
        assert!(
            waited >= read_timeout / 2,
            "served after {waited:?}, before a slot was free"
        );
        assert!(waited < read_timeout * 4, "{waited:?}");
        // The idle clients were disconnected.
        for mut client in idle {
            let mut byte = [0u8; 1];
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            assert!(matches!(client.read(&mut byte), Ok(0) | Err(_)));
        }
        stop.send(()).unwrap();
        runtime.block_on(server).unwrap().unwrap();
    }
}
