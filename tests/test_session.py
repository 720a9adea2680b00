"""The session factory: persistent catalog settings (embedded Derby, or the shared Derby network server while
scripts/metastore.sh runs one), Derby lock detection, Python workers from a plain process."""
from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from lfr.settings import load_settings
from lfr.spark.session import (
    DELTA_JAR_DIRNAME,
    DERBY_CLIENT_DRIVER,
    DERBY_DRIVER_KEY,
    DERBY_URL_KEY,
    EXTRA_CLASSPATH_KEY,
    LOG4J_CONF,
    SparkSetupError,
    derby_in_use,
    derby_version,
    lfr_cache_dir,
    main,
    session_conf,
    ship_library,
)

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


def _serve(tmp_path, monkeypatch, pid: int | None = None):
    """What scripts/metastore.sh leaves while its server runs: a port file and a pid file in the metastore
    folder, the port accepting connections (a plain listening socket here), and Derby's client jar in the cache."""
    version, cache = derby_version(), tmp_path / "cache"
    jar = cache / "jars" / f"derby-{version}" / f"derbyclient-{version}.jar"
    jar.parent.mkdir(parents=True, exist_ok=True)
    jar.write_bytes(b"")
    if not (cache / "jars" / DELTA_JAR_DIRNAME).exists():
        (cache / "jars" / DELTA_JAR_DIRNAME).symlink_to(lfr_cache_dir() / "jars" / DELTA_JAR_DIRNAME)
    monkeypatch.setenv("LFR_CACHE", str(cache))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    folder = tmp_path / "metastore"
    folder.mkdir(exist_ok=True)
    (folder / "derby-server.port").write_text(f"{server.getsockname()[1]}\n")
    (folder / "derby-server.pid").write_text(f"{pid or os.getpid()}\n")
    return server, str(jar)


def test_sessions_use_the_shared_metastore_while_its_server_runs(tmp_path, monkeypatch, capsys):
    server, jar = _serve(tmp_path, monkeypatch)
    port, folder = server.getsockname()[1], tmp_path / "metastore"
    with server:
        conf = session_conf(_cfg(tmp_path, "spark.driver.extraClassPath=/x/other.jar"))
        assert conf[DERBY_URL_KEY] == f"jdbc:derby://127.0.0.1:{port}/metastore_db;create=true"
        assert conf[DERBY_DRIVER_KEY] == DERBY_CLIENT_DRIVER == "org.apache.derby.jdbc.ClientDriver"
        assert conf[EXTRA_CLASSPATH_KEY] == f"/x/other.jar{os.pathsep}{jar}"   # the JVM's class path: not spark.jars
        assert jar not in conf.get("spark.jars", "")
        assert conf["spark.sql.warehouse.dir"] == f"{folder}/spark-warehouse"
        assert "derby.stream.error.file" not in conf["spark.driver.extraJavaOptions"]  # no Derby engine here
        main(["--conf", f"paths.work_dir={tmp_path}"])      # what spark-sql and the JDBC server start with
        lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
        assert lines[DERBY_URL_KEY] == conf[DERBY_URL_KEY] and lines[EXTRA_CLASSPATH_KEY] == jar
        embedded = session_conf(_cfg(tmp_path, "metastore.server=never"))   # only by config, never by accident
        assert embedded[DERBY_URL_KEY] == f"jdbc:derby:;databaseName={folder}/metastore_db;create=true"
        assert DERBY_DRIVER_KEY not in embedded and EXTRA_CLASSPATH_KEY not in embedded
        assert DERBY_URL_KEY not in session_conf(_cfg(tmp_path, "paths.metastore_dir=null"))  # no local metastore
    # the server is gone, its files left behind (killed): embedded Derby again, with a warning
    stale = session_conf(_cfg(tmp_path))
    assert stale[DERBY_URL_KEY].startswith("jdbc:derby:;databaseName=") and DERBY_DRIVER_KEY not in stale


def test_no_shared_metastore_when_its_process_is_gone(tmp_path, monkeypatch):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    server, _ = _serve(tmp_path, monkeypatch, pid=int(gone.stdout))
    with server:   # something else answers on the recorded port: not our server
        assert session_conf(_cfg(tmp_path))[DERBY_URL_KEY].startswith("jdbc:derby:;databaseName=")


def test_metastore_server_always_requires_a_server(tmp_path, monkeypatch, capsys):
    with pytest.raises(SparkSetupError, match="no port is known.*make metastore-up"):
        session_conf(_cfg(tmp_path, "metastore.server=always"))
    assert main(["--conf", f"paths.work_dir={tmp_path}", "--conf", "metastore.server=always"]) == 2
    assert "error: metastore.server is 'always' but no port" in capsys.readouterr().err   # the scripts show this
    server, _ = _serve(tmp_path, monkeypatch)
    port = server.getsockname()[1]
    (tmp_path / "metastore" / "derby-server.port").unlink()
    with server:   # a configured host:port (e.g. a Derby server on another machine) needs no port file
        conf = session_conf(_cfg(tmp_path, "metastore.server=always", f"metastore.port={port}"))
        assert conf[DERBY_URL_KEY] == f"jdbc:derby://127.0.0.1:{port}/metastore_db;create=true"
    with pytest.raises(SparkSetupError, match=f"no Derby network server answers on 127.0.0.1:{port}"):
        session_conf(_cfg(tmp_path, "metastore.server=always", f"metastore.port={port}"))


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


def test_the_shipped_library_zip_carries_bytecode_the_workers_import(tmp_path):
    """ship_library's zip: each module's source and its bytecode; a Python with the zip on its path (as a Spark
    worker has it) imports the bytecode, and the code runs as the source's."""
    from types import SimpleNamespace

    from lfr.score.kernel import score_margin

    added = []
    shipped = ship_library(SimpleNamespace(sparkContext=SimpleNamespace(addPyFile=added.append)))
    assert added == [shipped]
    names = set(zipfile.ZipFile(shipped).namelist())
    sources = {n for n in names if n.endswith(".py")}
    assert "lfr/score/kernel.py" in sources and {n + "c" for n in sources} <= names
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import numpy as np; import lfr.score.kernel as k; "
             "print(k.__file__); print(k.score_margin(384))")
    out = subprocess.run([sys.executable, "-c", probe, shipped], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": os.environ.get("PATH", "")}, check=True).stdout.split()
    assert out == [f"{shipped}/lfr/score/kernel.pyc", str(score_margin(384))]
