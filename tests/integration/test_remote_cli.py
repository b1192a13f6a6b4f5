"""
The imgstore CLI against imgstore serve (--server): push and pull of every real fixture
byte-identical over HTTP, pull resuming a partial download, and what a client checks itself
so that a compromised server cannot make it accept anything unsigned: a tampering proxy in
front of the real server flips file bytes, drops or swaps signatures, and replays old channel
states; the store is also tampered on disk with stock git under a running server. watch, the
client-signed deploy and rollback, the config file, pins and one-line auth errors.
"""

import http.client
import http.server
import json
import os
import select
import signal
import subprocess
import threading
import time

from imgstore_testlib import (BIN, EXIT_FAIL, EXIT_OK, EXIT_USAGE, EXIT_VERIFY, MiB,
                              ServerTestCase, base_env, fixture, fixture_sums, hash_object,
                              main, needs_fixtures, new_token, rewrite_main, rfc3339, run,
                              sha256, sha256_file)

DEMO = ["vmlinuz-6.1.0-56-cloud-amd64", "initrd-busybox.cpio.gz", "cmdline.txt"]
IPXE = ["ipxe.efi", "ipxe.iso", "ipxe.lkrn"]
MEMTEST = ["memtest86+x64.bin", "memtest86+x64.efi", "memtest86+x64.iso"]


class TamperProxy:
    """An HTTP proxy in front of the real server that rewrites answers: the compromised
    server or mirror of docs/security.md. tamper(method, path, status, body) -> (status, body);
    before(method, path), when given, runs before a request goes upstream."""

    def __init__(self, upstream, tamper, pause_after=None, before=None):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if before:
                    before(method, self.path)
                conn = http.client.HTTPConnection(upstream.host, upstream.port, timeout=120)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("authorization", "range", "content-type")}
                conn.request(method, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                status, data = proxy.tamper(method, self.path, resp.status, data)
                self.send_response(status)
                for k, v in resp.getheaders():
                    if k.lower() in ("content-type", "content-range", "etag"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if pause_after and "/files/" in self.path:
                    # a stalled download: some bytes, then nothing for a while
                    self.wfile.write(data[:pause_after[0]])
                    self.wfile.flush()
                    time.sleep(pause_after[1])
                    data = data[pause_after[0]:]
                try:
                    self.wfile.write(data)
                except OSError:
                    pass
                conn.close()

            def do_GET(self):
                self.forward("GET")

            def do_POST(self):
                self.forward("POST")

        self.tamper = tamper
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.handle_error = lambda *args: None  # clients that hang up are the point
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def readline(proc, timeout):
    """One line of PROC's stdout, or AssertionError after TIMEOUT seconds."""
    deadline, buf = time.time() + timeout, b""
    while not buf.endswith(b"\n"):
        r, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.time()))
        if not r:
            raise AssertionError("no line within %ss (got %r)" % (timeout, buf))
        b = os.read(proc.stdout.fileno(), 1)
        if not b:
            raise AssertionError("EOF (got %r): %r" % (buf, proc.stderr.read()))
        buf += b
    return buf.decode()


class Remote(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.admin, admin_line = new_token("admin", "ops")
        self.reader, read_line = new_token("read", "reader")
        self.server = self.serve(admin_line, read_line, "cache_max_bytes = 0",
                                 "max_upload_bytes = 256M")

    def rim(self, *args, server=None, token=None, env=None, **kw):
        """imgstore ARGS against a server: (rc, stdout, stderr)."""
        args = list(args) + ["--server", server or self.server.url,
                             "--token", token or self.admin]
        return run(*args, env=env, **kw)

    def rok(self, *args, **kw):
        rc, out, err = self.rim(*args, **kw)
        self.assertEqual(rc, 0, "imgstore %s -> %d\n%s%s" % (" ".join(map(str, args)), rc,
                                                            out[:2000], err))
        return out

    def assertRemoteFails(self, rc, err, code, *needles):
        self.assertEqual(rc, code, err)
        self.assertOneLineError(err, *needles)

    def assertSshVerifies(self, msg, armored):
        """Stock ssh-keygen accepts ARMORED over MSG by this machine's (deploy) key."""
        pub = self.okjson("key", "show")["public_key"]
        allowed, sig = self.path("allowed_signers"), self.path("doc.sig")
        with open(allowed, "w") as f:
            f.write("ci@imgstore %s\n" % pub)
        with open(sig, "w") as f:
            f.write(armored)
        p = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", allowed, "-I", "ci@imgstore",
                            "-n", "imgstore", "-s", sig], input=msg, capture_output=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))

    def generated(self, name, size):
        p, digest = self.random_file(name, size)
        return p, digest

    # -- round trips ---------------------------------------------------------------------

    @needs_fixtures
    def test_push_pull_round_trip_of_every_fixture(self):
        sums = fixture_sums()
        for name, version, files in (("demo", "1.0", DEMO), ("ipxe", "1", IPXE),
                                     ("memtest", "7.20", MEMTEST)):
            out = self.rok("push", "--name", name, "--version", version,
                           *[fixture(f) for f in files])
            self.assertEqual(out.strip(), "%s@%s" % (name, version))
            dest = self.path("pulled", name)
            os.makedirs(dest)
            pulled = json.loads(self.rok("pull", "%s@%s" % (name, version), "-o", dest + "/",
                                         "--json"))
            self.assertEqual(sorted(f["path"] for f in pulled["files"]), sorted(files))
            for f in files:
                self.assertEqual(sha256_file(os.path.join(dest, f)), sums[f], f)
            self.assertEqual([n for n in os.listdir(dest) if n.startswith(".")], [],
                             "temp files left behind")
            # the store holds exactly what local mode would read
            self.assertEqual(self.okjson("show", "%s@%s" % (name, version))["manifest_sha256"],
                             pulled["manifest_sha256"])
        listing = json.loads(self.rok("ls", "--json"))
        self.assertEqual([i["name"] for i in listing["images"]], ["demo", "ipxe", "memtest"])
        shown = json.loads(self.rok("show", "demo@1.0", "--json"))
        self.assertTrue(shown["signatures"]["trusted"])
        # show and diff print exactly what local mode prints for the same store
        for args in (("show", "demo@1.0"), ("show", "ipxe@1", "--json"),
                     ("diff", "demo@1.0", "ipxe@1"), ("diff", "ipxe@1", "memtest@7.20", "--json"),
                     ("trust", "show"), ("trust", "show", "--json")):
            self.assertEqual(self.rok(*args), self.ok(*args), args)
        rc, out, err = self.rim("trust", "set-threshold", "release", "2")
        self.assertRemoteFails(rc, err, EXIT_USAGE, "only 'trust show'")
        # re-pushing identical bytes is an idempotent success
        rc, out, err = self.rim("push", "--name", "demo", "--version", "1.0",
                                *[fixture(f) for f in DEMO])
        self.assertEqual((rc, out.strip()), (0, "demo@1.0"), err)
        self.assertIn("already stored", err)
        self.assertFsckClean()

    def test_pull_to_stdout_and_single_file(self):
        p, digest = self.generated("app.img", 5 * MiB + 3)
        self.rok("push", p, "--name", "app", "--version", "1", "--kind", "unknown")
        rc, out, err = self.rim("pull", "app@1", "-o", "-", binary=True)
        self.assertEqual(rc, 0, err)
        self.assertEqual(sha256(out), digest)
        target = self.path("renamed.img")
        self.rok("pull", "app@1", "-o", target)
        self.assertEqual(sha256_file(target), digest)

    # -- resume --------------------------------------------------------------------------

    def test_pull_resumes_from_a_partial_temp_file(self):
        p, digest = self.generated("big.img", 24 * MiB + 12345)
        self.rok("push", p, "--name", "big", "--version", "1", "--kind", "unknown")
        dest = self.path("out")
        os.makedirs(dest)
        partial = os.path.join(dest, ".big.img.imgstore-partial-%s" % digest[:16])
        with open(p, "rb") as src, open(partial, "wb") as f:
            f.write(src.read(10 * MiB + 7))
        log_before = len(self.server.log())
        self.rok("pull", "big@1", "-o", dest)
        self.assertEqual(sha256_file(os.path.join(dest, "big.img")), digest)
        self.assertFalse(os.path.exists(partial))
        # only the rest travelled: the request log counts the bytes sent
        sent = [l for l in self.server.log()[log_before:].splitlines()
                if "/files/big.img" in l and "status=206" in l]
        self.assertEqual(len(sent), 1, self.server.log()[log_before:])
        self.assertIn("bytes=%d " % (24 * MiB + 12345 - (10 * MiB + 7)), sent[0])

    def test_pull_killed_mid_download_resumes_byte_identical(self):
        p, digest = self.generated("huge.img", 16 * MiB)
        self.rok("push", p, "--name", "huge", "--version", "1", "--kind", "unknown")
        dest = self.path("out")
        os.makedirs(dest)
        partial = os.path.join(dest, ".huge.img.imgstore-partial-%s" % digest[:16])
        # a proxy that stalls after 5 MiB, so the client is surely mid-download when killed
        proxy = TamperProxy(self.server, lambda m, p, s, b: (s, b), pause_after=(5 * MiB, 20))
        self.addCleanup(proxy.close)
        env = base_env()
        proc = subprocess.Popen([BIN, "pull", "huge@1", "-o", dest, "--server", proxy.url,
                                 "--token", self.admin], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline and not (os.path.exists(partial) and
                                              os.path.getsize(partial) >= 5 * MiB):
            time.sleep(0.05)
        proc.kill()
        proc.communicate()
        self.assertEqual(os.path.getsize(partial), 5 * MiB, "no partial temp file")
        self.assertFalse(os.path.exists(os.path.join(dest, "huge.img")),
                         "an interrupted pull left a destination file")
        self.rok("pull", "huge@1", "-o", dest)
        self.assertEqual(sha256_file(os.path.join(dest, "huge.img")), digest)
        self.assertFalse(os.path.exists(partial))

    def test_garbage_in_the_partial_file_fails_then_recovers(self):
        p, digest = self.generated("app.img", 3 * MiB)
        self.rok("push", p, "--name", "app", "--version", "1", "--kind", "unknown")
        dest = self.path("out")
        os.makedirs(dest)
        partial = os.path.join(dest, ".app.img.imgstore-partial-%s" % digest[:16])
        with open(partial, "wb") as f:
            f.write(b"\0" * MiB)
        rc, _, err = self.rim("pull", "app@1", "-o", dest)
        self.assertRemoteFails(rc, err, EXIT_VERIFY, "does not match")
        self.assertFalse(os.path.exists(os.path.join(dest, "app.img")))
        self.assertFalse(os.path.exists(partial))
        self.rok("pull", "app@1", "-o", dest)
        self.assertEqual(sha256_file(os.path.join(dest, "app.img")), digest)

    # -- a compromised server --------------------------------------------------------------

    def proxied_pull(self, tamper, *args):
        proxy = TamperProxy(self.server, tamper)
        self.addCleanup(proxy.close)
        dest = self.path("out-%d" % id(tamper))
        os.makedirs(dest, exist_ok=True)
        rc, out, err = self.rim("pull", *args, "-o", dest, server=proxy.url)
        return rc, err, dest

    def test_server_flipping_a_file_byte_is_refused(self):
        p, _ = self.generated("app.img", 2 * MiB)
        self.rok("push", p, "--name", "app", "--version", "1", "--kind", "unknown")

        def flip(method, path, status, body):
            if "/files/" in path and body:
                body = bytearray(body)
                body[len(body) // 2] ^= 1
                body = bytes(body)
            return status, body
        rc, err, dest = self.proxied_pull(flip, "app@1")
        self.assertRemoteFails(rc, err, EXIT_VERIFY, "does not match the signed manifest")
        self.assertEqual(os.listdir(dest), [], "bytes were left behind")
        proxy = TamperProxy(self.server, flip)
        self.addCleanup(proxy.close)
        rc, _, _ = self.rim("pull", "app@1", "-o", "-", binary=True, server=proxy.url)
        self.assertEqual(rc, EXIT_VERIFY)

    def test_server_dropping_or_forging_signatures_is_refused(self):
        p, _ = self.generated("app.img", MiB)
        self.rok("push", p, "--name", "app", "--version", "1", "--kind", "unknown")

        def unsigned(method, path, status, body):
            if path.endswith("/signatures"):
                body = b'{"signatures":[]}'
            return status, body
        rc, err, dest = self.proxied_pull(unsigned, "app@1")
        self.assertRemoteFails(rc, err, EXIT_VERIFY, "0 of the 1 release signatures")
        self.assertEqual(os.listdir(dest), [])

        def edited(method, path, status, body):
            # a manifest that still parses, signed signatures of the original
            if path.endswith("/manifest"):
                body = body.replace(b'"builder":"', b'"builder":"x')
            return status, body
        rc, err, dest = self.proxied_pull(edited, "app@1")
        self.assertRemoteFails(rc, err, EXIT_VERIFY)
        self.assertEqual(os.listdir(dest), [])

    def test_server_swapping_in_another_versions_manifest_is_refused(self):
        p1, _ = self.generated("a/app.img", MiB)
        p2, _ = self.generated("b/app.img", MiB)
        self.rok("push", p1, "--name", "app", "--version", "1", "--kind", "unknown")
        self.rok("push", p2, "--name", "app", "--version", "2", "--kind", "unknown")

        def swap(method, path, status, body):
            if "/images/app/2/" in path and ("/manifest" in path or "/signatures" in path):
                conn = http.client.HTTPConnection(self.server.host, self.server.port)
                conn.request("GET", path.replace("/app/2/", "/app/1/"),
                             headers={"Authorization": "Bearer " + self.admin})
                body = conn.getresponse().read()
                conn.close()
            return status, body
        rc, err, dest = self.proxied_pull(swap, "app@2")
        self.assertRemoteFails(rc, err, EXIT_VERIFY, "instead")
        self.assertEqual(os.listdir(dest), [])

    def test_tampered_manifest_in_the_store_is_refused(self):
        p, _ = self.generated("app.img", MiB)
        self.rok("push", p, "--name", "app", "--version", "1", "--kind", "unknown")
        stored = self.git("show", "main:images/app/1/manifest.json", binary=True)
        forged = stored.replace(b'"builder":"', b'"builder":"evil ')
        self.assertNotEqual(forged, stored)
        rewrite_main(self.repo, "images/app/1/manifest.json", "100644", "blob",
                     hash_object(self.repo, forged))
        dest = self.path("out")
        os.makedirs(dest)
        rc, _, err = self.rim("pull", "app@1", "-o", dest)
        self.assertRemoteFails(rc, err, EXIT_VERIFY)
        self.assertEqual(os.listdir(dest), [])

    def test_tampered_file_bytes_in_the_store_are_refused(self):
        p, _ = self.generated("app.img", 3 * MiB)
        self.rok("push", p, "--name", "app", "--version", "1", "--kind", "unknown")
        chunk = self.git("rev-parse", "main:images/app/1/files/app.img/000001").strip()
        data = bytearray(self.git("cat-file", "blob", chunk, binary=True))
        data[100] ^= 0xFF
        rewrite_main(self.repo, "images/app/1/files/app.img/000001", "100644", "blob",
                     hash_object(self.repo, bytes(data)))
        dest = self.path("out")
        os.makedirs(dest)
        # with the verified cache the server refuses before any byte: verification failed
        cached = self.serve("token = %s scopes=read name=r" % sha256(self.admin.encode()))
        rc, _, err = self.rim("pull", "app@1", "-o", dest, server=cached.url)
        self.assertRemoteFails(rc, err, EXIT_VERIFY)
        self.assertFalse(os.path.exists(os.path.join(dest, "app.img")))
        # streamed, the server cuts the connection before the damaged chunk; asked again from
        # there, it cuts again without a byte: told apart from a lost connection, exit 3
        rc, _, err = self.rim("pull", "app@1", "-o", dest)
        self.assertRemoteFails(rc, err, EXIT_VERIFY, "stopped twice", "damaged")
        self.assertFalse(os.path.exists(os.path.join(dest, "app.img")))
        # the same when the damaged chunk is the first one
        first = self.git("rev-parse", "main:images/app/1/files/app.img/000000").strip()
        data = bytearray(self.git("cat-file", "blob", first, binary=True))
        data[7] ^= 0xFF
        rewrite_main(self.repo, "images/app/1/files/app.img/000000", "100644", "blob",
                     hash_object(self.repo, bytes(data)))
        rc, _, err = self.rim("pull", "app@1", "-o", self.path("out0"))
        self.assertRemoteFails(rc, err, EXIT_VERIFY, "stopped twice")
        self.assertFalse(os.path.exists(self.path("out0")))

    def test_replayed_channel_state_is_refused(self):
        p1, _ = self.generated("a/app.img", MiB)
        p2, _ = self.generated("b/app.img", MiB)
        self.rok("push", p1, "--name", "app", "--version", "1", "--kind", "unknown")
        self.rok("push", p2, "--name", "app", "--version", "2", "--kind", "unknown")
        self.rok("deploy", "app", "1", "--channel", "prod")
        old_tip = self.tip()
        self.rok("deploy", "app", "2", "--channel", "prod")
        dest = self.path("out")
        pulled = json.loads(self.rok("pull", "app", "--channel", "prod", "-o", dest + "/",
                                     "--json"))
        self.assertEqual((pulled["version"], pulled["sequence"]), ("2", 2))
        # the server's store is reset to the older, validly signed state
        self.git("update-ref", "refs/heads/main", old_tip)
        os.unlink(os.path.join(dest, "app.img"))
        rc, _, err = self.rim("pull", "app", "--channel", "prod", "-o", dest + "/")
        self.assertRemoteFails(rc, err, EXIT_VERIFY, "replay")
        self.assertEqual(os.listdir(dest), [])

    def test_a_different_policy_one_under_a_pinned_store_id_is_refused(self):
        self.rok("ls")
        rc, _, err = self.rim("ls", env={"IMGSTORE_TRUST_POLICY_SHA256": "0" * 64})
        self.assertEqual(rc, 0, "ls reads listings only: %s" % err)
        rc, _, err = self.rim("show", "x@1", "--trust-policy-sha256", "0" * 64)
        self.assertRemoteFails(rc, err, EXIT_VERIFY, "pinned")

    # -- channels --------------------------------------------------------------------------

    def test_client_signed_deploy_and_rollback_stack(self):
        for v in ("1", "2", "3"):
            p, _ = self.generated("%s/app.img" % v, 300 * 1024)
            self.rok("push", p, "--name", "app", "--version", v, "--kind", "unknown")
        for v in ("1", "2", "3"):
            state = json.loads(self.rok("deploy", "app", v, "--channel", "prod", "--json"))
            self.assertEqual(state["version"], v)
        state = json.loads(self.rok("rollback", "app", "--channel", "prod", "--reason", "r1",
                                    "--json"))
        self.assertEqual((state["version"], state["action"], state["reason"]),
                         ("2", "rollback", "r1"))
        state = json.loads(self.rok("rollback", "app", "--channel", "prod", "--json"))
        self.assertEqual(state["version"], "1")
        local = self.okjson("history", "app", "--channel", "prod")
        self.assertEqual(local["entries"][0]["state"]["sequence"], 5)
        # the store accepted the client's states, signed by the client's key
        self.ok("verify")
        out = self.rok("history", "app", "--channel", "prod")
        self.assertEqual(len(out.strip().splitlines()), 5)
        # without --channel: pushes and moves, as the local history shows them
        remote = json.loads(self.rok("history", "app", "--json"))
        self.assertEqual(remote["entries"], self.okjson("history", "app")["entries"])
        self.assertEqual([e["action"] for e in remote["entries"]],
                         ["rollback"] * 2 + ["deploy"] * 3 + ["push"] * 3)
        out = self.rok("history", "app")
        self.assertEqual(len(out.strip().splitlines()), 8)
        rc, out, err = self.rim("history", "app", "--at", "@0")
        self.assertEqual(rc, EXIT_USAGE, err)

    def legacy_deploy(self, version):
        """Deploy VERSION with a state as older imgstore signed it: no stack (the server takes
        it, docs/api.md), signed with stock ssh-keygen by this machine's deploy key."""
        current = json.loads(self.server.get_json("/v1/channels/app/prod/signed",
                                                  token=self.reader)["state"])
        digest = sha256(self.git("show", "main:images/app/%s/manifest.json" % version,
                                 binary=True))
        now = int(time.time())
        state = {"schema": "imgstore.channel/1", "name": "app", "channel": "prod",
                 "version": version, "manifest_sha256": digest,
                 "sequence": current["sequence"] + 1, "time": rfc3339(now),
                 "expires": rfc3339(now + 86400), "actor": "old-client", "action": "deploy",
                 "previous_version": current["version"]}
        data = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
        msg = self.path("legacy-%d.json" % state["sequence"])
        with open(msg, "wb") as f:
            f.write(data)
        key = os.path.join(base_env()["XDG_CONFIG_HOME"], "imgstore", "key")
        p = subprocess.run(["ssh-keygen", "-Y", "sign", "-q", "-f", key, "-n", "imgstore", msg],
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        with open(msg + ".sig") as f:
            sig = f.read()
        status, _, body = self.server.request("POST", "/v1/channels/app/prod/signed",
                                              token=self.admin,
                                              body={"state": data.decode(), "signatures": [sig]})
        self.assertEqual(status, 200, body)

    def test_rollback_reads_the_signed_stack_not_the_history(self):
        for v in ("1", "2", "3"):
            p, _ = self.generated("%s/app.img" % v, 300 * 1024)
            self.rok("push", p, "--name", "app", "--version", v, "--kind", "unknown")
            state = json.loads(self.rok("deploy", "app", v, "--channel", "prod", "--json"))
        self.assertEqual(state["stack"], ["2", "1"])
        signed_path = "/v1/channels/app/prod/signed"
        seen = []

        def count(method, path, status, body):
            seen.append(path)
            return status, body

        def plant_target(method, path, status, body):
            # a server (or anyone in between) points the stack at another signed version
            if method == "GET" and path == signed_path:
                doc = json.loads(body)
                doc["state"] = doc["state"].replace('"stack":["2","1"]', '"stack":["1"]')
                body = json.dumps(doc).encode()
            return status, body
        before = self.tip()
        proxy = TamperProxy(self.server, plant_target)
        self.addCleanup(proxy.close)
        rc, _, err = self.rim("rollback", "app", "--channel", "prod", server=proxy.url)
        self.assertRemoteFails(rc, err, EXIT_VERIFY, "0 of the 1 deploy signatures")
        self.assertEqual(self.tip(), before)
        proxy = TamperProxy(self.server, count)
        self.addCleanup(proxy.close)
        state = json.loads(self.rok("rollback", "app", "--channel", "prod", "--json",
                                    server=proxy.url))
        self.assertEqual((state["version"], state["stack"]), ("2", ["1"]))
        self.assertFalse([p for p in seen if "/history" in p], seen)
        self.assertEqual(json.loads(self.git("show", "main:channels/app/prod.json"))["stack"],
                         ["1"])
        self.ok("verify")

    def test_rollback_refuses_a_channel_that_moved_while_it_was_prepared(self):
        """A rollback without --to takes its target from the live state; another deploy
        landing before its post must not turn it into a rollback of that deploy too."""
        for v in ("1", "2", "3"):
            p, _ = self.generated("%s/app.img" % v, 300 * 1024)
            self.rok("push", p, "--name", "app", "--version", v, "--kind", "unknown")
        for v in ("1", "2"):
            self.rok("deploy", "app", v, "--channel", "prod")
        raced = []

        def deploy_first(method, path):
            if method == "POST" and path == "/v1/channels/app/prod/signed" and not raced:
                raced.append(self.rok("deploy", "app", "3", "--channel", "prod", "--json"))

        proxy = TamperProxy(self.server, lambda m, p, s, b: (s, b), before=deploy_first)
        self.addCleanup(proxy.close)
        rc, _, err = self.rim("rollback", "app", "--channel", "prod", server=proxy.url)
        self.assertEqual(len(raced), 1)
        self.assertRemoteFails(rc, err, EXIT_FAIL,
                               "app/prod moved while the rollback was prepared; run it again")
        live = json.loads(self.git("show", "main:channels/app/prod.json"))
        self.assertEqual((live["version"], live["sequence"]), ("3", 3))
        # run again: the target is now computed from what runs
        state = json.loads(self.rok("rollback", "app", "--channel", "prod", "--json"))
        self.assertEqual((state["version"], state["sequence"], state["stack"]), ("2", 4, ["1"]))

    def test_rollback_target_comes_from_the_signed_history_only(self):
        for v in ("1", "2"):
            p, _ = self.generated("%s/app.img" % v, 300 * 1024)
            self.rok("push", p, "--name", "app", "--version", v, "--kind", "unknown")
            self.rok("deploy", "app", v, "--channel", "prod")
        p, _ = self.generated("3/app.img", 300 * 1024)
        self.rok("push", p, "--name", "app", "--version", "3", "--kind", "unknown")
        # the live state is legacy (no stack), so its rollback target is in the history
        self.legacy_deploy("3")
        history_path = "/v1/channels/app/prod/history"

        def rewrite(edit):
            def tamper(method, path, status, body):
                if path == history_path:
                    doc = json.loads(body)
                    edit(doc["entries"])
                    body = json.dumps(doc).encode()
                return status, body
            return tamper

        def drop_move_2(entries):
            del entries[1]

        def move_1_twice(entries):
            entries[1]["signed"] = entries[2]["signed"]

        def edit_signed_bytes(entries):
            # the middle move claims another version: its signature no longer verifies
            entries[1]["signed"]["state"] = entries[1]["signed"]["state"].replace(
                '"version":"2"', '"version":"1"')

        def edit_unsigned_copy(entries):
            for e in entries:
                e["state"]["version"] = "1"
        before = self.tip()
        for edit, needle in ((drop_move_2, "2 moves but the live state is move 3"),
                             (move_1_twice, "move 1 where move 2 is due"),
                             (edit_signed_bytes, "0 of the 1 deploy signatures")):
            proxy = TamperProxy(self.server, rewrite(edit))
            self.addCleanup(proxy.close)
            rc, _, err = self.rim("rollback", "app", "--channel", "prod", server=proxy.url)
            self.assertRemoteFails(rc, err, EXIT_VERIFY, needle)
            self.assertEqual(self.tip(), before, "%s moved the channel" % edit.__name__)
        # the parsed copy is for display only: the target comes from the signed bytes
        proxy = TamperProxy(self.server, rewrite(edit_unsigned_copy))
        self.addCleanup(proxy.close)
        state = json.loads(self.rok("rollback", "app", "--channel", "prod", "--json",
                                    server=proxy.url))
        self.assertEqual((state["version"], state["sequence"], state["stack"]), ("2", 4, ["1"]))
        # every move in the history verifies with stock ssh-keygen too
        history = json.loads(self.rok("history", "app", "--channel", "prod", "--json"))
        self.assertEqual([e["state"]["sequence"] for e in history["entries"]], [4, 3, 2, 1])
        for e in history["entries"]:
            self.assertSshVerifies(e["signed"]["state"].encode(), e["signed"]["signatures"][0])

    def test_deploy_without_a_key_is_signed_by_the_server(self):
        p, _ = self.generated("app.img", 300 * 1024)
        self.rok("push", p, "--name", "app", "--version", "1", "--kind", "unknown")
        env = {"XDG_CONFIG_HOME": self.path("nokey")}
        out = self.rok("deploy", "app", "1", "--channel", "prod", env=env)
        self.assertIn("app/prod -> 1", out)

    @needs_fixtures
    def test_watch_prints_a_line_when_another_client_deploys(self):
        self.rok("push", "--name", "demo", "--version", "1.0", fixture("cmdline.txt"))
        self.rok("push", "--name", "demo", "--version", "2.0", fixture("initrd-busybox.cpio.gz"))
        self.rok("deploy", "demo", "1.0", "--channel", "prod")
        proc = subprocess.Popen([BIN, "watch", "demo", "--channel", "prod", "--server",
                                 self.server.url, "--token", self.reader], env=base_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        time.sleep(1.0)
        self.rok("deploy", "demo", "2.0", "--channel", "prod")
        line = readline(proc, 30)
        self.assertEqual(line.split(), ["demo", "prod", "2", "2.0", "deploy"])
        self.rok("rollback", "demo", "--channel", "prod")
        line = readline(proc, 30)
        self.assertEqual(line.split(), ["demo", "prod", "3", "1.0", "rollback"])
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0, proc.stderr.read())

    def test_unknown_image_or_channel_is_an_error(self):
        # history printed nothing and exited 0, watch waited forever for a typo
        p, _ = self.generated("app.img", 300 * 1024)
        self.rok("push", p, "--name", "app", "--version", "1", "--kind", "unknown")
        cases = [
            (("history", "nosuch"), "no image named nosuch"),
            (("history", "app", "--channel", "nosuch"), "image app has no channel nosuch"),
            (("watch", "nosuch", "--channel", "prod"), "no image named nosuch"),
            (("watch", "app", "--channel", "nosuch"), "image app has no channel nosuch"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                rc, out, err = self.rim(*args, token=self.reader, timeout=30)
                self.assertEqual(out, "")
                self.assertRemoteFails(rc, err, EXIT_FAIL, message)

    def test_push_sends_labels_and_source(self):
        p, _ = self.generated("app.img", 300 * 1024)
        self.rok("push", p, "--name", "app", "--version", "1", "--kind", "unknown",
                 "--label", "ci.job=42", "--label", "team=a=b",
                 "--source", "https://git.example/app.git@c0ffee")
        prov = self.okjson("show", "app@1")["manifest"]["provenance"]
        self.assertEqual(prov["labels"], {"ci.job": "42", "team": "a=b"})
        self.assertEqual(prov["source"], {"repository": "https://git.example/app.git",
                                          "commit": "c0ffee"})
        # refused by the server's store as by a local push: exit 1, nothing stored
        tip = self.tip()
        rc, out, err = self.rim("push", p, "--name", "app", "--version", "2", "--kind",
                                "unknown", "--label", "Bad Key=v")
        self.assertRemoteFails(rc, err, EXIT_FAIL, "label")
        self.assertEqual(self.tip(), tip)

    def test_keyless_server_stores_pending_and_the_client_signs(self):
        # no --key, an empty config dir, no agent: imgstore serve runs without a signing key
        nokey = {"XDG_CONFIG_HOME": self.path("nokey")}
        token, line = new_token("admin", "ops")
        server = self.serve(line, "cache_max_bytes = 0", env=nokey)
        self.assertIn("no signing key", server.log())
        p, digest = self.generated("app.img", 300 * 1024)
        # a client with the release key: the version arrives pending, the client signs it
        out = self.rok("push", p, "--name", "app", "--version", "1", "--kind", "unknown",
                       server=server.url, token=token)
        self.assertEqual(out.strip(), "app@1")
        sigs = json.loads(run("show", "app@1", "--json", "--server", server.url,
                              "--token", token)[1])
        self.assertTrue(sigs["signatures"]["trusted"], sigs)
        self.assertEqual(self.git("log", "-1", "--format=%s", "main").strip().split()[0],
                         "sign")
        # a client without a key: pending, said plainly, exit 0; pulls refuse it
        rc, out, err = self.rim("push", p, "--name", "app", "--version", "2", "--kind",
                                "unknown", server=server.url, token=token, env=nokey)
        self.assertEqual(rc, EXIT_OK, err)
        self.assertIn("app@2 is pending: it has 0 of the 1 release signatures it needs", err)
        rc, out, err = self.rim("pull", "app@2", "-o", self.path("out2"), server=server.url,
                                token=token)
        self.assertRemoteFails(rc, err, EXIT_VERIFY)
        # as the message says: the same push with the release key signs it, no new version
        tip = self.tip()
        rc, out, err = self.rim("push", p, "--name", "app", "--version", "2", "--kind",
                                "unknown", server=server.url, token=token)
        self.assertEqual(rc, EXIT_OK, err)
        self.assertIn("already stored", err)
        self.assertEqual(self.git("log", "-1", "--format=%s", "main").strip().split()[0], "sign")
        self.assertEqual(len(self.git("rev-list", tip + "..main").split()), 1)
        self.rok("pull", "app@2", "-o", self.path("out2"), server=server.url, token=token)
        # or, as the message says now, imgstore sign against the server
        q, _ = self.generated("app3.img", 200 * 1024)
        rc, out, err = self.rim("push", q, "--name", "app", "--version", "3", "--kind",
                                "unknown", server=server.url, token=token, env=nokey)
        self.assertIn("sign it with imgstore sign app@3", err)
        rc, out, err = self.rim("sign", "app@3", server=server.url, token=token, env=nokey)
        self.assertRemoteFails(rc, err, EXIT_FAIL, "no signing key")
        tip = self.tip()
        signed = json.loads(self.rok("sign", "app@3", "--json", server=server.url,
                                     token=token))
        self.assertEqual((signed["signatures"], signed["trusted"]), (1, True))
        self.assertEqual(len(self.git("rev-list", tip + "..main").split()), 1)
        self.rok("pull", "app@3", "-o", self.path("out3"), server=server.url, token=token)
        # deploy: the client signs the state (the server has no deploy key), pull follows it
        state = json.loads(self.rok("deploy", "app", "1", "--channel", "prod", "--json",
                                    server=server.url, token=token))
        self.assertEqual((state["version"], state["sequence"]), ("1", 1))
        self.rok("pull", "app", "--channel", "prod", "-o", self.path("out"),
                 server=server.url, token=token)
        self.assertEqual(sha256_file(self.path("out")), digest)
        # without a key of its own the server cannot move a channel for a keyless client
        rc, out, err = self.rim("deploy", "app", "1", "--channel", "qa", server=server.url,
                                token=token, env=nokey)
        self.assertNotEqual(rc, EXIT_OK, err)
        self.ok("verify")

    # -- settings and errors ---------------------------------------------------------------

    def test_auth_failures_are_one_line_errors(self):
        p, _ = self.generated("app.img", 300 * 1024)
        rc, out, err = run("ls", "--server", self.server.url)
        self.assertRemoteFails(rc, err, EXIT_FAIL, "401")
        rc, out, err = run("ls", "--server", self.server.url, "--token", "imgstore_wrong")
        self.assertRemoteFails(rc, err, EXIT_FAIL, "401")
        rc, out, err = self.rim("push", p, "--name", "app", token=self.reader)
        self.assertRemoteFails(rc, err, EXIT_FAIL, "403")
        rc, out, err = self.rim("pull", "nope@1")
        self.assertRemoteFails(rc, err, EXIT_FAIL)
        rc, out, err = run("ls", "--server", "http://127.0.0.1:1", "--token", "x")
        self.assertRemoteFails(rc, err, EXIT_FAIL)
        rc, out, err = self.rim("pull", "bad/name@1")
        self.assertNotEqual(rc, 0)
        for bad in (["--label", "novalue"], ["--label", "=v"], ["--source", "no-commit"]):
            rc, out, err = self.rim("push", p, *bad)
            self.assertEqual(rc, EXIT_USAGE, err)

    def test_server_and_token_from_the_environment_and_the_config_file(self):
        p, digest = self.generated("app.img", 300 * 1024)
        self.rok("push", p, "--name", "app", "--version", "1", "--kind", "unknown")
        rc, out, err = run("ls", env={"IMGSTORE_SERVER": self.server.url,
                                      "IMGSTORE_TOKEN": self.reader})
        self.assertEqual(rc, 0, err)
        self.assertIn("app", out)
        config = self.path("cfg")
        os.makedirs(os.path.join(config, "imgstore"))
        with open(os.path.join(config, "imgstore", "config"), "w") as f:
            f.write("# remote\nserver = %s\ntoken = %s\n" % (self.server.url, self.reader))
        rc, out, err = run("pull", "app@1", "-o", self.path("got.img"),
                           env={"XDG_CONFIG_HOME": config})
        self.assertEqual(rc, 0, err)
        self.assertEqual(sha256_file(self.path("got.img")), digest)
        # an explicit --repo still means the local store
        rc, out, err = run("ls", "--repo", self.repo, env={"XDG_CONFIG_HOME": config})
        self.assertEqual(rc, 0, err)

    def test_verify_checks_chain_versions_and_channels(self):
        p, _ = self.generated("app.img", 2 * MiB)
        self.rok("push", p, "--name", "app", "--version", "1", "--kind", "unknown")
        self.rok("deploy", "app", "1", "--channel", "prod")
        report = json.loads(self.rok("verify", "--deep", "--json"))
        self.assertTrue(report["ok"])
        self.assertEqual([v["status"] for v in report["versions"]], ["ok"])
        self.assertEqual(report["versions"][0]["bytes"], 2 * MiB)
        self.assertEqual([c["status"] for c in report["channels"]], ["ok"])
        self.assertGreaterEqual(len(report["policies"]), 1)

        def flip(method, path, status, body):
            if "/files/" in path and body:
                body = body[:-1] + bytes([body[-1] ^ 1])
            return status, body
        proxy = TamperProxy(self.server, flip)
        self.addCleanup(proxy.close)
        rc, out, err = self.rim("verify", "--deep", server=proxy.url)
        self.assertEqual(rc, EXIT_VERIFY, out + err)
        self.assertIn("FAILED", out)
        rc, out, err = self.rim("verify", server=proxy.url)
        self.assertEqual(rc, EXIT_OK, out + err)


if __name__ == "__main__":
    main()
