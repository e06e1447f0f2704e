"""Search by picture: upload an image (multipart form) and get the items that look most like it."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import TypeAdapter, ValidationError

from kinsight.engine import Filter, InvalidInputError, SearchOptions

from .deps import CollectionDep
from .models import ErrorOut, SearchResponse
from .routes_search import hit_out

__all__ = ["router"]

router = APIRouter(prefix="/collections/{name}", tags=["search"],
                   responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}})

_FILTER = TypeAdapter(Filter)


@router.post("/search/image", summary="Find the items whose pictures look most like an uploaded one")
def search_collection_by_image(
    collection: CollectionDep,
    image: Annotated[UploadFile, File(description="The query picture (PNG, JPEG, GIF, WebP, ...).")],
    k: Annotated[int, Form(ge=1, le=1000)] = 10,
    space: Annotated[str | None, Form(description="Image space; left out: the only one.")] = None,
    filter: Annotated[str | None, Form(
        description='Structured filter as JSON, e.g. {"field": "category", "op": "eq", '
                    '"value": "animals"}.')] = None,
    exact: Annotated[bool, Form()] = False,
) -> SearchResponse:
    """The picture is encoded by the model that built the image space, then searched densely.
    A file that is not a readable image is refused (422) with the reason."""
    from kinsight.indexers.image_query import image_space, search_by_image

    started = time.perf_counter()
    where = None
    if filter is not None:
        try:
            where = _FILTER.validate_json(filter)
        except ValidationError as e:
            raise InvalidInputError(f"filter is not a structured filter ({e.error_count()} "
                                    'errors); send e.g. {"field": "category", "op": "eq", '
                                    '"value": "animals"}') from e
    searched = image_space(collection, space)
    options = SearchOptions(k=k, space=searched.name, where=where, exact=exact)
    hits = search_by_image(collection, image.file.read(), options)
    return SearchResponse(hits=[hit_out(hit) for hit in hits],
                          took_ms=(time.perf_counter() - started) * 1000,
                          warnings=searched.encoder.warnings())
