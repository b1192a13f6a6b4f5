#!/usr/bin/env bash
# What sharding images/<name> (imgstore/2, docs/format.md "Where a version lives") saves a
# push: builds, with the real CLI, one imgstore/1 (flat) and one imgstore/2 (sharded) store
# of N versions (4 KiB each, distinct), then prints for each the fill time, the median wall
# time of 5 more pushes, the size of the trees of images/ that the last push wrote (the
# flat images/app, or images/app and the version's shard), and the time and peak RSS of
# `imgstore gc --prune=now`, whose reachability walk reads every commit's trees.
#
#   bench/shard.sh [N]      (default 3000; needs build/imgstore)
#
# The imgstore/1 store is made as an older imgstore made it: `imgstore init`, then the marker
# rewritten with stock git and the indexes rebuilt (imgstore reindex).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${IMGSTORE_BIN:-$PWD/build/imgstore}
n=${1:-3000}
work=${BENCH_DIR:-/tmp/imgstore-shard}
rm -rf "$work"
mkdir -p "$work"
export XDG_CONFIG_HOME=$work/config XDG_STATE_HOME=$work/state IMGSTORE_ACTOR=bench@shard
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@shard GIT_COMMITTER_NAME=bench
export GIT_COMMITTER_EMAIL=bench@shard
unset IMGSTORE_SERVER IMGSTORE_REPO

push() { # STORE VERSION
  head -c 4096 /dev/urandom >"$work/app.img"
  "$bin" push --repo "$1" --name app --version "$2" --kind unknown "$work/app.img" >/dev/null
}

make_store() { # STORE flat|sharded
  "$bin" init --repo "$1" >/dev/null
  if [ "$2" = flat ]; then
    local g="git --git-dir=$1" blob tree commit
    blob=$(printf '{"format":"imgstore/1"}' | $g hash-object -w --stdin)
    tree=$($g ls-tree main | grep -v 'imgstore.json$' |
      { cat; printf '100644 blob %s\timgstore.json\n' "$blob"; } | $g mktree)
    commit=$($g commit-tree "$tree" -p main -m "an imgstore/1 store")
    $g update-ref refs/heads/main "$commit"
    "$bin" reindex --repo "$1" >/dev/null
  fi
}

for layout in flat sharded; do
  store=$work/$layout.git
  make_store "$store" "$layout"
  start=$(date +%s.%N)
  for ((v = 1; v <= n; v++)); do push "$store" "1.$v"; done
  fill=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  t=()
  for i in 1 2 3 4 5; do
    s=$(date +%s%N)
    push "$store" "2.$i"
    e=$(date +%s%N)
    t+=($(((e - s) / 1000000)))
  done
  median=$(printf '%s\n' "${t[@]}" | sort -n | sed -n 3p)
  g="git --git-dir=$store"
  image=$($g cat-file -s main:images/app)
  if [ "$layout" = sharded ]; then
    shard=$(printf %s 2.5 | sha256sum | cut -c1-2)
    shard_bytes=$($g cat-file -s "main:images/app/$shard")
    shards=$($g ls-tree main images/app/ | wc -l)
    written=$((image + shard_bytes))
    detail="images/app $image B ($shards shards) + shard $shard $shard_bytes B"
  else
    written=$image
    detail="images/app $image B ($($g ls-tree main images/app/ | wc -l) entries)"
  fi
  printf '%-8s N=%d: fill %s s; push at N: median %d ms of 5; trees of images/ a push writes: %d B (%s)\n' \
    "$layout" "$n" "$fill" "$median" "$written" "$detail"
  git --git-dir="$store" fsck --strict --no-progress >/dev/null 2>&1 || echo "$layout: git fsck --strict failed" >&2
  # gc --prune's reachability walk reads every distinct tree of every commit once: the flat
  # images/app of each commit, or its images/app and the one shard that changed (packed
  # first, so that the timed run is the walk, not the packing)
  "$bin" gc --repo "$store" >/dev/null
  read -r secs rss < <(/usr/bin/time -f '%e %M' "$bin" gc --repo "$store" --prune=now 2>&1 >/dev/null | tail -n 1)
  printf '%-8s N=%d: gc --prune=now (packed): %s s, peak RSS %d MiB\n' "$layout" "$n" "$secs" $((rss / 1024))
done
