"""``kinsight model prepare``: pick the fastest CPU variant of a model that keeps its vectors.

The candidates are torch float32 (the reference), torch bfloat16 autocast where the CPU has AMX,
and the ONNX Runtime graphs (float32 fused, int8 dynamically quantised) exported once from the
model's folder (``onnx_export``). Each encodes the same sample of the user's texts; a variant
passes the quality gate when the mean cosine of its vectors with float32's is at least
``MIN_MEAN_COSINE``; the fastest that passes is recorded in the cache (``model_cache``), where
every later load on this kind of machine finds it without timing anything again. Ingest runs this
on its file's first texts when nothing is recorded yet (``prepare_if_unrecorded``). The bundled
image model is chosen for alike on the first pictures (``prepare_image_if_unrecorded``), among
the variants of ``image_variants``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from itertools import islice
from typing import Any

import numpy as np
from tqdm import tqdm

from kinsight.engine.encoders import Encoder, split_spec
from kinsight.engine.errors import EncoderError, InvalidInputError

from . import model_cache
from .model_cache import VariantChoice, VariantResult
from .sentence_encoder import (
    SCHEME,
    SentenceEncoder,
    load_sentence_variant,
    local_folder,
    weights_fingerprint,
)

__all__ = ["IMAGE_SAMPLE_SIZE", "MIN_MEAN_COSINE", "REFERENCE", "SAMPLE_SIZE", "PrepareOptions",
           "cpu_candidates", "fastest_passing", "needs_prepare", "prepare_if_unrecorded",
           "prepare_image_if_unrecorded", "prepare_text_encoder", "run_gate"]

log = logging.getLogger(__name__)

REFERENCE: model_cache.Variant = "torch-fp32"
MIN_MEAN_COSINE = 0.99
# 64 texts of up to 256 tokens: a few seconds a variant on 2 cores, enough to rank the variants
# (they differ by tens of %); the cosines of 64 texts pin the mean to ~1e-3.
SAMPLE_SIZE = 64
# 24 pictures: ~5 s a round in eager torch on 2 cores; the variants differ by 1.3-3x.
IMAGE_SAMPLE_SIZE = 24
_WARM_UP = 8


@dataclass(frozen=True)
class PrepareOptions:
    """``sample_size`` texts are encoded by each variant ``rounds`` times (its best time counts,
    so a noisy neighbour on a shared machine hurts less); ``min_mean_cosine`` is the gate;
    ``retime`` times again even when a choice is recorded."""

    sample_size: int = SAMPLE_SIZE
    rounds: int = 2
    min_mean_cosine: float = MIN_MEAN_COSINE
    retime: bool = False

    def __post_init__(self) -> None:
        if self.sample_size < 1 or self.rounds < 1:
            raise InvalidInputError("sample_size and rounds must be at least 1")
        if not 0.0 < self.min_mean_cosine <= 1.0:
            raise InvalidInputError(f"min_mean_cosine {self.min_mean_cosine} must be in (0, 1]")


def run_gate(candidates: Mapping[str, Encoder], texts: Sequence[Any], options: PrepareOptions, *,
             progress: bool = False) -> list[VariantResult]:
    """Time every candidate on ``texts`` (or pictures) and compare its vectors with
    ``candidates[REFERENCE]``'s.

    Rounds alternate the candidates (a, b, c, a, b, c) so drift of the machine hits all alike;
    docs/s is from each one's best round. Raises ``InvalidInputError`` without a reference.
    """
    if REFERENCE not in candidates:
        raise InvalidInputError(f"the gate compares with {REFERENCE}; it is not among the candidates")
    for encoder in candidates.values():  # first calls pay for lazy initialisation
        encoder.encode(list(texts[:_WARM_UP]))
    best = dict.fromkeys(candidates, float("inf"))
    vectors: dict[str, np.ndarray] = {}
    steps = tqdm(total=options.rounds * len(candidates), desc="timing variants", unit=" runs",
                 disable=not progress, dynamic_ncols=True)
    for _ in range(options.rounds):
        for name, encoder in candidates.items():
            steps.set_postfix_str(name, refresh=True)
            started = time.perf_counter()
            vectors[name] = encoder.encode(list(texts))
            best[name] = min(best[name], time.perf_counter() - started)
            steps.update()
    steps.close()
    reference = vectors[REFERENCE]
    results = []
    for name in candidates:
        cosines = np.sum(vectors[name].astype(np.float64) * reference, axis=1)
        mean = float(cosines.mean())
        passed = mean >= options.min_mean_cosine
        results.append(VariantResult(
            variant=name, docs_per_second=len(texts) / best[name], mean_cosine=mean,
            min_cosine=float(cosines.min()), passed=passed,
            note="" if passed else f"mean cosine {mean:.4f} < {options.min_mean_cosine}"))
    return results


def fastest_passing(results: Iterable[VariantResult]) -> str:
    """The variant with the most docs/s among those the gate passed (the reference always does)."""
    passed = [r for r in results if r.passed and r.docs_per_second is not None]
    if not passed:
        raise EncoderError("no variant passed the quality gate, not even the reference; "
                           "this is a bug: please report it")
    return max(passed, key=lambda r: r.docs_per_second or 0.0).variant


def cpu_candidates(reference: SentenceEncoder, argument: str, fingerprint: str
                ) -> tuple[dict[str, Encoder], list[VariantResult]]:
    """The variants that can run here (``reference`` among them, as ``REFERENCE``), beside notes
    on those that cannot; exports the ONNX graphs of the model in ``argument`` when missing."""
    candidates: dict[str, Encoder] = {REFERENCE: reference}
    notes: list[VariantResult] = []
    if model_cache.has_amx():
        candidates["torch-bf16"] = SentenceEncoder(reference.model, reference.info,
                                                   reference.device, "torch-bf16")
    else:
        notes.append(VariantResult("torch-bf16", None, None, None, False,
                                   "this CPU has no AMX: bfloat16 would be slower than float32"))
    try:
        from .onnx_encoder import GRAPH_FILES, load_onnx_encoder
        from .onnx_export import ensure_onnx_export

        folder = local_folder(argument)
        if folder is None:
            raise EncoderError("the model is not on disk")
        export = ensure_onnx_export(folder, fingerprint, model_cache.onnx_dir(fingerprint))
        for variant in GRAPH_FILES:
            candidates[variant] = load_onnx_encoder(reference.info, export, variant)
    except EncoderError as e:
        log.warning("no ONNX variants for %s: %s", reference.info.spec, e)
        notes += [VariantResult(v, None, None, None, False, str(e))
                  for v in ("onnx-fp32", "onnx-int8") if v not in candidates]
    return candidates, notes


def _record(results: list[VariantResult], spec: str, fingerprint: str, sample: int,
            options: PrepareOptions) -> VariantChoice:
    choice = VariantChoice(
        variant=fastest_passing(results), spec=spec, fingerprint=fingerprint,
        machine=model_cache.machine_key(), cpu_flags=tuple(sorted(model_cache.cpu_flags())),
        sample_texts=sample, min_mean_cosine=options.min_mean_cosine, results=tuple(results),
        versions=_versions(), created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    path = model_cache.write_choice(choice)
    log.info("chose %s for %s on this machine; recorded in %s", choice.variant, spec, path)
    return choice


def _versions() -> dict[str, str]:
    found = {}
    for package in ("kinsight", "torch", "sentence-transformers", "onnxruntime"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def _sentence_argument(spec: str) -> str:
    scheme, argument = split_spec(spec)
    if scheme != SCHEME:
        raise InvalidInputError(f"model prepare chooses among variants of {SCHEME} models; "
                                f"{spec!r} is a {scheme!r} encoder: an image model is prepared "
                                "by kinsight ingest on its first pictures (KINSIGHT_IMAGE_VARIANT "
                                "pins one), other encoders run as they are")
    return argument


def prepare_text_encoder(spec: str, texts: Iterable[str], options: PrepareOptions | None = None,
                         *, progress: bool = True) -> VariantChoice:
    """Choose, record and return the fastest variant of ``spec`` that passes the gate on
    ``texts`` (their first ``options.sample_size`` non-blank ones); a choice already recorded
    for this model on this kind of machine is returned as it is unless ``options.retime``.

    Raises ``InvalidInputError`` for another encoder scheme, a model that does not run on the
    CPU here, or no texts; ``EncoderError`` when the model cannot be loaded or is not on disk.
    """
    options = options or PrepareOptions()
    argument = _sentence_argument(spec)
    folder = local_folder(argument)
    if folder is None:
        raise EncoderError(f"{spec} is not on disk (a Hub model not downloaded yet); load it once "
                           "with network access, or pass its folder")
    fingerprint = weights_fingerprint(folder)
    recorded = model_cache.read_choice(fingerprint)
    if recorded is not None and not options.retime:
        log.info("reusing the %s variant recorded for %s in %s", recorded.variant, spec,
                 model_cache.choice_path(fingerprint))
        return recorded
    if not model_cache.runs_on_cpu():
        raise InvalidInputError(f"{spec} runs on a GPU here (in float16), where no CPU variant "
                                "is chosen; set KINSIGHT_DEVICE=cpu to prepare it for the CPU")
    sample = list(islice((t for t in texts if t.strip()), options.sample_size))
    if not sample:
        raise InvalidInputError("no texts to time the variants on; give a file with some text")
    reference = load_sentence_variant(argument, REFERENCE)
    if not isinstance(reference, SentenceEncoder):
        raise EncoderError(f"{spec} loaded as {reference!r}, not as torch float32")
    candidates, notes = cpu_candidates(reference, argument, fingerprint)
    results = run_gate(candidates, sample, options, progress=progress)
    return _record(results + notes, reference.info.spec, reference.info.fingerprint, len(sample),
                   options)


def needs_prepare(spec: str) -> bool:
    """True when ``spec`` is a sentence-transformers model on disk that runs on this CPU with
    no variant pinned or recorded yet: what ingest checks before it prepares one."""
    scheme, argument = split_spec(spec)
    if scheme != SCHEME or model_cache.pinned_variant() is not None:
        return False
    folder = local_folder(argument)
    if folder is None:
        return False
    fingerprint = weights_fingerprint(folder)
    return model_cache.read_choice(fingerprint) is None and model_cache.runs_on_cpu()


def prepare_if_unrecorded(spec: str, texts: Iterable[str], *, progress: bool = True
                          ) -> VariantChoice | None:
    """Prepare ``spec`` on ``texts`` when ``needs_prepare``; None when nothing was to do.
    ``texts`` is read only then, and only its first ``SAMPLE_SIZE`` texts."""
    if not needs_prepare(spec):
        return None
    log.warning("choosing the fastest CPU variant of %s on this machine (once; kinsight model "
                "prepare does the same)", spec)
    return prepare_text_encoder(spec, texts, progress=progress)


def prepare_image_if_unrecorded(spec: str, pictures: Iterable[Any], *, progress: bool = True
                                ) -> VariantChoice | None:
    """Choose and record the fastest CPU variant of the bundled image model (``efficientnet:``)
    on the first ``IMAGE_SAMPLE_SIZE`` of ``pictures`` (RGB PIL images, read only when needed),
    where none is pinned or recorded for this kind of CPU; None when nothing was to do. Other
    image encoders run as they are."""
    from .image_encoders import EFFICIENTNET_SCHEME, efficientnet_fingerprint, load_efficientnet_variant
    from .image_variants import ImageVariant, pinned_image_variant

    scheme, argument = split_spec(spec)
    if scheme != EFFICIENTNET_SCHEME or pinned_image_variant() is not None \
            or not model_cache.runs_on_cpu():
        return None
    if model_cache.read_choice(efficientnet_fingerprint()) is not None:
        return None
    sample = list(islice(pictures, IMAGE_SAMPLE_SIZE))
    if not sample:
        return None
    reference = load_efficientnet_variant(argument, "torch-fp32")  # REFERENCE
    log.warning("choosing the fastest CPU variant of %s on this machine (once)", spec)
    options = PrepareOptions(sample_size=len(sample))
    candidates: dict[str, Encoder] = {REFERENCE: reference}
    notes: list[VariantResult] = []
    others: tuple[ImageVariant, ...] = ("torch-bf16", "onnx-fp32")
    for variant in others:
        if variant == "torch-bf16" and not model_cache.has_amx():
            notes.append(VariantResult(variant, None, None, None, False,
                                       "this CPU has no AMX: bfloat16 would be slower than float32"))
            continue
        try:
            candidates[variant] = load_efficientnet_variant(argument, variant)
        except EncoderError as e:
            log.warning("no %s variant of %s: %s", variant, spec, e)
            notes.append(VariantResult(variant, None, None, None, False, str(e)))
    results = run_gate(candidates, sample, options, progress=progress)
    return _record(results + notes, reference.info.spec, reference.info.fingerprint, len(sample),
                   options)
