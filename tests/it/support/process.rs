//! The real `vod-signer` binary as a child process: `serve` with its stderr lines read on a
//! thread (so a test can wait for one line without blocking on the pipe), signals, and an exit
//! that collects everything it wrote. Killed on drop, so a failing test leaves no server
//! behind.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_vod-signer");

/// `vod-signer serve ...` running, its stderr lines arriving on a channel.
pub struct ServeProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl ServeProcess {
    /// `vod-signer serve` with `configure`'s arguments and environment; stdin and stdout are
    /// closed, stderr is read line by line.
    pub fn spawn(configure: impl FnOnce(&mut Command)) -> ServeProcess {
        let mut command = Command::new(BIN);
        command.arg("serve");
        configure(&mut command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ServeProcess {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads stderr lines until one satisfies `found`, and returns what it extracts; panics
    /// with every line seen so far if 30 s pass without a line.
    pub fn wait_for<T>(&mut self, mut found: impl FnMut(&str) -> Option<T>) -> T {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    let hit = found(&line);
                    self.seen.push(line);
                    if let Some(value) = hit {
                        return value;
                    }
                }
                Err(e) => panic!("{e}; stderr so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Sends signal `name` (`TERM`, `INT`, `HUP`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to 20 s for the process to exit; its exit code and every stderr line.
    pub fn finish(mut self) -> (i32, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "serve did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        (
            status.code().expect("exited by a signal"),
            std::mem::take(&mut self.seen),
        )
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Any child process, killed on drop.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl KillOnDrop {
    /// `vod-signer serve --config CONFIG --listen 127.0.0.1:PORT`, its stderr to `stderr`.
    pub fn serve(config: &Path, port: u16, stderr: impl Into<Stdio>) -> KillOnDrop {
        KillOnDrop(
            Command::new(BIN)
                .args(["serve", "--config"])
                .arg(config)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("vod-signer starts"),
        )
    }

    /// Sends signal `name` (`TERM`, `INT`, `HUP`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.0.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success());
    }
}

/// A port nothing listens on at the moment (for a child process to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A channel to `127.0.0.1:PORT` once a server there accepts connections (20 s at most).
pub async fn connect_when_up(port: u16) -> Channel {
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(channel) = Channel::from_shared(url.clone()).unwrap().connect().await {
            return channel;
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
