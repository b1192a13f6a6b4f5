#!/usr/bin/env bash
# Push and pull of a 1 GiB image, imgstore against stock git, side by side in one run.
#
#   bench/push_pull.sh [SIZE_MIB]        (default 1024; needs build/imgstore)
#
# Images: random bytes (incompressible, like a compressed kernel or initrd), and an
# ELF-like compressible image made by concatenating the machine's own ELF binaries.
# Stock git: `git hash-object -w` + `git commit` (what a git-based image store would do),
# and `git cat-file blob > file` to read it back. imgstore: `imgstore push`, and
# `imgstore pull -o FILE` (verifies every chunk, fsyncs, renames) and `pull -o -`.
# Times are wall clock (median of 3 for reads), peak RSS from /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
bin=${IMGSTORE_BIN:-$PWD/build/imgstore}
work=${BENCH_DIR:-/tmp/imgstore-bench}
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
rm -rf "$work" && mkdir -p "$work"
# a throw-away signing key, never the user's
export XDG_CONFIG_HOME=$work/config XDG_STATE_HOME=$work/state

make_images() {
  head -c "${size_mib}M" /dev/urandom > "$work/random.img"
  : > "$work/elf.img"
  while [ "$(stat -c %s "$work/elf.img")" -lt $((size_mib * 1048576)) ]; do
    find /usr/bin /usr/lib/x86_64-linux-gnu -maxdepth 1 -type f -size +100k 2>/dev/null |
      sort | while read -r f; do head -c 4 "$f" | grep -q ELF && cat "$f"; done >> "$work/elf.img"
  done
  truncate -s "${size_mib}M" "$work/elf.img"
}

# run LABEL CMD...: prints "seconds peak_rss_kib"
# (time writes to its own file: the command's stderr is discarded, and a failing command
# aborts the run instead of printing a zero time)
measure() {
  local t
  t=$(mktemp)
  /usr/bin/time -o "$t" -f "%e %M" "$@" >/dev/null 2>"$t.err" || {
    echo "bench: failed: $* ($(tail -1 "$t.err"))" >&2
    rm -f "$t" "$t.err"
    exit 1
  }
  tail -1 "$t"
  rm -f "$t" "$t.err"
}

median3() { sort -n | sed -n 2p; }

row() { # image op tool seconds rss
  awk -v img="$1" -v op="$2" -v tool="$3" -v s="$4" -v rss="$5" -v mib="$size_mib" \
    'BEGIN { printf "%-7s %-5s %-34s %7.2f s %8.0f MiB/s %8.1f MiB\n", img, op, tool, s, mib / s, rss / 1024 }'
}

make_images
printf "%-7s %-5s %-34s %9s %14s %12s\n" image op tool time throughput "peak RSS"
for img in random elf; do
  f=$work/$img.img
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; cat "$f" > /dev/null

  # --- push
  rm -rf "$work/git" && git init -q --bare "$work/git"
  read -r s rss < <(measure sh -c "oid=\$(git --git-dir=$work/git hash-object -w $f) &&
    tree=\$(printf '100644 blob %s\timage\n' \$oid | git --git-dir=$work/git mktree) &&
    git --git-dir=$work/git -c user.name=b -c user.email=b@b commit-tree -m push \$tree > /dev/null")
  row "$img" push "git hash-object -w + commit" "$s" "$rss"
  git_push=$s

  rm -rf "$work/store" && "$bin" init --repo "$work/store" >/dev/null
  read -r s rss < <(measure "$bin" push --repo "$work/store" --name bench --version 1 "$f")
  row "$img" push "imgstore push (fsync)" "$s" "$rss"
  awk -v a="$git_push" -v b="$s" 'BEGIN { printf "        push speed-up over stock git: %.1fx\n", a / b }'

  # --- pull
  oid=$(git --git-dir="$work/git" hash-object "$f")
  s=$(for i in 1 2 3; do rm -f "$work/out"; measure sh -c "git --git-dir=$work/git cat-file blob $oid > $work/out" | cut -d' ' -f1; done | median3)
  rss=$(measure sh -c "git --git-dir=$work/git cat-file blob $oid > $work/out" | cut -d' ' -f2)
  row "$img" pull "git cat-file blob > file" "$s" "$rss"
  git_pull=$s
  s=$(for i in 1 2 3; do rm -f "$work/out"; measure sh -c "git --git-dir=$work/git cat-file blob $oid > $work/out && sync $work/out" | cut -d' ' -f1; done | median3)
  row "$img" pull "git cat-file blob > file + sync" "$s" 0
  git_pull_sync=$s
  s=$(for i in 1 2 3; do rm -f "$work/out"; measure "$bin" pull --repo "$work/store" bench@1 -o "$work/out" | cut -d' ' -f1; done | median3)
  rss=$(measure "$bin" pull --repo "$work/store" bench@1 -o "$work/out" | cut -d' ' -f2)
  row "$img" pull "imgstore pull -o file (fsync)" "$s" "$rss"
  awk -v a="$git_pull" -v c="$git_pull_sync" -v b="$s" 'BEGIN { printf "        pull speed-up: %.1fx over cat-file, %.1fx over cat-file + sync\n", a / b, c / b }'
  s=$(for i in 1 2 3; do measure sh -c "$bin pull --repo $work/store bench@1 -o - > /dev/null" | cut -d' ' -f1; done | median3)
  row "$img" pull "imgstore pull -o - > /dev/null" "$s" 0
  s=$(for i in 1 2 3; do measure sh -c "git --git-dir=$work/git cat-file blob $oid > /dev/null" | cut -d' ' -f1; done | median3)
  row "$img" pull "git cat-file blob > /dev/null" "$s" 0
  echo "        store size: git $(du -sm "$work/git" | cut -f1) MiB, imgstore $(du -sm "$work/store" | cut -f1) MiB"
done
rm -rf "$work"
