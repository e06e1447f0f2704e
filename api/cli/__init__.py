"""The ``kinsight`` command line.

Every command that reads a store takes ``--store`` (default: ``$KINSIGHT_STORE``, then
``./kinsight-store``); every query command has ``--json``. Errors print one line saying what went
wrong and how to fix it, and exit with status 2. Each module here adds its commands to ``app``.
"""

from __future__ import annotations

from . import anomalies, classify, collections, documents, report, serving  # noqa: F401 (commands)
from .common import app

__all__ = ["app", "main"]


def main() -> None:
    app()
