#!/usr/bin/env bash
# Scenario "proxy-streams": many concurrent SSE streams (chat completions with "stream": true)
# through a proxy to `sluice sim`: sluice, nginx `proxy_pass` (`proxy_buffering off`, as one
# configures it for SSE) and, for reference, the simulator directly. Each stream lasts ~6 s
# (ttft 1 s, then 50 tokens at 10 tokens/s, no jitter).
#
# Load: bench/streams.py (it checks that every stream ends with `data: [DONE]`, that all were open
# at once, and samples the proxy's RSS every 100 ms). Every round starts a fresh proxy and a
# fresh simulator, so that the proxy's idle RSS is not inflated by an earlier round.
# Memory per open stream = (peak RSS - idle RSS) / streams open at once, of the proxy process.
# CPUs: the proxy alone on SERVER_CPU; the simulator and the client on CLIENT_CPU.
#
# Rounds, each alternating sluice, nginx, sim direct:
#   STREAMS (default 2000) requests arriving evenly over STEADY_SECONDS (default 1, less than the
#     time to first token, so that all are open at once): ROUNDS rounds per server;
#   *burst*: the same number sent back to back (a few ms): one round per server;
#   STREAMS_LARGE (default: 10000, or as many as the open-file limit allows a proxy, which needs
#     two descriptors per stream) sent back to back: one round per server. 0 skips it.
# Targets (issue 5): <= 8 KiB of RSS per open stream; every stream (10,000 where the limit
# allows) completes without errors; no TTFB penalty beyond 1 ms over a direct call.
#
# PROFILE=1 also records a CPU profile of sluice during one extra large round (not counted) into
# $BENCH_RESULTS/proxy-streams.perf.txt.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$BENCH_ROOT/bench/lib.sh"
trap bench_cleanup EXIT

NAME=proxy-streams
commas() { sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta' <<<"$1"; } # 9900 -> 9,900
STREAMS=${STREAMS:-2000}
STEADY_SECONDS=${STEADY_SECONDS:-1}
TOKENS=50
API_PATH="/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
# shellcheck disable=SC2089 # a JSON body: its quotes are meant literally
BODY="{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":$TOKENS,\"stream\":true}"

# Every process here (client, proxy, simulator) inherits this limit: raise it as far as allowed.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
# A proxy holds two descriptors per stream (client and backend) plus ~100 of its own.
FD_MAX_STREAMS=$(((NOFILE - 200) / 2 / 100 * 100))
if [[ -z ${STREAMS_LARGE+x} ]]; then
    STREAMS_LARGE=$((FD_MAX_STREAMS < 10000 ? FD_MAX_STREAMS : 10000))
fi
((STREAMS_LARGE > STREAMS)) || STREAMS_LARGE=0
rc=0
missing=()
notes=()
if ((STREAMS > FD_MAX_STREAMS)); then
    bench_log "open-file limit $NOFILE allows a proxy $FD_MAX_STREAMS streams, not $STREAMS"
    exit 1
fi
if ((STREAMS_LARGE > 0 && STREAMS_LARGE < 10000)); then
    notes+=("The largest round has $(commas "$STREAMS_LARGE") streams, not 10,000: the open-file limit here is $NOFILE (the hard limit, which this user cannot raise), and a proxy holds two descriptors per stream.")
fi

# run_round SERVER ROUND N steady|burst: a fresh simulator and (unless SERVER is "sim direct") a
# fresh proxy, one short stream through it, then N streams.
run_round() {
    local server=$1 round=$2 n=$3 mode=$4 label dir sim_port sim_admin sim_gw gw_port gw_admin
    local url pid check st ok=0 over=0
    label=$server
    if ((n != STREAMS)); then
        label="$server, $(commas "$n")"
    elif [[ $mode == burst ]]; then
        label="$server, burst"
    fi
    [[ $mode == steady ]] && over=$STEADY_SECONDS
    dir=$BENCH_TMP/$(tr ' ,' '__' <<<"$label")-$round
    mkdir -p "$dir"
    mapfile -t P < <(bench_ports 5)
    sim_port=${P[0]} sim_admin=${P[1]} sim_gw=${P[2]} gw_port=${P[3]} gw_admin=${P[4]}
    bench_sim_config "$dir/sim.yaml" "$sim_port" "$sim_admin" "$sim_gw" 1s 10 $((n + 1000))
    if ! BENCH_CPU=${CLIENT_CPU:-} bench_start_sim "$dir/sim.yaml" "$dir/sim.log" "$sim_admin"; then
        missing+=("$label" "the simulator did not start")
        return 1
    fi
    local sim_pid=$SIM_PID
    case $server in
    sluice)
        bench_gateway_config "$dir/sluice.yaml" "$gw_port" "$gw_admin" "$sim_port" $((n + 1000))
        if ! bench_start_sluice "$dir/sluice.yaml" "$dir/sluice.log" "http://127.0.0.1:$gw_port/healthz"; then
            missing+=("$label" "sluice serve did not answer /healthz (binary: $SLUICE_BIN)")
            bench_stop "$sim_pid"
            return 1
        fi
        pid=$SLUICE_PID
        url=http://127.0.0.1:$gw_port$API_PATH
        ;;
    nginx)
        # As many connections as the limit allows: nginx closes idle client connections (those
        # connected but whose request it has not read yet) once fewer than 1/16 are free.
        if ! bench_start_nginx "$BENCH_ROOT/bench/nginx/proxy-stream.conf" "$gw_port" "$sim_port" \
            $((NOFILE - 100)); then
            missing+=("$label" "nginx did not start")
            bench_stop "$sim_pid"
            return 1
        fi
        pid=$NGINX_WORKER
        url=http://127.0.0.1:$gw_port$API_PATH
        ;;
    *)
        pid=$sim_pid
        url=http://127.0.0.1:$sim_port$API_PATH
        ;;
    esac
    # One short stream first: the set-up works, and the code paths are warm before the idle RSS.
    check=$(curl -sS --max-time 10 -H 'Content-Type: application/json' -H "api-key: $BENCH_CLIENT_KEY" \
        --data '{"messages":[{"role":"user","content":"Hello"}],"max_tokens":2,"stream":true}' \
        "$url" 2>&1 || true)
    if [[ $check != *"data: [DONE]"* ]]; then
        missing+=("$label" "a streaming request did not end with data: [DONE]: ${check:0:200}")
        bench_log "$label: ${missing[-1]}"
        ok=1
    else
        sleep 0.5
        # ttft + tokens / rate = 6 s per stream; the timeout leaves room for set-up and a slow machine.
        ${CLIENT_CPU:+taskset -c "$CLIENT_CPU"} "$BENCH_PY" "$BENCH_ROOT/bench/streams.py" \
            --url "$url" --streams "$n" --body "$BODY" --header "api-key: $BENCH_CLIENT_KEY" \
            --pid "$pid" --stats-url "http://127.0.0.1:$sim_admin/_sim/stats" --send-over "$over" \
            --timeout 90 --scenario "$NAME" --server "$label" --round "$round" \
            --out "${OUT:-$BENCH_RESULTS/$NAME.rounds.jsonl}" || ok=1
    fi
    # Streams that fail through the baseline are reported (notes, errors column), but do not
    # fail the scenario: only sluice's and the simulator's do.
    if ((ok)) && [[ $server == nginx ]]; then
        local nglog=$BENCH_TMP/nginx-$gw_port/nginx-error.log
        [[ -f $nglog ]] && grep -v "\[notice\]" "$nglog" | tail -n 3 >&2
        if grep -q "worker_connections are not enough" "$nglog" 2>/dev/null; then
            notes+=("$label: nginx logged \"worker_connections are not enough, reusing connections\": once fewer than 1/16 of its $((NOFILE - 100)) worker_connections (bounded by the open-file limit) are free, nginx closes client connections whose request it has not read yet, and those clients see a reset. With two connections per stream, about $(((NOFILE - 100) * 15 / 16 / 2)) streams is nginx's ceiling here.")
        fi
        ok=0
    fi
    if [[ $server == sluice ]]; then
        st=0
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        wait "$pid" 2>/dev/null || st=$?
        bench_log "  sluice access log: $(grep -c '"type":"access"' "$dir/sluice.log" || true) lines"
        if ((st != 0)); then
            notes+=("$label round $round: sluice exited with status $st on SIGTERM (expected 0)")
            bench_log "${notes[-1]}"
            ok=1
        fi
    elif [[ $server == nginx ]]; then
        bench_stop "$NGINX_MASTER"
    fi
    bench_stop "$sim_pid"
    rm -f "$dir"/*.log "$BENCH_TMP/nginx-$gw_port/nginx-access.log"
    return $ok
}

for ((r = 1; r <= ROUNDS; r++)); do
    for s in sluice nginx "sim direct"; do run_round "$s" "$r" "$STREAMS" steady || rc=1; done
done
for s in sluice nginx "sim direct"; do run_round "$s" 1 "$STREAMS" burst || rc=1; done
if ((STREAMS_LARGE > 0)); then
    for s in sluice nginx "sim direct"; do run_round "$s" 1 "$STREAMS_LARGE" burst || rc=1; done
fi
if [[ ${PROFILE:-0} == 1 ]]; then
    n=$((STREAMS_LARGE > 0 ? STREAMS_LARGE : STREAMS))
    bench_log "profiling sluice during one more round of $n streams (not counted)"
    # The round starts its own sluice: profile the newest sluice serve once it is up.
    (
        for ((i = 0; i < 100; i++)); do
            p=$(pgrep -n -f "$SLUICE_BIN serve --config $BENCH_TMP/sluice" || true)
            [[ -n $p ]] && break
            sleep 0.1
        done
        [[ -n $p ]] && sleep 1 && bench_profile "$p" 10 "$BENCH_RESULTS/$NAME.perf.txt" true
    ) &
    prof=$!
    OUT=/dev/null run_round sluice 0 "$n" burst || true
    wait "$prof" || true
fi

# Per round: KiB per open stream, and TTFB (first event) minus the direct round's of that size.
"$BENCH_PY" - "$BENCH_RESULTS/$NAME.rounds.jsonl" <<'EOF'
import json, sys
path = sys.argv[1]
try:
    rounds = [json.loads(line) for line in open(path) if line.strip()]
except OSError:
    sys.exit(0)
def key(r):
    server, _, size = r["server"].partition(", ")
    return server, size
direct = {(key(r)[1], r["round"]): r for r in rounds if key(r)[0] == "sim direct"}
for r in rounds:
    peak = r.get("peak_open_client") or 0
    d_kb = (r["rss_peak_mb"] - r["rss_idle_mb"]) * 1024 if r.get("rss_peak_mb") is not None else None
    r["kib_per_stream"] = d_kb / peak if d_kb is not None and peak else None
    server, size = key(r)
    d = direct.get((size, r["round"]))
    r["ttft_added_ms"] = (r["ttft_p50_ms"] - d["ttft_p50_ms"]
                          if server != "sim direct" and d and d.get("ttft_p50_ms") is not None
                          and r.get("ttft_p50_ms") is not None else None)
with open(path, "w") as f:
    for r in rounds:
        f.write(json.dumps(r) + "\n")
EOF

# shellcheck disable=SC2090
export NAME API_PATH BODY STREAMS STREAMS_LARGE STEADY_SECONDS TOKENS NOFILE
bench_meta_py "$BENCH_RESULTS/$NAME.meta.json" "${#missing[@]}" ${missing[@]+"${missing[@]}"} \
    ${notes[@]+"${notes[@]}"} <<'EOF'
n, big, over = int(e["STREAMS"]), int(e["STREAMS_LARGE"]), float(e["STEADY_SECONDS"])
for r in rounds:
    if r.get("failures"):
        why = ", ".join(f"{k}: {v}" for k, v in sorted(r["failures"].items()))
        notes.append(f"{r['server']} round {r['round']}: {r['failed']} streams failed ({why})")
    elif r.get("completed", 0) < r.get("streams", 0):
        notes.append(f"{r['server']} round {r['round']}: only {r['completed']} of {r['streams']} "
                     "streams ended with [DONE]")
big_s = f"{big:,}"
# (suffix of the rows, what they are)
groups = [("", f"{n:,} streams arriving over {over:g} s"),
          (", burst", f"{n:,} streams sent at once")]
if big:
    groups.append((f", {big_s}", f"{big_s} streams sent at once"))
def ms(x):
    return "?" if x is None else f"{x:,.1f}"
for sfx, what in groups:
    parts = []
    for s in ("sluice", "nginx", "sim direct"):
        if med(s + sfx, "ttft_p50_ms") is not None:
            parts.append(f"{s} {ms(med(s + sfx, 'ttft_min_ms'))} / "
                         f"{ms(med(s + sfx, 'ttft_p50_ms'))} / {ms(med(s + sfx, 'ttft_p99_ms'))}")
    if parts:
        notes.append(f"TTFB min / p50 / p99 (ms), {what}: " + "; ".join(parts) + ".")
for sfx, what in groups:
    sl, ng = med("sluice" + sfx, "kib_per_stream"), med("nginx" + sfx, "kib_per_stream")
    if sl is not None:
        notes.append(f"Memory per open stream, {what}: sluice {sl:.1f} KiB"
                     + (f", nginx {ng:.1f} KiB" if ng is not None else "")
                     + (f", the simulator {med('sim direct' + sfx, 'kib_per_stream'):.1f} KiB"
                        if med("sim direct" + sfx, "kib_per_stream") is not None else "")
                     + ".")
notes.append(
    "Why memory per stream is over 8 KiB: nginx itself needs about as much per stream here "
    "(see above). Of sluice's, about 7 KiB is libcurl's per transfer and per connection (its "
    "easy handle and connection state), and the rest the client's connection, the request's "
    "arena, and the input and output buffers. Streams read from the backend 1 KiB at a time, "
    "and a request gives back its input buffer's spare room once it is dispatched.")
notes.append(
    "Why a burst of streams waits: every stream of a burst needs a new connection to the "
    "backend, and setting one up costs sluice about 40 µs of CPU (libcurl's set-up, about 20 "
    "system calls, the event loop's registration), so the last of 2,000 waits some tens of "
    "milliseconds; streams arriving at any steady rate see no penalty (the first TTFB target).")
servers = [s + sfx for sfx, _ in groups for s in ("sluice", "nginx", "sim direct")]
targets = [
    {"text": f"memory per open stream ≤ 8 KiB (sluice's RSS, peak − idle, ÷ streams open at once; "
             f"{n:,} streams)",
     "metric": "kib_per_stream", "op": "<=", "value": 8, "absolute": True},
    {"text": f"no TTFB penalty beyond 1 ms: time to the first event, p50, sluice − direct "
             f"({n:,} streams arriving over {over:g} s)",
     "metric": "ttft_added_ms", "op": "<=", "value": 1, "absolute": True},
    {"text": f"the same, {n:,} requests sent at once (a burst: the proxy's set-up work per request "
             "queues)",
     "subject": "sluice, burst", "metric": "ttft_added_ms", "op": "<=", "value": 1,
     "absolute": True},
]
if big:
    targets += [
        {"text": f"{big_s} concurrent streams through one process (`workers: 1`), all open at once "
                 "and ending with `data: [DONE]`, no errors",
         "subject": f"sluice, {big_s}", "metric": "peak_open_client", "op": ">=", "value": big,
         "absolute": True},
        {"text": f"memory per open stream ≤ 8 KiB ({big_s} streams)",
         "subject": f"sluice, {big_s}", "metric": "kib_per_stream", "op": "<=", "value": 8,
         "absolute": True},
        {"text": f"no TTFB penalty beyond 1 ms ({big_s} requests sent at once)",
         "subject": f"sluice, {big_s}", "metric": "ttft_added_ms", "op": "<=", "value": 1,
         "absolute": True},
    ]
cpu = e.get("SERVER_CPU") or "(unpinned)"
ccpu = e.get("CLIENT_CPU") or "(unpinned)"
json.dump({
    "name": e["NAME"],
    "title": "Proxy: concurrent SSE streams, sluice vs nginx proxy_pass",
    "description": (
        f"Streaming chat completions (`POST {e['API_PATH']}`, body `{e['BODY']}`, "
        "`api-key: bench-key`) open at once through **sluice** (`sluice serve`, `workers: 1`, "
        "access log on), through **nginx** (one worker, `proxy_pass` with upstream keep-alive, "
        "`proxy_buffering off` as configured for server-sent events, the backend key swapped in, "
        "access log on), and to the **sim direct** for reference. The simulator (`sluice sim`, one "
        "worker, `ttft: 1s`, `tokens_per_second: 10`, no jitter) makes each stream last about 6 s "
        f"with {int(e['TOKENS']) + 4} events. The client is `bench/streams.py` (one thread, "
        "epoll): it opens every connection, then sends the requests, reads each stream to the end "
        "of its chunked body after `data: [DONE]`, and samples the measured process's VmRSS every "
        f"100 ms. Rows without a suffix: {n:,} requests arriving evenly over {over:g} s (steady "
        f"arrivals, {n / over:,.0f} new streams/s; all are open at once since the first token "
        f"comes 1 s after each request), {e['ROUNDS']} rounds per server; *burst*: the same "
        f"{n:,} sent back to back (a few ms), one round each"
        + (f"; *{big_s}*: {big_s} sent back to back, one round each" if big else "") +
        ". *KiB per stream* = (peak − idle RSS) ÷ streams open at once (client side), of the "
        "proxy process (sluice; the nginx worker; for *sim direct*, the simulator); idle is "
        "measured after one short stream on a fresh process (each round starts its own proxy and "
        "simulator); nginx allocates its `worker_connections` structures at start, so they are in "
        "its idle RSS. *Open at once (sim)*: what the simulator counted open (its "
        "`GET /_sim/stats`). *TTFB*: from sending a request to its first `data:` event; *TTFB "
        "added*: the p50 minus the p50 of the direct round of the same kind (a penalty that is "
        "about the same from min to p99 hits every stream alike; one that grows from min to p99 "
        "is a queue). **CPUs:** the proxy alone on CPU "
        f"{cpu}; the simulator and the client together on CPU {ccpu}. The open-file limit was "
        f"{e['NOFILE']}."),
    "subject": "sluice",
    "baseline": "nginx",
    "servers": servers,
    "ratios": [[f"sluice{sfx}", f"nginx{sfx}"] for sfx, _ in groups],
    "load": {"tool": "bench/streams.py", "streams": n, "steady_seconds": over,
             "streams_large": big},
    "columns": [
        {"key": "completed", "title": "ended with [DONE]", "format": "{:,.0f}"},
        {"key": "failed", "title": "failed", "format": "{:,.0f}", "ratio": False},
        {"key": "peak_open_client", "title": "open at once (client)", "format": "{:,.0f}"},
        {"key": "peak_open_server", "title": "open at once (sim)", "format": "{:,.0f}"},
        {"key": "ttft_p50_ms", "title": "TTFB p50 (ms)", "format": "{:,.1f}"},
        {"key": "ttft_p99_ms", "title": "TTFB p99 (ms)", "format": "{:,.1f}"},
        {"key": "ttft_added_ms", "title": "TTFB added p50 (ms)", "format": "{:+,.1f}", "ratio": False},
        {"key": "stream_max_s", "title": "longest stream (s)", "format": "{:.2f}"},
        {"key": "server_cpu_s", "title": "CPU (s)", "format": "{:.2f}"},
        {"key": "rss_idle_mb", "title": "RSS idle (MiB)", "format": "{:.1f}"},
        {"key": "rss_peak_mb", "title": "RSS peak (MiB)", "format": "{:.1f}"},
        {"key": "kib_per_stream", "title": "KiB per stream", "format": "{:.2f}"},
    ],
    "target": targets,
    "missing": missing,
    "notes": notes,
}, open(out, "w"), indent=1)
EOF
exit $rc
