#!/usr/bin/env python3
"""
The command line: names refused with the rule they break, usage errors (exit 2), --help on
every command, a missing store, malformed images refused unless --kind unknown, and --json
output that parses for every command that prints data.
"""

import json
import os
import struct

from imgstore_testlib import (EXIT_FAIL, EXIT_USAGE, HAVE_FIXTURES, StoreTestCase, fixture,
                              main, needs_fixtures, run, sha256, rfc3339)

COMMANDS = ["init", "push", "pull", "ls", "show", "deploy", "rollback", "history", "diff",
            "verify", "fsck"]


def truncated_elf():
    """An ELF64 x86-64 executable header whose program headers lie past the end of the file."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack("<HHIQQQIHHHHHH",
                                 2, 0x3E, 1,        # ET_EXEC, EM_X86_64, EV_CURRENT
                                 0x400000,          # e_entry
                                 0x10000,           # e_phoff: 64 KiB, far past EOF
                                 0, 0, 64, 56, 4,   # e_shoff, flags, ehsize, phentsize, phnum
                                 64, 0, 0)
    return header + bytes(100)


class CliErrors(StoreTestCase):

    def setUp(self):
        super().setUp()
        self.file, self.digest = self.random_file("app.xen", 70000)
        self.push(self.file, "--version", "1.0")
        self.tip0 = self.tip()

    def test_bad_names_are_refused_with_the_rule(self):
        cases = [
            (("push", self.file, "--name", "../x"), "image name '../x'", "must not start with '.'"),
            (("push", self.file, "--name", "App"), "image name 'App'", "a-z 0-9 . _ -"),
            (("push", self.file, "--name", ""), "image name ''", "1 to 128"),
            (("push", self.file, "--name", "a" * 129), "image name", "1 to 128"),
            (("push", self.file, "--version", ".hidden"), "version '.hidden'",
             "must not start with '.'"),
            (("push", self.file, "--version", "a/b"), "version 'a/b'", "A-Z a-z 0-9 . _ + -"),
            (("push", self.file, "--version", "-rc1"), "version '-rc1'",
             "must not start with '-'"),
            (("push", self.file, "--label", "Bad Key=1"), "label key 'Bad Key'", "allowed"),
            (("deploy", "app", "1.0", "--channel", "Prod!"), "channel name 'Prod!'",
             "a-z 0-9 . _ -"),
            (("rollback", "app", "--channel", "../prod"), "channel name '../prod'", "must not"),
            (("show", "App@1.0"), "image name 'App'", "allowed"),
            (("ls", "App"), "image name 'App'", "allowed"),
            (("pull", "app@../1.0", "-o", "-"), "version '../1.0'", "must not start"),
        ]
        for args, what, rule in cases:
            with self.subTest(args=args):
                rc, out, err = self.im(*args)
                self.assertIn(rc, (EXIT_FAIL, EXIT_USAGE), err)
                self.assertEqual(out, "")
                self.assertOneLineError(err, what, rule)
        spaced = self.path("my app.xen")
        with open(spaced, "wb") as f:
            f.write(b"x" * 100)
        rc, out, err = self.im("push", spaced, "--name", "app", "--version", "2.0")
        self.assertIn(rc, (EXIT_FAIL, EXIT_USAGE))
        self.assertOneLineError(err, "file name 'my app.xen'", "A-Z a-z 0-9 . _ + -")
        self.assertEqual(self.tip(), self.tip0, "a refused command wrote a commit")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "x")))
        self.assertFsckClean()

    def test_unknown_image_or_channel_is_an_error(self):
        # a typo once printed nothing and exited 0
        cases = [
            (("history", "nosuch"), "no image named nosuch"),
            (("history", "nosuch", "--channel", "prod"), "no image named nosuch"),
            (("history", "app", "--channel", "nosuch"), "image app has no channel nosuch"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                rc, out, err = self.im(*args)
                self.assertEqual(rc, EXIT_FAIL, err)
                self.assertEqual(out, "")
                self.assertOneLineError(err, message)
        self.assertIn("push app 1.0", self.ok("history", "app"))

    def test_init_and_fsck_refuse_a_server_without_a_repo(self):
        # they have no remote mode: with a server set they silently used the default store
        data = self.path("data")
        env = {"IMGSTORE_SERVER": "http://127.0.0.1:9", "XDG_DATA_HOME": data,
               "HOME": self.path("home")}
        for command in ("init", "fsck"):
            with self.subTest(command=command):
                rc, out, err = run(command, env=env)
                self.assertEqual(rc, EXIT_USAGE, err)
                self.assertEqual(out, "")
                self.assertOneLineError(err, "imgstore %s" % command, "local store only",
                                        "--repo")
        self.assertFalse(os.path.exists(data))
        self.assertFalse(os.path.exists(self.path("home")))
        self.assertEqual(run("fsck", repo=self.repo, env=env)[0], 0)
        self.assertEqual(run("fsck", env=dict(env, IMGSTORE_REPO=self.repo))[0], 0)
        fresh = self.path("fresh")
        self.assertEqual(run("init", repo=fresh, env=env)[0], 0)
        self.assertFsckClean(fresh)

    def test_default_names_are_legal_and_keep_the_version_out(self):
        # memtest86+ia32.iso was refused without saying why; a kernel's file name carries its
        # version, which made every kernel a new image
        cases = [
            ("memtest86+ia32.iso", (), "memtest86-ia32@"),
            ("vmlinuz-6.1.0-55-cloud-amd64", (), "vmlinuz@6.1.0-55-cloud-amd64"),
            ("vmlinuz-6.1.0-56-cloud-amd64", (), "vmlinuz@6.1.0-56-cloud-amd64"),
            ("vmlinuz-6.1.0-57-cloud-amd64", ("--version", "57"), "vmlinuz@57"),
            ("Hello_World-2.0.xen", (), "hello_world@2.0"),
            ("app-x86_64.xen", (), "app-x86_64@"),
        ]
        for fname, extra, expect in cases:
            with self.subTest(fname=fname):
                path, _ = self.random_file(fname, 5000)
                out = self.ok("push", path, "--kind", "unknown", *extra)
                self.assertTrue(out.startswith(expect), out)
        self.assertEqual(sorted(v["version"] for v in self.okjson("ls", "vmlinuz")["versions"]),
                         ["57", "6.1.0-55-cloud-amd64", "6.1.0-56-cloud-amd64"])
        tip = self.tip()
        path, _ = self.random_file("+-.img", 100)
        rc, out, err = self.im("push", path, "--kind", "unknown")
        self.assertEqual(rc, EXIT_USAGE, err)
        self.assertEqual(out, "")
        self.assertOneLineError(err, "'+-.img'", "pass --name NAME")
        self.assertEqual(self.tip(), tip)

    def test_usage_errors_exit_2(self):
        cases = [
            ("frob",), ("push",), ("show",), ("show", "app"), ("show", "a@1", "b@1"),
            ("deploy", "app"), ("deploy", "app", "1.0"), ("rollback", "app"),
            ("diff", "app@1.0"), ("pull",), ("history",), ("push", "--bogus", self.file),
            ("verify", "a", "b"), ("ls", "a", "b"), ("fsck", "extra"),
            ("history", "app", "--at", "2026-01-01T00:00:00Z"),
            ("push", self.file, "--source", "no-commit"),
        ]
        for args in cases:
            with self.subTest(args=args):
                rc, out, err = self.im(*args)
                self.assertEqual(rc, EXIT_USAGE, "stdout %r stderr %r" % (out, err))
                self.assertEqual(out, "")
                self.assertTrue(err.strip())
        # a server's options on a local command: refused, not silently ignored
        for args in (("pull", "app@1.0", "--token", "t"), ("deploy", "app", "1.0", "--channel",
                     "prod", "--trust-policy-sha256", "0" * 64), ("history", "app", "--token",
                     "t")):
            with self.subTest(args=args):
                rc, out, err = self.im(*args)
                self.assertEqual(rc, EXIT_USAGE, err)
                self.assertOneLineError(err, "is for a server", "--server")
        rc, out, err = run()
        self.assertEqual(rc, EXIT_USAGE)
        self.assertIn("usage:", err)
        rc, out, err = run("frob")
        self.assertOneLineError(err, "frob")
        self.assertEqual(self.tip(), self.tip0)
        self.assertFsckClean()

    def test_every_command_has_help(self):
        rc, out, err = run("--help")
        self.assertEqual(rc, 0, err)
        self.assertIn("usage:", out)
        for c in COMMANDS:
            self.assertRegex(out, r"(?m)^  %s\b" % c)
        for c in COMMANDS:
            with self.subTest(command=c):
                rc, out, err = run(c, "--help")
                self.assertEqual(rc, 0, err)
                self.assertTrue(out.startswith("usage: imgstore %s" % c), out)
        rc, out, _ = run("--version")
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"^imgstore \S+")
        self.assertFsckClean()

    def test_missing_store_hints_at_init(self):
        nowhere = self.path("no", "store.git")
        cases = [
            ("push", self.file), ("pull", "app@1.0", "-o", "-"), ("ls",), ("ls", "app"),
            ("show", "app@1.0"), ("deploy", "app", "1.0", "--channel", "prod"),
            ("rollback", "app", "--channel", "prod"), ("history", "app"),
            ("diff", "app@1.0", "app@2.0"), ("verify",), ("fsck",),
        ]
        for args in cases:
            with self.subTest(args=args):
                rc, out, err = run(*args, repo=nowhere)
                self.assertEqual(rc, EXIT_FAIL, "stdout %r stderr %r" % (out, err))
                self.assertEqual(out, "")
                self.assertOneLineError(err, "imgstore init", nowhere)
                self.assertFalse(os.path.exists(self.path("no")), "created the store dir")
        # IMGSTORE_REPO works the same way as --repo
        rc, out, err = run("ls", env={"IMGSTORE_REPO": nowhere})
        self.assertEqual(rc, EXIT_FAIL)
        self.assertIn("imgstore init", err)
        rc, out, err = run("ls", "--json", env={"IMGSTORE_REPO": self.repo})
        self.assertEqual(rc, 0, err)
        self.assertEqual([i["name"] for i in json.loads(out)["images"]], ["app"])
        self.assertFsckClean()

    def check_malformed_refused(self, path, what):
        name = os.path.basename(path).split(".")[0]
        with open(path, "rb") as f:
            digest = sha256(f.read())
        rc, out, err = self.im("push", path, "--name", name, "--version", "1")
        self.assertEqual(rc, EXIT_FAIL, "malformed %s accepted: %s" % (what, out))
        self.assertEqual(out, "")
        line = self.assertOneLineError(err, "--kind unknown")
        self.assertIn(what, line)
        self.assertEqual(self.tip(), self.tip0)

        ref = self.push(path, "--name", name, "--version", "1", "--kind", "unknown")
        self.assertEqual(ref, "%s@1" % name)
        f = self.okjson("show", ref)["manifest"]["files"][0]
        self.assertEqual((f["kind"], f["format"], f["sha256"]), ("unknown", "unknown", digest))
        rc, data, err = self.im("pull", ref, "-o", "-", binary=True)
        self.assertEqual((rc, sha256(data)), (0, digest), err)
        self.tip0 = self.tip()

    def test_truncated_images_are_refused_unless_kind_unknown(self):
        elf = self.path("badelf.bin")
        with open(elf, "wb") as f:
            f.write(truncated_elf())
        self.check_malformed_refused(elf, "ELF")
        if HAVE_FIXTURES:
            for src, size, what in (("ipxe.iso", 40 * 1024, "ISO"),
                                    ("ipxe.lkrn", 1024, "bzImage")):
                with self.subTest(fixture=src):
                    p = self.path("trunc%s.%s" % (size, src.split(".")[1]))
                    with open(fixture(src), "rb") as f, open(p, "wb") as g:
                        g.write(f.read(size))
                    self.check_malformed_refused(p, what)
        self.assertFsckClean()

    def test_json_outputs_parse(self):
        def j(*args):
            return self.okjson(*args)

        p2, d2 = self.random_file("v2/app.xen", 90000)
        pushed = j("push", p2, "--version", "2.0", "--label", "ci.job=9")
        self.assertEqual((pushed["created"], pushed["manifest"]["version"]), (True, "2.0"))
        self.assertEqual(pushed["manifest"]["provenance"]["labels"], {"ci.job": "9"})
        dep = j("deploy", "app", "1.0", "--channel", "prod")
        self.assertEqual((dep["schema"], dep["version"]), ("imgstore.channel/1", "1.0"))
        j("deploy", "app", "2.0", "--channel", "prod")
        rb = j("rollback", "app", "--channel", "prod", "--reason", "r")
        self.assertEqual((rb["action"], rb["version"]), ("rollback", "1.0"))

        ls = j("ls")
        self.assertEqual(ls["images"][0]["name"], "app")
        self.assertEqual(ls["images"][0]["versions"], 2)
        lsn = j("ls", "app")
        self.assertEqual({v["version"] for v in lsn["versions"]}, {"1.0", "2.0"})
        self.assertEqual(lsn["channels"], {"prod": "1.0"})
        show = j("show", "app@2.0")
        self.assertEqual(show["manifest"]["files"][0]["sha256"], d2)
        self.assertRegex(show["manifest_sha256"], "^[0-9a-f]{64}$")
        self.assertEqual(rb["manifest_sha256"], j("show", "app@1.0")["manifest_sha256"])
        hist = j("history", "app")
        self.assertEqual([e["action"] for e in hist["entries"]],
                         ["rollback", "deploy", "deploy", "push", "push"])
        hc = j("history", "app", "--channel", "prod")
        self.assertEqual(len(hc["entries"]), 3)
        at = j("history", "app", "--channel", "prod", "--at", rfc3339(2 ** 31))
        self.assertEqual(at["state"]["version"], "1.0")
        diff = j("diff", "app@1.0", "app@2.0")
        self.assertEqual(diff["files"][0]["status"], "changed")
        self.assertEqual(diff["to_provenance"]["labels"], {"ci.job": "9"})
        self.assertNotIn("to_name", diff)
        ver = j("verify")
        self.assertEqual((ver["ok"], len(ver["versions"])), (True, 2))
        fsck = j("fsck")
        self.assertEqual(fsck, {"ok": True, "problems": []})
        out = self.path("o")
        os.mkdir(out)
        pulled = j("pull", "app@2.0", "-o", out)
        self.assertEqual(pulled["files"][0]["sha256"], d2)
        self.assertEqual(os.path.realpath(pulled["files"][0]["written_to"]),
                         os.path.realpath(os.path.join(out, "app.xen")))
        rc, outp, err = self.im("pull", "app@2.0", "-o", "-", "--json", binary=True)
        self.assertNotEqual(rc, 0, "-o - and --json both want stdout")
        self.assertEqual(outp, b"")
        # across two images each side is labelled with its own name (#10)
        j("push", p2, "--name", "other", "--version", "3.0")
        rc, text, err = self.im("diff", "app@1.0", "other@3.0")
        self.assertEqual(rc, 0, err)
        self.assertEqual(text.splitlines()[0], "app@1.0 -> other@3.0")
        cross = j("diff", "app@1.0", "other@3.0")
        self.assertEqual((cross["name"], cross["from"], cross["to_name"], cross["to"]),
                         ("app", "1.0", "other", "3.0"))
        self.assertFsckClean()


if __name__ == "__main__":
    main()
