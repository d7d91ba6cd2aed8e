"""Who may call what (issue 7, items 2 and 3, and reloads): grants answer 403 for a route the
client was not given, naming that route and no other, without calling any backend, and
/v1/models lists only the granted routes; the front-door check (a required header, allowed
networks) answers 403 before anything else; SIGHUP applies a changed file to new requests,
keeps the running configuration when the file has an error, and keeps pinned objects where
they live.

Every gateway here serves its simulated endpoints in the same process; /_sim/stats on the
admin listener says what reached them."""

import pytest

from proxytools import *  # noqa: F401,F403
from proxytools import (
    API_VERSION,
    CLIENT_KEY,
    CLIENT_KEY_2,
    assert_gw_error,
    chat_body,
    client_entry,
    reload_gateway,
    routing_backend,
    routing_endpoint,
)
from simtools import az

# Route names that do not contain one another, so that a message naming one cannot be read as
# naming another.
ROUTES = ["alpha", "bravo", "charlie"]


def grants_env(start_routing, gw=None):
    return start_routing(
        endpoints=[routing_endpoint("ep")],
        backends=[routing_backend("b", "ep")],
        routes=[{"name": n, "backend": "b"} for n in ROUTES],
        clients=[
            client_entry("app1", CLIENT_KEY, routes=["alpha"]),
            client_entry("app2", CLIENT_KEY_2),  # no routes given: every route
        ],
        gw=gw,
    )


# ---- grants --------------------------------------------------------------------------------------


@pytest.mark.parametrize("surface", ["azure", "v1"])
def test_ungranted_route_is_403_naming_only_it(start_routing, surface):
    env = grants_env(start_routing)
    assert env.chat("alpha").status == 200
    before = env.seen("ep")
    if surface == "azure":
        r = env.chat("bravo")
    else:
        r = env.call("POST", "/v1/chat/completions", chat_body(model="bravo"))
    err = assert_gw_error(r, 403, "PermissionDenied")
    msg = err["message"]
    assert "bravo" in msg and "app1" in msg, msg
    assert "alpha" not in msg and "charlie" not in msg, f"the 403 tells of other routes: {msg}"
    assert r.header("x-request-id"), r
    assert env.seen("ep") == before, "an ungranted request reached a backend"
    # the other client has every route
    r = env.chat("bravo", key=CLIENT_KEY_2)
    assert r.status == 200, r
    assert env.seen("ep") == before + 1


def test_models_lists_only_granted_routes(start_routing):
    env = grants_env(start_routing)
    for path in ("/v1/models", "/openai/v1/models"):
        r = env.call("GET", path)
        assert r.status == 200, r
        body = r.json()
        assert body["object"] == "list", body
        assert [m["id"] for m in body["data"]] == ["alpha"], body
        r = env.call("GET", path, key=CLIENT_KEY_2)
        assert r.status == 200, r
        assert sorted(m["id"] for m in r.json()["data"]) == sorted(ROUTES), r.json()
    assert env.seen("ep") == 0


def test_unknown_route_is_404_not_403(start_routing):
    """A name no route has is 404 for everybody: a 403 would tell that the name exists."""
    env = grants_env(start_routing)
    r = env.chat("delta")
    assert_gw_error(r, 404, "DeploymentNotFound")
    assert "delta" not in r.json()["error"]["message"]


# ---- the front door ------------------------------------------------------------------------------------

FDID = "5b9a1c3e-0000-4000-8000-00000000abcd"
FDID_2 = "5b9a1c3e-0000-4000-8000-00000000ef01"


def test_front_door_header(start_routing):
    env = grants_env(start_routing, gw={"front_door": {"header": "X-Azure-FDID", "values": [FDID, FDID_2]}})
    cases = [
        (None, 403),
        ("", 403),
        ("not-our-front-door", 403),
        (FDID.upper(), 403),  # ids are compared exactly
        (FDID, 200),
        (FDID_2, 200),
    ]
    for value, want in cases:
        hs = {} if value is None else {"X-Azure-FDID": value}
        before = env.seen("ep")
        r = env.chat("alpha", headers=hs)
        if want == 200:
            assert r.status == 200, (value, r)
            assert env.seen("ep") == before + 1
        else:
            err = assert_gw_error(r, 403, "Forbidden")
            assert "X-Azure-FDID" in err["message"], err
            assert env.seen("ep") == before, f"{value!r}: a request from outside reached a backend"
    # Checked before the client's key: no key, no front door -> 403, not 401.
    r = env.call("POST", az("alpha"), chat_body(), key=None)
    assert_gw_error(r, 403, "Forbidden")
    # The header name is case-insensitive, as every HTTP header's.
    r = env.chat("alpha", headers={"x-azure-fdid": FDID})
    assert r.status == 200, r
    # /healthz stays open for the load balancer's probes
    r = env.call("GET", "/healthz", key=None)
    assert r.status == 200, r


@pytest.mark.parametrize(
    "networks,want",
    [
        (["10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"], 403),
        (["10.0.0.0/8", "127.0.0.0/8"], 200),
        (["127.0.0.1/32"], 200),
        (["127.0.0.2/31"], 403),
    ],
)
def test_front_door_networks(start_routing, networks, want):
    env = grants_env(start_routing, gw={"front_door": {"networks": networks}})
    r = env.chat("alpha")
    if want == 200:
        assert r.status == 200, r
        assert env.seen("ep") == 1
    else:
        err = assert_gw_error(r, 403, "Forbidden")
        assert "network" in err["message"], err
        assert env.seen("ep") == 0


def test_front_door_header_and_networks_both_needed(start_routing):
    env = grants_env(start_routing, gw={"front_door": {"header": "X-Azure-FDID", "values": FDID, "networks": ["127.0.0.0/8"]}})
    assert_gw_error(env.chat("alpha"), 403, "Forbidden")
    assert env.chat("alpha", headers={"X-Azure-FDID": FDID}).status == 200


# ---- reload (SIGHUP) ---------------------------------------------------------------------------------


def reload_env(start_routing):
    return start_routing(
        endpoints=[routing_endpoint("ep-a"), routing_endpoint("ep-b")],
        backends=[routing_backend("a", "ep-a"), routing_backend("b", "ep-b")],
        routes=[
            {"name": "alpha", "backends": [{"backend": "a", "priority": 1}, {"backend": "b", "priority": 2}]},
            {"name": "bravo", "backend": "b"},
        ],
        clients=[client_entry("app1", CLIENT_KEY, routes=["alpha"])],
    )


def test_reload_applies_grants_and_pools(start_routing):
    env = reload_env(start_routing)
    assert env.chat("alpha").header("x-sluice-backend") == "a"
    assert_gw_error(env.chat("bravo"), 403, "PermissionDenied")

    cfg = env.gw.config
    cfg["clients"][0]["routes"] = ["alpha", "bravo"]
    cfg["routes"][0]["backends"] = [{"backend": "b", "priority": 1}, {"backend": "a", "priority": 2}]
    assert reload_gateway(env.gw), env.gw.stderr()[-3000:]
    r = env.chat("bravo")
    assert r.status == 200 and r.header("x-sluice-backend") == "b", r
    for _ in range(3):
        assert env.chat("alpha").header("x-sluice-backend") == "b"

    # A grant taken away applies at once too.
    cfg["clients"][0]["routes"] = ["bravo"]
    assert reload_gateway(env.gw)
    assert_gw_error(env.chat("alpha"), 403, "PermissionDenied")
    r = env.call("GET", "/v1/models")
    assert [m["id"] for m in r.json()["data"]] == ["bravo"], r


def test_reload_with_an_error_keeps_the_running_config(start_routing):
    env = reload_env(start_routing)
    cfg = env.gw.config
    cfg["clients"][0]["routes"] = ["alpha", "bravo"]
    cfg["routes"][0]["backends"] = [{"backend": "b"}, {"backend": "nosuch"}]  # unknown backend
    assert reload_gateway(env.gw) is False, "a file with an error was taken"
    log = env.gw.stderr()
    assert "nosuch" in log, log[-3000:]
    assert "the running configuration stays in use" in log, log[-3000:]
    # nothing of the broken file applies: bravo is still not granted, alpha still goes to a
    assert_gw_error(env.chat("bravo"), 403, "PermissionDenied")
    assert env.chat("alpha").header("x-sluice-backend") == "a"
    # a later good file is taken
    cfg["routes"][0]["backends"] = [{"backend": "b"}]
    assert reload_gateway(env.gw)
    assert env.chat("bravo").status == 200
    assert env.chat("alpha").header("x-sluice-backend") == "b"


def test_pinned_threads_survive_a_reload(start_routing):
    env = start_routing(
        endpoints=[routing_endpoint("ep-a"), routing_endpoint("ep-b")],
        backends=[routing_backend("a", "ep-a"), routing_backend("b", "ep-b")],
        routes=[{"name": "alpha", "backends": [{"backend": "a"}, {"backend": "b"}]}],
    )
    path = f"/openai/threads?api-version={API_VERSION}"
    r = env.call("POST", path, {})
    assert r.status == 200, r
    thread, owner = r.json()["id"], r.header("x-sluice-backend")
    other = {"a": "b", "b": "a"}[owner]
    # After the reload, plain requests prefer the other backend: only the pin keeps the
    # thread's requests at home.
    env.gw.config["routes"][0]["backends"] = [{"backend": other, "priority": 1}, {"backend": owner, "priority": 2}]
    assert reload_gateway(env.gw)
    assert env.chat("alpha").header("x-sluice-backend") == other
    for _ in range(3):
        r = env.call("GET", f"/openai/threads/{thread}?api-version={API_VERSION}")
        assert r.status == 200, f"the thread's requests left its backend after the reload: {r!r}"
        assert r.header("x-sluice-backend") == owner and r.json()["id"] == thread, r
