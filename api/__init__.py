"""kinsight's interfaces: the ``kinsight`` command line, the HTTP service and the demo."""

from __future__ import annotations

__all__: list[str] = []
