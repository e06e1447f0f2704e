"""Helpers shared by the benchmark scripts: where the data is, printing tables, saving JSON."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kinsight.engine import Store
from kinsight.engine.store import DATABASE_FILE
from kinsight.indexers.records import Record

if TYPE_CHECKING:
    import numpy as np

    from kinsight.engine import Collection, EncoderInfo

ROOT = Path(__file__).resolve().parent.parent
# The data sits beside the checkout; a checkout elsewhere (a git worktree) points at it with
# KINSIGHT_DATA.
DATA = Path(os.environ.get("KINSIGHT_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> dict[str, Any]:
    import faiss
    import torch

    return {"cpu_cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "faiss": faiss.__version__,
            "cuda": torch.cuda.is_available(), "date": time.strftime("%Y-%m-%d %H:%M")}


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    print(f"\nwrote {path}")
    return path


def git_state() -> dict[str, Any]:
    """The commit measured and the files changed since: results of a dirty tree are only
    comparable with runs of the same tree."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"),
            "changed": git("status", "--porcelain", "--untracked-files=no").splitlines()}


def split(queries: Sequence[Any], seed: int) -> dict[str, list[Any]]:
    """Queries in two halves by a seeded shuffle: ``dev``, where anything is chosen, and
    ``report``, only scored."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(queries))
    half = len(queries) // 2
    return {"dev": [queries[i] for i in order[:half]],
            "report": [queries[i] for i in order[half:]]}


def corpus_records(docs: int | None = None, seed: int = 0) -> list[Record]:
    """The Debian corpus (id, title, text, section) as records; ``docs``: a seeded random subset."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(DATA / "debian" / "corpus.parquet",
                          columns=["id", "title", "text", "section", "family"])
    if docs is not None and docs < table.num_rows:
        rows = np.sort(np.random.default_rng(seed).choice(table.num_rows, docs, replace=False))
        table = table.take(rows)
    return [Record(id=r.pop("id"), fields=r, source="corpus.parquet", line=i + 1)
            for i, r in enumerate(table.to_pylist())]


def debian_store_path(docs: int | None = None) -> Path:
    """The folder of ``debian_store``'s store."""
    return RESULTS / f"debian-{docs or 'full'}-store"


@contextmanager
def debian_store(docs: int | None = None, seed: int = 0) -> Iterator[Store]:
    """A store with the Debian corpus indexed by the bundled MiniLM (collection ``debian``),
    kept in benchmarks/results/ and reused: the first run encodes (~25 min on 2 cores for all
    33k docs), later runs open it read-only, so several benchmarks can read it at once."""
    from kinsight.indexers import IngestOptions, ingest_records

    store_dir = debian_store_path(docs)
    records = corpus_records(docs, seed)
    if (store_dir / DATABASE_FILE).exists():
        with Store(store_dir, read_only=True) as store:
            if "debian" in store.list_collections() \
                    and store.collection("debian").count() == len(records) \
                    and "family" in store.collection("debian").fields():
                yield store
                return
    with Store(store_dir) as store:
        print(ingest_records(store, records, IngestOptions(collection="debian")).summary())
    with Store(store_dir, read_only=True) as store:
        yield store


# Defaults of the analyses were chosen on this seeded sample of packages (the development split);
# benchmarks report on the other packages of whatever store they read (--split test).
DEVELOPMENT_DOCS = 2000


def split_rows(ids: Sequence[str], split: str) -> np.ndarray:
    """Rows of ``ids`` in the ``dev`` split (packages of the ``DEVELOPMENT_DOCS`` sample) or the
    ``test`` split (all the others), or every row for ``all``."""
    import numpy as np

    if split == "all":
        return np.arange(len(ids))
    development = {r.id for r in corpus_records(DEVELOPMENT_DOCS, 0)}
    inside = np.array([i in development for i in ids], dtype=bool)
    return np.flatnonzero(inside if split == "dev" else ~inside)


def missing_extra(package: str, extra: str = "bench") -> str:
    """The line a benchmark prints when a baseline's package is not installed."""
    return (f"{package} is not installed: it is a baseline of this benchmark only; install it "
            f"with  bash scripts/setup.sh --{extra}  (its results are left out)")


def item_vectors(collection: Collection, space: str = "text") -> tuple[list[str], np.ndarray]:
    """One vector per item (the normalised mean of its chunks), ids sorted."""
    from kinsight.engine.vectors import mean_item_vectors

    return mean_item_vectors(collection, space)


@dataclass(frozen=True)
class DebianSample:
    """The packages of one split of a Debian store, sorted by id: one vector per item
    (``item_vectors``), and the fields the benchmarks predict or read."""

    ids: list[str]
    vectors: np.ndarray  # (n, d) float32, unit rows
    sections: np.ndarray  # (n,) str
    titles: list[str]  # the short description
    texts: list[str]  # the long description, which the vectors were encoded from
    encoder: EncoderInfo


def debian_sample(docs: int, split: str) -> DebianSample:
    """The ``split`` (``split_rows``) of the packages of the store of the seeded ``docs`` sample
    (0: all), as the probe, head and label benchmarks read it."""
    import numpy as np

    with debian_store(docs or None) as store:
        debian = store.collection("debian")
        ids, vectors = item_vectors(debian)
        keep = split_rows(ids, split)
        ids, vectors = [ids[i] for i in keep], vectors[keep]
        return DebianSample(
            ids, vectors, np.array([str(s) for s in debian.field_values("section", ids)]),
            [str(t or "") for t in debian.field_values("title", ids)],
            [str(t or "") for t in debian.field_values("text", ids)], debian.space("text").encoder)
