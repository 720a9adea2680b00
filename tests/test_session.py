"""The session factory: persistent catalog settings, Derby lock detection, Python workers from a plain process."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from lfr.settings import load_settings
from lfr.spark.session import DERBY_URL_KEY, LOG4J_CONF, derby_in_use, main, session_conf

ROOT = Path(__file__).resolve().parent.parent


def _cfg(tmp_path, *overrides):
    return load_settings(overrides=[f"paths.work_dir={tmp_path}", *overrides])


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


def test_plain_python_runs_pandas_udf_and_catalog_persists(registered_warehouse):
    """From `python -c` (not spark-submit) in a new user's shell (no PYSPARK_PYTHON, the project environment
    not on PATH) the UDF's workers run the project interpreter, and the tables registered go to the embedded
    Derby metastore under the work dir. The process is tests/warehouse.py's REGISTER (paid once for this,
    the notebook and the JDBC tests); the next processes query the registered names: the JDBC server
    (tests/test_sql_server.py) and the notebook's kernel (tests/test_notebook.py)."""
    from tests.warehouse import new_user_env

    run, work_dir = registered_warehouse.register, registered_warehouse.work_dir
    assert run.args[0] == sys.executable and run.args[1] == "-c"
    assert "udf [0, 2, 4, 6, 8]" in run.stdout, run.stdout
    assert "catalog: hive" in run.stdout
    assert (work_dir / "metastore" / "metastore_db").is_dir()
    assert not (work_dir / "derby.log").exists()  # Derby's log stays in the metastore folder (cwd: work_dir)
    assert "INFO SparkContext" not in run.stderr  # log4j2.properties applied
    env = new_user_env()        # the shell it ran in
    assert not any(k.startswith("PYSPARK_") for k in env) and "VIRTUAL_ENV" not in env
    assert str(Path(sys.executable).parent) not in env["PATH"].split(os.pathsep)
