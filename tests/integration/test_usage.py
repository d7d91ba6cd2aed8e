"""Usage: every request counted exactly in the ledger (streams too: sluice asks for the usage
chunk and hides it from clients that did not ask), the `sluice usage` report (table, csv,
json) and /sluice/usage agree with the simulator's own token counts, bad ledger files give
clear errors, and access-log lines carry the tokens and cost."""

import csv
import io
import json
import os
import sqlite3
import time

import pytest

from proxytools import *  # noqa: F401,F403
from proxytools import chat_body, ledger_rows
from helpers import run_sluice
from simtools import az, call

PRICES = [{"model": "gpt-4o", "input": "2.50", "cached_input": "1.25", "output": "10.00"}]


def usage_gw(tmp_path, **extra):
    gw = {"usage": {"db": str(tmp_path / "u.db"), "flush_interval": "50ms"}, "prices": PRICES}
    gw.update(extra)
    return gw


rows = ledger_rows


def wait_rows(db, n, timeout=10.0):
    """The ledger's rows once there are n (bounded; never more than n)."""
    deadline = time.monotonic() + timeout
    got = []
    while time.monotonic() < deadline:
        if os.path.exists(db):
            try:
                got = rows(db)
            except sqlite3.Error:
                got = []
            if len(got) >= n:
                break
        time.sleep(0.05)
    assert len(got) == n, got
    return got


def usage_chunks(s):
    return [c for c in s.chunks() if isinstance(c.get("usage"), dict)]


def sim_tokens(env, dep="gpt-4o"):
    d = env.dep(dep)
    return d["prompt_tokens"], d["completion_tokens"]


def report(db, *args):
    return run_sluice(["usage", "--db", str(db), *args])


def cost_micros(prompt, completion):
    # 2.50 USD / M input, 10.00 USD / M output (no cached tokens from the simulator)
    return (prompt * 2_500_000 + completion * 10_000_000) // 1_000_000


@pytest.fixture
def env(start_proxy, tmp_path):
    e = start_proxy(gw=usage_gw(tmp_path))
    e.db = tmp_path / "u.db"
    return e


def test_stream_without_include_usage_is_counted_and_hidden(env):
    body = chat_body(max_tokens=30, stream=True)
    s = env.stream(az("gpt-4o"), body, keep_reading=0.2)
    assert s.status == 200 and s.done and s.terminated, s
    assert usage_chunks(s) == [], s.chunks()[-2:]
    assert s.events[-1][1] == "[DONE]"
    assert s.content()
    prompt, completion = sim_tokens(env)
    assert completion > 0
    (r,) = wait_rows(env.db, 1)
    assert (r["prompt_tokens"], r["completion_tokens"], r["total_tokens"]) == (prompt, completion, prompt + completion)
    assert r["estimated"] == 0 and r["stream"] == 1 and r["status"] == 200
    assert r["cost_micros"] == cost_micros(prompt, completion)
    # the same request asking for the chunk, straight to the simulator, reports the same usage
    d = env.stream(az("gpt-4o"), dict(body, stream_options={"include_usage": True}))
    (u,) = usage_chunks(d)
    assert (u["usage"]["prompt_tokens"], u["usage"]["completion_tokens"]) == (prompt, completion)


def test_stream_with_include_usage_sees_it_once(env):
    body = chat_body(max_tokens=25, stream=True, stream_options={"include_usage": True})
    s = env.stream(az("gpt-4o"), body)
    assert s.status == 200 and s.done, s
    (u,) = usage_chunks(s)
    assert u["choices"] == []
    assert s.chunks()[-1] is not None and s.chunks()[-1]["usage"] == u["usage"]
    (r,) = wait_rows(env.db, 1)
    assert (r["prompt_tokens"], r["completion_tokens"]) == (u["usage"]["prompt_tokens"], u["usage"]["completion_tokens"])
    assert (r["prompt_tokens"], r["completion_tokens"]) == sim_tokens(env)


def test_include_usage_false_is_hidden(env):
    body = chat_body(max_tokens=10, stream=True, stream_options={"include_usage": False})
    s = env.stream("/v1/chat/completions", dict(body, model="gpt-4o"))
    assert s.status == 200 and s.done, s
    assert usage_chunks(s) == []
    (r,) = wait_rows(env.db, 1)
    assert (r["prompt_tokens"], r["completion_tokens"]) == sim_tokens(env)
    assert r["estimated"] == 0


def test_non_streaming_counts_exact(env):
    r = env.call("POST", az("gpt-4o"), chat_body(max_tokens=20))
    assert r.status == 200, r
    u = r.json()["usage"]
    (row,) = wait_rows(env.db, 1)
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (
        u["prompt_tokens"],
        u["completion_tokens"],
        u["total_tokens"],
    )
    assert row["stream"] == 0 and row["estimated"] == 0
    assert (row["prompt_tokens"], row["completion_tokens"]) == sim_tokens(env)


def load_mix(env):
    """Streams with and without include_usage, plain calls, from two clients; and an error."""
    for i in range(3):
        env.stream(az("gpt-4o"), chat_body(f"Count {i}.", max_tokens=10 + i, stream=True))
        env.stream(az("gpt-4o"), chat_body(f"List {i}.", max_tokens=7 + i, stream=True, stream_options={"include_usage": True}))
        env.call("POST", az("gpt-4o"), chat_body(f"Name {i}.", max_tokens=5 + i), key=CLIENT_KEY_2)
    r = env.call("POST", az("no-such-route"), chat_body())
    assert r.status == 404
    return 10


def test_report_totals_equal_the_simulator(env):
    n = load_mix(env)
    wait_rows(env.db, n)
    prompt, completion = sim_tokens(env)
    p = report(env.db, "--format", "json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["by"] == "client"
    keys = [g["key"] for g in rep["groups"]]
    assert keys == ["app1", "app2"], rep
    t = rep["total"]
    assert (t["requests"], t["errors"]) == (n, 1)
    assert (t["prompt_tokens"], t["completion_tokens"], t["total_tokens"]) == (prompt, completion, prompt + completion)
    assert t["estimated"] == 0
    by = {g["key"]: g for g in rep["groups"]}
    assert by["app1"]["requests"] == 7 and by["app2"]["requests"] == 3
    assert sum(g["total_tokens"] for g in rep["groups"]) == t["total_tokens"]
    assert t["cost_micros"] == sum(r["cost_micros"] for r in rows(env.db))
    assert t["cost_usd"] == pytest.approx(t["cost_micros"] / 1e6)
    for g in rep["groups"] + [t]:
        assert 0 <= g["latency_p50_ms"] <= g["latency_p95_ms"], g
        assert g["ttft_p50_ms"] is None or g["ttft_p50_ms"] <= g["ttft_p95_ms"], g

    # CSV: the same numbers, a line per group
    p = report(env.db, "--format", "csv")
    assert p.returncode == 0, p.stderr
    lines = list(csv.DictReader(io.StringIO(p.stdout)))
    assert [x["client"] for x in lines] == ["app1", "app2"]
    assert sum(int(x["total_tokens"]) for x in lines) == prompt + completion
    assert sum(int(x["requests"]) for x in lines) == n
    assert lines[0]["cost_usd"] == "%d.%06d" % divmod(by["app1"]["cost_micros"], 1_000_000)

    # table: a heading, a line per group, and the total
    p = report(env.db)
    assert p.returncode == 0, p.stderr
    text = p.stdout.splitlines()
    assert text[0].startswith("usage from ") and text[0].endswith(", by client"), text
    header = text[2].split()
    assert header[:8] == ["client", "requests", "errors", "prompt", "cached", "completion", "reasoning", "total"]
    total = text[-1].split()
    assert total[0] == "total" and int(total[1]) == n and int(total[7]) == prompt + completion, text

    # other groupings: same totals
    for by_what, want in (("route", {"gpt-4o", ""}), ("backend", {"aoai-gpt-4o", ""}), ("model", {"gpt-4o", ""})):
        p = report(env.db, "--by", by_what, "--format", "json")
        assert p.returncode == 0, p.stderr
        r = json.loads(p.stdout)
        assert {g["key"] for g in r["groups"]} == want, r
        assert r["total"]["total_tokens"] == prompt + completion
    p = report(env.db, "--by", "day", "--format", "json", "--from", "2d", "--to", "2099-01-01")
    r = json.loads(p.stdout)
    assert len(r["groups"]) in (1, 2) and r["total"]["requests"] == n  # around midnight UTC: two days
    # a range with nothing in it
    p = report(env.db, "--from", "2020-01-01", "--to", "2020-01-02T00:00:00Z", "--format", "json")
    r = json.loads(p.stdout)
    assert r["groups"] == [] and r["total"]["requests"] == 0 and r["total"]["latency_p50_ms"] is None

    # the admin API's answer is the same report
    r = call(env.gw.admin_port, "GET", "/sluice/usage?by=client", key=None)
    assert r.status == 200, r
    assert r.header("content-type").startswith("application/json")
    api = r.json()
    assert api["groups"] == rep["groups"] and api["total"] == rep["total"]
    r = call(env.gw.admin_port, "GET", "/sluice/usage?by=model&from=2020-01-01T00%3A00%3A00%2B02%3A00", key=None)
    assert r.status == 200 and r.json()["total"]["total_tokens"] == prompt + completion, r
    r = call(env.gw.admin_port, "GET", "/sluice/usage?by=team", key=None)
    assert r.status == 400 and "by" in r.json()["error"]["message"], r
    r = call(env.gw.admin_port, "GET", "/sluice/usage?from=yesterday", key=None)
    assert r.status == 400 and "from" in r.json()["error"]["message"], r


def test_report_bad_files(tmp_path):
    missing = tmp_path / "nope.db"
    p = report(missing)
    assert p.returncode == 1
    assert p.stderr.strip() == f"sluice: usage: cannot open {missing}: No such file or directory"
    assert not missing.exists()

    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(8192))
    p = report(junk)
    assert p.returncode == 1 and p.stdout == ""
    assert f"{junk} is not a sluice ledger" in p.stderr, p.stderr

    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE requests(x)")
    con.commit()
    con.close()
    p = report(other)
    assert p.returncode == 1 and "not a sluice ledger (a SQLite database of something else)" in p.stderr, p.stderr

    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    p = report(empty)
    assert p.returncode == 1 and "not a sluice ledger (an empty file)" in p.stderr, p.stderr

    p = run_sluice(["usage", "--db", str(missing), "--by", "team"])
    assert p.returncode == 2 and "--by" in p.stderr
    p = run_sluice(["usage", "--db", str(missing), "--from", "last tuesday"])
    assert p.returncode == 2 and "--from" in p.stderr
    p = run_sluice(["usage"])
    assert p.returncode == 2 and "--db" in p.stderr


def test_report_corrupt_ledger(env, tmp_path):
    env.call("POST", az("gpt-4o"), chat_body(max_tokens=5))
    wait_rows(env.db, 1)
    env.gw.stop()
    broken = tmp_path / "broken.db"
    data = bytearray(env.db.read_bytes())
    assert len(data) >= 4096 * 2
    for i in range(4096, len(data)):  # every page but the header's
        data[i] = 0xA5
    broken.write_bytes(bytes(data))
    p = report(broken)
    assert p.returncode == 1 and p.stdout == "", p.stdout
    assert str(broken) in p.stderr and ("corrupt" in p.stderr or "not a sluice ledger" in p.stderr), p.stderr


def test_admin_usage_without_ledger(start_proxy):
    e = start_proxy()
    r = call(e.gw.admin_port, "GET", "/sluice/usage", key=None)
    assert r.status == 404, r
    assert "ledger is off" in r.json()["error"]["message"]


def test_access_log_has_tokens_and_cost(env):
    r = env.call("POST", az("gpt-4o"), chat_body(max_tokens=12))
    assert r.status == 200
    u = r.json()["usage"]
    rid = r.header("x-request-id")
    (line,) = env.gw.wait_access(lambda x: x.get("request_id") == rid)
    assert line["client"] == "app1" and line["route"] == "gpt-4o" and line["backend"] == "aoai-gpt-4o"
    assert (line["prompt_tokens"], line["completion_tokens"], line["total_tokens"]) == (
        u["prompt_tokens"],
        u["completion_tokens"],
        u["total_tokens"],
    )
    assert line["cost_micros"] == cost_micros(u["prompt_tokens"], u["completion_tokens"])
    assert line["estimated"] is False

    s = env.stream(az("gpt-4o"), chat_body(max_tokens=9, stream=True))
    rid = s.header("x-request-id")
    (line,) = env.gw.wait_access(lambda x: x.get("request_id") == rid)
    (row,) = [x for x in wait_rows(env.db, 2) if x["request_id"] == rid]
    assert line["total_tokens"] == row["total_tokens"] > 0 and line["estimated"] is False

    # a request refused before any backend: who, but no tokens
    r = env.call("POST", az("no-such-route"), chat_body())
    rid = r.header("x-request-id")
    (line,) = env.gw.wait_access(lambda x: x.get("request_id") == rid)
    assert line["client"] == "app1" and line["total_tokens"] == 0 and "backend" not in line
    # not proxied: no usage fields at all
    env.gw.get("/healthz")
    lines = env.gw.wait_access(lambda x: x.get("path") == "/healthz")
    assert lines and "total_tokens" not in lines[0]
