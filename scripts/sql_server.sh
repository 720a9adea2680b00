#!/usr/bin/env bash
# Spark's Thrift JDBC/ODBC server (HiveThriftServer2, shipped in pyspark's jars) on the project's
# catalog: Delta enabled, the same metastore as the jobs (paths.metastore_dir, or the shared Derby
# network server of scripts/metastore.sh while it runs), quiet logs.
#
#   scripts/sql_server.sh start     # (make sql-server) prints the JDBC URL once it accepts connections
#   scripts/sql_server.sh status
#   scripts/sql_server.sh stop      # (make sql-server-stop) TERM, then KILL after LFR_SQL_STOP_TIMEOUT s
#
# Environment: LFR_SQL_HOST (127.0.0.1), LFR_SQL_PORT (10000), LFR_SQL_START_TIMEOUT (300 s),
# LFR_CONF / LFR_PROFILE as for the jobs (e.g. LFR_CONF="paths.work_dir=/tmp/x").
# Log and pid file: <paths.metastore_dir>/sql-server.{log,pid}.
# With the shared metastore (make metastore-up BEFORE this) jobs, spark-sql and notebooks keep using the
# catalog while the server runs, and the tables they create appear in it at once. Without it the embedded
# Derby metastore admits one process: while the server runs, jobs fall back to an in-memory catalog (their
# tables stay readable through the server: they are registered by location), and spark-sql refuses to
# start; query through the server instead:
#   source .venv/bin/activate; beeline -u jdbc:hive2://127.0.0.1:10000/lfr -e "SELECT ..."
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
[ -x "$ROOT/.venv/bin/spark-submit" ] || { echo "run 'make setup' first" >&2; exit 1; }
HOST="${LFR_SQL_HOST:-127.0.0.1}"
PORT="${LFR_SQL_PORT:-10000}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# pyspark's launchers find their SPARK_HOME with `python3` unless told: tell them (no activated venv needed).
export PATH="$ROOT/.venv/bin:$PATH"
export SPARK_HOME="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"

DIR=$(cd "$ROOT" && "$PY" -m lfr.spark --get paths.metastore_dir)
[ -n "$DIR" ] || DIR=$(cd "$ROOT" && "$PY" -m lfr.spark --get paths.work_dir)
PIDFILE="$DIR/sql-server.pid"
LOG="$DIR/sql-server.log"

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

start() {
  if running; then echo "already running (pid $(cat "$PIDFILE")): jdbc:hive2://$HOST:$PORT/lfr"; return 0; fi
  mkdir -p "$DIR"
  local args=() kv conf classpath
  # --driver-class-path replaces spark-defaults.conf's class path: keep it first (Spark's jars ahead of the conf
  # dir, where the class-data archive setup.sh wrote applies)
  classpath=$(sed -n 's/^spark\.driver\.extraClassPath //p' "$SPARK_HOME/conf/spark-defaults.conf" 2>/dev/null || true)
  conf=$(cd "$ROOT" && "$PY" -m lfr.spark) || return 1
  while IFS= read -r kv; do
    case "$kv" in
      spark.master=*) args+=(--master "${kv#spark.master=}") ;;
      # Delta on the driver's own classpath too: the server opens each JDBC session's catalog
      # (DeltaCatalog) from threads that do not see the jars spark.jars adds at run time.
      spark.jars=*) args+=(--conf "$kv"); classpath="$classpath${classpath:+:}$(tr ',' ':' <<<"${kv#spark.jars=}")" ;;
      # (the Derby client of the shared metastore); one --driver-class-path holds both
      spark.driver.extraClassPath=*) classpath="$classpath${classpath:+:}${kv#spark.driver.extraClassPath=}" ;;
      *) args+=(--conf "$kv") ;;
    esac
  done <<<"$conf"
  [ -z "$classpath" ] || args+=(--driver-class-path "$classpath")
  case "$conf" in
    *"ConnectionURL=jdbc:derby://"*) echo "metastore: the shared Derby network server ($(grep -o 'jdbc:derby://[^;]*' <<<"$conf"))" ;;
    *"ConnectionURL=jdbc:derby:"*) echo "metastore: embedded Derby in $DIR (one process: jobs fall back to an in-memory catalog while this runs; make metastore-up first to share it)" ;;
  esac
  # --hiveconf: the server's own settings; spark-internal: no application jar (the class is in pyspark's jars).
  nohup "$ROOT/.venv/bin/spark-submit" --class org.apache.spark.sql.hive.thriftserver.HiveThriftServer2 \
    --name "lightfusionrec JDBC" "${args[@]}" \
    --hiveconf "hive.server2.thrift.bind.host=$HOST" --hiveconf "hive.server2.thrift.port=$PORT" \
    spark-internal >"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local deadline=$(( $(date +%s) + ${LFR_SQL_START_TIMEOUT:-300} ))
  until port_open; do
    if ! running; then echo "the server exited; last lines of $LOG:" >&2; tail -20 "$LOG" >&2; rm -f "$PIDFILE"; return 1; fi
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "not listening after ${LFR_SQL_START_TIMEOUT:-300}s; see $LOG" >&2; stop; return 1; fi
    sleep 1
  done
  echo "Spark Thrift JDBC server (pid $(cat "$PIDFILE")) listening; log: $LOG"
  echo "JDBC URL: jdbc:hive2://$HOST:$PORT/lfr   (no user/password; stop: make sql-server-stop)"
  echo "try: source .venv/bin/activate; beeline -u jdbc:hive2://$HOST:$PORT/lfr -e \"SELECT * FROM movie_book_recommendations LIMIT 5\""
}

stop() {
  if ! running; then echo "not running"; rm -f "$PIDFILE"; return 0; fi
  local pid; pid=$(cat "$PIDFILE")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 "${LFR_SQL_STOP_TIMEOUT:-30}"); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  if kill -0 "$pid" 2>/dev/null; then echo "still running after TERM: killing $pid" >&2; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$PIDFILE"
  echo "stopped (pid $pid)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running (pid $(cat "$PIDFILE")): jdbc:hive2://$HOST:$PORT/lfr"; else echo "not running"; exit 3; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
