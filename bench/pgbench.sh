#!/usr/bin/env bash
# make bench: pgbench against PostgreSQL directly and through pgwarden, A/B
# interleaved over several rounds; prints medians and ratios and writes them
# to bench/results/. Everything runs on loopback and stops by itself.
#
#   BENCH_ROUNDS=3 BENCH_TIME=20 BENCH_CLIENTS=8 make bench
#   BENCH_EVENT_LOOP=false compares the goroutine relay (server.event_loop).
#   BENCH_WORKLOADS picks from S S1 B C T (default) and ST (select-only over
#   TLS, sessions kept).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${BENCH_ROUNDS:-3}
TIME=${BENCH_TIME:-20}
CTIME=${BENCH_CONNECT_TIME:-10}
CLIENTS=${BENCH_CLIENTS:-8}
PGWARDEN=${PGWARDEN:-$ROOT/bin/pgwarden}
WORKLOADS=${BENCH_WORKLOADS:-S S1 B C T}
PASSWORD=bench-password

. bench/lib.sh
PG_PORT=$(free_port 17432)
PGW_PORT=$(free_port 17532)
PGB_PORT=$(free_port 17632)
WITH_PGB=0
ensure_pgbouncer && WITH_PGB=1 || echo "PgBouncer not available: its column stays empty" >&2

# One certificate serves PostgreSQL and pgwarden, so TLS costs the same on both.
"$PGWARDEN" certs init --dir "$WORK/pki" >/dev/null
[ "$(id -u)" = 0 ] && chown -R postgres "$WORK/pki"
start_pg "$WORK" "$PG_PORT" "$PASSWORD" -c ssl=on -c "ssl_cert_file=$WORK/pki/server.crt" -c "ssl_key_file=$WORK/pki/server.key"
"$BINDIR/pgbench" -i -q -s 10 -h "$WORK/sock" -p "$PG_PORT" -U postgres postgres >/dev/null 2>&1

HASH=$(printf '%s\n' "$PASSWORD" | "$PGWARDEN" hash-password)
printf '[[user]]\nname = "postgres"\npassword = "%s"\n' "$HASH" > "$WORK/users.toml"
cat > "$WORK/config.toml" <<CONFIG
[server]
pg_listen = ["127.0.0.1:$PGW_PORT"]
http_listen = []
unix_socket_dir = ""
${BENCH_EVENT_LOOP:+event_loop = $BENCH_EVENT_LOOP}
[tls]
cert_file = "pki/server.crt"
key_file = "pki/server.key"
[backend]
port = $PG_PORT
sslmode = "disable"
password = "$PASSWORD"
[log]
level = "warn"
[[hba]]
method = "scram-sha-256"
CONFIG
start_pgwarden "$PGW_PORT"
[ "$WITH_PGB" = 1 ] && start_pgbouncer "$WORK" "$PGB_PORT" "$PG_PORT" "$PASSWORD" "$WORK/pki/server.crt" "$WORK/pki/server.key"

# run NAME PORT ARGS...: one pgbench run against target NAME. Prints its
# TPS, a space, and the proxy's own CPU per transaction in microseconds
# (per-process accounting of pgwarden or PgBouncer, "-" for direct): on two
# shared cores that is steadier than TPS. SSLMODE picks TLS.
run() {
	local name=$1 port=$2; shift 2
	local pid="" before=0
	case $name in
	pgwarden) pid=$PGW_PID ;;
	pgbouncer) pid=$(cat "$WORK/pgb/pgbouncer.pid" 2>/dev/null) ;;
	esac
	[ -n "$pid" ] && before=$(cpu_ticks "$pid")
	local out
	out=$(PGSSLMODE=${SSLMODE:-disable} PGPASSWORD=$PASSWORD "$BINDIR/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n "$@" postgres 2>&1)
	local tps txs
	tps=$(echo "$out" | awk '/^tps = / { print $3; exit }')
	txs=$(echo "$out" | awk '/number of transactions actually processed:/ { split($0, a, ": "); split(a[2], b, "/"); print b[1]; exit }')
	if [ -n "$pid" ] && [ -n "$txs" ] && [ "$txs" -gt 0 ]; then
		echo "$tps $(( ($(cpu_ticks "$pid") - before) * 1000000 / CLK_TCK / txs ))"
	else
		echo "$tps -"
	fi
}

# Targets in the order each round runs them: direct, pgwarden, pgbouncer.
targets="direct:$PG_PORT pgwarden:$PGW_PORT"
[ "$WITH_PGB" = 1 ] && targets="$targets pgbouncer:$PGB_PORT"
declare -A R
for round in $(seq "$ROUNDS"); do
	echo "round $round/$ROUNDS" >&2
	for w in $WORKLOADS; do
		for tp in $targets; do
			name=${tp%%:*} port=${tp##*:}
			case $w in
			S) r=$(run "$name" "$port" -S -c "$CLIENTS" -j 2 -T "$TIME") ;;
			S1) r=$(run "$name" "$port" -S -c 1 -j 1 -T "$TIME") ;;
			B) r=$(run "$name" "$port" -c "$CLIENTS" -j 2 -T "$TIME") ;;
			C) r=$(run "$name" "$port" -S -C -c "$CLIENTS" -j 2 -T "$CTIME") ;;
			T) r=$(SSLMODE=require run "$name" "$port" -S -C -c "$CLIENTS" -j 2 -T "$CTIME") ;;
			ST) r=$(SSLMODE=require run "$name" "$port" -S -c "$CLIENTS" -j 2 -T "$TIME") ;;
			esac
			R[${name}_$w]+="${r%% *} "
			R[${name}_${w}_cpu]+="${r##* } "
		done
	done
done

mkdir -p bench/results
OUT=bench/results/pgbench-$(date -u +%Y%m%dT%H%M%SZ).txt
{
	echo "TPS; pgbench, $CLIENTS clients, medians of $ROUNDS interleaved rounds ($(nproc) cores, PostgreSQL $("$BINDIR/postgres" --version | awk '{print $3}'))"
	printf '%-40s %10s %10s %10s %9s %9s %9s %12s %12s\n' "workload" "direct" "pgwarden" "pgbouncer" "pgw/dir" "pgb/dir" "pgw/pgb" "pgw CPU/tx" "pgb CPU/tx"
	for w in $WORKLOADS; do
		d=$(echo ${R[direct_$w]} | tr ' ' '\n' | median)
		p=$(echo ${R[pgwarden_$w]} | tr ' ' '\n' | median)
		b=$(echo ${R[pgbouncer_$w]:-0} | tr ' ' '\n' | median)
		pc=$(echo ${R[pgwarden_${w}_cpu]:-} | tr ' ' '\n' | awk '$1 != "-"' | median)
		bc=$(echo ${R[pgbouncer_${w}_cpu]:-} | tr ' ' '\n' | awk '$1 != "-"' | median)
		name="select-only (-S), ${TIME}s"
		[ "$w" = S1 ] && name="select-only (-S), 1 client, ${TIME}s"
		[ "$w" = B ] && name="TPC-B-like (default script), ${TIME}s"
		[ "$w" = C ] && name="-S -C (new connection each), SCRAM"
		[ "$w" = T ] && name="-S -C, SCRAM over TLS (require)"
		[ "$w" = ST ] && name="select-only over TLS, ${TIME}s"
		ratio() { echo "$1 $2" | awk '{ if ($2 > 0) printf "%.2f", $1 / $2; else printf "-" }'; }
		printf '%-40s %10.0f %10.0f %10.0f %9s %9s %9s %10s us %10s us\n' "$name" "$d" "$p" "$b" "$(ratio "$p" "$d")" "$(ratio "$b" "$d")" "$(ratio "$p" "$b")" "${pc:--}" "${bc:--}"
	done
} | tee "$OUT"
echo "written to $OUT"
