"""Every shell and Python block of the README runs as pasted (scripts/check_readme.py): slow, since
it ingests what the README ingests with the real models; run with -m slow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from check_readme import read_steps  # noqa: E402


def test_the_block_reader_joins_continued_and_quoted_lines(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n```bash\n# a comment\nkinsight search \\\n    --json\n"
                      "curl -d '{\"a\": 1,\n \"b\": 2}'\n```\n"
                      "<!-- readme-check: skip too long -->\n```bash\nsleep 3600\n```\n"
                      "```python\nprint(1)\n```\n```\nnot a shell block\n```\n")
    steps = read_steps(readme)
    assert [(s.kind, s.code.split()[0]) for s in steps] == [
        ("bash", "kinsight"), ("bash", "curl"), ("python", "print(1)")]
    assert steps[0].line == 4 and "--json" in steps[0].code


@pytest.mark.slow
def test_every_readme_block_runs_as_pasted():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_readme.py")],
                          capture_output=True, text=True, timeout=2 * 3600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
