#!/usr/bin/env bash
# Scenario "sim-streams": 10,000 streaming chat completions open at once against one
# `sluice sim` process, each lasting ~6 s (ttft 1 s, then 50 tokens at 10 tokens/s).
# Targets (issue 4, "Throughput"): all 10,000 open at once and all ending with `data: [DONE]`;
# a few MB (here: <= 5 MiB) of the simulator's memory per 1,000 open streams.
#
# Load: bench/streams.py (not wrk: it checks that every stream ends with [DONE] and that all
# were open at once, and samples the simulator's RSS every 100 ms). Every round starts a fresh
# simulator, so that its idle RSS is not inflated by an earlier round's heap. ROUNDS rounds with
# `workers: 1`, then one round with the default `workers: 0` (one per core), for context.
# No baseline: nginx cannot produce a server-sent event stream by itself.
#
# STREAMS (default 10000) changes the number of streams.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$BENCH_ROOT/bench/lib.sh"
trap bench_cleanup EXIT

NAME=sim-streams
DEPLOYMENT=gpt-4o
STREAMS=${STREAMS:-10000}
TOKENS=50
API_PATH="/openai/deployments/$DEPLOYMENT/chat/completions?api-version=2024-10-21"
# shellcheck disable=SC2089 # a JSON body: its quotes are meant literally
BODY="{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":$TOKENS,\"stream\":true}"

# Both the simulator and the client hold one descriptor per stream (and a few more). Raise the
# limit as far as allowed: 65536 as root with CAP_SYS_RESOURCE, else up to the hard limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
rc=0
missing=""
notes=()
if [[ $NOFILE != unlimited ]] && ((NOFILE < STREAMS + 200)); then
    missing="open-file limit $NOFILE is below $STREAMS streams (+200); raise it (ulimit -n)"
    bench_log "$missing"
fi

# One round: a fresh simulator with WORKERS workers, STREAMS streams, then SIGTERM (exit 0).
run_round() { # run_round SERVER ROUND WORKERS
    local server=$1 round=$2 workers=$3 sim_port admin_port gw_port dir pid st i
    sim_port=$(bench_port)
    admin_port=$(bench_port)
    gw_port=$(bench_port)
    while [[ $admin_port == "$sim_port" ]]; do admin_port=$(bench_port); done
    while [[ $gw_port == "$sim_port" || $gw_port == "$admin_port" ]]; do gw_port=$(bench_port); done
    dir=$BENCH_TMP/$server-$round
    mkdir -p "$dir"
    # max_connections is per worker: room for every stream on one worker, whatever the spread.
    # `listen` is the gateway's, which `sluice sim` does not open: loopback anyway.
    cat >"$dir/sim.yaml" <<EOF
workers: $workers
listen: ["127.0.0.1:$gw_port"]
admin_listen: "127.0.0.1:$admin_port"
log: {access: true, level: warn}
limits: {max_connections: $((STREAMS + 1000))}
simulator:
  seed: 1
  endpoints:
    - name: bench
      listen: "127.0.0.1:$sim_port"
      deployments:
        - name: $DEPLOYMENT
          model: gpt-4o
          version: "2024-08-06"
          tpm: 0
          ttft: 1s
          tokens_per_second: 10
EOF
    bench_spawn "$dir/sim.log" "${SLUICE_BIN:?}" sim --config "$dir/sim.yaml"
    pid=$BENCH_SPAWNED
    if ! bench_wait_http "http://127.0.0.1:$admin_port/healthz" 10 "$pid"; then
        bench_log "sluice sim did not start; its output:"
        tail -n 20 "$dir/sim.log" >&2
        missing="sluice sim did not answer on its admin address within 10 s (binary: $SLUICE_BIN)"
        return 1
    fi
    # One short stream first: the set-up works, and the code paths are warm before the idle RSS.
    local check
    check=$(curl -sS --max-time 10 -H 'Content-Type: application/json' -H 'api-key: x' \
        --data '{"messages":[{"role":"user","content":"Hello"}],"max_tokens":2,"stream":true}' \
        "http://127.0.0.1:$sim_port$API_PATH" 2>&1 || true)
    if [[ $check != *"data: [DONE]"* ]]; then
        missing="a streaming request to the simulator did not end with data: [DONE]: ${check:0:300}"
        bench_log "$missing"
        return 1
    fi
    sleep 0.5
    local ok=0
    # ttft + tokens / rate = 6 s per stream; the timeout leaves room for the set-up and a slow
    # machine.
    ${CLIENT_CPU:+taskset -c "$CLIENT_CPU"} "$BENCH_PY" "$BENCH_ROOT/bench/streams.py" \
        --url "http://127.0.0.1:$sim_port$API_PATH" --streams "$STREAMS" --body "$BODY" \
        --header "api-key: x" --pid "$pid" --stats-url "http://127.0.0.1:$admin_port/_sim/stats" \
        --timeout 90 --scenario "$NAME" --server "$server" --round "$round" \
        --out "$BENCH_RESULTS/$NAME.rounds.jsonl" || ok=1
    bench_log "  $server access log: $(wc -l <"$dir/sim.log") lines"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    st=0
    wait "$pid" 2>/dev/null || st=$?
    if ((st != 0)); then
        notes+=("$server round $round: sluice sim exited with status $st on SIGTERM (expected 0)")
        bench_log "${notes[-1]}"
    fi
    rm -f "$dir/sim.log"
    return $ok
}

if [[ -z $missing ]]; then
    for ((r = 1; r <= ROUNDS; r++)); do
        run_round sim "$r" 1 || rc=1
        [[ -z $missing ]] || break
    done
fi
if [[ -z $missing ]]; then
    run_round "sim, workers: 0" 1 0 || rc=1
fi
[[ -z $missing ]] || rc=1

NPROC=$(nproc)
# shellcheck disable=SC2090
export NAME API_PATH BODY STREAMS TOKENS NOFILE NPROC # for the meta writer below
"$BENCH_PY" - "$BENCH_RESULTS/$NAME.meta.json" "$missing" ${notes[@]+"${notes[@]}"} <<'EOF'
import json, os, sys
out, missing = sys.argv[1:3]
e = os.environ
n = int(e["STREAMS"])
notes = sys.argv[3:]
try:
    with open(os.path.join(e["BENCH_RESULTS"], e["NAME"] + ".rounds.jsonl")) as f:
        for r in (json.loads(line) for line in f if line.strip()):
            if r.get("failures"):
                why = ", ".join(f"{k}: {v}" for k, v in sorted(r["failures"].items()))
                notes.append(f"{r['server']} round {r['round']}: {r['failed']} streams failed ({why})")
            elif r.get("completed", 0) < n:
                notes.append(f"{r['server']} round {r['round']}: only {r['completed']} of {n} "
                             "streams ended with [DONE]")
except OSError:
    pass
json.dump({
    "name": e["NAME"],
    "title": f"Simulator: {n:,} concurrent streams, one process",
    "description": (
        f"{n:,} streaming chat completions (`POST {e['API_PATH']}`, body `{e['BODY']}`) "
        "open at once against one `sluice sim` process whose deployment has `ttft: 1s` and "
        "`tokens_per_second: 10` (default jitter, 10 %): each stream lasts about 6 s and carries "
        f"{int(e['TOKENS']) + 4} events (prompt filter results, role, {e['TOKENS']} tokens, finish, "
        "`[DONE]`). The client, `bench/streams.py` (one thread, epoll), opens every connection "
        "first (500 connects in flight at a time), then sends every request (in well under the 1 s "
        "before the first token), and "
        "reads each stream to the end of its chunked body after `data: [DONE]`. *Open at once* is "
        "counted on both sides: the most request-to-`[DONE]` intervals that overlap (client), "
        "and the most streams the simulator itself counted open (started − completed − cut in "
        "`GET /_sim/stats`, sampled every second). Memory is the simulator's VmRSS, sampled "
        "every 100 ms: *MiB per 1,000 streams* = (peak − idle) ÷ (streams open at once ÷ 1,000), "
        "idle being measured after one short stream on a fresh process (each round starts its "
        "own). Rows *sim* are `workers: 1` (the target); *sim, workers: 0* is the default, one "
        f"worker per core ({e['NPROC']} here"
        + (f"; pinned to CPU {e['SERVER_CPU']} like every server here" if e.get("SERVER_CPU")
           else "") + "), for context. Access log on (to a file); the "
        f"open-file limit was {e['NOFILE']}. No baseline: nginx cannot produce a server-sent "
        "event stream by itself. Other processes may share the machine."
    ),
    "subject": "sim",
    "baseline": None,
    "servers": ["sim", "sim, workers: 0"],
    "load": {"tool": "bench/streams.py", "streams": n},
    "columns": [
        {"key": "completed", "title": "ended with [DONE]", "format": "{:,.0f}"},
        {"key": "failed", "title": "failed", "format": "{:,.0f}"},
        {"key": "peak_open_client", "title": "open at once (client)", "format": "{:,.0f}"},
        {"key": "peak_open_server", "title": "open at once (sim)", "format": "{:,.0f}"},
        {"key": "connect_s", "title": "connect all (s)", "format": "{:.2f}"},
        {"key": "send_s", "title": "send all (s)", "format": "{:.2f}"},
        {"key": "events_min", "title": "events per stream (min)", "format": "{:,.0f}"},
        {"key": "ttft_p50_ms", "title": "TTFT p50 (ms)", "format": "{:,.0f}"},
        {"key": "ttft_p99_ms", "title": "TTFT p99 (ms)", "format": "{:,.0f}"},
        {"key": "stream_max_s", "title": "longest stream (s)", "format": "{:.2f}"},
        {"key": "server_cpu_s", "title": "sim CPU (s)", "format": "{:.2f}"},
        {"key": "rss_idle_mb", "title": "RSS idle (MiB)", "format": "{:.1f}"},
        {"key": "rss_peak_mb", "title": "RSS peak (MiB)", "format": "{:.1f}"},
        {"key": "mb_per_1000", "title": "MiB per 1,000 streams", "format": "{:.2f}"},
    ],
    "target": [
        {"text": f"{n:,} streams open at once in one process (`workers: 1`), every one ending "
                 "with `data: [DONE]`",
         "metric": "peak_open_client", "op": ">=", "value": n, "absolute": True},
        {"text": "a few MB per 1,000 open streams: ≤ 5 MiB of RSS",
         "metric": "mb_per_1000", "op": "<=", "value": 5, "absolute": True},
    ],
    "missing": {"sim": missing} if missing else {},
    "notes": notes,
}, open(out, "w"), indent=1)
EOF
exit $rc
