#!/usr/bin/env python3
"""
The bash and zsh completions (contrib/completion) complete commands, each command's options,
subcommands, and the image names, channels and versions of the store (issue #12). bash runs
the real completion function with COMP_WORDS/COMP_CWORD set, as bash does on TAB; zsh
sources the real function with `words`/`CURRENT` set and compadd recording what it is given.
"""

import os
import shutil
import subprocess

from imgstore_testlib import BIN, SOURCE_DIR, StoreTestCase, base_env, main

CONTRIB = os.path.join(SOURCE_DIR, "contrib", "completion")


def shell_quote(word):
    return "'" + word.replace("'", "'\\''") + "'"


class Completion(StoreTestCase):

    def setUp(self):
        super().setUp()
        for name, version in (("app", "1.0"), ("app", "1.1"), ("apple", "2.0"), ("web", "3")):
            path, _ = self.random_file("%s-%s.img" % (name, version), 4096)
            self.push("--name", name, "--version", version, path)
        self.ok("deploy", "app", "1.0", "--channel", "prod")
        self.ok("deploy", "app", "1.1", "--channel", "staging")
        self.env = base_env()
        self.env["IMGSTORE_REPO"] = self.repo

    def bash(self, *words):
        """What bash offers for the command line `words` (the last one is being completed)."""
        script = "source %s\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\n_imgstore\n" \
                 "printf '%%s\\n' \"${COMPREPLY[@]}\"\n" % (
                     shell_quote(os.path.join(CONTRIB, "imgstore.bash")),
                     " ".join(shell_quote(w) for w in (BIN,) + words), len(words))
        p = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True,
                           text=True, env=self.env, cwd=self.tmp, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        return sorted(w for w in p.stdout.split("\n") if w)

    def zsh(self, *words):
        script = ("compadd() { local -a prefix; while [[ $1 != -- ]]; do "
                  "[[ $1 == -P ]] && { prefix=($2); shift }; shift; done; shift; "
                  "local w; for w in \"$@\"; do [[ $prefix$w == ${words[CURRENT]}* ]] && "
                  "print -r -- $prefix$w; done; return 0 }\n"
                  "_files() { print -r -- '<files>' }\n_directories() { print -r -- '<dirs>' }\n"
                  "words=(%s)\nCURRENT=%d\nsource %s\nexit 0\n" % (
                      " ".join(shell_quote(w) for w in (BIN,) + words), len(words) + 1,
                      shell_quote(os.path.join(CONTRIB, "_imgstore"))))
        p = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True,
                           env=self.env, cwd=self.tmp, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        return sorted(w for w in p.stdout.split("\n") if w)

    def check(self, complete):
        self.assertEqual(complete("pu"), ["pull", "push"])
        self.assertIn("serve", complete(""))
        self.assertIn("--version", complete("--"))
        self.assertEqual(complete("deploy", "--ch"), ["--channel"])
        self.assertEqual(complete("serve", "--tls-"), ["--tls-cert", "--tls-key"])
        self.assertEqual(complete("pull", "-q", "--qu"), ["--quiet"])
        self.assertIn("--trust-policy-sha256", complete("push", "--"))
        self.assertEqual(complete("trust", "set-"), ["set-channel-ttl", "set-threshold"])
        self.assertEqual(complete("key", ""), ["generate", "show"])
        self.assertEqual(complete("pull", "ap"), ["app", "apple"])
        self.assertEqual(complete("show", "app@"), ["app@1.0", "app@1.1"])
        self.assertEqual(complete("pull", "app", "--channel", ""), ["prod", "staging"])
        self.assertEqual(complete("rollback", "app", "--channel", "p"), ["prod"])
        self.assertEqual(complete("deploy", "app", ""), ["1.0", "1.1"])
        self.assertEqual(complete("rollback", "app", "--channel", "prod", "--to", ""),
                         ["1.0", "1.1"])
        self.assertEqual(complete("help", "wa"), ["watch"])
        # a value the help spells in lower case is literal: its alternatives are offered
        self.assertIn("--sort", complete("ls", "--so"))
        self.assertEqual(complete("ls", "app", "--sort", ""), ["name", "time"])
        self.assertEqual(complete("ls", "app", "--sort", "n"), ["name"])
        self.assertEqual(complete("ls", "--sort", "name", "ap"), ["app", "apple"])
        # --repo on the line being completed wins over $IMGSTORE_REPO
        empty = self.path("empty.git")
        self.ok("init", repo=empty)
        self.assertEqual(complete("pull", "--repo", empty, ""), [])
        # no store at all: nothing offered, and nothing printed on the terminal
        self.env["IMGSTORE_REPO"] = self.path("none.git")
        self.assertEqual(complete("pull", "a"), [])
        self.env["IMGSTORE_REPO"] = self.repo

    def test_bash_completes_commands_options_and_names_from_the_store(self):
        self.check(self.bash)
        open(self.path("app.xen"), "w").close()
        self.assertEqual(self.bash("push", "app.x"), ["app.xen"])

    def test_zsh_completes_commands_options_and_names_from_the_store(self):
        if not shutil.which("zsh"):
            self.skipTest("zsh not installed (scripts/install-deps installs it)")
        self.check(self.zsh)
        self.assertEqual(self.zsh("push", "app.x"), ["<files>"])


if __name__ == "__main__":
    main()
