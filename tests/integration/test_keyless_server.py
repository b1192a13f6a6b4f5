#!/usr/bin/env python3
"""
A server without a signing key says what it does (issue #10, item 13): its warning at start
says uploads are stored pending and its commits are unsigned, which is what happens (an
upload is 201 and pending, the commit carries no gpgsig, as docs/server.md and
docs/format.md say), and a deploy through it is refused with a message naming the way that
works (a state the client signs, posted to .../signed).
"""

from imgstore_testlib import ServerTestCase, main, multipart, new_token


class KeylessServer(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.token, line = new_token("admin", "ops")
        self.server = self.serve(line, env={"XDG_CONFIG_HOME": self.path("nokey")})

    def test_the_warning_says_what_a_keyless_server_does(self):
        warnings = [l for l in self.server.log().splitlines() if " warn " in l]
        self.assertEqual(len(warnings), 1, self.server.log())
        self.assertNotIn("will be refused", warnings[0])
        for said in ("no signing key", "uploads are stored pending",
                     "commits this server writes are unsigned", "--key"):
            self.assertIn(said, warnings[0])
        # and it is so: the upload is stored, pending, in an unsigned commit
        ctype, body = multipart([("app.img", b"\x01" * 4096)])
        status, _, data = self.server.request("POST", "/v1/images/app/1", body=body,
                                              headers={"Content-Type": ctype},
                                              token=self.token)
        self.assertEqual(status, 201, data)
        trust = self.server.get_json("/v1/images/app/1", token=self.token)["trust"]
        self.assertEqual((trust["valid"], trust["trusted"]), (0, False))
        self.assertEqual(self.subjects()[0], "push app 1")
        self.assertNotIn("gpgsig", self.git("cat-file", "commit", "main"))
        # the commits made with a key stay signed
        self.assertIn("gpgsig", self.git("cat-file", "commit", "main~1"))

    def test_a_deploy_through_a_keyless_server_names_the_way_that_works(self):
        p, _ = self.random_file("app.img", 4096)
        self.push(p, "--name", "app", "--version", "1", "--kind", "unknown")
        tip = self.tip()
        for action, body in (("deploy", {"version": "1"}), ("rollback", {"to": "1"})):
            status, _, data = self.server.request("POST", "/v1/channels/app/prod/" + action,
                                                  body=body, token=self.token)
            error = self.assertJsonError(status, data, 400, "invalid")
            self.assertIn("no signing key", error["message"])
            self.assertIn("/v1/channels/app/prod/signed", error["message"])
            self.assertNotIn("--key", error["message"])
        self.assertEqual(self.tip(), tip)


if __name__ == "__main__":
    main()
