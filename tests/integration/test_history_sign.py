#!/usr/bin/env python3
"""
history of signatures (issue #10, item 12): a sign entry's "version" is the version signed,
not the signer's key id, and the commit subject spells the key id one way, as `imgstore key
show` and `ssh-keygen -l` do ("SHA256:" + base64 with + and /), whether the signature was
added locally or through a server.
"""

import json

from imgstore_testlib import ServerTestCase, main, new_token, run, validate


class HistorySign(ServerTestCase):

    def key_with_plus_or_slash(self, name):
        """A key whose id has a '+' or a '/', where the two spellings differ."""
        for i in range(64):
            path = self.path("%s-%d.key" % (name, i))
            self.ok("key", "generate", "--out", path)
            key_id = self.okjson("key", "show", path)["key_id"]
            if "+" in key_id or "/" in key_id:
                self.ok("trust", "add-key", "release", path + ".pub")
                return path, key_id
        self.fail("no key id with + or / in 64 keys")

    def test_sign_entries_carry_the_version_and_one_spelling_of_the_key_id(self):
        local_key, local_id = self.key_with_plus_or_slash("local")
        remote_key, remote_id = self.key_with_plus_or_slash("remote")
        p, _ = self.random_file("app.img", 4096)
        self.push(p, "--name", "app", "--version", "1.0", "--kind", "unknown")
        self.ok("sign", "app@1.0", "--key", local_key)
        token, line = new_token("read,push", "ci")
        server = self.serve(line)
        rc, out, err = run("sign", "app@1.0", "--key", remote_key, "--server", server.url,
                           "--token", token)
        self.assertEqual(rc, 0, out + err)
        for history in (self.okjson("history", "app"),
                        json.loads(run("history", "app", "--json", "--server", server.url,
                                       "--token", token)[1])):
            validate(history, "api_history.schema.json")
            signs = [e for e in history["entries"] if e["action"] == "sign"]
            self.assertEqual([e["summary"] for e in signs],
                             ["sign app 1.0 by " + remote_id, "sign app 1.0 by " + local_id])
            self.assertEqual([e["version"] for e in signs], ["1.0", "1.0"])
            pushes = [e for e in history["entries"] if e["action"] == "push"]
            self.assertEqual([e["version"] for e in pushes], ["1.0"])
        subjects = [s for s in self.subjects() if s.startswith("sign ")]
        self.assertEqual(subjects, ["sign app 1.0 by " + remote_id, "sign app 1.0 by " + local_id])


if __name__ == "__main__":
    main()
