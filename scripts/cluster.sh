#!/usr/bin/env bash
# A local Spark standalone cluster: one master + N workers (default 2), each worker its own JVM,
# work directory, cores and memory cap, all bound to 127.0.0.1 on free ports.
#
#   bash scripts/cluster.sh start     # prints the master URL (spark://127.0.0.1:PORT)
#   bash scripts/cluster.sh status    # master URL, alive workers (from the master's JSON page)
#   bash scripts/cluster.sh stop      # stops every process it started (also stale pids)
#   bash scripts/cluster.sh url       # the master URL only (for scripts: --master "$(... url)")
#
# Why not sbin/start-all.sh: pyspark's pip package ships bin/spark-class and the jars, not sbin/, and
# the daemon scripts write pids/logs under SPARK_HOME (the shared environment). Here everything lives
# in $LFR_CLUSTER_DIR (default work/cluster): state (pids, URL), logs, worker work dirs.
#
# Settings (environment): LFR_CLUSTER_DIR, LFR_CLUSTER_WORKERS (2), LFR_WORKER_CORES (1),
# LFR_WORKER_MEMORY (1g), LFR_MASTER_PORT (free port), LFR_CLUSTER_PYTHON (.venv/bin/python),
# LFR_WORKER_GPUS (0: none; N: each worker offers N GPUs found by LFR_GPU_DISCOVERY, default
# scripts/gpu_discovery.sh = nvidia-smi's indices; jobs then ask with spark.executor.resource.gpu.amount
# and spark.task.resource.gpu.amount, docs/OPERATIONS.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${LFR_CLUSTER_DIR:-$ROOT/work/cluster}"
WORKERS="${LFR_CLUSTER_WORKERS:-2}"
CORES="${LFR_WORKER_CORES:-1}"
MEMORY="${LFR_WORKER_MEMORY:-1g}"
PY="${LFR_CLUSTER_PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"

die() { echo "cluster.sh: $*" >&2; exit 1; }

spark_home() {
  "$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))' 2>/dev/null \
    || die "pyspark is not importable from $PY (run make setup)"
}

free_ports() {  # N distinct ports nobody listens on now (the OS picks them), one line
  "$PY" - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

master_url() { [ -f "$DIR/master.url" ] && cat "$DIR/master.url"; }

json_workers() {  # "ALIVE workers / cores" from the master's web UI JSON
  local ui; ui="$(cat "$DIR/master.ui" 2>/dev/null)" || return 1
  "$PY" - "$ui" <<'EOF'
import json, sys, urllib.request
try:
    data = json.load(urllib.request.urlopen(sys.argv[1] + "/json/", timeout=3))
except Exception as exc:
    print(f"master UI not answering ({exc})"); sys.exit(1)
alive = [w for w in data.get("workers", []) if w.get("state") == "ALIVE"]
print(f"{len(alive)} alive workers, {sum(w['cores'] for w in alive)} cores, status {data.get('status')}")
for w in alive:
    print(f"  {w['id']} {w['host']}:{w['port']} cores={w['cores']} memory={w['memory']}MB")
sys.exit(0 if alive else 2)
EOF
}

wait_for() {  # wait_for SECONDS COMMAND...: until COMMAND succeeds
  local limit=$1; shift
  for _ in $(seq 1 $((limit * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  return 1
}

workers_registered() {  # the master's log names every worker as registered
  local n; n="$(grep -c 'Registering worker' "$DIR/logs/master.log" 2>/dev/null)" || n=0
  [ "${n:-0}" -ge "$WORKERS" ]
}

start() {
  if alive "$(cat "$DIR/master.pid" 2>/dev/null)"; then
    echo "cluster already running: $(master_url)"; return 0
  fi
  stop >/dev/null 2>&1 || true
  command -v java >/dev/null || [ -n "${JAVA_HOME:-}" ] || die "java not found (Java 17+ needed)"
  local home; home="$(spark_home)"
  mkdir -p "$DIR/logs"
  # The daemons log at INFO for Spark's deploy classes (registrations, executors launched/lost), WARN elsewhere.
  cat >"$DIR/log4j2-daemons.properties" <<'EOF'
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.deploy.name = org.apache.spark.deploy
logger.deploy.level = info
EOF
  export SPARK_DAEMON_JAVA_OPTS="-Dlog4j2.configurationFile=file:$DIR/log4j2-daemons.properties ${SPARK_DAEMON_JAVA_OPTS:-}"
  # The class-data archive setup.sh wrote for the drivers serves the daemons too, on the same class path.
  local defaults="$home/conf/spark-defaults.conf" cds_cp cds_opt
  cds_cp=$(sed -n 's/^spark\.driver\.extraClassPath //p' "$defaults" 2>/dev/null || true)
  cds_opt=$(grep -o -- '-XX:SharedArchiveFile=[^ ]*' "$defaults" 2>/dev/null | head -1 || true)
  if [ -n "$cds_cp" ] && [ -n "$cds_opt" ]; then
    export SPARK_DAEMON_CLASSPATH="$cds_cp${SPARK_DAEMON_CLASSPATH:+:$SPARK_DAEMON_CLASSPATH}"
    SPARK_DAEMON_JAVA_OPTS="$cds_opt $SPARK_DAEMON_JAVA_OPTS"
  fi
  export SPARK_HOME="$home" SPARK_LOCAL_IP=127.0.0.1 SPARK_MASTER_HOST=127.0.0.1
  export SPARK_DAEMON_MEMORY="${SPARK_DAEMON_MEMORY:-256m}" SPARK_LOG_DIR="$DIR/logs"
  # Executors' Python workers: the driver sends its interpreter; this is the fallback.
  export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PY}"
  local ports; read -r -a ports <<<"$(free_ports $((2 + 2 * WORKERS)))"
  local port="${LFR_MASTER_PORT:-${ports[0]}}" ui="${ports[1]}"
  nohup "$home/bin/spark-class" org.apache.spark.deploy.master.Master \
    --host 127.0.0.1 --port "$port" --webui-port "$ui" >"$DIR/logs/master.log" 2>&1 &
  echo $! >"$DIR/master.pid"
  echo "spark://127.0.0.1:$port" >"$DIR/master.url"
  echo "http://127.0.0.1:$ui" >"$DIR/master.ui"
  wait_for 60 grep -q "I have been elected leader" "$DIR/logs/master.log" \
    || { tail -20 "$DIR/logs/master.log" >&2; stop; die "master did not start"; }
  if [ "${LFR_WORKER_GPUS:-0}" -gt 0 ]; then   # the Worker JVM reads SPARK_WORKER_OPTS
    export SPARK_WORKER_OPTS="-Dspark.worker.resource.gpu.amount=$LFR_WORKER_GPUS \
-Dspark.worker.resource.gpu.discoveryScript=${LFR_GPU_DISCOVERY:-$ROOT/scripts/gpu_discovery.sh} ${SPARK_WORKER_OPTS:-}"
  fi
  local i wport wui
  for i in $(seq 1 "$WORKERS"); do
    wport="${ports[$((2 * i))]}"; wui="${ports[$((2 * i + 1))]}"
    mkdir -p "$DIR/worker-$i"
    nohup "$home/bin/spark-class" org.apache.spark.deploy.worker.Worker \
      --host 127.0.0.1 --port "$wport" --webui-port "$wui" --cores "$CORES" --memory "$MEMORY" \
      --work-dir "$DIR/worker-$i" "spark://127.0.0.1:$port" >"$DIR/logs/worker-$i.log" 2>&1 &
    echo $! >"$DIR/worker-$i.pid"
  done
  wait_for 90 workers_registered || { tail -20 "$DIR"/logs/*.log >&2; stop; die "workers did not register"; }
  grep 'Registering worker' "$DIR/logs/master.log" | sed 's/^/  /'
  echo "master: $(master_url)  (web UI $(cat "$DIR/master.ui"), logs in $DIR/logs)"
}

stop() {
  local f pid n=0
  for f in "$DIR"/worker-*.pid "$DIR/master.pid"; do   # workers first: they would re-register
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    if alive "$pid"; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do alive "$pid" || break; sleep 0.5; done
      alive "$pid" && kill -9 "$pid" 2>/dev/null || true
      n=$((n + 1))
    fi
    rm -f "$f"
  done
  rm -f "$DIR/master.url" "$DIR/master.ui"
  echo "stopped $n cluster processes"
}

status() {
  local url; url="$(master_url)" || { echo "no cluster (nothing in $DIR)"; return 1; }
  alive "$(cat "$DIR/master.pid" 2>/dev/null)" || { echo "master $url: not running (stale state; run stop)"; return 1; }
  echo "master: $url"
  json_workers
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  url) master_url || exit 1 ;;
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
