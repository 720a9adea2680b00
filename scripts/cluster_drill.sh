#!/usr/bin/env bash
# Fault drill on the local standalone cluster (scripts/cluster.sh): kill things mid-job and check that
# no data is lost. The outcome table in docs/OPERATIONS.md (Fault drills) comes from this script.
#
#   bash scripts/cluster.sh start
#   bash scripts/cluster_drill.sh MODEL_DIR [BOOKS]     # a trained artifact; BOOKS rows of the sample (default 150)
#
# Drills, each on the same warehouse (work/drill):
#   0. clean embed_books + embed_movies + score_all (the reference: Delta version, row count, checksum)
#   1. a worker process (its Worker JVM, SIGKILL) killed mid-embed_books --full -> finishes on the other worker?
#   2. the driver (spark-submit) killed mid-embed_books --full -> previous version intact, the next run completes
#   3. the driver killed mid-score_all -> previous version intact, the next run completes
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODEL="${1:?usage: $0 MODEL_DIR [BOOKS]}"
BOOKS="${2:-150}"
DIR="${LFR_CLUSTER_DIR:-$ROOT/work/cluster}"
URL="$(bash scripts/cluster.sh url)" || { echo "no cluster: bash scripts/cluster.sh start" >&2; exit 1; }
WORK="${LFR_DRILL_DIR:-$ROOT/work/drill}"
PY="$ROOT/.venv/bin/python"
export PATH="$ROOT/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SPARK_LOCAL_IP=127.0.0.1
rm -rf "$WORK"; mkdir -p "$WORK/data" "$WORK/logs"

"$PY" - "$WORK/data" "$BOOKS" <<'EOF'
import json, shutil, sys
import pandas as pd
out, n = sys.argv[1], int(sys.argv[2])
s = "data/sample"
pd.read_csv(f"{s}/books_goodreads.csv", dtype=str, keep_default_na=False).head(n).to_csv(f"{out}/books_goodreads.csv", index=False)
pd.read_csv(f"{s}/movies_imdb_top1000.csv", dtype=str, keep_default_na=False).head(n // 3).to_csv(f"{out}/movies_imdb_top1000.csv", index=False)
wiki = json.load(open(f"{s}/movies_wikipedia_summaries.json"))
json.dump(dict(list(wiki.items())[: n // 3]), open(f"{out}/movies_wikipedia_summaries.json", "w"))
shutil.copy(f"{s}/adaptations_dev.csv", out)
EOF

CONF=(--conf "paths.work_dir=$WORK/work" --conf "paths.data_dir=$WORK/data" --conf "paths.model_dir=$MODEL"
      --conf spark.sql.catalogImplementation=in-memory --conf spark.sql.shuffle.partitions=4)
WH="$WORK/work/warehouse"

job() {  # job NAME SCRIPT [ARGS...]: spark-submit in the background, log in $WORK/logs/NAME.log; pid in JOB_PID
  local name=$1; shift
  spark-submit --master "$URL" "$@" "${CONF[@]}" >"$WORK/logs/$name.log" 2>&1 &
  JOB_PID=$!
}

state() {  # "version rows checksum" of a Delta table, from its log (no Spark needed) and its data files
  "$PY" - "$1" <<'EOF'
import glob, json, os, sys
import pyarrow.parquet as pq
path = sys.argv[1]
logs = sorted(glob.glob(os.path.join(path, "_delta_log", "*.json")))
if not logs:
    print("none 0 -"); sys.exit()
live = {}
for f in logs:
    for line in open(f):
        a = json.loads(line)
        if "add" in a: live[a["add"]["path"]] = a["add"]
        if "remove" in a: live.pop(a["remove"]["path"], None)
rows, ids = 0, []
for p in live:
    t = pq.read_table(os.path.join(path, p))
    rows += t.num_rows
    key = "movie_id" if "movie_id" in t.column_names else "id"
    cols = [key] + (["book_id", "rank"] if key == "movie_id" else ["content_hash"])
    ids += [tuple(map(str, r)) for r in zip(*[t.column(c).to_pylist() for c in cols])]
import hashlib
print(len(logs) - 1, rows, hashlib.sha256(repr(sorted(ids)).encode()).hexdigest()[:12])
EOF
}

wait_for_line() {  # wait_for_line FILE PATTERN SECONDS
  for _ in $(seq 1 $(($3 * 2))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.5; done; return 1
}

kill_driver() {  # the spark-submit JVM and the Python driver it started
  pkill -9 -P "$1" 2>/dev/null; kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null
}

report() { printf '| %s | %s | %s |\n' "$1" "$2" "$3" | tee -a "$WORK/drill.md"; }
echo "| fault | what happened | data lost |" >"$WORK/drill.md"; echo "|---|---|---|" >>"$WORK/drill.md"

echo "== 0. reference run"
job ref_books jobs/embed_books.py; wait $JOB_PID; rc_b=$?
job ref_movies jobs/embed_movies.py; wait $JOB_PID; rc_m=$?
job ref_lexical jobs/embed_lexical.py; wait $JOB_PID; rc_l=$?   # score.method hybrid (the default) reads them
[ "$rc_l" = 0 ] || { echo "embed_lexical failed, see $WORK/logs" >&2; exit 1; }
job ref_score jobs/score_all.py; wait $JOB_PID; rc_s=$?
[ $rc_b$rc_m$rc_s = 000 ] || { echo "reference run failed ($rc_b $rc_m $rc_s), see $WORK/logs" >&2; exit 1; }
read -r bv brows bsum <<<"$(state "$WH/book_embeddings")"
read -r rv rrows rsum <<<"$(state "$WH/recommendations")"
echo "book_embeddings v$bv rows=$brows sum=$bsum; recommendations v$rv rows=$rrows sum=$rsum"

echo "== 1. a worker killed mid-embed_books --full"
job worker_kill jobs/embed_books.py --full
wait_for_line "$WORK/logs/worker_kill.log" "catalog table" 600 && sleep 8
victim="$(cat "$DIR/worker-1.pid")"
kill -9 "$victim"; echo "killed worker-1 (pid $victim) at $(date +%T)"
wait $JOB_PID; rc=$?
read -r v rows sum <<<"$(state "$WH/book_embeddings")"
lost=$([ "$rows" = "$brows" ] && [ "$sum" = "$bsum" ] && echo none || echo "ROWS $rows vs $brows")
report "worker process (Worker JVM) SIGKILLed mid-embed_books --full" \
  "exit $rc; $(grep -c 'Lost task\|lost executor\|Executor lost\|ExecutorLostFailure' "$WORK/logs/worker_kill.log") lost-task/executor lines; table v$bv -> v$v, $rows rows" "$lost"

echo "== 2. the driver killed mid-embed_books --full"
job driver_kill_embed jobs/embed_books.py --full
wait_for_line "$WORK/logs/driver_kill_embed.log" "catalog table" 600 && sleep 8
kill_driver $JOB_PID
read -r v2 rows2 sum2 <<<"$(state "$WH/book_embeddings")"
job rerun_embed jobs/embed_books.py; wait $JOB_PID; rc=$?
read -r v3 rows3 sum3 <<<"$(state "$WH/book_embeddings")"
report "driver SIGKILLed mid-embed_books --full" \
  "table stayed at v$v2 ($rows2 rows, same ids+hashes: $([ "$sum2" = "$bsum" ] && echo yes || echo NO)); next run exit $rc, v$v3, $rows3 rows" \
  "$([ "$rows2" = "$brows" ] && [ "$sum2" = "$bsum" ] && [ "$rows3" = "$brows" ] && echo none || echo CHECK)"

echo "== 3. the driver killed mid-score_all"
job driver_kill_score jobs/score_all.py
wait_for_line "$WORK/logs/driver_kill_score.log" "score_all: profile\|shipping\|blocks" 600 && sleep 6
kill_driver $JOB_PID
read -r v4 rows4 sum4 <<<"$(state "$WH/recommendations")"
job rerun_score jobs/score_all.py; wait $JOB_PID; rc=$?
read -r v5 rows5 sum5 <<<"$(state "$WH/recommendations")"
report "driver SIGKILLed mid-score_all" \
  "table stayed at v$v4 ($rows4 rows, same top-k: $([ "$sum4" = "$rsum" ] && echo yes || echo NO)); next run exit $rc, v$v5, same top-k: $([ "$sum5" = "$rsum" ] && echo yes || echo NO)" \
  "$([ "$rows4" = "$rrows" ] && [ "$sum4" = "$rsum" ] && [ "$sum5" = "$rsum" ] && echo none || echo CHECK)"
echo "drill table: $WORK/drill.md (worker-1 is dead now: bash scripts/cluster.sh stop && start)"
