"""Helpers and fixtures for the `sluice sim` integration tests (tests/integration/test_sim_*.py).

    from simtools import *          # the start_sim fixture and the helpers below

    def test_x(start_sim):
        sim = start_sim()                               # one fast Azure endpoint "ep"
        r = call(sim.port(), "POST", az("gpt-4o"), CHAT)
        s = stream(sim.port(), az("gpt-4o"), {**CHAT, "stream": True})
        d = dep_stats(sim.stats(), "ep", "gpt-4o")
        assert st_requests(d) == 2

Every simulator started by a test gets SIGTERM at teardown and must exit 0 within 10 s with
no sanitizer report in its stderr; otherwise the test fails. Standard library only; every
wait is bounded.

The JSON shape of GET /_sim/stats and the field names of runtime fault rules are decided by
the simulator (docs/simulator.md); the accessors st_* / dep_stats and rt_fault are the only
places that know them.
"""

import base64
import json
import math
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import SLUICE_BIN, ChildProcess, Conn, free_ports, stop_and_check  # noqa: E402

API_VERSION = "2024-10-21"
KEY = "test-key"

__all__ = [
    "API_VERSION",
    "KEY",
    "CHAT",
    "FAST",
    "SLUICE_BIN",
    "Conn",
    "Sim",
    "Stream",
    "az",
    "azure_error",
    "assert_azure_error",
    "call",
    "chat_dep",
    "completions_dep",
    "embeddings_dep",
    "default_deployments",
    "endpoint",
    "free_consecutive_ports",
    "free_ports",
    "rt_fault",
    "start_sim",
    "stream",
    "dep_stats",
    "ep_stats",
    "st_requests",
    "st_status",
    "st_prompt_tokens",
    "st_completion_tokens",
    "st_streams",
    "st_fault",
    "st_throttled",
    "decode_b64_floats",
    "connect_refused",
    "wait_until",
    "yaml_dump",
    "ceil_seconds",
]

# ---- YAML ------------------------------------------------------------------------------------

_PLAIN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9._%/-]*$|^[0-9]+(\.[0-9]+)?(ms|s|m|h|%|KiB|MiB|GiB)$")


def _scalar(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    s = str(v)
    if _PLAIN_RE.match(s) and s not in ("true", "false", "null", "yes", "no", "on", "off", "~"):
        return s
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def yaml_dump(obj, indent=0):
    """Block YAML for nested dicts / lists / scalars (lists of mappings included)."""
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict):
                if v:
                    out.append(f"{pad}{k}:")
                    out.append(yaml_dump(v, indent + 1))
                else:
                    out.append(f"{pad}{k}: {{}}")
            elif isinstance(v, list):
                if not v:
                    out.append(f"{pad}{k}: []")
                elif all(not isinstance(x, (dict, list)) for x in v):
                    out.append(f"{pad}{k}: [" + ", ".join(_scalar(x) for x in v) + "]")
                else:
                    out.append(f"{pad}{k}:")
                    out.append(yaml_dump(v, indent + 1))
            else:
                out.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(obj, list):
        for x in obj:
            if isinstance(x, dict):
                body = yaml_dump(x, indent + 1).split("\n")
                first = body[0][len("  " * (indent + 1)) :]
                out.append(f"{pad}- {first}")
                out.extend(body[1:])
            else:
                out.append(f"{pad}- {_scalar(x)}")
    return "\n".join(x for x in out if x != "")


# ---- configurations ----------------------------------------------------------------------------

# Fast and exact: tests that time something set their own values.
FAST = {"ttft": "1ms", "tokens_per_second": 5000, "jitter_percent": 0}


def chat_dep(name="gpt-4o", model=None, version="2024-08-06", **kw):
    d = {
        "name": name,
        "model": model or name,
        "version": version,
        "kind": "chat",
        **FAST,
        "default_max_tokens": 64,
    }
    d.update(kw)
    return d


def completions_dep(name="gpt-35-turbo-instruct", model=None, version="0914", **kw):
    d = chat_dep(name, model, version, kind="completions")
    d.update(kw)
    return d


def embeddings_dep(name="text-embedding-3-small", model=None, version="1", dimensions=1536, **kw):
    d = {
        "name": name,
        "model": model or name,
        "version": version,
        "kind": "embeddings",
        **FAST,
        "dimensions": dimensions,
    }
    d.update(kw)
    return d


def default_deployments():
    """What the tests call the standard set: the same names as `sluice sim --listen`."""
    return [
        chat_dep("gpt-4o", version="2024-08-06"),
        chat_dep("gpt-4o-mini", version="2024-07-18"),
        completions_dep("gpt-35-turbo-instruct"),
        embeddings_dep("text-embedding-3-small"),
    ]


def endpoint(name="ep", deployments=None, region="eastus", flavor="azure", api_keys=None, faults=None, **kw):
    e = {"name": name, "region": region, "flavor": flavor}
    if api_keys:
        e["api_keys"] = list(api_keys)
    e["deployments"] = deployments if deployments is not None else default_deployments()
    if faults:
        e["faults"] = faults
    e.update(kw)
    return e


def rt_fault(kind, **kw):
    """One runtime fault rule for POST /_sim/faults; durations in milliseconds.

    rt_fault("status", status=429, retry_after_ms=2000, count=2, deployment="gpt-4o")
    rt_fault("stall_headers", duration_ms=500)
    """
    r = {"kind": kind}
    r.update(kw)
    r.setdefault("probability", 1.0)
    return r


# ---- ports --------------------------------------------------------------------------------------


def free_consecutive_ports():
    """A port P such that P and P+1 were both free a moment ago (for `sim --listen`)."""
    for _ in range(50):
        a = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            a.bind(("127.0.0.1", 0))
            p = a.getsockname()[1]
            if p >= 65535:
                continue
            try:
                b.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
            return p
        finally:
            a.close()
            b.close()
    raise AssertionError("no two consecutive free ports")


def connect_refused(port, timeout=1.0):
    """True when connect() to 127.0.0.1:port is refused right now."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return True
    s.close()
    return False


def wait_until(pred, timeout, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true within {timeout}s")
        time.sleep(interval)


# ---- HTTP ---------------------------------------------------------------------------------------


def az(deployment, op="chat/completions", api_version=API_VERSION):
    """The Azure data-plane path of op on deployment."""
    q = f"?api-version={api_version}" if api_version else ""
    return f"/openai/deployments/{deployment}/{op}{q}"


CHAT = {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]}


def _request_bytes(method, path, body, headers, key, keep_alive=False):
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = body
    hs = {"Host": "127.0.0.1", "User-Agent": "sluice-sim-tests"}
    if key is not None:
        hs["api-key"] = key
    if data is not None:
        hs["Content-Type"] = "application/json"
        hs["Content-Length"] = str(len(data))
    if not keep_alive:
        hs["Connection"] = "close"
    for k, v in (headers or {}).items():
        # a None value removes a default header
        for existing in [x for x in hs if x.lower() == k.lower()]:
            del hs[existing]
        if v is not None:
            hs[k] = v
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs.items()) + "\r\n"
    return head.encode("latin-1") + (data or b"")


def call(port, method, path, body=None, headers=None, key=KEY, timeout=10.0):
    """One request on its own connection; returns the helpers.Response (with .elapsed)."""
    t0 = time.monotonic()
    with Conn(port, timeout) as c:
        c.send(_request_bytes(method, path, body, headers, key))
        _, r = c.read_final(head_request=(method == "HEAD"))
    r.elapsed = time.monotonic() - t0
    return r


def azure_error(r):
    """The (code, message) of an Azure-shaped JSON error response; asserts the shape."""
    ct = (r.header("content-type") or "").split(";")[0].strip()
    assert ct == "application/json", f"error content-type {ct!r}: {r!r}"
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    err = body["error"]
    assert isinstance(err.get("message"), str) and err["message"], body
    # Azure's own errors carry a string code ("401", "429", "DeploymentNotFound"); validation
    # errors are OpenAI's {"message", "type", "param", "code"} where code may be null.
    assert "code" in err and (err["code"] is None or (isinstance(err["code"], str) and err["code"])), body
    return err["code"], err["message"]


def assert_azure_error(r, status, code=None):
    assert r.status == status, r
    c, _ = azure_error(r)
    if code is not None:
        assert c == code, (c, r.body)
    return c


# ---- streams -------------------------------------------------------------------------------------


class Stream:
    """What a streaming request saw.

    status, headers (list of (name, value)), header(name)
    events: [(seconds since the request was sent, text of one SSE event's data)]
    done: a `data: [DONE]` event arrived; terminated: the chunked body ended properly
    closed: the server closed the connection; reset: it reset it
    partial: decoded body bytes after the last complete event (a cut mid-event)
    t_head: seconds until the response head was complete; elapsed: until the end
    """

    def __init__(self):
        self.status = None
        self.headers = []
        self.events = []
        self.names = []  # the `event:` name of each event (None when it had none)
        self.done = False
        self.terminated = False
        self.closed = False
        self.reset = False
        self.partial = b""
        self.body = b""
        self.t_first_byte = None
        self.t_head = None
        self.elapsed = None
        self.timed_out = False
        self.after_done = []

    def header(self, name, default=None):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(vals) <= 1, f"header {name} repeated: {self.headers}"
        return vals[0] if vals else default

    def chunks(self):
        """Every event's data parsed as JSON, [DONE] excluded."""
        return [json.loads(d) for _, d in self.events if d != "[DONE]"]

    def content(self, index=0):
        """The concatenated delta content (chat) or text (completions) of choice index."""
        out = []
        for c in self.chunks():
            for ch in c.get("choices") or []:
                if ch.get("index", 0) != index:
                    continue
                if "delta" in ch:
                    out.append((ch["delta"] or {}).get("content") or "")
                else:
                    out.append(ch.get("text") or "")
        return "".join(out)

    def json_error(self):
        return json.loads(self.body.decode())

    def __repr__(self):
        return (
            f"<Stream {self.status} events={len(self.events)} done={self.done} terminated={self.terminated}"
            f" closed={self.closed} reset={self.reset} partial={self.partial[:80]!r} body={self.body[:300]!r}>"
        )


_HEAD_RE = re.compile(r"^HTTP/1\.[01] (\d{3})")


def stream(port, path, body, headers=None, key=KEY, timeout=10.0, keep_reading=0.0):
    """Send a (streaming) request; read the response incrementally, timing every SSE event.

    Never raises for a cut, a reset or a timeout: the Stream records what happened.
    keep_reading: after the body ended, wait this long for extra bytes (there must be none).
    """
    st = Stream()
    t0 = time.monotonic()
    deadline = t0 + timeout
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw = b""  # undecoded bytes not yet consumed
    decoded = b""  # body bytes not yet split into events
    chunked = None
    length = None
    got_body = 0
    try:
        sock.sendall(_request_bytes("POST", path, body, headers, key))
        ended = False
        while not ended:
            left = deadline - time.monotonic()
            if left <= 0:
                st.timed_out = True
                break
            sock.settimeout(left)
            try:
                d = sock.recv(65536)
            except socket.timeout:
                st.timed_out = True
                break
            except (ConnectionResetError, BrokenPipeError):
                st.reset = True
                st.closed = True
                break
            now = time.monotonic() - t0
            if not d:
                st.closed = True
            if d and st.t_first_byte is None:
                st.t_first_byte = now
            raw += d
            if st.status is None:
                end = raw.find(b"\r\n\r\n")
                if end < 0:
                    if st.closed:
                        break
                    continue
                lines = raw[:end].decode("latin-1").split("\r\n")
                m = _HEAD_RE.match(lines[0])
                assert m, f"bad status line {lines[0]!r}"
                st.status = int(m.group(1))
                st.headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
                st.t_head = now
                raw = raw[end + 4 :]
                te = (st.header("transfer-encoding") or "").lower()
                chunked = "chunked" in te
                cl = st.header("content-length")
                length = int(cl) if cl is not None else None
                if st.status >= 100 and st.status < 200:
                    st.status = None  # skip an interim response
                    continue
            # decode what we have
            new = b""
            if chunked:
                while True:
                    nl = raw.find(b"\r\n")
                    if nl < 0:
                        break
                    size = int(raw[:nl].split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        if raw.find(b"\r\n\r\n", nl) >= 0 or raw[nl + 2 : nl + 4] == b"\r\n":
                            st.terminated = True
                            raw = b""
                            ended = True
                        break
                    if len(raw) < nl + 2 + size + 2:
                        break
                    new += raw[nl + 2 : nl + 2 + size]
                    raw = raw[nl + 2 + size + 2 :]
            elif length is not None:
                take = raw[: length - got_body]
                got_body += len(take)
                new, raw = take, raw[len(take) :]
                if got_body >= length:
                    st.terminated = True
                    ended = True
            else:
                new, raw = raw, b""
            st.body += new
            decoded += new
            while True:
                # events end with a blank line (\n\n, or \r\n\r\n)
                m = re.search(rb"\r?\n\r?\n", decoded)
                if not m:
                    break
                ev, decoded = decoded[: m.start()], decoded[m.end() :]
                data = []
                name = None
                for line in ev.decode("utf-8", "replace").splitlines():
                    if line.startswith("data:"):
                        data.append(line[6:] if line[5:6] == " " else line[5:])
                    elif line.startswith("event:"):
                        name = line[6:].strip()
                if not data:
                    continue
                text = "\n".join(data)
                if st.done:
                    st.after_done.append(text)
                st.events.append((now, text))
                st.names.append(name)
                if text == "[DONE]":
                    st.done = True
            if st.closed:
                break
        st.partial = decoded + (raw if not chunked else b"")
        if chunked and raw and not st.terminated:
            st.partial = decoded + raw  # undecodable rest of a cut chunk
        if ended and keep_reading > 0:
            sock.settimeout(keep_reading)
            try:
                extra = sock.recv(65536)
                if extra:
                    st.after_done.append(extra.decode("latin-1"))
            except (socket.timeout, ConnectionResetError, OSError):
                pass
    finally:
        st.elapsed = time.monotonic() - t0
        sock.close()
    return st


# ---- embeddings ----------------------------------------------------------------------------------


def decode_b64_floats(s):
    raw = base64.b64decode(s)
    assert len(raw) % 4 == 0
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


# ---- stats accessors -------------------------------------------------------------------------------
# GET /_sim/stats (docs/simulator.md): per endpoint, per deployment counters.


def _named(container, name):
    """container[name], or the element of a list whose "name" is name."""
    if isinstance(container, dict):
        if name in container:
            return container[name]
        return None
    if isinstance(container, list):
        for x in container:
            if isinstance(x, dict) and x.get("name") == name:
                return x
    return None


def ep_stats(stats, ep):
    s = _named(stats.get("endpoints", stats), ep)
    assert s is not None, f"no endpoint {ep!r} in stats {json.dumps(stats)[:2000]}"
    return s


def dep_stats(stats, ep, dep):
    e = ep_stats(stats, ep)
    d = _named(e.get("deployments", e), dep)
    assert d is not None, f"no deployment {dep!r} of {ep!r} in stats {json.dumps(e)[:2000]}"
    return d


def _get(d, *paths, default=0):
    for p in paths:
        cur = d
        ok = True
        for k in p.split("."):
            if isinstance(cur, dict) and k in cur:
                cur = cur[k]
            else:
                ok = False
                break
        if ok:
            return cur
    return default


def st_requests(d):
    return _get(d, "requests")


def st_status(d, code):
    return _get(d, f"by_status.{code}", f"statuses.{code}")


def st_prompt_tokens(d):
    return _get(d, "prompt_tokens", "tokens.prompt")


def st_completion_tokens(d):
    return _get(d, "completion_tokens", "tokens.completion")


def st_streams(d, which):
    """which: started | completed | cut"""
    return _get(d, f"streams.{which}", f"streams_{which}")


def st_fault(d, kind):
    return _get(d, f"faults.{kind}", f"faults_injected.{kind}")


def st_throttled(d):
    return _get(d, "throttled")


# ---- the process -------------------------------------------------------------------------------------


class Sim(ChildProcess):
    """A `sluice sim` process (--config FILE, or --listen ADDR) with stderr in a file."""

    def __init__(self, workdir, name, config=None, listen_port=None, args=None):
        self.workdir = Path(workdir)
        self.name = name
        self.config = config
        self.listen_port = listen_port
        self.args = args
        self.config_path = self.workdir / f"{name}.yaml"
        self.stderr_path = self.workdir / f"{name}.stderr"
        self.stdout_path = self.workdir / f"{name}.stdout"
        self.proc = None
        self.expect_rc = 0
        self.ports = {}
        if config is not None:
            self.admin_port = int(config["admin_listen"].rsplit(":", 1)[1])
            for e in config["simulator"]["endpoints"]:
                self.ports[e["name"]] = int(e["listen"].rsplit(":", 1)[1])
        else:
            self.admin_port = listen_port + 1
            self.ports["default"] = listen_port

    def argv(self):
        if self.args is not None:
            return [SLUICE_BIN, "sim", *self.args]
        if self.config is not None:
            return [SLUICE_BIN, "sim", "--config", str(self.config_path)]
        return [SLUICE_BIN, "sim", "--listen", f"127.0.0.1:{self.listen_port}"]

    def start(self, wait=True, env=None):
        if self.config is not None:
            self.config_path.write_text(yaml_dump(self.config) + "\n")
        self.spawn(self.argv(), env)
        if wait:
            self.wait_ready()
        return self

    def port(self, name=None):
        if name is None:
            return next(iter(self.ports.values()))
        return self.ports[name]

    def wait_ready(self, timeout=10.0):
        """Until the admin /healthz answers 200 and every endpoint accepts connections."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"sluice sim exited with {self.proc.returncode} during start-up:\n{self.stderr()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"sluice sim not ready within {timeout}s ({last!r}):\n{self.stderr()}")
            try:
                r = call(self.admin_port, "GET", "/healthz", key=None, timeout=1.0)
                if r.status == 200 and all(not connect_refused(p) for p in self.ports.values()):
                    return
                last = r
            except (OSError, AssertionError) as e:
                last = e
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"sluice sim did not exit within {timeout}s of SIGTERM:\n{self.stderr()}") from None

    # -- control API
    def admin(self, method, path, body=None, timeout=5.0):
        return call(self.admin_port, method, path, body, key=None, timeout=timeout)

    def stats(self):
        r = self.admin("GET", "/_sim/stats")
        assert r.status == 200, r
        return r.json()

    def dep(self, dep, ep=None):
        """The stats of one deployment (of the only or the named endpoint)."""
        return dep_stats(self.stats(), ep or self.first_endpoint(), dep)

    def first_endpoint(self):
        if self.config is not None:
            return self.config["simulator"]["endpoints"][0]["name"]
        st = self.stats()
        eps = st.get("endpoints", st)
        if isinstance(eps, list):
            return eps[0]["name"]
        return next(iter(eps))

    def add_faults(self, ep, faults):
        r = self.admin("POST", "/_sim/faults", {"endpoint": ep, "faults": faults})
        assert 200 <= r.status < 300, r
        return r

    def clear_faults(self, ep):
        r = self.admin("DELETE", f"/_sim/faults?endpoint={ep}")
        assert 200 <= r.status < 300, r
        return r

    def reset(self):
        r = self.admin("POST", "/_sim/reset")
        assert 200 <= r.status < 300, r
        return r


@pytest.fixture
def start_sim(tmp_path):
    """Factory: start_sim(endpoints=None, seed=1, limits=None, listen=False, args=None,
    workers=1, wait=True, extra=None) -> Sim.

    endpoints: a list of endpoint() dicts (their `listen` is filled in with free ports);
    None: one Azure endpoint "ep" with default_deployments(). listen=True runs
    `sluice sim --listen 127.0.0.1:P` instead (admin on P+1). args: raw arguments.
    """
    started = []

    def start(endpoints=None, seed=1, limits=None, listen=False, args=None, workers=1, wait=True, extra=None, env=None):
        name = f"sim{len(started)}"
        if listen:
            s = Sim(tmp_path, name, listen_port=free_consecutive_ports(), args=args)
        else:
            eps = [dict(e) for e in (endpoints if endpoints is not None else [endpoint()])]
            ports = free_ports(len(eps) + 2)
            for e, p in zip(eps, ports[2:]):
                e.setdefault("listen", f"127.0.0.1:{p}")
            cfg = {
                "listen": [f"127.0.0.1:{ports[0]}"],
                "admin_listen": f"127.0.0.1:{ports[1]}",
                "workers": workers,
                "log": {"level": "info", "format": "json"},
            }
            if limits:
                cfg["limits"] = limits
            cfg["simulator"] = {"seed": seed, "endpoints": eps}
            if extra:
                cfg.update(extra)
            s = Sim(tmp_path, name, config=cfg, args=args)
        started.append(s)
        s.start(wait=wait, env=env)
        return s

    yield start

    problems = stop_and_check(started)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def ceil_seconds(ms):
    return math.ceil(ms / 1000)
