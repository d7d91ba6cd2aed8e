"""Bad input at the proxy: deployment names that try to leave their path segment, oversize
bodies, CR/LF and NUL in header values. None of it may reach the backend."""

import json

import pytest

from proxytools import *  # noqa: F401,F403
from proxytools import CLIENT_KEY, assert_gw_error, chat_body, raw_exchange
from helpers import parse_response
from simtools import az

Q = "?api-version=2024-10-21"

BAD_DEPLOYMENTS = [
    "..%2Fgpt-4o",
    "gpt-4o%2F..%2Fgpt-4o-mini",
    "gpt-4o%2Fchat",
    "gpt-4o%2fchat",
    "%2e%2e",
    "..",
    ".",
    "gpt-4o%00",
    "gpt-4o%0d%0aX-Injected:%201",
    "gpt-4o%20",
    "gpt-4o%3Fapi-version=1",
    "gpt-4o%23x",
]


@pytest.mark.parametrize("dep", BAD_DEPLOYMENTS)
def test_bad_deployment_names_never_reach_the_backend(proxy, dep):
    r = proxy.call("POST", f"/openai/deployments/{dep}/chat/completions{Q}", chat_body())
    assert r.status in (400, 404), r
    assert_gw_error(r, r.status)
    assert proxy.upstream_requests() == 0


@pytest.mark.parametrize(
    "path",
    [
        "/openai/deployments/../deployments/gpt-4o/chat/completions",
        "/openai/deployments/gpt-4o/../gpt-4o-mini/chat/completions",
        "/openai/deployments/gpt-4o/chat/../../gpt-4o-mini/chat/completions",
        "/openai/deployments//chat/completions",
        "/openai/deployments/gpt-4o//chat/completions",
        "/openai/deployments/gpt-4o/chat/completions/..",
        "/openai/deployments/gpt-4o/%2e%2e/%2e%2e/gpt-4o-mini/chat/completions",
        "/openai/deployments/gpt-4o/chat%2Fcompletions",
        "/openai/threads/../deployments/gpt-4o-mini/chat/completions",
        "/openai/threads/%2e%2e/deployments/gpt-4o-mini/chat/completions",
        "/openai/responses/..%2Fdeployments%2Fgpt-4o-mini%2Fchat%2Fcompletions",
        "/openai/v1/chat/../embeddings",
        "/v1/../openai/deployments/gpt-4o-mini/chat/completions",
        "/v1/chat/completions/..",
        "/openai/deployments/gpt-4o/..;/gpt-4o-mini/chat/completions",
        "/openai/deployments/gpt-4o/chat\\..\\..\\gpt-4o-mini/chat/completions",
        "/openai/deployments/gpt-4o/%2E%2E/%2E%2E/gpt-4o-mini/chat/completions",
    ],
)
def test_dot_segments_and_empty_segments_never_reach_the_backend(proxy, path):
    # the deployment (or model) picks the route; the rest of the path must not be able to
    # step out of it once a backend or anything on the way normalises the path
    r = proxy.call("POST", path + Q, chat_body(model="gpt-4o"))
    assert r.status in (400, 404), r
    assert proxy.upstream_requests() == 0


@pytest.mark.parametrize(
    "model",
    ["../gpt-4o", "gpt-4o/../gpt-4o-mini", "gpt-4o/", "gpt-4o\r\nX-Injected: 1", "gpt-4o\u0000", " gpt-4o", "gpt-4o "],
    ids=["dotdot", "traversal", "slash", "crlf", "nul", "leading-space", "trailing-space"],
)
def test_bad_model_names_on_v1_never_reach_the_backend(proxy, model):
    r = proxy.call("POST", "/v1/chat/completions", chat_body(model=model))
    assert r.status in (400, 404), r
    assert_gw_error(r, r.status)
    assert proxy.upstream_requests() == 0


# ---- bodies --------------------------------------------------------------------------------------------


def big_chat(nbytes, model=None):
    b = chat_body()
    b["messages"][1]["content"] += " " + "x" * nbytes
    if model:
        b["model"] = model
    return json.dumps(b).encode()


@pytest.mark.parametrize("path,model", [(az("gpt-4o"), None), ("/v1/chat/completions", "gpt-4o")], ids=["azure", "v1"])
def test_oversize_body_is_413_without_upstream_call(proxy, path, model):
    body = big_chat(300 * 1024, model)  # limits.max_body_bytes is 256KiB
    r = proxy.call("POST", path, body)
    assert_gw_error(r, 413, "PayloadTooLarge")
    assert proxy.upstream_requests() == 0


def test_oversize_chunked_body_is_413_without_upstream_call(proxy):
    body = big_chat(300 * 1024)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 16384]), body[i : i + 16384]) for i in range(0, len(body), 16384))
    head = (
        f"POST {az('gpt-4o')} HTTP/1.1\r\nHost: x\r\napi-key: {CLIENT_KEY}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    raw, closed = raw_exchange(proxy.port, head + chunks + b"0\r\n\r\n", timeout=10)
    r, _ = parse_response(raw, at_eof=closed)
    assert_gw_error(r, 413, "PayloadTooLarge")
    assert proxy.upstream_requests() == 0


def test_body_just_under_the_limit_is_forwarded_whole(proxy):
    body = big_chat(250 * 1024)
    assert len(body) < 256 * 1024
    r = proxy.call("POST", az("gpt-4o"), body)
    assert r.status == 200, r
    direct = proxy.direct("POST", az("gpt-4o"), body)
    assert r.json()["usage"] == direct.json()["usage"], (r.json()["usage"], direct.json()["usage"])
    assert r.json()["usage"]["prompt_tokens"] > 250 * 1024 // 4


def test_chunked_request_body_is_forwarded(proxy):
    body = json.dumps(chat_body(max_tokens=12)).encode()
    parts = [body[:10], body[10:50], body[50:]]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    head = (
        f"POST {az('gpt-4o')} HTTP/1.1\r\nHost: x\r\napi-key: {CLIENT_KEY}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    raw, closed = raw_exchange(proxy.port, head + chunks, timeout=10)
    r, _ = parse_response(raw, at_eof=closed)
    assert r.status == 200, r
    direct = proxy.direct("POST", az("gpt-4o"), body)
    assert r.json()["choices"] == direct.json()["choices"]
    assert r.json()["usage"] == direct.json()["usage"]


# ---- header injection ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"X-Test: abc\rX-Injected: 1",
        b"X-Test: abc\nX-Injected: 1",
        b"X-Test: abc\x00def",
        b"X-Test: abc\r\n X-Injected: 1",
        b"X-Test: abc\r\n\tX-Injected: 1",
        b"api-key: " + CLIENT_KEY.encode() + b"\rX-Injected: 1",
        b"x-request-id: abc\rX-Injected: 1",
    ],
    ids=["bare-cr", "bare-lf", "nul", "obs-fold", "obs-fold-tab", "in-api-key", "in-request-id"],
)
def test_header_injection_is_400_from_sluice(proxy, line):
    body = json.dumps(chat_body()).encode()
    data = (
        f"POST {az('gpt-4o')} HTTP/1.1\r\nHost: x\r\n".encode()
        + (b"" if line.startswith(b"api-key") else f"api-key: {CLIENT_KEY}\r\n".encode())
        + line
        + f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    raw, closed = raw_exchange(proxy.port, data, timeout=5)
    r, _ = parse_response(raw, at_eof=closed)
    assert_gw_error(r, 400, "BadRequest")
    assert proxy.upstream_requests() == 0
