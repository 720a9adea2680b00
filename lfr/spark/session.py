"""SparkSession factory: Delta enabled, a persistent catalog, quiet logs, settings from conf/.

Why the jar handling: when a job is started with plain ``python`` the JVM is
launched by the builder, so ``spark.jars`` set here reaches the driver. When it
is started by ``spark-submit`` the JVM already exists; then the jars must come
from spark-submit itself (``--jars``/``--packages``, or the
``spark-defaults.conf`` that ``scripts/setup.sh`` writes into the virtual
environment's pyspark). Either way we check that Delta's classes are loadable
and fail with a message that says what to do, instead of a Java stack trace
at the first table write.

Why the catalog handling: users read the tables from ``spark-sql``, JDBC
(``scripts/sql_server.sh``) and notebooks, so table registrations must outlive
the job that made them. With ``spark.sql.catalogImplementation=hive`` and a
local ``paths.metastore_dir`` the session uses Hive's embedded Derby metastore
there. Embedded Derby admits ONE process at a time; a session that finds it
held by another process (a running Thrift server, a notebook) falls back to the
in-memory catalog with a warning instead of failing: tables are registered by
location, so nothing is lost, the next session re-registers them.

Why the Derby network server: a BI endpoint (the Thrift server) is meant to stay up while jobs
create tables. ``scripts/metastore.sh`` (``make metastore-up``) serves the SAME database
(``<metastore_dir>/metastore_db``) over Derby's network protocol and leaves a port file there;
with ``metastore.server: auto`` every session built here (and spark-sql, the Thrift server) then
connects to it with Derby's client driver instead of booting the files itself, so any number of
processes share one catalog. Without the server nothing changes (embedded, as above).

:func:`session_conf` is the single source of these settings: the builder,
``scripts/spark_sql.sh`` and ``scripts/sql_server.sh`` all use it
(``python -m lfr.spark`` prints it as ``key=value`` lines).

Why the code shipping: executors import ``lfr`` to run the embedding and scoring UDFs. A job run from a
source checkout ships that checkout's ``lfr`` to them (:func:`ship_library`, ``addPyFile`` of a zip),
so workers run exactly the driver's code on any master, and two clones on one machine never mix. An
installed wheel (``--py-files dist/*.whl``) is shipped by spark-submit instead.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Mapping

from pyspark.sql import SparkSession

from lfr.config import is_uri
from lfr.errors import UsageError
from lfr.settings import PathsSettings, Settings

log = logging.getLogger(__name__)

DELTA_JAR_DIRNAME = "delta-4.4.0"
DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"
LOG4J_CONF = Path(__file__).resolve().parents[2] / "conf" / "log4j2.properties"
DERBY_URL_KEY = "spark.hadoop.javax.jdo.option.ConnectionURL"
DERBY_DRIVER_KEY = "spark.hadoop.javax.jdo.option.ConnectionDriverName"
DERBY_CLIENT_DRIVER = "org.apache.derby.jdbc.ClientDriver"
# Derby's network client must be on the driver JVM's own class path (spark.driver.extraClassPath), not in
# spark.jars: DriverManager hands a connection only to callers whose class loader sees the driver, and the
# metastore's connection pool is loaded from pyspark's jars by the JVM's class loader ("No suitable driver");
# also, since Derby 10.15 the ClientDriver alias is in derbytools.jar (pyspark's jars) and extends
# org.apache.derby.client.ClientAutoloadedDriver of derbyclient.jar.
DERBY_CLIENT_CLASS = "org.apache.derby.client.ClientAutoloadedDriver"
EXTRA_CLASSPATH_KEY = "spark.driver.extraClassPath"
#: the Derby database of the catalog, in paths.metastore_dir, whichever Derby (embedded or server) opens it
METASTORE_DB = "metastore_db"
#: what scripts/metastore.sh keeps in paths.metastore_dir while its Derby network server runs
SERVER_PORT_FILE = "derby-server.port"
SERVER_PID_FILE = "derby-server.pid"
# pyspark 4.2 warns on every pandas >= 3 import; the pandas UDF paths the project uses are
# covered by its tests, so the warning is noise (workers get the same filter via PYTHONWARNINGS).
PANDAS3_WARNING = "PySpark does not yet fully support pandas"


class SparkSetupError(UsageError):
    """The Spark runtime is missing something the project needs (Java, Delta jars)."""


def lfr_cache_dir() -> Path:
    return Path(os.path.expanduser(os.environ.get("LFR_CACHE", "~/.cache/lfr")))


def delta_jars(jars_dir: str | None) -> list[str]:
    """The Delta jar paths to put on ``spark.jars`` ('auto' = setup.sh's cache)."""
    if jars_dir in (None, "", "null"):
        return []
    folder = lfr_cache_dir() / "jars" / DELTA_JAR_DIRNAME if jars_dir == "auto" else Path(os.path.expanduser(jars_dir))
    jars = sorted(str(p) for p in folder.glob("*.jar")) if folder.is_dir() else []
    if not jars:
        raise SparkSetupError(
            f"no Delta jars in {folder}. Run `make setup` (scripts/setup.sh) once to download "
            f"{DELTA_PACKAGE} from Maven Central into the cache, or set paths.delta_jars_dir to a folder "
            f"holding them (null on a cluster that passes --packages {DELTA_PACKAGE})."
        )
    return jars


def derby_version() -> str:
    """The Derby version of pyspark's own jars: the network server and client jars (setup.sh) match it."""
    import pyspark

    # under spark-submit pyspark is imported from $SPARK_HOME/python/lib/pyspark.zip: SPARK_HOME tells
    folders = [Path(os.environ["SPARK_HOME"]) / "jars"] if os.environ.get("SPARK_HOME") else []
    folders.append(Path(pyspark.__file__).resolve().parent / "jars")
    for jars in folders:
        found = sorted(jars.glob("derby-[0-9]*.jar"))
        if found:
            return found[-1].name.removeprefix("derby-").removesuffix(".jar")
    raise SparkSetupError(f"no derby-<version>.jar in {' or '.join(map(str, folders))}: cannot tell which "
                          "Derby client to use")


def derby_client_jar() -> str:
    """Derby's network client (``setup.sh`` caches it in ``$LFR_CACHE/jars/derby-<version>/``)."""
    version = derby_version()
    jar = lfr_cache_dir() / "jars" / f"derby-{version}" / f"derbyclient-{version}.jar"
    if not jar.is_file():
        raise SparkSetupError(f"no Derby client jar {jar}: run `make setup` once (it fetches "
                              f"org.apache.derby:derbyclient:{version} from Maven Central)")
    return str(jar)


def _jvm_running() -> bool:
    return SparkSession.getActiveSession() is not None or os.environ.get("PYSPARK_GATEWAY_PORT") is not None


def _context_started() -> bool:
    """A SparkContext was started from this process (its JVM may still have the metastore booted)."""
    from pyspark import SparkContext

    return SparkContext._gateway is not None


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def metastore_dir(paths: PathsSettings) -> str | None:
    """The local folder of the embedded metastore, or None (no Derby: in-memory or external catalog)."""
    value = paths.metastore_dir
    if value in (None, "", "null") or is_uri(str(value)):
        return None
    return str(Path(os.path.expanduser(str(value).removeprefix("file://"))).resolve())


def network_derby(url: object) -> bool:
    """``url`` is a Derby network server's (``jdbc:derby://host:port/...``), reached with Derby's client."""
    return str(url).startswith("jdbc:derby://")


def embedded_derby(url: object) -> bool:
    """``url`` opens Derby's files in this process (not a ``jdbc:derby://host:port/`` network server)."""
    return str(url).startswith("jdbc:derby:") and not network_derby(url)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _recorded_port(folder: str) -> int | None:
    """The port of the network server scripts/metastore.sh runs for ``folder``, if its process is alive."""
    try:
        pid = int((Path(folder) / SERVER_PID_FILE).read_text().strip())
        port = int((Path(folder) / SERVER_PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except PermissionError:   # alive, another user's
        pass
    except OSError:
        return None
    return port


def metastore_server(settings: Settings) -> tuple[str, int] | None:
    """``(host, port)`` of the Derby network server that serves the catalog, or None: embedded Derby.

    ``metastore.server`` auto: the server of ``make metastore-up`` when its port file and process are there
    and the port accepts connections; always: ``metastore.host``/``port`` (or the port file), an error when
    nothing listens; never: None. No local ``paths.metastore_dir``: None (no Derby at all)."""
    ms, folder = settings.metastore, metastore_dir(settings.paths)
    if ms.server == "never" or folder is None:
        return None
    recorded = _recorded_port(folder)
    if ms.server == "auto":
        if recorded is None:
            return None
        if _listening(ms.host, recorded):
            return ms.host, recorded
        log.warning("the Derby network server of %s (port file %s) does not answer on %s:%d; using embedded "
                    "Derby (make metastore-down; make metastore-up restarts it)", folder, SERVER_PORT_FILE,
                    ms.host, recorded)
        return None
    port = ms.port if ms.port is not None else recorded
    if port is None:
        raise SparkSetupError("metastore.server is 'always' but no port is known: set metastore.port, or start "
                              "the server with `make metastore-up` (it records its port in "
                              f"{folder}/{SERVER_PORT_FILE})")
    if not _listening(ms.host, port):
        raise SparkSetupError(f"metastore.server is 'always' but no Derby network server answers on {ms.host}:{port}: "
                              "start it with `make metastore-up`, or set metastore.server: auto to fall back to "
                              "embedded Derby")
    return ms.host, port


def catalog_conf(settings: Settings, conf: Mapping[str, object]) -> dict[str, str]:
    """Settings of the Derby metastore, when the catalog is Hive and ``paths.metastore_dir`` local: the network
    server's client URL and driver while it runs (:func:`metastore_server`), else embedded Derby's URL.

    An explicit ``spark.hadoop.javax.jdo.option.ConnectionURL`` / ``spark.sql.warehouse.dir`` wins;
    on a cluster ``paths.metastore_dir`` is null and hive-site.xml (or ``spark.hadoop.hive.metastore.uris``)
    names the shared metastore."""
    folder = metastore_dir(settings.paths)
    if str(conf.get("spark.sql.catalogImplementation", "in-memory")) != "hive" or folder is None:
        return {}
    out = {"spark.sql.warehouse.dir": f"{folder}/spark-warehouse"}
    server = None if DERBY_URL_KEY in conf else metastore_server(settings)
    if server is not None:
        out[DERBY_URL_KEY] = f"jdbc:derby://{server[0]}:{server[1]}/{METASTORE_DB};create=true"
        out[DERBY_DRIVER_KEY] = DERBY_CLIENT_DRIVER
    else:
        out[DERBY_URL_KEY] = f"jdbc:derby:;databaseName={folder}/{METASTORE_DB};create=true"
    return {k: v for k, v in out.items() if k not in conf}


def _java_options(conf: Mapping[str, object], folder: str | None) -> str:
    opts = [_text(conf["spark.driver.extraJavaOptions"])] if conf.get("spark.driver.extraJavaOptions") else []
    if "log4j2.configurationFile" not in " ".join(opts) and LOG4J_CONF.is_file():
        opts.append(f"-Dlog4j2.configurationFile=file:{LOG4J_CONF}")
    if folder and "derby.stream.error.file" not in " ".join(opts):
        opts.append(f"-Dderby.stream.error.file={folder}/derby.log")
    return " ".join(opts)


def session_conf(settings: Settings, extra_conf: Mapping[str, object] | None = None, *,
                 jars: bool = True) -> dict[str, str]:
    """Every Spark setting of the project's sessions: ``spark.conf`` of the settings, the catalog,
    the log configuration, the Delta jars (``jars=False``: leave them to spark-submit)."""
    conf: dict[str, object] = {k: v for k, v in {**settings.spark.conf, **(extra_conf or {})}.items()
                               if v is not None}
    conf.update(catalog_conf(settings, conf))
    url = str(conf.get(DERBY_URL_KEY, ""))
    folder = metastore_dir(settings.paths) if embedded_derby(url) else None
    conf["spark.driver.extraJavaOptions"] = _java_options(conf, folder)
    conf.setdefault("spark.executorEnv.PYTHONWARNINGS", f"ignore:{PANDAS3_WARNING}:FutureWarning")
    if network_derby(url):   # applies where the JVM starts after this (the builder, the scripts)
        client, path = derby_client_jar(), _text(conf.get(EXTRA_CLASSPATH_KEY) or "")
        if client not in path.split(os.pathsep):
            conf[EXTRA_CLASSPATH_KEY] = os.pathsep.join(p for p in (path, client) if p)
    if jars and "spark.jars" not in conf:
        found = delta_jars(settings.paths.delta_jars_dir)
        if found:
            conf["spark.jars"] = ",".join(found)
    return {k: _text(v) for k, v in conf.items() if _text(v) != ""}


def derby_in_use(url: str) -> bool:
    """True when another process has the embedded Derby database of ``url`` booted.

    Derby holds a POSIX lock on ``dbex.lck`` while booted (Java's FileChannel lock = fcntl on
    Linux), so a non-blocking lock attempt from here tells. The JVM is always another process
    than this Python driver, so the probe never touches a lock of our own JVM; but it cannot
    tell our own JVM from a stranger's, hence not called once this process started a context."""
    import fcntl

    match = re.search(r"databaseName=([^;]+)", url)
    lock = Path(match.group(1)) / "dbex.lck" if match else None
    if lock is None or not lock.is_file():
        return False
    with open(lock, "a+b") as fh:
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.lockf(fh, fcntl.LOCK_UN)
    return False


def _fall_back_if_locked(conf: dict[str, str]) -> None:
    url = conf.get(DERBY_URL_KEY, "")
    if conf.get("spark.sql.catalogImplementation") != "hive" or not embedded_derby(url) or _context_started():
        return
    if derby_in_use(url):
        log.warning("the metastore %s is in use by another process (a Thrift server, spark-sql or a notebook: "
                    "embedded Derby admits one); this session uses an in-memory catalog, so its table "
                    "registrations last only while it runs", url)
        conf["spark.sql.catalogImplementation"] = "in-memory"
        conf.pop(DERBY_URL_KEY)


def _python_workers(conf: Mapping[str, str]) -> None:
    """Python workers run ``PYSPARK_PYTHON`` as the DRIVER process sees it when its SparkContext starts
    (``spark.pyspark.python`` is applied only by spark-submit), so a plain ``python``/notebook driver
    must export it or the workers run whatever ``python3`` is on PATH (no pandas, no torch)."""
    python = conf.get("spark.pyspark.python") or sys.executable
    os.environ.setdefault("PYSPARK_PYTHON", python)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", conf.get("spark.pyspark.driver.python") or sys.executable)


def build_session(settings: Settings, extra_conf: Mapping[str, object] | None = None) -> SparkSession:
    """Create (or reuse) the SparkSession described by ``settings.spark`` and ``settings.paths``.

    Parameters
    ----------
    settings : lfr.settings.Settings
        From ``lfr.settings.load_settings`` (the jobs: ``jobkit.job_settings``).
    extra_conf : mapping, optional
        Spark settings added to ``settings.spark.conf`` (they win).

    Returns
    -------
    SparkSession
        With Delta Lake, the project's catalog (embedded Derby metastore or in-memory) and Python workers
        running this interpreter.

    Example
    -------
    >>> spark = build_session(load_settings(overrides=["spark.master=local[2]"]))  # doctest: +SKIP
    """
    if not isinstance(settings, Settings):
        raise TypeError(f"build_session takes lfr.settings.Settings, got {type(settings).__name__}")
    builder = SparkSession.builder.appName(settings.spark.app_name)
    master = settings.spark.master
    if master and not os.environ.get("PYSPARK_GATEWAY_PORT"):
        builder = builder.master(str(master))
    conf = session_conf(settings, extra_conf, jars=not _jvm_running())
    local = str(master or "").startswith("local")
    conf.setdefault("spark.ui.showConsoleProgress", _text(local and sys.stderr.isatty()))
    _python_workers(conf)
    _fall_back_if_locked(conf)
    folder = metastore_dir(settings.paths)
    if folder and embedded_derby(conf.get(DERBY_URL_KEY, "")):
        Path(folder).mkdir(parents=True, exist_ok=True)  # Derby opens derby.log there before creating the db
    for key, value in conf.items():
        builder = builder.config(key, value)
    if conf.get("spark.sql.catalogImplementation") == "hive":
        builder = builder.enableHiveSupport()
    spark = builder.getOrCreate()
    _check_delta(spark)
    _check_derby_client(spark, conf)
    ship_library(spark)
    _derby_log(spark, conf)
    catalog = spark.conf.get("spark.sql.catalogImplementation", "in-memory")
    if catalog == "hive" and network_derby(conf.get(DERBY_URL_KEY, "")):
        catalog += f", shared metastore {conf[DERBY_URL_KEY]}"
    log.info("Spark %s session '%s' on %s (catalog: %s)", spark.version, spark.sparkContext.appName,
             spark.sparkContext.master, catalog)
    return spark


def _library_files(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix in (".py", ".yaml", ".json"))


def ship_library(spark: SparkSession) -> str | None:
    """Ship the driver's ``lfr`` to the executors when it comes from a source checkout or from a
    wheel given to ``--py-files``; returns the zip shipped, or None (an installed package, or a
    .zip/.egg Spark already puts on the workers' path). The zip is named by its content, so reruns
    and concurrent jobs reuse one file."""
    import lfr

    package = Path(lfr.__file__).resolve().parent
    archive = next((a for a in package.parents if a.is_file()), None)   # imported from inside a zip file
    if archive is not None:
        return _ship_wheel(spark, archive)
    if not (package.parent / "setup.py").is_file():
        return None
    files = _library_files(package)
    digest = hashlib.sha256(sys.implementation.cache_tag.encode())     # its bytecode is this Python's
    for f in files:
        digest.update(str(f.relative_to(package.parent)).encode() + b"\0" + f.read_bytes())
    target = Path(tempfile.gettempdir()) / f"lfr-src-{digest.hexdigest()[:16]}.zip"
    if not target.is_file():
        partial = target.with_suffix(f".{os.getpid()}.partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                name = str(f.relative_to(package.parent))
                zf.write(f, name)
                if f.suffix == ".py":
                    zf.writestr(name + "c", _bytecode(f, name))
        os.replace(partial, target)
    spark.sparkContext.addPyFile(str(target))
    log.info("executors run lfr from %s (shipped as %s)", package, target.name)
    return str(target)


def _bytecode(source: Path, name: str) -> bytes:
    """``source`` compiled, as the ``.pyc`` zipimport loads next to a ``.py`` in a zip: every Python worker
    imports ``lfr`` from the shipped zip, and zipimport writes no bytecode cache, so without it each worker
    compiles every module it imports. Unchecked-hash pyc: the zip is named by its sources' digest, so its
    bytecode always matches them; a worker on another Python version finds a foreign magic number and
    compiles the ``.py`` instead."""
    import importlib.util
    import marshal

    text = source.read_bytes()
    flags = (0b01).to_bytes(4, "little")     # hash-based, check_source off
    code = marshal.dumps(compile(text, name, "exec", dont_inherit=True))
    return importlib.util.MAGIC_NUMBER + flags + importlib.util.source_hash(text) + code


def _ship_wheel(spark: SparkSession, archive: Path) -> str | None:
    """``--py-files dist/lightfusionrec-*.whl`` puts the wheel on the driver's path only: Spark adds
    only .zip/.egg/.jar py-files to the Python workers' path (``SparkContext.PACKAGE_EXTENSIONS``).
    The same bytes under a .zip name are importable there."""
    if archive.suffix.lower() in (".zip", ".egg", ".jar"):
        return None
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"lfr-{archive.stem}-{digest}.zip"
    if not target.is_file():
        partial = target.with_suffix(f".{os.getpid()}.partial")
        shutil.copyfile(archive, partial)
        os.replace(partial, target)
    spark.sparkContext.addPyFile(str(target))
    log.info("executors import lfr from the wheel %s (shipped as %s)", archive.name, target.name)
    return str(target)


def _derby_log(spark: SparkSession, conf: Mapping[str, str]) -> None:
    """Under spark-submit the driver JVM started before our options: point Derby's log at the
    metastore folder before the (lazy) metastore boots, instead of ``derby.log`` in the cwd."""
    match = re.search(r"-Dderby.stream.error.file=(\S+)", conf.get("spark.driver.extraJavaOptions", ""))
    system = spark._jvm.java.lang.System  # type: ignore[union-attr]
    if match and system.getProperty("derby.stream.error.file") is None:
        system.setProperty("derby.stream.error.file", match.group(1))


def _check_derby_client(spark: SparkSession, conf: Mapping[str, str]) -> None:
    """A session on the Derby network server needs Derby's client on the driver JVM's class path. Under
    spark-submit the JVM started before our settings: it comes from the spark-defaults.conf setup.sh writes."""
    if not network_derby(conf.get(DERBY_URL_KEY, "")):
        return
    jvm = spark._jvm  # type: ignore[union-attr]
    try:
        jvm.java.lang.Class.forName(DERBY_CLIENT_CLASS, True, jvm.java.lang.ClassLoader.getSystemClassLoader())
    except Exception as exc:  # py4j wraps ClassNotFoundException
        raise SparkSetupError(
            f"the metastore is the Derby network server ({conf[DERBY_URL_KEY]}) but Derby's client is not on the "
            "driver's class path. Run `make setup` once more (its spark-defaults.conf puts derbyclient on "
            "spark.driver.extraClassPath for spark-submit), or pass --driver-class-path with the derbyclient jar "
            "of $LFR_CACHE/jars/derby-<version>/ (`make metastore-down` instead: embedded Derby, one process)."
        ) from exc


def _check_delta(spark: SparkSession) -> None:
    try:
        spark._jvm.java.lang.Class.forName(  # type: ignore[union-attr]
            "io.delta.tables.DeltaTable", True, spark._jvm.java.lang.Thread.currentThread().getContextClassLoader()  # type: ignore[union-attr]
        )
    except Exception as exc:  # py4j wraps ClassNotFoundException
        raise SparkSetupError(
            "Delta Lake classes are not on the Spark classpath. Run `make setup` once, then start jobs "
            "from the project's environment (.venv/bin/spark-submit reads the spark-defaults.conf it writes), "
            f"or pass --packages {DELTA_PACKAGE} to spark-submit."
        ) from exc


def main(argv: list[str] | None = None) -> int:
    """Print the project's Spark settings as ``key=value`` lines (for spark-sql / the Thrift server)."""
    from lfr.config import load_config

    p = argparse.ArgumentParser(prog="python -m lfr.spark", description=main.__doc__)
    p.add_argument("--profile")
    p.add_argument("--config", help="config file (default conf/lfr.yaml)")
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="override (repeatable)")
    p.add_argument("--get", metavar="KEY", action="append",
                   help="print only this config value (dotted path), e.g. paths.metastore_dir; repeatable: "
                        "one line each")
    args = p.parse_args(argv)
    cfg = load_config(args.config, profile=args.profile, overrides=args.conf)
    for key in args.get or ():
        node: object = cfg
        for part in key.split("."):
            node = node[part]  # type: ignore[index]
        print("" if node is None else node)
    if args.get:
        return 0
    settings = Settings.from_config(cfg)
    master = settings.spark.master
    try:
        conf = session_conf(settings)
    except UsageError as exc:   # the scripts show the reason, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key, value in {**({"spark.master": master} if master else {}), **conf}.items():
        print(f"{key}={value}")
    return 0
