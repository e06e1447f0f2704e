"""The shared report page: escaped tables, inline SVG plots, one self-contained file."""

from __future__ import annotations

import re

import numpy as np

from kinsight.api.reports import Section, histogram_svg, render_report, scatter_svg, table_html
from kinsight.api.reports.page import thumbnail_img, write_report


def _page() -> str:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=500)
    rows = [{"id": "<script>alert(1)</script>", "score": 0.123456, "tags": ["a", "b"],
             "picture": thumbnail_img(b"\x89PNG fake", "x", mime="image/png")}]
    return render_report("Test report", {"method": "knn", "k": 5}, [
        Section("scores", "Scores", histogram_svg(scores, threshold=1.64, xlabel="score")),
        Section("map", "Map", scatter_svg(rng.normal(size=(200, 2)), rng.integers(0, 3, 200),
                                          names={"0": "zero"})),
        Section("top", "Top items", table_html(rows, ["id", "score", "tags", "picture"])),
    ], subtitle="collection docs")


def test_page_is_self_contained_and_escapes_fields():
    html = _page()
    assert "<script>alert(1)</script>" not in html  # item fields are text, never markup
    assert "&lt;script&gt;" in html
    assert html.count("<svg") == 2
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing to fetch: works offline
    assert "0.123" in html and "a, b" in html and 'src="data:image/png;base64,' in html


def test_report_is_written_atomically(tmp_path):
    path = write_report(tmp_path / "out" / "r.html", "<html></html>")
    assert path.read_text() == "<html></html>"
    assert [p.name for p in path.parent.iterdir()] == ["r.html"]


def test_browser_shows_every_part(browser, tmp_path):
    from selenium.webdriver.common.by import By

    path = write_report(tmp_path / "r.html", _page())
    browser.get(path.as_uri())
    assert browser.title == "Test report"
    for section in ("parameters", "scores", "map", "top"):
        assert browser.find_element(By.ID, section).is_displayed()
    svg = browser.find_element(By.CSS_SELECTOR, "#scores svg")
    assert svg.size["width"] > 200 and svg.size["height"] > 100  # the plot is drawn, not empty
    assert "threshold 1.64" in browser.find_element(By.ID, "scores").get_attribute("innerHTML")
    assert "<script>alert(1)</script>" in browser.find_element(By.ID, "top").text
