"""Where a request may go (issue 6): pinning of stateful objects to the backend that holds them,
session affinity (x-sluice-session), data residency (geographies) and nearest first (region).

Each test runs one `sluice serve` with the simulated endpoints behind it (proxytools.start_routing);
/_sim/stats says what each backend saw. The simulator keeps threads and stored responses per
endpoint, so a request sent to the wrong backend is a 404 there.
"""

import re
import time

from proxytools import *  # noqa: F401,F403
from proxytools import API_VERSION, CLIENT_KEY, CLIENT_KEY_2, assert_gw_error, routing_backend, routing_endpoint
from simtools import rt_fault


def pool(*members):
    return [{"backend": b, "priority": p, "weight": w} for b, p, w in members]


def obj_path(kind, id=None, sub=None):
    p = f"/openai/{kind}" + (f"/{id}" if id else "") + (f"/{sub}" if sub else "")
    return p + f"?api-version={API_VERSION}"


# ---- pinning ------------------------------------------------------------------------------------------


def pinning_env(start_routing):
    return start_routing(
        endpoints=[routing_endpoint("ep-a"), routing_endpoint("ep-b")],
        backends=[routing_backend("a", "ep-a"), routing_backend("b", "ep-b")],
        # the first route serves stateful requests that name no model (reading a thread)
        routes=[{"name": "gpt-4o", "backends": pool(("a", 1, 1), ("b", 1, 1))}],
    )


def other(name):
    return {"a": "b", "b": "a"}[name]


def test_pinned_objects_stay_on_their_backend(start_routing):
    env = pinning_env(start_routing)
    r = env.call("POST", obj_path("threads"), {})
    assert r.status == 200, r
    thread, t_owner = r.json()["id"], r.header("x-sluice-backend")
    r = env.call("POST", obj_path("responses"), {"model": "gpt-4o", "input": "Say hello.", "max_output_tokens": 16})
    assert r.status == 200, r
    resp, r_owner = r.json()["id"], r.header("x-sluice-backend")
    assert t_owner in ("a", "b") and r_owner in ("a", "b"), (t_owner, r_owner)
    # plain requests keep alternating (equal weights): pinning is what keeps the objects home
    plain = {env.chat().header("x-sluice-backend") for _ in range(4)}
    assert plain == {"a", "b"}, plain

    before = env.seen_all()
    calls = {"a": 0, "b": 0}
    for i in range(20):
        step = i % 4
        if step == 0:
            r, owner = env.call("GET", obj_path("threads", thread)), t_owner
            assert r.status == 200 and r.json()["id"] == thread, r
        elif step == 1:
            # not simulated (404 on every endpoint), but it must still go to the thread's backend
            r, owner = env.call("POST", obj_path("threads", thread, "messages"), {"role": "user", "content": "Hi"}), t_owner
        elif step == 2:
            body = {"model": "gpt-4o", "input": "And now?", "previous_response_id": resp, "max_output_tokens": 16}
            r, owner = env.call("POST", obj_path("responses"), body), r_owner
            assert r.status == 200, f"previous_response_id went to a backend that does not hold it: {r!r}"
        else:
            r, owner = env.call("GET", obj_path("responses", resp)), r_owner
            assert r.status == 200 and r.json()["id"] == resp, r
        assert r.header("x-sluice-backend") == owner, f"call {i}: {r!r}"
        calls[owner] += 1
    after = env.seen_all()
    assert after["ep-a"] - before["ep-a"] == calls["a"], (before, after, calls)
    assert after["ep-b"] - before["ep-b"] == calls["b"], (before, after, calls)


def test_a_pinned_backends_429_reaches_the_client(start_routing):
    env = pinning_env(start_routing)
    r = env.call("POST", obj_path("responses"), {"model": "gpt-4o", "input": "Say hello.", "max_output_tokens": 16})
    assert r.status == 200, r
    resp, owner = r.json()["id"], r.header("x-sluice-backend")
    ep_owner, ep_other = f"ep-{owner}", f"ep-{other(owner)}"
    env.faults(ep_owner, [rt_fault("status", status=429, retry_after_ms=1500, count=1)])
    before = env.seen_all()
    body = {"model": "gpt-4o", "input": "Next.", "previous_response_id": resp, "max_output_tokens": 16}
    t0 = time.monotonic()
    r = env.call("POST", obj_path("responses"), body)
    assert r.status == 429, f"a pinned request was not answered with its backend's 429: {r!r}"
    assert r.header("retry-after-ms") is not None and r.header("retry-after") is not None, r
    assert 1000 <= int(r.header("retry-after-ms")) <= 1500, r
    assert env.seen(ep_other) == before[ep_other], "the pinned request was moved to a backend without its history"
    # while the owner is throttled, the pinned request is answered 429 at once, not moved
    r = env.call("POST", obj_path("responses"), body)
    assert r.status == 429, r
    assert int(r.header("retry-after-ms")) <= 1500 and int(r.header("retry-after")) <= 2, r
    assert env.seen(ep_other) == before[ep_other]
    # other requests do use the other backend meanwhile
    if time.monotonic() < t0 + 1.2:
        assert env.chat().header("x-sluice-backend") == other(owner)
    # and after the retry-after the pinned request is served by its owner
    time.sleep(max(0.0, t0 + 1.7 - time.monotonic()))
    r = env.call("POST", obj_path("responses"), body)
    assert r.status == 200 and r.header("x-sluice-backend") == owner, r


def test_a_pinned_backends_failure_is_not_moved(start_routing):
    env = start_routing(
        endpoints=[routing_endpoint("ep-a"), routing_endpoint("ep-b")],
        backends=[routing_backend("a", "ep-a", failure_threshold=100), routing_backend("b", "ep-b", failure_threshold=100)],
        routes=[{"name": "gpt-4o", "backends": pool(("a", 1, 1), ("b", 1, 1))}],
    )
    r = env.call("POST", obj_path("responses"), {"model": "gpt-4o", "input": "Say hello.", "max_output_tokens": 16})
    assert r.status == 200, r
    resp, owner = r.json()["id"], r.header("x-sluice-backend")
    env.faults(f"ep-{owner}", [rt_fault("status", status=503, count=1)])
    before = env.seen(f"ep-{other(owner)}")
    body = {"model": "gpt-4o", "input": "Next.", "previous_response_id": resp, "max_output_tokens": 16}
    r = env.call("POST", obj_path("responses"), body)
    assert r.status == 503, f"the response's backend failed; another backend cannot serve it: {r!r}"
    assert env.seen(f"ep-{other(owner)}") == before
    r = env.call("POST", obj_path("responses"), body)
    assert r.status == 200 and r.header("x-sluice-backend") == owner, r


def test_creating_an_object_is_not_retried_after_a_5xx(start_routing):
    env = start_routing(
        endpoints=[routing_endpoint("ep-a"), routing_endpoint("ep-b")],
        backends=[routing_backend("a", "ep-a", first_byte_timeout="500ms"), routing_backend("b", "ep-b")],
        routes=[{"name": "gpt-4o", "backends": pool(("a", 1, 1), ("b", 2, 1))}],
    )
    create = {"model": "gpt-4o", "input": "Say hello.", "max_output_tokens": 16}
    env.faults("ep-a", [rt_fault("status", status=500, count=1)])
    r = env.call("POST", obj_path("responses"), create)
    assert r.status == 500, f"a stored response was created again after a 500 (it may exist already): {r!r}"
    assert env.seen_all() == {"ep-a": 1, "ep-b": 0}
    # a timeout is no safer: the backend may have done it
    env.faults("ep-a", [rt_fault("stall_headers", duration_ms=3000, count=1)])
    r = env.call("POST", obj_path("responses"), create)
    assert r.status == 504, r
    assert env.seen("ep-b") == 0
    # a chat completion holds no state: retried after a 500
    env.faults("ep-a", [rt_fault("status", status=500, count=1)])
    r = env.chat()
    assert r.status == 200 and r.header("x-sluice-backend") == "b", r
    assert env.seen("ep-b") == 1
    # a 429 is safe to retry: the backend did nothing
    env.faults("ep-a", [rt_fault("status", status=429, retry_after_ms=5000, count=1)])
    r = env.call("POST", obj_path("responses"), create)
    assert r.status == 200 and r.header("x-sluice-backend") == "b", r
    assert env.seen("ep-b") == 2


# ---- sessions -----------------------------------------------------------------------------------------


def test_session_header_sticks_to_one_backend(start_routing):
    env = start_routing(
        endpoints=[routing_endpoint(f"ep-{x}") for x in "abc"],
        backends=[routing_backend(x, f"ep-{x}") for x in "abc"],
        routes=[{"name": "gpt-4o", "backends": pool(("a", 1, 1), ("b", 1, 1), ("c", 1, 1))}],
    )
    free = [env.chat().header("x-sluice-backend") for _ in range(6)]
    assert set(free) == {"a", "b", "c"}, free
    for s in ("session-1", "session-2", "session-3"):
        got = {env.chat(headers={"x-sluice-session": s}).header("x-sluice-backend") for _ in range(8)}
        assert len(got) == 1, f"session {s} went to {got}"
    # affinity is soft: a throttled backend hands the session on
    r = env.chat(headers={"x-sluice-session": "s-x"})
    home = r.header("x-sluice-backend")
    env.faults(f"ep-{home}", [rt_fault("status", status=429, retry_after_ms=5000, count=1)])
    r = env.chat(headers={"x-sluice-session": "s-x"})
    assert r.status == 200 and r.header("x-sluice-backend") != home, r


# ---- data residency --------------------------------------------------------------------------------------


def residency_env(start_routing, **eu_kw):
    eu = {"failure_threshold": 1, "open_time": "100ms", "max_open_time": "200ms", "throttle_time": "300ms", "first_byte_timeout": "500ms"}
    eu.update(eu_kw)
    return start_routing(
        endpoints=[
            routing_endpoint("ep-us", region="eastus"),
            routing_endpoint("ep-se", region="swedencentral"),
            routing_endpoint("ep-fr", region="francecentral"),
        ],
        backends=[
            routing_backend("us", "ep-us", region="eastus", geography="us"),
            routing_backend("se", "ep-se", region="swedencentral", geography="eu", **eu),
            routing_backend("fr", "ep-fr", region="francecentral", geography="eu", **eu),
        ],
        routes=[
            # unbound, the US first
            {"name": "gpt-4o", "backends": pool(("us", 1, 1), ("se", 2, 1), ("fr", 2, 1))},
            # bound to the EU, with the US backend in its pool all the same
            {"name": "gpt-4o-eu", "backends": pool(("us", 1, 1), ("se", 2, 1), ("fr", 3, 1)), "geographies": ["eu"]},
        ],
        clients=[
            {"name": "anywhere", "keys": [hash_key(CLIENT_KEY)]},
            {"name": "eu-app", "keys": [hash_key(CLIENT_KEY_2)], "geographies": ["eu"]},
        ],
    )


EU_FAULTS = {
    "500": [rt_fault("status", status=500)],
    "503": [rt_fault("status", status=503)],
    "reset": [rt_fault("reset")],
    "429": [rt_fault("status", status=429, retry_after_ms=400)],
    "stall": [rt_fault("stall_headers", duration_ms=3000)],
    "refuse": [rt_fault("refuse", duration_ms=1500)],
}


def names_geography(r):
    msg = r.json()["error"]["message"]
    return re.search(r"\beu\b", msg) is not None, msg


def test_eu_bound_traffic_never_reaches_the_us(start_routing):
    env = residency_env(start_routing)
    # the unbound client is served from the US (priority 1): it is up, and preferred
    r = env.chat("gpt-4o")
    assert r.status == 200 and r.header("x-sluice-backend") == "us", r
    us = env.seen("ep-us")
    eu_calls = [("gpt-4o", CLIENT_KEY_2), ("gpt-4o-eu", CLIENT_KEY), ("gpt-4o-eu", CLIENT_KEY_2)]
    for route, key in eu_calls:
        r = env.chat(route, key=key)
        assert r.status == 200 and r.header("x-sluice-backend") in ("se", "fr"), (route, r)
    for kind, faults in EU_FAULTS.items():
        # (a stall costs each attempt the EU backends' first_byte_timeout of 500ms)
        env.faults("ep-se", faults)
        env.faults("ep-fr", faults)
        for route, key in eu_calls * (1 if kind == "stall" else 3):
            r = env.chat(route, key=key, timeout=30)
            assert r.header("x-sluice-backend") != "us", (kind, route, r)
            if r.status == 200:
                assert r.header("x-sluice-backend") in ("se", "fr"), (kind, r)
            assert env.seen("ep-us") == us, f"{kind}: an EU-bound request ({route}) reached the US backend"
        env.clear_faults("ep-se")
        env.clear_faults("ep-fr")
        # let the EU circuits reopen, and close them with successes
        deadline = time.monotonic() + 10
        while True:
            r = env.chat("gpt-4o-eu", key=CLIENT_KEY_2)
            if r.status == 200:
                break
            assert time.monotonic() < deadline, f"after {kind}: the EU backends did not recover: {r!r}"
            time.sleep(0.1)
    assert env.seen("ep-us") == us
    # the unbound client on the unbound route still uses the US
    assert env.chat("gpt-4o").header("x-sluice-backend") == "us"


def test_nothing_available_in_the_geography_says_so(start_routing):
    env = residency_env(start_routing, open_time="20s", max_open_time="30s")
    env.faults("ep-se", [rt_fault("status", status=503)])
    env.faults("ep-fr", [rt_fault("status", status=503)])
    for _ in range(2):
        env.chat("gpt-4o-eu", key=CLIENT_KEY_2)
    assert env.backend_status("se")["state"] == "open" and env.backend_status("fr")["state"] == "open"
    for route, key in [("gpt-4o", CLIENT_KEY_2), ("gpt-4o-eu", CLIENT_KEY), ("gpt-4o-eu", CLIENT_KEY_2)]:
        r = env.chat(route, key=key)
        assert_gw_error(r, 503)
        ok, msg = names_geography(r)
        assert ok, f"503 without naming the geography: {msg!r}"
        assert r.header("retry-after-ms") is not None and r.header("retry-after") is not None, r
    assert env.seen("ep-us") == 0
    # the unbound client is not affected
    assert env.chat("gpt-4o").header("x-sluice-backend") == "us"


def test_everything_throttled_in_the_geography_says_so(start_routing):
    env = residency_env(start_routing)
    env.faults("ep-se", [rt_fault("status", status=429, retry_after_ms=20000)])
    env.faults("ep-fr", [rt_fault("status", status=429, retry_after_ms=20000)])
    env.chat("gpt-4o-eu", key=CLIENT_KEY_2)
    for route, key in [("gpt-4o", CLIENT_KEY_2), ("gpt-4o-eu", CLIENT_KEY), ("gpt-4o-eu", CLIENT_KEY_2)]:
        r = env.chat(route, key=key)
        assert_gw_error(r, 429)
        ok, msg = names_geography(r)
        assert ok, f"429 without naming the geography: {msg!r}"
        ms = int(r.header("retry-after-ms"))
        assert 15000 < ms <= 20000 and int(r.header("retry-after")) <= 20, r
    assert env.seen("ep-us") == 0
    assert env.chat("gpt-4o").header("x-sluice-backend") == "us"


# ---- nearest first ---------------------------------------------------------------------------------------


def nearest_env(start_routing):
    regions = {"weu": "westeurope", "eus": "eastus", "sc": "swedencentral"}
    p = pool(("eus", 1, 1), ("weu", 1, 1), ("sc", 1, 1))
    return start_routing(
        endpoints=[routing_endpoint(f"ep-{n}", region=r) for n, r in regions.items()],
        backends=[routing_backend(n, f"ep-{n}", region=r, failure_threshold=1, open_time="300ms") for n, r in regions.items()],
        routes=[
            {"name": "gpt-4o", "backends": p},
            {"name": "gpt-4o-rh", "backends": p, "region_header": True},
        ],
        clients=[
            {"name": "in-westeurope", "keys": [hash_key(CLIENT_KEY)], "region": "westeurope"},
            {"name": "nowhere", "keys": [hash_key(CLIENT_KEY_2)]},
        ],
    )


def test_nearest_backend_first_while_available(start_routing):
    env = nearest_env(start_routing)
    got = [env.chat(key=CLIENT_KEY).header("x-sluice-backend") for _ in range(12)]
    assert got == ["weu"] * 12, got
    # a client without a region is spread over all three
    got = [env.chat(key=CLIENT_KEY_2).header("x-sluice-backend") for _ in range(9)]
    assert sorted(got) == sorted(["eus", "weu", "sc"] * 3), got
    # westeurope fails: the others serve the westeurope client
    env.faults("ep-weu", [rt_fault("status", status=503)])
    got = []
    for _ in range(10):
        r = env.chat(key=CLIENT_KEY)
        assert r.status == 200, r
        got.append(r.header("x-sluice-backend"))
    assert "weu" not in got and set(got) == {"eus", "sc"}, got
    # and once it is back, westeurope again
    env.clear_faults("ep-weu")
    deadline = time.monotonic() + 5
    while env.chat(key=CLIENT_KEY).header("x-sluice-backend") != "weu":
        assert time.monotonic() < deadline, "the westeurope backend did not come back"
        time.sleep(0.05)
    got = [env.chat(key=CLIENT_KEY).header("x-sluice-backend") for _ in range(5)]
    assert got == ["weu"] * 5, got


def test_region_header_only_where_the_route_allows_it(start_routing):
    env = nearest_env(start_routing)
    h = {"x-sluice-region": "swedencentral"}
    got = [env.chat("gpt-4o-rh", key=CLIENT_KEY_2, headers=h).header("x-sluice-backend") for _ in range(6)]
    assert got == ["sc"] * 6, got
    # it overrides the client's own region
    got = [env.chat("gpt-4o-rh", key=CLIENT_KEY, headers=h).header("x-sluice-backend") for _ in range(6)]
    assert got == ["sc"] * 6, got
    # without region_header: ignored (spread for the client without a region, its own for the other)
    got = [env.chat("gpt-4o", key=CLIENT_KEY_2, headers=h).header("x-sluice-backend") for _ in range(9)]
    assert sorted(got) == sorted(["eus", "weu", "sc"] * 3), got
    got = [env.chat("gpt-4o", key=CLIENT_KEY, headers=h).header("x-sluice-backend") for _ in range(6)]
    assert got == ["weu"] * 6, got
    # an unknown region is no preference
    got = [env.chat("gpt-4o-rh", key=CLIENT_KEY_2, headers={"x-sluice-region": "mars"}).header("x-sluice-backend") for _ in range(9)]
    assert sorted(got) == sorted(["eus", "weu", "sc"] * 3), got
