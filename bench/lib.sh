# shellcheck shell=bash
# Helpers for bench/scenarios/*.sh (sourced; bash). Every wait is bounded in time, every
# address is loopback, and every server a scenario starts is stopped by bench_cleanup.
#
# Set by bench/run for each scenario:
#   BENCH_ROOT      repository root
#   BENCH_RESULTS   results directory: a scenario writes <name>.meta.json there, and
#                   bench_measure appends its rounds to <name>.rounds.jsonl
#   BENCH_TMP       scratch directory of this scenario (configs, server logs)
#   SLUICE_BIN      the sluice binary (release build)
#   DURATION ROUNDS CONNECTIONS THREADS WARMUP   load parameters
#   SERVER_CPU CLIENT_CPU   CPUs to pin servers and wrk to (empty: no pinning)

BENCH_PY=/usr/bin/python3
BENCH_PIDS=()

bench_log() { echo "bench: $*" >&2; }

# A free TCP port on 127.0.0.1 (bound and released; fine for a bench on a quiet loopback).
bench_port() {
    "$BENCH_PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# bench_spawn LOG CMD...: start CMD in the background, pinned to the server CPU (when
# pinning), stdout and stderr appended to LOG. Sets BENCH_SPAWNED to its pid: the exec's
# keep that the server's own pid (not a subshell's), so it can be measured and signalled.
# BENCH_CPU=LIST bench_spawn ... pins to LIST instead (e.g. a backend beside the client);
# BENCH_CPU= (set but empty) does not pin.
bench_spawn() {
    local log=$1 cpu=${BENCH_CPU-${SERVER_CPU:-}}
    shift
    if [[ -n $cpu ]]; then
        (exec taskset -c "$cpu" "$@") >>"$log" 2>&1 &
    else
        (exec "$@") >>"$log" 2>&1 &
    fi
    BENCH_SPAWNED=$!
    BENCH_PIDS+=("$BENCH_SPAWNED")
}

# bench_wait_http URL SECONDS [PID]: wait until URL answers 200; 1 on timeout or when PID dies.
bench_wait_http() {
    local url=$1 pid=${3:-} deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then return 0; fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        sleep 0.1
    done
    return 1
}

# bench_stop PID [SIGNAL]: signal one of our servers, wait up to 10 s, then SIGKILL.
bench_stop() {
    local pid=$1 sig=${2:-TERM} i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

bench_cleanup() {
    local pid
    for pid in ${BENCH_PIDS[@]+"${BENCH_PIDS[@]}"}; do bench_stop "$pid"; done
    BENCH_PIDS=()
}

# bench_start_nginx CONF_TEMPLATE PORT [UPSTREAM_PORT [CONNECTIONS]]: start nginx (master + 1
# worker) from a template with @PORT@, @DIR@, @UPSTREAM_PORT@ (a loopback backend, for
# proxy_pass), @CONNECTIONS@ (worker_connections, default 4096) and @NOFILE@ (that + 100);
# sets NGINX_MASTER and NGINX_WORKER (the pid that serves, measured).
bench_start_nginx() {
    local tmpl=$1 port=$2 up=${3:-0} conns=${4:-4096} dir=$BENCH_TMP/nginx-$2
    mkdir -p "$dir"
    sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$dir|g" -e "s|@UPSTREAM_PORT@|$up|g" \
        -e "s|@CONNECTIONS@|$conns|g" -e "s|@NOFILE@|$((conns + 100))|g" "$tmpl" >"$dir/nginx.conf"
    bench_spawn "$dir/nginx.out" nginx -e "$dir/nginx-error.log" -p "$dir" -c "$dir/nginx.conf"
    NGINX_MASTER=$BENCH_SPAWNED
    if ! bench_wait_http "http://127.0.0.1:$port/healthz" 10 "$NGINX_MASTER"; then
        bench_log "nginx did not start; see $dir/nginx-error.log"
        cat "$dir/nginx.out" "$dir/nginx-error.log" >&2 2>/dev/null
        return 1
    fi
    NGINX_WORKER=
    local i kids
    for ((i = 0; i < 50; i++)); do
        kids=$(pgrep -P "$NGINX_MASTER" | head -n 1 || true)
        [[ -n $kids ]] && NGINX_WORKER=$kids && break
        sleep 0.1
    done
    if [[ -z $NGINX_WORKER ]]; then
        bench_log "nginx worker process not found"
        return 1
    fi
}

# bench_start_sluice CONFIG LOG URL: start `sluice serve --config CONFIG`, stderr (its logs,
# access log included) to LOG; wait for URL. Sets SLUICE_PID.
bench_start_sluice() {
    local conf=$1 log=$2 url=$3 st=0
    bench_spawn_ready "$log" "$url" "sluice did not answer $url" "${SLUICE_BIN:?}" serve --config "$conf" || st=$?
    # shellcheck disable=SC2034 # used by the scenarios
    SLUICE_PID=$BENCH_SPAWNED
    return "$st"
}

# bench_spawn_ready LOG URL WHAT CMD...: bench_spawn CMD (output to LOG; sets BENCH_SPAWNED)
# and wait up to 10 s for URL to answer. When it does not: log "WHAT within 10 s" and the
# tail of LOG, stop the process and return 1.
bench_spawn_ready() {
    local log=$1 url=$2 what=$3
    shift 3
    bench_spawn "$log" "$@"
    if ! bench_wait_http "$url" 10 "$BENCH_SPAWNED"; then
        bench_log "$what within 10 s; its output:"
        tail -n 20 "$log" >&2
        bench_stop "$BENCH_SPAWNED"
        return 1
    fi
}

# bench_measure SCENARIO SERVER ROUND URL PID [--warmup]: one wrk run against URL, CPU of
# PID (and its descendants) measured around it; appends to $BENCH_RESULTS/SCENARIO.rounds.jsonl.
bench_measure() {
    local scenario=$1 server=$2 round=$3 url=$4 pid=$5
    shift 5
    "$BENCH_PY" "$BENCH_ROOT/bench/measure.py" --scenario "$scenario" --server "$server" \
        --round "$round" --url "$url" --pid "$pid" --duration "$DURATION" \
        --connections "$CONNECTIONS" --threads "$THREADS" ${CLIENT_CPU:+--cpu "$CLIENT_CPU"} \
        ${SERVER_CPU:+--server-cpu "$SERVER_CPU"} \
        --out "$BENCH_RESULTS/$scenario.rounds.jsonl" "$@"
}

# bench_ports N: N distinct free loopback ports, one per line (read them with mapfile).
bench_ports() {
    local n=$1 p seen=" "
    while ((n > 0)); do
        p=$(bench_port)
        [[ $seen == *" $p "* ]] && continue
        seen="$seen$p "
        echo "$p"
        n=$((n - 1))
    done
}

# bench_start_sim CONFIG LOG ADMIN_PORT: start `sluice sim --config CONFIG` (pinned like
# bench_spawn: BENCH_CPU= chooses the CPU) and wait for its admin /healthz. Sets SIM_PID.
bench_start_sim() {
    local conf=$1 log=$2 admin=$3 st=0
    bench_spawn_ready "$log" "http://127.0.0.1:$admin/healthz" "sluice sim did not answer on 127.0.0.1:$admin" \
        "${SLUICE_BIN:?}" sim --config "$conf" || st=$?
    # shellcheck disable=SC2034 # used by the scenarios
    SIM_PID=$BENCH_SPAWNED
    return "$st"
}

# bench_meta_py META NMISSING MISSING... NOTES... <<'EOF' BODY EOF: run the Python BODY (from
# stdin) that writes a proxy scenario's META file, after a prelude that defines: out (META),
# missing (dict of the NMISSING "name why" argument pairs), notes (list of the rest), e
# (os.environ), rounds (the parsed $BENCH_RESULTS/$NAME.rounds.jsonl, [] when absent) and
# med(server, key) (median of key over server's rounds, None when there are none).
bench_meta_py() {
    {
        cat <<'EOF'
import json, os, statistics, sys
out, nmiss = sys.argv[1], int(sys.argv[2])
missing = dict(zip(sys.argv[3:3 + nmiss:2], sys.argv[4:3 + nmiss:2]))
notes = sys.argv[3 + nmiss:]
e = os.environ
rounds = []
try:
    with open(os.path.join(e["BENCH_RESULTS"], e["NAME"] + ".rounds.jsonl")) as f:
        rounds = [json.loads(line) for line in f if line.strip()]
except OSError:
    pass
def med(server, key):
    v = [r[key] for r in rounds if r["server"] == server and r.get(key) is not None]
    return statistics.median(v) if v else None
EOF
        cat
    } | "$BENCH_PY" - "$@"
}

# bench_sim_config FILE SIM_PORT ADMIN_PORT GW_PORT TTFT TOKENS_PER_SECOND [MAX_CONNECTIONS]:
# a `sluice sim` configuration with one worker, one Azure endpoint on SIM_PORT and one chat
# deployment `gpt-4o` (no quota, no jitter, seed 1), access log on. `listen` (GW_PORT) is the
# gateway's, which `sluice sim` does not open: loopback anyway.
bench_sim_config() {
    local file=$1 sim=$2 admin=$3 gw=$4 ttft=$5 tps=$6 maxc=${7:-10000}
    cat >"$file" <<EOF
workers: 1
listen: ["127.0.0.1:$gw"]
admin_listen: "127.0.0.1:$admin"
log: {access: true, level: warn}
limits: {max_connections: $maxc}
simulator:
  seed: 1
  endpoints:
    - name: bench
      listen: "127.0.0.1:$sim"
      region: eastus
      deployments:
        - name: gpt-4o
          model: gpt-4o
          version: "2024-08-06"
          tpm: 0
          ttft: $ttft
          tokens_per_second: $tps
          jitter_percent: 0
EOF
    "$SLUICE_BIN" check-config "$file" >/dev/null
}

# The client key of the proxy scenarios: clients send `api-key: bench-key`; sluice stores its hash.
BENCH_CLIENT_KEY=bench-key

# bench_gateway_config FILE GW_PORT ADMIN_PORT SIM_PORT [MAX_CONNECTIONS [EXTRA]]: a `sluice
# serve` configuration with one worker, access log on, one Azure backend (the simulator on
# SIM_PORT, key `k`), the route `gpt-4o` to it, and one client whose key is $BENCH_CLIENT_KEY.
# No `simulator:` section: the simulator is a process of its own. EXTRA (YAML lines) is
# appended, e.g. a `usage:` section; MAX_CONNECTIONS may be "" for the default.
bench_gateway_config() {
    local file=$1 gw=$2 admin=$3 sim=$4 maxc=${5:-10000} extra=${6:-} hash
    hash=$("${SLUICE_BIN:?}" hash-key "$BENCH_CLIENT_KEY") || return 1
    cat >"$file" <<EOF
workers: 1
listen: ["127.0.0.1:$gw"]
admin_listen: "127.0.0.1:$admin"
log: {access: true, level: warn}
limits: {max_connections: $maxc}
backends:
  - {name: sim, url: "http://127.0.0.1:$sim", type: azure, api_key: k, model: gpt-4o, version: "2024-08-06"}
routes:
  - {name: gpt-4o, backend: sim}
clients:
  - {name: bench, keys: ["$hash"]}
EOF
    [[ -z $extra ]] || printf '%s\n' "$extra" >>"$file"
    "$SLUICE_BIN" check-config "$file" >/dev/null
}

# The request of the non-streaming proxy scenarios: a small chat completion for the deployment
# `gpt-4o`, POSTed with the client key.
# shellcheck disable=SC2034 # used by the scenarios
BENCH_CHAT_PATH="/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
# shellcheck disable=SC2089 # a JSON body: its quotes are meant literally
BENCH_CHAT_BODY='{"messages":[{"role":"user","content":"Hello"}],"max_tokens":16}'

# bench_chat_lua FILE: the wrk script that sends it (to any server: the simulator accepts any
# key, nginx and sluice swap it for the backend's).
bench_chat_lua() {
    cat >"$1" <<EOF
wrk.method = "POST"
wrk.body = '$BENCH_CHAT_BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["api-key"] = "$BENCH_CLIENT_KEY"
EOF
}

# bench_chat_check NAME URL: send the chat request once with curl (head and body kept in
# $BENCH_TMP/NAME.head and NAME.body); 1 unless the answer is 200. Sets CHECK_BYTES to the
# size of head and body.
bench_chat_check() {
    local code
    code=$(curl -sS --max-time 5 -D "$BENCH_TMP/$1.head" -o "$BENCH_TMP/$1.body" -w '%{http_code}' \
        -H 'Content-Type: application/json' -H "api-key: $BENCH_CLIENT_KEY" \
        --data "$BENCH_CHAT_BODY" "$2" 2>&1) || code="curl failed: $code"
    if [[ $code != 200 ]]; then
        bench_log "$1 answered the chat request with $code: $(head -c 300 "$BENCH_TMP/$1.body" 2>/dev/null)"
        return 1
    fi
    CHECK_BYTES=$(($(stat -c %s "$BENCH_TMP/$1.head") + $(stat -c %s "$BENCH_TMP/$1.body")))
    bench_log "one response from $1: $CHECK_BYTES bytes (head and body)"
}

# bench_term PID: SIGTERM one of our servers and wait up to 10 s for it; returns its exit
# status (sluice must exit 0), or 1 when it did not exit (it is then SIGKILLed).
bench_term() {
    local pid=$1 i st=0
    kill -TERM "$pid" 2>/dev/null || return 1
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        bench_log "pid $pid did not exit within 10 s of SIGTERM"
        bench_stop "$pid" KILL
        return 1
    fi
    wait "$pid" || st=$?
    return "$st"
}

# bench_metric ADMIN_PORT NAME: the sum of every series of the Prometheus metric NAME at
# http://127.0.0.1:ADMIN_PORT/metrics (0 when it has none); 1 when the scrape fails.
bench_metric() {
    local text
    text=$(curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics") || return 1
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%.0f\n", s }' <<<"$text"
}

# bench_profile PID SECONDS OUT CMD...: record a CPU profile of PID (perf record with DWARF
# call graphs, SECONDS long) while CMD puts load on it, and write summaries (by shared object,
# by symbol, inclusive, call graphs) to OUT. Returns 1 without perf.
bench_profile() {
    local pid=$1 secs=$2 out=$3 data=$BENCH_TMP/perf.data perf_pid
    shift 3
    if ! command -v perf >/dev/null 2>&1; then
        bench_log "profile: perf is not installed"
        return 1
    fi
    perf record -q -g --call-graph dwarf -F 999 -p "$pid" -o "$data" -- sleep "$secs" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 0.5
    "$@" || true
    wait "$perf_pid" || true
    {
        echo "# by shared object"
        perf report -i "$data" --no-children --stdio -g none --sort dso \
            2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 20
        echo "# by symbol (self time, >= 0.5 %)"
        perf report -i "$data" --no-children --stdio -g none \
            --percent-limit 0.5 2>/dev/null | grep -v '^#' | grep -v '^$'
        echo "# inclusive (self + callees, >= 1.5 %)"
        perf report -i "$data" --children --stdio -g none \
            --percent-limit 1.5 2>/dev/null | grep -v '^#' | grep -v '^$'
        echo "# call graphs (perf report --no-children --stdio)"
        perf report -i "$data" --no-children --stdio 2>/dev/null | grep -v '^$' | head -n 300
    } >"$out" || true
    rm -f "$data"
    bench_log "profile: ${out#"$BENCH_ROOT"/}"
}
