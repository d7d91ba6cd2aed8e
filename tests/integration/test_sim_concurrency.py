"""`sluice sim` with several workers and concurrent clients: fault counts, quotas and stats
stay exact, and a refused endpoint is refused on every worker."""

import time
from concurrent.futures import ThreadPoolExecutor

from simtools import *  # noqa: F401,F403
from simtools import (
    CHAT,
    az,
    call,
    chat_dep,
    connect_refused,
    default_deployments,
    endpoint,
    rt_fault,
    st_fault,
    st_requests,
    st_status,
    st_streams,
    st_throttled,
    stream,
    wait_until,
)


def parallel(n, fn, workers=16):
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(lambda i: fn(i), range(n)))


def test_fault_count_exact_under_concurrency(start_sim):
    sim = start_sim(workers=2)
    sim.add_faults("ep", [rt_fault("status", status=503, count=7)])
    got = parallel(60, lambda i: call(sim.port(), "POST", az("gpt-4o"), {**CHAT, "max_tokens": 5}).status)
    assert got.count(503) == 7 and got.count(200) == 53, got
    d = sim.dep("gpt-4o")
    assert st_requests(d) == 60 and st_status(d, 503) == 7 and st_status(d, 200) == 53
    assert st_fault(d, "status") == 7


def test_tpm_exact_under_concurrency(start_sim):
    sim = start_sim(endpoints=[endpoint(deployments=[chat_dep("d", tpm=10000, rpm=100000)])], workers=2)
    body = {**CHAT, "max_tokens": 1000}
    one = call(sim.port(), "POST", az("d"), body)
    assert one.status == 200
    charge = one.json()["usage"]["prompt_tokens"] + 1000
    got = parallel(40, lambda i: call(sim.port(), "POST", az("d"), body).status)
    admitted = got.count(200) + 1
    assert set(got) <= {200, 429}, got
    assert admitted == 10000 // charge, f"admitted {admitted} requests of {charge} tokens with tpm 10000"
    d = sim.dep("d")
    assert st_throttled(d) == got.count(429) == st_status(d, 429)
    assert st_requests(d) == 41


def test_concurrent_streams_counted(start_sim):
    sim = start_sim(
        endpoints=[endpoint(deployments=default_deployments()[:1] + [chat_dep("slow", ttft="50ms", tokens_per_second=400)])], workers=2
    )
    res = parallel(30, lambda i: stream(sim.port(), az("slow"), {**CHAT, "stream": True, "max_tokens": 20}, timeout=15), workers=30)
    assert all(s.status == 200 and s.done and s.terminated for s in res), [s for s in res if not s.done][:2]
    d = sim.dep("slow")
    assert st_streams(d, "started") == 30 and st_streams(d, "completed") == 30 and st_streams(d, "cut") == 0


def test_refuse_on_every_worker(start_sim):
    """With several workers (SO_REUSEPORT listeners) every listener must be closed before the
    triggering connection is reset: a client that reconnects at once, as a gateway retrying
    does, must get ECONNREFUSED, not a connection that another worker accepts."""
    sim = start_sim(workers=2)
    p = sim.port()
    accepted = []
    for cycle in range(8):
        sim.add_faults("ep", [rt_fault("refuse", duration_ms=300, count=1)])
        try:
            call(p, "POST", az("gpt-4o"), CHAT, timeout=3)
        except (ConnectionError, AssertionError):
            pass
        results = [connect_refused(p) for _ in range(10)]
        if not all(results):
            accepted.append((cycle, results.count(False)))
        wait_until(lambda: not connect_refused(p), 3.0, 0.02, "listening again")
    assert not accepted, f"(cycle, connects accepted right after the reset): {accepted}"
    assert parallel(10, lambda i: call(p, "POST", az("gpt-4o"), CHAT).status) == [200] * 10
