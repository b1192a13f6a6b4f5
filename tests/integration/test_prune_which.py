#!/usr/bin/env python3
"""
Retention (issue #12) with the real binary and real boot images: `imgstore prune` removes old
versions no channel needs in one signed commit that stock `git fsck --strict` and
`git verify-commit` accept, the indexes still equal a rebuild, and `imgstore which` finds every
version and channel that held a file's bytes. By default the prune then cuts the history (a
signed root commit with an archive), after which every reader still answers and the removed
versions' bytes are unreachable: the store shrinks by about their packed size. With
--keep-history, history still names the pruned versions. Figures (store sizes before and
after, what a depth-1 clone carries) go to stderr.
"""


import glob
import json
import os
import subprocess
import sys
import time

from imgstore_testlib import version_path
from imgstore_testlib import (EXIT_FAIL, EXIT_USAGE, Server, StoreTestCase, fixture, git, git_ok,
                              main, needs_fixtures, run, sha256_file)

KERNEL = "vmlinuz-6.1.0-56-cloud-amd64"


def object_exists(repo, oid):
    return git("cat-file", "-e", oid, git_dir=repo)[0] == 0


def blobs(repo, rev, path):
    """Every blob id under PATH in the tree of REV."""
    out = git_ok("ls-tree", "-r", rev, path, git_dir=repo)
    return {line.split()[2] for line in out.splitlines() if line.split()[1] == "blob"}


def packed_sizes(repo):
    """{oid: bytes it takes in its pack} over every pack of REPO (git verify-pack -v)."""
    sizes = {}
    for idx in glob.glob(os.path.join(repo, "objects", "pack", "*.idx")):
        for line in git_ok("verify-pack", "-v", idx).splitlines():
            fields = line.split()
            if len(fields) >= 5 and len(fields[0]) == 40 and fields[1] in ("blob", "tree",
                                                                            "commit"):
                sizes[fields[0]] = int(fields[3])
    return sizes


def du_bytes(path):
    out = subprocess.run(["du", "-sb", path], stdout=subprocess.PIPE, check=True).stdout
    return int(out.split()[0])


class PruneWhich(StoreTestCase):

    def allowed_signers(self):
        policy = json.loads(self.git("show", "main:trust/policy.json"))
        p = self.path("allowed_signers")
        with open(p, "w") as f:
            for key in policy["roles"]["root"]["keys"]:
                f.write("ci@imgstore %s\n" % key)
        return p

    def push_boot_versions(self):
        """boot@1..5, each a different real image with the same cmdline; tools@1 shares the
        kernel of boot@1."""
        images = [KERNEL, "ipxe.lkrn", "memtest86+x64.iso", "memtest86+x64.efi", "ipxe.efi"]
        for i, name in enumerate(images, 1):
            self.push(fixture(name), fixture("cmdline.txt"), "--name", "boot", "--version",
                      str(i))
        self.push(fixture(KERNEL), "--name", "tools", "--version", "1")

    def depth1_clone_bytes(self, name):
        dest = self.path(name)
        git_ok("clone", "-q", "--bare", "--depth", "1", "file://" + self.repo, dest)
        return du_bytes(dest)

    @needs_fixtures
    def test_prune_is_one_signed_commit_git_accepts(self):
        self.push_boot_versions()
        self.ok("deploy", "boot", "2", "--channel", "prod")
        self.ok("deploy", "boot", "5", "--channel", "prod")
        tip = self.tip()
        plan = self.okjson("prune", "boot", "--keep", "1", "--dry-run")
        self.assertTrue(plan["dry_run"])
        self.assertEqual(self.tip(), tip, "a dry run writes nothing")
        self.assertEqual(sorted(r["version"] for r in plan["removed"]), ["1", "3", "4"])
        self.assertEqual([(k["version"], k["reason"]) for k in plan["kept"]],
                         [("2", "on channel prod's rollback stack")])
        # the kernel is shared with tools@1 and the cmdline with boot@5: neither is freed
        self.assertEqual(plan["freed"]["files"], 2)
        unique = (os.path.getsize(fixture("memtest86+x64.iso")) +
                  os.path.getsize(fixture("memtest86+x64.efi")))
        self.assertLessEqual(plan["freed"]["bytes"], unique)  # an image may repeat a chunk
        self.assertGreater(plan["freed"]["bytes"], unique // 2)

        self.ok("gc", "--all")
        store_before = du_bytes(self.repo)
        clone_before = self.depth1_clone_bytes("before.git")
        done = self.okjson("prune", "boot", "--keep", "1", "--keep-history")
        self.assertNotIn("cut", done)
        self.assertEqual(done["removed"], plan["removed"])
        self.assertEqual(done["commit"], self.tip())
        self.assertEqual(self.subjects()[0], "prune 3 versions")
        self.assertEqual(self.git("log", "-1", "--format=%b", "main").split("\n")[:3],
                         ["boot 1", "boot 3", "boot 4"])
        # signed like every commit: stock git checks it against the policy's root key
        self.git("-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile=" +
                 self.allowed_signers(), "verify-commit", "main")
        self.assertFsckClean()
        self.assertEqual(self.ok("reindex", "--check").strip(), "the indexes match a rebuild")
        self.ok("verify")
        self.assertEqual([v["version"] for v in self.okjson("ls", "boot")["versions"]],
                         ["5", "2"])
        rc, _, err = self.im("pull", "boot@1", "-o", self.path("out"))
        self.assertEqual(rc, EXIT_FAIL, err)
        # history is history: the pushes of pruned versions still render, and the prune too
        entries = self.okjson("history", "boot")["entries"]
        self.assertEqual(entries[0]["action"], "prune")
        self.assertEqual(sorted(e.get("version") for e in entries if e["action"] == "push"),
                         ["1", "2", "3", "4", "5"])
        # nothing left to remove: no commit (and no cut)
        self.ok("prune", "boot", "--keep", "1")
        self.assertEqual(self.subjects()[0], "prune 3 versions")
        self.assertEqual(len([s for s in self.subjects() if s.startswith("prune")]), 1)

        self.ok("gc", "--all")
        store_after = du_bytes(self.repo)
        clone_after = self.depth1_clone_bytes("after.git")
        sys.stderr.write("figures: store %d -> %d bytes after prune + gc --all (history keeps "
                         "the pruned bytes); depth-1 clone %d -> %d bytes\n"
                         % (store_before, store_after, clone_before, clone_after))
        # freed bytes are the files' bytes; on disk they are zlib-compressed (the ISO is
        # mostly zeros), so a clone shrinks by less
        self.assertLess(clone_after, clone_before)

    def mirror_gc_bytes(self, name):
        """What the store weighs once stock git drops what nothing reaches: a fresh mirror
        clone, then git gc --prune=now --aggressive."""
        dest = self.path(name)
        git_ok("clone", "-q", "--mirror", "file://" + self.repo, dest)
        git_ok("gc", "-q", "--prune=now", "--aggressive", git_dir=dest)
        return du_bytes(dest)

    @needs_fixtures
    def test_prune_cuts_history_so_the_removed_bytes_can_go(self):
        self.push_boot_versions()
        self.ok("deploy", "boot", "2", "--channel", "prod")
        self.ok("deploy", "boot", "5", "--channel", "prod")
        self.ok("deploy", "boot", "5", "--channel", "staging")
        first_id = self.git("rev-list", "--max-parents=0", "main").strip()
        plan = self.okjson("prune", "boot", "--keep", "1", "--dry-run")
        self.assertEqual(plan["cut"], {"op": 11, "moves_archived": 3,
                                       "policies_archived": 0})
        text = self.ok("prune", "boot", "--keep", "1", "--dry-run")
        self.assertIn("would cut history: a new root at op 11 archiving 3 channel moves", text)

        self.ok("gc", "--all")
        store_before = du_bytes(self.repo)
        mirror_before = self.mirror_gc_bytes("before.git")
        old_blobs = blobs(self.repo, "main", "images")
        store_packed = packed_sizes(self.repo)
        rc, _, err = self.im("prune", "boot", "--keep", "1", "--keep-history", "--archive",
                             self.path("no.bundle"))
        self.assertEqual(rc, EXIT_USAGE, err)
        bundle = self.path("old-history.bundle")
        done = self.okjson("prune", "boot", "--keep", "1", "--archive", bundle)
        self.assertEqual(sorted(r["version"] for r in done["removed"]), ["1", "3", "4"])
        # --archive: the history the cut drops, as a bundle stock git verifies and clones
        git_ok("bundle", "verify", "-q", bundle, git_dir=self.repo)
        git_ok("clone", "-q", "--bare", bundle, self.path("old.git"))
        self.assertEqual(git_ok("rev-parse", "main", git_dir=self.path("old.git")).strip(),
                         done["commit"])
        self.assertIn("push boot 3", git_ok("log", "--format=%s", "main",
                                             git_dir=self.path("old.git")).splitlines())
        self.assertFsckClean(self.path("old.git"))
        cut = done["cut"]["commit"]
        self.assertEqual(cut, self.tip())
        self.assertEqual(done["cut"]["op"], 11)
        # a signed root commit that records the removal commit it was made after
        self.assertEqual(self.git("rev-list", "--count", "main").strip(), "1")
        body = self.git("log", "-1", "--format=%B", "main")
        self.assertEqual(body.splitlines()[0], "cut history at %s" % done["commit"][:12])
        self.assertIn("previous: %s" % done["commit"], body.splitlines())
        self.assertIn("op: 11", body.splitlines())
        self.assertIn("store-id: %s" % first_id, body.splitlines())
        self.git("-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile=" +
                 self.allowed_signers(), "verify-commit", "main")
        self.assertFsckClean()
        self.assertEqual(self.ok("reindex", "--check").strip(), "the indexes match a rebuild")
        self.ok("verify")
        self.ok("fsck")
        self.assertEqual([v["version"] for v in self.okjson("ls", "boot")["versions"]],
                         ["5", "2"])
        self.ok("pull", "boot@5", "-o", self.path("out5"))
        # history: the channel's moves from the archive, the image's ending at the cut
        moves = self.okjson("history", "boot", "--channel", "prod")["entries"]
        self.assertEqual([(e["version"], e["op"]) for e in moves], [("5", 8), ("2", 7)])
        self.assertTrue(all(e["signed"]["signatures"] for e in moves))
        lines = self.ok("history", "boot").splitlines()
        self.assertTrue(lines[-1].startswith("history before "), lines)
        self.assertIn("(previous %s)" % done["commit"][:12], lines[-1])
        # a plain clone carries the cut store
        git_ok("clone", "-q", "--bare", "file://" + self.repo, self.path("clone.git"))
        self.assertFsckClean(self.path("clone.git"))
        # the removed versions' objects are unreachable: stock git drops them, and the store
        # shrinks by what they took in the pack
        kept = blobs(self.repo, "main", "images")
        gone = {oid for oid in old_blobs if oid not in kept}
        self.assertTrue(gone)
        self.ok("gc", "--all", "--prune=now")
        store_after = du_bytes(self.repo)
        mirror_after = self.mirror_gc_bytes("after.git")
        for oid in gone:
            self.assertFalse(object_exists(self.path("after.git"), oid), oid)
        for oid in gone:
            self.assertFalse(object_exists(self.repo, oid), oid)
        gone_packed = sum(size for oid, size in packed_sizes(self.path("before.git")).items()
                          if oid in gone)
        gone_store = sum(size for oid, size in store_packed.items() if oid in gone)
        sys.stderr.write("figures: the removed versions' %d objects took %d bytes in the "
                         "store's packs (%d in a git gc --aggressive pack); store %d -> %d bytes "
                         "after prune + cut + imgstore gc --all --prune=now; mirror clone + git "
                         "gc --prune=now --aggressive %d -> %d bytes\n"
                         % (len(gone), gone_store, gone_packed, store_before, store_after,
                            mirror_before, mirror_after))
        self.assertGreater(mirror_before - mirror_after, gone_packed * 8 // 10)
        self.assertGreater(store_before - store_after, gone_store * 8 // 10)
        self.assertFsckClean()
        self.ok("verify")
        # writes go on from the cut: the rollback stack carried across it
        self.ok("rollback", "boot", "--channel", "prod")
        self.assertEqual(self.okjson("history", "boot", "--channel", "prod")["entries"][0]
                         ["version"], "2", "the stack carried across the cut")
        self.ok("deploy", "boot", "5", "--channel", "prod")
        self.ok("rollback", "boot", "--channel", "prod", "--to", "2")
        self.assertEqual(self.ok("reindex", "--check").strip(), "the indexes match a rebuild")
        self.ok("verify")
        # the server reads the cut store, and a remote client checks the archived chain
        with Server(self.repo, self.tmp, ["read_public = true"]) as server:
            body = server.get_json("/v1/channels/boot/prod/history")
            self.assertEqual([e["version"] for e in body["entries"]][-2:], ["5", "2"])
            rc, out, err = run("pull", "boot@5", "-o", self.path("remote5"), "--server",
                               server.url)
            self.assertEqual(rc, 0, out + err)

    @needs_fixtures
    def test_which_names_every_version_and_channel_that_held_the_bytes(self):
        self.push_boot_versions()
        self.ok("deploy", "boot", "1", "--channel", "prod")
        self.ok("deploy", "boot", "5", "--channel", "prod")
        self.ok("deploy", "boot", "1", "--channel", "staging")
        self.ok("deploy", "boot", "5", "--channel", "staging")
        self.ok("rollback", "boot", "--channel", "staging")
        kernel_sha = sha256_file(fixture(KERNEL))
        found = self.okjson("which", fixture(KERNEL))
        self.assertEqual(found["sha256"], kernel_sha)
        rows = {(r["name"], r["version"]): r for r in found["versions"]}
        self.assertEqual(sorted(rows), [("boot", "1"), ("tools", "1")])
        self.assertEqual(rows[("boot", "1")]["stack"], ["prod"])
        self.assertEqual(rows[("boot", "1")]["ran"], ["prod", "staging"])
        self.assertEqual(rows[("boot", "1")]["running"], ["staging"])
        self.assertEqual(rows[("tools", "1")]["ran"], [])
        self.assertEqual(rows[("boot", "1")]["file"], KERNEL)
        # by digest, in either case, gives the same answer
        self.assertEqual(self.okjson("which", kernel_sha.upper()), found)
        # --no-history: what runs and can be rolled back to now, no channel history read
        now_only = self.okjson("which", kernel_sha, "--no-history")["versions"]
        self.assertEqual([(r["version"], r["running"], r["stack"], r["ran"]) for r in now_only
                          if r["name"] == "boot"], [("1", ["staging"], ["prod"], [])])
        cmdline = self.okjson("which", fixture("cmdline.txt"))
        self.assertEqual(len(cmdline["versions"]), 5)
        running = [r["version"] for r in cmdline["versions"] if r["running"]]
        self.assertEqual(running, ["1", "5"])

        # a pruned version is still named, marked as such (history is history)
        self.ok("deploy", "boot", "4", "--channel", "prod")
        self.ok("deploy", "boot", "5", "--channel", "staging")
        self.ok("prune", "--keep", "1", "--older-than", "0")
        text = self.ok("which", fixture("ipxe.lkrn"))
        self.assertEqual(text.strip(), "boot@2 ipxe.lkrn (pruned)")
        lines = self.ok("which", fixture(KERNEL)).splitlines()
        self.assertIn("tools@1 %s" % KERNEL, lines)
        self.assertTrue(any(l.startswith("boot@1 %s" % KERNEL) for l in lines), lines)

        rc, out, err = self.im("which", "0" * 64)
        self.assertEqual(rc, EXIT_FAIL, out + err)
        self.assertOneLineError(err, "no version ever held")
        rc, out, err = self.im("which", "no-such-file")
        self.assertEqual(rc, EXIT_FAIL, out + err)
        self.assertOneLineError(err, "neither a file nor a SHA-256")
        self.assertFsckClean()

    def loose(self, oid):
        return os.path.join(self.repo, "objects", oid[:2], oid[2:])

    def test_gc_prune_removes_only_old_unreachable_loose_objects(self):
        month_ago = time.time() - 30 * 86400
        old_junk = self.git("hash-object", "-w", "--stdin", stdin="abandoned push\n").strip()
        new_junk = self.git("hash-object", "-w", "--stdin", stdin="push in flight\n").strip()
        os.utime(self.loose(old_junk), (month_ago, month_ago))
        # an old unreachable object that a push reuses now (one chunk: the blob is the file)
        reused_path, _ = self.random_file("reused.bin", 4096)
        reused = self.git("hash-object", "-w", reused_path).strip()
        os.utime(self.loose(reused), (month_ago, month_ago))
        self.push(reused_path, "--name", "app", "--version", "1", "--kind", "unknown")
        before = du_bytes(self.repo)
        out = self.okjson("gc", "--prune")
        after = du_bytes(self.repo)
        sys.stderr.write("figures: gc --prune removed %d objects (%d bytes); store %d -> %d "
                         "bytes\n" % (out["objects_pruned"], out["bytes_pruned"], before, after))
        self.assertGreaterEqual(out["objects_pruned"], 1)
        self.assertFalse(object_exists(self.repo, old_junk))
        self.assertTrue(object_exists(self.repo, new_junk), "within the grace period")
        self.assertTrue(object_exists(self.repo, reused), "a push reused it: freshened")
        self.assertFsckClean()
        self.ok("verify", "app@1")
        # --prune=now takes every unreachable object, whatever its age
        fresh = self.git("hash-object", "-w", "--stdin", stdin="written just now\n").strip()
        out = self.okjson("gc", "--prune=now")
        self.assertFalse(object_exists(self.repo, fresh))
        self.assertFalse(object_exists(self.repo, new_junk))
        self.assertTrue(object_exists(self.repo, reused))
        self.assertFsckClean()
        self.ok("verify", "app@1")
        rc, _, err = self.im("gc", "--prune=soon")
        self.assertEqual(rc, EXIT_USAGE, err)

    def packs(self):
        d = os.path.join(self.repo, "objects", "pack")
        return [os.path.join(d, f) for f in os.listdir(d) if f.endswith(".pack")]

    def test_gc_prune_drops_unreachable_packed_objects_by_their_packs_age(self):
        month_ago = time.time() - 30 * 86400
        file_path, _ = self.random_file("app.bin", 300 * 1024)
        self.push(file_path, "--name", "app", "--version", "1", "--kind", "unknown")
        old_junk = self.git("hash-object", "-w", "--stdin", stdin="packed long ago\n").strip()
        self.okjson("gc", "--all")
        old_packs = self.packs()
        for pack in old_packs:
            os.utime(pack, (month_ago, month_ago))
        young_junk = self.git("hash-object", "-w", "--stdin", stdin="packed today\n").strip()
        self.okjson("gc")  # one more, young pack
        self.assertEqual(len(self.packs()), len(old_packs) + 1)
        out = self.okjson("gc", "--prune")
        self.assertFalse(object_exists(self.repo, old_junk), "its pack went unused for a month")
        self.assertGreaterEqual(out["objects_pruned"], 1, out)  # + trees commits replaced
        # a young pack's unreachable object is made loose, with the pack's age, to age alone
        self.assertTrue(os.path.exists(self.loose(young_junk)))
        self.assertTrue(object_exists(self.repo, young_junk))
        self.assertFsckClean()
        self.ok("verify", "app@1")
        self.ok("pull", "app@1", "-o", self.path("out"))
        with open(file_path, "rb") as a, open(self.path("out"), "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_a_push_reusing_a_packed_object_freshens_its_pack(self):
        month_ago = time.time() - 30 * 86400
        file_path, _ = self.random_file("app.bin", 300 * 1024)
        self.push(file_path, "--name", "app", "--version", "1", "--kind", "unknown")
        self.okjson("gc", "--all")
        for pack in self.packs():
            os.utime(pack, (month_ago, month_ago))
        # the same bytes again: the chunk is found packed, not written; git freshens a pack
        # it reuses, so gc --prune counts the grace period from now (a push in flight)
        self.push(file_path, "--name", "app", "--version", "2", "--kind", "unknown")
        chunk = self.git("rev-parse", "main:" + version_path("app", "1", "files/app.bin/000000")).strip()
        holding = []
        for pack in self.packs():
            with open(pack[:-5] + ".idx", "rb") as idx:
                listed = subprocess.run(["git", "show-index"], stdin=idx, check=True,
                                        stdout=subprocess.PIPE, text=True).stdout
            if chunk in listed:
                holding.append(time.time() - os.stat(pack).st_mtime)
        self.assertTrue(holding, "the chunk is packed")
        self.assertTrue(all(age < 3600 for age in holding), holding)

    def strip_digest_index(self, repo):
        """What a store written before `which` looks like: no index/digests."""
        env = dict(os.environ, GIT_INDEX_FILE=os.path.join(self.tmp, "strip.index"),
                   GIT_AUTHOR_NAME="older", GIT_AUTHOR_EMAIL="older@example",
                   GIT_COMMITTER_NAME="older", GIT_COMMITTER_EMAIL="older@example",
                   GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null")
        def g(*args):
            return subprocess.run(["git", "--git-dir=" + repo] + list(args), env=env, check=True,
                                  stdout=subprocess.PIPE, text=True).stdout.strip()
        g("read-tree", "main")
        g("rm", "--cached", "-r", "-q", "index/digests")
        tree = g("write-tree")
        commit = g("commit-tree", tree, "-p", "main", "-m", "an older imgstore's commit")
        g("update-ref", "refs/heads/main", commit)

    def test_prune_says_what_it_could_not_check_without_a_digest_index(self):
        for v in ("1", "2"):
            p, _ = self.random_file("app-%s.bin" % v, 1000)
            self.push(p, "--name", "app", "--version", v, "--kind", "unknown")
        args = ("prune", "app", "--keep", "1", "--older-than", "0", "--dry-run", "--keep-history")
        self.assertEqual(self.okjson(*args)["freed"]["files"], 1)
        self.strip_digest_index(self.repo)
        # the store's one image: no other can share its files, no lookup needed
        freed = self.okjson(*args)["freed"]
        self.assertEqual((freed["files"], freed["unchecked_files"]), (1, 0), freed)
        # with a second image, a removed file might be shared: counted so, and said
        other = os.path.join(self.tmp, "other.git")
        self.assertEqual(run("init", repo=other)[0], 0)
        for name, v in (("app", "1"), ("app", "2"), ("tools", "1")):
            p, _ = self.random_file("%s-%s.bin" % (name, v), 1000)
            self.assertEqual(run("push", p, "--name", name, "--version", v, "--kind", "unknown",
                                 repo=other)[0], 0)
        self.strip_digest_index(other)
        rc, out, err = run(*(args + ("--json",)), repo=other)
        self.assertEqual(rc, 0, err)
        freed = json.loads(out)["freed"]
        self.assertEqual((freed["files"], freed["unchecked_files"]), (0, 1), freed)
        rc, out, err = run(*args, repo=other)
        self.assertIn("1 removed file counted as shared", out)
        self.assertIn("imgstore reindex", out)

    def test_prune_refuses_without_keep_and_against_a_server(self):
        rc, _, err = self.im("prune")
        self.assertEqual(rc, EXIT_USAGE, err)
        self.assertOneLineError(err, "--keep")
        rc, _, err = self.im("prune", "--keep", "0")
        self.assertEqual(rc, EXIT_USAGE, err)
        for args in (("prune", "--keep", "3"), ("which", "0" * 64)):
            rc, _, err = run(*args, env={"IMGSTORE_SERVER": "http://127.0.0.1:9"})
            self.assertEqual(rc, EXIT_USAGE, err)
            self.assertOneLineError(err, "local store only")


if __name__ == "__main__":
    main()
