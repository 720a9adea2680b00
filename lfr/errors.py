"""The project's error root, so every job maps errors to exit codes the same way.

``UsageError`` (exit code 2 in every job): the run cannot go on as asked and the message says
what to change -- bad input, a guard that refused, a table another job must write first.
Anything else that escapes a job is a failure (exit code 1) with its stack trace.
"""
from __future__ import annotations


class LfrError(Exception):
    """Root of the project's own errors."""


class UsageError(LfrError, ValueError):
    """Bad usage or input; the message names the file, table or setting and the fix (exit code 2)."""
