#!/usr/bin/env python3
"""
The store's indexes (docs/format.md, "Indexes") through the real CLI, server and stock git:
ls and history pages chain to the whole answer and agree with the manifests and the git log;
--at answers from the channel's index; a damaged index row is refused, never listed; a
commit by stock git makes the index stale, answers stay right, and `imgstore reindex` repairs
it in one signed commit that stock git accepts.
"""

import json
import os

from imgstore_testlib import (EXIT_VERIFY, HAVE_FIXTURES, ServerTestCase, fixture, git_ok,
                              hash_object, main, new_token, rewrite_main, validate)

VERSIONS = ["1.%d" % i for i in range(7)]


class Indexes(ServerTestCase):

    def setUp(self):
        super().setUp()
        # real boot images when present: the index rows carry their true sizes
        files = ([fixture("ipxe.lkrn"), fixture("cmdline.txt")] if HAVE_FIXTURES else
                 [self.random_file("app.bin", 200 * 1024)[0]])
        for v in VERSIONS:
            self.push(*files, "--name", "app", "--version", v)

    def manifest(self, version):
        return self.okjson("show", "app@" + version)["manifest"]

    def test_ls_pages_chain_to_every_version_as_the_manifests_say(self):
        everything = self.okjson("ls", "app")
        self.assertEqual([r["version"] for r in everything["versions"]], VERSIONS[::-1])
        self.assertEqual(everything["total"], len(VERSIONS))
        self.assertIsNone(everything["next"])
        for row in everything["versions"]:
            m = self.manifest(row["version"])
            self.assertEqual(row["created"], m["created"])
            self.assertEqual(row["files"], len(m["files"]))
            self.assertEqual(row["size"], sum(f["size"] for f in m["files"]))
        # pages of three, chained by the cursor each one ends with
        seen, before = [], None
        while True:
            args = ["ls", "app", "--limit", "3"] + (["--before", str(before)] if before is not None
                                                    else [])
            page = self.okjson(*args)
            self.assertLessEqual(len(page["versions"]), 3)
            seen += page["versions"]
            if page["next"] is None:
                break
            before = page["next"]
        self.assertEqual(seen, everything["versions"])
        # the text form says, on stderr, how to get the next page
        rc, out, err = self.im("ls", "app", "--limit", "2")
        self.assertEqual(rc, 0, err)
        self.assertEqual([l.split()[0] for l in out.splitlines()[1:]], ["1.6", "1.5"])
        self.assertIn("--before 5", err)
        # the image list reads one row per image
        self.assertEqual(self.okjson("ls")["images"][0]["newest"], "1.6")
        self.assertEqual(self.okjson("ls")["images"][0]["versions"], len(VERSIONS))

    def test_history_pages_and_at_answer_as_the_whole_history(self):
        moves = ["1.1", "1.3", "1.2", "1.5"]
        for v in moves:
            self.ok("deploy", "app", v, "--channel", "prod")
        self.ok("rollback", "app", "--channel", "prod")
        for channel in (None, "prod"):
            sel = ["--channel", channel] if channel else []
            whole = self.okjson("history", "app", *sel)
            self.assertIsNone(whole["next"])
            # the entries are the commits git log lists for them
            log = self.git("log", "--first-parent", "--format=%H", "main").split()
            self.assertEqual([e["commit"] for e in whole["entries"]],
                             [c for c in log if c in {e["commit"] for e in whole["entries"]}])
            ops = {c: len(log) - 1 - i for i, c in enumerate(log)}
            self.assertEqual([e["op"] for e in whole["entries"]],
                             [ops[e["commit"]] for e in whole["entries"]])
            seen, before = [], None
            while True:
                page = self.okjson("history", "app", *sel, "--limit", "2",
                                   *(["--before", str(before)] if before else []))
                seen += page["entries"]
                if page["next"] is None:
                    break
                before = page["next"]
            self.assertEqual(seen, whole["entries"])
        # --at: the state live at each move's time is that move's version
        for e in self.okjson("history", "app", "--channel", "prod")["entries"]:
            at = self.okjson("history", "app", "--channel", "prod", "--at", e["state"]["time"])
            # several moves can share a second: the newest of them is live then
            self.assertEqual(at["state"]["time"], e["state"]["time"])
        rc, _, err = self.im("history", "app", "--channel", "prod", "--at", "2001-01-01T00:00:00Z")
        self.assertEqual(rc, 1, err)
        self.assertOneLineError(err, "did not exist yet")

    def test_server_pages_follow_the_same_indexes(self):
        token, line = new_token("read")
        server = self.serve(line)
        for i in range(3):
            self.ok("deploy", "app", VERSIONS[i], "--channel", "prod")
        whole = server.get_json("/v1/images/app?limit=1000", token=token)
        validate(whole, "api_image.schema.json")
        self.assertEqual([r["version"] for r in whole["versions"]], VERSIONS[::-1])
        seen, before = [], None
        while True:
            page = server.get_json("/v1/images/app?limit=3" +
                                   ("&before=%d" % before if before is not None else ""),
                                   token=token)
            validate(page, "api_image.schema.json")
            self.assertEqual(page["total"], len(VERSIONS))
            seen += page["versions"]
            if page["next"] is None:
                break
            before = page["next"]
        self.assertEqual(seen, whole["versions"])
        history = server.get_json("/v1/channels/app/prod/history", token=token)
        page = server.get_json("/v1/channels/app/prod/history?limit=2", token=token)
        validate(page, "api_history.schema.json")
        self.assertEqual(page["entries"], history["entries"][:2])
        rest = server.get_json("/v1/channels/app/prod/history?before=%d" % page["next"],
                               token=token)
        self.assertEqual(rest["entries"], history["entries"][2:])
        at = server.get_json("/v1/channels/app/prod/history?at=1", token=token)
        self.assertEqual(at["entries"], [])
        # the remote CLI pages the same way
        remote = ["--server", server.url, "--token", token]
        self.assertEqual(self.okjson("ls", "app", *remote)["versions"], whole["versions"])
        self.assertEqual(self.okjson("history", "app", "--channel", "prod", "--limit", "1",
                                     *remote)["entries"], history["entries"][:1])
        status, _, data = server.request("GET", "/v1/images/app?limit=0", token=token)
        self.assertJsonError(status, data, 400)

    def test_damaged_index_row_is_refused_and_reindex_repairs_it(self):
        path = "index/app/versions/00000/000"
        rows = self.git("show", "main:" + path).splitlines()
        fields = rows[0].split("\t")
        fields[3] = str(int(fields[3]) + 1)  # the size: the manifest id still matches
        rows[0] = "\t".join(fields)
        rewrite_main(self.repo, path, "100644", "blob",
                     hash_object(self.repo, ("\n".join(rows) + "\n").encode()))
        # the damage came in a commit by stock git, so the indexes are not current at the
        # tip: in an imgstore/2 store (whose version index stands for the image's count)
        # the manifests answer, and never the damaged row (docs/format.md, "Indexes")
        listed = self.okjson("ls", "app")["versions"]
        self.assertEqual(sorted(v["version"] for v in listed), sorted(VERSIONS))
        self.assertEqual({v["size"] for v in listed}, {listed[0]["size"]})
        rc, out, err = self.im("fsck")
        self.assertEqual(rc, EXIT_VERIFY, out + err)
        self.assertIn("imgstore reindex", out)
        self.assertEqual(self.ok("reindex").strip(), "rebuilt the indexes")
        self.assertEqual(self.subjects()[0], "reindex")
        self.ok("fsck")
        self.assertEqual(len(self.okjson("ls", "app")["versions"]), len(VERSIONS))
        # signed like every commit: stock git checks it against the policy's root key
        self.git("-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile=" +
                 self.allowed_signers(), "verify-commit", "main")
        self.assertFsckClean()

    def allowed_signers(self):
        policy = json.loads(self.git("show", "main:trust/policy.json"))
        p = self.path("allowed_signers")
        with open(p, "w") as f:
            for key in policy["roles"]["root"]["keys"]:
                f.write("ci@imgstore %s\n" % key)
        return p

    def test_commit_by_stock_git_leaves_answers_right_until_reindex(self):
        self.ok("deploy", "app", "1.2", "--channel", "prod")
        before = self.okjson("history", "app", "--channel", "prod")["entries"]
        # an empty commit by stock git: the oplog no longer ends at the tip's parent
        tip = self.tip()
        commit = git_ok("commit-tree", tip + "^{tree}", "-p", tip, "-m", "by hand",
                        git_dir=self.repo).strip()
        git_ok("update-ref", "refs/heads/main", commit, tip, git_dir=self.repo)
        self.ok("deploy", "app", "1.4", "--channel", "prod")
        self.push(fixture("cmdline.txt") if HAVE_FIXTURES else self.random_file("x", 10)[0],
                  "--name", "app", "--version", "2.0")
        after = self.okjson("history", "app", "--channel", "prod")["entries"]
        self.assertEqual(after[1:], before)
        self.assertEqual(after[0]["version"], "1.4")
        self.assertEqual(self.okjson("ls", "app", "--limit", "1")["versions"][0]["version"], "2.0")
        rc, out, err = self.im("fsck")
        self.assertEqual(rc, EXIT_VERIFY, out + err)
        self.assertIn("index", out)
        rc, _, err = self.im("reindex", "--check")
        self.assertEqual(rc, EXIT_VERIFY, err)
        self.ok("reindex")
        self.ok("reindex", "--check")
        self.ok("fsck")
        self.assertEqual(self.okjson("history", "app", "--channel", "prod")["entries"], after)
        self.ok("deploy", "app", "1.5", "--channel", "prod")
        self.ok("reindex", "--check")  # kept again from here
        self.assertFsckClean()


if __name__ == "__main__":
    main()
