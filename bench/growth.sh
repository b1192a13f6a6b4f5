#!/usr/bin/env bash
# Repository growth when version 2 differs from a 100 MiB version 1 by a 4 KiB insertion in
# the middle, and version 3 by a 1 MiB overwrite in the middle (issue #3). Growth is the
# bytes added under objects/ by the push, compared with the target: 1.2 x the changed bytes
# plus two chunks (2 x 1 MiB average). Stock git (hash-object -w, loose) is shown beside it.
#
#   bench/growth.sh        (needs build/imgstore)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${IMGSTORE_BIN:-$PWD/build/imgstore}
work=${BENCH_DIR:-/tmp/imgstore-growth}
rm -rf "$work" && mkdir -p "$work"
# a throw-away signing key, never the user's
export XDG_CONFIG_HOME=$work/config XDG_STATE_HOME=$work/state
python3 - "$work" <<'PY'
import os, sys
w = sys.argv[1]
v1 = os.urandom(100 * 1048576)
mid = len(v1) // 2
for v, data in ((1, v1), (2, v1[:mid] + os.urandom(4096) + v1[mid:]),
                (3, v1[:mid] + os.urandom(1048576) + v1[mid + 1048576:])):
    os.makedirs(f"{w}/v{v}")
    open(f"{w}/v{v}/disk.raw", "wb").write(data)
PY
objects_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }

"$bin" init --repo "$work/store" >/dev/null
git init -q --bare "$work/git"
"$bin" push --repo "$work/store" --name big --version 1 "$work/v1/disk.raw" >/dev/null
git --git-dir="$work/git" hash-object -w "$work/v1/disk.raw" >/dev/null
printf "%-26s %14s %14s %14s %12s\n" change changed "imgstore grew" "target" "git grew"
for v in 2 3; do
  changed=$([ $v = 2 ] && echo 4096 || echo 1048576)
  label=$([ $v = 2 ] && echo "4 KiB insertion (v2)" || echo "1 MiB overwrite (v3)")
  before=$(objects_bytes "$work/store/objects"); gbefore=$(objects_bytes "$work/git/objects")
  "$bin" push --repo "$work/store" --name big --version $v "$work/v$v/disk.raw" >/dev/null
  git --git-dir="$work/git" hash-object -w "$work/v$v/disk.raw" >/dev/null
  grew=$(( $(objects_bytes "$work/store/objects") - before )); ggrew=$(( $(objects_bytes "$work/git/objects") - gbefore ))
  target=$(awk -v c="$changed" 'BEGIN { printf "%d", 1.2 * c + 2 * 1048576 }')
  printf "%-26s %14d %14d %14d %12d  %s\n" "$label" "$changed" "$grew" "$target" "$ggrew" \
    "$([ "$grew" -le "$target" ] && echo ok || echo OVER)"
done
"$bin" diff --repo "$work/store" big@1 big@2 | sed -n 2p
"$bin" diff --repo "$work/store" big@1 big@3 | sed -n 2p
rm -rf "$work"
