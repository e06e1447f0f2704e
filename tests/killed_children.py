"""What the crash tests' children printed before a SIGKILL, read without losing or inventing lines.

A child reports each acknowledgement as one line written in one ``write`` (``report``): with
``PYTHONUNBUFFERED`` set, as on CI, ``print("ACK", n, *ids)`` is one system call per word, and a
kill between two of them leaves a cut line such as ``ACK`` alone. The parent (``killed_output``)
keeps only the lines that reached their newline, and reads the rest through the same file object
as any line it read before the kill (``communicate`` reads the raw pipe and would drop what that
object had buffered).
"""

from __future__ import annotations

import signal
import subprocess
import sys


def report(*words: object) -> None:
    """In a child: one line, written whole."""
    sys.stdout.write(" ".join(map(str, words)) + "\n")
    sys.stdout.flush()


def killed_output(child: subprocess.Popen[str], before: str = "") -> list[list[str]]:
    """SIGKILL ``child`` and return the words of each whole line it printed (``before``: what
    the parent read from its stdout already). Fails on a traceback in its stderr."""
    assert child.stdout is not None and child.stderr is not None
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)  # dead: its pipes end, so the reads below cannot block
    out, errors = before + child.stdout.read(), child.stderr.read()
    assert "Traceback" not in errors, errors
    lines = out.split("\n")[:-1]  # the last piece never reached its newline (or is empty)
    return [line.split() for line in lines if line.strip()]
