"""Rate limits (issue 7, item 5): requests and tokens per minute per client, and per client on
one route. Over a limit the answer is 429 with `retry-after-ms`, `Retry-After` (at most 60 s)
and `x-ratelimit-remaining-requests` / `-tokens`, and nothing goes upstream; another client's
traffic at the same time is unaffected; admission charges an estimate (prompt plus
`max_tokens`) that the usage the backend reports then settles, so that requests using fewer
tokens than they asked for leave room for more."""

import threading

from proxytools import *  # noqa: F401,F403
from proxytools import CLIENT_KEY, CLIENT_KEY_2, assert_gw_error, client_entry, routing_backend, routing_endpoint
from simtools import chat_dep


def limits_env(start_routing, app1, app2=None):
    return start_routing(
        endpoints=[routing_endpoint("ep", deployments=[chat_dep("gpt-4o"), chat_dep("gpt-4o-mini", model="gpt-4o")])],
        backends=[routing_backend("b", "ep"), routing_backend("b-mini", "ep", deployment="gpt-4o-mini")],
        routes=[{"name": "gpt-4o", "backend": "b"}, {"name": "gpt-4o-mini", "backend": "b-mini"}],
        clients=[client_entry("app1", CLIENT_KEY, **app1), client_entry("app2", CLIENT_KEY_2, **(app2 or {}))],
    )


def assert_limited(r, which):
    """A 429 of the gateway's own limiter: headers the SDKs and LangChain honour."""
    err = assert_gw_error(r, 429, "429")
    ms = int(r.header("retry-after-ms"))
    secs = int(r.header("Retry-After"))
    assert 0 < ms <= 60000, r
    assert 1 <= secs <= 60 and secs == -(-ms // 1000), r
    assert "app1" in err["message"] and which in err["message"], err
    return err


def test_rpm_limit(start_routing):
    env = limits_env(start_routing, {"rpm": 3})
    for i in range(3):
        r = env.chat()
        assert r.status == 200, (i, r)
    before = env.seen("ep")
    r = env.chat()
    assert_limited(r, "requests-per-minute")
    assert r.header("x-ratelimit-remaining-requests") == "0", r
    # a sliding minute: the first request leaves it about a minute after it came
    assert 50000 <= int(r.header("retry-after-ms")) <= 60000, r
    assert env.seen("ep") == before, "a request over the limit went upstream"
    # refused requests are not counted: still refused, still the same wait (no longer)
    r2 = env.chat()
    assert r2.status == 429 and int(r2.header("retry-after-ms")) <= int(r.header("retry-after-ms")), r2


def test_tpm_limit(start_routing):
    env = limits_env(start_routing, {"tpm": 1000})
    oks = 0
    for _ in range(40):
        r = env.chat(max_tokens=100)
        if r.status != 200:
            break
        oks += 1
    else:
        raise AssertionError("40 requests of up to ~130 tokens each fit a limit of 1000 tokens per minute")
    assert oks >= 2, oks
    before = env.seen("ep")
    assert_limited(r, "tokens-per-minute")
    remaining = int(r.header("x-ratelimit-remaining-tokens"))
    assert 0 <= remaining < 130, r
    # the sim's reported usage is what was charged: the tokens left say so
    dep = env.stats()["endpoints"]["ep"]["deployments"]["gpt-4o"]
    used = dep["prompt_tokens"] + dep["completion_tokens"]
    assert remaining == max(0, 1000 - used), (remaining, used)
    # A request too large for the minute says so.
    r = env.chat(max_tokens=2000)
    err = assert_limited(r, "tokens-per-minute")
    assert "max_tokens" in err["message"], err
    assert env.seen("ep") == before


def test_a_limited_client_does_not_slow_another(start_routing):
    env = limits_env(start_routing, {"rpm": 5}, {"rpm": 1000})
    results = {"app1": [], "app2": []}

    def hammer(name, key, n):
        for _ in range(n):
            results[name].append(env.chat(key=key).status)

    threads = [
        threading.Thread(target=hammer, args=("app1", CLIENT_KEY, 40)),
        threading.Thread(target=hammer, args=("app1", CLIENT_KEY, 40)),
        threading.Thread(target=hammer, args=("app2", CLIENT_KEY_2, 30)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results["app1"].count(200) == 5, results["app1"]
    assert results["app1"].count(429) == 75, results["app1"]
    assert results["app2"] == [200] * 30, results["app2"]
    assert env.stats()["endpoints"]["ep"]["deployments"]["gpt-4o"]["requests"] == 35


def test_settle_gives_back_the_unused_estimate(start_routing):
    """Each request asks for max_tokens 2000 (an estimate over 2000 tokens), but the simulated
    answers are at most ~160 tokens: with 5000 tokens per minute, only two requests would fit
    on estimates alone; settled against the real usage, ten do."""
    env = limits_env(start_routing, {"tpm": 5000})
    for i in range(10):
        r = env.chat(max_tokens=2000)
        assert r.status == 200, f"request {i + 1}: the estimates were not settled against the usage: {r!r}"
        u = r.json()["usage"]
        assert u["total_tokens"] < 250, u
    dep = env.stats()["endpoints"]["ep"]["deployments"]["gpt-4o"]
    used = dep["prompt_tokens"] + dep["completion_tokens"]
    # and the real usage is still counted: an estimate that does not fit what is left is refused
    left = 5000 - used
    r = env.chat(max_tokens=left)  # prompt + left > left
    assert_limited(r, "tokens-per-minute")
    assert int(r.header("x-ratelimit-remaining-tokens")) == left, (r, used)


def test_failed_request_gives_back_its_estimate(start_routing):
    """A request that no backend served used nothing: its charge is given back."""
    env = limits_env(start_routing, {"tpm": 3000})
    from simtools import rt_fault

    env.faults("ep", [rt_fault("status", status=400, count=5)])
    for _ in range(5):
        assert env.chat(max_tokens=2000).status == 400
    env.clear_faults()
    r = env.chat(max_tokens=2000)
    assert r.status == 200, r


def test_route_limits(start_routing):
    env = limits_env(start_routing, {"route_limits": [{"route": "gpt-4o-mini", "rpm": 2}]})
    for _ in range(2):
        assert env.chat("gpt-4o-mini").status == 200
    r = env.chat("gpt-4o-mini")
    err = assert_limited(r, "on this deployment")
    assert r.header("x-ratelimit-remaining-requests") == "0", r
    assert "requests-per-minute" in err["message"], err
    # the client's other routes, and other clients on this route, go on
    for _ in range(5):
        assert env.chat("gpt-4o").status == 200
        assert env.chat("gpt-4o-mini", key=CLIENT_KEY_2).status == 200


def test_route_tpm_and_client_rpm_together(start_routing):
    env = limits_env(start_routing, {"rpm": 4, "route_limits": [{"route": "gpt-4o-mini", "tpm": 200}]})
    assert env.chat("gpt-4o-mini", max_tokens=100).status == 200
    r = env.chat("gpt-4o-mini", max_tokens=190)
    assert_limited(r, "tokens-per-minute limit on this deployment")
    assert r.header("x-ratelimit-remaining-tokens") is not None, r
    # the refused request did not count against the client's rpm: three more pass
    for _ in range(3):
        assert env.chat("gpt-4o").status == 200
    assert_limited(env.chat("gpt-4o"), "requests-per-minute")
