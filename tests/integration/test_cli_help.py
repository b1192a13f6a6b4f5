#!/usr/bin/env python3
"""
Every command's --help names every option its parser accepts, with an example, and a
refused option is one line with the command's prefix (issue #10, item 17). The options are
read from the parsers' tables in cli/*.c, and what a command accepts is asked of the binary
itself: `imgstore COMMAND --OPTION[=VALUE] --help` exits 0 with the help when the option is
taken, and 2 when it is not.
"""

import os
import re

from imgstore_testlib import EXIT_USAGE, SOURCE_DIR, StoreTestCase, main, run

CLI = os.path.join(SOURCE_DIR, "cli")


def parser_options():
    """{long option name: takes a value} from every option table of the CLI."""
    options = {}
    for name in sorted(os.listdir(CLI)):
        if name.endswith((".c", ".h")):
            with open(os.path.join(CLI, name)) as f:
                text = f.read()
            for opt, arg in re.findall(r'\{[\s\\]*"([a-z0-9-]+)",[\s\\]*(no|required|optional)'
                                       r'_argument', text):
                options[opt] = arg != "no"
    return options


def commands():
    with open(os.path.join(CLI, "main.c")) as f:
        return re.findall(r'\{"([a-z]+)", cli_cmd_', f.read())


class Help(StoreTestCase):

    def test_every_option_a_command_accepts_is_in_its_help(self):
        options = parser_options()
        self.assertGreaterEqual(len(options), 30, options)
        for required in ("key", "server", "token", "deep", "label", "trust-policy-sha256"):
            self.assertIn(required, options)
        cmds = commands()
        self.assertGreaterEqual(len(cmds), 17, cmds)
        for cmd in cmds:
            rc, text, err = run(cmd, "--help")
            self.assertEqual(rc, 0, err)
            self.assertTrue(text.startswith("usage: imgstore " + cmd), text)
            self.assertIn("\nExample:\n  imgstore " + cmd, text)
            accepted = []
            for opt, takes_value in sorted(options.items()):
                arg = "--%s=a=b@c" % opt if takes_value else "--" + opt
                rc, out, err = run(cmd, arg, "--help")
                if rc == 0 and out == text:
                    accepted.append(opt)
                    # getopt takes unique prefixes too: --to is --token for push
                    self.assertRegex(text, r"--%s[a-z0-9-]*\b" % re.escape(opt),
                                     "imgstore %s takes --%s but its --help does not say so"
                                     % (cmd, opt))
                else:
                    self.assertEqual(rc, EXIT_USAGE, (cmd, opt, out, err))
            self.assertIn("repo", accepted, cmd)
            if cmd == "pull":
                self.assertIn("-o, --output", text)
        for cmd in ("push", "pull", "ls", "show", "deploy", "verify", "history", "sign"):
            text = run(cmd, "--help")[1]
            for opt in ("--server", "--token", "--json"):
                self.assertIn(opt, text, cmd)
        for cmd in ("push", "sign", "deploy", "rollback", "trust", "init"):
            self.assertIn("--key FILE", run(cmd, "--help")[1], cmd)
        self.assertIn("--deep", run("verify", "--help")[1])

    def test_a_refused_option_is_one_line_with_the_command_prefix(self):
        for cmd in commands():
            rc, out, err = run(cmd, "--no-such-option")
            self.assertEqual(rc, EXIT_USAGE, err)
            self.assertEqual(out, "")
            self.assertOneLineError(err, "imgstore %s: unknown option '--no-such-option'" % cmd,
                                    "imgstore %s --help" % cmd)
        for args, said in ((("push", "--name"), "option '--name' needs a value"),
                           (("ls", "--json=1"), "option '--json' takes no value"),
                           (("pull", "-x"), "unknown option '-x'"),
                           (("pull", "app", "-o"), "option '-o' needs a value"),
                           (("history", "app", "--reason", "x"), "unknown option '--reason'"),
                           (("deploy", "app", "1", "--channel", "p", "--to", "1"),
                            "unknown option '--to'")):
            rc, out, err = run(*args)
            self.assertEqual(rc, EXIT_USAGE, err)
            self.assertOneLineError(err, "imgstore %s: %s" % (args[0], said))


if __name__ == "__main__":
    main()
