"""Request caps (issue 7, item 4): per route and per client, the stricter wins. Clamping
rewrites `max_tokens` / `max_completion_tokens` and keeps every other field equal in meaning
(compared as JSON on what the backend received); a default `max_tokens` is inserted when the
client sent none (`max_output_tokens` on the Responses API); rejecting answers 400 naming the
parameter and the cap; `n`, `best_of`, `top_logprobs`/`logprobs`, forbidden and allowed
parameters and the body size are checked; malformed values and non-JSON bodies on a capped
route are 400; nothing refused reaches a backend; a clamped stream still streams.

Most tests run the gateway in front of a recording backend in this process, which keeps the
exact bytes each request arrived with; the stream test uses a simulated endpoint."""

import json

import pytest

from proxytools import *  # noqa: F401,F403
from proxytools import (
    API_VERSION,
    CLIENT_KEY,
    CLIENT_KEY_2,
    MARKER,
    RecordingBackend,
    assert_gw_error,
    azure_backend,
    chat_body,
    client_entry,
    routing_backend,
    routing_endpoint,
)
from simtools import az

CAPS = {
    "clamp": {"max_tokens": 100, "max_tokens_mode": "clamp", "default_max_tokens": 50},
    "reject": {"max_tokens": 100, "max_tokens_mode": "reject"},
    "counts": {"max_n": 2, "max_best_of": 2, "max_top_logprobs": 3},
    "forbid": {"forbid": ["logit_bias", "tools"]},
    "allow": {"allow": ["messages", "max_tokens", "temperature"]},
    "small": {"max_prompt_bytes": "1KiB"},
}


@pytest.fixture
def rec():
    be = RecordingBackend()
    yield be
    be.close()


@pytest.fixture
def gw(start_gateway, rec):
    routes = [{"name": name, "backend": "rec", "caps": caps} for name, caps in CAPS.items()]
    routes.append({"name": "free", "backend": "rec"})
    clients = [
        client_entry("app1", CLIENT_KEY),
        # a client cap stricter than the route's wins; a route cap stricter than the client's too
        client_entry("app2", CLIENT_KEY_2, caps={"max_tokens": 20, "max_n": 5}),
    ]
    return start_gateway(backends=[azure_backend("rec", rec.port, deployment="gpt-4o")], routes=routes, clients=clients)


def post(gw, route, body, key=CLIENT_KEY, op="chat/completions", raw=None):
    from proxytools import gw_call

    return gw_call(gw.port, "POST", az(route, op), raw if raw is not None else body, key=key)


def sent_body(rec, n):
    reqs = rec.wait_requests(n)
    assert len(reqs) == n, f"{len(reqs)} requests reached the backend, expected {n}"
    return json.loads(reqs[n - 1].body)


def rich_body(**kw):
    """A body with a bit of everything, to see that clamping changes nothing else."""
    b = {
        "messages": [
            {"role": "system", "content": "You are terse. \u00e9\u00e8 \u4e2d\u6587 \U0001f600 \"quoted\" \\ back"},
            {"role": "user", "content": [{"type": "text", "text": f"Hello {MARKER}"}]},
        ],
        "temperature": 0.25,
        "top_p": 1e-3,
        "stop": ["\n\n", "END"],
        "user": "user-42",
        "seed": 12345678901234,
        "metadata": {"nested": {"list": [1, 2.5, None, True, False, "x"], "empty": {}}},
        "presence_penalty": -0.5,
        "max_tokens": 5000,
    }
    b.update(kw)
    return b


# ---- clamp -------------------------------------------------------------------------------------------


def test_clamp_rewrites_max_tokens_only(gw, rec):
    body = rich_body()
    r = post(gw, "clamp", body)
    assert r.status == 200, r
    got = sent_body(rec, 1)
    assert got["max_tokens"] == 100, got
    assert {k: v for k, v in got.items() if k != "max_tokens"} == {k: v for k, v in body.items() if k != "max_tokens"}
    # Under the cap: the bytes go as sent.
    body = rich_body(max_tokens=99)
    raw = json.dumps(body, indent=1)
    r = post(gw, "clamp", None, raw=raw)
    assert r.status == 200, r
    reqs = rec.wait_requests(2)
    assert reqs[1].body == raw.encode(), "a body within the caps was rewritten"


def test_clamp_max_completion_tokens(gw, rec):
    body = rich_body(max_completion_tokens=4000)
    del body["max_tokens"]
    assert post(gw, "clamp", body).status == 200
    got = sent_body(rec, 1)
    assert got["max_completion_tokens"] == 100, got
    assert "max_tokens" not in got, "a default was added beside max_completion_tokens"
    assert {k: v for k, v in got.items() if k != "max_completion_tokens"} == {
        k: v for k, v in body.items() if k != "max_completion_tokens"
    }
    # both given: both capped
    assert post(gw, "clamp", chat_body(max_tokens=300, max_completion_tokens=200)).status == 200
    got = sent_body(rec, 2)
    assert got["max_tokens"] == 100 and got["max_completion_tokens"] == 100, got


def test_default_max_tokens_inserted(gw, rec):
    body = rich_body()
    del body["max_tokens"]
    assert post(gw, "clamp", body).status == 200
    got = sent_body(rec, 1)
    assert got["max_tokens"] == 50, got
    assert {k: v for k, v in got.items() if k != "max_tokens"} == body
    # a null max_tokens is "not set"
    assert post(gw, "clamp", chat_body(max_tokens=None)).status == 200
    assert sent_body(rec, 2)["max_tokens"] == 50
    # legacy completions get it too
    assert post(gw, "clamp", {"prompt": "Say hello", "temperature": 0}, op="completions").status == 200
    assert sent_body(rec, 3) == {"prompt": "Say hello", "temperature": 0, "max_tokens": 50}
    # the Responses API: as max_output_tokens
    from proxytools import gw_call

    r = gw_call(gw.port, "POST", f"/openai/responses?api-version={API_VERSION}", {"model": "clamp", "input": "Hi"})
    assert r.status == 200, r
    got = sent_body(rec, 4)
    assert got["max_output_tokens"] == 50 and "max_tokens" not in got, got
    assert got["input"] == "Hi", got
    # a route without caps inserts nothing
    assert post(gw, "free", {"messages": [{"role": "user", "content": "Hi"}]}).status == 200
    assert "max_tokens" not in sent_body(rec, 5)


def test_client_cap_stricter_than_route_wins(gw, rec):
    assert post(gw, "clamp", chat_body(max_tokens=500), key=CLIENT_KEY_2).status == 200
    assert sent_body(rec, 1)["max_tokens"] == 20
    # on a route without caps, the client's own cap applies
    assert post(gw, "free", chat_body(max_tokens=500), key=CLIENT_KEY_2).status == 200
    assert sent_body(rec, 2)["max_tokens"] == 20
    # the route's n cap (2) is stricter than the client's (5)
    r = post(gw, "counts", chat_body(n=3), key=CLIENT_KEY_2)
    err = assert_gw_error(r, 400)
    assert "`n`" in err["message"] and "2" in err["message"], err
    assert len(rec.requests) == 2


# ---- reject ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_reject_names_parameter_and_cap(gw, rec, field):
    body = chat_body(max_tokens=None)
    del body["max_tokens"]
    body[field] = 101
    r = post(gw, "reject", body)
    err = assert_gw_error(r, 400)
    assert f"`{field}`" in err["message"] and "101" in err["message"] and "100" in err["message"], err
    assert rec.requests == [], "a refused request reached the backend"
    body[field] = 100
    assert post(gw, "reject", body).status == 200
    assert sent_body(rec, 1)[field] == 100


@pytest.mark.parametrize("route", ["clamp", "reject"])
@pytest.mark.parametrize(
    "value", ["100", -1, 0, 1.5, 2**62, 10**30, 2**63, True, [5], {"n": 5}], ids=lambda v: type(v).__name__ + ":" + str(v)[:12]
)
def test_malformed_max_tokens_is_400(gw, rec, route, value):
    r = post(gw, route, chat_body(max_tokens=value))
    err = assert_gw_error(r, 400)
    if not (isinstance(value, int) and value >= 2**63):
        assert "max_tokens" in err["message"], err
    # (beyond 64 bits the number is not JSON the gateway reads at all: the body is refused)
    assert rec.requests == []


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"{\"messages\": [", b"[1, 2]", b"\"text\"", b"{\"max_tokens\": 1, \"max_tokens\": 5000}", b"\xff\xfe{}"],
    ids=["text", "truncated", "array", "string", "duplicate-key", "not-utf8"],
)
@pytest.mark.parametrize("route", ["clamp", "reject", "counts", "forbid", "allow"])
def test_non_json_body_on_capped_route_is_400(gw, rec, route, raw):
    r = post(gw, route, None, raw=raw)
    assert_gw_error(r, 400)
    assert rec.requests == []


# ---- counts, parameters, size --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op,field,bad,good",
    [
        ("chat/completions", "n", 3, 2),
        ("completions", "best_of", 3, 2),
        ("chat/completions", "top_logprobs", 4, 3),
        ("completions", "logprobs", 4, 3),
    ],
)
def test_count_caps(gw, rec, op, field, bad, good):
    body = chat_body() if op == "chat/completions" else {"prompt": "Hi", "max_tokens": 5}
    r = post(gw, "counts", {**body, field: bad}, op=op)
    err = assert_gw_error(r, 400)
    assert f"`{field}`" in err["message"] and str(good) in err["message"], err
    assert rec.requests == []
    r = post(gw, "counts", {**body, field: good}, op=op)
    assert r.status == 200, r
    assert sent_body(rec, 1)[field] == good


def test_forbidden_parameters(gw, rec):
    r = post(gw, "forbid", chat_body(logit_bias={"50256": -100}))
    err = assert_gw_error(r, 400)
    assert "`logit_bias`" in err["message"], err
    r = post(gw, "forbid", chat_body(tools=[]))
    assert "`tools`" in assert_gw_error(r, 400)["message"]
    assert rec.requests == []
    assert post(gw, "forbid", chat_body(temperature=0)).status == 200
    # the same parameter elsewhere is fine
    assert post(gw, "free", chat_body(logit_bias={"50256": -100})).status == 200
    assert len(rec.wait_requests(2)) == 2


def test_allowed_parameters(gw, rec):
    assert post(gw, "allow", chat_body(temperature=0.5)).status == 200
    # model is always allowed
    assert post(gw, "allow", chat_body(model="whatever")).status == 200
    r = post(gw, "allow", chat_body(top_p=0.5))
    err = assert_gw_error(r, 400)
    assert "`top_p`" in err["message"], err
    assert "temperature" not in err["message"], "the refusal lists the allowed parameters"
    assert len(rec.wait_requests(2)) == 2 and len(rec.requests) == 2


def test_max_prompt_bytes_is_413(gw, rec):
    small = chat_body(text="x" * 200)
    assert len(json.dumps(small)) < 1024
    assert post(gw, "small", small).status == 200
    big = chat_body(text="x" * 1100)
    r = post(gw, "small", big)
    err = assert_gw_error(r, 413)
    assert "1024" in err["message"], err
    assert len(rec.requests) == 1
    # another route takes it
    assert post(gw, "free", big).status == 200


# ---- streams ------------------------------------------------------------------------------------------


def test_clamped_stream_still_streams(start_routing):
    env = start_routing(
        endpoints=[routing_endpoint("ep")],
        backends=[routing_backend("b", "ep")],
        routes=[{"name": "gpt-4o", "backend": "b", "caps": {"max_tokens": 5, "default_max_tokens": 3}}],
    )
    from proxytools import gw_stream

    st = gw_stream(env.port, az("gpt-4o"), chat_body(max_tokens=500, stream=True))
    assert st.status == 200, st
    assert (st.header("content-type") or "").startswith("text/event-stream"), st
    assert st.done and st.terminated, st
    chunks = st.chunks()
    content = [c for c in chunks if c.get("choices") and c["choices"][0].get("delta", {}).get("content")]
    assert 1 <= len(content) <= 5, f"{len(content)} content chunks for a cap of 5"
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices") and c["choices"][0].get("finish_reason")]
    assert finish == ["length"], finish
    dep = env.stats()["endpoints"]["ep"]["deployments"]["gpt-4o"]
    assert dep["completion_tokens"] == 5, dep
    # the default applies to streams too
    st = gw_stream(env.port, az("gpt-4o"), {"messages": [{"role": "user", "content": "Hi"}], "stream": True})
    assert st.status == 200 and st.done, st
    assert env.stats()["endpoints"]["ep"]["deployments"]["gpt-4o"]["completion_tokens"] == 8
