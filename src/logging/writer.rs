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

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the thread lets lines gather after the first one, so that a busy server makes one
/// write per millisecond rather than one per line.
pub const GATHER: Duration = Duration::from_millis(1);

/// Buffered bytes beyond which writers wait for the thread (about 20,000 audit lines).
pub const DEFAULT_HIGH_WATER: usize = 4 << 20;

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
        while state.pending.is_empty() && !state.closed {
            state.idle = true;
            state = shared
                .has_lines
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.idle = false;
        if state.pending.is_empty() && state.closed {
            return;
        }
        if !state.closed {
            drop(state);
            std::thread::sleep(GATHER);
            state = shared.lock();
        }
        std::mem::swap(&mut state.pending, &mut batch);
        drop(state);
        shared.has_room.notify_all();
        // Nowhere to report a failed log write; the next batch tries again.
        let _ = output.write_all(&batch);
        let _ = output.flush();
        batch.clear();
    }
}

impl Write for &LogWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let shared = &*self.shared;
        let mut state = shared.lock();
        while state.pending.len() >= shared.high_water && !state.closed {
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
}
