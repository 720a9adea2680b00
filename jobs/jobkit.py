"""What every job's ``main`` shares: flags, config, logging, the SparkSession, exit codes.

Jobs stay thin: they declare their own flags, then hand a ``JobContext`` to a library
function. This module lives next to the job scripts (spark-submit puts the script's folder on
``sys.path``), so the library never depends on it. Logging goes to stderr with timestamps so
spark-submit logs show progress next to Spark's own lines.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from lfr.config import Config, add_config_args, config_from_args

log = logging.getLogger("lfr")


@dataclass
class JobContext:
    args: argparse.Namespace
    cfg: Config
    spark: "object"


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("LFR_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_job(
    name: str,
    body: Callable[[JobContext], int | None],
    add_args: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse flags + config, start Spark, run ``body``; exit code 1 on error."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog=name)
    add_config_args(parser)
    if add_args:
        add_args(parser)
    args = parser.parse_args(argv)
    setup_logging()
    from lfr.spark import build_session

    cfg = config_from_args(args)
    started = time.time()
    spark = build_session(cfg)
    spark.sparkContext.setLogLevel(os.environ.get("LFR_SPARK_LOG_LEVEL", "WARN"))
    log.info("%s: profile=%s warehouse=%s", name, cfg["profile"], cfg["paths"]["warehouse"])
    try:
        code = body(JobContext(args=args, cfg=cfg, spark=spark)) or 0
    except Exception:
        log.exception("%s failed after %.1fs", name, time.time() - started)
        return 1
    log.info("%s finished in %.1fs", name, time.time() - started)
    return int(code)


# ------------------------------------------------------------------ embed jobs (books, movies)
def add_embed_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full", action="store_true", help="re-embed everything and rewrite the table")
    parser.add_argument("--model-dir", default=None, help="model artifact folder (default: paths.model_dir)")


def embed_job(domain: str) -> Callable[[JobContext], int]:
    """A job body embedding ``domain``; exit code 2 when no trained model exists."""
    def main(ctx: JobContext) -> int:
        from lfr.config import resolve_path
        from lfr.embed import ArtifactMissing, embed_catalog

        model_dir = resolve_path(ctx.args.model_dir) if ctx.args.model_dir else None
        try:
            embed_catalog(ctx.spark, ctx.cfg, domain, full=ctx.args.full, model_dir=model_dir)
        except ArtifactMissing as exc:
            log.error("%s", exc)
            return 2
        return 0

    return main


def run_embed_job(domain: str, argv: Sequence[str] | None = None) -> int:
    """The whole of jobs/embed_books.py and jobs/embed_movies.py (they differ only in the domain)."""
    return run_job(f"embed_{domain}", embed_job(domain), add_embed_args, argv)
