"""Helpers for the sluice integration tests: ports, YAML configs, a raw HTTP/1.1 client
with a tiny response parser, and the server process wrapper used by conftest.py.

Standard library only. Everything talks to 127.0.0.1 and every wait is bounded.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SLUICE_BIN = os.environ.get("SLUICE_BIN") or str(REPO / "build" / "dev" / "sluice")

# What a sanitizer writes when it finds something; any of these in the server's stderr
# fails the test that ran it.
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "runtime error:",
    "LeakSanitizer",
    "ERROR: ThreadSanitizer",
    "WARNING: ThreadSanitizer",
)

REQUEST_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def sanitizer_reports(text):
    """The lines of text that show a sanitizer report (empty list when clean)."""
    return [line for line in text.splitlines() if any(m in line for m in SANITIZER_MARKERS)]


# ---- ports -------------------------------------------------------------------------------


def free_ports(n):
    """n distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port():
    return free_ports(1)[0]


# ---- YAML --------------------------------------------------------------------------------

_PLAIN_RE = re.compile(r"^[A-Za-z0-9._-]+$")


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str) and _PLAIN_RE.match(v) and v not in ("true", "false", "null", "~"):
        return v  # durations and sizes as people write them: 500ms, 16KiB
    return json.dumps(v)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(d, indent=0):
    """A small dict/list/scalar -> YAML block writer (enough for sluice configs)."""
    out = []
    pad = "  " * indent
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(f"{pad}{k}:")
            out.append(to_yaml(v, indent + 1))
        elif isinstance(v, list):
            out.append(f"{pad}{k}: [" + ", ".join(_yaml_scalar(x) for x in v) + "]")
        else:
            out.append(f"{pad}{k}: {_yaml_scalar(v)}")
    return "\n".join(x for x in out if x != "")


def deep_merge(base, over):
    """base updated with over, recursively for dicts; a None value in over removes the key."""
    res = dict(base)
    for k, v in over.items():
        if v is None:
            res.pop(k, None)
        elif isinstance(v, dict) and isinstance(res.get(k), dict):
            res[k] = deep_merge(res[k], v)
        else:
            res[k] = v
    return res


# ---- HTTP responses ----------------------------------------------------------------------


class Response:
    def __init__(self, version, status, reason, headers, body, raw):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as sent
        self.body = body  # decoded (de-chunked) body bytes
        self.raw = raw  # the bytes of the whole response on the wire

    def header(self, name, default=None):
        """The value of the only header called name (case-insensitive); asserts it is not repeated."""
        vals = self.header_all(name)
        assert len(vals) <= 1, f"header {name} appears {len(vals)} times: {self.headers}"
        return vals[0] if vals else default

    def header_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def closes(self):
        conn = self.header("connection") or ""
        return "close" in [t.strip().lower() for t in conn.split(",")]

    def __repr__(self):
        return f"<Response {self.status} {self.headers!r} body={self.body[:200]!r}>"


class Incomplete(Exception):
    pass


class BadResponse(Exception):
    pass


def parse_response(buf, head_request=False, at_eof=False):
    """Parse one response from the start of buf.

    Returns (Response, consumed bytes). Raises Incomplete when more bytes are needed,
    BadResponse when the bytes are not an HTTP/1.x response. A 1xx response is returned
    like any other (no body). A response without Content-Length or chunked coding is
    delimited by the end of the connection (at_eof must be True to complete it).
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > 65536:
            raise BadResponse(f"no end of head in {buf[:200]!r}")
        raise Incomplete()
    head = buf[:end].decode("latin-1")
    lines = head.split("\r\n")
    m = re.match(r"^(HTTP/1\.[01]) (\d{3}) ?(.*)$", lines[0])
    if not m:
        raise BadResponse(f"bad status line {lines[0]!r}")
    version, status, reason = m.group(1), int(m.group(2)), m.group(3)
    headers = []
    for line in lines[1:]:
        if ":" not in line or line[0] in " \t":
            raise BadResponse(f"bad header line {line!r}")
        k, v = line.split(":", 1)
        if k != k.strip():
            raise BadResponse(f"bad header name {k!r}")
        headers.append((k, v.strip()))
    pos = end + 4

    def hdrs(name):
        return [v for k, v in headers if k.lower() == name]

    te = hdrs("transfer-encoding")
    cl = hdrs("content-length")
    if te and cl:
        raise BadResponse("response has both Transfer-Encoding and Content-Length")
    if len(cl) > 1:
        raise BadResponse("response has several Content-Length headers")
    body = b""
    if 100 <= status < 200 or status in (204, 304) or head_request:
        pass
    elif te:
        if [t.strip().lower() for t in te[-1].split(",")][-1] != "chunked":
            raise BadResponse(f"unknown response transfer coding {te}")
        chunks = []
        while True:
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                raise Incomplete()
            size_text = buf[pos:nl].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadResponse(f"bad chunk size {size_text!r}") from None
            pos = nl + 2
            if size == 0:
                # trailers, then an empty line
                while True:
                    nl = buf.find(b"\r\n", pos)
                    if nl < 0:
                        raise Incomplete()
                    line = buf[pos:nl]
                    pos = nl + 2
                    if line == b"":
                        break
                break
            if len(buf) < pos + size + 2:
                raise Incomplete()
            chunks.append(buf[pos : pos + size])
            if buf[pos + size : pos + size + 2] != b"\r\n":
                raise BadResponse("chunk data not followed by CRLF")
            pos += size + 2
        body = b"".join(chunks)
    elif cl:
        n = int(cl[0])
        if len(buf) < pos + n:
            raise Incomplete()
        body = buf[pos : pos + n]
        pos += n
    else:
        if not at_eof:
            raise Incomplete()
        body = buf[pos:]
        pos = len(buf)
    return Response(version, status, reason, headers, body, buf[:pos]), pos


def parse_responses(buf, at_eof=True, head_requests=()):
    """Every complete response in buf, in order, and the bytes left over.

    head_requests: indexes (counting final responses only) of responses that answer HEAD.
    """
    out = []
    finals = 0
    while buf:
        try:
            r, n = parse_response(buf, head_request=finals in head_requests, at_eof=at_eof)
        except Incomplete:
            break
        out.append(r)
        if r.status >= 200:
            finals += 1
        buf = buf[n:]
    return out, buf


ERROR_CODES = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    408: "RequestTimeout",
    413: "PayloadTooLarge",
    417: "ExpectationFailed",
    431: "RequestHeaderFieldsTooLarge",
    505: "HttpVersionNotSupported",
}


def assert_error(resp, status, close=True):
    """resp is a JSON error of this status; with close, it announces Connection: close."""
    assert resp.status == status, resp
    assert resp.version == "HTTP/1.1"
    assert resp.header("content-type") == "application/json", resp
    assert int(resp.header("content-length")) == len(resp.body)
    body = resp.json()
    assert list(body) == ["error"], body
    err = body["error"]
    assert err["code"] == ERROR_CODES[status], body
    assert isinstance(err["message"], str) and err["message"], body
    assert resp.header("x-request-id"), resp
    if close:
        assert resp.closes, resp


# ---- raw client connections ------------------------------------------------------------------


class Conn:
    """One client TCP connection with an input buffer; all reads bounded by a deadline."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False
        self.reset = False
        self.timeout = timeout

    def send(self, data):
        self.sock.sendall(data)

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv_some(self, deadline):
        """Read once; False when the deadline passed first. Sets eof on close or reset."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            self.eof = True
            self.reset = True
            return True
        if not d:
            self.eof = True
        self.buf += d
        return True

    def read_response(self, timeout=None, head_request=False):
        """The next response (1xx included); AssertionError on timeout or early close."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                r, n = parse_response(self.buf, head_request=head_request, at_eof=self.eof)
                self.buf = self.buf[n:]
                return r
            except Incomplete:
                pass
            if self.eof:
                raise AssertionError(f"connection closed before a complete response; got {self.buf!r}")
            if not self._recv_some(deadline):
                raise AssertionError(f"timed out waiting for a response; got {self.buf!r}")

    def read_final(self, timeout=None, head_request=False):
        """Skip 1xx responses; return (list of 1xx seen, the final response)."""
        interim = []
        while True:
            r = self.read_response(timeout, head_request)
            if r.status >= 200:
                return interim, r
            interim.append(r)

    def read_until_close(self, timeout=None):
        """All remaining bytes up to EOF. Returns (bytes, closed) where closed is False when
        the timeout passed first."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof:
            if not self._recv_some(deadline):
                break
        data, self.buf = self.buf, b""
        return data, self.eof

    def wait_closed(self, timeout):
        """True when the server closes the connection within timeout (no bytes expected)."""
        data, closed = self.read_until_close(timeout)
        assert data == b"", f"unexpected bytes from the server: {data!r}"
        return closed

    def nothing_within(self, seconds):
        """True when nothing at all (no bytes, no close) arrives for `seconds`."""
        deadline = time.monotonic() + seconds
        got = self._recv_some(deadline)
        return not got

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def exchange(port, data, timeout=5.0, shut_write=False):
    """Send data on a new connection, read until the server closes or timeout.

    Returns (responses, closed, raw): closed is True when the server closed the connection.
    """
    with Conn(port, timeout) as c:
        c.send(data)
        if shut_write:
            c.shutdown_write()
        raw, closed = c.read_until_close(timeout)
    responses, rest = parse_responses(raw, at_eof=closed)
    assert rest == b"" or not closed, f"trailing garbage after responses: {rest!r}"
    return responses, closed, raw


def get(port, path="/healthz", headers=(), method="GET", timeout=5.0, version="HTTP/1.1"):
    """One request on its own connection (Connection: close); returns the Response."""
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with Conn(port, timeout) as c:
        c.send(data)
        _, r = c.read_final(head_request=(method == "HEAD"))
        return r


# ---- the server process --------------------------------------------------------------------


def run_sluice(args, timeout=15, env=None, cwd=None):
    """Run the binary to completion; returns CompletedProcess (text). Fails on sanitizer output."""
    p = subprocess.run(
        [SLUICE_BIN, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    reports = sanitizer_reports(p.stderr)
    assert not reports, "sanitizer reported problems:\n" + p.stderr
    return p


class ChildProcess:
    """Shared by the process wrappers (Sluice, simtools.Sim, proxytools.Gateway): a child
    process self.proc with its stdout/stderr in self.stdout_path/self.stderr_path."""

    def spawn(self, argv, env=None):
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err, env=env)

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for f in (getattr(self, "_err", None), getattr(self, "_out", None)):
            if f:
                f.close()

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def stop_and_check(procs, extra_check=None):
    """Teardown of the fixtures: SIGTERM every started process (p.stop(timeout=10.0)), clean it
    up, and return the problems found: a stop that failed, an exit status other than
    p.expect_rc (None: not checked), a sanitizer report in its stderr, and whatever
    extra_check(p) returns (a list of strings)."""
    problems = []
    for p in procs:
        try:
            if p.proc is None:
                continue
            if p.proc.poll() is None:
                try:
                    rc = p.stop(timeout=10.0)
                except AssertionError as e:
                    problems.append(f"{p.name}: {e}")
                    rc = None
            else:
                rc = p.proc.returncode
            if rc is not None and p.expect_rc is not None and rc != p.expect_rc:
                problems.append(f"{p.name}: exit status {rc}, expected {p.expect_rc}; stderr:\n{p.stderr()[-4000:]}")
        finally:
            p.cleanup()
        if sanitizer_reports(p.stderr()):
            problems.append(f"{p.name}: sanitizer reports in stderr:\n{p.stderr()[-8000:]}")
        if extra_check is not None:
            problems.extend(extra_check(p))
    return problems


class Sluice(ChildProcess):
    """A `sluice serve --config FILE` process with its stderr in a file."""

    def __init__(self, workdir, config, name="sluice"):
        self.workdir = Path(workdir)
        self.config = config
        self.name = name
        self.config_path = self.workdir / f"{name}.yaml"
        self.stderr_path = self.workdir / f"{name}.stderr"
        self.stdout_path = self.workdir / f"{name}.stdout"
        self.proc = None
        self.conns = []
        self.returncode = None
        listen = config["listen"][0]
        self.port = int(listen.rsplit(":", 1)[1])
        self.admin_port = int(config["admin_listen"].rsplit(":", 1)[1])

    # -- process
    def start(self, wait=True, env=None):
        self.config_path.write_text(self.config_yaml() + "\n")
        self.spawn([SLUICE_BIN, "serve", "--config", str(self.config_path)], env)
        if wait:
            self.wait_ready()
        return self

    def config_yaml(self):
        return to_yaml(self.config)

    def wait_ready(self, timeout=10.0):
        """Until /healthz answers 200 on the public and the admin listener."""
        deadline = time.monotonic() + timeout
        pending = [self.port, self.admin_port]
        last = None
        while pending:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"sluice exited with {self.proc.returncode} during start-up:\n{self.stderr()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"sluice did not answer /healthz on {pending} within {timeout}s "
                    f"(last error {last!r}):\n{self.stderr()}"
                )
            try:
                r = get(pending[0], timeout=1.0)
                if r.status == 200:
                    pending.pop(0)
                    continue
                last = r
            except (OSError, AssertionError) as e:
                last = e
            time.sleep(0.02)

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Exit code, or None when still running after timeout."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout=10.0):
        """SIGTERM and wait; returns the exit code (kills and fails on timeout)."""
        self.close_conns()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"sluice did not exit within {timeout}s of SIGTERM:\n{self.stderr()}")
        return rc

    def cleanup(self):
        self.close_conns()
        super().cleanup()

    # -- output

    def log_lines(self):
        """Every JSON object line of stderr, parsed (other lines are skipped)."""
        out = []
        for line in self.stderr().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def access_lines(self):
        return [x for x in self.log_lines() if x.get("type") == "access"]

    def wait_access(self, pred, timeout=5.0):
        """The access-log lines matching pred, once there is at least one (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [x for x in self.access_lines() if pred(x)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    # -- clients
    def conn(self, port=None, timeout=5.0):
        c = Conn(self.port if port is None else port, timeout)
        self.conns.append(c)
        return c

    def close_conns(self):
        for c in self.conns:
            c.close()
        self.conns = []

    def exchange(self, data, timeout=5.0, port=None, shut_write=False):
        return exchange(self.port if port is None else port, data, timeout, shut_write)

    def get(self, path="/healthz", **kw):
        port = kw.pop("port", self.port)
        return get(port, path, **kw)


def default_config(port, admin_port):
    return {
        "listen": [f"127.0.0.1:{port}"],
        "admin_listen": f"127.0.0.1:{admin_port}",
        "workers": 2,
        "limits": {
            "max_header_bytes": "16KiB",
            "max_body_bytes": "1MiB",
            "header_timeout": "5s",
            "request_timeout": "5s",
            "idle_timeout": "10s",
            "shutdown_timeout": "2s",
        },
        "log": {"level": "info", "format": "json", "access": True},
    }
