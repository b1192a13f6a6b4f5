#!/usr/bin/env bash
# imgstore serve against nginx and the docker registry serving the same bytes, side by side
# in one run.
#
#   bench/serve.sh [SIZE_MIB] [CONCURRENCY]   (defaults 1024 and 64; needs build/imgstore,
#                                             or IMGSTORE_BIN; installs nginx-light, wrk, curl,
#                                             docker-registry)
#
# - upload: the image POSTed to imgstore serve with curl -F (streamed into the store, chunked,
#   hashed, committed), alternating BENCH_ROUNDS times (default 3) with the registry's blob
#   upload, each into an empty store after a `sync`, median reported; nginx has no upload to
#   compare with, so the local `imgstore push` of the same file is shown instead;
# - single-stream download: curl -o /dev/null, imgstore cold (first read: verify every chunk
#   and fill the cache) and hot (from the verified cache, sendfile), nginx from the page cache;
# - CONCURRENCY parallel downloads of the hot image: aggregate throughput, and the server's
#   peak RSS (VmHWM) over the whole run;
# - wrk, 64 connections, 10 s: GET of a version's manifest JSON against nginx serving the
#   same JSON as a static file, alternating BENCH_ROUNDS times; median requests/s and p99.
# - the docker registry (Debian's docker-registry, distribution 2.8, filesystem storage in a
#   temp dir, loopback port): the same image uploaded as one blob with the v2 API (POST to
#   open an upload, one streamed PUT of the whole body with its digest, curl -T), and CONCURRENCY
#   parallel downloads of that hot blob; its peak RSS (VmHWM).
# nginx runs unprivileged from a temp prefix on a loopback port, sendfile on, access log off.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
conc=${2:-64}
rounds=${BENCH_ROUNDS:-3}
bin=${IMGSTORE_BIN:-$PWD/build/imgstore}
work=${BENCH_DIR:-/tmp/imgstore-bench-serve}
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
command -v docker-registry >/dev/null || need+=(docker-registry)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
rm -rf "$work" && mkdir -p "$work/www" "$work/nginx/logs"
export XDG_CONFIG_HOME=$work/config XDG_STATE_HOME=$work/state # a throw-away key
server_pid="" nginx_pid="" hwm_pid="" reg_pid="" reg_hwm_pid=""
cleanup() {
  [ -n "$hwm_pid" ] && kill "$hwm_pid" 2>/dev/null || true
  [ -n "$reg_hwm_pid" ] && kill "$reg_hwm_pid" 2>/dev/null || true
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
now() { date +%s.%N; }
mibs() { python3 -c "import sys; print('%.0f' % ($1 / 1048576 / ($3 - $2)))"; }

echo "serve.sh: making a ${size_mib} MiB random image" >&2
head -c "${size_mib}M" /dev/urandom >"$work/www/app.img"
bytes=$(stat -c %s "$work/www/app.img")
"$bin" init --repo "$work/local.git" >/dev/null 2>&1
sync
t0=$(now)
"$bin" push --repo "$work/local.git" --name app --version 1 --kind unknown "$work/www/app.img" \
  >/dev/null
t1=$(now)
push_local=$(mibs "$bytes" "$t0" "$t1")
rm -rf "$work/local.git"

# The registry starts first: both uploads are measured in alternation below.
rport=$(free_port)
mkdir -p "$work/registry/data"
cat >"$work/registry/config.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $work/registry/data}
  cache: {blobdescriptor: inmemory}
http: {addr: 127.0.0.1:$rport}
EOF
docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
reg_pid=$!
rurl=http://127.0.0.1:$rport
for _ in $(seq 100); do curl -sf -o /dev/null "$rurl/v2/" && break; sleep 0.1; done
(while kill -0 "$reg_pid" 2>/dev/null; do
  grep VmHWM "/proc/$reg_pid/status" 2>/dev/null | awk '{print $2}' >"$work/reg_hwm"
  sleep 0.2
done) &
reg_hwm_pid=$!
digest=sha256:$(sha256sum "$work/www/app.img" | cut -c1-64)

# A fresh store and server for each upload round (a second upload of the same bytes would
# dedupe every chunk); the last one stays up for the download and manifest figures.
port=$(free_port)
url=http://127.0.0.1:$port
start_server() {
  [ -n "$hwm_pid" ] && kill "$hwm_pid" 2>/dev/null || true
  if [ -n "$server_pid" ]; then kill "$server_pid" && wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work/store.git" "$work/serve.out"
  "$bin" init --repo "$work/store.git" >/dev/null 2>&1
  "$bin" serve --repo "$work/store.git" --listen "127.0.0.1:$port" \
    --set anonymous_scopes=read,push --set cache_max_bytes=$((2 * size_mib + 64))M \
    >"$work/serve.out" 2>"$work/serve.log" &
  server_pid=$!
  for _ in $(seq 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
  # peak RSS, sampled from /proc (VmHWM is the kernel's own high-water mark)
  (while kill -0 "$server_pid" 2>/dev/null; do
    grep VmHWM "/proc/$server_pid/status" 2>/dev/null | awk '{print $2}' >"$work/hwm"
    sleep 0.2
  done) &
  hwm_pid=$!
}
upload_imgstore() {
  local t0 t1
  sync # no dirty pages from the step before
  t0=$(now)
  curl -sSf -F sha256.app.img="${digest#sha256:}" -F file=@"$work/www/app.img" \
    "$url/v1/images/app/1" >/dev/null
  t1=$(now)
  mibs "$bytes" "$t0" "$t1"
}
upload_registry() { # $1: repository name; the blob store is emptied first
  local t0 t1 location sep
  rm -rf "$work/registry/data/docker/registry/v2/blobs"
  sync
  t0=$(now)
  location=$(curl -sSf -X POST -D - -o /dev/null "$rurl/v2/$1/blobs/uploads/" |
    tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
  case $location in http*) ;; *) location=$rurl$location ;; esac
  case $location in *\?*) sep='&' ;; *) sep='?' ;; esac
  curl -sSf -H "Content-Type: application/octet-stream" -T "$work/www/app.img" \
    -o /dev/null "$location${sep}digest=$digest"
  t1=$(now)
  mibs "$bytes" "$t0" "$t1"
}
median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
echo "serve.sh: upload, $rounds rounds alternating imgstore and the registry" >&2
ups=() rups=()
for r in $(seq "$rounds"); do
  start_server
  ups+=("$(upload_imgstore)")
  rups+=("$(upload_registry "bench/app$r")")
done
upload=$(median "${ups[@]}")
upload_registry=$(median "${rups[@]}")
reg_repo=bench/app$rounds

nport=$(free_port)
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
daemon off;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on; tcp_nopush on; keepalive_requests 1000000;
  client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi; uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  types { application/json json; }
  default_type application/octet-stream;
  server { listen 127.0.0.1:$nport; root $work/www; }
}
EOF
"$nginx_bin" -e "$work/nginx/logs/error.log" -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>"$work/nginx/stderr" &
nginx_pid=$!
curl -sSf "$url/v1/images/app/1" -o "$work/www/manifest.json"
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$nport/manifest.json" && break; sleep 0.1; done

one() { curl -sSf -o /dev/null -w '%{speed_download}' "$1" | awk '{printf "%.0f", $1 / 1048576}'; }
echo "serve.sh: single-stream downloads" >&2
cat "$work/www/app.img" >/dev/null # page cache, for nginx and the store alike
cold=$(one "$url/v1/images/app/1/files/app.img")
hot=$(one "$url/v1/images/app/1/files/app.img")
nginx_one=$(one "http://127.0.0.1:$nport/app.img")

many() {
  local t0 t1
  t0=$(now)
  seq "$conc" | xargs -P "$conc" -I{} curl -sSf -o /dev/null "$1"
  t1=$(now)
  mibs $((bytes * conc)) "$t0" "$t1"
}
echo "serve.sh: $conc concurrent downloads" >&2
many_imgstore=$(many "$url/v1/images/app/1/files/app.img")
many_nginx=$(many "http://127.0.0.1:$nport/app.img")
hwm_kib=$(cat "$work/hwm")

echo "serve.sh: docker registry, $conc concurrent downloads" >&2
reg_one=$(one "$rurl/v2/$reg_repo/blobs/$digest")
many_registry=$(many "$rurl/v2/$reg_repo/blobs/$digest")
reg_hwm_kib=$(cat "$work/reg_hwm")

echo "serve.sh: wrk, manifest GET" >&2
wrk_run() {
  wrk -t2 -c64 -d10s --latency "$1" 2>/dev/null |
    awk '/Requests\/sec/ {rps=$2} /^ +99%/ {p99=$2} END {print rps, p99}'
}
# alternating rounds, median of each (the p99 reported is the median round's)
wrk_i=() wrk_n=()
for r in $(seq "$rounds"); do
  wrk_i+=("$(wrk_run "$url/v1/images/app/1")")
  wrk_n+=("$(wrk_run "http://127.0.0.1:$nport/manifest.json")")
done
read -r rps_imgstore p99_imgstore < <(median "${wrk_i[@]}")
read -r rps_nginx p99_nginx < <(median "${wrk_n[@]}")

ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }
printf '\n%-44s %14s %14s %7s %14s %7s\n' "$size_mib MiB image, $(nproc) cores" "imgstore" \
  "registry" "ratio" "nginx" "ratio"
printf '%-44s %10s MiB/s %10s MiB/s %7s %10s MiB/s %7s\n' "single download, hot" "$hot" \
  "$reg_one" "$(ratio "$hot" "$reg_one")" "$nginx_one" "$(ratio "$hot" "$nginx_one")"
printf '%-44s %10s MiB/s %10s MiB/s %7s %10s MiB/s %7s\n' "$conc concurrent downloads, aggregate" \
  "$many_imgstore" "$many_registry" "$(ratio "$many_imgstore" "$many_registry")" \
  "$many_nginx" "$(ratio "$many_imgstore" "$many_nginx")"
printf '%-44s %10s MiB/s %10s MiB/s %7s\n' "upload (imgstore POST multipart; registry PUT)" \
  "$upload" "$upload_registry" "$(ratio "$upload" "$upload_registry")"
printf '%-44s %14s %14s\n' "  upload rounds (MiB/s, median above)" "${ups[*]}" "${rups[*]}"
printf '%-44s %10s MiB %10s MiB\n' "peak RSS (VmHWM, whole run)" "$((hwm_kib / 1024))" \
  "$((reg_hwm_kib / 1024))"
printf '\n%-44s %14s %14s %7s\n' "$size_mib MiB image, $(nproc) cores" "imgstore" "nginx" "ratio"
printf '%-44s %10s MiB/s %10s MiB/s %7s\n' "single download, cold (verify + cache fill)" \
  "$cold" "$nginx_one" "$(ratio "$cold" "$nginx_one")"
printf '%-44s %10s MiB/s %10s MiB/s %7s\n' "single download, hot (verified cache)" "$hot" \
  "$nginx_one" "$(ratio "$hot" "$nginx_one")"
printf '%-44s %10s MiB/s %10s MiB/s %7s\n' "$conc concurrent downloads, aggregate" \
  "$many_imgstore" "$many_nginx" "$(ratio "$many_imgstore" "$many_nginx")"
printf '%-44s %14s %14s %7s\n' "manifest GET, wrk 64 connections (req/s)" "$rps_imgstore" \
  "$rps_nginx" "$(ratio "$rps_imgstore" "$rps_nginx")"
printf '%-44s %14s %14s\n' "manifest GET p99 latency" "$p99_imgstore" "$p99_nginx"
printf '%-44s %s / %s\n' "  manifest GET rounds (req/s)" "$(printf '%s ' "${wrk_i[@]%% *}")" \
  "$(printf '%s ' "${wrk_n[@]%% *}")"
printf '%-44s %10s MiB/s %14s\n' "upload (POST multipart, streamed + commit)" "$upload" "-"
printf '%-44s %10s MiB/s %14s\n' "  for reference: local imgstore push" "$push_local" "-"
printf '%-44s %10s MiB\n' "imgstore serve peak RSS (VmHWM, whole run)" "$((hwm_kib / 1024))"
