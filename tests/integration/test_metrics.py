"""Prometheus metrics at the admin listener's GET /metrics (issue 8, item 4).

Every scrape is read by a strict parser of the text exposition format 0.0.4 written here
(not a library's lenient one): every line is `# HELP`, `# TYPE` or a sample; metric and label
names follow the grammar; label values use only the three escapes; every sample belongs to a
family announced by # TYPE before it, whose samples are contiguous; histogram buckets are
cumulative, end with le="+Inf", and that bucket equals `_count`.

The counters must agree with what the gateway did: N answered requests are N in
sluice_requests_total, and the token and cost counters equal the usage ledger's sums (the
SQLite file, read here) and the simulator's own token counts."""

import math
import re
import threading
import time

import pytest

from proxytools import *  # noqa: F401,F403
from proxytools import CLIENT_KEY, CLIENT_KEY_2, client_entry, ledger_rows, routing_backend, routing_endpoint
from proxytools import reload_gateway, wait_ledger_rows
from simtools import chat_dep, rt_fault

# ---- a strict exposition parser --------------------------------------------------------------

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")


class ExpositionError(AssertionError):
    pass


def _parse_value(text, where):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", text):
        raise ExpositionError(f"{where}: bad value {text!r}")
    return float(text)


def _parse_labels(text, where):
    """`a="x",b="y"` (the inside of the braces) -> dict; strict about escapes and names."""
    labels = {}
    i = 0
    while i < len(text):
        m = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"").match(text, i)
        if not m:
            raise ExpositionError(f"{where}: bad label at {text[i:]!r}")
        name = m.group(1)
        if name.startswith("__"):
            raise ExpositionError(f"{where}: reserved label name {name}")
        if name in labels:
            raise ExpositionError(f"{where}: label {name} twice")
        i = m.end()
        value = []
        while True:
            if i >= len(text):
                raise ExpositionError(f"{where}: unterminated value of {name}")
            c = text[i]
            if c == "\\":
                nxt = text[i + 1 : i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise ExpositionError(f"{where}: bad escape \\{nxt} in {name}")
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise ExpositionError(f"{where}: raw newline in {name}")
            else:
                value.append(c)
                i += 1
        labels[name] = "".join(value)
        if i < len(text):
            if text[i] != ",":
                raise ExpositionError(f"{where}: expected ',' after {name}, got {text[i:]!r}")
            i += 1
            if i == len(text):
                break  # a trailing comma is allowed by the format
    return labels


def _split_sample(line, where):
    """name, labels text or None, rest (value [timestamp])."""
    m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
    if not m:
        raise ExpositionError(f"{where}: bad metric name in {line!r}")
    name, i = m.group(1), m.end()
    labels = None
    if i < len(line) and line[i] == "{":
        # find the closing brace outside quoted values
        j, quoted = i + 1, False
        while j < len(line):
            c = line[j]
            if quoted and c == "\\":
                j += 2
                continue
            if c == '"':
                quoted = not quoted
            elif c == "}" and not quoted:
                break
            j += 1
        if j >= len(line):
            raise ExpositionError(f"{where}: unterminated label set")
        labels, i = line[i + 1 : j], j + 1
    if i >= len(line) or line[i] != " ":
        raise ExpositionError(f"{where}: expected one space before the value in {line!r}")
    return name, labels, line[i + 1 :]


class Exposition:
    """A parsed scrape: families (name -> type, help) and samples [(name, labels, value)]."""

    def __init__(self, text):
        self.types, self.helps, self.samples = {}, {}, []
        if text and not text.endswith("\n"):
            raise ExpositionError("the exposition does not end with a newline")
        seen_families, current = set(), None
        for n, line in enumerate(text.split("\n")[:-1], 1):
            where = f"line {n}"
            if line.startswith("#"):
                m = re.fullmatch(r"# (HELP|TYPE) (\S+) ?(.*)", line)
                if not m:
                    raise ExpositionError(f"{where}: a comment that is neither # HELP nor # TYPE: {line!r}")
                kind, name, rest = m.groups()
                if not METRIC_NAME.match(name):
                    raise ExpositionError(f"{where}: bad metric name {name!r}")
                if kind == "TYPE":
                    if rest not in TYPES:
                        raise ExpositionError(f"{where}: bad type {rest!r}")
                    if name in self.types:
                        raise ExpositionError(f"{where}: second # TYPE for {name}")
                    self.types[name] = rest
                else:
                    if name in self.helps:
                        raise ExpositionError(f"{where}: second # HELP for {name}")
                    if re.search(r"\\[^\\n]", rest):
                        raise ExpositionError(f"{where}: bad escape in HELP text")
                    self.helps[name] = rest
                continue
            if line == "":
                raise ExpositionError(f"{where}: empty line")
            name, labels_text, rest = _split_sample(line, where)
            labels = _parse_labels(labels_text, where) if labels_text is not None else {}
            parts = rest.split(" ")
            if len(parts) not in (1, 2):
                raise ExpositionError(f"{where}: bad value/timestamp {rest!r}")
            value = _parse_value(parts[0], where)
            if len(parts) == 2 and not re.fullmatch(r"-?[0-9]+", parts[1]):
                raise ExpositionError(f"{where}: bad timestamp {parts[1]!r}")
            family = self.family_of(name)
            if family is None:
                raise ExpositionError(f"{where}: sample {name} has no # TYPE before it")
            if family != current:
                if family in seen_families:
                    raise ExpositionError(f"{where}: samples of {family} are not together")
                seen_families.add(family)
                current = family
            if self.types[family] == "histogram" and name == family:
                raise ExpositionError(f"{where}: histogram sample {name} without _bucket/_sum/_count")
            if "le" in labels and not name.endswith("_bucket"):
                raise ExpositionError(f"{where}: le on a non-bucket sample")
            self.samples.append((name, labels, value))
        for name in self.types:
            if name not in self.helps:
                raise ExpositionError(f"family {name} has no # HELP")
        self._check_histograms()

    def family_of(self, name):
        if name in self.types:
            return name
        for p in HISTOGRAM_PARTS:
            if name.endswith(p) and self.types.get(name[: -len(p)]) in ("histogram", "summary"):
                return name[: -len(p)]
        return None

    def _check_histograms(self):
        for family, type_ in self.types.items():
            if type_ != "histogram":
                continue
            series = {}
            for name, labels, value in self.samples:
                if self.family_of(name) != family:
                    continue
                key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
                s = series.setdefault(key, {"buckets": [], "sum": None, "count": None})
                if name.endswith("_bucket"):
                    if "le" not in labels:
                        raise ExpositionError(f"{family}{dict(key)}: bucket without le")
                    s["buckets"].append((_parse_value(labels["le"], family), value))
                elif name.endswith("_sum"):
                    s["sum"] = value
                else:
                    s["count"] = value
            for key, s in series.items():
                what = f"{family}{dict(key)}"
                b = s["buckets"]
                if not b or b[-1][0] != math.inf:
                    raise ExpositionError(f"{what}: the last bucket is not le=+Inf")
                if [le for le, _ in b] != sorted(le for le, _ in b) or len({le for le, _ in b}) != len(b):
                    raise ExpositionError(f"{what}: buckets not in increasing le order")
                if any(b[i][1] < b[i - 1][1] for i in range(1, len(b))):
                    raise ExpositionError(f"{what}: buckets not cumulative: {b}")
                if s["count"] is None or s["sum"] is None:
                    raise ExpositionError(f"{what}: _count or _sum missing")
                if s["count"] != b[-1][1]:
                    raise ExpositionError(f"{what}: _count {s['count']} != +Inf bucket {b[-1][1]}")
                if s["count"] == 0 and s["sum"] != 0:
                    raise ExpositionError(f"{what}: no observations but _sum {s['sum']}")

    def values(self, name, **match):
        """[(labels, value)] of the samples called name whose labels include match."""
        return [(l, v) for n, l, v in self.samples if n == name and all(l.get(k) == v2 for k, v2 in match.items())]

    def sum(self, name, **match):
        return sum(v for _, v in self.values(name, **match))

    def one(self, name, **match):
        vs = self.values(name, **match)
        assert len(vs) == 1, f"{name}{match}: {len(vs)} samples: {vs}"
        return vs[0][1]


def test_parser_is_strict():
    """The parser itself refuses what the format forbids (so that passing it means something)."""
    good = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="q\\"\\\\\\n"} 1\n'
    assert Exposition(good).one("a_total") == 1
    assert Exposition(good).values("a_total")[0][0] == {"x": 'q"\\\n'}
    bad = [
        "a_total 1\n",  # no TYPE
        "# TYPE a_total counter\na_total 1\n",  # no HELP
        '# HELP a_total A.\n# TYPE a_total counter\na_total{x="\\t"} 1\n',  # bad escape
        "# HELP a_total A.\n# TYPE a_total counter\na_total{1x=\"v\"} 1\n",  # bad label name
        "# HELP a_total A.\n# TYPE a_total counter\na_total 1",  # no final newline
        "# HELP a_total A.\n# TYPE a_total counter\na_total  1\n",  # two spaces
        "# HELP a_total A.\n# TYPE a_total counter\na_total one\n",  # not a number
        "# random comment\n",
        "# HELP h H.\n# TYPE h histogram\n"  # not cumulative
        'h_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
        "# HELP h H.\n# TYPE h histogram\n"  # +Inf != count
        'h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 2\n',
        "# HELP h H.\n# TYPE h histogram\n"  # no +Inf
        'h_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
        "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na 2\n",  # interleaved
    ]
    for text in bad:
        with pytest.raises(ExpositionError):
            Exposition(text)


# ---- helpers ---------------------------------------------------------------------------------

CT = "text/plain; version=0.0.4"


def scrape(env):
    r = env.admin("GET", "/metrics")
    assert r.status == 200, r
    ct = r.header("content-type") or ""
    assert ct.startswith(CT), ct
    return Exposition(r.body.decode("utf-8"))


def wait_metrics(env, pred, timeout=5.0, what="condition"):
    """The first scrape for which pred(exposition) holds (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        e = scrape(env)
        if pred(e):
            return e
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def pool(*members):
    return [{"backend": b, "priority": p, "weight": w} for b, p, w in members]


PRICES = [{"model": "gpt-4o", "input": "2.50", "cached_input": "1.25", "output": "10.00"}]

ALL_FAMILIES = {
    "sluice_requests_total": "counter",
    "sluice_errors_total": "counter",
    "sluice_tokens_total": "counter",
    "sluice_cost_usd_total": "counter",
    "sluice_retries_total": "counter",
    "sluice_spillover_total": "counter",
    "gen_ai_client_token_usage": "histogram",
    "gen_ai_server_time_to_first_token_seconds": "histogram",
    "gen_ai_client_operation_duration_seconds": "histogram",
    "sluice_queue_waiting": "gauge",
    "sluice_backend_ptu_utilization_ratio": "gauge",
    "sluice_backend_state": "gauge",
    "sluice_backend_retry_after_seconds": "gauge",
    "sluice_backend_in_flight": "gauge",
    "sluice_ledger_dropped_total": "counter",
    "sluice_budget_alerts_total": "counter",
    "sluice_metrics_series_overflow_total": "counter",
}


# ---- tests -------------------------------------------------------------------------------------


def test_counters_match_the_ledger_and_the_simulator(start_routing, tmp_path):
    db = str(tmp_path / "usage.db")
    env = start_routing(
        endpoints=[routing_endpoint("ep")],
        backends=[routing_backend("b", "ep")],
        routes=[{"name": "gpt-4o", "backend": "b"}, {"name": "mini", "backend": "b"}],
        clients=[client_entry("app1", CLIENT_KEY), client_entry("app2", CLIENT_KEY_2)],
        gw={"usage": {"db": db, "flush_interval": "50ms"}, "prices": PRICES},
    )
    e0 = scrape(env)
    for name, type_ in ALL_FAMILIES.items():
        assert e0.types.get(name) == type_, f"{name}: {e0.types.get(name)}"
    assert e0.sum("sluice_requests_total") == 0
    assert e0.one("sluice_backend_state", backend="b", state="closed") == 1

    n = 0
    for i in range(12):
        key = CLIENT_KEY if i % 3 else CLIENT_KEY_2
        route = "gpt-4o" if i % 2 else "mini"
        if i % 4 == 0:
            s = env.call("POST", f"/openai/deployments/{route}/chat/completions?api-version=2024-10-21",
                         {"messages": [{"role": "user", "content": f"stream {i}"}], "max_tokens": 20 + i,
                          "stream": True}, key=key)
        else:
            s = env.chat(route=route, key=key, max_tokens=10 + i, text=f"question {i} " * (i + 1))
        assert s.status == 200, s
        n += 1
    # a request for a route that does not exist: counted, as a 4xx with no backend
    r = env.chat(route="nope")
    assert r.status == 404, r

    rows = wait_ledger_rows(db, n + 1)
    e = wait_metrics(env, lambda e: e.sum("sluice_requests_total") == n + 1, what=f"{n + 1} requests counted")
    assert e.sum("sluice_requests_total", status_class="2xx") == n
    assert e.one("sluice_requests_total", client="app1", route="", backend="", status_class="4xx") == 1
    assert e.one("sluice_errors_total", route="", status="404") == 1
    assert not e.values("sluice_errors_total", status="200")

    # tokens and cost per (client, route, backend) equal the ledger's sums
    sums = {}
    for row in rows:
        k = (row["client"], row["route"], row["backend"])
        s = sums.setdefault(k, {"prompt": 0, "completion": 0, "cached": 0, "reasoning": 0, "cost": 0, "n": 0})
        s["prompt"] += row["prompt_tokens"]
        s["completion"] += row["completion_tokens"]
        s["cached"] += row["cached_tokens"]
        s["reasoning"] += row["reasoning_tokens"]
        s["cost"] += row["cost_micros"]
        s["n"] += 1
    assert len(sums) >= 4, sums
    for (client, route, backend), s in sums.items():
        lbl = {"client": client, "route": route, "backend": backend}
        assert e.sum("sluice_requests_total", **lbl) == s["n"], (lbl, s)
        for t in ("prompt", "completion", "cached", "reasoning"):
            assert e.one("sluice_tokens_total", type=t, **lbl) == s[t], (lbl, t, s)
        assert round(e.one("sluice_cost_usd_total", **lbl) * 1e6) == s["cost"], (lbl, s)
    assert sum(s["prompt"] for s in sums.values()) > 0

    # ... and the simulator's own counts
    st = env.stats()
    dep = st["endpoints"]["ep"]["deployments"]["gpt-4o"]
    assert e.sum("sluice_tokens_total", type="prompt") == dep["prompt_tokens"]
    assert e.sum("sluice_tokens_total", type="completion") == dep["completion_tokens"]

    # histograms: one input and one output observation per answered request
    assert e.sum("gen_ai_client_token_usage_count", gen_ai_token_type="input") == n
    assert e.sum("gen_ai_client_token_usage_sum", gen_ai_token_type="output") == dep["completion_tokens"]
    assert e.one("gen_ai_client_token_usage_count", route="gpt-4o", backend="b", gen_ai_request_model="gpt-4o",
                 gen_ai_token_type="input") == 6
    assert e.sum("gen_ai_server_time_to_first_token_seconds_count") == n
    assert e.sum("gen_ai_client_operation_duration_seconds_count") == n + 1
    assert e.sum("gen_ai_client_operation_duration_seconds_count", status_class="2xx") == n
    assert e.one("sluice_ledger_dropped_total") == 0
    assert e.one("sluice_metrics_series_overflow_total") == 0
    assert e.one("sluice_backend_in_flight", backend="b") == 0

    # only GET and HEAD
    r = env.admin("POST", "/metrics", {})
    assert r.status == 405 and "GET" in (r.header("allow") or ""), r
    r = env.admin("HEAD", "/metrics")
    assert r.status == 200, r

    # a reload keeps the counters (they are kept by name, not by configuration)
    env.gw.config["routes"].append({"name": "extra", "backend": "b"})
    assert reload_gateway(env.gw)
    assert env.chat(route="extra").status == 200
    e = wait_metrics(env, lambda e: e.sum("sluice_requests_total") == n + 2, what="counts across a reload")
    assert e.one("sluice_requests_total", route="extra", status_class="2xx") == 1
    assert e.sum("sluice_requests_total", route="gpt-4o") == 6


def test_throttled_backend_shows_open_errors_and_retry_after(start_routing):
    env = start_routing(
        endpoints=[routing_endpoint("ep")],
        backends=[routing_backend("a", "ep")],
        routes=[{"name": "gpt-4o", "backend": "a"}],
    )
    assert env.chat().status == 200
    env.faults("ep", [rt_fault("status", status=429, retry_after_ms=20000, count=1)])
    r = env.chat()
    assert r.status == 429, r
    # a call is counted as it ends, which may be a moment after its client has the answer
    e = wait_metrics(env, lambda e: e.sum("sluice_requests_total") == 2, what="2 requests counted")
    assert e.one("sluice_backend_state", backend="a", state="open") == 1
    assert e.one("sluice_backend_state", backend="a", state="closed") == 0
    assert e.one("sluice_backend_state", backend="a", state="half_open") == 0
    assert 10 < e.one("sluice_backend_retry_after_seconds", backend="a") <= 20
    assert e.one("sluice_errors_total", client="app1", route="gpt-4o", backend="a", status="429") == 1
    assert e.one("sluice_requests_total", client="app1", route="gpt-4o", backend="a", status_class="4xx") == 1
    # while open, the gateway answers 429 itself: counted too, with the route but no backend
    r = env.chat()
    assert r.status == 429, r
    e = wait_metrics(env, lambda e: e.sum("sluice_requests_total") == 3, what="3 requests counted")
    assert e.sum("sluice_errors_total", route="gpt-4o", status="429") == 2
    assert e.one("sluice_backend_ttfb_seconds", backend="a") > 0


def test_spillover_and_retries(start_routing):
    env = start_routing(
        endpoints=[routing_endpoint("ep-ptu"), routing_endpoint("ep-payg")],
        backends=[routing_backend("ptu", "ep-ptu"), routing_backend("payg", "ep-payg")],
        routes=[{"name": "gpt-4o", "backends": pool(("ptu", 1, 1), ("payg", 2, 1))}],
    )
    for _ in range(3):
        assert env.chat().header("x-sluice-backend") == "ptu"
    env.faults("ep-ptu", [rt_fault("status", status=429, retry_after_ms=5000, count=1)])
    r = env.chat()  # 429 from the PTU, retried on PAYG
    assert r.status == 200 and r.header("x-sluice-backend") == "payg", r
    for _ in range(2):  # the PTU is open: PAYG serves
        r = env.chat()
        assert r.status == 200 and r.header("x-sluice-backend") == "payg", r
    e = wait_metrics(env, lambda e: e.sum("sluice_requests_total") == 6, what="6 requests counted")
    assert e.one("sluice_retries_total", route="gpt-4o") == 1
    assert e.one("sluice_spillover_total", route="gpt-4o", backend="payg") == 3
    assert e.one("sluice_spillover_total", route="gpt-4o", backend="ptu") == 0
    assert e.one("sluice_requests_total", backend="ptu", status_class="2xx") == 3
    assert e.one("sluice_requests_total", backend="payg", status_class="2xx") == 3
    # the retried call's 429 is no error of the client's: it got a 200
    assert not e.values("sluice_errors_total")
    assert e.one("sluice_backend_state", backend="ptu", state="open") == 1


def test_ptu_utilization_from_the_response_header(start_routing):
    # 1,000 tokens a second at 100 %: one request of about 220 tokens shows in the next answer
    dep = chat_dep("gpt-4o", version="2024-08-06", capacity="provisioned", tpm=60000)
    env = start_routing(
        endpoints=[routing_endpoint("ep-ptu", deployments=[dep]), routing_endpoint("ep-payg")],
        backends=[routing_backend("ptu", "ep-ptu"), routing_backend("payg", "ep-payg")],
        routes=[{"name": "gpt-4o", "backends": pool(("ptu", 1, 1), ("payg", 2, 1))}],
    )
    e = scrape(env)
    assert not e.values("sluice_backend_ptu_utilization_ratio")
    for _ in range(2):  # the simulator reports the utilisation before the request it answers
        r = env.chat(max_tokens=200)
        assert r.status == 200 and r.header("x-sluice-backend") == "ptu", r
    e = scrape(env)
    v = e.one("sluice_backend_ptu_utilization_ratio", backend="ptu")
    assert 0.1 < v <= 1, v
    assert not e.values("sluice_backend_ptu_utilization_ratio", backend="payg")


def test_queue_gauge(start_routing):
    env = start_routing(
        endpoints=[routing_endpoint("ep")],
        backends=[routing_backend("a", "ep")],
        routes=[{"name": "gpt-4o", "backend": "a"}],
        gw={"queue": {"max_length": 5, "max_wait": "10s"}},
    )
    assert env.chat().status == 200
    env.faults("ep", [rt_fault("status", status=429, retry_after_ms=1500, count=1)])
    # the first request's 429 opens the backend (the request itself waits, or gets the 429);
    # the others wait for the backend to reopen
    results = []
    threads = [threading.Thread(target=lambda: results.append(env.chat(timeout=20))) for _ in range(3)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    e = wait_metrics(env, lambda e: e.sum("sluice_queue_waiting", route="gpt-4o") >= 2, what="2 waiting")
    assert e.one("sluice_backend_state", backend="a", state="open") == 1
    for t in threads:
        t.join(20)
    statuses = sorted(r.status for r in results)
    assert statuses in ([200, 200, 200], [200, 200, 429]), results
    e = wait_metrics(env, lambda e: e.sum("sluice_requests_total") == 4, what="4 requests counted")
    assert e.one("sluice_queue_waiting", route="gpt-4o") == 0
    assert e.one("sluice_requests_total", route="gpt-4o", status_class="2xx") == 1 + statuses.count(200)
    assert e.one("sluice_backend_state", backend="a", state="closed") == 1


def test_label_values_are_escaped(start_routing):
    """A backend's model is free text in the configuration: quotes and backslashes in it come
    out escaped in gen_ai_request_model."""
    model = 'gpt"4o\\mini'
    env = start_routing(
        endpoints=[routing_endpoint("ep")],
        backends=[routing_backend("b", "ep", model=model)],
        routes=[{"name": "gpt-4o", "backend": "b"}],
    )
    assert env.chat().status == 200
    wait_metrics(env, lambda e: e.sum("sluice_requests_total") == 1, what="the request counted")
    r = env.admin("GET", "/metrics")
    text = r.body.decode()
    assert 'gen_ai_request_model="gpt\\"4o\\\\mini"' in text, text[-3000:]
    e = Exposition(text)
    assert e.one("gen_ai_client_operation_duration_seconds_count", gen_ai_request_model=model) == 1
