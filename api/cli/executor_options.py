"""Where a command's encoding runs: ``--workers N`` (a local Ray of N actors) or ``--ray ADDRESS``
(an existing Ray cluster); neither, in this process. Shared by every command that encodes a file
of new items (ingest, anomalies --targets)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from kinsight.indexers.executors import EncodeExecutor

__all__ = ["RayOpt", "WorkersOpt", "encode_executor"]

WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", min=1, help="Encode on N Ray workers (a local Ray; with --ray, N actors on the "
                             "cluster). Needs bash scripts/setup.sh --ray.")]
RayOpt = Annotated[str | None, typer.Option(
    "--ray", metavar="ADDRESS", help="Encode on an existing Ray cluster (ray://HEAD:10001, or "
                                     "auto on one of its nodes): one worker per GPU, else per "
                                     "4 CPUs, unless --workers says.")]


def encode_executor(specs: Mapping[str, str], workers: int | None, address: str | None
                    ) -> EncodeExecutor | None:
    """The Ray executor for spaces ``specs`` (space → encoder spec) when ``--workers`` or
    ``--ray`` was given; None (encode in this process) otherwise."""
    if workers is None and address is None:
        return None
    from kinsight.indexers.ray_executor import RayExecutor

    return RayExecutor(specs, workers=workers, address=address)
