#!/usr/bin/env python3
"""
Labels and source are part of the immutable manifest (issue #10, item 8): re-pushing the
same bytes as NAME@VERSION with another --label or --source is a conflict, refused with the
same message locally and through a server (exit 1, HTTP 409), and the stored manifest keeps
its labels; the same labels again is the idempotent no-op it always was, and a new version
records the new label.
"""

import json

from imgstore_testlib import (EXIT_FAIL, ServerTestCase, main, multipart, new_token, run)


class ProvenanceConflict(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.file, _ = self.random_file("app.img", 64 * 1024)
        self.push(self.file, "--name", "app", "--version", "1", "--kind", "unknown",
                  "--label", "ci.job=812", "--source", "https://git.example/app@3f2a9c0")
        self.admin, line = new_token("admin", "ops")
        self.server = self.serve(line)

    def rim(self, *args):
        return run(*args, "--server", self.server.url, "--token", self.admin)

    def labels(self):
        return self.okjson("show", "app@1")["manifest"]["provenance"]["labels"]

    def again(self, im, *extra):
        return im("push", self.file, "--name", "app", "--version", "1", "--kind", "unknown",
                  *extra)

    def test_another_label_is_a_conflict_in_both_modes(self):
        tip = self.tip()
        messages = []
        for im in (self.im, self.rim):
            rc, out, err = self.again(im, "--label", "ci.job=813", "--source",
                                      "https://git.example/app@3f2a9c0")
            self.assertEqual(rc, EXIT_FAIL, out + err)
            line = self.assertOneLineError(
                err, "app 1 already exists with labels {ci.job=812}, not {ci.job=813}",
                "labels are part of the manifest", "new version")
            messages.append(line.split(" (HTTP 409)")[0])
            # no label at all is another set of labels too
            rc, out, err = self.again(im, "--source", "https://git.example/app@3f2a9c0")
            self.assertEqual(rc, EXIT_FAIL, out + err)
            self.assertOneLineError(err, "with labels {ci.job=812}, not {}")
        self.assertEqual(messages[0], messages[1])
        self.assertEqual(self.tip(), tip)
        self.assertEqual(self.labels(), {"ci.job": "812"})

    def test_another_source_is_a_conflict_in_both_modes(self):
        for im in (self.im, self.rim):
            rc, out, err = self.again(im, "--label", "ci.job=812", "--source",
                                      "https://git.example/app@ffffff")
            self.assertEqual(rc, EXIT_FAIL, out + err)
            self.assertOneLineError(err, "with source https://git.example/app@3f2a9c0, not "
                                    "https://git.example/app@ffffff")

    def test_the_api_answers_409(self):
        ctype, body = multipart([("app.img", open(self.file, "rb").read())],
                                [("label", "ci.job=813"),
                                 ("source", "https://git.example/app@3f2a9c0")])
        status, _, data = self.server.request("POST", "/v1/images/app/1", body=body,
                                              headers={"Content-Type": ctype}, token=self.admin)
        error = self.assertJsonError(status, data, 409, "conflict")
        self.assertIn("labels are part of the manifest", error["message"])

    def test_the_same_labels_again_is_a_no_op_and_a_new_version_records_a_new_label(self):
        tip = self.tip()
        for im in (self.im, self.rim):
            rc, out, err = self.again(im, "--label", "ci.job=812", "--source",
                                      "https://git.example/app@3f2a9c0")
            self.assertEqual((rc, out.strip()), (0, "app@1"), err)
            self.assertIn("already stored", err)
        self.assertEqual(self.tip(), tip)
        self.push(self.file, "--name", "app", "--version", "1-ci813", "--kind", "unknown",
                  "--label", "ci.job=813")
        shown = json.loads(self.rim("show", "app@1-ci813", "--json")[1])
        self.assertEqual(shown["manifest"]["provenance"]["labels"], {"ci.job": "813"})


if __name__ == "__main__":
    main()
