"""How hits look to a person (rich tables) and to a program (plain JSON-ready dicts)."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kinsight.engine import Hit

__all__ = ["hit_to_dict", "json_ready", "keep_whole", "print_hits", "print_warnings", "snippet"]

SNIPPET_CHARS = 160


# Fields shown for a hit without a text field (pictures), in this order of preference.
_DESCRIBING_FIELDS = ("caption", "title", "image")


def json_ready(value: Any) -> Any:
    """Binary field values (thumbnails) as base64 text, so the fields can be written as JSON."""
    return base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value


def hit_to_dict(hit: Hit) -> dict[str, Any]:
    chunk = None if hit.chunk is None else {
        "index": hit.chunk.index, "start": hit.chunk.start, "end": hit.chunk.end}
    fields = {name: json_ready(value) for name, value in hit.fields.items()}
    return {"id": hit.id, "score": hit.score, "fields": fields, "chunk": chunk}


def print_warnings(console: Console, warnings: list[str]) -> None:
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(str(warning))}", highlight=False)


def snippet(hit: Hit, text_field: str = "text") -> str:
    """The matched chunk of the hit's text (or its start), on one line."""
    text = str(hit.fields.get(text_field) or "")
    if hit.chunk is not None and hit.chunk.start is not None and hit.chunk.end is not None \
            and hit.chunk.index > 0:
        text = "…" + text[hit.chunk.start:hit.chunk.end]
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS - 1] + "…"


def keep_whole(table: Table, column: int, values: Iterable[Any]) -> None:
    """Never cut or wrap the cells of ``column``: ids are copied from tables into ``--like``,
    ``--run`` and SQL. The column gets the width of its longest value; the others give way."""
    target = table.columns[column]
    target.no_wrap = True
    target.ratio = None  # a share of the width would override the minimum
    target.min_width = max([len(str(v)) for v in values] + [len(str(target.header))])


def print_hits(console: Console, hits: list[Hit], *, title: str) -> None:
    table = Table(title=title, title_justify="left", expand=True)
    table.add_column("#", justify="right", width=3)
    table.add_column("id")
    keep_whole(table, 1, [hit.id for hit in hits])
    table.add_column("score", justify="right", width=7)
    table.add_column("text", ratio=4)
    for rank, hit in enumerate(hits, start=1):
        label = hit.fields.get("title")
        text = snippet(hit) or next((str(hit.fields[f]) for f in _DESCRIBING_FIELDS
                                     if hit.fields.get(f)), "")
        table.add_row(str(rank), hit.id, f"{hit.score:.3f}",
                      f"[bold]{label}[/bold]\n{text}" if label else text)
    if not hits:
        table.add_row("", "no results", "", "")
    console.print(table)
