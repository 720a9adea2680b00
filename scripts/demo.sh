#!/usr/bin/env bash
# The whole pipeline end to end on the configured data (default: the bundled sample,
# the offline all-MiniLM-L6-v2 encoder, local Spark). Called by `make demo`.
# Extra arguments are passed to every job, e.g.:
#   bash scripts/demo.sh --conf paths.data_dir=../shared/data --conf paths.work_dir=work-full
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# pyspark 4.2 warns about pandas 3 in every Python process (driver and UDF workers); known harmless here.
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore:PySpark does not yet fully support pandas:FutureWarning}"
[ -x .venv/bin/spark-submit ] || { echo "run 'make setup' first" >&2; exit 1; }

# One spark-submit, one Spark session for every step (jobs/pipeline.py): each step is the same library
# call as its own job (spark-submit jobs/train.py, jobs/embed_books.py, ...), without paying a JVM start,
# a session and a cold first query per step. --from STEP resumes after a failed step.
printf '\n=== train -> embed books -> embed movies -> lexical features -> score_all -> evaluate -> SQL\n'
spark-submit jobs/pipeline.py "$@" --max-rows 40 --sql "SELECT movie_title, rank, book_title, round(score, 3) AS score
  FROM lfr.movie_book_recommendations
  WHERE movie_title IN ('Jurassic Park', 'The Godfather', 'Harry Potter and the Goblet of Fire')
  ORDER BY movie_title, rank"
cat <<EOF

=== Done. The tables stay registered in the persistent catalog (work/metastore); from any shell:
  make spark-sql SQL="SELECT * FROM lfr.movie_book_recommendations WHERE movie_title = 'Jurassic Park'"
  make sql-server      # JDBC: jdbc:hive2://127.0.0.1:10000/lfr (beeline, BI tools); make sql-server-stop
  notebooks/explore_recommendations.ipynb (kernel: .venv/bin/python)
EOF
