# Shared helpers of the bench scripts: find and run a throwaway PostgreSQL.
# Source it; it sets BINDIR and defines as_pg, free_port, start_pg, stop_pg,
# median.

BINDIR=$(pg_config --bindir 2>/dev/null || true)
[ -x "$BINDIR/initdb" ] || BINDIR=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$BINDIR/initdb" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }

# initdb and postgres refuse to run as root: use the postgres OS user then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# free_port N: the first free loopback port from N up. The scripts start
# below Linux's ephemeral range (32768 and up): a port there may be held by
# an outgoing connection of an earlier run (thousands with pgbench -C),
# which a probe cannot see but which makes the server's bind fail.
free_port() { local p=$1; while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done; echo "$p"; }

# start_pg DIR PORT PASSWORD [postgres -c options...]: initdb DIR/pgdata
# (superuser postgres with PASSWORD, SCRAM on TCP) and start it.
start_pg() {
	local dir=$1 port=$2 pw=$3; shift 3
	mkdir -p "$dir/pgdata" "$dir/sock"
	[ "$(id -u)" = 0 ] && chown postgres "$dir/pgdata" "$dir/sock"
	echo "$pw" > "$dir/pw"; chmod 644 "$dir/pw"
	as_pg "$BINDIR/initdb" -D "$dir/pgdata" -U postgres --pwfile "$dir/pw" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
	rm -f "$dir/pw"
	as_pg "$BINDIR/pg_ctl" -D "$dir/pgdata" -l "$dir/pgdata/log" -w -o "-p $port -c listen_addresses=127.0.0.1 \
  -c unix_socket_directories=$dir/sock -c max_connections=200 -c fsync=off -c synchronous_commit=off $*" start >/dev/null ||
		{ cat "$dir/pgdata/log" >&2; return 1; }
}

stop_pg() { as_pg "$BINDIR/pg_ctl" -D "$1/pgdata" -m fast -w stop >/dev/null 2>&1 || true; }

# wait_port PORT: until something listens on it (5 s at most).
wait_port() { for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# cpu_ticks PID: user plus system CPU time the process has used, in clock
# ticks (/proc/PID/stat fields 14 and 15); 0 when unknown.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# PgBouncer from Debian's package, for side-by-side runs. It refuses to run
# as root, so as root it runs as the postgres OS user.
PGBOUNCER=$(command -v pgbouncer || ls /usr/sbin/pgbouncer 2>/dev/null || true)
ensure_pgbouncer() {
	[ -n "$PGBOUNCER" ] && return 0
	if [ "$(id -u)" = 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null 2>&1 ||
			{ DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; }
		PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
	fi
	[ -x "$PGBOUNCER" ]
}

# start_pgbouncer DIR PORT PG_PORT PASSWORD CERT KEY: session mode, SCRAM
# clients, the same certificate as pgwarden; writes DIR/pgb/pgbouncer.pid.
# Its auth_file holds the SCRAM verifier PostgreSQL stores for the user, as
# pgwarden's users file does: with a plaintext password PgBouncer would run
# PBKDF2 (4096 rounds, about 3 ms) on every login, which pgwarden never does.
# The same verifier lets PgBouncer log in to the backend by SCRAM
# pass-through.
start_pgbouncer() {
	local dir=$1/pgb port=$2 pgport=$3 pw=$4 cert=$5 key=$6
	mkdir -p "$dir"
	local verifier
	verifier=$("$BINDIR/psql" -h "$1/sock" -p "$pgport" -U postgres -Atc "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'" postgres)
	printf '"postgres" "%s"\n' "${verifier:-$pw}" > "$dir/userlist.txt"
	cat > "$dir/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$pgport dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = session
max_client_conn = 2000
default_pool_size = 1100
server_reset_query = DISCARD ALL
client_tls_sslmode = allow
client_tls_cert_file = $cert
client_tls_key_file = $key
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
	[ "$(id -u)" = 0 ] && chown -R postgres "$dir"
	# runuser's session starts with 1024 open files at most: too few for
	# 1000 clients each with a server connection. Raise it to the hard limit.
	as_pg sh -c 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"' "$PGBOUNCER" -d "$dir/pgbouncer.ini"
	wait_port "$port"
}

stop_pgbouncer() {
	local pid i
	[ -f "$1/pgb/pgbouncer.pid" ] || return 0
	pid=$(cat "$1/pgb/pgbouncer.pid")
	kill -INT "$pid" 2>/dev/null || return 0
	for i in $(seq 100); do # it exits once its clients are gone; 10 s at most
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	rm -f "$1/pgb/pgbouncer.pid"
}

# The bench scripts' common life cycle: WORK is a fresh folder; whatever a
# script starts there (PostgreSQL, pgwarden as PGW_PID, PgBouncer) is stopped
# and the folder removed on exit, also on failure.
WORK=$(mktemp -d /tmp/pgwarden-bench.XXXXXX)
chmod 755 "$WORK"
PGW_PID=""
bench_cleanup() {
	stop_pgbouncer "$WORK"
	[ -n "$PGW_PID" ] && kill -INT "$PGW_PID" 2>/dev/null && wait "$PGW_PID" 2>/dev/null || true
	stop_pg "$WORK"
	rm -rf "$WORK"
}
trap bench_cleanup EXIT

# start_pgwarden PORT: serve $WORK/config.toml until exit; wait for PORT.
start_pgwarden() {
	"$PGWARDEN" serve -c "$WORK/config.toml" 2>"$WORK/pgwarden.log" &
	PGW_PID=$!
	wait_port "$1"
}
