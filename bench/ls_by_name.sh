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
. "$(dirname "$0")/cold_server.sh"
cold_server "$store" "$work"
cli() { # median of 5 runs of `imgstore ls app ARGS...`, in ms
  for _ in 1 2 3 4 5; do
    s=$(date +%s%N)
    "$bin" ls app --repo "$store" "$@" > /dev/null 2>&1
    echo $(( ($(date +%s%N) - s) / 1000 ))
  done | sort -n | sed -n 3p | awk '{printf "%.1f ms", $1/1000}'
}
printf "%-50s %s\n" "ls app --limit 50" "$(cli --limit 50)"
printf "%-50s %s\n" "ls app --sort name --limit 50" "$(cli --sort name --limit 50)"
printf "%-50s %s\n" "ls app --sort name --limit 50 --before $v" "$(cli --sort name --limit 50 --before "$v")"
printf "%-50s %s\n" "/v1/images/app?limit=100" "$(t "/v1/images/app?limit=100")"
printf "%-50s %s\n" "/v1/images/app?sort=name&limit=100" "$(t "/v1/images/app?sort=name&limit=100")"
printf "%-50s %s\n" "/v1/images/app?sort=name&limit=100&before=$v" "$(t "/v1/images/app?sort=name&limit=100&before=$v")"
printf "%-50s %s\n" "/v2/app/tags/list?n=100&last=$v" "$(t "/v2/app/tags/list?n=100&last=$v")"
