#!/usr/bin/env bash
# The pipeline on the local standalone cluster, then on local[2], and the top-k lists compared.
#
#   bash scripts/cluster.sh start
#   bash scripts/cluster_pipeline.sh [MODEL_DIR [--conf KEY=VALUE ...]]   # no MODEL_DIR: jobs/train.py runs on the cluster first
#
# Same model_version on both sides -> the recommendations must be identical (movie, rank, book).
# Scores may differ in the last bits: the encoder's batches differ (partitions, length sorting), and
# under bf16 autocast (model.precision auto on AVX512-BF16/AMX CPUs) that moves embeddings by ~1e-3,
# enough to swap near-tied books; the comparison prints how many lists differ and whether their book
# sets agree. Extra arguments go to every job (e.g. --conf model.precision=fp32).
# Writes work/cluster-pipeline/{cluster,local}/ and prints the comparison.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
URL="$(bash scripts/cluster.sh url)" || { echo "no cluster: bash scripts/cluster.sh start" >&2; exit 1; }
OUT="${LFR_PIPELINE_DIR:-$ROOT/work/cluster-pipeline}"
PY="$ROOT/.venv/bin/python"
export PATH="$ROOT/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SPARK_LOCAL_IP=127.0.0.1
mkdir -p "$OUT/logs"
MODEL="${1:-$OUT/cluster/models/lightfusionrec}"
[ $# -ge 1 ] && shift
COMMON=(--conf spark.sql.catalogImplementation=in-memory --conf "paths.model_dir=$MODEL" "$@")

run() {  # run SIDE NAME SCRIPT ARGS...: one job, stops the script on failure
  local side=$1 name=$2; shift 2
  local master=("--master" "$URL"); [ "$side" = local ] && master=("--master" "local[2]")
  echo "== $side: $name"
  local t0=$SECONDS
  spark-submit "${master[@]}" "$@" --conf "paths.work_dir=$OUT/$side" "${COMMON[@]}" >"$OUT/logs/$side-$name.log" 2>&1 \
    || { tail -30 "$OUT/logs/$side-$name.log"; exit 1; }
  echo "   ok in $((SECONDS - t0)) s"
}

[ -d "$MODEL" ] || run cluster train jobs/train.py
for side in cluster local; do
  run "$side" embed_books jobs/embed_books.py
  run "$side" embed_movies jobs/embed_movies.py
  run "$side" embed_lexical jobs/embed_lexical.py   # score.method hybrid (the default) reads the lexical tables
  run "$side" score_all jobs/score_all.py
done
run cluster sql jobs/sql.py --max-rows 5 -e "SELECT movie_id, rank, book_id, round(score, 3) AS score FROM delta.\`$OUT/cluster/warehouse/recommendations\` ORDER BY movie_id, rank"
grep -A8 "movie_id" "$OUT/logs/cluster-sql.log" | head -8

"$PY" - "$OUT/cluster/warehouse/recommendations" "$OUT/local/warehouse/recommendations" <<'EOF'
import glob, json, os, sys
import pyarrow.parquet as pq
def live(path):   # the current Delta snapshot's rows, from the JSON log (no Spark needed)
    files = {}
    for f in sorted(glob.glob(os.path.join(path, "_delta_log", "*.json"))):
        for line in open(f):
            a = json.loads(line)
            if "add" in a: files[a["add"]["path"]] = 1
            if "remove" in a: files.pop(a["remove"]["path"], None)
    rows = []
    for p in files:
        t = pq.read_table(os.path.join(path, p)).to_pydict()
        rows += list(zip(t["movie_id"], t["rank"], t["book_id"], t["score"], t["model_version"]))
    return sorted(rows)
c, l = live(sys.argv[1]), live(sys.argv[2])
same_lists = [r[:3] for r in c] == [r[:3] for r in l]
lists = lambda rows: {m: [r[2] for r in rows if r[0] == m] for m in {r[0] for r in rows}}
lc, ll = lists(c), lists(l)
differ = [m for m in lc if lc[m] != ll.get(m)]
same_sets = sum(set(lc[m]) == set(ll.get(m, [])) for m in differ)
max_diff = max((abs(a[3] - b[3]) for a, b in zip(c, l)), default=0.0)
movies = len({r[0] for r in c})
print(f"cluster: {len(c)} rows, {movies} movies, model_version {sorted({r[4] for r in c})}")
print(f"local:   {len(l)} rows, model_version {sorted({r[4] for r in l})}")
print(f"identical top-k lists (movie, rank, book): {same_lists}; max |score difference| {max_diff:.2e}")
print(f"lists that differ: {len(differ)} of {len(lc)} movies ({same_sets} of them with the same books, reordered)")
sys.exit(0 if same_lists else 1)
EOF
