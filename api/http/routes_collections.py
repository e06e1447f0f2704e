"""Collections: list, create, describe, drop."""

from __future__ import annotations

from fastapi import APIRouter, Response

from kinsight.engine import Collection, NotFoundError

from .deps import CollectionDep, StoreDep, WriteLockDep
from .models import CollectionInfo, CollectionList, CreateCollection, ErrorOut, SpaceInfo

__all__ = ["collection_info", "router"]

router = APIRouter(prefix="/collections", tags=["collections"],
                   responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}})


def collection_info(collection: Collection) -> CollectionInfo:
    spaces = [
        SpaceInfo(name=space.name, encoder=space.encoder.spec,
                  fingerprint=space.encoder.fingerprint, modality=space.encoder.modality,
                  dim=space.dim, metric=space.metric, source_fields=list(space.source_fields),
                  chunk_words=space.chunk_words, language=space.keyword_language)
        for space in collection.spaces().values()
    ]
    return CollectionInfo(name=collection.name, count=collection.count(),
                          fields=collection.fields(), spaces=spaces)


@router.get("", summary="List collections")
def list_collections(store: StoreDep) -> CollectionList:
    infos = []
    for name in store.list_collections():
        try:
            infos.append(collection_info(store.collection(name)))
        except NotFoundError:
            continue  # dropped by another request since it was listed
    return CollectionList(collections=infos)


@router.post("", status_code=201, summary="Create an empty collection",
             responses={409: {"model": ErrorOut, "description": "The collection exists already"}})
def create_collection(body: CreateCollection, store: StoreDep, write_lock: WriteLockDep,
                      response: Response) -> CollectionInfo:
    with write_lock:
        collection = store.create_collection(body.name)
    response.headers["Location"] = f"/collections/{collection.name}"
    return collection_info(collection)


@router.get("/{name}", summary="Describe a collection")
def get_collection(collection: CollectionDep) -> CollectionInfo:
    return collection_info(collection)


@router.delete("/{name}", status_code=204, response_class=Response,
               summary="Drop a collection with its items and indexes")
def drop_collection(name: str, store: StoreDep, write_lock: WriteLockDep) -> Response:
    with write_lock:
        store.drop_collection(name)
    return Response(status_code=204)
