#!/usr/bin/env python3
"""
A pull of a version is all or nothing (issue #10, item 7): with one chunk of app@2 damaged,
pulling app@2 into a directory that holds app@1 fails with exit 3 and leaves app@1's files
exactly as they were, with no staging file beside them; locally and through a server, with
and without the server's verified cache. Once the store is repaired the same pull replaces
all three files.
"""

import os

from imgstore_testlib import version_path
from imgstore_testlib import (EXIT_VERIFY, MiB, ServerTestCase, hash_object, main, new_token,
                              rewrite_main, run, sha256_file)

FILES = ("a.img", "b.img", "c.img")  # the manifest lists them in this order


class AllOrNothing(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.v1, self.v2 = {}, {}
        for version, sums in (("1", self.v1), ("2", self.v2)):
            paths = []
            for name in FILES:
                p, sums[name] = self.random_file(os.path.join("v" + version, name),
                                                 MiB + 4321)
                paths.append(p)
            self.push("--name", "app", "--version", version, "--kind", "unknown", *paths)
        self.dest = self.path("boot")
        os.mkdir(self.dest)
        self.ok("pull", "app@1", "-o", self.dest)
        self.assertBoot(self.v1)

    def assertBoot(self, sums):
        self.assertEqual(sorted(os.listdir(self.dest)), sorted(FILES),
                         "a staging file or an extra file is left in the directory")
        for name in FILES:
            self.assertEqual(sha256_file(os.path.join(self.dest, name)), sums[name], name)

    def damage_last_file(self):
        """Damage a chunk of c.img of app@2, the last file the pull writes. Returns the undo."""
        path = version_path("app", "2", "files/c.img/000000")
        oid = self.git("rev-parse", "main:" + path).strip()
        data = bytearray(self.git("cat-file", "blob", oid, binary=True))
        data[len(data) // 2] ^= 0xFF
        old = rewrite_main(self.repo, path, "100644", "blob", hash_object(self.repo, bytes(data)))
        return lambda: self.git("update-ref", "refs/heads/main", old)

    def test_a_damaged_file_changes_none_of_the_destinations_locally(self):
        undo = self.damage_last_file()
        rc, out, err = self.im("pull", "app@2", "-o", self.dest)
        self.assertEqual(rc, EXIT_VERIFY, out + err)
        self.assertOneLineError(err, "c.img")
        self.assertEqual(out, "", "a destination was announced as written")
        self.assertBoot(self.v1)
        undo()
        self.ok("pull", "app@2", "-o", self.dest)
        self.assertBoot(self.v2)

    def test_a_damaged_file_changes_none_of_the_destinations_remotely(self):
        token, line = new_token("read", "reader")
        streaming = self.serve(line, "cache_max_bytes = 0")
        cached = self.serve(line)
        undo = self.damage_last_file()
        for server in (streaming, cached):
            rc, out, err = run("pull", "app@2", "-o", self.dest, "--server", server.url,
                               "--token", token)
            self.assertEqual(rc, EXIT_VERIFY, out + err)
            self.assertOneLineError(err)
            self.assertEqual(out, "", "a destination was announced as written")
            self.assertBoot(self.v1)
        undo()
        rc, out, err = run("pull", "app@2", "-o", self.dest, "--server", streaming.url,
                           "--token", token)
        self.assertEqual(rc, 0, err)
        self.assertBoot(self.v2)

    def test_a_destination_that_cannot_be_replaced_changes_none(self):
        """c.img is a directory: found after a.img and b.img verified, before either moved."""
        os.unlink(os.path.join(self.dest, "c.img"))
        os.mkdir(os.path.join(self.dest, "c.img"))
        for args in ((), ("--server",)):
            if args:
                token, line = new_token("read", "reader")
                args = ("--server", self.serve(line).url, "--token", token)
            rc, out, err = self.im("pull", "app@2", "-o", self.dest, *args,
                                   repo=None if args else self.repo)
            self.assertEqual(rc, 1, out + err)
            self.assertOneLineError(err, "c.img", "directory")
            for name in ("a.img", "b.img"):
                self.assertEqual(sha256_file(os.path.join(self.dest, name)), self.v1[name])
            if not args:
                self.assertEqual(sorted(os.listdir(self.dest)), sorted(FILES))

    def test_a_single_file_pull_keeps_its_destination(self):
        undo = self.damage_last_file()
        target = os.path.join(self.dest, "c.img")
        rc, out, err = self.im("pull", "app@2", "--file", "c.img", "-o", target)
        self.assertEqual(rc, EXIT_VERIFY, err)
        self.assertBoot(self.v1)
        undo()
        self.ok("pull", "app@2", "--file", "c.img", "-o", target)
        self.assertEqual(sha256_file(target), self.v2["c.img"])


if __name__ == "__main__":
    main()
