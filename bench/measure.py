#!/usr/bin/python3
"""One load round: run wrk against a URL and measure the server's CPU time around it.

CPU time is utime+stime (from /proc/PID/stat) of the server process and its descendants,
read just before and just after wrk, divided by the requests wrk completed. Appends one JSON
object per round to --out and prints a one-line summary. Standard library only.
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid):
    """(ppid, utime+stime in ticks) of pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    return int(fields[1]), int(fields[11]) + int(fields[12])


def tree(root):
    """root and its descendants, as a set of pids."""
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st:
                parent[int(name)] = st[0]
    pids, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        for child, pp in parent.items():
            if pp == p and child not in pids:
                pids.add(child)
                frontier.append(child)
    return pids


def cpu_ticks(pids):
    out = {}
    for p in pids:
        st = proc_stat(p)
        if st:
            out[p] = st[1]
    return out


def rss_kb(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_busy_ticks(cpus):
    """{cpu: busy ticks} from /proc/stat for the given CPU numbers: user, nice, system and
    steal. Idle and iowait are not busy; irq and softirq are left out because loopback traffic
    of the benchmark itself lands there, not on any process."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *vals = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                v = [int(x) for x in vals]
                out[int(name[3:])] = v[0] + v[1] + v[2] + (v[7] if len(v) > 7 else 0)
    return out


def children_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def to_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def parse_wrk(out):
    r = {}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    r["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", out, re.M)
    r["requests"] = int(m.group(1)) if m else 0
    r["wrk_seconds"] = to_ms(m.group(2) + m.group(3)) / 1e3 if m else None
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+\w+)", out, re.M)
        r[f"p{pct}_ms"] = to_ms(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non_2xx"] = int(m.group(1)) if m else 0
    return r


def pct(x):
    return "?" if x is None else f"{x * 100:.0f}%"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--round", type=int, required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, required=True, help="server process to measure")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cpu", help="pin wrk to this CPU list (taskset -c)")
    ap.add_argument("--server-cpu", type=int,
                    help="the CPU the server is pinned to: report how busy other processes kept it")
    ap.add_argument("--out", required=True)
    ap.add_argument("--warmup", action="store_true", help="run, but record nothing")
    ap.add_argument("--script", help="wrk Lua script (-s), e.g. for POST bodies")
    ap.add_argument("--header", action="append", default=[], help="extra request header (-H)")
    a = ap.parse_args()

    if not re.match(r"^http://(127\.\d+\.\d+\.\d+|localhost|\[::1\])[:/]", a.url):
        sys.exit(f"measure: refusing non-loopback URL {a.url}")

    cmd = ["wrk", f"-t{a.threads}", f"-c{a.connections}", f"-d{a.duration}s", "--latency"]
    if a.script:
        cmd += ["-s", a.script]
    for h in a.header:
        cmd += ["-H", h]
    cmd.append(a.url)
    if a.cpu:
        cmd = ["taskset", "-c", a.cpu] + cmd
    pids = tree(a.pid)
    watch = {a.server_cpu} if a.server_cpu is not None else set()
    busy0 = cpu_busy_ticks(watch)
    client0 = children_cpu_s()
    before = cpu_ticks(pids)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=a.duration + 60)
        out, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        raw = e.stdout or b""  # bytes, whatever text= says
        out = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        rc = -1
    wall = time.monotonic() - t0
    pids |= tree(a.pid)  # processes started during the run count too
    after = cpu_ticks(pids)
    busy1 = cpu_busy_ticks(watch)
    client_cpu_s = children_cpu_s() - client0
    alive = a.pid in after

    r = parse_wrk(out)
    ticks = sum(after.get(p, 0) - before.get(p, 0) for p in pids if p in after)
    cpu_s = ticks / CLK_TCK
    rec = {
        "scenario": a.scenario,
        "server": a.server,
        "round": a.round,
        "url": a.url,
        "connections": a.connections,
        "threads": a.threads,
        "duration_s": a.duration,
        "wall_s": round(wall, 3),
        **r,
        "cpu_s": cpu_s,
        "cpu_us_per_req": (cpu_s * 1e6 / r["requests"]) if r["requests"] else None,
        "cpu_util": cpu_s / r["wrk_seconds"] if r.get("wrk_seconds") else None,
        # wrk's own CPU time over the round: near 1.0 per wrk thread means the client, not
        # the server, was the bottleneck.
        "client_util": client_cpu_s / wall if wall else None,
        # Share of the server's CPU used by anything but the server (other jobs on a shared
        # machine): high values make the round noisy.
        "other_util": max(0.0, ((busy1[a.server_cpu] - busy0[a.server_cpu]) / CLK_TCK - cpu_s)
                          / wall) if a.server_cpu is not None and a.server_cpu in busy1 and wall
        else None,
        "rss_kb": rss_kb(pids),
        "wrk_rc": rc,
        "server_alive": alive,
        "errors": r["socket_errors"] + r["non_2xx"] + (0 if rc == 0 else 1) + (0 if alive else 1),
    }
    if a.warmup:
        label = f"{a.server:<8} warm-up"
    else:
        with open(a.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        label = f"{a.server:<8} round {a.round}"
    cpu = rec["cpu_us_per_req"]
    p99 = rec["p99_ms"]
    print(f"  {a.scenario}: {label}: {r['rps']:>10.0f} req/s, "
          f"{cpu if cpu is not None else float('nan'):6.2f} us CPU/req, "
          f"p99 {p99 if p99 is not None else float('nan'):.3f} ms, "
          f"errors {rec['errors']}, server busy {pct(rec['cpu_util'])}, "
          f"wrk busy {pct(rec['client_util'])}, other load on server CPU {pct(rec['other_util'])}",
          flush=True)
    if rc != 0 or not r["requests"]:
        print(out, file=sys.stderr)
    return 0 if rc == 0 and alive else 1


if __name__ == "__main__":
    sys.exit(main())
