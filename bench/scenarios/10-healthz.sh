#!/usr/bin/env bash
# Scenario "healthz": GET /healthz on one worker, keep-alive, access log on, sluice beside
# nginx in the same run. Rounds alternate sluice, nginx, sluice, nginx ...
# Target (P2): sluice serves >= 80% of nginx's requests/s.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$BENCH_ROOT/bench/lib.sh"
trap bench_cleanup EXIT

NAME=healthz
SL_PORT=$(bench_port)
ADMIN_PORT=$(bench_port)
NG_PORT=$(bench_port)
while [[ $ADMIN_PORT == "$SL_PORT" ]]; do ADMIN_PORT=$(bench_port); done
while [[ $NG_PORT == "$SL_PORT" || $NG_PORT == "$ADMIN_PORT" ]]; do NG_PORT=$(bench_port); done

SL_URL=http://127.0.0.1:$SL_PORT/healthz
NG_URL=http://127.0.0.1:$NG_PORT/healthz
SL_LOG=$BENCH_TMP/sluice.log # sluice logs (access log included) go to stderr

cat >"$BENCH_TMP/sluice.yaml" <<EOF
workers: 1
listen: ["127.0.0.1:$SL_PORT"]
admin_listen: "127.0.0.1:$ADMIN_PORT"
log: {access: true, level: warn}
EOF

bench_start_nginx "$BENCH_ROOT/bench/nginx/healthz.conf" "$NG_PORT"
NG_ACCESS=$BENCH_TMP/nginx-$NG_PORT/nginx-access.log

missing=""
if ! bench_start_sluice "$BENCH_TMP/sluice.yaml" "$SL_LOG" "$SL_URL"; then
    missing="sluice serve did not answer /healthz (binary: $SLUICE_BIN); only nginx was measured"
fi
rc=0
[[ -z $missing ]] || rc=1 # report what was measured, but fail the scenario

# Access-log bytes written during a round, as a check that both really log every request;
# the logs are emptied after each round so that a long run does not fill the disk.
log_check() { # log_check SERVER FILE
    local bytes
    bytes=$(stat -c %s "$2" 2>/dev/null || echo 0)
    bench_log "  $1 access log: $bytes bytes this round"
    : >"$2"
}

if [[ -z $missing ]]; then
    DURATION=$WARMUP bench_measure "$NAME" sluice 0 "$SL_URL" "$SLUICE_PID" --warmup || true
fi
DURATION=$WARMUP bench_measure "$NAME" nginx 0 "$NG_URL" "$NGINX_WORKER" --warmup || true
if [[ -z $missing ]]; then : >"$SL_LOG"; fi
: >"$NG_ACCESS"

for ((r = 1; r <= ROUNDS; r++)); do
    if [[ -z $missing ]]; then
        bench_measure "$NAME" sluice "$r" "$SL_URL" "$SLUICE_PID" || rc=1
        sleep 0.5 # sluice flushes its log once per loop iteration: let the last batch land
        log_check sluice "$SL_LOG"
    fi
    bench_measure "$NAME" nginx "$r" "$NG_URL" "$NGINX_WORKER" || rc=1
    sleep 1.5 # nginx flushes its buffered access log at most every second or 64 KiB
    log_check nginx "$NG_ACCESS"
done

# sluice must exit 0 on SIGTERM: check it here too, it is cheap.
note=""
if [[ -z $missing ]]; then
    kill -TERM "$SLUICE_PID"
    for ((i = 0; i < 100; i++)); do
        kill -0 "$SLUICE_PID" 2>/dev/null || break
        sleep 0.1
    done
    st=0
    wait "$SLUICE_PID" || st=$?
    if ((st != 0)); then
        note="sluice exited with status $st on SIGTERM after the rounds (expected 0)"
        bench_log "$note"
    fi
fi

"$BENCH_PY" - "$BENCH_RESULTS/$NAME.meta.json" "$missing" "$note" <<EOF
import json, sys
json.dump({
    "name": "$NAME",
    "title": "GET /healthz, one worker",
    "description": (
        "A keep-alive GET /healthz answered by the server itself (no upstream), with the "
        "access log on in both servers. sluice: \`sluice serve\` with \`workers: 1\`; nginx: "
        "one worker, \`return 200 '{\"status\":\"ok\"}'\`."
    ),
    "subject": "sluice",
    "baseline": "nginx",
    "servers": ["sluice", "nginx"],
    "load": {"tool": "wrk", "threads": $THREADS, "connections": $CONNECTIONS,
             "duration_s": $DURATION, "rounds": $ROUNDS, "warmup_s": $WARMUP},
    "target": {"text": "sluice /healthz requests/s >= 80% of nginx's, one worker each",
               "metric": "rps", "op": ">=", "value": 0.8},
    "missing": {"sluice": sys.argv[2]} if sys.argv[2] else {},
    "notes": [sys.argv[3]] if sys.argv[3] else [],
}, open(sys.argv[1], "w"), indent=1)
EOF
exit $rc
