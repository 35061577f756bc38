#!/usr/bin/env bash
# Reliable (PULL) mode: how fast one consumer drains VOD's queue. The queue is the test
# stand-in's (tests/it/support/pull/standin.rs: TC3 checked on every call, at most 16 events per
# PullEvents, ConfirmEvents of at most 16 handles), the store a fresh SQLite tracker; every
# event is a NewFileUpload of a tracked upload, so each is stored, deduplicated and applied.
#
#   scripts/bench_pull.sh                          # 20,000 events
#   PULL_BENCH_EVENTS=5000 scripts/bench_pull.sh   # quicker
#   PROFILE=dev scripts/bench_pull.sh              # unoptimized build: a lower bound
#
# Prints the RESULT line and a markdown row; the target is >= 1,000 events/s.
set -euo pipefail
cd "$(dirname "$0")/.."

export PULL_BENCH_EVENTS=${PULL_BENCH_EVENTS:-20000}
PROFILE=${PROFILE:-release}
echo "building the pull drain measurement ($PROFILE)..." >&2
output=$(cargo test --profile "$PROFILE" --quiet --test it -- pull_drain_bench --ignored --nocapture 2>&1)
line=$(grep '^RESULT pull_drain' <<<"$output" || true)
if [[ -z $line ]]; then
    echo "$output" >&2
    echo "the pull drain measurement printed no RESULT line" >&2
    exit 1
fi
echo "$line" >&2
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
cat <<TABLE

| PULL queue drain (one consumer, SQLite, $PROFILE build) | events | seconds | events/s | redelivered |
|---|---:|---:|---:|---:|
| stand-in on loopback | $(field events) | $(field seconds) | **$(field events_per_second)** | $(field redelivered) |
TABLE
