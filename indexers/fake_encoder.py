"""A deterministic text encoder for tests (the ``fake:`` spec scheme): no model, no torch.

Each text becomes a hashed bag of words: every word adds ±1 to a bucket chosen by a stable hash of
it, so texts that share words get close vectors and search tests mean something. Hashes come from
BLAKE2b, never ``hash()``, whose value changes between processes (``PYTHONHASHSEED``); vectors are
therefore identical in every process and on every machine.

Like a real model it reads at most ``max_tokens`` words of a text (words past that are ignored), so
code that chunks long texts can be tested with it. Spec arguments: ``dim=N`` (default 64) and
``max_tokens=N`` (default 64), comma separated, e.g. ``fake:dim=32,max_tokens=50``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from kinsight.engine.encoders import EncoderInfo, Role
from kinsight.engine.errors import InvalidInputError

__all__ = ["DEFAULT_DIM", "DEFAULT_MAX_TOKENS", "FakeEncoder", "load_fake_encoder"]

DEFAULT_DIM = 64
DEFAULT_MAX_TOKENS = 64

_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"[0-9]+")
# Weight of the per-text component: small enough that shared words dominate similarity, non-zero
# so that distinct texts without words ("", "!!!") still get distinct vectors.
_TEXT_WEIGHT = 0.01
# Distinct BLAKE2b personalisations keep word hashes and whole-text hashes independent.
_WORD_PERSON = b"kinsight-word"
_TEXT_PERSON = b"kinsight-text"


def _bucket_and_sign(data: str, person: bytes, dim: int) -> tuple[int, float]:
    value = int.from_bytes(
        hashlib.blake2b(data.encode("utf-8"), digest_size=8, person=person).digest(), "little"
    )
    # The bucket uses the low bits and the sign the top bit, so they are independent for any dim.
    return value % dim, (1.0 if value >> 63 else -1.0)


class FakeEncoder:
    """Hashed bag-of-words vectors: float32 ``(n, dim)``, unit length, the same in every process."""

    def __init__(self, dim: int = DEFAULT_DIM, max_tokens: int | None = None) -> None:
        if dim < 1:
            raise InvalidInputError(f"fake encoder dim must be at least 1, not {dim}")
        if max_tokens is not None and max_tokens < 1:
            raise InvalidInputError(f"fake encoder max_tokens must be at least 1, not {max_tokens}")
        self._max_tokens = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
        spec = f"fake:dim={dim}" if max_tokens is None else f"fake:dim={dim},max_tokens={max_tokens}"
        self._info = EncoderInfo(
            spec=spec,
            modality="text",
            dim=dim,
            fingerprint=f"fake-v1-{dim}",
            max_tokens=self._max_tokens,
        )

    @property
    def info(self) -> EncoderInfo:
        return self._info

    def tokens(self, text: str) -> list[str]:
        """The words the encoder sees in ``text``, before truncation to ``max_tokens``."""
        return _WORD.findall(text.lower())

    def _embed(self, text: str, out: np.ndarray) -> None:
        dim = self._info.dim
        for token in self.tokens(text)[: self._max_tokens]:
            bucket, sign = _bucket_and_sign(token, _WORD_PERSON, dim)
            out[bucket] += sign
        bucket, sign = _bucket_and_sign(text, _TEXT_PERSON, dim)
        out[bucket] += sign * _TEXT_WEIGHT
        norm = float(np.linalg.norm(out))
        if norm == 0.0:
            # Cannot happen with the text component (integers ± 0.01 never sum to 0), but a zero
            # row would poison cosine search, so guarantee unit length regardless.
            out[:] = 0.0
            out[0] = 1.0
        else:
            out /= norm

    def encode(self, inputs: Sequence[Any], *, role: Role = "document") -> np.ndarray:
        """Embed texts: float32 of shape ``(len(inputs), dim)``, unit rows; ``role`` is ignored."""
        if isinstance(inputs, (str, bytes)):
            raise InvalidInputError(
                "encode() takes a sequence of texts, not one text; wrap it in a list: encode([text])"
            )
        texts = list(inputs)
        # Accumulate in float64 so sums do not depend on summation order, then store float32.
        vectors = np.zeros((len(texts), self._info.dim), dtype=np.float64)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInputError(
                    f"input {index} is a {type(text).__name__}, not a str; a text encoder takes only strings"
                )
            self._embed(text, vectors[index])
        return vectors.astype(np.float32)

    def __repr__(self) -> str:
        return f"FakeEncoder({self._info.spec!r})"


def _parse_argument(argument: str) -> dict[str, int]:
    values: dict[str, int] = {}
    for part in argument.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or key not in ("dim", "max_tokens"):
            raise InvalidInputError(
                f"fake encoder argument {part!r} not understood in {argument!r}; write e.g. "
                "'fake:dim=64' or 'fake:dim=32,max_tokens=50'"
            )
        if key in values:
            raise InvalidInputError(f"fake encoder argument {key!r} given twice in {argument!r}")
        if not _NUMBER.fullmatch(raw) or int(raw) < 1:
            raise InvalidInputError(
                f"fake encoder {key}={raw!r} in {argument!r} must be a positive whole number"
            )
        values[key] = int(raw)
    return values


def load_fake_encoder(argument: str) -> FakeEncoder:
    """Build a ``FakeEncoder`` from the part of a ``fake:`` spec after the colon."""
    values = _parse_argument(argument)
    return FakeEncoder(dim=values.get("dim", DEFAULT_DIM), max_tokens=values.get("max_tokens"))
