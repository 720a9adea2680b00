#!/usr/bin/env bash
# One-time (and idempotent) set-up: Java check, Python environment, Delta jars, Derby network jars.
#
# Everything heavy is cached under $LFR_CACHE (default ~/.cache/lfr), so a second
# run -- or a fresh clone on the same machine -- reuses it and needs no network:
#   $LFR_CACHE/venv-py3.11-<hash of requirements*.txt>   the virtual environment (torch is ~4 GB)
#   $LFR_CACHE/jars/delta-4.4.0/                         Delta Lake jars from Maven Central
#   $LFR_CACHE/jars/derby-<pyspark's Derby version>/     Derby network server + client (make metastore-up)
#   $LFR_CACHE/cds/spark-<hash of Java and jars>.jsa      the Spark JVMs' class-data archive
# .venv in the project is a symlink to the cached environment (shared by clones; the
# project itself is not installed into it, see below).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LFR_CACHE="${LFR_CACHE:-$HOME/.cache/lfr}"
DELTA_VERSION="4.4.0"
DELTA_ARTIFACTS=("io.delta:delta-spark_4.2_2.13:${DELTA_VERSION}" "io.delta:delta-storage:${DELTA_VERSION}")
JARS_DIR="$LFR_CACHE/jars/delta-${DELTA_VERSION}"
start=$(date +%s)

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- Java 17+ (Spark 4 runs on Java 17 or 21) ---------------------------------
command -v java >/dev/null 2>&1 || die "java not found. Spark 4 needs Java 17+: apt-get install openjdk-17-jre-headless (or set JAVA_HOME)."
java_major=$(java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}')
[ -n "$java_major" ] && [ "$java_major" -ge 17 ] 2>/dev/null || die "Java 17+ required by Spark 4, found: $(java -version 2>&1 | head -1)"

# --- Python 3.11+ -------------------------------------------------------------
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for cand in python3.11 python3.12 python3; do command -v "$cand" >/dev/null 2>&1 && { PYTHON="$cand"; break; }; done
fi
[ -n "$PYTHON" ] || die "python3 not found (3.11+ required)"
pyver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || die "Python 3.11+ required, $PYTHON is $pyver"

# --- Virtual environment, cached by the hash of the pins ----------------------
key=$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -c1-12)
VENV="$LFR_CACHE/venv-py${pyver}-${key}"
if [ ! -f "$VENV/.lfr-complete" ]; then
  say "creating $VENV (first run: downloads torch & co., several minutes)"
  rm -rf "$VENV"; mkdir -p "$LFR_CACHE"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
  "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt"
  touch "$VENV/.lfr-complete"
else
  say "reusing $VENV"
fi
ln -sfn "$VENV" "$ROOT/.venv"
# The environment is shared by every clone on this machine, so it holds NO copy of the project: an
# (editable) install would point at whichever clone ran setup last and the others would silently import
# its code. Jobs put their own clone on sys.path (jobs/jobkit.py) and ship it to the executors
# (lfr.spark.ship_library); make, scripts/*.sh and the tests export PYTHONPATH=<clone>.
if "$VENV/bin/python" -m pip show -q lightfusionrec >/dev/null 2>&1; then
  say "removing the project's install from the shared environment (each clone uses its own code)"
  "$VENV/bin/python" -m pip uninstall -q -y lightfusionrec
fi

# --- Delta Lake jars from Maven Central, once ---------------------------------
# fetch_jars LABEL DIR COORDINATE...: the artifacts from Maven Central into DIR, atomically (DIR.partial
# first), so an interrupted fetch is redone; mvn is needed for this once.
fetch_jars() {
  local label=$1 dir=$2 art
  shift 2
  command -v mvn >/dev/null 2>&1 || die "mvn not found: needed once to fetch $* (apt-get install maven), or put the jars in $dir"
  say "fetching $label jars into $dir"
  rm -rf "$dir.partial"; mkdir -p "$dir.partial"
  for art in "$@"; do
    mvn -q -B -Dstyle.color=never dependency:copy -Dartifact="$art" -DoutputDirectory="$dir.partial" >/dev/null || die "could not fetch $art from Maven Central"
  done
  rm -rf "$dir"; mv "$dir.partial" "$dir"
}

if ! ls "$JARS_DIR"/delta-spark_*.jar >/dev/null 2>&1 || ! ls "$JARS_DIR"/delta-storage-*.jar >/dev/null 2>&1; then
  fetch_jars "Delta ${DELTA_VERSION}" "$JARS_DIR" "${DELTA_ARTIFACTS[@]}"
else
  say "reusing Delta jars in $JARS_DIR"
fi

SPARK_HOME_DIR=$("$VENV/bin/python" -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))')

# --- Derby network server and client, once (scripts/metastore.sh) ----------------
# The shared metastore (make metastore-up) serves the embedded metastore's database over Derby's network
# protocol: the same Derby version as pyspark's own derby-*.jar, so either Derby opens the same files.
DERBY_VERSION=$(find "$SPARK_HOME_DIR/jars" -maxdepth 1 -name 'derby-[0-9]*.jar' -printf '%f\n' | sed 's/^derby-//; s/\.jar$//' | sort -V | tail -1)
[ -n "$DERBY_VERSION" ] || die "no derby-<version>.jar in $SPARK_HOME_DIR/jars: cannot tell which Derby to fetch"
DERBY_DIR="$LFR_CACHE/jars/derby-${DERBY_VERSION}"
DERBY_ARTIFACTS=(derby derbyshared derbytools derbynet derbyclient)
derby_complete() { local a; for a in "${DERBY_ARTIFACTS[@]}"; do [ -f "$DERBY_DIR/$a-${DERBY_VERSION}.jar" ] || return 1; done; }
if ! derby_complete; then
  fetch_jars "Derby ${DERBY_VERSION} network server and client" "$DERBY_DIR" \
    $(printf "org.apache.derby:%s:${DERBY_VERSION} " "${DERBY_ARTIFACTS[@]}")
else
  say "reusing Derby jars in $DERBY_DIR"
fi

# spark-submit from this environment reads $SPARK_HOME/conf/spark-defaults.conf:
# put the cached Delta jars and extensions there so `spark-submit jobs/x.py` just works; the Derby client on
# the driver's class path (it must be there, not in spark.jars: lfr/spark/session.py), so that a job reaches
# the shared metastore when make metastore-up runs one (unused otherwise).
# Spark's own jars are on that class path too, before the conf dir Spark's launcher puts first otherwise: the
# JVM maps a class-data-sharing archive (below) only when no non-empty folder precedes the archived jars.
DEFAULTS="$SPARK_HOME_DIR/conf/spark-defaults.conf"
JVM_CLASSPATH="$DERBY_DIR/derbyclient-${DERBY_VERSION}.jar:$SPARK_HOME_DIR/jars/*"
mkdir -p "$SPARK_HOME_DIR/conf"
{
  echo "# written by lightfusionrec scripts/setup.sh"
  echo "spark.jars $(ls "$JARS_DIR"/*.jar | paste -sd, -)"
  echo "spark.driver.extraClassPath $JVM_CLASSPATH"
  echo "spark.pyspark.python $VENV/bin/python"
  echo "spark.pyspark.driver.python $VENV/bin/python"
  echo "spark.log.level WARN"
  echo "spark.sql.extensions io.delta.sql.DeltaSparkSessionExtension"
  echo "spark.sql.catalog.spark_catalog org.apache.spark.sql.delta.catalog.DeltaCatalog"
} > "$DEFAULTS"
# Spark's own logs at WARN for every launcher of this environment (spark-submit, spark-sql, beeline).
cp "$ROOT/conf/log4j2.properties" "$SPARK_HOME_DIR/conf/log4j2.properties"

# --- Class-data sharing for the Spark JVMs, once per Java + Spark install ------------------------
# A JVM that maps an archive of the classes a job loads (-XX:SharedArchiveFile) skips loading, parsing and
# verifying them at every start (docs/BENCHMARKS.md). scripts/cds_warmup.py runs a small job whose JVM writes
# the archive at exit; the drivers of spark-submit, pyspark and spark-sql then use it (spark-defaults.conf), and
# the daemons and executors of scripts/cluster.sh.
# A JVM that cannot use it (another class path, another Java) starts as before. LFR_CDS=0: no archive.
CDS_KEY=$({ java -version 2>&1; ls -l --time-style=+%s "$SPARK_HOME_DIR/jars" "$DERBY_DIR"; cat "$ROOT/scripts/cds_warmup.py"; } | sha256sum | cut -c1-12)
CDS_ARCHIVE="$LFR_CACHE/cds/spark-${CDS_KEY}.jsa"
if [ "${LFR_CDS:-1}" != 0 ] && [ ! -f "$CDS_ARCHIVE" ]; then
  say "writing the class-data archive $CDS_ARCHIVE (once, about a minute)"
  mkdir -p "$LFR_CACHE/cds"; rm -f "$CDS_ARCHIVE.partial"
  if SPARK_HOME="$SPARK_HOME_DIR" PATH="$VENV/bin:$PATH" SPARK_SUBMIT_OPTS="-XX:ArchiveClassesAtExit=$CDS_ARCHIVE.partial" \
       "$VENV/bin/spark-submit" \
       "$ROOT/scripts/cds_warmup.py" >"$LFR_CACHE/cds/warmup.log" 2>&1 && [ -s "$CDS_ARCHIVE.partial" ]; then
    mv "$CDS_ARCHIVE.partial" "$CDS_ARCHIVE"
  else
    say "WARNING: no class-data archive (jobs start as before); see $LFR_CACHE/cds/warmup.log"
  fi
fi
if [ "${LFR_CDS:-1}" != 0 ] && [ -f "$CDS_ARCHIVE" ]; then
  # the executors of a cluster on this machine too (scripts/cluster.sh); elsewhere these paths are absent, and
  # a JVM skips a missing class path entry and a missing archive without a word
  {
    echo "spark.driver.defaultJavaOptions -XX:SharedArchiveFile=$CDS_ARCHIVE"
    echo "spark.executor.extraClassPath $JVM_CLASSPATH"
    echo "spark.executor.defaultJavaOptions -XX:SharedArchiveFile=$CDS_ARCHIVE"
  } >> "$DEFAULTS"
fi

say "ready in $(( $(date +%s) - start ))s: $(readlink "$ROOT/.venv" 2>/dev/null || echo "$VENV") (activate with: source .venv/bin/activate)"
