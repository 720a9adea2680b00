# The two commands of the README:
#   make demo   -- set up (cached) and run the whole pipeline on the bundled sample
#   make test   -- set up (cached) and run the test suite
.PHONY: setup demo test bench clean

PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) bench/embed.py && $(PY) bench/score.py

clean:
	rm -rf work spark-warehouse metastore_db derby.log
