"""The proxy's client surfaces (C1, R1): Azure data-plane paths (the path's deployment decides),
the v1 surfaces (the body's `model` decides), embeddings, completions, responses, assistants and
threads, the model list sluice answers itself, query strings and a route's pinned api-version.
The simulator behind the gateway accepts only the backend's key."""

import pytest

from proxytools import *  # noqa: F401,F403
from proxytools import (
    API_VERSION,
    BACKEND_KEY,
    MARKER,
    assert_gw_error,
    chat_body,
)
from proxytools import CLIENT_KEY
from helpers import Conn
from simtools import _request_bytes, az, decode_b64_floats

V1 = ["/openai/v1", "/v1"]


def answer(r):
    """The deterministic part of a chat/completions answer (ids and timestamps differ)."""
    b = r.json()
    return {"model": b["model"], "choices": b["choices"], "usage": b["usage"]}


# ---- Azure paths -----------------------------------------------------------------------------------


def test_azure_chat_completion(proxy):
    r = proxy.call("POST", az("gpt-4o"), chat_body())
    assert r.status == 200, r
    assert r.header("content-type") == "application/json", r
    b = r.json()
    assert b["object"] == "chat.completion" and b["id"].startswith("chatcmpl-"), b
    assert b["model"] == "gpt-4o-2024-08-06", b
    assert 0 < b["usage"]["completion_tokens"] <= 16, b
    # the answer is the simulator's, untouched: the same as asking it directly
    direct = proxy.direct("POST", az("gpt-4o"), chat_body())
    assert direct.status == 200, direct
    assert answer(r) == answer(direct)
    assert int(r.header("content-length")) == len(r.body)
    d = proxy.dep("gpt-4o")
    assert d["requests"] == 2 and d["by_status"] == {"200": 2}, d


def test_azure_path_decides_whatever_the_body_says(proxy):
    r = proxy.call("POST", az("gpt-4o"), chat_body(model="gpt-4o-mini"))
    assert r.status == 200, r
    assert r.json()["model"] == "gpt-4o-2024-08-06", r
    assert r.header("x-sluice-backend") == "aoai-gpt-4o", r.headers
    assert proxy.dep("gpt-4o")["requests"] == 1
    assert proxy.dep("gpt-4o-mini")["requests"] == 0


def test_azure_route_name_maps_to_the_backends_deployment(proxy):
    # route "chat" -> backend aoai-gpt-4o (deployment gpt-4o): the simulator has no "chat"
    r = proxy.call("POST", az("chat"), chat_body())
    assert r.status == 200, r
    assert r.json()["model"] == "gpt-4o-2024-08-06"
    assert r.header("x-sluice-backend") == "aoai-gpt-4o"
    assert proxy.dep("gpt-4o")["requests"] == 1
    seen = proxy.wait_sim_access(lambda x: x["method"] == "POST")
    assert [x["path"] for x in seen] == ["/openai/deployments/gpt-4o/chat/completions"], seen


def test_backend_without_deployment_uses_the_route_name(proxy):
    r = proxy.call("POST", az("gpt-4o-mini"), chat_body())
    assert r.status == 200, r
    assert r.json()["model"] == "gpt-4o-mini-2024-07-18"
    assert r.header("x-sluice-backend") == "aoai-mini"
    assert proxy.dep("gpt-4o-mini")["requests"] == 1


def test_azure_completions(proxy):
    body = {"prompt": f"Once upon a time {MARKER}", "max_tokens": 5}
    r = proxy.call("POST", az("gpt-35-turbo-instruct", "completions"), body)
    assert r.status == 200, r
    b = r.json()
    assert b["object"] == "text_completion" and b["id"].startswith("cmpl-"), b
    assert isinstance(b["choices"][0]["text"], str) and b["choices"][0]["text"]
    assert 0 < b["usage"]["completion_tokens"] <= 5
    assert answer(r) == answer(proxy.direct("POST", az("gpt-35-turbo-instruct", "completions"), body))
    assert proxy.dep("gpt-35-turbo-instruct")["requests"] == 2


def test_azure_embeddings_base64(proxy):
    body = {"input": ["hello", MARKER], "encoding_format": "base64"}
    r = proxy.call("POST", az("text-embedding-3-small", "embeddings"), body)
    assert r.status == 200, r
    b = r.json()
    assert b["object"] == "list" and len(b["data"]) == 2, b
    vecs = []
    for i, d in enumerate(b["data"]):
        assert d["index"] == i and isinstance(d["embedding"], str), d
        v = decode_b64_floats(d["embedding"])
        assert len(v) == 1536
        assert abs(sum(x * x for x in v) - 1.0) < 1e-3
        vecs.append(v)
    assert vecs[0] != vecs[1]
    direct = proxy.direct("POST", az("text-embedding-3-small", "embeddings"), body).json()
    assert [d["embedding"] for d in b["data"]] == [d["embedding"] for d in direct["data"]]
    assert b["usage"] == direct["usage"]


def test_unknown_deployment_is_404_deployment_not_found(proxy):
    r = proxy.call("POST", az("no-such-route"), chat_body())
    assert_gw_error(r, 404, "DeploymentNotFound")
    # a deployment the simulator has, but no route: sluice answers, not the backend
    r = proxy.call("POST", az("gpt-4o-q"), chat_body())
    assert_gw_error(r, 404, "DeploymentNotFound")
    assert proxy.upstream_requests() == 0


def test_route_names_are_case_sensitive(proxy):
    r = proxy.call("POST", az("GPT-4o"), chat_body())
    assert_gw_error(r, 404, "DeploymentNotFound")
    assert proxy.upstream_requests() == 0


# ---- v1 surfaces ---------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", V1)
def test_v1_chat_body_model_decides(proxy, prefix):
    r = proxy.call("POST", f"{prefix}/chat/completions", chat_body(model="gpt-4o-mini"))
    assert r.status == 200, r
    assert r.json()["model"] == "gpt-4o-mini-2024-07-18", r
    assert r.header("x-sluice-backend") == "aoai-mini"
    assert proxy.dep("gpt-4o-mini")["requests"] == 1
    assert proxy.dep("gpt-4o")["requests"] == 0


@pytest.mark.parametrize("prefix", V1)
def test_v1_route_alias_reaches_the_backends_deployment(proxy, prefix):
    # model "chat" is a route; upstream it must be the backend's deployment gpt-4o
    r = proxy.call("POST", f"{prefix}/chat/completions", chat_body(model="chat"))
    assert r.status == 200, r
    assert r.json()["model"] == "gpt-4o-2024-08-06", r
    assert proxy.dep("gpt-4o")["requests"] == 1
    assert r.json()["choices"] == proxy.direct("POST", az("gpt-4o"), chat_body()).json()["choices"]


@pytest.mark.parametrize("prefix", V1)
def test_v1_embeddings(proxy, prefix):
    r = proxy.call("POST", f"{prefix}/embeddings", {"model": "text-embedding-3-small", "input": "hello"})
    assert r.status == 200, r
    d = r.json()["data"]
    assert len(d) == 1 and isinstance(d[0]["embedding"], list) and len(d[0]["embedding"]) == 1536, r
    assert proxy.dep("text-embedding-3-small")["requests"] == 1


@pytest.mark.parametrize("prefix", V1)
def test_v1_completions(proxy, prefix):
    r = proxy.call("POST", f"{prefix}/completions", {"model": "gpt-35-turbo-instruct", "prompt": "Once", "max_tokens": 4})
    assert r.status == 200, r
    assert r.json()["object"] == "text_completion"
    assert proxy.dep("gpt-35-turbo-instruct")["requests"] == 1


@pytest.mark.parametrize("prefix", V1)
def test_v1_unknown_model_is_404(proxy, prefix):
    r = proxy.call("POST", f"{prefix}/chat/completions", chat_body(model="no-such-model"))
    assert_gw_error(r, 404, "DeploymentNotFound")
    assert proxy.upstream_requests() == 0


@pytest.mark.parametrize("prefix", V1)
@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "hi"}]},
        {"model": None, "messages": [{"role": "user", "content": "hi"}]},
        {"model": 42, "messages": [{"role": "user", "content": "hi"}]},
        {"model": "", "messages": [{"role": "user", "content": "hi"}]},
    ],
    ids=["missing", "null", "number", "empty"],
)
def test_v1_without_a_model_is_400(proxy, prefix, body):
    r = proxy.call("POST", f"{prefix}/chat/completions", body)
    assert_gw_error(r, 400, "BadRequest")
    assert proxy.upstream_requests() == 0


@pytest.mark.parametrize("prefix", V1)
@pytest.mark.parametrize(
    "raw",
    [b'{"model": "gpt-4o", "messages": [', b"not json at all", b"", b'["gpt-4o"]', b'{"model":"gpt-4o"} trailing'],
    ids=["truncated", "text", "empty", "array", "trailing"],
)
def test_v1_bad_json_is_400_without_upstream_call(proxy, prefix, raw):
    r = proxy.call("POST", f"{prefix}/chat/completions", raw)
    assert_gw_error(r, 400, "BadRequest")
    assert proxy.upstream_requests() == 0


def test_models_list_is_answered_by_sluice(proxy):
    routes = sorted(x["name"] for x in proxy.gw.config["routes"])
    for path in ("/v1/models", "/openai/v1/models"):
        r = proxy.call("GET", path)
        assert r.status == 200, (path, r)
        b = r.json()
        assert b["object"] == "list", b
        assert sorted(m["id"] for m in b["data"]) == routes, b
        assert all(m["object"] == "model" for m in b["data"]), b
    assert proxy.upstream_requests() == 0


# ---- resource-level paths: responses, assistants, threads --------------------------------------------


def test_responses_create_and_get(proxy):
    q = f"?api-version={API_VERSION}"
    r = proxy.call("POST", f"/openai/responses{q}", {"model": "gpt-4o", "input": f"Hello {MARKER}", "max_output_tokens": 500})
    assert r.status == 200, r
    created = r.json()
    assert created["object"] == "response" and created["id"].startswith("resp_"), created
    assert created["status"] == "completed", created
    g = proxy.call("GET", f"/openai/responses/{created['id']}{q}")
    assert g.status == 200, g
    got = g.json()
    assert got["id"] == created["id"] and got["output"] == created["output"], got
    # an id the backend never issued
    g = proxy.call("GET", f"/openai/responses/resp_0000000000000000000000000000{q}")
    assert g.status == 404, g
    assert proxy.upstream_requests() == 3


@pytest.mark.parametrize("prefix", V1)
def test_v1_responses_create_and_get(proxy, prefix):
    r = proxy.call("POST", f"{prefix}/responses", {"model": "gpt-4o", "input": "Hello", "max_output_tokens": 500})
    assert r.status == 200, r
    rid = r.json()["id"]
    g = proxy.call("GET", f"{prefix}/responses/{rid}")
    assert g.status == 200, g
    assert g.json()["id"] == rid and g.json()["output"] == r.json()["output"]


def test_assistants_and_threads_round_trip(proxy):
    q = "?api-version=2024-05-01-preview"
    beta = {"OpenAI-Beta": "assistants=v2"}
    a = proxy.call("POST", f"/openai/assistants{q}", {"model": "gpt-4o", "name": "helper", "instructions": MARKER}, headers=beta)
    assert a.status == 200, a
    asst = a.json()
    assert asst["object"] == "assistant" and asst["id"].startswith("asst_") and asst["name"] == "helper", asst
    g = proxy.call("GET", f"/openai/assistants/{asst['id']}{q}", headers=beta)
    assert g.status == 200 and g.json()["id"] == asst["id"], g
    t = proxy.call("POST", f"/openai/threads{q}", {}, headers=beta)
    assert t.status == 200, t
    thread = t.json()
    assert thread["object"] == "thread" and thread["id"].startswith("thread_"), thread
    g = proxy.call("GET", f"/openai/threads/{thread['id']}{q}", headers=beta)
    assert g.status == 200 and g.json()["id"] == thread["id"], g
    d = proxy.call("DELETE", f"/openai/threads/{thread['id']}{q}", headers=beta)
    assert d.status == 200 and d.json() == {"id": thread["id"], "object": "thread.deleted", "deleted": True}, d
    g = proxy.call("GET", f"/openai/threads/{thread['id']}{q}", headers=beta)
    assert g.status == 404, g
    d = proxy.call("DELETE", f"/openai/assistants/{asst['id']}{q}", headers=beta)
    assert d.status == 200 and d.json()["deleted"] is True, d
    assert proxy.upstream_requests() == 7


# ---- query strings and api-version ---------------------------------------------------------------------


def _until_throttled(proxy, path, n=4):
    """Send chat requests to the quota deployment (one per 10-second slice) until a 429."""
    seen = []
    for _ in range(n):
        r = proxy.call("POST", path, chat_body(max_tokens=5))
        seen.append(r.status)
        if r.status == 429:
            return r
        assert r.status == 200, r
    raise AssertionError(f"no 429 from the quota deployment: {seen}")


def test_api_version_passes_through(proxy):
    # the simulator's 429 message names the api-version it was called with
    r = _until_throttled(proxy, az("quota", api_version="2024-02-15-preview"))
    assert_gw_error(r, 429, "429")
    assert "API version 2024-02-15-preview have exceeded" in r.json()["error"]["message"], r


def test_route_api_version_is_pinned_upstream(proxy):
    r = _until_throttled(proxy, az("quota-pinned", api_version="2024-02-15-preview"))
    assert_gw_error(r, 429, "429")
    msg = r.json()["error"]["message"]
    assert "API version 2024-06-01 have exceeded" in msg, msg
    assert "2024-02-15-preview" not in msg


def test_pinned_api_version_replaces_one_the_backend_refuses(proxy):
    # the simulator answers 400 to an api-version that is not a date; the route pins a good one
    bad = "?api-version=not-a-version"
    direct = proxy.direct("POST", f"/openai/deployments/gpt-4o-q/chat/completions{bad}", chat_body())
    assert direct.status == 400, direct
    proxy.sim.reset()
    r = proxy.call("POST", f"/openai/deployments/quota-pinned/chat/completions{bad}", chat_body(max_tokens=5))
    assert r.status == 200, r
    r = proxy.call("POST", f"/openai/deployments/quota/chat/completions{bad}", chat_body(max_tokens=5))
    assert r.status == 400, r
    assert "API version not supported" in r.json()["error"]["message"], r


def test_backend_key_is_not_what_the_client_sent(proxy):
    # the simulator accepts BACKEND_KEY only; sending it directly works, the client key does not
    assert proxy.direct("POST", az("gpt-4o"), chat_body()).status == 200
    r = proxy.call("POST", az("gpt-4o"), chat_body(), key=BACKEND_KEY)
    assert_gw_error(r, 401)
    assert proxy.upstream_requests() == 1  # only the direct call


@pytest.mark.parametrize("prefix", V1)
def test_v1_assistants_and_threads_round_trip(proxy, prefix):
    # the OpenAI class with baseURL .../openai/v1 or .../v1: reads and deletes have no body
    beta = {"OpenAI-Beta": "assistants=v2"}
    a = proxy.call("POST", f"{prefix}/assistants", {"model": "gpt-4o", "name": "helper"}, headers=beta)
    assert a.status == 200, a
    aid = a.json()["id"]
    t = proxy.call("POST", f"{prefix}/threads", {}, headers=beta)
    assert t.status == 200, t
    tid = t.json()["id"]
    for method, path in [
        ("GET", f"{prefix}/assistants/{aid}"),
        ("GET", f"{prefix}/threads/{tid}"),
        ("DELETE", f"{prefix}/threads/{tid}"),
        ("DELETE", f"{prefix}/assistants/{aid}"),
    ]:
        r = proxy.call(method, path, headers=beta)
        assert r.status == 200, (method, path, r)


def test_pipelined_requests_are_answered_in_order(proxy):
    # the first is slow (gpt-4o-slow holds a non-streamed answer ~0.5 s), the others fast: the
    # answers must still come back in the order asked, each the right one
    reqs = [
        (az("slow"), chat_body("one", max_tokens=10)),
        (az("gpt-4o"), chat_body("two", max_tokens=3)),
        ("/v1/chat/completions", chat_body("three", max_tokens=5, model="gpt-4o-mini")),
    ]
    data = b"".join(_request_bytes("POST", p, b, {"api-key": CLIENT_KEY}, None, keep_alive=True) for p, b in reqs)
    with Conn(proxy.port, 10) as c:
        c.send(data)
        rs = [c.read_final()[1] for _ in reqs]
    assert [r.status for r in rs] == [200, 200, 200], rs
    got = [(r.json()["model"], r.json()["usage"]["completion_tokens"], r.header("x-sluice-backend")) for r in rs]
    assert got == [
        ("gpt-4o-2024-08-06", 10, "aoai-slow"),
        ("gpt-4o-2024-08-06", 3, "aoai-gpt-4o"),
        ("gpt-4o-mini-2024-07-18", 5, "aoai-mini"),
    ], got
