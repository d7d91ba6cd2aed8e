"""Credential termination (S1) and no payload in logs (S5): clients use their own keys (api-key
or Authorization: Bearer, stored hashed), sluice sends the backend's key instead, and neither
key nor prompt text shows up in any response or log line."""

import json
import subprocess

import pytest

from proxytools import *  # noqa: F401,F403
from proxytools import (
    API_VERSION,
    BACKEND_KEY,
    CLIENT_KEY,
    CLIENT_KEY_2,
    MARKER,
    SECRETS,
    RecordingBackend,
    assert_gw_error,
    azure_backend,
    chat_body,
    gw_call,
    hash_key,
    openai_backend,
)
from helpers import SLUICE_BIN
from simtools import az

AUTH_CODES = ("401",)  # Azure's own code for a bad key


def assert_401(r):
    err = assert_gw_error(r, 401)
    assert err["code"] in AUTH_CODES, r
    return err


def test_hash_key_matches_the_config_form():
    p = subprocess.run([SLUICE_BIN, "hash-key", CLIENT_KEY], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p
    assert p.stdout.strip() == hash_key(CLIENT_KEY)


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", az("gpt-4o"), chat_body()),
        ("POST", "/openai/v1/chat/completions", chat_body(model="gpt-4o")),
        ("POST", "/v1/chat/completions", chat_body(model="gpt-4o")),
        ("POST", az("text-embedding-3-small", "embeddings"), {"input": "x"}),
        ("POST", f"/openai/responses?api-version={API_VERSION}", {"model": "gpt-4o", "input": "x"}),
        ("POST", f"/openai/threads?api-version={API_VERSION}", {}),
        ("GET", "/v1/models", None),
        ("POST", az("no-such-route"), chat_body()),
    ],
    ids=["azure-chat", "openai-v1", "v1", "embeddings", "responses", "threads", "models", "unknown-route"],
)
def test_missing_key_is_401(proxy, method, path, body):
    r = proxy.call(method, path, body, key=None)
    assert_401(r)
    assert proxy.upstream_requests() == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"api-key": "wrong-key"},
        {"api-key": ""},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {CLIENT_KEY}"},
        {"api-key": BACKEND_KEY},
        {"api-key": hash_key(CLIENT_KEY)},
        {"api-key": CLIENT_KEY + "x"},
        {"api-key": CLIENT_KEY[:-1]},
    ],
    ids=["wrong", "empty", "bearer-wrong", "bearer-empty", "basic", "backend-key", "the-hash", "longer", "shorter"],
)
def test_unknown_key_is_401(proxy, headers):
    r = proxy.call("POST", az("gpt-4o"), chat_body(), headers=headers, key=None)
    assert_401(r)
    assert proxy.upstream_requests() == 0


@pytest.mark.parametrize("auth", ["api-key", "bearer"])
@pytest.mark.parametrize("key", [CLIENT_KEY, CLIENT_KEY_2], ids=["client1", "client2"])
def test_client_keys_are_accepted_either_way(proxy, auth, key):
    # The simulator accepts only BACKEND_KEY: a 200 proves sluice replaced the client's key.
    r = proxy.call("POST", az("gpt-4o"), chat_body(), key=key, auth=auth)
    assert r.status == 200, r
    r = proxy.call("POST", "/v1/chat/completions", chat_body(model="gpt-4o"), key=key, auth=auth)
    assert r.status == 200, r
    assert proxy.dep("gpt-4o")["by_status"] == {"200": 2}


def test_bearer_scheme_is_case_insensitive(proxy):
    r = proxy.call("POST", az("gpt-4o"), chat_body(), key=None, headers={"Authorization": f"bearer {CLIENT_KEY}"})
    assert r.status == 200, r


def test_openai_type_backend_from_v1(proxy):
    # route oai-chat -> an `openai` backend on the same endpoint: {url}/chat/completions with
    # Authorization: Bearer BACKEND_KEY (the endpoint refuses any other key), model gpt-4o
    r = proxy.call("POST", "/v1/chat/completions", chat_body(model="oai-chat"))
    assert r.status == 200, r
    assert r.json()["model"] == "gpt-4o-2024-08-06"
    assert r.header("x-sluice-backend") == "oai-gpt-4o"
    assert proxy.dep("gpt-4o")["by_status"] == {"200": 1}
    seen = proxy.wait_sim_access(lambda x: x["method"] == "POST")
    assert [(x["path"], x["status"]) for x in seen] == [("/v1/chat/completions", 200)], seen


def test_openai_type_backend_from_an_azure_path(proxy):
    # the AzureOpenAI SDK names the deployment in the path and often no model in the body; an
    # OpenAI-style backend needs `model`: sluice must set it to the backend's name
    r = proxy.call("POST", az("oai-chat"), chat_body())
    assert r.status == 200, r
    assert r.json()["model"] == "gpt-4o-2024-08-06"
    assert proxy.dep("gpt-4o")["by_status"] == {"200": 1}
    # and a wrong model in the body is replaced too (the path decides)
    r = proxy.call("POST", az("oai-chat"), chat_body(model="gpt-4o-mini"))
    assert r.status == 200, r
    assert r.json()["model"] == "gpt-4o-2024-08-06", r
    seen = proxy.wait_sim_access(lambda x: x["method"] == "POST")
    assert [x["path"] for x in seen] == ["/v1/chat/completions"] * 2, seen


# ---- exactly what goes upstream (a recording backend) ------------------------------------------------


@pytest.mark.parametrize("auth", ["api-key", "bearer"])
def test_azure_backend_receives_its_key_and_never_the_clients(start_gateway, auth):
    with RecordingBackend() as be:
        gw = start_gateway([azure_backend("rec", be.port, deployment="gpt-4o")], [{"name": "gpt-4o", "backend": "rec"}])
        r = gw_call(gw.port, "POST", az("gpt-4o"), chat_body(), auth=auth)
        assert r.status == 200, r
        (req,) = be.wait_requests(1)
        assert req.header("api-key") == BACKEND_KEY, req
        assert req.header("authorization") is None, req
        wire = repr(req.headers) + req.target
        assert CLIENT_KEY not in wire, req
        for name, s in SECRETS.items():
            if name != "prompt marker":
                assert s not in r.raw.decode("latin-1"), f"{name} in the response"


@pytest.mark.parametrize("auth", ["api-key", "bearer"])
def test_openai_backend_receives_bearer_and_never_the_clients(start_gateway, auth):
    with RecordingBackend() as be:
        gw = start_gateway(
            [openai_backend("rec", be.port, deployment="gpt-4o-upstream")],
            [{"name": "gpt-4o", "backend": "rec"}],
        )
        r = gw_call(gw.port, "POST", "/v1/chat/completions", chat_body(model="gpt-4o"), auth=auth)
        assert r.status == 200, r
        (req,) = be.wait_requests(1)
        assert req.path == "/v1/chat/completions", req
        assert req.header("authorization") == f"Bearer {BACKEND_KEY}", req
        assert req.header("api-key") is None, req
        assert CLIENT_KEY not in repr(req.headers) + req.target
        # the model sent upstream is the backend's deployment name
        sent = json.loads(req.body)
        assert sent["model"] == "gpt-4o-upstream", sent
        assert sent["messages"] == chat_body()["messages"], sent


def test_backend_without_api_key_gets_no_credential(start_gateway):
    with RecordingBackend() as be:
        gw = start_gateway([azure_backend("rec", be.port, deployment="gpt-4o", key=False)], [{"name": "gpt-4o", "backend": "rec"}])
        r = gw_call(gw.port, "POST", az("gpt-4o"), chat_body(), auth="bearer")
        assert r.status == 200, r
        (req,) = be.wait_requests(1)
        assert req.header("api-key") is None and req.header("authorization") is None, req


# ---- nothing secret in responses or logs -----------------------------------------------------------


def test_no_secret_and_no_prompt_in_logs_at_debug_level(start_proxy):
    p = start_proxy(gw={"log": {"level": "debug", "format": "json", "access": True}})
    assert p.call("POST", az("gpt-4o"), chat_body()).status == 200
    assert p.call("POST", "/v1/chat/completions", chat_body(model="gpt-4o"), auth="bearer").status == 200
    s = p.stream(az("gpt-4o"), chat_body(stream=True, stream_options={"include_usage": True}))
    assert s.status == 200 and s.done, s
    assert p.call("POST", az("text-embedding-3-small", "embeddings"), {"input": MARKER}).status == 200
    # errors: bad JSON holding the marker, an unknown key, an unknown route, a backend error
    assert p.call("POST", "/v1/chat/completions", '{"model":"gpt-4o","messages":"' + MARKER).status == 400
    assert p.call("POST", az("gpt-4o"), chat_body(), key="nope-" + MARKER).status == 401
    assert p.call("POST", az("no-such-route"), chat_body()).status == 404
    p.sim.add_faults("aoai", [{"kind": "status", "status": 500, "count": 1, "probability": 1.0}])
    assert p.call("POST", az("gpt-4o"), chat_body()).status == 500
    assert p.call("POST", az("dead"), chat_body()).status == 502
    # the requests were logged (access lines), but without keys or payload
    acc = p.gw.wait_access(lambda x: x.get("status") == 502)
    assert acc, p.gw.stderr()
    # checked here and again at teardown, for every gateway of every test
    assert p.gw.leaks() == [], p.gw.stderr()[-4000:]


def test_backend_key_never_in_responses(proxy):
    rs = [
        proxy.call("POST", az("gpt-4o"), chat_body()),
        proxy.call("POST", az("gpt-4o"), chat_body(), key="bad"),
        proxy.call("POST", az("nope"), chat_body()),
        proxy.call("POST", az("dead"), chat_body()),
        proxy.call("GET", "/v1/models"),
        proxy.call("POST", "/v1/chat/completions", b"{"),
    ]
    s = proxy.stream(az("gpt-4o"), chat_body(stream=True))
    assert [r.status for r in rs] == [200, 401, 404, 502, 200, 400], rs
    for r in rs:
        text = r.raw.decode("latin-1")
        assert BACKEND_KEY not in text and CLIENT_KEY not in text, r
    assert BACKEND_KEY not in repr(s.headers) + s.body.decode("latin-1")


def test_log_payloads_warns_at_start_up(start_proxy):
    p = start_proxy(
        routes=[
            {"name": "gpt-4o", "backend": "aoai-gpt-4o", "log_payloads": True},
            {"name": "chat", "backend": "aoai-gpt-4o"},
        ],
        gw={"log": {"level": "debug", "format": "json", "access": True}},
    )
    warns = [x for x in p.gw.log_lines() if x.get("level") == "warn" and "gpt-4o" in x.get("msg", "")]
    assert warns, p.gw.stderr()
    # a route without the switch keeps its prompts out of the logs, even at debug level
    assert p.call("POST", az("chat"), chat_body()).status == 200
    assert p.call("POST", az("chat"), chat_body(stream=True)).status == 200
    assert MARKER not in p.gw.stderr()
    # the route with it may log them (for debugging)
    p.gw.allowed_in_logs.add("prompt marker")
    assert p.call("POST", az("gpt-4o"), chat_body()).status == 200


def test_log_payloads_logs_nothing_above_debug_level(start_proxy):
    # config reference: log_payloads logs the bodies "at `debug` level"
    p = start_proxy(
        routes=[{"name": "gpt-4o", "backend": "aoai-gpt-4o", "log_payloads": True}],
        gw={"log": {"level": "info", "format": "json", "access": True}},
    )
    assert p.call("POST", az("gpt-4o"), chat_body()).status == 200
    p.gw.wait_access(lambda x: x.get("status") == 200)
    p.gw.allowed_in_logs.add("prompt marker")  # reported here, not again at teardown
    assert MARKER not in p.gw.stderr(), [x for x in p.gw.log_lines() if MARKER in json.dumps(x)]
