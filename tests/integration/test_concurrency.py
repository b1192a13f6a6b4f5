#!/usr/bin/env python3
"""
Concurrency and crash safety: parallel pushes and deploys serialise into one linear history,
and a push SIGKILLed at any moment leaves the previous state or the new one, never a partial
version, a broken repository or a stale lock.
"""

import json
import os
import signal
import subprocess
import time

from imgstore_testlib import (BIN, DEFAULT_TIMEOUT, EXIT_FAIL, MiB, StoreTestCase, base_env,
                              main, rng, seed, sha256)


def popen(*args):
    return subprocess.Popen([BIN] + [str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=base_env())


def finish(procs):
    """Wait for all; [(rc, stdout, stderr)]."""
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=DEFAULT_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            raise AssertionError("concurrent imgstore timed out: %r" % p.args)
        results.append((p.returncode, out.decode(), err.decode()))
    return results


class Concurrency(StoreTestCase):

    def pulled_sha(self, ref):
        rc, data, err = self.im("pull", ref, "-o", "-", binary=True)
        self.assertEqual(rc, 0, "pull %s: %s" % (ref, err))
        return sha256(data)

    def test_eight_parallel_pushes_of_one_image(self):
        files = {}
        for i in range(8):
            files["v%d" % i] = self.random_file("p%d/app.xen" % i, 3 * MiB + i * 4099)
        procs = [popen("push", "--repo", self.repo, p, "--name", "app", "--version", v,
                       "--actor", "ci-%s" % v) for v, (p, _) in sorted(files.items())]
        results = finish(procs)
        for (v, _), (rc, out, err) in zip(sorted(files.items()), results):
            self.assertEqual((rc, out.strip()), (0, "app@" + v), err)

        listed = self.okjson("ls", "app")["versions"]
        self.assertEqual(sorted(x["version"] for x in listed), sorted(files))
        pushes = [s for s in self.subjects() if s.startswith("push ")]
        self.assertEqual(sorted(pushes), sorted("push app " + v for v in files))
        # one linear history: every commit has exactly one parent (except init)
        parents = self.git("log", "--format=%P", "main").splitlines()
        self.assertEqual([len(p.split()) for p in parents], [1] * 8 + [0])
        for v, (_, digest) in files.items():
            self.assertEqual(self.pulled_sha("app@" + v), digest, v)
        self.ok("verify")
        self.assertFsckClean()

    def test_parallel_pushes_of_one_version(self):
        p, digest = self.random_file("same/app.xen", 1 * MiB)
        results = finish([popen("push", "--repo", self.repo, p, "--version", "1.0")
                          for _ in range(4)])
        self.assertEqual([(rc, out.strip()) for rc, out, _ in results], [(0, "app@1.0")] * 4,
                         results)
        self.assertEqual(self.subjects().count("push app 1.0"), 1)

        # different bytes for one new version at once: exactly one wins
        paths = [self.random_file("race%d/app.xen" % i, 1 * MiB) for i in range(4)]
        results = finish([popen("push", "--repo", self.repo, q, "--version", "2.0")
                          for q, _ in paths])
        rcs = sorted(rc for rc, _, _ in results)
        self.assertEqual(rcs, [0, EXIT_FAIL, EXIT_FAIL, EXIT_FAIL], results)
        winner = [d for (q, d), (rc, _, _) in zip(paths, results) if rc == 0][0]
        for rc, _, err in results:
            if rc != 0:
                self.assertIn("immutable", err)
        self.assertEqual(self.pulled_sha("app@2.0"), winner)
        self.assertEqual(self.subjects().count("push app 2.0"), 1)
        self.assertFsckClean()

    def test_four_parallel_deploys_to_one_channel(self):
        versions = []
        for i in range(4):
            p, _ = self.random_file("d%d/app.xen" % i, 128 * 1024)
            versions.append(self.push(p, "--name", "app", "--version", "%d.0" % i).split("@")[1])
        tip = self.tip()
        results = finish([popen("deploy", "--repo", self.repo, "app", v, "--channel", "prod",
                                "--json") for v in versions])
        states = []
        for rc, out, err in results:
            self.assertEqual(rc, 0, err)
            states.append(json.loads(out))
        self.assertEqual(sorted(s["sequence"] for s in states), [1, 2, 3, 4])

        h = self.okjson("history", "app", "--channel", "prod")["entries"]
        self.assertEqual(len(h), 4)
        self.assertEqual([e["state"]["sequence"] for e in h], [4, 3, 2, 1])
        self.assertEqual(sorted(e["version"] for e in h), sorted(versions))
        # no lost update: each move records the version live just before it
        for newer, older in zip(h, h[1:]):
            self.assertEqual(newer["state"]["previous_version"], older["version"])
        self.assertNotIn("previous_version", h[-1]["state"])
        self.assertEqual(self.okjson("ls", "app")["channels"]["prod"], h[0]["version"])
        deploys = self.git("log", "--format=%s", tip + "..main").splitlines()
        self.assertEqual(len(deploys), 4)
        self.assertTrue(all(s.startswith("deploy app prod ") for s in deploys), deploys)
        self.assertFsckClean()

    def test_push_killed_at_random_moments_never_leaves_a_partial_version(self):
        r = rng("kill9")
        pushed = {}      # version -> sha256 of its bytes
        completed = set()
        killed = 0
        for i in range(20):
            version = "k%02d" % i
            path, digest = self.random_file("kill/%s/big.img" % version, 16 * MiB)
            pushed[version] = digest
            started = time.time()
            p = popen("push", "--repo", self.repo, path, "--name", "big", "--version", version)
            # 0-300 ms, stretched on slow (sanitizer) builds so that some pushes complete;
            # the first push runs to completion to measure how long one takes
            delay = DEFAULT_TIMEOUT if i == 0 else r.uniform(0.0, max(0.3, 1.5 * push_time))
            try:
                p.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                killed += 1
            if i == 0:
                push_time = time.time() - started
            p.communicate(timeout=DEFAULT_TIMEOUT)
            if p.returncode == 0:
                completed.add(version)
            else:
                self.assertEqual(p.returncode, -signal.SIGKILL,
                                 "push %s failed on its own (seed %d)" % (version, seed()))
            os.unlink(path)

            msg = "after push %s (rc %s, delay %.3fs, seed %d)" % (version, p.returncode,
                                                                   delay, seed())
            try:
                self.assertFsckClean()
            except AssertionError as e:
                raise AssertionError("%s: %s" % (msg, e))
            images = {x["name"]: x for x in self.okjson("ls")["images"]}
            listed = set()
            if "big" in images:
                listed = {x["version"] for x in self.okjson("ls", "big")["versions"]}
            self.assertLessEqual(completed, listed, msg)
            self.assertLessEqual(listed, set(pushed), msg)
            if version in listed:
                rc, out, err = self.im("verify", "big@" + version)
                self.assertEqual(rc, 0, "%s: %s %s" % (msg, out, err))

        # every version present is exactly the bytes pushed
        for version in sorted(listed):
            self.assertEqual(self.pulled_sha("big@" + version), pushed[version], version)
        self.ok("verify")
        # no stale lock: a normal push completes promptly
        path, digest = self.random_file("after/big.img", 2 * MiB)
        started = time.time()
        self.assertEqual(self.push(path, "--name", "big", "--version", "after"), "big@after")
        self.assertLess(time.time() - started, 30)
        self.assertEqual(self.pulled_sha("big@after"), digest)
        self.assertFsckClean()
        print("kill -9: %d of 20 killed, %d committed (seed %d)"
              % (killed, len(listed), seed()))


if __name__ == "__main__":
    main()
