"""The anomaly report: one saved ``anomalies`` run as a page a person can read.

Everything comes from the run's tables (``anomalies_scores``, ``anomalies_reference``) and the
items' current fields, so any past run can be reported: its parameters, a histogram of the scores
with the threshold, the top anomalies with their fields (and thumbnails, when the collection keeps
them in a field), the words that made each odd (text detectors), the reference items nearest to
each, a 2-D map of reference and targets with the anomalies marked, and the drift of the batch:
the share flagged against the expected share (binomial test) for the batch, for each value of a
field, and for the collection's earlier anomaly runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from markupsafe import Markup

from kinsight.engine import (
    Collection,
    DriftRow,
    NotFoundError,
    RunInfo,
    drift,
    drift_by,
    get_run,
    list_runs,
    read_run_table,
)

from .page import Section, histogram_svg, render_report, scatter_svg, table_html, thumbnail_img

__all__ = ["latest_anomaly_run", "render_anomaly_report"]


def latest_anomaly_run(collection: Collection) -> str:
    runs = list_runs(collection, "anomalies")
    if not runs:
        raise NotFoundError(f"collection {collection.name!r} has no anomalies run; run "
                            "`kinsight anomalies` first")
    return runs[0].run_id


def render_anomaly_report(collection: Collection, run_id: str, *, top: int = 50,
                          fields: Sequence[str] | None = None,
                          thumbnail_field: str | None = None, by: str | None = None) -> str:
    """The HTML page of one run: ``top`` anomalies listed with ``fields`` (default: every scalar
    field of the collection) and, with ``thumbnail_field``, the image bytes it holds; ``by``: a
    field whose values the drift table is broken down by."""
    run = get_run(collection, run_id)
    if run.operation != "anomalies":
        raise NotFoundError(f"run {run_id!r} is a {run.operation} run, not an anomalies run")
    scores = read_run_table(collection, run_id, "scores").to_pylist()
    reference = read_run_table(collection, run_id, "reference")
    shown_fields = list(fields) if fields is not None else [
        name for name, kind in collection.fields().items()
        if not kind.endswith("[]") and kind != "BLOB" and name != thumbnail_field]
    flagged = [s for s in scores if s["is_anomaly"]][:top]
    neighbour_ids = sorted({n for s in flagged for n in s["neighbour_ids"]})
    known = collection.fields_of([s["id"] for s in flagged] + neighbour_ids)
    threshold = float(run.summary["threshold"])
    sections = [
        Section("scores", "Scores", histogram_svg(
            np.array([s["score"] for s in scores]), threshold=threshold,
            xlabel=f"{run.params['method']} score (higher: more normal)",
            title=f"{run.summary['anomalies']} of {run.summary['targets']} items past the "
                  f"{run.params['threshold_percentile']:g}th percentile of the reference")),
        Section("anomalies", f"Top anomalies ({len(flagged)} shown)",
                _anomaly_table(flagged, known, shown_fields, thumbnail_field)),
        Section("neighbours", "Nearest reference items",
                _neighbour_table(flagged, known, shown_fields)),
        Section("map", "Map (PCA of the reference)", _map(scores, reference)),
        Section("drift", "Drift", _drift_table(collection, run, scores, by)),
    ]
    summary = run.summary
    params = {"run": run_id, "created": f"{run.created_at:%Y-%m-%d %H:%M} UTC",
              **{k: json.dumps(v) if isinstance(v, dict | list) else v
                 for k, v in run.params.items()},
              "result": f"{summary['anomalies']} anomalies among {summary['targets']} targets; "
                        f"reference of {summary['reference']} items; threshold score "
                        f"{threshold:.4g}"}
    return render_report(f"Anomalies in {collection.name}", params, sections,
                         subtitle=f"{run.params['method']} detector, run {run_id}")


def _anomaly_table(flagged: list[dict[str, Any]], known: dict[str, dict[str, Any]],
                   fields: list[str], thumbnail_field: str | None) -> Markup:
    if not flagged:
        return Markup("<p>No item passed the threshold.</p>")
    rows = []
    for rank, score in enumerate(flagged, start=1):
        item = known.get(score["id"], {})
        row = {"#": rank, "id": score["id"], "percentile": score["percentile"],
               "score": score["score"],
               "unusual words": ", ".join(score.get("unusual_words") or []),
               "nearest reference": ", ".join(
                   f"{n} ({s:.2f})" for n, s in zip(score["neighbour_ids"],
                                                     score["neighbour_similarities"], strict=True)),
               **{f: item.get(f) for f in fields}}
        if thumbnail_field is not None:
            picture = item.get(thumbnail_field)  # image bytes; anything else is not drawn
            row["thumbnail"] = thumbnail_img(picture if isinstance(picture, bytes) else None,
                                             score["id"])
        rows.append(row)
    columns = ["#", *(["thumbnail"] if thumbnail_field else []), "id", "percentile", "score",
               *fields, "unusual words", "nearest reference"]
    return table_html(rows, columns, css_class="anomalies")


def _neighbour_table(flagged: list[dict[str, Any]], known: dict[str, dict[str, Any]],
                     fields: list[str]) -> Markup:
    if not flagged:
        return Markup("<p>No anomalies, so no neighbours to show.</p>")
    text_field = next((f for f in ("title", "text", "caption") if f in fields), None)
    rows = [{"anomaly": score["id"], "reference item": neighbour, "similarity": similarity,
             **({text_field: known.get(neighbour, {}).get(text_field)} if text_field else {})}
            for score in flagged
            for neighbour, similarity in zip(score["neighbour_ids"],
                                             score["neighbour_similarities"], strict=True)]
    return table_html(rows, ["anomaly", "reference item", "similarity",
                             *([text_field] if text_field else [])], css_class="neighbours")


def _map(scores: list[dict[str, Any]], reference: Any) -> Markup:
    """Reference items (those also scored keep their flag) and the other targets, one point each."""
    flagged_reference = {s["id"] for s in scores if s["in_reference"] and s["is_anomaly"]}
    others = [s for s in scores if not s["in_reference"]]
    xy = np.concatenate([
        np.column_stack([reference.column("x").to_numpy(), reference.column("y").to_numpy()]),
        np.array([[s["x"], s["y"]] for s in others]).reshape(-1, 2)])
    groups = ["reference"] * reference.num_rows + ["target"] * len(others)
    highlight = np.r_[[i in flagged_reference for i in reference.column("id").to_pylist()],
                      [s["is_anomaly"] for s in others]].astype(bool)
    return scatter_svg(xy, groups, highlight=highlight,
                       title="reference and targets; anomalies marked")


def _drift_table(collection: Collection, run: RunInfo, scores: list[dict[str, Any]],
                 by: str | None) -> Markup:
    """This batch, its values of ``by``, then the earlier runs: flagged share against expected."""
    expected = 1 - float(run.params["threshold_percentile"]) / 100
    flags = [bool(s["is_anomaly"]) for s in scores]
    rows: list[tuple[str, DriftRow]] = [("this batch", drift(run.run_id, len(flags), sum(flags),
                                                             expected))]
    if by is not None:
        values = collection.field_values(by, [s["id"] for s in scores])
        rows += [(f"{by} =", row) for row in drift_by(values, flags, expected)]
    for earlier in list_runs(collection, "anomalies"):
        if earlier.created_at < run.created_at and "targets" in earlier.summary:
            rows.append(("earlier run", drift(
                earlier.run_id, int(earlier.summary["targets"]),
                int(earlier.summary["anomalies"]),
                1 - float(earlier.params["threshold_percentile"]) / 100)))
    return table_html([{"": kind, "batch": r.group, "items": r.items, "flagged": r.flagged,
                        "share": f"{r.share:.1%}", "expected": f"{r.expected:.1%}",
                        "p (binomial)": f"{r.p_value:.3g}"} for kind, r in rows],
                      ["", "batch", "items", "flagged", "share", "expected", "p (binomial)"],
                      css_class="drift")
