#!/usr/bin/env python3
"""
The status page's auth and limits over plain HTTP (issue #12; test_ui_browser.py looks at
it in Chromium): the login form trades a token for a signed session cookie (HttpOnly,
SameSite=Strict, not the token), which only the status page reads; without one a visitor
is sent to the form, unless reads are public; a token without `read`, a forged or another
server's session and a sign-in posted from another site are refused; pages are paged from
the indexes and answered from the answer cache, keyed by their page arguments and by who
signed in, and follow every move of the tip.
"""

import re
import urllib.parse

from imgstore_testlib import ServerTestCase, main, multipart, new_token


def form(**fields):
    return urllib.parse.urlencode(fields).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class StatusPage(ServerTestCase):

    def setUp(self):
        super().setUp()
        for v in ("1.0", "2.0", "3.0"):
            p, _ = self.random_file("app-%s.img" % v, 4096)
            self.push(p, "--name", "app", "--version", v, "--kind", "unknown")
        self.ok("deploy", "app", "1.0", "--channel", "prod")
        self.ok("deploy", "app", "2.0", "--channel", "prod", "--reason", "two")
        self.ok("rollback", "app", "--channel", "prod", "--reason", "boot loop on 2.0",
                env={"IMGSTORE_ACTOR": "carol"})
        self.read, read_line = new_token("read", "alice")
        self.read2, read2_line = new_token("read,push", "bob")
        self.deploy, deploy_line = new_token("deploy", "deployer")
        self.lines = (read_line, read2_line, deploy_line)
        self.server = self.serve(*self.lines)

    def login(self, token, server=None, next_path=None, headers=None):
        fields = {"token": token}
        if next_path:
            fields["next"] = next_path
        return (server or self.server).request("POST", "/ui/login", body=form(**fields),
                                               headers=dict(FORM, **(headers or {})))

    def session(self, token, server=None):
        status, headers, _ = self.login(token, server)
        self.assertEqual(status, 303)
        return headers["set-cookie"].split(";")[0]

    def page(self, path, cookie=None, server=None, expect=200):
        status, headers, data = (server or self.server).request(
            "GET", path, headers={"Cookie": cookie} if cookie else None)
        self.assertEqual(status, expect, "%s: %r" % (path, data[:300]))
        return headers, data.decode()

    def test_login_sets_a_session_that_only_the_status_page_reads(self):
        status, headers, _ = self.login(self.read, next_path="/ui/images/app")
        self.assertEqual(status, 303)
        self.assertEqual(headers["location"], "/ui/images/app")
        cookie = headers["set-cookie"]
        attrs = [a.strip() for a in cookie.split(";")]
        self.assertTrue(attrs[0].startswith("imgstore_session=v1."), cookie)
        for attr in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"):
            self.assertIn(attr, attrs, cookie)
        self.assertNotIn("Secure", attrs)  # plain HTTP here; test_server_tls checks HTTPS
        self.assertNotIn(self.read, cookie)
        _, page = self.page("/ui/images/app", attrs[0])
        self.assertIn('signed in as <b id="user">alice</b>', page)
        # the cookie is no credential for the API: only the status page reads it
        status, _, _ = self.server.request("GET", "/v1/images", headers={"Cookie": attrs[0]})
        self.assertEqual(status, 401)
        # sign-out clears it; a login may only return to this server's own paths
        status, headers, _ = self.server.request("POST", "/ui/logout", body=b"", headers=FORM)
        self.assertEqual((status, headers["location"]), (303, "/ui/login"))
        self.assertIn("Max-Age=0", headers["set-cookie"])
        for evil in ("//evil.example/", "https://evil.example/", "/ui/\r\nX: y"):
            status, headers, _ = self.login(self.read, next_path=evil)
            self.assertEqual((status, headers["location"]), (303, "/ui/"), evil)

    def test_without_a_session_the_form_unless_reads_are_public(self):
        status, headers, _ = self.server.request("GET", "/ui/channels/app/prod")
        self.assertEqual(status, 303)
        self.assertEqual(headers["location"], "/ui/login?next=/ui/channels/app/prod")
        _, page = self.page("/ui/login?next=/ui/channels/app/prod")
        self.assertIn('name="next" value="/ui/channels/app/prod"', page)
        self.assertEqual(self.server.request("GET", "/")[0], 303)
        public = self.serve("read_public = true", *self.lines)
        _, page = self.page("/", server=public)
        self.assertIn('href="/ui/images/app"', page)
        self.assertNotIn("signed in as", page)
        self.assertIn("boot loop on 2.0", self.page("/ui/channels/app/prod", server=public)[1])

    def test_wrong_tokens_sessions_and_scopes_are_refused(self):
        status, _, data = self.login("imgstore_" + "0" * 64)
        self.assertEqual(status, 401)
        self.assertIn("That token is not valid here.", data.decode())
        status, _, data = self.login(self.deploy)
        self.assertEqual(status, 403)
        self.assertIn("lacks the read scope", data.decode())
        # a bearer client is answered as by the API
        status, headers, data = self.server.request("GET", "/ui/", token=self.deploy)
        self.assertEqual(status, 403)
        self.assertIn("'read'", data.decode())
        self.assertEqual(self.server.request("GET", "/ui/", token=self.read)[0], 200)
        # forged, and another server's (or this one's before a restart): sign in again
        cookie = self.session(self.read)
        name, value = cookie.split("=", 1)
        forged = "%s=%s%s" % (name, value[:-1], "0" if value[-1] != "0" else "1")
        other = self.serve(*self.lines)
        for bad, server in ((forged, self.server), (cookie, other),
                            ("imgstore_session=" + self.read, self.server)):
            _, page = self.page("/ui/images/app", bad, server=server, expect=401)
            self.assertIn("Your session has ended", page)
        # a sign-in posted from another site's page
        for hdrs in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"}):
            self.assertEqual(self.login(self.read, headers=hdrs)[0], 403, hdrs)
        self.assertEqual(self.login(self.read, headers={"Sec-Fetch-Site": "same-origin"})[0],
                         303)
        self.assertEqual(self.login(self.read, headers={
            "Origin": "http://%s" % self.server.address})[0], 303)

    def test_bad_paths_are_pages_too(self):
        cookie = self.session(self.read)
        for path, status in (("/ui/images/nope", 404), ("/ui/images/app/9.9", 404),
                             ("/ui/channels/app/staging", 404), ("/ui/images/Bad!", 400),
                             ("/ui/images/app?before=x", 400), ("/ui/images/app?limit=0", 400),
                             ("/ui/images/app?limit=201", 400)):
            headers, page = self.page(path, cookie, expect=status)
            self.assertTrue(headers["content-type"].startswith("text/html"), path)
            self.assertIn('id="error"', page)
            self.assertIn("default-src 'none'", headers["content-security-policy"])

    def test_pages_are_paged_cached_by_arguments_and_user_and_follow_the_tip(self):
        alice, bob = self.session(self.read), self.session(self.read2)
        _, first = self.page("/ui/images/app?limit=1", alice)
        self.assertIn('href="/ui/images/app/3.0"', first)
        self.assertNotIn('href="/ui/images/app/2.0"', first)
        older = re.search(r'href="(/ui/images/app\?before=\d+&amp;limit=1)" id="older"', first)
        self.assertTrue(older, first)
        _, second = self.page(older.group(1).replace("&amp;", "&"), alice)
        self.assertIn('href="/ui/images/app/2.0">2.0</a></td>', second)
        self.assertNotIn('href="/ui/images/app/3.0">3.0</a></td>', second)

        hits = self.server.metrics(self.read)["imgstore_answer_cache_hits_total"]
        self.assertEqual(self.page("/ui/images/app?limit=1", alice)[1], first)
        self.assertEqual(self.server.metrics(self.read)["imgstore_answer_cache_hits_total"],
                         hits + 1)
        # another reader's page names them, not the one cached first
        self.assertIn('<b id="user">bob</b>', self.page("/ui/images/app?limit=1", bob)[1])

        _, channel = self.page("/ui/channels/app/prod?limit=2", alice)
        self.assertIn("rollback by <b>carol</b>", channel)
        self.assertIn("boot loop on 2.0", channel)
        self.assertIn('id="older"', channel)
        self.ok("deploy", "app", "3.0", "--channel", "prod", "--reason", "three")
        _, channel = self.page("/ui/channels/app/prod?limit=2", alice)
        self.assertIn('id="runs">3.0</a>', channel)
        self.assertIn(">three<", channel)

    def test_a_pending_version_stands_out(self):
        """A version stored without its release signatures (a key-less server's upload) is
        shown pending in the list and not trusted on its page; signed ones verified."""
        admin, line = new_token("admin", "ops")
        keyless = self.serve(line, env={"XDG_CONFIG_HOME": self.path("nokey")})
        ctype, body = multipart([("app.img", b"\x01" * 4096)])
        status, _, data = keyless.request("POST", "/v1/images/app/4.0", body=body,
                                          headers={"Content-Type": ctype}, token=admin)
        self.assertEqual(status, 201, data)
        cookie = self.session(self.read)
        _, page = self.page("/ui/images/app?limit=2", cookie)
        rows = re.findall(r'<tr><td><a href="/ui/images/app/([^"]+)">.*?</tr>', page)
        self.assertEqual(rows, ["4.0", "3.0"], page)
        self.assertRegex(page, r'app/4\.0">4\.0</a>.*?badge bad">pending 0 of 1<')
        self.assertRegex(page, r'app/3\.0">3\.0</a>.*?badge ok">verified 1 of 1<')
        _, page = self.page("/ui/images/app/4.0", cookie)
        self.assertIn("not trusted: 0 of 1 signatures needed", page)
        # what "of 1" is judged by: the policy's roles, thresholds and keys
        _, page = self.page("/", cookie)
        policy = page[page.index('id="policy"'):]
        for role in ("root", "release", "deploy"):
            self.assertRegex(policy, r"<td>%s</td><td>1 of 1</td><td><code>SHA256:" % role)
        self.assertIn("Policy version 1", policy)

    def test_each_move_is_checked_under_the_current_policy(self):
        """Every move in the channel's history shows its deploy signatures checked over its
        stored bytes under the current policy: all verified, until the policy asks for two
        deploy signatures, after which the old moves (and the live state) have too few."""
        cookie = self.session(self.read)
        _, page = self.page("/ui/channels/app/prod", cookie)
        history = page[page.index('id="history"'):]
        self.assertEqual(history.count('badge ok">verified 1 of 1<'), 3, history)
        self.ok("key", "generate", "--out", self.path("second.key"))
        self.ok("trust", "add-key", "deploy", self.path("second.key.pub"))
        self.ok("trust", "set-threshold", "deploy", "2")
        _, page = self.page("/ui/channels/app/prod", cookie)
        history = page[page.index('id="history"'):]
        self.assertEqual(history.count('badge bad">not trusted 1 of 2<'), 3, history)
        self.assertIn("not trusted: 1 of 2 signatures needed", page)

    def test_agent_reports_per_host(self):
        """What each host's agent reported (issue #11) is listed on the channel page, as
        unsigned claims, escaped, and a new report shows at once (reports live beside the
        store, so the page is not cached by the tip alone)."""
        reporter, line = new_token("report", "agent-web")
        server = self.serve(*(self.lines + (line,)))
        cookie = self.session(self.read, server)
        _, page = self.page("/ui/channels/app/prod", cookie, server=server)
        self.assertIn("No agent has reported", page)
        for body in ({"host": "web-1", "state": "ok", "version": "1.0"},
                     {"host": "web-2", "state": "rolled-back", "version": "1.0",
                      "attempted": "2.0", "message": "<b>health</b> check failed"}):
            status, _, data = server.request("POST", "/v1/channels/app/prod/reports", body,
                                             token=reporter)
            self.assertEqual(status, 201, data)
        _, page = self.page("/ui/channels/app/prod", cookie, server=server)
        agents = page[page.index('id="agents"'):page.index('id="agent-events"')]
        self.assertIn("<td>web-1</td>", agents)
        self.assertIn('badge warn">rolled-back<', agents)
        self.assertIn("&lt;b&gt;health&lt;/b&gt; check failed", agents)
        self.assertIn("unsigned", page)
        status, _, _ = server.request("POST", "/v1/channels/app/prod/reports",
                                      {"host": "web-3", "state": "failed"}, token=reporter)
        self.assertEqual(status, 201)
        self.assertIn("<td>web-3</td>", self.page("/ui/channels/app/prod", cookie,
                                                  server=server)[1])


if __name__ == "__main__":
    main()
