"""The session factory: persistent catalog settings, Derby lock detection, Python workers from a plain process."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from lfr.config import load_config
from lfr.spark.session import DERBY_URL_KEY, LOG4J_CONF, derby_in_use, main, session_conf

ROOT = Path(__file__).resolve().parent.parent


def _cfg(tmp_path, *overrides):
    return load_config(overrides=[f"paths.work_dir={tmp_path}", *overrides])


def test_local_profile_uses_embedded_metastore_under_metastore_dir(tmp_path):
    conf = session_conf(_cfg(tmp_path))
    folder = tmp_path / "metastore"
    assert conf["spark.sql.catalogImplementation"] == "hive"
    assert conf[DERBY_URL_KEY] == f"jdbc:derby:;databaseName={folder}/metastore_db;create=true"
    assert conf["spark.sql.warehouse.dir"] == f"{folder}/spark-warehouse"
    opts = conf["spark.driver.extraJavaOptions"]
    assert f"-Dlog4j2.configurationFile=file:{LOG4J_CONF}" in opts
    assert f"-Dderby.stream.error.file={folder}/derby.log" in opts
    assert LOG4J_CONF.is_file()


def test_explicit_settings_win_and_in_memory_has_no_metastore(tmp_path):
    conf = session_conf(_cfg(tmp_path, f"{DERBY_URL_KEY}=jdbc:derby:;databaseName=/x/db;create=true",
                             "spark.sql.warehouse.dir=/x/wh", "spark.driver.extraJavaOptions=-Dfoo=1"))
    assert conf[DERBY_URL_KEY] == "jdbc:derby:;databaseName=/x/db;create=true"
    assert conf["spark.sql.warehouse.dir"] == "/x/wh"
    assert conf["spark.driver.extraJavaOptions"].startswith("-Dfoo=1 -Dlog4j2.configurationFile=")
    mem = session_conf(_cfg(tmp_path, "spark.sql.catalogImplementation=in-memory"))
    assert DERBY_URL_KEY not in mem and "derby" not in mem["spark.driver.extraJavaOptions"]
    none = session_conf(_cfg(tmp_path, "paths.metastore_dir=null"))
    assert DERBY_URL_KEY not in none and none["spark.sql.catalogImplementation"] == "hive"


def test_cli_prints_conf_lines(tmp_path, capsys):
    main(["--conf", f"paths.work_dir={tmp_path}"])
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["spark.master"] == "local[*]"
    assert lines[DERBY_URL_KEY].endswith(f"{tmp_path}/metastore/metastore_db;create=true")
    main(["--conf", f"paths.work_dir={tmp_path}", "--get", "paths.metastore_dir"])
    assert capsys.readouterr().out.strip() == f"{tmp_path}/metastore"


def test_derby_in_use_sees_another_process_lock(tmp_path):
    db = tmp_path / "metastore_db"
    db.mkdir()
    url = f"jdbc:derby:;databaseName={db};create=true"
    assert not derby_in_use(url)  # no database yet
    (db / "dbex.lck").write_bytes(b"")
    assert not derby_in_use(url)  # left over, nobody holds it
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, sys, time
        fh = open({str(db / 'dbex.lck')!r}, 'a+b'); fcntl.lockf(fh, fcntl.LOCK_EX)
        print('locked', flush=True); sys.stdin.read()""")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert derby_in_use(url)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not derby_in_use(url)
    with open(db / "dbex.lck", "a+b") as fh:  # and the probe left no lock behind
        fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)


WRITER = """
import sys
import pandas as pd
from pyspark.sql.functions import pandas_udf
from lfr.config import load_config
from lfr.spark import build_session
from lfr.spark.delta import register_table

cfg = load_config(overrides=sys.argv[1:])
spark = build_session(cfg)

@pandas_udf("long")
def twice(v: pd.Series) -> pd.Series:
    return v * 2

df = spark.range(5).select(twice("id").alias("v"))
df.write.format("delta").save(cfg["paths"]["warehouse"] + "/t")
print("catalog", spark.conf.get("spark.sql.catalogImplementation"))
register_table(spark, "lfr_test", "t", cfg["paths"]["warehouse"] + "/t")
spark.stop()
"""

READER = """
import sys
from lfr.config import load_config
from lfr.spark import build_session

spark = build_session(load_config(overrides=sys.argv[1:]))
print("rows", sorted(r.v for r in spark.sql("SELECT v FROM lfr_test.t").collect()))
spark.stop()
"""


def _plain_env() -> dict[str, str]:
    """A new user's shell: no PYSPARK_PYTHON, the project environment not on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_") and k != "VIRTUAL_ENV"}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_plain_python_runs_pandas_udf_and_catalog_persists(tmp_path):
    """From `python -c` (not spark-submit) the UDF's workers run the project interpreter, and the
    table registered by one process is queryable by name from the next (embedded Derby under tmp)."""
    overrides = [f"paths.work_dir={tmp_path}", "spark.master=local[1]", "spark.ui.enabled=false",
                 "spark.sql.shuffle.partitions=1", "spark.driver.memory=1g"]
    run = dict(cwd=tmp_path, env=_plain_env(), capture_output=True, text=True, timeout=300)
    first = subprocess.run([sys.executable, "-c", WRITER, *overrides], **run)
    assert first.returncode == 0, first.stderr[-4000:]
    assert "catalog hive" in first.stdout
    assert (tmp_path / "metastore" / "metastore_db").is_dir()
    assert not (tmp_path / "derby.log").exists()  # Derby's log stays in the metastore folder
    second = subprocess.run([sys.executable, "-c", READER, *overrides], **run)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "rows [0, 2, 4, 6, 8]" in second.stdout
    assert "INFO SparkContext" not in first.stderr + second.stderr  # log4j2.properties applied
