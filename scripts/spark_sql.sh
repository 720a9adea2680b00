#!/usr/bin/env bash
# spark-sql (pyspark's CLI) with the project's session settings: Delta, the persistent catalog
# (embedded Derby metastore under paths.metastore_dir, written by the jobs, or the shared Derby network
# server of scripts/metastore.sh while it runs), quiet logs.
#
#   scripts/spark_sql.sh -e "SELECT * FROM lfr.movie_book_recommendations WHERE movie_title = 'Jurassic Park'"
#   scripts/spark_sql.sh -f conf/queries.sql
#   scripts/spark_sql.sh                      # interactive
#   make spark-sql SQL="SELECT ..."
#
# The settings come from conf/lfr.yaml (python -m lfr.spark prints them); LFR_CONF and
# LFR_PROFILE apply as for the jobs. Embedded Derby admits one process: while the JDBC server
# (scripts/sql_server.sh) or a notebook holds the metastore, query through them instead, or run
# make metastore-up before them (then all of them share it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
[ -x "$ROOT/.venv/bin/spark-sql" ] || { echo "run 'make setup' first" >&2; exit 1; }
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# pyspark's launchers find their SPARK_HOME with `python3` unless told: tell them (no activated venv needed).
export PATH="$ROOT/.venv/bin:$PATH"
export SPARK_HOME="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"

args=()
conf=$(cd "$ROOT" && "$PY" -m lfr.spark) || exit 1
while IFS= read -r kv; do
  case "$kv" in spark.master=*) args+=(--master "${kv#spark.master=}") ;; *) args+=(--conf "$kv") ;; esac
done <<<"$conf"

DIR=$(cd "$ROOT" && "$PY" -m lfr.spark --get paths.metastore_dir)
embedded=$(grep -c '^spark.hadoop.javax.jdo.option.ConnectionURL=jdbc:derby:;' <<<"$conf" || true)
if [ "$embedded" = 1 ] && [ -n "$DIR" ] && [ -f "$DIR/sql-server.pid" ] && kill -0 "$(cat "$DIR/sql-server.pid")" 2>/dev/null; then
  echo "the JDBC server (scripts/sql_server.sh) holds the metastore; query through it:" >&2
  echo "  source .venv/bin/activate; beeline -u jdbc:hive2://${LFR_SQL_HOST:-127.0.0.1}:${LFR_SQL_PORT:-10000}/lfr -e \"...\"" >&2
  echo "or share the metastore: make sql-server-stop metastore-up sql-server (docs/OPERATIONS.md)" >&2
  exit 1
fi
exec "$ROOT/.venv/bin/spark-sql" "${args[@]}" "$@"
