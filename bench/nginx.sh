#!/usr/bin/env bash
# Downloads from imgstore serve directly and through contrib/nginx/imgstore.conf (nginx's
# cache in front), side by side in one run (issue #12; docs/operations.md).
#
#   bench/nginx.sh [SIZE_MIB] [CONCURRENCY]   (defaults 256 and 16; needs build/imgstore or
#                                             IMGSTORE_BIN, nginx, wrk, curl)
#
# - one large file (SIZE_MIB random bytes): single curl -o /dev/null, median of BENCH_ROUNDS
#   (default 3), imgstore hot (its verified cache, sendfile) vs nginx HIT (nginx's cache;
#   every request still authorised by imgstore with a HEAD);
# - a 64 KiB file with wrk -t2 -cCONCURRENCY -d10s: requests/s and p99, direct vs nginx HIT,
#   where the HEAD nginx sends imgstore per request is the price of keeping auth in imgstore.
# Both caches are warmed first; imgstore needs a read token (read_public = false), as a
# store behind a public cache would. nginx runs from a temp prefix on a loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-256}
conc=${2:-16}
rounds=${BENCH_ROUNDS:-3}
bin=${IMGSTORE_BIN:-$PWD/build/imgstore}
work=${BENCH_DIR:-/tmp/imgstore-bench-nginx}
rm -rf "$work" && mkdir -p "$work"
export XDG_CONFIG_HOME=$work/config XDG_STATE_HOME=$work/state IMGSTORE_REPO=$work/store.git
server_pid="" nginx_pid="" nginx2_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
  [ -n "$nginx2_pid" ] && kill "$nginx2_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  for pid in $nginx_pid $nginx2_pid; do # not children of this shell: wait for their exit
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
}
trap cleanup EXIT
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

"$bin" init >/dev/null 2>&1
head -c $((size_mib * 1048576)) /dev/urandom >"$work/big.img"
head -c 65536 /dev/urandom >"$work/small.img"
"$bin" push --name big --version 1 "$work/big.img" >/dev/null
"$bin" push --name small --version 1 "$work/small.img" >/dev/null
token=$("$bin" token create --scope read --name bench 2>/dev/null | head -n 1)
hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
printf 'token = %s scopes=read name=bench\n' "$hash" >"$work/serve.conf"
"$bin" serve --listen 127.0.0.1:0 --config "$work/serve.conf" >"$work/serve.out" \
  2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/serve.out" && break; sleep 0.1; done
upstream=$(sed -n 's/.*listening on \([^,]*\),.*/\1/p' "$work/serve.out")
start_nginx() { # DIR SED-EXPR -> port on stdout; nginx pid appended to nginx_pids
  local dir=$1 extra=$2 port user="" t=$1/tmp
  mkdir -p "$dir/tmp" "$dir/cache" "$dir/logs"
  port=$(free_port)
  sed -e "s#server 127.0.0.1:8080;#server $upstream;#" \
    -e "s#/var/cache/nginx/imgstore#$dir/cache#" \
    -e "s#^    listen 80;#    listen 127.0.0.1:$port;#" -e "$extra" contrib/nginx/imgstore.conf \
    >"$dir/imgstore.conf"
  [ "$(id -u)" = 0 ] && user="user root root;"
  cat >"$dir/nginx.conf" <<CONF
$user
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $t/body; proxy_temp_path $t/proxy; fastcgi_temp_path $t/fastcgi;
  uwsgi_temp_path $t/uwsgi; scgi_temp_path $t/scgi;
  include $dir/imgstore.conf;
}
CONF
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" </dev/null >/dev/null 2>&1 &
  echo "$! $port"
}
read -r nginx_pid port < <(start_nginx "$work/nginx" "")
# the same config without the per-request check: what a read_public store could use, at the
# price of serving a cached file whose version lost its trust (clients still refuse it)
read -r nginx2_pid port2 < <(start_nginx "$work/nginx-open" "/auth_request /d")
for p in "$port" "$port2"; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$p/healthz" && break; sleep 0.1; done
done

direct=http://$upstream
cached=http://127.0.0.1:$port
open=http://127.0.0.1:$port2
big=/v1/images/big/1/files/big.img
small=/v1/images/small/1/files/small.img
auth="Authorization: Bearer $token"
for url in "$direct$big" "$cached$big" "$open$big" "$direct$small" "$cached$small" "$open$small"; do
  curl -sf -H "$auth" -o /dev/null "$url" # warm both caches
done
status=$(curl -s -D - -H "$auth" -o /dev/null "$cached$big" | tr -d '\r' |
  sed -n 's/^X-Cache-Status: //Ip')
[ "$status" = HIT ] || { echo "nginx did not answer from its cache ($status)" >&2; exit 1; }

single() { # URL -> MiB/s of one download
  curl -sf -H "$auth" -o /dev/null -w '%{speed_download}\n' "$1" |
    awk '{printf "%.0f\n", $1 / 1048576}'
}
d_rounds=() c_rounds=() o_rounds=()
for _ in $(seq "$rounds"); do
  d_rounds+=("$(single "$direct$big")")
  c_rounds+=("$(single "$cached$big")")
  o_rounds+=("$(single "$open$big")")
done
d_single=$(printf '%s\n' "${d_rounds[@]}" | median)
c_single=$(printf '%s\n' "${c_rounds[@]}" | median)
o_single=$(printf '%s\n' "${o_rounds[@]}" | median)

wrk_run() { # URL -> "req/s p99"
  wrk -t2 -c"$conc" -d10s --latency -H "$auth" "$1" |
    awk '/Requests\/sec/ {r=$2} /^ +99%/ {p=$2} END {printf "%.0f %s\n", r, p}'
}
read -r d_rps d_p99 < <(wrk_run "$direct$small")
heads_before=$(grep -c 'method=HEAD path=/v1/images/small' "$work/serve.log" || true)
read -r c_rps c_p99 < <(wrk_run "$cached$small")
sleep 1
heads=$(($(grep -c 'method=HEAD path=/v1/images/small' "$work/serve.log") - heads_before))
read -r o_rps o_p99 < <(wrk_run "$open$small")
ratio() { python3 -c "print('%.2f' % ($2 / $1))"; }

echo "| ${size_mib} MiB file / 64 KiB file | imgstore serve | via nginx cache | ratio | nginx cache, no auth_request | ratio |"
echo "|---|---|---|---|---|---|"
echo "| single download, hot (median of $rounds) | $d_single MiB/s | $c_single MiB/s | **$(ratio "$d_single" "$c_single")** | $o_single MiB/s | **$(ratio "$d_single" "$o_single")** |"
echo "| single download rounds | ${d_rounds[*]} | ${c_rounds[*]} | | ${o_rounds[*]} | |"
echo "| 64 KiB GET, wrk -t2 -c$conc 10 s | $d_rps req/s | $c_rps req/s | **$(ratio "$d_rps" "$c_rps")** | $o_rps req/s | **$(ratio "$d_rps" "$o_rps")** |"
echo "| 64 KiB GET p99 | $d_p99 | $c_p99 | | $o_p99 | |"
echo "| requests imgstore answered during the nginx wrk run | | $heads HEAD, 0 GET | | 0 | |"
