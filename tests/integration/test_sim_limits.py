"""`sluice sim`: Azure-like quotas. TPM charged at admission (prompt + max_tokens), RPM on
10-second slices (rpm/6 each), provisioned (PTU) utilisation 429s, and the 429 itself:
`retry-after` (whole seconds, rounded up), `retry-after-ms`, the Azure error body, and a
retry-after that is honoured."""

import math
import time

from simtools import *  # noqa: F401,F403
from simtools import CHAT, az, call, chat_dep, dep_stats, endpoint, st_requests, st_status, st_throttled, stream


def check_429(r):
    """An Azure quota 429: both retry headers, consistent, and the Azure body. Returns ms."""
    assert r.status == 429, r
    ms = r.header("retry-after-ms")
    s = r.header("retry-after")
    assert ms is not None and s is not None, r
    assert ms.isdigit() and s.isdigit(), (s, ms)
    ms, s = int(ms), int(s)
    assert ms > 0, ms
    assert s == math.ceil(ms / 1000), f"retry-after {s} is not retry-after-ms {ms} rounded up"
    assert (r.header("content-type") or "").startswith("application/json"), r
    b = r.json()
    assert list(b) == ["error"], b
    assert b["error"]["code"] == "429", b
    assert isinstance(b["error"]["message"], str) and b["error"]["message"], b
    assert r.header("x-request-id"), r
    assert r.header("x-ms-region") == "eastus", r
    return ms


def remaining(r, which):
    v = r.header(f"x-ratelimit-remaining-{which}")
    assert v is not None and v.lstrip("-").isdigit(), (which, r)
    return int(v)


def early_in_slice(margin=1.5):
    """Wait, if needed, so that the next `margin` seconds lie inside one fixed 10 s slice of
    the monotonic clock (the simulator's RPM slices, docs/simulator.md)."""
    into = time.monotonic() % 10
    if into > 10 - margin:
        time.sleep(10 - into + 0.05)


def sim_with(start_sim, *deps):
    return start_sim(endpoints=[endpoint(deployments=list(deps))])


def ask(port, dep, max_tokens, **kw):
    return call(port, "POST", az(dep), {**CHAT, "max_tokens": max_tokens}, **kw)


# ---- TPM --------------------------------------------------------------------------------------


def test_tpm_charged_at_admission(start_sim):
    sim = sim_with(start_sim, chat_dep("d", tpm=6000, rpm=6000))
    p = sim.port()
    oks, rems, first429 = [], [], None
    for _ in range(20):
        r = ask(p, "d", 400)
        if r.status == 429:
            first429 = r
            break
        assert r.status == 200, r
        oks.append(r.json()["usage"])
        rems.append(remaining(r, "tokens"))
    assert first429 is not None, f"no 429 after {len(oks)} requests charging ~{oks[0]['prompt_tokens'] + 400} tokens each, tpm 6000"
    check_429(first429)
    assert oks, "the first request was already throttled"
    # admission charges prompt tokens + max_tokens (not what was generated)
    charged = sum(u["prompt_tokens"] + 400 for u in oks)
    generated = sum(u["total_tokens"] for u in oks)
    assert charged <= 6000, f"admitted {charged} tokens of charges with tpm 6000"
    assert generated < charged
    assert all(a > b for a, b in zip(rems, rems[1:])), f"x-ratelimit-remaining-tokens does not fall: {rems}"
    assert rems[-1] >= 0
    # stats: the quota 429 is counted as throttled
    d = sim.dep("d")
    assert st_requests(d) == len(oks) + 1
    assert st_status(d, 200) == len(oks)
    assert st_status(d, 429) == 1
    assert st_throttled(d) == 1


def test_small_max_tokens_are_admitted_when_large_are_not(start_sim):
    sim = sim_with(start_sim, chat_dep("d", tpm=6000, rpm=6000))
    p = sim.port()
    r = ask(p, "d", 5000)
    assert r.status == 200, r  # 5000 + prompt fits in 6000
    r = ask(p, "d", 5000)
    check_429(r)
    r = ask(p, "d", 10)
    assert r.status == 200, f"a request charging ~30 tokens should fit in what is left: {r}"


def test_tpm_retry_after_counts_down(start_sim):
    """TPM is a sliding minute: the retry-after of a TPM 429 is when enough of the minute's
    charges have left it (so up to 60 s: too long to wait for here; RPM and PTU below wait for
    theirs). A request sent before it expires is still throttled, with a wait that has shrunk
    by the time that passed."""
    sim = sim_with(start_sim, chat_dep("d", tpm=6000, rpm=6000))
    p = sim.port()
    t_429 = ms = None
    for _ in range(20):
        r = ask(p, "d", 1000)
        if r.status == 429:
            t_429 = time.monotonic()
            ms = check_429(r)
            break
        assert r.status == 200, r
    assert t_429 is not None, "never throttled"
    assert 1000 < ms <= 60000, ms
    time.sleep(1.0)
    r = ask(p, "d", 1000)
    ms2 = check_429(r)
    left = ms - (time.monotonic() - t_429) * 1000
    assert left - 1100 <= ms2 <= left + 100, f"second retry-after-ms {ms2}, {left:.0f} ms of the first were left"


def test_throttled_stream_gets_a_json_429(start_sim):
    sim = sim_with(start_sim, chat_dep("d", tpm=1000, rpm=6000))
    p = sim.port()
    assert ask(p, "d", 900).status == 200
    s = stream(p, az("d"), {**CHAT, "stream": True, "max_tokens": 900})
    assert s.status == 429, s
    assert s.header("retry-after") and s.header("retry-after-ms"), s.headers
    assert s.json_error()["error"]["code"] == "429"
    assert not s.events


# ---- RPM: 10-second slices ------------------------------------------------------------------------


def test_rpm_enforced_per_10s_slice(start_sim):
    """rpm 12 allows 2 requests per 10 s slice: the 3rd within a slice is throttled though the
    minute's 12 are far from used."""
    sim = sim_with(start_sim, chat_dep("d", tpm=0, rpm=12))
    p = sim.port()
    early_in_slice()
    r1, r2, r3 = (ask(p, "d", 5) for _ in range(3))
    assert r1.status == 200 and r2.status == 200, (r1, r2)
    assert remaining(r1, "requests") > remaining(r2, "requests") >= 0
    ms = check_429(r3)
    assert ms <= 10000 + 100, f"retry-after-ms {ms} is beyond the end of a 10 s slice"


def test_rpm_derived_from_tpm_and_retry_after_honoured(start_sim):
    """rpm 0 means 6 RPM per 1000 TPM: tpm 1000 -> 6 RPM -> 1 request per 10 s slice.
    Before the retry-after expires a request is still throttled; after it, served."""
    sim = sim_with(start_sim, chat_dep("d", tpm=1000, rpm=0))
    p = sim.port()
    early_in_slice()
    assert ask(p, "d", 5).status == 200
    r = ask(p, "d", 5)
    t = time.monotonic()
    ms = check_429(r)
    assert ms <= 10000, f"retry-after-ms {ms} is beyond the end of a 10 s slice"
    if ms > 400:
        time.sleep(ms / 2000)
        r = ask(p, "d", 5)
        ms2 = check_429(r)
        left = ms - (time.monotonic() - t) * 1000
        assert ms2 <= left + 50, (ms2, left)
    time.sleep(max(0.0, t + ms / 1000 + 0.05 - time.monotonic()))
    r = ask(p, "d", 5)
    assert r.status == 200, f"throttled after waiting retry-after-ms {ms}: {r}"
    d = sim.dep("d")
    assert st_throttled(d) == st_status(d, 429) >= 1
    assert st_status(d, 200) == 2


# ---- PTU ----------------------------------------------------------------------------------------


def test_provisioned_utilisation_429(start_sim):
    """Provisioned, tpm 6000: 100 tokens per second. A quick burst of ~50-token requests passes
    100% utilisation within a second; the same burst on a standard deployment with the same
    TPM is fine. After the retry-after, the PTU deployment serves again."""
    sim = sim_with(start_sim, chat_dep("ptu", capacity="provisioned", tpm=6000), chat_dep("std", tpm=6000, rpm=6000))
    p = sim.port()
    for _ in range(6):
        assert ask(p, "std", 40).status == 200
    statuses = []
    t_429 = ms = None
    for _ in range(6):
        r = ask(p, "ptu", 40)
        statuses.append(r.status)
        if r.status == 429:
            t_429 = time.monotonic()
            ms = check_429(r)
            break
        assert r.status == 200, r
    assert t_429 is not None, f"no PTU 429 in a burst of {statuses}"
    assert len(statuses) <= 4, statuses
    assert ms <= 1000, f"PTU utilisation is measured over 1 s; retry-after-ms {ms}"
    if ms > 200:
        time.sleep(ms / 2000)
        check_429(ask(p, "ptu", 40))  # before it expires: still throttled
    time.sleep(max(0.0, t_429 + ms / 1000 + 0.05 - time.monotonic()))
    r = ask(p, "ptu", 40)
    assert r.status == 200, f"still throttled after retry-after-ms {ms}: {r}"
    st = sim.stats()
    ptu = dep_stats(st, "ep", "ptu")
    assert st_throttled(ptu) == st_status(ptu, 429) >= 1
    assert st_throttled(dep_stats(st, "ep", "std")) == 0


def test_unlimited_deployment_never_throttles(start_sim):
    sim = sim_with(start_sim, chat_dep("d", tpm=0, rpm=0))
    for _ in range(30):
        assert ask(sim.port(), "d", 400).status == 200
