"""Health endpoints, request ids, access log, graceful shutdown, start-up failures, workers,
and a few checks with a real client (curl)."""

import json
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from helpers import REQUEST_ID_RE, Conn, assert_error, free_ports, parse_responses

H = b"Host: 127.0.0.1\r\n"


# ---- /healthz ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["public", "admin"])
def test_healthz(sluice, which):
    port = sluice.port if which == "public" else sluice.admin_port
    r = sluice.get("/healthz", port=port)
    assert r.status == 200
    assert r.header("content-type") == "application/json"
    assert json.loads(r.body) == {"status": "ok"}
    assert r.header("content-length") == str(len(r.body))
    assert REQUEST_ID_RE.match(r.header("x-request-id"))
    assert r.header("date")


@pytest.mark.parametrize("which", ["public", "admin"])
def test_healthz_head(sluice, which):
    port = sluice.port if which == "public" else sluice.admin_port
    with Conn(port) as c:
        c.send(b"HEAD /healthz HTTP/1.1\r\n" + H + b"\r\nGET /healthz HTTP/1.1\r\n" + H + b"\r\n")
        _, head = c.read_final(head_request=True)
        _, get = c.read_final()
    assert head.status == 200 and head.body == b""
    assert head.header("content-length") == "15"
    assert get.status == 200 and get.body == b'{"status":"ok"}'  # HEAD sent no body bytes


def test_healthz_with_query_and_absolute_form(sluice):
    assert sluice.get("/healthz?verbose=1").status == 200
    assert sluice.get(f"http://127.0.0.1:{sluice.port}/healthz").status == 200


@pytest.mark.parametrize("which", ["public", "admin"])
def test_healthz_post_405(sluice, which):
    port = sluice.port if which == "public" else sluice.admin_port
    r = sluice.get("/healthz", port=port, method="DELETE")
    assert_error(r, 405)  # our request said Connection: close
    assert r.header("allow") == "GET, HEAD"


def test_unknown_path_404_admin(sluice):
    r = sluice.get("/metrics-nope", port=sluice.admin_port)
    assert_error(r, 404)


# ---- x-request-id --------------------------------------------------------------------------


SANE_128 = ("Az09._:-" * 16)[:128]


@pytest.mark.parametrize("rid", ["a", "abc-123", "req:1.2_3", SANE_128], ids=["1", "dash", "punct", "128"])
def test_request_id_echoed_when_sane(sluice, rid):
    r = sluice.get(headers=[("x-request-id", rid)])
    assert r.header("x-request-id") == rid


@pytest.mark.parametrize(
    "rid",
    [SANE_128 + "x", "has space", "slash/no", 'quo"te', "semi;colon", "brace{", "ünï"],
    ids=["129", "space", "slash", "quote", "semicolon", "brace", "non-ascii"],
)
def test_request_id_replaced_when_not_sane(sluice, rid):
    r = sluice.get(headers=[("x-request-id", rid)])
    got = r.header("x-request-id")
    assert REQUEST_ID_RE.match(got), got


def test_request_id_empty_replaced(sluice):
    with Conn(sluice.port) as c:
        c.send(b"GET /healthz HTTP/1.1\r\n" + H + b"x-request-id:\r\n\r\n")
        _, r = c.read_final()
    assert REQUEST_ID_RE.match(r.header("x-request-id"))


def test_request_ids_are_unique(sluice):
    with Conn(sluice.port) as c:
        c.send((b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n") * 20)
        ids = [c.read_final()[1].header("x-request-id") for _ in range(20)]
    assert all(REQUEST_ID_RE.match(i) for i in ids), ids
    assert len(set(ids)) == 20


def test_request_id_on_protocol_error(sluice):
    responses, closed, raw = sluice.exchange(b"GET /healthz HTTP/9.9\r\n" + H + b"\r\n")
    assert len(responses) == 1
    assert REQUEST_ID_RE.match(responses[0].header("x-request-id"))


# ---- access log ----------------------------------------------------------------------------


def test_access_log_fields_and_no_secrets(sluice):
    secrets = ["SECRET-API-KEY-7f3a", "SECRET-BEARER-91bc", "SECRET-QUERY-55de"]
    with Conn(sluice.port) as c:
        c.send(
            b"GET /healthz?api-key=SECRET-QUERY-55de HTTP/1.1\r\n" + H
            + b"api-key: SECRET-API-KEY-7f3a\r\n"
            + b"Authorization: Bearer SECRET-BEARER-91bc\r\n"
            + b"x-request-id: log-test-1\r\n\r\n"
        )
        _, r = c.read_final()
        assert r.status == 200
        c.send(b"POST /nothing-here HTTP/1.1\r\n" + H + b"x-request-id: log-test-2\r\n"
               b"api-key: SECRET-API-KEY-7f3a\r\nContent-Length: 3\r\n\r\nabc")
        _, r2 = c.read_final()
        assert r2.status == 404
    lines = sluice.wait_access(lambda x: x.get("request_id") == "log-test-2")
    assert lines, sluice.stderr()
    by_id = {x["request_id"]: x for x in sluice.access_lines()}
    a = by_id["log-test-1"]
    assert set(a) >= {"time", "type", "listener", "request_id", "remote", "method", "path",
                      "status", "bytes", "duration_us"}, a
    assert (a["type"], a["listener"], a["method"], a["path"], a["status"]) == (
        "access", "public", "GET", "/healthz", 200)
    assert a["remote"].startswith("127.0.0.1"), a
    assert a["bytes"] == len(r.raw), (a, len(r.raw))
    assert isinstance(a["duration_us"], int) and 0 <= a["duration_us"] < 5_000_000
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", a["time"]), a
    b = by_id["log-test-2"]
    assert (b["method"], b["path"], b["status"], b["listener"]) == ("POST", "/nothing-here", 404, "public")
    text = sluice.stderr()
    for s in secrets:
        assert s not in text, f"{s} leaked into the log"


def test_access_log_one_line_per_request(sluice):
    with Conn(sluice.port) as c:
        for i in range(5):
            c.send(b"GET /healthz HTTP/1.1\r\n" + H + b"x-request-id: once-%d\r\n\r\n" % i)
            c.read_final()
    sluice.wait_access(lambda x: x.get("request_id") == "once-4")
    ids = [x["request_id"] for x in sluice.access_lines() if x["request_id"].startswith("once-")]
    assert ids == ["once-%d" % i for i in range(5)]


def test_access_log_admin_listener(sluice):
    sluice.get("/healthz", port=sluice.admin_port, headers=[("x-request-id", "adm-1")])
    lines = sluice.wait_access(lambda x: x.get("request_id") == "adm-1")
    assert len(lines) == 1, sluice.stderr()
    assert lines[0]["listener"] == "admin" and lines[0]["status"] == 200


def test_access_log_protocol_error(sluice):
    sluice.exchange(b"GET /healthz HTTP/1.1\r\nContent-Length: x\r\n" + H + b"\r\n")
    lines = sluice.wait_access(lambda x: x.get("status") == 400)
    assert len(lines) == 1, sluice.stderr()
    assert lines[0]["listener"] == "public"


def test_access_log_off(start_sluice):
    s = start_sluice({"log": {"access": False}})
    s.get("/healthz", headers=[("x-request-id", "quiet-1")])
    s.stop()
    assert s.access_lines() == []
    # other log lines still come, as JSON
    assert s.log_lines(), s.stderr()


def test_log_lines_are_json(start_sluice):
    s = start_sluice()
    s.get("/healthz")
    s.stop()
    for line in s.stderr().splitlines():
        if line.strip():
            obj = json.loads(line)  # every line is JSON
            assert "time" in obj, line


# ---- graceful shutdown -----------------------------------------------------------------------


def connection_refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_with_idle_keepalive_connections(start_sluice, sig):
    s = start_sluice({"limits": {"shutdown_timeout": "10s"}})
    conns = []
    for port in [s.port] * 5 + [s.admin_port] * 2:
        c = s.conn(port)
        c.send(b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n")
        assert c.read_final()[1].status == 200
        conns.append(c)
    t0 = time.monotonic()
    s.signal(sig)
    rc = s.wait(5)
    elapsed = time.monotonic() - t0
    assert rc == 0, s.stderr()
    assert elapsed < 2.0, f"idle connections held shutdown for {elapsed:.2f}s"
    for c in conns:
        assert c.wait_closed(2), "idle connection not closed at shutdown"
    assert connection_refused(s.port) and connection_refused(s.admin_port)


def test_shutdown_with_half_sent_head_waits_for_deadline(start_sluice):
    s = start_sluice({"limits": {"shutdown_timeout": "1s", "header_timeout": "10s"}})
    c = s.conn()
    c.send(b"GET /healthz HTTP/1.1\r\n" + H)  # head not finished
    time.sleep(0.1)
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert s.proc.poll() is None, "exited before the in-flight request's deadline"
    assert connection_refused(s.port), "still accepting connections during shutdown"
    assert connection_refused(s.admin_port), "admin still accepting connections during shutdown"
    rc = s.wait(5)
    elapsed = time.monotonic() - t0
    assert rc == 0, s.stderr()
    assert 0.8 <= elapsed <= 2.5, elapsed
    data, closed = c.read_until_close(2)
    assert closed


def test_shutdown_lets_in_flight_request_finish(start_sluice):
    """A request whose head was half-sent when SIGTERM came is still answered if it completes
    before the deadline, with Connection: close."""
    s = start_sluice({"limits": {"shutdown_timeout": "3s", "header_timeout": "10s"}})
    c = s.conn()
    c.send(b"GET /healthz HTTP/1.1\r\n" + H)
    time.sleep(0.1)
    s.signal(signal.SIGTERM)
    time.sleep(0.3)
    c.send(b"x-request-id: late-1\r\n\r\n")
    _, r = c.read_final(timeout=3)
    assert r.status == 200 and r.header("x-request-id") == "late-1"
    assert r.closes
    data, closed = c.read_until_close(2)
    assert closed and data == b""
    c.close()
    t0 = time.monotonic()
    rc = s.wait(3)
    assert rc == 0, s.stderr()
    assert time.monotonic() - t0 < 1.0  # exits once the last connection is gone


def test_shutdown_body_in_flight(start_sluice):
    s = start_sluice({"limits": {"shutdown_timeout": "3s"}})
    c = s.conn()
    c.send(b"POST /healthz HTTP/1.1\r\n" + H + b"Content-Length: 6\r\n\r\nabc")
    time.sleep(0.1)
    s.signal(signal.SIGTERM)
    time.sleep(0.3)
    c.send(b"def")
    _, r = c.read_final(timeout=3)
    assert r.status == 405 and r.closes
    assert s.wait(3) == 0


# ---- start-up failures -------------------------------------------------------------------------


def test_port_in_use(start_sluice):
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        busy = blocker.getsockname()[1]
        (admin,) = free_ports(1)
        s = start_sluice(wait=False, expect_rc=None, ports=(busy, admin))
        rc = s.wait(10)
        assert rc == 1, f"exit status {rc}:\n{s.stderr()}"
        err = s.stderr()
        assert f"127.0.0.1:{busy}" in err, err
        assert re.search(r"in use", err, re.I), err
        assert not re.search(r"Segmentation|Aborted|core dumped", err), err
    finally:
        blocker.close()


def test_admin_port_in_use(start_sluice):
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        busy = blocker.getsockname()[1]
        (port,) = free_ports(1)
        s = start_sluice(wait=False, expect_rc=None, ports=(port, busy))
        rc = s.wait(10)
        assert rc == 1, f"exit status {rc}:\n{s.stderr()}"
        err = s.stderr()
        assert f"127.0.0.1:{busy}" in err and re.search(r"in use", err, re.I), err
        assert connection_refused(port)  # the public port it had opened was released
    finally:
        blocker.close()


def test_second_instance_on_same_ports_refused(start_sluice):
    """SO_REUSEPORT is for a process's own workers: another sluice must not silently share
    (and steal half the connections of) a running one's ports."""
    first = start_sluice()
    second = start_sluice(wait=False, expect_rc=None, ports=(first.port, first.admin_port))
    rc = second.wait(5)
    if rc is None:
        second.stop()
    assert rc == 1, f"second instance on the same ports did not fail (status {rc}):\n{second.stderr()}"
    assert re.search(r"in use", second.stderr(), re.I), second.stderr()


# ---- workers ---------------------------------------------------------------------------------


def listening_sockets(port):
    """How many LISTEN sockets are bound to 127.0.0.1:port (from /proc/net/tcp)."""
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, state = parts[1], parts[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port and addr == "0100007F":
                n += 1
    return n


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_one_listener_per_worker(start_sluice, workers):
    s = start_sluice({"workers": workers})
    assert listening_sockets(s.port) == workers
    assert listening_sockets(s.admin_port) == 1


def test_workers_serve_many_concurrent_connections(start_sluice):
    s = start_sluice({"workers": 2})
    n_conns, n_reqs = 60, 5
    errors = []
    ids = []
    lock = threading.Lock()

    def client(i):
        try:
            with Conn(s.port, timeout=10) as c:
                for j in range(n_reqs):
                    rid = f"w{i}-{j}"
                    c.send(f"GET /healthz HTTP/1.1\r\nHost: x\r\nx-request-id: {rid}\r\n\r\n".encode())
                    _, r = c.read_final()
                    if r.status != 200 or r.header("x-request-id") != rid:
                        errors.append((rid, r))
                    with lock:
                        ids.append(rid)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((i, repr(e)))

    # All connections open at once, then all send.
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads), "clients still running after 20s"
    assert errors == []
    assert len(ids) == n_conns * n_reqs


def test_many_connections_open_at_once(start_sluice):
    s = start_sluice({"workers": 2})
    conns = [s.conn() for _ in range(200)]
    for i, c in enumerate(conns):
        c.send(b"GET /healthz HTTP/1.1\r\n" + H + b"x-request-id: m%d\r\n\r\n" % i)
    for i, c in enumerate(conns):
        _, r = c.read_final(timeout=10)
        assert r.status == 200 and r.header("x-request-id") == "m%d" % i


def test_max_connections(start_sluice):
    """Over max_connections (per worker) a new connection is closed without an answer; once
    one closes there is room again."""
    s = start_sluice({"workers": 1, "limits": {"max_connections": 3}})
    served = []
    for i in range(3):
        c = s.conn()
        c.send(b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n")
        assert c.read_final()[1].status == 200
        served.append(c)
    extra = s.conn()
    try:
        extra.send(b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n")
    except OSError:
        pass
    data, closed = extra.read_until_close(3)
    assert closed and data == b"", data
    served[0].close()
    deadline = time.monotonic() + 3
    while True:  # the server notices the close asynchronously
        c = s.conn()
        try:
            c.send(b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n")
            _, r = c.read_final(timeout=1)
            break
        except (AssertionError, OSError):
            assert time.monotonic() < deadline, "no room after a connection closed"
            time.sleep(0.05)
    assert r.status == 200
    for c in served[1:]:  # the others were never disturbed
        c.send(b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n")
        assert c.read_final()[1].status == 200


def test_client_disconnects_mid_request(sluice):
    """Clients that vanish mid-head, mid-body or mid-chunk leave the server healthy."""
    for data in (
        b"GET /healthz HTTP/1.1\r\nHo",
        b"POST /healthz HTTP/1.1\r\n" + H + b"Content-Length: 100000\r\n\r\n" + b"x" * 5000,
        b"POST /healthz HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n10\r\nabc",
        b"POST /healthz HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 10\r\n\r\n",
    ):
        c = Conn(sluice.port)
        c.send(data)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()  # RST
    assert sluice.get("/healthz").status == 200


# ---- curl --------------------------------------------------------------------------------


def curl(*args, timeout=20):
    p = subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, timeout=timeout)
    return p


def test_curl_healthz(sluice):
    p = curl("-i", f"http://127.0.0.1:{sluice.port}/healthz")
    assert p.returncode == 0, p.stderr
    responses, rest = parse_responses(p.stdout)
    assert len(responses) == 1 and rest == b"", p.stdout
    r = responses[0]
    assert r.status == 200 and json.loads(r.body) == {"status": "ok"}
    assert REQUEST_ID_RE.match(r.header("x-request-id"))


def test_curl_head_and_http10(sluice):
    p = curl("-I", f"http://127.0.0.1:{sluice.port}/healthz")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(b"HTTP/1.1 200 OK\r\n"), p.stdout
    p = curl("--http1.0", "-i", f"http://127.0.0.1:{sluice.admin_port}/healthz")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(b"HTTP/1.1 200 OK\r\n") and p.stdout.endswith(b'{"status":"ok"}'), p.stdout


def test_curl_chunked_upload_keeps_framing(sluice, tmp_path):
    """A chunked upload to /healthz is read whole (405) and the connection is reused for the
    second URL: the framing after the body was kept."""
    body = tmp_path / "body.bin"
    body.write_bytes(bytes(range(256)) * 1024)  # 256 KiB
    url = f"http://127.0.0.1:{sluice.port}/healthz"
    p = curl("-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\\n",
             "-H", "Transfer-Encoding: chunked", "-H", "Expect:", "--data-binary", f"@{body}", url, url)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().split("\n")[:2] == ["405 1", "405 0"], p.stdout


def test_curl_expect_100_continue(sluice, tmp_path):
    body = tmp_path / "body.bin"
    body.write_bytes(b"x" * 5000)
    p = curl("-v", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect: 100-continue",
             "--data-binary", f"@{body}", f"http://127.0.0.1:{sluice.port}/healthz")
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"405"
    assert b"HTTP/1.1 100 Continue" in p.stderr, p.stderr


def test_curl_oversize_chunked_upload(start_sluice, tmp_path):
    s = start_sluice({"limits": {"max_body_bytes": "64KiB"}})
    body = tmp_path / "big.bin"
    body.write_bytes(b"y" * (256 * 1024))
    p = curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "Transfer-Encoding: chunked",
             "-H", "Expect:", "--data-binary", f"@{body}", f"http://127.0.0.1:{s.port}/healthz")
    assert p.stdout == b"413", (p.stdout, p.stderr)
