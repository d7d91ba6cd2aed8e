#!/usr/bin/env bash
# Scenario "proxy-latency": the latency a proxy adds to a non-streaming chat completion, at
# concurrency 1 (wrk -t1 -c1: one keep-alive connection, one request at a time) and paced
# (wrk -c10, each connection waiting 1 ms after every answer: a light, steady load), through
# sluice and through nginx `proxy_pass`, minus the same load against the simulator directly.
# Rounds alternate sluice, nginx, sim direct, sluice, ...; each round's "added" latency is its
# p50 (p99) minus the p50 (p99) of the direct round right after it.
#
# Two CPU layouts (when pinning):
#   shared (the target's): the proxy AND the simulator on SERVER_CPU, wrk on CLIENT_CPU. A direct
#     call and a proxied one then cross between CPUs equally often (wrk -> server side -> wrk),
#     so the difference is the proxy's own work and its hand-offs with the simulator;
#   split (proxy-chat's layout): the proxy alone on SERVER_CPU, the simulator with wrk on
#     CLIENT_CPU. A proxied request then crosses between CPUs four times, a direct one never:
#     on a virtual machine each cross-CPU wake-up costs tens of µs, which both proxies pay.
# Target (issue 5): sluice adds <= 50 µs at p50 over a direct call, at concurrency 1.
#
# LAT_DURATION (default 5) seconds per round; PACED_CONNECTIONS (10), PACED_DELAY_MS (1).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$BENCH_ROOT/bench/lib.sh"
trap bench_cleanup EXIT

NAME=proxy-latency
LAT_DURATION=${LAT_DURATION:-5}
PACED_CONNECTIONS=${PACED_CONNECTIONS:-10}
PACED_DELAY_MS=${PACED_DELAY_MS:-1}
mapfile -t P < <(bench_ports 6)
SIM_PORT=${P[0]} SIM_ADMIN=${P[1]} SIM_GW=${P[2]} GW_PORT=${P[3]} GW_ADMIN=${P[4]} NG_PORT=${P[5]}
API_PATH=$BENCH_CHAT_PATH
declare -A URL=(
    [sluice]=http://127.0.0.1:$GW_PORT$API_PATH
    [nginx]=http://127.0.0.1:$NG_PORT$API_PATH
    [sim direct]=http://127.0.0.1:$SIM_PORT$API_PATH
)
BODY=$BENCH_CHAT_BODY
SIM_LOG=$BENCH_TMP/sim.log
SL_LOG=$BENCH_TMP/sluice.log

bench_sim_config "$BENCH_TMP/sim.yaml" "$SIM_PORT" "$SIM_ADMIN" "$SIM_GW" 0ms 100000
bench_gateway_config "$BENCH_TMP/sluice.yaml" "$GW_PORT" "$GW_ADMIN" "$SIM_PORT"
bench_chat_lua "$BENCH_TMP/chat.lua"
{
    cat "$BENCH_TMP/chat.lua"
    echo "function delay() return $PACED_DELAY_MS end"
} >"$BENCH_TMP/paced.lua"

missing=()
notes=()
rc=0
# The simulator starts in the shared layout: on the proxies' CPU.
bench_start_sim "$BENCH_TMP/sim.yaml" "$SIM_LOG" "$SIM_ADMIN" || exit 1
SL_OK=1 NG_OK=1
bench_start_sluice "$BENCH_TMP/sluice.yaml" "$SL_LOG" "http://127.0.0.1:$GW_PORT/healthz" || {
    missing+=("sluice" "sluice serve did not answer /healthz (binary: $SLUICE_BIN)")
    SL_OK=0
}
bench_start_nginx "$BENCH_ROOT/bench/nginx/proxy.conf" "$NG_PORT" "$SIM_PORT" || {
    missing+=("nginx" "nginx did not start (see the scenario's output)")
    NG_OK=0
}
NG_ACCESS=$BENCH_TMP/nginx-$NG_PORT/nginx-access.log
declare -A PID=([sluice]=${SLUICE_PID:-0} [nginx]=${NGINX_WORKER:-0} [sim direct]=$SIM_PID)
for s in sluice nginx "sim direct"; do
    [[ $s == sluice ]] && ((!SL_OK)) && continue
    [[ $s == nginx ]] && ((!NG_OK)) && continue
    code=$(curl -sS --max-time 5 -o "$BENCH_TMP/check.body" -w '%{http_code}' \
        -H 'Content-Type: application/json' -H "api-key: $BENCH_CLIENT_KEY" --data "$BODY" \
        "${URL[$s]}" 2>&1) || true
    if [[ $code != 200 ]]; then
        bench_log "$s answered the chat request with $code"
        [[ $s == "sim direct" ]] && exit 1
        missing+=("$s" "$s did not answer the proxied chat request with 200 ($code)")
        [[ $s == sluice ]] && SL_OK=0
        [[ $s == nginx ]] && NG_OK=0
    fi
done
((SL_OK && NG_OK)) || rc=1
SERVERS=()
((SL_OK)) && SERVERS+=(sluice)
((NG_OK)) && SERVERS+=(nginx)
SERVERS+=("sim direct")

# sim_on CPU: move every thread of the simulator (no-op without pinning).
sim_on() {
    [[ -n $1 ]] || return 0
    taskset -a -p -c "$1" "$SIM_PID" >/dev/null
}
# measure GROUP SERVER ROUND [--warmup]; GROUP is "" (c1), "paced" or "split" (c1).
measure() {
    local group=$1 server=$2 round=$3 name script=$BENCH_TMP/chat.lua conns=1
    shift 3
    name=$server${group:+, $group}
    if [[ $group == paced ]]; then script=$BENCH_TMP/paced.lua conns=$PACED_CONNECTIONS; fi
    DURATION=${DURATION_OVERRIDE:-$LAT_DURATION} CONNECTIONS=$conns THREADS=1 \
        bench_measure "$NAME" "$name" "$round" "${URL[$server]}" "${PID[$server]}" \
        --script "$script" "$@"
    : >"$SIM_LOG"
    if [[ $server == sluice ]]; then : >"$SL_LOG"; fi
}
GROUPS_RUN=("" paced)
if [[ -n ${SERVER_CPU:-} && -n ${CLIENT_CPU:-} ]]; then
    GROUPS_RUN+=(split)
else
    notes+=("CPU pinning is off (SERVER_CPU/CLIENT_CPU empty): only one layout was measured")
fi

for s in "${SERVERS[@]}"; do DURATION_OVERRIDE=1 measure "" "$s" 0 --warmup || true; done
for ((r = 1; r <= ROUNDS; r++)); do
    for g in "${GROUPS_RUN[@]}"; do
        if [[ $g == split ]]; then sim_on "$CLIENT_CPU"; else sim_on "${SERVER_CPU:-}"; fi
        for s in "${SERVERS[@]}"; do
            measure "$g" "$s" "$r" || rc=1
        done
    done
    sim_on "${SERVER_CPU:-}"
done
((NG_OK)) && : >"$NG_ACCESS"

# Added latency: each proxied round minus the direct round of the same group and round.
"$BENCH_PY" - "$BENCH_RESULTS/$NAME.rounds.jsonl" <<'EOF'
import json, sys
path = sys.argv[1]
try:
    rounds = [json.loads(line) for line in open(path) if line.strip()]
except OSError:
    sys.exit(0)
def split(name):
    server, _, group = name.partition(", ")
    return server, group
direct = {}
for r in rounds:
    server, group = split(r["server"])
    for k in ("p50", "p99"):
        r[f"{k}_us"] = None if r.get(f"{k}_ms") is None else r[f"{k}_ms"] * 1e3
    if server == "sim direct":
        direct[(group, r["round"])] = r
for r in rounds:
    server, group = split(r["server"])
    d = direct.get((group, r["round"]))
    for k in ("p50", "p99"):
        ok = server != "sim direct" and d and d.get(f"{k}_us") is not None and r[f"{k}_us"] is not None
        r[f"added_{k}_us"] = r[f"{k}_us"] - d[f"{k}_us"] if ok else None
with open(path, "w") as f:
    for r in rounds:
        f.write(json.dumps(r) + "\n")
EOF

# shellcheck disable=SC2090
export NAME API_PATH BODY LAT_DURATION PACED_CONNECTIONS PACED_DELAY_MS
bench_meta_py "$BENCH_RESULTS/$NAME.meta.json" "${#missing[@]}" ${missing[@]+"${missing[@]}"} \
    ${notes[@]+"${notes[@]}"} <<'EOF'
def us(x):
    return "?" if x is None else f"{x:.0f} µs"
for g, what in (("", "at concurrency 1, shared layout"), (", paced", "paced, shared layout"),
                (", split", "at concurrency 1, split layout")):
    sl, ng = med("sluice" + g, "added_p50_us"), med("nginx" + g, "added_p50_us")
    d = med("sim direct" + g, "p50_us")
    if sl is None and ng is None:
        continue
    notes.append(f"Added p50 {what}: sluice {us(sl)}, nginx {us(ng)} (direct p50 {us(d)}); "
                 f"added p99: sluice {us(med('sluice' + g, 'added_p99_us'))}, "
                 f"nginx {us(med('nginx' + g, 'added_p99_us'))}.")
paced_rps = med("sim direct, paced", "rps")
servers = [s + g for g in ("", ", paced", ", split") for s in ("sluice", "nginx", "sim direct")]
scpu, ccpu = e.get("SERVER_CPU") or "", e.get("CLIENT_CPU") or ""
json.dump({
    "name": e["NAME"],
    "title": "Proxy: added latency at concurrency 1 and paced",
    "description": (
        f"The latency sluice and nginx add to a keep-alive `POST {e['API_PATH']}` (body "
        f"`{e['BODY']}`) proxied to the simulator (which answers at once), from wrk: rows "
        "without a suffix and *split* are **concurrency 1** (`wrk -t1 -c1`, one request at a "
        f"time); *paced* is wrk with {e['PACED_CONNECTIONS']} connections each waiting "
        f"{e['PACED_DELAY_MS']} ms after every answer (a light steady load, about "
        + (f"{paced_rps:,.0f}" if paced_rps else "?") +
        " requests/s; wrk2, which keeps a fixed rate, is not installed). **Added** is a proxied "
        "round's p50 (p99) minus the p50 (p99) of the same load against the simulator directly, "
        f"measured right after it; {e['LAT_DURATION']} s per round. Same servers and settings as "
        "the proxy-chat scenario (nginx with upstream keep-alive, one worker each). **Layouts:** "
        f"*shared* (no suffix, and *paced*): the proxy and the simulator on CPU {scpu}, wrk on "
        f"CPU {ccpu}, so that a direct and a proxied request cross between CPUs equally often and "
        "the difference is the proxy's own work and its hand-offs with the simulator; *split*: "
        f"the proxy alone on CPU {scpu}, the simulator with wrk on CPU {ccpu} (proxy-chat's "
        "layout), where a proxied request crosses between CPUs four times and a direct one "
        "never: on this virtual machine a cross-CPU wake-up costs tens of µs, and both proxies "
        "pay it. *µs CPU / request* is the proxy's (for *sim direct*, the simulator's) CPU time "
        "per request. The p99 of a round is set by rare stalls of a few ms (this virtual "
        "machine's CPUs now and then wake up late, more so when other jobs run on it), so the "
        "added p99 is noisy and can come out negative: read the p50."),
    "subject": "sluice",
    "baseline": "nginx",
    "servers": servers,
    "ratios": [["sluice", "nginx"], ["sluice, paced", "nginx, paced"],
               ["sluice, split", "nginx, split"]],
    "load": {"tool": "wrk", "duration_s": int(e["LAT_DURATION"]), "rounds": int(e["ROUNDS"])},
    "columns": [
        {"key": "rps", "title": "requests/s", "format": "{:,.0f}"},
        {"key": "p50_us", "title": "p50 (µs)", "format": "{:,.0f}"},
        {"key": "p99_us", "title": "p99 (µs)", "format": "{:,.0f}"},
        {"key": "added_p50_us", "title": "added p50 (µs)", "format": "{:,.0f}"},
        {"key": "added_p99_us", "title": "added p99 (µs)", "format": "{:,.0f}", "ratio": False},
        {"key": "cpu_us_per_req", "title": "µs CPU / request", "format": "{:.1f}"},
    ],
    "target": [
        {"text": "added p50 latency at concurrency 1 ≤ 50 µs over a direct call (shared layout: "
                 "as many cross-CPU hops as a direct call)",
         "metric": "added_p50_us", "op": "<=", "value": 50, "absolute": True},
        {"text": "the same in the split layout (proxy alone on its CPU: four cross-CPU wake-ups "
                 "per request, a direct call none; nginx "
                 f"adds {us(med('nginx, split', 'added_p50_us'))} here)",
         "subject": "sluice, split",
         "metric": "added_p50_us", "op": "<=", "value": 50, "absolute": True},
    ],
    "missing": missing,
    "notes": notes,
}, open(out, "w"), indent=1)
EOF
exit $rc
