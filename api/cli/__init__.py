"""The ``kinsight`` command line.

Every command that reads a store takes ``--store`` (default: ``$KINSIGHT_STORE``, then
``./kinsight-store``); every query command has ``--json``. No error shows a traceback: one the
user can fix prints one line saying what is wrong and how to fix it (exit status 2), any other
one line naming the log file its traceback went to (exit status 1); see errors.py. Each module
here adds its commands to ``app``.
"""

from __future__ import annotations

from . import (  # noqa: F401  (each module registers its commands)
    align,
    anomalies,
    classify,
    clusters,
    collections,
    documents,
    embed,
    mismatch,
    models,
    recommend,
    report,
    runs,
    serving,
)
from .common import app

__all__ = ["app", "main"]


def main() -> None:
    app()
