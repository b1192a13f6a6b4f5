#!/usr/bin/env python3
"""
Packing (issue #9): `imgstore gc` packs real images into packs stock git accepts
(`git fsck --strict`, `git verify-pack`), loses nothing while pushes and pulls run beside it,
and a gc killed with SIGKILL at any moment leaves a sound store that the next gc tidies.
Commits pack the store by themselves past $IMGSTORE_GC_AUTO.
"""

import fcntl
import glob
import json
import os
import signal
import subprocess
import threading
import time

from imgstore_testlib import version_path
from imgstore_testlib import (BIN, DEFAULT_TIMEOUT, MiB, Server, StoreTestCase, base_env,
                              fixture, fixture_sums, git_ok, main, needs_fixtures, new_token, rng,
                              run, sha256)


def loose_objects(repo):
    found = []
    for d in glob.glob(os.path.join(repo, "objects", "??")):
        found += [os.path.basename(d) + f for f in os.listdir(d) if len(f) == 38]
    return found


def packs(repo):
    return sorted(glob.glob(os.path.join(repo, "objects", "pack", "pack-*.idx")))


class Gc(StoreTestCase):

    def pulled_sha(self, ref, path=None):
        args = ["pull", ref, "-o", "-"] + (["--file", path] if path else [])
        rc, data, err = self.im(*args, binary=True)
        self.assertEqual(rc, 0, "pull %s: %s" % (ref, err))
        return sha256(data)

    def assertPacksVerify(self):
        for idx in packs(self.repo):
            git_ok("verify-pack", idx)

    def push_random(self, count, size, salt, name="app"):
        """count versions of random bytes; {ref: sha}"""
        r = rng(salt)
        pushed = {}
        for i in range(count):
            p, sha = self.random_file("%s-%d/app.img" % (salt, i), size + i * 4097, r)
            ref = self.push(p, "--name", name, "--version", "%s.%d" % (salt, i), "--kind",
                            "unknown")
            pushed[ref] = sha
        return pushed

    @needs_fixtures
    def test_gc_packs_real_images_into_packs_git_accepts(self):
        sums = fixture_sums()
        pushed = {}
        for name in sorted(sums):
            ref = self.push(fixture(name), "--name", "fx", "--version", name.replace("+", "-"),
                            "--kind", "unknown")
            pushed[ref] = sums[name]
        loose = len(loose_objects(self.repo))
        self.assertGreater(loose, 20)

        stats = self.okjson("gc")
        self.assertFalse(stats["skipped"])
        self.assertEqual(stats["loose_before"], loose)
        self.assertEqual(stats["objects_packed"], loose)
        self.assertEqual(stats["loose_after"], 0)
        self.assertEqual((stats["packs_written"], stats["packs"]), (2, 2))
        self.assertEqual(loose_objects(self.repo), [])
        self.assertFsckClean()
        self.assertPacksVerify()
        # the gzip'd initrd's chunks are in a pack stored, not deflated again: a few bytes of
        # block headers over their size, per `git verify-pack -v` (oid type size in-pack ...)
        initrd = "initrd-busybox.cpio.gz"
        tree = "main:" + version_path("fx", initrd, "files", initrd)
        chunks = [l.split()[2] for l in self.git("ls-tree", tree).splitlines()]
        self.assertGreater(len(chunks), 0)
        in_pack = {}
        for idx in packs(self.repo):
            for line in git_ok("verify-pack", "-v", idx).splitlines():
                f = line.split()
                if len(f) >= 5 and f[1] == "blob":
                    in_pack[f[0]] = (int(f[2]), int(f[3]))
        for oid in chunks:
            size, packed = in_pack[oid]
            self.assertGreaterEqual(packed, size, oid)
            self.assertLessEqual(packed, size + size // 1000 + 64, oid)
        for ref, sha in pushed.items():
            self.assertEqual(self.pulled_sha(ref), sha, ref)
        # stock git alone still rebuilds a file from the packed store (docs/format.md)
        archive = git_ok("archive", "main", version_path("fx", "cmdline.txt", "files/cmdline.txt"),
                         git_dir=self.repo, binary=True)
        self.assertIn(b"console=", archive)
        out = self.ok("gc")
        self.assertIn("packed 0 objects", out)

    def test_second_gc_skips_while_one_holds_the_lock(self):
        self.push_random(2, 300 * 1024, "s")
        with open(os.path.join(self.repo, "imgstore-gc.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.assertEqual(self.ok("gc").strip(), "skipped: another gc is packing this store")
            self.assertTrue(self.okjson("gc")["skipped"])
            self.assertNotEqual(loose_objects(self.repo), [])
        self.assertFalse(self.okjson("gc")["skipped"])
        self.assertEqual(loose_objects(self.repo), [])

    def test_gc_refuses_extra_arguments(self):
        rc, out, err = self.im("gc", "now")
        self.assertEqual(rc, 2)
        self.assertOneLineError(err, "unexpected argument 'now'")

    def test_pushes_pack_the_store_past_the_threshold(self):
        env = {"IMGSTORE_GC_AUTO": "40"}
        r = rng("auto")
        for i in range(8):
            p, _ = self.random_file("auto-%d/app.img" % i, 200 * 1024 + i, r)
            self.ok("push", p, "--name", "app", "--version", "1.%d" % i, env=env)
            self.assertLessEqual(len(loose_objects(self.repo)), 40)
        self.assertGreaterEqual(len(packs(self.repo)), 2)
        self.assertFsckClean()
        # 0 turns it off
        for i in range(8, 14):
            p, _ = self.random_file("auto-%d/app.img" % i, 200 * 1024 + i, r)
            self.ok("push", p, "--name", "app", "--version", "1.%d" % i,
                    env={"IMGSTORE_GC_AUTO": "0"})
        self.assertGreater(len(loose_objects(self.repo)), 40)

    def test_gc_under_concurrent_push_and_pull_loses_nothing(self):
        pushed = self.push_random(12, 600 * 1024, "base")
        failures = []
        stop = threading.Event()
        pushed_lock = threading.Lock()

        def pusher():
            r = rng("concurrent")
            for i in range(20):
                p, sha = self.random_file("c-%d/app.img" % i, 500 * 1024 + i * 333, r)
                rc, out, err = self.im("push", p, "--name", "app", "--version", "c.%d" % i,
                                       "--kind", "unknown")
                if rc != 0:
                    failures.append("push c.%d: %s" % (i, err))
                    continue
                with pushed_lock:
                    pushed[out.strip()] = sha

        def puller():
            while not stop.is_set():
                with pushed_lock:
                    items = list(pushed.items())
                for ref, sha in items[-6:]:
                    rc, data, err = self.im("pull", ref, "-o", "-", binary=True)
                    if rc != 0 or sha256(data) != sha:
                        failures.append("pull %s: rc %d %s" % (ref, rc, err.strip()))

        threads = [threading.Thread(target=pusher), threading.Thread(target=puller)]
        for t in threads:
            t.start()
        gcs = 0
        try:
            while threads[0].is_alive():
                rc, out, err = self.im("gc", "--json", *(["--all"] if gcs % 3 == 2 else []))
                if rc != 0:
                    failures.append("gc: %s" % err)
                gcs += 1
        finally:
            threads[0].join(timeout=DEFAULT_TIMEOUT)
            stop.set()
            threads[1].join(timeout=DEFAULT_TIMEOUT)
        self.assertEqual(failures, [])
        self.assertGreater(gcs, 2)
        self.ok("gc")
        self.assertEqual(len(pushed), 32)
        self.assertEqual(len(self.okjson("ls", "app")["versions"]), 32)
        for ref, sha in pushed.items():
            self.assertEqual(self.pulled_sha(ref), sha, ref)
        self.assertFsckClean()
        self.assertPacksVerify()

    def test_gc_killed_at_any_moment_leaves_a_sound_store(self):
        pushed = self.push_random(16, 1 * MiB, "k")
        r = rng("kill")
        killed = 0
        for attempt in range(8):
            if attempt in (3, 6):  # new loose objects, and packs to combine
                pushed.update(self.push_random(4, 700 * 1024, "k%d" % attempt))
            args = [BIN, "gc", "--repo", self.repo] + (["--all"] if attempt % 2 else [])
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=base_env())
            time.sleep(r.uniform(0.0, 0.25))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
            proc.communicate(timeout=DEFAULT_TIMEOUT)
            self.assertFsckClean()
            for ref, sha in list(pushed.items())[::5]:
                self.assertEqual(self.pulled_sha(ref), sha, "after attempt %d: %s" % (attempt, ref))
        self.assertGreater(killed, 0, "every gc finished before its kill: nothing was tested")
        stats = self.okjson("gc", "--all")
        self.assertEqual(stats["loose_after"], 0)
        self.assertEqual(stats["packs"], 2)
        self.assertFalse(os.path.exists(os.path.join(self.repo, "imgstore-gc.tmp")))
        leftovers = [f for f in os.listdir(os.path.join(self.repo, "objects", "pack"))
                     if not f.endswith((".pack", ".idx"))]
        self.assertEqual(leftovers, [])
        for ref, sha in pushed.items():
            self.assertEqual(self.pulled_sha(ref), sha, ref)
        self.assertFsckClean()
        self.assertPacksVerify()

    def test_serve_packs_the_store_from_its_own_thread(self):
        off = {"IMGSTORE_GC_AUTO": "0"}  # the pushes themselves never pack here
        r = rng("serve")
        refs = {}
        with Server(self.repo, self.tmp, config_lines=["gc_interval = 1", "read_public = true"],
                    env={"IMGSTORE_GC_AUTO": "30"}) as server:
            for i in range(6):
                p, sha = self.random_file("srv-%d/app.img" % i, 150 * 1024 + i, r)
                refs[self.ok("push", p, "--name", "app", "--version", "1.%d" % i,
                             env=off).strip()] = sha
            deadline = time.time() + 60
            while time.time() < deadline and len(loose_objects(self.repo)) > 30:
                time.sleep(0.2)
            self.assertLessEqual(len(loose_objects(self.repo)), 30, server.log())
            self.assertGreaterEqual(len(packs(self.repo)), 2)
            status, _, body = server.request("GET", "/v1/images/app/1.3/files/app.img")
            self.assertEqual((status, sha256(body)), (200, refs["app@1.3"]))
            metrics = server.metrics()
            self.assertGreaterEqual(metrics["imgstore_gc_runs_total"], 1)
            self.assertEqual(metrics["imgstore_gc_failures_total"], 0)
            self.assertEqual(server.stop(), 0)
        self.assertIn("gc packed=", server.log())
        for ref, sha in refs.items():
            self.assertEqual(self.pulled_sha(ref), sha, ref)
        self.assertFsckClean()

    def test_no_request_runs_a_gc(self):
        # pushes through the server commit on the server's store handles: past the threshold
        # they must not pack (the request would wait); with gc_interval = 0 nothing packs
        admin, line = new_token("admin", "ops")
        server = Server(self.repo, self.tmp, [line, "gc_interval = 0"],
                        env={"IMGSTORE_GC_AUTO": "5"})
        self.addCleanup(server.kill)
        r = rng("nogc")
        for i in range(3):
            p, _ = self.random_file("ng-%d/app.img" % i, 120 * 1024 + i, r)
            rc, out, err = run("push", p, "--name", "app", "--version", "1.%d" % i, "--server",
                               server.url, "--token", admin)
            self.assertEqual(rc, 0, err)
        self.assertGreater(len(loose_objects(self.repo)), 5)
        self.assertEqual(packs(self.repo), [])
        self.assertEqual(server.stop(), 0)
        self.assertNotIn("gc packed=", server.log())

    def peak_rss(self, *args):
        """Run imgstore ARGS --repo REPO in a process of its own: (stdout, peak RSS in MiB)."""
        code = ("import resource, subprocess, sys\n"
                "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
                "sys.stderr.write(p.stderr.decode())\n"
                "sys.stdout.write(str(len(p.stdout)) + '\\n' + p.stdout.decode(errors='replace'))\n"
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
                "sys.exit(p.returncode)\n")
        done = subprocess.run(["python3", "-c", code, BIN] + list(args) + ["--repo", self.repo],
                              capture_output=True, text=True, env=base_env(),
                              timeout=DEFAULT_TIMEOUT)
        self.assertEqual(done.returncode, 0, done.stderr)
        lines = done.stdout.split("\n", 1)[1].rstrip("\n").rsplit("\n", 1)
        return lines[0], int(lines[1]) / 1024

    def test_memory_stays_bounded_by_chunk_size_when_packing_and_reading_packs(self):
        # 192 MiB of random bytes: ~190 chunk blobs, each read, checked and written one at a
        # time; neither gc nor gc --all (which reads them back out of a pack) nor a pull from
        # the pack holds more than a few chunks
        if os.environ.get("IMGSTORE_SANITIZED") == "1":
            self.skipTest("peak RSS is meaningless under AddressSanitizer")
        p, sha = self.random_file("big/disk.raw", 192 * MiB)
        ref = self.push(p, "--name", "big", "--version", "1", "--kind", "unknown")
        os.unlink(p)
        out, gc_rss = self.peak_rss("gc", "--json")
        self.assertGreater(json.loads(out)["bytes_after"], 192 * MiB)
        p2, _ = self.random_file("big2/disk.raw", 5 * MiB)  # loose beside the packs
        self.push(p2, "--name", "big", "--version", "2", "--kind", "unknown")
        out, all_rss = self.peak_rss("gc", "--all", "--json")
        self.assertEqual((json.loads(out)["packs_removed"], json.loads(out)["packs"]), (2, 2))
        out, pull_rss = self.peak_rss("verify", "big@1")
        print("peak RSS on a 192 MiB image: gc %.1f MiB, gc --all %.1f MiB, verify from the "
              "pack %.1f MiB" % (gc_rss, all_rss, pull_rss))
        # the budget: 64 MiB of pack windows (store/repo.c) and a few chunk buffers, whatever
        # the image's size (192 MiB here)
        for rss in (gc_rss, all_rss, pull_rss):
            self.assertLess(rss, 96)
        self.assertEqual(self.pulled_sha(ref), sha)

if __name__ == "__main__":
    main()
