"""Protocol errors: every malformed or unacceptable request gets a JSON error with the right
status and `Connection: close`, and the connection is then closed by the server."""

import pytest

from helpers import REQUEST_ID_RE, Conn, assert_error

def protocol_error(server, data, status, timeout=5.0):
    """Send data; expect exactly one JSON error response, then the server closes."""
    responses, closed, raw = server.exchange(data, timeout=timeout)
    assert closed, f"server did not close the connection; got {raw!r}"
    assert len(responses) == 1, raw
    assert_error(responses[0], status)
    assert REQUEST_ID_RE.match(responses[0].header("x-request-id"))
    return responses[0]


H = b"Host: 127.0.0.1\r\n"


# ---- framing headers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
    ],
    ids=["cl-then-te", "te-then-cl", "cl0-and-te"],
)
def test_content_length_and_transfer_encoding(sluice, headers):
    protocol_error(sluice, b"POST /healthz HTTP/1.1\r\n" + H + headers + b"\r\n0\r\n\r\n", 400)


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Length: 5\r\nContent-Length: 5\r\n",
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        b"Content-Length: 5\r\ncontent-length: 5\r\n",
    ],
    ids=["same", "different", "case"],
)
def test_duplicate_content_length(sluice, headers):
    protocol_error(sluice, b"POST /healthz HTTP/1.1\r\n" + H + headers + b"\r\nhello", 400)


@pytest.mark.parametrize(
    "value",
    [b"abc", b"-1", b"+5", b"5 5", b"5,5", b"0x10", b"", b"1.0", b"99999999999999999999999"],
    ids=["alpha", "negative", "plus", "space", "list", "hex", "empty", "decimal", "overflow"],
)
def test_invalid_content_length(sluice, value):
    protocol_error(
        sluice, b"POST /healthz HTTP/1.1\r\n" + H + b"Content-Length: " + value + b"\r\n\r\nhello", 400
    )


@pytest.mark.parametrize(
    "coding", [b"gzip", b"identity", b"gzip, chunked", b"chunked, chunked", b"deflate"]
)
def test_unsupported_transfer_coding(sluice, coding):
    protocol_error(
        sluice,
        b"POST /healthz HTTP/1.1\r\n" + H + b"Transfer-Encoding: " + coding + b"\r\n\r\n0\r\n\r\n",
        400,
    )


def test_transfer_encoding_in_http10(sluice):
    protocol_error(
        sluice, b"POST /healthz HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400
    )


@pytest.mark.parametrize(
    "body",
    [b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n", b"5\nhello\n0\n\n", b"-5\r\nhello\r\n0\r\n\r\n"],
    ids=["bad-size", "no-crlf-after-data", "bare-lf", "negative"],
)
def test_malformed_chunked_body(sluice, body):
    protocol_error(
        sluice, b"POST /healthz HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + body, 400
    )


# ---- bytes of the head -----------------------------------------------------------------------


def test_obs_fold(sluice):
    protocol_error(sluice, b"GET /healthz HTTP/1.1\r\n" + H + b"X-A: one\r\n  two\r\n\r\n", 400)


def test_obs_fold_with_tab(sluice):
    protocol_error(sluice, b"GET /healthz HTTP/1.1\r\n" + H + b"X-A: one\r\n\ttwo\r\n\r\n", 400)


@pytest.mark.parametrize(
    "data",
    [
        b"GET /healthz HTTP/1.1\r\n" + H + b"X-A: b\rc\r\n\r\n",
        b"GET /healthz HTTP/1.1\r" + H + b"\r\n",
        b"GET /healthz HTTP/1.1\r\n" + H + b"\rX: y\r\n\r\n",
    ],
    ids=["in-value", "after-version", "line-start"],
)
def test_bare_cr(sluice, data):
    protocol_error(sluice, data, 400)


@pytest.mark.parametrize(
    "data",
    [
        b"GET /healthz HTTP/1.1\nHost: a\n\n",
        b"GET /healthz HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n" + H + b"X: y\r\n\n",
    ],
    ids=["everywhere", "after-value", "final-line"],
)
def test_bare_lf(sluice, data):
    protocol_error(sluice, data, 400)


@pytest.mark.parametrize(
    "line",
    [b"X-A : b", b"a(b: c", b": c", b"X\x00A: b", b"X A: b", b"\xc3\xa9: b", b"no-colon"],
    ids=["space-before-colon", "paren", "empty-name", "nul", "space-in-name", "non-ascii", "no-colon"],
)
def test_invalid_header_name(sluice, line):
    protocol_error(sluice, b"GET /healthz HTTP/1.1\r\n" + H + line + b"\r\n\r\n", 400)


def test_nul_in_header_value(sluice):
    protocol_error(sluice, b"GET /healthz HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400)


@pytest.mark.parametrize(
    "line",
    [
        b"GET  /healthz HTTP/1.1",
        b"GET /healthz  HTTP/1.1",
        b"GET /healthz",
        b"GET /heal thz HTTP/1.1",
        b"G(T /healthz HTTP/1.1",
        b"GET healthz HTTP/1.1",
        b"GET /healthz HTTP/1.1 ",
        b"GET /healthz http/1.1",
    ],
    ids=["two-spaces-1", "two-spaces-2", "no-version", "space-in-target", "bad-method",
         "relative-target", "trailing-space", "lowercase-version"],
)
def test_malformed_request_line(sluice, line):
    protocol_error(sluice, line + b"\r\n" + H + b"\r\n", 400)


def test_missing_host_in_http11(sluice):
    protocol_error(sluice, b"GET /healthz HTTP/1.1\r\nX-A: b\r\n\r\n", 400)


def test_duplicate_host(sluice):
    protocol_error(sluice, b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)


def test_missing_host_in_http10_is_fine(sluice):
    responses, closed, raw = sluice.exchange(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert [r.status for r in responses] == [200], raw
    assert closed


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/3.0", b"HTTP/0.9"])
def test_unsupported_version(sluice, version):
    protocol_error(sluice, b"GET /healthz " + version + b"\r\n" + H + b"\r\n", 505)


# ---- sizes -------------------------------------------------------------------------------


def head_of_size(n, path=b"/healthz"):
    """A valid GET head of exactly n bytes (padded with an X-Pad header)."""
    base = b"GET " + path + b" HTTP/1.1\r\n" + H + b"X-Pad: "
    pad = n - len(base) - 4
    assert pad >= 0
    head = base + b"p" * pad + b"\r\n\r\n"
    assert len(head) == n
    return head


def test_oversize_head(sluice):
    """Default test config: max_header_bytes 16KiB."""
    protocol_error(sluice, head_of_size(20000), 431)


def test_oversize_head_many_headers(start_sluice):
    s = start_sluice({"limits": {"max_header_bytes": "2KiB"}})
    hdrs = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 20) for i in range(90))
    protocol_error(s, b"GET /healthz HTTP/1.1\r\n" + H + hdrs + b"\r\n", 431)


def test_head_size_boundary(start_sluice):
    s = start_sluice({"limits": {"max_header_bytes": 1024}})
    with Conn(s.port) as c:
        c.send(head_of_size(1024))
        _, r = c.read_final()
        assert r.status == 200, r
        assert not r.closes
    protocol_error(s, head_of_size(1025), 431)


def test_oversize_head_sent_slowly_in_pieces(start_sluice):
    """The bound holds however the head arrives: 431 once more than max_header_bytes came."""
    s = start_sluice({"limits": {"max_header_bytes": "1KiB"}})
    with Conn(s.port) as c:
        c.send(b"GET /healthz HTTP/1.1\r\n" + H)
        for _ in range(12):
            c.send(b"X-Pad: " + b"p" * 100 + b"\r\n")
        _, r = c.read_final()
        assert_error(r, 431)
        data, closed = c.read_until_close(3)
        assert closed and data == b""


def test_oversize_body_content_length(start_sluice):
    s = start_sluice({"limits": {"max_body_bytes": "1KiB"}})
    # The 413 comes from the head alone: the body is never sent.
    with Conn(s.port) as c:
        c.send(b"POST /healthz HTTP/1.1\r\n" + H + b"Content-Length: 1025\r\n\r\n")
        _, r = c.read_final(timeout=3)
        assert_error(r, 413)
        data, closed = c.read_until_close(3)
        assert closed and data == b""


def test_oversize_body_echoes_client_request_id(start_sluice):
    """The head was complete and valid, so the client's x-request-id identifies the request."""
    s = start_sluice({"limits": {"max_body_bytes": "1KiB"}})
    responses, closed, raw = s.exchange(
        b"POST /healthz HTTP/1.1\r\n" + H + b"x-request-id: big-body-1\r\nContent-Length: 5000\r\n\r\n"
    )
    assert [r.status for r in responses] == [413], raw
    assert responses[0].header("x-request-id") == "big-body-1"


def test_body_size_boundary(start_sluice):
    s = start_sluice({"limits": {"max_body_bytes": "1KiB"}})
    with Conn(s.port) as c:
        c.send(b"POST /healthz HTTP/1.1\r\n" + H + b"Content-Length: 1024\r\n\r\n" + b"b" * 1024)
        _, r = c.read_final()
        assert_error(r, 405, close=False)  # body read whole, connection kept
        assert not r.closes
        c.send(b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n")
        _, r = c.read_final()
        assert r.status == 200


def test_oversize_body_chunked(start_sluice):
    """Chunks that add up to more than max_body_bytes."""
    s = start_sluice({"limits": {"max_body_bytes": "1KiB"}})
    chunk = b"200\r\n" + b"c" * 0x200 + b"\r\n"
    protocol_error(
        s,
        b"POST /healthz HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n",
        413,
    )


def test_oversize_body_single_huge_chunk(start_sluice):
    """One chunk announced larger than the limit is refused before its data arrives."""
    s = start_sluice({"limits": {"max_body_bytes": "1KiB"}})
    with Conn(s.port) as c:
        c.send(b"POST /healthz HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nfffff\r\nabc")
        _, r = c.read_final(timeout=3)
        assert_error(r, 413)


def test_chunked_body_at_limit(start_sluice):
    s = start_sluice({"limits": {"max_body_bytes": "1KiB"}})
    chunk = b"200\r\n" + b"c" * 0x200 + b"\r\n"
    with Conn(s.port) as c:
        c.send(b"POST /healthz HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 2
               + b"0\r\nX-Trailer: t\r\n\r\n")
        _, r = c.read_final()
        assert_error(r, 405, close=False)
        assert not r.closes


# ---- Expect --------------------------------------------------------------------------------


def test_expect_unsupported_value(sluice):
    protocol_error(
        sluice,
        b"POST /healthz HTTP/1.1\r\n" + H + b"Expect: 200-ok\r\nContent-Length: 3\r\n\r\nabc",
        417,
    )


def test_expect_continue_too_large_gets_413_without_100(start_sluice):
    s = start_sluice({"limits": {"max_body_bytes": "1KiB"}})
    with Conn(s.port) as c:
        c.send(b"POST /healthz HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 2048\r\n\r\n")
        r = c.read_response(timeout=3)
        assert r.status == 413, r  # first response: no 100 Continue before it
        assert_error(r, 413)
        data, closed = c.read_until_close(3)
        assert closed and data == b""


# ---- error responses on the ordinary paths ----------------------------------------------------


@pytest.mark.parametrize("which", ["public", "admin"])
def test_not_found_json(sluice, which):
    port = sluice.port if which == "public" else sluice.admin_port
    with Conn(port) as c:
        c.send(b"GET /no/such/path?x=1 HTTP/1.1\r\n" + H + b"\r\n")
        _, r = c.read_final()
        assert_error(r, 404, close=False)
        assert not r.closes  # a 404 is not a protocol error: the connection stays usable
        c.send(b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n")
        _, r = c.read_final()
        assert r.status == 200


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"])
def test_healthz_other_methods_405(sluice, method):
    with Conn(sluice.port) as c:
        c.send(method + b" /healthz HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n")
        _, r = c.read_final()
        assert_error(r, 405, close=False)
        assert r.header("allow") == "GET, HEAD"
