#!/usr/bin/env bash
# A/B of IssueSignature saturation throughput: the release binary of an older revision against
# the working tree's, served side by side with one configuration and loaded in turn by
# `loadgen` (closed loop, 4 connections x 64 calls), with the bare tonic echo as the floor.
# Rounds alternate the order (old first, then new first) so drift falls on both alike.
#
#   OLD_REV=7109d20 scripts/bench_ab.sh        # 8 rounds of 2 s warm-up + 6 s each
#   OLD_REV=HEAD~5 ROUNDS=4 scripts/bench_ab.sh
#
# Prints one line per run (`round target ok_rate p99_us`). Builds OLD_REV from a temporary git
# worktree into target/bench-ab (a full release build the first time). Loopback only.
set -euo pipefail

cd "$(dirname "$0")/.."

OLD_REV=${OLD_REV:?set OLD_REV to the revision to compare against}
ROUNDS=${ROUNDS:-8}
DURATION=${DURATION:-6}
WARMUP=${WARMUP:-2}
OLD_PORT=${OLD_PORT:-50181}
NEW_PORT=${NEW_PORT:-50182}
ECHO_PORT=${ECHO_PORT:-50183}

cargo build --release --quiet --bin vod-signer --example echo_server --example loadgen
NEW=target/release/vod-signer
ECHO=target/release/examples/echo_server
LOADGEN=target/release/examples/loadgen

work=$(mktemp -d)
old_tree="$work/old"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    git worktree remove --force "$old_tree" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

git worktree add --quiet --detach "$old_tree" "$OLD_REV"
CARGO_TARGET_DIR="$PWD/target/bench-ab" cargo build --release --quiet \
    --manifest-path "$old_tree/Cargo.toml" --bin vod-signer
OLD="$PWD/target/bench-ab/release/vod-signer"

head -c 24 /dev/urandom | base64 | tr -d '\n/+=' >"$work/secret-key"
BENCH_TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '\n/+=')
export BENCH_TOKEN
for port in "$OLD_PORT" "$NEW_PORT"; do
    cat >"$work/$port.toml" <<EOF
listen = "127.0.0.1:$port"

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
done
RUST_LOG=info "$OLD" serve --config "$work/$OLD_PORT.toml" 2>"$work/old.log" &
pids+=("$!")
RUST_LOG=info "$NEW" serve --config "$work/$NEW_PORT.toml" 2>"$work/new.log" &
pids+=("$!")
"$ECHO" "127.0.0.1:$ECHO_PORT" >"$work/echo.log" 2>&1 &
pids+=("$!")
sleep 2

for ((round = 1; round <= ROUNDS; round++)); do
    order="old new echo"
    if ((round % 2 == 0)); then order="new old echo"; fi
    for target in $order; do
        case $target in
            old) args=(--target "127.0.0.1:$OLD_PORT" --token "$BENCH_TOKEN") ;;
            new) args=(--target "127.0.0.1:$NEW_PORT" --token "$BENCH_TOKEN") ;;
            echo) args=(--target "127.0.0.1:$ECHO_PORT") ;;
        esac
        result=$("$LOADGEN" --label "$target" --duration "$DURATION" --warmup "$WARMUP" \
            "${args[@]}" --connections 4 --concurrency 64 | grep '^RESULT')
        echo "$round $target $(grep -o 'ok_rate=[^ ]*' <<<"$result") $(grep -o ' p99_us=[^ ]*' <<<"$result")"
    done
done
