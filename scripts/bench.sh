#!/usr/bin/env bash
# Load benchmark, one command: builds release binaries, starts `vod-signer serve` (a caller
# authenticated by bearer token, with a policy: allowed_procedures, max validity), a second
# signer with the audit log off, and the bare tonic `echo_server` example on loopback ports,
# drives them the same way with the `loadgen` example, measures memory, stops everything and
# prints markdown tables.
#
#   scripts/bench.sh                              # full run, about 5 minutes on 2 cores
#   DURATION=2 WARMUP=1 ROUNDS=2 scripts/bench.sh # quick look while developing
#
# The machine is shared and throughput moves by about ±15% from run to run, more than the
# differences to be measured. So every comparison phase runs as $ROUNDS rounds, each round
# loading every target once, back to back (signer, echo[, quiet], signer, echo, ...): slow
# drift over the run falls on both sides alike. The tables report the median of each metric per
# target, the signer/echo ratio of the medians, and the lowest and highest ratio of the
# per-round pairs (each pair ran back to back).
#
# Phases (each loadgen run: $WARMUP s unrecorded, then $DURATION s recorded):
#   saturation      closed loop, $SAT_CONNS connections x $SAT_CONC calls in flight; signer,
#                   echo and the signer with the audit log off ("quiet")
#   50% load        open loop at half the signer's median saturation rate, same rate for both
#   overload closed closed loop, $OVERLOAD_CONNS connections x $OVERLOAD_STREAMS calls in flight;
#                   the "overload goodput" is the signer's OK calls/s here over its OK calls/s
#                   at saturation (target: at least 0.9, with p99 of OK calls at most 50 ms)
#   overload open   open loop at $OPEN_OVERLOAD_PCT% of the echo's median saturation rate, up
#                   to $OPEN_OVERLOAD_CONC calls in flight over $OVERLOAD_CONNS connections.
#                   More is offered than either server can answer, so the backlog (and the
#                   latency, counted from each call's scheduled time) grows for the whole run;
#                   "ok/s answered" is what each server delivered. At most $OPEN_OVERLOAD_CONC
#                   calls are in flight; the rest waits in the generator, as callers would. With
#                   its default [transport] the signer lets each connection open 64 streams
#                   (max_concurrent_streams), so the generator's HTTP/2 stack holds back the
#                   excess; of the streams open it admits 256 (max_concurrent_requests,
#                   at most 64 per connection), lets the others wait up to 20 ms
#                   (max_queue_delay_ms) for a place and refuses them with UNAVAILABLE after.
#   batch           IssueSignatureBatch (count=100) against the signer once, in signatures/s
#   infra           benches/infra.rs: our log writer against tracing-appender, and the
#                   prometheus-client histogram and per-caller counters against their floors,
#                   in process ($INFRA_ROUNDS rounds)
# Memory: VmRSS before any load ("idle"), the highest VmRSS sampled during each overload
# phase, and VmHWM at the end, from /proc/PID/status.
#
# Everything listens on and sends to 127.0.0.1 only; every loadgen run is bounded in time.
# Each run's `RESULT key=value` line is on stderr with its report; the tables go to stdout.
set -euo pipefail

cd "$(dirname "$0")/.."

# Six recorded seconds per run: with 3 rounds of every comparison the default run stays
# around 5 minutes, and medians over rounds steady the numbers more than longer single runs.
DURATION=${DURATION:-6}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
SIGNER_PORT=${SIGNER_PORT:-50151}
ECHO_PORT=${ECHO_PORT:-50161}
QUIET_PORT=${QUIET_PORT:-50152}
SAT_CONNS=${SAT_CONNS:-4}
SAT_CONC=${SAT_CONC:-64}
OVERLOAD_CONNS=${OVERLOAD_CONNS:-10}
OVERLOAD_STREAMS=${OVERLOAD_STREAMS:-1000}
OPEN_OVERLOAD_PCT=${OPEN_OVERLOAD_PCT:-150}
# Headroom, so that the generator's own cap on calls in flight does not stand in for the
# server's queue (at ~60k calls/s that is ~30 ms of work in flight).
OPEN_OVERLOAD_CONC=${OPEN_OVERLOAD_CONC:-2000}
BATCH_CONC=${BATCH_CONC:-8}
# Rounds of the in-process comparison of hand-written infrastructure with crates (benches/infra.rs).
INFRA_ROUNDS=${INFRA_ROUNDS:-5}
# The audit log of every issuance goes to a file, as it would in production.
SIGNER_RUST_LOG=${SIGNER_RUST_LOG:-info}

if ! [[ $ROUNDS =~ ^[1-9][0-9]*$ ]]; then
    echo "ROUNDS must be a whole number of at least 1, not '$ROUNDS'" >&2
    exit 2
fi
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
# (Not `tee /dev/stderr`: when stderr is a file, that reopens and truncates it every run.)
load() {
    local label=$1
    shift
    "$LOADGEN" --label "$label" --duration "$DURATION" --warmup "$WARMUP" "$@" >"$work/report-$label"
    cat "$work/report-$label" >&2
    grep '^RESULT ' "$work/report-$label" >"$work/$label"
}
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" "$work/$1"; }

# Loadgen's address arguments for a target, space-separated (none holds a space): signer,
# quiet (the signer with the audit log off) or echo.
target_args() {
    case $1 in
        signer) echo "--target 127.0.0.1:$SIGNER_PORT --token $BENCH_TOKEN" ;;
        quiet) echo "--target 127.0.0.1:$QUIET_PORT --token $BENCH_TOKEN" ;;
        echo) echo "--target 127.0.0.1:$ECHO_PORT" ;;
        *) echo "unknown target $1" >&2 && return 1 ;;
    esac
}

# Runs PHASE as $ROUNDS rounds, each loading every target of TARGETS (a space-separated list)
# once, in that order; the remaining arguments go to every loadgen run. Results are kept as
# PHASE-TARGET-ROUND.
rounds() {
    local phase=$1 targets=$2
    shift 2
    local round target
    local -a to
    for ((round = 1; round <= ROUNDS; round++)); do
        for target in $targets; do
            echo "== $phase, round $round/$ROUNDS: $target" >&2
            read -ra to <<<"$(target_args "$target")"
            load "$phase-$target-$round" "${to[@]}" "$@"
        done
    done
}

# The values of KEY over the rounds of PHASE-TARGET, one a line.
values() {
    local phase=$1 target=$2 key=$3 result
    for result in "$work/$phase-$target-"[0-9]*; do
        field "${result##*/}" "$key"
    done
}

# The median of KEY over the rounds of PHASE-TARGET (the mean of the middle two for an even
# number of rounds).
median() {
    values "$@" | sort -g | awk '
        { v[NR] = $1 }
        END {
            m = int((NR + 1) / 2)
            if (NR % 2) print v[m]; else printf "%.1f\n", (v[m] + v[m + 1]) / 2
        }'
}

# The sum of KEY over the rounds of PHASE-TARGET.
total() { values "$@" | awk '{ s += $1 } END { printf "%d\n", s }'; }

# Calls that were neither OK nor refused, over all rounds of PHASE-TARGET.
other_errors() {
    local phase=$1 target=$2
    echo $(($(total "$phase" "$target" calls) - $(total "$phase" "$target" ok) -
        $(total "$phase" "$target" refused)))
}

# Status counts summed over the rounds of PHASE-TARGET, in order of first appearance, e.g.
# "Ok:1200, ResourceExhausted:3". Labels may hold colons (LocalError:send_body:2): the count
# is what follows the last one.
codes_total() {
    values "$1" "$2" codes | tr ',' '\n' | awk '
        NF == 0 { next }
        {
            n = $0; sub(/.*:/, "", n)
            label = $0; sub(/:[0-9]+$/, "", label)
            if (!(label in sum)) order[++labels] = label
            sum[label] += n
        }
        END {
            for (i = 1; i <= labels; i++) printf "%s%s:%d", (i > 1 ? ", " : ""), order[i], sum[order[i]]
            print ""
        }'
}

# "R× (lo–hi)": A/B for KEY in PHASE, R from the medians, lo and hi the extremes of the
# per-round ratios (A and B ran back to back in each round). "n/a" where B is 0.
ratio() {
    local phase=$1 a=$2 b=$3 key=$4 round
    for ((round = 1; round <= ROUNDS; round++)); do
        echo "$(field "$phase-$a-$round" "$key") $(field "$phase-$b-$round" "$key")"
    done | awk -v a="$(median "$phase" "$a" "$key")" -v b="$(median "$phase" "$b" "$key")" '
        $2 > 0 {
            r = $1 / $2
            if (n++ == 0 || r < lo) lo = r
            if (n == 1 || r > hi) hi = r
        }
        END {
            if (b > 0) printf "%.2f×", a / b; else printf "n/a"
            if (n > 0) printf " (%.2f–%.2f)", lo, hi
            print ""
        }'
}

# Samples the VmRSS of each PID every 100 ms until $work/stop-TAG exists, then writes the
# highest of each to $work/peak-TAG-PID, in KiB. Sampling a whole phase is enough: a server's
# peak comes while it is the one under load.
sample_peak_rss() {
    local tag=$1 pid rss
    shift
    local -A peak=()
    for pid in "$@"; do
        peak[$pid]=0
    done
    # Also stops if the script is gone (interrupted: cleanup removes $work).
    while [[ -d $work && ! -e $work/stop-$tag ]]; do
        for pid in "$@"; do
            rss=$(kib "$pid" VmRSS)
            if ((rss > peak[$pid])); then
                peak[$pid]=$rss
            fi
        done
        sleep 0.1
    done
    for pid in "$@"; do
        echo "${peak[$pid]}" >"$work/peak-$tag-$pid"
    done
}

# Runs a command (a phase) with sample_peak_rss TAG watching the signer and the echo server.
with_rss_sampling() {
    local tag=$1
    shift
    sample_peak_rss "$tag" "$signer_pid" "$echo_pid" &
    local sampler=$!
    "$@"
    touch "$work/stop-$tag"
    wait "$sampler"
}
peak() { cat "$work/peak-$1-$2"; }

per_rate() { awk -v r="$1" -v p="$2" 'BEGIN {printf "%d", r * p / 100}'; }

# After the build, which loads the machine itself.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$SECONDS
rounds sat "signer echo quiet" --connections "$SAT_CONNS" --concurrency "$SAT_CONC"

half=$(per_rate "$(median sat signer ok_rate)" 50)
rounds half "signer echo" --connections "$SAT_CONNS" --concurrency "$SAT_CONC" --rate "$half"

with_rss_sampling over rounds over "signer echo" \
    --connections "$OVERLOAD_CONNS" --concurrency "$OVERLOAD_STREAMS"

open_rate=$(per_rate "$(median sat echo ok_rate)" "$OPEN_OVERLOAD_PCT")
with_rss_sampling open rounds open "signer echo" \
    --connections "$OVERLOAD_CONNS" --concurrency "$OPEN_OVERLOAD_CONC" --rate "$open_rate"

echo "== IssueSignatureBatch, count=100" >&2
read -ra to_signer <<<"$(target_args signer)"
load batch-signer-1 "${to_signer[@]}" --rpc batch --batch-count 100 \
    --connections 2 --concurrency "$BATCH_CONC"

signer_hwm=$(kib "$signer_pid" VmHWM)
echo_hwm=$(kib "$echo_pid" VmHWM)
audit_lines=$(grep -c 'signature issued' "$work/signer.log" || true)

row() {
    local phase=$1 target=$2 what=$3
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$what" \
        "$(median "$phase" "$target" ok_rate)" "$(median "$phase" "$target" p50_us)" \
        "$(median "$phase" "$target" p99_us)" "$(median "$phase" "$target" p999_us)" \
        "$(median "$phase" "$target" refused_p99_us)" "$(codes_total "$phase" "$target")"
}

open_row() {
    local target=$1 what=$2
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$what" \
        "$(median open "$target" rate)" "$(median open "$target" ok_done_rate)" \
        "$(median open "$target" p50_us)" "$(median open "$target" p99_us)" \
        "$(total open "$target" refused)" "$(median open "$target" refused_p99_us)" \
        "$(other_errors open "$target")" "$(codes_total open "$target")"
}

# "R× (lo–hi)": the signer's OK calls/s under closed-loop overload over its OK calls/s at
# saturation; R from the medians, lo and hi from the per-round pairs (each round's saturation
# and overload runs were minutes apart, so the range is wider than a back-to-back pair's).
goodput() {
    local round
    for ((round = 1; round <= ROUNDS; round++)); do
        echo "$(field "over-signer-$round" ok_rate) $(field "sat-signer-$round" ok_rate)"
    done | awk -v a="$(median over signer ok_rate)" -v b="$(median sat signer ok_rate)" '
        $2 > 0 {
            r = $1 / $2
            if (n++ == 0 || r < lo) lo = r
            if (n == 1 || r > hi) hi = r
        }
        END {
            if (b > 0) printf "%.2f×", a / b; else printf "n/a"
            if (n > 0) printf " (%.2f–%.2f)", lo, hi
            print ""
        }'
}

ratio_row() {
    local phase=$1 a=$2 what=$3 rate_key=${4:-ok_rate}
    printf '| %s | %s | %s | %s |\n' "$what" "$(ratio "$phase" "$a" echo "$rate_key")" \
        "$(ratio "$phase" "$a" echo p50_us)" "$(ratio "$phase" "$a" echo p99_us)"
}

cat <<EOF

### Load ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg))

${ROUNDS} interleaved rounds per comparison; each run ${WARMUP} s of warm-up, then ${DURATION} s recorded; the
load phases took $((SECONDS - started)) s. Server and load generator share the machine.
Rates and latencies are medians over the rounds, counts are totals over all rounds.

| phase | ok calls/s | p50 µs | p99 µs | p99.9 µs | refused p99 µs | status counts, all rounds |
|---|---:|---:|---:|---:|---:|---|
EOF
row sat signer "IssueSignature, saturation (${SAT_CONNS}×${SAT_CONC})"
row sat echo "echo, saturation (${SAT_CONNS}×${SAT_CONC})"
row sat quiet "IssueSignature, audit log off, saturation (${SAT_CONNS}×${SAT_CONC})"
row half signer "IssueSignature, open loop ${half}/s"
row half echo "echo, open loop ${half}/s"
row over signer "IssueSignature, overload closed loop (${OVERLOAD_STREAMS} streams)"
row over echo "echo, overload closed loop (${OVERLOAD_STREAMS} streams)"
row batch signer "IssueSignatureBatch ×100 (2×${BATCH_CONC}), one run"
cat <<EOF

Overload, open loop at ${open_rate}/s (${OPEN_OVERLOAD_PCT}% of the echo's median saturation), up to ${OPEN_OVERLOAD_CONC} calls in flight over ${OVERLOAD_CONNS} connections.
Latency counts from each call's scheduled send time; "ok/s answered" counts OK answers that arrived
inside the recorded window (the backlog is drained after it, so calls scheduled in the window
outnumber what the server delivered); calls of the window still unsent 10 s after it count as
NotSent, among the other errors.

| target | offered/s | ok/s answered | ok p50 µs | ok p99 µs | refused | refused p99 µs | other errors | status counts, all rounds |
|---|---:|---:|---:|---:|---:|---:|---:|---|
EOF
open_row signer "IssueSignature"
open_row echo "echo"
cat <<EOF

Signer / echo, ratio of the medians (lowest–highest per-round ratio):

| phase | ok calls/s | p50 | p99 |
|---|---|---|---|
EOF
ratio_row sat signer "saturation"
ratio_row sat quiet "saturation, audit log off"
ratio_row half signer "open loop ${half}/s"
ratio_row over signer "overload closed loop"
ratio_row open signer "overload open loop (ok/s answered)" ok_done_rate
cat <<EOF

- IssueSignature / echo at saturation, ratio of the medians (per-round range): **$(ratio sat signer echo ok_rate)**
- overload goodput, IssueSignature OK calls/s at ${OVERLOAD_STREAMS} closed-loop streams / at saturation (target ≥ 0.90×): **$(goodput)**, p99 of OK calls $(median over signer p99_us) µs (target ≤ 50000)
- IssueSignatureBatch(count=100): **$(field batch-signer-1 signatures_per_s) signatures/s**
- audit log lines written by the signer during the run: ${audit_lines}

| memory | vod-signer | echo |
|---|---:|---:|
| RSS idle (MiB) | $(mib "$signer_idle") | $(mib "$echo_idle") |
| RSS peak during closed-loop overload, sampled (MiB) | $(mib "$(peak over "$signer_pid")") | $(mib "$(peak over "$echo_pid")") |
| RSS peak during open-loop overload, sampled (MiB) | $(mib "$(peak open "$signer_pid")") | $(mib "$(peak open "$echo_pid")") |
| VmHWM at end (MiB) | $(mib "$signer_hwm") | $(mib "$echo_hwm") |
EOF

# Hand-written metrics and log writer against prometheus-client and tracing-appender, in
# process (no servers; about 10 s).
echo "running benches/infra.rs..." >&2
echo
echo '## Hand-written infrastructure vs crates (`cargo bench --bench infra`)'
INFRA_ROUNDS=$INFRA_ROUNDS cargo bench --quiet --bench infra

scripts/bench_events.sh
scripts/bench_pull.sh
