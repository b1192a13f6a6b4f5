#!/usr/bin/env python3
"""
Slow uploads against imgstore serve (issue #10.3): N uploads each trickling 100 bytes a second
for SECONDS, then closed; prints the server's RSS and thread count before, during and after.

    bench/slow_uploads.py [N [SECONDS]]     (default 128 10; needs build/imgstore)

The server runs with its defaults (max_uploads = 16, upload_min_rate = 1024 B/s after 60 s),
so past max_uploads the uploads are answered 503 at once; the figures show what the rest cost.
"""
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("IMGSTORE_BIN", os.path.join(os.path.dirname(__file__), "..", "build",
                                                    "imgstore"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 128
SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 10

work = tempfile.mkdtemp(prefix="imgstore-slow-")
env = dict(os.environ, HOME=work, XDG_CONFIG_HOME=work + "/c", XDG_STATE_HOME=work + "/s")
env.pop("IMGSTORE_REPO", None)
env.pop("IMGSTORE_SERVER", None)
repo = work + "/s.git"
subprocess.run([BIN, "init", "--repo", repo], env=env, capture_output=True, check=True)
token = "imgstore_" + os.urandom(16).hex()
with open(work + "/serve.conf", "w") as f:
    f.write("token = %s scopes=read,push name=bench\n" % hashlib.sha256(token.encode()).hexdigest())
server = subprocess.Popen([BIN, "serve", "--repo", repo, "--listen", "127.0.0.1:0", "--config",
                           work + "/serve.conf"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
line = ""
while "listening on " not in line:  # "imgstore serve: listening on HOST:PORT, store ..."
    line = server.stdout.readline().decode()
    if not line:
        sys.exit("imgstore serve did not start")
host, port = line.split("listening on ")[1].split(",")[0].rsplit(":", 1)


def status():
    fields = dict(l.split(":", 1) for l in open("/proc/%d/status" % server.pid).read().splitlines())
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["Threads"])


try:
    print("baseline: %d MB RSS, %d threads" % status())
    head = (b"POST /v1/images/slow%d/1.0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
            token.encode() + b"\r\nContent-Type: multipart/form-data; boundary=B\r\n"
            b"Content-Length: 100000000\r\n\r\n--B\r\nContent-Disposition: form-data; "
            b"name=\"f\"; filename=\"app.img\"\r\n\r\n")
    socks = []
    for i in range(N):
        s = socket.create_connection((host, int(port)))
        s.sendall(head.replace(b"%d", str(i).encode()))
        socks.append(s)
    peak_rss = peak_threads = 0
    for _ in range(SECONDS):
        for s in socks:
            try:
                s.sendall(os.urandom(100))
            except OSError:
                pass
        time.sleep(1)
        rss, threads = status()
        peak_rss, peak_threads = max(peak_rss, rss), max(peak_threads, threads)
    print("%d slow uploads, %d s: peak %d MB RSS, %d threads" % (N, SECONDS, peak_rss,
                                                                peak_threads))
    for s in socks:
        s.close()
    time.sleep(3)
    print("3 s after they closed: %d MB RSS, %d threads" % status())
finally:
    server.terminate()
    server.wait()
    shutil.rmtree(work, True)
