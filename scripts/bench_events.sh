#!/usr/bin/env bash
# Event receiver benchmark (issue 12): HTTP intake of signed NewFileUpload events and the time
# from a 200 to the change reaching a WatchUploads stream, on SQLite and on PostgreSQL.
#
#   scripts/bench_events.sh                       # both stores, 32, 128 and 256 connections
#   STORES=sqlite UPLOADS=5000 CONNECTIONS=128 scripts/bench_events.sh
#   BENCH_LOG_DIR=/tmp/logs scripts/bench_events.sh   # keep each server's log there
#
# For each store it starts `vod-signer serve` (release build) from a configuration in a
# temporary directory (PostgreSQL: its own server from /usr/lib/postgresql/15 on a free port,
# run as the `postgres` user), runs the `events_load` example against it, stops everything and
# prints a markdown table. Everything listens on 127.0.0.1 only. Targets: intake >= 5,000
# events/s, watch p99 <= 100 ms.
#
# An event is answered only once its commit is on disk, so N senders that each wait for their
# answer get at most N events per fsync. The load runs at each count in CONNECTIONS, and the
# script measures this disk's fsync (fdatasync of 4 KiB) as that floor.
set -euo pipefail

cd "$(dirname "$0")/.."

STORES=${STORES:-"sqlite postgres"}
UPLOADS=${UPLOADS:-20000}
CONNECTIONS=${CONNECTIONS:-"32 128 256"}
LATENCY_EVENTS=${LATENCY_EVENTS:-500}
LATENCY_RATE=${LATENCY_RATE:-100}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

cargo build --release --quiet --bin vod-signer --example events_load
BIN=target/release/vod-signer
LOAD=target/release/examples/events_load

work=$(mktemp -d)
# PostgreSQL runs as the `postgres` user, which must be able to reach its data directory below.
chmod 711 "$work"
server_pid=""
pg_dir=""
cleanup() {
    if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    if [[ -n $pg_dir ]]; then runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Bench-only secrets, in files and the environment (never on a command line).
export BENCH_TOKEN=bench-events-token-0001
export BENCH_PATH_TOKEN=bench-events-path-token-0001
export BENCH_SIGN_KEY=benchSignKey1
printf '%s' "$BENCH_PATH_TOKEN" >"$work/path-token"
printf '%s' "$BENCH_SIGN_KEY" >"$work/sign-key"
printf '%s' bench-events-secret-key >"$work/secret-key"
token_sha=$(printf '%s' "$BENCH_TOKEN" | sha256sum | cut -d' ' -f1)

start_postgres() {
    pg_dir="$work/pg"
    mkdir -p "$pg_dir"
    chown postgres "$pg_dir"
    local port
    port=$(free_port)
    runuser -u postgres -- "$PG_BIN/initdb" -D "$pg_dir/data" -A trust -U postgres >/dev/null
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
        -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
    pg_url="postgres://postgres@127.0.0.1:$port/postgres"
}

run_store() {
    local store=$1 url
    case $store in
        sqlite) url="sqlite:$work/uploads.db" ;;
        postgres) start_postgres; url=$pg_url ;;
        *) echo "unknown store $store" >&2; exit 2 ;;
    esac
    for connections in $CONNECTIONS; do
        run_load "$store" "$url" "$connections"
    done
    if [[ $store == postgres ]]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null
        pg_dir=""
    fi
}

run_load() {
    local store=$1 url=$2 connections=$3 grpc_port events_port
    grpc_port=$(free_port)
    events_port=$(free_port)
    cat >"$work/vod-signer.toml" <<EOF
listen = "127.0.0.1:$grpc_port"
[tracking]
store = "$url"
[events]
listen = "127.0.0.1:$events_port"
path_token_file = "path-token"
sign_key_file = "sign-key"
[transport]
max_concurrent_requests = 0
[[keys]]
secret_id = "AKIDbenchEvents"
secret_key_file = "secret-key"
[[callers]]
name = "bench"
token_sha256 = "$token_sha"
track_uploads = true
EOF
    RUST_LOG=warn "$BIN" serve --config "$work/vod-signer.toml" 2>"${BENCH_LOG_DIR:-$work}/$store-$connections.log" &
    server_pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$events_port") 2>/dev/null && break
        sleep 0.1
    done
    BENCH_SERVER_PID=$server_pid BENCH_CLK_TCK=$(getconf CLK_TCK) "$LOAD" --grpc "http://127.0.0.1:$grpc_port" --events "127.0.0.1:$events_port" \
        --uploads "$UPLOADS" --connections "$connections" \
        --latency-events "$LATENCY_EVENTS" --latency-rate "$LATENCY_RATE" \
        >"$work/$store-$connections.result"
    kill "$server_pid"
    wait "$server_pid" || true
    server_pid=""
}

# The disk's commit floor: mean fdatasync of a 4 KiB append, in milliseconds.
fsync_ms() {
    python3 - "$work/fsync.bin" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
n = 200
start = time.perf_counter()
for _ in range(n):
    os.write(fd, b"x" * 4096)
    os.fdatasync(fd)
print(f"{(time.perf_counter() - start) / n * 1000:.2f}")
PY
}

field() { grep -o "\(^\| \)$2=[^ ]*" "$work/$1.result" | cut -d= -f2; }

fsync=$(fsync_ms)
for store in $STORES; do
    echo "== $store" >&2
    run_store "$store"
    for connections in $CONNECTIONS; do cat "$work/$store-$connections.result" >&2; done
done

cat <<EOF

Event receiver (${UPLOADS} signed NewFileUpload events per row; watch latency from the 200 to
the change on WatchUploads, ${LATENCY_EVENTS} events at ${LATENCY_RATE}/s). Floor: one fdatasync of this
disk takes ${fsync} ms, so N senders that each wait for their answer cannot exceed N / ${fsync} ms.

| store | connections | tracked signatures issued/s | events/s answered 200 | fsync bound | server CPU µs/event | load generator CPU µs/event | machine busy % | not 200 | watch p50 ms | watch p99 ms | watch max ms | never seen |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
for store in $STORES; do
    for connections in $CONNECTIONS; do
        r="$store-$connections"
        bound=$(python3 -c "print(round($connections / $fsync * 1000))")
        echo "| $store | $connections | $(field "$r" issued_per_s) | $(field "$r" events_per_s) | $bound | $(field "$r" cpu_us_per_event) | $(field "$r" load_cpu_us_per_event) | $(field "$r" machine_busy_pct) | $(field "$r" not_200) | $(field "$r" watch_p50_ms) | $(field "$r" watch_p99_ms) | $(field "$r" watch_max_ms) | $(field "$r" watch_missing) |"
    done
done
