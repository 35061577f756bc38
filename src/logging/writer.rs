//! Where log lines go: appended to one shared buffer, written out by a background thread.
//!
//! Every issued signature writes an audit line, so this is on the hot path. A synchronous
//! `write(2)` on the async worker threads stalled every call whenever stderr was slow; a
//! queue of lines (tracing-appender's `non_blocking`) copied each line into a fresh `Vec` and
//! handed it over a channel. Here a line is one `memcpy` under a mutex held for just that, and
//! the thread takes everything gathered at once: no allocation per line, one write per batch.
//!
//! Lossless: when the buffer is full (the output cannot keep up), writers wait for room rather
//! than drop lines, so audit records are never lost. Lines wait at most [`GATHER`] plus one
//! write before they reach the output; dropping the [`FlushGuard`] writes out everything left.
//!
//! When the output fails (EPIPE, ENOSPC, ...) the batch is kept, not dropped: it is retried
//! every [`RETRY`] until a write succeeds. Meanwhile [`SinkHealth`] reports the sink broken, so
//! the service stops issuing (an issuance without its audit line is what must not happen), and
//! every failed write is counted. Only while broken AND full does a new line get dropped
//! (counted too): blocking the caller's thread forever on a dead output would stop the server.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;
use tracing_subscriber::fmt::MakeWriter;

/// How long the thread lets lines gather after the first one, so that a busy server makes one
/// write per millisecond rather than one per line.
pub(super) const GATHER: Duration = Duration::from_millis(1);

/// Buffered bytes beyond which writers wait for the thread (about 20,000 audit lines).
pub const DEFAULT_HIGH_WATER: usize = 4 << 20;

/// How long the thread waits before writing a failed batch again.
pub(super) const RETRY: Duration = Duration::from_millis(200);

/// Whether the log output currently takes writes, and how often it did not. Cheap to clone;
/// every clone sees the same sink.
#[derive(Clone, Debug)]
pub struct SinkHealth {
    healthy: Arc<AtomicBool>,
    changes: watch::Sender<bool>,
    failed_writes: Counter,
    dropped_lines: Counter,
    last_error: Arc<Mutex<Option<String>>>,
}

impl SinkHealth {
    fn new() -> Self {
        SinkHealth {
            healthy: Arc::new(AtomicBool::new(true)),
            changes: watch::Sender::new(true),
            failed_writes: Counter::default(),
            dropped_lines: Counter::default(),
            last_error: Arc::default(),
        }
    }

    /// `false` from the first failed write until a write succeeds again.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Sees every change of [`Self::is_healthy`] (for health reporting).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changes.subscribe()
    }

    /// Writes to the output that failed (each retry of a batch counts again).
    pub fn failed_writes(&self) -> &Counter {
        &self.failed_writes
    }

    /// Lines discarded because the output was broken and the buffer full.
    pub fn dropped_lines(&self) -> &Counter {
        &self.dropped_lines
    }

    /// The last write error, for the line the server logs when the sink breaks.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, healthy: bool) {
        let was = self.healthy.swap(healthy, Ordering::AcqRel);
        if was != healthy {
            self.changes.send_replace(healthy);
        }
    }

    fn failed(&self, error: &io::Error) {
        self.failed_writes.inc();
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
        self.set(false);
    }
}

struct State {
    pending: Vec<u8>,
    /// The thread is waiting for a first line (a writer must wake it).
    idle: bool,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    has_lines: Condvar,
    has_room: Condvar,
    high_water: usize,
    health: SinkHealth,
}

impl Shared {
    /// The state; a panic elsewhere while it was held leaves it usable (it is only bytes).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writing end, for tracing's `fmt` layer and the audit layer (`MakeWriter`).
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Keeps the thread; dropping it writes out every line still buffered and stops the thread.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FlushGuard {
    /// The health of the output this guard's thread writes to.
    pub fn health(&self) -> SinkHealth {
        self.shared.health.clone()
    }
}

/// Starts the thread that writes to `output`.
pub fn spawn(
    output: impl Write + Send + 'static,
    high_water: usize,
) -> io::Result<(LogWriter, FlushGuard)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            pending: Vec::with_capacity(64 * 1024),
            idle: false,
            closed: false,
        }),
        has_lines: Condvar::new(),
        has_room: Condvar::new(),
        high_water,
        health: SinkHealth::new(),
    });
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("vod-signer-log".into())
            .spawn(move || run(&shared, output))?
    };
    Ok((
        LogWriter {
            shared: shared.clone(),
        },
        FlushGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn run(shared: &Shared, mut output: impl Write) {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        let mut state = shared.lock();
        while state.pending.is_empty() && batch.is_empty() && !state.closed {
            state.idle = true;
            state = shared
                .has_lines
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.idle = false;
        if state.pending.is_empty() && batch.is_empty() && state.closed {
            return;
        }
        let closed = state.closed;
        if batch.is_empty() {
            if !closed {
                drop(state);
                std::thread::sleep(GATHER);
                state = shared.lock();
            }
            std::mem::swap(&mut state.pending, &mut batch);
            drop(state);
            shared.has_room.notify_all();
        } else {
            // A failed batch is retried alone; new lines wait in `pending`, which writers
            // stop filling at the high-water mark while the output is broken.
            drop(state);
        }
        // The server logs the change of health (the error itself is counted here): a line
        // logged from this thread could wait for room that only this thread makes.
        match write_out(&mut output, &mut batch) {
            Ok(()) => shared.health.set(true),
            Err(error) => {
                shared.health.failed(&error);
                // At shutdown there is no later: one last try was all there is.
                if closed {
                    return;
                }
                std::thread::sleep(RETRY);
            }
        }
    }
}

/// Writes `batch` and empties it; on failure, removes only what was written, so a retry
/// neither repeats nor loses a byte.
fn write_out(output: &mut impl Write, batch: &mut Vec<u8>) -> io::Result<()> {
    let mut written = 0;
    let result = loop {
        if written == batch.len() {
            break output.flush();
        }
        match output.write(&batch[written..]) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    batch.drain(..written);
    result
}

impl Write for &LogWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let shared = &*self.shared;
        let mut state = shared.lock();
        while state.pending.len() >= shared.high_water && !state.closed {
            if !shared.health.is_healthy() {
                drop(state);
                shared.health.dropped_lines.inc();
                return Ok(line.len());
            }
            state = shared
                .has_room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.pending.extend_from_slice(line);
        let wake = std::mem::replace(&mut state.idle, false);
        drop(state);
        if wake {
            shared.has_lines.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Lines are written by the thread within `GATHER`; nothing to do here.
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = &'a LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.has_lines.notify_one();
        self.shared.has_room.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that records what reached it, optionally slowly.
    #[derive(Clone, Default)]
    struct Recorded {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
        delay: Duration,
    }

    impl Write for Recorded {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            std::thread::sleep(self.delay);
            self.bytes.lock().unwrap().extend_from_slice(buf);
            *self.writes.lock().unwrap() += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines_from(threads: usize, per_thread: usize, writer: &LogWriter) {
        std::thread::scope(|scope| {
            for t in 0..threads {
                scope.spawn(move || {
                    for i in 0..per_thread {
                        let line = format!("thread {t} line {i} {}\n", "x".repeat(i % 50));
                        (&*writer).write_all(line.as_bytes()).unwrap();
                    }
                });
            }
        });
    }

    fn check_complete(text: &str, threads: usize, per_thread: usize) {
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), threads * per_thread);
        for t in 0..threads {
            // Whole lines, each thread's in its own order.
            let own: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            for (i, line) in own.iter().enumerate() {
                assert_eq!(*line, format!("thread {t} line {i} {}", "x".repeat(i % 50)));
            }
        }
    }

    #[test]
    fn every_line_arrives_whole_and_in_order_and_drop_flushes() {
        let output = Recorded::default();
        let (writer, guard) = spawn(output.clone(), DEFAULT_HIGH_WATER).unwrap();
        lines_from(4, 2_000, &writer);
        drop(guard);
        let text = String::from_utf8(output.bytes.lock().unwrap().clone()).unwrap();
        check_complete(&text, 4, 2_000);
        // Batched: far fewer writes than lines.
        assert!(*output.writes.lock().unwrap() < 8_000);
    }

    #[test]
    fn a_slow_output_makes_writers_wait_but_loses_nothing() {
        let output = Recorded {
            delay: Duration::from_millis(2),
            ..Recorded::default()
        };
        // A tiny buffer: writers hit the high-water mark again and again.
        let (writer, guard) = spawn(output.clone(), 256).unwrap();
        lines_from(3, 300, &writer);
        drop(guard);
        let text = String::from_utf8(output.bytes.lock().unwrap().clone()).unwrap();
        check_complete(&text, 3, 300);
    }

    #[test]
    fn lines_reach_the_output_without_a_flush_from_the_writer() {
        let output = Recorded::default();
        let (writer, _guard) = spawn(output.clone(), DEFAULT_HIGH_WATER).unwrap();
        (&writer).write_all(b"one line\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while output.bytes.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the line never arrived"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(&*output.bytes.lock().unwrap(), b"one line\n");
    }

    /// An output that fails with EPIPE while `broken` is set, like stderr piped into a
    /// `head` that has exited.
    #[derive(Clone, Default)]
    struct Breakable {
        bytes: Arc<Mutex<Vec<u8>>>,
        broken: Arc<AtomicBool>,
    }

    impl Write for Breakable {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn wait_for(what: &str, condition: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !condition() {
            assert!(
                std::time::Instant::now() < deadline,
                "{what} never happened"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn a_failing_output_is_reported_counted_and_retried_without_loss() {
        let output = Breakable::default();
        output.broken.store(true, Ordering::SeqCst);
        let (writer, guard) = spawn(output.clone(), DEFAULT_HIGH_WATER).unwrap();
        let health = guard.health();
        let mut changes = health.subscribe();
        assert!(health.is_healthy());
        (&writer).write_all(b"audit 1\n").unwrap();
        wait_for("the failure", || !health.is_healthy());
        assert!(!*changes.borrow_and_update());
        assert!(health.failed_writes().get() >= 1);
        assert!(health.last_error().unwrap().contains("pipe"));
        (&writer).write_all(b"audit 2\n").unwrap();
        output.broken.store(false, Ordering::SeqCst);
        wait_for("the recovery", || health.is_healthy());
        assert!(*changes.borrow_and_update());
        drop(guard);
        // The batch that failed was kept: both lines arrive, once each, in order.
        assert_eq!(&*output.bytes.lock().unwrap(), b"audit 1\naudit 2\n");
        assert_eq!(health.dropped_lines().get(), 0);
    }

    #[test]
    fn a_broken_output_never_blocks_writers_once_the_buffer_is_full() {
        let output = Breakable::default();
        output.broken.store(true, Ordering::SeqCst);
        let (writer, guard) = spawn(output.clone(), 64).unwrap();
        let health = guard.health();
        (&writer).write_all(b"first line\n").unwrap();
        wait_for("the failure", || !health.is_healthy());
        // Far past the high-water mark: returns at once, the excess counted as dropped.
        for _ in 0..100 {
            (&writer)
                .write_all(b"another line of some length\n")
                .unwrap();
        }
        assert!(health.dropped_lines().get() > 0);
        drop(guard);
    }
}
