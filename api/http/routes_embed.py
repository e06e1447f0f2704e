"""Embeddings as a service: ``POST /embed`` returns the vectors kinsight would store.

One route takes texts as JSON or pictures as a multipart form (files under ``image``, the target
as form fields), so the same URL serves both, as the OpenAPI document says; the body is therefore
read here (``texts_or_pictures``, which ``classify/predict`` shares) rather than declared as a
parameter.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from kinsight.engine import Embeddings, InvalidInputError, Store

from .deps import SettingsDep, StoreDep
from .models import ErrorOut
from .models_embed import EMBED_EXAMPLES, EmbedRequest, EmbedResponse, EmbedTarget
from .routes_search import check_batch_size
from .service import EncodedDep
from .settings import Settings

__all__ = ["router", "texts_or_pictures", "texts_or_pictures_body"]

Target = TypeVar("Target", bound=BaseModel)

router = APIRouter(tags=["embed"], responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}})

def texts_or_pictures_body(texts_model: type[BaseModel], form_model: type[BaseModel],
                           examples: list[Any]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads ``texts_or_pictures``: ``texts_model``
    as JSON, or pictures under ``image`` beside the fields of ``form_model`` as a form."""
    form = {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": "The pictures, in order (PNG, JPEG, GIF, WebP, ...)."},
        **{name: {**schema, "title": name}
           for name, schema in form_model.model_json_schema()["properties"].items()}}}
    return {"required": True, "content": {
        "application/json": {"schema": texts_model.model_json_schema(),
                             "examples": {f"example {i + 1}": {"value": value}
                                          for i, value in enumerate(examples)}},
        "multipart/form-data": {"schema": form},
    }}


async def texts_or_pictures(request: Request, settings: Settings, texts_model: type[Target],
                            form_model: type[Target]) -> tuple[Target, list[Any]]:
    """The body of such a route: ``(texts_model from JSON, its texts)``, or ``(form_model from
    the form's fields, the decoded pictures)``; 415 for any other content type."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        body = _validated(texts_model, await _json(request))
        inputs: list[Any] = list(body.texts)  # type: ignore[attr-defined]
        target = body
    elif kind == "multipart/form-data":
        target, inputs = await _pictures(request, settings, form_model)
    else:
        raise HTTPException(415, f"send texts as application/json or pictures as "
                                 f"multipart/form-data, not {kind or 'no content type'}")
    check_batch_size(len(inputs), settings, "inputs")
    return target, inputs


@router.post("/embed", summary="The vectors kinsight would store for texts or pictures",
             openapi_extra={"requestBody": texts_or_pictures_body(
                 EmbedRequest, EmbedTarget, EMBED_EXAMPLES)},
             responses={415: {"model": ErrorOut, "description": "Neither JSON nor a form"}})
async def embed(request: Request, store: StoreDep, settings: SettingsDep,
                encoded: EncodedDep) -> EmbedResponse:
    """Texts as JSON ``{"texts": [...], "collection": C, "space": S}``, or pictures as a
    multipart form (``image`` files, ``collection``/``space`` or ``encoder`` fields). With a
    collection the vectors are the ones its space stores (its encoder, or the partner of the
    other modality, unit-length in a cosine space); with ``encoder`` (one the server serves) those
    a new space of it would store. One vector per input: a text longer than the encoder reads is
    encoded from its beginning (an ingest would add vectors for its later chunks)."""
    target, inputs = await texts_or_pictures(request, settings, EmbedRequest, EmbedTarget)
    encoded(len(inputs))
    embeddings = await run_in_threadpool(_embed, store, settings, target, inputs)
    return EmbedResponse(vectors=embeddings.vectors.tolist(), dim=embeddings.encoder.dim,
                         encoder=embeddings.encoder.spec,
                         fingerprint=embeddings.encoder.fingerprint, metric=embeddings.metric,
                         normalised=embeddings.metric == "cosine",
                         warnings=embeddings.encoder.warnings())


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as e:
        raise HTTPException(400, f"the body is not JSON: {e}") from e


def _validated(model: type[Target], data: Any) -> Target:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise RequestValidationError(e.errors(include_url=False)) from e


async def _pictures(request: Request, settings: Settings, model: type[Target]
                    ) -> tuple[Target, list[Any]]:
    from kinsight.indexers.image_files import ImageFileError, open_image

    form = await request.form(max_files=settings.max_batch_items + 1)
    files = [f for f in form.getlist("image") if isinstance(f, UploadFile)]
    target = _validated(model, {k: v for k, v in form.items() if k != "image"})
    if not files:
        raise InvalidInputError("no pictures: send them as files under the form field 'image'")
    pictures = []
    for position, upload in enumerate(files, start=1):
        try:
            pictures.append(open_image(await upload.read()))
        except ImageFileError as e:
            raise InvalidInputError(f"picture {position} ({upload.filename}): {e.reason}; "
                                    f"{e.fix}") from e
    return target, pictures


def _embed(store: Store, settings: Settings, target: EmbedTarget, inputs: list[Any]
           ) -> Embeddings:
    if target.collection is not None:
        return store.collection(target.collection).embed(inputs, target.space, role=target.role)
    served = _served_encoders(store, settings)
    if target.encoder not in served:
        raise InvalidInputError(
            f"encoder {target.encoder!r} is not served here; use one of {sorted(served)} (the "
            "server's encoder, or one a space of the store was built with), or name a collection")
    return store.embed(inputs, target.encoder, metric=target.metric, role=target.role)


def _served_encoders(store: Store, settings: Settings) -> set[str]:
    """Specs a client may name: loading any other would let a request load arbitrary models."""
    return {settings.encoder} | {space.encoder.spec for name in store.list_collections()
                                 for space in store.collection(name).spaces().values()}
