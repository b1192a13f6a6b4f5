#!/usr/bin/env python3
"""
Channels: deploy, rollback as a stack, rollback --to, history (newest first, --at TIME),
idempotent deploys, pulling what a channel runs, and the git log audit trail.
"""

import os
import time

from imgstore_testlib import EXIT_FAIL, StoreTestCase, main, rfc3339, sha256


class Channels(StoreTestCase):

    def setUp(self):
        super().setUp()
        self.digests = {}
        for v in ("1.0", "2.0", "3.0"):
            p, digest = self.random_file(os.path.join(v, "app.xen"), 64 * 1024 + len(v))
            self.push(p, "--name", "app", "--version", v, "--actor", "ci@build")
            self.digests[v] = digest

    def channel(self, ch="prod"):
        return self.okjson("ls", "app")["channels"].get(ch)

    def pulled(self, *args):
        rc, data, err = self.im("pull", *args, "-o", "-", binary=True)
        self.assertEqual(rc, 0, err)
        return sha256(data)

    def test_deploy_and_rollback_walk_a_stack(self):
        s = self.okjson("deploy", "app", "1.0", "--channel", "prod", "--actor", "alice")
        self.assertEqual((s["version"], s["sequence"], s["action"]), ("1.0", 1, "deploy"))
        s = self.okjson("deploy", "app", "2.0", "--channel", "prod", "--actor", "alice")
        self.assertEqual((s["version"], s["sequence"], s["previous_version"]), ("2.0", 2, "1.0"))
        s = self.okjson("deploy", "app", "3.0", "--channel", "prod", "--actor", "alice")
        self.assertEqual((s["version"], s["sequence"]), ("3.0", 3))
        self.assertEqual(self.channel(), "3.0")

        s = self.okjson("rollback", "app", "--channel", "prod", "--reason", "boot loop",
                        "--actor", "oncall")
        self.assertEqual((s["version"], s["previous_version"], s["action"], s["reason"]),
                         ("2.0", "3.0", "rollback", "boot loop"))
        self.assertEqual(self.channel(), "2.0")
        s = self.okjson("rollback", "app", "--channel", "prod", "--reason", "still broken",
                        "--actor", "oncall")
        self.assertEqual((s["version"], s["previous_version"], s["sequence"]), ("1.0", "2.0", 5))
        self.assertEqual(self.channel(), "1.0")

        tip = self.tip()
        rc, out, err = self.im("rollback", "app", "--channel", "prod")
        self.assertEqual(rc, EXIT_FAIL, out)
        self.assertIn("1.0", self.assertOneLineError(err))
        self.assertEqual(self.tip(), tip)
        self.assertEqual(self.channel(), "1.0")

        s = self.okjson("rollback", "app", "--channel", "prod", "--to", "3.0",
                        "--reason", "fixed upstream", "--actor", "oncall")
        self.assertEqual((s["version"], s["previous_version"], s["sequence"]), ("3.0", "1.0", 6))
        self.assertEqual(self.channel(), "3.0")
        self.assertEqual(self.pulled("app", "--channel", "prod"), self.digests["3.0"])

        h = self.okjson("history", "app", "--channel", "prod")["entries"]
        self.assertEqual([e["version"] for e in h], ["3.0", "1.0", "2.0", "3.0", "2.0", "1.0"])
        self.assertEqual([e["action"] for e in h],
                         ["rollback", "rollback", "rollback", "deploy", "deploy", "deploy"])
        seqs = [e["state"]["sequence"] for e in reversed(h)]
        self.assertEqual(seqs, [1, 2, 3, 4, 5, 6])
        self.assertTrue(all(e["channel"] == "prod" for e in h))
        self.assertEqual(h[0]["actor"], "oncall")
        self.assertEqual(h[-1]["actor"], "alice")
        commits = self.git("log", "--format=%H", "-6", "main").split()
        self.assertEqual([e["commit"] for e in h], commits)

        # the image history has the pushes too, newest first
        full = self.okjson("history", "app")["entries"]
        self.assertEqual([e["action"] for e in full][-3:], ["push", "push", "push"])
        self.assertEqual([e["version"] for e in full][-3:], ["3.0", "2.0", "1.0"])
        self.assertFsckClean()

    def test_git_log_is_the_audit_trail(self):
        self.ok("deploy", "app", "1.0", "--channel", "prod", "--actor", "alice")
        self.ok("deploy", "app", "2.0", "--channel", "prod", "--actor", "bob")
        self.ok("rollback", "app", "--channel", "prod", "--reason", "boot loop on 2.0",
                "--actor", "Carol Oncall <carol@ops.example>")
        log = self.git("log", "--format=%an|%s", "main").splitlines()
        self.assertEqual(log[:6], [
            "Carol Oncall|rollback app prod 2.0 -> 1.0: boot loop on 2.0",
            "bob|deploy app prod 2.0",
            "alice|deploy app prod 1.0",
            "ci@build|push app 3.0",
            "ci@build|push app 2.0",
            "ci@build|push app 1.0",
        ])
        # "Name <email>" sets both
        self.assertEqual(self.git("log", "-1", "--format=%an|%ae", "main").strip(),
                         "Carol Oncall|carol@ops.example")
        self.assertEqual(len(log), 7)  # + "init imgstore store"
        self.assertEqual(log[-1].split("|")[1], "init imgstore store")
        # the channel file's own history is the channel's history
        ch_log = self.git("log", "--format=%s", "main", "--", "channels/app/prod.json").splitlines()
        self.assertEqual(len(ch_log), 3)
        # IMGSTORE_ACTOR is the default actor
        self.ok("deploy", "app", "3.0", "--channel", "staging", env={"IMGSTORE_ACTOR": "dave"})
        self.assertEqual(self.git("log", "-1", "--format=%an %s", "main").strip(),
                         "dave deploy app staging 3.0")
        self.assertFsckClean()

    def test_history_at_returns_the_version_live_then(self):
        def settle():
            time.sleep(1.1)
            t = time.time()
            time.sleep(1.1)
            return t

        t0 = settle()
        self.ok("deploy", "app", "1.0", "--channel", "prod")
        t1 = settle()
        self.ok("deploy", "app", "2.0", "--channel", "prod")
        t2 = settle()
        self.ok("rollback", "app", "--channel", "prod")
        t3 = settle()
        self.ok("deploy", "app", "3.0", "--channel", "prod")

        for t, want in ((t1, "1.0"), (t2, "2.0"), (t3, "1.0")):
            with self.subTest(at=rfc3339(t)):
                out = self.ok("history", "app", "--channel", "prod", "--at", rfc3339(t))
                self.assertEqual(out.strip(), want)
                j = self.okjson("history", "app", "--channel", "prod", "--at", rfc3339(t))
                self.assertEqual(j["state"]["version"], want)
                self.assertEqual(j["at"], rfc3339(t))
                out = self.ok("history", "app", "--channel", "prod", "--at", "@%d" % int(t))
                self.assertEqual(out.strip(), want)
        out = self.ok("history", "app", "--channel", "prod", "--at", rfc3339(time.time() + 5))
        self.assertEqual(out.strip(), "3.0")

        rc, out, err = self.im("history", "app", "--channel", "prod", "--at", rfc3339(t0))
        self.assertEqual(rc, EXIT_FAIL, out)
        self.assertEqual(out.strip(), "")
        self.assertOneLineError(err, "prod")
        self.assertFsckClean()

    def test_deploy_of_missing_version_fails_and_writes_nothing(self):
        tip = self.tip()
        rc, out, err = self.im("deploy", "app", "9.9", "--channel", "prod")
        self.assertEqual(rc, EXIT_FAIL, out)
        self.assertIn("9.9", self.assertOneLineError(err))
        rc, out, err = self.im("deploy", "nosuch", "1.0", "--channel", "prod")
        self.assertEqual(rc, EXIT_FAIL, out)
        self.assertIn("nosuch", self.assertOneLineError(err))
        rc, out, err = self.im("rollback", "app", "--channel", "prod")
        self.assertEqual(rc, EXIT_FAIL, out)
        self.assertOneLineError(err)
        self.assertEqual(self.tip(), tip)
        self.assertIsNone(self.channel())
        self.assertFsckClean()

    def test_redeploying_the_live_version_writes_no_commit(self):
        self.ok("deploy", "app", "2.0", "--channel", "prod")
        tip = self.tip()
        s = self.okjson("deploy", "app", "2.0", "--channel", "prod")
        self.assertEqual((s["version"], s["sequence"]), ("2.0", 1))
        self.ok("deploy", "app", "2.0", "--channel", "prod")
        self.assertEqual(self.tip(), tip)
        self.assertEqual(len(self.okjson("history", "app", "--channel", "prod")["entries"]), 1)
        self.assertFsckClean()

    def test_pull_channel_gets_the_channel_version_not_the_newest(self):
        self.ok("deploy", "app", "1.0", "--channel", "prod")
        self.ok("deploy", "app", "2.0", "--channel", "staging")
        self.assertEqual(self.pulled("app", "--channel", "prod"), self.digests["1.0"])
        self.assertEqual(self.pulled("app", "--channel", "staging"), self.digests["2.0"])
        self.assertEqual(self.pulled("app"), self.digests["3.0"])
        out = self.path("o")
        os.mkdir(out)
        j = self.okjson("pull", "app", "--channel", "prod", "-o", out)
        self.assertEqual(j["version"], "1.0")
        with open(os.path.join(out, "app.xen"), "rb") as f:
            self.assertEqual(sha256(f.read()), self.digests["1.0"])
        ls = self.okjson("ls")["images"]
        self.assertEqual(ls, [{"name": "app", "versions": 3, "newest": "3.0",
                               "channels": {"prod": "1.0", "staging": "2.0"}}])
        rc, out, err = self.im("pull", "app", "--channel", "nosuch", "-o", "-", binary=True)
        self.assertEqual((rc, out), (EXIT_FAIL, b""))
        self.assertFsckClean()


if __name__ == "__main__":
    main()
