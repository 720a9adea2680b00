"""What every job's ``main`` shares: flags, config, logging, the SparkSession, exit codes.

Exit codes, for every job: 0 ok, 1 failure, 2 bad usage or input (bad flags, a bad setting,
no trained model, an unreadable catalog).

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
from pathlib import Path
from typing import Callable, Sequence

# This clone's library, whatever else is importable: the cached environment is shared by every clone on
# the machine and holds no copy of the project (scripts/setup.sh), so a job runs the code next to it.
# Its executors get the same code from lfr.spark.build_session (shipped with addPyFile).
_ROOT = Path(__file__).resolve().parent.parent
if (_ROOT / "lfr" / "__init__.py").is_file() and str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from lfr.config import add_config_args, config_from_args  # noqa: E402
from lfr.settings import Settings  # noqa: E402

log = logging.getLogger("lfr")


@dataclass
class JobContext:
    args: argparse.Namespace
    settings: Settings      # conf/lfr.yaml < profile < $LFR_CONF < --conf, typed and checked once
    spark: "object"


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("LFR_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _usage_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad usage or input (exit 2): every ``lfr.errors.UsageError`` -- a bad setting,
    no trained model, an unreadable catalog, a guard's refusal, a table another job must write first."""
    from lfr.errors import UsageError

    return (UsageError,)


def exit_code(name: str, run: Callable[[], int | None]) -> int:
    """Run ``run`` under the one exit-code convention: 0 ok, 1 failure, 2 bad usage/input.

    ``run`` may return its own code (e.g. 2 for an empty SQL script); ``None`` means 0."""
    started = time.time()
    try:
        code = run()
    except _usage_errors() as exc:
        log.error("%s: %s", name or "config", exc)
        return EXIT_USAGE
    except Exception:
        log.exception("%s failed after %.1fs", name or "config", time.time() - started)
        return EXIT_FAILURE
    if name:
        log.info("%s finished in %.1fs", name, time.time() - started)
    return int(code or EXIT_OK)


def parse_args(name: str, add_args: Callable[[argparse.ArgumentParser], None] | None,
               argv: Sequence[str] | None) -> argparse.Namespace | int:
    """The job's flags, or the exit code argparse chose (2 for bad flags, 0 for --help)."""
    parser = argparse.ArgumentParser(prog=name)
    add_config_args(parser)
    if add_args:
        add_args(parser)
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def job_settings(args: argparse.Namespace) -> Settings:
    """The run's settings from the shared config flags (``--config``, ``--profile``, ``--conf``): parsed once,
    here; a job folds its own flags in with ``lfr.settings.with_values``."""
    return Settings.from_config(config_from_args(args))


def run_job(
    name: str,
    body: Callable[[JobContext], int | None],
    add_args: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse flags + config, start Spark, run ``body``; returns the exit code (see ``exit_code``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = parse_args(name, add_args, argv)
    if isinstance(args, int):
        return args
    setup_logging()
    holder: dict = {}

    def configure() -> None:
        holder["settings"] = job_settings(args)

    code = exit_code("", configure)   # unnamed: no "finished" line for the config step
    if code:
        return code
    settings = holder["settings"]

    def start_and_run() -> int | None:
        from lfr.spark import build_session

        spark = build_session(settings)
        spark.sparkContext.setLogLevel(os.environ.get("LFR_SPARK_LOG_LEVEL", "WARN"))
        log.info("%s: profile=%s warehouse=%s", name, settings.profile, settings.paths.warehouse)
        return body(JobContext(args=args, settings=settings, spark=spark))

    return exit_code(name, start_and_run)


# ------------------------------------------------------------------ embed jobs (books, movies)
def add_embed_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full", action="store_true", help="re-embed everything and rewrite the table")
    parser.add_argument("--model-dir", default=None, help="model artifact folder (default: paths.model_dir)")
    add_allow_deletes(parser)


def add_allow_deletes(parser: argparse.ArgumentParser) -> None:
    """The flag every job that may delete rows takes (lfr.spark.guards)."""
    parser.add_argument("--allow-deletes", action="store_true",
                        help="accept a run that deletes more of a table than the guards allow (guards.*)")


def embed_job(domain: str) -> Callable[[JobContext], int]:
    """A job body embedding ``domain`` (no trained model: ``ArtifactMissing``, exit code 2); its flags
    are folded into the run's settings (``--model-dir`` -> ``paths.model_dir``, ``--allow-deletes`` ->
    ``guards.allow_deletes``)."""
    def main(ctx: JobContext) -> int:
        from lfr.config import resolve_path
        from lfr.embed import embed_catalog
        from lfr.settings import with_values

        a = ctx.args
        settings = with_values(ctx.settings, {
            "paths.model_dir": resolve_path(a.model_dir) if a.model_dir else None,
            "guards.allow_deletes": True if a.allow_deletes else None})
        embed_catalog(ctx.spark, settings, domain, full=a.full)
        return EXIT_OK

    return main


def run_embed_job(domain: str, argv: Sequence[str] | None = None) -> int:
    """The whole of jobs/embed_books.py and jobs/embed_movies.py (they differ only in the domain)."""
    return run_job(f"embed_{domain}", embed_job(domain), add_embed_args, argv)
