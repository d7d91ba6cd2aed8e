"""Slow clients: a head or a body that does not arrive in time gets 408 and a close."""

import time

from helpers import Conn, assert_error

H = b"Host: 127.0.0.1\r\n"
FAST = {"limits": {"header_timeout": "1s", "request_timeout": "1s", "idle_timeout": "10s"}}


def expect_408_after(c, low, high):
    t0 = time.monotonic()
    r = c.read_response(timeout=high + 2)
    elapsed = time.monotonic() - t0
    assert_error(r, 408)
    data, closed = c.read_until_close(3)
    assert closed and data == b"", data
    assert low <= elapsed <= high, f"408 after {elapsed:.2f}s, expected {low}..{high}s"
    return r


def test_slow_head(start_sluice):
    s = start_sluice(FAST)
    with Conn(s.port) as c:
        c.send(b"GET /healthz HTTP/1.1\r\n" + H)  # no final empty line
        expect_408_after(c, 0.8, 2.0)


def test_slowloris_trickle_does_not_extend_deadline(start_sluice):
    """One byte every 150 ms keeps arriving, but the head deadline runs from its first byte."""
    s = start_sluice(FAST)
    with Conn(s.port) as c:
        t0 = time.monotonic()
        c.send(b"GET /healthz HTTP/1.1\r\n")
        r = None
        for b in H + b"X-Slow: " + b"s" * 100:
            try:
                c.send(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                break
            if not c.nothing_within(0.15):
                break
            assert time.monotonic() - t0 < 3.0, "no 408 after 3 s of trickling"
        r = c.read_response(timeout=3)
        elapsed = time.monotonic() - t0
        assert_error(r, 408)
        assert elapsed <= 2.0, elapsed


def test_slow_body_content_length(start_sluice):
    s = start_sluice(FAST)
    with Conn(s.port) as c:
        c.send(b"POST /healthz HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nabc")
        expect_408_after(c, 0.8, 2.0)


def test_slow_body_chunked(start_sluice):
    s = start_sluice(FAST)
    with Conn(s.port) as c:
        c.send(b"POST /healthz HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhel")
        expect_408_after(c, 0.8, 2.0)


def test_request_in_time_is_served(start_sluice):
    """Sent in pieces, but complete within the deadlines: served normally."""
    s = start_sluice(FAST)
    with Conn(s.port) as c:
        c.send(b"POST /healthz HTTP/1.1\r\n")
        time.sleep(0.3)
        c.send(H + b"Content-Length: 4\r\n\r\n")
        time.sleep(0.3)
        c.send(b"ab")
        time.sleep(0.3)
        c.send(b"cd")
        _, r = c.read_final()
        assert r.status == 405
        assert not r.closes


def test_header_timeout_applies_to_second_request(start_sluice):
    s = start_sluice(FAST)
    with Conn(s.port) as c:
        c.send(b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n")
        _, r = c.read_final()
        assert r.status == 200
        c.send(b"GET /healthz HTTP/1.1\r\n")
        expect_408_after(c, 0.8, 2.0)
