"""Settings of the HTTP service, read from ``KINSIGHT_*`` environment variables or passed in."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kinsight.engine import DEFAULT_TEXT_ENCODER
from kinsight.indexers.chunking import DEFAULT_MAX_CHUNKS
from kinsight.indexers.process_executor import DEFAULT_NICENESS

__all__ = ["Settings"]


class Settings(BaseSettings):
    """What ``create_app`` needs. Every field can be set as ``KINSIGHT_<NAME>``, e.g.
    ``KINSIGHT_STORE=./my-store KINSIGHT_API_KEY=... uvicorn --factory kinsight.api.http:create_app``.
    """

    # An empty variable (``KINSIGHT_API_KEY=`` in a .env file) means "not set", not "the empty key".
    model_config = SettingsConfigDict(env_prefix="KINSIGHT_", env_ignore_empty=True, extra="ignore")

    store: str = Field(default="./kinsight-store", description="Store directory, or ':memory:'.")
    # repr=False: settings get logged and printed; the key must not be.
    api_key: str | None = Field(
        default=None, min_length=1, repr=False,
        description="When set, every route but /health and the docs needs header X-API-Key.")
    max_request_bytes: int = Field(
        default=10_000_000, gt=0, description="Larger request bodies are refused with 413.")
    max_batch_items: int = Field(
        default=1000, ge=1, description="Most items one upsert request may carry.")
    max_search_batch: int = Field(
        default=64, ge=1,
        description="Most concurrent single searches of one collection that run as one batch "
                    "(one encoder batch, one index call); 1 runs each search on its own.")
    encoder: str = Field(
        default=DEFAULT_TEXT_ENCODER, min_length=1,
        description="Encoder spec for text spaces that an upsert creates (existing spaces keep theirs).")
    max_chunks_per_item: int = Field(
        default=DEFAULT_MAX_CHUNKS, ge=1,
        description="Most chunks of one posted item's text that are encoded (its beginning); the "
                    "whole text is stored and searched by BM25, and the response warns of each cut.")
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins a browser may call the API from, e.g. ["https://app.example"] '
                    "(KINSIGHT_CORS_ORIGINS as JSON); empty: no cross-origin calls.")
    read_only: bool = Field(
        default=False, description="Open the store read-only: reads answer, writes answer 409 "
                                   "(DuckDB lets many processes read a store, one write it).")
    index_save_seconds: float = Field(
        default=60, ge=0,
        description="How often the FAISS and BM25 files of changed indexes are saved, besides "
                    "when the server stops; an upsert does not save them (the database is the "
                    "record: after a crash the indexes catch up with it on open). 0: only at stop.")
    encode_niceness: int = Field(
        default=DEFAULT_NICENESS, ge=0, le=19,
        description="Upserted texts and pictures are encoded in a child process at this nice "
                    "value (higher: lower CPU priority), so searches keep the cores they need "
                    "during a long ingest and the encoding gets the rest; 0: in the server's "
                    "own process.")
    warm_up: bool = Field(
        default=True, description="Load and run the encoders and indexes of every space at "
                                  "start; /ready answers 503 until they are warm.")
