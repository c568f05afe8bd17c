#!/usr/bin/env bash
# make bench-idle: resident memory per idle client connection, pgwarden and
# PgBouncer, each holding N idle clients (default 1000) with their backends.
#   BENCH_IDLE_QUERY="SELECT 1": each client runs it once before it idles.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${BENCH_IDLE_CLIENTS:-1000}
PGWARDEN=${PGWARDEN:-$ROOT/bin/pgwarden}
PASSWORD=bench-password
. bench/lib.sh
PG_PORT=$(free_port 17832)
PGW_PORT=$(free_port 17932)
PGB_PORT=$(free_port 18032)
MET_PORT=$(free_port 18132)
go build -o "$WORK/idleconns" ./bench/idleconns
"$PGWARDEN" certs init --dir "$WORK/pki" >/dev/null
[ "$(id -u)" = 0 ] && chown -R postgres "$WORK/pki"
start_pg "$WORK" "$PG_PORT" "$PASSWORD" -c max_connections=$((N + 100)) -c shared_buffers=32MB
HASH=$(printf '%s\n' "$PASSWORD" | "$PGWARDEN" hash-password)
printf '[[user]]\nname = "postgres"\npassword = "%s"\n' "$HASH" > "$WORK/users.toml"
cat > "$WORK/config.toml" <<CONFIG
[server]
pg_listen = ["127.0.0.1:$PGW_PORT"]
http_listen = []
unix_socket_dir = ""
max_connections = $((N * 2))
${BENCH_EVENT_LOOP:+event_loop = $BENCH_EVENT_LOOP}
metrics_listen = "127.0.0.1:$MET_PORT"
[tls]
cert_file = "pki/server.crt"
key_file = "pki/server.key"
[backend]
port = $PG_PORT
sslmode = "disable"
password = "$PASSWORD"
max_backend_connections = $((N + 50))
[log]
level = "warn"
[[hba]]
method = "scram-sha-256"
CONFIG
start_pgwarden "$PGW_PORT" || { cat "$WORK/pgwarden.log" >&2; exit 1; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# measure NAME PID PORT [SSLMODE]: RSS growth per idle client, in KiB.
measure() {
	local before after
	before=$(rss "$2")
	coproc HOLD { "$WORK/idleconns" -n "$N" -query "${BENCH_IDLE_QUERY:-}" -conn "host=127.0.0.1 port=$3 user=postgres password=$PASSWORD dbname=postgres sslmode=${4:-disable}"; }
	read -r line <&"${HOLD[0]}"
	sleep "${BENCH_IDLE_SETTLE:-3}" # steady state: let the runtime collect what the logins left behind
	after=$(rss "$2")
	case $1 in pgwarden*) memstats "$1" >&2 ;; esac
	echo >&"${HOLD[1]}"
	wait "$HOLD_PID" 2>/dev/null || true
	echo "$1 $line $before $after" | awk '{ printf "%-14s %6d clients  RSS %8d KiB -> %8d KiB  %6.1f KiB per idle client\n", $1, $3, $4, $5, ($5 - $4) / $3 }'
}
# memstats: where pgwarden's memory is, from its own metrics (and, with
# PGWARDEN_PPROF=127.0.0.1:PORT, its heap and goroutine profiles in
# bench/results/).
memstats() {
	if [ -n "${PGWARDEN_PPROF:-}" ]; then
		curl -s "http://$PGWARDEN_PPROF/debug/pprof/heap" > "bench/results/idle-heap-$1.pprof"
		curl -s "http://$PGWARDEN_PPROF/debug/pprof/goroutine?debug=1" > "bench/results/idle-goroutines-$1.txt"
	fi
	curl -s "http://127.0.0.1:$MET_PORT/metrics" | awk -v n="$N" '
		/^go_goroutines / { g = $2 }
		/^go_memstats_stack_inuse_bytes / { st = $2 }
		/^go_memstats_heap_inuse_bytes / { h = $2 }
		END { printf "pgwarden: %d goroutines, stacks %.1f KiB and heap %.1f KiB per client (totals, divided by %d)\n", g, st / 1024 / n, h / 1024 / n, n }'
}
restart_pgwarden() {
	kill -INT "$PGW_PID" && wait "$PGW_PID" 2>/dev/null || true
	PGW_PID=""
	start_pgwarden "$PGW_PORT" || { cat "$WORK/pgwarden.log" >&2; exit 1; }
	sleep 0.5
}
mkdir -p bench/results
OUT=bench/results/idle-$(date -u +%Y%m%dT%H%M%SZ).txt
echo "idle client connections, each with its backend ($(nproc) cores)" | tee "$OUT"
# Each measurement in a fresh process: memory the plaintext clients left
# behind would otherwise be reused by the TLS ones and hide part of their
# cost.
measure pgwarden "$PGW_PID" "$PGW_PORT" | tee -a "$OUT"
restart_pgwarden
measure pgwarden-tls "$PGW_PID" "$PGW_PORT" require | tee -a "$OUT"
# pgwarden's backends go before PgBouncer's are measured: with
# BENCH_IDLE_QUERY PgBouncer needs one each, within max_connections.
kill -INT "$PGW_PID" && wait "$PGW_PID" 2>/dev/null || true
PGW_PID=""
for _ in $(seq 100); do
	left=$("$BINDIR/psql" -h "$WORK/sock" -p "$PG_PORT" -U postgres -Atc "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'" postgres)
	[ "$left" -le 1 ] && break
	sleep 0.1
done
if ensure_pgbouncer; then
	for mode in disable require; do
		stop_pgbouncer "$WORK"
		start_pgbouncer "$WORK" "$PGB_PORT" "$PG_PORT" "$PASSWORD" "$WORK/pki/server.crt" "$WORK/pki/server.key"
		sleep 0.5
		name=pgbouncer
		[ $mode = require ] && name=pgbouncer-tls
		measure $name "$(cat "$WORK/pgb/pgbouncer.pid")" "$PGB_PORT" $mode | tee -a "$OUT"
	done
fi
echo "written to $OUT"
