#!/usr/bin/env python3
"""
The status page in a real browser (issue #12): `imgstore serve` and Debian's headless
Chromium, driven through chromedriver's W3C WebDriver HTTP protocol with urllib (no extra
Python packages). A person signs in through the form, follows links from the images to an
image, a version and a channel, and reads what the store says (names, versions, who rolled
the channel back and why); the same works with JavaScript turned off (everything is
rendered by the server); hostile stored text shows as text and runs nothing. Each page is
screenshotted; the PNGs must decode, be non-empty and not one colour, and are kept under
<build>/artifacts/ui/. Skips when chromium or chromedriver is absent (scripts/install-deps
installs both).
"""

import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import zlib

from imgstore_testlib import BIN, HAVE_FIXTURES, ServerTestCase, fixture, main, new_token

import unittest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
needs_chromium = unittest.skipUnless(
    CHROMIUM and CHROMEDRIVER,
    "chromium and chromedriver not installed (Debian: chromium chromium-driver; "
    "scripts/install-deps installs them)")

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver element reference key
ARTIFACTS = os.path.join(os.environ.get("IMGSTORE_BUILD_DIR") or os.path.dirname(BIN),
                         "artifacts", "ui")

HOSTILE_LABEL = "<script>document.title='pwned'</script>"
HOSTILE_REASON = "<img src=x onerror=\"document.title='pwned'\"> boot loop on 2.0"


# -- PNG: decoded with zlib only, to tell a real screenshot from an empty or blank one -----

def png_rows(data):
    """(width, height, bytes per pixel, the unfiltered rows one by one) of an 8-bit RGB/RGBA
    PNG; every chunk's CRC is checked and the whole image data inflated first."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError("not a PNG")
    at, idat, header = 8, b"", None
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        crc = struct.unpack(">I", data[at + 8 + length:at + 12 + length])[0]
        if zlib.crc32(kind + body) != crc:
            raise AssertionError("PNG chunk %r: bad CRC" % kind)
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        at += 12 + length
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise AssertionError("unexpected PNG format %r" % (header,))
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    if len(raw) != height * (stride + 1):
        raise AssertionError("PNG data is %d bytes, not %d" % (len(raw), height * (stride + 1)))

    def rows():
        prev = bytearray(stride)
        for y in range(height):
            kind = raw[y * (stride + 1)]
            line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
            for i in range(stride if kind else 0):
                left = line[i - bpp] if i >= bpp else 0
                up = prev[i]
                if kind == 1:
                    line[i] = (line[i] + left) & 0xff
                elif kind == 2:
                    line[i] = (line[i] + up) & 0xff
                elif kind == 3:
                    line[i] = (line[i] + (left + up) // 2) & 0xff
                elif kind == 4:
                    corner = prev[i - bpp] if i >= bpp else 0
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    line[i] = (line[i] + (left if pa <= pb and pa <= pc else
                                          up if pb <= pc else corner)) & 0xff
            yield line
            prev = line

    return width, height, bpp, rows()


def png_colours(data, enough=16):
    """(width, height, distinct colours seen), reading rows until `enough` colours are
    found (a real page has them within its header; a blank one never does)."""
    width, height, bpp, rows = png_rows(data)
    seen = set()
    for line in rows:
        for x in range(0, width * bpp, bpp * 3):
            seen.add(bytes(line[x:x + 3]))
        if len(seen) >= enough:
            break
    return width, height, len(seen)


# -- WebDriver --------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One chromedriver and one headless Chromium session with a profile of its own; close()
    ends both, and kills whatever is left of them by process group and profile path."""

    def __init__(self, workdir, javascript=True):
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir)
        self.port = free_port()
        self.log = open(os.path.join(workdir, "chromedriver-%d.log" % self.port), "wb")
        self.driver = subprocess.Popen([CHROMEDRIVER, "--port=%d" % self.port],
                                       stdout=self.log, stderr=self.log,
                                       start_new_session=True)
        self.base = "http://127.0.0.1:%d" % self.port
        self.session = None
        deadline = time.time() + 30
        while True:
            try:
                if self._call("GET", "/status").get("ready"):
                    break
            except (OSError, urllib.error.URLError):
                pass
            if time.time() > deadline:
                self.close()
                raise AssertionError("chromedriver did not start")
            time.sleep(0.1)
        args = ["--headless=new", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-sync",
                "--window-size=1280,900", "--user-data-dir=" + self.profile]
        options = {"binary": CHROMIUM, "args": args}
        if not javascript:
            options["prefs"] = {"profile.managed_default_content_settings.javascript": 2}
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome",
                                                 "goog:chromeOptions": options}}}
        try:
            self.session = self._call("POST", "/session", caps)["sessionId"]
            # finding an element waits for the page a click or a form led to
            self.call("POST", "/timeouts", {"implicit": 20000})
        except Exception:
            self.close()
            raise

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read() or b"{}").get("value")
        except urllib.error.HTTPError as e:
            raise AssertionError("WebDriver %s %s: %d %s" % (method, path, e.code,
                                                             e.read()[:500]))

    def call(self, method, path, body=None):
        return self._call(method, "/session/%s%s" % (self.session, path), body)

    def go(self, url):
        self.call("POST", "/url", {"url": url})

    def url(self, expect=None, timeout=20, containing=None):
        """The current URL; with `expect` (or `containing`), once it is that (or contains it):
        a click's navigation may still be under way on a loaded machine. Otherwise whatever
        it is at the timeout."""
        deadline = time.time() + timeout
        while True:
            url = self.call("GET", "/url")
            if expect is None and containing is None:
                return url
            if url == expect or (containing is not None and containing in url):
                return url
            if time.time() > deadline:
                return url
            time.sleep(0.1)

    def title(self):
        return self.call("GET", "/title")

    def find(self, css):
        return self.call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def find_all(self, css):
        """Every element now (no waiting: none is a valid answer)."""
        self.call("POST", "/timeouts", {"implicit": 0})
        try:
            return [e[ELEMENT] for e in
                    self.call("POST", "/elements", {"using": "css selector", "value": css})]
        finally:
            self.call("POST", "/timeouts", {"implicit": 20000})

    def text(self, css="body"):
        return self.call("GET", "/element/%s/text" % self.find(css))

    def type(self, css, text):
        self.call("POST", "/element/%s/value" % self.find(css), {"text": text})

    def click(self, css):
        self.call("POST", "/element/%s/click" % self.find(css), {})

    def cookies(self):
        return self.call("GET", "/cookie")

    def screenshot(self):
        return base64.b64decode(self.call("GET", "/screenshot"))

    def close(self):
        if self.session:
            try:
                self.call("DELETE", "")
            except Exception:
                pass
            self.session = None
        if self.driver.poll() is None:
            try:
                os.killpg(self.driver.pid, signal.SIGTERM)
                self.driver.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.driver.pid, signal.SIGKILL)
                self.driver.wait(timeout=10)
        # a browser that left chromedriver's process group still names our profile
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if self.profile.encode() in f.read():
                        os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        self.log.close()


@needs_chromium
class StatusPageInABrowser(ServerTestCase):

    def setUp(self):
        super().setUp()
        os.makedirs(ARTIFACTS, exist_ok=True)
        p, _ = self.random_file("app-1.img", 64 * 1024)
        self.push(p, "--name", "app", "--version", "1.0", "--kind", "unknown",
                  "--label", "ci.job=" + HOSTILE_LABEL, "--source",
                  "https://git.example/app.git@9f1c2e7")
        p, _ = self.random_file("app-2.img", 96 * 1024)
        self.push(p, "--name", "app", "--version", "2.0", "--kind", "unknown")
        p, _ = self.random_file("web.img", 32 * 1024)
        self.push(p, "--name", "web", "--version", "7", "--kind", "unknown")
        if HAVE_FIXTURES:  # a real boot set, so the version page shows what detection found
            self.push(fixture("vmlinuz-6.1.0-56-cloud-amd64"), fixture("initrd-busybox.cpio.gz"),
                      fixture("cmdline.txt"), "--name", "netboot", "--version", "6.1.0-56")
        self.ok("deploy", "app", "1.0", "--channel", "prod", env={"IMGSTORE_ACTOR": "alice"})
        self.ok("deploy", "app", "2.0", "--channel", "prod", "--reason", "release 2.0",
                env={"IMGSTORE_ACTOR": "alice"})
        self.ok("rollback", "app", "--channel", "prod", "--reason", HOSTILE_REASON,
                env={"IMGSTORE_ACTOR": "carol"})
        self.token, line = new_token("read", "viewer")
        reporter, report_line = new_token("report", "agents")
        self.server = self.serve(line, report_line)
        for body in ({"host": "web-1", "state": "ok", "version": "1.0"},
                     {"host": "web-2", "state": "rolled-back", "version": "1.0",
                      "attempted": "2.0", "message": "health check failed on 2.0"}):
            status, _, data = self.server.request("POST", "/v1/channels/app/prod/reports", body,
                                                  token=reporter)
            self.assertEqual(status, 201, data)

    def assertAt(self, b, path):
        self.assertEqual(b.url(self.server.url + path), self.server.url + path)

    def browser(self, javascript=True):
        b = Browser(self.tmp, javascript)
        self.addCleanup(b.close)
        return b

    def shoot(self, b, name):
        png = b.screenshot()
        path = os.path.join(ARTIFACTS, name + ".png")
        with open(path, "wb") as f:
            f.write(png)
        width, height, colours = png_colours(png)
        self.assertGreater(len(png), 1000, path)
        self.assertGreaterEqual((width, height), (400, 300), path)
        self.assertGreaterEqual(colours, 16, "%s: %d colours: a blank page?" % (path, colours))
        return path

    def sign_in(self, b, start="/"):
        b.go(self.server.url + start)
        self.assertIn("/ui/login", b.url(containing="/ui/login"))
        self.assertEqual(b.title(), "Sign in · imgstore")
        b.type("#token", self.token)
        b.click("#sign-in")
        self.assertEqual(b.text("#user"), "viewer")

    def walk(self, b, tag):
        """Images -> app -> 1.0 -> prod, by the links, checking what each page says."""
        self.assertAt(b, "/")
        images = b.text("#images")
        self.assertIn("app", images)
        self.assertIn("web", images)
        self.assertIn("prod: 1.0", images)
        self.assertIn("release 1 of 1 SHA256:", b.text("#policy"))
        self.shoot(b, tag + "-images")

        b.click("#images a[href='/ui/images/app']")
        self.assertAt(b, "/ui/images/app")
        versions = b.text("#versions")
        self.assertIn("2.0", versions)
        self.assertIn("1.0", versions)
        self.assertLess(versions.index("2.0"), versions.index("1.0"))  # newest first
        self.assertIn("verified 1 of 1", versions)
        self.assertIn("prod", b.text("#channels"))
        self.shoot(b, tag + "-image")

        b.click("#versions a[href='/ui/images/app/1.0']")
        self.assertIn("verified: 1 of 1", b.text("#release"))
        self.assertIn(HOSTILE_LABEL, b.text("#version"))  # shown as text
        self.assertIn("https://git.example/app.git", b.text("#source"))
        self.assertIn("app-1.img", b.text("#files"))
        self.assertIn("prod", b.text("#running"))
        self.shoot(b, tag + "-version")

        b.click("#running a")
        self.assertAt(b, "/ui/channels/app/prod")
        self.assertEqual(b.text("#runs"), "1.0")
        self.assertIn("rollback by carol", b.text("#last-move"))
        self.assertEqual(b.text("#reason"), HOSTILE_REASON)
        history = b.text("#history")
        self.assertIn("carol", history)
        self.assertIn("release 2.0", history)
        self.assertIn("alice", history)
        self.assertIn("verified 1 of 1", history)
        self.assertIn("verified: 1 of 1", b.text("#deploy"))
        self.assertIn("web-1", b.text("#agents"))
        self.assertIn("rolled-back", b.text("#agents"))
        self.shoot(b, tag + "-channel")
        # hostile stored text was shown, and ran nothing
        self.assertNotIn("pwned", b.title())
        self.assertEqual(b.find_all("main script, main img"), [])
        if HAVE_FIXTURES:
            b.go(self.server.url + "/ui/images/netboot/6.1.0-56")
            files = b.text("#files")
            self.assertIn("vmlinuz-6.1.0-56-cloud-amd64", files)
            self.assertIn("Linux 6.1.0-56-cloud-amd64", files)
            self.assertIn("initrd", files)
            self.assertIn("kernel vmlinuz-6.1.0-56-cloud-amd64", b.text("#version"))
            self.shoot(b, tag + "-boot-version")

    def javascript_off(self, b):
        """What DevTools' "Disable JavaScript" does, for this tab from now on."""
        b.call("POST", "/goog/cdp/execute", {"cmd": "Emulation.setScriptExecutionDisabled",
                                              "params": {"value": True}})
        b.go("data:text/html,<title>off</title><script>document.title='on'</script>")
        self.assertEqual(b.title(), "off", "JavaScript is still on")

    def test_sign_in_walk_the_pages_sign_out_and_again_without_javascript(self):
        """One browser (starting one costs seconds here): a wrong token, then the right one
        back to where the visit began, every page by its links, sign-out, and the same with
        JavaScript off."""
        b = self.browser()
        b.go(self.server.url + "/ui/channels/app/prod")
        self.assertIn("/ui/login", b.url(containing="/ui/login"))
        b.type("#token", "imgstore_" + "0" * 64)
        b.click("#sign-in")
        self.assertIn("not valid", b.text("#login-error"))
        self.assertEqual([c for c in b.cookies() if c["name"] == "imgstore_session"], [])
        b.type("#token", self.token)
        b.click("#sign-in")
        self.assertAt(b, "/ui/channels/app/prod")
        cookie = [c for c in b.cookies() if c["name"] == "imgstore_session"]
        self.assertEqual(len(cookie), 1, b.cookies())
        self.assertTrue(cookie[0]["httpOnly"])
        self.assertEqual(cookie[0]["sameSite"], "Strict")
        self.assertNotIn(self.token, cookie[0]["value"])  # a session, not the token

        b.go(self.server.url + "/")
        self.walk(b, "js")
        b.click("header button")  # sign out: the session ends in this browser
        self.assertIn("/ui/login", b.url(containing="/ui/login"))
        b.go(self.server.url + "/ui/images/app")
        self.assertIn("/ui/login", b.url(containing="/ui/login"))
        self.shoot(b, "js-login")

        self.javascript_off(b)
        self.sign_in(b)
        self.walk(b, "nojs")


if __name__ == "__main__":
    main()
