"""SparkSession factory: Delta enabled, settings from conf/, overridable.

Why the jar handling: when a job is started with plain ``python`` the JVM is
launched by the builder, so ``spark.jars`` set here reaches the driver. When it
is started by ``spark-submit`` the JVM already exists; then the jars must come
from spark-submit itself (``--jars``/``--packages``, or the
``spark-defaults.conf`` that ``scripts/setup.sh`` writes into the virtual
environment's pyspark). Either way we check that Delta's classes are loadable
and fail with a message that says what to do, instead of a Java stack trace
at the first table write.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Mapping

from pyspark.sql import SparkSession

from lfr.config import Config

log = logging.getLogger(__name__)

DELTA_JAR_DIRNAME = "delta-4.4.0"
DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"


class SparkSetupError(RuntimeError):
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
            f"{DELTA_PACKAGE} from Maven Central into the cache, or set spark.jars_dir to a folder "
            f"holding them (null on a cluster that passes --packages {DELTA_PACKAGE})."
        )
    return jars


def _jvm_running() -> bool:
    return SparkSession.getActiveSession() is not None or os.environ.get("PYSPARK_GATEWAY_PORT") is not None


def build_session(cfg: Config, extra_conf: Mapping[str, object] | None = None) -> SparkSession:
    """Create (or reuse) the SparkSession described by ``cfg['spark']``."""
    spark_cfg = cfg.get("spark", {})
    builder = SparkSession.builder.appName(str(spark_cfg.get("app_name", "lightfusionrec")))
    if spark_cfg.get("master") and not os.environ.get("PYSPARK_GATEWAY_PORT"):
        builder = builder.master(str(spark_cfg["master"]))
    conf = {**(spark_cfg.get("conf") or {}), **(extra_conf or {})}
    if not _jvm_running() and "spark.pyspark.python" not in conf and not os.environ.get("PYSPARK_PYTHON"):
        # Python workers run this interpreter (the project environment with pyarrow/torch),
        # not whatever `python3` is first on PATH.
        conf["spark.pyspark.python"] = sys.executable
    if not _jvm_running() and "spark.jars" not in conf:
        jars = delta_jars(spark_cfg.get("jars_dir"))
        if jars:
            conf["spark.jars"] = ",".join(jars)
    for key, value in conf.items():
        if value is None:
            continue
        builder = builder.config(key, str(value).lower() if isinstance(value, bool) else str(value))
    spark = builder.getOrCreate()
    _check_delta(spark)
    log.info("Spark %s session '%s' on %s", spark.version, spark.sparkContext.appName, spark.sparkContext.master)
    return spark


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
