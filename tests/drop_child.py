"""Child process for test_crash.py's drop test: creates a collection, fills and indexes it, drops
it, and again, printing ``MADE <round>`` and ``DROPPED <round>``; the parent SIGKILLs it anywhere."""

from __future__ import annotations

import sys

from killed_children import report  # this folder is the script's path[0]

from kinsight.engine import Store
from kinsight.indexers import IngestOptions, ingest_records
from kinsight.indexers.records import Record

store_path, start_round = sys.argv[1], int(sys.argv[2])
options = IngestOptions(collection="notes", encoder="fake:dim=32", batch_size=10)

with Store(store_path) as store:
    # A collection the last child made but was killed before dropping is dropped first: every
    # round then fills a new life of the name, so items of two rounds together could only be
    # data a drop failed to remove.
    if "notes" in store.list_collections():
        store.drop_collection("notes")
    for round_ in range(start_round, start_round + 1000):
        records = [Record(id=f"r{round_}-{i}", fields={"text": f"common words round{round_} {i}"},
                          source="gen", line=i) for i in range(30)]
        ingest_records(store, records, options, progress=False)  # refreshes and saves indexes
        report("MADE", round_)
        store.drop_collection("notes")
        report("DROPPED", round_)
