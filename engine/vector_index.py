"""A FAISS index over one vector space, keyed by the store's vector sequence numbers.

FAISS does the searching; this wrapper adds what a store needs around it: ids that are the
``seq`` of vector rows in DuckDB, the store generation the index reflects (so a stale index is
caught up, never trusted), an atomic single-file format, filtered search and a GPU copy.
"""

# faiss's bundled stubs describe the SWIG constructors without their keyword arguments:
# mypy: disable-error-code="call-arg,assignment,arg-type"
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from .errors import DimensionMismatchError, InvalidInputError, translated
from .index_policy import IndexSpec
from .kernels import search_threads

__all__ = ["IndexState", "VectorIndex", "gpu_count"]

log = logging.getLogger(__name__)

_MAGIC = b"KINSIGHT-FAISS-1\n"
_METRICS = {"cosine": faiss.METRIC_INNER_PRODUCT, "dot": faiss.METRIC_INNER_PRODUCT,
            "l2": faiss.METRIC_L2}


def gpu_count() -> int:
    """GPUs FAISS can use (0 with faiss-cpu)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


@dataclass(frozen=True)
class IndexState:
    """What an index file records about the store it was built from."""

    generation: int
    max_seq: int
    factory: str
    nprobe: int
    metric: str
    dim: int
    fingerprint: str
    collection_uid: str = ""  # which collection it was built from ("": a file from before uids)


class VectorIndex:
    """FAISS index whose ids are vector ``seq`` numbers; scores are "higher is better".

    ``search`` takes queries of shape ``(nq, dim)`` float32 and returns ``(scores, seqs)``, both of
    shape ``(nq, k)``, with ``seq == -1`` where fewer than ``k`` vectors qualified.
    """

    def __init__(self, spec: IndexSpec, dim: int, metric: str, fingerprint: str,
                 collection_uid: str = "") -> None:
        if metric not in _METRICS:
            raise InvalidInputError(f"unknown metric {metric!r}; use one of {sorted(_METRICS)}")
        self.spec = spec
        self.dim = dim
        self.metric = metric
        self.fingerprint = fingerprint
        self.collection_uid = collection_uid
        factory = "IDMap2,Flat" if spec.is_exact else spec.factory
        self._what = f"FAISS index {factory} (dim {dim}, {metric})"
        with translated(self._what):
            self.index = faiss.index_factory(dim, factory, _METRICS[metric])
        self.generation = 0
        self.max_seq = 0
        self._gpu_index: faiss.Index | None = None

    # -- building ---------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def needs_training(self) -> bool:
        return not self.index.is_trained

    def train(self, sample: np.ndarray) -> None:
        """Train the coarse quantizer (IVF) on a sample of vectors."""
        with translated(self._what):
            self.index.train(self._check(sample))

    def add(self, seqs: np.ndarray, vectors: np.ndarray) -> None:
        if len(seqs) == 0:
            return
        with translated(self._what):
            self.index.add_with_ids(self._check(vectors),
                                    np.ascontiguousarray(seqs, dtype=np.int64))
        self.max_seq = max(self.max_seq, int(np.max(seqs)))
        self._gpu_index = None

    def remove(self, seqs: np.ndarray) -> int:
        """Remove vectors by seq; returns how many were present."""
        if len(seqs) == 0:
            return 0
        with translated(self._what):
            removed = self.index.remove_ids(np.ascontiguousarray(seqs, dtype=np.int64))
        self._gpu_index = None
        return int(removed)

    # -- searching --------------------------------------------------------------------------
    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, *,
        probe_all: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``probe_all`` searches every inverted list: exact for IVF-Flat, at a flat scan's cost."""
        queries = self._check(queries)
        if self.ntotal == 0:
            nq = len(queries)
            return np.full((nq, 1), -np.inf, dtype=np.float32), np.full((nq, 1), -1, np.int64)
        k = max(1, min(k, self.ntotal))
        with translated(self._what):
            gpu = self._gpu_searcher() if allowed is None and not probe_all else None
            if gpu is not None:  # its nprobe was set when it was made
                distances, seqs = gpu.search(queries, k)
            else:
                params = self._search_params(allowed,
                                             self.spec.nlist if probe_all else self.spec.nprobe)
                search_threads(len(queries))
                distances, seqs = self.index.search(queries, k, params=params)
        scores = -distances if self.metric == "l2" else distances
        scores = np.where(seqs < 0, -np.inf, scores).astype(np.float32)
        return scores, seqs

    def _search_params(self, allowed: np.ndarray | None, nprobe: int
                       ) -> faiss.SearchParameters | None:
        selector = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        if nprobe:
            params = faiss.SearchParametersIVF(nprobe=nprobe)
            if selector is not None:
                params.sel = selector
            # Keep the selector alive as long as the params (FAISS holds a raw pointer).
            params._selector_ref = selector  # type: ignore[attr-defined]
            return params
        if selector is None:
            return None
        params = faiss.SearchParameters(sel=selector)
        params._selector_ref = selector  # type: ignore[attr-defined]
        return params

    def _gpu_searcher(self) -> faiss.Index | None:
        """A GPU copy of the index when the spec asks for one and FAISS sees a GPU, else None.

        Only plain searches use it: FAISS's GPU indexes take neither selectors nor per-call
        parameters, so filtered and exhaustive searches run on the CPU index.
        """
        if not self.spec.gpu or gpu_count() == 0:
            return None
        if self._gpu_index is None:
            options = faiss.GpuMultipleClonerOptions()
            options.useFloat16 = True  # halves GPU memory; recall is re-measured in benchmarks
            self._gpu_index = faiss.index_cpu_to_all_gpus(self.index, co=options)
            if self.spec.nprobe:
                faiss.GpuParameterSpace().set_index_parameter(
                    self._gpu_index, "nprobe", self.spec.nprobe)
        return self._gpu_index

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise DimensionMismatchError(
                f"expected vectors of shape (n, {self.dim}), got {vectors.shape}; "
                "encode them with the space's encoder"
            )
        return vectors

    # -- persistence ------------------------------------------------------------------------
    def state(self) -> IndexState:
        return IndexState(self.generation, self.max_seq, self.spec.factory, self.spec.nprobe,
                          self.metric, self.dim, self.fingerprint, self.collection_uid)

    def save(self, path: Path) -> None:
        """Write index and state to one file, atomically (a crash leaves the old file whole)."""
        header = json.dumps(asdict(self.state())).encode() + b"\n"
        blob = faiss.serialize_index(self.index)
        tmp = path.with_suffix(path.suffix + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(_MAGIC)
            f.write(header)
            f.write(blob.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, spec: IndexSpec) -> VectorIndex | None:
        """Read an index file; None when it is missing or unreadable (the caller rebuilds)."""
        try:
            with open(path, "rb") as f:
                if f.readline() != _MAGIC:
                    return None
                state = IndexState(**json.loads(f.readline()))
                blob = np.frombuffer(f.read(), dtype=np.uint8)
            index = faiss.deserialize_index(blob)
        except (OSError, ValueError, TypeError, RuntimeError) as e:
            log.warning("index file %s is unreadable (%s); it will be rebuilt", path, e)
            return None
        loaded = cls(IndexSpec(state.factory, state.nprobe, spec.gpu), state.dim, state.metric,
                     state.fingerprint, state.collection_uid)
        loaded.index = index
        loaded.generation = state.generation
        loaded.max_seq = state.max_seq
        return loaded
