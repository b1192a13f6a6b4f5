#!/usr/bin/env bash
# Cost as the store grows (issue #9): builds, with the real CLI, a store of 10 versions and 5
# deploys and one of N versions (64 KiB each, distinct) and D deploys to prod, then prints for
# every command the median of 5 runs on each store and the ratio. Also the fill time and the
# store's size on disk against the unique image bytes.
#
#   bench/scale.sh [N [D]]      (default 10000 1000; needs build/imgstore)
#
# Times are wall clock of one whole CLI process (or one curl request to `imgstore serve` on
# the store, its caches off), as a user sees them. The stores are kept in
# $BENCH_DIR (default /tmp/imgstore-scale) and reused when their version count matches, so a
# second run measures without filling again (rm -rf the directory to rebuild).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${IMGSTORE_BIN:-$PWD/build/imgstore}
n=${1:-10000}
d=${2:-1000}
work=${BENCH_DIR:-/tmp/imgstore-scale}
mkdir -p "$work"
# a throw-away signing key and client memory, never the user's
export XDG_CONFIG_HOME=$work/config XDG_STATE_HOME=$work/state IMGSTORE_ACTOR=bench@scale
unset IMGSTORE_SERVER IMGSTORE_REPO

# fill STORE VERSIONS DEPLOYS: versions 1..VERSIONS of image app, 64 KiB of random bytes each;
# DEPLOYS deploys to prod spread evenly over the versions.
fill() {
  local store=$1 versions=$2 deploys=$3 every start
  [ -f "$store/.filled-$versions-$deploys" ] && return 0
  rm -rf "$store"
  "$bin" init --repo "$store" >/dev/null
  every=$(( versions / (deploys > 0 ? deploys : 1) ))
  [ "$every" -ge 1 ] || every=1
  start=$(date +%s.%N)
  for ((v = 1; v <= versions; v++)); do
    head -c 65536 /dev/urandom >"$work/app.img"
    "$bin" push --repo "$store" --name app --version "1.$v" --kind unknown "$work/app.img" >/dev/null
    if (( v % every == 0 )) && (( v / every <= deploys )); then
      "$bin" deploy --repo "$store" app "1.$v" --channel prod >/dev/null
    fi
  done
  awk -v s="$start" -v e="$(date +%s.%N)" -v n="$versions" \
    'BEGIN { printf "fill: %d versions in %.1f s (%.1f ms a version with its deploys)\n", n, e - s, (e - s) * 1000 / n }'
  touch "$store/.filled-$versions-$deploys"
}

# median_ms CMD...: the median wall time of 5 runs, in ms
median_ms() {
  local t=()
  for _ in 1 2 3 4 5; do
    local s e
    s=$(date +%s%N)
    "$@" >/dev/null 2>&1 || { echo "scale: failed: $*" >&2; return 1; }
    e=$(date +%s%N)
    t+=($(( (e - s) / 1000000 )))
  done
  printf '%s\n' "${t[@]}" | sort -n | sed -n 3p
}

small=$work/small.git
big=$work/big-$n.git
fill "$small" 10 5
fill "$big" "$n" "$d"

# packing (issue #9): the store's size after the fill (loose objects, and whatever commits
# packed past gc.auto), then after `imgstore gc`, against the unique image bytes. du counts
# the 256 objects/xx directories too; "object files" counts only loose objects and packs.
pack_size() { # LABEL DU_BYTES OBJECT_FILE_BYTES
  awk -v l="$1" -v s="$2" -v o="$3" -v u=$(( n * 65536 )) -v n="$n" 'BEGIN {
    printf "%s: %.1f MB on disk, %.3fx the %.1f MB of unique image bytes (%+.0f bytes a version); object files %.1f MB (%.3fx)\n",
      l, s / 1e6, s / u, u / 1e6, (s - u) / n, o / 1e6, o / u }'
}
du_before=$(du -sb "$big/objects" | cut -f1)
gc_start=$(date +%s%N)
gc_json=$("$bin" gc --repo "$big" --json)
gc_ms=$(( ($(date +%s%N) - gc_start) / 1000000 ))
read -r gc_before gc_after gc_packed < <(python3 -c 'import json, sys
d = json.load(sys.stdin)
print(d["bytes_before"], d["bytes_after"], d["objects_packed"])' <<<"$gc_json")
pack_size "store after the fill" "$du_before" "$gc_before"
pack_size "store after imgstore gc ($gc_packed objects packed in $gc_ms ms)" \
  "$(du -sb "$big/objects" | cut -f1)" "$gc_after"

# the time just after the first deploy, for history --at
at_of() { git --git-dir="$1" log --reverse --format=%cI -- channels/app/prod.json | head -n1; }

row() {
  local label=$1; shift
  local a b
  local sa=("${@//STORE/$small}") sb=("${@//STORE/$big}")
  a=$(median_ms "${sa[@]//@AT@/$(at_of "$small")}")
  b=$(median_ms "${sb[@]//@AT@/$(at_of "$big")}")
  awk -v l="$label" -v a="$a" -v b="$b" 'BEGIN { printf "%-50s %8d %8d %8.2fx\n", l, a, b, (a ? b / a : 0) }'
}

# a server on each store, answer and download caches off so every request does the work;
# a read token in its config (sha256 of the token, as imgstore token create writes)
token=imgstore_bench$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
serve() { # STORE PORT
  local conf=$work/serve-$2.conf
  printf 'token = %s scopes=read name=bench\nanswer_cache_bytes = 0\ncache_max_bytes = 0\n' \
    "$(printf %s "$token" | sha256sum | cut -d' ' -f1)" >"$conf"
  "$bin" serve --repo "$1" --listen "127.0.0.1:$2" --config "$conf" >"$work/serve-$2.log" 2>&1 &
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$2/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "scale: the server on $1 did not start" >&2; return 1
}
serve "$small" 18601
serve "$big" 18602
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
get() { curl -sf -H "Authorization: Bearer $token" -o /dev/null "$@"; }

printf "%-50s %8s %8s %9s\n" "command (median of 5, ms)" "10" "$n" "ratio"
row "imgstore ls app --limit 50" "$bin" ls --repo STORE app --limit 50
row "imgstore ls app --json (every row)" "$bin" ls --repo STORE app --json
row "imgstore ls" "$bin" ls --repo STORE
row "imgstore show app@1.2" "$bin" show --repo STORE app@1.2
row "imgstore pull app@1.2 -o out" "$bin" pull --repo STORE app@1.2 -o "$work/out.img"
row "imgstore verify app@1.2" "$bin" verify --repo STORE app@1.2
row "imgstore history app --channel prod --limit 50" \
  "$bin" history --repo STORE app --channel prod --limit 50
row "imgstore history app --channel prod (every move)" \
  "$bin" history --repo STORE app --channel prod
row "imgstore history app --channel prod --at T" \
  "$bin" history --repo STORE app --channel prod --at @AT@
# deploy and rollback move the channel: alternate between two versions so every run moves it
row "imgstore deploy app 1.3" bash -c "'$bin' deploy --repo STORE app 1.3 --channel prod && \
'$bin' deploy --repo STORE app 1.4 --channel prod"
row "imgstore rollback app --channel prod" bash -c "'$bin' deploy --repo STORE app 1.3 --channel prod && \
'$bin' rollback --repo STORE app --channel prod --reason bench"
row "imgstore push (64 KiB)" bash -c "head -c 65536 /dev/urandom >'$work/p.img' && \
'$bin' push --repo STORE --name app --kind unknown '$work/p.img'"
# the server's rows: the port stands in for the store (18601 small, 18602 big)
srow() {
  local label=$1 path=$2 a b
  a=$(median_ms get "http://127.0.0.1:18601$path")
  b=$(median_ms get "http://127.0.0.1:18602$path")
  awk -v l="$label" -v a="$a" -v b="$b" 'BEGIN { printf "%-50s %8d %8d %8.2fx\n", l, a, b, (a ? b / a : 0) }'
}
srow "GET /v1/images/app (a page of 100)" /v1/images/app
srow "GET .../channels/app/prod/history?limit=50" "/v1/channels/app/prod/history?limit=50"
srow "GET .../app/1.2/files/app.img (64 KiB)" /v1/images/app/1.2/files/app.img
echo "(deploy and rollback rows time two commands each: a deploy, then the move measured)"

unique=$(( n * 65536 ))
size=$(du -sb "$big/objects" | cut -f1)
loose=$(find "$big/objects" -path '*/pack' -prune -o -type f -print | wc -l)
awk -v s="$size" -v u="$unique" -v l="$loose" \
  'BEGIN { printf "store: %.1f MB on disk for %.1f MB of unique image bytes (%.2fx), %d loose objects\n", s / 1e6, u / 1e6, s / u, l }'
