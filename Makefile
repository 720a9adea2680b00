# The two commands of the README:
#   make demo   -- set up (cached) and run the whole pipeline on the bundled sample
#   make test   -- set up (cached), lint (ruff), then run the test suite
.PHONY: setup demo lint test bench clean sql-server sql-server-stop spark-sql metastore-up metastore-down cluster-up cluster-down executor-env

PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# This clone's library first (the cached .venv is shared by clones and holds no copy of the project).
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

# ruff (ruff.toml): pyflakes, pycodestyle (120 columns), import order; `make test` runs it first.
lint: setup
	$(PY) -m ruff check lfr jobs udfs tests bench scripts

# Two pytest-xdist workers, a test module per worker at a time (tests/conftest.py: which modules go first and
# which share one); the 15 slowest tests printed at the end. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: setup lint
	$(PY) -m pytest -q --durations=15 $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadscope) tests

bench: setup
	$(PY) bench/embed.py && $(PY) bench/score.py

# Querying the tables after `make demo` (persistent catalog: embedded Derby metastore in work/metastore,
# one process at a time). spark-sql with the project's settings: make spark-sql SQL="SELECT ..."
# (without SQL: interactive). The JDBC server: make sql-server [LFR_SQL_PORT=10000], then any JDBC/ODBC
# client (beeline, DBeaver, Tableau, Power BI) on jdbc:hive2://127.0.0.1:10000/lfr; make sql-server-stop.
spark-sql: setup
	bash scripts/spark_sql.sh $(if $(SQL),-e "$(SQL)")

sql-server: setup
	bash scripts/sql_server.sh start

sql-server-stop:
	bash scripts/sql_server.sh stop

# The shared metastore: Derby's network server on work/metastore/metastore_db (127.0.0.1, a free port or
# metastore.port), so jobs, spark-sql, the JDBC server and notebooks use one catalog at once. Start it
# before make sql-server; make metastore-down returns everyone to embedded Derby (docs/OPERATIONS.md).
metastore-up: setup
	bash scripts/metastore.sh start

metastore-down:
	bash scripts/metastore.sh stop

# A local Spark standalone cluster (master + 2 workers, 1 core / 1g each, 127.0.0.1, free ports; state and
# logs in work/cluster): make cluster-up prints the master URL for spark-submit --master; make cluster-down.
cluster-up: setup
	bash scripts/cluster.sh start

cluster-down:
	bash scripts/cluster.sh stop

# The executors' environment for model.runtime: onnx (onnxruntime, tokenizers, numpy, pandas, pyarrow; no torch),
# packed with venv-pack for spark-submit --archives ENV#env; content-named, cached in $LFR_CACHE/executor-env.
executor-env: setup
	bash scripts/executor_env.sh

clean:
	-bash scripts/sql_server.sh stop >/dev/null 2>&1
	-bash scripts/metastore.sh stop >/dev/null 2>&1
	rm -rf work spark-warehouse metastore_db derby.log
