"""The search web page at ``/``: served without a key, self-contained, and working in a browser
against a real server (a store with a picture collection and a text collection)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from kinsight.api.cli import app as cli
from kinsight.api.cli.serving import page_url
from kinsight.api.http import Settings, create_app
from kinsight.engine import Store

from .test_http_api import _free_port

ASSETS = {"/static/app.js": "text/javascript", "/static/style.css": "text/css"}
KEY = "page-test-key"


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = Settings(store=":memory:", api_key=KEY, encoder="fake:dim=32")
    with Store(":memory:") as store, TestClient(create_app(settings, store=store)) as c:
        yield c


def test_page_and_assets_are_served_without_the_key(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ASSETS:
        assert f'src="{asset[1:]}"' in page.text or f'href="{asset[1:]}"' in page.text
    for path, mime in ASSETS.items():
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].split(";")[0] in (mime, "application/javascript")
    assert client.get("/collections").status_code == 401  # the API itself still needs the key
    assert client.get("/collections", headers={"X-API-Key": KEY}).status_code == 200
    assert client.get("/docs").status_code == 200 and "/" not in client.get("/openapi.json").json()["paths"]


def test_page_loads_nothing_from_elsewhere(client: TestClient) -> None:
    for path in ("/", *ASSETS):
        text = client.get(path).text
        assert not re.search(r"https?://|//cdn|(src|href)=\"//", text), path


def test_serve_prints_the_page_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    served: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(options))
    result = CliRunner().invoke(cli, ["serve", "--store", str(tmp_path / "s"), "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8123/" in result.output and served[0]["port"] == 8123
    assert page_url("0.0.0.0", 80) == "http://127.0.0.1:80/"
    assert page_url("::", 8000) == "http://[::1]:8000/"


# -- in a browser, against a real server ----------------------------------------------------------
COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (30, 40, 220),
           "yellow": (240, 220, 20), "purple": (140, 30, 170), "orange": (245, 140, 20)}
SHAPES = ("square", "disc")


def make_pictures(root: Path) -> Path:
    """Twelve pictures (six colours, two shapes) and a JSONL list with captions and fields."""
    from PIL import Image, ImageDraw

    root.mkdir()
    with (root / "list.jsonl").open("w") as rows:
        for colour, rgb in COLOURS.items():
            for shape in SHAPES:
                picture = Image.new("RGB", (64, 64), (250, 250, 250))
                draw = ImageDraw.Draw(picture)
                box = (12, 12, 52, 52)
                (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=rgb)
                name = f"{colour}-{shape}"
                picture.save(root / f"{name}.png")
                rows.write(json.dumps({"id": name, "image": f"{name}.png", "colour": colour,
                                       "shape": shape, "caption": f"a {colour} {shape}"}) + "\n")
    return root / "list.jsonl"


def build_store(store_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("open_clip")
    from kinsight.indexers.ingest import IngestOptions, SpaceSource, ingest_file

    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(row) for row in [
        {"id": "py-csv", "title": "<b>CSV</b> in Python", "text": "read a csv file with python",
         "year": 2019},
        {"id": "rs-csv", "title": "CSV in Rust", "text": "parse csv records in rust with serde",
         "year": 2022},
        {"id": "go-csv", "title": "CSV in Go", "text": "stream a large csv file in go", "year": 2023},
    ]))
    with Store(store_dir) as store:
        ingest_file(store, make_pictures(tmp_path / "pics"), IngestOptions(collection="pics", spaces=(
            SpaceSource("image", "open_clip:kinsight-tiny@random", ("image",), "image"),
            SpaceSource("caption", "fake:dim=64", ("caption",)))), progress=False)
        ingest_file(store, docs, IngestOptions(collection="docs", encoder="fake:dim=64"),
                    progress=False)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A uvicorn server in a thread (a real socket, the app owning its store) with an API key."""
    import uvicorn

    store_dir = tmp_path / "store"
    build_store(store_dir, tmp_path)
    port = _free_port()
    settings = Settings(store=str(store_dir), api_key=KEY, encoder="fake:dim=64")
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_search_page_in_a_browser(browser, server: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def find(css: str):  # type: ignore[no-untyped-def]
        return browser.find_element(By.CSS_SELECTOR, css)

    def wait_for_status(text: str) -> list[str]:
        WebDriverWait(browser, 15).until(lambda b: text in find("#status").text)
        return [hit.get_attribute("data-id") for hit in browser.find_elements(By.CSS_SELECTOR, ".hit")]

    browser.get(server)
    # The page asks for the key once (the API answered 401), then lists the collections.
    WebDriverWait(browser, 10).until(lambda b: find("#key-form").is_displayed())
    find("#api-key").send_keys(KEY + "\n")
    WebDriverWait(browser, 10).until(lambda b: len(Select(find("#collection")).options) == 2)

    # Search by picture: the same picture comes first, with thumbnails that have loaded.
    Select(find("#collection")).select_by_value("pics")
    WebDriverWait(browser, 10).until(lambda b: find("#space-row").is_displayed())
    assert find("#collection-count").text == "12 items"
    find("#image").send_keys(str(tmp_path / "pics" / "red-square.png"))
    find("#search-image").click()
    hits = wait_for_status("pictures like red-square.png")
    assert len(hits) == 12 and hits[0] == "red-square"
    WebDriverWait(browser, 10).until(lambda b: b.execute_script(
        "const imgs = [...document.querySelectorAll('#results img')];"
        "return imgs.length === 12 && imgs.every((i) => i.complete && i.naturalWidth > 0);"))
    assert "RANDOM" in find("#warnings").text and find("#warnings").is_displayed()
    assert "a red square" in find(".hit").text and "shape" in find(".hit .fields").text

    # More like this: the item's neighbours in the image space, the item itself left out.
    find('.hit[data-id="blue-disc"] button.more').click()
    like = wait_for_status("items like blue-disc")
    assert "blue-disc" not in like and len(like) == 11

    # A filter narrows the same query to discs.
    find("#add-filter").click()
    Select(find("#filter-field-1")).select_by_value("shape")
    Select(find("#filter-op-1")).select_by_value("eq")
    find("#filter-value-1").send_keys("disc")
    find("#apply-filters").click()
    filtered = wait_for_status("(filtered)")
    assert sorted(filtered) == sorted(f"{c}-disc" for c in COLOURS if c != "blue")

    # Text search in the text collection: placeholders instead of thumbnails, fields as text.
    Select(find("#collection")).select_by_value("docs")
    WebDriverWait(browser, 10).until(lambda b: find("#collection-count").text == "3 items")
    assert not find("#space-row").is_displayed() and find("#mode").is_enabled()
    Select(find("#mode")).select_by_value("bm25")
    find("#query").send_keys("serde csv\n")
    hits = wait_for_status("“serde csv”")
    assert hits[0] == "rs-csv" and not browser.find_elements(By.CSS_SELECTOR, "#results img")
    assert len(browser.find_elements(By.CSS_SELECTOR, ".thumb.placeholder")) == len(hits)
    assert "<b>CSV</b> in Python" in find('.hit[data-id="py-csv"] h3').text  # markup shown as text
    find("#add-filter").click()  # a filter on a number field
    Select(find("#filter-field-2")).select_by_value("year")
    Select(find("#filter-op-2")).select_by_value("ge")
    find("#filter-value-2").send_keys("2022")
    find("#apply-filters").click()
    assert sorted(wait_for_status("(filtered)")) == ["go-csv", "rs-csv"]

    # The API's errors show in the page.
    find("#k").clear()
    find("#k").send_keys("5000")
    find("#search-text").click()
    WebDriverWait(browser, 10).until(lambda b: find("#error").is_displayed())
    assert "ValidationError" in find("#error").text and "k:" in find("#error").text
    assert not browser.find_elements(By.CSS_SELECTOR, ".hit")  # the last results are not left up
