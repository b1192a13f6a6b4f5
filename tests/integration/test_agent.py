"""
imgstore agent against a real imgstore serve, with a restart hook and a health hook written
here (shell commands that record what runs and judge a version by its bytes): a deploy is
swapped in and checked; a version whose health check fails is left by the agent by itself,
and the channel's history shows the signed rollback with the agent's reason (or, without the
deploy scope, the host's report); kill -9 in the middle of a pull and of a swap restarts into
a consistent state; a server that is away during a move is caught up with. The times from
`imgstore deploy` to the swap done and from the failed health check to the previous version
running are printed for bench/README.md.
"""

import json
import os
import signal
import subprocess
import time

from imgstore_testlib import (BIN, ServerTestCase, base_env, main, new_token, run, sha256_file,
                              validate, write_random)

RESTART = ('echo "$(date +%s.%N) $IMGSTORE_VERSION $IMGSTORE_AGENT_EVENT" >> "$LOG/restarts"; '
           'cp "$IMGSTORE_VERSION_DIR/app.img" "$LOG/running"; '
           'if [ -e "$LOG/kill-on-restart" ] && [ "$IMGSTORE_VERSION" = 2.0 ]; then '
           'rm "$LOG/kill-on-restart"; kill -9 $PPID; sleep 5; fi')
HEALTH = ('if head -c 3 "$IMGSTORE_VERSION_DIR/app.img" | grep -q "^BAD"; then '
          'echo "$(date +%s.%N) $IMGSTORE_VERSION" >> "$LOG/health-failed"; exit 1; fi')


class Agent(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.admin, admin_line = new_token("admin", "ops")
        self.deployer, deploy_line = new_token("read,deploy", "agent-deploy")
        self.reporter, report_line = new_token("read,report", "agent-report")
        self.lines = (admin_line, deploy_line, report_line, "cache_max_bytes = 0")
        self.server = self.serve(*self.lines)
        self.logdir = self.path("hooklog")
        os.makedirs(self.logdir)
        self.dir = self.path("agent")
        self.agents = []

    def tearDown(self):
        for proc in self.agents:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    # -- helpers ---------------------------------------------------------------------------

    def rok(self, *args):
        rc, out, err = run(*(list(args) + ["--server", self.server.url, "--token", self.admin]))
        self.assertEqual(rc, 0, "imgstore %s: %s%s" % (" ".join(args), out, err))
        return out

    def version(self, version, text=None, size=None):
        p = self.path("src-%s" % version, "app.img")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if size:
            write_random(p, size)
        else:
            with open(p, "w") as f:
                f.write(text or "app version %s\n" % version)
        self.rok("push", p, "--name", "app", "--version", version, "--kind", "unknown")
        return p

    def start_agent(self, token, *extra):
        env = base_env()
        env["LOG"] = self.logdir
        argv = [BIN, "agent", "--server", self.server.url, "--token", token, "--image", "app",
                "--channel", "prod", "--dir", self.dir, "--host", "h1", "--exec-restart",
                RESTART, "--health", HEALTH, "--health-timeout", "3s"] + list(extra)
        log = open(self.path("agent-%d.log" % len(self.agents)), "wb")
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        log.close()
        self.agents.append(proc)
        return proc

    def status(self):
        rc, out, err = run("agent", "status", "--dir", self.dir, "--json")
        if rc != 0:
            return {}
        return json.loads(out)

    def wait_for(self, what, pred, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.status()
            if pred(st):
                return st
            time.sleep(0.05)
        logs = ""
        for i in range(len(self.agents)):
            with open(self.path("agent-%d.log" % i), "rb") as f:
                logs += f.read().decode("utf-8", "replace")
        self.fail("agent: no %s within %ss; status %s\n%s" % (what, timeout, self.status(), logs))

    def running(self, version):
        return lambda st: st.get("current") == version and st.get("phase") == "running"

    def reports(self):
        data = self.server.get_json("/v1/channels/app/prod/reports", token=self.admin)
        validate(data, "api_reports.schema.json")
        return data

    def history(self):
        rc, out, err = run("history", "app", "--channel", "prod", "--json", "--server",
                           self.server.url, "--token", self.admin)
        self.assertEqual(rc, 0, err)
        return json.loads(out)["entries"]

    # -- tests -----------------------------------------------------------------------------

    def test_deploy_is_swapped_in_and_checked(self):
        self.version("1.0")
        self.version("2.0")
        self.rok("deploy", "app", "1.0", "--channel", "prod")
        self.start_agent(self.reporter)
        self.wait_for("1.0 running", self.running("1.0"))
        started = time.time()
        self.rok("deploy", "app", "2.0", "--channel", "prod")
        st = self.wait_for("2.0 running", self.running("2.0"))
        took = time.time() - started
        print("\nbench: imgstore deploy -> agent swap done (health ok): %.2f s" % took)
        self.assertEqual(st["previous"], "1.0")
        with open(os.path.join(self.logdir, "running")) as f:
            self.assertEqual(f.read(), "app version 2.0\n")
        self.assertTrue(os.path.islink(os.path.join(self.dir, "current")))
        self.assertEqual(os.readlink(os.path.join(self.dir, "current")), "versions/2.0")
        hosts = self.reports()["hosts"]
        self.assertEqual([(h["host"], h["version"], h["state"]) for h in hosts],
                         [("h1", "2.0", "ok")])
        self.assertFalse(hosts[0]["signed"])
        rc, out, err = run("agent", "status", "--dir", self.dir)
        self.assertEqual(rc, 0, err)
        self.assertIn("running    2.0 since", out)

    def test_failed_health_goes_back_and_rolls_the_channel_back_signed(self):
        self.version("1.0")
        self.version("2.0", "BAD version 2.0\n")
        self.rok("deploy", "app", "1.0", "--channel", "prod")
        self.start_agent(self.deployer)
        self.wait_for("1.0 running", self.running("1.0"))
        self.rok("deploy", "app", "2.0", "--channel", "prod")
        st = self.wait_for("the way back to 1.0",
                           lambda st: st.get("current") == "1.0" and st.get("failed")
                           and not st["failed"].get("pending"))
        self.assertEqual(st["failed"]["version"], "2.0")
        self.assertTrue(st["failed"]["channel_rolled_back"])
        with open(os.path.join(self.logdir, "running")) as f:
            self.assertEqual(f.read(), "app version 1.0\n")
        with open(os.path.join(self.logdir, "health-failed")) as f:
            last_failure = float(f.read().split()[-2])
        with open(os.path.join(self.logdir, "restarts")) as f:
            back = [float(l.split()[0]) for l in f if l.split()[1:3] == ["1.0", "rollback"]]
        print("\nbench: failed health check -> previous version running: %.2f s"
              % (back[-1] - last_failure))
        # the channel moved back, signed, with the agent's reason
        newest = self.history()[0]
        self.assertEqual(newest["action"], "rollback")
        self.assertEqual(newest["version"], "1.0")
        self.assertEqual(newest["state"]["reason"], "agent h1: health check failed on 2.0")
        self.assertEqual(newest["state"]["actor"], "agent-deploy")  # signed by the server
        self.assertTrue(newest["signed"]["signatures"])
        host = self.reports()["hosts"][0]
        self.assertEqual((host["version"], host["state"], host["attempted"]),
                         ("1.0", "rolled-back", "2.0"))
        # the channel runs 1.0 again: nothing more to do, 2.0 is not tried again
        time.sleep(1.5)
        with open(os.path.join(self.logdir, "restarts")) as f:
            self.assertEqual([l.split()[1] for l in f], ["1.0", "2.0", "1.0"])

    def test_with_a_deploy_key_the_host_signs_the_rollback_itself(self):
        self.version("1.0")
        self.version("2.0", "BAD version 2.0\n")
        self.rok("deploy", "app", "1.0", "--channel", "prod")
        key = os.path.join(base_env()["XDG_CONFIG_HOME"], "imgstore", "key")  # made by init
        self.start_agent(self.deployer, "--key", key)
        self.wait_for("1.0 running", self.running("1.0"))
        self.rok("deploy", "app", "2.0", "--channel", "prod")
        self.wait_for("the way back to 1.0",
                      lambda st: st.get("current") == "1.0" and st.get("failed")
                      and not st["failed"].get("pending"))
        newest = self.history()[0]
        self.assertEqual((newest["action"], newest["version"]), ("rollback", "1.0"))
        self.assertEqual(newest["state"]["actor"], "imgstore-agent@h1")  # signed on the host
        self.assertEqual(newest["state"]["reason"], "agent h1: health check failed on 2.0")

    def test_without_the_deploy_scope_the_host_reports(self):
        self.version("1.0")
        self.version("2.0", "BAD version 2.0\n")
        self.rok("deploy", "app", "1.0", "--channel", "prod")
        self.start_agent(self.reporter)
        self.wait_for("1.0 running", self.running("1.0"))
        self.rok("deploy", "app", "2.0", "--channel", "prod")
        st = self.wait_for("the way back to 1.0",
                           lambda st: st.get("current") == "1.0" and st.get("failed")
                           and not st["failed"].get("pending"))
        self.assertFalse(st["failed"]["channel_rolled_back"])
        self.assertEqual(self.history()[0]["version"], "2.0")  # the channel did not move
        host = self.reports()["hosts"][0]
        self.assertEqual((host["host"], host["version"], host["state"], host["attempted"]),
                         ("h1", "1.0", "rolled-back", "2.0"))
        self.assertEqual(host["message"], "agent h1: health check failed on 2.0")
        self.assertEqual(host["by"], "agent-report")
        rc, out, err = run("agent", "reports", "--image", "app", "--channel", "prod",
                           "--server", self.server.url, "--token", self.admin)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^h1 1\.0 rolled-back \S+Z unverified attempted 2\.0: agent h1: health "
                              r"check failed on 2\.0\n$")
        self.assertIn("unsigned", err)
        events = self.reports()["events"]
        self.assertEqual([e["state"] for e in events][:2], ["rolled-back", "ok"])
        # a reporter may not move channels, nor may a reader report
        status, _, _ = self.server.request("POST", "/v1/channels/app/prod/rollback", {},
                                           token=self.reporter)
        self.assertEqual(status, 403)
        status, _, data = self.server.request("POST", "/v1/channels/app/prod/reports",
                                              {"host": "h2", "state": "sideways"},
                                              token=self.reporter)
        self.assertJsonError(status, data, 400, "invalid")

    def test_kill_9_in_the_middle_of_a_pull_resumes(self):
        self.version("1.0")
        big = self.version("2.0", size=48 * 1024 * 1024)
        self.rok("deploy", "app", "1.0", "--channel", "prod")
        proc = self.start_agent(self.reporter)
        self.wait_for("1.0 running", self.running("1.0"))
        self.rok("deploy", "app", "2.0", "--channel", "prod")
        partial = os.path.join(self.dir, "versions", ".partial-2.0")
        deadline = time.time() + 60
        while not os.path.isdir(partial) and time.time() < deadline:
            time.sleep(0.005)
        self.assertTrue(os.path.isdir(partial), "no pull seen")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        st = self.status()
        self.assertEqual(st["current"], "1.0")  # never a link to a half-pulled version
        self.assertFalse(os.path.exists(os.path.join(self.dir, "versions", "2.0")))
        self.start_agent(self.reporter)
        self.wait_for("2.0 running", self.running("2.0"))
        self.assertEqual(sha256_file(os.path.join(self.dir, "current", "app.img")),
                         sha256_file(big))
        self.assertFalse(os.path.exists(partial))

    def test_kill_9_in_the_middle_of_a_swap_finishes_it(self):
        self.version("1.0")
        self.version("2.0")
        self.rok("deploy", "app", "1.0", "--channel", "prod")
        proc = self.start_agent(self.reporter)
        self.wait_for("1.0 running", self.running("1.0"))
        open(os.path.join(self.logdir, "kill-on-restart"), "w").close()
        self.rok("deploy", "app", "2.0", "--channel", "prod")
        self.assertEqual(proc.wait(timeout=60), -signal.SIGKILL)
        st = self.status()
        self.assertEqual(st["phase"], "checking")  # killed by its own restart hook
        self.assertEqual(st["trial"]["to"], "2.0")
        self.start_agent(self.reporter)
        st = self.wait_for("2.0 running", self.running("2.0"))
        self.assertEqual(st["previous"], "1.0")
        with open(os.path.join(self.logdir, "restarts")) as f:
            self.assertEqual([l.split()[1:] for l in f],
                             [["1.0", "deploy"], ["2.0", "deploy"], ["2.0", "recover"]])

    def test_a_server_away_during_a_move_is_caught_up_with(self):
        self.version("1.0")
        self.version("2.0")
        self.rok("deploy", "app", "1.0", "--channel", "prod")
        self.start_agent(self.reporter)
        self.wait_for("1.0 running", self.running("1.0"))
        port = self.server.port
        self.server.stop()
        # the move happens on the store while the server is down
        self.ok("deploy", "app", "2.0", "--channel", "prod")
        time.sleep(2)
        self.assertEqual(self.status()["current"], "1.0")
        self.server = self.serve(*self.lines, args=("--listen", "127.0.0.1:%d" % port))
        self.wait_for("2.0 running", self.running("2.0"), timeout=90)

    def test_reports_need_the_report_scope_and_an_existing_channel(self):
        self.version("1.0")
        self.rok("deploy", "app", "1.0", "--channel", "prod")
        reader, read_line = new_token("read", "reader")
        server = self.serve(*(self.lines + (read_line,)))
        body = {"host": "web-3", "state": "ok", "version": "1.0"}
        status, _, data = server.request("POST", "/v1/channels/app/prod/reports", body,
                                         token=reader)
        self.assertIn("(or 'report') scope", self.assertJsonError(status, data, 403)["message"])
        for token in (self.reporter, self.deployer, self.admin):
            status, _, data = server.request("POST", "/v1/channels/app/prod/reports", body,
                                             token=token)
            self.assertEqual(status, 201, data)
            validate(json.loads(data), "api_report.schema.json")
        validate(body, "api_report_request.schema.json")
        status, _, data = server.request("POST", "/v1/channels/app/nosuch/reports", body,
                                         token=self.reporter)
        self.assertJsonError(status, data, 404, "not_found")
        for bad in ({"host": "../x", "state": "ok"}, {"host": "h", "state": "ok", "extra": "1"},
                    {"host": "h", "state": "ok", "message": "two\nlines"}, {"state": "ok"}):
            status, _, data = server.request("POST", "/v1/channels/app/prod/reports", bad,
                                             token=self.reporter)
            self.assertJsonError(status, data, 400, "invalid")
        listing = server.get_json("/v1/channels/app/prod/reports?limit=2", token=reader)
        validate(listing, "api_reports.schema.json")
        self.assertEqual([h["host"] for h in listing["hosts"]], ["web-3"])
        self.assertEqual(listing["hosts"][0]["by"], "ops")  # the last one posted
        self.assertEqual(len(listing["events"]), 2)
        # kept beside the store, not in its history
        self.assertNotIn("report", " ".join(self.subjects()))
        self.assertTrue(os.path.isfile(os.path.join(self.repo, "imgstore-reports", "app", "prod",
                                                    "hosts", "web-3.json")))

    def test_a_second_agent_on_the_directory_is_refused(self):
        self.version("1.0")
        self.rok("deploy", "app", "1.0", "--channel", "prod")
        self.start_agent(self.reporter)
        self.wait_for("1.0 running", self.running("1.0"))
        rc, out, err = run("agent", "--server", self.server.url, "--token", self.reporter,
                           "--image", "app", "--channel", "prod", "--dir", self.dir, "--once")
        self.assertEqual(rc, 1)
        self.assertOneLineError(err, "another agent runs on this directory")


if __name__ == "__main__":
    main()
