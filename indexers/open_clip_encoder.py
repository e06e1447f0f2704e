"""CLIP models from open_clip (the ``open_clip:`` spec scheme): an image tower and a text tower that
embed into one shared space, so texts can be searched against images and back.

Spec: ``open_clip:ARCH@WEIGHTS:TOWER``

* ``ARCH`` is any open_clip architecture (``ViT-B-32``, ``RN50``, ``convnext_base``, ...;
  ``open_clip.list_models()``), or ``kinsight-tiny``, a 2-layer toy shipped here for tests;
* ``WEIGHTS`` is a local checkpoint file (``@/models/vit-b-32.pt``, ``@./ckpt.bin``), an open_clip
  pretrained tag (``@laion2b_s34b_b79k``: downloads, so it needs the hub or a filled cache), or
  ``@random``: seeded random initialisation, for tests and speed runs only. There is no default:
  random weights are never chosen silently, and a space built on them says so in its spec;
* ``TOWER`` is ``image`` (the default when left out) or ``text``.

Both towers of one model share its fingerprint (they are loaded once and share the weights), so a
space built by one can be queried by the other. The text tower tokenizes with open_clip's tokenizer;
the image tower takes the model's size, mean and std but kinsight's shared preprocessing
(``PixelConfig``: the whole picture padded to a square, never centre-cropped), which is part of the
fingerprint.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import open_clip
import torch

from kinsight.engine.encoders import RANDOM_WEIGHTS_MARK, EncoderInfo, Role
from kinsight.engine.errors import EncoderError, InvalidInputError

from .devices import model_device
from .fingerprints import hash_files, hash_parameters
from .image_encoders import CPU_BATCH_SIZE, CUDA_BATCH_SIZE, PixelConfig, TorchImageEncoder

__all__ = ["CONFIG_FOLDER", "SCHEME", "OpenClipTextEncoder", "load_open_clip_encoder", "parse_spec"]

log = logging.getLogger(__name__)

SCHEME = "open_clip"
CONFIG_FOLDER = Path(__file__).parent / "open_clip_configs"
Tower = Literal["image", "text"]
_TOWERS: tuple[Tower, ...] = ("image", "text")
_RANDOM = RANDOM_WEIGHTS_MARK.lstrip("@")
_RANDOM_SEED = 0  # the same random weights in every process, so a random space can be queried

open_clip.add_model_config(CONFIG_FOLDER)


@dataclass(frozen=True)
class ClipSpec:
    """A parsed ``open_clip:`` spec; ``weights`` is ``random``, a resolved file path or a tag."""

    arch: str
    weights: str
    tower: Tower

    @property
    def spec(self) -> str:
        return f"{SCHEME}:{self.arch}@{self.weights}:{self.tower}"


def parse_spec(argument: str) -> ClipSpec:
    """``ARCH@WEIGHTS[:TOWER]`` → ``ClipSpec``; see the module docstring."""
    body, tower = argument.strip(), "image"
    head, sep, tail = body.rpartition(":")
    if sep and tail in _TOWERS:
        body, tower = head, tail
    arch, at, weights = body.partition("@")
    arch, weights = arch.strip(), weights.strip()
    if not at or not arch or not weights:
        raise InvalidInputError(
            f"open_clip spec 'open_clip:{argument}' must name an architecture and its weights: "
            "open_clip:ARCH@/path/to/checkpoint.pt, open_clip:ARCH@PRETRAINED_TAG (needs the hub "
            "or its cache) or open_clip:ARCH@random (tests and speed runs only), optionally "
            "followed by :image or :text (the tower; image by default)")
    if arch not in open_clip.list_models():
        raise InvalidInputError(f"open_clip has no architecture {arch!r}; known ones include "
                                f"{', '.join(open_clip.list_models()[:8])}, ... "
                                "(open_clip.list_models())")
    if weights != _RANDOM and _is_path(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise EncoderError(f"checkpoint {weights!r} does not exist (spec "
                               f"'open_clip:{argument}'); pass an open_clip checkpoint file")
        weights = str(path.resolve())
    return ClipSpec(arch=arch, weights=weights, tower=tower)  # type: ignore[arg-type]


def _is_path(weights: str) -> bool:
    return weights.startswith(("/", "./", "../", "~")) or Path(weights).suffix in (
        ".pt", ".pth", ".bin", ".safetensors", ".ckpt")


@dataclass(frozen=True)
class _Clip:
    model: Any
    pixels: PixelConfig
    tokenizer: Any
    fingerprint: str
    device: str


@functools.lru_cache(maxsize=4)
def _load_clip(arch: str, weights: str) -> _Clip:
    """One model per (architecture, weights), shared by its two towers."""
    started = time.perf_counter()
    device = model_device()
    try:
        if weights == _RANDOM:
            # A seeded generator, forked so the caller's random state is left as it was.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_RANDOM_SEED)
                model = open_clip.create_model(arch, pretrained=None)
        elif Path(weights).is_file():
            model = open_clip.create_model(arch, pretrained=None)
            open_clip.load_checkpoint(model, weights)
        else:
            model = open_clip.create_model(arch, pretrained=weights, require_pretrained=True)
    except Exception as e:  # open_clip raises RuntimeError, KeyError, HTTP and hub errors
        raise EncoderError(
            f"cannot load open_clip model {arch!r} with weights {weights!r}: {e}. Without a "
            "network, pass a local checkpoint file (open_clip:ARCH@/path/to/checkpoint.pt)") from e
    pixels = _pixel_config(model)
    if weights == _RANDOM:
        fingerprint = f"random-{pixels.fingerprint(hash_parameters(model))}"
        log.warning("open_clip %s runs on RANDOM weights (seed %d): its vectors are meaningless "
                    "beyond tests and speed runs", arch, _RANDOM_SEED)
    elif Path(weights).is_file():
        fingerprint = pixels.fingerprint(hash_files([Path(weights)]))
    else:
        fingerprint = pixels.fingerprint(hash_parameters(model))
    model.eval().to(device)
    if device.startswith("cuda"):
        model.half()
    log.info("loaded open_clip %s@%s on %s in %.1fs (weights %s)", arch, weights, device,
             time.perf_counter() - started, fingerprint)
    return _Clip(model, pixels, open_clip.get_tokenizer(arch), fingerprint, device)


def _pixel_config(model: Any) -> PixelConfig:
    config = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = model.visual.image_size
    side = int(size[0] if isinstance(size, tuple | list) else size)
    return PixelConfig(size=side, mean=tuple(config.get("mean", open_clip.OPENAI_DATASET_MEAN)),
                       std=tuple(config.get("std", open_clip.OPENAI_DATASET_STD)),
                       interpolation=config.get("interpolation", "bicubic"))


class OpenClipTextEncoder:
    """The text tower: texts → unit float32 vectors ``(n, dim)`` in the model's shared space."""

    def __init__(self, clip: _Clip, info: EncoderInfo) -> None:
        self._clip = clip
        self._info = info
        self._batch_size = CUDA_BATCH_SIZE if clip.device.startswith("cuda") else CPU_BATCH_SIZE

    @property
    def info(self) -> EncoderInfo:
        return self._info

    @torch.inference_mode()
    def encode(self, inputs: Sequence[Any], *, role: Role = "document") -> np.ndarray:
        """Embed texts (cut at the model's context length); CLIP embeds both roles alike."""
        if isinstance(inputs, str):
            raise InvalidInputError("encode() takes a sequence of texts; wrap it: encode([text])")
        texts = list(inputs)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInputError(f"input {index} is a {type(text).__name__}, not a str; the "
                                        "text tower takes only strings")
        blocks = [np.zeros((0, self._info.dim), np.float32)]
        for start in range(0, len(texts), self._batch_size):
            tokens = self._clip.tokenizer(texts[start:start + self._batch_size])
            features = self._clip.model.encode_text(tokens.to(self._clip.device)).float()
            features = torch.nn.functional.normalize(features, dim=-1)
            blocks.append(features.cpu().numpy().astype(np.float32, copy=False))
        return np.concatenate(blocks)

    def __repr__(self) -> str:
        return f"OpenClipTextEncoder({self._info.spec!r}, device={self._clip.device!r})"


def load_open_clip_encoder(argument: str) -> TorchImageEncoder | OpenClipTextEncoder:
    """The tower of an ``open_clip:`` spec (see the module docstring)."""
    parsed = parse_spec(argument)
    clip = _load_clip(parsed.arch, parsed.weights)
    dim = int(clip.model.visual.output_dim)  # both towers project into this shared space
    other: Tower = "image" if parsed.tower == "text" else "text"
    partner = ClipSpec(parsed.arch, parsed.weights, other).spec
    if parsed.tower == "text":
        context = int(getattr(clip.model, "context_length", 77))
        info = EncoderInfo(spec=parsed.spec, modality="text", dim=dim,
                           fingerprint=clip.fingerprint, max_tokens=context, partner=partner,
                           temperature=_temperature(clip.model))
        return OpenClipTextEncoder(clip, info)
    info = EncoderInfo(spec=parsed.spec, modality="image", dim=dim, fingerprint=clip.fingerprint,
                       partner=partner, temperature=_temperature(clip.model))
    return TorchImageEncoder(info, clip.model.encode_image, clip.pixels.pil_transform(),
                             clip.pixels, clip.device)


def _temperature(model: Any) -> float | None:
    """CLIP's softmax temperature, 1 / exp(logit_scale), when the model learned one."""
    scale = getattr(model, "logit_scale", None)
    return None if scale is None else float(1.0 / scale.detach().exp().item())
