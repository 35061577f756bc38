//! Hand-written infrastructure and the maintained crates, in one run:
//!
//! - histogram observe: prometheus-client's `Histogram` with the server's buckets (what the
//!   server observes per call since it replaced our atomic histogram), from one thread and from
//!   two at once;
//! - find a caller's counter and count: `Metrics::signatures_issued` (a `Family::get_or_create`
//!   with the caller's name as a shared `Arc<str>`, since it replaced our caller cache), from one
//!   thread and from two at once;
//! - write an audit-sized line (250 B) without blocking: `logging::spawn_writer` against
//!   `tracing_appender::non_blocking` built lossless, to `/dev/null`. Two numbers each: the
//!   time on the calling thread, and the time until every line has reached the output
//!   (writes counted at the output, after the guard is dropped), both per line.
//!
//! Each group also has a floor, the least any implementation must spend: one relaxed atomic
//! add for a count, one `memcpy` into a buffer for a line. Where a group still has a
//! hand-written side ("ours"), ratios are to it and a verdict is given; elsewhere ratios are to
//! the floor.
//!
//! The machine is shared, so every case runs `INFRA_ROUNDS` times (default 5), the rounds
//! interleaved (every case once, then again), and the table gives the median and the range.
//! A verdict says which side is faster only when the two ranges do not overlap.
//!
//! Run: `cargo bench --bench infra` (a few seconds). Knobs: `INFRA_ROUNDS`, `INFRA_SCALE`
//! (multiplies the iteration counts, default 1).

use std::fs::File;
use std::hint::black_box;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tracing_appender::non_blocking::NonBlockingBuilder;
use tracing_subscriber::fmt::MakeWriter;
use vod_signer::logging::{DEFAULT_HIGH_WATER, spawn_writer};
use vod_signer::metrics::Metrics;

/// The server's request-duration buckets (`src/metrics/mod.rs`): 50 µs × 2.5^k, 12 bounds.
fn buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_05, 2.5, 12)
}

/// Durations spread over every bucket (a fixed pseudo-random sequence, so each run and each
/// implementation sees the same values), to keep the bucket search honest.
fn durations() -> Vec<Duration> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // 10 µs to ~2 s, log-uniform.
            let exponent = (state % 10_000) as f64 / 10_000.0 * 5.3;
            Duration::from_secs_f64(0.000_01 * 10f64.powf(exponent))
        })
        .collect()
}

const CALLERS: [&str; 8] = [
    "bff-web",
    "bff-ios",
    "bff-android",
    "batch",
    "studio",
    "partner-a",
    "partner-b",
    "ops",
];

/// Runs `work(thread, iterations)` on `threads` threads started together; the wall time per
/// iteration of one thread, in ns (what each caller waits when they all run at once).
fn timed(threads: usize, iterations: u64, work: &(dyn Fn(usize, u64) + Sync)) -> f64 {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                work(thread, iterations);
            });
        }
        barrier.wait();
        let start = Instant::now();
        // The scope joins every thread before returning.
        start
    })
    .elapsed()
    .as_nanos() as f64
        / iterations as f64
}

/// One measured case: a group, an implementation, and one measurement per round.
struct Case {
    group: &'static str,
    name: &'static str,
    run: Box<dyn Fn() -> f64>,
    samples: Vec<f64>,
}

fn case(group: &'static str, name: &'static str, run: impl Fn() -> f64 + 'static) -> Case {
    Case {
        group,
        name,
        run: Box::new(run),
        samples: Vec::new(),
    }
}

fn histogram_cases(threads: usize, iterations: u64, group: &'static str) -> Vec<Case> {
    let values = Arc::new(durations());
    let floor = Arc::new(AtomicU64::new(0));
    let histogram = Histogram::new(buckets());
    vec![
        case(group, "floor (one atomic add)", {
            let values = values.clone();
            move || {
                timed(threads, iterations, &|_, n| {
                    for i in 0..n {
                        let d = black_box(values[i as usize % values.len()]);
                        floor.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
                    }
                })
            }
        }),
        case(group, "prometheus-client Histogram", {
            move || {
                timed(threads, iterations, &|_, n| {
                    for i in 0..n {
                        let d = black_box(values[i as usize % values.len()]);
                        histogram.observe(d.as_secs_f64());
                    }
                })
            }
        }),
    ]
}

fn lookup_cases(threads: usize, iterations: u64, group: &'static str) -> Vec<Case> {
    let floor = Counter::<u64>::default();
    let metrics = Arc::new(Metrics::new());
    // The caller names as the configuration holds them: each call clones one of these
    // `Arc<str>` into its label set (a reference count, no allocation).
    let names: Arc<Vec<Arc<str>>> = Arc::new(CALLERS.iter().map(|&c| Arc::from(c)).collect());
    vec![
        case(group, "floor (resolved counter)", move || {
            timed(threads, iterations, &|_, n| {
                for _ in 0..n {
                    black_box(&floor).inc();
                }
            })
        }),
        case(
            group,
            "Metrics::signatures_issued (Family::get_or_create)",
            move || {
                timed(threads, iterations, &|thread, n| {
                    for i in 0..n {
                        let caller = &names[(i as usize + thread) % names.len()];
                        metrics.signatures_issued(black_box(caller), 1);
                    }
                })
            },
        ),
    ]
}

/// `/dev/null`, counting the bytes that reach it, so that "every line written" is checked
/// rather than assumed.
struct CountedNull {
    file: File,
    written: Arc<AtomicU64>,
}

impl Write for CountedNull {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written.fetch_add(n as u64, Ordering::Release);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn counted_null() -> (CountedNull, Arc<AtomicU64>) {
    let written = Arc::new(AtomicU64::new(0));
    let file = File::options().write(true).open("/dev/null").unwrap();
    (
        CountedNull {
            file,
            written: written.clone(),
        },
        written,
    )
}

/// Eight different audit-sized lines (250 bytes each, newline included).
fn audit_lines() -> Vec<Vec<u8>> {
    (0..8)
        .map(|i| {
            let mut line = format!(
                r#"{{"timestamp":"2026-11-30T15:00:0{i}.123456Z","level":"INFO","target":"audit","caller":"{}","fingerprint":"5f2c9a81d0e4b7c3","expires_at":1764514800,"procedure":"QCVB_SimpleProcessFile(1, 1, 10)","class_id":0}}"#,
                CALLERS[i]
            )
            .into_bytes();
            line.resize(249, b' ');
            line.push(b'\n');
            line
        })
        .collect()
}

/// Writes one line through the writer under test.
type WriteLine = Box<dyn Fn(&[u8]) + Send + Sync>;
/// Dropping it writes out what is buffered and stops the writer's thread.
type Guard = Box<dyn Send>;
/// How a log writer under test is started.
type Start = fn(CountedNull) -> (WriteLine, Guard);

fn start_ours(output: CountedNull) -> (WriteLine, Guard) {
    let (writer, guard) = spawn_writer(output, DEFAULT_HIGH_WATER).unwrap();
    (
        Box::new(move |line| writer.make_writer().write_all(line).unwrap()),
        Box::new(guard),
    )
}

fn start_appender(output: CountedNull) -> (WriteLine, Guard) {
    let (writer, guard) = NonBlockingBuilder::default().lossy(false).finish(output);
    (
        // As tracing's fmt layer does per event: `make_writer` (here a clone of the handle).
        Box::new(move |line| writer.make_writer().write_all(line).unwrap()),
        Box::new(guard),
    )
}

/// Writes `lines` lines from each of `threads` threads; (ns per line on a calling thread, ns
/// from the first line until all have reached the output divided by all the lines).
fn log_run(start: Start, threads: usize, lines: u64) -> (f64, f64) {
    let texts = audit_lines();
    let (output, written) = counted_null();
    let (write, guard) = start(output);
    let began = Instant::now();
    let calling = timed(threads, lines, &|thread, n| {
        for i in 0..n {
            write(black_box(&texts[(i as usize + thread) % texts.len()]));
        }
    });
    drop(write);
    drop(guard);
    let expected = threads as u64 * lines * 250;
    let deadline = Instant::now() + Duration::from_secs(30);
    while written.load(Ordering::Acquire) < expected {
        assert!(
            Instant::now() < deadline,
            "lines lost: {} of {expected} bytes written",
            written.load(Ordering::Acquire)
        );
        std::thread::sleep(Duration::from_micros(100));
    }
    let total = began.elapsed().as_nanos() as f64 / (threads as u64 * lines) as f64;
    assert_eq!(written.load(Ordering::Acquire), expected, "bytes repeated");
    (calling, total)
}

fn log_cases(threads: usize, lines: u64, group: &'static str, drain: &'static str) -> Vec<Case> {
    let texts = Arc::new(audit_lines());
    let mut cases = vec![case(group, "floor (memcpy into a buffer)", move || {
        let buffer = std::sync::Mutex::new(Vec::with_capacity(1 << 20));
        timed(threads, lines, &|thread, n| {
            for i in 0..n {
                let line = &texts[(i as usize + thread) % texts.len()];
                let mut buffer = buffer.lock().unwrap();
                if buffer.len() + line.len() > 1 << 20 {
                    black_box(&*buffer);
                    buffer.clear();
                }
                buffer.extend_from_slice(black_box(line));
            }
        })
    })];
    for (name, drained, start) in [
        (
            "ours (logging/writer.rs)",
            "ours, until written",
            start_ours as Start,
        ),
        (
            "tracing-appender non_blocking, lossless",
            "tracing-appender, until written",
            start_appender as Start,
        ),
    ] {
        // Both numbers come from one run; the second case reads what the first stored.
        let last = Arc::new(std::sync::Mutex::new(0.0));
        let stored = last.clone();
        cases.push(case(group, name, move || {
            let (calling, total) = log_run(start, threads, lines);
            *stored.lock().unwrap() = total;
            calling
        }));
        cases.push(case(drain, drained, move || *last.lock().unwrap()));
    }
    cases
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn range(samples: &[f64]) -> (f64, f64) {
    let low = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let high = samples.iter().copied().fold(0.0, f64::max);
    (low, high)
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value.parse().ok().filter(|&n| n > 0).unwrap_or_else(|| {
            eprintln!("infra: {name} must be a whole number above 0, not {value:?}");
            std::process::exit(2)
        }),
        Err(_) => default,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments of its own.
    let rounds = env_number("INFRA_ROUNDS", 5) as usize;
    let scale = env_number("INFRA_SCALE", 1);
    let counts = 2_000_000 * scale;
    let lines = 100_000 * scale;
    let mut cases = Vec::new();
    cases.extend(histogram_cases(1, counts, "histogram observe, 1 thread"));
    cases.extend(histogram_cases(2, counts, "histogram observe, 2 threads"));
    cases.extend(lookup_cases(1, counts, "caller lookup + inc, 1 thread"));
    cases.extend(lookup_cases(2, counts, "caller lookup + inc, 2 threads"));
    cases.extend(log_cases(
        1,
        lines,
        "log line 250 B, 1 thread, calling thread",
        "log line 250 B, 1 thread, until written",
    ));
    cases.extend(log_cases(
        2,
        lines,
        "log line 250 B, 2 threads, calling thread",
        "log line 250 B, 2 threads, until written",
    ));
    let started = Instant::now();
    for _ in 0..rounds {
        for case in &mut cases {
            let sample = (case.run)();
            case.samples.push(sample);
        }
    }
    eprintln!(
        "infra: {rounds} rounds in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    println!(
        "\n| measurement | implementation | ns/op (median) | min–max | ratio to ours (or the floor) | verdict |"
    );
    println!("|---|---|---:|---:|---:|---|");
    let mut groups: Vec<&str> = Vec::new();
    for c in &cases {
        if !groups.contains(&c.group) {
            groups.push(c.group);
        }
    }
    for group in groups {
        let members: Vec<&Case> = cases.iter().filter(|c| c.group == group).collect();
        // Groups without a hand-written side any more compare with their floor, without a
        // verdict.
        let ours = members.iter().find(|c| c.name.starts_with("ours"));
        let baseline = ours
            .or_else(|| members.iter().find(|c| c.name.starts_with("floor")))
            .unwrap_or(&members[0]);
        let (ours_low, ours_high) = range(&baseline.samples);
        for c in &members {
            let (low, high) = range(&c.samples);
            let verdict =
                if ours.is_none() || c.name.starts_with("ours") || c.name.starts_with("floor") {
                    String::new()
                } else if high < ours_low {
                    "crate faster beyond noise".into()
                } else if low > ours_high {
                    "ours faster beyond noise".into()
                } else {
                    "within noise".into()
                };
            println!(
                "| {group} | {} | {:.1} | {low:.1}–{high:.1} | {:.2} | {verdict} |",
                c.name,
                median(&c.samples),
                median(&c.samples) / median(&baseline.samples),
            );
        }
    }
    println!(
        "\n{rounds} rounds, interleaved; {counts} operations per thread per histogram/lookup case, \
         {lines} lines per thread per log case. \"beyond noise\": the ranges over rounds do not overlap."
    );
}
