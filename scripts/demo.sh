#!/usr/bin/env bash
# make demo: a throwaway PostgreSQL with pgwarden in front of it, in demo/run.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$ROOT/demo/run
PGWARDEN=$ROOT/bin/pgwarden
# The first free port from the given one up.
free_port() {
	local p=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
	echo "$p"
}
PG_PORT=${PG_PORT:-$(free_port 55432)}
PGW_PORT=${PGW_PORT:-$(free_port 6432)}
HTTP_PORT=${HTTP_PORT:-$(free_port 8432)}
DEMO_PASSWORD=${DEMO_PASSWORD:-demo-password}

find_bindir() {
	if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then
		pg_config --bindir; return
	fi
	ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}
BINDIR=$(find_bindir || true)
if [ -z "$BINDIR" ] || [ ! -x "$BINDIR/initdb" ]; then
	if [ "$(id -u)" = 0 ]; then
		echo "installing PostgreSQL server binaries with apt"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
		BINDIR=$(find_bindir)
	else
		echo "PostgreSQL server binaries not found: apt-get install postgresql (as root)" >&2
		exit 1
	fi
fi

# initdb and postgres refuse to run as root: use the postgres OS user then.
as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

rm -rf "$RUN"
mkdir -p "$RUN/pgdata" "$RUN/pgsock"
chmod 755 "$RUN"
[ "$(id -u)" = 0 ] && chown postgres "$RUN/pgdata" "$RUN/pgsock"
echo "$DEMO_PASSWORD" > "$RUN/pwfile"
chmod 644 "$RUN/pwfile"
as_pg "$BINDIR/initdb" -D "$RUN/pgdata" -U postgres --pwfile "$RUN/pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
rm -f "$RUN/pwfile"
as_pg "$BINDIR/pg_ctl" -D "$RUN/pgdata" -l "$RUN/pgdata/postgres.log" -w \
	-o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$RUN/pgsock" start >/dev/null
stop_pg() { as_pg "$BINDIR/pg_ctl" -D "$RUN/pgdata" -m fast -w stop >/dev/null 2>&1 || true; }
trap stop_pg EXIT
"$BINDIR/psql" -X -q -h "$RUN/pgsock" -p "$PG_PORT" -U postgres -d postgres \
	-c "CREATE ROLE demo LOGIN PASSWORD '$DEMO_PASSWORD'" -c "CREATE DATABASE demo OWNER demo"

"$PGWARDEN" certs init --dir "$RUN/certs" --client demo >/dev/null
HASH=$(printf '%s\n' "$DEMO_PASSWORD" | "$PGWARDEN" hash-password)
cat > "$RUN/users.toml" <<USERS
[[user]]
name = "demo"
password = "$HASH"
roles = ["admin"]
USERS
chmod 600 "$RUN/users.toml"
cat > "$RUN/config.toml" <<CONFIG
[server]
pg_listen = ["127.0.0.1:$PGW_PORT"]
http_listen = ["127.0.0.1:$HTTP_PORT"]
unix_socket_dir = "$RUN"

[tls]
cert_file = "certs/server.crt"
key_file = "certs/server.key"
client_ca_file = "certs/ca.crt"

[backend]
port = $PG_PORT
sslmode = "disable"
password = "$DEMO_PASSWORD"

[log]
format = "console"

[[hba]]
protocol = "pg"
address = "local"
method = "trust"

[[hba]]
address = ["127.0.0.1/32", "::1/128"]
method = "scram-sha-256"
CONFIG
"$PGWARDEN" check -c "$RUN/config.toml"
cat <<TRY

pgwarden is starting on 127.0.0.1:$PGW_PORT (wire) and 127.0.0.1:$HTTP_PORT (HTTP) in front of PostgreSQL on port $PG_PORT.
Try, in another terminal:

  psql "host=127.0.0.1 port=$PGW_PORT user=demo dbname=demo password=$DEMO_PASSWORD"
  psql "host=$RUN port=$PGW_PORT user=demo dbname=demo"            # unix socket, trust
  psql "host=localhost port=$PGW_PORT user=demo dbname=demo sslmode=verify-full sslrootcert=$RUN/certs/ca.crt password=$DEMO_PASSWORD channel_binding=require"
  psql "host=127.0.0.1 port=$PGW_PORT user=demo dbname=pgwarden password=$DEMO_PASSWORD" -c 'SHOW CLIENTS'   # admin console
  curl -s -u demo:$DEMO_PASSWORD -H 'Content-Type: application/json' -d '{"stmt":"SELECT now()"}' 'http://127.0.0.1:$HTTP_PORT/_sql?db=demo'
  bin/pgwarden explain -c $RUN/config.toml --user demo --database demo --address 127.0.0.1

and open the web console at http://127.0.0.1:$HTTP_PORT/ (user demo, password $DEMO_PASSWORD).

Ctrl-C stops pgwarden and the demo PostgreSQL.
TRY
"$PGWARDEN" serve -c "$RUN/config.toml"
