"""
The endpoints a remote client uses to verify everything itself (docs/security.md,
docs/api.md "Signed documents"): the policy chain, exact manifest bytes and signatures,
signed channel states; and the writes made with the client's own keys: a release signature
added to a version a key-less server stored pending, and a channel state the client built
and signed. Signatures are made with stock `ssh-keygen -Y sign`, bodies checked against
their schemas and the bytes against the git repository.
"""

import json
import os
import shutil
import subprocess
import threading
import time

from imgstore_testlib import version_path
from imgstore_testlib import (ServerTestCase, base_env, main, multipart, new_token, rfc3339,
                              run, sha256, validate)


def ssh_sign(key, data, workdir):
    msg = os.path.join(workdir, "msg-%s" % sha256(data)[:12])
    with open(msg, "wb") as f:
        f.write(data)
    p = subprocess.run(["ssh-keygen", "-Y", "sign", "-q", "-f", key, "-n", "imgstore", msg],
                       capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("ssh-keygen -Y sign: %s" % p.stderr.decode())
    with open(msg + ".sig") as f:
        sig = f.read()
    os.unlink(msg + ".sig")
    return sig


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Signed(ServerTestCase):

    def setUp(self):
        if not shutil.which("ssh-keygen"):
            self.skipTest("ssh-keygen not installed")
        super().setUp()
        self.key = os.path.join(base_env()["XDG_CONFIG_HOME"], "imgstore", "key")
        self.image, _ = self.random_file("app.img", 300 * 1024)
        self.push(self.image, "--name", "app", "--version", "1.0", "--kind", "unknown")
        self.ok("deploy", "app", "1.0", "--channel", "prod")
        self.reader, read_line = new_token("read", "reader")
        self.boss, admin_line = new_token("admin", "boss")
        self.lines = (read_line, admin_line)

    def keyless(self):
        """A server without a signing key: its config dir holds none."""
        empty = os.path.join(self.tmp, "nokey")
        os.makedirs(empty, exist_ok=True)
        return self.serve(*self.lines, env={"XDG_CONFIG_HOME": empty})

    def blob(self, path):
        return self.git("show", "main:" + path, binary=True)

    def stored_sigs(self, directory):
        names = self.git("ls-tree", "--name-only", "main:" + directory).split()
        return sorted(self.blob(directory + "/" + n).decode() for n in names)

    def other_key(self):
        path = os.path.join(self.tmp, "other-key")
        rc, _, err = run("key", "generate", "--out", path)
        self.assertEqual(rc, 0, err)
        return path

    # -- reads ------------------------------------------------------------------------------

    def test_trust_is_the_stored_policy_chain_with_store_id_and_tip(self):
        server = self.serve(*self.lines)
        body = server.get_json("/v1/trust", token=self.reader)
        validate(body, "api_trust.schema.json")
        self.assertEqual(body["store_id"], self.git("rev-list", "--max-parents=0", "main").strip())
        self.assertEqual(body["tip"], self.tip())
        self.assertEqual([p["version"] for p in body["policies"]], [1])
        self.assertEqual(body["policies"][0]["policy"].encode(), self.blob("trust/policy.json"))
        self.assertEqual(sorted(body["policies"][0]["signatures"]),
                         self.stored_sigs("trust/signatures"))
        # a policy change moves the tip: the answer follows it
        other = self.other_key()
        with open(other + ".pub") as f:
            pub = f.read().strip()
        self.ok("trust", "add-key", "release", pub)
        body = server.get_json("/v1/trust", token=self.reader)
        self.assertEqual(([p["version"] for p in body["policies"]], body["tip"]),
                         ([1, 2], self.tip()))
        self.assertEqual(body["policies"][1]["policy"].encode(), self.blob("trust/policy.json"))

    def test_manifest_is_the_exact_stored_bytes_and_immutable(self):
        server = self.serve(*self.lines)
        stored = self.blob(version_path("app", "1.0", "manifest.json"))
        path = "/v1/images/app/1.0/manifest"
        for _ in range(2):  # built, then from the answer cache
            status, hdrs, data = server.request("GET", path, token=self.reader)
            self.assertEqual((status, data), (200, stored))
            self.assertEqual(hdrs["etag"], '"%s"' % sha256(stored))
            self.assertEqual(hdrs["content-type"], "application/json")
            self.assertEqual(hdrs["cache-control"], "public, max-age=31536000, immutable")
        status, _, data = server.request("GET", path, token=self.reader,
                                         headers={"If-None-Match": '"%s"' % sha256(stored)})
        self.assertEqual((status, data), (304, b""))
        sigs = server.get_json("/v1/images/app/1.0/signatures", token=self.reader)
        validate(sigs, "api_signatures.schema.json")
        self.assertEqual(sorted(sigs["signatures"]), self.stored_sigs(version_path("app", "1.0", "signatures")))
        state = server.get_json("/v1/channels/app/prod/signed", token=self.reader)
        validate(state, "api_channel_signed.schema.json")
        self.assertEqual(state["state"].encode(), self.blob("channels/app/prod.json"))
        self.assertEqual(sorted(state["signatures"]), self.stored_sigs("channels/app/prod.sigs"))
        for p in ("/v1/images/app/9.9/manifest", "/v1/images/app/9.9/signatures",
                  "/v1/channels/app/nope/signed"):
            status, _, data = server.request("GET", p, token=self.reader)
            self.assertJsonError(status, data, 404, "not_found")
        for p in ("/v1/images/..%2Fx/1.0/manifest", "/v1/images/app/%2e%2e/signatures",
                  "/v1/channels/app/a%2Fb/signed"):
            status, _, data = server.request("GET", p, token=self.reader)
            self.assertJsonError(status, data, 400, "invalid")
        status, _, data = server.request("GET", "/v1/trust")
        self.assertJsonError(status, data, 401, "unauthorized")

    # -- a key-less server stores uploads pending; the client signs them ---------------------

    def test_keyless_upload_is_pending_until_the_client_adds_its_signature(self):
        server = self.keyless()
        payload = os.urandom(200 * 1024)
        ctype, form = multipart([("svc.img", payload)], [("sha256.svc.img", sha256(payload))])
        status, _, data = server.request("POST", "/v1/images/svc/2.0", body=form,
                                         headers={"Content-Type": ctype}, token=self.boss)
        self.assertEqual(status, 201, data)
        version = server.get_json("/v1/images/svc/2.0", token=self.reader)
        self.assertEqual((version["trust"]["valid"], version["trust"]["trusted"]), (0, False))
        self.assertEqual(server.get_json("/v1/images/svc/2.0/signatures", token=self.reader),
                         {"signatures": []})
        _, _, manifest = server.request("GET", "/v1/images/svc/2.0/manifest", token=self.reader)
        path = "/v1/images/svc/2.0/signatures"
        tip = self.tip()
        # malformed JSON and armour: 400; a signature by a key the policy does not list, or
        # over other bytes: 403 untrusted_key; an unknown version: 404; nothing committed
        for body in (b"{", b"[]", b'{"signature": 1}', b'{"signature": "x", "y": "z"}',
                     b'{"signature":"a","signature":"a"}'):
            status, _, data = server.request("POST", path, body=body, token=self.boss)
            self.assertJsonError(status, data, 400, "invalid")
        status, _, data = server.request("POST", path, token=self.boss, body={
            "signature": "-----BEGIN SSH SIGNATURE-----\nnot base64\n-----END SSH SIGNATURE-----\n"})
        self.assertJsonError(status, data, 400, "invalid")
        for sig in (ssh_sign(self.other_key(), manifest, self.tmp),
                    ssh_sign(self.key, manifest + b" ", self.tmp)):
            status, _, data = server.request("POST", path, body={"signature": sig},
                                             token=self.boss)
            self.assertJsonError(status, data, 403, "untrusted_key")
        sig = ssh_sign(self.key, manifest, self.tmp)
        status, _, data = server.request("POST", "/v1/images/svc/9.9/signatures",
                                         body={"signature": sig}, token=self.boss)
        self.assertJsonError(status, data, 404, "not_found")
        status, _, data = server.request("POST", path, body={"signature": sig},
                                         token=self.reader)
        self.assertJsonError(status, data, 403, "forbidden")
        self.assertEqual(self.tip(), tip)
        # the real release key: trusted, one commit, the signature stored as sent
        status, _, data = server.request("POST", path, body={"signature": sig}, token=self.boss)
        self.assertEqual(status, 200, data)
        answer = json.loads(data)
        validate(answer, "api_sign_result.schema.json")
        self.assertEqual(answer, {"name": "svc", "version": "2.0", "signatures": 1,
                                  "threshold": 1, "trusted": True})
        self.assertEqual(self.stored_sigs(version_path("svc", "2.0", "signatures")), [sig])
        self.assertEqual(len(self.git("rev-list", tip + "..main").split()), 1)
        self.assertTrue(server.get_json("/v1/images/svc/2.0",
                                        token=self.reader)["trust"]["trusted"])
        self.ok("pull", "svc@2.0", "-o", self.path("out") + "/")
        self.assertFsckClean()

    # -- channel states the client built and signed ------------------------------------------

    def next_state(self, server, version, **changes):
        current = json.loads(server.get_json("/v1/channels/app/prod/signed",
                                             token=self.reader)["state"])
        digest = changes.get("manifest_sha256") or \
            sha256(self.blob(version_path("app", version, "manifest.json")))
        now = int(time.time())
        state = {"schema": "imgstore.channel/1", "name": "app", "channel": "prod",
                 "version": version, "manifest_sha256": digest,
                 "sequence": current["sequence"] + 1, "time": rfc3339(now),
                 "expires": rfc3339(now + 86400), "actor": "client", "action": "deploy",
                 "previous_version": current["version"]}
        state.update(changes)
        return {k: v for k, v in state.items() if v is not None}

    def post_state(self, server, state, key=None, signatures=None):
        data = canonical(state)
        if signatures is None:
            signatures = [ssh_sign(key or self.key, data, self.tmp)]
        return server.request("POST", "/v1/channels/app/prod/signed", token=self.boss,
                              body={"state": data.decode(), "signatures": signatures})

    def test_client_signed_state_moves_the_channel_and_wakes_watchers(self):
        self.push(self.image, "--name", "app", "--version", "2.0", "--kind", "unknown")
        server = self.keyless()
        watch = {}
        t = threading.Thread(target=lambda: watch.setdefault("r", server.request(
            "GET", "/v1/channels/app/prod?wait=30&after=1", token=self.reader, timeout=60)))
        t.start()
        time.sleep(0.5)
        state = self.next_state(server, "2.0")
        status, _, data = self.post_state(server, state)
        self.assertEqual(status, 200, data)
        answer = json.loads(data)
        validate(answer, "channel.schema.json")
        self.assertEqual((answer["version"], answer["sequence"]), ("2.0", 2))
        self.assertEqual(self.blob("channels/app/prod.json"), canonical(state))
        t.join(10)
        self.assertFalse(t.is_alive(), "the long-poll did not wake")
        self.assertEqual(json.loads(watch["r"][2])["sequence"], 2)
        signed = server.get_json("/v1/channels/app/prod/signed", token=self.reader)
        self.assertEqual(signed["state"].encode(), canonical(state))
        # the same state again: the channel moved past it, 409, rebuild
        tip = self.tip()
        status, _, data = self.post_state(server, state)
        self.assertJsonError(status, data, 409, "conflict")
        # too few or untrusted signatures: 403; a bad state: 400; an unknown version: 404
        status, _, data = self.post_state(server, self.next_state(server, "1.0"), signatures=[])
        self.assertJsonError(status, data, 403, "untrusted_key")
        status, _, data = self.post_state(server, self.next_state(server, "1.0"),
                                          key=self.other_key())
        self.assertJsonError(status, data, 403, "untrusted_key")
        for bad in (self.next_state(server, "1.0", channel="staging"),
                    self.next_state(server, "1.0", time=rfc3339(time.time() - 86400)),
                    self.next_state(server, "1.0", expires=rfc3339(time.time() - 60))):
            status, _, data = self.post_state(server, bad)
            self.assertJsonError(status, data, 400, "invalid")
        # a stack other than the one the move derives from the current state: the client
        # would choose where the next rollback lands (docs/format.md)
        status, _, data = self.post_state(server, self.next_state(server, "1.0",
                                                                  stack=["2.0", "0.9"]))
        self.assertJsonError(status, data, 400, "invalid")
        self.assertIn("stack[1] is 0.9 where this deploy from sequence 2 leaves 1.0",
                      json.loads(data)["error"]["message"])
        status, _, data = server.request("POST", "/v1/channels/app/prod/signed", token=self.boss,
                                         body={"state": canonical(self.next_state(
                                             server, "1.0")).decode() + " ", "signatures": []})
        self.assertJsonError(status, data, 400, "invalid")
        status, _, data = self.post_state(server, self.next_state(
            server, "7.7", manifest_sha256=sha256(b"none")))
        self.assertJsonError(status, data, 404, "not_found")
        status, _, data = server.request("POST", "/v1/channels/app/prod/signed",
                                         token=self.reader, body={"state": "{}",
                                                                  "signatures": []})
        self.assertJsonError(status, data, 403, "forbidden")
        self.assertEqual(self.tip(), tip)
        # a rollback is a new state too; this one carries the stack it derives
        status, _, data = self.post_state(server, self.next_state(server, "1.0",
                                                                  action="rollback", stack=[]))
        self.assertEqual(status, 200, data)
        self.ok("pull", "app", "--channel", "prod", "-o", self.path("prod.img"))
        self.assertFsckClean()


if __name__ == "__main__":
    main()
