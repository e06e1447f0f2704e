"""Request and response bodies of ``POST /embed``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, model_validator

from .models import _Request

__all__ = ["EMBED_EXAMPLES", "EmbedRequest", "EmbedResponse", "EmbedTarget"]

EMBED_EXAMPLES: list[JsonValue] = [
    {"texts": ["read a csv file", "an http server in go"], "collection": "docs", "space": "text"},
    {"texts": ["a frog on a leaf"], "encoder": "sentence-transformers:all-MiniLM-L6-v2"},
]


class EmbedTarget(_Request):
    """Whose vectors: a space of a collection, or an encoder as a new space would use it.
    Pictures (multipart) send these as form fields."""

    collection: str | None = Field(None, description="Embed as this collection's space does.")
    space: str | None = Field(None, description="With collection: the space; left out: its "
                                                "only one (or 'text').")
    encoder: str | None = Field(
        None, description="Instead of a collection: an encoder spec the server serves (its "
                          "default encoder, or one a space of the store was built with).")
    metric: Literal["cosine", "dot", "l2"] = Field(
        "cosine", description="With encoder: the metric of the space the vectors are for "
                              "(cosine: unit length).")
    role: Literal["document", "query"] = Field(
        "document", description="document: as stored; query: as a search encodes its query.")

    @model_validator(mode="after")
    def _one_target(self) -> EmbedTarget:
        if (self.collection is None) == (self.encoder is None):
            raise ValueError("give exactly one of 'collection' (and 'space') or 'encoder'")
        if self.space is not None and self.collection is None:
            raise ValueError("'space' goes with 'collection'")
        return self


class EmbedRequest(EmbedTarget):
    """Texts to embed (pictures come as multipart, see the route)."""

    model_config = ConfigDict(json_schema_extra={"examples": EMBED_EXAMPLES})

    texts: list[Annotated[str, StringConstraints(min_length=1)]] = Field(min_length=1)


class EmbedResponse(BaseModel):
    vectors: list[list[float]] = Field(description="One per input, in order.")
    dim: int
    encoder: str = Field(description="Spec of the encoder that made them.")
    fingerprint: str = Field(description="Identifies its weights: vectors with equal "
                                         "fingerprints are comparable.")
    metric: str
    normalised: bool = Field(description="Unit-length rows (a cosine space).")
    warnings: list[str] = Field(default_factory=list)
