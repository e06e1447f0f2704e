"""Which FAISS index a vector space gets: a pure function of size, dimension, memory and recall.

Kept pure (no FAISS, no I/O) so the choice can be tested and explained on its own, as autofaiss does.
The thresholds are rules of thumb from FAISS's own guidelines ("Guidelines to choose an index"):

- exact search (``Flat``) while a brute-force scan of every vector stays cheap: below about 100 M
  multiply-adds per query (260k vectors at 384-d) it answers in a few milliseconds on one core;
- beyond that an inverted file (``IVF{nlist},Flat``) with ``nlist ≈ 4·√n`` lists; ``nprobe`` grows
  with the recall target;
- product quantisation (``IVF{nlist},PQ{m}``) when the raw vectors do not fit the memory budget.

HNSW is not chosen: FAISS's HNSW cannot remove vectors, and collections take deletes and upserts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InvalidInputError

__all__ = ["EXACT_SCAN_BUDGET", "IndexSpec", "choose_index"]

# Multiply-adds per query below which a flat scan is fast enough (see module docstring).
EXACT_SCAN_BUDGET = 100_000_000


@dataclass(frozen=True)
class IndexSpec:
    """A FAISS index factory string and its search-time settings.

    ``factory`` goes to ``faiss.index_factory``; ``nprobe`` is the number of inverted lists searched
    (IVF only, else 0); ``gpu`` asks for a GPU copy for searching; ``reason`` says why it was chosen.
    """

    factory: str
    nprobe: int = 0
    gpu: bool = False
    reason: str = ""

    @property
    def is_exact(self) -> bool:
        return self.factory == "Flat"

    @property
    def stores_raw_vectors(self) -> bool:
        """Flat and IVF-Flat keep the vectors whole, so probing every list is exact search."""
        return self.factory == "Flat" or self.factory.endswith(",Flat")

    @property
    def nlist(self) -> int:
        if not self.factory.startswith("IVF"):
            return 0
        return int(self.factory[3:].split(",", 1)[0])


def _pq_subquantizers(dim: int) -> int:
    """Largest m ≤ dim/4 that divides dim (FAISS requires dim % m == 0); 8 bits each."""
    for m in range(max(1, dim // 4), 0, -1):
        if dim % m == 0:
            return m
    return 1


def choose_index(
    n: int,
    dim: int,
    *,
    memory_budget: int | None = None,
    recall_target: float = 0.95,
    gpu_available: bool = False,
) -> IndexSpec:
    """Pick the index for ``n`` vectors of dimension ``dim``.

    ``memory_budget`` is the bytes the index may take (None: unlimited); ``recall_target`` is the
    recall@10 against exact search that an approximate index should reach.
    """
    if n < 0 or dim <= 0:
        raise InvalidInputError(f"need n >= 0 and dim > 0, got n={n}, dim={dim}")
    if not 0.0 < recall_target <= 1.0:
        raise InvalidInputError(f"recall_target must be in (0, 1], got {recall_target}")
    raw_bytes = n * dim * 4
    fits = memory_budget is None or raw_bytes <= memory_budget
    if fits and (n * dim <= EXACT_SCAN_BUDGET or recall_target >= 1.0):
        return IndexSpec("Flat", gpu=gpu_available, reason=(
            "exact search: a full scan is fast enough" if recall_target < 1.0
            else "exact search: recall target 1.0"
        ))
    # Enough points per list to train k-means well (FAISS warns below 39 per centroid).
    nlist = max(16, min(int(4 * math.sqrt(n)), n // 39))
    nlist = 1 << round(math.log2(nlist))
    # Recall of IVF grows with the fraction of lists probed; these fractions reach the target
    # on sentence-embedding data in FAISS's benchmarks (benchmarks/ re-measures ours).
    fraction = 0.02 if recall_target <= 0.9 else 0.05 if recall_target <= 0.95 else 0.12
    nprobe = min(nlist, max(8, math.ceil(nlist * fraction)))
    if fits:
        return IndexSpec(f"IVF{nlist},Flat", nprobe=nprobe, gpu=gpu_available,
                         reason=f"{n} vectors: a flat scan is too slow, inverted file")
    m = _pq_subquantizers(dim)
    return IndexSpec(f"IVF{nlist},PQ{m}", nprobe=nprobe, gpu=gpu_available,
                     reason=f"{raw_bytes} bytes of vectors exceed the memory budget "
                            f"{memory_budget}: compressed with PQ{m}")
