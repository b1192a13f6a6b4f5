#!/usr/bin/env python3
"""
contrib/nginx/imgstore.conf, as shipped, in front of a real `imgstore serve` (issue #12):
nginx runs unprivileged-style (its own prefix, pid, temp paths and cache under the test's
directory, on a free loopback port). Versioned files are served from nginx's cache after the
first download (X-Cache-Status HIT, imgstore sees a HEAD per request and no second GET), ranges
included; every answer, cached or not, is still authorised by imgstore (no token: 401);
channel states, manifests and the rest are never cached: a deploy is visible through nginx at
once. Skips when nginx is not installed.
"""

import http.client
import os
import re
import shutil
import socket
import subprocess
import time

from imgstore_testlib import Server, StoreTestCase, main, new_token, sha256

CONF = os.path.join(os.environ.get("IMGSTORE_SOURCE_DIR") or
                    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    "contrib", "nginx", "imgstore.conf")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """nginx with contrib/nginx/imgstore.conf in front of `upstream` (ADDR:PORT)."""

    def __init__(self, prefix, upstream):
        self.prefix = prefix
        for d in ("tmp", "cache", "logs"):
            os.makedirs(os.path.join(prefix, d), exist_ok=True)
        self.port = free_port()
        with open(CONF) as f:
            site = f.read()
        site = site.replace("server 127.0.0.1:8080;", "server %s;" % upstream)
        site = site.replace("/var/cache/nginx/imgstore", os.path.join(prefix, "cache"))
        site = re.sub(r"(?m)^    listen 80;", "    listen 127.0.0.1:%d;" % self.port, site)
        assert str(self.port) in site and upstream in site, "contrib/nginx/imgstore.conf changed"
        with open(os.path.join(prefix, "imgstore.conf"), "w") as f:
            f.write(site)
        tmp = os.path.join(prefix, "tmp")
        with open(os.path.join(prefix, "nginx.conf"), "w") as f:
            f.write("%s\nworker_processes 1;\ndaemon off;\npid %s/nginx.pid;\n"
                    "error_log %s/logs/error.log warn;\nevents { worker_connections 256; }\n"
                    "http {\n  access_log %s/logs/access.log;\n"
                    "  client_body_temp_path %s/body;\n  proxy_temp_path %s/proxy;\n"
                    "  fastcgi_temp_path %s/fastcgi;\n  uwsgi_temp_path %s/uwsgi;\n"
                    "  scgi_temp_path %s/scgi;\n  include %s/imgstore.conf;\n}\n"
                    % ("user root root;" if os.geteuid() == 0 else "", prefix, prefix, prefix,
                       tmp, tmp, tmp, tmp, tmp, prefix))
        self.proc = subprocess.Popen(["nginx", "-p", prefix, "-c",
                                      os.path.join(prefix, "nginx.conf"), "-e",
                                      os.path.join(prefix, "logs", "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("nginx did not start: %s" % self.proc.stderr.read())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("nginx did not listen on %d" % self.port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # fast shutdown
            self.proc.wait(timeout=30)
        self.proc.stderr.close()


def get(port, path, headers=None, method="GET"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        conn.close()


class NginxCache(StoreTestCase):

    def setUp(self):
        super().setUp()
        if not shutil.which("nginx"):
            self.skipTest("nginx not installed (scripts/install-deps installs it)")
        self.image, self.image_sha = self.random_file("app-1.0.img", 3 * 1024 * 1024 + 17)
        self.push(self.image)
        other, _ = self.random_file("app-1.1.img", 4096)
        self.push(other)
        self.ok("deploy", "app", "1.0", "--channel", "prod")
        self.token, line = new_token("read")
        self.server = Server(self.repo, self.tmp, [line])
        self.addCleanup(self.server.kill)
        self.nginx = Nginx(self.path("nginx"), self.server.address)
        self.addCleanup(self.nginx.stop)
        self.auth = {"Authorization": "Bearer " + self.token}

    def upstream_gets(self, path):
        return len(re.findall(r"method=GET path=%s " % re.escape(path), self.server.log()))

    def test_versioned_files_are_cached_and_still_authorised(self):
        path = "/v1/images/app/1.0/files/app-1.0.img"
        status, headers, body = get(self.nginx.port, path, self.auth)
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(headers.get("x-cache-status"), "MISS")
        self.assertEqual(sha256(body), self.image_sha)
        self.assertIn("immutable", headers["cache-control"])
        for _ in range(3):
            status, headers, body = get(self.nginx.port, path, self.auth)
            self.assertEqual((status, headers.get("x-cache-status")), (200, "HIT"))
            self.assertEqual(sha256(body), self.image_sha)
        status, headers, part = get(self.nginx.port, path,
                                    dict(self.auth, Range="bytes=1000-1999"))
        self.assertEqual((status, headers.get("x-cache-status")), (206, "HIT"))
        with open(self.image, "rb") as f:
            f.seek(1000)
            self.assertEqual(part, f.read(1000))
        # imgstore sent the bytes once, and authorised every request with a HEAD
        time.sleep(0.2)  # the server logs a request once it is done
        self.assertEqual(self.upstream_gets(path), 1, self.server.log())
        self.assertGreaterEqual(len(re.findall(r"method=HEAD path=%s status=200" %
                                               re.escape(path), self.server.log())), 5)
        # a cached file is not handed to a client imgstore refuses
        status, headers, body = get(self.nginx.port, path)
        self.assertEqual(status, 401, body[:300])
        self.assertIn("Bearer", headers.get("www-authenticate", ""))
        status, _, _ = get(self.nginx.port, path, {"Authorization": "Bearer imgstore_wrong"})
        self.assertEqual(status, 401)
        # an unknown version is imgstore's own 404, with its JSON body
        status, _, body = get(self.nginx.port, "/v1/images/app/9.9/files/app-1.0.img",
                              self.auth)
        self.assertEqual(status, 404, body[:300])
        self.assertIn(b'"not_found"', body)

    def test_channel_state_and_other_answers_are_never_cached(self):
        channel = "/v1/channels/app/prod"
        for _ in range(2):
            status, headers, body = get(self.nginx.port, channel, self.auth)
            self.assertEqual(status, 200, body[:300])
            self.assertNotIn("x-cache-status", headers)
            self.assertIn(b'"1.0"', body)
        self.ok("deploy", "app", "1.1", "--channel", "prod")
        status, headers, body = get(self.nginx.port, channel, self.auth)
        self.assertEqual(status, 200)
        self.assertIn(b'"version": "1.1"', body.replace(b'":"', b'": "'))
        for path in ("/v1/images/app/1.0/manifest", "/v1/trust", "/v1/images"):
            status, headers, _ = get(self.nginx.port, path, self.auth)
            self.assertEqual(status, 200, path)
            self.assertNotIn("x-cache-status", headers, path)
        self.assertEqual(get(self.nginx.port, "/v1/trust")[0], 401)
        self.assertEqual(os.listdir(self.path("nginx", "cache")), [])


if __name__ == "__main__":
    main()
