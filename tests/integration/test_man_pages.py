#!/usr/bin/env python3
"""
The man pages (scripts/gen-man, built into $IMGSTORE_MAN_DIR) cover every command and every
option of each command's --help, imgstore-serve.conf(5) every key the server's config parser
takes, and `man -l` renders each page without a groff warning (issue #12). A page missing, a
command without a page or an option its page does not name fails here.
"""

import os
import re
import shutil
import subprocess

from imgstore_testlib import SOURCE_DIR, StoreTestCase, main, run

MAN_DIR = os.environ.get("IMGSTORE_MAN_DIR") or os.path.join(SOURCE_DIR, "build", "man")


def page_text(path):
    """The page's text as roff source with its escapes undone (\\- is -, \\e is \\)."""
    with open(path) as f:
        roff = f.read()
    return re.sub(r"\\f[BIRP]", "", roff).replace("\\-", "-").replace("\\e", "\\") \
        .replace("\\&", "")


def help_options(text):
    """Every option an option column of --help names: --channel, -o, --output, ..."""
    options = set()
    for line in text.split("\n"):
        m = re.match(r"^  (-[^ ].*?)(?:  +\S.*)?$", line)
        if m:
            options.update(re.findall(r"(?<![\w-])(--?[a-z0-9][a-z0-9-]*)", m.group(1)))
    return options


class ManPages(StoreTestCase):

    def setUp(self):
        super().setUp()
        if not os.path.isdir(MAN_DIR):
            self.fail("no man pages at %s: the build writes them (target imgstore_man)" % MAN_DIR)
        self.commands = [c for c in run("__complete", "commands")[1].split() if c != "help"]

    def test_every_command_and_option_of_help_is_in_its_page(self):
        self.assertGreaterEqual(len(self.commands), 19, self.commands)
        for cmd in ("serve", "watch", "token", "version"):
            self.assertIn(cmd, self.commands)
        main_page = page_text(os.path.join(MAN_DIR, "man1", "imgstore.1"))
        for cmd in self.commands:
            self.assertIn("imgstore-%s(1)" % cmd, main_page)
            path = os.path.join(MAN_DIR, "man1", "imgstore-%s.1" % cmd)
            self.assertTrue(os.path.isfile(path), "no page for imgstore %s" % cmd)
            page = page_text(path)
            rc, text, err = run(cmd, "--help")
            self.assertEqual(rc, 0, err)
            options = help_options(text)
            self.assertIn("--help", options, cmd)
            for option in options:
                self.assertRegex(page, r"(?<![\w-])%s(?![\w-])" % re.escape(option),
                                 "imgstore-%s(1) does not name %s" % (cmd, option))
            synopsis = text.split("\n", 1)[0][len("usage: "):]
            self.assertIn(synopsis, page, cmd)
            for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXAMPLE",
                            "EXIT STATUS"):
                self.assertIn(".SH %s" % section, page, cmd)
        self.assertIn("-q, --quiet", page_text(os.path.join(MAN_DIR, "man1",
                                                            "imgstore-push.1")))

    def test_section_5_pages_cover_the_format_and_every_config_key(self):
        fmt = page_text(os.path.join(MAN_DIR, "man5", "imgstore-format.5"))
        for heading in ("COMMITS", "TREE LAYOUT", "CHUNKS", "INDEXES", "PACKING"):
            self.assertIn(".SH %s" % heading, fmt)
        conf = page_text(os.path.join(MAN_DIR, "man5", "imgstore-serve.conf.5"))
        with open(os.path.join(SOURCE_DIR, "server", "config.c")) as f:
            source = f.read()
        keys = set(re.findall(r'strcmp\(key, "([a-z_]+)"\)', source))
        keys |= set(re.findall(r"NUMBER\(([a-z_]{2,}),", source))
        self.assertGreaterEqual(len(keys), 25, keys)
        for key in keys:
            self.assertRegex(conf, r"(?m)^\.TP\n(.*\b)?%s\b" % key,
                             "imgstore-serve.conf(5) has no entry for %s" % key)

    def test_cmake_install_puts_pages_and_completions_in_place(self):
        build = os.path.dirname(MAN_DIR)
        if not shutil.which("cmake") or not os.path.isfile(os.path.join(build,
                                                                        "cmake_install.cmake")):
            self.skipTest("no cmake build directory at %s" % build)
        prefix = self.path("prefix")
        p = subprocess.run(["cmake", "--install", build, "--prefix", prefix],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        share = os.path.join(prefix, "share")
        for cmd in self.commands:
            self.assertTrue(os.path.isfile(os.path.join(share, "man", "man1",
                                                        "imgstore-%s.1" % cmd)), cmd)
        for path in ("man/man1/imgstore.1", "man/man5/imgstore-format.5",
                     "man/man5/imgstore-serve.conf.5", "bash-completion/completions/imgstore",
                     "zsh/site-functions/_imgstore"):
            self.assertTrue(os.path.isfile(os.path.join(share, path)), path)
        self.assertTrue(os.access(os.path.join(prefix, "bin", "imgstore"), os.X_OK))

    def test_man_renders_every_page_without_warnings(self):
        if not shutil.which("man") or not shutil.which("groff"):
            self.skipTest("man-db or groff not installed (scripts/install-deps installs them)")
        pages = [os.path.join(MAN_DIR, d, f) for d in ("man1", "man5")
                 for f in sorted(os.listdir(os.path.join(MAN_DIR, d)))]
        self.assertEqual(len(pages), len(self.commands) + 3)
        env = dict(os.environ, LC_ALL="C.UTF-8", MANROFFSEQ="", MANWIDTH="80")
        for page in pages:
            # as lintian checks pages: every groff warning is printed on stderr
            p = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", page],
                               capture_output=True, text=True, env=env, timeout=60)
            self.assertEqual(p.returncode, 0, (page, p.stderr))
            self.assertEqual(p.stderr, "", page)
            shown = subprocess.run(["man", "-l", page], capture_output=True, text=True,
                                   env=env, timeout=60).stdout
            self.assertIn("imgstore", shown)


if __name__ == "__main__":
    main()
