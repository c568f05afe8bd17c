#!/usr/bin/env bash
# make bench-store: logins per second through pgwarden with the users in
# the users file and in the PostgreSQL store, side by side: pgbench -S -C
# (a new connection per transaction). "cold" is method scram-sha-256 (every
# login runs the full SCRAM exchange); "cached" is method password (the
# credential cache answers after the first login). Loopback only.
#
#   BENCH_ROUNDS=3 BENCH_TIME=10 make bench-store
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${BENCH_ROUNDS:-3}
TIME=${BENCH_TIME:-10}
CLIENTS=${BENCH_CLIENTS:-8}
PGWARDEN=${PGWARDEN:-$ROOT/bin/pgwarden}
PASSWORD=bench-password
. bench/lib.sh
PG_PORT=$(free_port 17232)
start_pg "$WORK" "$PG_PORT" "$PASSWORD"
"$BINDIR/pgbench" -i -q -s 1 -h "$WORK/sock" -p "$PG_PORT" -U postgres postgres >/dev/null 2>&1
as_pg "$BINDIR/psql" -q -h "$WORK/sock" -p "$PG_PORT" -U postgres -d postgres -c \
	"CREATE ROLE pgwarden_store LOGIN PASSWORD '$PASSWORD'" -c "CREATE DATABASE pgwarden_store OWNER pgwarden_store" >/dev/null

HASH=$(printf '%s\n' "$PASSWORD" | "$PGWARDEN" hash-password)
printf '[[user]]\nname = "postgres"\npassword = "%s"\n' "$HASH" > "$WORK/users.toml"
# config KIND METHOD PORT: a configuration file for one run.
config() {
	local f="$WORK/$1-$2.toml"
	cat > "$f" <<CONFIG
[server]
pg_listen = ["127.0.0.1:$3"]
http_listen = []
unix_socket_dir = ""
[backend]
port = $PG_PORT
sslmode = "disable"
password = "$PASSWORD"
[store]
kind = "$1"
database = "pgwarden_store"
user = "pgwarden_store"
password = "$PASSWORD"
[log]
level = "warn"
[[hba]]
method = "$2"
CONFIG
	echo "$f"
}
"$PGWARDEN" store init -c "$(config postgres password 5999)" >/dev/null
"$PGWARDEN" store import -c "$WORK/postgres-password.toml" "$WORK/users.toml" 2>/dev/null

# one KIND METHOD: TPS and pgwarden's CPU per login in µs.
one() {
	local port cfg pid before out tps txs
	port=$(free_port 17332)
	cfg=$(config "$1" "$2" "$port")
	"$PGWARDEN" serve -c "$cfg" 2>"$WORK/pgwarden-$1.log" &
	pid=$!
	wait_port "$port" || { cat "$WORK/pgwarden-$1.log" >&2; exit 1; }
	before=$(cpu_ticks "$pid")
	out=$(PGPASSWORD=$PASSWORD "$BINDIR/pgbench" -n -S -C -c "$CLIENTS" -j 2 -T "$TIME" -h 127.0.0.1 -p "$port" -U postgres postgres 2>&1)
	tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
	txs=$(echo "$out" | awk '/number of transactions actually processed:/ { split($0, a, ": "); split(a[2], b, "/"); print b[1]; exit }')
	echo "$tps $(( ($(cpu_ticks "$pid") - before) * 1000000 / CLK_TCK / txs ))"
	kill -INT "$pid"; wait "$pid" 2>/dev/null || true
}
declare -A R
for round in $(seq "$ROUNDS"); do
	echo "round $round/$ROUNDS" >&2
	for kind in file postgres; do
		for m in scram-sha-256 password; do
			R[$kind-$m]+="$(one $kind $m | tr ' ' '/') "
		done
	done
done
mkdir -p bench/results
OUT=bench/results/store-$(date -u +%Y%m%dT%H%M%SZ).txt
{
	echo "pgbench -S -C, $CLIENTS clients, ${TIME}s, medians of $ROUNDS interleaved rounds ($(nproc) cores): logins per second, pgwarden CPU per login"
	printf '%-10s %-24s %10s %14s\n' store login TPS "µs/login"
	for kind in file postgres; do
		for m in scram-sha-256 password; do
			label="cold (scram-sha-256)"; [ "$m" = password ] && label="cached (password)"
			tps=$(echo ${R[$kind-$m]} | tr ' ' '\n' | cut -d/ -f1 | median)
			cpu=$(echo ${R[$kind-$m]} | tr ' ' '\n' | cut -d/ -f2 | median)
			printf '%-10s %-24s %10.0f %14s\n' "$kind" "$label" "$tps" "$cpu"
		done
	done
} | tee "$OUT"
echo "written to $OUT"
