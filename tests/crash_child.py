"""Child process for test_crash.py: ingests forever, printing what each commit acknowledged.

Lines: ``ACK <round> <id> ...`` after an ingest batch commits (ids written with version <round>),
``DEL <id> ...`` after a delete returns. The parent SIGKILLs this process at a random moment.
"""

from __future__ import annotations

import sys

from killed_children import report  # this folder is the script's path[0]

from kinsight.engine import Store
from kinsight.indexers import IngestOptions, ingest_records
from kinsight.indexers.records import Record

store_path, start_round = sys.argv[1], int(sys.argv[2])
options = IngestOptions(collection="docs", encoder="fake:dim=32", batch_size=7)


def records(round_: int) -> list[Record]:
    # A sliding window of ids: some new each round, some rewritten with a new version.
    ids = range(round_ * 10, round_ * 10 + 25)
    return [Record(id=f"doc-{i}", fields={"text": f"round {round_} marker{i} {i % 7} long text "
                                                  * (1 + i % 3), "version": round_},
                   source="gen", line=i) for i in ids]


with Store(store_path) as store:
    for round_ in range(start_round, start_round + 1000):
        def ack(ids: list[str], round_: int = round_) -> None:
            report("ACK", round_, *ids)

        ingest_records(store, records(round_), options, progress=False, on_commit=ack)
        doomed = [f"tmp-{round_}-{j}" for j in range(3)]
        ingest_records(store, [Record(id=d, fields={"text": "temporary"}, source="gen", line=1)
                               for d in doomed], options, progress=False)
        store.collection("docs").delete(doomed)
        report("DEL", *doomed)
