"""
imgstore serve auth: the matrix of no token, a bad token and each scope against every route
(401 with WWW-Authenticate, 403, or served), public reads, and `imgstore token create`.
"""

import json
import os
import re

from imgstore_testlib import (SOURCE_DIR, ServerTestCase, main, multipart, new_token,
                              sha256)

SCOPES = ["read", "push", "deploy", "report", "admin"]


def error_of(path, data):
    """The error of a body: /v1's {"error": ...}, or /v2's OCI {"errors": [...]} read back
    into /v1's code names (UNAUTHORIZED, DENIED)."""
    body = json.loads(data)
    if not path.startswith("/v2"):
        return body["error"]
    error = body["errors"][0]
    code = {"UNAUTHORIZED": "unauthorized", "DENIED": "forbidden"}.get(error["code"],
                                                                       error["code"])
    return {"code": code, "message": error["message"]}


class Auth(ServerTestCase):

    def setUp(self):
        super().setUp()
        p, self.app_sha = self.random_file("app.img", 300 * 1024)
        self.push(p, "--name", "app", "--version", "1.0", "--kind", "unknown")
        self.ok("deploy", "app", "1.0", "--channel", "prod")
        self.tokens, lines = {}, []
        for scope in SCOPES:
            self.tokens[scope], line = new_token(scope, "t-" + scope)
            lines.append(line)
        self.server = self.serve(*lines)
        self.uploads = 0

    def routes(self):
        """(method, path, OpenAPI path, body, headers, scopes of which any one will do or
        None, statuses when served). Every operation of schema/openapi.yaml is here (test_covers_the_openapi)."""
        self.uploads += 1
        ctype, form = multipart([("f.bin", b"upload %d" % self.uploads)])
        ctype2, form2 = multipart([("g.bin", b"unversioned %d" % self.uploads)])
        ok = (200,)
        form_type = {"Content-Type": "application/x-www-form-urlencoded"}
        bad_signature = json.dumps({"signatures": ["not a signature"]}).encode()
        bad_state = json.dumps({"state": "{}", "signatures": ["not a signature"]}).encode()
        image, version, channel = "/v1/images/{name}", "/v1/images/{name}/{version}", \
            "/v1/channels/{name}/{channel}"
        return [
            ("GET", "/healthz", "/healthz", None, None, None, ok),
            ("GET", "/readyz", "/readyz", None, None, None, ok),
            ("GET", "/metrics", "/metrics", None, None, "read", ok),
            ("GET", "/v1/trust", "/v1/trust", None, None, "read,deploy", ok),
            # served only by a read replica (test_mirror.py); this server is not one
            ("GET", "/v1/mirror", "/v1/mirror", None, None, "read", (404,)),
            ("GET", "/v1/images", "/v1/images", None, None, "read", ok),
            ("GET", "/v1/images/app", image, None, None, "read", ok),
            ("POST", "/v1/images/app", image, form2, {"Content-Type": ctype2}, "push", (201,)),
            ("GET", "/v1/images/app/history", image + "/history", None, None, "read", ok),
            ("GET", "/v1/images/app/1.0", version, None, None, "read", ok),
            ("POST", "/v1/images/app/u%d" % self.uploads, version, form,
             {"Content-Type": ctype}, "push", (201,)),
            # what a deploy reads first is readable with the deploy scope too
            ("GET", "/v1/images/app/1.0/manifest", version + "/manifest", None, None,
             "read,deploy", ok),
            ("GET", "/v1/images/app/1.0/signatures", version + "/signatures", None, None,
             "read,deploy", ok),
            ("POST", "/v1/images/app/1.0/signatures", version + "/signatures", bad_signature,
             None, "push", (400,)),
            ("GET", "/v1/images/app/1.0/files/app.img", version + "/files/{file}", None, None,
             "read", ok),
            ("HEAD", "/v1/images/app/1.0/files/app.img", version + "/files/{file}", None, None,
             "read", ok),
            ("GET", "/v1/channels/app/prod", channel, None, None, "read,deploy", ok),
            ("GET", "/v1/channels/app/prod/history", channel + "/history", None, None, "read",
             ok),
            ("GET", "/v1/channels/app/prod/signed", channel + "/signed", None, None,
             "read,deploy", ok),
            ("POST", "/v1/channels/app/prod/signed", channel + "/signed", bad_state, None,
             "deploy", (400,)),
            ("POST", "/v1/channels/app/prod/deploy", channel + "/deploy",
             json.dumps({"version": "1.0"}).encode(), None, "deploy", ok),
            # host reports (docs/agent.md): posting needs report, which deploy implies
            ("GET", "/v1/channels/app/prod/reports", channel + "/reports", None, None, "read",
             ok),
            ("POST", "/v1/channels/app/prod/reports", channel + "/reports",
             json.dumps({"host": "h1", "state": "ok", "version": "1.0"}).encode(), None,
             "report,deploy", (201,)),
            # served: a rollback may find nothing to roll back to (404)
            ("POST", "/v1/channels/app/prod/rollback", channel + "/rollback", b"{}", None,
             "deploy", (200, 404)),
            # the OCI API (docs/oci.md): the same scopes; its ping takes any valid token
            ("GET", "/v2/", "/v2/", None, None, "read,push,deploy,report", ok),
            ("GET", "/v2/token", "/v2/token", None, None, "basic", ok),
            ("GET", "/v2/app/manifests/1.0", "/v2/{name}/manifests/{reference}", None, None,
             "read", ok),
            ("HEAD", "/v2/app/manifests/1.0", "/v2/{name}/manifests/{reference}", None, None,
             "read", ok),
            ("PUT", "/v2/app/manifests/9.0", "/v2/{name}/manifests/{reference}", b"{}", None,
             "push", (400,)),
            ("GET", "/v2/app/blobs/sha256:" + self.app_sha, "/v2/{name}/blobs/{digest}", None,
             None, "read", ok),
            # a pushing client asks whether a blob is there before it sends it
            ("HEAD", "/v2/app/blobs/sha256:" + self.app_sha, "/v2/{name}/blobs/{digest}", None,
             None, "read,push", ok),
            ("POST", "/v2/app/blobs/uploads/", "/v2/{name}/blobs/uploads/", None, None, "push",
             (202,)),
            ("GET", "/v2/app/blobs/uploads/" + "0" * 32, "/v2/{name}/blobs/uploads/{id}", None,
             None, "push", (404,)),
            ("PATCH", "/v2/app/blobs/uploads/" + "0" * 32, "/v2/{name}/blobs/uploads/{id}",
             b"chunk", None, "push", (404,)),
            ("PUT", "/v2/app/blobs/uploads/" + "0" * 32 + "?digest=sha256:" + "0" * 64,
             "/v2/{name}/blobs/uploads/{id}", None, None, "push", (404,)),
            ("DELETE", "/v2/app/blobs/uploads/" + "0" * 32, "/v2/{name}/blobs/uploads/{id}",
             None, None, "push", (404,)),
            ("GET", "/v2/app/tags/list", "/v2/{name}/tags/list", None, None, "read", ok),
            # the status page: a bearer token as above; without one, the login form (303)
            ("GET", "/", "/", None, None, "read", ok),
            ("GET", "/ui/", "/ui/", None, None, "read", ok),
            ("GET", "/ui/images/app", "/ui/images/{name}", None, None, "read", ok),
            ("GET", "/ui/images/app/1.0", "/ui/images/{name}/{version}", None, None, "read", ok),
            ("GET", "/ui/channels/app/prod", "/ui/channels/{name}/{channel}", None, None, "read",
             ok),
            ("GET", "/ui/login", "/ui/login", None, None, None, ok),
            ("POST", "/ui/login", "/ui/login", b"token=imgstore_nope", form_type, None, (401,)),
            ("POST", "/ui/logout", "/ui/logout", b"", form_type, None, (303,)),
            ("GET", "/ui/style.css", "/ui/style.css", None, None, None, ok),
        ]

    def test_covers_the_openapi(self):
        """The matrix below reaches every operation the OpenAPI document describes, and
        nothing it does not."""
        documented, path = set(), None
        with open(os.path.join(SOURCE_DIR, "schema", "openapi.yaml")) as f:
            for line in f:
                m = re.match(r"^  (/\S*):\s*$", line)
                if m:
                    path = m.group(1)
                m = re.match(r"^    (get|post|put|head|delete|patch):", line)
                if m and path:
                    documented.add((m.group(1).upper(), path))
        tested = {(r[0], r[2]) for r in self.routes()}
        self.assertEqual(documented, tested)

    def test_matrix(self):
        for who in [None, "bad"] + SCOPES:
            for method, path, _, body, headers, scope, served in self.routes():
                if scope == "basic":  # a Basic password, not a bearer token: test_oci.py
                    continue
                token = {None: None, "bad": "imgstore_" + "0" * 64}.get(who, self.tokens.get(who))
                status, hdrs, data = self.server.request(method, path, body=body,
                                                         headers=headers, token=token)
                what = "%s %s as %s" % (method, path, who)
                if scope is None:
                    self.assertIn(status, served, what)
                elif who is None and (path == "/" or path.startswith("/ui/")):
                    self.assertEqual(status, 303, what)  # to the status page's login form
                    self.assertEqual(hdrs["location"], "/ui/login?next=" + path, what)
                elif who is None or who == "bad":
                    self.assertEqual(status, 401, what)
                    self.assertTrue(hdrs.get("www-authenticate", "").startswith("Bearer"), what)
                    if method != "HEAD":
                        self.assertEqual(error_of(path, data)["code"], "unauthorized", what)
                elif who not in scope.split(",") and who != "admin":
                    self.assertEqual(status, 403, what)
                    if method != "HEAD":
                        error = error_of(path, data)
                        self.assertEqual(error["code"], "forbidden", what)
                        # the message names the scope that is missing
                        self.assertIn("'%s'" % scope.split(",")[0], error["message"], what)
                else:
                    self.assertIn(status, served, "%s: %r" % (what, data[:300]))
        # the actor of a write is the token's name
        self.assertIn("t-admin", self.git("log", "-1", "--format=%an", "main"))

    def test_public_reads(self):
        server = self.serve("read_public = true")
        for path in ("/v1/images", "/v1/images/app/1.0/files/app.img", "/v1/channels/app/prod"):
            status, _, _ = server.request("GET", path)
            self.assertEqual(status, 200, path)
        status, _, _ = server.request("POST", "/v1/channels/app/prod/deploy",
                                      body={"version": "1.0"})
        self.assertEqual(status, 401)
        # a wrong token is still refused, even where anonymous reads are allowed
        status, _, _ = server.request("GET", "/v1/images", token="imgstore_nope")
        self.assertEqual(status, 401)

    def test_token_create_prints_a_working_token_once(self):
        out = self.okjson("token", "create", "--scope", "read,deploy", "--name", "ci")
        self.assertTrue(out["token"].startswith("imgstore_"))
        self.assertEqual(out["sha256"], sha256(out["token"].encode()))
        self.assertEqual(out["config_line"], "token = %s scopes=read,deploy name=ci"
                         % out["sha256"])
        server = self.serve(out["config_line"])
        self.assertEqual(server.request("GET", "/v1/images", token=out["token"])[0], 200)
        self.assertEqual(server.request("POST", "/v1/channels/app/prod/deploy",
                                        body={"version": "1.0"}, token=out["token"])[0], 200)
        ctype, form = multipart([("f.bin", b"x")])
        self.assertEqual(server.request("POST", "/v1/images/app/2.0", body=form,
                                        headers={"Content-Type": ctype},
                                        token=out["token"])[0], 403)
        other = self.okjson("token", "create", "--scope", "read")
        self.assertNotEqual(other["token"], out["token"])
        for bad in (["--scope", "root"], ["--scope", ""], ["--scope", "read,"], []):
            rc, _, _ = self.im("token", "create", *bad)
            self.assertIn(rc, (1, 2), bad)

    def test_bad_config_is_refused_at_start(self):
        for line in ("token = abc scopes=read", "token = %s" % ("a" * 64),
                     "token = %s scopes=sudo" % ("a" * 64), "max_json_bytes = lots",
                     "no_such_setting = 1", "just words"):
            rc, _, err = self.im("serve", "--listen", "127.0.0.1:0", "--set", "x=1"
                                 if line == "just words" else "read_public=true",
                                 "--config", self.write_config(line), timeout=30)
            self.assertEqual(rc, 1, "%s: %s" % (line, err))
            self.assertIn("imgstore serve:", err)

    def write_config(self, line):
        p = self.path("bad-%d.conf" % abs(hash(line)))
        with open(p, "w") as f:
            f.write(line + "\n")
        return p


if __name__ == "__main__":
    main()
