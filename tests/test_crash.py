"""Durability: an ingest killed with SIGKILL at random moments loses nothing it acknowledged,
and the store reopens consistent (index count == stored vectors, BM25 sees every item)."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from kinsight.engine import Store

from .killed_children import killed_output

CHILD = Path(__file__).with_name("crash_child.py")
KILLS = 12


def test_sigkill_at_random_points_loses_nothing_acknowledged(tmp_path):
    rng = random.Random(1234)
    acked: dict[str, int] = {}  # id -> last acknowledged version
    deleted: set[str] = set()
    start_round = 0
    for attempt in range(KILLS):
        child = subprocess.Popen([sys.executable, str(CHILD), str(tmp_path), str(start_round)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = ""
        if attempt % 2:
            # Odd kills land inside the ingest loop however slow start-up is on a busy machine;
            # even ones anywhere, opening the store and saving indexes included.
            first = child.stdout.readline() if child.stdout else ""
            time.sleep(rng.uniform(0.0, 1.5))
        else:
            time.sleep(rng.uniform(0.2, 3.0))
        rounds = []
        for kind, *words in killed_output(child, first):
            if kind == "ACK":
                rounds.append(int(words[0]))
                for item_id in words[1:]:
                    acked[item_id] = max(acked.get(item_id, -1), int(words[0]))
            elif kind == "DEL":
                deleted.update(words)
        start_round = (max(rounds) + 1) if rounds else start_round

        with Store(tmp_path) as store:
            if "docs" not in store.list_collections():  # killed before it was made (busy machine)
                assert not acked, f"kill {attempt}: the collection of acknowledged items is gone"
                continue
            docs = store.collection("docs")
            stored = {item.id: item.fields["version"] for item in docs.get(sorted(acked))}
            missing = set(acked) - set(stored)
            assert not missing, f"kill {attempt}: acknowledged items lost: {sorted(missing)[:5]}"
            stale = [i for i, v in acked.items() if stored[i] < v]
            assert not stale, f"kill {attempt}: acknowledged versions lost: {stale[:5]}"
            assert not docs.existing_ids(sorted(deleted)), f"kill {attempt}: deletes undone"
            with docs.index("text").searching() as index:
                assert index.ntotal == docs.count_vectors("text")
            assert docs.count_vectors("text") >= docs.count()
            probe = next(iter(acked), None)
            if probe is not None:
                hit_ids = [h.id for h in docs.search(f"marker{probe.split('-')[1]}", k=5,
                                                     mode="bm25")]
                assert probe in hit_ids
                vectors = docs.item_vectors("text", probe)
                assert np.isfinite(vectors).all()
    assert len(acked) > 50, "the child never got going; kills came too early"


DROP_CHILD = Path(__file__).with_name("drop_child.py")


def test_drop_killed_at_random_points_leaves_no_half_state(tmp_path):
    """A drop is one operation: after a SIGKILL anywhere, the collection is either whole (its
    items, and indexes that answer with them alone) or gone with every derived file."""
    rng = random.Random(99)
    start_round = 0
    for attempt in range(KILLS):
        child = subprocess.Popen([sys.executable, str(DROP_CHILD), str(tmp_path),
                                  str(start_round)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = child.stdout.readline() if child.stdout and attempt % 2 else ""
        time.sleep(rng.uniform(0.0, 1.0) if attempt % 2 else rng.uniform(0.5, 3.0))
        rounds = [int(words[1]) for words in killed_output(child, first)]
        start_round = (max(rounds) + 1) if rounds else start_round
        with Store(tmp_path) as store:
            folders = sorted(p.name for p in (tmp_path / "indexes").iterdir()) \
                if (tmp_path / "indexes").exists() else []
            if "notes" not in store.list_collections():
                assert folders == [], f"kill {attempt}: index files outlived the drop: {folders}"
                continue
            notes = store.collection("notes")
            items = {item.id for item in notes.get([f"r{r}-{i}" for r in range(start_round + 1)
                                                    for i in range(30)])}
            assert len({i.split("-")[0] for i in items}) <= 1, f"kill {attempt}: two lives mixed"
            assert len(folders) <= 1, f"kill {attempt}: folders {folders}"
            if not notes.spaces():  # killed between creating the collection and its space
                assert not items
                continue
            for mode in ("dense", "bm25", "hybrid"):
                found = {h.id for h in notes.search("common words", k=30, mode=mode)}
                assert found <= items, f"kill {attempt}, {mode}: {sorted(found - items)[:5]}"
