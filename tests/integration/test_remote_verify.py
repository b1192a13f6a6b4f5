#!/usr/bin/env python3
"""
Remote verify sees every channel (issue #10, item 5): GET /v1/images/{name} answers
verification_failed for a channel state it cannot read instead of leaving the channel out,
so `verify --deep --server` fails (exit 3) with a line naming it while other images still
verify; and a healthy channel's line counts its deploy signatures as local verify does.
"""

import json

from imgstore_testlib import (EXIT_VERIFY, ServerTestCase, hash_object, main, new_token,
                              rewrite_main, run)


class RemoteVerify(ServerTestCase):

    def setUp(self):
        super().setUp()
        for name in ("app", "other"):
            p, _ = self.random_file(name + "/app.img", 64 * 1024)
            self.push(p, "--name", name, "--version", "1", "--kind", "unknown")
            self.ok("deploy", name, "1", "--channel", "prod")
        self.token, line = new_token("read", "reader")
        self.server = self.serve(line, "cache_max_bytes = 0")

    def rim(self, *args):
        return run(*args, "--server", self.server.url, "--token", self.token)

    def test_a_healthy_channel_counts_its_deploy_signatures(self):
        local = [l for l in self.ok("verify").splitlines() if "channel" in l]
        rc, out, err = self.rim("verify", "--deep")
        self.assertEqual(rc, 0, out + err)
        remote = [l for l in out.splitlines() if "channel" in l]
        self.assertEqual(remote, local)
        self.assertIn("ok      channel app/prod  signatures 1/1", remote)
        rc, out, err = self.rim("verify", "--json")
        channels = json.loads(out)["channels"]
        self.assertEqual({(c["name"], c["signatures"], c["threshold"]) for c in channels},
                         {("app", 1, 1), ("other", 1, 1)})

    def test_a_damaged_channel_state_fails_remote_verify(self):
        rewrite_main(self.repo, "channels/app/prod.json", "100644", "blob",
                     hash_object(self.repo, b'{"garbage":1}'))
        status, _, data = self.server.request("GET", "/v1/images/app", token=self.token)
        error = self.assertJsonError(status, data, 500, "verification_failed")
        self.assertIn("channels/app/prod.json", error["message"])
        # the listing of all images stays usable, as local ls does
        self.assertEqual(self.server.request("GET", "/v1/images", token=self.token)[0], 200)
        for args in (("verify", "--deep"), ("verify", "app", "--deep"), ("verify",)):
            rc, out, err = self.rim(*args)
            self.assertEqual(rc, EXIT_VERIFY, out + err)
            failed = [l for l in out.splitlines() if l.startswith("FAILED")]
            self.assertEqual(len(failed), 1, out)
            self.assertIn("channels/app/prod.json", failed[0])
            self.assertOneLineError(err, "verification failed")
        rc, out, err = self.rim("verify", "--deep", "--json")
        self.assertEqual(rc, EXIT_VERIFY, err)
        report = json.loads(out)
        self.assertFalse(report["ok"])
        by = {(v["name"], v["version"]): v["status"] for v in report["versions"]}
        self.assertEqual(by[("app", "")], "failed")
        self.assertEqual(by[("other", "1")], "ok")
        rc, out, err = self.rim("ls", "app")
        self.assertEqual(rc, EXIT_VERIFY, out + err)


if __name__ == "__main__":
    main()
