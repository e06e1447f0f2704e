"""Trained adapters (the ``adapter:`` spec scheme): two frozen encoders mapped into one shared space.

An adapter is what ``kinsight align`` trains (see ``align``): for each side, an image encoder and
a text encoder, an affine map ``(x - mean) @ matrix`` from that encoder's vectors into a shared
space of ``dim`` dimensions, where a picture and its caption land close together. Each side is
an encoder of its own that runs its base encoder and then the map:

    adapter:NAME:image     pictures → base image encoder → map → shared space
    adapter:NAME:text      texts    → base text encoder  → map → shared space

Both sides carry the adapter's fingerprint (a hash of its weights and of its bases'
fingerprints), so a space built by one side can be queried by the other, and each names the
other as its ``partner``. The artifact records the fingerprint of each base encoder it was
trained on: a base whose weights differ is refused, since the map would be meaningless on it.

Artifact: a folder ``NAME/`` holding ``adapter.json`` (``AdapterConfig``) and ``weights.npz``
(``image_mean``, ``image_matrix``, ``text_mean``, ``text_matrix``, float32). ``NAME`` is looked
up in ``$KINSIGHT_ADAPTERS`` (default ``~/.kinsight/adapters``), then among the adapters shipped
in this package (``default``: the bundled EfficientNet-Lite0 ↔ the bundled MiniLM); a NAME with
a ``/`` is a folder path.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kinsight.engine import Encoder, EncoderInfo, load_encoder
from kinsight.engine.encoders import Modality, Role
from kinsight.engine.errors import (
    AlreadyExistsError,
    EncoderMismatchError,
    InvalidInputError,
    NotFoundError,
)
from kinsight.engine.kernels import unit_rows

__all__ = [
    "ADAPTERS_ENV",
    "SCHEME",
    "SHIPPED_ADAPTERS",
    "Adapter",
    "AdapterConfig",
    "AdapterEncoder",
    "AdapterSide",
    "adapter_folders",
    "adapter_target",
    "find_adapter",
    "load_adapter",
    "load_adapter_encoder",
    "save_adapter",
]

SCHEME = "adapter"
ADAPTERS_ENV = "KINSIGHT_ADAPTERS"
SHIPPED_ADAPTERS = Path(__file__).parent / "shipped_adapters"
CONFIG_FILE = "adapter.json"
WEIGHTS_FILE = "weights.npz"
MODALITIES: tuple[Modality, ...] = ("image", "text")


@dataclass(frozen=True)
class AdapterSide:
    """The base encoder one side was trained on, and how long a text it reads."""

    modality: Modality
    base_spec: str
    base_fingerprint: str
    base_dim: int
    max_tokens: int | None = None

    @classmethod
    def of(cls, info: EncoderInfo) -> AdapterSide:
        return cls(info.modality, info.spec, info.fingerprint, info.dim, info.max_tokens)


@dataclass(frozen=True)
class AdapterConfig:
    """What ``adapter.json`` holds. ``temperature`` is the softmax temperature learned with the
    map (InfoNCE; 1.0 for methods that learn none); ``fingerprint`` hashes the weights and the
    bases; ``metrics`` are the validation recalls measured when it was trained."""

    name: str
    dim: int
    method: str
    temperature: float
    fingerprint: str
    image: AdapterSide
    text: AdapterSide
    trained_on: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    def side(self, modality: Modality) -> AdapterSide:
        return self.image if modality == "image" else self.text

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AdapterConfig:
        image, text = AdapterSide(**data.pop("image")), AdapterSide(**data.pop("text"))
        return cls(**data, image=image, text=text)


@dataclass(frozen=True)
class Adapter:
    """An adapter in memory: its config and, per modality, ``mean (base_dim,)`` and
    ``matrix (base_dim, dim)``, float32."""

    config: AdapterConfig
    means: dict[str, np.ndarray]
    matrices: dict[str, np.ndarray]

    @classmethod
    def create(cls, name: str, image: AdapterSide, text: AdapterSide, means: dict[str, np.ndarray],
               matrices: dict[str, np.ndarray], *, method: str, temperature: float,
               trained_on: str = "", metrics: dict[str, float] | None = None) -> Adapter:
        """An adapter with its fingerprint computed from its weights and bases."""
        means = {m: np.ascontiguousarray(means[m], dtype=np.float32) for m in MODALITIES}
        matrices = {m: np.ascontiguousarray(matrices[m], dtype=np.float32) for m in MODALITIES}
        for side in (image, text):
            if matrices[side.modality].shape[0] != side.base_dim:
                raise InvalidInputError(f"{side.modality} matrix has {matrices[side.modality].shape[0]}"
                                        f" rows; its base {side.base_spec} has {side.base_dim} dims")
        dim = matrices["image"].shape[1]
        if matrices["text"].shape[1] != dim:
            raise InvalidInputError("the image and text matrices must map into one dimension")
        digest = hashlib.sha256()
        for m in MODALITIES:
            digest.update(means[m].tobytes())
            digest.update(matrices[m].tobytes())
        digest.update(f"{image.base_fingerprint}\t{text.base_fingerprint}".encode())
        config = AdapterConfig(name=name, dim=dim, method=method, temperature=float(temperature),
                               fingerprint=f"adapter-{digest.hexdigest()[:16]}", image=image,
                               text=text, trained_on=trained_on, metrics=dict(metrics or {}))
        return cls(config, means, matrices)

    def project(self, modality: Modality, base_vectors: np.ndarray) -> np.ndarray:
        """Base vectors ``(n, base_dim)`` of one side → unit float32 vectors ``(n, dim)``."""
        vectors = np.asarray(base_vectors, dtype=np.float32)
        side = self.config.side(modality)
        if vectors.ndim != 2 or vectors.shape[1] != side.base_dim:
            raise InvalidInputError(f"adapter {self.config.name!r}: {modality} vectors must have "
                                    f"shape (n, {side.base_dim}), not {vectors.shape}")
        return unit_rows((vectors - self.means[modality]) @ self.matrices[modality])


# -- where adapters live ----------------------------------------------------------------------------
def adapter_folders() -> list[Path]:
    """Where adapter names are looked up, first match wins: the user's folder, then the shipped."""
    user = Path(os.environ.get(ADAPTERS_ENV) or Path.home() / ".kinsight" / "adapters")
    return [user.expanduser(), SHIPPED_ADAPTERS]


def find_adapter(name: str) -> Path:
    """The folder of adapter ``name`` (a name, or a folder path when it holds a ``/``)."""
    candidates = [Path(name).expanduser()] if "/" in name or os.sep in name else [
        folder / name for folder in adapter_folders()]
    for candidate in candidates:
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    known = sorted({p.parent.name for folder in adapter_folders() if folder.is_dir()
                    for p in folder.glob(f"*/{CONFIG_FILE}")})
    raise NotFoundError(f"no adapter {name!r} in {', '.join(str(c) for c in candidates)}; known "
                        f"adapters: {', '.join(known) or 'none'}. Train one with kinsight align, or "
                        f"set {ADAPTERS_ENV} to the folder that holds it")


def adapter_target(name: str, folder: Path | None = None, *, replace: bool = False) -> Path:
    """Where ``save_adapter`` writes adapter ``name``; refused when one is there and not
    ``replace`` (checked before training too, so a taken name fails at once)."""
    target = (folder or adapter_folders()[0]) / name
    if (target / CONFIG_FILE).exists() and not replace:
        raise AlreadyExistsError(f"adapter {name!r} already exists in {target}; choose another "
                                 "name, or replace it (spaces built on the old one will then be "
                                 "refused until rebuilt)")
    return target


def save_adapter(adapter: Adapter, folder: Path | None = None, *, replace: bool = False) -> Path:
    """Write ``adapter`` to ``folder/NAME`` (default: the user's adapter folder); an existing
    one is kept unless ``replace``: spaces built on it would stop matching its fingerprint."""
    target = adapter_target(adapter.config.name, folder, replace=replace)
    target.mkdir(parents=True, exist_ok=True)
    arrays = {**{f"{m}_mean": adapter.means[m] for m in MODALITIES},
              **{f"{m}_matrix": adapter.matrices[m] for m in MODALITIES}}
    # numpy's stub types **kwds as if they could be its allow_pickle flag
    np.savez_compressed(target / WEIGHTS_FILE, **arrays)  # type: ignore[arg-type]
    (target / CONFIG_FILE).write_text(json.dumps(asdict(adapter.config), indent=2) + "\n",
                                      encoding="utf-8")
    return target


def load_adapter(name: str) -> Adapter:
    """Read an adapter by name or folder path (see ``find_adapter``)."""
    folder = find_adapter(name)
    config = AdapterConfig.from_json(json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")))
    with np.load(folder / WEIGHTS_FILE) as weights:
        means: dict[str, np.ndarray] = {m: weights[f"{m}_mean"] for m in MODALITIES}
        matrices: dict[str, np.ndarray] = {m: weights[f"{m}_matrix"] for m in MODALITIES}
    loaded = Adapter.create(config.name, config.image, config.text, means, matrices,
                            method=config.method, temperature=config.temperature,
                            trained_on=config.trained_on, metrics=config.metrics)
    if loaded.config.fingerprint != config.fingerprint:
        raise EncoderMismatchError(f"adapter {name!r} in {folder}: its weights do not match the "
                                   f"fingerprint in {CONFIG_FILE} (damaged or edited); retrain it")
    return loaded


# -- the encoder ------------------------------------------------------------------------------------
class AdapterEncoder:
    """One side of an adapter: inputs → base encoder → the side's map → unit vectors ``(n, dim)``.

    The base encoder is loaded on first use, so a text query can find its image partner through
    this object without loading an image model."""

    def __init__(self, adapter: Adapter, modality: Modality, spec_name: str) -> None:
        self.adapter = adapter
        self._side = adapter.config.side(modality)
        other = "text" if modality == "image" else "image"
        self._info = EncoderInfo(spec=f"{SCHEME}:{spec_name}:{modality}", modality=modality,
                                 dim=adapter.config.dim, fingerprint=adapter.config.fingerprint,
                                 max_tokens=self._side.max_tokens,
                                 partner=f"{SCHEME}:{spec_name}:{other}",
                                 temperature=adapter.config.temperature)
        self._base: Encoder | None = None
        self._lock = threading.Lock()

    @property
    def info(self) -> EncoderInfo:
        return self._info

    @property
    def base(self) -> Encoder:
        """The base encoder, checked against the one the adapter was trained on."""
        with self._lock:
            if self._base is None:
                base = load_encoder(self._side.base_spec)
                if base.info.fingerprint != self._side.base_fingerprint \
                        or base.info.dim != self._side.base_dim:
                    raise EncoderMismatchError(
                        f"adapter {self.adapter.config.name!r} was trained on {self._side.base_spec} "
                        f"with fingerprint {self._side.base_fingerprint} ({self._side.base_dim} dims)"
                        f", but that spec now loads weights with fingerprint "
                        f"{base.info.fingerprint} ({base.info.dim} dims); install the weights it "
                        "was trained on, or train a new adapter on these with kinsight align")
                self._base = base
            return self._base

    def encode(self, inputs: Sequence[Any], *, role: Role = "document") -> np.ndarray:
        """Embed inputs of this side's modality into the shared space (``role`` goes to the base)."""
        return self.adapter.project(self._info.modality, self.base.encode(inputs, role=role))

    def __repr__(self) -> str:
        return f"AdapterEncoder({self._info.spec!r})"


def load_adapter_encoder(argument: str) -> AdapterEncoder:
    """The encoder of an ``adapter:NAME:image`` or ``adapter:NAME:text`` spec."""
    name, sep, side = argument.strip().rpartition(":")
    if not sep or not name or side not in MODALITIES:
        raise InvalidInputError(f"adapter spec 'adapter:{argument}' must name the adapter and its "
                                "side: adapter:NAME:image or adapter:NAME:text "
                                "(e.g. adapter:default:text)")
    return AdapterEncoder(load_adapter(name), side, name)  # type: ignore[arg-type]
