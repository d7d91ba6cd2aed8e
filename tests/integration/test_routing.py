"""Resilience (issue 6): pools with priority groups and weights, circuit breaking on 429 and on
failures, retries on another backend, half-open probing, readiness and /sluice/status.

Each test runs one `sluice serve` with a gateway section and the simulated endpoints behind it
(proxytools.start_routing): the simulator's fault injection makes backends fail, and its
/_sim/stats says what each backend saw. Pinning, residency and nearest-first are in
test_routing_affinity.py; the status command and bad input in test_routing_ops.py.
"""

import concurrent.futures
import http.client
import json
import math
import threading
import time
from datetime import datetime


from proxytools import *  # noqa: F401,F403
from proxytools import CLIENT_KEY, assert_gw_error, chat_body, routing_backend, routing_endpoint
from simtools import az, rt_fault


# ---- helpers ---------------------------------------------------------------------------------------


def pool(*members):
    """A pool from (backend, priority, weight) tuples."""
    return [{"backend": b, "priority": p, "weight": w} for b, p, w in members]


def two_tier(a_kw=None, b_kw=None, route_kw=None):
    """Endpoints ep-a and ep-b; backend a (priority 1) and b (priority 2) on route gpt-4o."""
    return {
        "endpoints": [routing_endpoint("ep-a"), routing_endpoint("ep-b", region="westus")],
        "backends": [routing_backend("a", "ep-a", **(a_kw or {})), routing_backend("b", "ep-b", region="westus", **(b_kw or {}))],
        "routes": [{"name": "gpt-4o", "backends": pool(("a", 1, 1), ("b", 2, 1)), **(route_kw or {})}],
    }


def fire(env, n, workers=8, route="gpt-4o", key=CLIENT_KEY, headers=None):
    """n chat requests over `workers` keep-alive connections at once. Returns a list of
    (status, x-sluice-backend or None, headers dict); a request that got no answer at all is
    (0, None, {"error": repr})."""
    body = json.dumps(chat_body(max_tokens=4)).encode()
    hs = {"api-key": key, "Content-Type": "application/json", **(headers or {})}
    lock = threading.Lock()
    left = [n]
    results = []

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=30)
        try:
            while True:
                with lock:
                    if left[0] == 0:
                        return
                    left[0] -= 1
                try:
                    conn.request("POST", az(route), body, hs)
                    r = conn.getresponse()
                    r.read()
                    out = (r.status, r.getheader("x-sluice-backend"), {k.lower(): v for k, v in r.getheaders()})
                except (OSError, http.client.HTTPException) as e:
                    out = (0, None, {"error": repr(e)})
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=30)
                with lock:
                    results.append(out)
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        for f in [ex.submit(worker) for _ in range(workers)]:
            f.result()
    assert len(results) == n
    return results


def concurrent_chats(env, n, route="gpt-4o", key=CLIENT_KEY):
    """n requests released at the same moment, each on its own connection; their responses."""
    barrier = threading.Barrier(n)

    def one(_):
        barrier.wait(10)
        return env.chat(route, key=key)

    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        return list(ex.map(one, range(n)))


def backends_of(results):
    counts = {}
    for _, b, _ in results:
        counts[b] = counts.get(b, 0) + 1
    return counts


def rfc3339_ms(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000


def open_for_ms(status, name):
    """How long /sluice/status says backend name stays open (until - time), in ms; None: no until."""
    b = next(x for x in status["backends"] if x["name"] == name)
    if b["until"] is None:
        return None
    return rfc3339_ms(b["until"]) - rfc3339_ms(status["time"])


def retry_headers(r):
    """(retry-after-ms, Retry-After) of a response as integers; asserts both are there."""
    ms, secs = r.header("retry-after-ms"), r.header("retry-after")
    assert ms is not None and secs is not None, f"a 429 without both retry headers: {r!r}"
    assert ms.isdigit() and secs.isdigit(), f"retry headers not whole numbers: {ms!r} {secs!r}"
    return int(ms), int(secs)


# ---- priority groups: PTU first, PAYG for the overflow --------------------------------------------


def test_spillover_from_ptu_to_payg_and_back(start_routing):
    env = start_routing(
        endpoints=[routing_endpoint("ep-ptu"), routing_endpoint("ep-payg")],
        backends=[routing_backend("ptu", "ep-ptu"), routing_backend("payg", "ep-payg")],
        routes=[{"name": "gpt-4o", "backends": pool(("ptu", 1, 1), ("payg", 2, 1))}],
    )
    for _ in range(5):
        r = env.chat()
        assert r.status == 200 and r.header("x-sluice-backend") == "ptu", r
    assert env.seen_all() == {"ep-ptu": 5, "ep-payg": 0}

    # PTU is full: one 429 asking for 1.5 s
    env.faults("ep-ptu", [rt_fault("status", status=429, retry_after_ms=1500, count=1)])
    t0 = time.monotonic()
    r = env.chat()
    assert r.status == 200, f"the PTU 429 reached the client instead of spilling over: {r!r}"
    assert r.header("x-sluice-backend") == "payg", r
    assert env.seen_all() == {"ep-ptu": 6, "ep-payg": 1}
    st = env.backend_status("ptu")
    assert st["state"] == "open" and st["last_status"] == 429, st
    assert "429" in (st["reason"] or ""), st

    # during the retry-after (with a margin for slow runs): PAYG only
    n = 0
    while time.monotonic() < t0 + 1.0:
        r = env.chat()
        assert r.status == 200 and r.header("x-sluice-backend") == "payg", r
        n += 1
    assert n >= 5
    assert env.seen("ep-ptu") == 6, "a request reached the PTU backend during its retry-after"

    # after it: back to PTU
    time.sleep(max(0.0, t0 + 1.8 - time.monotonic()))
    for _ in range(5):
        r = env.chat()
        assert r.status == 200 and r.header("x-sluice-backend") == "ptu", r
    assert env.seen_all() == {"ep-ptu": 11, "ep-payg": 1 + n}


# ---- weights ----------------------------------------------------------------------------------------


def test_weighted_split_90_10(start_routing):
    env = start_routing(
        endpoints=[routing_endpoint("ep-blue"), routing_endpoint("ep-green")],
        backends=[routing_backend("blue", "ep-blue"), routing_backend("green", "ep-green")],
        routes=[{"name": "gpt-4o", "backends": pool(("blue", 1, 90), ("green", 1, 10))}],
    )
    res = fire(env, 2000, workers=8)
    assert all(s == 200 for s, _, _ in res), [x for x in res if x[0] != 200][:5]
    counts = backends_of(res)
    assert set(counts) == {"blue", "green"}, counts
    share = counts["blue"] / 2000
    assert 0.87 <= share <= 0.93, f"blue served {share:.1%} of 2,000 requests, weight 90 of 100: {counts}"
    assert env.seen_all() == {"ep-blue": counts["blue"], "ep-green": counts["green"]}
    route = env.status()["routes"][0]
    assert route["name"] == "gpt-4o", route
    assert {(m["name"], m["priority"], m["weight"]) for m in route["backends"]} == {("blue", 1, 90), ("green", 1, 10)}


def test_active_passive_never_touches_passive_while_active_is_healthy(start_routing):
    env = start_routing(**two_tier(a_kw={"failure_threshold": 1, "open_time": "10s"}))
    res = fire(env, 300, workers=6)
    assert backends_of(res) == {"a": 300}, backends_of(res)
    assert all(s == 200 for s, _, _ in res)
    assert env.seen_all() == {"ep-a": 300, "ep-b": 0}
    # the passive one does serve once the active one fails
    env.faults("ep-a", [rt_fault("status", status=503)])
    r = env.chat()
    assert r.status == 200 and r.header("x-sluice-backend") == "b", r
    res = fire(env, 20, workers=2)
    assert backends_of(res) == {"b": 20}, backends_of(res)
    assert env.seen("ep-a") == 301, "the open backend got requests"


# ---- retries -------------------------------------------------------------------------------------------


def test_retries_hide_one_failing_backend_of_three(start_routing):
    env = start_routing(
        endpoints=[routing_endpoint(f"ep-{x}") for x in "abc"],
        backends=[routing_backend(x, f"ep-{x}") for x in "abc"],
        routes=[{"name": "gpt-4o", "backends": pool(("a", 1, 1), ("b", 1, 1), ("c", 1, 1)), "max_attempts": 3}],
    )
    env.faults("ep-c", [rt_fault("status", status=500, probability=0.3)])
    n = 2000
    res = fire(env, n, workers=8)
    bad = [x for x in res if x[0] != 200]
    assert len(bad) <= n // 1000, f"{len(bad)} of {n} requests failed (at most 0.1 % may): {bad[:5]}"
    st = env.stats()
    c = st["endpoints"]["ep-c"]["deployments"]["gpt-4o"]
    assert c["by_status"].get("500", 0) >= 50, f"the fault did not strike: {c}"
    attempts = sum(env.seen(ep, st) for ep in ("ep-a", "ep-b", "ep-c"))
    assert n <= attempts <= n * 3, f"{attempts} upstream attempts for {n} requests, max_attempts 3"
    # a retry never goes back to the backend that just failed: c's 500s were all retried elsewhere
    assert attempts == n + c["by_status"].get("500", 0) - len(bad), (attempts, c, len(bad))


def test_no_retry_when_max_attempts_is_one(start_routing):
    env = start_routing(**two_tier(a_kw={"failure_threshold": 100}, route_kw={"max_attempts": 1}))
    env.faults("ep-a", [rt_fault("status", status=500, count=1)])
    r = env.chat()
    assert r.status == 500, f"max_attempts 1 retried: {r!r}"
    assert env.seen_all() == {"ep-a": 1, "ep-b": 0}


# ---- everything throttled -------------------------------------------------------------------------------


def test_all_throttled_is_429_with_the_soonest_reopen(start_routing):
    env = start_routing(
        endpoints=[routing_endpoint("ep-a"), routing_endpoint("ep-b")],
        backends=[routing_backend("a", "ep-a"), routing_backend("b", "ep-b")],
        routes=[{"name": "gpt-4o", "backends": pool(("a", 1, 1), ("b", 1, 1))}],
    )
    env.faults("ep-a", [rt_fault("status", status=429, retry_after_ms=3000)])
    env.faults("ep-b", [rt_fault("status", status=429, retry_after_ms=8000)])
    t0 = time.monotonic()
    r = env.chat()
    took_ms = (time.monotonic() - t0) * 1000
    assert_gw_error(r, 429)
    ms, secs = retry_headers(r)
    # the soonest reopen is a's: 3 s after its 429, which came during this request
    assert 3000 - took_ms - 50 <= ms <= 3000, f"retry-after-ms {ms}, soonest reopen 3000 ms (request took {took_ms:.0f} ms)"
    assert secs == math.ceil(ms / 1000), (ms, secs)
    assert env.seen_all() == {"ep-a": 1, "ep-b": 1}
    # while both are throttled nothing goes upstream, and the answer says so at once
    r2 = env.chat()
    assert_gw_error(r2, 429)
    ms2, _ = retry_headers(r2)
    assert ms2 <= ms, (ms, ms2)
    assert env.seen_all() == {"ep-a": 1, "ep-b": 1}, "a throttled backend got a request"
    msg = r2.json()["error"]["message"]
    assert "gpt-4o" in msg, msg


def test_all_throttled_retry_after_is_at_most_60s(start_routing):
    env = start_routing(
        endpoints=[routing_endpoint("ep-a")],
        backends=[routing_backend("a", "ep-a", max_retry_after="10m")],
        routes=[{"name": "gpt-4o", "backend": "a"}],
    )
    env.faults("ep-a", [rt_fault("status", status=429, retry_after_ms=300000)])
    for _ in range(2):  # the backend's own 429, then the gateway's
        r = env.chat()
        assert_gw_error(r, 429)
        ms, secs = retry_headers(r)
        assert 0 < ms <= 60000 and 0 < secs <= 60, f"LangChain retries only when Retry-After <= 60: {r!r}"
    assert env.seen("ep-a") == 1
    # the backend stays out for what it asked (5 minutes), not 60 s
    assert open_for_ms(env.status(), "a") > 250000


# ---- failures: open, half-open, one trial -----------------------------------------------------------------


def test_failures_open_the_circuit_after_the_threshold(start_routing):
    env = start_routing(**two_tier(a_kw={"failure_threshold": 3, "open_time": "10s"}))
    env.faults("ep-a", [rt_fault("status", status=502)])
    for i in range(3):
        r = env.chat()
        assert r.status == 200 and r.header("x-sluice-backend") == "b", r
        assert env.seen("ep-a") == i + 1
    st = env.backend_status("a")
    assert st["state"] == "open" and st["consecutive_failures"] >= 3, st
    for _ in range(5):
        assert env.chat().header("x-sluice-backend") == "b"
    assert env.seen("ep-a") == 3, "the open backend got requests"


def test_half_open_lets_exactly_one_trial_through(start_routing):
    env = start_routing(**two_tier(a_kw={"failure_threshold": 1, "open_time": "300ms", "max_open_time": "10s"}))
    env.faults("ep-a", [rt_fault("status", status=500, count=1)])
    r = env.chat()
    assert r.status == 200 and r.header("x-sluice-backend") == "b", r
    assert env.backend_status("a")["state"] == "open"
    # the trial request will take 1.5 s to answer
    env.faults("ep-a", [rt_fault("stall_headers", duration_ms=1500, count=1)])
    time.sleep(0.6)  # open_time is over: half-open
    before_b = env.seen("ep-b")
    seen_half_open = []

    def watch():
        deadline = time.monotonic() + 1.2
        while time.monotonic() < deadline:
            seen_half_open.append(env.backend_status("a")["state"])
            time.sleep(0.05)

    w = threading.Thread(target=watch)
    w.start()
    rs = concurrent_chats(env, 10)
    w.join()
    assert all(r.status == 200 for r in rs), [r for r in rs if r.status != 200]
    served = [r.header("x-sluice-backend") for r in rs]
    assert served.count("a") == 1, f"half-open: {served.count('a')} trial requests reached a: {served}"
    assert env.seen("ep-a") == 2, "a got more than its one trial"
    assert env.seen("ep-b") == before_b + 9
    assert "half-open" in seen_half_open, f"/sluice/status never showed half-open: {set(seen_half_open)}"
    # the trial succeeded: closed again, and a serves (priority 1)
    assert env.backend_status("a")["state"] == "closed"
    r = env.chat()
    assert r.header("x-sluice-backend") == "a", r


def open_window(env, name, request):
    """Run request(); the (earliest, latest) open time of backend name it can have caused, in ms
    from /sluice/status's `until` and the wall clock around the request (robust to slow runs)."""
    t_before = time.time() * 1000
    request()
    t_after = time.time() * 1000
    until = env.backend_status(name)["until"]
    assert until is not None, env.backend_status(name)
    at = rfc3339_ms(until)
    return at - t_after, at - t_before


def test_a_failed_trial_doubles_the_open_time(start_routing):
    env = start_routing(**two_tier(a_kw={"failure_threshold": 1, "open_time": "400ms", "max_open_time": "1s"}))
    env.faults("ep-a", [rt_fault("status", status=503)])
    slack = 5  # `until` is written to the millisecond

    def failing():
        assert env.chat().header("x-sluice-backend") == "b"

    lo, hi = open_window(env, "a", failing)
    assert lo - slack <= 400 <= hi + slack, (lo, hi)
    time.sleep(0.6)
    # the trial fails: open again, for twice as long
    lo, hi = open_window(env, "a", failing)
    assert env.seen("ep-a") == 2
    assert lo - slack <= 800 <= hi + slack, f"open for {lo:.0f}..{hi:.0f} ms after a failed trial; open_time 400ms"
    time.sleep(1.0)
    # and again, up to max_open_time
    lo, hi = open_window(env, "a", failing)
    assert env.seen("ep-a") == 3
    assert lo - slack <= 1000 <= hi + slack, f"open for {lo:.0f}..{hi:.0f} ms; max_open_time 1s"
    # recovery: the next trial succeeds and the circuit closes
    env.clear_faults("ep-a")
    time.sleep(1.2)
    r = env.chat()
    assert r.header("x-sluice-backend") == "a", r
    st = env.backend_status("a")
    assert st["state"] == "closed" and st["consecutive_failures"] == 0, st


# ---- readiness --------------------------------------------------------------------------------------------------


def readiness_env(start_routing, mode):
    return start_routing(
        endpoints=[routing_endpoint("ep-a"), routing_endpoint("ep-b")],
        backends=[routing_backend("a", "ep-a"), routing_backend("b", "ep-b")],
        routes=[{"name": "r1", "backend": "a"}, {"name": "r2", "backend": "b"}],
        routing={"readiness": mode},
    )


def wait_ready(env, want_status, timeout=6.0):
    deadline = time.monotonic() + timeout
    while True:
        r = env.readyz()
        if r.status == want_status:
            return r
        assert time.monotonic() < deadline, f"/readyz did not become {want_status} within {timeout}s: {r!r}"
        time.sleep(0.05)


def test_readyz_any(start_routing):
    env = readiness_env(start_routing, "any")
    r = env.readyz()
    assert r.status == 200 and r.json() == {"status": "ready"}, r
    env.faults("ep-a", [rt_fault("status", status=429, retry_after_ms=1500, count=1)])
    assert env.chat("r1").status == 429
    r = env.readyz()
    assert r.status == 503, f"route r1 has no backend, readiness any: {r!r}"
    assert r.json() == {"status": "unready", "routes": ["r1"]}, r.json()
    assert env.status()["ready"] is False
    # it recovers by itself when the retry-after is over
    wait_ready(env, 200)
    assert env.readyz().json() == {"status": "ready"}
    assert env.chat("r1").status == 200


def test_readyz_all(start_routing):
    env = readiness_env(start_routing, "all")
    env.faults("ep-a", [rt_fault("status", status=429, retry_after_ms=1500, count=1)])
    assert env.chat("r1").status == 429
    r = env.readyz()
    assert r.status == 200, f"readiness all: r2 still serves: {r!r}"
    env.faults("ep-b", [rt_fault("status", status=429, retry_after_ms=2500, count=1)])
    assert env.chat("r2").status == 429
    r = env.readyz()
    if r.status == 200:  # r1 may have reopened already on a slow machine: take it down again
        env.faults("ep-a", [rt_fault("status", status=429, retry_after_ms=2500, count=1)])
        assert env.chat("r1").status == 429
        r = env.readyz()
    assert r.status == 503, r
    body = r.json()
    assert body["status"] == "unready" and sorted(body["routes"]) == ["r1", "r2"], body
    wait_ready(env, 200)


def test_readyz_failing_backend_recovers_after_its_trial(start_routing):
    env = start_routing(
        endpoints=[routing_endpoint("ep-a")],
        backends=[routing_backend("a", "ep-a", failure_threshold=2, open_time="500ms")],
        routes=[{"name": "gpt-4o", "backend": "a"}],
    )
    env.faults("ep-a", [rt_fault("status", status=503, count=2)])
    assert env.chat().status == 503
    assert env.chat().status == 503
    r = env.readyz()
    assert r.status == 503 and r.json()["routes"] == ["gpt-4o"], r
    # a half-open backend can take its trial: ready again, and the trial closes the circuit
    wait_ready(env, 200)
    assert env.chat().status == 200
    assert env.backend_status("a")["state"] == "closed"
    assert env.readyz().status == 200


# ---- /sluice/status ----------------------------------------------------------------------------------------------


def test_status_json_fields(start_routing):
    env = start_routing(
        endpoints=[routing_endpoint("ep-a"), routing_endpoint("ep-b", region="swedencentral")],
        backends=[
            routing_backend("a", "ep-a", geography="us"),
            routing_backend("b", "ep-b", region="swedencentral", geography="eu"),
        ],
        routes=[{"name": "gpt-4o", "backends": pool(("a", 1, 3), ("b", 2, 1))}],
    )
    for _ in range(3):
        assert env.chat().header("x-sluice-backend") == "a"
    env.faults("ep-a", [rt_fault("status", status=429, retry_after_ms=20000, count=1)])
    assert env.chat().header("x-sluice-backend") == "b"
    st = env.status()
    assert isinstance(st["time"], str) and st["ready"] is True, st
    rfc3339_ms(st["time"])
    [route] = st["routes"]
    assert route["name"] == "gpt-4o" and route["available"] is True, route
    assert route["requests"] == 4 and route["retries"] == 1, route
    assert route["backends"] == [{"name": "a", "priority": 1, "weight": 3}, {"name": "b", "priority": 2, "weight": 1}]
    a = env.backend_status("a", st)
    b = env.backend_status("b", st)
    keys = {"name", "state", "until", "reason", "last_status", "consecutive_failures", "in_flight",
            "ttfb_ms", "success", "errors", "throttled", "region", "geography"}
    assert keys <= set(a) and keys <= set(b), (a, b)
    assert a["state"] == "open" and a["last_status"] == 429 and "429" in a["reason"], a
    assert 18000 < open_for_ms(st, "a") <= 20000, a
    assert a["success"] == 3 and a["throttled"] == 1 and a["errors"] == 0 and a["in_flight"] == 0, a
    assert a["region"] == "eastus" and a["geography"] == "us", a
    assert b["state"] == "closed" and b["until"] is None and b["success"] == 1, b
    assert b["region"] == "swedencentral" and b["geography"] == "eu", b
    assert isinstance(b["ttfb_ms"], (int, float)) and b["ttfb_ms"] >= 0, b
    # the admin listener only
    r = env.call("GET", "/sluice/status")
    assert r.status == 404, r
