#!/usr/bin/env python3
"""
Per-host authentication of agent reports (issue #12), against a real `imgstore serve`, with
tokens made by the real `imgstore token create`, reports posted by stock curl and by the real
agent: a token bound to a host (`--host`) is kept as verified for that host and refused (403,
one line, nothing kept) for any other, and when also bound to an image (`--image`) on any
other image; an unbound token (the config format from before binding) still posts, kept as
unverified, and so does a record an older server stored without the field. `imgstore agent
reports` and the status page say which hosts were verified.
"""

import json
import os

from imgstore_testlib import (BIN, ServerTestCase, base_env, curl, main, new_token, run,
                              validate, _run)


class ReportAuth(ServerTestCase):

    def setUp(self):
        super().setUp()
        for image in ("app", "db"):
            p, _ = self.random_file("%s.img" % image, 4096)
            self.push(p, "--name", image, "--version", "1.0", "--kind", "unknown")
            self.ok("deploy", image, "1.0", "--channel", "prod")
        self.web1, web1_line = self.token("read,report", "agent-web-1", "--host", "web-1")
        self.web2, web2_line = self.token("read,report", "agent-web-2", "--host", "web-2",
                                          "--image", "app")
        self.unbound, unbound_line = new_token("read,report", "old-agent")  # pre-binding line
        self.admin, admin_line = new_token("admin", "ops")
        self.server = self.serve(web1_line, web2_line, unbound_line, admin_line,
                                 "cache_max_bytes = 0")

    def token(self, scopes, name, *binding):
        data = self.okjson("token", "create", "--scope", scopes, "--name", name, *binding)
        return data["token"], data["config_line"]

    def post(self, token, host, image="app", channel="prod"):
        """POST a report with curl: (HTTP status, parsed body)."""
        body = json.dumps({"host": host, "state": "ok", "version": "1.0"})
        rc, out, err = curl("-X", "POST", "-H", "Authorization: Bearer " + token,
                            "-H", "Content-Type: application/json", "--data-binary", body,
                            "-w", "\n%{http_code}",
                            "%s/v1/channels/%s/%s/reports" % (self.server.url, image, channel))
        self.assertEqual(rc, 0, err)
        text, _, status = out.decode().rpartition("\n")
        return int(status), json.loads(text)

    def host_file(self, host, image="app"):
        return os.path.join(self.repo, "imgstore-reports", image, "prod", "hosts",
                            host + ".json")

    def reports(self, image="app"):
        data = self.server.get_json("/v1/channels/%s/prod/reports" % image, token=self.admin)
        validate(data, "api_reports.schema.json")
        return data

    def test_token_create_writes_the_binding_into_the_config_line(self):
        data = self.okjson("token", "create", "--scope", "report", "--name", "a", "--host",
                           "web-9.fra1", "--image", "app")
        self.assertTrue(data["config_line"].endswith(" scopes=report name=a host=web-9.fra1 "
                                                     "image=app"), data)
        self.assertEqual((data["host"], data["image"]), ("web-9.fra1", "app"))
        data = self.okjson("token", "create", "--scope", "report")
        self.assertTrue(data["config_line"].endswith(" scopes=report name=token"), data)
        self.assertIsNone(data["host"])
        rc, _, err = self.im("token", "create", "--scope", "report", "--image", "app")
        self.assertEqual(rc, 2)
        self.assertOneLineError(err, "--image needs --host")
        rc, _, err = self.im("token", "create", "--scope", "read,push", "--host", "web-1")
        self.assertEqual(rc, 2)  # a binding nothing would check
        self.assertOneLineError(err, "--scope needs report, deploy or admin")
        for scopes in ("read,deploy", "admin"):
            self.okjson("token", "create", "--scope", scopes, "--host", "web-1")
        rc, _, err = self.im("token", "create", "--scope", "report", "--host", "../x")
        self.assertEqual(rc, 1)
        self.assertOneLineError(err, "host name")

    def test_a_bound_token_is_verified_for_its_host(self):
        status, record = self.post(self.web1, "web-1")
        self.assertEqual(status, 201, record)
        validate(record, "api_report.schema.json")
        self.assertIs(record["host_verified"], True)
        self.assertEqual(record["by"], "agent-web-1")
        with open(self.host_file("web-1")) as f:
            self.assertIs(json.load(f)["host_verified"], True)  # the stored record says so
        # no image binding: its host's reports on any image are verified
        status, record = self.post(self.web1, "web-1", image="db")
        self.assertEqual((status, record["host_verified"]), (201, True))

    def test_a_bound_token_may_not_speak_for_another_host(self):
        status, body = self.post(self.web1, "web-2")
        self.assertEqual(status, 403, body)
        validate(body, "api_error.schema.json")
        self.assertEqual(body["error"]["code"], "forbidden")
        self.assertEqual(body["error"]["message"], "token 'agent-web-1' is bound to host "
                                                   "'web-1' and may not report for 'web-2'")
        self.assertFalse(os.path.exists(self.host_file("web-2")))
        self.assertEqual(self.reports()["events"], [])  # nothing kept
        # a malformed host is a bad request before it is someone else's host
        status, body = self.post(self.web1, "../web-1")
        self.assertEqual((status, body["error"]["code"]), (400, "invalid"))

    def test_an_image_bound_token_may_not_report_on_another_image(self):
        status, record = self.post(self.web2, "web-2")
        self.assertEqual((status, record["host_verified"]), (201, True))
        status, body = self.post(self.web2, "web-2", image="db")
        self.assertEqual(status, 403, body)
        self.assertEqual(body["error"]["message"], "token 'agent-web-2' is bound to image "
                                                   "'app' and may not report on 'db'")
        self.assertEqual(self.reports("db")["hosts"], [])

    def test_unbound_tokens_and_old_records_are_unverified(self):
        for token in (self.unbound, self.admin):
            status, record = self.post(token, "web-7")
            self.assertEqual(status, 201, record)
            validate(record, "api_report.schema.json")
            self.assertIs(record["host_verified"], False)
        # a record an older server kept has no host_verified: read as unverified
        old = {"host": "web-8", "image": "app", "channel": "prod", "state": "ok",
               "time": "2026-12-01T00:00:00Z", "version": "1.0", "by": "old-agent",
               "signed": False}
        with open(self.host_file("web-8"), "w") as f:
            json.dump(old, f)
        hosts = {h["host"]: h for h in self.reports()["hosts"]}
        self.assertIs(hosts["web-8"]["host_verified"], False)
        self.assertIs(hosts["web-7"]["host_verified"], False)

    def agent_once(self, token, host):
        env = base_env()
        return _run([BIN, "agent", "--server", self.server.url, "--token", token, "--image",
                     "app", "--channel", "prod", "--dir", self.path("agent-" + host), "--host",
                     host, "--once"], env=env, timeout=120)

    def test_the_agent_reports_its_host_and_the_listing_says_which_are_verified(self):
        rc, out, err = self.agent_once(self.web1, "web-1")
        self.assertEqual(rc, 0, err)
        rc, out, err = self.agent_once(self.unbound, "web-5")
        self.assertEqual(rc, 0, err)
        self.assertIn("unverified", err)  # the agent says how to fix it
        self.assertIn("imgstore token create --host web-5", err)
        # the web-1 token cannot make the agent speak for web-6: the server's reason is logged
        rc, out, err = self.agent_once(self.web1, "web-6")
        self.assertIn("may not report for 'web-6'", err)
        hosts = {h["host"]: h for h in self.reports()["hosts"]}
        self.assertEqual(sorted(hosts), ["web-1", "web-5"])
        self.assertIs(hosts["web-1"]["host_verified"], True)
        self.assertIs(hosts["web-5"]["host_verified"], False)
        rc, out, err = run("agent", "reports", "--image", "app", "--channel", "prod",
                           "--server", self.server.url, "--token", self.admin)
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertRegex(lines[0], r"^web-1 1\.0 ok \S+Z verified$")
        self.assertRegex(lines[1], r"^web-5 1\.0 ok \S+Z unverified$")
        self.assertIn("bound to that host", err)

    def test_the_status_page_says_which_hosts_were_verified(self):
        self.post(self.web1, "web-1")
        self.post(self.unbound, "web-7")
        status, _, page = self.server.request("GET", "/ui/channels/app/prod", token=self.admin)
        self.assertEqual(status, 200)
        page = page.decode()
        agents = page[page.index('id="agents"'):page.index('id="agent-events"')]
        rows = {r.split("</td>")[0]: r for r in agents.split("<tr><td>")[1:]}
        self.assertIn('badge ok">verified<', rows["web-1"])
        self.assertIn('badge warn">unverified<', rows["web-7"])
        self.assertIn("bound to that host", page)


if __name__ == "__main__":
    main()
