#!/usr/bin/env bash
# make bench-flood: does a flood of wrong passwords against bcrypt and
# argon2id users (each one a full hash) starve honest clients? Measures the
# latency of an authenticated wire session's queries and of a cached Basic
# credential, without and during the flood. Loopback only; bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TIME=${BENCH_TIME:-8}
FLOODERS=${BENCH_FLOODERS:-32}
PGWARDEN=$ROOT/bin/pgwarden
PASSWORD=bench-password
. bench/lib.sh
PG_PORT=$(free_port 18132)
PGW_PORT=$(free_port 18232)
HTTP_PORT=$(free_port $((PGW_PORT + 1)))
go build -o "$WORK/httpload" ./bench/httpload
start_pg "$WORK" "$PG_PORT" "$PASSWORD"
{
	printf '[[user]]\nname = "postgres"\npassword = "%s"\n\n' "$(printf '%s\n' "$PASSWORD" | "$PGWARDEN" hash-password)"
	printf '[[user]]\nname = "victim_bcrypt"\npassword = "%s"\nbackend_user = "postgres"\n\n' "$(printf 'x%s\n' "$PASSWORD" | "$PGWARDEN" hash-password --algo bcrypt)"
	printf '[[user]]\nname = "victim_argon"\npassword = "%s"\nbackend_user = "postgres"\n\n' "$(printf 'x%s\n' "$PASSWORD" | "$PGWARDEN" hash-password --algo argon2id)"
} > "$WORK/users.toml"
cat > "$WORK/config.toml" <<CONFIG
[server]
pg_listen = ["127.0.0.1:$PGW_PORT"]
http_listen = ["127.0.0.1:$HTTP_PORT"]
unix_socket_dir = ""
# The flooders send X-Forwarded-For: each guess comes from a source of its
# own, as from a botnet. From one source, guesses of one user sent together
# are checked one at a time (see README: Throttling), and would flood
# nothing.
trusted_proxies = ["127.0.0.1/32"]
[backend]
port = $PG_PORT
sslmode = "disable"
password = "$PASSWORD"
[http]
default_database = "postgres"
[throttle]
failure_delay = "1ms"
max_delay = "2ms"
[log]
level = "error"
[[hba]]
method = "password"
CONFIG
start_pgwarden "$HTTP_PORT"
URL="http://127.0.0.1:$HTTP_PORT/_sql"
BASIC="Basic $(printf 'postgres:%s' "$PASSWORD" | base64 -w0)"
session() { "$WORK/httpload" -c 1 -d "${TIME}s" -pgx "host=127.0.0.1 port=$PGW_PORT user=postgres password=$PASSWORD dbname=postgres sslmode=disable"; }
cached() { "$WORK/httpload" -c 1 -d "${TIME}s" -url "$URL" -auth "$BASIC"; }

mkdir -p bench/results
OUT=bench/results/flood-$(date -u +%Y%m%dT%H%M%SZ).txt
{
	echo "latency under a flood of $FLOODERS concurrent wrong-password requests against bcrypt and argon2id users ($(nproc) cores)"
	echo "quiet:  wire session $(session)"
	echo "quiet:  cached Basic $(cached)"
	"$WORK/httpload" -c $((FLOODERS / 2)) -d "$((3 * TIME + 4))s" -url "$URL" -randbasic victim_bcrypt -randxff >"$WORK/flood-bcrypt.txt" &
	F1=$!
	"$WORK/httpload" -c $((FLOODERS / 2)) -d "$((3 * TIME + 4))s" -url "$URL" -randbasic victim_argon -randxff >"$WORK/flood-argon.txt" &
	F2=$!
	sleep 2
	echo "flood:  wire session $(session)"
	echo "flood:  cached Basic $(cached)"
	wait $F1 $F2 || true
	# What the flood got answered (rps is guesses answered per second).
	echo "flood:  guesses at the bcrypt user $(cat "$WORK/flood-bcrypt.txt")"
	echo "flood:  guesses at the argon2id user $(cat "$WORK/flood-argon.txt")"
} | tee "$OUT"
echo "written to $OUT"
