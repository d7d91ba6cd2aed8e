"""Headers through the proxy: x-request-id propagated both ways, the backend's rate-limit and
diagnostic headers passed to the client, x-sluice-backend (switchable), hop-by-hop headers
stripped in both directions, the upstream Host and query string exact."""

import json
import re

import pytest

from proxytools import *  # noqa: F401,F403
from proxytools import (
    BACKEND_KEY,
    CANNED_BODY,
    CANNED_HEADERS,
    CLIENT_KEY,
    RecordingBackend,
    azure_backend,
    chat_body,
    gw_call,
    gw_stream,
)
from helpers import REQUEST_ID_RE
from simtools import az, chat_dep

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PASSED = ["apim-request-id", "x-ms-region", "openai-processing-ms"] + [
    k for k, _ in CANNED_HEADERS if k.startswith("x-ratelimit-")
]


# ---- with the simulator ------------------------------------------------------------------------------


def test_client_request_id_is_propagated(proxy):
    rid = "client-req-0001.abc_DEF:9"
    r = proxy.call("POST", az("gpt-4o"), chat_body(), headers={"x-request-id": rid})
    assert r.status == 200, r
    assert r.header_all("x-request-id") == [rid], r.headers
    seen = proxy.wait_sim_access(lambda x: x["method"] == "POST")
    assert [x["request_id"] for x in seen] == [rid], seen


def test_generated_request_id_is_the_one_sent_upstream(proxy):
    r = proxy.call("POST", az("gpt-4o"), chat_body())
    assert r.status == 200, r
    (rid,) = r.header_all("x-request-id")
    assert REQUEST_ID_RE.match(rid), rid
    seen = proxy.wait_sim_access(lambda x: x["method"] == "POST")
    assert [x["request_id"] for x in seen] == [rid], seen
    # and sluice's own access line has it too
    acc = proxy.gw.wait_access(lambda x: x.get("request_id") == rid)
    assert len(acc) == 1 and acc[0]["status"] == 200, acc


def test_insane_request_id_is_replaced(proxy):
    r = proxy.call("POST", az("gpt-4o"), chat_body(), headers={"x-request-id": "a b<script>"})
    assert r.status == 200, r
    (rid,) = r.header_all("x-request-id")
    assert REQUEST_ID_RE.match(rid), rid
    seen = proxy.wait_sim_access(lambda x: x["method"] == "POST")
    assert [x["request_id"] for x in seen] == [rid], seen


def test_backend_headers_pass_through(start_proxy):
    dep = chat_dep("gpt-4o", tpm=100000, rpm=1000)
    ep = {"name": "aoai", "region": "swedencentral", "flavor": "azure", "api_keys": [BACKEND_KEY], "deployments": [dep]}
    p = start_proxy(
        sim_endpoints=[ep],
        backends=lambda sim: [azure_backend("sweden", sim.port("aoai"), deployment="gpt-4o")],
        routes=[{"name": "gpt-4o", "backend": "sweden"}],
    )
    r = p.call("POST", az("gpt-4o"), chat_body(max_tokens=10))
    assert r.status == 200, r
    assert r.header("x-ms-region") == "swedencentral", r.headers
    assert UUID_RE.match(r.header("apim-request-id") or ""), r.headers
    assert re.match(r"^\d+\.\d{3}$", r.header("openai-processing-ms") or ""), r.headers
    assert r.header("x-ratelimit-limit-requests") == "1000", r.headers
    assert r.header("x-ratelimit-limit-tokens") == "100000", r.headers
    rem_r = int(r.header("x-ratelimit-remaining-requests"))
    rem_t = int(r.header("x-ratelimit-remaining-tokens"))
    assert rem_r == 999, r.headers
    assert 100000 - 200 < rem_t < 100000, r.headers
    # the second request sees the quota go down: the values are the backend's, per request
    r2 = p.call("POST", az("gpt-4o"), chat_body(max_tokens=10))
    assert int(r2.header("x-ratelimit-remaining-requests")) == 998, r2.headers
    assert r2.header("apim-request-id") != r.header("apim-request-id")
    assert r.header("x-sluice-backend") == "sweden"
    # and on a stream
    s = p.stream(az("gpt-4o"), chat_body(stream=True))
    assert s.status == 200 and s.done, s
    assert s.header("x-ms-region") == "swedencentral" and s.header("x-sluice-backend") == "sweden", s.headers
    assert int(s.header("x-ratelimit-remaining-requests")) == 997, s.headers


def test_x_sluice_backend_names_the_backend(proxy):
    for path, body, want in [
        (az("gpt-4o"), chat_body(), "aoai-gpt-4o"),
        (az("chat"), chat_body(), "aoai-gpt-4o"),
        ("/v1/chat/completions", chat_body(model="gpt-4o-mini"), "aoai-mini"),
        (az("text-embedding-3-small", "embeddings"), {"input": "x"}, "aoai-embed"),
    ]:
        r = proxy.call("POST", path, body)
        assert r.status == 200, r
        assert r.header_all("x-sluice-backend") == [want], (path, r.headers)
    # a backend error passes through, still labelled; sluice's own errors are not
    proxy.sim.add_faults("aoai", [{"kind": "status", "status": 503, "count": 1, "probability": 1.0}])
    r = proxy.call("POST", az("gpt-4o"), chat_body())
    assert r.status == 503 and r.header("x-sluice-backend") == "aoai-gpt-4o", r
    r = proxy.call("POST", az("nope"), chat_body())
    assert r.status == 404 and r.header("x-sluice-backend") is None, r


def test_backend_header_can_be_switched_off(start_proxy):
    p = start_proxy(gw={"backend_header": False})
    r = p.call("POST", az("gpt-4o"), chat_body())
    assert r.status == 200, r
    assert r.header_all("x-sluice-backend") == [], r.headers
    s = p.stream(az("gpt-4o"), chat_body(stream=True))
    assert s.status == 200 and s.done, s
    assert s.header("x-sluice-backend") is None, s.headers


# ---- exactly what crosses the gateway (a recording backend) ------------------------------------------


@pytest.fixture
def recorded(start_gateway):
    be = RecordingBackend()
    gw = start_gateway(
        [azure_backend("rec", be.port, deployment="gpt-4o-up")],
        [{"name": "gpt-4o", "backend": "rec"}, {"name": "pinned", "backend": "rec", "api_version": "2024-06-01"}],
    )
    yield gw, be
    be.close()


def test_upstream_request_is_exact(recorded):
    gw, be = recorded
    body = json.dumps(chat_body(model="whatever")).encode()
    r = gw_call(
        gw.port,
        "POST",
        "/openai/deployments/gpt-4o/chat/completions?api-version=2024-02-15-preview&foo=bar%20baz",
        body,
        headers={
            "x-request-id": "rid-exact-1",
            "User-Agent": "AzureOpenAI/JS 4.0",
            "OpenAI-Beta": "assistants=v2",
            "Accept-Encoding": "gzip, br",
        },
    )
    assert r.status == 200, r
    (req,) = be.wait_requests(1)
    assert req.method == "POST"
    assert req.target == "/openai/deployments/gpt-4o-up/chat/completions?api-version=2024-02-15-preview&foo=bar%20baz", req
    assert req.body == body, "the request body was not forwarded as sent"
    assert req.header("host") == f"127.0.0.1:{be.port}", req
    assert req.header("content-type") == "application/json", req
    assert req.header("x-request-id") == "rid-exact-1", req
    assert req.header("api-key") == BACKEND_KEY, req
    assert req.header("openai-beta") == "assistants=v2", req
    assert req.header("user-agent") == "AzureOpenAI/JS 4.0", req
    # answers must come back uncompressed (docs/api.md): the client's Accept-Encoding stays here
    assert req.header("accept-encoding") in (None, "identity"), req
    # the response: the backend's body, status, and the headers clients read
    assert r.body == json.dumps(CANNED_BODY).encode(), r
    for k in PASSED:
        assert r.header(k) == dict(CANNED_HEADERS)[k], (k, r.headers)
    assert r.header_all("x-request-id") == ["rid-exact-1"], r.headers
    assert r.header("x-sluice-backend") == "rec"


def test_pinned_api_version_replaces_the_clients(recorded):
    gw, be = recorded
    r = gw_call(gw.port, "POST", "/openai/deployments/pinned/chat/completions?foo=1&api-version=2024-02-15-preview&bar=2", chat_body())
    assert r.status == 200, r
    (req,) = be.wait_requests(1)
    assert req.path == "/openai/deployments/gpt-4o-up/chat/completions", req
    params = req.query.split("&")
    assert "api-version=2024-06-01" in params, req
    assert not any("2024-02-15-preview" in x for x in params), req
    assert [x for x in params if not x.startswith("api-version=")] == ["foo=1", "bar=2"], req


def test_hop_by_hop_request_headers_are_not_forwarded(recorded):
    gw, be = recorded
    r = gw_call(
        gw.port,
        "POST",
        az("gpt-4o"),
        chat_body(),
        headers={
            "Connection": "keep-alive, X-Client-Hop",
            "X-Client-Hop": "must-not-pass",
            "Keep-Alive": "timeout=30",
            "Proxy-Authorization": "Basic c2VjcmV0OnNlY3JldA==",
            "Proxy-Connection": "keep-alive",
            "X-End-To-End": "passes",
        },
    )
    assert r.status == 200, r
    (req,) = be.wait_requests(1)
    names = {k.lower() for k, _ in req.headers}
    passed = [h for h in ("x-client-hop", "keep-alive", "proxy-authorization", "proxy-connection") if h in names]
    assert passed == [], f"hop-by-hop request headers forwarded: {passed}; upstream got {req.headers}"
    conn = (req.header("connection") or "").lower()
    assert "x-client-hop" not in conn, req
    assert req.header("x-end-to-end") == "passes", req


def test_hop_by_hop_response_headers_are_not_forwarded(recorded):
    gw, be = recorded
    r = gw_call(gw.port, "POST", az("gpt-4o"), chat_body())
    assert r.status == 200, r
    names = {k.lower() for k, _ in r.headers}
    passed = [h for h in ("x-resp-hop", "keep-alive", "proxy-authenticate") if h in names]
    assert passed == [], f"hop-by-hop response headers forwarded: {passed}; client got {r.headers}"
    assert "x-resp-hop" not in (r.header("connection") or "").lower(), r.headers
    # exactly one framing header, matching the body
    assert int(r.header("content-length")) == len(r.body), r.headers
    assert r.header("transfer-encoding") is None, r.headers


def test_injected_crlf_in_query_stays_encoded(recorded):
    gw, be = recorded
    r = gw_call(gw.port, "POST", "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21%0d%0aX-Injected:%201", chat_body())
    assert r.status in (200, 400), r
    for req in be.requests:
        assert "\r" not in req.target and "\n" not in req.target, req
        assert req.header("x-injected") is None, req


def test_keys_with_bearer_and_api_key_both_present(recorded):
    gw, be = recorded
    # a valid api-key plus a bogus Authorization: either refused, or served with the backend key only
    r = gw_call(gw.port, "POST", az("gpt-4o"), chat_body(), headers={"Authorization": "Bearer other-" + CLIENT_KEY})
    if r.status == 200:
        (req,) = be.wait_requests(1)
        assert req.header("authorization") is None and req.header("api-key") == BACKEND_KEY, req
    else:
        assert r.status == 401, r
        assert be.requests == []


def test_stream_headers_exact(recorded):
    gw, be = recorded

    def sse(req):
        data = b"data: {\"x\":1}\n\ndata: [DONE]\n\n"
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
            "x-ms-region: recordregion\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        return head.encode() + b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n"

    be.respond = sse
    s = gw_stream(gw.port, az("gpt-4o"), chat_body(stream=True))
    assert s.status == 200 and s.done and s.terminated, s
    assert s.header("content-type") == "text/event-stream; charset=utf-8", s.headers
    assert s.header("x-ms-region") == "recordregion", s.headers
    assert [t for _, t in s.events] == ['{"x":1}', "[DONE]"], s.events
    assert s.body == b"data: {\"x\":1}\n\ndata: [DONE]\n\n"
