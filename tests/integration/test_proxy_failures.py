"""Upstream failures through the proxy (issue 5, point 7), by fault injection in the simulator:
a backend that is down or stalls before answering gives an Azure-shaped 502/504 naming the
backend; a failure after the first byte cuts the client's connection (no fake ending); errors
of the backend pass through (no retries yet); a client that goes away cancels its upstream
transfer; a slow client pauses the upstream transfer (memory stays bounded)."""

import json
import signal
import socket
import threading
import time

import pytest

from proxytools import *  # noqa: F401,F403
from proxytools import BACKEND_KEY, CLIENT_KEY, RecordingBackend, assert_gw_error, azure_backend, chat_body, gw_call, gw_env
from helpers import Conn, Incomplete, parse_response
from simtools import _request_bytes, az, stream, wait_until


def fault(kind, **kw):
    r = {"kind": kind, "probability": 1.0}
    r.update(kw)
    return r


def check_cut(s):
    """A stream that the gateway aborted: a 200 head, chunked, then the connection ends
    without the last chunk, and no [DONE]."""
    assert s.status == 200, s
    assert (s.header("transfer-encoding") or "").lower() == "chunked", s.headers
    assert not s.done, f"a [DONE] after an upstream failure: {s}"
    assert not s.terminated, f"the chunked body ended properly after an upstream failure: {s}"
    assert s.closed and not s.timed_out, s


# ---- before the first byte: 502 / 504 --------------------------------------------------------------


def test_backend_refusing_connections_is_502(proxy):
    t0 = time.monotonic()
    r = proxy.call("POST", az("dead"), chat_body())
    took = time.monotonic() - t0
    err = assert_gw_error(r, 502, "BadGateway")
    assert "aoai-dead" in err["message"], err
    assert took < 1.5, f"502 after {took:.2f}s for a refused connection"
    # the same for a stream request
    s = proxy.stream(az("dead"), chat_body(stream=True))
    assert s.status == 502 and not s.events, s


def test_killed_backend_is_502(start_proxy):
    p = start_proxy()
    assert p.call("POST", az("gpt-4o"), chat_body()).status == 200  # a pooled connection now
    p.sim.expect_rc = None
    p.sim.proc.send_signal(signal.SIGKILL)
    p.sim.proc.wait(5)
    for path in (az("gpt-4o"), az("text-embedding-3-small", "embeddings")):
        r = p.call("POST", path, chat_body() if "chat" in path else {"input": "x"})
        err = assert_gw_error(r, 502, "BadGateway")
        assert "aoai-" in err["message"], err
    assert p.gw.alive()
    # the gateway still answers what it answers itself
    assert p.call("GET", "/v1/models").status == 200


def test_reset_before_the_response_is_502(proxy):
    proxy.sim.add_faults("aoai", [fault("reset", deployment="gpt-4o")])
    r = proxy.call("POST", az("gpt-4o"), chat_body())
    err = assert_gw_error(r, 502, "BadGateway")
    assert "aoai-gpt-4o" in err["message"], err


def test_stalled_headers_past_first_byte_timeout_is_504(proxy):
    # route "short": backend aoai-short, first_byte_timeout 400ms
    proxy.sim.add_faults("aoai", [fault("stall_headers", duration_ms=3000, deployment="gpt-4o")])
    t0 = time.monotonic()
    r = proxy.call("POST", az("short"), chat_body())
    took = time.monotonic() - t0
    err = assert_gw_error(r, 504, "GatewayTimeout")
    assert "aoai-short" in err["message"], err
    assert 0.35 <= took < 2.0, f"504 after {took:.2f}s with a 400ms first_byte_timeout"
    # a stream request too
    s = proxy.stream(az("short"), chat_body(stream=True))
    assert s.status == 504 and not s.events, s


def test_stall_shorter_than_first_byte_timeout_is_served(proxy):
    proxy.sim.add_faults("aoai", [fault("stall_headers", duration_ms=150, deployment="gpt-4o")])
    r = proxy.call("POST", az("short"), chat_body())
    assert r.status == 200, r


# ---- after the first byte: the client connection is cut -------------------------------------------------


def test_cut_stream_cuts_the_client(proxy):
    proxy.sim.add_faults("aoai", [fault("cut_stream", after=3, count=2, deployment="gpt-4o")])
    body = chat_body(max_tokens=40, stream=True)
    s = proxy.stream(az("gpt-4o"), body, timeout=10)
    check_cut(s)
    # exactly what the backend sent before it broke: the same events as asking it directly
    d = stream(proxy.sim_port(), az("gpt-4o"), body, key=BACKEND_KEY)
    assert not d.done and len(d.events) == 3, d
    assert len(s.events) == len(d.events), (s.events, d.events)
    st = proxy.dep("gpt-4o")
    assert st["streams"]["cut"] == 2 and st["streams"]["completed"] == 0, st


def test_cut_non_streamed_body_is_not_a_success(proxy):
    proxy.sim.add_faults("aoai", [fault("cut_stream", deployment="gpt-4o")])
    with Conn(proxy.port, 10) as c:
        c.send(_request_bytes("POST", az("gpt-4o"), chat_body(max_tokens=40), {"api-key": CLIENT_KEY}, None))
        raw, closed = c.read_until_close(10)
    assert closed, raw
    try:
        r, _ = parse_response(raw, at_eof=True)
    except Incomplete:
        r = None
    if r is not None:
        # a complete response is acceptable only as the gateway's own 502 (nothing forwarded yet)
        assert r.status == 502, f"a cut upstream body reached the client as complete: {raw[:600]!r}"
    else:
        assert raw.startswith(b"HTTP/1.1 200"), raw[:300]


def test_idle_timeout_cuts_a_stalled_stream(proxy):
    # route "short": idle_timeout 400ms; the simulator stalls 3 s after 3 events
    proxy.sim.add_faults("aoai", [fault("stall_stream", after=3, duration_ms=3000, deployment="gpt-4o")])
    t0 = time.monotonic()
    s = proxy.stream(az("short"), chat_body(max_tokens=40, stream=True), timeout=10)
    took = time.monotonic() - t0
    check_cut(s)
    assert len(s.events) == 3, s.events
    assert 0.35 <= took < 2.5, f"cut after {took:.2f}s with a 400ms idle_timeout"


def test_total_timeout_cuts_a_long_stream(proxy):
    # route "total": total_timeout 700ms on the slow deployment (100 tokens would take ~5 s)
    t0 = time.monotonic()
    s = proxy.stream(az("total"), chat_body(max_tokens=100, stream=True), timeout=10)
    took = time.monotonic() - t0
    check_cut(s)
    assert len(s.events) >= 3, s.events
    assert 0.6 <= took < 2.5, f"cut after {took:.2f}s with a 700ms total_timeout"


# ---- errors of the backend pass through, once (a single-backend route has nowhere to retry) ----------


@pytest.mark.parametrize("status", [500, 503, 429, 400, 404])
def test_backend_errors_pass_through_without_retry(proxy, status):
    rule = fault("status", status=status, count=2, deployment="gpt-4o")
    if status == 429:
        rule["retry_after_ms"] = 2000
    proxy.sim.add_faults("aoai", [rule])
    r = proxy.call("POST", az("gpt-4o"), chat_body())
    direct = proxy.direct("POST", az("gpt-4o"), chat_body())
    assert direct.status == status, direct
    assert r.status == status, r
    assert r.body == direct.body, (r.body, direct.body)
    assert r.header("content-type") == direct.header("content-type")
    if status == 429:
        # The backend said 2 s; the gateway tells the client when the route's soonest backend
        # reopens, which here is sooner (these backends' max_retry_after is 1 ms: see
        # standard_gateway), and never the backend's own words.
        assert direct.header("retry-after-ms") == "2000", direct.headers
        assert r.header("retry-after") == "1" and r.header("retry-after-ms") == "1", r.headers
    assert r.header("x-ms-region") == "eastus", r.headers
    d = proxy.dep("gpt-4o")
    assert d["requests"] == 2 and d["by_status"] == {str(status): 2}, d


def test_quota_429_passes_through(proxy):
    seen = []
    for _ in range(4):
        r = proxy.call("POST", az("quota"), chat_body(max_tokens=5))
        seen.append(r.status)
        if r.status == 429:
            break
    assert seen[-1] == 429, seen
    assert int(r.header("retry-after")) >= 1 and int(r.header("retry-after-ms")) > 0, r.headers
    assert r.header("x-ratelimit-remaining-requests") is not None, r.headers
    d = proxy.dep("gpt-4o-q")
    assert d["requests"] == len(seen) and d["throttled"] == 1, d


def test_malformed_json_from_the_backend_passes_through(proxy):
    proxy.sim.add_faults("aoai", [fault("malformed_json", count=2, deployment="gpt-4o")])
    r = proxy.call("POST", az("gpt-4o"), chat_body())
    d = proxy.direct("POST", az("gpt-4o"), chat_body())
    assert r.status == d.status == 200, (r, d)
    with pytest.raises(ValueError):
        json.loads(r.body)
    assert len(r.body) == len(d.body), (r.body, d.body)


# ---- the client goes away ------------------------------------------------------------------------------


def open_stream(port, path, body, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(_request_bytes("POST", path, body, {"api-key": CLIENT_KEY}, None))
    return s


def test_client_disconnect_cancels_the_upstream_stream(proxy):
    # gpt-4o-slow: 100 tokens take ~5 s; read a few events, then hang up
    s = open_stream(proxy.port, az("slow"), chat_body(max_tokens=100, stream=True))
    buf = b""
    while buf.count(b"data: ") < 4:
        d = s.recv(65536)
        assert d, buf
        buf += d
    assert buf.startswith(b"HTTP/1.1 200"), buf[:200]
    assert proxy.dep("gpt-4o-slow")["streams"]["started"] == 1
    t0 = time.monotonic()
    s.close()
    wait_until(lambda: proxy.dep("gpt-4o-slow")["streams"]["cut"] == 1, 2.0, what="upstream stream cancelled")
    took = time.monotonic() - t0
    d = proxy.dep("gpt-4o-slow")
    assert d["streams"] == {"started": 1, "completed": 0, "cut": 1}, d
    assert d["completion_tokens"] < 40, d
    assert took < 1.5, f"the upstream stream ran on {took:.2f}s after the client left"
    # the gateway is fine
    assert proxy.call("POST", az("gpt-4o"), chat_body()).status == 200


def test_client_disconnect_while_waiting_for_headers(proxy):
    proxy.sim.add_faults("aoai", [fault("stall_headers", duration_ms=600, count=1, deployment="gpt-4o-slow")])
    s = open_stream(proxy.port, az("slow"), chat_body(max_tokens=50, stream=True))
    time.sleep(0.2)
    s.close()
    # the stalled request would start its ~2.5 s stream at 600 ms; sluice closed the upstream
    # connection when the client left, so by 1.4 s no stream may be running (started == cut)
    time.sleep(1.2)
    d = proxy.dep("gpt-4o-slow")
    assert d["streams"]["completed"] == 0, d
    assert d["streams"]["started"] == d["streams"]["cut"], f"the upstream stream runs on: {d}"
    assert proxy.call("POST", az("gpt-4o"), chat_body()).status == 200


def _read_all(s, timeout=30):
    s.settimeout(timeout)
    chunks = []
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        chunks.append(d)
    return b"".join(chunks)


def test_slow_reader_keeps_memory_bounded(proxy):
    # six streams of ~7 MB each (n=128 choices of up to 159 tokens, as fast as the simulator
    # can), whose clients read nothing for a while: sluice must pause the upstream transfers
    # instead of buffering ~40 MB
    body = chat_body(max_tokens=1000, n=128, stream=True)
    # what sluice asks for (the usage chunk too), less the usage chunk the client did not ask for
    asked = dict(body, stream_options={"include_usage": True})
    direct = stream(proxy.sim_port(), az("gpt-4o-bulk"), asked, key=BACKEND_KEY, timeout=30)
    assert direct.done and direct.terminated, direct
    usage_event = direct.body[direct.body.rindex(b"data: ", 0, len(direct.body) - len(b"data: [DONE]\n\n")) :]
    usage_event = usage_event[: -len(b"data: [DONE]\n\n")]
    assert b'"choices":[],' in usage_event and b'"usage":{' in usage_event, usage_event
    want_events = len(direct.events) - 1
    want_bytes = len(direct.body) - len(usage_event)
    assert want_bytes > 5_000_000, want_bytes
    proxy.sim.reset()
    n = 6
    base = proxy.gw.rss_kib()
    socks = [open_stream(proxy.port, az("bulk"), body, rcvbuf=16384) for _ in range(n)]
    peak = base
    t_end = time.monotonic() + 1.5
    while time.monotonic() < t_end:
        peak = max(peak, proxy.gw.rss_kib())
        time.sleep(0.05)
    growth_mib = (peak - base) / 1024
    print(f"RSS {base / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB while {n} clients did not read")
    results = [None] * n

    def drain(i):
        results[i] = _read_all(socks[i])

    ts = [threading.Thread(target=drain, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    for s in socks:
        s.close()
    assert growth_mib < 10, f"sluice's RSS grew by {growth_mib:.1f} MiB while {n} clients did not read ({n * want_bytes / 2**20:.0f} MiB in flight)"
    for raw in results:
        assert raw is not None
        r, _ = parse_response(raw, at_eof=True)  # Incomplete: the stream did not end properly
        assert r.status == 200, r
        assert r.body.endswith(b"data: [DONE]\n\n"), r.body[-200:]
        assert r.body.count(b"\n\ndata: ") + 1 == want_events, (r.body.count(b"\n\ndata: ") + 1, want_events)
        assert len(r.body) == want_bytes, (len(r.body), want_bytes)
    d = proxy.dep("gpt-4o-bulk")
    assert d["streams"] == {"started": n, "completed": n, "cut": 0}, d


# ---- outgoing proxy from the environment ----------------------------------------------------------


def test_http_proxy_from_the_environment(start_gateway):
    """http_proxy in sluice's environment sends plain-http backends' requests through that
    proxy (read once at start-up); without it they go straight to the backend."""
    with RecordingBackend() as proxy:
        env = gw_env()
        for name in ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
            env.pop(name, None)
        env["http_proxy"] = f"http://127.0.0.1:{proxy.port}"
        backend = azure_backend("far", 9, deployment="gpt-4o")
        backend["url"] = "http://backend.invalid"
        gw = start_gateway([backend], [{"name": "gpt-4o", "backend": "far"}], env=env)
        r = gw_call(gw.port, "POST", az("gpt-4o"), chat_body())
        assert r.status == 200, r
        (seen,) = proxy.wait_requests(1)
        assert seen.target.startswith("http://backend.invalid/openai/deployments/gpt-4o/"), seen
    # Without it: straight to the (unresolvable) backend.
    env.pop("http_proxy")
    gw2 = start_gateway([backend], [{"name": "gpt-4o", "backend": "far"}], env=env)
    r = gw_call(gw2.port, "POST", az("gpt-4o"), chat_body())
    assert r.status == 502 and "backend.invalid" in r.body.decode(), r
