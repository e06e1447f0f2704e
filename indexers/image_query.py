"""Search by picture: encode a query image (a file or its bytes) with the model that built an image
space (or, for a text space, the image encoder that shares its embedding space: a CLIP image
tower, an adapter's image side), then run the engine's vector search. The engine never sees the
picture, only its vector."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from kinsight.engine import Collection, Hit, SearchOptions, VectorSpace
from kinsight.engine.errors import InvalidInputError
from kinsight.engine.search import search
from kinsight.engine.spaces import encoder_for

from .image_files import ImageFileError, open_image

__all__ = ["image_query_vector", "image_space", "search_by_image"]


def image_space(collection: Collection, name: str | None = None) -> VectorSpace:
    """The space ``name`` (an image space, or a text space whose encoder has an image partner:
    checked when the picture is encoded), or the collection's only image space."""
    if name is not None:
        return collection.space(name)
    found = [s for s in collection.spaces().values() if s.encoder.modality == "image"]
    if len(found) != 1:
        raise InvalidInputError(
            f"collection {collection.name!r} has {len(found) or 'no'} image spaces "
            f"({', '.join(s.name for s in found) or 'ingest pictures first'}); name one with space=")
    return found[0]


def image_query_vector(space: VectorSpace, image: str | Path | bytes) -> np.ndarray:
    """The vector ``(dim,)`` of a picture in ``space``, by the model that built the space or its
    image partner in the same embedding space."""
    encoder = encoder_for(space, "image")
    try:
        picture = open_image(image)
    except ImageFileError as e:
        where = "the uploaded image" if isinstance(image, bytes) else f"query image {image}"
        raise InvalidInputError(f"{where}: {e.reason}; {e.fix}") from e
    return np.asarray(encoder.encode([picture], role="query")[0], dtype=np.float32)


def search_by_image(collection: Collection, image: str | Path | bytes,
                    options: SearchOptions | None = None) -> list[Hit]:
    """Items closest to the picture ``image`` (a path or the bytes of an image file) in the space
    ``options.space`` (default: the collection's only image space): pictures that look like it,
    or, in a text space sharing an embedding space with an image encoder, captions that describe
    it. Dense search only."""
    options = options or SearchOptions()
    space = image_space(collection, options.space)
    vector = image_query_vector(space, image)
    return search(collection, vector, dataclasses.replace(options, space=space.name, mode="dense"))
