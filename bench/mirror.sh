#!/usr/bin/env bash
# Read replicas (issue #12): what a replica's sync costs as the primary grows. For the stores
# bench/scale.sh built (10 versions and N versions of 64 KiB), a copy of each is the primary
# of a replica (`imgstore serve --mirror-of PATH`, mirror_interval 1). The small one starts
# empty (its first sync: the whole history checked, every chunk hashed); the large one is
# seeded with `git clone --bare` as docs/server.md advises. Then one new version and a deploy
# on the primary: the sync that takes the deploy (its own duration, from GET /v1/mirror),
# every sync in the log, and the wall time from the end of the deploy to the replica
# answering the new tip.
#
#   bench/scale.sh 10000 && bench/mirror.sh [N]     (default 10000; needs build/imgstore)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${IMGSTORE_BIN:-$PWD/build/imgstore}
n=${1:-10000}
scale=${BENCH_DIR:-/tmp/imgstore-scale}
work=${MIRROR_BENCH_DIR:-/tmp/imgstore-mirror-bench}
[ -f "$scale/big-$n.git/HEAD" ] || { echo "mirror: run bench/scale.sh $n first" >&2; exit 1; }
# scale.sh's throw-away key signs the new version; nothing of the user's
export XDG_CONFIG_HOME=$scale/config XDG_STATE_HOME=$work/state IMGSTORE_ACTOR=bench@mirror
unset IMGSTORE_SERVER IMGSTORE_REPO
rm -rf "$work"
mkdir -p "$work"

now() { date +%s.%N; }
status() { curl -sf "http://$1/v1/mirror"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

versions_of() { # STORE: how many versions of app, in either layout (docs/format.md)
  if git --git-dir="$1" show main:imgstore.json | grep -q imgstore/2; then
    git --git-dir="$1" ls-tree --name-only main images/app/ |
      while read -r shard; do git --git-dir="$1" ls-tree main "$shard/"; done | wc -l
  else
    git --git-dir="$1" ls-tree main images/app/ | wc -l
  fi
}

measure() { # LABEL SOURCE-STORE sync|seed
  local primary=$work/$1-primary.git replica=$work/$1-replica.git log=$work/$1.log
  local t0 t1 t2 t3 addr tip versions pid
  git clone -q --bare --local "$2" "$primary" # hard links: the scale store is not touched
  versions=$(versions_of "$primary")
  [ "$3" = seed ] && git clone -q --bare --local "$primary" "$replica"
  t0=$(now)
  "$bin" serve --repo "$replica" --listen 127.0.0.1:0 --mirror-of "$primary" \
    --set mirror_interval=1 --set read_public=true >"$work/$1.out" 2>"$log" &
  pid=$!
  until grep -q "listening on" "$work/$1.out" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "mirror: the replica did not start" >&2; cat "$log" >&2; exit 1; }
    sleep 0.05
  done
  t1=$(now)
  addr=$(sed -n 's/.*listening on \([^,]*\),.*/\1/p' "$work/$1.out")
  head -c 65536 /dev/urandom >"$work/new.img"
  "$bin" push --repo "$primary" --name app --version "mirror.1" --kind unknown "$work/new.img" >/dev/null
  "$bin" deploy --repo "$primary" app mirror.1 --channel prod >/dev/null
  t2=$(now)
  tip=$(git --git-dir="$primary" rev-parse main)
  until status "$addr" | grep -q "\"tip\":\"$tip\""; do sleep 0.01; done
  t3=$(now)
  status "$addr" >"$work/$1.status"
  kill "$pid"; wait "$pid" || true
  python3 - "$1" "$versions" "$t0" "$t1" "$t2" "$t3" "$work/$1.status" <<'PY'
import json, sys
label, versions, t0, t1, t2, t3, path = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:7]), sys.argv[7]
d = json.load(open(path))
a = d["last_advance"]
print("%-6s %6d versions: start %6.1f s; after one version + deploy: last sync %4.0f ms "
      "(%d commits, %d versions, %d states, %d bytes hashed), tip served %5.2f s after the deploy"
      % (label, versions, t1 - t0, a["duration_seconds"] * 1000, a["commits"], a["versions"],
         a["states"], a["bytes_hashed"], t3 - t2))
PY
  grep -o "mirror synced.*" "$log" | sed "s/^/$1: /"
}

measure small "$scale/small.git" sync
measure big "$scale/big-$n.git" seed
