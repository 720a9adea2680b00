"""The shared body of jobs/embed_books.py and jobs/embed_movies.py (they differ only in the domain)."""
from __future__ import annotations

import argparse
from typing import Callable

from lfr.cli import JobContext, log, run_job


def add_embed_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full", action="store_true", help="re-embed everything and rewrite the table")
    parser.add_argument("--model-dir", default=None, help="model artifact folder (default: paths.model_dir)")


def embed_job(domain: str) -> Callable[[JobContext], int]:
    """A job body embedding ``domain``; exit code 2 when no trained model exists."""
    def main(ctx: JobContext) -> int:
        from lfr.embed import ModelArtifactMissing, embed_catalog

        try:
            embed_catalog(ctx.spark, ctx.cfg, domain, full=ctx.args.full, model_dir=ctx.args.model_dir)
        except ModelArtifactMissing as exc:
            log.error("%s", exc)
            return 2
        return 0

    return main


def run_embed_job(domain: str) -> int:
    return run_job(f"embed_{domain}", embed_job(domain), add_embed_args)
