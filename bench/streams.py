#!/usr/bin/python3
"""One round of many concurrent streams: open N connections, send N streaming requests at
once, read every stream to its end, and sample the server's memory meanwhile.

Why not wrk: wrk reports latencies and a count, but cannot say that every response was a
complete event stream ending in `data: [DONE]`, nor that all N streams were open at the same
time. This client (one thread, epoll, standard library only) can:

1. connects N sockets, at most --connect-batch at a time (the listen backlog is finite);
2. once all are connected, sends every request (back to back, a few ms for 10,000; or, with
   --send-over S, spread evenly over S seconds, as steady arrivals); with a time to first
   token of a second, all N requests are in before the first answer starts (with S < 1);
3. reads every stream until the final chunk after `data: [DONE]`, then closes it; a stream
   that ends otherwise (closed, reset, not 200, past --timeout) is a failure;
4. samples VmRSS of --pid every 100 ms, and the server's own count of open streams
   (started - completed - cut, from GET --stats-url) every second.

"Open at once" is checked from both sides: the most request→[DONE] intervals that overlap
(client side), and the most streams the server counted open in one sample (server side).
Appends one JSON object to --out (a round of bench/report.py's custom-column kind) and prints
a summary. Exits 1 when any stream failed.
"""
import argparse
import errno
import json
import os
import re
import select
import socket
import statistics
import sys
import time
import urllib.request

DONE = b"data: [DONE]"
EVENT = b"data: "
CHUNKED_END = b"\r\n0\r\n\r\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def vmrss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def server_open_streams(url):
    """started - completed - cut summed over the simulator's deployments, or None."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            stats = json.load(r)
    except (OSError, ValueError):
        return None
    n = 0
    for ep in stats.get("endpoints", {}).values():
        groups = list(ep.get("deployments", {}).values())
        if "unrouted" in ep:
            groups.append(ep["unrouted"])
        for d in groups:
            s = d.get("streams", {})
            n += s.get("started", 0) - s.get("completed", 0) - s.get("cut", 0)
    return n


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(p / 100 * len(v) + 0.5) - 1))]


class Stream:
    __slots__ = ("sock", "state", "head", "status", "chunked", "tail", "events", "t_sent",
                 "t_first", "t_done", "why")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connecting"  # connecting, connected, sent, done, failed
        self.head = b""
        self.status = None
        self.chunked = False
        self.tail = b""  # the last bytes read, to find patterns across reads
        self.events = 0
        self.t_sent = self.t_first = self.t_done = None
        self.why = None


def peak_overlap(intervals):
    """Most intervals (start, end) open at one instant."""
    ev = [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals]
    ev.sort(key=lambda x: (x[0], x[1]))  # an end before a start at the same instant
    cur = best = 0
    for _, d in ev:
        cur += d
        best = max(best, cur)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="http://127.0.0.1:PORT/path?query")
    ap.add_argument("--streams", type=int, default=10000)
    ap.add_argument("--body", required=True, help="JSON request body (with \"stream\": true)")
    ap.add_argument("--header", action="append", default=[], help="extra request header")
    ap.add_argument("--pid", type=int, required=True, help="server process: RSS and CPU")
    ap.add_argument("--stats-url", help="simulator's GET /_sim/stats, for its open streams")
    ap.add_argument("--connect-batch", type=int, default=500,
                    help="connections being set up at once (default 500)")
    ap.add_argument("--timeout", type=float, default=60, help="seconds for the whole round")
    ap.add_argument("--send-over", type=float, default=0.0,
                    help="spread the requests evenly over this many seconds (default 0: all "
                         "back to back)")
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--round", type=int, required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    m = re.match(r"^http://(127\.\d+\.\d+\.\d+):(\d+)(/.*)$", a.url)
    if not m:
        sys.exit(f"streams: refusing a URL that is not http://127.x.x.x:PORT/...: {a.url}")
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    if a.stats_url and not re.match(r"^http://127\.\d+\.\d+\.\d+:\d+/", a.stats_url):
        sys.exit(f"streams: refusing non-loopback stats URL {a.stats_url}")
    body = a.body.encode()
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
               + "".join(h + "\r\n" for h in a.header)
               + f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    rss_idle = vmrss_kb(a.pid)
    cpu0 = cpu_s(a.pid)
    if rss_idle is None:
        sys.exit(f"streams: no process {a.pid}")
    rss_peak = rss_idle
    server_peak = None
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    ep = select.epoll()
    streams = []
    by_fd = {}
    pending = 0  # connects in progress
    connect_failed = 0

    def fail(st, why):
        if st.state in ("done", "failed"):
            return
        st.state, st.why = "failed", why
        try:
            ep.unregister(st.sock.fileno())
        except (OSError, ValueError):
            pass
        st.sock.close()

    # 1. Connect, at most connect_batch at a time.
    next_i = 0
    connected = 0
    while connected + connect_failed < a.streams and time.monotonic() < deadline:
        while next_i < a.streams and pending < a.connect_batch:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            st = Stream(s)
            streams.append(st)
            next_i += 1
            rc = s.connect_ex((host, port))
            if rc not in (0, errno.EINPROGRESS):
                fail(st, f"connect: {os.strerror(rc)}")
                connect_failed += 1
                continue
            by_fd[s.fileno()] = st
            ep.register(s.fileno(), select.EPOLLOUT)
            pending += 1
        for fd, _ in ep.poll(0.1):
            st = by_fd[fd]
            if st.state != "connecting":
                continue  # a hang-up of a connected socket: seen when its request is sent
            pending -= 1
            rc = st.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if rc:
                fail(st, f"connect: {os.strerror(rc)}")
                connect_failed += 1
            else:
                st.state = "connected"
                ep.modify(fd, 0)  # nothing to wait for until the request is sent
                connected += 1
    t_connected = time.monotonic()
    for st in streams:
        if st.state == "connecting":
            fail(st, "connect: timed out")

    # 2. Send every request: back to back, or with --send-over, request i at
    # i * send_over / N seconds (sent from the read loop, so that reading never waits).
    to_send = [st for st in streams if st.state == "connected"]
    interval = a.send_over / len(to_send) if a.send_over > 0 and to_send else 0.0
    t_send0 = time.monotonic()
    send_i = 0
    open_n = 0
    t_all_sent = t_send0

    def send_due(now):
        nonlocal send_i, open_n, t_all_sent
        while send_i < len(to_send) and (interval == 0 or t_send0 + send_i * interval <= now):
            st = to_send[send_i]
            send_i += 1
            try:
                n = st.sock.send(request)
            except OSError as e:
                fail(st, f"send: {e.strerror}")
                continue
            if n != len(request):  # a fresh socket takes a request of a few hundred bytes
                fail(st, "send: short write")
                continue
            st.t_sent = t_all_sent = time.monotonic()
            st.state = "sent"
            open_n += 1
            ep.modify(st.sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP)

    send_due(t_send0)

    # 3. Read every stream to its end; sample memory every 100 ms, the server every second.
    next_rss = next_stats = time.monotonic()
    while (open_n or send_i < len(to_send)) and time.monotonic() < deadline:
        now = time.monotonic()
        send_due(now)
        if now >= next_rss:
            rss = vmrss_kb(a.pid)
            if rss is None:
                break  # the server died
            rss_peak = max(rss_peak, rss)
            next_rss = now + 0.1
        if a.stats_url and now >= next_stats:
            n = server_open_streams(a.stats_url)
            if n is not None:
                server_peak = n if server_peak is None else max(server_peak, n)
            next_stats = time.monotonic() + 1.0
        wake = min(next_rss, deadline)
        if send_i < len(to_send):
            wake = min(wake, t_send0 + send_i * interval)
        for fd, evmask in ep.poll(max(0.0, wake - time.monotonic())):
            st = by_fd[fd]
            try:
                data = st.sock.recv(65536)
            except OSError as e:
                fail(st, f"recv: {e.strerror}")
                open_n -= 1
                continue
            if not data:
                fail(st, "closed by the server before the end of the stream"
                      if st.status == 200 else f"closed (status {st.status})")
                open_n -= 1
                continue
            now = time.monotonic()
            if st.status is None:
                st.head += data
                end = st.head.find(b"\r\n\r\n")
                if end < 0:
                    if len(st.head) > 65536:
                        fail(st, "response head too long")
                        open_n -= 1
                    continue
                head, data = st.head[:end].decode("latin-1"), st.head[end + 4:]
                st.head = b""
                try:
                    st.status = int(head.split(" ", 2)[1])
                except (IndexError, ValueError):
                    fail(st, "bad status line")
                    open_n -= 1
                    continue
                st.chunked = bool(re.search(r"(?im)^transfer-encoding:\s*chunked", head))
                if st.status != 200:
                    fail(st, f"status {st.status}")
                    open_n -= 1
                    continue
            if not data:
                continue
            buf = st.tail + data
            # Occurrences wholly inside the old tail were counted with the previous read.
            st.events += buf.count(EVENT) - st.tail.count(EVENT)
            if st.t_first is None and EVENT in buf:
                st.t_first = now
            found_done = DONE in buf
            st.tail = buf[-(len(DONE) - 1):] if len(buf) >= len(DONE) - 1 else buf
            if found_done and st.state == "sent":
                st.state = "got_done"
            if st.state == "got_done" and (not st.chunked or (buf[-len(CHUNKED_END):] ==
                                                              CHUNKED_END)):
                st.state, st.t_done = "done", now
                ep.unregister(fd)
                st.sock.close()
                open_n -= 1
    t_end = time.monotonic()
    rss_end = vmrss_kb(a.pid)
    cpu1 = cpu_s(a.pid)
    for st in streams:
        if st.state in ("sent", "got_done"):
            fail(st, "timed out" if time.monotonic() >= deadline else "server gone")
    ep.close()

    done = [st for st in streams if st.state == "done"]
    failed = [st for st in streams if st.state == "failed"]
    whys = {}
    for st in failed:
        whys[st.why] = whys.get(st.why, 0) + 1
    ttft = [(st.t_first - st.t_sent) * 1e3 for st in done if st.t_first]
    dur = [st.t_done - st.t_sent for st in done]
    # Every completed stream open at once: the last request went out before the first [DONE].
    all_at_once = bool(done) and max(st.t_sent for st in done) < min(st.t_done for st in done)
    peak_client = peak_overlap([(st.t_sent, st.t_done) for st in done])
    delta_mb = (rss_peak - rss_idle) / 1024
    mb_per_1000 = delta_mb / (peak_client / 1000) if peak_client else None
    errors = len(failed) + (a.streams - len(done) - len(failed))
    events = [st.events for st in done]
    rec = {
        "scenario": a.scenario,
        "server": a.server,
        "round": a.round,
        "url": a.url,
        "streams": a.streams,
        "completed": len(done),
        "failed": len(failed),
        "failures": whys,
        "all_open_at_once": all_at_once,
        "peak_open_client": peak_client,
        "peak_open_server": server_peak,
        "connect_s": t_connected - t0,
        "send_s": t_all_sent - t_connected,
        "round_s": t_end - t0,
        "ttft_min_ms": min(ttft) if ttft else None,
        "ttft_p50_ms": percentile(ttft, 50),
        "ttft_p99_ms": percentile(ttft, 99),
        "stream_p50_s": percentile(dur, 50),
        "stream_max_s": max(dur) if dur else None,
        "events_min": min(events) if events else None,
        "events_median": statistics.median(events) if events else None,
        "rss_idle_mb": rss_idle / 1024,
        "rss_peak_mb": rss_peak / 1024,
        "rss_end_mb": rss_end / 1024 if rss_end else None,
        "mb_per_1000": mb_per_1000,
        "server_cpu_s": (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
        "server_alive": rss_end is not None,
        "errors": errors + (0 if rss_end is not None else 1),
    }
    with open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"  {a.scenario}: {a.server} round {a.round}: {len(done)}/{a.streams} streams ended "
          f"with [DONE], {len(failed)} failed{' ' + json.dumps(whys) if whys else ''}; "
          f"open at once: {peak_client} (client), {server_peak} (server); "
          f"connect {rec['connect_s']:.2f} s, send {rec['send_s']:.2f} s; "
          f"TTFT p50 {rec['ttft_p50_ms'] or float('nan'):.0f} ms "
          f"p99 {rec['ttft_p99_ms'] or float('nan'):.0f} ms; "
          f"RSS {rss_idle / 1024:.1f} -> {rss_peak / 1024:.1f} MiB = "
          f"{mb_per_1000 if mb_per_1000 is not None else float('nan'):.2f} MiB per 1000 streams",
          flush=True)
    return 0 if errors == 0 and rec["server_alive"] else 1


if __name__ == "__main__":
    sys.exit(main())
