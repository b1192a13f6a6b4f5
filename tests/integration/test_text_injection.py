#!/usr/bin/env python3
"""
Terminal escape injection (issue #10, item 6): a reason, a label value or a source holding a
control character (ESC, BEL, CR/LF, C1, bidi overrides) is refused where it enters, in local
mode, through the CLI against a server and through the HTTP API, with one message naming the
field and the rule, and nothing is stored. What older stores or a git-level writer hold is
escaped when printed, so `history` never replays an escape sequence or a forged line.
"""

import json
import os

from imgstore_testlib import (EXIT_FAIL, ServerTestCase, git_ok, main, multipart, new_token,
                              run)

RULE = "a text is one line of printable characters"
HOSTILE = ["\x1b[2J", "bell\x07", "boot loop\r\n2026-11-25T03:12:00Z  deadbeef  mallory  "
           "deploy app prod 6.6.6", "\u009b2J", "evil\u202etxt.exe"]


class TextInjection(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.file, _ = self.random_file("app.img", 4096)
        self.push(self.file, "--name", "app", "--version", "1", "--kind", "unknown")
        p, _ = self.random_file("two/app.img", 4096)
        self.push(p, "--name", "app", "--version", "2", "--kind", "unknown")
        self.ok("deploy", "app", "1", "--channel", "prod")
        self.admin, line = new_token("admin", "ops")
        self.server = self.serve(line)

    def rim(self, *args):
        return run(*args, "--server", self.server.url, "--token", self.admin)

    def assertRefused(self, rc, out, err, field):
        self.assertEqual(rc, EXIT_FAIL, out + err)
        line = self.assertOneLineError(err, field + ": control character U+", RULE)
        for c in line:
            self.assertTrue(c == " " or c.isprintable(), "unescaped %r in %r" % (c, line))
        return line

    def test_control_characters_are_refused_at_input_in_both_modes(self):
        tip = self.tip()
        for text in HOSTILE:
            for im in (self.im, self.rim):
                rc, out, err = im("push", self.file, "--name", "app", "--version", "3",
                                  "--kind", "unknown", "--label", "ci.job=" + text)
                self.assertRefused(rc, out, err, "label ci.job")
                rc, out, err = im("push", self.file, "--name", "app", "--version", "3",
                                  "--kind", "unknown", "--source", "https://x/" + text + "@1")
                self.assertRefused(rc, out, err, "source")
                rc, out, err = im("deploy", "app", "2", "--channel", "prod", "--reason", text)
                self.assertRefused(rc, out, err, "reason")
                rc, out, err = im("rollback", "app", "--channel", "prod", "--reason", text)
                self.assertRefused(rc, out, err, "reason")
        self.assertEqual(self.tip(), tip, "a refused text changed the store")

    def test_control_characters_are_refused_by_the_api(self):
        tip = self.tip()
        for fields, what in (([("label", "ci.job=\x1b[2J")], "label ci.job"),
                             ([("source", "https://x/\x07@1")], "source")):
            ctype, body = multipart([("app.img", b"x" * 100)], fields)
            status, _, data = self.server.request("POST", "/v1/images/app/3", body=body,
                                                  headers={"Content-Type": ctype},
                                                  token=self.admin)
            error = self.assertJsonError(status, data, 400, "invalid")
            self.assertIn(what + ": control character U+", error["message"])
        for action, body in (("deploy", {"version": "2"}), ("rollback", {"to": "2"})):
            body["reason"] = "ok\r\nforged"
            status, _, data = self.server.request("POST", "/v1/channels/app/prod/" + action,
                                                  body=body, token=self.admin)
            error = self.assertJsonError(status, data, 400, "invalid")
            self.assertIn("reason: control character U+000D", error["message"])
        self.assertEqual(self.tip(), tip, "a refused text changed the store")

    def test_stored_control_characters_are_escaped_when_printed(self):
        """A commit written with stock git (an old store, a git-level writer) is shown
        escaped by history, locally and through the server."""
        tip = self.tip()  # the deploy of app 1 to prod, rewritten with a hostile message
        forged = git_ok("commit-tree", tip + "^{tree}", "-p", tip + "^", "-m",
                        "deploy app prod 1 \x1b[2J\x07\rforged\n\nbody", git_dir=self.repo,
                        env={"GIT_AUTHOR_NAME": "mal\x1b]0;x\x07lory"}).strip()
        self.git("update-ref", "refs/heads/main", forged, tip)
        for out in (self.ok("history", "app"), self.rim("history", "app")[1]):
            self.assertNotIn("\x1b", out)
            self.assertNotIn("\x07", out)
            self.assertNotIn("\r", out)
            self.assertIn("\\x1b[2J\\x07\\x0dforged", out)
        data = json.loads(self.ok("history", "app", "--json"))
        self.assertTrue(any("\x1b[2J" in e["summary"] for e in data["entries"]), data)

    def test_stored_markup_is_text_on_the_status_page(self):
        """The status page (issue #12) shows stored text as text: markup in a label, a
        source and a reason arrives escaped, never as elements or attributes, and the page
        forbids script and outside loads whatever it holds."""
        label = "<script>alert(1)</script>"
        source = "https://x/\"><img src=x onerror=alert(2)>"
        reason = "<b onmouseover='alert(3)'>boot</b> & \"loop\""
        self.push(self.file, "--name", "app", "--version", "3", "--kind", "unknown",
                  "--label", "ci.job=" + label, "--source", source + "@1")
        self.ok("deploy", "app", "3", "--channel", "prod", "--reason", reason)
        for path in ("/", "/ui/images/app", "/ui/images/app/3", "/ui/channels/app/prod"):
            status, headers, data = self.server.request("GET", path, token=self.admin)
            self.assertEqual(status, 200, path)
            page = data.decode()
            self.assertTrue(headers["content-type"].startswith("text/html"), path)
            self.assertIn("script-src", headers["content-security-policy"].replace(
                "default-src 'none'", "script-src"), path)
            for raw in ("<script", "<img", "<b onmouseover", "onmouseover='"):
                self.assertNotIn(raw, page, path)
        page = self.server.request("GET", "/ui/images/app/3", token=self.admin)[2].decode()
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;", page)
        self.assertIn("https://x/&quot;&gt;&lt;img src=x onerror=alert(2)&gt;", page)
        page = self.server.request("GET", "/ui/channels/app/prod", token=self.admin)[2].decode()
        self.assertIn("&lt;b onmouseover=&#39;alert(3)&#39;&gt;boot&lt;/b&gt; &amp; "
                      "&quot;loop&quot;", page)


if __name__ == "__main__":
    main()
