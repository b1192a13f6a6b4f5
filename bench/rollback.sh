#!/usr/bin/env bash
# Rollback cost against the length of a channel's history (issue #9): for each D given,
# builds with BIN a store of 2 versions (64 KiB each) and D deploys to prod alternating
# between them, then prints the median of 5 `imgstore rollback app --channel prod`, wall
# clock and CPU (user + sys), each on a fresh copy of the store so every run does the same
# move. A state carrying its stack makes the cost flat; a replay of the history grows with D.
#
#   bench/rollback.sh [D...]        (default 6 400 1000; BIN defaults to build/imgstore)
#
# To compare builds, run it once per binary with IMGSTORE_BIN set. A store written by a
# build with the stack cannot be read by one without (docs/format.md), so each binary fills
# its own stores in $BENCH_DIR (default /tmp/imgstore-rollback).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${IMGSTORE_BIN:-$PWD/build/imgstore}
work=${BENCH_DIR:-/tmp/imgstore-rollback}
mkdir -p "$work"
export XDG_CONFIG_HOME=$work/config XDG_STATE_HOME=$work/state IMGSTORE_ACTOR=bench@rollback
unset IMGSTORE_SERVER IMGSTORE_REPO

fill() {
  local store=$1 deploys=$2
  rm -rf "$store"
  "$bin" init --repo "$store" >/dev/null 2>&1
  for v in 1 2; do
    head -c 65536 /dev/urandom >"$work/app-$v.img"
    "$bin" push --repo "$store" --name app --version "$v" --kind unknown "$work/app-$v.img" >/dev/null
  done
  for i in $(seq 1 "$deploys"); do
    "$bin" deploy --repo "$store" app $((i % 2 + 1)) --channel prod >/dev/null
  done
}

median() { sort -n | sed -n 3p; }

for d in "${@:-6 400 1000}"; do
  for one in $d; do
    store=$work/d$one.git
    fill "$store" "$one"
    : >"$work/runs"
    for run in 1 2 3 4 5; do
      rm -rf "$work/copy.git"
      cp -a "$store" "$work/copy.git"
      /usr/bin/time -f "%e %U %S" -o "$work/t" \
        "$bin" rollback --repo "$work/copy.git" app --channel prod >/dev/null
      awk '{printf "%d %d\n", $1 * 1000, ($2 + $3) * 1000}' "$work/t" >>"$work/runs"
    done
    printf '%5d deploys: rollback %4d ms wall, %4d ms cpu (median of 5)\n' "$one" \
      "$(cut -d' ' -f1 "$work/runs" | median)" "$(cut -d' ' -f2 "$work/runs" | median)"
  done
done
