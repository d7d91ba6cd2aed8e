#!/usr/bin/python3
"""Render a bench/results/<time>/ directory as docs/benchmarks.md (standard library only).

Reads run.json, scenarios.txt (the order scenarios ran in) and for each scenario
<name>.meta.json, <name>.rounds.jsonl and, when it failed, <name>.error. Each scenario
becomes one section; the targets are gathered in one table at the top.

A target (meta "target": one object or a list of them) is either relative, compared with the
median of the per-round subject ÷ baseline ratios, or absolute ("absolute": true), compared
with the median of the subject's rounds (no baseline needed). A scenario whose rounds are not
wrk rounds lists its own "columns" ([{"key", "title", "format"}]) to render instead of the
wrk ones; "baseline": null renders a scenario without a baseline.

    bench/report.py bench/results/20260101T120000Z --out docs/benchmarks.md
"""
import argparse
import json
import os
import platform
import statistics
import sys

METRICS = {  # key: (column title, format, higher is better)
    "rps": ("requests/s", "{:,.0f}", True),
    "cpu_us_per_req": ("µs CPU / request", "{:.2f}", False),
    "p99_ms": ("p99 latency (ms)", "{:.3f}", False),
}
OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}


def load_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def load_rounds(path):
    rounds = []
    try:
        with open(path) as f:
            for line in f:
                if line.strip():
                    rounds.append(json.loads(line))
    except OSError:
        pass
    return rounds


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    u = platform.uname()
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": f"{u.system} {u.release} {u.machine}"}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def pct(x):
    return "–" if x is None else f"{x * 100:.0f} %"


def fmt(value, spec):
    return "–" if value is None else spec.format(value)


class Scenario:
    def __init__(self, results, name):
        self.name = name
        self.meta = load_json(os.path.join(results, f"{name}.meta.json"), {}) or {}
        self.rounds = load_rounds(os.path.join(results, f"{name}.rounds.jsonl"))
        err = os.path.join(results, f"{name}.error")
        self.error = open(err).read().strip() if os.path.exists(err) else None
        self.title = self.meta.get("title", name)
        self.subject = self.meta.get("subject", "sluice")
        self.baseline = self.meta.get("baseline", "nginx")  # None: no baseline
        # {key: (title, format)} of the columns to render; by default the wrk metrics.
        cols = self.meta.get("columns")
        self.columns = ({c["key"]: (c["title"], c.get("format", "{}")) for c in cols} if cols
                        else {k: (v[0], v[1]) for k, v in METRICS.items()})
        # Columns whose ratio means nothing (differences that may be negative, counts of 0).
        self.no_ratio = {c["key"] for c in cols or [] if c.get("ratio") is False}
        t = self.meta.get("target")
        self.targets = [] if not t else t if isinstance(t, list) else [t]
        servers = self.meta.get("servers") or []
        for r in self.rounds:
            if r["server"] not in servers:
                servers.append(r["server"])
        self.servers = servers

    def of(self, server):
        return sorted((r for r in self.rounds if r["server"] == server), key=lambda r: r["round"])

    def med(self, server, key):
        return median(r.get(key) for r in self.of(server))

    def ratio(self, key, subject=None, baseline=None):
        """Median over round pairs of subject ÷ baseline (round i of one against round i of
        the other: they ran back to back, so drift of the machine cancels out)."""
        base = {r["round"]: r.get(key) for r in self.of(baseline or self.baseline)}
        ratios = []
        for r in self.of(subject or self.subject):
            b, s = base.get(r["round"]), r.get(key)
            if b and s is not None:
                ratios.append(s / b)
        return median(ratios)

    def errors(self, server):
        return sum(r.get("errors", 0) for r in self.of(server))

    def label(self, metric):
        return self.columns.get(metric, METRICS.get(metric, (metric, "{}")))[0]

    def format(self, metric, value):
        return fmt(value, self.columns.get(metric, METRICS.get(metric, (metric, "{}")))[1])

    def pair(self, t):
        """(subject, baseline) of target t: the scenario's, unless the target names its own
        ("subject", "baseline": servers of the scenario)."""
        return t.get("subject", self.subject), t.get("baseline", self.baseline)

    def verdict(self, t):
        """(measured value or None, 'PASS' / 'FAIL' / 'NOT MEASURED', note) of target t: the
        median subject ÷ baseline ratio, or with "absolute" the subject's median."""
        subject, baseline = self.pair(t)
        missing = self.meta.get("missing", {})
        if missing.get(subject) or not self.of(subject):
            return None, "NOT MEASURED", missing.get(subject, f"no {subject} rounds")
        if t.get("absolute"):
            value = self.med(subject, t["metric"])
            if value is None:
                return None, "NOT MEASURED", f"no {t['metric']} in {subject}'s rounds"
        else:
            if not baseline or not self.of(baseline):
                return None, "NOT MEASURED", missing.get(baseline, f"no {baseline} rounds")
            value = self.ratio(t["metric"], subject, baseline)
            if value is None:
                return None, "NOT MEASURED", "no complete round pair"
        ok = OPS[t["op"]](value, t["value"])
        note = ""
        if not ok and t["value"] > 0 and value > 0:  # by how much
            if t["op"] == ">=":
                note = f"{value / t['value'] * 100:.0f} % of the target"
            elif t.get("absolute"):
                over = self.format(t["metric"], value - t["value"]).lstrip("+")
                note = f"over by {over}" + (f", {value / t['value']:.1f}× the limit"
                                            if value / t["value"] < 10 else "")
            else:
                note = f"{value / t['value']:.1f}× the limit"
        errs = self.errors(subject)
        if errs:
            ok, note = False, f"{errs} errors in {subject}'s rounds" + (f"; {note}" if note else "")
        return value, "PASS" if ok else "FAIL", note

    def measured(self, t, value):
        """The measured value of target t, as the Targets table shows it."""
        if value is None:
            return "–"
        subject, baseline = self.pair(t)
        n = len(self.of(subject))
        if t.get("absolute"):
            return (f"{self.label(t['metric'])}: {self.format(t['metric'], value)} "
                    f"({subject}, median of {n} round{'s' if n != 1 else ''})")
        return f"{subject} ÷ {baseline} {self.label(t['metric'])}: {value:.2f}"


def render(results):
    run = load_json(os.path.join(results, "run.json"), {}) or {}
    order_file = os.path.join(results, "scenarios.txt")
    if os.path.exists(order_file):
        names = [n.strip() for n in open(order_file) if n.strip()]
    else:
        names = sorted(f[: -len(".meta.json")] for f in os.listdir(results)
                       if f.endswith(".meta.json"))
    scenarios = [Scenario(results, n) for n in names]
    m = machine()
    out = []
    w = out.append

    w("# Benchmarks\n")
    w("Generated by `make bench` (`bench/run`); do not edit by hand: edit `bench/` and run it again.\n")
    w("Most scenarios put the same load on sluice and on nginx, in the same run, on the same "
      "machine, alternating between them round by round (sluice, nginx, sluice, nginx, ...). "
      "For every round they record what [wrk](https://github.com/wg/wrk) reports "
      "(requests/s, p99 latency) and the server's CPU time (user + system, from "
      "`/proc/PID/stat` of the serving process, read before and after the round) divided by the "
      "requests completed. The *sluice ÷ nginx* row is the median, over the rounds, of the ratio "
      "between a sluice round and the nginx round that followed it.\n")
    w("The machines this runs on are shared and their speed varies from run to run: **compare "
      "the ratios, not the absolute numbers**. \"Server CPU busy\" tells whether the server was "
      "the bottleneck: near 100 % it was; well below, requests/s says more about the machine "
      "(the client, wake-ups across CPUs, other load) than about the server, and CPU time per "
      "request is the fairer comparison. The per-round tables also show how busy wrk was and "
      "how much of the server's CPU other processes took (a shared machine makes such rounds "
      "noisy: run again when that column is high).\n")
    w("A few relative targets compare sluice with itself in another configuration instead of "
      "with nginx (with and without the usage ledger): the *Targets* table names both sides.\n")
    w("Some targets are **absolute** instead (the simulator's throughput: requests/s, open "
      "streams, memory per stream): they are compared with the median of the subject's rounds, "
      "and a baseline, when there is one, is only there for context. Such numbers depend on the "
      "machine and on what else ran on it; the *Targets* table says which kind each target is.\n")
    w("Run it with `make bench`; `DURATION` (seconds per round), `ROUNDS`, `CONNECTIONS` and "
      "`SCENARIOS` (a pattern) change the defaults. Raw results of each run are kept in "
      "`bench/results/<time>/` (not committed).\n")

    w("## Last run\n")
    w("| | |\n|---|---|")
    w(f"| date | {run.get('date', '?')} |")
    w(f"| machine | {m['nproc']} CPUs, {m['cpu']} |")
    w(f"| kernel | {m['kernel']} |")
    w(f"| sluice | commit {run.get('git', '?')} (release build) |")
    pin = ""
    if run.get("server_cpu", "") != "":
        pin = f"; servers pinned to CPU {run['server_cpu']}, wrk to CPU {run.get('client_cpu')}"
    w(f"| load | wrk -t{run.get('threads', '?')} -c{run.get('connections', '?')} keep-alive, "
      f"{run.get('rounds', '?')} rounds × {run.get('duration_s', '?')} s per server after a "
      f"{run.get('warmup_s', '?')} s warm-up{pin} (unless a scenario says otherwise) |")
    w("")

    targets = [(s, t, s.verdict(t)) for s in scenarios for t in s.targets]
    if targets:
        w("## Targets\n")
        w("| scenario | target | kind | measured | result |\n|---|---|---|---|---|")
        for s, t, (value, result, note) in targets:
            kind = ("absolute" if t.get("absolute")
                    else f"relative to {s.pair(t)[1]}")
            res = f"**{result}**" + (f" ({note})" if note else "")
            w(f"| [{s.title}](#{anchor(s.title)}) | {t['text']} | {kind} | "
              f"{s.measured(t, value)} | {res} |")
        w("")

    for s in scenarios:
        w(f"## {s.title}\n")
        if s.meta.get("description"):
            w(s.meta["description"] + "\n")
        for server, why in s.meta.get("missing", {}).items():
            w(f"> **{server} not measured:** {why}\n")
        for note in s.meta.get("notes", []):
            w(f"> Note: {note}\n")
        if s.error:
            w(f"> **The scenario failed:** {s.error}\n")
        if not s.rounds:
            w("No rounds were recorded.\n")
            continue
        custom = bool(s.meta.get("columns"))
        keys = list(s.columns)
        head = ["server"] + [s.columns[k][0] for k in keys]
        if not custom:
            head += ["server CPU busy", "RSS (MiB)"]
        head += ["errors"]
        w("| " + " | ".join(head) + " |")
        w("|" + "---|" * len(head))
        for server in s.servers:
            if not s.of(server):
                continue
            cells = [server] + [s.format(k, s.med(server, k)) for k in keys]
            if not custom:
                busy = s.med(server, "cpu_util")
                rss = s.med(server, "rss_kb")
                cells += [pct(busy), fmt(None if rss is None else rss / 1024, "{:.1f}")]
            cells += [str(s.errors(server))]
            w("| " + " | ".join(cells) + " |")
        # Ratio rows: subject ÷ baseline, or the pairs the meta lists ("ratios": [[a, b], ...]).
        pairs = s.meta.get("ratios") or ([[s.subject, s.baseline]] if s.baseline else [])
        for subj, base in pairs:
            if not (s.of(subj) and s.of(base)):
                continue
            cells = [f"**{subj} ÷ {base}**"]
            cells += [fmt(s.ratio(k, subj, base), "**{:.2f}**") if k not in s.no_ratio else ""
                      for k in keys]
            cells += [""] * (len(head) - len(cells))
            w("| " + " | ".join(cells) + " |")
        w("")
        w("Medians over the rounds. Each round:\n")
        if custom:
            head = ["round", "server"] + [s.columns[k][0] for k in keys] + ["errors"]
            w("| " + " | ".join(head) + " |")
            w("|" + "---|" * len(head))
            for r in sorted(s.rounds, key=lambda r: (r["round"], s.servers.index(r["server"]))):
                cells = [str(r["round"]), r["server"]] + [s.format(k, r.get(k)) for k in keys]
                cells += [str(r.get("errors", 0))]
                w("| " + " | ".join(cells) + " |")
            w("")
            continue
        w("| round | server | requests/s | µs CPU / request | p99 (ms) | server busy | "
          "wrk busy | other load on server CPU | errors |")
        w("|---|---|---|---|---|---|---|---|---|")
        for r in sorted(s.rounds, key=lambda r: (r["round"], s.servers.index(r["server"]))):
            w(f"| {r['round']} | {r['server']} | {fmt(r.get('rps'), '{:,.0f}')} | "
              f"{fmt(r.get('cpu_us_per_req'), '{:.2f}')} | {fmt(r.get('p99_ms'), '{:.3f}')} | "
              f"{pct(r.get('cpu_util'))} | {pct(r.get('client_util'))} | "
              f"{pct(r.get('other_util'))} | {r.get('errors', 0)} |")
        w("")
    return "\n".join(out).rstrip() + "\n", targets


def anchor(title):
    """GitHub's heading anchor."""
    a = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return a.replace(" ", "-")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="a bench/results/<time> directory")
    ap.add_argument("--out", help="write here (default: stdout)")
    a = ap.parse_args()
    text, targets = render(a.results)
    if a.out:
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, a.out)
        print(f"bench: wrote {a.out}")
    else:
        sys.stdout.write(text)
    for s, t, (value, result, note) in targets:
        shown = s.measured(t, value)
        print(f"bench: {s.name}: {t['text']}: {shown}: {result}{' (' + note + ')' if note else ''}",
              file=sys.stderr if not a.out else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
