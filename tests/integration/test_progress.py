#!/usr/bin/env python3
"""
push and pull draw a progress line (bytes, percent, rate, time left) on a terminal, and
nothing when stderr is not a terminal or with -q/--quiet/--json, in local and remote mode
alike; imgstore --version and imgstore version name the CMake project version and the git
commit built (issue #12). The terminal is a real pseudo-terminal (Python's pty).
"""

import json
import os
import pty
import re
import select
import subprocess

from imgstore_testlib import (BIN, SOURCE_DIR, MiB, Server, StoreTestCase, base_env, main,
                              new_token, run)

PROGRESS = re.compile(r"\r(\S+) +\[=* *\] +\d+% [\d.]+ [KMG]?i?B / [\d.]+ [KMG]?i?B "
                      r"[\d.]+ [KMG]?i?B/s ETA (\d+:)?\d+:\d\d")


def run_on_tty(argv, env):
    """Run argv with stderr on a pseudo-terminal, stdout on a pipe: (rc, stdout, tty text)."""
    master, slave = pty.openpty()
    full_env = base_env()
    full_env.update(env)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                         env=full_env)
    os.close(slave)
    seen = b""
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    out = p.stdout.read().decode()
    p.stdout.close()
    rc = p.wait(timeout=60)
    os.close(master)
    return rc, out, seen.decode("utf-8", "replace")


class Progress(StoreTestCase):

    def setUp(self):
        super().setUp()
        self.image, _ = self.random_file("app-1.0.img", 6 * MiB)

    def cmd(self, *args):
        return [BIN] + [str(a) for a in args]

    def test_local_push_and_pull_draw_progress_on_a_terminal_only(self):
        env = {"IMGSTORE_REPO": self.repo}
        rc, out, tty = run_on_tty(self.cmd("push", self.image), env)
        self.assertEqual((rc, out), (0, "app@1.0\n"), tty)
        self.assertRegex(tty, PROGRESS)
        # the last line: all done, nothing left (a fast push must not end on "--:--")
        self.assertRegex(tty, r"100% 6\.0 MiB / 6\.0 MiB [\d.]+ [KMG]?i?B/s ETA 0:00")
        self.assertTrue(tty.endswith("\r\x1b[K"), repr(tty[-40:]))  # the line is cleared
        rc, out, tty = run_on_tty(self.cmd("pull", "app@1.0", "-o", self.path("out/")), env)
        self.assertEqual(rc, 0, tty)
        self.assertRegex(tty, PROGRESS)
        # -q, --quiet and --json: nothing drawn, even on a terminal
        for flags in (("-q",), ("--quiet",), ("--json",)):
            rc, out, tty = run_on_tty(self.cmd("pull", "app@1.0", "-o", self.path("q/"), *flags),
                                      env)
            self.assertEqual(rc, 0, tty)
            self.assertNotIn("ETA", tty, flags)
            self.assertEqual(tty, "", flags)
        rc, out, tty = run_on_tty(self.cmd("push", "--quiet", "--name", "other", self.image), env)
        self.assertEqual((rc, tty), (0, ""))
        # stderr not a terminal: no progress either
        rc, out, err = run("pull", "app@1.0", "-o", self.path("piped/"), repo=self.repo)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("\r", err)
        self.assertEqual(err, "")

    def test_remote_push_and_pull_draw_progress_on_a_terminal_only(self):
        token, line = new_token("admin")
        env = {"IMGSTORE_TOKEN": token}
        with Server(self.repo, self.tmp, [line]) as server:
            rc, out, tty = run_on_tty(self.cmd("push", "--server", server.url, self.image), env)
            self.assertEqual((rc, out), (0, "app@1.0\n"), tty)
            self.assertRegex(tty, PROGRESS)
            rc, out, tty = run_on_tty(self.cmd("pull", "--server", server.url, "app@1.0", "-o",
                                               self.path("out/")), env)
            self.assertEqual(rc, 0, tty)
            self.assertRegex(tty, PROGRESS)
            rc, out, tty = run_on_tty(self.cmd("pull", "-q", "--server", server.url, "app@1.0",
                                               "-o", self.path("quiet/")), env)
            self.assertEqual((rc, tty), (0, ""))
            server.stop()

    def test_quiet_is_in_the_help_of_push_and_pull(self):
        for cmd in ("push", "pull"):
            self.assertIn("-q, --quiet", run(cmd, "--help")[1])


class Version(StoreTestCase):

    def test_version_names_the_project_version_and_the_commit(self):
        with open(os.path.join(SOURCE_DIR, "CMakeLists.txt")) as f:
            project = re.search(r"project\(imgstore VERSION ([0-9.]+)", f.read()).group(1)
        rc, out, err = run("--version")
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith("imgstore %s" % project), out)
        self.assertEqual(run("version")[1], out)
        info = json.loads(run("version", "--json")[1])
        self.assertEqual(info["version"], project)
        if os.path.exists(os.path.join(SOURCE_DIR, ".git")):
            # a git checkout: the commit built is named, as git describe does
            # ("044ef4f", "v0.1.0-3-g044ef4f-dirty")
            self.assertIn("(git %s)" % info["git"], out)
            commit = re.sub(r"-dirty$", "", info["git"]).rsplit("-g", 1)[-1]
            self.assertRegex(commit, r"^[0-9a-f]{7,}$|^v?[0-9.]+$")
            rc = subprocess.run(["git", "-C", SOURCE_DIR, "rev-parse", "--verify", "--quiet",
                                 commit + "^{commit}"], capture_output=True).returncode
            self.assertEqual(rc, 0, "%s is no commit of %s" % (commit, SOURCE_DIR))
        rc, out, err = run("version", "extra")
        self.assertEqual(rc, 2, err)


if __name__ == "__main__":
    main()
