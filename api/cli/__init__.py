"""The ``kinsight`` command line.

Every command that reads a store takes ``--store`` (default: ``$KINSIGHT_STORE``, then
``./kinsight-store``); every query command has ``--json``. No error shows a traceback: one the
user can fix prints one line saying what is wrong and how to fix it (exit status 2), any other
one line naming the log file its traceback went to (exit status 1); see errors.py. Each module
here adds its commands to ``app``, imported when one of them runs (app.py).
"""

from __future__ import annotations

from .app import app

__all__ = ["app", "main"]


def main() -> None:
    app()
