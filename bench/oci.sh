#!/usr/bin/env bash
# skopeo copy of one image out of (and into) imgstore serve's /v2 vs Debian's docker-registry
# (distribution 2.8), both on 127.0.0.1 over plain HTTP, same image, same client (issue #12).
#
#   bench/oci.sh            # BENCH_DIR, IMGSTORE_BIN, BENCH_MIB (default 256), RUNS (default 3)
#
# The image: the real kernel + initrd + cmdline of ../shared/fixtures/real and BENCH_MIB MiB of
# random bytes as a disk file. It is pushed to imgstore with the CLI, then copied from imgstore
# into docker-registry with skopeo, so both serve the same OCI manifest and blobs. Each pull
# (into a dir: layout, page cache warm) is timed RUNS times; the first imgstore pull also fills
# the verified download cache, so it is reported apart. Then the dir: layout is pushed RUNS
# times into new names of each.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin=${IMGSTORE_BIN:-$here/../build/imgstore}
fixtures=${IMGSTORE_FIXTURES:-$here/../../shared/fixtures/real}
mib=${BENCH_MIB:-256}
runs=${RUNS:-3}
dir=${BENCH_DIR:-$(mktemp -d /tmp/imgstore-bench-oci.XXXXXX)}
pids=()
cleanup() {
  for p in "${pids[@]}" $(cat "$dir/pids" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${BENCH_DIR:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT

command -v skopeo >/dev/null || { echo "skopeo not installed" >&2; exit 1; }
command -v docker-registry >/dev/null || { echo "docker-registry not installed" >&2; exit 1; }

export XDG_CONFIG_HOME=$dir/config HOME=$dir/home
mkdir -p "$HOME" "$dir/img"
store=$dir/store.git
"$bin" init --repo "$store" >/dev/null
head -c $((mib * 1024 * 1024)) /dev/urandom > "$dir/img/disk.raw"
"$bin" push --repo "$store" --name bench --version 1.0 --kind unknown "$dir/img/disk.raw" >/dev/null
"$bin" push --repo "$store" --name bench --version 1.1 "$fixtures/vmlinuz-6.1.0-56-cloud-amd64" \
  "$fixtures/initrd-busybox.cpio.gz" "$fixtures/cmdline.txt" "$dir/img/disk.raw" >/dev/null

token=imgstore_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "token = $(printf %s "$token" | sha256sum | cut -c1-64) scopes=read,push name=bench" > "$dir/serve.conf"
"$bin" serve --repo "$store" --config "$dir/serve.conf" --listen 127.0.0.1:0 \
  > "$dir/serve.out" 2> "$dir/serve.log" &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$dir/serve.out" && break; sleep 0.1; done
imgstore=$(sed -n 's/.*listening on \([^,]*\),.*/\1/p' "$dir/serve.out")

# a docker-registry on a fresh storage directory: prints its address
start_registry() {
  local root=$1 port
  # docker-registry prints no port for :0: pick one
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$root.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $root}, cache: {blobdescriptor: inmemory}}
http: {addr: 127.0.0.1:$port}
EOF
  docker-registry serve "$root.yml" > "$root.log" 2>&1 &
  echo $! >> "$dir/pids"
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
  echo "127.0.0.1:$port"
}
registry=$(start_registry "$dir/registry")

src_imgstore=(--src-tls-verify=false --src-registry-token "$token")
skopeo --insecure-policy copy -q "${src_imgstore[@]}" --dest-tls-verify=false \
  "docker://$imgstore/bench:1.1" "docker://$registry/bench:1.1"

# one copy, timed: prints seconds (a pull's destination is emptied first; skopeo starts
# without its blob-info cache, so it never skips an upload by mounting a blob it saw)
timed() {
  local t0 t1
  rm -rf "$dir/out" "$HOME/.local/share/containers"
  t0=$(date +%s.%N)
  skopeo --insecure-policy copy -q "$@" >/dev/null
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}

echo "image: bench 1.1, $((mib)) MiB random + 15 MiB of real kernel/initrd/cmdline, $runs runs"
cold=$(timed "${src_imgstore[@]}" "docker://$imgstore/bench:1.1" "dir:$dir/out")
echo "imgstore pull, cold cache (fills the verified cache): ${cold}s"
for who in imgstore registry; do
  times=()
  for _ in $(seq "$runs"); do
    if [ $who = imgstore ]; then
      times+=("$(timed "${src_imgstore[@]}" "docker://$imgstore/bench:1.1" "dir:$dir/out")")
    else
      times+=("$(timed --src-tls-verify=false "docker://$registry/bench:1.1" "dir:$dir/out")")
    fi
  done
  echo "$who pull (warm): ${times[*]} s"
done
cp -r "$dir/out" "$dir/keep"
# push: from the dir: layout into a new image of imgstore (detected, chunked, signed,
# committed) and into a docker-registry with empty storage (so every blob is sent to both)
for who in imgstore registry; do
  times=()
  for i in $(seq "$runs"); do
    if [ $who = imgstore ]; then
      times+=("$(timed "dir:$dir/keep" --dest-tls-verify=false --dest-registry-token "$token" \
        "docker://$imgstore/push$i:1.0")")
    else
      fresh=$(start_registry "$dir/registry-push$i")
      times+=("$(timed "dir:$dir/keep" --dest-tls-verify=false "docker://$fresh/push$i:1.0")")
    fi
  done
  echo "$who push: ${times[*]} s"
done
