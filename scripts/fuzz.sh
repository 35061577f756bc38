#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time.
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 600        # 10 min per target
#   scripts/fuzz.sh 60 verify  # one target
#
# Exits non-zero if a target finds a crash; the input that caused it is saved under
# fuzz/artifacts/<target>/ and can be replayed with `cargo fuzz run <target> <file>`.
# The corpus (fuzz/corpus/<target>/, not committed) grows from run to run.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(verify sign_verify config)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# cargo-fuzz builds with -Zsanitizer=address, an unstable flag. With FUZZ_TOOLCHAIN set
# (e.g. nightly) that toolchain is used; otherwise the default (stable) compiler is told to
# accept unstable flags with RUSTC_BOOTSTRAP=1, so no nightly download is needed.
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  cargo_fuzz=(cargo "+${FUZZ_TOOLCHAIN}" fuzz)
else
  export RUSTC_BOOTSTRAP=1
  cargo_fuzz=(cargo fuzz)
fi

echo "== building fuzz targets"
"${cargo_fuzz[@]}" build

failed=()
for target in "${targets[@]}"; do
  echo "== fuzzing $target for ${seconds}s"
  # -timeout: one input taking over 10 s is a hang worth reporting.
  if ! "${cargo_fuzz[@]}" run "$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
echo "no crashes in ${targets[*]} (${seconds}s each)"
