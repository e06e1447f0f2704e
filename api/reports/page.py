"""The shared parts of a report page: layout, escaped tables, thumbnails and inline SVG plots.

Plots are drawn with matplotlib and inlined as SVG text, so a report is one file with no
scripts, fonts or images to fetch: it opens the same from a mail attachment as from a server.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

__all__ = ["Section", "bar_svg", "histogram_svg", "render_report", "scatter_svg", "table_html",
           "thumbnail_img", "write_report"]

_ENV = Environment(loader=PackageLoader("kinsight.api.reports", "templates"),
                   autoescape=select_autoescape(default=True))
MAX_CELL_CHARS = 240


@dataclass(frozen=True)
class Section:
    """One part of a report: a heading, an ``id`` for links and tests, and its HTML body."""

    id: str
    title: str
    body: Markup


def render_report(title: str, params: Mapping[str, Any], sections: Sequence[Section],
                  *, subtitle: str = "") -> str:
    """The whole page: title, the run's parameters, then each section in order."""
    return _ENV.get_template("report.html.j2").render(
        title=title, subtitle=subtitle, params=dict(params), sections=list(sections),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def write_report(path: str | Path, html: str) -> Path:
    """Write the page atomically (a half-written report is never left behind)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(target)
    return target


def table_html(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *,
               css_class: str = "") -> Markup:
    """An escaped HTML table; a cell that is already ``Markup`` (a thumbnail) is kept as is,
    long text is cut to ``MAX_CELL_CHARS``, floats get 3 decimals."""
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>"
                   for row in rows)
    return Markup(f'<table class="{escape(css_class)}"><thead><tr>{head}</tr></thead>'
                  f"<tbody>{body}</tbody></table>")


def thumbnail_img(data: bytes | None, alt: str, *, mime: str = "image/webp") -> Markup:
    """An ``<img>`` with the thumbnail inlined as a data URI (empty when there is none)."""
    if not data:
        return Markup("")
    encoded = base64.b64encode(data).decode("ascii")
    return Markup(f'<img class="thumb" alt="{escape(alt)}" src="data:{mime};base64,{encoded}">')


def histogram_svg(values: np.ndarray, *, threshold: float | None = None, xlabel: str,
                  title: str = "", bins: int = 50) -> Markup:
    """A histogram of scores, with the threshold drawn as a labelled vertical line."""
    fig, ax = _figure()
    ax.hist(np.asarray(values, dtype=float), bins=bins, color="#4c72b0", alpha=0.85)
    if threshold is not None:
        ax.axvline(threshold, color="#c44e52", linestyle="--", linewidth=1.5,
                   label=f"threshold {threshold:.3g}")
        ax.legend(frameon=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("items")
    if title:
        ax.set_title(title)
    return _svg(fig)


def bar_svg(labels: Sequence[str], values: Sequence[float], *, xlabel: str, title: str = "") -> Markup:
    """Horizontal bars, one per label, top to bottom in the order given (cluster sizes)."""
    fig, ax = _figure(size=(6.5, 0.6 + 0.22 * max(1, len(labels))))
    positions = np.arange(len(labels))
    ax.barh(positions, np.asarray(values, dtype=float), color="#4c72b0", alpha=0.85)
    ax.set_yticks(positions, [_short(str(label)) for label in labels], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    return _svg(fig)


def scatter_svg(xy: np.ndarray, groups: Sequence[Any], *, names: Mapping[Any, str] | None = None,
                title: str = "", highlight: np.ndarray | None = None,
                max_points: int = 20_000, seed: int = 0) -> Markup:
    """A 2-D map of items coloured by group (cluster), largest groups in the legend; with
    ``highlight`` (a boolean mask), those items are drawn on top as red crosses. Past
    ``max_points`` a seeded random sample is drawn, so the file stays small."""
    xy = np.asarray(xy, dtype=float)
    group_arr = np.asarray(groups, dtype=object)
    keep = np.arange(len(xy))
    if len(keep) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(xy), max_points, replace=False))
    fig, ax = _figure(size=(7.5, 5.5))
    labels, counts = np.unique(group_arr[keep].astype(str), return_counts=True)
    order = labels[np.argsort(-counts)]
    cmap = _colours(len(order))
    for i, label in enumerate(order):
        mask = group_arr[keep].astype(str) == label
        legend = (names or {}).get(label, label) if i < 12 else None
        ax.scatter(xy[keep][mask, 0], xy[keep][mask, 1], s=6, color=cmap[i], alpha=0.7,
                   linewidths=0, label=_short(str(legend)) if legend is not None else None)
    if highlight is not None:
        marked = np.asarray(highlight, dtype=bool)
        ax.scatter(xy[marked, 0], xy[marked, 1], s=28, marker="x", color="#c44e52",
                   linewidths=1.2, label="flagged")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False,
              markerscale=2)
    return _svg(fig)


def _figure(size: tuple[float, float] = (6.5, 3.2)) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # no display: draw to memory only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _svg(fig: Any) -> Markup:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return Markup(text[text.index("<svg"):])  # drop the XML prologue: it is inline in HTML


def _colours(n: int) -> list[Any]:
    import matplotlib

    palette = matplotlib.colormaps["tab20"]
    return [palette(i % 20) for i in range(n)]


def _cell(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    if isinstance(value, float):
        return escape(f"{value:.3f}")
    if isinstance(value, list | tuple):
        value = ", ".join(map(str, value))
    return escape(_short(str(value), MAX_CELL_CHARS))


def _short(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
