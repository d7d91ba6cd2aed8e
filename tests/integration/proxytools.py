"""Fixtures and helpers for the proxy tests (tests/integration/test_proxy_*.py): sluice as a
gateway (`sluice serve`) in front of `sluice sim` in another process, or in front of a tiny
recording backend in this process when a test must see exactly what went over the wire.

    from proxytools import *

    def test_x(proxy):                  # the shared gateway + simulator of this module, sim reset
        r = proxy.call("POST", az("gpt-4o"), chat_body())
        assert r.status == 200
        assert proxy.upstream_requests() == 1

    def test_y(start_proxy):            # a gateway + simulator of its own
        p = start_proxy(gw={"backend_header": False})

    def test_z(start_gateway):          # a gateway in front of a RecordingBackend
        be = RecordingBackend()
        gw = start_gateway(backends=[azure_backend("rec", be.port, deployment="gpt-4o")], ...)

The secrets: clients authenticate with CLIENT_KEY / CLIENT_KEY_2 (the config holds their
sha256 hashes); every backend authenticates with BACKEND_KEY, which reaches sluice through
the environment (${SLUICE_TEST_BACKEND_KEY}); the simulated endpoints accept BACKEND_KEY only,
so a request that works proves that sluice swapped the keys. Prompts carry MARKER.

At teardown every gateway and simulator gets SIGTERM and must exit 0 within 10 s, with no
sanitizer report in its stderr; and no gateway's stderr may hold BACKEND_KEY, a client key or
MARKER (S1, S5). Standard library only; every wait is bounded.
"""

import hashlib
import json
import os
import secrets
import socket
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import Conn, Sluice, free_ports, stop_and_check  # noqa: E402
from simtools import (  # noqa: E402
    API_VERSION,
    Sim,
    call,
    chat_dep,
    completions_dep,
    embeddings_dep,
    stream,
    yaml_dump,
)

__all__ = [
    "API_VERSION",
    "BACKEND_KEY",
    "BACKEND_KEY_ENV",
    "CLIENT_KEY",
    "CLIENT_KEY_2",
    "MARKER",
    "SECRETS",
    "Gateway",
    "ProxyEnv",
    "RecordingBackend",
    "azure_backend",
    "openai_backend",
    "assert_gw_error",
    "chat_body",
    "hash_key",
    "gw_call",
    "gw_stream",
    "raw_exchange",
    "standard_sim_endpoint",
    "standard_gateway",
    "total_requests",
    "rss_kib",
    "proxy",
    "proxy_module",
    "start_proxy",
    "start_gateway",
]

# ---- secrets and markers -------------------------------------------------------------------
_RUN = secrets.token_hex(6)
BACKEND_KEY = f"bk-{_RUN}-backend-secret"
CLIENT_KEY = f"ck-{_RUN}-client-one"
CLIENT_KEY_2 = f"ck-{_RUN}-client-two"
MARKER = f"PromptMarker{_RUN}"
BACKEND_KEY_ENV = "SLUICE_TEST_BACKEND_KEY"
SECRETS = {"backend key": BACKEND_KEY, "client key": CLIENT_KEY, "second client key": CLIENT_KEY_2, "prompt marker": MARKER}


def hash_key(key):
    """The `sha256:...` form of a client key, as `sluice hash-key` prints it."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def chat_body(text="Say hello.", max_tokens=16, **kw):
    """A chat request whose prompt carries MARKER."""
    b = {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": f"{text} {MARKER}"},
        ],
        "max_tokens": max_tokens,
    }
    b.update(kw)
    return b


# ---- configurations ----------------------------------------------------------------------------

TIMEOUTS = {"connect_timeout": "2s", "first_byte_timeout": "5s", "idle_timeout": "5s", "total_timeout": "30s"}


def azure_backend(name, port, deployment=None, model="gpt-4o", version="2024-08-06", key=True, **kw):
    b = {"name": name, "url": f"http://127.0.0.1:{port}", "type": "azure"}
    if key:
        b["api_key"] = "${" + BACKEND_KEY_ENV + "}"
    b.update({"region": "eastus", "model": model, "version": version})
    if deployment:
        b["deployment"] = deployment
    b.update(TIMEOUTS)
    b.update(kw)
    return b


def openai_backend(name, port, deployment=None, model="gpt-4o", version="2024-08-06", path="/v1", **kw):
    b = azure_backend(name, port, deployment, model, version, **kw)
    b["url"] = f"http://127.0.0.1:{port}{path}"
    b["type"] = "openai"
    return b


def standard_sim_endpoint(name="aoai", flavor="azure", extra_deployments=()):
    """An endpoint that accepts BACKEND_KEY only, with the deployments the shared env uses."""
    deps = [
        chat_dep("gpt-4o", version="2024-08-06"),
        chat_dep("gpt-4o-mini", version="2024-07-18"),
        completions_dep("gpt-35-turbo-instruct"),
        embeddings_dep("text-embedding-3-small"),
        # tpm 1000 -> rpm 6 -> one request per 10-second slice: the second one is a 429 whose
        # message names the api-version the simulator received
        chat_dep("gpt-4o-q", model="gpt-4o", tpm=1000),
        # a slow stream: first token after 50 ms, then 20 tokens per second
        chat_dep("gpt-4o-slow", model="gpt-4o", ttft="50ms", tokens_per_second=20, jitter_percent=0, default_max_tokens=200),
        # a very fast one, for big streams
        chat_dep("gpt-4o-bulk", model="gpt-4o", ttft="1ms", tokens_per_second=100000, jitter_percent=0),
        *extra_deployments,
    ]
    return {"name": name, "region": "eastus", "flavor": flavor, "api_keys": [BACKEND_KEY], "deployments": deps}


def standard_gateway(sim_port, dead_port):
    """backends, routes, clients of the shared env: everything on one simulated endpoint."""
    short = {"first_byte_timeout": "400ms", "idle_timeout": "400ms"}
    # These tests are about one request at a time: circuits must not open between them
    # (tests/integration/test_routing*.py cover circuit breaking).
    no_breaker = {"failure_threshold": 1000, "throttle_time": "1ms", "max_retry_after": "1ms"}
    backends = [
        azure_backend("aoai-gpt-4o", sim_port, deployment="gpt-4o"),
        azure_backend("aoai-mini", sim_port, model="gpt-4o-mini", version="2024-07-18"),  # deployment: the route's name
        azure_backend("aoai-instruct", sim_port, model="gpt-35-turbo-instruct", version="0914"),
        azure_backend("aoai-embed", sim_port, model="text-embedding-3-small", version="1"),
        azure_backend("aoai-q", sim_port, deployment="gpt-4o-q"),
        azure_backend("aoai-slow", sim_port, deployment="gpt-4o-slow"),
        azure_backend("aoai-bulk", sim_port, deployment="gpt-4o-bulk"),
        azure_backend("aoai-short", sim_port, deployment="gpt-4o", **short),
        azure_backend("aoai-total", sim_port, deployment="gpt-4o-slow", total_timeout="700ms"),
        azure_backend("aoai-dead", dead_port, deployment="gpt-4o", connect_timeout="1s"),
        # an OpenAI-type backend on the same (azure-flavoured) endpoint: its /v1 surface
        openai_backend("oai-gpt-4o", sim_port, deployment="gpt-4o"),
    ]
    for b in backends:
        b.update(no_breaker)
    routes = [
        {"name": "gpt-4o", "backend": "aoai-gpt-4o"},
        {"name": "chat", "backend": "aoai-gpt-4o"},
        {"name": "gpt-4o-mini", "backend": "aoai-mini"},
        {"name": "gpt-35-turbo-instruct", "backend": "aoai-instruct"},
        {"name": "text-embedding-3-small", "backend": "aoai-embed"},
        {"name": "quota", "backend": "aoai-q"},
        {"name": "quota-pinned", "backend": "aoai-q", "api_version": "2024-06-01"},
        {"name": "slow", "backend": "aoai-slow"},
        {"name": "bulk", "backend": "aoai-bulk"},
        {"name": "short", "backend": "aoai-short"},
        {"name": "total", "backend": "aoai-total"},
        {"name": "dead", "backend": "aoai-dead"},
        {"name": "oai-chat", "backend": "oai-gpt-4o"},
    ]
    clients = [
        {"name": "app1", "keys": [hash_key(CLIENT_KEY)]},
        {"name": "app2", "keys": [hash_key(CLIENT_KEY_2)]},
    ]
    return backends, routes, clients


def gateway_config(port, admin_port, backends, routes, clients, overrides=None):
    cfg = {
        "listen": [f"127.0.0.1:{port}"],
        "admin_listen": f"127.0.0.1:{admin_port}",
        "workers": 1,
        "limits": {
            "max_body_bytes": "256KiB",
            "header_timeout": "5s",
            "request_timeout": "10s",
            "idle_timeout": "10s",
            "shutdown_timeout": "2s",
        },
        "log": {"level": "info", "format": "json", "access": True},
        "backends": backends,
        "routes": routes,
        "clients": clients,
        "backend_header": True,
    }
    for k, v in (overrides or {}).items():
        if v is None:
            cfg.pop(k, None)
        elif isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


def sim_config(endpoints, access_log=True, seed=1):
    ports = free_ports(len(endpoints) + 2)
    eps = [dict(e) for e in endpoints]
    for e, p in zip(eps, ports[2:]):
        e.setdefault("listen", f"127.0.0.1:{p}")
    return {
        "listen": [f"127.0.0.1:{ports[0]}"],
        "admin_listen": f"127.0.0.1:{ports[1]}",
        "workers": 1,
        "log": {"level": "info", "format": "json", "access": access_log},
        "simulator": {"seed": seed, "endpoints": eps},
    }


def gw_env():
    env = dict(os.environ)
    env[BACKEND_KEY_ENV] = BACKEND_KEY
    return env


# ---- the gateway process ---------------------------------------------------------------------


class Gateway(Sluice):
    """`sluice serve --config FILE` with a gateway section (YAML with lists of mappings)."""

    def __init__(self, workdir, config, name="gateway"):
        super().__init__(workdir, config, name=name)
        self.allowed_in_logs = set()  # names of SECRETS this gateway may log (log_payloads)
        self.expect_rc = 0

    def config_yaml(self):
        return yaml_dump(self.config)

    def start(self, wait=True, env=None):
        return super().start(wait=wait, env=env if env is not None else gw_env())

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        return rss_kib(self.proc.pid)

    def leaks(self):
        """The names of SECRETS found in this gateway's stderr (and stdout)."""
        text = self.stderr()
        try:
            text += self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            pass
        return [name for name, s in SECRETS.items() if s in text and name not in self.allowed_in_logs]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _leak_problems(p):
    """The secrets a gateway's logs hold, as teardown problems (S1, S5)."""
    leaked = p.leaks() if isinstance(p, Gateway) else []
    if leaked:
        return [f"{p.name}: its logs hold the {', '.join(leaked)} (S1/S5); stderr:\n{p.stderr()[-4000:]}"]
    return []


def _stop_and_check(procs):
    """Stop gateways/sims; the problems found (exit status, sanitizers, secrets in logs)."""
    return stop_and_check(procs, _leak_problems)


# ---- requests ---------------------------------------------------------------------------------


def _auth_headers(key, auth, headers):
    hs = dict(headers or {})
    if key is not None:
        if auth == "bearer":
            hs["Authorization"] = f"Bearer {key}"
        else:
            hs["api-key"] = key
    return hs


def gw_call(port, method, path, body=None, headers=None, key=CLIENT_KEY, auth="api-key", timeout=10.0):
    """One request with a client key (api-key header, or auth="bearer")."""
    return call(port, method, path, body, headers=_auth_headers(key, auth, headers), key=None, timeout=timeout)


def gw_stream(port, path, body, headers=None, key=CLIENT_KEY, auth="api-key", **kw):
    return stream(port, path, body, headers=_auth_headers(key, auth, headers), key=None, **kw)


def raw_exchange(port, data, timeout=5.0):
    """Send raw bytes on a new connection; (bytes received until close or timeout, closed)."""
    with Conn(port, timeout) as c:
        c.send(data)
        return c.read_until_close(timeout)


def assert_gw_error(r, status, code=None):
    """An Azure-shaped error from the gateway: {"error": {"code": str, "message": str, ...}}."""
    assert r.status == status, r
    ct = (r.header("content-type") or "").split(";")[0].strip()
    assert ct == "application/json", f"content-type {ct!r}: {r!r}"
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    err = body["error"]
    assert isinstance(err.get("message"), str) and err["message"], body
    assert isinstance(err.get("code"), str) and err["code"], body
    if code is not None:
        assert err["code"] == code, body
    for name, s in SECRETS.items():
        if name != "prompt marker":
            assert s not in r.raw.decode("latin-1"), f"the {name} is in an error response: {r!r}"
    return err


def total_requests(stats):
    """Every request any simulated endpoint saw (deployments and unrouted)."""
    n = 0
    for e in stats["endpoints"].values():
        n += e["unrouted"]["requests"]
        for d in e["deployments"].values():
            n += d["requests"]
    return n


# ---- an environment: simulator + gateway -------------------------------------------------------


class ProxyEnv:
    def __init__(self, sim, gw):
        self.sim = sim
        self.gw = gw
        self._sim_log_from = 0

    def mark(self):
        """From now on, sim_access() sees only new access-log lines of the simulator (after
        flushing the lines of earlier requests: see wait_sim_access)."""
        for port in self.sim.ports.values():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                pass
        time.sleep(0.03)
        self._sim_log_from = len(self.sim.stderr())

    @property
    def port(self):
        return self.gw.port

    def sim_port(self, ep="aoai"):
        return self.sim.port(ep)

    def call(self, method, path, body=None, headers=None, key=CLIENT_KEY, auth="api-key", timeout=10.0):
        return gw_call(self.port, method, path, body, headers, key, auth, timeout)

    def stream(self, path, body, headers=None, key=CLIENT_KEY, auth="api-key", **kw):
        return gw_stream(self.port, path, body, headers, key, auth, **kw)

    def direct(self, method, path, body=None, headers=None, ep="aoai"):
        """The same request straight to the simulator, with the backend key."""
        return call(self.sim_port(ep), method, path, body, headers=headers, key=BACKEND_KEY)

    def stats(self):
        return self.sim.stats()

    def dep(self, name, ep="aoai"):
        return self.sim.stats()["endpoints"][ep]["deployments"][name]

    def upstream_requests(self):
        return total_requests(self.sim.stats())

    def sim_access(self, listener="aoai"):
        """The simulator's access-log lines of one endpoint."""
        out = []
        for line in self.sim.stderr()[self._sim_log_from :].splitlines():
            if line.startswith("{"):
                try:
                    x = json.loads(line)
                except ValueError:
                    continue
                if x.get("type") == "access" and x.get("listener") == listener:
                    out.append(x)
        return out

    def wait_sim_access(self, pred, timeout=3.0, listener="aoai", settle=0.1):
        """The simulator's new access-log lines matching pred, once there is one.

        The simulator writes an access line when its answer is done, and flushes the lines at
        the end of a loop turn; an answer sent from a timer (every simulated answer is) is
        flushed only when the loop wakes up again. So: wake it with a bare connection (no
        request, nothing counted) before reading."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.sim_port(listener)), timeout=1).close()
            except OSError:
                pass
            time.sleep(0.02)
            found = [x for x in self.sim_access(listener) if pred(x)]
            if found:
                time.sleep(settle)  # lines written together may need one more turn
                return [x for x in self.sim_access(listener) if pred(x)]
            if time.monotonic() > deadline:
                return found


def _start_env(workdir, tag, procs, sim_endpoints=None, gw=None, backends=None, routes=None, clients=None):
    """Start a simulator and a gateway in front of it; both are appended to procs as soon as
    they exist, so that the caller stops them whatever happens. backends may be a function of
    the Sim (for ports). Returns the ProxyEnv."""
    eps = sim_endpoints if sim_endpoints is not None else [standard_sim_endpoint()]
    sim = Sim(workdir, f"{tag}-sim", config=sim_config(eps))
    procs.append(sim)
    sim.start()
    port, admin, dead = free_ports(3)
    std_b, std_r, std_c = standard_gateway(sim.port(eps[0]["name"]), dead)
    if callable(backends):
        backends = backends(sim)
    cfg = gateway_config(
        port,
        admin,
        backends if backends is not None else std_b,
        routes if routes is not None else std_r,
        clients if clients is not None else std_c,
        gw,
    )
    g = Gateway(workdir, cfg, name=f"{tag}-gateway")
    procs.append(g)
    g.start()
    return ProxyEnv(sim, g)


@pytest.fixture(scope="module")
def proxy_module(tmp_path_factory):
    """A gateway and a simulator shared by the tests of one module (see `proxy`)."""
    workdir = tmp_path_factory.mktemp("proxy")
    procs = []
    try:
        env = _start_env(workdir, "shared", procs)
    except BaseException as e:
        problems = _stop_and_check(procs)
        raise AssertionError(f"could not start the shared proxy env: {e}\n" + "\n".join(problems)) from None
    yield env
    problems = _stop_and_check(procs)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def proxy(proxy_module):
    """The module's shared env, with the simulator's stats, quotas and faults reset."""
    env = proxy_module
    assert env.gw.alive(), f"the shared gateway died:\n{env.gw.stderr()[-4000:]}"
    assert env.sim.alive(), f"the shared simulator died:\n{env.sim.stderr()[-4000:]}"
    env.sim.reset()
    env.mark()
    yield env
    assert env.gw.alive(), f"the gateway died during the test:\n{env.gw.stderr()[-4000:]}"
    leaked = env.gw.leaks()
    assert not leaked, f"the gateway's logs hold the {', '.join(leaked)}:\n{env.gw.stderr()[-4000:]}"


@pytest.fixture
def start_proxy(tmp_path):
    """Factory: start_proxy(sim_endpoints=None, gw=None, backends=None, routes=None,
    clients=None) -> ProxyEnv with processes of its own (stopped and checked at teardown)."""
    procs = []

    def start(**kw):
        return _start_env(tmp_path, f"p{len(procs)}", procs, **kw)

    yield start

    problems = _stop_and_check(procs)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def start_gateway(tmp_path):
    """Factory: start_gateway(backends, routes, clients=None, overrides=None, env=None,
    wait=True) -> Gateway (no simulator)."""
    started = []

    def start(backends, routes, clients=None, overrides=None, env=None, wait=True):
        port, admin = free_ports(2)
        if clients is None:
            clients = [{"name": "app1", "keys": [hash_key(CLIENT_KEY)]}]
        cfg = gateway_config(port, admin, backends, routes, clients, overrides)
        g = Gateway(tmp_path, cfg, name=f"gw{len(started)}")
        started.append(g)
        g.start(wait=wait, env=env)
        return g

    yield start

    problems = _stop_and_check(started)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


# ---- a recording backend -------------------------------------------------------------------------


class Recorded:
    def __init__(self, method, target, version, headers, body):
        self.method = method
        self.target = target  # path and query, as sent
        self.version = version
        self.headers = headers  # [(name, value)] as sent
        self.body = body  # de-chunked

    @property
    def path(self):
        return self.target.split("?", 1)[0]

    @property
    def query(self):
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def header_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def header(self, name):
        vals = self.header_all(name)
        assert len(vals) <= 1, f"header {name} sent {len(vals)} times: {self.headers}"
        return vals[0] if vals else None

    def __repr__(self):
        return f"<Recorded {self.method} {self.target} {self.headers!r} body={self.body[:200]!r}>"


CANNED_HEADERS = [
    ("Content-Type", "application/json"),
    ("apim-request-id", "0e0d4f5c-1111-4222-8333-944445555666"),
    ("x-ms-region", "recordregion"),
    ("x-ms-deployment-name", "gpt-4o"),
    ("openai-processing-ms", "12.345"),
    ("x-ratelimit-limit-requests", "100"),
    ("x-ratelimit-remaining-requests", "99"),
    ("x-ratelimit-limit-tokens", "10000"),
    ("x-ratelimit-remaining-tokens", "9876"),
    # hop-by-hop: none of these may reach the client
    ("Connection", "keep-alive, X-Resp-Hop"),
    ("X-Resp-Hop", "hop-value"),
    ("Keep-Alive", "timeout=5, max=100"),
    ("Proxy-Authenticate", "Basic realm=backend"),
]

CANNED_BODY = {
    "id": "chatcmpl-recorded",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "recorded"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}


def canned_response(req, status=200, headers=None, body=None):
    data = json.dumps(body if body is not None else CANNED_BODY).encode()
    hs = list(CANNED_HEADERS if headers is None else headers)
    rid = req.header("x-request-id")
    if rid:
        hs.append(("x-request-id", rid))
    reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(status, "Whatever")
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs)
    head += f"Content-Length: {len(data)}\r\n\r\n"
    return head.encode("latin-1") + data


class RecordingBackend:
    """An HTTP/1.1 server in a thread that records every request and answers
    respond(Recorded) -> bytes (default: a canned chat completion with known headers)."""

    def __init__(self, respond=None):
        self.respond = respond or canned_response
        self.requests = []
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.stopping = False
        self.errors = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.lsock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        s.settimeout(10)
        buf = b""
        try:
            while not self.stopping:
                while b"\r\n\r\n" not in buf:
                    d = s.recv(65536)
                    if not d:
                        return
                    buf += d
                end = buf.index(b"\r\n\r\n")
                lines = buf[:end].decode("latin-1").split("\r\n")
                buf = buf[end + 4 :]
                method, target, version = lines[0].split(" ", 2)
                headers = []
                for line in lines[1:]:
                    k, v = line.split(":", 1)
                    headers.append((k, v.strip()))
                hmap = {k.lower(): v for k, v in headers}
                body = b""
                if "chunked" in hmap.get("transfer-encoding", "").lower():
                    while True:
                        while b"\r\n" not in buf:
                            buf += s.recv(65536)
                        nl = buf.index(b"\r\n")
                        size = int(buf[:nl].split(b";")[0], 16)
                        buf = buf[nl + 2 :]
                        if size == 0:
                            while b"\r\n" not in buf:
                                buf += s.recv(65536)
                            buf = buf[buf.index(b"\r\n") + 2 :]
                            break
                        while len(buf) < size + 2:
                            buf += s.recv(65536)
                        body += buf[:size]
                        buf = buf[size + 2 :]
                elif "content-length" in hmap:
                    n = int(hmap["content-length"])
                    if hmap.get("expect", "").lower() == "100-continue":
                        s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    while len(buf) < n:
                        d = s.recv(65536)
                        if not d:
                            return
                        buf += d
                    body, buf = buf[:n], buf[n:]
                req = Recorded(method, target, version, headers, body)
                self.requests.append(req)
                s.sendall(self.respond(req))
                if hmap.get("connection", "").lower() == "close":
                    return
        except Exception as e:  # noqa: BLE001 - recorded for the test to see
            self.errors.append(repr(e))
        finally:
            s.close()

    def wait_requests(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.requests




# ---- routing: a gateway and its simulated endpoints in one process -------------------------------
# For tests/integration/test_routing*.py: `sluice serve --config FILE` with a gateway section and
# a `simulator:` section, each simulated endpoint being a backend (or several). The simulator's
# control API (/_sim/faults, /_sim/stats) and /sluice/status are on the same admin listener.
#
#     def test_x(start_routing):
#         env = start_routing(
#             endpoints=[routing_endpoint("ep-a"), routing_endpoint("ep-b")],
#             backends=[routing_backend("a", "ep-a"), routing_backend("b", "ep-b")],
#             routes=[{"name": "gpt-4o", "backends": [{"backend": "a"}, {"backend": "b"}]}])
#         r = env.chat()                       # POST az("gpt-4o") with CLIENT_KEY
#         assert r.header("x-sluice-backend") in ("a", "b") and env.seen("ep-a") <= 1


def routing_endpoint(name, region="eastus", deployments=None, **kw):
    """A simulated endpoint that accepts BACKEND_KEY only; by default one fast gpt-4o deployment."""
    e = {
        "name": name,
        "region": region,
        "flavor": "azure",
        "api_keys": [BACKEND_KEY],
        "deployments": deployments if deployments is not None else [chat_dep("gpt-4o", version="2024-08-06")],
    }
    e.update(kw)
    return e


def routing_backend(name, endpoint, deployment="gpt-4o", **kw):
    """An Azure backend on the simulated endpoint named endpoint (its URL is filled in when the
    gateway starts); kw sets any backend key (region, geography, failure_threshold, ...)."""
    b = azure_backend(name, 0, deployment=deployment)
    b["endpoint"] = endpoint
    b.update(kw)
    return b


class RoutingEnv:
    """A running gateway (self.gw) whose simulated endpoints serve in the same process."""

    def __init__(self, gw, endpoint_ports):
        self.gw = gw
        self.ports = endpoint_ports  # endpoint name -> port

    @property
    def port(self):
        return self.gw.port

    @property
    def admin_port(self):
        return self.gw.admin_port

    def call(self, method, path, body=None, headers=None, key=CLIENT_KEY, auth="api-key", timeout=15.0):
        return gw_call(self.port, method, path, body, headers, key, auth, timeout)

    def chat(self, route="gpt-4o", key=CLIENT_KEY, headers=None, timeout=15.0, **body):
        """A chat completion on the Azure path of route."""
        return self.call("POST", f"/openai/deployments/{route}/chat/completions?api-version={API_VERSION}",
                         chat_body(**body), headers, key, timeout=timeout)

    def admin(self, method, path, body=None, timeout=10.0):
        return call(self.admin_port, method, path, body, key=None, timeout=timeout)

    def faults(self, ep, faults):
        """Replace the runtime fault rules of endpoint ep (simtools.rt_fault builds them)."""
        r = self.admin("POST", "/_sim/faults", {"endpoint": ep, "faults": faults})
        assert 200 <= r.status < 300, r
        return r

    def clear_faults(self, ep=None):
        r = self.admin("DELETE", "/_sim/faults" + (f"?endpoint={ep}" if ep else ""))
        assert 200 <= r.status < 300, r

    def stats(self):
        r = self.admin("GET", "/_sim/stats")
        assert r.status == 200, r
        return r.json()

    def seen(self, ep, stats=None):
        """Every request simulated endpoint ep received (its deployments and unrouted)."""
        e = (stats or self.stats())["endpoints"][ep]
        return e["unrouted"]["requests"] + sum(d["requests"] for d in e["deployments"].values())

    def seen_all(self):
        st = self.stats()
        return {ep: self.seen(ep, st) for ep in self.ports}

    def status(self):
        """GET /sluice/status on the admin listener, parsed."""
        r = self.admin("GET", "/sluice/status")
        assert r.status == 200, r
        ct = (r.header("content-type") or "").split(";")[0].strip()
        assert ct == "application/json", r
        return r.json()

    def backend_status(self, name, status=None):
        for b in (status or self.status())["backends"]:
            if b["name"] == name:
                return b
        raise AssertionError(f"no backend {name!r} in /sluice/status")

    def wait_backend(self, name, pred, timeout=10.0, what=None):
        """The backend's /sluice/status entry once pred(entry) holds (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            b = self.backend_status(name)
            if pred(b):
                return b
            if time.monotonic() > deadline:
                raise AssertionError(f"{what or 'condition'} on backend {name}: not within {timeout}s: {b}")
            time.sleep(0.02)

    def readyz(self):
        return call(self.port, "GET", "/readyz", key=None, timeout=5.0)


def start_routing_env(workdir, tag, procs, endpoints, backends, routes, clients=None, routing=None, gw=None):
    """Start one gateway serving endpoints beside it (see RoutingEnv); appended to procs."""
    ports = free_ports(2 + len(endpoints))
    eps = [dict(e) for e in endpoints]
    by_name = {}
    for e, p in zip(eps, ports[2:]):
        e["listen"] = f"127.0.0.1:{p}"
        by_name[e["name"]] = p
    bes = []
    for b in backends:
        b = dict(b)
        ep = b.pop("endpoint", None)
        if ep is not None:
            b["url"] = f"http://127.0.0.1:{by_name[ep]}"
        bes.append(b)
    if clients is None:
        clients = [
            {"name": "app1", "keys": [hash_key(CLIENT_KEY)]},
            {"name": "app2", "keys": [hash_key(CLIENT_KEY_2)]},
        ]
    overrides = dict(gw or {})
    if routing:
        overrides["routing"] = routing
    cfg = gateway_config(ports[0], ports[1], bes, routes, clients, overrides)
    cfg["simulator"] = {"seed": 1, "endpoints": eps}
    g = Gateway(workdir, cfg, name=f"{tag}-gateway")
    procs.append(g)
    g.start()
    for p in by_name.values():
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", p), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"simulated endpoint on {p} not listening:\n{g.stderr()[-3000:]}") from None
                time.sleep(0.02)
    return RoutingEnv(g, by_name)


@pytest.fixture
def start_routing(tmp_path):
    """Factory: start_routing(endpoints, backends, routes, clients=None, routing=None, gw=None)
    -> RoutingEnv; its process is stopped and checked at teardown."""
    procs = []

    def start(**kw):
        return start_routing_env(tmp_path, f"r{len(procs)}", procs, **kw)

    yield start

    problems = _stop_and_check(procs)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


__all__ += ["RoutingEnv", "routing_endpoint", "routing_backend", "start_routing", "start_routing_env"]


# ---- clients: grants, caps, limits, queueing, budgets -----------------------------------------------
# For tests/integration/test_clients_*.py (besides test_clients_jwt.py).


def client_entry(name, key, **kw):
    """A clients[] entry identified by key (hashed here); kw sets any client key."""
    c = {"name": name, "keys": [hash_key(key)]}
    c.update(kw)
    return c


def reload_gateway(gw, timeout=10.0):
    """Write gw.config to its file, send SIGHUP, and wait for the log to say how it went:
    True when reloaded, False when the reload failed (the running configuration stays)."""
    import signal as _signal

    text = gw.stderr()
    ok0, bad0 = text.count('"reloaded '), text.count("reload of ")
    gw.config_path.write_text(gw.config_yaml() + "\n")
    gw.signal(_signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while True:
        text = gw.stderr()
        if text.count("reload of ") > bad0:
            return False
        if text.count('"reloaded ') > ok0:
            return True
        if time.monotonic() > deadline:
            raise AssertionError(f"no reload within {timeout}s:\n{text[-4000:]}")
        time.sleep(0.05)


def restart_gateway(gw):
    """SIGTERM gw (it must exit 0), then start it again with the same file and ports."""
    rc = gw.stop()
    assert rc == 0, f"exit status {rc}:\n{gw.stderr()[-4000:]}"
    gw.cleanup()
    gw.start()
    return gw


class WebhookReceiver:
    """A tiny HTTP server in a thread that records the JSON bodies POSTed to it (answers 204)."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                n = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(n)
                received.append({"path": self.path, "content_type": self.headers.get("Content-Type"), "body": data})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/budget"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self):
        return [json.loads(r["body"]) for r in list(self.received)]

    def wait(self, pred, timeout=10.0):
        """The received JSON bodies matching pred, once there is one (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [b for b in self.bodies() if pred(b)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def ledger_rows(db, where="1", args=()):
    """Rows of the usage ledger's requests table (dicts), oldest first."""
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(f"SELECT * FROM requests WHERE {where} ORDER BY rowid", args)]
    finally:
        con.close()


def wait_ledger_rows(db, n, where="1", args=(), timeout=10.0):
    """The ledger's rows matching where, once there are at least n (bounded)."""
    deadline = time.monotonic() + timeout
    rows = []
    while True:
        if os.path.exists(db):
            try:
                rows = ledger_rows(db, where, args)
            except Exception:  # noqa: BLE001 - the file may be being created
                rows = []
            if len(rows) >= n:
                return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(rows)} ledger rows matching {where} {args}, expected {n}: {rows}")
        time.sleep(0.05)


__all__ += ["client_entry", "reload_gateway", "restart_gateway", "WebhookReceiver", "ledger_rows", "wait_ledger_rows"]
