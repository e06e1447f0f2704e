"""Child process for test_ray_executor.py's crash test: an ingest on two Ray workers (a local Ray
of its own), printing ``ACK <id> ...`` after each batch commits and, at the end, ``REPORT
<written> <unchanged>``. The parent SIGKILLs it in the middle, then runs it again to the end."""

from __future__ import annotations

import sys

from killed_children import report  # this folder is the script's path[0]

from kinsight.engine import Store
from kinsight.indexers import IngestOptions, ingest_records
from kinsight.indexers.ray_executor import RayExecutor
from kinsight.indexers.records import Record

store_path, total = sys.argv[1], int(sys.argv[2])
SPEC = "fake:dim=32"
options = IngestOptions(collection="docs", encoder=SPEC, batch_size=10)
records = [Record(id=f"doc-{i}", fields={"text": f"marker{i} some words " * (1 + i % 5)},
                  source="gen", line=i) for i in range(total)]
with Store(store_path) as store:
    result = ingest_records(store, records, options, progress=False,
                            executor=RayExecutor({"text": SPEC}, workers=2),
                            on_commit=lambda ids: report("ACK", *ids))
report("REPORT", result.written, result.unchanged)
