"""``kinsight serve`` (the HTTP API) and ``kinsight demo`` (the bundled demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kinsight.engine import KinsightError

from .common import DEFAULT_STORE, StoreOpt, app, console, fail

__all__ = ["demo", "serve"]


@app.command()
def serve(
    store: StoreOpt = DEFAULT_STORE,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        envvar="KINSIGHT_API_KEY", help="Require this key in the X-API-Key header.")] = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs) over a store."""
    import uvicorn

    from ..http import Settings, create_app

    settings = Settings(store=str(store), api_key=api_key)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


@app.command()
def demo(
    store: Annotated[Path, typer.Option(help="Where to build the demo store.")] = Path(
        "kinsight-demo"),
    limit: Annotated[int | None, typer.Option(help="Index only the first N documents.")] = None,
) -> None:
    """Index 2,000 real Debian package descriptions with the bundled model, then search them."""
    from ..demo import run_demo

    try:
        run_demo(store, console, limit=limit)
    except KinsightError as e:
        fail(str(e))
