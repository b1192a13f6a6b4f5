#!/usr/bin/env python3
"""
contrib/systemd/imgstore.service and contrib/linuxkit/imgstore.yml start a working server
(issue #12): their command lines are taken from the files as written, the system paths
(/usr/bin/imgstore, /etc/imgstore, /var/lib/imgstore, /var/cache/imgstore, the credential)
are swapped for temporary ones, and the server must answer /healthz and stop cleanly on the
unit's KillSignal. The unit's hardening is checked line by line, and by `systemd-analyze
verify` where it exists.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
import urllib.request

from imgstore_testlib import BIN, SOURCE_DIR, StoreTestCase, base_env, main

CONTRIB = os.path.join(SOURCE_DIR, "contrib")


def parse_unit(path):
    """{section: {key: [values]}} of a systemd unit file."""
    sections, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = sections.setdefault(line.strip("[]"), {})
                continue
            key, _, value = line.partition("=")
            section.setdefault(key.strip(), []).append(value.strip())
    return sections


class ServiceUnits(StoreTestCase):

    def setUp(self):
        super().setUp()
        self.paths = {}
        for system, name in (("/etc/imgstore", "etc"), ("/var/lib/imgstore", "state"),
                             ("/var/cache/imgstore", "cache")):
            self.paths[system] = self.path(name)
            os.makedirs(self.paths[system], mode=0o700)
        key = os.path.join(base_env()["XDG_CONFIG_HOME"], "imgstore", "key")
        shutil.copy(key, os.path.join(self.paths["/etc/imgstore"], "server.key"))

    def local(self, text):
        """`text` with the system paths replaced by this test's."""
        for system, local in self.paths.items():
            text = text.replace(system, local)
        return text.replace("/usr/bin/imgstore", BIN)

    def install_config(self, source, listen_key="listen"):
        with open(source) as f:
            conf = self.local(f.read())
        conf = re.sub(r"(?m)^%s = .*$" % listen_key, "listen = 127.0.0.1:0", conf)
        with open(os.path.join(self.paths["/etc/imgstore"], "serve.conf"), "w") as f:
            f.write(conf)
        return conf

    def serve(self, argv, env):
        """Run argv, wait for its "listening on" line, check /healthz, stop it with SIGTERM."""
        full_env = base_env()
        full_env.update(env)
        log = open(self.path("serve.log"), "wb")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, env=full_env)
        try:
            line = proc.stdout.readline().decode()
            self.assertIn("listening on ", line, open(self.path("serve.log")).read())
            address = line.split("listening on ", 1)[1].split(",")[0].strip()
            with urllib.request.urlopen("http://%s/healthz" % address, timeout=30) as answer:
                self.assertEqual(answer.status, 200)
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=60), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            log.close()
        log_text = open(self.path("serve.log")).read()
        self.assertNotIn("no signing key", log_text)  # the key was handed over
        return log_text

    def test_the_systemd_unit_is_hardened_and_its_exec_start_serves(self):
        unit_path = os.path.join(CONTRIB, "systemd", "imgstore.service")
        unit = parse_unit(unit_path)
        service = unit["Service"]
        for key, value in (("DynamicUser", "yes"), ("ProtectSystem", "strict"),
                           ("NoNewPrivileges", "yes"), ("SystemCallFilter", "@system-service"),
                           ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                           ("StateDirectory", "imgstore"), ("CacheDirectory", "imgstore"),
                           ("CapabilityBoundingSet", ""), ("KillSignal", "SIGTERM")):
            self.assertIn(value, service.get(key, []), key)
        writable = service["ReadWritePaths"][0].split()
        self.assertEqual(sorted(writable), ["/var/cache/imgstore", "/var/lib/imgstore"])
        # the store and the cache the shipped config names are writable, nothing else
        conf = self.install_config(os.path.join(CONTRIB, "systemd", "serve.conf"))
        for key in ("repo", "cache_dir"):
            value = re.search(r"(?m)^%s = (.*)$" % key, conf).group(1)
            self.assertTrue(any(value.startswith(self.local(w) + "/") for w in writable), key)
        # the credential the unit loads is what --key reads
        name, _, source = service["LoadCredential"][0].partition(":")
        credentials = self.path("credentials")
        os.makedirs(credentials, mode=0o700)
        shutil.copy(self.local(source), os.path.join(credentials, name))
        exec_start = self.local(service["ExecStart"][0]).replace("${CREDENTIALS_DIRECTORY}",
                                                                 credentials)
        argv = shlex.split(exec_start)
        self.assertEqual(argv[:2], [BIN, "serve"])
        env = dict(v.split("=", 1) for v in service.get("Environment", []))
        env["CREDENTIALS_DIRECTORY"] = credentials
        self.serve(argv, env)
        self.assertTrue(os.path.isdir(os.path.join(self.paths["/var/lib/imgstore"],
                                                   "store.git")))
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze not installed: the unit was not verified by systemd")
        local_unit = self.path("imgstore.service")
        with open(unit_path) as f, open(local_unit, "w") as out:
            out.write(f.read().replace("/usr/bin/imgstore", BIN))
        p = subprocess.run(["systemd-analyze", "verify", "--man=no", local_unit],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual((p.returncode, p.stderr), (0, ""), p.stdout)
        # systemd's own score of the sandbox: 0 (locked down) .. 10 (exposed)
        p = subprocess.run(["systemd-analyze", "security", "--offline=true", local_unit],
                           capture_output=True, text=True, timeout=120)
        score = re.search(r"Overall exposure level for .*: ([0-9.]+)", p.stdout)
        if score:  # systemd 252 and later score units offline
            self.assertLessEqual(float(score.group(1)), 1.5, p.stdout)

    def test_the_linuxkit_service_command_serves(self):
        try:
            import yaml
        except ImportError:
            self.skipTest("python3-yaml not installed (scripts/install-deps installs it)")
        with open(os.path.join(CONTRIB, "linuxkit", "imgstore.yml")) as f:
            machine = yaml.safe_load(f)
        service = [s for s in machine["services"] if s["name"] == "imgstore"][0]
        files = {f["path"]: f for f in machine["files"]}
        conf_source = self.path("linuxkit-serve.conf")
        with open(conf_source, "w") as f:
            f.write(files["etc/imgstore/serve.conf"]["contents"])
        self.install_config(conf_source)
        self.assertIn("etc/imgstore/server.key", files)
        for bind in service["binds"]:
            host = bind.split(":")[0]
            self.assertIn(host, ("/var/lib/imgstore", "/etc/imgstore"), bind)
        self.assertTrue(service["readonly"])
        argv = [self.local(a) for a in service["command"]]
        env = dict(v.split("=", 1) for v in service.get("env", []))
        self.serve(argv, env)


if __name__ == "__main__":
    main()
