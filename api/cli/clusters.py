"""``kinsight cluster``: find the groups in a collection, name them, and save the run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from kinsight.engine import ClusterOptions, ClusterResult, cluster

from .common import (
    DEFAULT_STORE,
    CollectionOpt,
    JsonOpt,
    SpaceOpt,
    StoreOpt,
    WhereOpt,
    app,
    console,
    fail,
    open_store,
    pick_collection,
    print_run_hint,
    progress_bar,
)
from .option_params import options_command

__all__ = ["cluster_command", "cluster_result_to_dict"]


@app.command("cluster")
@options_command(ClusterOptions, omit=("k_range", "label_prompts"))
def cluster_command(
    options: dict[str, Any],
    collection: CollectionOpt = None,
    store: StoreOpt = DEFAULT_STORE,
    k: Annotated[str, typer.Option(
        "-k", help="Number of clusters for k-means, or 'auto' to pick it by silhouette.")] = "auto",
    k_min: Annotated[int, typer.Option(min=2, help="With -k auto: smallest k tried.")] = 2,
    k_max: Annotated[int, typer.Option(min=2, help="With -k auto: largest k of the grid tried; "
                                       "past it, k goes on up while the silhouette rises.")] = 40,
    space: SpaceOpt = None,
    where: WhereOpt = None,
    label: Annotated[list[str] | None, typer.Option(
        help="A label prompt; repeat for several. Each cluster gets the nearest one.")] = None,
    labels_file: Annotated[Path | None, typer.Option(
        help="A file of label prompts, one per line.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Cluster a collection's items and name each cluster by its most distinctive words.

    Prints each cluster's name, size, cohesion (mean cosine of members to the centroid) and the
    items nearest its centroid, and saves the run: read it back with `kinsight runs show RUN_ID`,
    or make a page of it with `kinsight report clusters`.
    """
    prompts = list(label or [])
    if labels_file is not None:
        try:
            prompts += [line.strip() for line in labels_file.read_text(encoding="utf-8").splitlines()
                        if line.strip()]
        except OSError as e:
            fail(f"cannot read the labels file {labels_file}: {e.strerror}")
    chosen = ClusterOptions(**options, k=_k(k), k_range=(k_min, k_max), space=space, where=where,
                            label_prompts=prompts or None)
    with open_store(store) as opened, progress_bar("cluster", enabled=not as_json) as progress:
        coll = pick_collection(opened, collection)
        result = cluster(coll, chosen, progress=progress)
    if as_json:
        console.print_json(data=cluster_result_to_dict(result))
        return
    _print_clusters(result)
    print_run_hint(result.run_id, result.seconds, coll.name, store)


def cluster_result_to_dict(result: ClusterResult) -> dict[str, Any]:
    """The run's clusters and figures as JSON-ready data (assignments stay in the run's tables)."""
    return {
        "run_id": result.run_id, "space": result.space, "method": result.method,
        "items": len(result.assignments), "noise": result.noise, "criterion": result.criterion,
        "k_scores": result.k_scores, "seconds": result.seconds,
        "clusters": [{"cluster": c.cluster, "name": c.name, "terms": list(c.terms), "size": c.size,
                      "cohesion": c.cohesion, "representatives": list(c.representatives),
                      "label": c.label, "label_score": c.label_score} for c in result.clusters],
    }


def _print_clusters(result: ClusterResult) -> None:
    with_labels = any(c.label is not None for c in result.clusters)
    table = Table("#", "name", "size", "cohesion", *(["label"] if with_labels else []),
                  "representatives", title=f"{result.method}: {len(result.clusters)} clusters")
    for c in result.clusters:
        table.add_row(str(c.cluster), c.name, str(c.size), f"{c.cohesion:.3f}",
                      *([f"{c.label} ({c.label_score:.2f})"] if with_labels else []),
                      ", ".join(c.representatives))
    console.print(table)
    if result.k_scores:
        console.print(f"k={result.chosen_k} chosen by {result.criterion} over k in "
                      f"{min(result.k_scores)}..{max(result.k_scores)} "
                      f"({len(result.k_scores)} values tried)", highlight=False)
    if result.noise:
        console.print(f"{result.noise} of {len(result.assignments)} items are noise (in no cluster)",
                      highlight=False)


def _k(value: str) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    if not value.isdigit() or int(value) < 1:
        raise typer.BadParameter(f"-k must be a positive whole number or 'auto', not {value!r}")
    return int(value)

