"""The ``kinsight`` command line.

Every command that reads a store takes ``--store`` (default: ``$KINSIGHT_STORE``, then
``./kinsight-store``); every query command has ``--json``. Errors print one line saying what went
wrong and how to fix it, and exit with status 2. Each module here adds its commands to ``app``.
"""

from __future__ import annotations

from . import (  # noqa: F401  (each module registers its commands)
    align,
    anomalies,
    classify,
    clusters,
    collections,
    documents,
    mismatch,
    recommend,
    report,
    runs,
    serving,
)
from .common import app

__all__ = ["app", "main"]


def main() -> None:
    app()
