//! Small helpers every kind of test needs: token hashes, authenticated requests, ports, a
//! configuration from text, a bare HTTP/1.1 client and the metrics text format.

use std::net::SocketAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::Request;

use crate::config::Config;

/// The `token_sha256` of a caller whose token is `token`.
pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `message` with `authorization: Bearer <token>`.
pub fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .expect("test tokens are valid header values"),
    );
    request
}

/// Parses `toml` after writing `files` (name, contents) into a temporary directory that
/// relative paths resolve against. Secrets are read during parsing, so the directory can go.
pub fn config_from(toml: &str, files: &[(&str, &str)]) -> Config {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).expect("a file in the temporary dir");
    }
    Config::from_toml_str(toml, dir.path()).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// A loopback address nothing listens on: bound once by the OS, then released.
pub async fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    listener.local_addr().expect("a bound address")
}

/// Binds `addr`, retrying for up to 2 s: a port just released by a stopped server may linger.
pub async fn bind_retrying(addr: SocketAddr) -> TcpListener {
    let mut last = None;
    for _ in 0..100 {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot bind {addr}: {last:?}");
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to the end. The
/// metrics endpoint and the event receiver speak plain HTTP; no client library is needed.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("write to {addr}: {e}"));
    // The server may answer (413) before reading everything; a failed write is then fine.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    HttpResponse { status, body }
}

/// `GET path` on `addr`: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let response = http_request(addr, "GET", path, &[], b"").await;
    (response.status, response.body)
}

/// The value of one series in a metrics exposition, e.g.
/// `vod_signer_signatures_issued_total{caller="bff"}`; `None` if absent.
pub fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
