#!/usr/bin/env python3
"""
Tamper tests: a damaged, truncated, missing or swapped chunk blob, a swapped manifest and a
version replaced under a channel are caught by verify/pull/show (exit 3), no partial file is
left behind, and the store is clean again once the damage is undone.
"""

import json
import os
import stat
import zlib

from imgstore_testlib import version_path
from imgstore_testlib import (EXIT_VERIFY, MiB, StoreTestCase, git, git_ok, hash_object,
                              loose_object_path, ls_tree, main, rewrite_main, sha256)

CHUNK = version_path("app", "1.0", "files/app.xen/000001")


class Tamper(StoreTestCase):

    def setUp(self):
        super().setUp()
        # > 4 MiB forces at least two chunks; "other" must stay intact throughout
        p, self.digest = self.random_file("v1/app.xen", 6 * MiB + 777)
        self.push(p, "--name", "app", "--version", "1.0")
        p, self.digest2 = self.random_file("v2/app.xen", 2 * MiB + 99)
        self.push(p, "--name", "app", "--version", "2.0")
        p, self.other_digest = self.random_file("other.img", 512 * 1024)
        self.push(p, "--name", "other", "--version", "1", "--kind", "unknown")
        self.manifest = self.okjson("show", "app@1.0")["manifest"]
        self.assertGreaterEqual(len(self.manifest["files"][0]["chunks"]), 2)
        self.oid = self.git("rev-parse", "main:" + CHUNK).strip()
        self.chunk_sha = self.manifest["files"][0]["chunks"][1]["sha256"]
        self.obj = loose_object_path(self.repo, self.oid)
        self.assertTrue(os.path.isfile(self.obj), "chunk blob is not a loose object")
        with open(self.obj, "rb") as f:
            self.original = f.read()
        self.tip_before = self.tip()
        self.out = self.path("out")
        os.mkdir(self.out)

    # -- damage and repair -------------------------------------------------------------

    def write_object(self, data):
        if os.path.exists(self.obj):
            os.chmod(self.obj, stat.S_IRUSR | stat.S_IWUSR)
        with open(self.obj, "wb") as f:
            f.write(data)

    def restore_object(self):
        self.write_object(self.original)
        os.chmod(self.obj, 0o444)

    def damage_content_validly(self):
        """Same length, valid zlib, different content: git can read it, hashes differ."""
        raw = zlib.decompress(self.original)
        header, _, body = raw.partition(b"\0")
        body = bytearray(body)
        body[len(body) // 2] ^= 0x5A
        self.write_object(zlib.compress(header + b"\0" + bytes(body)))

    # -- checks ------------------------------------------------------------------------

    def assert_version_fails_verification(self, names_damage=True):
        rc, out, err = self.im("verify")
        self.assertEqual(rc, EXIT_VERIFY, "verify: %s %s" % (out, err))
        bad = [l for l in out.splitlines() if "app@1.0" in l]
        self.assertEqual(len(bad), 1, out)
        self.assertTrue(bad[0].startswith("FAILED"), out)
        self.assertRegex(out, r"(?m)^ok\s+other@1\b")

        rc, out, err = self.im("verify", "app@1.0")
        self.assertEqual(rc, EXIT_VERIFY, out + err)

        rc, out, err = self.im("verify", "--json")
        self.assertEqual(rc, EXIT_VERIFY, err)
        report = json.loads(out)
        self.assertFalse(report["ok"])
        by = {(v["name"], v["version"]): v for v in report["versions"]}
        self.assertEqual(by[("app", "1.0")]["status"], "failed")
        self.assertEqual(by[("other", "1")]["status"], "ok")
        self.assertEqual(by[("app", "2.0")]["status"], "ok")
        if names_damage:
            msg = by[("app", "1.0")]["message"]
            self.assertTrue(self.oid in msg or self.chunk_sha in msg,
                            "verify message does not name the damaged chunk/blob: %r" % msg)

    def assert_pull_refused(self, ref="app@1.0"):
        rc, out, err = self.im("pull", ref, "-o", self.out + "/")
        self.assertEqual(rc, EXIT_VERIFY, "pull: %s %s" % (out, err))
        self.assertEqual(os.listdir(self.out), [], "pull left files behind")
        dest = self.path("app-file.xen")
        rc, out, err = self.im("pull", ref, "-o", dest)
        self.assertEqual(rc, EXIT_VERIFY, err)
        self.assertFalse(os.path.exists(dest))
        self.assertEqual(sorted(os.listdir(self.tmp)), sorted(["store.git", "out", "v1", "v2",
                                                               "other.img"]))
        rc, data, err = self.im("pull", ref, "-o", "-", binary=True)
        self.assertEqual(rc, EXIT_VERIFY, err)
        self.assertNotEqual(sha256(data), self.digest)

    def assert_repaired(self):
        self.ok("verify")
        rc, data, err = self.im("pull", "app@1.0", "-o", "-", binary=True)
        self.assertEqual((rc, sha256(data)), (0, self.digest), err)
        self.assertFsckClean()

    # -- scenarios -----------------------------------------------------------------------

    def test_chunk_rewritten_with_other_bytes_of_same_length(self):
        self.damage_content_validly()
        self.assert_version_fails_verification()
        self.assert_pull_refused()
        # other versions still pull
        rc, data, err = self.im("pull", "other@1", "-o", "-", binary=True)
        self.assertEqual((rc, sha256(data)), (0, self.other_digest), err)
        self.assertEqual(self.tip(), self.tip_before)
        rc, _, _ = git("fsck", "--strict", git_dir=self.repo)
        self.assertNotEqual(rc, 0, "stock git fsck should see the damaged object")
        self.restore_object()
        self.assert_repaired()

    def test_flipped_byte_in_compressed_object(self):
        data = bytearray(self.original)
        data[len(data) // 2] ^= 0x01
        self.write_object(bytes(data))
        self.assert_version_fails_verification()
        self.assert_pull_refused()
        self.restore_object()
        self.assert_repaired()

    def test_truncated_chunk_object(self):
        self.write_object(self.original[:1000])
        self.assert_version_fails_verification(names_damage=False)
        self.assert_pull_refused()
        self.restore_object()
        self.assert_repaired()

    def test_missing_chunk_object(self):
        os.chmod(self.obj, 0o644)
        os.unlink(self.obj)
        self.assert_version_fails_verification(names_damage=False)
        self.assert_pull_refused()
        rc, out, err = self.im("fsck")
        self.assertEqual(rc, EXIT_VERIFY, "imgstore fsck missed a missing chunk blob: " + out)
        self.assertIn("app@1.0", out + err)
        self.restore_object()
        self.assert_repaired()

    def test_chunk_entry_pointing_at_another_blob_of_same_size(self):
        raw = zlib.decompress(self.original).partition(b"\0")[2]
        forged = bytearray(raw)
        forged[12345] ^= 0xFF
        blob = hash_object(self.repo, bytes(forged))
        old = rewrite_main(self.repo, CHUNK, "100644", "blob", blob)
        git_ok("fsck", "--strict", git_dir=self.repo)  # a well-formed git repo...
        self.assert_version_fails_verification()      # ...whose image bytes are wrong
        self.assert_pull_refused()
        git_ok("update-ref", "refs/heads/main", old, git_dir=self.repo)
        self.assert_repaired()

    def test_swapped_manifest_is_refused(self):
        other_manifest = self.git("rev-parse", "main:" + version_path("app", "2.0", "manifest.json")).strip()
        old = rewrite_main(self.repo, version_path("app", "1.0", "manifest.json"), "100644", "blob",
                           other_manifest)
        for args in (("show", "app@1.0"), ("show", "app@1.0", "--json")):
            rc, out, err = self.im(*args)
            self.assertEqual(rc, EXIT_VERIFY, "%s: %s %s" % (args, out, err))
            self.assertEqual(out.strip(), "")
            self.assertIn("manifest", self.assertOneLineError(err))
        self.assert_pull_refused()
        rc, out, err = self.im("verify", "app@1.0")
        self.assertEqual(rc, EXIT_VERIFY, out + err)
        rc, out, err = self.im("fsck")
        self.assertEqual(rc, EXIT_VERIFY, out + err)
        git_ok("update-ref", "refs/heads/main", old, git_dir=self.repo)
        self.assertEqual(self.tip(), self.tip_before)
        self.assert_repaired()

    def test_version_replaced_under_a_channel_is_refused(self):
        """Replace app 1.0 wholesale with app 2.0's bytes and a self-consistent manifest that
        says 1.0. The channel pinned the original manifest's digest: pulling it must fail."""
        self.ok("deploy", "app", "1.0", "--channel", "prod")
        tip = self.tip()
        raw = self.git("show", "main:" + version_path("app", "2.0", "manifest.json"))
        self.assertIn('"version":"2.0"', raw)
        forged = hash_object(self.repo, raw.replace('"version":"2.0"', '"version":"1.0"').encode())
        files = [e for e in ls_tree(self.repo, "main:" + version_path("app", "2.0")) if e[3] == "files"][0][2]
        text = "100644 blob %s\tmanifest.json\x00040000 tree %s\tfiles\x00" % (forged, files)
        vtree = git_ok("mktree", "-z", git_dir=self.repo, stdin=text).strip()
        rewrite_main(self.repo, version_path("app", "1.0"), "040000", "tree", vtree)
        git_ok("fsck", "--strict", git_dir=self.repo)

        rc, data, err = self.im("pull", "app", "--channel", "prod", "-o", "-", binary=True)
        self.assertEqual(rc, EXIT_VERIFY,
                         "pull --channel prod of a version whose manifest differs from the one "
                         "the channel pinned: exit %d, %s bytes, stderr %r" % (rc, len(data), err))
        rc, out, err = self.im("pull", "app", "--channel", "prod", "-o", self.out)
        self.assertEqual(rc, EXIT_VERIFY, out + err)
        self.assertEqual(os.listdir(self.out), [])
        rc, out, err = self.im("fsck")
        self.assertEqual(rc, EXIT_VERIFY, out + err)
        self.assertIn("prod", out + err)
        git_ok("update-ref", "refs/heads/main", tip, git_dir=self.repo)
        self.assert_repaired()


if __name__ == "__main__":
    main()
