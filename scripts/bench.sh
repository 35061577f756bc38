#!/usr/bin/env bash
# Load benchmark, one command: builds release binaries, starts `vod-signer serve` (a caller
# authenticated by bearer token, with a policy: allowed_procedures, max validity) and the bare
# tonic `echo_server` example on loopback ports, drives both the same way with the `loadgen`
# example, measures memory, stops everything and prints a markdown table.
#
#   scripts/bench.sh                 # full run, about 3 minutes on 2 cores
#   DURATION=3 WARMUP=1 scripts/bench.sh   # quick look while developing
#
# Phases, each against the signer and then the echo server (saturation also against a second
# signer with the audit log off):
#   saturation  closed loop, $SAT_CONNS connections x $SAT_CONC calls in flight
#   50% load    open loop at half the signer's measured saturation (same rate for both)
#   overload    closed loop, $OVERLOAD_CONNS connections x 1,000 calls in flight in total
# then IssueSignatureBatch (count=100) against the signer, in signatures/s.
# Memory: VmRSS before any load ("idle"), the highest VmRSS sampled during overload, and
# VmHWM at the end, from /proc/PID/status.
#
# Everything listens on and sends to 127.0.0.1 only; every phase is bounded in time.
set -euo pipefail

cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SIGNER_PORT=${SIGNER_PORT:-50151}
ECHO_PORT=${ECHO_PORT:-50161}
QUIET_PORT=${QUIET_PORT:-50152}
SAT_CONNS=${SAT_CONNS:-4}
SAT_CONC=${SAT_CONC:-64}
OVERLOAD_CONNS=${OVERLOAD_CONNS:-10}
OVERLOAD_STREAMS=${OVERLOAD_STREAMS:-1000}
BATCH_CONC=${BATCH_CONC:-8}
# The audit log of every issuance goes to a file, as it would in production.
SIGNER_RUST_LOG=${SIGNER_RUST_LOG:-info}

echo "building release binaries..." >&2
cargo build --release --quiet --bin vod-signer --example echo_server --example loadgen
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir=${target_dir:-target}
SIGNER="$target_dir/release/vod-signer"
ECHO="$target_dir/release/examples/echo_server"
LOADGEN="$target_dir/release/examples/loadgen"

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# A throwaway key and caller token, made fresh for this run.
head -c 24 /dev/urandom | base64 | tr -d '\n/+=' >"$work/secret-key"
BENCH_TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '\n/+=')
export BENCH_TOKEN
cat >"$work/config.toml" <<EOF
listen = "127.0.0.1:$SIGNER_PORT"

[[keys]]
secret_id = "AKIDbenchmark0000000000000000000000"
secret_key_file = "secret-key"
active = true

[[callers]]
name = "bench-bff"
token_env = "BENCH_TOKEN"
allowed_procedures = ["QCVB_SimpleProcessFile", "content_review"]
max_validity_seconds = 7200
EOF
if [[ -n "${BENCH_CONFIG_EXTRA:-}" ]]; then
    printf '\n%s\n' "$BENCH_CONFIG_EXTRA" >>"$work/config.toml"
fi

wait_for_port() {
    local port=$1
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$port" >&2
    return 1
}

RUST_LOG=$SIGNER_RUST_LOG "$SIGNER" serve --config "$work/config.toml" 2>"$work/signer.log" &
signer_pid=$!
pids+=("$signer_pid")
# The same server with the audit log off, to show what per-issuance logging costs.
sed "s/:$SIGNER_PORT\"/:$QUIET_PORT\"/" "$work/config.toml" >"$work/quiet.toml"
RUST_LOG=warn "$SIGNER" serve --config "$work/quiet.toml" 2>"$work/quiet.log" &
pids+=("$!")
"$ECHO" "127.0.0.1:$ECHO_PORT" >"$work/echo.log" 2>&1 &
echo_pid=$!
pids+=("$echo_pid")
wait_for_port "$SIGNER_PORT"
wait_for_port "$ECHO_PORT"
wait_for_port "$QUIET_PORT"
sleep 0.5

kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
signer_idle=$(kib "$signer_pid" VmRSS)
echo_idle=$(kib "$echo_pid" VmRSS)

# Runs loadgen; prints its report to stderr and keeps its RESULT line in $work/$label.
load() {
    local label=$1
    shift
    "$LOADGEN" --label "$label" --duration "$DURATION" --warmup "$WARMUP" "$@" |
        tee /dev/stderr | grep '^RESULT ' >"$work/$label"
}
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" "$work/$1"; }

# Samples a process's VmRSS every 100 ms while a phase runs; prints the highest, in KiB.
peak_rss_during() {
    local pid=$1
    shift
    local peak=0 rss
    "$@" &
    local job=$!
    while kill -0 "$job" 2>/dev/null; do
        rss=$(kib "$pid" VmRSS)
        ((rss > peak)) && peak=$rss
        sleep 0.1
    done
    wait "$job"
    echo "$peak"
}

signer_args=(--target "127.0.0.1:$SIGNER_PORT" --token "$BENCH_TOKEN")
echo_args=(--target "127.0.0.1:$ECHO_PORT")
per_conn=$(((OVERLOAD_STREAMS + OVERLOAD_CONNS - 1) / OVERLOAD_CONNS))

echo "== saturation" >&2
load signer-sat "${signer_args[@]}" --connections "$SAT_CONNS" --concurrency "$SAT_CONC"
load echo-sat "${echo_args[@]}" --connections "$SAT_CONNS" --concurrency "$SAT_CONC"
load quiet-sat --target "127.0.0.1:$QUIET_PORT" --token "$BENCH_TOKEN" \
    --connections "$SAT_CONNS" --concurrency "$SAT_CONC"

half=$(awk -v r="$(field signer-sat ok_rate)" 'BEGIN {printf "%d", r / 2}')
echo "== open loop at $half/s (half the signer's saturation)" >&2
load signer-half "${signer_args[@]}" --connections "$SAT_CONNS" --concurrency "$SAT_CONC" --rate "$half"
load echo-half "${echo_args[@]}" --connections "$SAT_CONNS" --concurrency "$SAT_CONC" --rate "$half"

echo "== overload: $OVERLOAD_STREAMS streams over $OVERLOAD_CONNS connections" >&2
overload_args=(--connections "$OVERLOAD_CONNS" --concurrency "$OVERLOAD_STREAMS")
signer_peak=$(peak_rss_during "$signer_pid" load signer-over "${signer_args[@]}" "${overload_args[@]}")
echo_peak=$(peak_rss_during "$echo_pid" load echo-over "${echo_args[@]}" "${overload_args[@]}")

echo "== IssueSignatureBatch, count=100" >&2
load signer-batch "${signer_args[@]}" --rpc batch --batch-count 100 --connections 2 --concurrency "$BATCH_CONC"

signer_hwm=$(kib "$signer_pid" VmHWM)
echo_hwm=$(kib "$echo_pid" VmHWM)
audit_lines=$(grep -c 'signature issued' "$work/signer.log" || true)

row() {
    local label=$1 what=$2
    local codes
    codes=$(field "$label" codes | sed 's/,/, /g')
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$what" "$(field "$label" ok_rate)" \
        "$(field "$label" p50_us)" "$(field "$label" p99_us)" "$(field "$label" p999_us)" \
        "$(field "$label" refused_p99_us)" "$codes"
}

sat_ratio=$(awk -v a="$(field signer-sat ok_rate)" -v b="$(field echo-sat ok_rate)" \
    'BEGIN {printf "%.2f", a / b}')
cat <<EOF

### Load ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg))

Recorded ${DURATION} s per phase after ${WARMUP} s of warm-up; server and load generator share the machine.

| phase | ok calls/s | p50 µs | p99 µs | p99.9 µs | refused p99 µs | status counts |
|---|---:|---:|---:|---:|---:|---|
EOF
row signer-sat "IssueSignature, saturation (${SAT_CONNS}×${SAT_CONC})"
row echo-sat "echo, saturation (${SAT_CONNS}×${SAT_CONC})"
row quiet-sat "IssueSignature, audit log off, saturation (${SAT_CONNS}×${SAT_CONC})"
row signer-half "IssueSignature, open loop ${half}/s"
row echo-half "echo, open loop ${half}/s"
row signer-over "IssueSignature, overload (${OVERLOAD_STREAMS} streams)"
row echo-over "echo, overload (${OVERLOAD_STREAMS} streams)"
row signer-batch "IssueSignatureBatch ×100 (2×${BATCH_CONC})"
cat <<EOF

- IssueSignature / echo at saturation: **${sat_ratio}×**
- IssueSignatureBatch(count=100): **$(field signer-batch signatures_per_s) signatures/s**
- audit log lines written by the signer during the run: ${audit_lines}

| memory | vod-signer | echo |
|---|---:|---:|
| RSS idle (MiB) | $(mib "$signer_idle") | $(mib "$echo_idle") |
| RSS peak during overload, sampled (MiB) | $(mib "$signer_peak") | $(mib "$echo_peak") |
| VmHWM at end (MiB) | $(mib "$signer_hwm") | $(mib "$echo_hwm") |
EOF
