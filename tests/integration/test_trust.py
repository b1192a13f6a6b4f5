"""
Signatures and trust (issue #4, docs/security.md): what imgstore signs verifies with stock
ssh-keygen and git, and each attack the security model names is refused.
"""
import json
import os
import shutil
import subprocess
import time

from imgstore_testlib import version_path
from imgstore_testlib import (EXIT_OK, EXIT_VERIFY, StoreTestCase, git, git_ok, hash_object,
                              main, rewrite_main, run)


def have_ssh_keygen():
    return shutil.which("ssh-keygen") is not None


class Trust(StoreTestCase):

    def setUp(self):
        super().setUp()
        if not have_ssh_keygen():
            self.skipTest("ssh-keygen not installed")
        # the store's default key (created by init in the test process's private home)
        info = self.okjson("key", "show")
        self.pub = info["public_key"]
        self.image, _ = self.random_file("app.img", 3 * 1024 * 1024 + 17)

    def new_key(self, name):
        path = self.path("keys", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.ok("key", "generate", "--out", path, "--comment", name)
        return path

    def allowed_signers(self, *pub_lines):
        path = self.path("allowed_signers")
        with open(path, "w") as f:
            for line in pub_lines:
                f.write("ci@imgstore %s\n" % line)
        return path

    def show_blob(self, path):
        return self.git("show", "main:" + path)

    def sig_files(self, directory):
        return [e for e in self.git("ls-tree", "--name-only", "main:" + directory).split()]

    # -- stock tools verify what imgstore signed --------------------------------------------

    def test_ssh_keygen_verifies_manifest_channel_and_policy_signatures(self):
        ref = self.push(self.image, "--name", "app", "--version", "1.0", "--kind", "unknown")
        self.ok("deploy", "app", "1.0", "--channel", "prod")
        allowed = self.allowed_signers(self.pub)
        for doc, sigdir in ((version_path("app", "1.0", "manifest.json"), version_path("app", "1.0", "signatures")),
                            ("channels/app/prod.json", "channels/app/prod.sigs"),
                            ("trust/policy.json", "trust/signatures")):
            sigs = self.sig_files(sigdir)
            self.assertEqual(len(sigs), 1, sigdir)
            sig_path = self.path("doc.sig")
            with open(sig_path, "w") as f:
                f.write(self.show_blob(sigdir + "/" + sigs[0]))
            proc = run_tool(["ssh-keygen", "-Y", "verify", "-f", allowed, "-I", "ci@imgstore",
                             "-n", "imgstore", "-s", sig_path], self.show_blob(doc).encode())
            self.assertEqual(proc[0], 0, "%s: %s" % (doc, proc[2]))
            self.assertIn("Good \"imgstore\" signature", proc[1] + proc[2])
        self.assertTrue(ref)

    def test_git_verify_commit_accepts_every_commit(self):
        self.push(self.image, "--name", "app", "--version", "1.0", "--kind", "unknown")
        self.ok("deploy", "app", "1.0", "--channel", "prod")
        allowed = self.allowed_signers(self.pub)
        cfg = ("-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile=" + allowed)
        commits = self.git("rev-list", "main").split()
        self.assertEqual(len(commits), 3)
        for c in commits:
            self.git(*cfg, "verify-commit", c)
        marks = self.git(*cfg, "log", "--format=%G?", "main").split()
        self.assertEqual(marks, ["G"] * 3)
        # and a forged commit on top is not signed
        old = rewrite_main(self.repo, "imgstore.json", "100644", "blob",
                           hash_object(self.repo, b'{"format":"imgstore/1"}'))
        rc, _, _ = git(*cfg, "verify-commit", "main", git_dir=self.repo)
        self.assertNotEqual(rc, 0)
        self.assertTrue(old)

    # -- thresholds, unknown and removed keys -----------------------------------------------

    def test_below_threshold_version_is_stored_but_not_deployable_until_signed(self):
        second = self.new_key("second")
        self.ok("trust", "add-key", "release", second + ".pub")
        self.ok("trust", "set-threshold", "release", "2")
        rc, out, err = self.im("push", self.image, "--name", "app", "--version", "1.0",
                               "--kind", "unknown")
        self.assertEqual(rc, EXIT_OK, err)
        self.assertIn("1 of the 2 release signatures", err)
        rc, _, err = self.im("deploy", "app", "1.0", "--channel", "prod")
        self.assertEqual(rc, EXIT_VERIFY, err)
        self.assertOneLineError(err, "1 of the 2 release signatures")
        rc, _, err = self.im("pull", "app@1.0", "-o", self.path("out"))
        self.assertEqual(rc, EXIT_VERIFY, err)
        self.assertFalse(os.path.exists(self.path("out", "app.img")))
        report = self.okjson("verify")
        self.assertEqual(report["versions"][0]["status"], "pending")
        signed = self.okjson("sign", "app@1.0", "--key", second)
        self.assertEqual((signed["signatures"], signed["trusted"]), (2, True))
        self.ok("deploy", "app", "1.0", "--channel", "prod")
        self.ok("pull", "app", "--channel", "prod", "-o", self.path("out2"))
        self.assertFsckClean()

    def test_push_with_a_key_outside_the_policy_is_refused_and_writes_nothing(self):
        stranger = self.new_key("stranger")
        before = self.tip()
        rc, _, err = self.im("push", self.image, "--name", "app", "--version", "1.0",
                             "--kind", "unknown", "--key", stranger)
        self.assertEqual(rc, EXIT_VERIFY, err)
        self.assertOneLineError(err, "is not a release key")
        self.assertEqual(self.tip(), before)
        rc, _, err = self.im("trust", "add-key", "release", stranger + ".pub", "--key", stranger)
        self.assertEqual(rc, EXIT_VERIFY, err)
        self.assertOneLineError(err, "is not a root key")
        self.assertEqual(self.tip(), before)

    def test_removed_key_signatures_stop_counting_everywhere(self):
        second = self.new_key("second")
        self.ok("trust", "add-key", "release", second + ".pub")
        self.push(self.image, "--name", "app", "--version", "1.0", "--kind", "unknown",
                  "--key", second)
        self.ok("pull", "app@1.0", "-o", self.path("a"))
        self.ok("trust", "remove-key", "release", second + ".pub")
        rc, _, err = self.im("pull", "app@1.0", "-o", self.path("b"))
        self.assertEqual(rc, EXIT_VERIFY, err)
        self.assertIn("0 of the 1 release signatures", err)
        rc, out, _ = self.im("verify", "--json")
        self.assertEqual(json.loads(out)["versions"][0]["status"], "pending")

    def test_policy_chain_is_reported_and_each_policy_signed_by_its_predecessor(self):
        second = self.new_key("second")
        self.ok("trust", "add-key", "root", second + ".pub")
        self.ok("trust", "set-threshold", "root", "2", "--key", self.key_path())
        before = self.tip()
        # one root key is no longer enough to change the policy
        rc, _, err = self.im("trust", "set-channel-ttl", "86400")
        self.assertEqual(rc, EXIT_VERIFY, err)
        self.assertIn("needs 2 signatures of root keys", err)
        self.assertEqual(self.tip(), before)
        self.ok("trust", "set-channel-ttl", "86400", "--key", self.key_path(), "--key", second)
        report = self.okjson("verify")
        self.assertEqual([p["version"] for p in report["policies"]], ["1", "2", "3", "4"])
        self.assertTrue(all(p["status"] == "ok" for p in report["policies"]))

    def test_verified_chain_memo_is_keyed_by_the_trust_tree(self):
        # Issue #9: reads remember which trust/ tree ended a chain that checked out, so a
        # pull does not walk every commit; any other trust/ tree is walked and checked again.
        self.push(self.image, "--name", "app", "--version", "1.0", "--kind", "unknown")
        self.ok("pull", "app@1.0", "-o", self.path("out1"))
        memo = os.path.join(self.repo, "imgstore-trust-ok")
        with open(memo) as f:
            self.assertEqual(f.read().strip(), self.git("rev-parse", "main:trust").strip())
        # a memo naming another tree is ignored, not trusted
        with open(memo, "w") as f:
            f.write("0" * 40 + "\n")
        self.ok("pull", "app@1.0", "-o", self.path("out2"))
        # a damaged root signature makes a new trust/ tree: walked, and refused
        sig = self.sig_files("trust/signatures")[0]
        bad = hash_object(self.repo, b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n")
        rewrite_main(self.repo, "trust/signatures/" + sig, "100644", "blob", bad)
        rc, _, err = self.im("pull", "app@1.0", "-o", self.path("out3"))
        self.assertEqual(rc, EXIT_VERIFY, err)
        self.assertIn("trust policy chain is broken", err)

    def key_path(self):
        return os.path.join(self.private_config(), "imgstore", "key")

    def private_config(self):
        from imgstore_testlib import base_env
        return base_env()["XDG_CONFIG_HOME"]

    # -- replay and freeze ---------------------------------------------------------------

    def test_replayed_old_channel_state_is_refused_and_a_real_rollback_accepted(self):
        self.push(self.image, "--name", "app", "--version", "1.0", "--kind", "unknown")
        other, _ = self.random_file("app2.img", 2 * 1024 * 1024)
        self.push(other, "--name", "app", "--version", "2.0", "--kind", "unknown")
        self.ok("deploy", "app", "1.0", "--channel", "prod")
        old_tip = self.tip()
        self.ok("deploy", "app", "2.0", "--channel", "prod")
        self.ok("pull", "app", "--channel", "prod", "-o", self.path("seen2"))  # sees sequence 2
        real_tip = self.tip()
        # an attacker serves the older, validly signed state
        self.git("update-ref", "refs/heads/main", old_tip)
        rc, _, err = self.im("pull", "app", "--channel", "prod", "-o", self.path("replayed"))
        self.assertEqual(rc, EXIT_VERIFY, err)
        self.assertOneLineError(err, "already saw sequence 2")
        self.assertFalse(os.path.exists(self.path("replayed")))
        # back to the real history: an intentional rollback is a new, higher sequence
        self.git("update-ref", "refs/heads/main", real_tip)
        self.ok("rollback", "app", "--channel", "prod", "--reason", "boot loop")
        pulled = self.okjson("pull", "app", "--channel", "prod", "-o", self.path("rolled"))
        self.assertEqual((pulled["version"], pulled["sequence"]), ("1.0", 3))

    def test_expired_channel_state_is_refused(self):
        """A state re-signed by the real deploy key but already expired (a frozen mirror)."""
        self.push(self.image, "--name", "app", "--version", "1.0", "--kind", "unknown")
        self.ok("deploy", "app", "1.0", "--channel", "prod")
        state = json.loads(self.show_blob("channels/app/prod.json"))
        past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
        state["expires"] = past
        data = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
        msg = self.path("state.json")
        with open(msg, "wb") as f:
            f.write(data)
        key = self.key_path()
        proc = run_tool(["ssh-keygen", "-Y", "sign", "-q", "-f", key, "-n", "imgstore", msg], b"")
        self.assertEqual(proc[0], 0, proc[2])
        with open(msg + ".sig", "rb") as f:
            sig = f.read()
        sig_name = self.sig_files("channels/app/prod.sigs")[0]
        rewrite_main(self.repo, "channels/app/prod.json", "100644", "blob",
                     hash_object(self.repo, data))
        rewrite_main(self.repo, "channels/app/prod.sigs/" + sig_name, "100644", "blob",
                     hash_object(self.repo, sig))
        rc, _, err = self.im("pull", "app", "--channel", "prod", "-o", self.path("out"))
        self.assertEqual(rc, EXIT_VERIFY, err)
        self.assertOneLineError(err, "expired at " + past)
        rc, out, _ = self.im("verify")
        self.assertEqual(rc, EXIT_VERIFY)
        self.assertRegex(out, r"(?m)^FAILED  channel app/prod .*expired")

    # -- flipped bytes in every kind of signed object ------------------------------------

    def flip(self, path):
        data = bytearray(self.show_blob(path).encode())
        i = len(data) // 2
        data[i] = ord("A") if data[i] != ord("A") else ord("B")
        rewrite_main(self.repo, path, "100644", "blob", hash_object(self.repo, bytes(data)))

    def test_flipped_byte_in_each_signed_object_is_named_by_verify(self):
        self.push(self.image, "--name", "app", "--version", "1.0", "--kind", "unknown")
        self.ok("deploy", "app", "1.0", "--channel", "prod")
        base = self.tip()
        targets = {
            "manifest signature": version_path("app", "1.0", "signatures") + "/" +
                                  self.sig_files(version_path("app", "1.0", "signatures"))[0],
            "channel state": "channels/app/prod.json",
            "channel signature": "channels/app/prod.sigs/" +
                                 self.sig_files("channels/app/prod.sigs")[0],
            "policy": "trust/policy.json",
            "policy signature": "trust/signatures/" + self.sig_files("trust/signatures")[0],
        }
        for what, path in targets.items():
            with self.subTest(what=what):
                self.git("update-ref", "refs/heads/main", base)
                self.flip(path)
                rc, out, err = self.im("verify")
                self.assertEqual(rc, EXIT_VERIFY, "%s: verify passed:\n%s" % (what, out))
                failed = [l for l in out.splitlines() if l.startswith("FAILED")]
                self.assertTrue(failed, out)
                rc, _, err = self.im("pull", "app", "--channel", "prod", "-o",
                                     self.path("out-" + what.replace(" ", "-")))
                self.assertEqual(rc, EXIT_VERIFY, "%s: pull passed: %s" % (what, err))
                self.assertOneLineError(err)

    # -- keys -------------------------------------------------------------------------------

    def test_ssh_keygen_key_and_ssh_agent_can_sign(self):
        """A key made by stock ssh-keygen signs with --key; the same key held by a real
        ssh-agent signs with --agent, so no key file needs to be on the build machine."""
        if not shutil.which("ssh-agent") or not shutil.which("ssh-add"):
            self.skipTest("ssh-agent not installed")
        key = self.path("id_ed25519")
        proc = run_tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci@build",
                         "-f", key], b"")
        self.assertEqual(proc[0], 0, proc[2])
        self.ok("trust", "add-key", "release", key + ".pub")
        self.ok("trust", "add-key", "deploy", key + ".pub")
        self.push(self.image, "--name", "app", "--version", "1.0", "--kind", "unknown",
                  "--key", key)
        sock = self.path("agent.sock")
        agent = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        self.addCleanup(agent.wait, 10)
        self.addCleanup(agent.kill)
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        env = {"SSH_AUTH_SOCK": sock}
        proc = subprocess.run(["ssh-add", key], env=dict(os.environ, **env),
                              capture_output=True, timeout=30)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        os.unlink(key)  # from now on only the agent holds it
        rc, out, err = self.im("deploy", "app", "1.0", "--channel", "prod", "--agent", env=env)
        self.assertEqual(rc, 0, err)
        with open(key + ".pub") as f:
            allowed = self.allowed_signers(f.read().strip())  # only the agent's key
        cfg = ("-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile=" + allowed)
        self.git(*cfg, "verify-commit", "main")
        self.ok("pull", "app", "--channel", "prod", "-o", self.path("out"))

    def test_encrypted_key_needs_its_passphrase(self):
        path = self.path("keys", "locked")
        os.makedirs(os.path.dirname(path))
        rc, _, err = run("key", "generate", "--out", path,
                         env={"IMGSTORE_KEY_PASSPHRASE": "correct horse"})
        self.assertEqual(rc, 0, err)
        with open(path) as f:
            self.assertIn("IMGSTORE ENCRYPTED PRIVATE KEY", f.read())
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        rc, _, err = run("key", "show", path, env={"IMGSTORE_KEY_PASSPHRASE": "wrong"})
        self.assertEqual(rc, EXIT_VERIFY, err)
        self.assertNotIn("wrong", err.split(":")[-1] if "passphrase" not in err else "")
        rc, out, err = run("key", "show", path, env={"IMGSTORE_KEY_PASSPHRASE": "correct horse"})
        self.assertEqual(rc, 0, err)
        self.assertIn("ssh-ed25519 ", out)


def run_tool(argv, stdin):
    import subprocess
    p = subprocess.run(argv, input=stdin, capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


if __name__ == "__main__":
    main()
