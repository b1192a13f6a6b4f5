#!/usr/bin/env python3
"""
First steps and loose ends of the CLI (issue #10, item 17): a command that needs a store on a
new machine points at `imgstore init` (not at `imgstore key generate`), a private key others
can read is warned about as ssh does, `watch` waits for a server that is down when it starts,
and scripts/run leaves no temporary directory behind.
"""

import os
import shutil
import signal
import socket
import stat
import subprocess
import time

from imgstore_testlib import (BIN, EXIT_FAIL, SOURCE_DIR, ServerTestCase, base_env, main,
                              new_token, run)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FirstSteps(ServerTestCase):

    def test_a_new_machine_is_told_to_run_init(self):
        fresh = {"XDG_CONFIG_HOME": self.path("fresh-config"),
                 "XDG_DATA_HOME": self.path("fresh-data")}
        p, _ = self.random_file("app.img", 4096)
        for args in (("push", p), ("sign", "app@1"), ("deploy", "app", "1", "--channel", "p"),
                     ("rollback", "app", "--channel", "p"), ("ls",)):
            rc, out, err = run(*args, env=fresh)
            self.assertEqual(rc, EXIT_FAIL, err)
            self.assertOneLineError(err, "imgstore %s: no store at" % args[0], "imgstore init")
            self.assertNotIn("key generate", err)

    def test_a_private_key_others_can_read_is_warned_about(self):
        key = self.path("ci.key")
        self.ok("key", "generate", "--out", key)
        self.ok("trust", "add-key", "release", key + ".pub")
        p, _ = self.random_file("app.img", 4096)
        os.chmod(key, 0o644)
        rc, out, err = self.im("push", p, "--name", "app", "--version", "1", "--kind",
                               "unknown", "--key", key)
        self.assertEqual(rc, 0, err)
        line = self.assertOneLineError(err, "imgstore push: warning: private key %s" % key,
                                       "0644", "chmod 600")
        os.chmod(key, 0o600)
        rc, out, err = self.im("sign", "app@1", "--key", key)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("warning", err)
        os.chmod(key, 0o640)
        self.assertIn("warning: private key", self.im("key", "show", key)[2])

    def test_watch_waits_for_a_server_that_is_down_at_start(self):
        p, _ = self.random_file("app.img", 4096)
        self.push(p, "--name", "app", "--version", "1", "--kind", "unknown")
        q, _ = self.random_file("two/app.img", 4096)
        self.push(q, "--name", "app", "--version", "2", "--kind", "unknown")
        self.ok("deploy", "app", "1", "--channel", "prod")
        token, line = new_token("read", "watcher")
        port = free_port()
        watch = subprocess.Popen([BIN, "watch", "app", "--channel", "prod", "--server",
                                  "http://127.0.0.1:%d" % port, "--token", token],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base_env())
        self.addCleanup(lambda: watch.poll() is None and watch.kill())
        time.sleep(1.5)
        self.assertIsNone(watch.poll(), "watch gave up on a server that is not up yet")
        server = self.serve(line, args=("--listen", "127.0.0.1:%d" % port))
        self.assertEqual(server.port, port)
        time.sleep(7)  # the next try finds it and starts from what prod runs now
        self.ok("deploy", "app", "2", "--channel", "prod")
        deadline = time.time() + 60
        out = b""
        while time.time() < deadline and b"\n" not in out:
            time.sleep(0.2)
            out += os.read(watch.stdout.fileno(), 4096) if watch.poll() is None else b""
        watch.send_signal(signal.SIGTERM)
        rest, err = watch.communicate(timeout=30)
        self.assertEqual(watch.returncode, 0, err)
        self.assertEqual((out + rest).decode().splitlines(), ["app prod 2 2 deploy"])
        self.assertIn("retrying", err.decode())

    def test_scripts_run_leaves_no_temporary_directory(self):
        # scripts/run in a tree of its own: the real binary, no-op install and build steps
        tree = self.path("tree")
        os.makedirs(os.path.join(tree, "scripts"))
        os.makedirs(os.path.join(tree, "build"))
        shutil.copy(os.path.join(SOURCE_DIR, "scripts", "run"), os.path.join(tree, "scripts"))
        for step in ("install-deps", "build"):
            with open(os.path.join(tree, "scripts", step), "w") as f:
                f.write("#!/bin/sh\nexit 0\n")
            os.chmod(os.path.join(tree, "scripts", step), stat.S_IRWXU)
        os.symlink(BIN, os.path.join(tree, "build", "imgstore"))
        tmpdir = self.path("tmpdir")
        os.mkdir(tmpdir)
        files = [self.random_file("img/%s" % n, 8192)[0] for n in ("a.img", "b.img")]
        env = base_env()
        env.update({"TMPDIR": tmpdir, "IMGSTORE_REPO": self.path("run.git"),
                    "IMGSTORE_SERVE_CONFIG": self.path("serve.conf"),
                    "IMGSTORE_LISTEN": "127.0.0.1:0"})
        proc = subprocess.Popen([os.path.join(tree, "scripts", "run")] + files,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        out = b""
        deadline = time.time() + 120
        while time.time() < deadline and b"listening on" not in out and proc.poll() is None:
            out += os.read(proc.stdout.fileno(), 4096)
        self.assertIn(b"pulled back byte-identical", out)
        self.assertIn(b"listening on", out)
        self.assertEqual(os.listdir(tmpdir), [], "scripts/run left a temporary directory")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


if __name__ == "__main__":
    main()
