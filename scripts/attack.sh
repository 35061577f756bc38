#!/usr/bin/env bash
# Tries issue 10's attacks against a release build, the way an attacker would, and prints
# whether the service kept serving real callers through each. Not part of CI: it takes about
# a minute, opens thousands of sockets and fills the in-process quota table.
#
#   scripts/attack.sh                  # all three
#   SOCKETS=5000 scripts/attack.sh     # more idle connections (twice this many are opened)
#
# 1. 256 bodiless streams without a token on one connection (and 256 with a known token),
#    then 20 real calls from another connection.
# 2. $SOCKETS silent and $SOCKETS preface-only connections: the server's memory, 20 real
#    calls while they are open, and how long SIGTERM takes with them open.
# 3. One caller issues to $QUOTA_USERS distinct user_ids (the in-process quota table holds
#    100,000 users per caller and minute); then another caller's new users must still get
#    signatures.
#
# Everything listens on and connects to 127.0.0.1 only. Each `RESULT` line says what was done
# and what the real callers got.
set -euo pipefail

cd "$(dirname "$0")/.."

PORT=${PORT:-50171}
SOCKETS=${SOCKETS:-2000}
QUOTA_USERS=${QUOTA_USERS:-210000}

echo "building release binaries..." >&2
cargo build --release --quiet --bin vod-signer --example attacker
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir=${target_dir:-target}
SIGNER="$target_dir/release/vod-signer"
ATTACKER="$target_dir/release/examples/attacker"

# Thousands of sockets on both ends.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

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

head -c 24 /dev/urandom | base64 | tr -d '\n/+=' >"$work/secret-key"
ATTACK_TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '\n/+=')
ATTACK_TOKEN_B=$(head -c 24 /dev/urandom | base64 | tr -d '\n/+=')
export ATTACK_TOKEN ATTACK_TOKEN_B
cat >"$work/config.toml" <<CONFIG
listen = "127.0.0.1:$PORT"

[[keys]]
secret_id = "AKIDattack000000000000000000000000"
secret_key_file = "secret-key"
active = true

[[callers]]
name = "flooder"
token_env = "ATTACK_TOKEN"
issue_per_user_per_minute = 5

[[callers]]
name = "victim"
token_env = "ATTACK_TOKEN_B"
issue_per_user_per_minute = 5
CONFIG

start_signer() {
    RUST_LOG=warn "$SIGNER" serve --config "$work/config.toml" 2>>"$work/signer.log" &
    signer_pid=$!
    pids+=("$signer_pid")
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "the signer did not start; its log:" >&2
    cat "$work/signer.log" >&2
    exit 1
}
rss_mib() { awk '$1 == "VmRSS:" {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

echo "== item 1: streams that hold places" >&2
start_signer
"$ATTACKER" --target "127.0.0.1:$PORT" tokenless

echo "== item 2: connections that never speak HTTP/2, then SIGTERM" >&2
idle_rss=$(rss_mib "$signer_pid")
"$ATTACKER" --target "127.0.0.1:$PORT" idle --sockets "$SOCKETS" >"$work/idle.out" &
attacker_pid=$!
pids+=("$attacker_pid")
for _ in $(seq 600); do
    grep -q '^HELD' "$work/idle.out" && break
    sleep 0.1
done
grep '^RESULT' "$work/idle.out" || echo "RESULT item=2 the attacker did not finish opening its sockets" >&2
held_rss=$(rss_mib "$signer_pid")
open_fds=$(find "/proc/$signer_pid/fd" -mindepth 1 2>/dev/null | wc -l)
started=$(date +%s%N)
kill -TERM "$signer_pid"
wait "$signer_pid" || true
stopped=$(date +%s%N)
kill "$attacker_pid" 2>/dev/null || true
wait "$attacker_pid" 2>/dev/null || true
echo "RESULT item=2 rss_idle_mib=$idle_rss rss_with_sockets_open_mib=$held_rss open_fds=$open_fds sigterm_to_exit_ms=$(((stopped - started) / 1000000))"

echo "== item 3: one caller fills the quota table" >&2
start_signer
"$ATTACKER" --target "127.0.0.1:$PORT" quota --users "$QUOTA_USERS"
