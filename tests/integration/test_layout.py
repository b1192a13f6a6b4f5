"""
Where versions live, seen with stock git (docs/format.md, "Tree layout"): a new store is
imgstore/2 and keeps each version at images/<name>/<xx>/<version>, <xx> what
`printf %s VERSION | sha256sum | cut -c1-2` prints; `git ls-tree`, `git show` and
`git fsck --strict` work on it as on any repository. A store whose marker says imgstore/1 (as
an older imgstore wrote it) keeps images/<name>/<version>, for reads and for new pushes.
"""

import json
import subprocess

from imgstore_testlib import version_path, version_shard
from imgstore_testlib import StoreTestCase, hash_object, main, rewrite_main

VERSIONS = ["1.0", "2.0", "3.0", "10", "11", "12"]


class Layout(StoreTestCase):

    def push_versions(self, versions):
        for i, version in enumerate(versions):
            path, _ = self.random_file("%s/app.img" % version, 4096 + i)
            self.push(path, "--name", "app", "--version", version, "--kind", "unknown")

    def test_new_store_is_sharded_and_stock_git_reads_it(self):
        self.assertEqual(self.git("show", "main:imgstore.json"), '{"format":"imgstore/2"}')
        self.push_versions(VERSIONS)
        shards = set()
        for version in VERSIONS:
            # the documented recipe, with stock tools
            shard = subprocess.run("printf %s '" + version + "' | sha256sum | cut -c1-2",
                                   shell=True, check=True, capture_output=True,
                                   text=True).stdout.strip()
            self.assertEqual(shard, version_shard(version))
            shards.add(shard)
            self.assertEqual(version_path("app", version), "images/app/%s/%s" % (shard, version))
            manifest = json.loads(self.git("show", "main:images/app/%s/%s/manifest.json"
                                           % (shard, version)))
            self.assertEqual((manifest["name"], manifest["version"]), ("app", version))
            names = self.git("ls-tree", "--name-only", "main:images/app/%s/%s" % (shard, version))
            self.assertEqual(names.split(), ["files", "manifest.json", "signatures"])
        self.assertGreater(len(shards), 1, "the test needs versions in several shards")
        # images/app holds shards only: two lowercase hex digits, each a directory
        listing = [l.split() for l in self.git("ls-tree", "main:images/app").splitlines()]
        self.assertEqual(sorted(e[3] for e in listing), sorted(shards))
        self.assertEqual({e[1] for e in listing}, {"tree"})
        self.assertEqual(self.okjson("ls")["images"][0]["versions"], len(VERSIONS))
        self.ok("fsck")
        self.assertFsckClean()

    def test_imgstore_1_store_stays_flat(self):
        # a store as an older imgstore made it: the same, with the old marker
        blob = hash_object(self.repo, b'{"format":"imgstore/1"}')
        rewrite_main(self.repo, "imgstore.json", "100644", "blob", blob, "an imgstore/1 store")
        self.push_versions(["1.0", "2.0"])
        for version in ("1.0", "2.0"):
            manifest = json.loads(self.git("show", "main:images/app/%s/manifest.json" % version))
            self.assertEqual(manifest["version"], version)
            self.assertEqual("main:" + version_path("app", version, flat=True),
                             "main:images/app/%s" % version)
        self.assertEqual(sorted(self.git("ls-tree", "--name-only", "main:images/app").split()),
                         ["1.0", "2.0"])
        self.assertEqual(self.git("show", "main:imgstore.json"), '{"format":"imgstore/1"}')
        out = self.ok("show", "app@2.0")
        self.assertIn("2.0", out)
        self.ok("reindex")  # the marker's rewrite was a commit imgstore did not index
        self.ok("fsck")
        self.assertFsckClean()

    def test_a_marker_written_by_hand_with_whitespace_still_opens(self):
        # `echo '{ "format": "imgstore/1" }' | git hash-object -w --stdin`: JSON whitespace
        # and a newline, as an operator following the docs would write it
        blob = hash_object(self.repo, b'{ "format": "imgstore/1" }\n')
        rewrite_main(self.repo, "imgstore.json", "100644", "blob", blob, "by hand")
        self.push_versions(["1.0"])
        self.assertEqual(self.git("ls-tree", "--name-only", "main:images/app").split(), ["1.0"])

    def test_unknown_format_is_refused_with_one_line(self):
        blob = hash_object(self.repo, b'{"format":"imgstore/9"}')
        rewrite_main(self.repo, "imgstore.json", "100644", "blob", blob, "from the future")
        rc, out, err = self.im("ls")
        self.assertNotEqual(rc, 0)
        self.assertOneLineError(err, "imgstore.json", "unknown store format")


if __name__ == "__main__":
    main()
