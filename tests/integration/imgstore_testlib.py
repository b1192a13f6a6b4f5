"""
Shared helpers for imgstore's integration tests (Python 3 standard library only).

The tests drive the real `imgstore` binary and stock `git` against temporary stores.

Environment (set by ctest, see tests/CMakeLists.txt):
  IMGSTORE_BIN         the imgstore binary (default: $IMGSTORE_SOURCE_DIR/build/imgstore)
  IMGSTORE_FIXTURES    real boot images (default: /work/shared/fixtures/real); tests that
                       need them skip when the directory is absent
  IMGSTORE_SOURCE_DIR  the source tree (default: two levels above this file)
  IMGSTORE_TEST_TMP    where temporary stores go (default: the system temp dir)
  IMGSTORE_TEST_SEED   seed for the randomised tests (default: random, printed)
"""

import atexit
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("IMGSTORE_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.environ.get("IMGSTORE_FIXTURES") or "/work/shared/fixtures/real"
HAVE_FIXTURES = os.path.isfile(os.path.join(FIXTURES, "SHA256SUMS"))
needs_fixtures = unittest.skipUnless(
    HAVE_FIXTURES, "real fixtures not found at %s (set IMGSTORE_FIXTURES)" % FIXTURES)

# Generous: ASan builds are ~3x slower, and a hang must fail the test, not the suite.
DEFAULT_TIMEOUT = float(os.environ.get("IMGSTORE_TEST_TIMEOUT", "180"))

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_VERIFY = 0, 1, 2, 3

MiB = 1024 * 1024


def _find_bin():
    env = os.environ.get("IMGSTORE_BIN")
    if env:
        return env
    for cand in (os.path.join(SOURCE_DIR, "build", "imgstore"), "/tmp/build-it/imgstore"):
        if os.access(cand, os.X_OK):
            return cand
    return os.path.join(SOURCE_DIR, "build", "imgstore")


BIN = _find_bin()

_SEED = int(os.environ.get("IMGSTORE_TEST_SEED") or random.SystemRandom().randrange(1 << 32))


def rng(salt=""):
    """A seeded random.Random, reproducible with IMGSTORE_TEST_SEED."""
    return random.Random("%d:%s" % (_SEED, salt))


def seed():
    return _SEED


def base_env():
    """The environment for imgstore and git: no ambient store, no user git config."""
    env = dict(os.environ)
    for k in ("IMGSTORE_REPO", "IMGSTORE_ACTOR", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(k, None)
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "imgstore tests"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "tests@imgstore.invalid"
    env["LC_ALL"] = "C"
    # one signing key and one memory of channel sequences per test process, never the user's
    env["XDG_CONFIG_HOME"] = os.path.join(_private_home(), "config")
    env["XDG_STATE_HOME"] = os.path.join(_private_home(), "state")
    for k in ("IMGSTORE_KEY", "IMGSTORE_KEY_PASSPHRASE", "SSH_AUTH_SOCK"):
        env.pop(k, None)
    return env


_HOME = []


def _private_home():
    if not _HOME:
        _HOME.append(tempfile.mkdtemp(prefix="imgstore-home-",
                                      dir=os.environ.get("IMGSTORE_TEST_TMP")))
        atexit.register(shutil.rmtree, _HOME[0], True)
    return _HOME[0]


def _run(argv, stdin=None, binary=False, env=None, timeout=None, cwd=None):
    full_env = base_env()
    if env:
        full_env.update(env)
    try:
        p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=full_env, cwd=cwd, timeout=timeout or DEFAULT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError("timed out after %ss (hang?): %s" % (timeout or DEFAULT_TIMEOUT,
                                                                   " ".join(argv)))
    out = p.stdout if binary else p.stdout.decode("utf-8", "replace")
    return p.returncode, out, p.stderr.decode("utf-8", "replace")


def run(*args, repo=None, stdin=None, binary=False, env=None, timeout=None, cwd=None):
    """Run `imgstore ARGS...` (with --repo REPO after the command when repo is given).
    Returns (rc, stdout, stderr); stdout is bytes when binary=True."""
    args = [str(a) for a in args]
    if repo is not None:
        args = args[:1] + ["--repo", str(repo)] + args[1:]
    return _run([BIN] + args, stdin=stdin, binary=binary, env=env, timeout=timeout, cwd=cwd)


def git(*args, git_dir=None, stdin=None, binary=False, env=None, timeout=None, cwd=None):
    """Run stock git. Returns (rc, stdout, stderr)."""
    argv = ["git"]
    if git_dir is not None:
        argv += ["--git-dir=%s" % git_dir]
    argv += [str(a) for a in args]
    if isinstance(stdin, str):
        stdin = stdin.encode()
    return _run(argv, stdin=stdin, binary=binary, env=env, timeout=timeout, cwd=cwd)


def git_ok(*args, **kw):
    """Run stock git, assert exit 0, return stdout."""
    rc, out, err = git(*args, **kw)
    if rc != 0:
        raise AssertionError("git %s failed (%d): %s" % (" ".join(map(str, args)), rc, err))
    return out


def assert_fsck_clean(repo):
    """Stock `git fsck --strict` and `imgstore fsck` both pass on REPO."""
    rc, out, err = git("fsck", "--strict", "--no-progress", git_dir=repo)
    if rc != 0:
        raise AssertionError("git fsck --strict %s exited %d:\n%s%s" % (repo, rc, out, err))
    for line in (out + err).splitlines():
        # dangling (unreferenced) objects are harmless residue; anything else is not
        if line.strip() and not line.startswith(("dangling ", "Checking", "notice:")):
            raise AssertionError("git fsck --strict %s reported: %s" % (repo, line))
    rc, out, err = run("fsck", repo=repo)
    if rc != 0:
        raise AssertionError("imgstore fsck --repo %s exited %d:\n%s%s" % (repo, rc, out, err))
    rc, out, err = run("fsck", "--json", repo=repo)
    if rc != 0 or json.loads(out).get("ok") is not True or json.loads(out).get("problems"):
        raise AssertionError("imgstore fsck --json %s: %d %s %s" % (repo, rc, out, err))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def fixture_sums():
    """{file name: sha256} from FIXTURES/SHA256SUMS."""
    sums = {}
    with open(os.path.join(FIXTURES, "SHA256SUMS")) as f:
        for line in f:
            if line.strip():
                digest, name = line.split(None, 1)
                sums[name.strip().lstrip("*")] = digest
    return sums


def fixture(name):
    return os.path.join(FIXTURES, name)


def write_random(path, size, r=None):
    """Write `size` random bytes to path; return their sha256."""
    data = os.urandom(size) if r is None else r.randbytes(size)
    with open(path, "wb") as f:
        f.write(data)
    return sha256(data)


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t)))


def loose_object_path(repo, oid):
    return os.path.join(repo, "objects", oid[:2], oid[2:])


def main():
    """unittest.main(), but exit 77 (ctest's skip code) when every test was skipped."""
    sys.stderr.write("imgstore tests: binary %s, fixtures %s, seed %d\n"
                     % (BIN, FIXTURES if HAVE_FIXTURES else "(absent)", _SEED))
    prog = unittest.main(exit=False, verbosity=2)
    res = prog.result
    if not res.wasSuccessful():
        sys.exit(1)
    if res.testsRun and len(res.skipped) == res.testsRun:
        sys.exit(77)
    sys.exit(0)


class StoreTestCase(unittest.TestCase):
    """Each test gets a fresh temporary directory (self.tmp) and an initialised store
    (self.repo). Helpers run imgstore against it."""

    maxDiff = 4000

    def setUp(self):
        if not os.access(BIN, os.X_OK):
            self.fail("imgstore binary not found at %s (set IMGSTORE_BIN)" % BIN)
        self.tmp = tempfile.mkdtemp(prefix="imgstore-it-", dir=os.environ.get("IMGSTORE_TEST_TMP"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.repo = os.path.join(self.tmp, "store.git")
        rc, out, err = run("init", repo=self.repo)
        self.assertEqual(rc, 0, "imgstore init: %s" % err)

    # -- running ------------------------------------------------------------------------

    def im(self, *args, **kw):
        """imgstore against self.repo: (rc, stdout, stderr)."""
        kw.setdefault("repo", self.repo)
        return run(*args, **kw)

    def ok(self, *args, **kw):
        """imgstore against self.repo, asserting exit 0; returns stdout."""
        rc, out, err = self.im(*args, **kw)
        self.assertEqual(rc, 0, "imgstore %s -> %d\nstdout: %s\nstderr: %s"
                         % (" ".join(map(str, args)), rc, out[:2000], err))
        return out

    def okjson(self, *args, **kw):
        out = self.ok(*(args + ("--json",)), **kw)
        try:
            return json.loads(out)
        except ValueError as e:
            self.fail("imgstore %s --json printed invalid JSON (%s): %r" % (" ".join(args), e, out[:500]))

    def git(self, *args, **kw):
        kw.setdefault("git_dir", self.repo)
        return git_ok(*args, **kw)

    def tip(self):
        return self.git("rev-parse", "refs/heads/main").strip()

    def subjects(self):
        """Commit subjects on main, newest first."""
        return self.git("log", "--format=%s", "main").splitlines()

    def assertOneLineError(self, err, *needles):
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, "expected one line on stderr, got: %r" % err)
        for n in needles:
            self.assertIn(n, lines[0])
        return lines[0]

    def assertFsckClean(self, repo=None):
        assert_fsck_clean(repo or self.repo)

    # -- files ---------------------------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def random_file(self, name, size, r=None):
        """Create tmp/NAME (NAME may contain a directory) with random bytes; return (path, sha)."""
        p = self.path(name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p, write_random(p, size, r)

    def push(self, *args):
        """push, assert exit 0, return the NAME@VERSION printed."""
        out = self.ok("push", *args).strip()
        self.assertRegex(out, r"^[a-z0-9][a-z0-9._-]*@[A-Za-z0-9][A-Za-z0-9._+-]*$")
        return out


# -- where a version lives in a store's tree (docs/format.md, "Tree layout") -----------------

def version_shard(version):
    """The shard of VERSION in an imgstore/2 store: the first byte of its SHA-256 in two
    lowercase hex digits, as `printf %s VERSION | sha256sum | cut -c1-2` gives it."""
    return hashlib.sha256(version.encode()).hexdigest()[:2]


def version_path(name, version, *rest, flat=False):
    """images/NAME/<xx>/VERSION[/REST...] (imgstore/2, every store the tests create), or
    images/NAME/VERSION[/REST...] for an imgstore/1 store (flat=True)."""
    shard = [] if flat else [version_shard(version)]
    return "/".join(["images", name] + shard + [version] + list(rest))


# -- rewriting a store with stock git (for tamper tests) -----------------------------------

def ls_tree(repo, treeish):
    """[(mode, type, oid, name)] of a tree."""
    out = git_ok("ls-tree", "-z", treeish, git_dir=repo)
    entries = []
    for rec in out.split("\0"):
        if rec:
            meta, name = rec.split("\t", 1)
            mode, typ, oid = meta.split()
            entries.append((mode, typ, oid, name))
    return entries


def tree_with(repo, tree, path, mode, typ, oid):
    """A new tree: TREE with PATH (a/b/c) set to (mode, type, oid), built with git mktree."""
    head, _, rest = path.partition("/")
    entries = [e for e in ls_tree(repo, tree) if e[3] != head]
    if rest:
        sub = [e for e in ls_tree(repo, tree) if e[3] == head]
        if not sub:
            raise AssertionError("%s has no %s" % (tree, head))
        entries.append(("040000", "tree", tree_with(repo, sub[0][2], rest, mode, typ, oid), head))
    else:
        entries.append((mode, typ, oid, head))
    text = "".join("%s %s %s\t%s\0" % e for e in entries)
    return git_ok("mktree", "-z", git_dir=repo, stdin=text).strip()


def rewrite_main(repo, path, mode, typ, oid, message="tamper"):
    """Commit on refs/heads/main a tree where PATH is (mode, type, oid). Returns the old tip."""
    old = git_ok("rev-parse", "refs/heads/main", git_dir=repo).strip()
    root = git_ok("rev-parse", "refs/heads/main^{tree}", git_dir=repo).strip()
    new_root = tree_with(repo, root, path, mode, typ, oid)
    commit = git_ok("commit-tree", new_root, "-p", old, "-m", message, git_dir=repo).strip()
    git_ok("update-ref", "refs/heads/main", commit, old, git_dir=repo)
    return old


def recv_all(sock):
    """Every byte a peer sends on SOCK until it closes the connection."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def hash_object(repo, data):
    """Write DATA (bytes) as a blob with stock git; return its id."""
    return git_ok("hash-object", "-w", "--stdin", git_dir=repo, stdin=data).strip()


# -- the HTTP server (imgstore serve) --------------------------------------------------------

import http.client
import select
import signal
import urllib.parse


def new_token(scopes, name="t"):
    """(token, config line) for a fresh random bearer token with SCOPES ("read,push")."""
    token = "imgstore_" + os.urandom(32).hex()
    return token, "token = %s scopes=%s name=%s" % (sha256(token.encode()), scopes, name)


class Server:
    """A real `imgstore serve` on 127.0.0.1 (port chosen by the kernel), with its own config
    file and log. Always stopped by the test (use as a context manager or call kill())."""

    def __init__(self, repo, workdir, config_lines=(), args=(), env=None):
        self.repo, self.workdir = repo, workdir
        self.config = os.path.join(workdir, "server-%d.conf" % id(self))
        self.log_path = os.path.join(workdir, "server-%d.log" % id(self))
        with open(self.config, "w") as f:
            f.write("# written by the integration tests\n")
            for line in config_lines:
                f.write(line + "\n")
        full_env = base_env()
        full_env.update(env or {})
        self._log = open(self.log_path, "wb")
        argv = [BIN, "serve", "--repo", repo, "--listen", "127.0.0.1:0", "--config", self.config]
        self.proc = subprocess.Popen(argv + list(args), stdout=subprocess.PIPE,
                                     stderr=self._log, env=full_env)
        line = self._readline(60)
        if "listening on " not in line:
            self.kill()
            raise AssertionError("imgstore serve did not start: %r\n%s" % (line, self.log()))
        self.address = line.split("listening on ", 1)[1].split(",")[0].strip()
        self.host, port = self.address.rsplit(":", 1)
        self.port = int(port)
        self.url = "http://" + self.address

    def _readline(self, timeout):
        deadline = time.time() + timeout
        buf = b""
        while not buf.endswith(b"\n") and time.time() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.time()))
            if not r:
                break
            b = os.read(self.proc.stdout.fileno(), 1)
            if not b:
                break
            buf += b
        return buf.decode("utf-8", "replace")

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Signal the server and wait for it; returns its exit code (kills it on timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("imgstore serve did not stop within %ss" % timeout)
        finally:
            self._log.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc.stdout.close()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()

    def request(self, method, path, body=None, headers=None, token=None, timeout=60):
        """One request on a fresh connection: (status, {lower-case header: value}, bytes)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            hdrs = dict(headers or {})
            if token:
                hdrs["Authorization"] = "Bearer " + token
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def get_json(self, path, token=None, expect=200, **kw):
        status, headers, data = self.request("GET", path, token=token, **kw)
        if status != expect:
            raise AssertionError("GET %s -> %d (expected %d): %r" % (path, status, expect,
                                                                     data[:500]))
        return json.loads(data)

    def metrics(self, token=None):
        """{'name{labels}': value} from /metrics."""
        status, _, data = self.request("GET", "/metrics", token=token)
        if status != 200:
            raise AssertionError("GET /metrics -> %d: %r" % (status, data[:300]))
        values = {}
        for line in data.decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values


def curl(*args, timeout=120):
    """Run stock curl (-sS, never following redirects): (rc, stdout bytes, stderr)."""
    return _run(["curl", "-sS"] + [str(a) for a in args], binary=True, timeout=timeout)


def multipart(files, fields=()):
    """A multipart/form-data body: files [(filename, bytes)], fields [(name, value)].
    Returns (content type, body bytes)."""
    boundary = "imgstore-test-" + os.urandom(8).hex()
    out = []
    for name, value in fields:
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                    % (boundary, name, value)).encode())
    for filename, data in files:
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
                    "Content-Type: application/octet-stream\r\n\r\n" % (boundary, filename))
                   .encode() + data + b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode())
    return "multipart/form-data; boundary=" + boundary, b"".join(out)


class ServerTestCase(StoreTestCase):
    """StoreTestCase plus self.serve(): a server on self.repo, killed at the end of the test."""

    def serve(self, *config_lines, args=(), env=None):
        server = Server(self.repo, self.tmp, config_lines, args, env)
        self.addCleanup(server.kill)
        return server

    def assertJsonError(self, status, data, expect_status, code=None):
        self.assertEqual(status, expect_status, data[:500])
        body = json.loads(data)
        validate(body, "api_error.schema.json")
        self.assertEqual(set(body), {"error"}, body)
        self.assertIsInstance(body["error"].get("message"), str)
        if code:
            self.assertEqual(body["error"].get("code"), code, body)
        return body["error"]


# -- JSON Schema (the subset schema/*.schema.json use), standard library only ---------------

import re as _re

SCHEMA_DIR = os.path.join(SOURCE_DIR, "schema")
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _load_schema(name):
    with open(os.path.join(SCHEMA_DIR, name)) as f:
        return json.load(f)


def validate(value, schema_name, schema=None, root=None, where="$"):
    """Raise AssertionError naming the JSON path where VALUE breaks schema/SCHEMA_NAME.
    Supports $ref (local and to sibling files), allOf, type, enum, const, properties,
    required, additionalProperties, propertyNames, items, pattern, lengths and bounds."""
    if schema is None:
        schema = root = _load_schema(schema_name)

    def fail(msg):
        raise AssertionError("%s: %s: %s (value %r)" % (schema_name, where, msg,
                                                         str(value)[:200]))

    if "$ref" in schema:
        ref = schema["$ref"]
        path, _, frag = ref.partition("#")
        target_root = _load_schema(path) if path else root
        target = target_root
        for part in [p for p in frag.split("/") if p]:
            target = target[part]
        validate(value, path or schema_name, target, target_root, where)
    for sub in schema.get("allOf", []):
        validate(value, schema_name, sub, root, where)
    t = schema.get("type")
    if isinstance(t, list):  # one of several types, e.g. ["integer", "null"]
        matches = [x for x in t if (x == "integer" and isinstance(value, int) and
                                    not isinstance(value, bool)) or
                   (x == "number" and isinstance(value, (int, float)) and
                    not isinstance(value, bool)) or
                   (x not in ("integer", "number") and isinstance(value, _TYPES[x]))]
        if not matches:
            fail("expected one of %s" % t)
        t = None
    if t == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            fail("expected an integer")
    elif t == "number":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            fail("expected a number")
    elif t is not None and not isinstance(value, _TYPES[t]):
        fail("expected %s" % t)
    if "enum" in schema and value not in schema["enum"]:
        fail("not one of %s" % schema["enum"])
    if "const" in schema and value != schema["const"]:
        fail("expected %r" % schema["const"])
    if isinstance(value, str):
        if "pattern" in schema and not _re.search(schema["pattern"], value):
            fail("does not match %s" % schema["pattern"])
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength",
                                                                                  1 << 62):
            fail("bad length")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < schema.get("minimum", -(1 << 64)) or value > schema.get("maximum", 1 << 64):
            fail("out of bounds")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 1 << 62):
            fail("bad number of items")
        for i, item in enumerate(value):
            if "items" in schema:
                validate(item, schema_name, schema["items"], root, "%s[%d]" % (where, i))
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                fail("missing required %s" % key)
        if len(value) < schema.get("minProperties", 0) or \
                len(value) > schema.get("maxProperties", 1 << 62):
            fail("bad number of members")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, member in value.items():
            if "propertyNames" in schema:
                validate(key, schema_name, schema["propertyNames"], root, where + " key")
            if key in props:
                validate(member, schema_name, props[key], root, "%s.%s" % (where, key))
            elif extra is False:
                fail("unexpected member %s" % key)
            elif isinstance(extra, dict):
                validate(member, schema_name, extra, root, "%s.%s" % (where, key))
