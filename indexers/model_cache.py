"""Where prepared text-model variants live, and which one this machine chose.

``kinsight model prepare`` exports a model's ONNX variants once and times every CPU variant on a
sample of the user's texts; the fastest one whose vectors agree with float32 (the quality gate) is
recorded here. The layout, under ``$KINSIGHT_CACHE_DIR`` (default ``$XDG_CACHE_HOME/kinsight``, else
``~/.cache/kinsight``)::

    models/<weights fingerprint>/onnx/               fp32.onnx, int8.onnx, tokenizer.json, export.json
    models/<weights fingerprint>/choice-<machine>.json   the variant chosen and the gate's figures

The choice is kept beside the export, keyed by the weights fingerprint and this CPU's instruction
sets, not with a vector space: which variant is fastest is a property of the machine, and one space
is searched from machines of several kinds (an AVX2 laptop, an AMX server) that each want their own.
The gate guarantees the variants' vectors agree, so a space need not know which variant wrote it and
keeps the model's one fingerprint whichever ran. This module imports neither torch nor onnxruntime:
the query path reads the choice before it knows which of them it needs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

from kinsight.engine.errors import InvalidInputError

from .devices import DEVICE_ENV, gpu_may_be_present, pick_device

__all__ = ["CACHE_ENV", "VARIANTS", "VARIANT_ENV", "Variant", "VariantChoice", "VariantResult",
           "cache_root", "choice_path", "cpu_flags", "has_amx", "machine_key", "onnx_dir", "pinned_variant",
           "read_choice", "runs_on_cpu", "variant_here", "write_choice"]

log = logging.getLogger(__name__)

CACHE_ENV = "KINSIGHT_CACHE_DIR"
# Pins a variant, skipping both the recorded choice and prepare (e.g. torch-fp32 for plain torch).
VARIANT_ENV = "KINSIGHT_TEXT_VARIANT"

Variant = Literal["torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8"]
VARIANTS: tuple[str, ...] = get_args(Variant)

# The instruction sets that decide which variant is fastest (and whether int8 saturates): only
# these enter the machine key, so a kernel update that adds an unrelated flag keeps the choice.
_SPEED_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cache_root() -> Path:
    """The folder kinsight caches prepared models in (see the module docstring)."""
    explicit = os.environ.get(CACHE_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kinsight"


def _model_dir(fingerprint: str) -> Path:
    return cache_root() / "models" / fingerprint


def onnx_dir(fingerprint: str) -> Path:
    """The folder of a model's ONNX export (whether or not it exists yet)."""
    return _model_dir(fingerprint) / "onnx"


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's instruction-set flags (Linux ``/proc/cpuinfo``); empty where it cannot tell."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def has_amx() -> bool:
    """True when the CPU has AMX tiles for bfloat16 (where torch's bf16 autocast pays off)."""
    return "amx_bf16" in cpu_flags()


def machine_key() -> str:
    """12 hex digits naming this kind of CPU: its architecture and speed-relevant flags."""
    flags = sorted(f for f in _SPEED_FLAGS if f in cpu_flags())
    text = " ".join([platform.machine(), *flags])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def pinned_variant() -> Variant | None:
    """The variant ``KINSIGHT_TEXT_VARIANT`` pins, if set."""
    raw = os.environ.get(VARIANT_ENV, "").strip().lower()
    if not raw:
        return None
    if raw not in VARIANTS:
        raise InvalidInputError(f"{VARIANT_ENV}={raw!r} is not a text-model variant; use one of "
                                f"{', '.join(VARIANTS)}, or unset it to use the one prepared")
    return raw  # type: ignore[return-value]


@dataclass(frozen=True)
class VariantResult:
    """One variant timed on the sample: its speed, and how its vectors agree with float32
    (cosine of each text's vector with the float32 one: mean and worst). ``passed``: the gate
    let it through; ``note`` says why a variant was not timed or failed."""

    variant: str
    docs_per_second: float | None
    mean_cosine: float | None
    min_cosine: float | None
    passed: bool
    note: str = ""


@dataclass(frozen=True)
class VariantChoice:
    """What ``model prepare`` decided for one model on one kind of machine, and why."""

    variant: str
    spec: str
    fingerprint: str
    machine: str
    cpu_flags: tuple[str, ...]
    sample_texts: int
    min_mean_cosine: float
    results: tuple[VariantResult, ...]
    versions: dict[str, str]
    created: str

    def result(self, variant: str) -> VariantResult | None:
        return next((r for r in self.results if r.variant == variant), None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VariantChoice:
        results = tuple(VariantResult(**r) for r in data.pop("results"))
        return cls(results=results, **{**data, "cpu_flags": tuple(data["cpu_flags"])})


def choice_path(fingerprint: str) -> Path:
    """Where the choice for these weights on this kind of machine is recorded."""
    return _model_dir(fingerprint) / f"choice-{machine_key()}.json"


def read_choice(fingerprint: str) -> VariantChoice | None:
    """The choice recorded for these weights on this kind of machine; None when there is none
    (or the file is unreadable: then prepare runs again and writes a good one)."""
    path = choice_path(fingerprint)
    if not path.is_file():
        return None
    try:
        choice = VariantChoice.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError) as e:
        log.warning("ignoring unreadable variant choice %s (%s); kinsight model prepare writes "
                    "a new one", path, e)
        return None
    if choice.variant not in VARIANTS:
        log.warning("ignoring variant choice %s: unknown variant %r", path, choice.variant)
        return None
    return choice


def write_choice(choice: VariantChoice) -> Path:
    """Record ``choice`` (atomically: a reader sees the old file or the new one, never half)."""
    path = choice_path(choice.fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(choice.to_json(), indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def runs_on_cpu() -> bool:
    """Whether a model loaded now runs on the CPU; torch is asked only when a GPU may be there."""
    requested = os.environ.get(DEVICE_ENV, "").strip()
    if requested:
        return requested.lower() == "cpu"
    return not gpu_may_be_present() or pick_device() == "cpu"


def variant_here(fingerprint: str | None) -> Variant:
    """The variant that runs here: the pinned one, else the one recorded for these weights
    (``fingerprint``; None for a model without files) when the model runs on the CPU and the
    variant can load, else torch float32."""
    pinned = pinned_variant()
    if pinned is not None:
        return pinned
    if fingerprint is None or not runs_on_cpu():
        return "torch-fp32"
    choice = read_choice(fingerprint)
    if choice is None or choice.variant == "torch-fp32":
        return "torch-fp32"
    if choice.variant.startswith("onnx"):
        import importlib.util

        from .onnx_encoder import read_export

        if importlib.util.find_spec("onnxruntime") is None:
            log.warning("kinsight model prepare chose %s here, but onnxruntime is not "
                        "installed; running torch float32 (pip install 'kinsight[onnx]')",
                        choice.variant)
            return "torch-fp32"
        if read_export(onnx_dir(fingerprint)) is None:
            log.warning("kinsight model prepare chose %s here, but its export is gone; "
                        "running torch float32 (kinsight model prepare --force remakes it)",
                        choice.variant)
            return "torch-fp32"
    return choice.variant  # type: ignore[return-value]
