#!/usr/bin/env python3
"""
`imgstore ls NAME --sort name` (docs/cli.md): the versions in bytewise order of their names
(1.10 before 1.9, as the OCI tag list), a page at a time from the name index, chained by the
version each page ends with (--before), locally and against a server (GET /v1/images/{name}
?sort=name&before=VERSION); rows as ls prints them newest first; an unknown sort key is a
one-line usage error; a store without the name index (an older imgstore) answers the same
until `imgstore reindex` builds it. Segment boundaries are crossed in tests/store/test_names.c
(small caps), not here: that takes more than 256 pushes.
"""

import os
import urllib.parse

from imgstore_testlib import (EXIT_USAGE, ServerTestCase, git_ok, ls_tree, main, new_token, rng,
                              validate)

VERSIONS = ["1.0", "1.0+b", "1.0-rc1", "1.1.1", "1.2", "1.9", "1.10", "2.0", "10.0", "1a",
            "B2"]
BYTEWISE = sorted(VERSIONS, key=lambda v: v.encode())


def without(repo, tree, path):
    """A new tree: TREE without PATH (a/b/c), built with git mktree."""
    head, _, rest = path.partition("/")
    entries = [e for e in ls_tree(repo, tree) if e[3] != head or rest]
    if rest:
        entries = [e if e[3] != head else (e[0], e[1], without(repo, e[2], rest), e[3])
                   for e in entries]
    text = "".join("%s %s %s\t%s\0" % e for e in entries)
    return git_ok("mktree", "-z", git_dir=repo, stdin=text).strip()


class LsByName(ServerTestCase):

    def setUp(self):
        super().setUp()
        order = list(VERSIONS)
        rng("ls-by-name").shuffle(order)  # pushed in random order: the index sorts them
        for i, v in enumerate(order):
            path, _ = self.random_file("v%d/app.bin" % i, 1000 + 37 * i)
            self.push(path, "--name", "app", "--version", v)
        self.ok("deploy", "app", "1.10", "--channel", "prod")

    def by_name(self, *args):
        return self.okjson("ls", "app", "--sort", "name", *args)

    def pages(self, limit, *remote):
        """Pages of LIMIT by name chained by "next" through --before: (rows, page count)."""
        rows, before, pages = [], None, 0
        while True:
            page = self.by_name("--limit", str(limit), *remote,
                                *(["--before", before] if before is not None else []))
            pages += 1
            self.assertLessEqual(len(page["versions"]), limit)
            self.assertEqual(page["total"], len(VERSIONS))
            rows += page["versions"]
            if page["next"] is None:
                return rows, pages
            self.assertEqual(page["next"], page["versions"][-1]["version"])
            before = page["next"]

    def test_ls_sort_name_pages_in_bytewise_order_with_the_rows_of_ls(self):
        newest_first = self.okjson("ls", "app")
        self.assertEqual(self.okjson("ls", "app", "--sort", "time"), newest_first)
        whole = self.by_name()
        self.assertEqual([r["version"] for r in whole["versions"]], BYTEWISE)
        self.assertIsNone(whole["next"])
        self.assertEqual(whole["total"], len(VERSIONS))
        self.assertEqual(whole["channels"], {"prod": "1.10"})
        # the same rows, the same shape: only the order differs
        self.assertEqual(sorted(whole["versions"], key=lambda r: r["version"]),
                         sorted(newest_first["versions"], key=lambda r: r["version"]))
        for limit in (1, 3, 4, len(VERSIONS), 50):
            rows, pages = self.pages(limit)
            self.assertEqual(rows, whole["versions"])
            self.assertEqual(pages, max(1, -(-len(VERSIONS) // limit)))
        # --before need not be a version: the names after it
        page = self.by_name("--before", "1.5", "--limit", "2")
        self.assertEqual([r["version"] for r in page["versions"]], ["1.9", "10.0"])
        self.assertEqual(page["next"], "10.0")
        self.assertEqual(self.by_name("--before", "z")["versions"], [])
        # the text form: the same order, and stderr says how to ask for the next page
        rc, out, err = self.im("ls", "app", "--sort", "name", "--limit", "2")
        self.assertEqual(rc, 0, err)
        self.assertEqual([l.split()[0] for l in out.splitlines()[1:]], BYTEWISE[:2])
        self.assertIn("imgstore ls app --sort name --before %s" % BYTEWISE[1], err)
        rc, out, err = self.im("ls", "app", "--sort", "name", "--all")
        self.assertEqual([l.split()[0] for l in out.splitlines()[1:]], BYTEWISE)
        self.assertIn("prod", [l for l in out.splitlines() if l.startswith("1.10 ")][0])
        self.assertEqual(err, "")

    def test_an_unknown_sort_key_or_cursor_is_a_usage_error(self):
        server = self.serve()
        for remote in ([], ["--server", server.url]):
            for args, needle in ((["--sort", "size"], "--sort"),
                                 (["--sort", "Name"], "--sort"),
                                 (["--sort", "name", "--before", "a b"], "--before"),
                                 (["--before", "1.0"], "--before")):
                rc, out, err = self.im("ls", "app", *args, *remote)
                self.assertEqual(rc, EXIT_USAGE, err)
                self.assertEqual(out, "")
                self.assertOneLineError(err, needle)

    def test_server_and_remote_cli_page_by_name(self):
        token, line = new_token("read")
        server = self.serve(line)
        remote = ["--server", server.url, "--token", token]
        local = self.by_name()
        # pages of the route, chained by "next" as before= (a '+' escaped in the query)
        rows, before = [], None
        while True:
            url = "/v1/images/app?sort=name&limit=3"
            if before is not None:
                url += "&before=" + urllib.parse.quote(before, safe="")
            page = server.get_json(url, token=token)
            validate(page, "api_image.schema.json")
            self.assertEqual(page["total"], len(VERSIONS))
            self.assertEqual(page["channels"], {"prod": "1.10"})
            rows += page["versions"]
            if page["next"] is None:
                break
            before = page["next"]
        self.assertEqual(rows, local["versions"])
        self.assertIn("1.0+b", [r["version"] for r in rows])
        # the answer cache keeps the orders apart; sort=time is the default
        by_time = server.get_json("/v1/images/app?limit=3", token=token)
        by_name = server.get_json("/v1/images/app?limit=3&sort=name", token=token)
        self.assertEqual([r["version"] for r in by_name["versions"]], BYTEWISE[:3])
        self.assertNotEqual(by_time["versions"], by_name["versions"])
        self.assertIsInstance(by_time["next"], int)
        self.assertEqual(server.get_json("/v1/images/app?limit=3&sort=time", token=token),
                         by_time)
        self.assertEqual(server.get_json("/v1/images/app?sort=name&before=", token=token),
                         server.get_json("/v1/images/app?sort=name", token=token))
        status, _, data = server.request("GET", "/v1/images/app?sort=size", token=token)
        self.assertJsonError(status, data, 400)
        status, _, data = server.request("GET", "/v1/images/nosuch?sort=name", token=token)
        self.assertJsonError(status, data, 404)
        # the remote CLI: the same rows, pages chained by the same cursor
        self.assertEqual(self.by_name(*remote), local)
        for limit in (2, 5):
            self.assertEqual(self.pages(limit, *remote)[0], local["versions"])
        rc, out, err = self.im("ls", "app", "--sort", "name", "--limit", "2", *remote)
        self.assertEqual(rc, 0, err)
        self.assertEqual([l.split()[0] for l in out.splitlines()[1:]], BYTEWISE[:2])
        self.assertIn("imgstore ls app --sort name --before %s" % BYTEWISE[1], err)

    def test_a_store_without_the_name_index_answers_the_same_until_reindex(self):
        token, line = new_token("read")
        whole = self.by_name()
        # as an imgstore from before the name index left it: no index/app/names
        old = self.tip()
        tree = without(self.repo, old + "^{tree}", "index/app/names")
        commit = git_ok("commit-tree", tree, "-p", old, "-m", "an older imgstore's commit",
                        git_dir=self.repo).strip()
        git_ok("update-ref", "refs/heads/main", commit, old, git_dir=self.repo)
        self.assertNotIn("names", [e[3] for e in ls_tree(self.repo, "main:index/app")])
        self.assertEqual(self.by_name(), whole)
        self.assertEqual(self.pages(4)[0], whole["versions"])
        server = self.serve(line)
        self.assertEqual(self.by_name("--server", server.url, "--token", token), whole)
        server.stop()
        self.ok("reindex")
        self.assertIn("names", [e[3] for e in ls_tree(self.repo, "main:index/app")])
        self.assertEqual(self.by_name(), whole)
        self.assertEqual(self.pages(4)[0], whole["versions"])


if __name__ == "__main__":
    main()
