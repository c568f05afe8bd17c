#!/usr/bin/env bash
# make bench-http: SELECT 1 through pgwarden's /_sql with trust, Basic and
# Bearer JWT, and through pgx directly for reference; A/B interleaved rounds,
# medians, written to bench/results/. Loopback only; stops by itself.
#
#   BENCH_ROUNDS=3 BENCH_TIME=10 BENCH_CLIENTS=8 make bench-http
#   BENCH_HTTP_STMT="SELECT ..." runs that statement instead of SELECT 1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${BENCH_ROUNDS:-3}
TIME=${BENCH_TIME:-10}
CLIENTS=${BENCH_CLIENTS:-8}
STMT=${BENCH_HTTP_STMT:-SELECT 1}
PGWARDEN=${PGWARDEN:-$ROOT/bin/pgwarden}
PASSWORD=bench-password
. bench/lib.sh
PG_PORT=$(free_port 17632)
PGW_PORT=$(free_port 17732)
HTTP_PORT=$(free_port $((PGW_PORT + 1)))

go build -o "$WORK/httpload" ./bench/httpload
start_pg "$WORK" "$PG_PORT" "$PASSWORD"

HASH=$(printf '%s\n' "$PASSWORD" | "$PGWARDEN" hash-password)
for u in t_user b_user j_user; do
	printf '[[user]]\nname = "%s"\npassword = "%s"\nbackend_user = "postgres"\n\n' "$u" "$HASH"
done > "$WORK/users.toml"
cat > "$WORK/config.toml" <<CONFIG
[server]
pg_listen = ["127.0.0.1:$PGW_PORT"]
http_listen = ["127.0.0.1:$HTTP_PORT"]
unix_socket_dir = ""
[backend]
port = $PG_PORT
sslmode = "disable"
password = "$PASSWORD"
[http]
default_database = "postgres"
[tokens]
[log]
level = "warn"
[[hba]]
user = "t_user"
method = "trust"
[[hba]]
user = "b_user"
method = "password"
[[hba]]
user = "j_user"
method = "jwt"
CONFIG
TOKEN=$("$PGWARDEN" token create -c "$WORK/config.toml" --user j_user 2>/dev/null)
start_pgwarden "$HTTP_PORT"
URL="http://127.0.0.1:$HTTP_PORT/_sql"
BASIC="Basic $(printf 'b_user:%s' "$PASSWORD" | base64 -w0)"

# pg_ticks: CPU ticks of the PostgreSQL cluster's processes, for the
# backend's CPU per request: the postmaster's own, its live children's, and
# those of children that have exited (fields 16 and 17 of the postmaster's
# stat: an autovacuum worker that ended mid-run took its ticks away and
# made the difference negative).
pg_ticks() {
	local pm t p
	pm=$(head -1 "$WORK/pgdata/postmaster.pid")
	t=$(awk '{ print $16 + $17 }' "/proc/$pm/stat" 2>/dev/null || echo 0)
	for p in $pm $(pgrep -P "$pm"); do t=$((t + $(cpu_ticks "$p"))); done
	echo "$t"
}
# rps ARGS: "req/s pgwarden-µs/req postgres-µs/req" for one load run.
rps() {
	local out b0 p0 n
	b0=$(pg_ticks); p0=$(cpu_ticks "$PGW_PID")
	out=$("$WORK/httpload" -c "$CLIENTS" -d "${TIME}s" -stmt "$STMT" "$@")
	n=$(echo "$out" | sed -n 's/^rps=\([0-9]*\).*/\1/p')
	echo "$n/$(( ($(cpu_ticks "$PGW_PID") - p0) * 1000000 / CLK_TCK / (n * TIME) ))/$(( ($(pg_ticks) - b0) * 1000000 / CLK_TCK / (n * TIME) ))"
}
declare -A R
for round in $(seq "$ROUNDS"); do
	echo "round $round/$ROUNDS" >&2
	R[pgx]+="$(rps -pgx "host=127.0.0.1 port=$PG_PORT user=postgres password=$PASSWORD dbname=postgres sslmode=disable") "
	R[trust]+="$(rps -url "$URL" -auth "Basic $(printf 't_user:x' | base64 -w0)") "
	R[basic]+="$(rps -url "$URL" -auth "$BASIC") "
	R[jwt]+="$(rps -url "$URL" -auth "Bearer $TOKEN") "
done

mkdir -p bench/results
OUT=bench/results/http-$(date -u +%Y%m%dT%H%M%SZ).txt
{
	echo "$STMT, $CLIENTS clients, ${TIME}s, medians of $ROUNDS interleaved rounds ($(nproc) cores)"
	echo "CPU per request in µs from per-process accounting: pgwarden's own, and the PostgreSQL cluster's"
	field() { echo ${R[$1]} | tr ' ' '\n' | cut -d/ -f"$2" | median; }
	trust=$(field trust 1)
	printf '%-32s %10s %14s %12s %12s\n' "path" "req/s" "ratio to trust" "pgwarden µs" "postgres µs"
	for k in pgx trust basic jwt; do
		v=$(field $k 1)
		label=$k
		[ "$k" = pgx ] && label="pgx direct (reference)"
		[ "$k" = trust ] && label="/_sql trust"
		[ "$k" = basic ] && label="/_sql Basic (cached)"
		[ "$k" = jwt ] && label="/_sql Bearer JWT (HS256)"
		pw=$(field $k 2); [ "$k" = pgx ] && pw=-
		printf '%-32s %10.0f %14s %12s %12s\n' "$label" "$v" "$(echo "$v $trust" | awk '{ printf "%.2f", $1 / $2 }')" "$pw" "$(field $k 3)"
	done
} | tee "$OUT"
echo "written to $OUT"
