#!/usr/bin/env bash
# Run every libFuzzer target of tests/fuzz for SECONDS each (default 60), from its checked-in
# seeds, and print one line per target: executions, exec/s, coverage, new inputs, crashes.
# Builds build-fuzz with clang first (IMGSTORE_FUZZ=ON). Found inputs go to a scratch
# directory (kept and printed when something crashed), never into tests/fuzz/corpus.
#
#   bench/fuzz.sh [SECONDS] [TARGET...]      # e.g. bench/fuzz.sh 60, bench/fuzz.sh 10 multipart
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(schema sign detect multipart http config)

CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIMGSTORE_FUZZ=ON \
  -DIMGSTORE_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz --target fuzz_all -j"$(nproc)" >/dev/null

scratch=$(mktemp -d "${TMPDIR:-/tmp}/imgstore-fuzz.XXXXXX")
crashed=0
printf '%-10s %8s %12s %8s %6s %8s %8s\n' target seconds execs exec/s cov corpus crashes
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t/new" "$scratch/$t/artifacts"
  log="$scratch/$t/log"
  rc=0
  # -fork would hide crashes from the exit code; one process, stopped by -max_total_time
  "build-fuzz/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$scratch/$t/artifacts/" "$scratch/$t/new" "tests/fuzz/corpus/$t" \
    >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  corpus=$(grep -Eo 'corp: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  crashes=$(find "$scratch/$t/artifacts" -type f | wc -l)
  [ "$rc" = 0 ] || [ "$crashes" -gt 0 ] || crashes="rc=$rc"
  printf '%-10s %8s %12s %8s %6s %8s %8s\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" \
    "${cov:-?}" "${corpus:-?}" "$crashes"
  [ "$rc" = 0 ] || crashed=1
done
if [ "$crashed" = 1 ]; then
  echo "crashes and logs kept in $scratch" >&2
  exit 1
fi
rm -rf "$scratch"
