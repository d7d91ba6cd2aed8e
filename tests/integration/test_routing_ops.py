"""Operating the resilience features (issue 6): `sluice status` against a running gateway,
check-config on bad pools, and backends whose retry headers are garbage, negative or huge."""

import json
import re
import textwrap
from datetime import datetime

import pytest

from helpers import free_port, run_sluice
from proxytools import *  # noqa: F401,F403
from proxytools import CLIENT_KEY, RecordingBackend, azure_backend, gw_env, routing_backend, routing_endpoint
from simtools import rt_fault


def pool(*members):
    return [{"backend": b, "priority": p, "weight": w} for b, p, w in members]


def status_env(start_routing):
    env = start_routing(
        endpoints=[routing_endpoint("ep-ptu"), routing_endpoint("ep-payg", region="swedencentral")],
        backends=[
            routing_backend("ptu", "ep-ptu", geography="us"),
            routing_backend("payg", "ep-payg", region="swedencentral", geography="eu"),
        ],
        routes=[
            {"name": "gpt-4o", "backends": pool(("ptu", 1, 90), ("payg", 2, 10))},
            {"name": "ptu-only", "backend": "ptu"},
        ],
    )
    assert env.chat().header("x-sluice-backend") == "ptu"
    env.faults("ep-ptu", [rt_fault("status", status=429, retry_after_ms=30000, count=1)])
    assert env.chat().header("x-sluice-backend") == "payg"
    return env


# ---- sluice status -----------------------------------------------------------------------------------


def test_status_command_prints_tables(start_routing):
    env = status_env(start_routing)
    p = run_sluice(["status", "--admin", f"127.0.0.1:{env.admin_port}"])
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    out = p.stdout
    lines = out.splitlines()
    # the routes table: name, available, members with priority and weight
    head = next(i for i, line in enumerate(lines) if line.startswith("ROUTE"))
    assert re.split(r"\s{2,}", lines[head].strip()) == ["ROUTE", "AVAILABLE", "BACKENDS"], lines[head]
    rows = {re.split(r"\s{2,}", x.strip())[0]: re.split(r"\s{2,}", x.strip()) for x in lines[head + 1 : head + 3]}
    assert rows["gpt-4o"] == ["gpt-4o", "yes", "ptu(p1,w90) payg(p2,w10)"], rows
    assert rows["ptu-only"] == ["ptu-only", "no", "ptu(p1,w1)"], rows
    # the backends table, columns aligned: every field starts where its heading does
    bh = next(i for i, line in enumerate(lines) if line.startswith("BACKEND"))
    heading = lines[bh]
    for col in ("STATE", "UNTIL", "REASON", "IN-FLIGHT", "OK", "ERR", "429", "TTFB-MS", "REGION", "GEOGRAPHY"):
        assert re.search(rf"\b{col}\b", heading), (col, heading)
    cols = [m.start() for m in re.finditer(r"\S+", heading)]
    ptu = next(x for x in lines[bh + 1 :] if x.startswith("ptu "))
    payg = next(x for x in lines[bh + 1 :] if x.startswith("payg "))
    at = lambda line, c: line[cols[c] :].split("  ")[0].strip()  # noqa: E731
    assert at(ptu, 1) == "open", ptu
    assert re.fullmatch(r"in (2\d|30)s", at(ptu, 2)), ptu
    assert "429" in at(ptu, 3), ptu
    assert (at(ptu, 5), at(ptu, 6), at(ptu, 7)) == ("1", "0", "1"), ptu
    assert at(ptu, 9) == "eastus" and at(ptu, 10) == "us", ptu
    assert at(payg, 1) == "closed" and at(payg, 2) == "-" and at(payg, 3) == "-", payg
    assert at(payg, 5) == "1" and at(payg, 9) == "swedencentral" and at(payg, 10) == "eu", payg
    assert re.fullmatch(r"\d+", at(payg, 8)), payg


def test_status_command_json_and_config(start_routing):
    env = status_env(start_routing)
    p = run_sluice(["status", "--admin", f"127.0.0.1:{env.admin_port}", "--json"])
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)
    assert [r["name"] for r in st["routes"]] == ["gpt-4o", "ptu-only"], st
    assert {b["name"]: b["state"] for b in st["backends"]} == {"ptu": "open", "payg": "closed"}, st
    # the address from a configuration file's admin_listen
    p = run_sluice(["status", "--config", str(env.gw.config_path), "--json"], env=gw_env())
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["routes"][0]["name"] == "gpt-4o"


def test_status_command_when_nothing_listens():
    port = free_port()
    p = run_sluice(["status", "--admin", f"127.0.0.1:{port}"])
    assert p.returncode == 1
    assert p.stdout == ""
    assert f"cannot connect to 127.0.0.1:{port}: Connection refused" in p.stderr, p.stderr
    assert "admin_listen" in p.stderr, p.stderr
    assert len(p.stderr.splitlines()) == 1, p.stderr


def test_status_command_against_something_else():
    def not_found(req):
        body = b'{"error":{"code":"NotFound","message":"no such path"}}'
        return b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    def not_json(req):
        return b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n<html\r\n0\r\n\r\n"

    for respond, want in [(not_found, "answered 404"), (not_json, "not JSON")]:
        with RecordingBackend(respond) as be:
            p = run_sluice(["status", "--admin", f"127.0.0.1:{be.port}"])
            assert p.returncode == 1 and p.stdout == "", p
            assert want in p.stderr and f"127.0.0.1:{be.port}" in p.stderr, p.stderr
            [req] = be.wait_requests(1)
            assert req.method == "GET" and req.path == "/sluice/status", req
            assert req.header("host") == f"127.0.0.1:{be.port}", req


# ---- check-config on bad pools ---------------------------------------------------------------------------


BACKENDS = """
    backends:
      - {name: ptu, url: "http://127.0.0.1:1", model: gpt-4o, version: "2024-08-06", geography: us}
      - {name: payg, url: "http://127.0.0.1:2", model: gpt-4o, version: "2024-08-06", geography: us}
      - {name: next, url: "http://127.0.0.1:3", model: gpt-4o, version: "2024-11-20"}
    """


def check(tmp_path, routes):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(BACKENDS).lstrip("\n") + textwrap.dedent(routes).lstrip("\n"))
    p = run_sluice(["check-config", str(path)])
    pat = re.compile(r"^" + re.escape(str(path)) + r":(\d+):(\d+): ([^:]+): (.+)$", re.M)
    problems = [(int(a), int(b), k, m) for a, b, k, m in pat.findall(p.stderr)]
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert len(problems) == len(p.stderr.splitlines()), f"every line FILE:LINE:COL: key: message:\n{p.stderr}"
    return problems


def find(problems, line, key, text):
    hits = [x for x in problems if x[0] == line and x[2] == key and text in x[3]]
    assert hits, f"no problem at line {line} for {key} saying {text!r}: {problems}"


@pytest.mark.parametrize(
    "routes, line, key, text",
    [
        ("routes:\n  - {name: r, backend: ptu, backends: [{backend: payg}]}\n", 6, "routes[0].backends", "either"),
        ("routes:\n  - name: r\n    backends:\n      - {backend: ptu}\n      - {backend: pyag}\n", 8, "routes[0].backends", '"pyag"'),
        ("routes:\n  - {name: r, backend: nosuch}\n", 6, "routes[0].backend", '"nosuch"'),
        ("routes:\n  - name: r\n    backends:\n      - {backend: ptu, weight: 0}\n", 8, "routes[0].backends[0].weight", "at least 1"),
        ("routes:\n  - name: r\n    backends:\n      - {backend: ptu, weight: -3}\n", 8, "routes[0].backends[0].weight", "-3"),
        ("routes:\n  - name: r\n    backends:\n      - {backend: ptu, priority: -1}\n", 8, "routes[0].backends[0].priority", "-1"),
        ("routes:\n  - name: r\n    backends:\n      - {backend: ptu}\n      - {backend: ptu}\n", 9, "routes[0].backends[1].backend", "already used"),
        ("routes:\n  - {name: r, backends: [{backend: ptu}, {backend: next}]}\n", 6, "routes[0].backends", "allow_mixed_versions"),
        ("routes:\n  - {name: r, backends: [{backend: ptu}, {backend: payg}], geographies: [eu]}\n", 6, "routes[0].geographies", "eu"),
        ("routes:\n  - {name: r, backend: ptu, max_attempts: 0}\n", 6, "routes[0].max_attempts", "at least 1"),
    ],
    ids=["backend-and-backends", "unknown-member", "unknown-backend", "weight-0", "weight-negative",
         "priority-negative", "member-twice", "mixed-versions", "geography-unservable", "max-attempts-0"],
)
def test_check_config_refuses_bad_pools(tmp_path, routes, line, key, text):
    find(check(tmp_path, routes), line, key, text)


def test_check_config_reports_every_problem_at_once(tmp_path):
    problems = check(
        tmp_path,
        "routes:\n"
        "  - name: r\n"
        "    backends:\n"
        "      - {backend: ptu, weight: 0}\n"
        "      - {backend: pyag}\n"
        "  - {name: s, backend: ptu, max_attempts: 0}\n"
        "routing: {readiness: most}\n",
    )
    find(problems, 8, "routes[0].backends[0].weight", "at least 1")
    find(problems, 10, "routes[1].max_attempts", "at least 1")
    find(problems, 11, "routing.readiness", "any, all")


def test_check_config_accepts_the_mixed_rollout(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(
        textwrap.dedent(BACKENDS).lstrip("\n")
        + "routes:\n  - {name: r, backends: [{backend: ptu, weight: 95}, {backend: next, weight: 5}], allow_mixed_versions: true}\n"
    )
    p = run_sluice(["check-config", str(path)])
    assert p.returncode == 0, p.stderr


# ---- retry headers that are garbage, negative or huge ---------------------------------------------------------


def throttled(headers):
    """A backend answering every request 429 with these (raw) headers."""
    body = b'{"error":{"code":"429","message":"Rate limit is exceeded.","param":null,"type":null}}'

    def respond(req):
        head = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers)
        head += f"Content-Length: {len(body)}\r\n\r\n"
        return head.encode("latin-1") + body

    return respond


# (headers, the longest the backend may then stay open in ms, the shortest) with throttle_time 2s
# and max_retry_after 30s
GARBAGE = {
    "banana": ([("retry-after", "banana")], 2000, 1000),
    "negative": ([("retry-after-ms", "-5"), ("retry-after", "-3")], 2000, 1000),
    "huge-seconds": ([("retry-after", "99999999")], 30000, 25000),
    "huge-ms": ([("retry-after-ms", "99999999999999999999999999")], 30000, 1000),
    "float-ms": ([("retry-after-ms", "1e400"), ("retry-after", "NaN")], 30000, 1000),
    "reset-garbage": ([("x-ratelimit-reset-requests", "6m0sbanana"), ("x-ratelimit-reset-tokens", "-1s")], 2000, 1000),
    "ms-garbage-seconds-ok": ([("retry-after-ms", "soon"), ("retry-after", "1")], 1000, 500),
    "empty": ([("retry-after-ms", ""), ("retry-after", " ")], 2000, 1000),
    "reset-huge": ([("x-ratelimit-reset-tokens", "99999h")], 30000, 25000),
}


def garbage_env(start_routing, be):
    bad = azure_backend("bad", be.port, deployment="gpt-4o", throttle_time="2s", max_retry_after="30s")
    return start_routing(
        endpoints=[routing_endpoint("ep-good")],
        backends=[bad, routing_backend("good", "ep-good")],
        routes=[
            {"name": "only-bad", "backend": "bad"},
            {"name": "gpt-4o", "backends": pool(("bad", 1, 1), ("good", 2, 1))},
        ],
    )


def assert_sane_429(r, at_most_s):
    assert r.status == 429, r
    ms, secs = r.header("retry-after-ms"), r.header("retry-after")
    assert ms is not None and ms.isdigit() and int(ms) <= at_most_s * 1000, f"retry-after-ms {ms!r}: {r!r}"
    assert secs is not None and secs.isdigit() and int(secs) <= at_most_s, f"Retry-After {secs!r}: {r!r}"
    assert r.json()["error"]["message"], r


@pytest.mark.parametrize("case", list(GARBAGE))
def test_garbage_retry_headers(start_routing, case):
    headers, longest, shortest = GARBAGE[case]
    with RecordingBackend(throttled(headers)) as be:
        env = garbage_env(start_routing, be)
        # the 429 spills over to the other backend
        r = env.chat("gpt-4o")
        assert r.status == 200 and r.header("x-sluice-backend") == "good", r
        # and keeps the throttled one out for what the headers say: the default when they say
        # nothing usable, at most max_retry_after
        st = env.status()
        held = next(b for b in st["backends"] if b["name"] == "bad")
        assert held["state"] == "open" and held["last_status"] == 429, held
        rfc = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000  # noqa: E731
        left = rfc(held["until"]) - rfc(st["time"])
        assert shortest <= left <= longest, f"{case}: open for {left:.0f} ms, expected {shortest}..{longest}: {held}"
        # the route whose only backend is throttled: a proper 429, with sane retry headers
        r = env.chat("only-bad")
        assert_sane_429(r, 30)
        r = env.chat("gpt-4o")
        assert r.status == 200 and r.header("x-sluice-backend") == "good", r
        assert len(be.requests) == 1, "the throttled backend got a request while open"
        assert env.gw.alive()
        if case in ("huge-seconds", "reset-huge"):
            warned = [x for x in env.gw.log_lines() if x.get("level") == "warn" and "bad" in json.dumps(x)]
            assert warned, f"a clamped retry header is not logged:\n{env.gw.stderr()[-3000:]}"
        assert not be.errors, be.errors


@pytest.mark.parametrize("case", ["banana", "negative", "huge-seconds"])
def test_a_lone_backends_garbage_retry_headers_do_not_reach_the_client(start_routing, case):
    """Every backend of the route is throttled after its 429: the client gets the gateway's
    retry headers (the soonest reopen, at most 60 s), not the backend's garbage."""
    with RecordingBackend(throttled(GARBAGE[case][0])) as be:
        env = garbage_env(start_routing, be)
        r = env.chat("only-bad")
        assert_sane_429(r, 30)
        assert env.gw.alive()


def test_key_of_a_client_is_not_needed_for_status(start_routing):
    env = status_env(start_routing)
    r = env.admin("GET", "/sluice/status")
    assert r.status == 200 and r.json()["routes"], r
    # and not served on the public listener, with or without a key
    assert env.call("GET", "/sluice/status").status == 404
    assert env.call("GET", "/sluice/status", key=None).status in (401, 404)
    assert CLIENT_KEY not in r.body.decode()
