#!/usr/bin/env python3
"""
push/pull round trips of every real fixture, the stock-git rebuild recipes of docs/format.md,
immutability and idempotence of push, and chunk sharing between versions (diff).
"""

import os
import re
import shutil
import subprocess
import tarfile
import io

from imgstore_testlib import version_path
from imgstore_testlib import (EXIT_FAIL, MiB, StoreTestCase, fixture, fixture_sums, git, main,
                              needs_fixtures, run, sha256, sha256_file, HAVE_FIXTURES)

KERNEL = "vmlinuz-6.1.0-56-cloud-amd64"
INITRD = "initrd-busybox.cpio.gz"
CMDLINE = "cmdline.txt"


def image_name(fname):
    """A valid image name for a fixture file name (memtest86+x64.bin -> memtest86-x64.bin)."""
    return re.sub(r"[^a-z0-9._-]", "-", fname.lower())


def expected(fname):
    """(kind, format, {details key: expected value}) for each real fixture."""
    if fname == KERNEL:
        return "kernel", "bzimage", {"arch": "x86", "efi": True}
    if fname in ("ipxe.lkrn", "memtest86+x64.bin"):
        return "kernel", "bzimage", {"arch": "x86"}
    if fname == "memtest86+x64.efi":
        # A PE32+ that is also a bzImage with an EFI stub, exactly like the Debian vmlinuz:
        # detection treats both as kernels that say they are EFI-bootable.
        return "kernel", "bzimage", {"arch": "x86", "efi": True}
    if fname.endswith(".efi"):
        return "efi", "pe-efi", {"arch": "x86_64"}
    if fname.endswith(".iso"):
        return "disk", "iso9660", {"hybrid": True}
    if fname == INITRD:
        return "initrd", "cpio", {"compression": "gzip"}
    if fname == CMDLINE:
        with open(fixture(fname)) as f:
            return "cmdline", "text", {"text": f.read().strip()}
    raise AssertionError("no expectation for fixture %s" % fname)


class FixtureRoundTrip(StoreTestCase):

    def check_file_entry(self, entry, fname, sums):
        kind, fmt, details = expected(fname)
        self.assertEqual(entry["path"], fname)
        self.assertEqual(entry["sha256"], sums[fname])
        self.assertEqual(entry["size"], os.path.getsize(fixture(fname)))
        self.assertEqual((entry["kind"], entry["format"]), (kind, fmt), fname)
        for k, v in details.items():
            self.assertEqual(entry["details"].get(k), v, "%s details.%s" % (fname, k))
        chunks = entry["chunks"]
        self.assertGreaterEqual(len(chunks), 1)
        self.assertEqual(sum(c["size"] for c in chunks), entry["size"])
        self.assertTrue(all(0 < c["size"] <= 4 * MiB for c in chunks), chunks)

    @needs_fixtures
    def test_every_fixture_alone_round_trips_byte_identical(self):
        sums = fixture_sums()
        self.assertGreaterEqual(len(sums), 9)
        for fname, digest in sorted(sums.items()):
            with self.subTest(fixture=fname):
                name = image_name(fname)
                pushed = self.okjson("push", fixture(fname), "--name", name, "--version", "1")
                self.assertTrue(pushed["created"])
                self.assertEqual((pushed["manifest"]["name"], pushed["manifest"]["version"]),
                                 (name, "1"))

                shown = self.okjson("show", "%s@1" % name)
                m = shown["manifest"]
                self.assertEqual(m["schema"], "imgstore.manifest/1")
                self.assertEqual(len(m["files"]), 1)
                self.check_file_entry(m["files"][0], fname, sums)
                self.assertEqual(m, pushed["manifest"])
                kind = m["files"][0]["kind"]
                if kind == "kernel":
                    self.assertEqual(m["boot"]["kernel"], fname)
                    self.assertFalse(m["boot"]["complete"])
                else:
                    self.assertNotIn("boot", m)

                # chunk blobs in the tree: 000000, 000001, ... one per manifest chunk
                tree = self.git("ls-tree", "--name-only",
                                "main:" + version_path(name, "1", "files", fname)).split()
                self.assertEqual(tree, ["%06d" % i for i in range(len(m["files"][0]["chunks"]))])

                out = self.path("out-" + name)
                os.mkdir(out)
                pulled = self.okjson("pull", "%s@1" % name, "-o", out + "/")
                self.assertEqual(pulled["files"][0]["sha256"], digest)
                self.assertEqual(pulled["manifest_sha256"], shown["manifest_sha256"])
                self.assertEqual(os.listdir(out), [fname])
                self.assertEqual(sha256_file(os.path.join(out, fname)), digest)

                rc, data, err = self.im("pull", "%s@1" % name, "-o", "-", binary=True)
                self.assertEqual(rc, 0, err)
                self.assertEqual(sha256(data), digest)

                renamed = os.path.join(out, "renamed.img")
                self.ok("pull", "%s@1" % name, "-o", renamed)
                self.assertEqual(sha256_file(renamed), digest)

        report = self.okjson("verify")
        self.assertTrue(report["ok"])
        self.assertEqual(sorted(v["name"] for v in report["versions"]),
                         sorted(image_name(f) for f in sums))
        for v in report["versions"]:
            self.assertEqual(v["status"], "ok")
        self.assertFsckClean()

    @needs_fixtures
    def test_kernel_initrd_cmdline_set_round_trips_as_one_version(self):
        sums = fixture_sums()
        files = [fixture(KERNEL), fixture(INITRD), fixture(CMDLINE)]
        ref = self.push(*files, "--name", "linux", "--version", "6.1.0-56+deb12",
                        "--label", "ci.job=812", "--source", "https://git.example/linux@3f2a9c0",
                        "--actor", "ci@build-7")
        self.assertEqual(ref, "linux@6.1.0-56+deb12")

        shown = self.okjson("show", ref)
        m = shown["manifest"]
        self.assertEqual(m["boot"], {"kernel": KERNEL, "initrd": INITRD, "cmdline": CMDLINE,
                                     "complete": True})
        self.assertEqual([f["path"] for f in m["files"]], sorted([KERNEL, INITRD, CMDLINE]))
        for entry in m["files"]:
            self.check_file_entry(entry, entry["path"], sums)
        self.assertEqual(m["provenance"]["builder"], "ci@build-7")
        self.assertEqual(m["provenance"]["labels"], {"ci.job": "812"})
        self.assertEqual(m["provenance"]["source"],
                         {"repository": "https://git.example/linux", "commit": "3f2a9c0"})

        out = self.path("out")
        os.mkdir(out)
        self.ok("pull", ref, "-o", out)
        self.assertEqual(sorted(os.listdir(out)), sorted([KERNEL, INITRD, CMDLINE]))
        for f in (KERNEL, INITRD, CMDLINE):
            self.assertEqual(sha256_file(os.path.join(out, f)), sums[f], f)
            rc, data, err = self.im("pull", ref, "--file", f, "-o", "-", binary=True)
            self.assertEqual(rc, 0, err)
            self.assertEqual(sha256(data), sums[f], f)

        # several files to stdout is ambiguous
        rc, data, err = self.im("pull", ref, "-o", "-", binary=True)
        self.assertNotEqual(rc, 0)
        self.assertEqual(data, b"")
        self.assertIn("--file", err)

        # without a version: the newest
        out2 = self.path("out2")
        self.ok("pull", "linux", "-o", out2)
        self.assertEqual(sha256_file(os.path.join(out2, KERNEL)), sums[KERNEL])
        self.assertFsckClean()

    @needs_fixtures
    def test_single_file_pull_to_new_directory_with_trailing_slash(self):
        sums = fixture_sums()
        self.push(fixture("ipxe.lkrn"), "--name", "ipxe", "--version", "1")
        out = self.path("does", "not", "exist") + "/"
        os.makedirs(self.path("does", "not"))
        rc, _, err = self.im("pull", "ipxe@1", "-o", out)
        # "-o DIR/" names a directory, as it does for a multi-file version
        self.assertEqual(rc, 0, "pull -o NEWDIR/ of a one-file version failed: %s" % err)
        self.assertEqual(sha256_file(os.path.join(out, "ipxe.lkrn")), sums["ipxe.lkrn"])
        self.assertFsckClean()


class GeneratedRoundTrip(StoreTestCase):
    """Round trips that need no fixtures, over the object encodings the store writes."""

    def check_round_trip(self, data, name):
        p = self.path(name + ".img")
        with open(p, "wb") as f:
            f.write(data)
        ref = self.push(p, "--name", name, "--version", "1", "--kind", "unknown")
        m = self.okjson("show", ref)["manifest"]["files"][0]
        self.assertEqual((m["size"], m["sha256"]), (len(data), sha256(data)))
        rc, out, err = self.im("pull", ref, "-o", "-", binary=True)
        self.assertEqual(rc, 0, err)
        self.assertEqual(sha256(out), sha256(data), "pulled bytes differ")
        self.ok("verify", ref)

    def test_random_compressible_and_mixed_images_round_trip(self):
        words = [os.urandom(3 + i % 9).hex() for i in range(4000)]

        def text(n):
            out, i, size = [], 0, 0
            while size < n:
                out.append(" ".join(words[(i * 7919 + k * 104729) % len(words)]
                                    for k in range(20)) + "\n")
                size += len(out[-1])
                i += 1
            return "".join(out).encode()[:n]

        self.check_round_trip(os.urandom(5 * MiB + 3), "random")
        self.check_round_trip(bytes(5 * MiB), "zeros")
        self.check_round_trip(text(5 * MiB), "text")
        # incompressible runs between compressible ones: zlib mixes stored and
        # compressed deflate blocks inside one chunk object
        block = text(700 * 1024)
        self.check_round_trip(b"".join(os.urandom(300 * 1024) + block for _ in range(6)),
                              "mixed")
        self.assertFsckClean()


class StockGitRecipes(StoreTestCase):
    """docs/format.md: any image can be rebuilt from a clone or the bare store with git alone."""

    def concat_dir(self, d):
        names = sorted(os.listdir(d))
        self.assertEqual(names, ["%06d" % i for i in range(len(names))], d)
        h = b""
        for n in names:
            with open(os.path.join(d, n), "rb") as f:
                h += f.read()
        return h

    def archive_bytes(self, path):
        rc, tar_bytes, err = git("archive", "main", path, git_dir=self.repo, binary=True)
        self.assertEqual(rc, 0, err)
        if shutil.which("tar"):
            p = subprocess.run(["tar", "-xO"], input=tar_bytes, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, check=True)
            data = p.stdout
        else:
            data = b""
            with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as t:
                for member in t.getmembers():
                    if member.isfile():
                        data += t.extractfile(member).read()
        return data

    def check_recipes(self, clone, versions):
        """versions: [(name, version, file name, sha256)]"""
        for name, version, fname, digest in versions:
            with self.subTest(image=name, file=fname):
                d = os.path.join(clone, *version_path(name, version, "files", fname).split("/"))
                self.assertEqual(sha256(self.concat_dir(d)), digest, "clone recipe")
                self.assertEqual(sha256(self.archive_bytes(
                    version_path(name, version, "files", fname))), digest, "archive recipe")
                with open(os.path.join(clone, *version_path(name, version,
                                                            "manifest.json").split("/"))) as f:
                    raw = f.read()
                self.assertIn('"path":"%s","sha256":"%s"' % (fname, digest), raw)

    @needs_fixtures
    def test_clone_and_archive_rebuild_every_fixture(self):
        sums = fixture_sums()
        versions = []
        for fname, digest in sorted(sums.items()):
            name = image_name(fname)
            self.push(fixture(fname), "--name", name, "--version", "1.0")
            versions.append((name, "1.0", fname, digest))
        self.push(fixture(KERNEL), fixture(INITRD), fixture(CMDLINE), "--name", "linux",
                  "--version", "2.0")
        versions += [("linux", "2.0", f, sums[f]) for f in (KERNEL, INITRD, CMDLINE)]

        clone = self.path("work")
        rc, _, err = git("clone", "-q", self.repo, clone)
        self.assertEqual(rc, 0, err)
        with open(os.path.join(clone, "imgstore.json")) as f:
            self.assertEqual(f.read().strip(), '{"format":"imgstore/2"}')
        self.check_recipes(clone, versions)
        self.assertFsckClean()

    def test_clone_recipe_on_generated_multi_chunk_image(self):
        p, digest = self.random_file("app.xen", 9 * MiB + 12345)
        self.push(p, "--name", "app", "--version", "1.4.0", "--kind", "unknown")
        m = self.okjson("show", "app@1.4.0")["manifest"]
        self.assertGreaterEqual(len(m["files"][0]["chunks"]), 3)
        clone = self.path("work")
        rc, _, err = git("clone", "-q", self.repo, clone)
        self.assertEqual(rc, 0, err)
        self.check_recipes(clone, [("app", "1.4.0", "app.xen", digest)])
        self.assertFsckClean()


class Immutability(StoreTestCase):

    def test_repush_with_different_bytes_is_refused_without_a_commit(self):
        p, digest = self.random_file("app.xen", 300 * 1024)
        self.assertEqual(self.push(p, "--version", "1.0"), "app@1.0")
        tip = self.tip()
        _, other = self.random_file("app.xen", 300 * 1024)
        rc, out, err = self.im("push", p, "--version", "1.0")
        self.assertEqual(rc, EXIT_FAIL, "stdout %r stderr %r" % (out, err))
        self.assertIn("immutable", self.assertOneLineError(err))
        self.assertEqual(self.tip(), tip, "a refused push moved main")
        m = self.okjson("show", "app@1.0")["manifest"]
        self.assertEqual(m["files"][0]["sha256"], digest)
        rc, data, err = self.im("pull", "app@1.0", "-o", "-", binary=True)
        self.assertEqual((rc, sha256(data)), (0, digest))
        self.assertFsckClean()

    def test_identical_repush_succeeds_without_a_commit(self):
        p, _ = self.random_file("app.xen", 300 * 1024)
        first = self.push(p, "--version", "1.0")
        tip = self.tip()
        rc, out, err = self.im("push", p, "--version", "1.0")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), first)
        self.assertEqual(self.tip(), tip)
        again = self.okjson("push", p, "--version", "1.0")
        self.assertFalse(again["created"])
        self.assertEqual(self.tip(), tip)
        self.assertEqual(self.subjects().count("push app 1.0"), 1)
        self.assertFsckClean()

    def test_derived_version_is_idempotent_and_content_addressed(self):
        p, _ = self.random_file("app.xen", 200 * 1024)
        first = self.push(p)
        self.assertRegex(first, r"^app@c-[0-9a-f]{16}$")
        tip = self.tip()
        self.assertEqual(self.push(p), first)
        self.assertEqual(self.tip(), tip)
        version = first.split("@")[1]
        self.assertEqual(self.subjects().count("push app %s" % version), 1)

        # the same bytes in another store: the same version (a re-run CI job anywhere)
        other = os.path.join(self.tmp, "other.git")
        self.assertEqual(run("init", repo=other)[0], 0)
        rc, out, err = run("push", p, repo=other)
        self.assertEqual((rc, out.strip()), (0, first), err)

        # different bytes: a different version
        p2, _ = self.random_file("app.xen", 200 * 1024)
        second = self.push(p2)
        self.assertNotEqual(second, first)
        self.assertEqual(len(self.okjson("ls", "app")["versions"]), 2)
        self.assertFsckClean()
        self.assertFsckClean(other)


class ChunkSharing(StoreTestCase):

    def loose_bytes(self):
        total = 0
        objects = os.path.join(self.repo, "objects")
        for d in os.listdir(objects):
            if len(d) == 2:
                for f in os.listdir(os.path.join(objects, d)):
                    total += os.path.getsize(os.path.join(objects, d, f))
        return total

    def test_insert_4k_in_middle_of_20mib_shares_all_but_two_chunks(self):
        base = os.urandom(20 * MiB)
        mid = len(base) // 2
        changed = base[:mid] + os.urandom(4096) + base[mid:]
        p = self.path("big.img")
        with open(p, "wb") as f:
            f.write(base)
        self.push(p, "--name", "big", "--version", "1", "--kind", "unknown")
        before = self.loose_bytes()
        with open(p, "wb") as f:
            f.write(changed)
        self.push(p, "--name", "big", "--version", "2", "--kind", "unknown")
        growth = self.loose_bytes() - before

        m1 = self.okjson("show", "big@1")["manifest"]["files"][0]["chunks"]
        m2 = self.okjson("show", "big@2")["manifest"]["files"][0]["chunks"]
        old = {c["sha256"] for c in m1}
        shared = [c for c in m2 if c["sha256"] in old]

        d = self.okjson("diff", "big@1", "big@2")
        self.assertEqual((d["name"], d["from"], d["to"]), ("big", "1", "2"))
        self.assertEqual(len(d["files"]), 1)
        f = d["files"][0]
        self.assertEqual(f["path"], "big.img")
        self.assertEqual(f["status"], "changed")
        self.assertEqual((f["from_size"], f["to_size"]), (len(base), len(changed)))
        self.assertEqual(f["chunks"], len(m2))
        self.assertEqual(f["shared_chunks"], len(shared))
        self.assertEqual(f["shared_bytes"], sum(c["size"] for c in shared))
        self.assertLessEqual(f["chunks"] - f["shared_chunks"], 2, d)
        self.assertGreaterEqual(f["shared_chunks"], 5)
        # only the new chunks (at most 2 x 4 MiB) and a few small objects were written
        self.assertLess(growth, 2 * 4 * MiB + 256 * 1024)

        rc, data, err = self.im("pull", "big@2", "-o", "-", binary=True)
        self.assertEqual(rc, 0, err)
        self.assertEqual(sha256(data), sha256(changed))

        # identical versions share everything
        d = self.okjson("diff", "big@2", "big@2")
        self.assertEqual(d["files"][0]["shared_chunks"], d["files"][0]["chunks"])
        self.assertFsckClean()


if __name__ == "__main__":
    main()
