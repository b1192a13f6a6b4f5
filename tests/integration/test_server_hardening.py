"""
imgstore serve at the edges of HTTP and of its own socket: a port already in use stops a
second server, ambiguous requests (two Content-Length or Authorization headers, a raw NUL in
the path) are refused, a 403 names the scope it lacks, a deploy token reads what deploying
needs, a 304 carries no body, and slow request heads (slowloris) are closed at their deadline
without starving anyone else.
"""

import json
import socket
import subprocess
import time

from imgstore_testlib import (BIN, EXIT_FAIL, ServerTestCase, base_env, main, new_token,
                              recv_all, run)


def exchange(server, request, timeout=30, half_close=True):
    """Send REQUEST (bytes) on a fresh socket and return every byte the server answers."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as s:
        s.sendall(request)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        return recv_all(s)


def raw_request(server, request, timeout=30):
    """Send REQUEST (bytes) on a fresh socket; return (status, {header: [values]}, body)."""
    data = exchange(server, request, timeout)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, headers, body


class Hardening(ServerTestCase):

    def setUp(self):
        super().setUp()
        p, _ = self.random_file("app.img", 64 * 1024)
        self.push(p, "--name", "demo", "--version", "1.0", "--kind", "unknown")
        self.ok("deploy", "demo", "1.0", "--channel", "prod")
        self.reader, read_line = new_token("read", "reader")
        self.deployer, deploy_line = new_token("deploy", "deployer")
        self.server = self.serve(read_line, deploy_line)

    # -- item: a busy port -------------------------------------------------------------------

    def test_a_busy_port_stops_the_second_server(self):
        config = self.path("second.conf")
        with open(config, "w") as f:
            f.write("# empty\n")
        try:
            p = subprocess.run([BIN, "serve", "--repo", self.repo, "--listen",
                                self.server.address, "--config", config],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base_env(),
                               timeout=10)
        except subprocess.TimeoutExpired:
            self.fail("a second server on %s started" % self.server.address)
        err = p.stderr.decode()
        self.assertEqual(p.returncode, EXIT_FAIL, err)
        self.assertNotIn(b"listening on", p.stdout)
        lines = [line for line in err.splitlines() if "cannot listen" in line]
        self.assertEqual(len(lines), 1, err)
        self.assertIn(self.server.address, lines[0])
        self.assertIn("in use", lines[0])
        # the first server still answers
        self.assertEqual(self.server.request("GET", "/v1/images", token=self.reader)[0], 200)

    # -- item: ambiguous requests ------------------------------------------------------------

    def assertRawJsonError(self, request, code="invalid"):
        status, headers, body = raw_request(self.server, request)
        self.assertJsonError(status, body, 400, code)
        return json.loads(body)["error"]["message"]

    def test_two_content_lengths_are_refused(self):
        tip = self.tip()
        body = json.dumps({"version": "1.0"}).encode()
        auth = ("Authorization: Bearer %s\r\n" % self.deployer).encode()
        for lengths in ((len(body), len(body)), (len(body), 2), (2, len(body))):
            request = (b"POST /v1/channels/demo/prod/deploy HTTP/1.1\r\nHost: x\r\n" + auth +
                       b"Content-Type: application/json\r\nConnection: close\r\n" +
                       b"".join(b"Content-Length: %d\r\n" % n for n in lengths) +
                       b"\r\n" + body)
            self.assertIn("Content-Length", self.assertRawJsonError(request))
        self.assertEqual(self.tip(), tip, "a refused request changed the store")
        # one Content-Length is still fine
        request = (b"POST /v1/channels/demo/prod/deploy HTTP/1.1\r\nHost: x\r\n" + auth +
                   b"Content-Type: application/json\r\nConnection: close\r\n" +
                   b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.assertEqual(raw_request(self.server, request)[0], 200)

    def test_two_authorization_headers_are_refused(self):
        for second in (self.reader, "imgstore_" + "0" * 64):
            request = ("GET /v1/images HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       "Authorization: Bearer %s\r\nAuthorization: Bearer %s\r\n\r\n"
                       % (self.reader, second)).encode()
            self.assertIn("Authorization", self.assertRawJsonError(request))

    def test_a_raw_nul_in_the_path_is_refused(self):
        auth = ("Authorization: Bearer %s\r\n" % self.reader).encode()
        for path in (b"/v1/images/demo\x00/1.0", b"/v1/images/demo\x00x", b"/v1/images/de\x00mo",
                     b"/v1/channels/demo/prod\x00?wait=1", b"/v1/images\x00?x=1&y=2"):
            request = (b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
                       auth + b"\r\n")
            self.assertIn("NUL", self.assertRawJsonError(request), path)
        # query strings are still read
        for path in (b"/v1/images/demo/1.0", b"/v1/images?x=1&y=2", b"/v1/images?",
                     b"/v1/channels/demo/prod/history?limit=1"):
            request = (b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
                       auth + b"\r\n")
            self.assertEqual(raw_request(self.server, request)[0], 200, path)

    # -- item: scopes --------------------------------------------------------------------------

    def test_a_403_names_the_missing_scope(self):
        status, _, body = self.server.request("POST", "/v1/channels/demo/prod/deploy",
                                              body={"version": "1.0"}, token=self.reader)
        self.assertIn("'deploy' scope", self.assertJsonError(status, body, 403, "forbidden")
                      ["message"])
        for path in ("/v1/images", "/v1/images/demo/1.0/files/app.img", "/metrics"):
            status, _, body = self.server.request("GET", path, token=self.deployer)
            self.assertIn("'read' scope", self.assertJsonError(status, body, 403, "forbidden")
                          ["message"], path)

    def test_the_documented_deploy_token_deploys_remotely(self):
        """docs/server.md: a `scopes=deploy` token is what deploy tooling uses."""
        p, _ = self.random_file("two/app.img", 1024)
        self.push(p, "--name", "demo", "--version", "2.0", "--kind", "unknown")
        for path in ("/v1/trust", "/v1/channels/demo/prod", "/v1/channels/demo/prod/signed",
                     "/v1/images/demo/2.0/manifest", "/v1/images/demo/2.0/signatures"):
            self.assertEqual(self.server.request("GET", path, token=self.deployer)[0], 200, path)
        rc, out, err = run("deploy", "demo", "2.0", "--channel", "prod", "--server",
                           self.server.url, "--token", self.deployer)
        self.assertEqual(rc, 0, out + err)
        channel = self.server.get_json("/v1/channels/demo/prod", token=self.reader)
        self.assertEqual(channel["version"], "2.0", channel)

    # -- item: 304 -----------------------------------------------------------------------------

    def test_a_304_has_no_body_and_no_wrong_content_length(self):
        """RFC 9110 15.4.5: no content; a Content-Length may only be that of the 200."""
        auth = "Authorization: Bearer %s\r\n" % self.reader
        paths = ["/v1/images/demo/1.0/files/app.img", "/v1/images/demo/1.0/manifest",
                 "/v1/images", "/v1/images/demo", "/v1/channels/demo/prod", "/v1/trust"]
        tested = set()
        for path in paths + paths:  # the second round is answered from the answer cache
            status, headers, body = self.server.request("GET", path, token=self.reader)
            self.assertEqual(status, 200, path)
            if "etag" not in headers:
                continue
            tested.add(path)
            etag = headers["etag"]
            # two requests on one connection: a stray body would be read as the second answer
            request = ("GET %s HTTP/1.1\r\nHost: x\r\n%sIf-None-Match: %s\r\n\r\n"
                       "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                       % (path, auth, etag)).encode()
            data = exchange(self.server, request, half_close=False)
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            self.assertEqual(lines[0].split(" ")[1], "304", (path, head))
            fields = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                fields.setdefault(name.strip().lower(), []).append(value.strip())
            self.assertEqual(fields.get("etag"), [etag], (path, head))
            self.assertNotIn("transfer-encoding", fields, (path, head))
            self.assertIn(fields.get("content-length"), (None, [str(len(body))]), (path, head))
            self.assertTrue(rest.startswith(b"HTTP/1.1 200"), (path, rest[:200]))
        self.assertGreaterEqual(len(tested), 2, tested)


    def test_slow_request_heads_are_closed_and_never_starve_healthz(self):
        # issue #10.2: 60 clients each sending one header line every 0.5 s, against 20
        # connection slots; libmicrohttpd's idle timeout never fired and /healthz starved
        server = self.serve("max_connections = 20", "header_timeout = 3")
        slow = []
        for _ in range(60):
            s = socket.create_connection((server.host, server.port), timeout=10)
            s.sendall(b"GET /v1/images HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        started = time.monotonic()
        answered = []
        while time.monotonic() - started < 2.5:
            for s in slow:
                try:
                    s.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass  # already closed by the server: fine
            status, _, _ = server.request("GET", "/healthz", timeout=2)
            answered.append(status)
            time.sleep(0.5)
        self.assertEqual(set(answered), {200}, answered)
        # past the deadline every slow head has been closed, with a 408 where it can be read
        time.sleep(2.0)
        closed = 0
        for s in slow:
            s.settimeout(3)
            try:
                for _ in range(3):
                    s.sendall(b"X-Slow: 1\r\n")
                    time.sleep(0.05)
                data = recv_all(s)
                closed += 1
                self.assertTrue(data == b"" or data.startswith(b"HTTP/1.1 408"), data[:100])
            except (ConnectionResetError, BrokenPipeError):
                closed += 1
            except socket.timeout:
                pass
            finally:
                s.close()
        self.assertEqual(closed, len(slow))
        # and a client that sends its request at once is served as before
        self.assertEqual(server.request("GET", "/healthz")[0], 200)


    def test_uploads_are_bounded_and_a_trickle_is_cut_off(self):
        # issue #10.3: 128 uploads trickling 100 B/s took 389 threads and 608 MB, 341 MB of
        # which stayed after they closed; uploads are now counted (max_uploads), must average
        # upload_min_rate after upload_rate_window, and big buffers go back to the system
        token, line = new_token("read,push", "pusher")
        server = self.serve(line, "max_uploads = 4", "upload_min_rate = 1000",
                            "upload_rate_window = 2")

        def status():
            fields = dict(l.split(":", 1) for l in
                          open("/proc/%d/status" % server.proc.pid).read().splitlines())
            return int(fields["VmRSS"].split()[0]) // 1024, int(fields["Threads"])

        rss0, threads0 = status()
        head = (b"POST /v1/images/slow%d/1.0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + token.encode() + b"\r\nContent-Type: multipart/form-data; boundary=B\r\n"
                b"Content-Length: 100000000\r\n\r\n--B\r\nContent-Disposition: form-data; "
                b"name=\"f\"; filename=\"app.img\"\r\n\r\n")
        slow = []
        for i in range(12):
            s = socket.create_connection((server.host, server.port), timeout=10)
            s.sendall(head.replace(b"%d", str(i).encode()) + b"x" * 100)
            slow.append(s)
            time.sleep(0.05)
        time.sleep(0.5)
        # four are taken; the others are told to come back, at once
        refused = 0
        for s in slow[4:]:
            data = recv_all(s)
            self.assertTrue(data.startswith(b"HTTP/1.1 503"), data[:200])
            self.assertIn(b"max_uploads = 4", data)
            refused += 1
        self.assertEqual(refused, 8)
        # no thread of its own per upload: a stage is stored by a job on the worker pool
        _, threads = status()
        self.assertLessEqual(threads - threads0, 4, "threads: %d -> %d" % (threads0, threads))
        # the four that trickle are cut off once the window has passed
        cut = 0
        deadline = time.monotonic() + 10
        for s in slow[:4]:
            try:
                while time.monotonic() < deadline:
                    s.sendall(b"x" * 100)
                    time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError):
                cut += 1
            s.close()
        self.assertEqual(cut, 4)
        time.sleep(1)
        rss, threads = status()
        self.assertLessEqual(threads, threads0 + 2)
        self.assertLess(rss - rss0, 32, "RSS %d MB -> %d MB" % (rss0, rss))
        # and an upload at a normal pace goes through
        p, _ = self.random_file("ok.img", 256 * 1024)
        self.ok("push", "--server", server.url, "--token", token, "--name", "ok", "--version",
                "1", "--kind", "unknown", p)


if __name__ == "__main__":
    main()
