"""Persistent connections: keep-alive, pipelining, HTTP/1.0, idle timeout, 100-continue."""

import time

from helpers import Conn, parse_responses

H = b"Host: 127.0.0.1\r\n"


def req(method=b"GET", path=b"/healthz", rid=None, extra=b"", body=None, version=b"HTTP/1.1"):
    out = method + b" " + path + b" " + version + b"\r\n" + H
    if rid:
        out += b"x-request-id: " + rid + b"\r\n"
    out += extra
    if body is not None:
        out += b"Content-Length: %d\r\n" % len(body)
    out += b"\r\n"
    if body is not None:
        out += body
    return out


def test_keep_alive_several_requests(sluice):
    with Conn(sluice.port) as c:
        for i in range(5):
            c.send(req(rid=b"ka-%d" % i))
            _, r = c.read_final()
            assert r.status == 200
            assert r.body == b'{"status":"ok"}'
            assert r.header("x-request-id") == "ka-%d" % i
            assert r.header("connection") is None, r
        # Still open: nothing arrives, no close.
        assert c.nothing_within(0.3)


def test_pipelined_requests_answered_in_order(sluice):
    chunked_post = (
        b"POST /healthz HTTP/1.1\r\n" + H + b"x-request-id: p2\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    )
    data = (
        req(rid=b"p1")
        + chunked_post
        + req(path=b"/nowhere", rid=b"p3")
        + req(method=b"HEAD", rid=b"p4")
        + req(method=b"POST", rid=b"p5", body=b"0123456789")
        + req(rid=b"p6", extra=b"Connection: close\r\n")
    )
    with Conn(sluice.port) as c:
        c.send(data)  # one sendall
        raw, closed = c.read_until_close(5)
    assert closed, raw
    responses, rest = parse_responses(raw, head_requests=(3,))
    assert rest == b"", rest
    got = [(r.header("x-request-id"), r.status) for r in responses]
    assert got == [("p1", 200), ("p2", 405), ("p3", 404), ("p4", 200), ("p5", 405), ("p6", 200)], raw
    assert responses[3].body == b""  # HEAD
    assert responses[3].header("content-length") == "15"
    assert [r.closes for r in responses] == [False] * 5 + [True]


def test_pipelined_after_protocol_error_are_dropped(sluice):
    """A bad request ends the connection: what was pipelined after it is not answered."""
    data = req(rid=b"q1") + b"GET /healthz HTTP/1.1\r\nX-A : b\r\n" + H + b"\r\n" + req(rid=b"q3")
    with Conn(sluice.port) as c:
        c.send(data)
        raw, closed = c.read_until_close(5)
    assert closed
    responses, _ = parse_responses(raw)
    assert [r.status for r in responses] == [200, 400], raw
    assert responses[0].header("x-request-id") == "q1"


def test_pipelined_in_fragments(sluice):
    """Requests split at awkward places (one byte at a time) still frame correctly."""
    data = req(rid=b"f1") + req(method=b"POST", rid=b"f2", body=b"abc") + req(rid=b"f3")
    with Conn(sluice.port) as c:
        for i in range(len(data)):
            c.send(data[i : i + 1])
        rs = [c.read_final()[1] for _ in range(3)]
    assert [(r.header("x-request-id"), r.status) for r in rs] == [("f1", 200), ("f2", 405), ("f3", 200)]


def test_connection_close_http11(sluice):
    responses, closed, raw = sluice.exchange(req(extra=b"Connection: close\r\n"))
    assert closed
    assert [r.status for r in responses] == [200]
    assert responses[0].closes


def test_http10_closes_by_default(sluice):
    with Conn(sluice.port) as c:
        c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
        raw, closed = c.read_until_close(3)
    assert closed, "HTTP/1.0 connection without keep-alive was not closed"
    responses, rest = parse_responses(raw)
    assert len(responses) == 1 and rest == b"", raw
    r = responses[0]
    assert r.status == 200 and r.body == b'{"status":"ok"}'
    assert r.header("connection", "close").lower() == "close"
    assert r.header("transfer-encoding") is None


def test_http10_keep_alive(sluice):
    with Conn(sluice.port) as c:
        for i in range(3):
            c.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\nx-request-id: h10-%d\r\n\r\n" % i)
            _, r = c.read_final()
            assert r.status == 200
            assert r.header("x-request-id") == "h10-%d" % i
            assert r.header("connection").lower() == "keep-alive", r
            assert r.header("content-length") == "15"
        assert c.nothing_within(0.3)
        # and a plain 1.0 request on it closes it
        c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
        _, r = c.read_final()
        assert r.status == 200
        raw, closed = c.read_until_close(3)
        assert closed and raw == b""


def test_idle_timeout_closes_keepalive_connection(start_sluice):
    s = start_sluice({"limits": {"idle_timeout": "500ms", "header_timeout": "5s"}})
    with Conn(s.port) as c:
        c.send(req())
        _, r = c.read_final()
        assert r.status == 200
        t0 = time.monotonic()
        data, closed = c.read_until_close(4)
        elapsed = time.monotonic() - t0
    assert closed, "idle connection still open after 4s with idle_timeout 500ms"
    assert data == b"", data  # closed silently, no 408
    assert 0.35 <= elapsed <= 2.0, elapsed


def test_idle_timeout_restarts_after_each_request(start_sluice):
    s = start_sluice({"limits": {"idle_timeout": "600ms"}})
    with Conn(s.port) as c:
        for _ in range(4):  # 4 x 0.35 s > 600 ms in total, but each idle gap is shorter
            c.send(req())
            _, r = c.read_final()
            assert r.status == 200
            time.sleep(0.35)
        c.send(req())
        _, r = c.read_final()
        assert r.status == 200


def test_expect_100_continue(sluice):
    with Conn(sluice.port) as c:
        c.send(b"POST /healthz HTTP/1.1\r\n" + H + b"x-request-id: e1\r\nExpect: 100-continue\r\n"
               b"Content-Length: 5\r\n\r\n")
        r = c.read_response(timeout=3)
        assert r.status == 100, r
        assert r.raw.startswith(b"HTTP/1.1 100 Continue\r\n"), r.raw
        c.send(b"hello")
        r = c.read_response(timeout=3)
        assert r.status == 405 and r.header("x-request-id") == "e1", r
        assert not r.closes
        c.send(req(rid=b"e2"))
        _, r = c.read_final()
        assert r.status == 200 and r.header("x-request-id") == "e2"


def test_expect_100_continue_chunked(sluice):
    with Conn(sluice.port) as c:
        c.send(b"POST /healthz HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
        r = c.read_response(timeout=3)
        assert r.status == 100, r
        c.send(b"3\r\nabc\r\n0\r\n\r\n")
        r = c.read_response(timeout=3)
        assert r.status == 405, r


def test_expect_100_continue_body_already_sent(sluice):
    """The client sent the body with the head: no 100 Continue, just the final response."""
    with Conn(sluice.port) as c:
        c.send(b"POST /healthz HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
        r = c.read_response(timeout=3)
        assert r.status == 405, r
        assert c.nothing_within(0.3)


def test_expect_100_continue_ignored_in_http10(sluice):
    with Conn(sluice.port) as c:
        c.send(b"POST /healthz HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        assert c.nothing_within(0.3)  # no 100 Continue for an HTTP/1.0 client
        c.send(b"hello")
        r = c.read_response(timeout=3)
        assert r.status == 405, r


def test_pipelined_burst_without_reading(sluice):
    """2000 requests in one send, the client reading nothing until all are sent: every one
    is answered, in order (the server must not drop or reorder under backpressure)."""
    n = 2000
    data = b"".join(req(rid=b"b%d" % i) for i in range(n)) + req(rid=b"last", extra=b"Connection: close\r\n")
    with Conn(sluice.port, timeout=20) as c:
        c.send(data)
        raw, closed = c.read_until_close(20)
    assert closed
    responses, rest = parse_responses(raw)
    assert rest == b""
    ids = [r.header("x-request-id") for r in responses]
    assert ids == ["b%d" % i for i in range(n)] + ["last"]
    assert all(r.status == 200 for r in responses)


def test_large_body_then_pipelined_requests(sluice):
    """A body of exactly max_body_bytes (1 MiB in the test config) and two requests behind it
    in the same send."""
    body = bytes(range(256)) * 4096
    data = req(method=b"POST", rid=b"big", body=body) + req(rid=b"n1") + req(rid=b"n2")
    with Conn(sluice.port, timeout=10) as c:
        c.send(data)
        got = [c.read_final()[1] for _ in range(3)]
    assert [(r.header("x-request-id"), r.status) for r in got] == [("big", 405), ("n1", 200), ("n2", 200)]


def test_many_tiny_chunks_then_pipelined_request(sluice):
    body = b"1\r\nx\r\n" * 20000 + b"0\r\n\r\n"
    data = (b"POST /healthz HTTP/1.1\r\n" + H + b"x-request-id: tiny\r\nTransfer-Encoding: chunked\r\n\r\n"
            + body + req(rid=b"after"))
    with Conn(sluice.port, timeout=10) as c:
        c.send(data)
        got = [c.read_final()[1] for _ in range(2)]
    assert [(r.header("x-request-id"), r.status) for r in got] == [("tiny", 405), ("after", 200)]


def test_half_closed_client_still_gets_responses(sluice):
    """The client sends its requests and shuts down its sending side: every response still
    arrives, then the server closes."""
    with Conn(sluice.port) as c:
        c.send(req(rid=b"h1") + req(rid=b"h2") + req(rid=b"h3"))
        c.shutdown_write()
        raw, closed = c.read_until_close(3)
    assert closed
    responses, rest = parse_responses(raw)
    assert [r.header("x-request-id") for r in responses] == ["h1", "h2", "h3"], raw
    assert rest == b""
