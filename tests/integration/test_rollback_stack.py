#!/usr/bin/env python3
"""
The rollback stack a channel state carries (docs/format.md, "Rollback stack"; issue #9):
every move writes it, a rollback pops it without reading the history, a state written by
older imgstore (no stack) is rolled back by one replay of the history, and a stack edited by
someone who can only write the repository is refused because the deploy signature no longer
covers it. States are rewritten with stock git and re-signed with stock ssh-keygen.
"""

import json
import os
import shutil
import subprocess
import time

from imgstore_testlib import version_path
from imgstore_testlib import (EXIT_VERIFY, StoreTestCase, base_env, git_ok, hash_object, main,
                              rfc3339, sha256, tree_with)


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class RollbackStack(StoreTestCase):

    def setUp(self):
        if not shutil.which("ssh-keygen"):
            self.skipTest("ssh-keygen not installed")
        super().setUp()
        for v in ("1", "2", "3", "4"):
            p, _ = self.random_file(os.path.join(v, "app.img"), 4096 + len(v))
            self.push(p, "--name", "app", "--version", v, "--kind", "unknown")

    def state(self):
        return json.loads(self.git("show", "main:channels/app/prod.json"))

    def sign(self, data):
        msg = self.path("msg-%s" % sha256(data)[:12])
        with open(msg, "wb") as f:
            f.write(data)
        key = os.path.join(base_env()["XDG_CONFIG_HOME"], "imgstore", "key")
        p = subprocess.run(["ssh-keygen", "-Y", "sign", "-q", "-f", key, "-n", "imgstore", msg],
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        with open(msg + ".sig", "rb") as f:
            return f.read()

    def commit_state(self, state, signature=None, message="by hand"):
        """One commit on main writing STATE as prod.json; with SIGNATURE, its signature file
        too (the deploy key's file name), else the old signature stays beside new bytes."""
        data = canonical(state)
        sigs = "channels/app/prod.sigs"
        sig_name = self.git("ls-tree", "--name-only", "main:" + sigs).split()[0]
        tree = self.git("rev-parse", "main^{tree}").strip()
        tree = tree_with(self.repo, tree, "channels/app/prod.json", "100644", "blob",
                         hash_object(self.repo, data))
        if signature is not None:
            tree = tree_with(self.repo, tree, sigs + "/" + sig_name, "100644", "blob",
                             hash_object(self.repo, signature))
        old = self.tip()
        commit = git_ok("commit-tree", tree, "-p", old, "-m", message, git_dir=self.repo).strip()
        git_ok("update-ref", "refs/heads/main", commit, old, git_dir=self.repo)

    def legacy_deploy(self, version):
        """The state older imgstore wrote for `deploy app VERSION`: no stack, properly signed."""
        current = self.state()
        now = int(time.time())
        state = {"schema": "imgstore.channel/1", "name": "app", "channel": "prod",
                 "version": version,
                 "manifest_sha256": sha256(self.git(
                     "show", "main:" + version_path("app", version, "manifest.json"),
                     binary=True)),
                 "sequence": current["sequence"] + 1, "time": rfc3339(now),
                 "expires": rfc3339(now + 86400), "actor": "old-imgstore", "action": "deploy",
                 "previous_version": current["version"]}
        data = canonical(state)
        self.commit_state(state, self.sign(data), "deploy app prod %s" % version)

    def test_every_move_carries_the_stack_and_rollback_pops_it(self):
        s = self.okjson("deploy", "app", "1", "--channel", "prod")
        self.assertEqual(s["stack"], [])
        self.ok("deploy", "app", "2", "--channel", "prod")
        s = self.okjson("deploy", "app", "3", "--channel", "prod")
        self.assertEqual(s["stack"], ["2", "1"])
        self.assertEqual(self.state()["stack"], ["2", "1"])
        s = self.okjson("rollback", "app", "--channel", "prod")
        self.assertEqual((s["version"], s["stack"]), ("2", ["1"]))
        s = self.okjson("rollback", "app", "--channel", "prod", "--to", "4")
        self.assertEqual((s["version"], s["stack"]), ("4", ["2", "1"]))
        s = self.okjson("rollback", "app", "--channel", "prod", "--to", "1")
        self.assertEqual((s["version"], s["stack"]), ("1", []))
        # the history shows each move's stack, and verify replays it to the same
        h = self.okjson("history", "app", "--channel", "prod")["entries"]
        self.assertEqual([e["state"]["stack"] for e in h],
                         [[], ["2", "1"], ["1"], ["2", "1"], ["1"], []])
        self.assertRegex(self.ok("verify"), r"(?m)^ok +channel app/prod")
        self.assertFsckClean()

    def test_legacy_state_rolls_back_by_one_replay(self):
        self.ok("deploy", "app", "1", "--channel", "prod")
        self.legacy_deploy("2")
        self.legacy_deploy("3")
        self.legacy_deploy("4")
        self.assertNotIn("stack", self.state())
        s = self.okjson("rollback", "app", "--channel", "prod", "--reason", "bad 4")
        self.assertEqual((s["version"], s["sequence"], s["stack"]), ("3", 5, ["2", "1"]))
        self.assertEqual(self.state()["stack"], ["2", "1"])
        s = self.okjson("rollback", "app", "--channel", "prod")
        self.assertEqual((s["version"], s["stack"]), ("2", ["1"]))
        self.ok("pull", "app", "--channel", "prod", "-o", self.path("prod.img"))
        self.assertRegex(self.ok("verify"), r"(?m)^ok +channel app/prod")

    def test_tampered_stack_is_refused(self):
        for v in ("1", "2", "3"):
            self.ok("deploy", "app", v, "--channel", "prod")
        # someone who can write the repository, not sign, plants a rollback target
        state = self.state()
        state["stack"] = ["4", "1"]
        self.commit_state(state, message="tamper")
        tip = self.tip()
        rc, out, err = self.im("rollback", "app", "--channel", "prod")
        self.assertEqual(rc, EXIT_VERIFY, out + err)
        self.assertOneLineError(err, "app/prod", "not what its deploy key signed", "--to")
        self.assertEqual(self.tip(), tip)
        rc, _, err = self.im("pull", "app", "--channel", "prod", "-o", self.path("out"))
        self.assertEqual(rc, EXIT_VERIFY, err)
        rc, out, _ = self.im("verify")
        self.assertEqual(rc, EXIT_VERIFY)
        self.assertRegex(out, r"(?m)^FAILED +channel app/prod")
        # a rollback with a target still works, and its stack comes from the history
        s = self.okjson("rollback", "app", "--channel", "prod", "--to", "2")
        self.assertEqual((s["version"], s["stack"]), ("2", ["1"]))
        self.assertRegex(self.ok("verify"), r"(?m)^ok +channel app/prod")

    def test_signed_stack_the_history_does_not_replay_to_fails_verify(self):
        for v in ("1", "2", "3"):
            self.ok("deploy", "app", v, "--channel", "prod")
        state = self.state()
        state["stack"] = ["1", "2"]
        self.commit_state(state, self.sign(canonical(state)))
        rc, out, _ = self.im("verify")
        self.assertEqual(rc, EXIT_VERIFY, out)
        self.assertRegex(out, r"(?m)^FAILED +channel app/prod .*stack")

    def test_fsck_refuses_a_stack_past_the_cap(self):
        self.ok("deploy", "app", "1", "--channel", "prod")
        state = self.state()
        state["stack"] = ["2", "3"] * 16 + ["4"]
        self.commit_state(state)
        rc, out, err = self.im("fsck")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("stack: must hold at most 32 versions, found 33", out + err)


if __name__ == "__main__":
    main()
