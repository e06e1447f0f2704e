"""Items: batch upsert through the ingest pipeline, read one, delete by ids or filter."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict

from fastapi import APIRouter

from kinsight.engine import FieldUpdate, InvalidInputError, NotFoundError, Store, VectorSpace
from kinsight.indexers.ingest import IngestOptions, IngestReport, open_ingest
from kinsight.indexers.pipeline import IngestPipeline
from kinsight.indexers.records import Problem, Record, record_from_mapping

from ..reporting import json_ready
from .deps import (
    CollectionDep,
    EncodeProcessDep,
    SettingsDep,
    StoreDep,
    UnderWayDep,
    WriteLockDep,
)
from .models import (
    DeleteRequest,
    DeleteResponse,
    ErrorOut,
    ItemIn,
    ItemOut,
    ProblemOut,
    UpsertRequest,
    UpsertResponse,
)
from .models_fields import FieldsPatch, FieldsUpdateRequest, FieldsUpdateResponse
from .service import EncodedDep

__all__ = ["REQUEST_SOURCE", "router"]

log = logging.getLogger(__name__)

# What problems name as their source; their line is the item's 1-based position in the request.
REQUEST_SOURCE = "request"

router = APIRouter(prefix="/collections/{name}/items", tags=["items"],
                   responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}})


@router.post("", summary="Insert or replace items by id (encoded on the way in)",
             responses={409: {"model": ErrorOut, "description": "The store is read-only"}})
def upsert_items(name: str, body: UpsertRequest, store: StoreDep, settings: SettingsDep,
                 write_lock: WriteLockDep, under_way: UnderWayDep, encoded: EncodedDep,
                 encode_process: EncodeProcessDep) -> UpsertResponse:
    """Items with no text in any of ``text_fields``, or with unusable field names, are skipped
    and listed in ``problems``; the others are written in one transaction. A collection or space
    that does not exist yet is created (a new space uses the server's encoder).

    The items are encoded with no lock held, so upserts encode side by side and searches and
    other writes go on meanwhile (in a child process of lower priority, ``encode_niceness``, so
    searches keep the cores they need); then they are written, one write at a time. Two upserts of
    one id: the one written last wins, whole (its fields, vectors and content hash)."""
    if len(body.items) > settings.max_batch_items:
        raise InvalidInputError(
            f"{len(body.items)} items in one request; the most is {settings.max_batch_items} "
            "(max_batch_items): split the batch")
    with under_way.track():
        with write_lock:  # creating the collection or space is check-then-create
            space = _existing_space(store, name, body.space)
            text_fields = _text_fields(body, name, space)
            entries = [_record(i + 1, item, text_fields) for i, item in enumerate(body.items)]
            records = [e for e in entries if isinstance(e, Record)]
            problems = [e for e in entries if isinstance(e, Problem)]
            if records:  # a batch of only bad items creates nothing
                options = IngestOptions(
                    collection=name, text_fields=text_fields, space=body.space,
                    encoder=settings.encoder if space is None else space.encoder.spec,
                    # One transaction for all the items: they are written all or none.
                    batch_size=len(records), max_chunks=settings.max_chunks_per_item,
                    language=body.language)
                pipeline = open_ingest(store, options, executor=None if encode_process is None
                                       else encode_process.for_ingest(
                                           {s.name: s.encoder for s in options.sources()}))
        report = _ingest(pipeline, records, write_lock) if records else IngestReport()
    encoded(report.chunks)
    problems += report.problems
    warnings = [f"{cut}; the server encodes at most {settings.max_chunks_per_item} chunks per "
                "item (KINSIGHT_MAX_CHUNKS_PER_ITEM)" for cut in report.cut]
    if problems:
        log.info("upsert into %s skipped %d of %d items", name, len(problems), len(body.items))
    return UpsertResponse(written=report.written + report.updated, unchanged=report.unchanged,
                          problems=[ProblemOut(**asdict(p)) for p in problems], warnings=warnings)


def _ingest(pipeline: IngestPipeline, records: list[Record], write_lock: threading.Lock
            ) -> IngestReport:
    """Encode ``records`` with no lock held, then write them and catch the indexes up under
    ``write_lock`` (the writer rechecks what another write changed meanwhile). The index files
    are not saved here but every ``index_save_seconds`` and when the server stops (app.py):
    the commit is what makes the items durable, and indexes behind it catch up on open."""
    try:
        batches = list(pipeline.encoded(records))
        with write_lock:
            if not pipeline.collection.exists():  # a drop came in while this one encoded
                raise NotFoundError(
                    f"collection {pipeline.collection.name!r} was dropped while these items "
                    "were encoded; nothing was written: send them again to create it anew")
            report = pipeline.write(batches, progress=False)
            pipeline.collection.catch_up()
    finally:
        pipeline.close()
    log.info("%s", report.summary())
    return report


@router.post("/update", summary="Set or remove fields of stored items (no re-encoding)")
def update_items(body: FieldsUpdateRequest, collection: CollectionDep, settings: SettingsDep,
                 write_lock: WriteLockDep) -> FieldsUpdateResponse:
    """All the updates in one transaction, or none: an unknown id, or a field a vector space is
    built from (upsert the item to change it), refuses the whole batch. Filters and results see
    the new values at once."""
    if len(body.updates) > settings.max_batch_items:
        raise InvalidInputError(
            f"{len(body.updates)} updates in one request; the most is "
            f"{settings.max_batch_items} (max_batch_items): split the batch")
    updates = [FieldUpdate(u.id, u.set, tuple(u.remove)) for u in body.updates]
    with write_lock:
        return FieldsUpdateResponse(updated=collection.update_fields(updates))


@router.patch("/{item_id:path}", summary="Set or remove fields of one stored item")
def patch_item(item_id: str, body: FieldsPatch, collection: CollectionDep,
               write_lock: WriteLockDep) -> FieldsUpdateResponse:
    """The batch form's rules for one item; answers 404 when it is not stored."""
    with write_lock:
        updated = collection.update_fields([FieldUpdate(item_id, body.set, tuple(body.remove))])
    return FieldsUpdateResponse(updated=updated)


@router.get("/{item_id:path}", summary="Read one item")
def get_item(item_id: str, collection: CollectionDep) -> ItemOut:
    found = collection.get([item_id])
    if not found:
        raise NotFoundError(f"no item {item_id!r} in collection {collection.name!r}")
    return ItemOut(id=found[0].id,
                   fields={name: json_ready(value) for name, value in found[0].fields.items()})


@router.post("/delete", summary="Delete items by ids or by a filter")
def delete_items(body: DeleteRequest, collection: CollectionDep,
                 write_lock: WriteLockDep) -> DeleteResponse:
    with write_lock:
        deleted = collection.delete(body.ids, where=body.filter)
    return DeleteResponse(deleted=deleted)


def _existing_space(store: Store, collection: str, space: str) -> VectorSpace | None:
    if collection not in store.list_collections():
        return None
    found = store.collection(collection).spaces().get(space)
    if found is not None and found.encoder.modality != "text":
        raise InvalidInputError(
            f"space {space!r} of collection {collection!r} holds {found.encoder.modality} "
            "vectors; items posted here are encoded as text: name a text space")
    return found


def _text_fields(body: UpsertRequest, collection: str, space: VectorSpace | None
                 ) -> tuple[str, ...]:
    """The request's text fields; an existing space keeps the ones its vectors were made from,
    since mixing texts built from other fields would make its vectors and BM25 disagree."""
    requested = tuple(body.text_fields)
    if space is None or not space.source_fields:
        return requested
    if "text_fields" not in body.model_fields_set:
        return space.source_fields
    if requested != space.source_fields:
        raise InvalidInputError(
            f"space {space.name!r} of collection {collection!r} is built from text fields "
            f"{list(space.source_fields)}, not {list(requested)}; send those (or leave "
            "text_fields out), or write to another space")
    return requested


def _record(line: int, item: ItemIn, text_fields: Sequence[str]) -> Record | Problem:
    """The ingest record for one posted item, checked as the file readers check their rows."""
    if "id" in item.fields:
        # Merged with the id below it would be overwritten without a word; refuse it instead.
        return Problem(REQUEST_SOURCE, line, "invalid field name 'id': the item's id goes in "
                       "\"id\" next to \"fields\", not among them", "rename or remove the field")
    return record_from_mapping({**item.fields, "id": item.id}, REQUEST_SOURCE, line,
                               id_field="id", text_fields=text_fields)
