"""
A real boot of what the agent pulled (issue #11): the kernel + initrd + cmdline set of
../shared/fixtures/real pushed as app 1.0, followed by `imgstore agent` whose restart hook
boots the version's IMGSTORE_KERNEL, IMGSTORE_INITRD and IMGSTORE_CMDLINE with
qemu-system-x86_64 (TCG; KVM too when /dev/kvm works) and whose health check waits for the
fixture's /init line `initramfs up: <kernel release>` on the serial console.

Version 2.0 is made here, without downloads: the same kernel, and the fixture's initrd with a
small newc cpio archive appended (the kernel unpacks concatenated archives, the later /init
replacing the earlier), whose /init says the service did not come up and never prints the
line. The agent boots it, the health check times out, the agent goes back by itself, and the
next boot prints the 1.0 line again. Skips when qemu or the fixtures are absent.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

from imgstore_testlib import (BIN, FIXTURES, HAVE_FIXTURES, ServerTestCase, base_env, main,
                              new_token, run)

import unittest

QEMU = shutil.which("qemu-system-x86_64")
KERNEL = "vmlinuz-6.1.0-56-cloud-amd64"
RELEASE = "6.1.0-56-cloud-amd64"
BOOT_TIMEOUT = 45  # a TCG boot of the fixture to its /init line takes ~10-15 s here

RESTART = r"""#!/bin/sh
# stop the VM of the version before, boot this one; the VM outlives this hook (setsid)
if [ -f "$LOG/qemu.pid" ]; then
    kill "$(cat "$LOG/qemu.pid")" 2>/dev/null
    rm -f "$LOG/qemu.pid"
fi
n=$(ls "$LOG" | grep -c '^serial-[0-9]')
log="$LOG/serial-$n-$IMGSTORE_VERSION.log"
: > "$log"
ln -sfn "$log" "$LOG/serial-current.log"
accel="-accel tcg"
if [ -w /dev/kvm ]; then accel="-accel kvm -accel tcg"; fi
setsid timeout -s KILL 300 qemu-system-x86_64 $accel -m 256 -nographic -no-reboot -nic none \
    -monitor none -serial "file:$log" -kernel "$IMGSTORE_KERNEL" -initrd "$IMGSTORE_INITRD" \
    -append "$IMGSTORE_CMDLINE" -pidfile "$LOG/qemu-vm.pid" </dev/null >"$LOG/qemu-$n.out" 2>&1 &
echo $! > "$LOG/qemu.pid"
echo "$(date +%s.%N) $IMGSTORE_VERSION $IMGSTORE_AGENT_EVENT" >> "$LOG/restarts"
"""

HEALTH = r"""#!/bin/sh
grep -aq "initramfs up: " "$LOG/serial-current.log" && exit 0
echo "$(date +%s.%N) $IMGSTORE_VERSION" >> "$LOG/health-failed"
exit 1
"""

BAD_INIT = b"""#!/bin/sh
/bin/busybox mount -t proc proc /proc
echo "boot test 2.0: the service did not come up on $(/bin/busybox uname -r)"
exec /bin/sh
"""


def newc(entries):
    """A newc cpio archive of [(name, mode, data)], with its trailer."""
    out = b""
    for ino, (name, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")], 1):
        namez = name.encode() + b"\0"
        header = "070701" + "".join("%08X" % v for v in (
            ino, mode, 0, 0, 1, 1700000000, len(data), 0, 0, 0, 0, len(namez), 0))
        out += header.encode() + namez
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return out


@unittest.skipUnless(QEMU, "qemu-system-x86_64 is absent (Debian: qemu-system-x86; "
                           "scripts/install-deps installs it)")
@unittest.skipUnless(HAVE_FIXTURES, "../shared/fixtures/real is absent")
class Boot(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.admin, admin_line = new_token("admin", "ops")
        self.agent_token, agent_line = new_token("read,deploy", "agent")
        self.server = self.serve(admin_line, agent_line, "cache_max_bytes = 0")
        self.log = self.path("log")
        os.makedirs(self.log)
        self.hooks = {}
        for name, text in (("restart", RESTART), ("health", HEALTH)):
            p = self.path(name + ".sh")
            with open(p, "w") as f:
                f.write(text)
            os.chmod(p, 0o755)
            self.hooks[name] = p
        self.addCleanup(self.stop_vm)

    def stop_vm(self):
        # `timeout` passes SIGTERM on to qemu; qemu's own pid file is the backstop
        for name, sig in (("qemu.pid", signal.SIGTERM), ("qemu-vm.pid", signal.SIGKILL)):
            try:
                with open(os.path.join(self.log, name)) as f:
                    os.kill(int(f.read()), sig)
            except (OSError, ValueError):
                pass

    def rok(self, *args):
        rc, out, err = run(*(list(args) + ["--server", self.server.url, "--token", self.admin]))
        self.assertEqual(rc, 0, "imgstore %s: %s%s" % (" ".join(args), out, err))
        return out

    def status(self):
        rc, out, _ = run("agent", "status", "--dir", self.path("agent"), "--json")
        return json.loads(out) if rc == 0 else {}

    def serial(self):
        with open(os.path.join(self.log, "serial-current.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for(self, what, pred, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred():
                return time.time()
            if self.agent.poll() is not None:
                break
            time.sleep(0.2)
        with open(self.path("agent.log"), "rb") as f:
            log = f.read().decode("utf-8", "replace")
        self.fail("no %s within %ss; agent status %s\nagent log:\n%s"
                  % (what, timeout, self.status(), log))

    def test_boots_what_the_agent_pulled_and_goes_back_from_a_bad_version(self):
        fixtures = [os.path.join(FIXTURES, n) for n in
                    (KERNEL, "initrd-busybox.cpio.gz", "cmdline.txt")]
        self.rok("push", "--name", "vm", "--version", "1.0", *fixtures)
        bad = self.path("v2")
        os.makedirs(bad)
        shutil.copy(fixtures[0], bad)
        shutil.copy(fixtures[2], bad)
        with open(fixtures[1], "rb") as f:
            initrd = f.read()
        initrd += b"\0" * (-len(initrd) % 4) + newc([("init", 0o100755, BAD_INIT)])
        with open(os.path.join(bad, "initrd-busybox.cpio.gz"), "wb") as f:
            f.write(initrd)
        self.rok("push", "--name", "vm", "--version", "2.0",
                 *[os.path.join(bad, n) for n in (KERNEL, "initrd-busybox.cpio.gz",
                                                   "cmdline.txt")])
        self.rok("deploy", "vm", "1.0", "--channel", "prod")

        env = base_env()
        env["LOG"] = self.log
        with open(self.path("agent.log"), "wb") as log:
            self.agent = subprocess.Popen(
                [BIN, "agent", "--server", self.server.url, "--token", self.agent_token,
                 "--image", "vm", "--channel", "prod", "--dir", self.path("agent"), "--host",
                 "qemu-host", "--exec-restart", self.hooks["restart"], "--health",
                 self.hooks["health"], "--health-timeout", "%ds" % BOOT_TIMEOUT],
                env=env, stdout=log, stderr=log)
        self.addCleanup(lambda: self.agent.poll() is None and self.agent.kill())

        # 1.0 boots: the fixture's /init prints the kernel release
        self.wait_for("1.0 healthy", lambda: self.status().get("phase") == "running"
                      and self.status().get("current") == "1.0", BOOT_TIMEOUT + 30)
        self.assertIn("initramfs up: %s" % RELEASE, self.serial())

        # 2.0 boots its own /init, never comes up; the agent goes back to 1.0 by itself
        deployed = time.time()
        self.rok("deploy", "vm", "2.0", "--channel", "prod")
        self.wait_for("the 2.0 boot", lambda: "boot test 2.0" in self.serial(), BOOT_TIMEOUT)
        self.assertIn("did not come up on %s" % RELEASE, self.serial())
        # ... and told the channel: "pending" goes false when channel_rolled_back is written,
        # after the rollback and the report were posted (reading before that raced, #12)
        def back_and_told(st):
            failed = st.get("failed") or {}
            return (failed.get("version") == "2.0" and st.get("phase") == "running"
                    and failed.get("pending") is False)

        self.wait_for("the way back to 1.0", lambda: back_and_told(self.status()),
                      2 * BOOT_TIMEOUT + 60)
        st = self.status()
        back_up = self.wait_for("the 1.0 line again", lambda: "initramfs up: " in self.serial(),
                                BOOT_TIMEOUT)
        with open(os.path.join(self.log, "restarts")) as f:
            times = [float(l.split()[0]) for l in f]
        with open(os.path.join(self.log, "health-failed")) as f:
            failed = [float(l.split()[0]) for l in f if l.split()[1:] == ["2.0"]][-1]
        print("\nbench: deploy -> 2.0 swapped in, its VM started: %.2f s; last failed health "
              "check -> 1.0 VM started: %.2f s, its /init line on the console: %.2f s"
              % (times[1] - deployed, times[2] - failed, back_up - failed))
        self.assertEqual(st["current"], "1.0")
        self.assertTrue(st["failed"]["channel_rolled_back"])
        serial = self.serial()
        self.assertIn("initramfs up: %s" % RELEASE, serial)
        self.assertNotIn("boot test 2.0", serial)
        with open(os.path.join(self.log, "restarts")) as f:
            self.assertEqual([l.split()[1:] for l in f],
                             [["1.0", "deploy"], ["2.0", "deploy"], ["1.0", "rollback"]])
        rc, out, err = run("history", "vm", "--channel", "prod", "--json", "--server",
                           self.server.url, "--token", self.admin)
        newest = json.loads(out)["entries"][0]
        self.assertEqual((newest["action"], newest["version"], newest["state"]["reason"]),
                         ("rollback", "1.0", "agent qemu-host: health check failed on 2.0"))


if __name__ == "__main__":
    main()
