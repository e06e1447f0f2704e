"""``kinsight serve`` (the HTTP API) and ``kinsight demo`` (the bundled demo)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from .common import DEFAULT_STORE, StoreOpt, app, check_store_path, console, fail, open_store

__all__ = ["demo", "page_url", "serve"]


@app.command()
def serve(
    store: StoreOpt = DEFAULT_STORE,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        envvar="KINSIGHT_API_KEY", help="Require this key in the X-API-Key header.")] = None,
    read_only: Annotated[bool, typer.Option(
        "--read-only", help="Open the store read-only: reads answer, writes answer 409; any "
                            "number of read-only servers can share a store no process writes.")
    ] = False,
    workers: Annotated[int, typer.Option(
        min=1, help="Worker processes, to scale reads over CPU cores; above 1 needs "
                    "--read-only (DuckDB lets one process write a store, or many read it).")] = 1,
) -> None:
    """Serve the HTTP API and the search web page (at /; OpenAPI docs at /docs) over a store."""
    if workers > 1 and not read_only:
        # DuckDB: "one process can both read and write to the database", or "multiple processes
        # can read from the database, but no processes can write" (access_mode READ_ONLY):
        # https://duckdb.org/docs/current/connect/concurrency
        fail(f"--workers {workers} needs --read-only: DuckDB lets one process write a store, or "
             "many processes read it; add --read-only (writes then answer 409), or serve "
             "writes with --workers 1")
    import uvicorn

    from ..http import Settings, create_app
    from ..http.service import log_config

    # Opened here rather than in the app's startup, where a bad or locked store would be
    # reported by uvicorn as a traceback; the command's own handler says what is wrong instead.
    with open_store(store, read_only=read_only, create=not read_only) as opened:
        url = page_url(host, port)
        console.print(f"Search page: [bold]{url}[/bold]   API docs: {url}docs", highlight=False)
        if workers == 1:
            settings = Settings(store=str(store), api_key=api_key, read_only=read_only)
            # Ready (GET /ready) once the encoders of every space are warm; lines carry
            # request ids.
            uvicorn.run(create_app(settings, store=opened), host=host, port=port,
                        log_level="info", log_config=log_config())
            return
    # Each worker process builds its own app, opening the store read-only, from the
    # environment: uvicorn starts workers from an import string, not from an app object.
    os.environ.update({"KINSIGHT_STORE": str(store), "KINSIGHT_READ_ONLY": "true"})
    if api_key is not None:
        os.environ["KINSIGHT_API_KEY"] = api_key
    uvicorn.run("kinsight.api.http:create_app", factory=True, workers=workers, host=host,
                port=port, log_level="info", log_config=log_config())


def page_url(host: str, port: int) -> str:
    """Where a browser on this machine finds the page: a wildcard address is not one to open."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"  # an IPv6 address in a URL goes in brackets
    return f"http://{shown}:{port}/"


@app.command()
def demo(
    store: Annotated[Path, typer.Option(help="Where to build the demo store.")] = Path(
        "kinsight-demo"),
    limit: Annotated[int | None, typer.Option(help="Index only the first N documents.")] = None,
) -> None:
    """Index 2,000 real Debian package descriptions with the bundled model, then search them."""
    from ..demo import run_demo

    check_store_path(store, must_exist=False)  # before the model loads
    run_demo(store, console, limit=limit)
