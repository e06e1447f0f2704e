"""The heads beside the logistic probe: k-NN, ridge regression and multilabel. Each learns what
was planted in synthetic vectors (and would fail if it did not), the k-NN vote matches one
computed by brute force, the kind follows the field's type, and bad labels are refused naming
the item and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from kinsight.engine import HeadResult, InvalidInputError, Item, ProbeResult, load_encoder
from kinsight.engine.knn_head import K_GRID, TEMPERATURE, KnnHead, choose_neighbours
from kinsight.engine.linear_heads import ALPHA_GRID, THRESHOLD_GRID, MultiLabelHead, RidgeHead


def _clusters(seed: int, n: int = 120, d: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Three classes around their own centres, with noise: a k-NN vote can tell them apart."""
    rng = np.random.default_rng(seed)
    y = np.array(["a", "b", "c"])[np.arange(n) % 3]
    centres = {c: rng.normal(size=d) for c in "abc"}
    return np.stack([centres[c] + 0.6 * rng.normal(size=d) for c in y]).astype(np.float32), y


def test_the_knn_vote_matches_a_brute_force_weighted_vote():
    X, y = _clusters(0)
    queries = np.random.default_rng(1).normal(size=(10, X.shape[1])).astype(np.float32)
    head = KnnHead(k=7).fit(X, y)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    cosines = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    expected = np.zeros((len(queries), 3))
    for i, row in enumerate(cosines):
        nearest = np.argsort(-row)[:7]
        for j in nearest:
            expected[i, "abc".index(y[j])] += np.exp(row[j] / TEMPERATURE)
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(head.predict_proba(queries), expected, rtol=1e-4, atol=1e-6)
    assert list(head.classes_) == ["a", "b", "c"] and head.k_ == 7


def test_knn_chooses_k_by_leave_one_out_and_a_noisy_task_wants_more_neighbours():
    X, y = _clusters(2)
    codes = np.searchsorted(["a", "b", "c"], y)
    assert choose_neighbours(X / np.linalg.norm(X, axis=1, keepdims=True), codes) in K_GRID
    # Labels flipped at random on 30% of the items: one neighbour copies the noise, many outvote it.
    rng = np.random.default_rng(3)
    X, y = _clusters(3, n=300)
    noisy = np.where(rng.random(len(y)) < 0.3, rng.choice(["a", "b", "c"], len(y)), y)
    assert KnnHead().fit(X, noisy).k_ > 1
    assert KnnHead().fit(X[:4], noisy[:4]).k_ <= 3  # the grid stops below the items there are


def test_ridge_on_a_planted_linear_target_beats_the_mean():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 12)).astype(np.float32)
    y = X @ rng.normal(size=12) + 3.0 + 0.1 * rng.normal(size=300)
    head = RidgeHead().fit(X[:200], y[:200])
    assert head.alpha_ in ALPHA_GRID
    errors = np.abs(head.predict(X[200:]) - y[200:])
    assert errors.mean() < 0.2 * np.abs(y[200:] - y[:200].mean()).mean()
    # A target the vectors do not hold: no better than its mean (the ridge shrinks to it).
    noise = rng.normal(size=300)
    shrunk = RidgeHead().fit(X[:200], noise[:200])
    assert shrunk.alpha_ >= 100
    assert np.abs(shrunk.predict(X[200:]) - noise[200:]).mean() < 1.15 * np.abs(
        noise[200:] - noise[:200].mean()).mean()


def test_multilabel_recovers_planted_labels_and_its_threshold_comes_from_the_grid():
    rng = np.random.default_rng(5)
    labels = ["cli", "gui", "net", "sound"]
    centres = rng.normal(size=(4, 24))
    Y = (rng.random((400, 4)) < 0.35).astype(np.int8)
    X = (Y @ centres + 0.3 * rng.normal(size=(400, 24))).astype(np.float32)
    head = MultiLabelHead(labels).fit(X[:300], Y[:300])
    assert head.threshold_ in THRESHOLD_GRID
    predicted = head.predict_proba(X[300:]) >= head.threshold_
    assert np.mean(predicted == Y[300:].astype(bool)) > 0.95
    # A label no training item has stays predicted off, one every item has stays on.
    Y[:300, 0], Y[:300, 1] = 0, 1
    constant = MultiLabelHead(labels, threshold=0.5).fit(X[:300], Y[:300]).predict_proba(X[300:])
    assert (constant[:, 0] < 1e-6).all() and (constant[:, 1] > 1 - 1e-6).all()


# -- trained on a collection ----------------------------------------------------------------------
SPEC = "fake:dim=32"
WORDS = {"py": ("python", "pip", "pandas", "django"), "rs": ("rust", "cargo", "serde", "borrow"),
         "go": ("go", "gofmt", "channel", "goroutine")}


def packages(n: int = 90) -> list[tuple[str, str, str, list[str], float]]:
    """(id, text, language, tags, size): the language names three of its words; tag ``web``
    adds "http server", and the size counts the web packages' extra words (a number the words
    tell)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        language = list(WORDS)[i % 3]
        web = i % 2 == 1
        text = " ".join(rng.choice(WORDS[language], 3, replace=False)) + (
            " http server" if web else " command line")
        rows.append((f"p{i}", text, language, [language, "web"] if web else [language],
                     10.0 + 5.0 * web + float(rng.normal(0, 0.5))))
    return rows


def package_collection(store, rows=None, **extra_fields):
    rows = rows or packages()
    docs = store.create_collection("packages")
    docs.ensure_space("text", load_encoder(SPEC).info, source_fields=["text"])
    vectors = load_encoder(SPEC).encode([text for _, text, *_ in rows])
    docs.upsert([Item(id=i, fields={"text": text, "language": language, "tags": tags,
                                    "size": size, **{k: v[n] for k, v in extra_fields.items()}},
                      vectors={"text": vector})
                 for n, ((i, text, language, tags, size), vector) in enumerate(zip(rows, vectors,
                                                                                   strict=True))])
    return docs


def test_the_kind_follows_the_field_type_and_each_learns(store):
    docs = package_collection(store)
    assert docs.fields()["size"] == "DOUBLE" and docs.fields()["tags"] == "VARCHAR[]"
    regression = docs.train_head("size")
    assert isinstance(regression, HeadResult) and regression.kind == "regression"
    assert regression.metrics["r2"] > 0.8
    assert regression.metrics["mae"] < 0.5 * regression.metrics["baseline_mae"]
    assert regression.parameter == "alpha" and len(regression.fold_parameters) == 5
    multilabel = docs.train_head("tags")
    assert multilabel.kind == "multilabel" and multilabel.metrics["micro_f1"] > 0.95
    assert [c.label for c in multilabel.per_label] == ["go", "py", "rs", "web"]
    knn = docs.train_head("language", kind="knn", save_as="nearest")
    assert knn.kind == "knn" and knn.metrics["accuracy"] > 0.9 and knn.parameter == "k"
    assert all(k in K_GRID for k in knn.fold_parameters) and not knn.lexical
    assert isinstance(docs.train_head("language"), ProbeResult)
    assert {h.name: h.kind for h in docs.heads()} == {
        "size": "regression", "tags": "multilabel", "nearest": "knn", "language": "logistic"}


def test_unlabelled_items_are_predicted_by_the_head_fitted_on_all(store):
    rows = packages()
    sizes = [None if n >= 84 else size for n, (*_, size) in enumerate(rows)]
    tags = [None if n >= 84 else t for n, (_, _, _, t, _) in enumerate(rows)]
    docs = package_collection(store, rows, planted_size=sizes, planted_tags=tags)
    regression = docs.train_head("planted_size")
    assert regression.labelled == 84 and [p.id for p in regression.predictions] == [
        f"p{n}" for n in range(84, 90)]
    for p in regression.predictions:
        truth = rows[int(p.id[1:])][4]
        assert p.prediction.value == pytest.approx(truth, abs=2.0)
    multilabel = docs.train_head("planted_tags")
    for p in multilabel.predictions:
        assert sorted(p.prediction.labels) == sorted(rows[int(p.id[1:])][3])


def test_bad_labels_are_refused_naming_the_item_and_the_fix(store):
    rows = packages(30)
    docs = package_collection(store, rows, rating=["high" if n == 7 else str(n % 3)
                                                   for n in range(30)],
                              topics=[[] if n == 4 else ["x"] for n in range(30)],
                              blanks=[["x", " "] if n == 5 else ["x"] for n in range(30)])
    with pytest.raises(InvalidInputError, match=r"item 'p7'.*'high', not a number.*--kind logistic"):
        docs.train_head("rating", kind="regression")
    assert isinstance(docs.train_head("rating", folds=2), ProbeResult)  # text labels: a probe
    with pytest.raises(InvalidInputError, match=r"item 'p4'.*empty list.*null.*len\(topics\) > 0"):
        docs.train_head("topics")
    with pytest.raises(InvalidInputError, match=r"item 'p5'.*blank label"):
        docs.train_head("blanks")
    with pytest.raises(InvalidInputError, match=r"not lists.*JSON array.*--kind logistic"):
        docs.train_head("language", kind="multilabel")
    with pytest.raises(InvalidInputError, match=r"holds lists.*--kind multilabel"):
        docs.train_head("tags", kind="knn")
    with pytest.raises(InvalidInputError, match=r"unknown head kind 'svm'.*knn"):
        docs.train_head("language", kind="svm")
    with pytest.raises(InvalidInputError, match=r"C of the logistic heads.*set neighbours"):
        docs.train_head("language", kind="knn", regularization=1.0)
    with pytest.raises(InvalidInputError, match=r"no field 'colour'"):
        docs.train_head("colour")


def test_a_regression_needs_enough_numbers(store):
    rows = packages(12)
    docs = package_collection(store, rows, few=[1.0 if n < 6 else None for n in range(12)])
    with pytest.raises(InvalidInputError, match=r"'few' has 6 items with a number.*at least 10"):
        docs.train_head("few")



# -- saved and applied ----------------------------------------------------------------------------
def _round_trip(head):
    import io

    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **head.to_arrays())
    with np.load(io.BytesIO(buffer.getvalue()), allow_pickle=False) as saved:
        return type(head).from_arrays({key: saved[key] for key in saved.files})


@pytest.mark.parametrize("words", [False, True])
def test_each_head_predicts_the_same_after_its_arrays_round_trip(words):
    X, y = _clusters(6)
    texts = [f"{label} package {i % 5}" for i, label in enumerate(y)] if words else None
    Y = np.stack([y == "a", y != "c"], axis=1).astype(np.int8)
    targets = X[:, 0] * 2.0 + 1.0
    fitted = [KnnHead().fit(X, y), RidgeHead().fit(X, targets, texts),
              MultiLabelHead(["a", "ab"]).fit(X, Y, texts)]
    for head in fitted:
        loaded = _round_trip(head)
        if isinstance(head, RidgeHead):
            np.testing.assert_array_equal(loaded.predict(X, texts), head.predict(X, texts))
        else:
            read = None if isinstance(head, KnnHead) else texts
            np.testing.assert_array_equal(loaded.predict_proba(X, read), head.predict_proba(X, read))
            assert list(loaded.classes_) == list(head.classes_)


NEW = ["pip django pandas http server", "serde borrow cargo command line"]


def test_saved_heads_of_every_kind_predict_the_same_after_reopening(tmp_path):
    from kinsight.engine import Store

    with Store(tmp_path / "store") as store:
        docs = package_collection(store)
        docs.train_head("size")
        docs.train_head("tags")
        docs.train_head("language", kind="knn", neighbours=5)
        before = {h.name: docs.predict(h.name, NEW, top=2).predictions for h in docs.heads()}
    with Store(tmp_path / "store", read_only=True) as store:
        docs = store.collection("packages")
        infos = {h.name: h for h in docs.heads()}
        after = {name: docs.predict(name, NEW, top=2).predictions for name in infos}
    assert after == before
    assert infos["tags"].threshold in THRESHOLD_GRID and infos["size"].classes == []
    [web, cli] = after["size"]
    assert cli.label is None and cli.labels == [] and cli.value is not None
    assert web.value is not None and web.value > cli.value + 2  # the web package is larger
    assert [p.labels for p in after["tags"]] == [["py", "web"], ["rs"]]
    assert [p.label for p in after["language"]] == ["py", "rs"]
    assert all(len(p.probabilities) == 2 for p in after["language"])


def test_heads_saved_before_there_were_kinds_load_as_logistic(store):
    import json

    from kinsight.engine.storage import HeadTable

    docs = package_collection(store)
    docs.train_head("language", save_as="old")
    table = HeadTable(docs.tables)
    [(name, header, created)] = table.headers()
    old = {k: v for k, v in json.loads(header).items() if k not in ("kind", "threshold")}
    table.save(name, json.dumps(old), table.arrays(name), created)
    [info] = docs.heads()
    assert info.kind == "logistic" and info.threshold is None
    assert [p.label for p in docs.predict("old", NEW).predictions] == ["py", "rs"]


def test_a_knn_head_reads_pictures(store):
    from PIL import Image

    encoder = load_encoder("open_clip:kinsight-tiny@random:image")
    colours = {"red": (220, 30, 30), "blue": (30, 40, 220)}

    def drawing(colour: str, seed: int) -> Image.Image:
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
        top, left = rng.integers(0, 16), rng.integers(0, 24)
        pixels[top:top + 32, left:left + 40] = colours[colour]
        return Image.fromarray(pixels, "RGB")

    pictures = store.create_collection("pictures")
    pictures.ensure_space("image", encoder.info)
    names = ["red", "blue"] * 8
    vectors = encoder.encode([drawing(c, n) for n, c in enumerate(names)])
    pictures.upsert([Item(id=f"i{n}", fields={"colour": c}, vectors={"image": v})
                     for n, (c, v) in enumerate(zip(names, vectors, strict=True))])
    trained = pictures.train_head("colour", kind="knn", folds=2)
    # The random weights put one colour's drawings at cosines of 0.985 and more (the two colours
    # below 0.97): near-copies, so each colour is one fold group and a fold holds out a whole
    # colour, which its training part never saw. Nothing leaks: the estimate is 0, not 1.
    assert trained.fold_groups == 2 and trained.metrics["accuracy"] == 0.0
    new = [drawing("blue", 100), drawing("red", 101)]
    assert [p.label for p in pictures.predict("colour", new).predictions] == ["blue", "red"]


# -- HTTP and CLI ---------------------------------------------------------------------------------
def _posted(client) -> None:
    items = [{"id": i, "fields": {"text": text, "language": language, "tags": tags, "size": size}}
             for i, text, language, tags, size in packages()]
    client.post("/collections/packages/items", json={"items": items}).raise_for_status()


@pytest.mark.parametrize(("field", "kind"), [("size", "auto"), ("tags", "auto"),
                                             ("language", "knn")])
def test_http_trains_and_applies_each_kind(client, field, kind):
    _posted(client)
    trained = client.post("/collections/packages/classify",
                          json={"label_field": field, "kind": kind, "save_as": "h"})
    assert trained.status_code == 200, trained.text
    body = trained.json()
    expected = {"size": "regression", "tags": "multilabel", "language": "knn"}[field]
    assert body["kind"] == expected and body["head"] == "h" and len(body["fold_scores"]) == 5
    answer = client.post("/collections/packages/classify/predict",
                         json={"head": "h", "texts": NEW, "top": 2})
    assert answer.status_code == 200, answer.text
    head, predictions = answer.json()["head"], answer.json()["predictions"]
    assert head["kind"] == expected and head["run_id"] == body["run_id"]
    if expected == "regression":
        assert head["classes"] == [] and predictions[1]["value"] < predictions[0]["value"]
        assert all(p["label"] is None and p["labels"] == [] for p in predictions)
    elif expected == "multilabel":
        assert head["threshold"] in THRESHOLD_GRID
        assert [p["labels"] for p in predictions] == [["py", "web"], ["rs"]]
    else:
        assert [p["labels"] for p in predictions] == [["py"], ["rs"]]


def test_http_refuses_bad_kinds_with_the_fix(client):
    _posted(client)
    route = "/collections/packages/classify"
    unknown = client.post(route, json={"label_field": "language", "kind": "svm"})
    assert unknown.status_code == 422
    wrong = client.post(route, json={"label_field": "language", "kind": "multilabel"})
    assert wrong.status_code == 422 and "not lists" in wrong.json()["detail"]
    knn_c = client.post(route, json={"label_field": "language", "kind": "knn", "regularization": 1})
    assert knn_c.status_code == 422 and "set neighbours" in str(knn_c.json())


def test_cli_trains_each_kind_and_predicts_a_file(tmp_path):
    import json

    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from kinsight.api.cli import app

    source, new = tmp_path / "packages.jsonl", tmp_path / "new.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t, "language": lang, "tags": tags,
                                          "size": size}) + "\n"
                              for i, t, lang, tags, size in packages()))
    new.write_text("".join(json.dumps({"id": f"n{k}", "text": t}) + "\n" for k, t in enumerate(NEW)))
    store = ["--store", str(tmp_path / "store")]
    runner = CliRunner()
    ingested = runner.invoke(app, ["ingest", str(source), *store, "--encoder", SPEC])
    assert ingested.exit_code == 0, ingested.output
    regression = runner.invoke(app, ["classify", "--train", "--label-field", "size", *store])
    assert regression.exit_code == 0, regression.output
    assert "regression head, cross-validated r2" in " ".join(regression.output.split())
    knn = runner.invoke(app, ["classify", "--train", "--label-field", "language", "--kind", "knn",
                              "--save-as", "nearest", *store, "--json"])
    assert knn.exit_code == 0, knn.output
    assert json.loads(knn.stdout)["kind"] == "knn"
    tags = runner.invoke(app, ["classify", "--train", "--label-field", "tags", *store])
    assert tags.exit_code == 0 and "per label" in tags.output, tags.output
    out = tmp_path / "sizes.parquet"
    sizes = runner.invoke(app, ["predict", str(new), *store, "--head", "size", "--out", str(out)])
    assert sizes.exit_code == 0, sizes.output
    values = pq.read_table(out).column("value").to_pylist()
    assert values[0] > values[1] + 2
    labelled = runner.invoke(app, ["predict", str(new), *store, "--head", "tags", "--json"])
    assert [p["labels"] for p in json.loads(labelled.stdout)["predictions"]] == [["py", "web"], ["rs"]]
    bad = runner.invoke(app, ["classify", "--train", "--label-field", "language", "--kind",
                              "multilabel", *store])
    assert bad.exit_code != 0 and "not lists" in bad.output and "Traceback" not in bad.output
    shown = runner.invoke(app, ["classify", "--help"], env={"COLUMNS": "400"}).output
    assert "--kind" in shown and "multilabel for a list field" in " ".join(
        shown.replace("│", " ").split())
