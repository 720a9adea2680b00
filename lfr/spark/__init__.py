"""Spark runtime: the session factory and Delta table helpers."""
import warnings

from lfr.spark.session import PANDAS3_WARNING, SparkSetupError, build_session, session_conf

# Known harmless (pandas UDFs are tested with pandas 3): see lfr.spark.session.PANDAS3_WARNING.
warnings.filterwarnings("ignore", message=PANDAS3_WARNING, category=FutureWarning)

__all__ = ["SparkSetupError", "build_session", "session_conf"]
