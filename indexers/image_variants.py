"""The CPU variants of a torch vision model, and which one runs here.

EfficientNet-Lite0 in eager torch runs far below the CPU: its depthwise convolutions and separate
batch norms get no fused kernels (~5 pictures/s on 2 cores for ~0.4 GFLOP a picture). The
variants, each a ``forward`` for ``TorchImageEncoder`` (a float batch ``(n, 3, S, S)`` → features
``(n, dim)``):

* ``torch-fp32``: eager torch, channels-last (the reference every other variant is gated on);
* ``torch-bf16``: the same under bfloat16 autocast, offered only where the CPU has AMX;
* ``onnx-fp32``: the model exported once to ONNX (``export_onnx``, offline, from the weights in
  memory) and run by ONNX Runtime with every graph optimisation (batch norms folded into the
  convolutions, activations fused, its blocked NCHWc kernels): ~3x eager torch here.

As for the text models (``model_prepare``), the fastest variant whose vectors agree with float32
on a sample of the user's pictures is recorded per model and kind of CPU in ``model_cache``;
every variant reports the model's one fingerprint, so a space built with one is searched with
another. On CUDA the model runs as it always did (float16).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch

from kinsight.engine.errors import EncoderError, InvalidInputError

from . import model_cache
from .devices import cpu_threads

__all__ = ["IMAGE_VARIANTS", "IMAGE_VARIANT_ENV", "ImageVariant", "export_onnx", "image_forward",
           "image_variant_here", "onnx_path", "pinned_image_variant"]

log = logging.getLogger(__name__)

ImageVariant = Literal["torch-fp32", "torch-bf16", "onnx-fp32"]
IMAGE_VARIANTS: tuple[str, ...] = get_args(ImageVariant)
# Pins a variant of the image models, skipping the recorded choice and prepare.
IMAGE_VARIANT_ENV = "KINSIGHT_IMAGE_VARIANT"
_ONNX_FILE = "image-fp32.onnx"
_OPSET = 17


def pinned_image_variant() -> ImageVariant | None:
    """The variant ``KINSIGHT_IMAGE_VARIANT`` pins, if set."""
    raw = os.environ.get(IMAGE_VARIANT_ENV, "").strip().lower()
    if not raw:
        return None
    if raw not in IMAGE_VARIANTS:
        raise InvalidInputError(f"{IMAGE_VARIANT_ENV}={raw!r} is not an image-model variant; use "
                                f"one of {', '.join(IMAGE_VARIANTS)}, or unset it to use the one "
                                "prepared")
    return raw  # type: ignore[return-value]


def onnx_path(fingerprint: str) -> Path:
    """Where the ONNX graph of the image model with ``fingerprint`` is kept."""
    return model_cache.onnx_dir(fingerprint) / _ONNX_FILE


def image_variant_here(fingerprint: str) -> ImageVariant:
    """The variant that runs here: the pinned one, else the one recorded for this model on this
    kind of CPU when the model runs on the CPU and that variant can load, else torch float32."""
    pinned = pinned_image_variant()
    if pinned is not None:
        return pinned
    if not model_cache.runs_on_cpu():
        return "torch-fp32"
    choice = model_cache.read_choice(fingerprint)
    variant = choice.variant if choice is not None else "torch-fp32"
    if variant not in IMAGE_VARIANTS:
        log.warning("ignoring the recorded choice %s for an image model", variant)
        return "torch-fp32"
    if variant == "onnx-fp32" and (importlib.util.find_spec("onnxruntime") is None
                                   or not onnx_path(fingerprint).is_file()):
        log.warning("kinsight chose onnx-fp32 for this image model here, but onnxruntime or its "
                    "export is gone; running torch float32 (pip install 'kinsight[onnx]')")
        return "torch-fp32"
    return variant  # type: ignore[return-value]


def export_onnx(features: torch.nn.Module, size: int, fingerprint: str) -> Path:
    """The ONNX graph of ``features`` (a module: batch ``(n, 3, size, size)`` → ``(n, dim)``),
    exported on first use from the weights in memory (no network), written atomically so that
    concurrent processes never read half a file. Raises ``EncoderError`` naming the extra when
    onnx is missing or the export fails."""
    path = onnx_path(fingerprint)
    if path.is_file():
        return path
    if importlib.util.find_spec("onnx") is None:
        raise EncoderError("exporting the image model to ONNX needs onnx and onnxruntime; "
                           "pip install 'kinsight[onnx]'")
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    example = torch.zeros(2, 3, size, size)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(features.eval(), (example,), str(partial), input_names=["pixels"],
                              output_names=["features"], opset_version=_OPSET, dynamo=False,
                              dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}})
        os.replace(partial, path)
    except Exception as e:  # the exporter raises anything from torch.jit and onnx
        raise EncoderError(f"cannot export the image model to ONNX ({e}); set "
                           f"{IMAGE_VARIANT_ENV}=torch-fp32 to run it in torch") from e
    finally:
        partial.unlink(missing_ok=True)
    log.info("exported the image model to %s", path)
    return path


def image_forward(features: torch.nn.Module, variant: ImageVariant, *, size: int,
                  fingerprint: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``variant``'s forward of ``features`` on the CPU (see the module docstring)."""
    if variant == "onnx-fp32":
        return _onnx_forward(export_onnx(features, size, fingerprint))
    model = features.to(memory_format=torch.channels_last)  # oneDNN's fast convolution layout
    if variant == "torch-fp32":
        return lambda batch: model(batch.contiguous(memory_format=torch.channels_last))

    def bf16(batch: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(batch.contiguous(memory_format=torch.channels_last)).float()

    return bf16


def _onnx_forward(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        import onnxruntime
    except ImportError as e:
        raise EncoderError("the onnx-fp32 image variant needs onnxruntime; pip install "
                           f"'kinsight[onnx]', or set {IMAGE_VARIANT_ENV}=torch-fp32") from e
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = cpu_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        session: Any = onnxruntime.InferenceSession(str(path), options,
                                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        raise EncoderError(f"cannot load {path}: {e}; delete it and it is exported again") from e

    def forward(batch: torch.Tensor) -> torch.Tensor:
        pixels = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(session.run(None, {"pixels": pixels})[0])

    return forward
