"""Budgets and the usage ledger (issue 7, item 7): a client's token or money budget over a UTC
day; at `alert_at` an alert is logged and POSTed to `alerts.webhook`; at 100 % the client gets
429 `BudgetExceeded` naming the budget and its reset time, with a Retry-After until then; the
state survives a graceful restart (it is read back from the ledger). The ledger holds one row
per request with the client, route, backend and the tokens the backend reported."""

import time
from datetime import datetime, timedelta, timezone

import pytest

from proxytools import *  # noqa: F401,F403
from proxytools import (
    API_VERSION,
    CLIENT_KEY,
    CLIENT_KEY_2,
    WebhookReceiver,
    assert_gw_error,
    chat_body,
    client_entry,
    gw_stream,
    ledger_rows,
    restart_gateway,
    routing_backend,
    routing_endpoint,
    wait_ledger_rows,
)
from simtools import az


@pytest.fixture(autouse=True)
def not_at_midnight():
    """A day's budget starts again at 00:00 UTC: a run across it would see a new window."""
    now = datetime.now(timezone.utc)
    nxt = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    if (nxt - now).total_seconds() < 120:
        pytest.skip("too close to midnight UTC for a daily budget test")


@pytest.fixture
def hook():
    h = WebhookReceiver()
    yield h
    h.close()


def budget_env(start_routing, tmp_path, hook, budgets, prices=None):
    gw = {
        "usage": {"db": str(tmp_path / "usage.db"), "flush_interval": "50ms"},
        "alerts": {"webhook": hook.url},
        "prices": prices or [{"model": "gpt-4o", "input": "2.50", "cached_input": "1.25", "output": "10.00"}],
    }
    env = start_routing(
        endpoints=[routing_endpoint("ep")],
        backends=[routing_backend("b", "ep")],
        routes=[{"name": "gpt-4o", "backend": "b"}, {"name": "mini", "backend": "b"}],
        clients=[client_entry("capped", CLIENT_KEY, budgets=budgets), client_entry("free", CLIENT_KEY_2)],
        gw=gw,
    )
    env.db = str(tmp_path / "usage.db")
    return env


def next_midnight():
    now = datetime.now(timezone.utc)
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def use_until_refused(env, limit=60, **body):
    """Send requests until the first refusal; (number served, the refusal)."""
    for i in range(limit):
        r = env.chat(**body)
        if r.status != 200:
            return i, r
    raise AssertionError(f"{limit} requests and no refusal")


def assert_budget_429(r, amount):
    err = assert_gw_error(r, 429, "BudgetExceeded")
    msg = err["message"]
    reset = next_midnight().strftime("%Y-%m-%dT%H:%M:%S")
    assert "capped" in msg and "daily" in msg and amount in msg, msg
    assert reset in msg, f"the reset time ({reset}) is not in {msg!r}"
    until = (next_midnight() - datetime.now(timezone.utc)).total_seconds()
    secs = int(r.header("Retry-After"))
    assert abs(secs - until) <= 5, (secs, until)
    assert abs(int(r.header("retry-after-ms")) / 1000 - until) <= 5, r
    return msg


def test_token_budget_alert_refusal_and_restart(start_routing, tmp_path, hook):
    env = budget_env(start_routing, tmp_path, hook, [{"window": "day", "tokens": 300, "alert_at": "50%"}])
    served, r = use_until_refused(env, max_tokens=20)
    assert_budget_429(r, "300 tokens")
    rows = wait_ledger_rows(env.db, served, "client = ? AND status = 200", ("capped",))
    assert len(rows) == served, rows
    used = sum(x["total_tokens"] for x in rows)
    assert used >= 300 and used - rows[-1]["total_tokens"] < 300, [x["total_tokens"] for x in rows]
    assert env.seen("ep") == served, "a refused request went upstream"
    refused = wait_ledger_rows(env.db, 1, "status = 429")
    assert refused[0]["total_tokens"] == 0 and refused[0]["client"] == "capped", refused

    # the alerts: at 50 % and at 100 %, logged and POSTed, once each
    half = hook.wait(lambda b: b["threshold"] == 0.5)
    full = hook.wait(lambda b: b["threshold"] == 1)
    assert len(half) == 1 and len(full) == 1, hook.bodies()
    a = half[0]
    assert a["type"] == "budget_alert" and a["client"] == "capped" and a["window"] == "day", a
    assert a["limit_tokens"] == 300 and 150 <= a["used_tokens"] < 300 and a["limit_cost"] is None, a
    assert a["window_start"].startswith(datetime.now(timezone.utc).strftime("%Y-%m-%dT00:00:00")), a
    assert full[0]["used_tokens"] >= 300, full[0]
    assert hook.received[0]["content_type"].startswith("application/json"), hook.received[0]
    log = env.gw.stderr()
    assert "budget alert: client capped has used" in log and "alert at 50%" in log, log[-3000:]

    # other clients are not touched
    assert env.chat(key=CLIENT_KEY_2).status == 200

    # A graceful restart with the same ledger: still used up, nothing goes upstream.
    restart_gateway(env.gw)
    r = env.chat(max_tokens=20)
    assert_budget_429(r, "300 tokens")
    assert env.seen("ep") == 0, "after the restart a request over budget went upstream"  # a new simulator
    assert env.chat(key=CLIENT_KEY_2).status == 200
    time.sleep(0.3)
    assert len(hook.bodies()) == 2, f"the restart sent the alerts again: {hook.bodies()}"


def test_money_budget(start_routing, tmp_path, hook):
    prices = [{"model": "gpt-4o", "input": "100", "output": "1000"}]  # USD per million tokens
    env = budget_env(start_routing, tmp_path, hook, [{"window": "day", "cost": "0.10", "alert_at": "80%"}], prices)
    served, r = use_until_refused(env, max_tokens=20)
    assert_budget_429(r, "$0.10")
    rows = wait_ledger_rows(env.db, served, "client = ? AND status = 200", ("capped",))
    assert len(rows) == served, rows
    costs = [x["cost_micros"] for x in rows]
    for x in rows:
        assert x["cost_micros"] == x["prompt_tokens"] * 100 + x["completion_tokens"] * 1000, x
    assert sum(costs) >= 100000 and sum(costs) - costs[-1] < 100000, costs
    alerts = hook.wait(lambda b: b["threshold"] == 0.8)
    assert alerts and alerts[0]["limit_cost"] == "0.100000" and alerts[0]["limit_tokens"] is None, hook.bodies()


def test_ledger_rows(start_routing, tmp_path, hook):
    env = budget_env(start_routing, tmp_path, hook, [{"window": "month", "tokens": 10**9}])
    t0 = int(time.time() * 1000)
    usages = []
    for route in ("gpt-4o", "mini", "gpt-4o"):
        r = env.chat(route, max_tokens=12)
        assert r.status == 200, r
        usages.append((route, r.json()["usage"], r.header("x-request-id")))
    assert env.chat(key=CLIENT_KEY_2).status == 200
    rows = wait_ledger_rows(env.db, 4)
    assert len(rows) == 4, rows
    for row, (route, u, rid) in zip(rows, usages):
        assert row["client"] == "capped" and row["route"] == route and row["backend"] == "b", row
        assert row["model"] == "gpt-4o" and row["status"] == 200 and row["attempts"] == 1, row
        assert row["request_id"] == rid, row
        assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (
            u["prompt_tokens"],
            u["completion_tokens"],
            u["total_tokens"],
        ), (row, u)
        assert row["estimated"] == 0 and row["stream"] == 0, row
        assert t0 - 1000 <= row["time_unix_ms"] <= int(time.time() * 1000), row
        assert row["cost_micros"] == u["prompt_tokens"] * 2.5 + u["completion_tokens"] * 10 or abs(
            row["cost_micros"] - (u["prompt_tokens"] * 2.5 + u["completion_tokens"] * 10)
        ) <= 1, row
    assert rows[3]["client"] == "free"
    # the sim's totals agree
    dep = env.stats()["endpoints"]["ep"]["deployments"]["gpt-4o"]
    assert sum(x["prompt_tokens"] for x in rows) == dep["prompt_tokens"], (rows, dep)
    assert sum(x["completion_tokens"] for x in rows) == dep["completion_tokens"], (rows, dep)

    # streams are recorded too, with or without include_usage
    for extra in ({}, {"stream_options": {"include_usage": True}}):
        st = gw_stream(env.port, az("gpt-4o"), chat_body(max_tokens=10, stream=True, **extra))
        assert st.status == 200 and st.done, st
    rows = wait_ledger_rows(env.db, 2, "stream = 1")
    assert len(rows) == 2 and all(x["client"] == "capped" and x["status"] == 200 for x in rows), rows
    assert all(x["total_tokens"] > 0 for x in rows), rows
    assert rows[1]["estimated"] == 0 and rows[1]["completion_tokens"] == 10, rows[1]

    # refused requests are recorded with their status and no tokens
    r = env.call("POST", az("nosuch"), chat_body())
    assert r.status == 404
    r = env.call("POST", f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}", chat_body(), key="wrong")
    assert r.status == 401
    rows = wait_ledger_rows(env.db, 1, "status = 404")
    assert rows[0]["total_tokens"] == 0 and rows[0]["client"] == "capped", rows
    assert ledger_rows(env.db, "status = 401") == [], "a request of no known client was recorded"
