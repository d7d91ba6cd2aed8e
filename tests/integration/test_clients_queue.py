"""Priority and queueing (issue 7, item 6): when every backend a request may use is throttled,
the request waits (queue.max_length, queue.max_wait) and goes when a backend reopens, instead
of being answered 429 at once; high-priority clients go first, and a full queue or a wait that
runs out answers 429 with honest retry headers; a client limited to some backends (PAYG only)
never reaches the others, however busy they are.

The simulated endpoints throttle on demand: a runtime fault rule answers 429 with
`retry-after-ms`, `count` times. Most routes here have a pool of two backends on one simulated
endpoint (a request tries both before it waits); a one-backend pool is tested apart."""

import threading
import time

import pytest

from proxytools import *  # noqa: F401,F403
from proxytools import CLIENT_KEY, CLIENT_KEY_2, assert_gw_error, client_entry, routing_backend, routing_endpoint
from simtools import rt_fault

HIGH_KEY = "ck-queue-high-priority-client"
RETRY_MS = 1500
# uv_now() is read at the start of a loop turn, so a timer may fire a few ms before the
# wall-clock time it was set for.
SLACK = 0.05


def queue_env(start_routing, max_length=10, max_wait="10s", clients=None, routes=None, endpoints=None, backends=None):
    return start_routing(
        endpoints=endpoints or [routing_endpoint("ep")],
        backends=backends or [routing_backend("b1", "ep"), routing_backend("b2", "ep")],
        routes=routes or [{"name": "gpt-4o", "backends": [{"backend": "b1"}, {"backend": "b2"}], "max_attempts": 10}],
        clients=clients
        or [
            client_entry("batch", CLIENT_KEY, priority="low"),
            client_entry("web", CLIENT_KEY_2),
            client_entry("exec", HIGH_KEY, priority="high"),
        ],
        gw={"queue": {"max_length": max_length, "max_wait": max_wait}},
    )


class Calls:
    """Requests sent from threads; each result is (status, finished at, response)."""

    def __init__(self, env):
        self.env = env
        self.t0 = time.monotonic()
        self.results = {}
        self.threads = []

    def send(self, tag, key, **kw):
        def run():
            r = self.env.chat(key=key, timeout=30, **kw)
            self.results[tag] = (r.status, time.monotonic() - self.t0, r)

        t = threading.Thread(target=run)
        t.start()
        self.threads.append(t)

    def join(self):
        for t in self.threads:
            t.join(40)
        assert not any(t.is_alive() for t in self.threads), "a request never got an answer"
        return self.results


def wait_seen(env, ep, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while env.seen(ep) < n:
        assert time.monotonic() < deadline, f"{ep} saw {env.seen(ep)} requests, expected {n}"
        time.sleep(0.01)


def test_waiting_requests_succeed_after_the_retry_after(start_routing):
    env = queue_env(start_routing)
    assert env.chat().status == 200
    env.faults("ep", [rt_fault("status", status=429, retry_after_ms=RETRY_MS, count=2)])
    calls = Calls(env)
    calls.send("first", CLIENT_KEY)
    wait_seen(env, "ep", 3)  # the 429s of both backends
    for i in range(4):
        calls.send(i, CLIENT_KEY)
    res = calls.join()
    for tag, (status, at, r) in res.items():
        assert status == 200, (tag, r)
        assert r.header("x-sluice-backend") in ("b1", "b2")
        assert at >= RETRY_MS / 1000 - SLACK, (tag, at)
    # The others waited without calling the throttled backends: two 429s and five answers.
    st = env.stats()["endpoints"]["ep"]["deployments"]["gpt-4o"]
    assert st["requests"] == 1 + 2 + 5, st
    assert st["by_status"].get("429") == 2, st


def test_without_a_queue_the_429_comes_at_once(start_routing):
    env = queue_env(start_routing, max_length=0)
    env.faults("ep", [rt_fault("status", status=429, retry_after_ms=RETRY_MS, count=2)])
    t0 = time.monotonic()
    r = env.chat()
    assert_gw_error(r, 429)
    assert time.monotonic() - t0 < 1.0
    assert 0 < int(r.header("retry-after-ms")) <= RETRY_MS, r


def test_high_priority_goes_first(start_routing):
    """Low-priority requests wait; a high-priority one sent after them is sent first when the
    backends reopen. The endpoint then serves one request and throttles the next ones once
    more (for 1.5 s): the one it served shows who went first."""
    env = queue_env(start_routing)
    env.faults(
        "ep",
        [
            rt_fault("status", status=429, retry_after_ms=RETRY_MS, count=2),
            rt_fault("none", count=1),
            # each low one may meet it on both backends
            rt_fault("status", status=429, retry_after_ms=RETRY_MS, count=8),
        ],
    )
    calls = Calls(env)
    calls.send("low-0", CLIENT_KEY)
    wait_seen(env, "ep", 2)
    for i in range(1, 4):
        calls.send(f"low-{i}", CLIENT_KEY)
    time.sleep(0.3)  # the low ones are waiting (well within the 1.5 s)
    calls.send("high", HIGH_KEY)
    res = calls.join()
    assert all(s == 200 for s, _, _ in res.values()), res
    high_at = res["high"][1]
    lows = sorted(at for tag, (_, at, _) in res.items() if tag != "high")
    assert high_at < lows[0], f"the high-priority request was not served first: high at {high_at:.2f}s, low at {lows}"
    assert high_at < 2 * RETRY_MS / 1000 - 0.2, res["high"]
    assert lows[0] >= 2 * RETRY_MS / 1000 - SLACK, lows


def test_full_queue_is_429_and_high_priority_displaces_low(start_routing):
    env = queue_env(start_routing, max_length=2)
    env.faults("ep", [rt_fault("status", status=429, retry_after_ms=3000, count=2)])
    calls = Calls(env)
    calls.send("low-0", CLIENT_KEY)
    wait_seen(env, "ep", 2)
    calls.send("low-1", CLIENT_KEY)
    time.sleep(0.3)
    # The queue is full: a newcomer of the same priority is answered at once.
    t0 = time.monotonic()
    r = env.chat(key=CLIENT_KEY)
    assert time.monotonic() - t0 < 1.0, "an overflowing request waited"
    assert_gw_error(r, 429)
    ms, secs = int(r.header("retry-after-ms")), int(r.header("Retry-After"))
    assert 1000 <= ms <= 3000 and secs == -(-ms // 1000), r
    # A high-priority one takes the place of the newest low one, which is answered 429.
    calls.send("high", HIGH_KEY)
    time.sleep(0.3)
    assert "low-1" in calls.results, "no low-priority request made room"
    status, _, r1 = calls.results["low-1"]
    assert_gw_error(r1, 429)
    assert int(r1.header("retry-after-ms")) <= 3000, r1
    res = calls.join()
    assert res["low-0"][0] == 200 and res["high"][0] == 200, res
    assert res["high"][1] >= 3.0 - SLACK


def test_max_wait_runs_out(start_routing):
    """The backends keep throttling, 700 ms at a time: a request waits at most max_wait (2 s),
    counted from its arrival, whatever the attempts in between, then gets 429 (as soon as no
    backend reopens within what is left of the wait: at 1.4 s, or at 2 s at the latest)."""
    env = queue_env(start_routing, max_wait="2s")
    env.faults("ep", [rt_fault("status", status=429, retry_after_ms=700, count=100)])
    t0 = time.monotonic()
    r = env.chat(timeout=30)
    took = time.monotonic() - t0
    assert_gw_error(r, 429)
    assert r.header("retry-after-ms") and r.header("Retry-After"), r
    assert 1.4 - SLACK <= took < 2.0 + 0.3, f"answered after {took:.2f}s with max_wait 2s"


def test_no_wait_when_no_backend_reopens_within_max_wait(start_routing):
    env = queue_env(start_routing, max_wait="1s")
    env.faults("ep", [rt_fault("status", status=429, retry_after_ms=5000, count=2)])
    t0 = time.monotonic()
    r = env.chat()
    assert time.monotonic() - t0 < 0.8
    assert_gw_error(r, 429)
    assert 4000 <= int(r.header("retry-after-ms")) <= 5000, r


def test_payg_only_client_never_reaches_ptu(start_routing):
    env = queue_env(
        start_routing,
        endpoints=[routing_endpoint("ep-ptu"), routing_endpoint("ep-payg")],
        backends=[routing_backend("ptu", "ep-ptu"), routing_backend("payg-1", "ep-payg"), routing_backend("payg-2", "ep-payg")],
        routes=[
            {
                "name": "gpt-4o",
                "backends": [
                    {"backend": "ptu", "priority": 1},
                    {"backend": "payg-1", "priority": 2},
                    {"backend": "payg-2", "priority": 2},
                ],
            }
        ],
        clients=[
            client_entry("batch", CLIENT_KEY, priority="low", backends=["payg-1", "payg-2"]),
            client_entry("web", CLIENT_KEY_2),
        ],
    )
    assert env.chat(key=CLIENT_KEY_2).header("x-sluice-backend") == "ptu"
    results = []

    def batch(n):
        for _ in range(n):
            results.append(env.chat(key=CLIENT_KEY).header("x-sluice-backend"))

    threads = [threading.Thread(target=batch, args=(10,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(set(results)) == ["payg-1", "payg-2"] and len(results) == 30, results
    assert env.seen("ep-ptu") == 1
    # PAYG throttled, PTU free: the batch client waits for PAYG; the other client uses PTU.
    env.faults("ep-payg", [rt_fault("status", status=429, retry_after_ms=RETRY_MS, count=2)])
    calls = Calls(env)
    calls.send("batch", CLIENT_KEY)
    wait_seen(env, "ep-payg", 32)
    r = env.chat(key=CLIENT_KEY_2)
    assert r.header("x-sluice-backend") == "ptu", r
    res = calls.join()
    status, at, r = res["batch"]
    assert status == 200 and r.header("x-sluice-backend") in ("payg-1", "payg-2"), r
    assert at >= RETRY_MS / 1000 - SLACK
    assert env.seen("ep-ptu") == 2


def test_one_backend_pool_waits_too(start_routing):
    env = queue_env(start_routing, routes=[{"name": "gpt-4o", "backend": "b1"}])
    env.faults("ep", [rt_fault("status", status=429, retry_after_ms=RETRY_MS, count=1)])
    t0 = time.monotonic()
    r = env.chat()
    assert r.status == 200, r
    assert time.monotonic() - t0 >= RETRY_MS / 1000 - SLACK
