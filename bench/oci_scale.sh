#!/usr/bin/env bash
# The /v2 requests on one store, caches off, median of 5 curl requests each (issue #12,
# docs/oci.md "Cost"): run it on a small store and a large one (bench/scale.sh builds one of
# 10,000 versions of image `app`; copy it first: the server writes <store>/imgstore-oci).
#
#   bench/oci_scale.sh STORE VERSION        (IMGSTORE_BIN to override)
#
# "no lookup hints" rows remove <store>/imgstore-oci/lookup before each request: what a
# fresh server, or a second one over the same store, answers.
set -euo pipefail
store=$1 v=$2
bin=${IMGSTORE_BIN:-$(cd "$(dirname "$0")/.." && pwd)/build/imgstore}
work=$(mktemp -d /tmp/imgstore-oci-scale.XXXXXX)
. "$(dirname "$0")/cold_server.sh"
cold_server "$store" "$work"
t_fresh() { # the same, each request without the server's lookup hints (a fresh server),
  # and the status it got
  for _ in 1 2 3 4 5; do
    rm -rf "$store/imgstore-oci/lookup"
    curl -s -o /dev/null -w '%{time_total} %{http_code}\n' -H "Authorization: Bearer $token" "$url$1"
  done | sort -n | sed -n 3p | awk '{printf "%.1f ms (HTTP %s)", $1*1000, $2}'
}
manifest=$(curl -s -H "Authorization: Bearer $token" "$url/v2/app/manifests/$v")
digest=$(printf %s "$manifest" | sha256sum | cut -c1-64)
blob=$(printf %s "$manifest" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])')
echo "tags/list?n=100                 $(t "/v2/app/tags/list?n=100")"
echo "tags/list?n=100&last=$v         $(t "/v2/app/tags/list?n=100&last=$v")"
echo "manifests/$v                    $(t "/v2/app/manifests/$v")"
echo "manifests/sha256:...            $(t "/v2/app/manifests/sha256:$digest")"
config=$(printf %s "$manifest" | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])')
echo "blobs/sha256:... (streamed)     $(t "/v2/app/blobs/$blob")"
echo "  the same, no lookup hints     $(t_fresh "/v2/app/blobs/$blob")"
echo "  its config, no lookup hints   $(t_fresh "/v2/app/blobs/$config")"
echo "  its manifest, no lookup hints $(t_fresh "/v2/app/manifests/sha256:$digest")"
echo "an unknown digest (the scan)    $(t "/v2/app/manifests/sha256:$(echo x | sha256sum | cut -c1-64)")"
echo "/v1/images/app?limit=100        $(t "/v1/images/app?limit=100")"
