"""benchmarks/gpu.py runs only where a GPU is lent, rarely: its smoke mode (tiny sizes, the CPU)
runs here so the script is known to work when one is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_check_runs_every_part_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke", "--device", "cpu",
         "--image-encoder", "open_clip:kinsight-tiny@random", "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["bounds"]["flops"] > 0
    rows = result["rows"]
    assert [row.get("skipped") for row in rows] == [None] * 5
    speeds = [row.get("per_second") or row.get("ms_per_batch") or row.get("seconds")
              for row in rows]
    assert all(speed and speed > 0 for speed in speeds), rows
    assert rows[2]["how"] == "FAISS IndexFlatIP"
