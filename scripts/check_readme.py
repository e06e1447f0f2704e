"""Run every shell and Python block of README.md, in order, in a temporary copy of the repository,
as a newcomer pasting them would; fail on the first command that exits non-zero or prints a
traceback, and on any file the blocks leave behind that git would show as untracked.

    .venv/bin/python scripts/check_readme.py            # all blocks (about 20 minutes on 2 cores)
    .venv/bin/python scripts/check_readme.py --list     # the commands it would run
    .venv/bin/python scripts/check_readme.py --keep-going  # every failure, not only the first

The copy sits in a temporary folder with ``shared`` beside it (a link to ../shared) and ``.venv``
inside (a link to this checkout's), so ``../shared/data`` paths and ``kinsight`` on PATH work as
the README says after ``source .venv/bin/activate``. A block preceded by ``<!-- readme-check:
skip REASON -->`` is not run (the two set-up commands, installs, benchmarks, the tests
themselves). ``kinsight serve`` is started in the background and reached by the ``curl`` lines
after it; the store is DuckDB's, which one process writes at a time, so the server is stopped
before any other command runs and started again (with the same arguments) for the next curl.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\s*$")
SKIP = re.compile(r"<!--\s*readme-check:\s*skip\b")
COMMAND_TIMEOUT_S = 1800
SERVER_START_S = 120


@dataclass(frozen=True)
class Step:
    """One command of a bash block (continuation lines and multi-line quotes joined) or one
    whole Python block, with the README line it starts on."""

    line: int
    kind: str  # "bash" or "python"
    code: str


def read_steps(readme: Path) -> list[Step]:
    steps: list[Step] = []
    lines = readme.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        body, kind = lines[i + 1:end], fence.group(1)
        skipped = i > 0 and SKIP.search(lines[i - 1])
        if not skipped and kind == "python":
            steps.append(Step(i + 2, "python", "\n".join(body) + "\n"))
        elif not skipped and kind in ("bash", "sh", "shell"):
            steps.extend(_commands(body, first_line=i + 2))
        i = end + 1
    return steps


def _commands(body: list[str], *, first_line: int) -> list[Step]:
    """Split a bash block into whole commands: a line ending in a backslash, or one inside an
    open quote, continues on the next (shlex tells an open quote)."""
    steps, pending, start = [], "", first_line
    for offset, line in enumerate(body):
        if not pending:
            start = first_line + offset
            if not line.strip() or line.lstrip().startswith("#"):
                continue
        pending += line + "\n"
        if line.rstrip().endswith("\\"):
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote
            continue
        steps.append(Step(start, "bash", pending))
        pending = ""
    if pending:
        steps.append(Step(start, "bash", pending))
    return steps


def copy_repository(into: Path) -> Path:
    """The working tree's tracked and unignored files in ``into/repo``, with a git repository of
    their own (to list what the blocks leave behind), ``.venv`` and ``../shared`` linked."""
    repo = into / "repo"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    (repo / ".venv").symlink_to(ROOT / ".venv")
    (into / "shared").symlink_to((ROOT.parent / "shared").resolve())
    for args in (["init", "-q"], ["add", "-A"],
                 ["-c", "user.name=check", "-c", "user.email=check@localhost",
                  "commit", "-q", "-m", "README check"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


class Server:
    """The ``kinsight serve`` a README block started: running only while curl lines need it."""

    def __init__(self, repo: Path, env: dict[str, str]) -> None:
        self.repo, self.env = repo, env
        self.command: str | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def declare(self, command: str) -> None:
        self.stop()
        self.command = command

    def ensure_running(self) -> None:
        if self.process is not None:
            return
        if self.command is None:
            raise SystemExit("a curl line comes before any `kinsight serve` in the README")
        self.process = subprocess.Popen(self.command, shell=True, cwd=self.repo, env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        port = re.search(r"--port\s+(\d+)", self.command)
        url = f"http://127.0.0.1:{port.group(1) if port else 8000}/health"
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"`{self.command.strip()}` exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"`{self.command.strip()}` did not answer {url} in {SERVER_START_S} s")

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
            self.process = None


def run_steps(steps: list[Step], repo: Path, *, keep_going: bool = False) -> list[str]:
    """Run ``steps`` in ``repo``; the failures' descriptions (empty: all passed). The first
    failure stops the run unless ``keep_going`` (a later block may then fail for want of what
    the failed one would have made: read the first failure first)."""
    failures: list[str] = []
    env = {**os.environ, "PATH": f"{repo / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "COLUMNS": "100"}
    env.pop("KINSIGHT_STORE", None)  # the README's commands use the default store
    env["KINSIGHT_ADAPTERS"] = str(repo.parent / "adapters")  # align's output, not ~/.kinsight
    server = Server(repo, env)
    try:
        for step in steps:
            first = step.code.strip().splitlines()[0]
            print(f"README:{step.line}: {first[:96]}", flush=True)
            words = step.code.split()
            if step.kind == "bash" and words[:2] == ["kinsight", "serve"]:
                server.declare(step.code)
                continue
            code = step.code
            if step.kind == "bash" and words[0] == "curl":
                server.ensure_running()
                code = "curl --fail-with-body" + code[len("curl"):]  # an HTTP error fails too
            else:
                server.stop()
            if step.kind == "python":
                argv = [str(repo / ".venv" / "bin" / "python"), "-c", step.code]
            else:
                argv = ["bash", "-euo", "pipefail", "-c", code]
            started = time.monotonic()
            done = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT_S)
            output = done.stdout + done.stderr
            print(f"    exit {done.returncode} in {time.monotonic() - started:.0f} s", flush=True)
            if done.returncode != 0 or "Traceback (most recent call last)" in output:
                failures.append(f"README line {step.line}: exit {done.returncode}\n{step.code}\n"
                                f"{output[-4000:]}")
                if not keep_going:
                    return failures
    finally:
        server.stop()
    left = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.splitlines()
    untracked = [line[3:] for line in left if line.startswith("??")]
    if untracked:
        failures.append(f"the blocks left files git shows as untracked (ignore them in "
                        f".gitignore, or write them elsewhere): {', '.join(untracked)}")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--keep-going", action="store_true",
                        help="run every block, report every failure (default: stop at the first)")
    args = parser.parse_args()
    steps = read_steps(ROOT / "README.md")
    if args.list:
        for step in steps:
            print(f"README:{step.line} [{step.kind}]\n{step.code}")
        return
    with tempfile.TemporaryDirectory(prefix="kinsight-readme-") as folder:
        failures = run_steps(steps, copy_repository(Path(folder)), keep_going=args.keep_going)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    print(f"{len(steps)} README commands: {'failed' if failures else 'all passed'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
