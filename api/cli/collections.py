"""``kinsight collections``: list, inspect and drop the collections of a store."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from kinsight.engine import Collection, Store

from .common import DEFAULT_STORE, JsonOpt, StoreOpt, app, console, open_store

__all__ = ["collections", "drop"]

collections_app = typer.Typer(help="List, inspect and drop collections.", no_args_is_help=False)
app.add_typer(collections_app, name="collections")


@collections_app.callback(invoke_without_command=True)
def collections(ctx: typer.Context, store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False
                ) -> None:
    """List the collections of a store with their item counts and vector spaces."""
    if ctx.invoked_subcommand is not None:
        return
    with open_store(store, read_only=True) as opened:
        rows = [_describe(opened, name) for name in opened.list_collections()]
    if as_json:
        console.print_json(data=rows)
        return
    table = Table("collection", "items", "spaces", "fields")
    for row in rows:
        table.add_row(row["name"], str(row["count"]),
                      ", ".join(f"{s['name']} ({s['encoder']}, {s['dim']}-d, {s['index']}"
                                f"{', ' + s['language'] if s['language'] else ''}"
                                f"{', tuned' if s['tuned'] else ''})"
                                for s in row["spaces"]),
                      ", ".join(row["fields"]))
    console.print(table)


@collections_app.command("drop")
def drop(name: str, store: StoreOpt = DEFAULT_STORE,
         yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False
         ) -> None:
    """Delete a collection with all its items, vectors and indexes."""
    if not yes:
        typer.confirm(f"Drop collection {name!r} and all its items?", abort=True)
    with open_store(store) as opened:
        opened.drop_collection(name)
    console.print(f"dropped {name}")


def _describe(store: Store, name: str) -> dict[str, Any]:
    coll = store.collection(name)
    return {"name": name, "count": coll.count(), "fields": coll.fields(),
            "spaces": [{"name": s.name, "encoder": s.encoder.spec, "dim": s.dim,
                        "metric": s.metric, "fingerprint": s.encoder.fingerprint,
                        "index": s.index_spec, "language": s.keyword_language,
                        "source_fields": list(s.source_fields),
                        "tuned": _tuned_at(coll, s.name)} for s in coll.spaces().values()]}


def _tuned_at(coll: Collection, space: str) -> str | None:
    """When `kinsight tune` last saved the space's settings (ISO time), or None: never tuned."""
    stored = coll.tunings.read(space)
    return None if stored is None else str(stored.created_at)
