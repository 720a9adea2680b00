"""Shared fixtures: one local Spark session (Delta enabled) for the whole run.

Starting a JVM costs ~10 s, so the session is module-independent and shared;
each test writes under its own ``tmp_path`` so tests do not see each other's tables.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.jvm import NO_CODEGEN, SHARED_JVM, SHORT_JVM

# No PYSPARK_PYTHON here: lfr.spark.build_session makes the workers run this interpreter
# (tests/test_session.py checks it from a process without the export).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# SPARK_SUBMIT_OPTS reaches every driver JVM started through spark-submit: the jobs, the JDBC server, the
# notebook kernel's session, the processes of tests/test_session.py and tests/warehouse.py. The shared session
# below gets SHARED_JVM instead (C2 for what stays hot: its whole run's in-process queries).
os.environ.setdefault("SPARK_SUBMIT_OPTS", SHORT_JVM)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from lfr.settings import load_settings
    from lfr.spark import build_session

    warehouse = tmp_path_factory.mktemp("warehouse")
    cfg = load_settings(overrides=[
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
        *NO_CODEGEN,
        # the Python workers fork from a daemon that has imported torch once (tests/daemon/)
        "spark.python.daemon.module=lfr_test_daemon",
        f"spark.executorEnv.PYTHONPATH={Path(__file__).parent / 'daemon'}",
    ])
    submit_opts = os.environ.get("SPARK_SUBMIT_OPTS")
    os.environ["SPARK_SUBMIT_OPTS"] = (submit_opts or "").replace(SHORT_JVM, SHARED_JVM).strip()
    try:
        session = build_session(cfg)
    finally:
        os.environ["SPARK_SUBMIT_OPTS"] = submit_opts or ""
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()

# ------------------------------------------------------------------ parallel runs (pytest-xdist)
# make test runs ``pytest -n 2 --dist loadscope``: most of the suite waits on other processes (spark-submit
# JVMs, a cluster, a JDBC server, a notebook kernel), so two workers overlap the waits. Each worker has its
# own session (above), tmp dirs, warehouses and metastores; the servers take free ports.
#: with --dist loadscope a module runs whole on one worker (its module fixtures are built once), and so do
#: the modules of one of these groups (they share a session fixture worth building once)
SHARED_GROUPS = {"test_notebook.py": "registered_warehouse", "test_sql_server.py": "registered_warehouse",
                 "test_session.py": "registered_warehouse"}
#: the modules that start JVMs, servers or a cluster, longest first: handed out before the rest, so that the
#: two workers finish together (the other modules keep their order)
SLOW_FIRST = ("test_jobs_e2e.py", "test_cluster.py", "test_two_clones.py", "test_notebook.py", "test_sql_server.py",
              "test_session.py")


def pytest_collection_modifyitems(config, items):
    if hasattr(config, "workerinput"):     # an xdist worker; every worker sorts alike
        rank = {name: i for i, name in enumerate(SLOW_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_xdist_make_scheduler(config, log):
    """--dist loadscope by module, with SHARED_GROUPS, in the workers' order (SLOW_FIRST). (Not xdist_group
    marks: --dist loadgroup cannot rename node ids under pytest 9, so it sends every test on its own.)"""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
            return SHARED_GROUPS.get(module, module)

    config.option.loadscopereorder = False
    return ModuleScheduling(config, log)


pytest_plugins = [
    "tests.fixtures_model",  # model fixtures: tiny_encoder_dir, tiny_artifact, ... (lfr.model)
    "tests.warehouse",       # registered_warehouse: a small warehouse + persistent metastore (notebook, JDBC)
]
