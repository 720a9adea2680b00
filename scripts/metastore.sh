#!/usr/bin/env bash
# The shared metastore: Derby's network server on the project's catalog database, so that jobs, spark-sql,
# the JDBC server (scripts/sql_server.sh) and notebooks use ONE catalog at the same time.
#
#   scripts/metastore.sh start     # (make metastore-up) prints the JDBC URL once the database accepts connections
#   scripts/metastore.sh status
#   scripts/metastore.sh stop      # (make metastore-down) Derby's own shutdown, then TERM/KILL
#
# It serves <paths.metastore_dir>/metastore_db, the very database embedded Derby uses, so the catalog is
# the same with or without the server. While it runs, every session of the project (lfr.spark.build_session,
# scripts/spark_sql.sh, scripts/sql_server.sh) connects to it when metastore.server is auto (conf/lfr.yaml):
# they find <metastore_dir>/derby-server.port. Stopped, they use embedded Derby again (one process at a time).
# Start it before the JDBC server: a server already running on embedded Derby holds the database.
#
# Settings: metastore.host (bind address, default 127.0.0.1: no authentication, keep it on loopback),
# metastore.port (null: a free port), paths.metastore_dir; LFR_CONF / LFR_PROFILE as for the jobs.
# Files in <metastore_dir>: derby-server.{pid,port,log}, derby.log (Derby's own log).
# Environment: LFR_METASTORE_START_TIMEOUT (60 s), LFR_METASTORE_STOP_TIMEOUT (30 s).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
die() { printf 'metastore: %s\n' "$*" >&2; exit 1; }
[ -x "$PY" ] || die "run 'make setup' first"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
command -v java >/dev/null 2>&1 || die "java not found (Java 17+ is needed, as for Spark)"

settings=$(cd "$ROOT" && "$PY" -m lfr.spark --get paths.metastore_dir --get metastore.host --get metastore.port \
  --get metastore.server) || die "cannot read the settings (conf/lfr.yaml, LFR_CONF)"
{ read -r DIR; read -r HOST; read -r CONF_PORT; read -r SERVER; } <<<"$settings"
[ -n "$DIR" ] || die "paths.metastore_dir is null: there is no local metastore to serve (set it, e.g. work/metastore)"
DIR=$(cd "$ROOT" && "$PY" -c 'import os, sys; print(os.path.abspath(os.path.expanduser(sys.argv[1].removeprefix("file://"))))' "$DIR")
PIDFILE="$DIR/derby-server.pid"
PORTFILE="$DIR/derby-server.port"
LOG="$DIR/derby-server.log"

# The Derby version of pyspark's own jars; setup.sh caches the network server's jars of that version.
SPARK_JARS="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')/jars"
VERSION=$(find "$SPARK_JARS" -maxdepth 1 -name 'derby-[0-9]*.jar' -printf '%f\n' | sed 's/^derby-//; s/\.jar$//' | sort -V | tail -1)
[ -n "$VERSION" ] || die "no derby-<version>.jar in $SPARK_JARS"
JARS="${LFR_CACHE:-$HOME/.cache/lfr}/jars/derby-$VERSION"
CP=""
for a in derby derbyshared derbytools derbynet derbyclient; do
  [ -f "$JARS/$a-$VERSION.jar" ] || die "no $JARS/$a-$VERSION.jar: run 'make setup' once (it fetches Derby's network server and client from Maven Central)"
  CP="$CP${CP:+:}$JARS/$a-$VERSION.jar"
done

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
url() { echo "jdbc:derby://$HOST:$(cat "$PORTFILE")/metastore_db"; }
# Derby's tools (ij, the server control) in a short-lived JVM; C1 only: they run for a second.
derby() { java -XX:TieredStopAtLevel=1 -Dderby.system.home="$DIR" -Dderby.stream.error.file="$DIR/derby.log" -cp "$CP" "$@"; }

start() {
  if running && [ -f "$PORTFILE" ]; then echo "already running (pid $(cat "$PIDFILE")): $(url)"; return 0; fi
  [ "$SERVER" != never ] || echo "note: metastore.server is 'never': the project's sessions will not use this server" >&2
  mkdir -p "$DIR"
  rm -f "$PIDFILE" "$PORTFILE"
  # Embedded Derby of another process (a JDBC server, spark-sql, a notebook started without this server)
  # holds the database; the server could not open it.
  if (cd "$ROOT" && "$PY" -c 'import sys; from lfr.spark.session import derby_in_use; sys.exit(derby_in_use(f"jdbc:derby:;databaseName={sys.argv[1]}"))' "$DIR/metastore_db"); then :; else
    die "$DIR/metastore_db is open in another process (embedded Derby: a JDBC server, spark-sql or a notebook); stop it first (make sql-server-stop), then make metastore-up, then restart it"
  fi
  local port
  if [ -n "$CONF_PORT" ]; then
    port="$CONF_PORT"
    ! port_open "$port" || die "port $port (metastore.port) on $HOST is taken by another program; choose another or null (a free one)"
  else
    port=$("$PY" -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$HOST")
  fi
  # -noSecurityManager: the default policy of Derby's server needs a security manager (deprecated since Java 17);
  # it listens on $HOST only.
  nohup java -Dderby.system.home="$DIR" -Dderby.stream.error.file="$DIR/derby.log" -Dderby.drda.logConnections=false \
    -cp "$CP" org.apache.derby.drda.NetworkServerControl start -h "$HOST" -p "$port" -noSecurityManager \
    >"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local deadline=$(( $(date +%s) + ${LFR_METASTORE_START_TIMEOUT:-60} ))
  until port_open "$port"; do
    if ! running; then rm -f "$PIDFILE"; die "the Derby server exited; last lines of $LOG:
$(tail -20 "$LOG")"; fi
    if [ "$(date +%s)" -ge "$deadline" ]; then stop_pid "$port"; die "not listening on $HOST:$port after ${LFR_METASTORE_START_TIMEOUT:-60}s; see $LOG"; fi
    sleep 0.5
  done
  # Open (or create) the database now: the server holds it from here on, and it accepts connections.
  local check
  if ! check=$(derby org.apache.derby.tools.ij <<<"connect 'jdbc:derby://$HOST:$port/metastore_db;create=true'; exit;" 2>&1) \
      || grep -q "ERROR" <<<"$check"; then
    stop_pid "$port"
    die "the server runs but cannot open $DIR/metastore_db:
$check
(see $LOG and $DIR/derby.log)"
  fi
  echo "$port" >"$PORTFILE"   # last: sessions with metastore.server auto use the server from now on
  echo "Derby network server (pid $(cat "$PIDFILE")) serving $DIR/metastore_db; log: $LOG"
  echo "metastore URL: $(url)   (jobs, make spark-sql, make sql-server and notebooks use it now; stop: make metastore-down)"
}

stop_pid() {
  local pid port
  pid=$(cat "$PIDFILE" 2>/dev/null || true); port="${1:-$(cat "$PORTFILE" 2>/dev/null || true)}"
  rm -f "$PORTFILE"   # first: new sessions stop choosing the server
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    # Derby's own shutdown closes the database cleanly; TERM (then KILL) if that does not end it.
    [ -z "$port" ] || derby org.apache.derby.drda.NetworkServerControl shutdown -h "$HOST" -p "$port" >/dev/null 2>&1 || true
    for _ in $(seq 1 $(( ${LFR_METASTORE_STOP_TIMEOUT:-30} * 2 ))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; sleep 2; fi
    if kill -0 "$pid" 2>/dev/null; then echo "still running after TERM: killing $pid" >&2; kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$PIDFILE"
}

stop() {
  if ! running; then echo "not running"; rm -f "$PIDFILE" "$PORTFILE"; return 0; fi
  local pid; pid=$(cat "$PIDFILE")
  if [ -f "$DIR/sql-server.pid" ] && kill -0 "$(cat "$DIR/sql-server.pid")" 2>/dev/null; then
    echo "note: the JDBC server (pid $(cat "$DIR/sql-server.pid")) uses this metastore; its catalog fails until it" \
         "is restarted (make sql-server-stop sql-server)" >&2
  fi
  stop_pid
  echo "stopped (pid $pid)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running && [ -f "$PORTFILE" ]; then echo "running (pid $(cat "$PIDFILE")): $(url)"; else echo "not running"; exit 3; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
