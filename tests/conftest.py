"""Shared fixtures: one local Spark session (Delta enabled) for the whole run.

Starting a JVM costs ~10 s, so the session is module-independent and shared;
each test writes under its own ``tmp_path`` so tests do not see each other's tables.
"""
from __future__ import annotations

import os
import sys

import pytest

# Spark's Python workers must run the project environment's interpreter (pyarrow, torch).
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
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
        "spark.driver.memory=2g",
        "spark.databricks.delta.snapshotPartitions=2",
        "spark.sql.adaptive.coalescePartitions.initialPartitionNum=2",
    ])
    session = build_session(cfg)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()

pytest_plugins = ["tests.fixtures_model"]  # model fixtures: tiny_encoder_dir, tiny_artifact, ... (lfr.model)
