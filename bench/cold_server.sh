# Sourced by the bench scripts that time requests to one store (ls_by_name.sh, oci_scale.sh):
# starts `imgstore serve` on STORE with its answer and download caches off and a read token,
# so each request does the work a first reader's does, and times requests to it.
#
#   cold_server STORE WORK   start it (config and logs in WORK); sets url and token; the
#                            server stops and WORK goes when the script exits
#   t PATH                   the median of 5 curl requests of PATH (time_total), "N.N ms"
cold_server() {
  local store=$1 dir=$2
  token=imgstore_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf 'token = %s scopes=read name=bench\ncache_max_bytes = 0\nanswer_cache_bytes = 0\n' \
    "$(printf %s "$token" | sha256sum | cut -c1-64)" > "$dir/serve.conf"
  "$bin" serve --repo "$store" --config "$dir/serve.conf" --listen 127.0.0.1:0 \
    > "$dir/serve.out" 2> "$dir/serve.log" &
  server_pid=$!
  trap "kill $server_pid; rm -rf '$dir'" EXIT
  for _ in $(seq 50); do grep -q listening "$dir/serve.out" && break; sleep 0.1; done
  url=http://$(sed -n 's/.*listening on \([^,]*\),.*/\1/p' "$dir/serve.out")
}

t() {
  for _ in 1 2 3 4 5; do
    curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $token" "$url$1"
  done | sort -n | sed -n 3p | awk '{printf "%.1f ms", $1*1000}'
}
