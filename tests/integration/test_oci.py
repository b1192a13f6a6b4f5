#!/usr/bin/env python3
"""
The OCI distribution API of `imgstore serve` (issue #12, docs/oci.md), checked as the
distribution spec's conformance suite checks a registry that claims Pull, Push and Content
Discovery (opencontainers/distribution-spec conformance/: 01_pull, 02_push, 03_discovery, and
the same cases in the 2026 redesign). Each test cites the spec section it re-expresses.
Requests go through http.client; skopeo is test_oci_skopeo.py.
"""

import base64
import hashlib
import json
import os
import shutil
import socket
import time

from imgstore_testlib import ServerTestCase, main, new_token

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.imgstore.config.v1+json"


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_manifest(config, layers, annotations=None):
    """Bytes of an OCI image manifest: config bytes, [(title or None, bytes)]."""
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": digest(config), "size": len(config)},
        "layers": [],
    }
    for title, data in layers:
        layer = {"mediaType": "application/octet-stream", "digest": digest(data),
                 "size": len(data)}
        if title:
            layer["annotations"] = {"org.opencontainers.image.title": title}
        doc["layers"].append(layer)
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc, indent=1).encode()  # not canonical on purpose: bytes are kept


class OciTestCase(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.token, line = new_token("read,push", "ci")
        self.reader, reader_line = new_token("read", "reader")
        self.server = self.serve(line, reader_line, *self.extra_config())
        self.kernel = b"BIN0" + bytes(range(256)) * 64 + b"kernel"
        self.cmdline = b"console=ttyS0 quiet\n"
        path_k = self.path("app.bin")
        path_c = self.path("cmdline.txt")
        with open(path_k, "wb") as f:
            f.write(self.kernel)
        with open(path_c, "wb") as f:
            f.write(self.cmdline)
        self.ok("push", "--name", "app", "--version", "1.0", "--label", "ci.job=4",
                path_k, path_c)

    def extra_config(self):
        return ()

    def req(self, method, path, body=None, headers=None, token=True):
        return self.server.request(method, path, body=body, headers=headers,
                                   token=self.token if token is True else token)

    def assertOciError(self, status, data, expect_status, code):
        """spec: "Error Codes": a JSON body {"errors": [{"code", "message", ...}]}."""
        self.assertEqual(status, expect_status, data[:500])
        body = json.loads(data)
        self.assertIsInstance(body.get("errors"), list, body)
        self.assertEqual(body["errors"][0]["code"], code, body)
        self.assertIsInstance(body["errors"][0]["message"], str)

    def push_blob(self, name, data):
        """spec: "Pushing a blob monolithically" (POST then PUT ?digest=)."""
        status, headers, body = self.req("POST", "/v2/%s/blobs/uploads/" % name)
        self.assertEqual(status, 202, body)
        location = headers["location"]
        sep = "&" if "?" in location else "?"
        status, headers, body = self.req("PUT", location + sep + "digest=" + digest(data),
                                         body=data,
                                         headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 201, body)
        return headers


class Pull(OciTestCase):

    def test_the_base_endpoint_answers_with_the_api_version(self):
        # spec: "Determining support" (end-1): GET /v2/ is 200 with a valid token
        status, headers, _ = self.req("GET", "/v2/")
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("docker-distribution-api-version"), "registry/2.0")
        # spec: "Error Codes" UNAUTHORIZED, with a Bearer challenge (containers/image keeps
        # it and only then sends its --registry-token)
        status, headers, data = self.req("GET", "/v2/", token=None)
        self.assertOciError(status, data, 401, "UNAUTHORIZED")
        self.assertTrue(headers["www-authenticate"].startswith("Bearer "), headers)
        status, _, data = self.req("GET", "/v2/", token="imgstore_" + "0" * 64)
        self.assertOciError(status, data, 401, "UNAUTHORIZED")
        # the challenge's realm trades a token given as a Basic password for itself
        realm = headers["www-authenticate"].split('realm="', 1)[1].split('"', 1)[0]
        self.assertEqual(realm, "http://%s/v2/token" % self.server.address)
        basic = base64.b64encode(("ci:" + self.token).encode()).decode()
        status, _, data = self.req("GET", "/v2/token?scope=repository:app:pull", token=None,
                                   headers={"Authorization": "Basic " + basic})
        self.assertEqual((status, json.loads(data)["token"]), (200, self.token))
        basic = base64.b64encode(b"ci:not-a-token").decode()
        status, _, data = self.req("GET", "/v2/token", token=None,
                                   headers={"Authorization": "Basic " + basic})
        self.assertOciError(status, data, 401, "UNAUTHORIZED")

    def test_manifests_are_pulled_by_tag_and_by_digest(self):
        # spec: "Pulling manifests" (end-3): GET and HEAD by tag and by digest
        status, headers, body = self.req("GET", "/v2/app/manifests/1.0")
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["content-type"], MANIFEST_TYPE)
        self.assertEqual(headers["docker-content-digest"], digest(body))
        manifest = json.loads(body)
        self.assertEqual(manifest["schemaVersion"], 2)
        self.assertEqual(manifest["mediaType"], MANIFEST_TYPE)
        self.assertEqual(manifest["config"]["mediaType"], CONFIG_TYPE)
        titles = {l["annotations"]["org.opencontainers.image.title"]: l
                  for l in manifest["layers"]}
        self.assertEqual(set(titles), {"app.bin", "cmdline.txt"})
        self.assertEqual(titles["cmdline.txt"]["digest"], digest(self.cmdline))
        self.assertEqual(titles["cmdline.txt"]["mediaType"],
                         "application/vnd.imgstore.cmdline.text")
        self.assertEqual(titles["cmdline.txt"]["annotations"]["org.imgstore.kind"], "cmdline")
        self.assertEqual(manifest["annotations"]["org.imgstore.label.ci.job"], "4")
        self.assertEqual(manifest["annotations"]["org.opencontainers.image.version"], "1.0")
        status, headers, head_body = self.req("HEAD", "/v2/app/manifests/1.0")
        self.assertEqual((status, head_body), (200, b""))
        self.assertEqual(int(headers["content-length"]), len(body))
        self.assertEqual(headers["docker-content-digest"], digest(body))
        # by digest: the same bytes; and with the lookups gone (they are hints in the OCI
        # area, not the store), a fresh server finds it by scanning the newest versions
        shutil.rmtree(os.path.join(self.repo, "imgstore-oci", "lookup"))
        for server in (self.server, self.serve("token = %s scopes=read name=r2"
                                               % hashlib.sha256(self.token.encode()).hexdigest())):
            status, headers, again = server.request("GET", "/v2/app/manifests/" + digest(body),
                                                    token=self.token)
            self.assertEqual((status, again), (200, body))
        # the rendering is a pure function of the version: the digest is stable
        self.assertEqual(self.req("GET", "/v2/app/manifests/1.0")[2], body)

    def test_a_missing_or_malformed_manifest_reference_is_refused(self):
        # spec: "Pulling manifests": 404 MANIFEST_UNKNOWN; conformance "invalid digest"
        for method in ("GET", "HEAD"):
            status, _, data = self.req(method, "/v2/app/manifests/9.9")
            self.assertEqual(status, 404)
            if method == "GET":
                self.assertOciError(status, data, 404, "MANIFEST_UNKNOWN")
        status, _, data = self.req("GET", "/v2/app/manifests/" + digest(b"nothing"))
        self.assertOciError(status, data, 404, "MANIFEST_UNKNOWN")
        status, _, data = self.req("GET", "/v2/app/manifests/sha256:xyz")
        self.assertOciError(status, data, 400, "DIGEST_INVALID")
        status, _, data = self.req("GET", "/v2/nosuch/manifests/1.0")
        self.assertOciError(status, data, 404, "MANIFEST_UNKNOWN")

    def test_blobs_are_the_files_with_ranges_and_the_config(self):
        # spec: "Pulling blobs" (end-2): GET/HEAD by digest, Range (206)
        status, headers, body = self.req("GET", "/v2/app/blobs/" + digest(self.kernel))
        self.assertEqual((status, body), (200, self.kernel))
        self.assertEqual(headers["docker-content-digest"], digest(self.kernel))
        status, headers, body = self.req("HEAD", "/v2/app/blobs/" + digest(self.cmdline))
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(int(headers["content-length"]), len(self.cmdline))
        status, headers, body = self.req("GET", "/v2/app/blobs/" + digest(self.kernel),
                                         headers={"Range": "bytes=4-9"})
        self.assertEqual((status, body), (206, self.kernel[4:10]))
        self.assertEqual(headers["content-range"], "bytes 4-9/%d" % len(self.kernel))
        # the config blob wraps the exact signed manifest bytes
        manifest = json.loads(self.req("GET", "/v2/app/manifests/1.0")[2])
        status, headers, config = self.req("GET", "/v2/app/blobs/" + manifest["config"]["digest"])
        self.assertEqual(status, 200, config)
        self.assertEqual(digest(config), manifest["config"]["digest"])
        stored = self.ok("show", "app@1.0", "--json")
        inner = json.loads(config)
        self.assertEqual(json.loads(inner["manifest"])["version"], "1.0")
        self.assertEqual(hashlib.sha256(inner["manifest"].encode()).hexdigest(),
                         inner["manifest_sha256"])
        self.assertIn(inner["manifest_sha256"], stored)

    def test_a_missing_blob_is_blob_unknown(self):
        # spec: "Pulling blobs": 404 BLOB_UNKNOWN
        for method in ("GET", "HEAD"):
            status, _, data = self.req(method, "/v2/app/blobs/" + digest(b"not here"))
            self.assertEqual(status, 404)
        self.assertOciError(status, self.req("GET", "/v2/app/blobs/" + digest(b"x"))[2], 404,
                            "BLOB_UNKNOWN")
        status, _, data = self.req("GET", "/v2/app/blobs/md5:abc")
        self.assertOciError(status, data, 400, "DIGEST_INVALID")

    def test_reads_need_the_read_scope_pushes_the_push_scope(self):
        # same scopes as /v1 (docs/server.md, "Auth")
        status, _, data = self.req("GET", "/v2/app/manifests/1.0", token=None)
        self.assertOciError(status, data, 401, "UNAUTHORIZED")
        status, _, data = self.req("POST", "/v2/app/blobs/uploads/", token=self.reader)
        self.assertOciError(status, data, 403, "DENIED")
        status, _, data = self.req("PUT", "/v2/app/manifests/2.0", body=b"{}",
                                   token=self.reader)
        self.assertOciError(status, data, 403, "DENIED")
        self.assertEqual(self.req("GET", "/v2/app/manifests/1.0", token=self.reader)[0], 200)

    def test_delete_is_not_supported(self):
        # spec: "Content Management" is optional: 405 when deletion is disabled
        status, _, data = self.req("DELETE", "/v2/app/manifests/1.0")
        self.assertOciError(status, data, 405, "UNSUPPORTED")
        status, _, data = self.req("DELETE", "/v2/app/blobs/" + digest(self.kernel))
        self.assertOciError(status, data, 405, "UNSUPPORTED")


class Push(OciTestCase):

    def test_a_blob_is_pushed_monolithically_and_then_readable(self):
        # spec: "Pushing a blob monolithically": POST ?digest= with the body (end-4b) ...
        data = b"monolithic blob\n" * 100
        status, headers, body = self.req("POST", "/v2/app/blobs/uploads/?digest=" + digest(data),
                                         body=data,
                                         headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 201, body)
        self.assertEqual(headers["location"], "/v2/app/blobs/" + digest(data))
        self.assertEqual(headers["docker-content-digest"], digest(data))
        # ... readable at once (spec: "Pulling blobs")
        status, _, got = self.req("GET", headers["location"])
        self.assertEqual((status, got), (200, data))
        # ... and POST then PUT (end-4a, end-6)
        other = b"post then put"
        self.push_blob("app", other)
        self.assertEqual(self.req("HEAD", "/v2/app/blobs/" + digest(other))[0], 200)

    def test_a_blob_is_pushed_in_chunks_in_order(self):
        # spec: "Pushing a blob in chunks" (end-4a, end-5, end-13, end-6)
        data = bytes(range(256)) * 40
        one, two = data[:4000], data[4000:]
        status, headers, body = self.req("POST", "/v2/app/blobs/uploads/")
        self.assertEqual(status, 202, body)
        location = headers["location"]
        self.assertTrue(location.startswith("/v2/app/blobs/uploads/"), location)
        status, headers, body = self.req("PATCH", location, body=one, headers={
            "Content-Type": "application/octet-stream", "Content-Range": "0-3999"})
        self.assertEqual(status, 202, body)
        self.assertEqual(headers["range"], "0-3999")
        location = headers["location"]
        # a chunk out of order, or the same chunk again: 416 (conformance 02_push)
        for bad_range in ("5000-5999", "0-3999"):
            status, headers, body = self.req("PATCH", location, body=one, headers={
                "Content-Type": "application/octet-stream", "Content-Range": bad_range})
            self.assertOciError(status, body, 416, "BLOB_UPLOAD_INVALID")
            self.assertEqual(headers["range"], "0-3999")
        # GET on the session: 204 with Range and Location (end-13)
        status, headers, _ = self.req("GET", location)
        self.assertEqual(status, 204)
        self.assertEqual(headers["range"], "0-3999")
        self.assertIn("location", headers)
        status, headers, body = self.req("PATCH", location, body=two, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": "4000-%d" % (len(data) - 1)})
        self.assertEqual(status, 202, body)
        # a wrong digest is refused and nothing is staged
        status, _, body = self.req("PUT", headers["location"] + "?digest=" + digest(b"other"))
        self.assertOciError(status, body, 400, "DIGEST_INVALID")
        self.assertEqual(self.req("HEAD", "/v2/app/blobs/" + digest(b"other"))[0], 404)
        self.assertEqual(self.req("HEAD", "/v2/app/blobs/" + digest(data))[0], 404)
        # the same chunks again, closed with the right digest
        status, headers, _ = self.req("POST", "/v2/app/blobs/uploads/")
        status, headers, _ = self.req("PATCH", headers["location"], body=data,
                                      headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 202)
        status, headers, body = self.req("PUT", headers["location"] + "?digest=" + digest(data))
        self.assertEqual(status, 201, body)
        self.assertEqual(self.req("GET", "/v2/app/blobs/" + digest(data))[2], data)

    def test_an_upload_can_be_cancelled(self):
        # spec: "Canceling an upload": DELETE on the session, then it is unknown
        status, headers, _ = self.req("POST", "/v2/app/blobs/uploads/")
        location = headers["location"]
        self.assertEqual(self.req("DELETE", location)[0], 204)
        status, _, body = self.req("GET", location)
        self.assertOciError(status, body, 404, "BLOB_UPLOAD_UNKNOWN")
        status, _, body = self.req("PATCH", location, body=b"x")
        self.assertOciError(status, body, 404, "BLOB_UPLOAD_UNKNOWN")

    def test_a_pushed_manifest_becomes_a_signed_version(self):
        # spec: "Pushing Manifests" (end-7): 201, Location, Docker-Content-Digest
        kernel = b"BIN0" + b"\x02" * 5000
        config = b'{"anything":"the client wants"}'
        self.push_blob("app", kernel)
        self.push_blob("app", config)
        manifest = oci_manifest(config, [("kernel.elf", kernel), ("cmdline.txt", self.cmdline)],
                                {"org.imgstore.label.ci.job": "99",
                                 "org.opencontainers.image.source": "https://git.example/app",
                                 "org.opencontainers.image.revision": "f00d"})
        # cmdline.txt was not uploaded to this push: it is a file of app 1.0, as HEAD said
        self.assertEqual(self.req("HEAD", "/v2/app/blobs/" + digest(self.cmdline))[0], 200)
        status, headers, body = self.req("PUT", "/v2/app/manifests/2.0", body=manifest,
                                         headers={"Content-Type": MANIFEST_TYPE})
        self.assertEqual(status, 201, body)
        self.assertEqual(headers["docker-content-digest"], digest(manifest))
        self.assertEqual(headers["location"], "/v2/app/manifests/" + digest(manifest))
        # spec: the registry keeps the exact bytes: GET by their digest gives them back
        status, _, got = self.req("GET", headers["location"])
        self.assertEqual((status, got), (200, manifest))
        # it is a version like any push: detected, signed by the server's key, provenance kept
        shown = json.loads(self.ok("show", "app@2.0", "--json"))
        self.assertTrue(shown["signatures"]["trusted"], shown)
        files = {f["path"]: f for f in shown["manifest"]["files"]}
        self.assertEqual(set(files), {"kernel.elf", "cmdline.txt"})
        self.assertEqual(files["cmdline.txt"]["kind"], "cmdline")
        self.assertEqual(shown["manifest"]["provenance"]["labels"], {"ci.job": "99"})
        self.assertEqual(shown["manifest"]["provenance"]["source"],
                         {"repository": "https://git.example/app", "commit": "f00d"})
        self.assertEqual(self.subjects()[0], "push app 2.0")
        # and its own OCI form by tag, with both files
        status, _, body = self.req("GET", "/v2/app/manifests/2.0")
        layers = json.loads(body)["layers"]
        self.assertEqual(sorted(l["digest"] for l in layers),
                         sorted([digest(kernel), digest(self.cmdline)]))
        # the same push again is idempotent; other bytes under the same tag are refused
        self.push_blob("app", kernel)
        self.push_blob("app", config)
        self.assertEqual(self.req("PUT", "/v2/app/manifests/2.0", body=manifest)[0], 201)
        other = oci_manifest(config, [("kernel.elf", self.kernel)])
        self.push_blob("app", config)
        status, _, body = self.req("PUT", "/v2/app/manifests/2.0", body=other)
        self.assertOciError(status, body, 409, "DENIED")

    def test_what_imgstore_cannot_store_is_refused_clearly(self):
        # spec: "Pushing Manifests" errors: MANIFEST_INVALID, MANIFEST_BLOB_UNKNOWN
        layer, config = b"some bytes", b"{}"
        self.push_blob("app", layer)
        self.push_blob("app", config)
        cases = [
            (oci_manifest(config, [(None, layer)]), "MANIFEST_INVALID", "title"),
            (oci_manifest(config, [("../escape", layer)]), "MANIFEST_INVALID", "file name"),
            (oci_manifest(config, [("a.bin", b"never uploaded")]), "MANIFEST_BLOB_UNKNOWN",
             "was not uploaded"),
            (oci_manifest(config, []), "MANIFEST_INVALID", "at least one file"),
            (json.dumps({"schemaVersion": 2, "mediaType":
                         "application/vnd.docker.distribution.manifest.v2+json",
                         "config": {}, "layers": []}).encode(), "MANIFEST_INVALID",
             "only OCI image manifests"),
            (b"not json", "MANIFEST_INVALID", "not a JSON object"),
        ]
        for manifest, code, said in cases:
            status, _, body = self.req("PUT", "/v2/app/manifests/3.0", body=manifest)
            self.assertOciError(status, body, 400, code)
            self.assertIn(said, json.loads(body)["errors"][0]["message"])
        # a tag imgstore cannot take as a version name
        status, _, body = self.req("PUT", "/v2/app/manifests/_x", body=cases[0][0])
        self.assertOciError(status, body, 400, "MANIFEST_INVALID")
        # a digest reference must be the body's digest
        manifest = oci_manifest(config, [("a.bin", layer)])
        status, _, body = self.req("PUT", "/v2/app/manifests/" + digest(b"other"), body=manifest)
        self.assertOciError(status, body, 400, "DIGEST_INVALID")
        # nothing of it became a version
        self.assertNotIn("3.0", self.ok("ls", "app"))
        # pushed by its digest, the version's name is derived from the content
        status, _, body = self.req("PUT", "/v2/app/manifests/" + digest(manifest),
                                   body=manifest)
        self.assertEqual(status, 201, body)
        self.assertIn("c-", self.ok("ls", "app"))


class Discovery(OciTestCase):

    def tags_pages(self, n):
        """The tag list in pages of n, following each page's Link (spec: "Listing Tags")."""
        tags, url, pages = [], "/v2/app/tags/list?n=%d" % n, 0
        while url:
            status, headers, body = self.req("GET", url)
            self.assertEqual(status, 200, body)
            page = json.loads(body)
            self.assertEqual(page["name"], "app")
            self.assertLessEqual(len(page["tags"]), n)
            tags += page["tags"]
            pages += 1
            url = None
            if "link" in headers:
                self.assertEqual(len(page["tags"]), n)
                self.assertTrue(headers["link"].endswith('>; rel="next"'), headers["link"])
                url = headers["link"][1:headers["link"].index(">")]
        return tags, pages

    def test_tags_are_in_lexical_order_paged_with_n_last_and_link(self):
        # spec: "Listing Tags" (end-8a, end-8b): the list MUST be in lexical order; `n`
        # limits a page, `last` starts it after a tag, a Link header names the next page.
        # Pushed out of lexical order: 1.10 after 1.9, 10.0 before 2.0.
        pushed = ["1.0", "1.9", "1.10", "1.2", "10.0", "2.0", "1.1.1", "1.0+b.2"]
        for v in pushed[1:]:
            self.ok("push", "--name", "app", "--version", v, self.path("cmdline.txt"))
        lexical = sorted(pushed)  # bytewise, as the spec's reference implementation sorts
        self.assertEqual(lexical[:4], ["1.0", "1.0+b.2", "1.1.1", "1.10"])
        status, headers, body = self.req("GET", "/v2/app/tags/list")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"name": "app", "tags": lexical})
        self.assertNotIn("link", headers)
        for n in (1, 2, 3, 8):
            self.assertEqual(self.tags_pages(n), (lexical, (len(lexical) + n - 1) // n))
        status, headers, body = self.req("GET", "/v2/app/tags/list?n=2")
        self.assertEqual(json.loads(body)["tags"], ["1.0", "1.0+b.2"])
        # '+' escaped, so that a form decoder does not read a space
        self.assertEqual(headers["link"], '</v2/app/tags/list?n=2&last=1.0%2Bb.2>; rel="next"')
        status, _, body = self.req("GET", "/v2/app/tags/list?n=2&last=1.0%2Bb.2")
        self.assertEqual(json.loads(body)["tags"], ["1.1.1", "1.10"])
        # `last` need not be a tag: the tags after it; past the end, none
        self.assertEqual(json.loads(self.req("GET", "/v2/app/tags/list?last=1.5")[2])["tags"],
                         ["1.9", "10.0", "2.0"])
        for last in ("2.0", "9.9"):
            status, headers, body = self.req("GET", "/v2/app/tags/list?n=5&last=" + last)
            self.assertEqual((status, json.loads(body)["tags"]), (200, []))
            self.assertNotIn("link", headers)
        # n=0: an empty list and no Link
        status, headers, body = self.req("GET", "/v2/app/tags/list?n=0")
        self.assertEqual(json.loads(body)["tags"], [])
        self.assertNotIn("link", headers)
        # unknown repository
        status, _, body = self.req("GET", "/v2/nosuch/tags/list")
        self.assertOciError(status, body, 404, "NAME_UNKNOWN")
        # a prune takes its versions out of the list, in the same commit
        self.ok("prune", "app", "--keep", "3")
        kept = sorted(v["version"] for v in json.loads(self.ok("ls", "app", "--json"))["versions"])
        self.assertEqual(len(kept), 3)
        for n in (1, 2, 1000):
            self.assertEqual(self.tags_pages(n)[0], kept)
        self.assertFsckClean()


class ByDigest(OciTestCase):
    """Digests are resolved through the store's digest index, not through what one server
    process rendered: any server over the store answers them (docs/oci.md)."""

    def test_a_fresh_server_serves_blobs_and_manifests_by_digest_it_never_listed(self):
        # spec: "Pulling blobs" (end-2) and "Pulling manifests" by digest (end-3): a digest
        # of an old version, asked of server processes that never rendered it: one that
        # lost its OCI area (a restart on a new disk) and a second one over the same store
        status, headers, body = self.req("GET", "/v2/app/manifests/1.0")
        self.assertEqual(status, 200, body)
        manifest = json.loads(body)
        status, _, config = self.req("GET", "/v2/app/blobs/" + manifest["config"]["digest"])
        self.assertEqual(status, 200, config)
        # newer versions than the 16 a store without a digest index would look through
        for i in range(20):
            with open(self.path("cmdline.txt"), "wb") as f:
                f.write(b"console=ttyS0 v=%d\n" % i)
            self.ok("push", "--name", "app", "--version", "2.%d" % i, self.path("cmdline.txt"))
        shutil.rmtree(os.path.join(self.repo, "imgstore-oci", "lookup"))
        second = self.serve("token = %s scopes=read name=r2"
                            % hashlib.sha256(self.token.encode()).hexdigest())
        for server in (second, self.server):
            for path, expect in (("blobs/" + digest(self.kernel), self.kernel),
                                 ("blobs/" + manifest["config"]["digest"], config),
                                 ("manifests/" + digest(body), body)):
                status, headers, data = server.request("GET", "/v2/app/" + path,
                                                       token=self.token)
                self.assertEqual((status, data), (200, expect), path)
                self.assertEqual(headers["docker-content-digest"], path.split("/")[1])
                status, headers, data = server.request("HEAD", "/v2/app/" + path,
                                                       token=self.token)
                self.assertEqual((status, int(headers["content-length"])), (200, len(expect)))
            # a file of no version of this image: unknown
            status, _, data = server.request("GET", "/v2/other/blobs/" + digest(self.kernel),
                                             token=self.token)
            self.assertOciError(status, data, 404, "BLOB_UNKNOWN")

    def test_a_pruned_version_is_not_served_by_digest(self):
        # spec: "Pulling blobs": 404 BLOB_UNKNOWN for what the registry no longer holds;
        # the digest index keeps rows of pruned versions (history), the store does not
        old = b"BIN0 old bytes only 1.0 has" * 100
        with open(self.path("old.bin"), "wb") as f:
            f.write(old)
        self.ok("push", "--name", "app", "--version", "0.1", self.path("old.bin"))
        for v in ("3.0", "3.1"):
            self.ok("push", "--name", "app", "--version", v, self.path("cmdline.txt"))
        status, _, data = self.req("GET", "/v2/app/blobs/" + digest(old))
        self.assertEqual((status, data), (200, old))
        self.ok("prune", "app", "--keep", "2")
        status, _, data = self.req("GET", "/v2/app/blobs/" + digest(old))
        self.assertOciError(status, data, 404, "BLOB_UNKNOWN")


class Limits(OciTestCase):

    def extra_config(self):
        return ("max_uploads = 1",)

    def test_upload_sessions_count_against_max_uploads(self):
        # docs/server.md max_uploads: a session holds a place until it ends
        status, headers, _ = self.req("POST", "/v2/app/blobs/uploads/")
        self.assertEqual(status, 202)
        status, _, body = self.req("POST", "/v2/app/blobs/uploads/")
        self.assertOciError(status, body, 429, "TOOMANYREQUESTS")
        self.assertEqual(self.req("DELETE", headers["location"])[0], 204)
        status, headers, _ = self.req("POST", "/v2/app/blobs/uploads/")
        self.assertEqual(status, 202)


class Cleanup(OciTestCase):

    def extra_config(self):
        return ("max_uploads = 1", "oci_upload_timeout = 1")

    def uploads(self):
        return os.listdir(os.path.join(self.repo, "imgstore-oci", "uploads"))

    def test_an_idle_session_is_dropped_and_its_place_freed(self):
        # docs/oci.md "Staging and lookups": oci_upload_timeout
        status, headers, _ = self.req("POST", "/v2/app/blobs/uploads/")
        self.assertEqual(status, 202)
        first = headers["location"]
        self.assertEqual(self.req("PATCH", first, body=b"some bytes")[0], 202)
        self.assertEqual(len(self.uploads()), 1)
        time.sleep(2.5)
        status, headers, _ = self.req("POST", "/v2/app/blobs/uploads/")
        self.assertEqual(status, 202)  # max_uploads = 1: the idle one gave its place back
        status, _, body = self.req("GET", first)
        self.assertOciError(status, body, 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertEqual(self.uploads(), [headers["location"].rsplit("/", 1)[1]])

    def test_a_chunk_cut_off_mid_body_drops_its_session(self):
        # a PATCH whose body never arrives whole: the session's bytes are in doubt, it goes
        status, headers, _ = self.req("POST", "/v2/app/blobs/uploads/")
        location = headers["location"]
        sock = socket.create_connection((self.server.host, self.server.port))
        sock.sendall(("PATCH %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                      "Content-Length: 100000\r\n\r\n" % (location, self.token)).encode()
                     + b"only part of it")
        time.sleep(0.5)
        sock.close()
        deadline = time.time() + 10
        while time.time() < deadline and self.uploads():
            time.sleep(0.1)
        self.assertEqual(self.uploads(), [])
        status, _, body = self.req("GET", location)
        self.assertOciError(status, body, 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertEqual(self.req("POST", "/v2/app/blobs/uploads/")[0], 202)  # place freed


class Keyless(OciTestCase):
    """A server without a key stores an OCI push pending, as a /v1 upload: nothing unsigned
    is handed out or deployable until a release key signs it."""

    def serve(self, *lines, **kw):
        kw["env"] = {"XDG_CONFIG_HOME": self.path("nokey")}
        return super().serve(*lines, **kw)

    def test_an_oci_push_to_a_keyless_server_is_pending(self):
        layer, config = b"BIN0" + b"\x01" * 3000, b"{}"
        self.push_blob("app", layer)
        self.push_blob("app", config)
        manifest = oci_manifest(config, [("app.elf", layer)])
        status, headers, body = self.req("PUT", "/v2/app/manifests/5.0", body=manifest)
        self.assertEqual(status, 201, body)
        shown = json.loads(self.ok("show", "app@5.0", "--json"))
        self.assertFalse(shown["signatures"]["trusted"])
        for path in ("/v2/app/manifests/5.0", headers["location"],
                     "/v2/app/blobs/" + digest(layer)):
            status, _, body = self.req("GET", path)
            self.assertNotEqual(status, 200, (path, body))
        # by digest, found through the store's digest index: refused, saying why
        status, _, body = self.req("GET", "/v2/app/blobs/" + digest(layer))
        self.assertOciError(status, body, 500, "DENIED")
        self.assertIn("signatures", json.loads(body)["errors"][0]["message"])
        rc, _, err = self.im("deploy", "app", "5.0", "--channel", "prod")
        self.assertNotEqual(rc, 0, err)


if __name__ == "__main__":
    main()
