"""
imgstore serve over HTTPS (--tls-cert/--tls-key, libmicrohttpd's GnuTLS): a self-signed
certificate made with stock openssl, a download with stock curl --cacert that must be
byte-identical, and plain HTTP to the TLS port refused. Skips when openssl is missing.
"""

import os
import shutil
import subprocess

from imgstore_testlib import version_path
from imgstore_testlib import ServerTestCase, curl, main, new_token, sha256, sha256_file


class Tls(ServerTestCase):

    def setUp(self):
        if not shutil.which("openssl"):
            self.skipTest("openssl not installed: cannot make a test certificate")
        super().setUp()
        self.cert, self.key = self.path("cert.pem"), self.path("key.pem")
        p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ed25519", "-nodes",
                            "-keyout", self.key, "-out", self.cert, "-days", "2",
                            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                           capture_output=True, timeout=60)
        if p.returncode != 0:  # an openssl without ed25519 certificates: RSA then
            p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                                "-keyout", self.key, "-out", self.cert, "-days", "2",
                                "-subj", "/CN=127.0.0.1",
                                "-addext", "subjectAltName=IP:127.0.0.1"],
                               capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())

    def test_https_download_is_byte_identical_and_plain_http_fails(self):
        image, digest = self.random_file("app.img", 3 * 1024 * 1024 + 17)
        self.push(image, "--name", "app", "--version", "1", "--kind", "unknown")
        token, line = new_token("read", "reader")
        server = self.serve(line, args=("--tls-cert", self.cert, "--tls-key", self.key))
        self.assertIn("scheme=https", server.log())
        url = "https://%s/v1/images/app/1/files/app.img" % server.address
        auth = ["-H", "Authorization: Bearer " + token]
        for attempt in ("cold", "hot"):  # filled from the store, then from the cache
            out = self.path("out-" + attempt)
            rc, _, err = curl("-f", "--cacert", self.cert, "-o", out, *auth, url)
            self.assertEqual(rc, 0, err)
            self.assertEqual(sha256_file(out), digest, attempt)
        rc, body, err = curl("-f", "--cacert", self.cert, *auth,
                             "https://%s/v1/images/app/1/manifest" % server.address)
        self.assertEqual(rc, 0, err)
        self.assertEqual(sha256(body), sha256(self.git("show", "main:" + version_path("app", "1", "manifest.json"),
                                                       binary=True)))
        # without the CA the certificate is refused; plain HTTP to the TLS port gets no answer
        rc, _, _ = curl("-f", "-o", os.devnull, *auth, url)
        self.assertNotEqual(rc, 0)
        rc, out, _ = curl("-f", "-m", "10", "-o", os.devnull, "-w", "%{http_code}", *auth,
                          "http://%s/v1/images/app/1/files/app.img" % server.address)
        self.assertNotEqual(rc, 0)
        self.assertNotEqual(out, b"200")

    def test_status_page_session_cookie_is_secure_over_https(self):
        """The status page's session cookie (issue #12) is marked Secure under TLS, so a
        browser never sends it over plain HTTP."""
        token, line = new_token("read", "reader")
        server = self.serve(line, args=("--tls-cert", self.cert, "--tls-key", self.key))
        rc, out, err = curl("-i", "--cacert", self.cert, "--data-urlencode", "token=" + token,
                            "https://%s/ui/login" % server.address)
        self.assertEqual(rc, 0, err)
        head = out.decode().split("\r\n\r\n")[0]
        self.assertIn("303", head.splitlines()[0])
        cookie = [l for l in head.splitlines() if l.lower().startswith("set-cookie:")]
        self.assertEqual(len(cookie), 1, head)
        for attr in ("HttpOnly", "SameSite=Strict", "Secure"):
            self.assertIn(attr, [a.strip() for a in cookie[0].split(";")], cookie[0])


if __name__ == "__main__":
    main()
