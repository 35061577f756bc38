#!/usr/bin/env bash
# Issue 10, item 3, as an attacker would try it (not run in CI): against a release build, one
# caller floods the in-process quota store with more distinct user ids, within one minute,
# than the store tracks per caller (100,000) and than it used to track for all callers
# together (200,000); then another caller issues for 20 new users. Prints whether the service
# kept serving the real caller; exits non-zero if it did not (3: the flood was too slow to
# fill the store within a minute, so nothing was shown).
#
#   scripts/attack-quota.sh [flood users, default 201000]
# PROFILE=debug uses a debug build instead (quicker to build, slower to flood).
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-201000}
profile=${PROFILE:-release}
flag=(--release)
[ "$profile" = debug ] && flag=()

cargo build --quiet "${flag[@]}" --bin vod-signer --example quota_flood
bin=target/$profile

dir=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    rm -rf "$dir"
}
trap cleanup EXIT

export FLOOD_TOKEN="attack-flood-$RANDOM$RANDOM"
export VICTIM_TOKEN="attack-victim-$RANDOM$RANDOM"
printf 'attack-script-secret-key' >"$dir/key"
chmod 600 "$dir/key"
cat >"$dir/signer.toml" <<TOML
listen = "127.0.0.1:0"
[transport]
max_queue_delay_ms = 0
[[keys]]
secret_id = "AKIDattack"
secret_key_file = "key"
[[callers]]
name = "flood"
token_env = "FLOOD_TOKEN"
issue_per_user_per_minute = 5
[[callers]]
name = "victim"
token_env = "VICTIM_TOKEN"
issue_per_user_per_minute = 5
TOML

RUST_LOG=warn,vod_signer=info "$bin/vod-signer" serve --config "$dir/signer.toml" \
    2>"$dir/serve.log" &
pid=$!
address=""
for _ in $(seq 100); do
    address=$(sed -n 's/.*vod-signer serving listen=\([0-9.:]*\).*/\1/p' "$dir/serve.log" | head -n 1)
    [ -n "$address" ] && break
    sleep 0.1
done
[ -n "$address" ] || { echo "vod-signer did not start:"; cat "$dir/serve.log"; exit 1; }

"$bin/examples/quota_flood" "http://$address" "$users"
