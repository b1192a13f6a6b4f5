"""
Read replicas (issue #12): `imgstore serve --mirror-of URL` follows a primary store by git
fetch, checks everything new before it serves it, and refuses writes. A primary and two
replicas on loopback, one fetching from a path and one from stock `git daemon`: a deploy on
the primary shows on both within a measured time, byte-identical. A replica fed a tampered
chunk, a channel state with a broken signature or a rewritten history (through an
intermediate bare repository edited with stock git) refuses it, keeps serving its last good
state and reports the error on GET /v1/mirror.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

from imgstore_testlib import version_path
from imgstore_testlib import (BIN, EXIT_OK, Server, ServerTestCase, fixture, git, git_ok, hash_object,
                              ls_tree, main, needs_fixtures, run, sha256, sha256_file, tree_with,
                              validate)

INTERVAL = 1  # seconds between syncs: mirror_interval of every replica here
VISIBLE_WITHIN = 30  # seconds a move may take to show on a replica (measured: ~1-3 s)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GitDaemon:
    """Stock `git daemon` serving every repository under BASE on a free loopback port."""

    def __init__(self, base):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["git", "daemon", "--export-all", "--reuseaddr", "--base-path=" + base,
             "--listen=127.0.0.1", "--port=%d" % self.port, base],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)  # `git daemon` runs git-daemon as a child: stop both
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError("git daemon did not start")

    def url(self, name):
        return "git://127.0.0.1:%d/%s" % (self.port, name)

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


class Mirror(ServerTestCase):

    def replica(self, name, url, *config_lines):
        server = Server(self.path(name), self.tmp,
                        ("read_public = true", "mirror_of = %s" % url,
                         "mirror_interval = %d" % INTERVAL) + config_lines)
        self.addCleanup(server.kill)
        return server

    def state(self, server, channel="prod", name="demo"):
        status, _, data = server.request("GET", "/v1/channels/%s/%s" % (name, channel))
        return json.loads(data) if status == 200 else None

    def wait_for(self, server, sequence, timeout=VISIBLE_WITHIN):
        """Seconds until SERVER answers the channel at SEQUENCE."""
        start = time.time()
        while time.time() - start < timeout:
            s = self.state(server)
            if s and s["sequence"] >= sequence:
                return time.time() - start
            time.sleep(0.05)
        raise AssertionError("sequence %d not on %s within %ss: %s\n%s"
                             % (sequence, server.url, timeout, server.get_json("/v1/mirror"),
                                server.log()[-3000:]))

    def mirror_status(self, server):
        status = server.get_json("/v1/mirror")
        validate(status, "api_mirror.schema.json")
        return status

    def wait_refused(self, server, timeout=VISIBLE_WITHIN):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.mirror_status(server)
            if st.get("error"):
                return st
            time.sleep(0.1)
        raise AssertionError("the replica did not refuse: %s" % self.mirror_status(server))

    def download(self, server, name, version, path):
        with urllib.request.urlopen("%s/v1/images/%s/%s/files/%s"
                                    % (server.url, name, version, path), timeout=60) as r:
            return r.read()

    # -- following ---------------------------------------------------------------------

    @needs_fixtures
    def test_two_replicas_follow_a_deploy_byte_for_byte(self):
        files = ["cmdline.txt", "ipxe.lkrn"]
        self.push("--name", "demo", "--version", "1.0", *[fixture(f) for f in files])
        self.ok("deploy", "demo", "1.0", "--channel", "prod")
        daemon = GitDaemon(self.tmp)
        self.addCleanup(daemon.stop)
        by_path = self.replica("by-path.git", self.repo)
        by_git = self.replica("by-git.git", daemon.url("store.git"))
        # a replica with no store takes its first state before it listens
        for server in (by_path, by_git):
            self.assertEqual(self.state(server)["version"], "1.0")
            st = self.mirror_status(server)
            self.assertIsNone(st["error"])
            self.assertEqual(st["tip"], self.tip())

        self.push("--name", "demo", "--version", "2.0", fixture("cmdline.txt"),
                  fixture("memtest86+x64.bin"))
        self.ok("deploy", "demo", "2.0", "--channel", "prod")
        seconds, start = {}, time.time()
        while len(seconds) < 2 and time.time() - start < VISIBLE_WITHIN:
            for server in (by_path, by_git):
                s = self.state(server)
                if server.url not in seconds and s and s["sequence"] == 2:
                    seconds[server.url] = time.time() - start
            time.sleep(0.02)
        self.assertEqual(len(seconds), 2, "not on both replicas within %ss: %s"
                         % (VISIBLE_WITHIN, seconds))
        # the figure docs/server.md quotes: deploy done -> visible, with mirror_interval = 1
        print("\nvisible after deploy: path %.2f s, git daemon %.2f s (mirror_interval %d s)"
              % (seconds[by_path.url], seconds[by_git.url], INTERVAL))
        for server in (by_path, by_git):
            self.assertEqual(self.state(server)["version"], "2.0")
            for f in ("cmdline.txt", "memtest86+x64.bin"):
                self.assertEqual(sha256(self.download(server, "demo", "2.0", f)),
                                 sha256_file(fixture(f)))
            # the signed state is the primary's, byte for byte
            _, _, signed = server.request("GET", "/v1/channels/demo/prod/signed")
            state = git_ok("show", "main:channels/demo/prod.json", git_dir=self.repo)
            self.assertEqual(json.loads(signed)["state"], state)
            # and the whole store is too: same tip, stock git fsck passes
            self.assertEqual(self.mirror_status(server)["tip"], self.tip())
            git_ok("fsck", "--strict", git_dir=server.repo)
        # a real client pulls what prod runs from a replica, checking everything itself
        dest = self.path("pulled")
        rc, out, err = run("pull", "demo", "--channel", "prod", "--server", by_git.url,
                           "-o", dest + "/")
        self.assertEqual(rc, EXIT_OK, err)
        self.assertEqual(sha256_file(os.path.join(dest, "memtest86+x64.bin")),
                         sha256_file(fixture("memtest86+x64.bin")))

    # -- refusing ----------------------------------------------------------------------

    def intermediate(self):
        """A bare copy of the primary (stock git) that a replica follows: the man in the
        middle, or a primary gone bad."""
        inter = self.path("inter.git")
        git_ok("clone", "-q", "--bare", self.repo, inter)
        return inter

    def update(self, inter, ref="refs/heads/main"):
        """Fetch the primary into INTER: its main (the replica sees it at the next sync), or
        REF, out of the replica's sight, to tamper with before main is moved once."""
        git_ok("fetch", "-q", self.repo, "+refs/heads/main:" + ref, git_dir=inter)
        return git_ok("rev-parse", ref, git_dir=inter).strip()

    def commit_like(self, repo, commit, tree):
        """A commit with COMMIT's parent and message but TREE (no signature)."""
        parent = git_ok("rev-parse", commit + "^", git_dir=repo).strip()
        message = git_ok("log", "-1", "--format=%B", commit, git_dir=repo)
        new = git_ok("commit-tree", tree, "-p", parent, "-m", message, git_dir=repo).strip()
        git_ok("update-ref", "refs/heads/main", new, git_dir=repo)
        return new

    def start_following(self):
        self.random_file("a.bin", 300 * 1024)
        self.push("--name", "demo", "--version", "1", self.path("a.bin"))
        self.ok("deploy", "demo", "1", "--channel", "prod")
        inter = self.intermediate()
        replica = self.replica("replica.git", inter)
        self.assertEqual(self.state(replica)["version"], "1")
        good = self.mirror_status(replica)["tip"]
        return inter, replica, good

    def assertStillServesGood(self, replica, good):
        self.assertEqual(self.state(replica)["sequence"], 1)
        self.assertEqual(sha256(self.download(replica, "demo", "1", "a.bin")),
                         sha256_file(self.path("a.bin")))
        self.assertEqual(git_ok("rev-parse", "refs/heads/main", git_dir=replica.repo).strip(),
                         good)

    def test_tampered_chunk_is_refused_and_the_last_good_state_served(self):
        inter, replica, good = self.start_following()
        self.random_file("b.bin", 300 * 1024)
        self.push("--name", "demo", "--version", "2", self.path("b.bin"))
        # the push commit as the primary wrote it, with its first chunk swapped
        push = self.update(inter, "refs/incoming")
        chunk = version_path("demo", "2", "files/b.bin/000000")
        # the same size, other bytes: only the digest can tell
        bad = hash_object(inter, os.urandom(300 * 1024))
        tree = tree_with(inter, push + "^{tree}", chunk, "100644", "blob", bad)
        refused = self.commit_like(inter, push, tree)
        st = self.wait_refused(replica)
        self.assertIn("b.bin", st["error"])
        self.assertIn("sha256", st["error"])
        self.assertEqual(st["refused_tip"], refused)
        self.assertEqual(st["tip"], good)
        self.assertIn("mirror sync failed", replica.log())
        self.assertStillServesGood(replica, good)
        status, _, _ = replica.request("GET", "/v1/images/demo/2/manifest")
        self.assertEqual(status, 404)
        # the real history again: taken at the next sync
        git_ok("update-ref", "refs/heads/main", push, git_dir=inter)
        deadline = time.time() + VISIBLE_WITHIN
        while self.mirror_status(replica)["tip"] != push and time.time() < deadline:
            time.sleep(0.1)
        st = self.mirror_status(replica)
        self.assertEqual(st["tip"], push)
        self.assertIsNone(st["error"])

    def test_channel_state_with_a_bad_signature_is_refused(self):
        inter, replica, good = self.start_following()
        self.ok("deploy", "demo", "1", "--channel", "canary")
        deploy = self.update(inter, "refs/incoming")
        sigs = ls_tree(inter, deploy + ":channels/demo/canary.sigs")
        armored = git_ok("show", sigs[0][2], git_dir=inter)
        lines = armored.splitlines()
        body = lines[3]
        lines[3] = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
        bad = hash_object(inter, ("\n".join(lines) + "\n").encode())
        tree = tree_with(inter, deploy + "^{tree}", "channels/demo/canary.sigs/" + sigs[0][3],
                         "100644", "blob", bad)
        self.commit_like(inter, deploy, tree)
        st = self.wait_refused(replica)
        self.assertIn("demo/canary", st["error"])
        self.assertIn("deploy signatures", st["error"])
        self.assertStillServesGood(replica, good)
        status, _, _ = replica.request("GET", "/v1/channels/demo/canary")
        self.assertEqual(status, 404)

    def test_rewritten_history_is_refused_loudly(self):
        inter, replica, good = self.start_following()
        # a primary that forgot its last move and went on from the push: a force-push
        rewritten = git_ok("commit-tree", "main^^{tree}", "-p", "main^", "-m", "rewrite",
                           git_dir=inter).strip()
        git_ok("update-ref", "refs/heads/main", rewritten, git_dir=inter)
        st = self.wait_refused(replica)
        self.assertIn("rewritten", st["error"])
        self.assertIn(good[:11], st["error"])
        self.assertStillServesGood(replica, good)

    def test_replayed_old_state_is_refused(self):
        inter, replica, good = self.start_following()
        # an old, validly signed state put back over a newer one: sequence 1 after 2
        self.random_file("c.bin", 300 * 1024)
        self.push("--name", "demo", "--version", "3", self.path("c.bin"))
        self.ok("deploy", "demo", "3", "--channel", "prod")
        self.update(inter)
        self.wait_for(replica, 2)
        tip = git_ok("rev-parse", "main", git_dir=inter).strip()
        tree = tree_with(inter, tip + "^{tree}", "channels/demo/prod.json", "100644", "blob",
                         git_ok("rev-parse", good + ":channels/demo/prod.json",
                                git_dir=inter).strip())
        tree = tree_with(inter, tree, "channels/demo/prod.sigs", "040000", "tree",
                         git_ok("rev-parse", good + ":channels/demo/prod.sigs",
                                git_dir=inter).strip())
        replay = git_ok("commit-tree", tree, "-p", tip, "-m", "deploy demo prod 1",
                        git_dir=inter).strip()
        git_ok("update-ref", "refs/heads/main", replay, git_dir=inter)
        st = self.wait_refused(replica)
        self.assertIn("sequence", st["error"])
        self.assertEqual(self.state(replica)["version"], "3")

    def test_pinned_policy_mismatch_stops_the_first_sync(self):
        self.random_file("a.bin", 1024)
        self.push("--name", "demo", "--version", "1", self.path("a.bin"))
        wrong = "0" * 64
        proc = subprocess.run([BIN, "serve", "--repo", self.path("r.git"), "--listen",
                               "127.0.0.1:0", "--mirror-of", self.repo,
                               "--trust-policy-sha256", wrong],
                              capture_output=True, text=True, timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("not the pinned " + wrong, proc.stderr)
        self.assertIn("first sync from", proc.stderr)
        # the right pin is taken
        policy = git_ok("show", "main:trust/policy.json", git_dir=self.repo, binary=True)
        replica = Server(self.path("r.git"), self.tmp, ("read_public = true",),
                         ("--mirror-of", self.repo, "--trust-policy-sha256", sha256(policy)))
        self.addCleanup(replica.kill)
        self.assertIsNone(replica.get_json("/v1/mirror")["error"])

    # -- across a cut (a prune that frees space) ----------------------------------------

    def wait_tip(self, server, tip, timeout=VISIBLE_WITHIN):
        """Seconds until SERVER serves TIP."""
        start = time.time()
        while time.time() - start < timeout:
            if self.mirror_status(server)["tip"] == tip:
                return time.time() - start
            time.sleep(0.05)
        raise AssertionError("%s not on %s within %ss: %s\n%s"
                             % (tip, server.url, timeout, self.mirror_status(server),
                                server.log()[-3000:]))

    def push_three(self):
        """boot@1..3 of real images; prod runs 3 only, so a prune --keep 1 removes 1 and 2."""
        for version, image in (("1", "ipxe.lkrn"), ("2", "memtest86+x64.bin"),
                               ("3", "memtest86+x64.efi")):
            self.push("--name", "boot", "--version", version, fixture(image),
                      fixture("cmdline.txt"))
        self.ok("deploy", "boot", "3", "--channel", "prod")

    def assertIsCut(self, repo, tip):
        """TIP is a cut: a root commit naming the commit it cut."""
        self.assertEqual(git_ok("rev-list", "--count", tip, git_dir=repo).strip(), "1")
        self.assertIn("previous: ", git_ok("log", "-1", "--format=%B", tip, git_dir=repo))

    @needs_fixtures
    def test_two_replicas_follow_a_prune_that_cuts_history(self):
        self.push_three()
        daemon = GitDaemon(self.tmp)
        self.addCleanup(daemon.stop)
        by_path = self.replica("by-path.git", self.repo)
        by_git = self.replica("by-git.git", daemon.url("store.git"))
        old = self.tip()
        for server in (by_path, by_git):
            self.assertEqual(self.mirror_status(server)["tip"], old)
        # a chunk only the pruned boot@1 holds, to see it go from a replica's disk
        chunk = git_ok("rev-parse", "main:" + version_path("boot", "1", "files/ipxe.lkrn/000000"),
                       git_dir=self.repo).strip()
        self.ok("prune", "boot", "--keep", "1")
        cut = self.tip()
        self.assertIsCut(self.repo, cut)
        seconds, start = {}, time.time()
        while len(seconds) < 2 and time.time() - start < VISIBLE_WITHIN:
            for server in (by_path, by_git):
                if server.url not in seconds and self.mirror_status(server)["tip"] == cut:
                    seconds[server.url] = time.time() - start
            time.sleep(0.02)
        self.assertEqual(len(seconds), 2, "the cut not on both replicas within %ss: %s %s"
                         % (VISIBLE_WITHIN, self.mirror_status(by_path),
                            self.mirror_status(by_git)))
        # the figure docs/operations.md quotes: prune done -> cut served, mirror_interval = 1
        print("\ncut visible after prune: path %.2f s, git daemon %.2f s (mirror_interval %d s)"
              % (seconds[by_path.url], seconds[by_git.url], INTERVAL))
        for server in (by_path, by_git):
            st = self.mirror_status(server)
            self.assertIsNone(st["error"])
            self.assertEqual(st["tip"], cut)
            self.assertIsCut(server.repo, cut)
            self.assertEqual(self.state(server, name="boot")["version"], "3")
            self.assertEqual(sha256(self.download(server, "boot", "3", "memtest86+x64.efi")),
                             sha256_file(fixture("memtest86+x64.efi")))
            for version in ("1", "2"):
                status, _, _ = server.request("GET", "/v1/images/boot/%s/manifest" % version)
                self.assertEqual(status, 404)
            git_ok("fsck", "--strict", git_dir=server.repo)
        # nothing on a replica reaches the pruned bytes any more: its gc may drop them
        for server in (by_path, by_git):
            git_ok("cat-file", "-e", chunk, git_dir=server.repo)
            reachable = git_ok("rev-list", "--objects", "--all", git_dir=server.repo)
            self.assertNotIn(chunk, reachable)
        # and its own gc frees them, as on the primary
        rc, _, err = run("gc", "--prune=now", repo=by_path.repo)
        self.assertEqual(rc, EXIT_OK, err)
        self.assertNotEqual(git("cat-file", "-e", chunk, git_dir=by_path.repo)[0], 0)
        git_ok("fsck", "--strict", git_dir=by_path.repo)
        self.assertEqual(sha256(self.download(by_path, "boot", "3", "memtest86+x64.efi")),
                         sha256_file(fixture("memtest86+x64.efi")))
        # and both go on from the cut as from any commit
        self.ok("deploy", "boot", "3", "--channel", "canary")
        after = self.tip()
        for server in (by_path, by_git):
            self.wait_tip(server, after)
            self.assertEqual(self.state(server, "canary", "boot")["version"], "3")

    @needs_fixtures
    def test_a_replica_started_after_a_cut_takes_it(self):
        self.push_three()
        policy = git_ok("show", "main:trust/policy.json", git_dir=self.repo, binary=True)
        self.ok("prune", "boot", "--keep", "1")
        self.assertIsCut(self.repo, self.tip())
        replica = Server(self.path("late.git"), self.tmp, ("read_public = true",),
                         ("--mirror-of", self.repo, "--trust-policy-sha256", sha256(policy)))
        self.addCleanup(replica.kill)
        self.assertEqual(self.mirror_status(replica)["tip"], self.tip())
        self.assertEqual(sha256(self.download(replica, "boot", "3", "memtest86+x64.efi")),
                         sha256_file(fixture("memtest86+x64.efi")))

    def forge(self, inter, treeish, message, *sign):
        """A root commit of TREEISH with MESSAGE, made by stock git (signed with SIGN's
        `-c` options and -S when given), as main of INTER."""
        args = ["-c", "user.name=evil", "-c", "user.email=evil@example"] + list(sign[:-1])
        args += ["commit-tree", treeish + "^{tree}", "-m", message] + list(sign[-1:])
        forged = git_ok(*args, git_dir=inter).strip()
        git_ok("update-ref", "refs/heads/main", forged, git_dir=inter)
        return forged

    @needs_fixtures
    def test_forged_cuts_are_refused_and_the_last_good_state_served(self):
        self.push_three()
        inter = self.intermediate()
        replica = self.replica("replica.git", inter)
        good = self.mirror_status(replica)["tip"]
        self.ok("prune", "boot", "--keep", "1")
        cut = self.update(inter, "refs/incoming")
        self.assertIsCut(inter, cut)
        message = git_ok("log", "-1", "--format=%B", cut, git_dir=inter)
        # the primary's own cut, unsigned
        forged = self.forge(inter, cut, message)
        st = self.wait_refused(replica)
        self.assertIn("must be signed by a release or root key", st["error"])
        self.assertEqual(st["refused_tip"], forged)
        self.assertNotIn("\n", st["error"])
        # signed, but by a key the policy does not list
        key = self.path("evil")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        forged = self.forge(inter, cut, message, "-c", "gpg.format=ssh", "-c",
                            "user.signingKey=" + key, "-S")
        deadline = time.time() + VISIBLE_WITHIN
        while time.time() < deadline:
            st = self.mirror_status(replica)
            if st["refused_tip"] == forged:
                break
            time.sleep(0.1)
        self.assertEqual(st["refused_tip"], forged)
        self.assertIn("a key no trust policy in force lists", st["error"])
        self.assertEqual(st["tip"], good)
        self.assertEqual(self.state(replica, name="boot")["version"], "3")
        status, _, _ = replica.request("GET", "/v1/images/boot/1/manifest")
        self.assertEqual(status, 200, "the last good state still has boot@1")
        self.assertEqual(git_ok("rev-parse", "refs/heads/main", git_dir=replica.repo).strip(),
                         good)
        # the real cut is taken at the next sync
        git_ok("update-ref", "refs/heads/main", cut, git_dir=inter)
        self.wait_tip(replica, cut)
        self.assertIsNone(self.mirror_status(replica)["error"])

    # -- writes ------------------------------------------------------------------------

    def test_writes_are_refused_or_sent_to_the_primary(self):
        self.random_file("a.bin", 1024)
        self.push("--name", "demo", "--version", "1", self.path("a.bin"))
        refusing = self.replica("refusing.git", self.repo)
        redirecting = self.replica("redirecting.git", self.repo,
                                   "mirror_primary_http = https://primary.example/")
        writes = [("POST", "/v1/images/demo"), ("POST", "/v1/images/demo/1/signatures"),
                  ("POST", "/v1/channels/demo/prod/deploy"),
                  ("POST", "/v1/channels/demo/prod/rollback"),
                  ("POST", "/v1/channels/demo/prod/signed")]
        for method, path in writes:
            status, _, data = refusing.request(method, path, body={})
            err = self.assertJsonError(status, data, 403, "read_only")
            self.assertIn("read replica of " + self.repo, err["message"])
            status, headers, data = redirecting.request(method, path, body={})
            self.assertJsonError(status, data, 307, "read_only")
            self.assertEqual(headers["location"], "https://primary.example" + path)
        # and the OCI distribution writes (/v2, its own error format)
        for method, path in [("PUT", "/v2/demo/manifests/2"), ("POST", "/v2/demo/blobs/uploads/"),
                             ("PATCH", "/v2/demo/blobs/uploads/x"),
                             ("DELETE", "/v2/demo/blobs/uploads/x")]:
            status, _, data = refusing.request(method, path, body=b"{}")
            self.assertEqual(status, 403, (method, path, data[:300]))
            self.assertIn(b"read replica of", data)
            status, headers, _ = redirecting.request(method, path, body=b"{}")
            self.assertEqual(status, 307, (method, path))
            self.assertEqual(headers["location"], "https://primary.example" + path)
        # the CLI says so in one line
        rc, out, err = run("deploy", "demo", "1", "--channel", "prod", "--server", refusing.url)
        self.assertNotEqual(rc, EXIT_OK)
        self.assertOneLineError(err, "read replica of " + self.repo)
        # nothing was written on either replica
        for server in (refusing, redirecting):
            self.assertEqual(git_ok("rev-parse", "main", git_dir=server.repo).strip(), self.tip())
        # a server that is not a replica has no mirror status
        plain = self.serve("read_public = true")
        status, _, _ = plain.request("GET", "/v1/mirror")
        self.assertEqual(status, 404)


if __name__ == "__main__":
    main()
