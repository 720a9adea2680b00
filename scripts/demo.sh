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

step() { printf '\n=== %s\n' "$*"; }
step "1/6 train the fusion model";         spark-submit jobs/train.py "$@"
step "2/6 embed the book catalog";         spark-submit jobs/embed_books.py "$@"
step "3/6 embed the movie catalog";        spark-submit jobs/embed_movies.py "$@"
# score.method hybrid/lexical read the lexical (BM25) tables: built here so the demo works from a fresh clone
step "4/6 lexical features of both catalogs"; spark-submit jobs/embed_lexical.py "$@"
step "5/6 exact top-k books for every movie"; spark-submit jobs/score_all.py "$@"
step "6/6 evaluate against known adaptations"; spark-submit jobs/evaluate.py "$@"
step "SQL: SELECT ... FROM lfr.movie_book_recommendations"
spark-submit jobs/sql.py "$@" --max-rows 40 -e "SELECT movie_title, rank, book_title, round(score, 3) AS score
  FROM lfr.movie_book_recommendations
  WHERE movie_title IN ('Jurassic Park', 'The Godfather', 'Harry Potter and the Goblet of Fire')
  ORDER BY movie_title, rank"
cat <<EOF

=== Done. The tables stay registered in the persistent catalog (work/metastore); from any shell:
  make spark-sql SQL="SELECT * FROM lfr.movie_book_recommendations WHERE movie_title = 'Jurassic Park'"
  make sql-server      # JDBC: jdbc:hive2://127.0.0.1:10000/lfr (beeline, BI tools); make sql-server-stop
  notebooks/explore_recommendations.ipynb (kernel: .venv/bin/python)
EOF
