"""
imgstore serve end to end: every route against a store populated by the CLI with the real
fixtures, stock curl for downloads (full, Range, conditional, resume), JSON shapes, bad
names and path traversal in every path parameter, uploads, channel moves, long-poll, metrics
and the SIGTERM drain.
"""

import json
import os
import socket
import threading
import time

from imgstore_testlib import version_path
from imgstore_testlib import (MiB, ServerTestCase, curl, fixture, fixture_sums, main, multipart,
                              needs_fixtures, new_token, recv_all, sha256, sha256_file,
                              validate)

DEMO = ["vmlinuz-6.1.0-56-cloud-amd64", "initrd-busybox.cpio.gz", "cmdline.txt"]
IPXE = ["ipxe.efi", "ipxe.iso", "ipxe.lkrn"]
MEMTEST = ["memtest86+x64.bin", "memtest86+x64.efi", "memtest86+x64.iso"]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def keys(obj, *names):
    missing = [n for n in names if n not in obj]
    if missing:
        raise AssertionError("missing keys %s in %r" % (missing, obj))


@needs_fixtures
class Api(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.push("--name", "demo", "--version", "1.0", *[fixture(f) for f in DEMO])
        self.push("--name", "ipxe", "--version", "1", *[fixture(f) for f in IPXE])
        self.push("--name", "memtest", "--version", "7.20", *[fixture(f) for f in MEMTEST])
        self.ok("deploy", "demo", "1.0", "--channel", "prod")
        self.reader, read_line = new_token("read", "reader")
        self.boss, admin_line = new_token("admin", "boss")
        self.server = self.serve(read_line, admin_line, "max_upload_bytes = 64M")
        self.auth = ["-H", "Authorization: Bearer " + self.reader]

    def file_url(self, name, version, path):
        return "%s/v1/images/%s/%s/files/%s" % (self.server.url, name, version, path)

    # -- listings and manifests ----------------------------------------------------------

    def test_lists_images_versions_and_channels(self):
        images = self.server.get_json("/v1/images", token=self.reader)
        self.assertEqual([i["name"] for i in images["images"]], ["demo", "ipxe", "memtest"])
        for image in images["images"]:
            keys(image, "name", "versions", "newest", "channels")
        self.assertEqual(images["images"][0]["channels"], {"prod": "1.0"})
        self.push("--name", "demo", "--version", "2.0", fixture("cmdline.txt"))
        demo = self.server.get_json("/v1/images/demo", token=self.reader)
        keys(demo, "name", "versions", "channels")
        self.assertEqual([v["version"] for v in demo["versions"]], ["2.0", "1.0"])
        for v in demo["versions"]:
            keys(v, "version", "created", "files", "size")

    def test_version_is_the_stored_manifest_with_its_digest(self):
        body = self.server.get_json("/v1/images/demo/1.0", token=self.reader)
        keys(body, "name", "version", "manifest_sha256", "manifest", "trust")
        stored = self.git("show", "main:" + version_path("demo", "1.0", "manifest.json"), binary=True)
        self.assertEqual(body["manifest_sha256"], sha256(stored))
        self.assertEqual(body["manifest"], json.loads(stored))
        self.assertTrue(body["trust"]["trusted"])

    def test_bodies_match_their_schemas(self):
        self.push("--name", "demo", "--version", "2.0", fixture("cmdline.txt"))
        self.server.request("POST", "/v1/channels/demo/prod/deploy", body={"version": "2.0"},
                            token=self.boss)
        for path, schema in (("/healthz", "api_health"), ("/readyz", "api_health"),
                             ("/v1/images", "api_image_list"), ("/v1/images/demo", "api_image"),
                             ("/v1/images/demo/1.0", "api_version"),
                             ("/v1/images/ipxe/1", "api_version"),
                             ("/v1/images/memtest/7.20", "api_version"),
                             ("/v1/channels/demo/prod", "channel"),
                             ("/v1/channels/demo/prod/history", "api_history")):
            validate(self.server.get_json(path, token=self.reader), schema + ".schema.json")
        status, _, data = self.server.request("POST", "/v1/channels/demo/prod/rollback",
                                              body={}, token=self.boss)
        self.assertEqual(status, 200)
        validate(json.loads(data), "channel.schema.json")
        ctype, form = multipart([("cmdline.txt", b"console=ttyS1\n")])
        status, _, data = self.server.request("POST", "/v1/images/demo", body=form,
                                              headers={"Content-Type": ctype}, token=self.boss)
        self.assertEqual(status, 201, data)
        validate(json.loads(data), "api_upload.schema.json")
        self.assertTrue(json.loads(data)["version"].startswith("c-"))

    def test_read_answers_are_cached_until_the_tip_moves(self):
        hits = 'imgstore_answer_cache_hits_total'
        path = "/v1/images/demo/1.0"
        first = self.server.request("GET", path, token=self.reader)
        before = self.server.metrics(token=self.reader)
        second = self.server.request("GET", path, token=self.reader)
        self.assertEqual((first[0], first[2]), (second[0], second[2]))
        self.assertEqual(first[1]["etag"], second[1]["etag"])
        self.assertEqual(second[1]["content-type"], "application/json")
        self.assertGreater(self.server.metrics(token=self.reader)[hits], before[hits])
        status, hdrs, body = self.server.request("GET", path, token=self.reader,
                                                 headers={"If-None-Match": first[1]["etag"]})
        self.assertEqual((status, body, hdrs["etag"]), (304, b"", first[1]["etag"]))
        status, hdrs, body = self.server.request("HEAD", path, token=self.reader)
        self.assertEqual((status, body, int(hdrs["content-length"])), (200, b"", len(first[2])))
        for p in ("/v1/images", "/v1/images/demo", "/v1/channels/demo/prod",
                  "/v1/channels/demo/prod/history"):
            self.server.get_json(p, token=self.reader)
        self.assertEqual(self.server.get_json("/v1/channels/demo/prod",
                                              token=self.reader)["version"], "1.0")
        # another writer moves the tip: no answer of the old tip is served again
        self.push("--name", "demo", "--version", "2.0", fixture("cmdline.txt"))
        self.ok("deploy", "demo", "2.0", "--channel", "prod")
        self.assertEqual(self.server.get_json("/v1/channels/demo/prod",
                                              token=self.reader)["version"], "2.0")
        demo = self.server.get_json("/v1/images/demo", token=self.reader)
        self.assertEqual(([v["version"] for v in demo["versions"]], demo["channels"]),
                         (["2.0", "1.0"], {"prod": "2.0"}))
        images = self.server.get_json("/v1/images", token=self.reader)
        self.assertEqual(images["images"][0]["channels"], {"prod": "2.0"})
        self.assertEqual(len(self.server.get_json("/v1/channels/demo/prod/history",
                                                  token=self.reader)["entries"]), 2)
        # bounded, and off with answer_cache_bytes = 0
        m = self.server.metrics(token=self.reader)
        self.assertLessEqual(m["imgstore_answer_cache_bytes"], 8 * MiB)
        off = self.serve("read_public = true", "answer_cache_bytes = 0")
        for _ in range(3):
            off.get_json(path)
        self.assertEqual(off.metrics()[hits], 0)

    # -- downloads -------------------------------------------------------------------------

    def test_every_fixture_downloads_byte_identical_cold_and_hot(self):
        sums = fixture_sums()
        for name, version, files in (("demo", "1.0", DEMO), ("ipxe", "1", IPXE),
                                     ("memtest", "7.20", MEMTEST)):
            for f in files:
                for attempt in ("cold", "hot"):
                    out, hdr = self.path("%s.%s" % (f, attempt)), self.path("h.%s" % attempt)
                    rc, _, err = curl("-f", "-o", out, "-D", hdr, *self.auth,
                                      self.file_url(name, version, f))
                    self.assertEqual(rc, 0, "%s %s: %s" % (f, attempt, err))
                    self.assertEqual(sha256_file(out), sums[f], "%s (%s)" % (f, attempt))
                    headers = read(hdr).decode().lower()
                    self.assertIn('etag: "%s"' % sums[f], headers)
                    self.assertIn("content-length: %d" % os.path.getsize(fixture(f)), headers)
                    self.assertIn("cache-control: public, max-age=31536000, immutable", headers)
        m = self.server.metrics(token=self.reader)
        self.assertGreaterEqual(m.get("imgstore_cache_hits_total", 0), 9)

    def test_ranges(self):
        url = self.file_url("demo", "1.0", DEMO[0])
        data = read(fixture(DEMO[0]))
        etag = '"%s"' % sha256(data)
        cases = [("bytes=0-99", 0, 100), ("bytes=1000-", 1000, len(data)),
                 ("bytes=-4096", len(data) - 4096, len(data)),
                 ("bytes=%d-%d" % (len(data) - 10, len(data) + 1000), len(data) - 10, len(data)),
                 # a range across a chunk boundary (chunks are >= 256 KiB)
                 ("bytes=%d-%d" % (300 * 1024, 3 * MiB), 300 * 1024, 3 * MiB + 1)]
        for header, start, end in cases:
            status, hdrs, body = self.server.request("GET", url[len(self.server.url):],
                                                     headers={"Range": header},
                                                     token=self.reader)
            self.assertEqual(status, 206, header)
            self.assertEqual(body, data[start:end], header)
            self.assertEqual(hdrs["content-range"], "bytes %d-%d/%d" % (start, end - 1, len(data)))
        for header in ("bytes=%d-" % len(data), "bytes=-0"):
            status, hdrs, body = self.server.request("GET", url[len(self.server.url):],
                                                     headers={"Range": header},
                                                     token=self.reader)
            self.assertJsonError(status, body, 416, "range_not_satisfiable")
            self.assertEqual(hdrs["content-range"], "bytes */%d" % len(data))
        path = url[len(self.server.url):]
        status, _, body = self.server.request("GET", path, token=self.reader,
                                              headers={"Range": "bytes=0-9", "If-Range": etag})
        self.assertEqual((status, body), (206, data[:10]))
        status, _, body = self.server.request("GET", path, token=self.reader,
                                              headers={"Range": "bytes=0-9", "If-Range": '"x"'})
        self.assertEqual((status, len(body)), (200, len(data)))
        rc, out, err = curl("-f", "-r", "10-19", *self.auth, url)
        self.assertEqual((rc, out), (0, data[10:20]), err)

    def test_if_none_match_is_304(self):
        url = self.file_url("demo", "1.0", "cmdline.txt")
        etag = '"%s"' % fixture_sums()["cmdline.txt"]
        rc, out, err = curl("-o", "/dev/null", "-w", "%{http_code}", "-H",
                            "If-None-Match: " + etag, *self.auth, url)
        self.assertEqual(out, b"304", err)
        rc, out, err = curl("-o", "/dev/null", "-w", "%{http_code}", "-H",
                            'If-None-Match: "0000"', *self.auth, url)
        self.assertEqual(out, b"200", err)

    def test_curl_resumes_an_interrupted_download(self):
        data = read(fixture(DEMO[1]))
        out = self.path("initrd.part")
        with open(out, "wb") as f:
            f.write(data[:len(data) // 3])
        rc, _, err = curl("-f", "-C", "-", "-o", out, *self.auth,
                          self.file_url("demo", "1.0", DEMO[1]))
        self.assertEqual(rc, 0, err)
        self.assertEqual(sha256_file(out), sha256(data))

    def test_head_has_the_headers_and_no_body(self):
        status, hdrs, body = self.server.request(
            "HEAD", "/v1/images/demo/1.0/files/" + DEMO[0], token=self.reader)
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(int(hdrs["content-length"]), os.path.getsize(fixture(DEMO[0])))

    # -- bad input -------------------------------------------------------------------------

    def test_bad_names_and_traversal_in_every_parameter_are_400(self):
        tip = self.tip()
        bad = ["..", "%2e%2e", "..%2F..%2Fetc", "a%2Fb", "%2Fetc%2Fpasswd", "Demo%20x", "a%00b",
               ".hidden", "-x", "%", "%zz", "x" * 129]
        templates = ["/v1/images/{}", "/v1/images/{}/1.0", "/v1/images/demo/{}",
                     "/v1/images/{}/1.0/files/cmdline.txt", "/v1/images/demo/{}/files/cmdline.txt",
                     "/v1/images/demo/1.0/files/{}", "/v1/channels/{}/prod",
                     "/v1/channels/demo/{}", "/v1/channels/{}/prod/history",
                     "/v1/channels/demo/{}/history"]
        for template in templates:
            for name in bad:
                path = template.format(name)
                status, _, body = self.server.request("GET", path, token=self.boss)
                self.assertJsonError(status, body, 400, "invalid")
        posts = ["/v1/images/{}/1.0", "/v1/images/demo/{}", "/v1/channels/{}/prod/deploy",
                 "/v1/channels/demo/{}/deploy", "/v1/channels/{}/prod/rollback"]
        ctype, form = multipart([("cmdline.txt", b"console=ttyS0\n")])
        for template in posts:
            for name in bad:
                path = template.format(name)
                is_upload = path.startswith("/v1/images/")
                status, _, body = self.server.request(
                    "POST", path, token=self.boss,
                    body=form if is_upload else {"version": "1.0"},
                    headers={"Content-Type": ctype} if is_upload else None)
                self.assertJsonError(status, body, 400, "invalid")
        # a bad file name inside an upload, and in a deploy body
        ctype, form = multipart([("../evil", b"x")])
        status, _, body = self.server.request("POST", "/v1/images/demo/9.9", body=form,
                                              headers={"Content-Type": ctype}, token=self.boss)
        self.assertJsonError(status, body, 400, "invalid")
        status, _, body = self.server.request("POST", "/v1/channels/demo/prod/deploy",
                                              body={"version": "../1.0"}, token=self.boss)
        self.assertJsonError(status, body, 400, "invalid")
        self.assertEqual(self.tip(), tip, "a refused request changed the store")
        self.assertFsckClean()

    def test_unknown_things_are_json_404_and_405(self):
        for path in ("/v1/images/nope", "/v1/images/demo/9.9", "/v1/images/demo/1.0/files/nope",
                     "/v1/channels/demo/nope", "/v1/nothing", "/ui/nothing",
                     "/v1/images/demo/1.0/x/y"):  # "/" is the status page (issue #12)
            status, _, body = self.server.request("GET", path, token=self.reader)
            self.assertJsonError(status, body, 404, "not_found")
        status, _, body = self.server.request("DELETE", "/v1/images/demo", token=self.boss)
        self.assertJsonError(status, body, 405)

    def test_malformed_and_oversize_bodies(self):
        tip = self.tip()
        for body in (b"{", b"[]", b'{"version": 1}', b'{"version": "1.0", "x": "y"}',
                     b'{"version":"1.0","version":"1.0"}', b"\xff\xfe"):
            status, _, data = self.server.request("POST", "/v1/channels/demo/prod/deploy",
                                                  body=body, token=self.boss)
            self.assertJsonError(status, data, 400, "invalid")
        big = b'{"version":"1.0","reason":"' + b"x" * (100 * 1024) + b'"}'
        status, _, data = self.server.request("POST", "/v1/channels/demo/prod/deploy", body=big,
                                              token=self.boss)
        self.assertJsonError(status, data, 413, "too_large")
        # an upload that announces more than max_upload_bytes is refused before its body
        with socket.create_connection((self.server.host, self.server.port), timeout=30) as s:
            s.sendall(("POST /v1/images/demo/8.0 HTTP/1.1\r\nHost: x\r\n"
                       "Authorization: Bearer %s\r\nContent-Type: multipart/form-data; "
                       "boundary=b\r\nContent-Length: %d\r\n\r\n" % (self.boss, 65 * MiB))
                      .encode())
            reply = b""
            while b"\r\n\r\n" not in reply:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        self.assertTrue(reply.startswith(b"HTTP/1.1 413"), reply[:200])
        # a body that is not multipart
        status, _, data = self.server.request("POST", "/v1/images/demo/8.0", body=b"raw bytes",
                                              token=self.boss,
                                              headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 415, data)
        self.assertEqual(self.tip(), tip)

    # -- uploads ---------------------------------------------------------------------------

    def test_upload_is_visible_after_commit_and_idempotent(self):
        tip = self.tip()
        files = [(f, read(fixture(f))) for f in IPXE]
        fields = [("sha256." + f, sha256(d)) for f, d in files]
        ctype, form = multipart(files, fields)
        status, _, data = self.server.request("POST", "/v1/images/netboot/2.0", body=form,
                                              headers={"Content-Type": ctype}, token=self.boss)
        self.assertEqual(status, 201, data)
        body = json.loads(data)
        keys(body, "name", "version", "manifest_sha256", "created")
        self.assertEqual((body["name"], body["version"], body["created"]),
                         ("netboot", "2.0", True))
        self.assertEqual(self.subjects()[0], "push netboot 2.0")
        self.assertEqual(len(self.git("rev-list", tip + "..main").split()), 1)
        for f, d in files:
            rc, out, err = curl("-f", *self.auth, self.file_url("netboot", "2.0", f))
            self.assertEqual((rc, sha256(out)), (0, sha256(d)), err)
        tip = self.tip()
        status, _, data = self.server.request("POST", "/v1/images/netboot/2.0", body=form,
                                              headers={"Content-Type": ctype}, token=self.boss)
        self.assertEqual(status, 200, data)
        self.assertFalse(json.loads(data)["created"])
        self.assertEqual(self.tip(), tip, "identical re-upload made a commit")
        # same version, other bytes: a conflict
        ctype, other = multipart([("ipxe.efi", b"other bytes")])
        status, _, data = self.server.request("POST", "/v1/images/netboot/2.0", body=other,
                                              headers={"Content-Type": ctype}, token=self.boss)
        self.assertJsonError(status, data, 409)
        self.assertEqual(self.tip(), tip)
        # the CLI sees the uploaded version
        shown = self.okjson("show", "netboot@2.0")
        self.assertEqual(sorted(f["path"] for f in shown["manifest"]["files"]), sorted(IPXE))
        self.assertFsckClean()

    def test_upload_with_a_wrong_declared_digest_stores_nothing(self):
        tip = self.tip()
        data = read(fixture("ipxe.efi"))
        for declared in ("0" * 64, sha256(data + b"x"), "not-hex"):
            ctype, form = multipart([("ipxe.efi", data)], [("sha256.ipxe.efi", declared)])
            status, _, body = self.server.request("POST", "/v1/images/bad/1.0", body=form,
                                                  headers={"Content-Type": ctype},
                                                  token=self.boss)
            self.assertJsonError(status, body, 400, "invalid")
        # a digest declared after its file cannot have been checked: refused too
        boundary_type, form = multipart([("ipxe.efi", data)])
        form = form.replace(b"--\r\n", b"\r\nContent-Disposition: form-data; "
                            b"name=\"sha256.ipxe.efi\"\r\n\r\n" + sha256(data).encode() +
                            b"\r\n--" + boundary_type.split("=")[1].encode() + b"--\r\n")
        status, _, body = self.server.request("POST", "/v1/images/bad/1.0", body=form,
                                              headers={"Content-Type": boundary_type},
                                              token=self.boss)
        self.assertEqual(status, 400, body)
        self.assertEqual(self.tip(), tip)
        status, _, _ = self.server.request("GET", "/v1/images/bad", token=self.reader)
        self.assertEqual(status, 404)
        self.assertFsckClean()

    def raw_upload(self, path, ctype, body, piece):
        """POST body over a plain socket in pieces of `piece` bytes, each sent on its own."""
        with socket.create_connection((self.server.host, self.server.port), timeout=60) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                       "Content-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                       % (path, self.boss, ctype, len(body))).encode())
            for at in range(0, len(body), piece):
                s.sendall(body[at:at + piece])
                if piece < 64:
                    time.sleep(0.001)
            reply = recv_all(s)
        head, _, data = reply.partition(b"\r\n\r\n")
        return int(head.split()[1]), data

    def test_upload_parses_bytes_that_look_like_a_delimiter(self):
        # file bytes holding CRLF, "--", and every prefix of the real delimiter, sent in
        # pieces that split delimiters at every offset
        ctype, form = multipart([("near.bin", b"")])
        boundary = ctype.split("=", 1)[1].encode()
        delim = b"\r\n--" + boundary
        near = b"".join(delim[:n] + b"x" for n in range(len(delim))) + b"\r\n--\r\n\r\r\n"
        small = near * 2 + delim[:-1]
        big = os.urandom(3000) + near * 3 + os.urandom(70000) + near + delim[:-1]
        for piece, version, data in ((1, "1", small), (7, "2", small), (61, "3", big),
                                     (65536, "4", big)):
            ctype, form = multipart([("near.bin", data)], [("sha256.near.bin", sha256(data))])
            # the same boundary for every body is not needed: each has its own
            status, body = self.raw_upload("/v1/images/near/" + version, ctype, form, piece)
            self.assertEqual(status, 201, body)
            rc, out, err = curl("-f", *self.auth, self.file_url("near", version, "near.bin"))
            self.assertEqual((rc, sha256(out)), (0, sha256(data)), err)
        # a preamble before the first delimiter and an epilogue after the last are ignored
        ctype, form = multipart([("cmdline.txt", b"console=ttyS2\n")])
        status, body = self.raw_upload("/v1/images/near/5", ctype,
                                       b"preamble\r\n" + form + b"epilogue", 3)
        self.assertEqual(status, 201, body)

    def test_upload_refuses_malformed_multipart(self):
        tip = self.tip()
        ctype, form = multipart([("cmdline.txt", b"console=ttyS3\n")])
        boundary = ctype.split("=", 1)[1]
        bad = [
            (ctype, form[:-10]),  # truncated: no close delimiter
            (ctype, form.replace(b"Content-Disposition", b"Content-Dispositio")),
            (ctype, form.replace(b"\r\n\r\n", b"\r\n" + b"X: " + b"y" * 9000 + b"\r\n\r\n", 1)),
            (ctype, form.replace(b'filename="cmdline.txt"', b'filename="' + b"a" * 200 + b'"')),
            (ctype, form.replace(b"--" + boundary.encode() + b"\r\n",
                                 b"--" + boundary.encode() + b"??", 1)),
            ("multipart/form-data", form),  # no boundary
            ("multipart/form-data; boundary=" + "b" * 71, form),
        ]
        for bad_type, bad_form in bad:
            status, _, body = self.server.request("POST", "/v1/images/malformed/1", body=bad_form,
                                                  headers={"Content-Type": bad_type},
                                                  token=self.boss)
            self.assertJsonError(status, body, 400, "invalid")
        self.assertEqual(self.tip(), tip)

    def test_upload_carries_labels_and_source(self):
        data = b"console=ttyS4\n"
        ctype, form = multipart(
            [("cmdline.txt", data)],
            [("label", "ci.job=42"), ("label", "team=boot=loaders"),
             ("source", "https://git.example/boot.git@0123abcd"), ("sha256.cmdline.txt", sha256(data))])
        status, _, body = self.server.request("POST", "/v1/images/prov/1", body=form,
                                              headers={"Content-Type": ctype}, token=self.boss)
        self.assertEqual(status, 201, body)
        manifest = self.okjson("show", "prov@1")["manifest"]["provenance"]
        self.assertEqual(manifest["labels"], {"ci.job": "42", "team": "boot=loaders"})
        self.assertEqual(manifest["source"]["repository"], "https://git.example/boot.git")
        self.assertEqual(manifest["source"]["commit"], "0123abcd")
        # refused as `imgstore push --label/--source` refuses them; nothing stored
        tip = self.tip()
        for fields in ([("label", "novalue")], [("label", "=v")], [("label", "Bad Key=v")],
                       [("label", "k=v"), ("label", "k=w")], [("source", "no-commit")],
                       [("source", "@abc")], [("source", "url@")],
                       [("source", "a@b"), ("source", "c@d")],
                       [("label", "k=" + "v" * 5000)],
                       [("label", "k%d=v" % i) for i in range(65)]):
            ctype, form = multipart([("cmdline.txt", data)], fields)
            status, _, body = self.server.request("POST", "/v1/images/prov/2", body=form,
                                                  headers={"Content-Type": ctype},
                                                  token=self.boss)
            self.assertJsonError(status, body, 400, "invalid")
        # provenance shapes the manifest: after the first file it is refused
        ctype, form = multipart([("cmdline.txt", data)])
        form = form.replace(b"--\r\n", b"\r\nContent-Disposition: form-data; name=\"label\"\r\n"
                            b"\r\nk=v\r\n--" + ctype.split("=")[1].encode() + b"--\r\n")
        status, _, body = self.server.request("POST", "/v1/images/prov/2", body=form,
                                              headers={"Content-Type": ctype}, token=self.boss)
        self.assertJsonError(status, body, 400, "invalid")
        self.assertEqual(self.tip(), tip)

    # -- channels ----------------------------------------------------------------------------

    def test_deploy_rollback_history(self):
        self.push("--name", "demo", "--version", "2.0", fixture("cmdline.txt"))
        status, _, data = self.server.request("POST", "/v1/channels/demo/prod/deploy",
                                              body={"version": "2.0", "reason": "new"},
                                              token=self.boss)
        self.assertEqual(status, 200, data)
        state = json.loads(data)
        keys(state, "name", "channel", "version", "sequence", "manifest_sha256", "actor")
        self.assertEqual((state["version"], state["sequence"], state["actor"]), ("2.0", 2, "boss"))
        self.assertEqual(self.subjects()[0], "deploy demo prod 2.0")
        status, _, data = self.server.request("POST", "/v1/channels/demo/prod/rollback",
                                              body={"reason": "boot loop"}, token=self.boss)
        self.assertEqual(status, 200, data)
        self.assertEqual(json.loads(data)["version"], "1.0")
        got = self.server.get_json("/v1/channels/demo/prod", token=self.reader)
        self.assertEqual((got["version"], got["sequence"]), ("1.0", 3))
        history = self.server.get_json("/v1/channels/demo/prod/history", token=self.reader)
        keys(history, "name", "channel", "entries")
        self.assertEqual([e["action"] for e in history["entries"]],
                         ["rollback", "deploy", "deploy"])
        for e in history["entries"]:
            keys(e, "commit", "time", "actor", "action", "summary")
        validate(history, "api_history.schema.json")
        # the image's history: its pushes and its channels' moves, newest first
        image = self.server.get_json("/v1/images/demo/history", token=self.reader)
        validate(image, "api_history.schema.json")
        self.assertNotIn("channel", image)
        self.assertEqual([(e["action"], e.get("version"), e.get("channel"))
                          for e in image["entries"]],
                         [("rollback", "1.0", "prod"), ("deploy", "2.0", "prod"),
                          ("push", "2.0", None), ("deploy", "1.0", "prod"), ("push", "1.0", None)])
        self.assertEqual(image["entries"], self.okjson("history", "demo")["entries"])
        # as for a channel, an image never pushed has an empty history
        self.assertEqual(self.server.get_json("/v1/images/nope/history", token=self.reader),
                         {"name": "nope", "entries": [], "next": None})
        status, _, data = self.server.request("GET", "/v1/images/demo/history")
        self.assertEqual(status, 401, data)
        # deploying a version that does not exist: 404, nothing written
        tip = self.tip()
        status, _, data = self.server.request("POST", "/v1/channels/demo/prod/deploy",
                                              body={"version": "7.7"}, token=self.boss)
        self.assertJsonError(status, data, 404, "not_found")
        self.assertEqual(self.tip(), tip)
        self.assertFsckClean()

    def test_long_poll_answers_when_another_client_deploys(self):
        self.push("--name", "demo", "--version", "2.0", fixture("cmdline.txt"))
        result = {}

        def watch():
            t0 = time.time()
            result["reply"] = self.server.request(
                "GET", "/v1/channels/demo/prod?wait=30&after=1", token=self.reader, timeout=60)
            result["seconds"] = time.time() - t0

        t = threading.Thread(target=watch)
        t.start()
        time.sleep(1.0)
        self.assertTrue(t.is_alive(), "the watch answered before the channel moved")
        # another client: the CLI, writing to the store directly (the server polls)
        self.ok("deploy", "demo", "2.0", "--channel", "prod")
        t.join(20)
        self.assertFalse(t.is_alive(), "the watch did not answer after the deploy")
        status, _, data = result["reply"]
        self.assertEqual(status, 200)
        self.assertEqual((json.loads(data)["sequence"], json.loads(data)["version"]), (2, "2.0"))
        self.assertLess(result["seconds"], 10)
        # a move through the server wakes a watcher at once
        t = threading.Thread(target=watch)
        t.start()
        time.sleep(0.5)
        self.server.request("POST", "/v1/channels/demo/prod/rollback", body={},
                            token=self.boss)
        t.join(20)
        self.assertFalse(t.is_alive())
        # ...and without a move it answers at the timeout with the current state
        t0 = time.time()
        state = self.server.get_json("/v1/channels/demo/prod?wait=1&after=3", token=self.reader)
        self.assertEqual(state["sequence"], 3)
        self.assertGreaterEqual(time.time() - t0, 0.9)
        status, _, data = self.server.request("GET", "/v1/channels/demo/prod?wait=x",
                                              token=self.reader)
        self.assertJsonError(status, data, 400, "invalid")

    # -- operations --------------------------------------------------------------------------

    def test_health_readiness_and_metrics(self):
        self.assertEqual(self.server.get_json("/healthz"), {"status": "ok"})
        self.assertEqual(self.server.get_json("/readyz"), {"status": "ready"})
        before = self.server.metrics(token=self.reader)
        rc, out, _ = curl("-f", *self.auth, self.file_url("demo", "1.0", DEMO[0]))
        self.assertEqual(rc, 0)
        self.server.request("GET", "/v1/images/nope", token=self.reader)
        key = 'imgstore_http_requests_total{route="/v1/images/{name}/{version}/files/{file}",' \
              'code="200"}'
        nope = 'imgstore_http_requests_total{route="/v1/images/{name}",code="404"}'
        # a request is counted when its connection is done with it, which may come just after
        # the client has its answer (the polling thread that sent it runs the completion, seen
        # on a busy 2-core VM): wait for both counts
        deadline = time.time() + 20
        after = self.server.metrics(token=self.reader)
        while (after.get(key, 0) <= before.get(key, 0) or not after.get(nope)) and \
                time.time() < deadline:
            time.sleep(0.05)
            after = self.server.metrics(token=self.reader)
        self.assertEqual(after.get(key, 0), before.get(key, 0) + 1)
        self.assertGreaterEqual(after["imgstore_http_response_bytes_total"],
                                before["imgstore_http_response_bytes_total"] + len(out))
        self.assertEqual(after.get('imgstore_http_requests_total{route="/v1/images/{name}",'
                                   'code="404"}', 0), 1)
        for name in ("imgstore_verification_failures_total", "imgstore_uploads_in_progress",
                     "imgstore_http_request_bytes_total"):
            self.assertIn(name, after)
        # the log: one line per request, never the token
        log = self.server.log()
        self.assertIn("path=/v1/images/nope status=404", log)
        self.assertIn("actor=reader", log)
        self.assertNotIn(self.reader, log)
        self.assertNotIn(self.boss, log)

    def test_sigterm_drains_in_flight_requests(self):
        data = read(fixture(DEMO[0]))
        conn = socket.create_connection((self.server.host, self.server.port), timeout=30)
        conn.sendall(("GET /v1/images/demo/1.0/files/%s HTTP/1.1\r\nHost: x\r\n"
                      "Authorization: Bearer %s\r\n\r\n" % (DEMO[0], self.reader)).encode())
        first = conn.recv(65536)
        self.assertTrue(first.startswith(b"HTTP/1.1 200"), first[:100])
        watch = {}
        t = threading.Thread(target=lambda: watch.setdefault("r", self.server.request(
            "GET", "/v1/channels/demo/prod?wait=60&after=1", token=self.reader, timeout=60)))
        t.start()
        time.sleep(0.5)
        t0 = time.time()
        self.server.proc.send_signal(15)
        time.sleep(0.5)
        received = first
        while True:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            received += chunk
            if len(received.partition(b"\r\n\r\n")[2]) >= len(data):
                break
        conn.close()
        self.assertEqual(received.partition(b"\r\n\r\n")[2], data, "download cut by SIGTERM")
        t.join(30)
        self.assertFalse(t.is_alive())
        self.assertEqual(watch["r"][0], 200)
        rc = self.server.stop(timeout=30)
        self.assertEqual(rc, 0, self.server.log())
        self.assertLess(time.time() - t0, 20)
        self.assertIn("drained=true", self.server.log())
        with self.assertRaises(OSError):
            socket.create_connection((self.server.host, self.server.port), timeout=5).close()


if __name__ == "__main__":
    main()
