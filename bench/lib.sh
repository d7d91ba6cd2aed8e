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
bench_spawn() {
    local log=$1
    shift
    if [[ -n ${SERVER_CPU:-} ]]; then
        (exec taskset -c "$SERVER_CPU" "$@") >>"$log" 2>&1 &
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

# bench_start_nginx CONF_TEMPLATE PORT: start nginx (master + 1 worker) from a template with
# @PORT@ and @DIR@; sets NGINX_MASTER and NGINX_WORKER (the pid that serves, measured).
bench_start_nginx() {
    local tmpl=$1 port=$2 dir=$BENCH_TMP/nginx-$2
    mkdir -p "$dir"
    sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$dir|g" "$tmpl" >"$dir/nginx.conf"
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
    local conf=$1 log=$2 url=$3
    bench_spawn "$log" "${SLUICE_BIN:?}" serve --config "$conf"
    SLUICE_PID=$BENCH_SPAWNED
    if ! bench_wait_http "$url" 10 "$SLUICE_PID"; then
        bench_log "sluice did not answer $url within 10 s; its output:"
        tail -n 20 "$log" >&2
        bench_stop "$SLUICE_PID"
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
