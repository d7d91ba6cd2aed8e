"""`sluice sim`: failure injection from the configuration and at run time through the control
API (POST/DELETE /_sim/faults), and GET /_sim/stats / POST /_sim/reset."""

import json
import signal
import time

import pytest

from simtools import *  # noqa: F401,F403
from simtools import (
    CHAT,
    KEY,
    Conn,
    _request_bytes,
    assert_azure_error,
    az,
    call,
    chat_dep,
    connect_refused,
    default_deployments,
    dep_stats,
    endpoint,
    ep_stats,
    rt_fault,
    st_completion_tokens,
    st_fault,
    st_prompt_tokens,
    st_requests,
    st_status,
    st_streams,
    st_throttled,
    stream,
    wait_until,
)

SCHAT = {**CHAT, "stream": True, "max_tokens": 20}


def ask(port, dep="gpt-4o", **kw):
    return call(port, "POST", az(dep), {**CHAT, "max_tokens": 10}, **kw)


# ---- status faults ------------------------------------------------------------------------------


def test_config_status_fault_for_one_deployment(start_sim):
    sim = start_sim(
        endpoints=[endpoint(faults=[{"kind": "status", "status": 503, "probability": 1.0, "count": 1, "deployment": "gpt-4o"}])]
    )
    p = sim.port()
    assert ask(p, "gpt-4o-mini").status == 200  # not its deployment: the rule is not used up
    r = ask(p, "gpt-4o")
    assert_azure_error(r, 503)
    assert r.header("x-request-id")
    assert ask(p, "gpt-4o").status == 200  # count 1: used up
    assert st_fault(sim.dep("gpt-4o"), "status") == 1
    assert st_fault(sim.dep("gpt-4o-mini"), "status") == 0


def test_config_429_fault_with_retry_after(start_sim):
    sim = start_sim(endpoints=[endpoint(faults=[{"kind": "status", "status": 429, "retry_after": "2s", "count": 1}])])
    r = ask(sim.port())
    assert r.status == 429, r
    assert r.header("retry-after") == "2"
    assert r.header("retry-after-ms") == "2000"
    assert r.json()["error"]["code"] == "429"
    assert ask(sim.port()).status == 200


def test_runtime_429_rounds_retry_after_up(start_sim):
    sim = start_sim()
    sim.add_faults("ep", [rt_fault("status", status=429, retry_after_ms=1500, count=1)])
    r = ask(sim.port())
    assert r.status == 429, r
    assert r.header("retry-after") == "2", r
    assert r.header("retry-after-ms") == "1500", r
    b = r.json()
    assert b["error"]["code"] == "429" and b["error"]["message"], b


@pytest.mark.parametrize("status", [500, 503, 400, 408])
def test_runtime_status_codes(start_sim, status):
    sim = start_sim()
    sim.add_faults("ep", [rt_fault("status", status=status, count=1)])
    r = ask(sim.port())
    assert_azure_error(r, status)
    assert ask(sim.port()).status == 200


def test_scripted_sequence(start_sim):
    """[429 x2, none x1, 503 x1] gives exactly 429, 429, 200, 503 and then normal service."""
    sim = start_sim()
    sim.add_faults(
        "ep",
        [
            rt_fault("status", status=429, retry_after_ms=100, count=2),
            rt_fault("none", count=1),
            rt_fault("status", status=503, count=1),
        ],
    )
    got = [ask(sim.port()).status for _ in range(6)]
    assert got == [429, 429, 200, 503, 200, 200], got
    d = sim.dep("gpt-4o")
    assert st_requests(d) == 6
    assert st_status(d, 429) == 2 and st_status(d, 503) == 1 and st_status(d, 200) == 3
    assert st_fault(d, "status") == 3


def test_scripted_sequence_in_config(start_sim):
    faults = [
        {"kind": "status", "status": 429, "retry_after": "1s", "count": 2},
        {"kind": "none", "count": 1},
        {"kind": "status", "status": 503, "count": 1},
    ]
    sim = start_sim(endpoints=[endpoint(faults=faults)])
    got = [ask(sim.port()).status for _ in range(5)]
    assert got == [429, 429, 200, 503, 200], got


def test_runtime_rules_come_before_config_rules(start_sim):
    sim = start_sim(endpoints=[endpoint(faults=[{"kind": "status", "status": 500, "deployment": "gpt-4o"}])])
    p = sim.port()
    assert ask(p).status == 500
    sim.add_faults("ep", [rt_fault("none", count=2, deployment="gpt-4o")])
    assert [ask(p).status for _ in range(3)] == [200, 200, 500]
    sim.add_faults("ep", [rt_fault("none")])
    assert ask(p).status == 200
    sim.clear_faults("ep")  # the runtime rules go, the configuration's stay
    assert ask(p).status == 500


def test_delete_runtime_faults(start_sim):
    sim = start_sim()
    sim.add_faults("ep", [rt_fault("status", status=503)])
    assert ask(sim.port()).status == 503
    assert ask(sim.port()).status == 503
    sim.clear_faults("ep")
    assert ask(sim.port()).status == 200


def test_probability(start_sim):
    sim = start_sim(endpoints=[endpoint(faults=[{"kind": "status", "status": 500, "probability": "30%", "deployment": "gpt-4o-mini"}])])
    sim.add_faults("ep", [rt_fault("status", status=503, probability=0.5, deployment="gpt-4o")])
    half = [ask(sim.port(), "gpt-4o").status for _ in range(100)]
    third = [ask(sim.port(), "gpt-4o-mini").status for _ in range(100)]
    assert set(half) <= {200, 503} and set(third) <= {200, 500}
    assert 25 <= half.count(503) <= 75, half.count(503)
    assert 12 <= third.count(500) <= 50, third.count(500)
    assert st_fault(sim.dep("gpt-4o"), "status") == half.count(503)
    assert st_fault(sim.dep("gpt-4o-mini"), "status") == third.count(500)


# ---- connection-level faults ----------------------------------------------------------------------


def test_reset(start_sim):
    sim = start_sim()
    sim.add_faults("ep", [rt_fault("reset", count=1)])
    with Conn(sim.port()) as c:
        c.send(_request_bytes("POST", az("gpt-4o"), CHAT, None, KEY))
        data, closed = c.read_until_close(5)
    assert closed, "the connection stayed open"
    assert data == b"", f"a reset connection sent bytes: {data[:200]!r}"
    assert c.reset, "closed, but not reset (RST)"
    # as a client sees it
    sim.add_faults("ep", [rt_fault("reset", count=1)])
    with pytest.raises((ConnectionError, AssertionError)):
        ask(sim.port())
    assert ask(sim.port()).status == 200
    assert st_fault(sim.dep("gpt-4o"), "reset") == 2


def triggered(port):
    """Send the request that hits a refuse rule: None when it got no response (refused,
    reset or closed, all fine for that one), else the response."""
    try:
        return ask(port, timeout=3)
    except (ConnectionError, AssertionError):
        return None


def test_refuse_then_recover(start_sim):
    sim = start_sim()
    p = sim.port()
    sim.add_faults("ep", [rt_fault("refuse", duration_ms=1000, count=1)])
    t0 = time.monotonic()
    served = triggered(p)
    assert served is None, f"the request that hit the refuse rule was answered: {served}"
    assert connect_refused(p), "connect() still succeeds after a refuse fault"
    time.sleep(0.3)
    assert connect_refused(p), "connect() succeeded again well before the refuse duration"
    wait_until(lambda: not connect_refused(p), 3.0, 0.02, "listening again after the refuse duration")
    back = time.monotonic() - t0
    assert 0.8 <= back <= 2.5, f"listening again after {back:.2f}s, duration 1s"
    assert ask(p).status == 200
    # the admin API kept working throughout and other endpoints were unaffected
    assert st_fault(sim.dep("gpt-4o"), "refuse") == 1


def test_refuse_affects_only_its_endpoint(start_sim):
    sim = start_sim(endpoints=[endpoint("a"), endpoint("b")])
    sim.add_faults("a", [rt_fault("refuse", duration_ms=800, count=1)])
    assert triggered(sim.port("a")) is None
    assert connect_refused(sim.port("a"))
    assert ask(sim.port("b")).status == 200
    wait_until(lambda: not connect_refused(sim.port("a")), 3.0, 0.02, "a listening again")


def test_stall_headers(start_sim):
    sim = start_sim()
    sim.add_faults("ep", [rt_fault("stall_headers", duration_ms=600, count=1)])
    with Conn(sim.port()) as c:
        t0 = time.monotonic()
        c.send(_request_bytes("POST", az("gpt-4o"), {**CHAT, "max_tokens": 5}, None, KEY))
        assert c.nothing_within(0.45), f"bytes during the stall: {c.buf[:200]!r}"
        _, r = c.read_final(timeout=5)
        elapsed = time.monotonic() - t0
    assert r.status == 200, r
    assert 0.55 <= elapsed <= 2.0, elapsed
    r = ask(sim.port())
    assert r.status == 200 and r.elapsed < 0.4, r.elapsed
    assert st_fault(sim.dep("gpt-4o"), "stall_headers") == 1


def test_stall_stream(start_sim):
    sim = start_sim()
    sim.add_faults("ep", [rt_fault("stall_stream", after=3, duration_ms=700, count=1)])
    s = stream(sim.port(), az("gpt-4o"), SCHAT, timeout=5)
    assert s.status == 200 and s.done and s.terminated, s
    times = [t for t, _ in s.events]
    gaps = [b - a for a, b in zip(times, times[1:])]
    big = [i for i, g in enumerate(gaps) if g >= 0.6]
    assert len(big) == 1, f"expected one stall of 700ms between events, gaps {gaps}"
    assert big[0] + 1 == 3, f"the stall came after {big[0] + 1} events, not 3"
    assert st_fault(sim.dep("gpt-4o"), "stall_stream") == 1


def test_cut_stream(start_sim):
    sim = start_sim()
    sim.add_faults("ep", [rt_fault("cut_stream", after=2, count=1)])
    s = stream(sim.port(), az("gpt-4o"), {**SCHAT, "stream_options": {"include_usage": True}}, timeout=5)
    assert s.status == 200, s
    assert not s.timed_out, s
    assert s.closed, "the connection was not closed"
    assert not s.done, "a cut stream sent [DONE]"
    assert not s.terminated, "a cut stream ended its chunked body properly"
    assert len(s.events) == 2, s.events
    assert s.partial.strip(), "cut between events, not mid-event"
    # the next stream is whole
    s = stream(sim.port(), az("gpt-4o"), SCHAT)
    assert s.done and s.terminated, s
    d = sim.dep("gpt-4o")
    assert st_fault(d, "cut_stream") == 1
    assert st_streams(d, "started") == 2 and st_streams(d, "cut") == 1 and st_streams(d, "completed") == 1


def test_trickle_stream(start_sim):
    sim = start_sim()
    sim.add_faults("ep", [rt_fault("trickle", duration_ms=100, count=1)])
    s = stream(sim.port(), az("gpt-4o"), {**SCHAT, "max_tokens": 5}, timeout=10)
    assert s.status == 200 and s.done and s.terminated, s
    n = len(s.events)
    assert n >= 4, s.events
    assert s.elapsed >= 0.09 * (n - 1), f"{n} events in {s.elapsed:.2f}s, one per 100ms expected"
    json.loads(s.events[1][1])  # still a valid stream


def test_trickle_non_streaming(start_sim):
    sim = start_sim()
    sim.add_faults("ep", [rt_fault("trickle", duration_ms=20, count=1)])
    r = ask(sim.port(), timeout=20)
    assert r.status == 200, r
    assert r.elapsed >= 0.12, f"trickled response took only {r.elapsed:.2f}s"
    assert r.json()["object"] == "chat.completion"
    assert ask(sim.port()).elapsed < 0.4


def test_malformed_json(start_sim):
    sim = start_sim()
    sim.add_faults("ep", [rt_fault("malformed_json", count=1)])
    r = ask(sim.port())
    assert r.status == 200, r
    assert r.body, r
    with pytest.raises(ValueError):
        json.loads(r.body.decode("utf-8", "replace"))
    assert ask(sim.port()).json()["object"] == "chat.completion"
    assert st_fault(sim.dep("gpt-4o"), "malformed_json") == 1


# ---- stats and reset ---------------------------------------------------------------------------------


def test_stats_count_exactly_what_was_sent(start_sim):
    sim = start_sim()
    p = sim.port()
    prompt = completion = 0
    for _ in range(3):
        u = ask(p).json()["usage"]
        prompt += u["prompt_tokens"]
        completion += u["completion_tokens"]
    s = stream(p, az("gpt-4o"), {**SCHAT, "stream_options": {"include_usage": True}})
    assert s.done
    u = s.chunks()[-1]["usage"]
    prompt += u["prompt_tokens"]
    completion += u["completion_tokens"]
    emb_prompt = 0
    for text in ("one", "two words"):
        r = call(p, "POST", az("text-embedding-3-small", "embeddings"), {"input": text})
        emb_prompt += r.json()["usage"]["prompt_tokens"]

    st = sim.stats()
    d = dep_stats(st, "ep", "gpt-4o")
    assert st_requests(d) == 4
    assert st_status(d, 200) == 4
    assert st_prompt_tokens(d) == prompt
    assert st_completion_tokens(d) == completion
    assert st_streams(d, "started") == 1 and st_streams(d, "completed") == 1 and st_streams(d, "cut") == 0
    assert st_throttled(d) == 0
    e = dep_stats(st, "ep", "text-embedding-3-small")
    assert st_requests(e) == 2 and st_prompt_tokens(e) == emb_prompt
    m = dep_stats(st, "ep", "gpt-4o-mini")
    assert st_requests(m) == 0

    # faults: two injected 429s and a cut stream, on top
    sim.add_faults("ep", [rt_fault("status", status=429, retry_after_ms=100, count=2), rt_fault("cut_stream", after=1, count=1)])
    assert [ask(p).status for _ in range(2)] == [429, 429]
    s = stream(p, az("gpt-4o"), SCHAT)
    assert not s.done
    d = sim.dep("gpt-4o")
    assert st_requests(d) == 7
    assert st_status(d, 429) == 2
    assert st_fault(d, "status") == 2 and st_fault(d, "cut_stream") == 1
    assert st_streams(d, "started") == 2 and st_streams(d, "completed") == 1 and st_streams(d, "cut") == 1


def test_reset_clears_stats_runtime_faults_and_quotas(start_sim):
    sim = start_sim(endpoints=[endpoint(deployments=default_deployments() + [chat_dep("small", tpm=1000, rpm=6000)])])
    p = sim.port()
    assert ask(p).status == 200
    assert call(p, "POST", az("small"), {**CHAT, "max_tokens": 900}).status == 200
    assert call(p, "POST", az("small"), {**CHAT, "max_tokens": 900}).status == 429
    sim.add_faults("ep", [rt_fault("status", status=503)])
    assert ask(p).status == 503
    sim.reset()
    st = sim.stats()
    for dep in ("gpt-4o", "small"):
        d = dep_stats(st, "ep", dep)
        assert st_requests(d) == 0 and st_prompt_tokens(d) == 0 and st_fault(d, "status") == 0 and st_throttled(d) == 0, d
    assert ask(p).status == 200, "runtime faults survived /_sim/reset"
    assert call(p, "POST", az("small"), {**CHAT, "max_tokens": 900}).status == 200, "quota survived /_sim/reset"
    assert st_requests(sim.dep("gpt-4o")) == 1


# ---- the control API ---------------------------------------------------------------------------------


def test_control_api_rejects_bad_requests(start_sim):
    sim = start_sim()
    bad = [
        {"endpoint": "nope", "faults": [rt_fault("status", status=500)]},
        {"endpoint": "ep", "faults": [{"kind": "explode"}]},
        {"endpoint": "ep", "faults": "not a list"},
        {"faults": []},
    ]
    for body in bad:
        r = sim.admin("POST", "/_sim/faults", body)
        assert r.status in (400, 404, 422), (body, r)
    r = call(sim.admin_port, "POST", "/_sim/faults", b"{not json", key=None)
    assert r.status == 400, r
    assert ask(sim.port()).status == 200  # nothing was installed
    r = sim.admin("GET", "/_sim/nothing-here")
    assert r.status == 404, r
    # the control API is not on the endpoint's port
    r = call(sim.port(), "GET", "/_sim/stats")
    assert r.status in (401, 404), r


def test_admin_healthz(start_sim):
    sim = start_sim()
    r = sim.admin("GET", "/healthz")
    assert r.status == 200


def test_stall_stream_after_zero_sends_the_head_first(start_sim):
    """after: 0 stalls before the first event, but after the response head: a gateway sees a
    200 text/event-stream and then silence (its read timeout), not silence before the head
    (its header timeout, which is what stall_headers is for)."""
    sim = start_sim()
    sim.add_faults("ep", [rt_fault("stall_stream", after=0, duration_ms=800, count=1)])
    s = stream(sim.port(), az("gpt-4o"), SCHAT, timeout=5)
    assert s.status == 200 and s.done, s
    assert s.t_head < 0.4, f"the head came only after {s.t_head:.3f}s, with the stall"
    assert s.events[0][0] >= 0.75, f"the first event came after {s.events[0][0]:.3f}s, before the stall ended"


def test_sigterm_during_refuse_is_bounded_by_shutdown_timeout(start_sim):
    """A refuse period is not in-flight work: SIGTERM must not wait it out (it may be up to 1h),
    and never longer than limits.shutdown_timeout."""
    sim = start_sim(limits={"shutdown_timeout": "1s"})
    sim.add_faults("ep", [rt_fault("refuse", duration_ms=5000, count=1)])
    assert triggered(sim.port()) is None
    assert connect_refused(sim.port())
    t0 = time.monotonic()
    sim.proc.send_signal(signal.SIGTERM)
    rc = sim.proc.wait(15)
    took = time.monotonic() - t0
    assert rc == 0
    assert took < 2.5, f"exit {took:.2f}s after SIGTERM (refuse 5 s, shutdown_timeout 1 s)"


def test_reset_one_endpoint_restores_its_starting_state(start_sim):
    sim = start_sim(endpoints=[endpoint("a", faults=[{"kind": "status", "status": 503, "count": 1}]), endpoint("b")])
    a, b = sim.port("a"), sim.port("b")
    assert [ask(a).status, ask(a).status] == [503, 200]
    ra = call(a, "POST", "/openai/v1/responses", {"model": "gpt-4o", "input": "x"}).json()["id"]
    rb = call(b, "POST", "/openai/v1/responses", {"model": "gpt-4o", "input": "x"}).json()["id"]
    listed = sim.admin("GET", "/_sim/faults").json()
    rule = listed["endpoints"]["a"]["config"][0]
    assert rule["kind"] == "status" and rule["count"] == 1 and rule["used"] == 1, listed
    r = sim.admin("POST", "/_sim/reset?endpoint=a")
    assert r.status == 200, r
    assert call(a, "GET", f"/openai/v1/responses/{ra}").status == 404, "stored responses survived the reset"
    assert call(b, "GET", f"/openai/v1/responses/{rb}").status == 200, "the reset of a touched b"
    assert st_requests(sim.dep("gpt-4o", "b")) == 1
    assert ask(a).status == 503, "the config rule's use count was not restored"
    assert sim.admin("POST", "/_sim/reset?endpoint=nope").status == 404


def test_probability_rolls_are_seeded(start_sim):
    """Same seed, same request order: the same faults, so a flaky-looking run can be replayed."""
    rule = [{"kind": "status", "status": 500, "probability": 0.5}]
    runs = []
    for seed in (5, 5, 6):
        sim = start_sim(endpoints=[endpoint(faults=rule)], seed=seed)
        runs.append([ask(sim.port()).status for _ in range(40)])
        sim.stop()
    assert runs[0] == runs[1], "the same seed gave different faults"
    assert runs[0] != runs[2], "another seed gave the very same 40 rolls"


def test_stats_requests_tied_to_no_deployment(start_sim):
    """Requests that never reach a deployment (unknown deployment, no key, bad path) are counted
    on the endpoint, so that a test can assert that nothing at all reached it."""
    sim = start_sim()
    p = sim.port()
    assert call(p, "POST", az("nope"), CHAT).status == 404
    assert call(p, "POST", az("gpt-4o"), CHAT, key=None).status == 401
    assert call(p, "POST", "/openai/nothing", CHAT).status == 404
    e = ep_stats(sim.stats(), "ep")
    u = e["unrouted"]
    assert st_requests(u) == 3 and st_status(u, 404) == 2 and st_status(u, 401) == 1, u
    assert all(st_requests(d) == 0 for d in e["deployments"].values())


def test_malformed_json_in_a_stream(start_sim):
    sim = start_sim()
    sim.add_faults("ep", [rt_fault("malformed_json", count=1)])
    s = stream(sim.port(), az("gpt-4o"), SCHAT)
    assert s.status == 200, s
    bad = []
    for _, d in s.events:
        if d == "[DONE]":
            continue
        try:
            json.loads(d)
        except ValueError:
            bad.append(d)
    assert len(bad) == 1, f"expected one event that is not JSON, got {len(bad)}: {bad[:2]}"
