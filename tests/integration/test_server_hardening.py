"""
imgstore serve at the edges of HTTP and of its own socket: a port already in use stops a
second server, ambiguous requests (two Content-Length or Authorization headers, a raw NUL in
the path) are refused, a 403 names the scope it lacks, a deploy token reads what deploying
needs, and a 304 carries no body.
"""

import json
import socket
import subprocess

from imgstore_testlib import BIN, EXIT_FAIL, ServerTestCase, base_env, main, new_token


def raw_request(server, request, timeout=30):
    """Send REQUEST (bytes) on a fresh socket; return (status, {header: [values]}, body)."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
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


if __name__ == "__main__":
    main()
