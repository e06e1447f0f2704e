"""Self-contained HTML batch reports: one file a person can open anywhere, offline.

``page`` holds the parts every report shares (the page template, tables, plots inlined as SVG);
each report module (clusters, anomalies, ...) turns one analysis run into sections of a page.
"""

from __future__ import annotations

from .page import Section, bar_svg, histogram_svg, render_report, scatter_svg, table_html, write_report

__all__ = ["Section", "bar_svg", "histogram_svg", "render_report", "scatter_svg", "table_html",
           "write_report"]
