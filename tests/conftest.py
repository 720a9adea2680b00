"""Shared fixtures: one local Spark session (Delta enabled) for the whole run.

Starting a JVM costs ~10 s, so the session is module-independent and shared;
each test writes under its own ``tmp_path`` so tests do not see each other's tables.
"""
from __future__ import annotations

import os

import pytest

# No PYSPARK_PYTHON here: lfr.spark.build_session makes the workers run this interpreter
# (tests/test_session.py checks it from a process without the export).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from lfr.config import load_config
    from lfr.spark import build_session

    warehouse = tmp_path_factory.mktemp("warehouse")
    cfg = load_config(overrides=[
        "spark.master=local[2]",
        "spark.sql.shuffle.partitions=2",
        "spark.default.parallelism=2",
        "spark.ui.enabled=false",
        f"spark.sql.warehouse.dir={warehouse}",
        # Session-scoped catalog: parallel test processes never share (or lock) a Derby metastore.
        # Tests of the persistent catalog start their own process with a tmp paths.metastore_dir.
        "spark.sql.catalogImplementation=in-memory",
        "spark.driver.memory=2g",
        "spark.databricks.delta.snapshotPartitions=2",
        "spark.sql.adaptive.coalescePartitions.initialPartitionNum=2",
    ])
    session = build_session(cfg)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()

pytest_plugins = [
    "tests.fixtures_model",  # model fixtures: tiny_encoder_dir, tiny_artifact, ... (lfr.model)
    "tests.warehouse",       # registered_warehouse: a small warehouse + persistent metastore (notebook, JDBC)
]
