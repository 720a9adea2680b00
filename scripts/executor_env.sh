#!/usr/bin/env bash
# make executor-env: the executors' Python environment for model.runtime: onnx, packed for spark-submit --archives.
#
# What it holds: requirements-executor.txt (onnxruntime, tokenizers, safetensors, numpy, pandas, pyarrow) and
# nothing else -- no torch, transformers or fasttext; pyspark comes from the cluster's Spark
# (SPARK_HOME/python/lib/pyspark.zip) and lfr from the job (it ships its own code to the executors).
# Not installed, so the archive stays small: pip/setuptools, the packages' test suites and C headers,
# bytecode (compiled on first import), tokenizers' Hub client (only from_pretrained downloads use it; the
# executors read tokenizer.json from the artifact), and the pyarrow parts Spark's Arrow exchange does not
# load (Flight, S3, GCS, Azure, its C++ tests).
#
# Content-named and cached: $LFR_CACHE/executor-env/lfr-executor-py<ver>-<hash of the pins and this script>.tar.gz
# (venv-pack; a rerun with the same pins is a no-op). The Python interpreter is not packed (venv-pack): the
# executors need the same Python minor version at the same path as this machine's (see docs/OPERATIONS.md).
# Prints the archive's path and the environment's sizes; `--path` prints only the path.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LFR_CACHE="${LFR_CACHE:-$HOME/.cache/lfr}"
PY="$ROOT/.venv/bin/python"
say() { printf '[executor-env] %s\n' "$*" >&2; }
die() { printf '[executor-env] ERROR: %s\n' "$*" >&2; exit 1; }

[ -x "$PY" ] || die "no project environment at .venv: run make setup first"
BASE_PYTHON=$("$PY" -c 'import sys; print(sys._base_executable)')
pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
key=$(cat "$ROOT/requirements-executor.txt" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12)
NAME="lfr-executor-py${pyver}-${key}"
DIR="$LFR_CACHE/executor-env"
ENV="$DIR/$NAME"
OUT="$DIR/$NAME.tar.gz"

if [ ! -f "$OUT" ]; then
  say "building $ENV from requirements-executor.txt"
  mkdir -p "$DIR"
  rm -rf "$ENV"
  "$BASE_PYTHON" -m venv --without-pip "$ENV"
  pip=("$PY" -m pip --python "$ENV/bin/python" install -q --no-compile --disable-pip-version-check)
  grep -v '^tokenizers' "$ROOT/requirements-executor.txt" > "$DIR/$NAME.req"
  "${pip[@]}" -r "$DIR/$NAME.req"
  "${pip[@]}" --no-deps "$(grep '^tokenizers' "$ROOT/requirements-executor.txt")"
  rm -f "$DIR/$NAME.req"
  site=$("$ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  find "$site" -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} +
  rm -rf "$site/pyarrow/include" "$site/pyarrow/src"
  rm -f "$site"/pyarrow/*flight* "$site"/pyarrow/*s3* "$site"/pyarrow/_gcsfs* "$site"/pyarrow/_azurefs* \
        "$site"/pyarrow/_pyarrow_cpp_tests* "$site"/pyarrow/*.pxd "$site"/pyarrow/*.pyx
  # the packed environment must do what an executor does on the onnx path
  "$ENV/bin/python" - <<'PYCHECK' || die "the built environment cannot run the onnx path's imports"
import numpy, pandas, pyarrow, onnxruntime, tokenizers, safetensors.numpy  # noqa: F401
frame = pandas.DataFrame({"x": [1.0, 2.0], "s": ["a", None]})
assert pyarrow.Table.from_pandas(frame).to_pandas().equals(frame)
PYCHECK
  rm -rf "$DIR/partial" && mkdir -p "$DIR/partial"
  "$PY" -m venv_pack -p "$ENV" -o "$DIR/partial/$NAME.tar.gz" --force -q
  mv "$DIR/partial/$NAME.tar.gz" "$OUT" && rmdir "$DIR/partial"
fi

if [ "${1:-}" = "--path" ]; then
  echo "$OUT"
  exit 0
fi
installed=$(du -sm "$ENV" | cut -f1)
packed=$(( $(stat -c %s "$OUT") / 1048576 ))
say "environment: $ENV (${installed} MiB installed)"
say "archive:     $OUT (${packed} MiB)"
say "use: spark-submit --archives $OUT#env --conf spark.pyspark.python=./env/bin/python jobs/embed_books.py --conf model.runtime=onnx"
echo "$OUT"
