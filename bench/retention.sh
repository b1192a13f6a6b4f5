#!/usr/bin/env bash
# Retention (issue #12): what `imgstore prune` + `imgstore gc --prune=now` give back on the
# 10,000-version store of bench/scale.sh, against stock git doing the same job on the same
# store (`git gc --prune=now`, which repacks everything reachable and drops the rest).
#
#   bench/retention.sh [N [KEEP]]     (default 10000 100; needs build/imgstore, and the store
#                                      bench/scale.sh N builds in $BENCH_DIR)
#
# Works on copies: the scale store is never changed. Prints, for each step, wall time, peak
# RSS (GNU time) and the store's size on disk (du -sb of the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${IMGSTORE_BIN:-$PWD/build/imgstore}
n=${1:-10000}
keep=${2:-100}
scale=${BENCH_DIR:-/tmp/imgstore-scale}
src=$scale/big-$n.git
work=$(mktemp -d "${TMPDIR:-/tmp}/imgstore-retention.XXXXXX")
trap 'rm -rf "$work"' EXIT
[ -d "$src" ] || { echo "retention: no $src; run bench/scale.sh $n first" >&2; exit 2; }
export XDG_CONFIG_HOME=$scale/config XDG_STATE_HOME=$scale/state IMGSTORE_ACTOR=bench@retention
unset IMGSTORE_SERVER IMGSTORE_REPO

size() { du -sb "$1" | cut -f1; }
mb() { python3 -c "print('%.1f MB' % ($1 / 1e6))"; }
# step LABEL CMD...: run once under GNU time, print time and peak RSS
step() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err" ||
    { echo "retention: $label failed:" >&2; cat "$work/err" >&2; exit 1; }
  read -r secs kb <"$work/time"
  printf '%-44s %7.2f s  %6d MB RSS\n' "$label" "$secs" $((kb / 1024))
}

cp -a "$src" "$work/a.git"
echo "store: $n versions of 64 KiB, keep $keep; $(mb "$(size "$work/a.git")") on disk"
"$bin" gc --repo "$work/a.git" --all >/dev/null # both sides start from the same packing
before=$(size "$work/a.git")
echo "packed (gc --all): $(mb "$before")"
step "imgstore prune app --keep $keep (+ cut)" "$bin" prune --repo "$work/a.git" app --keep "$keep" --older-than 0
echo "  $(grep -c '^removed' "$work/out") versions removed; $(grep -vE '^(removed|kept) ' "$work/out" | tr '\n' ' ')"
cp -a "$work/a.git" "$work/b.git" # stock git gets the store just as prune left it
step "imgstore gc --prune=now" "$bin" gc --repo "$work/a.git" --prune=now
after=$(size "$work/a.git")
step "stock git gc --prune=now (same store)" git --git-dir="$work/b.git" gc --prune=now --quiet
git_after=$(size "$work/b.git")
echo "size: before $(mb "$before"), imgstore after $(mb "$after") ($(python3 -c "print('%.3f' % ($after / $before))")x), stock git after $(mb "$git_after") ($(python3 -c "print('%.2f' % ($after / $git_after))")x of git's)"
step "imgstore verify (all)" "$bin" verify --repo "$work/a.git"
step "stock git fsck --strict" git --git-dir="$work/a.git" fsck --strict --no-dangling
step "imgstore ls app" "$bin" ls --repo "$work/a.git" app
