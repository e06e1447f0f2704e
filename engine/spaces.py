"""A named vector space of a collection: which encoder built it, from which fields, how it is searched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .encoders import EncoderInfo
from .errors import EncoderMismatchError

__all__ = ["METRICS", "VectorSpace"]

METRICS = ("cosine", "dot", "l2")


@dataclass(frozen=True)
class VectorSpace:
    """One vector space: ``encoder`` built its vectors from ``source_fields`` of each item.

    ``metric`` is how vectors compare (cosine vectors are stored unit-length);
    ``chunk_words`` is the chunk size long texts were split into (None: never split);
    ``recall_target`` is what an approximate index must reach against exact search;
    ``index_spec`` is the FAISS factory string of its current index (None until first built).
    """

    collection: str
    name: str
    encoder: EncoderInfo
    metric: str
    source_fields: tuple[str, ...]
    chunk_words: int | None
    recall_target: float
    index_spec: str | None = None

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def table(self) -> str:
        return f"vectors_{self.name}"

    def check_encoder(self, other: EncoderInfo) -> None:
        """Refuse vectors or queries from another model than the one that built this space."""
        if other.fingerprint != self.encoder.fingerprint or other.dim != self.encoder.dim:
            raise EncoderMismatchError(
                f"space {self.name!r} of collection {self.collection!r} was built with "
                f"{self.encoder.spec} (fingerprint {self.encoder.fingerprint}, dim "
                f"{self.encoder.dim}), not {other.spec} (fingerprint {other.fingerprint}, dim "
                f"{other.dim}); use the same encoder, or build a new space with this one"
            )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> VectorSpace:
        info = EncoderInfo(spec=row["encoder_spec"], modality=row["modality"], dim=row["dim"],
                           fingerprint=row["fingerprint"], max_tokens=row["max_tokens"])
        return cls(collection=row["collection"], name=row["name"], encoder=info,
                   metric=row["metric"], source_fields=tuple(row["source_fields"]),
                   chunk_words=row["chunk_words"], recall_target=row["recall_target"],
                   index_spec=row.get("index_spec"))
