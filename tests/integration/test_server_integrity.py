"""
imgstore serve never hands out a byte the store cannot vouch for, and a broken upload leaves
nothing behind: a chunk blob damaged on disk (cold cache) is refused before any byte with the
cache on, and aborts the stream before the damaged chunk with the cache off; a client that
stops mid-upload leaves no version, no commit, and a store stock git fsck --strict accepts.
"""

import os
import socket
import stat
import time
import zlib

from imgstore_testlib import version_path
from imgstore_testlib import (MiB, ServerTestCase, curl, loose_object_path, main, multipart,
                              new_token, sha256)


class Integrity(ServerTestCase):

    def setUp(self):
        super().setUp()
        p, self.digest = self.random_file("app.img", 6 * MiB + 777)
        with open(p, "rb") as f:
            self.data = f.read()
        self.push(p, "--name", "app", "--version", "1.0", "--kind", "unknown")
        self.manifest = self.okjson("show", "app@1.0")["manifest"]
        self.chunks = self.manifest["files"][0]["chunks"]
        self.assertGreaterEqual(len(self.chunks), 2)
        self.token, self.line = new_token("admin", "ops")

    def damage_chunk(self, index):
        oid = self.git("rev-parse", "main:" + version_path("app", "1.0", "files/app.img/%06d" % index)).strip()
        obj = loose_object_path(self.repo, oid)
        with open(obj, "rb") as f:
            raw = zlib.decompress(f.read())
        header, _, body = raw.partition(b"\0")
        body = bytearray(body)
        body[len(body) // 2] ^= 0x5A
        os.chmod(obj, stat.S_IRUSR | stat.S_IWUSR)
        with open(obj, "wb") as f:
            f.write(zlib.compress(header + b"\0" + bytes(body)))

    def url(self, server):
        return server.url + "/v1/images/app/1.0/files/app.img"

    def test_damaged_chunk_is_refused_before_any_byte_with_the_cache(self):
        self.damage_chunk(1)
        server = self.serve(self.line)
        out = self.path("got")
        rc, code, err = curl("-o", out, "-w", "%{http_code}", "-H",
                             "Authorization: Bearer " + self.token, self.url(server))
        self.assertEqual(code, b"500", err)
        with open(out, "rb") as f:
            body = f.read()
        self.assertNotIn(self.data[:4096], body)
        self.assertIn(b"verification_failed", body)
        m = server.metrics(token=self.token)
        self.assertEqual(m["imgstore_verification_failures_total"], 1)
        cache = self.repo + "-cache"
        self.assertEqual([n for n in os.listdir(cache)], [], "a damaged file was cached")
        # the request's log line is written once its connection is done, which may be after
        # curl has the answer (seen under ASan with ctest -j2): wait for it
        deadline = time.time() + 20
        while "status=500" not in server.log() and time.time() < deadline:
            time.sleep(0.05)
        self.assertIn("status=500", server.log())
        # a range inside the intact first chunk is refused too: the file is verified whole
        status, _, _ = server.request("GET", "/v1/images/app/1.0/files/app.img",
                                      headers={"Range": "bytes=0-99"}, token=self.token)
        self.assertEqual(status, 500)

    def test_damaged_chunk_aborts_the_stream_without_the_cache(self):
        self.damage_chunk(1)
        server = self.serve(self.line, "cache_max_bytes = 0")
        out = self.path("got")
        rc, code, err = curl("-o", out, "-w", "%{http_code}", "-H",
                             "Authorization: Bearer " + self.token, self.url(server))
        self.assertNotEqual(rc, 0, "curl got a complete body from a damaged store")
        with open(out, "rb") as f:
            body = f.read()
        # what arrived is the intact first chunk at most, and exactly the file's bytes
        self.assertLessEqual(len(body), self.chunks[0]["size"])
        self.assertEqual(body, self.data[:len(body)])
        deadline = time.time() + 10
        while "download aborted" not in server.log() and time.time() < deadline:
            time.sleep(0.1)
        self.assertIn("download aborted", server.log())
        m = server.metrics(token=self.token)
        self.assertEqual(m["imgstore_verification_failures_total"], 1)
        self.assertEqual(m["imgstore_stream_aborts_total"], 1)
        # bytes from an intact chunk are still served
        status, _, data = server.request("GET", "/v1/images/app/1.0/files/app.img",
                                         headers={"Range": "bytes=0-99"}, token=self.token)
        self.assertEqual((status, data), (206, self.data[:100]))

    def test_waits_and_stalled_streams_do_not_hold_up_reads(self):
        # the polling threads serve many connections each (docs/server.md, "Threads and
        # memory"): long-polls and a stream whose client stopped reading must not stall them
        server = self.serve(self.line, "cache_max_bytes = 0")
        watchers = []
        for _ in range(8):
            s = socket.create_connection((server.host, server.port), timeout=30)
            s.sendall(("GET /v1/channels/app/prod?wait=10 HTTP/1.1\r\nHost: x\r\n"
                       "Authorization: Bearer %s\r\n\r\n" % self.token).encode())
            watchers.append(s)
        stalled = socket.create_connection((server.host, server.port), timeout=30)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(("GET /v1/images/app/1.0/files/app.img HTTP/1.1\r\nHost: x\r\n"
                         "Authorization: Bearer %s\r\n\r\n" % self.token).encode())
        try:
            time.sleep(0.3)
            t0 = time.time()
            for _ in range(20):
                status, _, _ = server.request("GET", "/v1/images/app/1.0", token=self.token,
                                              timeout=10)
                self.assertEqual(status, 200)
            self.assertLess(time.time() - t0, 5, "reads waited for the long-polls")
            for s in watchers:  # no channel yet: 404 once the wait runs out
                self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 404"))
        finally:
            stalled.close()
            for s in watchers:
                s.close()

    def test_streamed_download_without_the_cache_is_byte_identical(self):
        server = self.serve(self.line, "cache_max_bytes = 0")
        rc, out, err = curl("-f", "-H", "Authorization: Bearer " + self.token, self.url(server))
        self.assertEqual((rc, sha256(out)), (0, self.digest), err)
        status, _, data = server.request("GET", "/v1/images/app/1.0/files/app.img",
                                         headers={"Range": "bytes=%d-" % (5 * MiB)},
                                         token=self.token)
        self.assertEqual((status, data), (206, self.data[5 * MiB:]))

    def test_client_that_stops_mid_upload_leaves_nothing(self):
        server = self.serve(self.line)
        tip = self.tip()
        payload = os.urandom(8 * MiB)
        ctype, form = multipart([("big.img", payload)], [("sha256.big.img", sha256(payload))])
        with socket.create_connection((server.host, server.port), timeout=30) as s:
            s.sendall(("POST /v1/images/half/1.0 HTTP/1.1\r\nHost: x\r\n"
                       "Authorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                       "\r\n" % (self.token, ctype, len(form))).encode())
            s.sendall(form[:len(form) // 2])
            time.sleep(0.5)
        deadline = time.time() + 30
        while "path=/v1/images/half/1.0" not in server.log() and time.time() < deadline:
            time.sleep(0.1)
        self.assertIn("aborted=true", server.log())
        self.assertEqual(self.tip(), tip, "a cut-off upload made a commit")
        status, _, _ = server.request("GET", "/v1/images/half", token=self.token)
        self.assertEqual(status, 404)
        m = server.metrics(token=self.token)
        self.assertEqual(m["imgstore_uploads_in_progress"], 0)
        self.assertFsckClean()
        # the same upload, complete, then works
        status, _, data = server.request("POST", "/v1/images/half/1.0", body=form,
                                         headers={"Content-Type": ctype}, token=self.token)
        self.assertEqual(status, 201, data)
        self.assertFsckClean()

    def test_sigterm_during_an_upload_commits_nothing_partial(self):
        server = self.serve(self.line, "drain_seconds = 2")
        tip = self.tip()
        payload = os.urandom(4 * MiB)
        ctype, form = multipart([("big.img", payload)])
        s = socket.create_connection((server.host, server.port), timeout=30)
        try:
            s.sendall(("POST /v1/images/cut/1.0 HTTP/1.1\r\nHost: x\r\n"
                       "Authorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                       "\r\n" % (self.token, ctype, len(form))).encode())
            s.sendall(form[:len(form) // 2])
            time.sleep(0.3)
            t0 = time.time()
            rc = server.stop(timeout=30)
            self.assertEqual(rc, 0, server.log())
            self.assertLess(time.time() - t0, 15)
        finally:
            s.close()
        self.assertIn("drained=false", server.log())
        self.assertEqual(self.tip(), tip)
        self.assertFsckClean()


if __name__ == "__main__":
    main()
