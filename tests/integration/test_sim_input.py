"""`sluice sim`: bad input gets an Azure-shaped 400 / 404 / 405 / 413, never a crash."""

import pytest

from simtools import *  # noqa: F401,F403
from simtools import API_VERSION, CHAT, KEY, Conn, azure_error, az, call, endpoint

EMB = "text-embedding-3-small"

BAD_CHAT = [
    pytest.param(b'{"messages": [', id="truncated-json"),
    pytest.param(b"{'messages': []}", id="single-quotes"),
    pytest.param(b"", id="empty-body"),
    pytest.param(b"[]", id="array-body"),
    pytest.param(b'"hello"', id="string-body"),
    pytest.param(b"42", id="number-body"),
    pytest.param(b"null", id="null-body"),
    pytest.param(b"{}", id="missing-messages"),
    pytest.param(b'{"messages": "hi"}', id="messages-string"),
    pytest.param(b'{"messages": {"role": "user"}}', id="messages-object"),
    pytest.param(b'{"messages": 5}', id="messages-number"),
    pytest.param(b'{"messages": null}', id="messages-null"),
    pytest.param(b'{"messages": []}', id="messages-empty"),
    pytest.param(b'{"messages": ["hi"]}', id="message-string"),
    pytest.param(b'{"messages": [{"content": "hi"}]}', id="message-no-role"),
    pytest.param(b'{"messages": [{"role": 7, "content": "hi"}]}', id="role-number"),
    pytest.param(b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}', id="max-tokens-string"),
    pytest.param(b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}', id="max-tokens-negative"),
    pytest.param(b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e999}', id="max-tokens-huge"),
    pytest.param(b'{"messages": [{"role": "user", "content": "hi"}], "n": "two"}', id="n-string"),
    pytest.param(b'{"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}', id="stream-string"),
    pytest.param(b'{"messages": [{"role": "user", "content": "hi"}], "stop": 5}', id="stop-number"),
    pytest.param(b'{"messages": [{"role": "user", "content": "hi"}], "stream_options": 1, "stream": true}', id="stream-options-number"),
    pytest.param(b'{"messages": [{"role": "user", "content": "hi"}]} trailing', id="trailing-garbage"),
    pytest.param(b"[" * 100000 + b"]" * 100000, id="deep-nesting"),
]


@pytest.fixture
def sim(start_sim):
    return start_sim(limits={"max_body_bytes": "256KiB"})


def check_bad(sim, r, statuses=(400,)):
    assert r.status in statuses, r
    azure_error(r)
    assert r.header("x-request-id"), r
    assert sim.alive(), f"the simulator died:\n{sim.stderr()[-3000:]}"


@pytest.mark.parametrize("body", BAD_CHAT)
def test_bad_chat_bodies(sim, body):
    r = call(sim.port(), "POST", az("gpt-4o"), body)
    check_bad(sim, r)
    assert call(sim.port(), "POST", az("gpt-4o"), CHAT).status == 200


@pytest.mark.parametrize("body", BAD_CHAT[:14])
def test_bad_chat_bodies_v1(sim, body):
    r = call(sim.port(), "POST", "/openai/v1/chat/completions", body)
    check_bad(sim, r, (400, 404))


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"input": {"a": 1}}',
        b'{"input": []}',
        b'{"input": [{}]}',
        b'{"input": null}',
        b'{"input": "x", "encoding_format": "hex"}',
        b'{"input": "x", "encoding_format": 3}',
        b'{"input": ["ok", 3.5]}',
    ],
)
def test_bad_embeddings_bodies(sim, body):
    r = call(sim.port(), "POST", az(EMB, "embeddings"), body)
    check_bad(sim, r)


@pytest.mark.parametrize("body", [b'{"prompt": {"a": 1}}', b'{"prompt": "x", "max_tokens": "many"}', b"[1]"])
def test_bad_completions_bodies(sim, body):
    r = call(sim.port(), "POST", az("gpt-35-turbo-instruct", "completions"), body)
    check_bad(sim, r)


@pytest.mark.parametrize("body", [b'{"model": "gpt-4o", "input": 5}', b'{"model": "gpt-4o"}', b"nope"])
def test_bad_responses_bodies(sim, body):
    r = call(sim.port(), "POST", f"/openai/responses?api-version={API_VERSION}", body)
    check_bad(sim, r, (400, 404))


def test_invalid_utf8_and_lone_surrogates(sim):
    for body in (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}'):
        r = call(sim.port(), "POST", az("gpt-4o"), body)
        assert r.status in (200, 400), r
        if r.status == 400:
            azure_error(r)
        assert sim.alive()


def test_oversized_body_413(sim):
    big = {"messages": [{"role": "user", "content": "x" * (300 * 1024)}]}
    r = call(sim.port(), "POST", az("gpt-4o"), big)
    check_bad(sim, r, (413,))
    # chunked, too
    with Conn(sim.port()) as c:
        c.send(
            f"POST {az('gpt-4o')} HTTP/1.1\r\nHost: x\r\napi-key: {KEY}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
        )
        chunk = b"x" * 65536
        try:
            for _ in range(6):
                c.send(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            c.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        _, r = c.read_final()
    check_bad(sim, r, (413,))
    # just under the limit is fine
    ok = {"messages": [{"role": "user", "content": "x" * (200 * 1024)}], "max_tokens": 5}
    assert call(sim.port(), "POST", az("gpt-4o"), ok).status == 200


def test_unknown_paths_and_methods(sim):
    p = sim.port()
    for method, path in (
        ("POST", az("gpt-4o", "nonsense")),
        ("POST", "/openai/nothing"),
        ("GET", "/"),
        ("POST", "/v2/chat/completions"),
    ):
        r = call(p, method, path, CHAT)
        check_bad(sim, r, (404,))
    for method in ("GET", "PUT", "DELETE"):
        r = call(p, method, az("gpt-4o"), None)
        check_bad(sim, r, (404, 405))


def test_unknown_deployment_with_bad_body(sim):
    """Which error wins is Azure's business; either is fine, a crash is not."""
    r = call(sim.port(), "POST", az("nope"), b"{not json")
    check_bad(sim, r, (400, 404))


def test_many_bad_requests_on_one_connection(sim):
    """Errors keep the connection usable (keep-alive), or close it cleanly."""
    req = (
        f"POST {az('gpt-4o')} HTTP/1.1\r\nHost: x\r\napi-key: {KEY}\r\nContent-Type: application/json\r\n"
        "Content-Length: 2\r\n\r\n[]"
    ).encode()
    with Conn(sim.port()) as c:
        for _ in range(5):
            c.send(req)
            _, r = c.read_final()
            check_bad(sim, r)
            if r.closes:
                break


def test_wrong_kind_of_deployment(start_sim):
    sim = start_sim(endpoints=[endpoint()])
    r = call(sim.port(), "POST", az("text-embedding-3-small"), CHAT)
    assert r.status == 400, r
    azure_error(r)
    r = call(sim.port(), "POST", az("gpt-4o", "completions"), {"prompt": "x"})
    assert r.status == 400, r
    azure_error(r)


def test_chunked_request_body(sim):
    import json as _json

    body = _json.dumps({**CHAT, "max_tokens": 5}).encode()
    head = (
        f"POST {az('gpt-4o')} HTTP/1.1\r\nHost: x\r\napi-key: {KEY}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    with Conn(sim.port()) as c:
        c.send(head)
        for i in range(0, len(body), 7):
            piece = body[i : i + 7]
            c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
        c.send(b"0\r\n\r\n")
        _, r = c.read_final()
    assert r.status == 200, r
    assert r.json()["usage"]["completion_tokens"] <= 5


@pytest.mark.parametrize(
    "path",
    [
        "/openai/deployments//chat/completions?api-version=2024-10-21",
        "/openai/deployments/gpt-4o/?api-version=2024-10-21",
        "/openai/deployments/gpt-4o?api-version=2024-10-21",
        "/openai/deployments/?api-version=2024-10-21",
        "/openai/deployments/gpt-4o/chat/completions/extra?api-version=2024-10-21",
        "/openai/deployments/" + "x" * 3000 + "/chat/completions?api-version=2024-10-21",
        "/openai/deployments/gpt-4o/chat/completions?api-version=",
        "/openai/threads/?api-version=2024-10-21",
        "/openai/threads/a/b?api-version=2024-10-21",
        "/openai/responses/" + "r" * 2000 + "?api-version=2024-10-21",
        "/openai/v1/",
        "/openai/v1/chat",
        "/v1",
        "/openai",
        "/openai/",
    ],
)
def test_odd_paths(sim, path):
    for method in ("POST", "GET"):
        r = call(sim.port(), method, path, CHAT)
        assert 400 <= r.status < 500, (path, r)
        azure_error(r)
        assert sim.alive()
