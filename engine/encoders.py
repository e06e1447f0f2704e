"""The encoder contract, and how the engine finds encoders without importing them.

Encoders live in ``kinsight.indexers`` (they import torch); the engine only knows this protocol and
looks implementations up by the scheme of a spec string (``"sentence-transformers:all-MiniLM-L6-v2"``,
``"fake:dim=64"``) in the ``kinsight.encoders`` entry-point group. A third-party package can add an
encoder by declaring an entry point in that group: a callable taking the text after the colon and
returning an ``Encoder``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from .errors import EncoderError, InvalidInputError

__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "ENTRY_POINT_GROUP",
    "RANDOM_WEIGHTS_MARK",
    "Encoder",
    "EncoderInfo",
    "Modality",
    "Role",
    "available_encoders",
    "load_encoder",
    "split_spec",
]

ENTRY_POINT_GROUP = "kinsight.encoders"
DEFAULT_TEXT_ENCODER = "sentence-transformers:all-MiniLM-L6-v2"
# An encoder running on randomly initialised weights (tests, speed runs) puts this in its spec, so
# every space built on it, and every result read from such a space, can say so.
RANDOM_WEIGHTS_MARK = "@random"

# Models trained on English text only, matched in the spec wherever it loads them from (a Hub
# name, the bundled alias, an export of the same weights): their vectors of texts in another
# language say little about meaning, so search leans on keywords there (see search.py).
_ENGLISH_ONLY_MODELS = ("all-minilm-", "all-mpnet-", "all-distilroberta-", "multi-qa-",
                        "msmarco-", "bge-small-en", "bge-base-en", "bge-large-en")

Modality = Literal["text", "image"]
Role = Literal["document", "query"]


@dataclass(frozen=True)
class EncoderInfo:
    """What a vector space records about the encoder that built it.

    ``spec`` loads the encoder again; ``fingerprint`` identifies its weights, so two encoders with
    equal fingerprints produce the same vectors (the image and text towers of one CLIP model share
    a fingerprint: their vectors live in one space). ``modality`` is what ``encode`` takes: texts
    (``str``) or images (RGB ``PIL.Image``, decoded by ``kinsight.indexers.image_files``).
    ``max_tokens`` is the longest input the model reads (texts longer than that are chunked);
    ``None`` where it does not apply. ``partner`` is the spec of the encoder of the other
    modality that embeds into the same space (a CLIP model's other tower, an adapter's other
    side), so a text can query an image space and back; ``None`` where there is none. It is read
    from the loaded encoder, never from a stored space.
    """

    spec: str
    modality: Modality
    dim: int
    fingerprint: str
    max_tokens: int | None = None
    partner: str | None = None
    # The softmax temperature learned with a pair of encoders (CLIP's 1 / logit scale, or an
    # adapter's); zero-shot classification divides similarities by it.
    temperature: float | None = None

    @property
    def random_weights(self) -> bool:
        """True for a model on random weights: its vectors mean nothing beyond speed tests."""
        return RANDOM_WEIGHTS_MARK in self.spec

    def knows_language(self, language: str) -> bool:
        """Whether the model was trained on texts in ``language`` (an ISO 639-1 code, or
        ``multi`` for several): False only for the English-only models kinsight knows of; an
        unknown model is taken at its word."""
        model = self.spec.partition(":")[2].lower()
        if any(name in model for name in _ENGLISH_ONLY_MODELS):
            return language == "en"
        return True

    def warnings(self) -> list[str]:
        """What a result computed with this encoder must tell its reader."""
        if not self.random_weights:
            return []
        return [f"encoder {self.spec} runs on RANDOM weights: its similarities are meaningless "
                "(fine for tests and speed runs); load real weights for real use"]


@runtime_checkable
class Encoder(Protocol):
    """Turns a batch of inputs into vectors.

    ``encode`` returns a float32 array of shape ``(len(inputs), info.dim)``. The inputs are texts
    for a ``text`` encoder and decoded RGB images (``PIL.Image``) for an ``image`` encoder (the
    engine never builds either: it only hands over what the caller gave). ``role`` lets models
    that embed queries and documents differently (instruction prefixes) do so; others ignore it.
    """

    @property
    def info(self) -> EncoderInfo: ...

    def encode(self, inputs: Sequence[Any], *, role: Role = "document") -> np.ndarray: ...


_cache: dict[str, Encoder] = {}
_cache_lock = threading.Lock()


def split_spec(spec: str) -> tuple[str, str]:
    """``"scheme:argument"`` → ``(scheme, argument)``; the argument may be empty."""
    scheme, _, argument = spec.partition(":")
    if not scheme:
        raise InvalidInputError(
            f"encoder spec {spec!r} has no scheme; write it as 'SCHEME:ARGUMENT', "
            f"e.g. {DEFAULT_TEXT_ENCODER!r}"
        )
    return scheme, argument


def _factories() -> dict[str, Callable[[str], Encoder]]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}  # type: ignore[misc]


def available_encoders() -> list[str]:
    """Schemes of the installed encoders (entry points of the ``kinsight.encoders`` group)."""
    return sorted(_factories())


def load_encoder(spec: str) -> Encoder:
    """Load (once per process) the encoder a spec names; later calls return the same object."""
    with _cache_lock:
        if spec in _cache:
            return _cache[spec]
        scheme, argument = split_spec(spec)
        entry = _factories().get(scheme)
        if entry is None:
            raise EncoderError(
                f"no encoder is installed for scheme {scheme!r} (spec {spec!r}); installed: "
                f"{', '.join(available_encoders()) or 'none'}. For text models install the extra: "
                "pip install 'kinsight[text]'"
            )
        try:
            factory = entry.load()  # type: ignore[attr-defined]
        except ImportError as e:
            raise EncoderError(
                f"encoder {scheme!r} could not be imported ({e}); install its extra, "
                "e.g. pip install 'kinsight[text]'"
            ) from e
        encoder = factory(argument)
        _cache[spec] = encoder
        return encoder
