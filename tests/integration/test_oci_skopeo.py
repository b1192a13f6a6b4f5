#!/usr/bin/env python3
"""
A real OCI client against `imgstore serve` (issue #12, docs/oci.md): Debian's skopeo copies a
version of real boot images out of imgstore into a `dir:` and an `oci:` layout and back into
new versions, every file compared byte for byte with ../shared/fixtures/real; `skopeo inspect
--raw` and `skopeo list-tags` read what the server says. Over plain HTTP on 127.0.0.1, with a
static bearer token (--src-registry-token / --dest-registry-token). Skips when skopeo is not
installed (scripts/install-deps installs it) or the fixtures are absent.
"""

import hashlib
import json
import os
import shutil
import subprocess
import unittest

from imgstore_testlib import (ServerTestCase, fixture, main, needs_fixtures, new_token,
                              sha256_file)

SKOPEO = shutil.which("skopeo")
needs_skopeo = unittest.skipUnless(SKOPEO, "skopeo not installed (scripts/install-deps)")

FILES = ("vmlinuz-6.1.0-56-cloud-amd64", "initrd-busybox.cpio.gz", "cmdline.txt", "ipxe.iso")


@needs_skopeo
@needs_fixtures
class Skopeo(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.token, line = new_token("read,push", "ci")
        self.server = self.serve(line)
        self.registry = "127.0.0.1:%d" % self.server.port
        self.ok("push", "--name", "boot", "--version", "1.0", "--label", "ci.job=812",
                "--source", "https://git.example/boot.git@9f1c2e7",
                *[fixture(f) for f in FILES])
        self.home = os.path.join(self.tmp, "skopeo-home")
        os.makedirs(self.home)

    def skopeo(self, *args, expect=0):
        env = dict(os.environ, HOME=self.home, XDG_RUNTIME_DIR=self.home,
                   XDG_CONFIG_HOME=os.path.join(self.home, "config"))
        p = subprocess.run([SKOPEO, "--insecure-policy"] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env, timeout=300)
        if expect is not None:
            self.assertEqual(p.returncode, expect,
                             "skopeo %s\nstdout: %s\nstderr: %s\nserver log:\n%s"
                             % (" ".join(args), p.stdout.decode()[-2000:],
                                p.stderr.decode()[-2000:], self.server.log()[-3000:]))
        return p.stdout.decode(), p.stderr.decode()

    def src(self, ref):
        return ["--src-tls-verify=false", "--src-registry-token", self.token,
                "docker://%s/%s" % (self.registry, ref)]

    def dest(self, ref):
        return ["--dest-tls-verify=false", "--dest-registry-token", self.token,
                "docker://%s/%s" % (self.registry, ref)]

    def assertFilesAreTheFixtures(self, manifest, blob_path):
        """Every layer of `manifest` is a fixture, named by its title, equal byte for byte."""
        titles = {}
        for layer in manifest["layers"]:
            title = layer["annotations"]["org.opencontainers.image.title"]
            path = blob_path(layer["digest"].split(":", 1)[1])
            with open(path, "rb") as got, open(fixture(title), "rb") as want:
                self.assertTrue(got.read() == want.read(), "%s differs from its fixture" % title)
            titles[title] = layer
        self.assertEqual(set(titles), set(FILES))

    def version_files(self, name, version):
        """{path: sha256} of a version, downloaded through /v1 and hashed here."""
        shown = json.loads(self.ok("show", "%s@%s" % (name, version), "--json"))
        self.assertTrue(shown["signatures"]["trusted"], shown)
        out = {}
        for f in shown["manifest"]["files"]:
            status, _, data = self.server.request(
                "GET", "/v1/images/%s/%s/files/%s" % (name, version, f["path"]), token=self.token)
            self.assertEqual(status, 200)
            out[f["path"]] = hashlib.sha256(data).hexdigest()
        return shown, out

    def test_copy_out_to_dir_and_back_into_a_new_version(self):
        d = os.path.join(self.tmp, "dir-copy")
        self.skopeo("copy", *self.src("boot:1.0"), "dir:" + d)
        with open(os.path.join(d, "manifest.json"), "rb") as f:
            raw = f.read()
        # the manifest skopeo kept is the server's, by tag
        status, headers, served = self.server.request("GET", "/v2/boot/manifests/1.0",
                                                      token=self.token)
        self.assertEqual(raw, served)
        manifest = json.loads(raw)
        self.assertFilesAreTheFixtures(manifest, lambda hexd: os.path.join(d, hexd))
        # back in, as a new image and version: the same files, detected and signed again,
        # its labels and source carried over by the annotations
        self.skopeo("copy", "dir:" + d, *self.dest("copy:2.0"))
        shown, files = self.version_files("copy", "2.0")
        self.assertEqual(files, {f: sha256_file(fixture(f)) for f in FILES})
        self.assertEqual(shown["manifest"]["provenance"]["labels"], {"ci.job": "812"})
        self.assertEqual(shown["manifest"]["provenance"]["source"]["commit"], "9f1c2e7")
        kinds = {f["path"]: f["kind"] for f in shown["manifest"]["files"]}
        self.assertEqual(kinds["vmlinuz-6.1.0-56-cloud-amd64"], "kernel")
        self.assertEqual(kinds["ipxe.iso"], "disk")
        self.assertEqual(self.subjects()[0], "push copy 2.0")

    def test_copy_out_to_an_oci_layout_and_back(self):
        layout = os.path.join(self.tmp, "layout")
        self.skopeo("copy", *self.src("boot:1.0"), "oci:%s:1.0" % layout)
        with open(os.path.join(layout, "index.json")) as f:
            index = json.load(f)
        top = index["manifests"][0]["digest"].split(":", 1)[1]
        blobs = os.path.join(layout, "blobs", "sha256")
        with open(os.path.join(blobs, top)) as f:
            manifest = json.load(f)
        self.assertFilesAreTheFixtures(manifest, lambda hexd: os.path.join(blobs, hexd))
        # into the same image as a new version: blobs it holds already are not sent again
        self.skopeo("copy", "oci:%s:1.0" % layout, *self.dest("boot:1.1"))
        _, files = self.version_files("boot", "1.1")
        self.assertEqual(files, {f: sha256_file(fixture(f)) for f in FILES})
        log = self.server.log()
        self.assertNotIn("method=PATCH", log)
        self.assertNotIn("method=PUT path=/v2/boot/blobs/uploads", log)

    def test_inspect_and_list_tags(self):
        self.ok("push", "--name", "boot", "--version", "1.1", fixture("cmdline.txt"))
        common = ["--tls-verify=false", "--registry-token", self.token]
        out, _ = self.skopeo("inspect", "--raw", *common, "docker://%s/boot:1.0" % self.registry)
        manifest = json.loads(out)
        self.assertEqual(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json")
        self.assertEqual(manifest["annotations"]["org.imgstore.label.ci.job"], "812")
        out, _ = self.skopeo("inspect", "--config", "--raw", *common,
                             "docker://%s/boot:1.0" % self.registry)
        config = json.loads(out)
        self.assertEqual(json.loads(config["manifest"])["name"], "boot")
        out, _ = self.skopeo("list-tags", *common, "docker://%s/boot" % self.registry)
        self.assertEqual(json.loads(out)["Tags"], ["1.0", "1.1"])
        # docker-login style credentials: the token as the password, traded at the realm
        out, _ = self.skopeo("inspect", "--raw", "--tls-verify=false", "--creds",
                             "ci:" + self.token, "docker://%s/boot:1.0" % self.registry)
        self.assertEqual(json.loads(out), manifest)
        # without the token: refused, and skopeo says why
        _, err = self.skopeo("inspect", "--raw", "--tls-verify=false",
                             "docker://%s/boot:1.0" % self.registry, expect=1)
        self.assertIn("unauthorized", err.lower())


if __name__ == "__main__":
    main()
