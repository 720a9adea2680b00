"""Spark runtime: the session factory and Delta table helpers."""
from lfr.spark.session import SparkSetupError, build_session

__all__ = ["SparkSetupError", "build_session"]
