"""kinsight's HTTP API (FastAPI): ``create_app(Settings(...))``, served by ``kinsight serve``.

Routes: ``/collections`` (list, create, describe, drop), ``/collections/{name}/items`` (batch
upsert, read, delete), ``/collections/{name}/search``, ``/collections/{name}/cluster``,
``/collections/{name}/runs`` (analysis runs and their tables) and ``/health``; OpenAPI docs at ``/docs``;
the search web page at ``/`` (``page.py``, assets in ``static/``).
"""

from __future__ import annotations

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
