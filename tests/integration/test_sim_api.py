"""`sluice sim`: the simulated Azure OpenAI / OpenAI surfaces, their responses and headers,
authentication, determinism, and the stateful APIs (responses, threads, assistants)."""

import json
import math
import re
import time

import pytest

from simtools import *  # noqa: F401,F403
from simtools import (
    API_VERSION,
    CHAT,
    KEY,
    Conn,
    assert_azure_error,
    az,
    call,
    chat_dep,
    decode_b64_floats,
    dep_stats,
    embeddings_dep,
    endpoint,
    st_requests,
)

EMB = "text-embedding-3-small"


def chat(port, dep="gpt-4o", body=None, **kw):
    return call(port, "POST", az(dep), body if body is not None else CHAT, **kw)


def check_usage(u):
    assert isinstance(u["prompt_tokens"], int) and u["prompt_tokens"] > 0, u
    assert isinstance(u["completion_tokens"], int) and u["completion_tokens"] >= 0, u
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], u


def check_common_headers(r, region="eastus", azure=True):
    rid = r.header("x-request-id")
    assert rid, r
    if azure:
        assert r.header("apim-request-id"), r
        assert r.header("x-ms-region") == region, r
    ms = r.header("openai-processing-ms")
    assert ms is not None and float(ms) >= 0, r


# ---- `sluice sim --listen`: the default deployment set --------------------------------------


def test_listen_default_deployments(start_sim):
    sim = start_sim(listen=True)
    p = sim.port()
    r = call(sim.admin_port, "GET", "/healthz", key=None)
    assert r.status == 200, r
    for dep, model, version in (("gpt-4o", "gpt-4o", "2024-08-06"), ("gpt-4o-mini", "gpt-4o-mini", "2024-07-18")):
        r = chat(p, dep, {**CHAT, "max_tokens": 8}, key="anything")
        assert r.status == 200, r
        assert r.json()["model"] == f"{model}-{version}"
    r = call(p, "POST", az("gpt-35-turbo-instruct", "completions"), {"prompt": "Once", "max_tokens": 5}, key="x")
    assert r.status == 200, r
    assert r.json()["object"] == "text_completion"
    r = call(p, "POST", az(EMB, "embeddings"), {"input": "hello"}, key="x")
    assert r.status == 200, r
    assert len(r.json()["data"][0]["embedding"]) == 1536
    r = call(p, "GET", "/openai/v1/models", key="x")
    assert r.status == 200, r
    ids = {m["id"] for m in r.json()["data"]}
    assert {"gpt-4o", "gpt-4o-mini", "gpt-35-turbo-instruct", EMB} <= ids, ids
    # no key list: any non-empty key; none at all is refused
    assert_azure_error(chat(p, key=None), 401)


# ---- chat completions ----------------------------------------------------------------------


def test_chat_completion_shape_and_headers(start_sim):
    sim = start_sim()
    t0 = time.time()
    r = chat(sim.port())
    assert r.status == 200, r
    assert (r.header("content-type") or "").startswith("application/json"), r
    check_common_headers(r)
    b = r.json()
    assert re.match(r"^chatcmpl-[A-Za-z0-9]+$", b["id"]), b["id"]
    assert b["object"] == "chat.completion"
    assert abs(b["created"] - t0) < 10, b["created"]
    assert b["model"] == "gpt-4o-2024-08-06"
    assert isinstance(b["system_fingerprint"], str) and b["system_fingerprint"], b
    assert len(b["choices"]) == 1
    c = b["choices"][0]
    assert c["index"] == 0
    assert c["message"]["role"] == "assistant"
    assert isinstance(c["message"]["content"], str) and c["message"]["content"], c
    assert c["finish_reason"] in ("stop", "length")
    check_usage(b["usage"])
    assert b["usage"]["completion_tokens"] <= 64  # default_max_tokens
    # every request its own ids
    r2 = chat(sim.port())
    assert r2.header("x-request-id") != r.header("x-request-id")
    assert r2.header("apim-request-id") != r.header("apim-request-id")
    assert r2.json()["id"] != b["id"]


def test_body_model_ignored_on_azure_paths(start_sim):
    """On Azure paths the deployment in the path decides, whatever the body's model says."""
    sim = start_sim()
    r = chat(sim.port(), "gpt-4o-mini", {**CHAT, "model": "gpt-4o"})
    assert r.status == 200, r
    assert r.json()["model"] == "gpt-4o-mini-2024-07-18"


def test_deterministic_content_and_usage(start_sim):
    sim = start_sim()
    a = chat(sim.port()).json()
    b = chat(sim.port()).json()
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
    assert a["usage"] == b["usage"]
    other = {"messages": [{"role": "user", "content": "Tell me something entirely different, please."}]}
    c = chat(sim.port(), body=other).json()
    assert c["choices"][0]["message"]["content"] != a["choices"][0]["message"]["content"]


def test_same_seed_same_answer_across_processes(start_sim):
    s1 = start_sim(seed=7)
    s2 = start_sim(seed=7)
    s3 = start_sim(seed=8)
    a = chat(s1.port()).json()["choices"][0]["message"]["content"]
    b = chat(s2.port()).json()["choices"][0]["message"]["content"]
    c = chat(s3.port()).json()["choices"][0]["message"]["content"]
    assert a == b
    assert a != c, "the seed does not vary the generated content"


def test_prompt_tokens_grow_with_the_prompt(start_sim):
    sim = start_sim()
    short = chat(sim.port(), body={"messages": [{"role": "user", "content": "Hi"}]}).json()["usage"]
    text = "The quick brown fox jumps over the lazy dog. " * 40
    long = chat(sim.port(), body={"messages": [{"role": "user", "content": text}]}).json()["usage"]
    assert long["prompt_tokens"] > short["prompt_tokens"] + 100, (short, long)
    # the same messages on another surface: the same prompt tokens
    v1 = call(
        sim.port(), "POST", "/openai/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}
    ).json()["usage"]
    assert v1["prompt_tokens"] == long["prompt_tokens"]


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_finish_length(start_sim, param):
    sim = start_sim()
    r = chat(sim.port(), body={**CHAT, param: 3})
    assert r.status == 200, r
    b = r.json()
    assert b["choices"][0]["finish_reason"] == "length", b
    assert 0 < b["usage"]["completion_tokens"] <= 3, b


def test_default_max_tokens_caps_output(start_sim):
    sim = start_sim(endpoints=[endpoint(deployments=[chat_dep("gpt-4o", default_max_tokens=4)])])
    long_q = {"messages": [{"role": "user", "content": "Write a long essay about rivers. " * 5}]}
    b = chat(sim.port(), body=long_q).json()
    assert b["usage"]["completion_tokens"] <= 4, b
    # an explicit max_tokens above the default is honoured
    b = chat(sim.port(), body={**long_q, "max_tokens": 40}).json()
    assert b["usage"]["completion_tokens"] <= 40, b


def test_n_choices(start_sim):
    sim = start_sim()
    b = chat(sim.port(), body={**CHAT, "n": 3, "max_tokens": 20}).json()
    assert [c["index"] for c in b["choices"]] == [0, 1, 2], b
    for c in b["choices"]:
        assert c["message"]["role"] == "assistant" and isinstance(c["message"]["content"], str)
    check_usage(b["usage"])
    assert b["usage"]["completion_tokens"] <= 60
    one = chat(sim.port(), body={**CHAT, "max_tokens": 20}).json()
    assert b["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"]  # the prompt is charged once


@pytest.mark.parametrize("stop", [" ", [" "], ["\n", " "]])
def test_stop_sequences(start_sim, stop):
    sim = start_sim()
    full = chat(sim.port(), body={**CHAT, "max_tokens": 60}).json()["choices"][0]["message"]["content"]
    assert " " in full, f"expected a multi-word answer to test stop with: {full!r}"
    b = chat(sim.port(), body={**CHAT, "max_tokens": 60, "stop": stop}).json()
    c = b["choices"][0]
    assert " " not in c["message"]["content"] and "\n" not in c["message"]["content"], c
    assert c["finish_reason"] == "stop", c
    assert b["usage"]["completion_tokens"] < 60


def test_context_window_exceeded(start_sim):
    sim = start_sim(endpoints=[endpoint(deployments=[chat_dep("gpt-4o", context_window=1000)])])
    r = chat(sim.port(), body={**CHAT, "max_tokens": 2000})
    assert_azure_error(r, 400, "context_length_exceeded")
    assert chat(sim.port(), body={**CHAT, "max_tokens": 100}).status == 200


# ---- completions and embeddings ------------------------------------------------------------


def test_completions(start_sim):
    sim = start_sim()
    r = call(sim.port(), "POST", az("gpt-35-turbo-instruct", "completions"), {"prompt": "Once upon a time", "max_tokens": 4})
    assert r.status == 200, r
    check_common_headers(r)
    b = r.json()
    assert b["object"] == "text_completion"
    assert b["id"].startswith("cmpl-"), b["id"]
    assert isinstance(b["choices"][0]["text"], str)
    assert b["choices"][0]["finish_reason"] == "length"
    check_usage(b["usage"])
    assert b["usage"]["completion_tokens"] <= 4
    again = call(sim.port(), "POST", az("gpt-35-turbo-instruct", "completions"), {"prompt": "Once upon a time", "max_tokens": 4})
    assert again.json()["choices"][0]["text"] == b["choices"][0]["text"]


def test_embeddings_float(start_sim):
    sim = start_sim()
    r = call(sim.port(), "POST", az(EMB, "embeddings"), {"input": ["alpha", "beta", "alpha"], "encoding_format": "float"})
    assert r.status == 200, r
    check_common_headers(r)
    b = r.json()
    assert b["object"] == "list"
    assert [d["index"] for d in b["data"]] == [0, 1, 2]
    vecs = [d["embedding"] for d in b["data"]]
    for d in b["data"]:
        assert d["object"] == "embedding"
    assert all(len(v) == 1536 for v in vecs)
    assert all(isinstance(x, float) for x in vecs[0])
    assert vecs[0] == vecs[2], "the same input must embed the same"
    assert vecs[0] != vecs[1]
    assert all(math.isfinite(x) for x in vecs[1])
    assert b["usage"]["prompt_tokens"] > 0 and b["usage"]["total_tokens"] == b["usage"]["prompt_tokens"]
    assert b["model"].startswith("text-embedding-3-small")
    # deterministic across requests too
    single = call(sim.port(), "POST", az(EMB, "embeddings"), {"input": "beta"}).json()
    assert single["data"][0]["embedding"] == vecs[1]


def test_embeddings_base64_matches_float(start_sim):
    sim = start_sim()
    f = call(sim.port(), "POST", az(EMB, "embeddings"), {"input": "gamma", "encoding_format": "float"}).json()
    r = call(sim.port(), "POST", az(EMB, "embeddings"), {"input": "gamma", "encoding_format": "base64"})
    assert r.status == 200, r
    s = r.json()["data"][0]["embedding"]
    assert isinstance(s, str), s
    v = decode_b64_floats(s)
    assert len(v) == 1536
    for a, b in zip(v, f["data"][0]["embedding"]):
        assert abs(a - b) <= 1e-6 * max(1.0, abs(b)), (a, b)


def test_embeddings_dimension_from_deployment(start_sim):
    sim = start_sim(endpoints=[endpoint(deployments=[embeddings_dep("small", dimensions=256), embeddings_dep("large", dimensions=3072)])])
    for dep, n in (("small", 256), ("large", 3072)):
        r = call(sim.port(), "POST", az(dep, "embeddings"), {"input": "x"})
        assert r.status == 200, r
        assert len(r.json()["data"][0]["embedding"]) == n


def test_embeddings_on_a_chat_deployment(start_sim):
    sim = start_sim()
    r = call(sim.port(), "POST", az("gpt-4o", "embeddings"), {"input": "x"})
    assert_azure_error(r, 400, "OperationNotSupported")


# ---- the v1 surfaces -------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/openai/v1", "/v1"])
def test_v1_surfaces(start_sim, prefix):
    sim = start_sim()
    p = sim.port()
    r = call(p, "POST", f"{prefix}/chat/completions", {**CHAT, "model": "gpt-4o-mini"})
    assert r.status == 200, r
    assert r.json()["model"] == "gpt-4o-mini-2024-07-18"
    assert r.json()["object"] == "chat.completion"
    r = call(p, "POST", f"{prefix}/embeddings", {"model": EMB, "input": "hi"})
    assert r.status == 200, r
    assert len(r.json()["data"][0]["embedding"]) == 1536
    r = call(p, "POST", f"{prefix}/completions", {"model": "gpt-35-turbo-instruct", "prompt": "Hi", "max_tokens": 3})
    assert r.status == 200, r
    assert r.json()["object"] == "text_completion"
    r = call(p, "GET", f"{prefix}/models")
    assert r.status == 200, r
    b = r.json()
    assert b["object"] == "list"
    assert {m["id"] for m in b["data"]} >= {"gpt-4o", "gpt-4o-mini", "gpt-35-turbo-instruct", EMB}
    assert all(m["object"] == "model" for m in b["data"])
    # Bearer auth works there as well
    r = call(p, "POST", f"{prefix}/chat/completions", {**CHAT, "model": "gpt-4o"}, key=None, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status == 200, r
    # model names an unknown deployment
    r = call(p, "POST", f"{prefix}/chat/completions", {**CHAT, "model": "nope"})
    assert_azure_error(r, 404, "DeploymentNotFound")


def test_v1_missing_model(start_sim):
    sim = start_sim()
    r = call(sim.port(), "POST", "/openai/v1/chat/completions", CHAT)
    assert r.status in (400, 404), r
    assert_azure_error(r, r.status)


def test_openai_flavour(start_sim):
    sim = start_sim(endpoints=[endpoint("oai", flavor="openai", region="onprem")])
    r = call(sim.port(), "POST", "/v1/chat/completions", {**CHAT, "model": "gpt-4o"})
    assert r.status == 200, r
    assert r.header("x-request-id"), r
    assert r.header("x-ms-region") is None, r
    # an OpenAI-compatible server does not want an api-version
    r = call(sim.port(), "POST", "/v1/embeddings", {"model": EMB, "input": "hi"})
    assert r.status == 200, r


# ---- api-version, auth, unknown deployments ------------------------------------------------


def test_api_version_required_on_azure_paths(start_sim):
    sim = start_sim()
    for op, dep, body in (("chat/completions", "gpt-4o", CHAT), ("embeddings", EMB, {"input": "x"})):
        r = call(sim.port(), "POST", az(dep, op, api_version=None), body)
        assert_azure_error(r, 400)
    # the v1 surface needs none
    assert call(sim.port(), "POST", "/openai/v1/chat/completions", {**CHAT, "model": "gpt-4o"}).status == 200


def test_auth_with_key_list(start_sim):
    sim = start_sim(endpoints=[endpoint(api_keys=["k1", "k2"])])
    p = sim.port()
    assert chat(p, key="k1").status == 200
    assert chat(p, key=None, headers={"Authorization": "Bearer k2"}).status == 200
    for kw in ({"key": "k3"}, {"key": None}, {"key": None, "headers": {"Authorization": "Bearer k3"}}, {"key": ""}):
        r = chat(p, **kw)
        assert_azure_error(r, 401, "401")
    # v1 too
    r = call(p, "POST", "/openai/v1/chat/completions", {**CHAT, "model": "gpt-4o"}, key="wrong")
    assert_azure_error(r, 401)


def test_any_key_without_key_list(start_sim):
    sim = start_sim()
    assert chat(sim.port(), key="whatever").status == 200
    assert chat(sim.port(), key=None, headers={"Authorization": "Bearer x"}).status == 200
    assert_azure_error(chat(sim.port(), key=None), 401, "401")
    assert_azure_error(chat(sim.port(), key=""), 401, "401")


def test_unknown_deployment(start_sim):
    sim = start_sim()
    r = chat(sim.port(), "no-such-deployment")
    assert_azure_error(r, 404, "DeploymentNotFound")
    r = call(sim.port(), "POST", az("no-such-deployment", "embeddings"), {"input": "x"})
    assert_azure_error(r, 404, "DeploymentNotFound")


def test_keep_alive_connection(start_sim):
    """SDKs reuse connections: several requests on one."""
    sim = start_sim()
    body = json.dumps(CHAT).encode()
    req = (
        f"POST {az('gpt-4o')} HTTP/1.1\r\nHost: x\r\napi-key: {KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with Conn(sim.port()) as c:
        for _ in range(3):
            c.send(req)
            _, r = c.read_final()
            assert r.status == 200, r
            assert not r.closes


# ---- responses -----------------------------------------------------------------------------


def two_endpoints(start_sim):
    return start_sim(endpoints=[endpoint("east", region="eastus"), endpoint("west", region="westus")])


def resp_path(prefix, rid=None):
    base = "/openai/responses" if prefix == "azure" else "/openai/v1/responses"
    path = base + (f"/{rid}" if rid else "")
    return path + (f"?api-version={API_VERSION}" if prefix == "azure" else "")


@pytest.mark.parametrize("prefix", ["azure", "v1"])
def test_responses_create_retrieve_and_previous(start_sim, prefix):
    sim = two_endpoints(start_sim)
    east, west = sim.port("east"), sim.port("west")
    r = call(east, "POST", resp_path(prefix), {"model": "gpt-4o", "input": "Hello there", "max_output_tokens": 30})
    assert r.status == 200, r
    check_common_headers(r)
    b = r.json()
    assert b["object"] == "response"
    assert b["id"].startswith("resp_"), b["id"]
    assert b["status"] in ("completed", "incomplete"), b["status"]
    if b["status"] == "incomplete":  # cut by max_output_tokens, as the real service says
        assert b["incomplete_details"]["reason"] == "max_output_tokens", b
        assert b["usage"]["output_tokens"] == 30, b["usage"]
    assert b["model"].startswith("gpt-4o")
    msgs = [o for o in b["output"] if o.get("type") == "message"]
    assert msgs and msgs[0]["role"] == "assistant"
    texts = [c for c in msgs[0]["content"] if c.get("type") == "output_text"]
    assert texts and isinstance(texts[0]["text"], str)
    u = b["usage"]
    assert u["input_tokens"] > 0 and u["total_tokens"] == u["input_tokens"] + u["output_tokens"]
    assert u["output_tokens"] <= 30

    g = call(east, "GET", resp_path(prefix, b["id"]))
    assert g.status == 200, g
    assert g.json()["id"] == b["id"]
    assert g.json()["output"] == b["output"]

    # a follow-up on the endpoint that holds the state
    f = call(east, "POST", resp_path(prefix), {"model": "gpt-4o", "input": "And then?", "previous_response_id": b["id"]})
    assert f.status == 200, f
    assert f.json()["previous_response_id"] == b["id"]
    # ... and on another endpoint, which has never seen it
    x = call(west, "POST", resp_path(prefix), {"model": "gpt-4o", "input": "And then?", "previous_response_id": b["id"]})
    assert_azure_error(x, 404)
    assert_azure_error(call(west, "GET", resp_path(prefix, b["id"])), 404)
    assert_azure_error(call(east, "GET", resp_path(prefix, "resp_doesnotexist")), 404)


# ---- threads and assistants ------------------------------------------------------------------


def test_threads_per_endpoint(start_sim):
    sim = two_endpoints(start_sim)
    east, west = sim.port("east"), sim.port("west")
    q = f"?api-version={API_VERSION}"
    r = call(east, "POST", "/openai/threads" + q, {"messages": [{"role": "user", "content": "hi"}]}, headers={"OpenAI-Beta": "assistants=v2"})
    assert r.status == 200, r
    t = r.json()
    assert t["object"] == "thread" and t["id"].startswith("thread_"), t
    g = call(east, "GET", f"/openai/threads/{t['id']}" + q)
    assert g.status == 200 and g.json()["id"] == t["id"], g
    assert_azure_error(call(west, "GET", f"/openai/threads/{t['id']}" + q), 404)
    # ids are not shared: the other endpoint's thread ids are its own
    t2 = call(west, "POST", "/openai/threads" + q, {}).json()
    assert t2["id"] != t["id"]
    assert_azure_error(call(east, "GET", f"/openai/threads/{t2['id']}" + q), 404)


def test_assistants_per_endpoint(start_sim):
    sim = two_endpoints(start_sim)
    east, west = sim.port("east"), sim.port("west")
    q = f"?api-version={API_VERSION}"
    r = call(east, "POST", "/openai/assistants" + q, {"model": "gpt-4o", "name": "helper", "instructions": "Be nice."})
    assert r.status == 200, r
    a = r.json()
    assert a["object"] == "assistant" and a["id"].startswith("asst_"), a
    assert a["model"] == "gpt-4o" and a["name"] == "helper"
    g = call(east, "GET", f"/openai/assistants/{a['id']}" + q)
    assert g.status == 200 and g.json()["id"] == a["id"], g
    assert_azure_error(call(west, "GET", f"/openai/assistants/{a['id']}" + q), 404)


# ---- two endpoints in one process (T2: PTU + PAYG) ---------------------------------------------


def test_two_endpoints_one_process(start_sim):
    sim = start_sim(
        endpoints=[
            endpoint("ptu-east", region="eastus", api_keys=["ptu-key"], deployments=[chat_dep("gpt-4o", capacity="provisioned", tpm=600000)]),
            endpoint("payg-east", region="eastus2", api_keys=["payg-key"], deployments=[chat_dep("gpt-4o", tpm=600000)]),
        ]
    )
    a, b = sim.port("ptu-east"), sim.port("payg-east")
    ra = chat(a, key="ptu-key")
    rb = chat(b, key="payg-key")
    assert ra.status == 200 and rb.status == 200, (ra, rb)
    assert ra.header("x-ms-region") == "eastus"
    assert rb.header("x-ms-region") == "eastus2"
    # a runtime fault on one endpoint leaves the other alone
    sim.add_faults("ptu-east", [{"kind": "status", "status": 503, "probability": 1.0}])
    assert chat(a, key="ptu-key").status == 503
    assert chat(b, key="payg-key").status == 200
    # the stats are per endpoint
    st = sim.stats()
    assert st_requests(dep_stats(st, "ptu-east", "gpt-4o")) == 2
    assert st_requests(dep_stats(st, "payg-east", "gpt-4o")) == 2
    # keys are per endpoint
    sim.clear_faults("ptu-east")
    assert_azure_error(chat(a, key="payg-key"), 401)
    assert_azure_error(chat(b, key="ptu-key"), 401)


def test_embeddings_dimensions_parameter(start_sim):
    """text-embedding-3 style: a shorter `dimensions` gives the renormalised prefix; all unit norm."""
    sim = start_sim()
    full = call(sim.port(), "POST", az(EMB, "embeddings"), {"input": "delta"}).json()["data"][0]["embedding"]
    r = call(sim.port(), "POST", az(EMB, "embeddings"), {"input": "delta", "dimensions": 256})
    assert r.status == 200, r
    short = r.json()["data"][0]["embedding"]
    assert len(short) == 256
    norm = math.sqrt(sum(x * x for x in full))
    assert abs(norm - 1.0) < 1e-3, norm
    assert abs(math.sqrt(sum(x * x for x in short)) - 1.0) < 1e-3
    k = math.sqrt(sum(x * x for x in full[:256]))
    for a, b in zip(short, full[:256]):
        assert abs(a - b / k) < 1e-5
    r = call(sim.port(), "POST", az(EMB, "embeddings"), {"input": "delta", "dimensions": 4096})
    assert_azure_error(r, 400)


def test_completions_several_prompts_and_n(start_sim):
    sim = start_sim()
    r = call(sim.port(), "POST", az("gpt-35-turbo-instruct", "completions"), {"prompt": ["one", "two"], "n": 2, "max_tokens": 3})
    assert r.status == 200, r
    b = r.json()
    assert [c["index"] for c in b["choices"]] == [0, 1, 2, 3], b
    texts = [c["text"] for c in b["choices"]]
    assert len(set(texts)) > 1, texts
    assert b["usage"]["completion_tokens"] <= 12


def test_invalid_api_version(start_sim):
    sim = start_sim()
    r = call(sim.port(), "POST", az("gpt-4o", api_version="yesterday"), CHAT)
    assert_azure_error(r, 400)
    for v in ("2024-10-21", "2025-04-01-preview", "preview"):
        assert call(sim.port(), "POST", az("gpt-4o", api_version=v), CHAT).status == 200, v


def test_openai_flavour_errors(start_sim):
    """An OpenAI-compatible server answers in OpenAI's error shape, 429 included."""
    sim = start_sim(endpoints=[endpoint("oai", flavor="openai", api_keys=["k"], deployments=[chat_dep("gpt-4o", tpm=1000, rpm=6000)])])
    p = sim.port()
    r = call(p, "POST", "/v1/chat/completions", {**CHAT, "model": "gpt-4o"}, key="bad")
    assert r.status == 401 and r.json()["error"]["code"] == "invalid_api_key", r
    r = call(p, "POST", "/v1/chat/completions", {**CHAT, "model": "nope"}, key="k")
    assert r.status == 404 and r.json()["error"]["code"] == "model_not_found", r
    assert call(p, "POST", "/v1/chat/completions", {**CHAT, "model": "gpt-4o", "max_tokens": 900}, key="k").status == 200
    r = call(p, "POST", "/v1/chat/completions", {**CHAT, "model": "gpt-4o", "max_tokens": 900}, key="k")
    assert r.status == 429, r
    assert r.header("retry-after") and r.header("retry-after-ms"), r
    assert int(r.header("retry-after")) == math.ceil(int(r.header("retry-after-ms")) / 1000)
    assert r.json()["error"]["code"] == "rate_limit_exceeded", r
    assert r.header("x-ms-region") is None


def test_delete_stored_objects(start_sim):
    sim = start_sim()
    p = sim.port()
    q = f"?api-version={API_VERSION}"
    t = call(p, "POST", "/openai/threads" + q, {}).json()["id"]
    a = call(p, "POST", "/openai/assistants" + q, {"model": "gpt-4o"}).json()["id"]
    resp = call(p, "POST", "/openai/v1/responses", {"model": "gpt-4o", "input": "x"}).json()["id"]
    for path in (f"/openai/threads/{t}" + q, f"/openai/assistants/{a}" + q, f"/openai/v1/responses/{resp}"):
        d = call(p, "DELETE", path)
        assert d.status == 200, d
        assert d.json().get("deleted") is True, d.json()
        assert_azure_error(call(p, "GET", path), 404)
        assert_azure_error(call(p, "DELETE", path), 404)


def test_responses_store_false(start_sim):
    sim = start_sim()
    r = call(sim.port(), "POST", "/openai/v1/responses", {"model": "gpt-4o", "input": "x", "store": False})
    assert r.status == 200, r
    assert_azure_error(call(sim.port(), "GET", f"/openai/v1/responses/{r.json()['id']}"), 404)


def test_documented_prompt_token_estimate(start_sim):
    """docs: a string costs ceil(bytes / 4) tokens; each message 3 more; 3 to prime the reply."""
    sim = start_sim()
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]
    u = chat(sim.port(), body={"messages": msgs}).json()["usage"]
    expected = 3 + sum(3 + math.ceil(len(m["content"].encode()) / 4) for m in msgs)
    assert u["prompt_tokens"] == expected, (u, expected)
    e = call(sim.port(), "POST", az(EMB, "embeddings"), {"input": ["abcdefghi", "xy"]}).json()["usage"]
    assert e["prompt_tokens"] == 3 + 1, e


def test_lower_max_tokens_gives_a_prefix_and_endpoints_agree(start_sim):
    """docs/simulator.md: a lower max_tokens gives a prefix of the same answer, and the same
    request gives the same content and usage on every endpoint."""
    sim = start_sim(endpoints=[endpoint("a"), endpoint("b", region="westus")])
    body = {"messages": [{"role": "user", "content": "Tell me about sluices."}]}
    full = chat(sim.port("a"), body={**body, "max_tokens": 200}).json()
    short = chat(sim.port("a"), body={**body, "max_tokens": 5}).json()
    other = chat(sim.port("b"), body={**body, "max_tokens": 200}).json()
    text = full["choices"][0]["message"]["content"]
    assert text.startswith(short["choices"][0]["message"]["content"]) and len(text) > len(short["choices"][0]["message"]["content"])
    assert other["choices"][0]["message"]["content"] == text and other["usage"] == full["usage"]
    # the body's seed changes the answer
    seeded = chat(sim.port("a"), body={**body, "max_tokens": 200, "seed": 42}).json()
    assert seeded["choices"][0]["message"]["content"] != text
