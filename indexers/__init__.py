"""Everything that turns raw inputs into vectors: readers, chunking, encoders, the ingest pipeline.

Encoders are not imported here (they pull torch); the engine finds them by entry point.
"""

from __future__ import annotations

from .ingest import CutItem, IngestOptions, IngestReport, SpaceSource, ingest_file, ingest_records
from .readers import read_records
from .records import Problem, Record, record_from_mapping

__all__ = [
    "CutItem",
    "IngestOptions",
    "IngestReport",
    "Problem",
    "Record",
    "SpaceSource",
    "ingest_file",
    "ingest_records",
    "read_records",
    "record_from_mapping",
]
