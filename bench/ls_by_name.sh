#!/usr/bin/env bash
# ls NAME by time and by name (docs/cli.md "ls", docs/format.md "Indexes"): a page of the CLI
# on the store itself (median of 5 whole processes) and of GET /v1/images/app with the
# server's caches off (median of 5 curl requests). Run it on a small store and a large one
# (bench/scale.sh builds 10,000 versions of image `app`) and on one without the name index
# (an older imgstore's) to see the fallback.
#
#   bench/ls_by_name.sh STORE VERSION       (IMGSTORE_BIN to override)
set -euo pipefail
store=$1 v=$2
bin=${IMGSTORE_BIN:-$(cd "$(dirname "$0")/.." && pwd)/build/imgstore}
work=$(mktemp -d /tmp/imgstore-ls-by-name.XXXXXX)
export XDG_CONFIG_HOME=$work/config XDG_STATE_HOME=$work/state
unset IMGSTORE_SERVER IMGSTORE_REPO
token=imgstore_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf 'token = %s scopes=read name=bench\ncache_max_bytes = 0\nanswer_cache_bytes = 0\n' \
  "$(printf %s "$token" | sha256sum | cut -c1-64)" > "$work/serve.conf"
"$bin" serve --repo "$store" --config "$work/serve.conf" --listen 127.0.0.1:0 \
  > "$work/serve.out" 2> "$work/serve.log" &
pid=$!
trap 'kill $pid; rm -rf "$work"' EXIT
for _ in $(seq 50); do grep -q listening "$work/serve.out" && break; sleep 0.1; done
url=http://$(sed -n 's/.*listening on \([^,]*\),.*/\1/p' "$work/serve.out")
cli() { # median of 5 runs of `imgstore ls app ARGS...`, in ms
  for _ in 1 2 3 4 5; do
    s=$(date +%s%N)
    "$bin" ls app --repo "$store" "$@" > /dev/null 2>&1
    echo $(( ($(date +%s%N) - s) / 1000 ))
  done | sort -n | sed -n 3p | awk '{printf "%.1f ms", $1/1000}'
}
t() { # median of 5 of curl's time_total, in ms
  for _ in 1 2 3 4 5; do
    curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $token" "$url$1"
  done | sort -n | sed -n 3p | awk '{printf "%.1f ms", $1*1000}'
}
printf "%-50s %s\n" "ls app --limit 50" "$(cli --limit 50)"
printf "%-50s %s\n" "ls app --sort name --limit 50" "$(cli --sort name --limit 50)"
printf "%-50s %s\n" "ls app --sort name --limit 50 --before $v" "$(cli --sort name --limit 50 --before "$v")"
printf "%-50s %s\n" "/v1/images/app?limit=100" "$(t "/v1/images/app?limit=100")"
printf "%-50s %s\n" "/v1/images/app?sort=name&limit=100" "$(t "/v1/images/app?sort=name&limit=100")"
printf "%-50s %s\n" "/v1/images/app?sort=name&limit=100&before=$v" "$(t "/v1/images/app?sort=name&limit=100&before=$v")"
printf "%-50s %s\n" "/v2/app/tags/list?n=100&last=$v" "$(t "/v2/app/tags/list?n=100&last=$v")"
