#!/usr/bin/env bash
# Scenario "proxy-ledger": what the usage ledger costs. The proxy-chat load (keep-alive
# non-streaming chat completions through sluice to `sluice sim`) against two sluice processes
# with the same configuration, except that one has `usage: {db: ...}` (the ledger: one record
# per request, queued to a writer thread that commits batches to SQLite) and the other none.
# The Prometheus metrics are always on, and the usage accounting that feeds them (reading the
# answer's `usage`, the record, its cost) runs in both; the ledger is what the `usage.db` one
# adds. Rounds alternate the two, swapping which one goes first every round (drift cancels).
#
# CPUs as in proxy-chat: each sluice (one worker; the ledger's writer thread is pinned with it
# and counted) on SERVER_CPU, the simulator and wrk on CLIENT_CPU.
# Target (issue 8): CPU per request with usage.db <= 1.10x without. After every round of the
# usage.db process the ledger must hold a row for every request wrk completed, and
# `sluice_ledger_dropped_total` must not have moved: a missing or dropped record counts as an
# error of that round (and fails the target).
#
# LEDGER_ROUNDS (2 x ROUNDS) rounds per server of LEDGER_DURATION (DURATION / 2) seconds: more,
# shorter round pairs than the other scenarios in about the same time, since the difference
# measured is small.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$BENCH_ROOT/bench/lib.sh"
trap bench_cleanup EXIT

NAME=proxy-ledger
LEDGER_ROUNDS=${LEDGER_ROUNDS:-$((ROUNDS * 2))}
LEDGER_DURATION=${LEDGER_DURATION:-$(((DURATION + 1) / 2))}
mapfile -t P < <(bench_ports 7)
SIM_PORT=${P[0]} SIM_ADMIN=${P[1]} SIM_GW=${P[2]}
OFF=sluice ON="sluice + usage.db"
declare -A GW=([$OFF]=${P[3]} [$ON]=${P[5]}) ADMIN=([$OFF]=${P[4]} [$ON]=${P[6]})
declare -A CONF=([$OFF]=$BENCH_TMP/sluice.yaml [$ON]=$BENCH_TMP/sluice-ledger.yaml)
declare -A LOG=([$OFF]=$BENCH_TMP/sluice.log [$ON]=$BENCH_TMP/sluice-ledger.log)
declare -A PID=() URL=()
DB=$BENCH_TMP/usage.db
SIM_LOG=$BENCH_TMP/sim.log
# Both price gpt-4o, so that every record carries a cost, as it would in production.
PRICES='prices:
  - {model: gpt-4o, input: 2.50, cached_input: 1.25, output: 10.00}'

bench_sim_config "$BENCH_TMP/sim.yaml" "$SIM_PORT" "$SIM_ADMIN" "$SIM_GW" 0ms 100000
bench_gateway_config "${CONF[$OFF]}" "${GW[$OFF]}" "${ADMIN[$OFF]}" "$SIM_PORT" "" "$PRICES"
bench_gateway_config "${CONF[$ON]}" "${GW[$ON]}" "${ADMIN[$ON]}" "$SIM_PORT" "" "$PRICES
usage: {db: \"$DB\"}"
bench_chat_lua "$BENCH_TMP/chat.lua"

missing=()
notes=()
rc=0
BENCH_CPU=${CLIENT_CPU:-} bench_start_sim "$BENCH_TMP/sim.yaml" "$SIM_LOG" "$SIM_ADMIN" || {
    bench_log "no simulator: nothing to measure"
    exit 1
}
bench_chat_check sim "http://127.0.0.1:$SIM_PORT$BENCH_CHAT_PATH" || exit 1
for s in "$OFF" "$ON"; do
    URL[$s]=http://127.0.0.1:${GW[$s]}$BENCH_CHAT_PATH
    if ! bench_start_sluice "${CONF[$s]}" "${LOG[$s]}" "http://127.0.0.1:${GW[$s]}/healthz"; then
        missing+=("$s" "sluice serve did not answer /healthz (binary: $SLUICE_BIN)")
    elif ! bench_chat_check "${s//[ +.]/}" "${URL[$s]}"; then
        missing+=("$s" "sluice did not answer the proxied chat request with 200")
    else
        PID[$s]=$SLUICE_PID
    fi
done
if ((${#missing[@]})); then
    rc=1
    bench_log "both sluice processes are needed: nothing to compare"
fi

# ledger_rows: rows in the ledger (sqlite3 reads a WAL file while sluice writes it).
ledger_rows() {
    "$BENCH_PY" -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=5)
print(db.execute("SELECT count(*) FROM requests").fetchone()[0])' "$DB"
}
# ledger_mark: ROWS and DROPPED now (after the writer's flush interval, 100 ms, has passed).
ledger_mark() {
    sleep 0.5
    ROWS=$(ledger_rows) && DROPPED=$(bench_metric "${ADMIN[$ON]}" sluice_ledger_dropped_total)
}
measure() { # measure SERVER ROUND [--warmup]
    local server=$1 round=$2
    shift 2
    DURATION=$LEDGER_DURATION bench_measure "$NAME" "$server" "$round" "${URL[$server]}" \
        "${PID[$server]}" --script "$BENCH_TMP/chat.lua" "$@"
}
LEDGER_LOG=$BENCH_TMP/ledger-rounds.jsonl
if ((${#PID[@]} == 2)); then
    for s in "$OFF" "$ON"; do measure "$s" 0 --warmup || true; done
    ledger_mark || rc=1
    for s in "$OFF" "$ON"; do : >"${LOG[$s]}"; done
    : >"$SIM_LOG"
    for ((r = 1; r <= LEDGER_ROUNDS; r++)); do
        order=("$OFF" "$ON")
        ((r % 2)) || order=("$ON" "$OFF")
        for s in "${order[@]}"; do
            measure "$s" "$r" || rc=1
            if [[ $s == "$ON" ]]; then
                rows0=$ROWS dropped0=$DROPPED
                if ledger_mark; then
                    echo "{\"round\": $r, \"rows\": $((ROWS - rows0)), \"dropped\": $((DROPPED - dropped0))}" >>"$LEDGER_LOG"
                    bench_log "  ledger: $((ROWS - rows0)) rows this round, $((DROPPED - dropped0)) dropped"
                else
                    bench_log "  ledger: could not count the rows or read the metrics"
                    rc=1
                fi
            else
                sleep 0.5
            fi
            # The access logs (one line a request) are emptied after each round.
            : >"${LOG[$s]}"
            : >"$SIM_LOG"
        done
    done
    REQUESTS_TOTAL=$(bench_metric "${ADMIN[$ON]}" sluice_requests_total) || REQUESTS_TOTAL=
fi

# Both must exit 0 on SIGTERM; the usage.db one writes every record still queued first.
for s in "$OFF" "$ON"; do
    [[ -n ${PID[$s]:-} ]] || continue
    st=0
    bench_term "${PID[$s]}" || st=$?
    if ((st != 0)); then notes+=("$s exited with status $st on SIGTERM (expected 0)"); rc=1; fi
done
if [[ -n ${PID[$ON]:-} && -n ${REQUESTS_TOTAL:-} ]]; then
    FINAL_ROWS=$(ledger_rows) || FINAL_ROWS=
    [[ $FINAL_ROWS == "$REQUESTS_TOTAL" ]] || rc=1
fi

# The rounds of the usage.db process get the ledger's count: rows written during the round
# (requests wrk completed, plus those cut when wrk stopped: at most one per connection),
# records missing (completed requests without a row) and dropped. Either is an error.
"$BENCH_PY" - "$BENCH_RESULTS/$NAME.rounds.jsonl" "$LEDGER_LOG" "$ON" <<'EOF' || rc=1
import json, sys
path, ledger_path, on = sys.argv[1:4]
try:
    rounds = [json.loads(line) for line in open(path) if line.strip()]
except OSError:
    sys.exit(0)
try:
    ledger = {l["round"]: l for l in map(json.loads, open(ledger_path)) if l}
except OSError:
    ledger = {}
bad = 0
for r in rounds:
    if r["server"] != on:
        continue
    l = ledger.get(r["round"])
    if l is None:
        r["errors"] = r.get("errors", 0) + 1
        bad += 1
        continue
    r["ledger_rows"] = l["rows"]
    r["ledger_dropped"] = l["dropped"]
    r["ledger_missing"] = max(0, r["requests"] - l["rows"]) + l["dropped"]
    r["errors"] = r.get("errors", 0) + r["ledger_missing"]
    bad += r["ledger_missing"] > 0
for r in rounds:
    r.setdefault("ledger_rows", None)
with open(path, "w") as f:
    for r in rounds:
        f.write(json.dumps(r) + "\n")
sys.exit(1 if bad else 0)
EOF

# shellcheck disable=SC2090
export NAME OFF ON LEDGER_ROUNDS LEDGER_DURATION BENCH_CHAT_PATH BENCH_CHAT_BODY
export FINAL_ROWS=${FINAL_ROWS:-} REQUESTS_TOTAL=${REQUESTS_TOTAL:-}
bench_meta_py "$BENCH_RESULTS/$NAME.meta.json" "${#missing[@]}" ${missing[@]+"${missing[@]}"} \
    ${notes[@]+"${notes[@]}"} <<'EOF'
off, on = e["OFF"], e["ON"]
a, b = med(off, "cpu_us_per_req"), med(on, "cpu_us_per_req")
if a and b:
    notes.insert(0,
        f"CPU per proxied request: {b:.1f} µs with the ledger, {a:.1f} µs without (medians): "
        f"the ledger adds {b - a:+.1f} µs ({(b / a - 1) * 100:+.0f} %) per request; the target "
        f"(1.10×) allows {1.1 * a:.1f} µs.")
done = sum(r["requests"] for r in rounds if r["server"] == on)
rows = sum(r.get("ledger_rows") or 0 for r in rounds if r["server"] == on)
dropped = sum(r.get("ledger_dropped") or 0 for r in rounds if r["server"] == on)
if done:
    notes.insert(1,
        f"Ledger: {rows:,} rows written during the measured rounds for {done:,} requests wrk "
        f"completed ({rows - done:+,}: requests in flight when wrk stopped are recorded too); "
        f"{dropped} records dropped (`sluice_ledger_dropped_total`).")
if e["REQUESTS_TOTAL"]:
    final, total = e["FINAL_ROWS"], int(e["REQUESTS_TOTAL"])
    notes.insert(2,
        f"After shutdown (SIGTERM) the ledger holds {f'{int(final):,}' if final else '?'} rows "
        f"for the {total:,} requests "
        "the process counted in `sluice_requests_total` (warm-up and checks included)"
        + (": one each." if final == e["REQUESTS_TOTAL"] else ": they should be equal."))
json.dump({
    "name": e["NAME"],
    "title": "Proxy: the cost of the usage ledger",
    "description": (
        f"The proxy-chat load (keep-alive `POST {e['BENCH_CHAT_PATH']}`, body "
        f"`{e['BENCH_CHAT_BODY']}`, from wrk) against two `sluice serve` processes (one worker "
        "each, access log on, `gpt-4o` priced) proxying to the same simulator: **sluice** "
        f"without a ledger and **{on}** with `usage: {{db: <tmp>/usage.db}}` (the defaults: "
        "`flush_interval: 100ms`, `queue_size: 65536`), which queues one record per request "
        "to a writer thread that commits them in batches to SQLite (WAL). The Prometheus "
        "metrics are always on, and the usage accounting behind both (reading the answer's "
        "`usage`, the record with its cost, the metrics' counters) runs in both processes: "
        "the ratio is what the ledger adds on top of it. **CPUs** as in proxy-chat: sluice "
        f"(its writer thread too) alone on CPU {e.get('SERVER_CPU') or '(unpinned)'}, the "
        f"simulator and wrk on CPU {e.get('CLIENT_CPU') or '(unpinned)'}; *µs CPU / request* "
        "counts every thread of the process. "
        f"{e['LEDGER_ROUNDS']} rounds of {e['LEDGER_DURATION']} s per server, alternating, the "
        "first of each pair swapped every round. After each round of the usage.db process the "
        "ledger's rows are counted (`sqlite3`, once the flush interval has passed): *ledger "
        "rows* were written during the round, *missing* is requests wrk completed without a "
        "row plus records dropped (`sluice_ledger_dropped_total`); either makes the round an "
        "error."),
    "subject": on,
    "baseline": off,
    "servers": [off, on],
    "load": {"tool": "wrk", "threads": int(e["THREADS"]), "connections": int(e["CONNECTIONS"]),
             "duration_s": int(e["LEDGER_DURATION"]), "rounds": int(e["LEDGER_ROUNDS"])},
    "columns": [
        {"key": "rps", "title": "requests/s", "format": "{:,.0f}"},
        {"key": "cpu_us_per_req", "title": "µs CPU / request", "format": "{:.2f}"},
        {"key": "p50_ms", "title": "p50 (ms)", "format": "{:.3f}"},
        {"key": "p99_ms", "title": "p99 (ms)", "format": "{:.3f}"},
        {"key": "cpu_util", "title": "server busy", "format": "{:.0%}"},
        {"key": "other_util", "title": "other load on server CPU", "format": "{:.0%}",
         "ratio": False},
        {"key": "rss_kb", "title": "RSS (KiB)", "format": "{:,.0f}"},
        {"key": "requests", "title": "requests", "format": "{:,.0f}", "ratio": False},
        {"key": "ledger_rows", "title": "ledger rows", "format": "{:,.0f}", "ratio": False},
        {"key": "ledger_missing", "title": "missing", "format": "{:,.0f}", "ratio": False},
    ],
    "target": [
        {"text": "ledger + metrics: sluice with usage.db ÷ sluice without ≤ 1.10 CPU µs per "
                 "request",
         "metric": "cpu_us_per_req", "op": "<=", "value": 1.10},
        {"text": "the ledger has a row for every request wrk completed and dropped none, "
                 "every round",
         "metric": "ledger_missing", "op": "<=", "value": 0, "absolute": True},
    ],
    "missing": missing,
    "notes": notes,
}, open(out, "w"), indent=1)
EOF
exit $rc
