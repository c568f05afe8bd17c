#!/usr/bin/env bash
# PostgreSQL's own regression suite (pg_regress, the parallel schedule, 217
# tests in PostgreSQL 15) run once directly against a throwaway PostgreSQL
# and then through pgwarden in several modes; every test's output file is
# compared with the direct run's, so tests that fail for reasons of this
# machine (a newer psql, a missing locale) cancel out and only what the hop
# changes is reported.
#
#   scripts/pg-regress.sh SRC [MODE...]
#
# SRC is an unpacked PostgreSQL source tree of the server's major version
# (for Debian's package: the postgresql-N_*.orig.tar.bz2 of its source
# package); its src/test/regress holds the tests. Building regress.so needs
# the server headers (apt-get install postgresql-server-dev-N) and a C
# compiler. MODE is any of reuse noreuse tls goroutines (default: all);
# RACE=1 runs a -race build of pgwarden. Exit status 1 when any mode's
# output differs from the direct run's in a test not listed in EXPECTED.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:?usage: scripts/pg-regress.sh SRC [MODE...]}
shift
MODES=${*:-reuse noreuse tls goroutines}
# With reuse on, `\c -` can be handed the backend the previous connection
# left: after DISCARD ALL it holds no temporary objects, but its temporary
# schema exists, so the last check of `temp` (that current_schema() creating
# the schema inside a transaction blocks PREPARE TRANSACTION) meets a
# different error. PgBouncer in session mode does the same; nothing passes
# between clients.
EXPECTED_reuse="temp"
EXPECTED_tls="temp"
EXPECTED_goroutines="temp"
. bench/lib.sh

REGRESS="$(dirname "$BINDIR")/lib/pgxs/src/test/regress/pg_regress"
[ -x "$REGRESS" ] || { echo "pg_regress not found at $REGRESS" >&2; exit 1; }
[ -f "$SRC/src/test/regress/parallel_schedule" ] || { echo "$SRC/src/test/regress/parallel_schedule not found" >&2; exit 1; }
INCLUDE=$(pg_config --includedir-server 2>/dev/null || true)
[ -f "$INCLUDE/postgres.h" ] || { echo "server headers not found: apt-get install postgresql-server-dev-$("$BINDIR/postgres" -V | awk '{print int($3)}')" >&2; exit 1; }

# The tests, regress.so and the contrib libraries triggers.sql loads, in a
# folder the postgres OS user can read and the result folders it can write.
cp -r "$SRC/src/test/regress" "$WORK/regress"
cc -O2 -fPIC -shared -I"$INCLUDE" -o "$WORK/regress/regress.so" "$WORK/regress/regress.c"
cp "$(dirname "$BINDIR")/lib/autoinc.so" "$(dirname "$BINDIR")/lib/refint.so" "$WORK/regress/"
[ "$(id -u)" = 0 ] && chown -R postgres "$WORK/regress"

# Trust on both hops: the suite logs in as roles it creates, without
# passwords, and pgwarden's trust rule maps each name to the role itself.
mkdir -p "$WORK/pgdata" "$WORK/sock"
[ "$(id -u)" = 0 ] && chown postgres "$WORK/pgdata" "$WORK/sock"
as_pg "$BINDIR/initdb" -D "$WORK/pgdata" -U postgres --auth=trust >/dev/null
PG_PORT=$(free_port 25432)
as_pg "$BINDIR/pg_ctl" -D "$WORK/pgdata" -l "$WORK/pgdata/log" -w -o "-p $PG_PORT -c listen_addresses=127.0.0.1 \
  -c unix_socket_directories=$WORK/sock -c max_connections=200 -c fsync=off" start >/dev/null

PGWARDEN="$WORK/pgwarden"
if [ "${RACE:-0}" = 1 ]; then go build -race -o "$PGWARDEN" ./cmd/pgwarden; else go build -o "$PGWARDEN" ./cmd/pgwarden; fi
"$PGWARDEN" certs init --dir "$WORK/certs" >/dev/null

# run_suite PORT NAME [VAR=value...]: pg_regress as the postgres OS user
# into $WORK/NAME.
run_suite() {
	local port=$1 name=$2; shift 2
	mkdir -p "$WORK/$name"
	[ "$(id -u)" = 0 ] && chown postgres "$WORK/$name"
	as_pg env "$@" "$REGRESS" --host=127.0.0.1 --port="$port" --user=postgres --bindir="$BINDIR" \
		--dlpath="$WORK/regress" --inputdir="$WORK/regress" --outputdir="$WORK/$name" \
		--max-concurrent-tests=20 --schedule="$WORK/regress/parallel_schedule" >"$WORK/$name.log" 2>&1 || true
	grep -E "tests (passed|failed)" "$WORK/$name.log" || { cat "$WORK/$name.log" >&2; return 1; }
}

# dump_check PORT: the database the suite left, dumped through PORT, must
# equal its direct dump; a parallel dump (-Fd -j 4, synchronized snapshots
# over several connections) restored in parallel through PORT must equal
# the same archive restored directly. pg_dump's \restrict keys are random.
dump_check() {
	local port=$1 d="$WORK/dump" rc=0
	mkdir -p "$d"
	dump() { "$BINDIR/pg_dump" -h 127.0.0.1 -p "$1" -U postgres -Fp "$2" | grep -v '^\\\(un\)\?restrict '; }
	dump "$PG_PORT" regression > "$d/direct.sql"
	dump "$port" regression > "$d/through.sql"
	cmp -s "$d/direct.sql" "$d/through.sql" || { echo "   pg_dump through pgwarden differs:"; diff "$d/direct.sql" "$d/through.sql" | head -20; rc=1; }
	rm -rf "$d/dir"
	"$BINDIR/pg_dump" -h 127.0.0.1 -p "$port" -U postgres -Fd -j 4 -f "$d/dir" regression
	"$BINDIR/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres restored_direct
	"$BINDIR/createdb" -h 127.0.0.1 -p "$port" -U postgres restored_through
	"$BINDIR/pg_restore" -h 127.0.0.1 -p "$PG_PORT" -U postgres -j 4 -d restored_direct "$d/dir"
	"$BINDIR/pg_restore" -h 127.0.0.1 -p "$port" -U postgres -j 4 -d restored_through "$d/dir"
	dump "$PG_PORT" restored_direct > "$d/restored_direct.sql"
	dump "$PG_PORT" restored_through > "$d/restored_through.sql"
	cmp -s "$d/restored_direct.sql" "$d/restored_through.sql" || { echo "   pg_restore -j 4 through pgwarden differs:"; diff "$d/restored_direct.sql" "$d/restored_through.sql" | head -20; rc=1; }
	"$BINDIR/dropdb" -h 127.0.0.1 -p "$port" -U postgres restored_through
	"$BINDIR/dropdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres restored_direct
	[ $rc = 0 ] && echo "   pg_dump, pg_dump -j 4 and pg_restore -j 4 through pgwarden: the same as directly"
	return $rc
}

echo "== direct"
run_suite "$PG_PORT" direct

status=0
PORT=$(free_port 26432)
for mode in $MODES; do
	server="" backend="" tls="" env=()
	case $mode in
	reuse) ;;
	noreuse) backend="reuse = false" ;;
	goroutines) server="event_loop = false" ;;
	tls)
		tls=$'[tls]\ncert_file = "'$WORK/certs/server.crt$'"\nkey_file = "'$WORK/certs/server.key'"'
		env=(PGSSLMODE=require)
		;;
	*) echo "unknown mode $mode" >&2; exit 2 ;;
	esac
	: > "$WORK/users.toml"
	cat > "$WORK/config.toml" <<EOF
[server]
pg_listen = ["127.0.0.1:$PORT"]
http_listen = []
unix_socket_dir = ""
$server
[backend]
host = "127.0.0.1"
port = $PG_PORT
sslmode = "disable"
$backend
[users]
file = "$WORK/users.toml"
[log]
level = "warn"
[[hba]]
protocol = "pg"
address = "127.0.0.1/32"
method = "trust"
$tls
EOF
	start_pgwarden "$PORT"
	echo "== through pgwarden: $mode"
	run_suite "$PORT" "$mode" "${env[@]}"
	if [ "$mode" = reuse ]; then dump_check "$PORT" || status=1; fi
	kill -INT "$PGW_PID"
	wait "$PGW_PID" || true
	PGW_PID=""
	if grep -q "DATA RACE" "$WORK/pgwarden.log"; then
		echo "   data race reported:"; grep -A20 "DATA RACE" "$WORK/pgwarden.log" | head -40
		status=1
	fi
	expected_var="EXPECTED_$mode"
	for f in "$WORK"/direct/results/*.out; do
		t=$(basename "$f" .out)
		cmp -s "$f" "$WORK/$mode/results/$t.out" && continue
		if [[ " ${!expected_var:-} " == *" $t "* ]]; then
			echo "   $t: differs, as expected (see the script)"
		else
			echo "   $t: differs from the direct run:"
			diff -u "$f" "$WORK/$mode/results/$t.out" | head -40
			status=1
		fi
	done
done
as_pg "$BINDIR/pg_ctl" -D "$WORK/pgdata" -m fast -w stop >/dev/null
exit $status
