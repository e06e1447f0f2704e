"""A named vector space of a collection: which encoder built it, from which fields, how it is searched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .encoders import Encoder, EncoderInfo, Modality, load_encoder
from .errors import EncoderMismatchError, InvalidInputError

__all__ = ["METRICS", "VectorSpace", "encoder_for"]

METRICS = ("cosine", "dot", "l2")


@dataclass(frozen=True)
class VectorSpace:
    """One vector space: ``encoder`` built its vectors from ``source_fields`` of each item.

    ``metric`` is how vectors compare (cosine vectors are stored unit-length);
    ``chunk_words`` is the chunk size long texts were split into (None: never split);
    ``recall_target`` is what an approximate index must reach against exact search;
    ``index_spec`` is the FAISS factory string of its current index (None until first built);
    ``language`` is the language its keyword (BM25) index analyses texts in (see analysers.py):
    a code, ``auto`` until detected from the texts, None in spaces made before it was recorded
    (English, what they were analysed as).
    """

    collection: str
    name: str
    encoder: EncoderInfo
    metric: str
    source_fields: tuple[str, ...]
    chunk_words: int | None
    recall_target: float
    index_spec: str | None = None
    language: str | None = None

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def keyword_language(self) -> str | None:
        """The language its BM25 index analyses texts in, as shown to users: None for a space
        of pictures (no keyword index), ``en`` for a space made before languages were recorded."""
        if self.encoder.modality != "text":
            return None
        return self.language or "en"

    def encoder_knows_language(self) -> bool:
        """Whether the encoder was trained on the language of the space's texts; a space of
        pictures, or one whose language is still to be detected (``auto``), counts as known."""
        language = self.keyword_language
        return language in (None, "auto") or self.encoder.knows_language(language)

    def warnings(self) -> list[str]:
        """What a result from this space must tell its reader: the encoder's warnings, and
        that it does not know the language of the space's texts, where it does not."""
        if self.encoder_knows_language():
            return self.encoder.warnings()
        return [*self.encoder.warnings(),
                f"encoder {self.encoder.spec} was not trained on {self.keyword_language!r}, the "
                f"language of space {self.name!r}: its dense similarities mean little here, so "
                "mode auto weighs them 0.2 against keywords (BM25) 0.8; mode hybrid fuses as "
                "asked (or build the space with a multilingual encoder)"]

    def check_encoder(self, other: EncoderInfo) -> None:
        """Refuse vectors or queries from another model than the one that built this space."""
        if other.fingerprint != self.encoder.fingerprint or other.dim != self.encoder.dim:
            if other.spec == self.encoder.spec and other.dim == self.encoder.dim:
                raise EncoderMismatchError(self.changed_encoder_message(other.fingerprint))
            raise EncoderMismatchError(
                f"space {self.name!r} of collection {self.collection!r} was built with "
                f"{self.encoder.spec} (fingerprint {self.encoder.fingerprint}, dim "
                f"{self.encoder.dim}), not {other.spec} (fingerprint {other.fingerprint}, dim "
                f"{other.dim}); use the same encoder, or build a new space with this one"
            )

    def changed_encoder_message(self, fingerprint: str) -> str:
        """Why the space's own encoder spec no longer fits it, and what to do."""
        return (f"space {self.name!r} of collection {self.collection!r} was built with "
                f"{self.encoder.spec} when it had fingerprint {self.encoder.fingerprint}; that "
                f"spec now loads fingerprint {fingerprint}: its weights, its adapter or the "
                "preprocessing that feeds it changed (e.g. a retrained adapter, or a kinsight "
                "upgrade that pads pictures instead of cropping them), so its vectors would not "
                "compare with the stored ones. Ingest the items again into a new collection, or "
                f"drop this one (kinsight collections drop {self.collection}) and ingest again; "
                "or restore the version it was built with")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> VectorSpace:
        info = EncoderInfo(spec=row["encoder_spec"], modality=row["modality"], dim=row["dim"],
                           fingerprint=row["fingerprint"], max_tokens=row["max_tokens"])
        return cls(collection=row["collection"], name=row["name"], encoder=info,
                   metric=row["metric"], source_fields=tuple(row["source_fields"]),
                   chunk_words=row["chunk_words"], recall_target=row["recall_target"],
                   index_spec=row.get("index_spec"), language=row.get("language"))


def encoder_for(space: VectorSpace, modality: Modality) -> Encoder:
    """The encoder that puts ``modality`` inputs (texts or pictures) into ``space``: the one that
    built it, or its partner of the other modality (``EncoderInfo.partner``) in the same
    embedding space. Either way its fingerprint must be the space's: vectors of two encoders are
    comparable exactly when their fingerprints are equal."""
    encoder = load_encoder(space.encoder.spec)
    if encoder.info.fingerprint != space.encoder.fingerprint:
        raise EncoderMismatchError(space.changed_encoder_message(encoder.info.fingerprint))
    if encoder.info.modality != modality:
        partner = encoder.info.partner
        if partner is None:
            raise InvalidInputError(
                f"space {space.name!r} of collection {space.collection!r} holds "
                f"{space.encoder.modality} vectors of {space.encoder.spec}, which has no "
                f"{modality} encoder in its embedding space; query it with "
                f"{'a picture' if modality == 'text' else 'text'}, a vector or an item id, or "
                "build the space with an encoder that has one "
                "(open_clip:ARCH@WEIGHTS:image|text, or a trained adapter:NAME:image|text)")
        encoder = load_encoder(partner)
        if encoder.info.modality != modality:
            raise InvalidInputError(f"encoder {space.encoder.spec} names {partner} as its "
                                    f"{modality} partner, but that encoder embeds "
                                    f"{encoder.info.modality}")
    space.check_encoder(encoder.info)
    return encoder
